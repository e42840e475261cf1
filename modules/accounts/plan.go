package accounts

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/alize-eple/alize/modules"
	"github.com/alize-eple/alize/modules/accounts/roster"
)

type opKind int

const (
	opOU opKind = iota
	opCounter
	opGroupAdd
	opUserAdd
	opUserMove // a move (archive, restore, role change), then its mods
	opUserModify
	opGroupModify
)

// mod is one modification of an attribute: "add", "delete" or "replace".
type mod struct {
	op     string
	attr   string
	values []string
}

// op is what Apply does for one change of the plan.
type op struct {
	kind  opKind
	dn    string
	newDN string           // moves
	attrs []ldap.Attribute // adds; a user add gets its password attributes in Apply
	mods  []mod            // modifies, and a move's modifications at its new place
	deps  []int            // ops that must succeed first

	user       *wantUser // user adds
	login      string
	mustChange bool
	samba      bool

	members []string // group adds: every member, set once the users exist
	addUIDs []string // group modifies: memberUid values to add and delete
	delUIDs []string
}

// planState is what Apply needs of a plan: ops[i] does Changes[i].
type planState struct {
	spec    Spec
	l       layout
	ops     []op
	counter *counter       // as observed; nil when the entry is missing
	next    counter        // after the numbers this plan gives
	loginOp map[string]int // login → index of its account's add
	now     time.Time
}

// ErrConflict is wrapped by a plan refused because the directory holds
// entries in the way of the kind that it does not manage.
var ErrConflict = errors.New("entries in the way")

// ErrRangeExhausted is wrapped by a plan refused because an id range has
// no number left for the new accounts or groups.
var ErrRangeExhausted = errors.New("id range exhausted")

// diff is the pure part of Plan: from what the directory has and what the
// spec wants, the changes. s has its defaults.
func diff(s Spec, l layout, h *have, w *want, now time.Time) (*planState, []modules.Change, error) {
	st := &planState{spec: s, l: l, counter: h.counter, loginOp: map[string]int{}}
	var changes []modules.Change
	add := func(o op, c modules.Change) int {
		st.ops = append(st.ops, o)
		changes = append(changes, c)
		return len(st.ops) - 1
	}
	day := strconv.FormatInt(now.Unix()/86400, 10)

	if err := conflicts(l, h, w); err != nil {
		return nil, nil, err
	}

	// OUs, parents first.
	ouOp := map[string]int{}
	for _, rel := range []string{s.Tree.Pupils, s.Tree.Staff, s.Tree.Groups, s.Tree.Archive} {
		parsed, _ := ldap.ParseDN(rel)
		dn, parentKey := l.base, l.baseKey
		for j := len(parsed.RDNs) - 1; j >= 0; j-- {
			v := parsed.RDNs[j].Attributes[0].Value
			dn = childDN("ou", v, dn)
			key, _, _ := dnKey(dn)
			if _, done := ouOp[key]; !done && !h.ous[key] {
				o := op{kind: opOU, dn: dn, attrs: []ldap.Attribute{
					{Type: "objectClass", Vals: []string{"top", "organizationalUnit"}}, {Type: "ou", Vals: []string{v}},
				}}
				if i, ok := ouOp[parentKey]; ok {
					o.deps = []int{i}
				}
				ouOp[key] = add(o, modules.Change{Op: modules.OpCreate, Resource: "ou", ID: dn, Summary: "create the OU " + v})
			}
			parentKey = key
		}
	}
	ouDeps := func(key string) []int {
		if i, ok := ouOp[key]; ok {
			return []int{i}
		}
		return nil
	}

	// What is new: groups and accounts, then their numbers.
	cns := slices.Sorted(maps.Keys(w.groups))
	var newGroups []string
	for _, cn := range cns {
		if h.groups[cn] == nil {
			newGroups = append(newGroups, cn)
		}
	}
	var creates []*wantUser
	for _, u := range w.users {
		if h.users[u.p.ID] == nil && u.active {
			creates = append(creates, u)
		}
	}
	start := func(r Range, counted int64, maxManaged int64) int64 {
		if h.counter != nil && counted > 0 {
			return max(r.Min, counted)
		}
		return max(r.Min, maxManaged+1)
	}
	var cu, cg int64
	if h.counter != nil {
		cu, cg = h.counter.uid, h.counter.gid
	}
	uids, nextUID, err := allocate("ids.uid", s.IDs.UID, start(s.IDs.UID, cu, h.maxUID), h.uids, len(creates), "accounts")
	if err != nil {
		return nil, nil, err
	}
	gids, nextGID, err := allocate("ids.gid", s.IDs.GID, start(s.IDs.GID, cg, h.maxGID), h.gids, len(newGroups), "groups")
	if err != nil {
		return nil, nil, err
	}
	st.next = counter{uid: nextUID, gid: nextGID}
	if h.counter != nil {
		st.next = counter{uid: max(nextUID, h.counter.uid), gid: max(nextGID, h.counter.gid)}
	}

	counterOp := -1
	if h.counter == nil {
		counterOp = add(op{kind: opCounter, dn: l.counter}, modules.Change{Op: modules.OpCreate, Resource: "allocator", ID: l.counter,
			Summary: fmt.Sprintf("create the number allocator: next uidNumber %d, next gidNumber %d", st.next.uid, st.next.gid)})
	}
	withCounter := func(deps []int) []int {
		if counterOp >= 0 {
			return append(deps, counterOp)
		}
		return deps
	}

	// Group numbers.
	gid := map[string]int64{}
	for cn, g := range h.groups {
		gid[cn] = g.gidNumber
	}
	for i, cn := range newGroups {
		gid[cn] = gids[i]
	}

	// Logins of the new accounts.
	logins := map[string]string{} // stable id → login
	assigned := map[string]bool{}
	taken := func(name string) bool {
		return h.names[name] || w.groups[name] != nil || reservedLogin(name) || assigned[name]
	}
	for _, u := range creates {
		login := chooseLogin(u.p.FirstName, u.p.LastName, u.p.Role, s.Logins.MaxLength, taken)
		assigned[login] = true
		logins[u.p.ID] = login
	}

	// Memberships: every account whose groups are known, by login.
	known := map[string][]string{}
	for id, hu := range h.users {
		u := w.byID[id]
		switch {
		case u != nil && u.active:
			known[hu.login] = u.groups
		case u != nil, s.Roster.Complete, hu.parent == l.archiveKey:
			known[hu.login] = nil // a leaver is in no group
		}
	}
	for _, u := range creates {
		known[logins[u.p.ID]] = u.groups
	}
	wantMembers := map[string]map[string]bool{}
	for login, groups := range known {
		for _, cn := range groups {
			if wantMembers[cn] == nil {
				wantMembers[cn] = map[string]bool{}
			}
			wantMembers[cn][login] = true
		}
	}

	// Group adds.
	groupOp := map[string]int{}
	for i, cn := range newGroups {
		g := w.groups[cn]
		dn := childDN("cn", cn, l.groups)
		classes := []string{"top", "posixGroup", "labeledURIObject"}
		attrs := []ldap.Attribute{
			{Type: "cn", Vals: []string{cn}},
			{Type: "gidNumber", Vals: []string{strconv.FormatInt(gids[i], 10)}},
			{Type: "description", Vals: []string{g.description}},
			{Type: "labeledURI", Vals: []string{Marker}},
		}
		if s.Samba != nil {
			classes = append(classes, "sambaGroupMapping")
			attrs = append(attrs,
				ldap.Attribute{Type: "sambaSID", Vals: []string{groupSID(s, gids[i])}},
				ldap.Attribute{Type: "sambaGroupType", Vals: []string{"2"}},
				ldap.Attribute{Type: "displayName", Vals: []string{cn}})
		}
		attrs = append([]ldap.Attribute{{Type: "objectClass", Vals: classes}}, attrs...)
		members := slices.Sorted(maps.Keys(wantMembers[cn]))
		groupOp[cn] = add(op{kind: opGroupAdd, dn: dn, attrs: attrs, members: members, deps: withCounter(ouDeps(l.groupsKey))},
			modules.Change{Op: modules.OpCreate, Resource: "group", ID: dn,
				Summary: fmt.Sprintf("new %s group %s (%s), %d members, gidNumber %d", g.kind, cn, g.description, len(members), gids[i])})
	}

	// Account adds.
	for i, u := range creates {
		login := logins[u.p.ID]
		ou, ouKey := l.staff, l.staffKey
		if u.p.Role == roster.Pupil {
			ou, ouKey = l.pupils, l.pupilsKey
		}
		dn := childDN("uid", login, ou)
		uid := uids[i]
		roleGID := gid[u.roleGroup]
		classes := []string{"top", "inetOrgPerson", "posixAccount", "shadowAccount"}
		attrs := []ldap.Attribute{{Type: "uid", Vals: []string{login}}}
		for _, a := range personAttrs(u) {
			attrs = append(attrs, ldap.Attribute{Type: a.attr, Vals: a.values})
		}
		attrs = append(attrs,
			ldap.Attribute{Type: "employeeNumber", Vals: []string{u.p.ID}},
			ldap.Attribute{Type: "labeledURI", Vals: []string{Marker}},
			ldap.Attribute{Type: "uidNumber", Vals: []string{strconv.FormatInt(uid, 10)}},
			ldap.Attribute{Type: "gidNumber", Vals: []string{strconv.FormatInt(roleGID, 10)}},
			ldap.Attribute{Type: "homeDirectory", Vals: []string{s.Posix.HomeRoot + "/" + login}},
			ldap.Attribute{Type: "loginShell", Vals: []string{s.Posix.Shell}},
		)
		if s.Samba != nil {
			classes = append(classes, "sambaSamAccount")
			attrs = append(attrs,
				ldap.Attribute{Type: "sambaSID", Vals: []string{userSID(s, uid)}},
				ldap.Attribute{Type: "sambaAcctFlags", Vals: []string{acctFlags(false)}},
				ldap.Attribute{Type: "sambaPrimaryGroupSID", Vals: []string{groupSID(s, roleGID)}},
			)
		}
		attrs = append([]ldap.Attribute{{Type: "objectClass", Vals: classes}}, attrs...)
		deps := withCounter(ouDeps(ouKey))
		if j, ok := groupOp[u.roleGroup]; ok {
			deps = append(deps, j)
		}
		must := s.Passwords.StaffMustChange
		if u.p.Role == roster.Pupil {
			must = s.Passwords.PupilsMustChange
		}
		where := u.p.Class
		if where == "" {
			where = string(u.p.Role)
		}
		st.loginOp[login] = add(op{kind: opUserAdd, dn: dn, attrs: attrs, deps: deps, user: u, login: login, mustChange: must, samba: s.Samba != nil},
			modules.Change{Op: modules.OpCreate, Resource: "user", ID: dn,
				Summary: fmt.Sprintf("new %s %s %s (%s), login %s, uidNumber %d", roleName(u.p.Role), u.p.FirstName, u.p.LastName, where, login, uid)})
	}

	// Existing accounts: updates, moves, leavers.
	ids := slices.Sorted(maps.Keys(h.users))
	for _, id := range ids {
		hu := h.users[id]
		u := w.byID[id]
		rdn, _, _ := strings.Cut(hu.dn, ",")
		switch {
		case u != nil && u.active:
			target, targetKey := l.staff, l.staffKey
			if u.p.Role == roster.Pupil {
				target, targetKey = l.pupils, l.pupilsKey
			}
			mods, what := userMods(s, u, hu, gid[u.roleGroup])
			deps := []int{}
			if j, ok := groupOp[u.roleGroup]; ok {
				deps = append(deps, j)
			}
			if hu.parent == targetKey {
				if len(mods) > 0 {
					add(op{kind: opUserModify, dn: hu.dn, mods: mods, deps: deps},
						modules.Change{Op: modules.OpUpdate, Resource: "user", ID: hu.dn, Summary: strings.Join(what, "; ")})
				}
				continue
			}
			summary := "moved to " + target
			if hu.parent == l.archiveKey {
				summary = "back in the roster: re-enabled, moved to " + target
				mods = append(mods, enableMods(s, hu)...)
			}
			if len(what) > 0 {
				summary += "; " + strings.Join(what, "; ")
			}
			add(op{kind: opUserMove, dn: hu.dn, newDN: rdn + "," + target, mods: mods, deps: append(deps, ouDeps(targetKey)...)},
				modules.Change{Op: modules.OpMove, Resource: "user", ID: hu.dn, Summary: summary})
		case hu.parent == l.archiveKey:
			// Archived and still a leaver (or absent from a partial roster).
		case u != nil || s.Roster.Complete:
			why := "absent from the complete roster"
			if u != nil {
				why = "left on " + u.p.ExitDate
			}
			add(op{kind: opUserMove, dn: hu.dn, newDN: rdn + "," + l.archive, mods: disableMods(hu, day), deps: ouDeps(l.archiveKey)},
				modules.Change{Op: modules.OpMove, Resource: "user", ID: hu.dn,
					Summary: fmt.Sprintf("leaver (%s): disabled, out of its groups, moved to %s; entry and home kept", why, l.archive)})
		}
	}

	// Existing groups: attributes and members.
	for _, cn := range slices.Sorted(maps.Keys(h.groups)) {
		hg := h.groups[cn]
		var mods []mod
		var what []string
		if g := w.groups[cn]; g != nil {
			mods, what = groupMods(s, g, hg)
		}
		cur := map[string]bool{}
		for _, m := range hg.members {
			cur[m] = true
		}
		var addUIDs, delUIDs []string
		for m := range wantMembers[cn] {
			if !cur[m] {
				addUIDs = append(addUIDs, m)
			}
		}
		for _, m := range hg.members {
			if _, isKnown := known[m]; isKnown && !wantMembers[cn][m] {
				delUIDs = append(delUIDs, m)
			}
		}
		if len(mods) == 0 && len(addUIDs) == 0 && len(delUIDs) == 0 {
			continue
		}
		slices.Sort(addUIDs)
		slices.Sort(delUIDs)
		if len(addUIDs) > 0 || len(delUIDs) > 0 {
			what = append(what, fmt.Sprintf("members +%d −%d", len(addUIDs), len(delUIDs)))
		}
		if w.groups[cn] == nil {
			what = append(what, "no longer in the roster: kept")
		}
		add(op{kind: opGroupModify, dn: hg.dn, mods: mods, addUIDs: addUIDs, delUIDs: delUIDs},
			modules.Change{Op: modules.OpUpdate, Resource: "group", ID: hg.dn, Summary: strings.Join(what, "; ")})
	}
	return st, changes, nil
}

// allocate gives need numbers of r from start on, skipping the used ones.
// It returns them and the next number to give.
func allocate(field string, r Range, start int64, used map[int64]bool, need int, what string) ([]int64, int64, error) {
	nums := make([]int64, 0, need)
	n := start
	for ; len(nums) < need && n <= r.Max; n++ {
		if !used[n] {
			nums = append(nums, n)
		}
	}
	if len(nums) < need {
		return nil, 0, fmt.Errorf("accounts: %s: the range %d-%d is exhausted: %d new %s need a number and %d are left (numbers are never given twice): widen %s.max: %w",
			field, r.Min, r.Max, need, what, len(nums), field, ErrRangeExhausted)
	}
	return nums, max(n, start), nil
}

// conflicts lists the entries the kind does not manage that stand where
// it must write.
func conflicts(l layout, h *have, w *want) error {
	var msgs []string
	for _, id := range slices.Sorted(maps.Keys(h.dupIDs)) {
		msgs = append(msgs, fmt.Sprintf("managed accounts %s all have the stable id %s: keep one, remove the marker (labeledURI %s) of the others",
			strings.Join(slices.Compact(slices.Sorted(slices.Values(h.dupIDs[id]))), ", "), roster.Quote(id), Marker))
	}
	for _, id := range slices.Sorted(maps.Keys(h.unmarks)) {
		if w.byID[id] != nil && h.users[id] == nil {
			msgs = append(msgs, fmt.Sprintf("%s has the stable id %s of a person of the roster but is not managed by Alizé: add labeledURI: %s to hand it over, or remove its employeeNumber",
				h.unmarks[id], roster.Quote(id), Marker))
		}
	}
	for _, cn := range slices.Sorted(maps.Keys(w.groups)) {
		if dn, ok := h.foreign[cn]; ok && h.groups[cn] == nil {
			msgs = append(msgs, fmt.Sprintf("the group %s exists (%s) and is not managed by Alizé: rename it, or add objectClass labeledURIObject and labeledURI: %s to hand it over (under %s)",
				cn, dn, Marker, l.groups))
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("accounts: %w, nothing changed:\n%s", ErrConflict, strings.Join(msgs, "\n"))
}

func roleName(r roster.Role) string {
	switch r {
	case roster.Pupil:
		return "pupil"
	case roster.Teacher:
		return "teacher"
	}
	return "staff member"
}

// personAttrs are the attributes the roster decides, with their wanted
// values.
func personAttrs(u *wantUser) []mod {
	p := u.p
	attrs := []mod{
		{attr: "cn", values: []string{u.full}},
		{attr: "sn", values: []string{p.LastName}},
		{attr: "givenName", values: []string{p.FirstName}},
		{attr: "displayName", values: []string{u.full}},
		{attr: "gecos", values: []string{u.gecos}},
		{attr: "employeeType", values: []string{string(p.Role)}},
	}
	if p.Role == roster.Pupil {
		attrs = append(attrs, mod{attr: "departmentNumber", values: []string{p.Class}})
	}
	if p.Email != "" {
		attrs = append(attrs, mod{attr: "mail", values: []string{p.Email}})
	}
	return attrs
}

// gecos is a name in the printable ASCII gecos allows (IA5).
func gecos(s string) string {
	var b strings.Builder
	for _, r := range roster.Unaccent(s) {
		if r >= 0x20 && r < 0x7f {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// userMods returns the modifications that bring an existing account's
// managed attributes to the roster's values, and what they change in
// words.
func userMods(s Spec, u *wantUser, hu *haveUser, roleGID int64) ([]mod, []string) {
	var mods []mod
	var what []string
	p := u.p
	set := func(attr, lower, value string) bool {
		if vs := hu.attrs[lower]; len(vs) == 1 && vs[0] == value {
			return false
		}
		mods = append(mods, mod{op: "replace", attr: attr, values: []string{value}})
		return true
	}
	if set("sn", "sn", p.LastName) {
		what = append(what, fmt.Sprintf("last name %s → %s", roster.Quote(hu.get("sn")), roster.Quote(p.LastName)))
	}
	if set("givenName", "givenname", p.FirstName) {
		what = append(what, fmt.Sprintf("first name %s → %s", roster.Quote(hu.get("givenname")), roster.Quote(p.FirstName)))
	}
	set("cn", "cn", u.full)
	set("displayName", "displayname", u.full)
	set("gecos", "gecos", u.gecos)
	if old := hu.get("employeetype"); set("employeeType", "employeetype", string(p.Role)) {
		what = append(what, fmt.Sprintf("role %s → %s", roster.Quote(old), p.Role))
	}
	if p.Role == roster.Pupil && set("departmentNumber", "departmentnumber", p.Class) {
		what = append(what, fmt.Sprintf("class %s → %s", roster.Quote(hu.get("departmentnumber")), roster.Quote(p.Class)))
	}
	if p.Email != "" && set("mail", "mail", p.Email) {
		what = append(what, "email")
	}
	if set("gidNumber", "gidnumber", strconv.FormatInt(roleGID, 10)) {
		what = append(what, "primary group")
	}
	hasSamba := hu.get("sambaacctflags") != "" // the kind always sets the flags of a Samba account
	if s.Samba != nil {
		sid := groupSID(s, roleGID)
		if !hasSamba {
			mods = append(mods,
				mod{op: "add", attr: "objectClass", values: []string{"sambaSamAccount"}},
				mod{op: "replace", attr: "sambaSID", values: []string{userSID(s, hu.uidNumber)}},
				mod{op: "replace", attr: "sambaAcctFlags", values: []string{acctFlags(false)}},
				mod{op: "replace", attr: "sambaPrimaryGroupSID", values: []string{sid}})
			what = append(what, "Samba account added (without a password: reset it to use Samba)")
		} else {
			set("sambaPrimaryGroupSID", "sambaprimarygroupsid", sid)
		}
	}
	if len(mods) > 0 && len(what) == 0 {
		what = append(what, "managed attributes set back to the roster's values")
	}
	return mods, what
}

// disableMods disable an account: shadowExpire is the day it left (Expired
// counts the retention from it), Samba's D flag, no login shell.
func disableMods(hu *haveUser, day string) []mod {
	mods := []mod{
		{op: "replace", attr: "loginShell", values: []string{LeaverShell}},
		{op: "replace", attr: "shadowExpire", values: []string{day}},
	}
	if hu.get("sambaacctflags") != "" {
		mods = append(mods, mod{op: "replace", attr: "sambaAcctFlags", values: []string{acctFlags(true)}})
	}
	return mods
}

// enableMods undo disableMods for a leaver back in the roster.
func enableMods(s Spec, hu *haveUser) []mod {
	mods := []mod{{op: "replace", attr: "loginShell", values: []string{s.Posix.Shell}}}
	if hu.get("shadowexpire") != "" {
		mods = append(mods, mod{op: "delete", attr: "shadowExpire"})
	}
	if hu.get("sambaacctflags") != "" {
		mods = append(mods, mod{op: "replace", attr: "sambaAcctFlags", values: []string{acctFlags(false)}})
	}
	return mods
}

// groupMods returns the modifications that bring an existing group's
// managed attributes (not its members) to the wanted values.
func groupMods(s Spec, g *wantGroup, hg *haveGroup) ([]mod, []string) {
	var mods []mod
	var what []string
	if !slices.Equal(hg.attrs["description"], []string{g.description}) {
		mods = append(mods, mod{op: "replace", attr: "description", values: []string{g.description}})
		what = append(what, "description")
	}
	if s.Samba != nil {
		sid := groupSID(s, hg.gidNumber)
		has := slices.ContainsFunc(hg.attrs["objectclass"], func(c string) bool { return strings.EqualFold(c, "sambaGroupMapping") })
		if !has {
			mods = append(mods, mod{op: "add", attr: "objectClass", values: []string{"sambaGroupMapping"}})
			what = append(what, "Samba group mapping added")
		}
		if !has || hg.get("sambasid") != sid {
			mods = append(mods, mod{op: "replace", attr: "sambaSID", values: []string{sid}})
		}
		if !has || hg.get("sambagrouptype") != "2" {
			mods = append(mods, mod{op: "replace", attr: "sambaGroupType", values: []string{"2"}})
		}
		if !has || hg.get("displayname") != hg.cn {
			mods = append(mods, mod{op: "replace", attr: "displayName", values: []string{hg.cn}})
		}
		if has && len(what) == 0 && len(mods) > 0 {
			what = append(what, "Samba group mapping set back")
		}
	}
	return mods, what
}

// acctFlags is sambaAcctFlags: a normal account, disabled or not, in
// Samba's fixed-width form.
func acctFlags(disabled bool) string {
	if disabled {
		return "[DU         ]"
	}
	return "[U          ]"
}

func userSID(s Spec, uid int64) string {
	return s.Samba.DomainSID + "-" + strconv.FormatInt(2*uid+1000, 10)
}

func groupSID(s Spec, gid int64) string {
	return s.Samba.DomainSID + "-" + strconv.FormatInt(2*gid+1001, 10)
}
