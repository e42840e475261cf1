package accounts

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/go-ldap/ldap/v3"
)

// Marker is the labeledURI value that marks an entry as managed by the
// accounts kind. An entry is managed when it lies directly under one of
// the tree's OUs (users: pupils, staff, archive; groups: groups) AND
// carries this value; users also carry their person's stable id in
// employeeNumber. labeledURI is in the core schema: inetOrgPerson allows
// it, and groups get the auxiliary class labeledURIObject. Anything else
// is never changed, moved or deleted.
const Marker = "alize:accounts"

// counterCN names the entry that remembers the next uidNumber and
// gidNumber to give: cn=alize-accounts,<base>, an applicationProcess with
// Samba's sambaUnixIdPool class. It lives in the directory so that it
// survives a reinstall of the server, and is backed up with the accounts.
const counterCN = "alize-accounts"

// userAttrs are the attributes the kind reads of an account: only those
// it compares, since decoding is most of a plan's time. It never reads
// userPassword or sambaNTPassword.
var userAttrs = []string{
	"uid", "uidNumber", "gidNumber", "cn", "sn", "givenName", "displayName", "gecos",
	"employeeNumber", "employeeType", "departmentNumber", "mail", "labeledURI",
	"shadowExpire", "sambaAcctFlags", "sambaPrimaryGroupSID",
}

// groupAttrs are the attributes the kind reads of a group.
var groupAttrs = []string{
	"objectClass", "cn", "gidNumber", "memberUid", "description", "labeledURI",
	"sambaSID", "sambaGroupType", "displayName",
}

// have is what the directory holds under the establishment's base.
type have struct {
	ous map[string]bool // dnKey of every OU under (and including) the base

	users   map[string]*haveUser // managed accounts by stable id
	dupIDs  map[string][]string  // stable id → DNs when several managed accounts have it
	unmarks map[string]string    // stable id → DN of an unmarked account in a managed OU
	groups  map[string]*haveGroup
	foreign map[string]string // lowercase cn → DN of a group the kind does not manage

	names   map[string]bool // lowercase uid of every account and cn of every group
	uids    map[int64]bool  // every uidNumber in use
	gids    map[int64]bool  // every gidNumber in use
	maxUID  int64           // highest uidNumber of a managed account (0: none)
	maxGID  int64
	counter *counter // nil when the counter entry is missing
}

type haveUser struct {
	dn, parent string // parent is a dnKey
	id, login  string
	uidNumber  int64
	attrs      map[string][]string // lowercase attribute name → values
}

type haveGroup struct {
	dn, cn    string
	gidNumber int64
	members   []string
	attrs     map[string][]string
}

type counter struct{ uid, gid int64 }

func (h *haveUser) get(attr string) string  { return first(h.attrs[attr]) }
func (h *haveGroup) get(attr string) string { return first(h.attrs[attr]) }

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// layout is the DNs of the tree for one spec.
type layout struct {
	base, pupils, staff, groups, archive, counter string
	// keys of the same, for comparisons
	baseKey, pupilsKey, staffKey, groupsKey, archiveKey, counterKey string
}

func newLayout(s Spec) layout {
	l := layout{base: s.BaseDN()}
	l.pupils = under(s.Tree.Pupils, l.base)
	l.staff = under(s.Tree.Staff, l.base)
	l.groups = under(s.Tree.Groups, l.base)
	l.archive = under(s.Tree.Archive, l.base)
	l.counter = childDN("cn", counterCN, l.base)
	key := func(dn string) string { k, _, _ := dnKey(dn); return k }
	l.baseKey, l.pupilsKey, l.staffKey = key(l.base), key(l.pupils), key(l.staff)
	l.groupsKey, l.archiveKey, l.counterKey = key(l.groups), key(l.archive), key(l.counter)
	return l
}

// pageSize is the paged-search page: under slapd's default size limit
// (500) for a bind DN that has one.
const pageSize = 500

// observeConns is how many connections observe searches over.
const observeConns = 5

// observe reads everything the kind needs under the base, with paged
// searches in parallel over the pool's connections: each managed OU, the
// groups, and the accounts and groups elsewhere under the base (their
// names and numbers are taken).
func observe(ctx context.Context, p *pool, l layout, cache *entryCache) (*have, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := p.conn(0)
	_, err := c.Search(ldap.NewSearchRequest(l.base, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"1.1"}, nil))
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return nil, fmt.Errorf("accounts: the establishment's base %s is not in the directory: check uai and academy, or create the Scribe tree first", l.base)
	}
	if err != nil {
		return nil, opError("search", l.base, err)
	}
	notIn := ""
	for _, ou := range []string{l.pupils, l.staff, l.archive, l.groups} {
		notIn += "(!(entryDN:dnOneLevelMatch:=" + ldap.EscapeFilter(ou) + "))"
	}
	searches := []struct {
		base   string
		scope  int
		filter string
		attrs  []string
	}{
		{l.pupils, ldap.ScopeSingleLevel, "(objectClass=posixAccount)", userAttrs},
		{l.staff, ldap.ScopeSingleLevel, "(objectClass=posixAccount)", userAttrs},
		{l.archive, ldap.ScopeSingleLevel, "(objectClass=posixAccount)", userAttrs},
		{l.groups, ldap.ScopeSingleLevel, "(objectClass=posixGroup)", groupAttrs},
		{l.base, ldap.ScopeWholeSubtree, "(|(objectClass=organizationalUnit)(objectClass=sambaUnixIdPool)(&(|(objectClass=posixAccount)(objectClass=posixGroup))" + notIn + "))",
			[]string{"objectClass", "uid", "uidNumber", "cn", "gidNumber"}},
	}
	results := make([][]*parsed, len(searches))
	errs := make([]error, len(searches))
	var wg sync.WaitGroup
	for i, s := range searches {
		wg.Go(func() {
			var entries []*parsed
			var err error
			if s.scope == ldap.ScopeSingleLevel {
				entries, err = cache.search(p.conn(i), s.base, s.filter, s.attrs)
			} else {
				var res *ldap.SearchResult
				res, err = p.conn(i).SearchWithPaging(ldap.NewSearchRequest(s.base, s.scope, ldap.NeverDerefAliases, 0, 0, false, s.filter, s.attrs, nil), pageSize)
				if err == nil {
					for _, e := range res.Entries {
						entries = append(entries, parse(e))
					}
				}
			}
			switch {
			case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
				// The OU is not there yet: the plan creates it.
			case err != nil:
				errs[i] = opError("search", s.base, err)
			default:
				results[i] = entries
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	h := &have{
		ous: map[string]bool{}, users: map[string]*haveUser{}, dupIDs: map[string][]string{},
		unmarks: map[string]string{}, groups: map[string]*haveGroup{}, foreign: map[string]string{},
		names: map[string]bool{}, uids: map[int64]bool{}, gids: map[int64]bool{},
	}
	for i, entries := range results {
		for _, e := range entries {
			h.add(e, l, i < 3, searches[i].base)
		}
	}
	return h, nil
}

// parsed is an entry with its attributes by lowercase name.
type parsed struct {
	DN    string
	attrs map[string][]string
	csn   string // entryCSN, for the cache
}

func parse(e *ldap.Entry) *parsed {
	p := &parsed{DN: e.DN, attrs: make(map[string][]string, len(e.Attributes))}
	for _, a := range e.Attributes {
		if strings.EqualFold(a.Name, "entryCSN") {
			p.csn = first(a.Values)
			continue
		}
		p.attrs[strings.ToLower(a.Name)] = a.Values
	}
	return p
}

// add files one entry. inUserOU says it comes from a search of one of the
// users' OUs (parent), and so is an account.
func (h *have) add(e *parsed, l layout, inUserOU bool, parent string) {
	attrs := e.attrs
	marked := marked(attrs)
	if inUserOU {
		for _, u := range attrs["uid"] {
			h.names[strings.ToLower(u)] = true
		}
		n, _ := strconv.ParseInt(first(attrs["uidnumber"]), 10, 64)
		h.uids[n] = true
		id := first(attrs["employeenumber"])
		if id == "" {
			return
		}
		if !marked {
			h.unmarks[id] = e.DN
			return
		}
		if o, dup := h.users[id]; dup {
			h.dupIDs[id] = append(h.dupIDs[id], o.dn, e.DN)
			return
		}
		parentKey := l.pupilsKey
		switch parent {
		case l.staff:
			parentKey = l.staffKey
		case l.archive:
			parentKey = l.archiveKey
		}
		h.users[id] = &haveUser{dn: e.DN, parent: parentKey, id: id, login: first(attrs["uid"]), uidNumber: n, attrs: attrs}
		h.maxUID = max(h.maxUID, n)
		return
	}
	classes := map[string]bool{}
	for _, oc := range attrs["objectclass"] {
		classes[strings.ToLower(oc)] = true
	}
	switch {
	case classes["posixgroup"]:
		cn := first(attrs["cn"])
		n, _ := strconv.ParseInt(first(attrs["gidnumber"]), 10, 64)
		h.gids[n] = true
		// The RDN's cn is the group's name; another cn value is an alias.
		name := cn
		if parsed, err := ldap.ParseDN(e.DN); err == nil && len(parsed.RDNs) > 0 && len(parsed.RDNs[0].Attributes) == 1 {
			name = parsed.RDNs[0].Attributes[0].Value
		}
		for _, v := range attrs["cn"] {
			h.names[strings.ToLower(v)] = true
		}
		if !marked || parent != l.groups {
			h.foreign[strings.ToLower(name)] = e.DN
			return
		}
		h.groups[strings.ToLower(name)] = &haveGroup{dn: e.DN, cn: name, gidNumber: n, members: attrs["memberuid"], attrs: attrs}
		h.maxGID = max(h.maxGID, n)
	case classes["posixaccount"]:
		for _, u := range attrs["uid"] {
			h.names[strings.ToLower(u)] = true
		}
		n, _ := strconv.ParseInt(first(attrs["uidnumber"]), 10, 64)
		h.uids[n] = true
	case classes["organizationalunit"]:
		if key, _, ok := dnKey(e.DN); ok {
			h.ous[key] = true
		}
	case classes["sambaunixidpool"]:
		if key, _, _ := dnKey(e.DN); key != l.counterKey {
			return
		}
		uid, err1 := strconv.ParseInt(first(attrs["uidnumber"]), 10, 64)
		gid, err2 := strconv.ParseInt(first(attrs["gidnumber"]), 10, 64)
		if err1 == nil && err2 == nil {
			h.counter = &counter{uid: uid, gid: gid}
		} else {
			h.counter = &counter{} // damaged: set again from the entries
		}
	}
}

// entryCache keeps the entries of the managed OUs between plans, by DN
// with their entryCSN (which slapd changes on every write): a plan reads
// only each entry's entryCSN, then the entries that changed. Decoding
// the attributes of 2,000 accounts is most of a plan's time otherwise.
type entryCache struct {
	mu      sync.Mutex
	entries map[string]*parsed // by DN
}

// refetchShare: when more than 1/refetchShare of an OU's entries changed,
// it is read again whole rather than entry by entry.
const refetchShare = 4

// search returns the entries filter picks one level under base, with
// attrs, reading again only those whose entryCSN changed.
func (c *entryCache) search(conn *ldap.Conn, base, filter string, attrs []string) ([]*parsed, error) {
	res, err := conn.SearchWithPaging(ldap.NewSearchRequest(base, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false,
		filter, []string{"entryCSN"}, nil), pageSize)
	if err != nil {
		return nil, err
	}
	fresh := make(map[string]*parsed, len(res.Entries))
	var stale []string
	c.mu.Lock()
	for _, e := range res.Entries {
		csn := e.GetAttributeValue("entryCSN")
		if old, ok := c.entries[e.DN]; ok && csn != "" && old.csn == csn {
			fresh[e.DN] = old
		} else {
			stale = append(stale, e.DN)
		}
	}
	c.mu.Unlock()
	withCSN := append(slices.Clip(attrs), "entryCSN")
	if len(stale) > len(res.Entries)/refetchShare {
		all, err := conn.SearchWithPaging(ldap.NewSearchRequest(base, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false,
			filter, withCSN, nil), pageSize)
		if err != nil {
			return nil, err
		}
		clear(fresh)
		for _, e := range all.Entries {
			fresh[e.DN] = parse(e)
		}
	} else if len(stale) > 0 {
		// A few reads in flight on the connection at a time.
		got := make([]*parsed, len(stale))
		errs := make([]error, len(stale))
		sem := make(chan struct{}, 8)
		var wg sync.WaitGroup
		for i, dn := range stale {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				r, err := conn.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
					filter, withCSN, nil))
				switch {
				case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
					// Gone since the first search.
				case err != nil:
					errs[i] = err
				case len(r.Entries) == 1:
					got[i] = parse(r.Entries[0])
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return nil, err // the first is enough: the others are alike
			}
		}
		for _, p := range got {
			if p != nil {
				fresh[p.DN] = p
			}
		}
	}
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]*parsed{}
	}
	// Forget what this search no longer finds under base, keep the rest.
	for dn := range c.entries {
		if _, parent, ok := strings.Cut(dn, ","); ok && parent == base {
			if _, still := fresh[dn]; !still {
				delete(c.entries, dn)
			}
		}
	}
	maps.Copy(c.entries, fresh)
	c.mu.Unlock()
	out := make([]*parsed, 0, len(fresh))
	for _, p := range fresh {
		out = append(out, p)
	}
	return out, nil
}
