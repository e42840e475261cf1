package director

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/controller/internal/store"
	"github.com/alize-eple/alize/modules/manifest"
	"github.com/alize-eple/alize/modules/schema"
	"github.com/hashicorp/go-version"
)

var (
	nameRE    = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	academyRE = regexp.MustCompile(`^[a-z]+(-[a-z]+)*$`)
	groupRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
)

// ParseLevel reads a level as operators write it: "fleet",
// "academy:versailles", "group:lycees", "establishment:0951099D",
// "server:<id>".
func ParseLevel(s string) (store.Level, error) {
	if s == store.LevelFleet {
		return store.Level{Kind: store.LevelFleet}, nil
	}
	kind, id, ok := strings.Cut(s, ":")
	switch {
	case !ok || id == "":
	case kind == store.LevelAcademy, kind == store.LevelGroup, kind == store.LevelEstablishment, kind == store.LevelServer:
		return store.Level{Kind: kind, ID: id}, nil
	}
	return store.Level{}, invalid("level %q: want fleet, academy:<name>, group:<name>, establishment:<uai> or server:<id>", s)
}

// LevelAcademy returns the academy a level belongs to ("" for the fleet
// and fleet-wide groups), for authorization; an InputError when the
// level does not exist.
func (d *Director) LevelAcademy(ctx context.Context, l store.Level) (string, error) {
	s := d.cfg.Store
	switch l.Kind {
	case store.LevelFleet:
		return "", nil
	case store.LevelAcademy:
		as, err := s.Academies(ctx)
		if err != nil {
			return "", err
		}
		if !slices.ContainsFunc(as, func(a store.Academy) bool { return a.Name == l.ID }) {
			return "", invalid("no academy %q", l.ID)
		}
		return l.ID, nil
	case store.LevelEstablishment:
		e, err := s.Establishment(ctx, l.ID)
		if errors.Is(err, store.ErrNotFound) {
			return "", invalid("no establishment %q", l.ID)
		}
		return e.Academy, err
	case store.LevelServer:
		sv, err := s.Server(ctx, l.ID)
		if errors.Is(err, store.ErrNotFound) {
			return "", invalid("no server %q", l.ID)
		}
		if err != nil {
			return "", err
		}
		e, err := s.Establishment(ctx, sv.UAI)
		return e.Academy, err
	case store.LevelGroup:
		gs, err := s.Groups(ctx)
		if err != nil {
			return "", err
		}
		for _, g := range gs {
			if g.Name == l.ID {
				return g.Academy, nil
			}
		}
		return "", invalid("no group %q", l.ID)
	}
	return "", invalid("unknown level kind %q", l.Kind)
}

func digestJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return manifest.Digest(b)
}

// checkLevel checks that a level exists in m.
func checkLevel(m *model, l store.Level) error {
	if _, err := m.academyOf(l); err != nil {
		return &InputError{Err: fmt.Errorf("level %s: %w", l, err)}
	}
	return nil
}

// SetVariable sets, or with Unset removes, a variable at a level.
type SetVariable struct {
	Level  store.Level
	Name   string
	Value  json.RawMessage // JSON: a string, number, bool, or list of those
	Secret *string         // a secret value, instead of Value
	Unset  bool
	Actor  string
}

func (c SetVariable) apply(d *Director, m *model, b *store.Batch, now time.Time) (scope, store.AuditEntry, error) {
	var sc scope
	if err := checkLevel(m, c.Level); err != nil {
		return sc, store.AuditEntry{}, err
	}
	path := c.Level.String() + "." + c.Name
	if !nameRE.MatchString(c.Name) {
		return sc, store.AuditEntry{}, invalid("%s: a variable name is a-z, 0-9 and _, starting with a letter, at most 64", path)
	}
	if Reserved(c.Name) {
		return sc, store.AuditEntry{}, invalid("%s: comes from the inventory (%s), it cannot be set", path, strings.Join(inventoryVars, ", "))
	}
	prev, had := m.vars[c.Level][c.Name]
	audit := store.AuditEntry{Action: "var.set", Target: path}
	if had {
		audit.Before = variableDigest(prev)
	}
	m.serversAt(&sc, c.Level)
	if c.Unset {
		if !had {
			return sc, store.AuditEntry{}, invalid("%s is not set", path)
		}
		audit.Action = "var.unset"
		delete(m.vars[c.Level], c.Name)
		b.DeleteVariables = append(b.DeleteVariables, store.VariableKey{Level: c.Level, Name: c.Name})
		return sc, audit, nil
	}
	v := store.Variable{Level: c.Level, Name: c.Name, Generation: prev.Generation + 1, Updated: now, UpdatedBy: c.Actor}
	switch {
	case c.Secret != nil && len(c.Value) > 0:
		return sc, store.AuditEntry{}, invalid("%s: give a value or a secret, not both", path)
	case c.Secret != nil:
		if *c.Secret == "" {
			return sc, store.AuditEntry{}, invalid("%s: empty secret", path)
		}
		sealed, err := d.cfg.Secrets.Seal(*c.Secret)
		if err != nil {
			return sc, store.AuditEntry{}, invalid("%s: %v", path, err)
		}
		v.Value, v.Sealed = json.RawMessage("null"), sealed
		m.secrets[varKey(c.Level, c.Name)] = *c.Secret
		audit.Detail = json.RawMessage(`{"secret":true}`)
	default:
		value, err := checkValue(c.Value)
		if err != nil {
			return sc, store.AuditEntry{}, invalid("%s: %v", path, err)
		}
		v.Value = value
		audit.Detail, _ = json.Marshal(map[string]json.RawMessage{"value": value})
	}
	audit.After = variableDigest(v)
	m.setVar(v)
	b.Variables = append(b.Variables, v)
	return sc, audit, nil
}

func variableDigest(v store.Variable) string {
	if v.Secret() {
		return manifest.Digest(v.Sealed)
	}
	return manifest.Digest(v.Value)
}

// maxValue bounds a variable's JSON value.
const maxValue = 64 << 10

// checkValue checks a variable's value: a JSON string, number, bool, or
// list of those; it returns it compact.
func checkValue(raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 {
		return nil, errors.New("no value")
	}
	if len(raw) > maxValue {
		return nil, fmt.Errorf("value of %d bytes, at most %d", len(raw), maxValue)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return nil, fmt.Errorf("not JSON: %v", err)
	}
	if dec.More() {
		return nil, errors.New("not one JSON value")
	}
	scalar := func(x any) bool {
		switch x.(type) {
		case string, json.Number, bool:
			return true
		}
		return false
	}
	switch x := x.(type) {
	case nil:
		return nil, errors.New("null: to remove a value, unset it")
	case []any:
		for i, e := range x {
			if !scalar(e) {
				return nil, fmt.Errorf("[%d]: a list holds strings, numbers or booleans", i)
			}
		}
	default:
		if !scalar(x) {
			return nil, errors.New("a value is a string, a number, a boolean or a list of those")
		}
	}
	var out bytes.Buffer
	if err := json.Compact(&out, raw); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// Assign assigns a module version at a level, or with Unassign removes
// the assignment.
type Assign struct {
	Level    store.Level
	Module   string
	Version  string // or store.VersionNone
	Unassign bool
	Actor    string
}

func (c Assign) apply(_ *Director, m *model, b *store.Batch, now time.Time) (scope, store.AuditEntry, error) {
	var sc scope
	if err := checkLevel(m, c.Level); err != nil {
		return sc, store.AuditEntry{}, err
	}
	target := c.Level.String() + "/" + c.Module
	prev, had := m.assigns[c.Level][c.Module]
	audit := store.AuditEntry{Action: "assign", Target: target}
	if had {
		audit.Before = manifest.Digest([]byte(prev.Module + "@" + prev.Version))
	}
	m.serversAt(&sc, c.Level)
	if c.Unassign {
		if !had {
			return sc, store.AuditEntry{}, invalid("%s is not assigned at %s", c.Module, c.Level)
		}
		audit.Action = "unassign"
		delete(m.assigns[c.Level], c.Module)
		b.DeleteAssignments = append(b.DeleteAssignments, store.AssignmentKey{Level: c.Level, Module: c.Module})
		return sc, audit, nil
	}
	if c.Version != store.VersionNone {
		if _, ok := m.modules[moduleKey(c.Module, c.Version)]; !ok {
			return sc, store.AuditEntry{}, invalid("module %s %s is not published: module publish it first", c.Module, c.Version)
		}
	}
	a := store.Assignment{Level: c.Level, Module: c.Module, Version: c.Version, Updated: now, UpdatedBy: c.Actor}
	audit.After = manifest.Digest([]byte(a.Module + "@" + a.Version))
	audit.Detail, _ = json.Marshal(map[string]string{"version": c.Version})
	m.setAssign(a)
	b.Assignments = append(b.Assignments, a)
	return sc, audit, nil
}

// PutAcademy adds an academy, or changes its title.
type PutAcademy struct{ Academy store.Academy }

func (c PutAcademy) apply(_ *Director, m *model, b *store.Batch, now time.Time) (scope, store.AuditEntry, error) {
	a := c.Academy
	var errs []string
	if !academyRE.MatchString(a.Name) || len(a.Name) > 64 {
		errs = append(errs, fmt.Sprintf("name: %q: lowercase words joined by - (versailles, aix-marseille)", a.Name))
	}
	if a.Title == "" || len(a.Title) > 200 {
		errs = append(errs, "title: 1 to 200 characters")
	}
	if len(errs) > 0 {
		return scope{}, store.AuditEntry{}, invalid("academy: %s", strings.Join(errs, "; "))
	}
	audit := store.AuditEntry{Action: "academy.put", Target: "academy:" + a.Name}
	if prev, ok := m.academies[a.Name]; ok {
		a.Created = prev.Created
		audit.Before = digestJSON(prev)
	} else {
		a.Created = now
	}
	audit.After = digestJSON(a)
	m.academies[a.Name] = a
	b.Academies = append(b.Academies, a)
	return scope{}, audit, nil
}

var (
	establishmentTypes = []string{api.TypeCollege, api.TypeLycee, api.TypeLP, api.TypeEREA}
	zones              = []string{"A", "B", "C"}
)

// PutEstablishment adds or changes an establishment.
type PutEstablishment struct{ Establishment store.Establishment }

func (c PutEstablishment) establishment() string { return c.Establishment.UAI }

func (c PutEstablishment) apply(_ *Director, m *model, b *store.Batch, now time.Time) (scope, store.AuditEntry, error) {
	e := c.Establishment
	var errs []string
	if err := schema.ValidUAI(e.UAI); err != nil {
		errs = append(errs, fmt.Sprintf("uai: %v", err))
	}
	if _, ok := m.academies[e.Academy]; !ok {
		errs = append(errs, fmt.Sprintf("academy: no academy %q", e.Academy))
	}
	if e.Name == "" || len(e.Name) > 200 {
		errs = append(errs, "name: 1 to 200 characters")
	}
	if !slices.Contains(establishmentTypes, e.Type) {
		errs = append(errs, fmt.Sprintf("type: %q: want one of %s", e.Type, strings.Join(establishmentTypes, ", ")))
	}
	if !slices.Contains(zones, e.Zone) {
		errs = append(errs, fmt.Sprintf("zone: %q: want A, B or C", e.Zone))
	}
	if len(errs) > 0 {
		return scope{}, store.AuditEntry{}, invalid("establishment: %s", strings.Join(errs, "; "))
	}
	audit := store.AuditEntry{Action: "establishment.put", Target: "establishment:" + e.UAI}
	if prev, ok := m.establishments[e.UAI]; ok {
		e.Created = prev.Created
		audit.Before = digestJSON(prev)
	} else {
		e.Created = now
	}
	audit.After = digestJSON(e)
	m.establishments[e.UAI] = e
	b.Establishments = append(b.Establishments, e)
	var sc scope
	m.serversAt(&sc, store.Level{Kind: store.LevelEstablishment, ID: e.UAI})
	return sc, audit, nil
}

// PutGroup adds, changes or (Delete) removes a group. Removing one
// removes the variables and assignments set at its level.
type PutGroup struct {
	Group  store.Group
	Delete bool
}

func (c PutGroup) apply(_ *Director, m *model, b *store.Batch, now time.Time) (scope, store.AuditEntry, error) {
	g := c.Group
	var sc scope
	level := store.Level{Kind: store.LevelGroup, ID: g.Name}
	prev, had := m.groups[g.Name]
	if had {
		m.serversAt(&sc, level)
	}
	audit := store.AuditEntry{Action: "group.put", Target: "group:" + g.Name}
	if had {
		audit.Before = digestJSON(prev)
	}
	if c.Delete {
		if !had {
			return sc, store.AuditEntry{}, invalid("no group %q", g.Name)
		}
		audit.Action = "group.delete"
		for name := range m.vars[level] {
			b.DeleteVariables = append(b.DeleteVariables, store.VariableKey{Level: level, Name: name})
		}
		for name := range m.assigns[level] {
			b.DeleteAssignments = append(b.DeleteAssignments, store.AssignmentKey{Level: level, Module: name})
		}
		delete(m.vars, level)
		delete(m.assigns, level)
		delete(m.groups, g.Name)
		b.DeleteGroups = append(b.DeleteGroups, g.Name)
		return sc, audit, nil
	}
	var errs []string
	if !groupRE.MatchString(g.Name) {
		errs = append(errs, fmt.Sprintf("name: %q: a-z, 0-9, . _ -, at most 64", g.Name))
	}
	if g.Academy != "" {
		if _, ok := m.academies[g.Academy]; !ok {
			errs = append(errs, fmt.Sprintf("academy: no academy %q", g.Academy))
		}
	}
	for i, mem := range g.Members {
		_, isUAI := m.establishments[mem]
		sv, isServer := m.servers[mem]
		switch {
		case !isUAI && !isServer:
			errs = append(errs, fmt.Sprintf("members[%d]: %q is neither an establishment's UAI nor a server id", i, mem))
		case g.Academy != "" && isUAI && m.establishments[mem].Academy != g.Academy,
			g.Academy != "" && isServer && m.establishments[sv.UAI].Academy != g.Academy:
			errs = append(errs, fmt.Sprintf("members[%d]: %q is not of academy %s", i, mem, g.Academy))
		}
	}
	if r := g.Rule; r != nil {
		for i, a := range r.Academies {
			if _, ok := m.academies[a]; !ok {
				errs = append(errs, fmt.Sprintf("rule.academies[%d]: no academy %q", i, a))
			}
		}
		for i, t := range r.Types {
			if !slices.Contains(establishmentTypes, t) {
				errs = append(errs, fmt.Sprintf("rule.types[%d]: %q: want one of %s", i, t, strings.Join(establishmentTypes, ", ")))
			}
		}
		for i, z := range r.Zones {
			if !slices.Contains(zones, z) {
				errs = append(errs, fmt.Sprintf("rule.zones[%d]: %q: want A, B or C", i, z))
			}
		}
		for i, dep := range r.Departements {
			if len(dep) != 3 {
				errs = append(errs, fmt.Sprintf("rule.departements[%d]: %q: the 3 first characters of a UAI", i, dep))
			}
		}
	}
	if len(errs) > 0 {
		return sc, store.AuditEntry{}, invalid("group %s: %s", g.Name, strings.Join(errs, "; "))
	}
	audit.After = digestJSON(g)
	m.groups[g.Name] = g
	m.serversAt(&sc, level)
	b.Groups = append(b.Groups, g)
	return sc, audit, nil
}

// Push rebuilds the manifests of a level's servers; with Force, it
// re-signs those whose inputs did not change too.
type Push struct {
	Level store.Level
	Force bool
}

func (c Push) apply(_ *Director, m *model, _ *store.Batch, _ time.Time) (scope, store.AuditEntry, error) {
	var sc scope
	if err := checkLevel(m, c.Level); err != nil {
		return sc, store.AuditEntry{}, err
	}
	m.serversAt(&sc, c.Level)
	detail, _ := json.Marshal(map[string]bool{"force": c.Force})
	return sc, store.AuditEntry{Action: "push", Target: c.Level.String(), Detail: detail}, nil
}

func (c Push) lenient() bool { return true }
func (c Push) force() bool   { return c.Force }

// Enrolled builds the first manifest of a server that just enrolled (its
// enrollment is audited already).
type Enrolled struct{ ServerID string }

func (c Enrolled) apply(_ *Director, m *model, _ *store.Batch, _ time.Time) (scope, store.AuditEntry, error) {
	var sc scope
	if _, ok := m.servers[c.ServerID]; !ok {
		return sc, store.AuditEntry{}, fmt.Errorf("director: enrolled server %s is not in the store", c.ServerID)
	}
	sc.add(c.ServerID)
	return sc, store.AuditEntry{}, nil
}

func (c Enrolled) lenient() bool { return true }

func (c Enrolled) server() string { return c.ServerID }

// refresh re-signs manifests close to their end and retries servers
// without one.
type refresh struct{}

func (refresh) apply(d *Director, m *model, _ *store.Batch, now time.Time) (scope, store.AuditEntry, error) {
	var sc scope
	for id, sv := range m.servers {
		mf, ok := m.manifests[id]
		if !ok || sv.CompileError != "" || mf.Expires.Sub(now) <= d.cfg.RenewBefore {
			sc.add(id)
		}
	}
	return sc, store.AuditEntry{}, nil
}

func (refresh) lenient() bool { return true }

// RevokeServer puts a server's certificates on the deny-list.
type RevokeServer struct{ ServerID string }

func (c RevokeServer) apply(_ *Director, m *model, b *store.Batch, now time.Time) (scope, store.AuditEntry, error) {
	if _, ok := m.servers[c.ServerID]; !ok {
		return scope{}, store.AuditEntry{}, invalid("no server %q (or revoked already)", c.ServerID)
	}
	delete(m.servers, c.ServerID)
	b.RevokeServers = append(b.RevokeServers, store.ServerRevocation{ID: c.ServerID, Time: now})
	b.Events = append(b.Events, store.Event{Kind: store.EventRevoked, IDs: []string{c.ServerID}})
	return scope{}, store.AuditEntry{Action: "server.revoke", Target: "server:" + c.ServerID}, nil
}

// Publish verifies and stores a module version: its release must be
// signed by the release role of the current root, for exactly this
// definition, of a kind the controller knows, with a release counter
// consistent with the module's other versions.
func (d *Director) Publish(ctx context.Context, definition, release []byte, actor string) (store.Module, error) {
	if len(definition) > schema.MaxModuleSize {
		return store.Module{}, invalid("definition: %d bytes, at most %d", len(definition), schema.MaxModuleSize)
	}
	if len(bytes.TrimSpace(release)) == 0 || string(release) == "null" {
		return store.Module{}, invalid("release: missing: sign the definition with the release key (module sign) and publish both")
	}
	rel, err := d.cfg.Trust().VerifyRelease(release)
	if err != nil {
		return store.Module{}, invalid("release: refused: %v", err)
	}
	if got := manifest.Digest(definition); got != rel.Digest {
		return store.Module{}, invalid("release: it signs definition %s, this definition is %s: publish the file exactly as signed", rel.Digest, got)
	}
	mod, err := schema.ParseModule(definition)
	if err != nil {
		return store.Module{}, invalid("definition: %v", err)
	}
	var errs []string
	if mod.Name != rel.Name || mod.Version != rel.Version || mod.Kind != rel.Kind {
		errs = append(errs, fmt.Sprintf("the release is for %s %s (kind %s), the definition is %s %s (kind %s)", rel.Name, rel.Version, rel.Kind, mod.Name, mod.Version, mod.Kind))
	}
	if mod.Requires.Agent != rel.Agent {
		errs = append(errs, fmt.Sprintf("the release allows agents %q, the definition requires %q", rel.Agent, mod.Requires.Agent))
	}
	if _, ok := d.cfg.Checkers[mod.Kind]; !ok {
		errs = append(errs, fmt.Sprintf("kind %q is not known to this controller", mod.Kind))
	}
	if len(errs) > 0 {
		return store.Module{}, invalid("module %s %s: %s", mod.Name, mod.Version, strings.Join(errs, "; "))
	}
	unlock, err := d.cfg.Store.Lock(ctx)
	if err != nil {
		return store.Module{}, err
	}
	defer unlock()
	existing, err := d.cfg.Store.Modules(ctx)
	if err != nil {
		return store.Module{}, err
	}
	nv, _ := version.NewSemver(rel.Version)
	for _, e := range existing {
		if e.Name != rel.Name {
			continue
		}
		if e.Version == rel.Version {
			if e.Digest == rel.Digest {
				return store.Module{}, &InputError{Err: fmt.Errorf("module %s %s is published already: %w", e.Name, e.Version, store.ErrConflict)}
			}
			return store.Module{}, &InputError{Err: fmt.Errorf("module %s %s is published already with another definition: publish a new version: %w", e.Name, e.Version, store.ErrConflict)}
		}
		ev, err := version.NewSemver(e.Version)
		if err != nil {
			continue
		}
		if (ev.LessThan(nv) && e.Counter >= rel.Counter) || (nv.LessThan(ev) && e.Counter <= rel.Counter) {
			return store.Module{}, invalid("release counter %d does not fit: version %s has counter %d; a later version has a higher counter", rel.Counter, e.Version, e.Counter)
		}
	}
	now := d.cfg.Clock().UTC()
	m := store.Module{
		Name: rel.Name, Version: rel.Version, Kind: rel.Kind, Counter: rel.Counter, Digest: rel.Digest, Agent: rel.Agent,
		Definition: definition, Release: release, Published: now, PublishedBy: actor,
	}
	detail, _ := json.Marshal(map[string]any{"kind": rel.Kind, "counter": rel.Counter})
	err = d.cfg.Store.Commit(ctx, &store.Batch{
		Modules: []store.Module{m},
		// The agents fetch the definition by digest, as a blob.
		Blobs: []store.Blob{{Digest: rel.Digest, Size: int64(len(definition)), Data: definition, Created: now}},
		Audit: []store.AuditEntry{{Time: now, Actor: actor, Action: "module.publish", Target: "module:" + rel.Name + "@" + rel.Version, After: rel.Digest, Detail: detail}},
	})
	if errors.Is(err, store.ErrConflict) {
		return store.Module{}, &InputError{Err: err}
	}
	if err != nil {
		return store.Module{}, err
	}
	m.Definition, m.Release = nil, nil
	return m, nil
}

// RosterVariable is the establishment variable that names its roster
// blob (the accounts modules' roster_blob).
const RosterVariable = "roster_blob"

// ImportRoster stores an establishment's roster (the canonical CSV) as a
// blob and points the establishment's roster variable at it.
type ImportRoster struct {
	UAI    string
	Data   []byte
	People int
	Actor  string
}

func (c ImportRoster) apply(d *Director, m *model, b *store.Batch, now time.Time) (scope, store.AuditEntry, error) {
	if _, ok := m.establishments[c.UAI]; !ok {
		return scope{}, store.AuditEntry{}, invalid("no establishment %q", c.UAI)
	}
	if int64(len(c.Data)) > manifest.MaxBlobSize {
		return scope{}, store.AuditEntry{}, invalid("roster of %d bytes, at most %d", len(c.Data), manifest.MaxBlobSize)
	}
	digest := manifest.Digest(c.Data)
	b.Blobs = append(b.Blobs, store.Blob{Digest: digest, Size: int64(len(c.Data)), Data: c.Data, Created: now})
	m.blobs[digest] = int64(len(c.Data))
	value, _ := json.Marshal(digest)
	sc, audit, err := SetVariable{Level: store.Level{Kind: store.LevelEstablishment, ID: c.UAI}, Name: RosterVariable, Value: value, Actor: c.Actor}.apply(d, m, b, now)
	if err != nil {
		return sc, audit, err
	}
	audit.Action, audit.Target = "roster.import", "establishment:"+c.UAI
	audit.Detail, _ = json.Marshal(map[string]any{"digest": digest, "people": c.People})
	return sc, audit, nil
}
