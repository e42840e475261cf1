package accounts

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/alize-eple/alize/modules"
	"github.com/alize-eple/alize/modules/accounts/credentials"
	"github.com/alize-eple/alize/modules/accounts/roster"
)

// Apply does the plan's changes, in dependency order: OUs, the number
// allocator, groups, new accounts, moves and updates of accounts, then
// group memberships. Independent changes go in parallel over a few
// connections. A change whose prerequisite failed is skipped; a new
// account that failed only drops out of its groups' memberships.
//
// Apply is safe to re-run: an entry already created by this plan counts
// as applied, moves and membership changes done already are no-ops. When
// the number allocator moved since the plan (another apply ran), new
// entries not yet in the directory fail with "plan again" rather than
// take numbers that may be given.
func (k *Accounts) Apply(ctx context.Context, p modules.Plan) (modules.Result, error) {
	res := modules.Result{Kind: Name}
	if p.Empty() {
		return res, nil
	}
	st, ok := p.State.(*planState)
	if !ok || len(st.ops) != len(p.Changes) {
		return res, errors.New("accounts: apply: the plan was not made by this kind's Plan")
	}
	a := &applier{k: k, st: st, changes: p.Changes, results: make([]modules.ChangeResult, len(p.Changes)), created: make([]bool, len(p.Changes))}
	pool, err := k.connect(ctx, &st.spec, k.cfg.Conns)
	if err != nil {
		for i := range a.results {
			a.fail(i, err)
		}
		res.Changes = a.results
		return res, err
	}
	defer pool.close()
	a.pool = pool
	a.run(ctx)
	res.Changes = a.results
	return res, nil
}

type applier struct {
	k       *Accounts
	st      *planState
	pool    *pool
	changes []modules.Change
	results []modules.ChangeResult
	created []bool // the add of op i made its entry (not a re-run finding it)
	stale   bool   // the allocator moved since the plan
}

func (a *applier) ok(i int) {
	a.results[i] = modules.ChangeResult{Change: a.changes[i], Status: modules.StatusApplied}
	c := a.changes[i]
	a.k.log.Info("change applied", "change", string(c.Op), "resource", c.Resource, "dn", c.ID)
}

func (a *applier) fail(i int, err error) {
	a.results[i] = modules.ChangeResult{Change: a.changes[i], Status: modules.StatusFailed, Error: err.Error()}
	c := a.changes[i]
	a.k.log.Warn("change failed", "change", string(c.Op), "resource", c.Resource, "dn", c.ID, "error", err.Error())
}

func (a *applier) skip(i int, why string) {
	a.results[i] = modules.ChangeResult{Change: a.changes[i], Status: modules.StatusSkipped, Error: why}
}

func (a *applier) applied(i int) bool { return a.results[i].Status == modules.StatusApplied }

// ready reports whether op i's prerequisites were applied, skipping it
// when not.
func (a *applier) ready(i int) bool {
	for _, d := range a.st.ops[i].deps {
		if !a.applied(d) {
			a.skip(i, fmt.Sprintf("not attempted: %s %s %s did not apply", a.changes[d].Op, a.changes[d].Resource, a.changes[d].ID))
			return false
		}
	}
	return true
}

func (a *applier) run(ctx context.Context) {
	byKind := map[opKind][]int{}
	for i, o := range a.st.ops {
		byKind[o.kind] = append(byKind[o.kind], i)
	}
	c0 := a.pool.conn(0)
	for _, i := range byKind[opOU] {
		if a.ready(i) {
			a.add(c0, i, a.st.ops[i].attrs, nil)
		}
	}
	a.reserve(c0, byKind[opCounter])
	a.parallel(ctx, byKind[opGroupAdd], func(c *ldap.Conn, i int) {
		a.add(c, i, a.st.ops[i].attrs, isManaged)
	})
	a.addUsers(ctx, byKind[opUserAdd])
	a.parallel(ctx, append(byKind[opUserMove], byKind[opUserModify]...), a.moveOrModify)
	a.parallel(ctx, append(byKind[opGroupAdd], byKind[opGroupModify]...), a.members)
}

// parallel runs fn for each op over the pool, a few at a time per
// connection. An op whose prerequisites failed is skipped.
func (a *applier) parallel(ctx context.Context, idxs []int, fn func(c *ldap.Conn, i int)) {
	work := make(chan int)
	var wg sync.WaitGroup
	for w := range 2 * len(a.pool.conns) {
		c := a.pool.conn(w)
		wg.Go(func() {
			for i := range work {
				fn(c, i)
			}
		})
	}
	for _, i := range idxs {
		if err := ctx.Err(); err != nil {
			a.fail(i, err)
			continue
		}
		if a.st.ops[i].kind == opGroupAdd && a.results[i].Status != "" {
			if !a.applied(i) {
				continue // the group's add failed: no members to set
			}
		} else if !a.ready(i) {
			continue
		}
		work <- i
	}
	close(work)
	wg.Wait()
}

// add adds op i's entry. When the entry exists already, mine says whether
// it is the one this plan makes (a re-run); nil means any entry will do.
func (a *applier) add(c *ldap.Conn, i int, attrs []ldap.Attribute, mine func(*ldap.Entry, *op) bool) {
	o := &a.st.ops[i]
	if a.stale && (o.kind == opGroupAdd || o.kind == opUserAdd) {
		a.verify(c, i, mine, "the number allocator moved since this plan was made (another apply?): plan again")
		return
	}
	req := ldap.NewAddRequest(o.dn, nil)
	for _, at := range attrs {
		req.Attribute(at.Type, at.Vals)
	}
	err := c.Add(req)
	switch {
	case err == nil:
		a.created[i] = true
		a.ok(i)
	case ldap.IsErrorWithCode(err, ldap.LDAPResultEntryAlreadyExists) && mine == nil:
		a.ok(i)
	case ldap.IsErrorWithCode(err, ldap.LDAPResultEntryAlreadyExists):
		a.verify(c, i, mine, "another entry took this name since the plan was made: plan again")
	default:
		a.fail(i, opError("add", o.dn, err))
	}
}

// verify reports op i applied when its entry is in the directory as this
// plan makes it, else failed with why.
func (a *applier) verify(c *ldap.Conn, i int, mine func(*ldap.Entry, *op) bool, why string) {
	o := &a.st.ops[i]
	res, err := c.Search(ldap.NewSearchRequest(o.dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"employeeNumber", "labeledURI"}, nil))
	switch {
	case err == nil && len(res.Entries) == 1 && mine(res.Entries[0], o):
		a.ok(i)
	case err == nil || ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
		a.fail(i, fmt.Errorf("add %s: %s", o.dn, why))
	default:
		a.fail(i, opError("search", o.dn, err))
	}
}

func isManaged(e *ldap.Entry, _ *op) bool {
	for _, v := range e.GetAttributeValues("labeledURI") {
		if f, _, _ := strings.Cut(v, " "); f == Marker {
			return true
		}
	}
	return false
}

func isAccountOf(e *ldap.Entry, o *op) bool {
	return isManaged(e, o) && e.GetAttributeValue("employeeNumber") == o.user.p.ID
}

// reserve takes the plan's numbers from the allocator: creates its entry,
// or moves it on with a compare-and-swap (delete the old value, add the
// new one, in one modify), so that two applies never give one number.
func (a *applier) reserve(c *ldap.Conn, counterOps []int) {
	st := a.st
	uid, gid := strconv.FormatInt(st.next.uid, 10), strconv.FormatInt(st.next.gid, 10)
	if st.counter == nil {
		for _, i := range counterOps {
			if !a.ready(i) {
				continue
			}
			req := ldap.NewAddRequest(st.ops[i].dn, nil)
			req.Attribute("objectClass", []string{"top", "applicationProcess", "sambaUnixIdPool"})
			req.Attribute("cn", []string{counterCN})
			req.Attribute("uidNumber", []string{uid})
			req.Attribute("gidNumber", []string{gid})
			req.Attribute("description", []string{"Alizé accounts: the next uidNumber and gidNumber to give. Never lower them: numbers are never given twice."})
			err := c.Add(req)
			switch {
			case err == nil:
				a.ok(i)
			case ldap.IsErrorWithCode(err, ldap.LDAPResultEntryAlreadyExists):
				a.stale = true
				a.ok(i)
			default:
				a.fail(i, opError("add", st.ops[i].dn, err))
			}
		}
		return
	}
	if st.next == *st.counter {
		return
	}
	req := ldap.NewModifyRequest(st.l.counter, nil)
	damaged := st.counter.uid == 0 || st.counter.gid == 0
	for _, n := range []struct {
		attr     string
		old, new int64
	}{{"uidNumber", st.counter.uid, st.next.uid}, {"gidNumber", st.counter.gid, st.next.gid}} {
		switch {
		case damaged:
			req.Replace(n.attr, []string{strconv.FormatInt(n.new, 10)})
		case n.old != n.new:
			req.Delete(n.attr, []string{strconv.FormatInt(n.old, 10)})
			req.Add(n.attr, []string{strconv.FormatInt(n.new, 10)})
		}
	}
	err := c.Modify(req)
	switch {
	case err == nil:
	case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchAttribute), ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
		a.stale = true
	default:
		// Every new entry needs a number: fail them all with the reason.
		err = opError("modify", st.l.counter, err)
		for i, o := range st.ops {
			if o.kind == opGroupAdd || o.kind == opUserAdd {
				a.fail(i, fmt.Errorf("cannot take the numbers: %w", err))
			}
		}
	}
}

// addUsers creates the new accounts with their initial passwords. The
// passwords are kept (encrypted) before any account exists, and forgotten
// for the accounts that were not created.
func (a *applier) addUsers(ctx context.Context, idxs []int) {
	var todo []int
	for _, i := range idxs {
		if a.results[i].Status == "" && a.ready(i) {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return
	}
	if a.stale {
		a.parallel(ctx, todo, func(c *ldap.Conn, i int) { a.add(c, i, nil, isAccountOf) })
		return
	}
	s := a.st.spec
	now := a.st.now
	day := strconv.FormatInt(now.Unix()/86400, 10)
	attrs := make(map[int][]ldap.Attribute, len(todo))
	recs := make([]credentials.Record, 0, len(todo))
	for _, i := range todo {
		o := &a.st.ops[i]
		p := o.user.p
		pw := initialPassword(s, p)
		extra := []ldap.Attribute{
			{Type: "userPassword", Vals: []string{sshaHash(pw)}},
			{Type: "shadowLastChange", Vals: []string{cond(o.mustChange, "0", day)}},
		}
		if o.samba {
			extra = append(extra,
				ldap.Attribute{Type: "sambaNTPassword", Vals: []string{ntHash(pw)}},
				ldap.Attribute{Type: "sambaPwdLastSet", Vals: []string{cond(o.mustChange, "0", strconv.FormatInt(now.Unix(), 10))}})
		}
		attrs[i] = append(slices.Clip(o.attrs), extra...)
		recs = append(recs, credentials.Record{
			ID: p.ID, Login: o.login, LastName: p.LastName, FirstName: p.FirstName, Role: string(p.Role), Class: p.Class,
			Password: pw, Created: now, Expires: now.Add(time.Duration(s.Passwords.KeepDays) * 24 * time.Hour),
		})
	}
	store, err := a.k.Credentials()
	var batch credentials.Batch
	if err == nil {
		batch, err = store.Add(recs)
	}
	clear(recs)
	if err != nil {
		for _, i := range todo {
			a.fail(i, fmt.Errorf("no account created: the initial passwords cannot be kept: %w", err))
		}
		return
	}
	a.parallel(ctx, todo, func(c *ldap.Conn, i int) { a.add(c, i, attrs[i], isAccountOf) })
	clear(attrs)
	// Forget the passwords of the accounts not created now: failed, or
	// there already (a re-run) with the password they were made with.
	var forget []string
	for _, i := range todo {
		if !a.created[i] {
			forget = append(forget, a.st.ops[i].user.p.ID)
		}
	}
	if err := store.Forget(batch, forget); err != nil {
		a.k.log.Warn("initial passwords of accounts not created are kept", "error", err.Error())
	}
}

// initialPassword is a new account's first password, by the spec's rule.
func initialPassword(s Spec, p *roster.Person) string {
	if p.Role == roster.Pupil && s.Passwords.Pupils == PasswordBirthDate && p.BirthDate != "" {
		return birthDatePassword(p.BirthDate)
	}
	return randomPassword(s.Passwords.Length)
}

func cond(c bool, yes, no string) string {
	if c {
		return yes
	}
	return no
}

// moveOrModify moves an account (to the archive, back, to another OU),
// then sets its attributes.
func (a *applier) moveOrModify(c *ldap.Conn, i int) {
	o := &a.st.ops[i]
	dn := o.dn
	if o.kind == opUserMove {
		rdn, _, _ := strings.Cut(o.newDN, ",")
		_, sup, _ := strings.Cut(o.newDN, ",")
		err := c.ModifyDN(ldap.NewModifyDNRequest(o.dn, rdn, true, sup))
		if err != nil && !(ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) && a.exists(c, o.newDN)) {
			a.fail(i, opError("move", o.dn, err))
			return
		}
		dn = o.newDN
	}
	if len(o.mods) > 0 {
		if err := c.Modify(modifyRequest(dn, o.mods)); err != nil {
			a.fail(i, opError("modify", dn, err))
			return
		}
	}
	a.ok(i)
}

func (a *applier) exists(c *ldap.Conn, dn string) bool {
	_, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"1.1"}, nil))
	return err == nil
}

// members sets a group's attributes and memberships. The members that are
// new accounts which failed to be created are left out.
func (a *applier) members(c *ldap.Conn, i int) {
	o := &a.st.ops[i]
	keep := func(logins []string) []string {
		out := logins[:0:0]
		for _, l := range logins {
			if j, ok := a.st.loginOp[l]; !ok || a.applied(j) {
				out = append(out, l)
			}
		}
		return out
	}
	mods := slices.Clone(o.mods)
	if add := keep(append(o.members, o.addUIDs...)); len(add) > 0 {
		mods = append(mods, mod{op: "add", attr: "memberUid", values: add})
	}
	if len(o.delUIDs) > 0 {
		mods = append(mods, mod{op: "delete", attr: "memberUid", values: o.delUIDs})
	}
	if len(mods) > 0 {
		if err := c.Modify(modifyRequest(o.dn, mods)); err != nil {
			a.fail(i, opError("modify", o.dn, err))
			return
		}
	}
	if o.kind == opGroupModify {
		a.ok(i)
	}
}

func modifyRequest(dn string, mods []mod) *ldap.ModifyRequest {
	req := ldap.NewModifyRequest(dn, permissive())
	for _, m := range mods {
		switch m.op {
		case "add":
			req.Add(m.attr, m.values)
		case "delete":
			req.Delete(m.attr, m.values)
		default:
			req.Replace(m.attr, m.values)
		}
	}
	return req
}
