package accounts

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/alize-eple/alize/modules"
)

// Archived is a leaver's account in the archive OU.
type Archived struct {
	DN    string    `json:"dn"`
	ID    string    `json:"id"` // the person's stable id
	Login string    `json:"login"`
	Left  time.Time `json:"left"` // the day it was archived (its shadowExpire)
}

// Expired lists the archived accounts kept longer than
// leavers.retention_days: what Purge may delete. It never writes.
func (k *Accounts) Expired(ctx context.Context, want Spec) ([]Archived, error) {
	s := want.withDefaults()
	var errs modules.FieldErrors
	if s.validate(&errs); len(errs) > 0 {
		return nil, fmt.Errorf("accounts: %w", errs)
	}
	l := newLayout(s)
	p, err := k.connect(ctx, &s, 1)
	if err != nil {
		return nil, err
	}
	defer p.close()
	res, err := p.conn(0).SearchWithPaging(ldap.NewSearchRequest(l.archive, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false,
		"(&(objectClass=posixAccount)(employeeNumber=*)(shadowExpire=*))", []string{"uid", "employeeNumber", "labeledURI", "shadowExpire"}, nil), pageSize)
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("accounts: %w", opError("search", l.archive, err))
	}
	limit := k.cfg.Now().Add(-time.Duration(s.Leavers.RetentionDays) * 24 * time.Hour)
	var out []Archived
	for _, e := range res.Entries {
		pe := parse(e)
		if !marked(pe.attrs) {
			continue
		}
		day, err := strconv.ParseInt(first(pe.attrs["shadowexpire"]), 10, 64)
		if err != nil {
			continue
		}
		left := time.Unix(day*86400, 0).UTC()
		if left.After(limit) {
			continue
		}
		out = append(out, Archived{DN: e.DN, ID: first(pe.attrs["employeenumber"]), Login: first(pe.attrs["uid"]), Left: left})
	}
	slices.SortFunc(out, func(a, b Archived) int { return strings.Compare(a.DN, b.DN) })
	return out, nil
}

// Purge deletes the directory entries of the given archived accounts,
// each of which must be one Expired lists. Their home directories and
// files are not the kind's: the shares kind or the technician removes
// them. Apply never purges; Purge is the explicit step after retention.
func (k *Accounts) Purge(ctx context.Context, want Spec, dns []string) error {
	expired, err := k.Expired(ctx, want)
	if err != nil {
		return err
	}
	ok := map[string]bool{}
	for _, a := range expired {
		ok[a.DN] = true
	}
	for _, dn := range dns {
		if !ok[dn] {
			return fmt.Errorf("accounts: purge %s: not an archived account past its retention (see Expired): nothing deleted", dn)
		}
	}
	s := want.withDefaults()
	p, err := k.connect(ctx, &s, 1)
	if err != nil {
		return err
	}
	defer p.close()
	for _, dn := range dns {
		if err := p.conn(0).Del(ldap.NewDelRequest(dn, nil)); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			return fmt.Errorf("accounts: %w", opError("delete", dn, err))
		}
		k.log.Info("archived account purged", "dn", dn)
	}
	return nil
}

// marked reports whether an entry carries the kind's marker.
func marked(attrs map[string][]string) bool {
	for _, u := range attrs["labeleduri"] {
		if f, _, _ := strings.Cut(u, " "); f == Marker {
			return true
		}
	}
	return false
}
