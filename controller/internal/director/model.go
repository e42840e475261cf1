package director

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/alize-eple/alize/controller/internal/store"
	"github.com/alize-eple/alize/modules/schema"
)

// model is the whole inventory in memory, as a change sees it: loaded
// under the compile lock, changed by the change, then compiled.
type model struct {
	academies      map[string]store.Academy
	establishments map[string]store.Establishment
	servers        map[string]store.Server // not revoked
	groups         map[string]store.Group
	vars           map[store.Level]map[string]store.Variable
	assigns        map[store.Level]map[string]store.Assignment
	modules        map[string]store.Module // name@version, without definitions
	blobs          map[string]int64        // digest → size
	manifests      map[string]store.Manifest
	secrets        map[string]string // level/name → a secret variable's value, opened
}

func moduleKey(name, version string) string { return name + "@" + version }

func varKey(l store.Level, name string) string { return l.String() + "/" + name }

// load reads the model from the store. With only set, the change at hand
// concerns that one server: its establishment, itself and its manifest
// are read, not every server's (enrolling the fleet one server at a time
// would read the fleet each time), and everything else as usual.
// loadScope is the part of the inventory a change needs: all of it, one
// server (and its establishment), or one establishment and its servers.
// Academies, groups, variables, assignments and modules are always
// loaded whole: they are few.
type loadScope struct {
	server string
	uai    string
}

func (d *Director) load(ctx context.Context, only loadScope) (*model, error) {
	m := &model{
		academies:      map[string]store.Academy{},
		establishments: map[string]store.Establishment{},
		servers:        map[string]store.Server{},
		groups:         map[string]store.Group{},
		vars:           map[store.Level]map[string]store.Variable{},
		assigns:        map[store.Level]map[string]store.Assignment{},
		modules:        map[string]store.Module{},
		blobs:          map[string]int64{},
		manifests:      map[string]store.Manifest{},
		secrets:        map[string]string{},
	}
	s := d.cfg.Store
	as, err := s.Academies(ctx)
	if err != nil {
		return nil, err
	}
	for _, a := range as {
		m.academies[a.Name] = a
	}
	var es []store.Establishment
	var svs []store.Server
	switch {
	case only.uai != "":
		e, err := s.Establishment(ctx, only.uai)
		switch {
		case errors.Is(err, store.ErrNotFound): // a new one
		case err != nil:
			return nil, err
		default:
			es = append(es, e)
		}
		if svs, err = s.ServersOf(ctx, only.uai); err != nil {
			return nil, err
		}
	case only.server == "":
		if es, err = s.Establishments(ctx); err != nil {
			return nil, err
		}
		if svs, err = s.Servers(ctx); err != nil {
			return nil, err
		}
	default:
		sv, err := s.Server(ctx, only.server)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return nil, err
		default:
			svs = append(svs, sv)
			e, err := s.Establishment(ctx, sv.UAI)
			if err != nil {
				return nil, err
			}
			es = append(es, e)
		}
	}
	for _, e := range es {
		m.establishments[e.UAI] = e
	}
	for _, sv := range svs {
		if sv.Revoked.IsZero() {
			m.servers[sv.ID] = sv
		}
	}
	gs, err := s.Groups(ctx)
	if err != nil {
		return nil, err
	}
	for _, g := range gs {
		m.groups[g.Name] = g
	}
	vs, err := s.Variables(ctx)
	if err != nil {
		return nil, err
	}
	for _, v := range vs {
		m.setVar(v)
		if v.Secret() {
			plain, err := d.cfg.Secrets.Open(v.Sealed)
			if err != nil {
				return nil, fmt.Errorf("variable %s.%s: %w", v.Level, v.Name, err)
			}
			m.secrets[varKey(v.Level, v.Name)] = plain
		}
	}
	asg, err := s.Assignments(ctx)
	if err != nil {
		return nil, err
	}
	for _, a := range asg {
		m.setAssign(a)
	}
	mods, err := s.Modules(ctx)
	if err != nil {
		return nil, err
	}
	for _, mod := range mods {
		m.modules[moduleKey(mod.Name, mod.Version)] = mod
	}
	bs, err := s.Blobs(ctx)
	if err != nil {
		return nil, err
	}
	for _, b := range bs {
		m.blobs[b.Digest] = b.Size
	}
	var mfs []store.Manifest
	if only == (loadScope{}) {
		if mfs, err = s.Manifests(ctx); err != nil {
			return nil, err
		}
	} else {
		for id := range m.servers {
			mf, err := s.Manifest(ctx, id)
			switch {
			case errors.Is(err, store.ErrNotFound):
			case err != nil:
				return nil, err
			default:
				mf.Envelope = nil // the model keeps manifests' records, not their bytes
				mfs = append(mfs, mf)
			}
		}
	}
	for _, mf := range mfs {
		m.manifests[mf.ServerID] = mf
	}
	return m, nil
}

func (m *model) setVar(v store.Variable) {
	if m.vars[v.Level] == nil {
		m.vars[v.Level] = map[string]store.Variable{}
	}
	m.vars[v.Level][v.Name] = v
}

func (m *model) setAssign(a store.Assignment) {
	if m.assigns[a.Level] == nil {
		m.assigns[a.Level] = map[string]store.Assignment{}
	}
	m.assigns[a.Level][a.Module] = a
}

// groupsOf returns the groups a server belongs to, highest priority
// first, then by name.
func (m *model) groupsOf(sv store.Server) []store.Group {
	est := m.establishments[sv.UAI]
	var out []store.Group
	for _, g := range m.groups {
		if inGroup(g, sv, est) {
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b store.Group) int {
		if a.Priority != b.Priority {
			return b.Priority - a.Priority
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

func inGroup(g store.Group, sv store.Server, est store.Establishment) bool {
	if slices.Contains(g.Members, sv.ID) || slices.Contains(g.Members, sv.UAI) {
		return true
	}
	if g.Rule == nil {
		return false
	}
	// A group of an academy holds only that academy's establishments.
	if g.Academy != "" && est.Academy != g.Academy {
		return false
	}
	r := g.Rule
	match := func(vals []string, v string) bool { return len(vals) == 0 || slices.Contains(vals, v) }
	dep := ""
	if len(est.UAI) >= 3 {
		dep = est.UAI[:3]
	}
	return match(r.Academies, est.Academy) && match(r.Types, est.Type) && match(r.Zones, est.Zone) && match(r.Departements, dep)
}

// levelsOf returns a server's levels, highest first: server,
// establishment, groups, academy, fleet; with the name each has in
// resolution paths ("group:lycees").
func (m *model) levelsOf(sv store.Server) []namedLevel {
	est := m.establishments[sv.UAI]
	out := []namedLevel{
		{"server", store.Level{Kind: store.LevelServer, ID: sv.ID}},
		{"establishment", store.Level{Kind: store.LevelEstablishment, ID: sv.UAI}},
	}
	for _, g := range m.groupsOf(sv) {
		out = append(out, namedLevel{"group:" + g.Name, store.Level{Kind: store.LevelGroup, ID: g.Name}})
	}
	out = append(out,
		namedLevel{"academy", store.Level{Kind: store.LevelAcademy, ID: est.Academy}},
		namedLevel{"fleet", store.Level{Kind: store.LevelFleet}})
	return out
}

type namedLevel struct {
	name  string
	level store.Level
}

// scope is the servers a change concerns.
type scope struct {
	all bool
	ids map[string]bool
}

func (s *scope) add(ids ...string) {
	if s.ids == nil {
		s.ids = map[string]bool{}
	}
	for _, id := range ids {
		s.ids[id] = true
	}
}

// serversAt adds to sc the servers a level concerns, in m.
func (m *model) serversAt(sc *scope, l store.Level) {
	switch l.Kind {
	case store.LevelFleet:
		sc.all = true
	case store.LevelServer:
		if _, ok := m.servers[l.ID]; ok {
			sc.add(l.ID)
		}
	default:
		for id, sv := range m.servers {
			if m.atLevel(sv, l) {
				sc.add(id)
			}
		}
	}
}

// atLevel reports whether level l concerns server sv.
func (m *model) atLevel(sv store.Server, l store.Level) bool {
	switch l.Kind {
	case store.LevelFleet:
		return true
	case store.LevelServer:
		return sv.ID == l.ID
	case store.LevelEstablishment:
		return sv.UAI == l.ID
	case store.LevelAcademy:
		return m.establishments[sv.UAI].Academy == l.ID
	case store.LevelGroup:
		g, ok := m.groups[l.ID]
		return ok && inGroup(g, sv, m.establishments[sv.UAI])
	}
	return false
}

// ids lists the servers of a scope, sorted.
func (m *model) ids(sc scope) []string {
	var out []string
	for id := range m.servers {
		if sc.all || sc.ids[id] {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// academyOf returns the academy a level belongs to ("" for the fleet
// and fleet-wide groups), for authorization.
func (m *model) academyOf(l store.Level) (string, error) {
	switch l.Kind {
	case store.LevelFleet:
		return "", nil
	case store.LevelAcademy:
		if _, ok := m.academies[l.ID]; !ok {
			return "", fmt.Errorf("no academy %q", l.ID)
		}
		return l.ID, nil
	case store.LevelEstablishment:
		e, ok := m.establishments[l.ID]
		if !ok {
			return "", fmt.Errorf("no establishment %q", l.ID)
		}
		return e.Academy, nil
	case store.LevelServer:
		sv, ok := m.servers[l.ID]
		if !ok {
			return "", fmt.Errorf("no server %q", l.ID)
		}
		return m.establishments[sv.UAI].Academy, nil
	case store.LevelGroup:
		g, ok := m.groups[l.ID]
		if !ok {
			return "", fmt.Errorf("no group %q", l.ID)
		}
		return g.Academy, nil
	}
	return "", fmt.Errorf("unknown level kind %q", l.Kind)
}

// Inventory variables: a module that declares one of these gets its value
// from the inventory, above every level, and no level may set it.
var inventoryVars = []string{"uai", "academy", "establishment_name", "establishment_type", "holiday_zone", "server_id", "server_role"}

// Reserved reports whether name is an inventory variable.
func Reserved(name string) bool { return slices.Contains(inventoryVars, name) }

func (m *model) inventoryLevel(sv store.Server, d *schema.Dictionary) schema.Level {
	est := m.establishments[sv.UAI]
	vals := map[string]any{
		"uai": sv.UAI, "academy": est.Academy, "establishment_name": est.Name,
		"establishment_type": est.Type, "holiday_zone": est.Zone,
		"server_id": sv.ID, "server_role": sv.Role,
	}
	lv := schema.Level{Name: "inventory", Values: map[string]any{}}
	for k, v := range vals {
		if _, ok := d.Lookup(k); ok && v != "" {
			lv.Values[k] = v
		}
	}
	return lv
}
