package server

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/controller/internal/ctltest"
	"github.com/alize-eple/alize/controller/internal/keys"
	"github.com/alize-eple/alize/controller/internal/store"
	"github.com/alize-eple/alize/modules/manifest"
	"github.com/alize-eple/alize/testenv"
)

// Bad input from operators: clear errors, and nothing kept.
func TestOperatorBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	e.publish("1.0.0", 1)
	e.setVar("fleet", "message", "x")
	e.do(e.admin, "POST", api.PathAdminAssignments, api.AssignRequest{Level: "fleet", Module: "motd", Version: "1.0.0"}, nil)
	e.agent(lyceeUAI, "amon-1")
	before := e.auditCount()

	malformed := []byte("name: motd\nversion: 2.0.0\nkind: note\nvariables: [unclosed\n")
	relMalformed, err := manifest.SignRelease(&manifest.Release{Name: "motd", Version: "2.0.0", Kind: "note", Digest: manifest.Digest(malformed), Counter: 9}, e.keys.Release)
	if err != nil {
		t.Fatal(err)
	}
	unknownField := ctltest.NoteModule("2.0.0")
	unknownField = append(unknownField, []byte("colour: blue\n")...)
	other := ctltest.NewKeys(t)
	def := ctltest.NoteModule("2.0.0")
	for _, tc := range []struct {
		name, method, path string
		body               any
		code, msg          string
	}{
		{"malformed module YAML", "POST", api.PathAdminModules, api.PublishRequest{Definition: string(malformed), Release: relMalformed}, api.CodeBadRequest, "definition:"},
		{"unknown field in a module", "POST", api.PathAdminModules, api.PublishRequest{Definition: string(unknownField), Release: e.keys.Sign(t, unknownField[:len(def)], 9)}, api.CodeBadRequest, "exactly as signed"},
		{"unsigned module", "POST", api.PathAdminModules, api.PublishRequest{Definition: string(def)}, api.CodeBadRequest, "release: missing"},
		{"module signed by another academy", "POST", api.PathAdminModules, api.PublishRequest{Definition: string(def), Release: other.Sign(t, def, 9)}, api.CodeBadRequest, "release: refused"},
		{"invalid UAI", "POST", api.PathAdminEstablishments, api.EstablishmentRequest{Establishment: api.Establishment{UAI: "0951099A", Academy: "versailles", Name: "x", Type: "lycee", Zone: "C"}}, api.CodeBadRequest, "uai:"},
		{"unknown type and zone", "POST", api.PathAdminEstablishments, api.EstablishmentRequest{Establishment: api.Establishment{UAI: "0951100E", Academy: "versailles", Name: "x", Type: "fac", Zone: "Z"}}, api.CodeBadRequest, "zone"},
		{"unknown field", "POST", api.PathAdminVariables, map[string]any{"level": "fleet", "name": "message", "value": "y", "colour": 1}, api.CodeBadRequest, "unknown field"},
		{"oversized body", "POST", api.PathAdminVariables, api.VariableRequest{Level: "fleet", Name: "message", Value: json.RawMessage(`"` + strings.Repeat("a", api.MaxRequestBody) + `"`)}, api.CodeTooLarge, "larger"},
		{"bad level", "POST", api.PathAdminVariables, api.VariableRequest{Level: "planet:mars", Name: "message", Value: json.RawMessage(`"y"`)}, api.CodeBadRequest, "level"},
		{"value of the wrong type", "POST", api.PathAdminVariables, api.VariableRequest{Level: "fleet", Name: "port", Value: json.RawMessage(`"ssh"`)}, api.CodeConflict, "fleet.port"},
		{"assign an unpublished version", "POST", api.PathAdminAssignments, api.AssignRequest{Level: "fleet", Module: "motd", Version: "3.0.0"}, api.CodeBadRequest, "not published"},
		{"malformed roster", "POST", api.PathAdminRosters + lyceeUAI, []byte("role;id;last_name;first_name;class\neleve;;Durand;Paul;3A\nprof;T1;Martin;;\n"), api.CodeBadRequest, "line 2"},
		{"token for an unknown establishment", "POST", api.PathAdminTokens, api.TokenRequest{UAI: "0951101F"}, api.CodeBadRequest, "no establishment"},
		{"token living a year", "POST", api.PathAdminTokens, api.TokenRequest{UAI: lyceeUAI, TTLSeconds: 365 * 86400}, api.CodeBadRequest, "ttl_seconds"},
		{"operator with a bad role", "POST", api.PathAdminOperators, api.OperatorRequest{Name: "bob", Role: "god"}, api.CodeBadRequest, "role"},
		{"technician without a UAI", "POST", api.PathAdminOperators, api.OperatorRequest{Name: "bob", Role: api.RoleTechnician}, api.CodeBadRequest, "scope"},
		{"root that does not chain", "POST", api.PathAdminRoots, api.RootRequest{Envelope: other.Trust.Envelope()}, api.CodeBadRequest, "root: refused"},
	} {
		err := e.admin.Do(ctx, tc.method, tc.path, tc.body, nil)
		if ctltest.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %s %s = %v, want %s mentioning %q", tc.name, tc.method, tc.path, err, tc.code, tc.msg)
		}
	}
	if n := e.auditCount(); n != before {
		t.Errorf("the refused calls added %d audit entries", n-before)
	}
	if mods, _ := e.st.Modules(ctx); len(mods) != 1 {
		t.Errorf("%d modules after refused publications", len(mods))
	}
	if _, err := e.st.Establishment(ctx, "0951100E"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a refused establishment was stored: %v", err)
	}
	if bs := rosterBlobs(t, e.st); len(bs) != 0 {
		t.Errorf("a refused roster left %d blobs", len(bs))
	}
}

// rosterBlobs are the stored blobs that are not module definitions.
func rosterBlobs(t *testing.T, st store.Store) []store.Blob {
	t.Helper()
	bs, err := st.Blobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mods, err := st.Modules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []store.Blob
	for _, b := range bs {
		if !slices.ContainsFunc(mods, func(m store.Module) bool { return m.Digest == b.Digest }) {
			out = append(out, b)
		}
	}
	return out
}

func TestRosterImport(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	e.publish("1.0.0", 1)
	e.setVar("fleet", "message", "x")
	e.do(e.admin, "POST", api.PathAdminAssignments, api.AssignRequest{Level: "fleet", Module: "motd", Version: "1.0.0"}, nil)
	a := e.agent(lyceeUAI, "scribe-1")

	var rp api.RosterPlan
	e.do(e.admin, "POST", api.PathAdminRosters+lyceeUAI+"?dry_run=true", []byte(rosterCSV), &rp)
	if rp.People != 2 || len(rp.Added) != 2 || !rp.Plan.DryRun || rp.Plan.Changed != 1 {
		t.Errorf("dry run = %+v", rp)
	}
	if bs := rosterBlobs(t, e.st); len(bs) != 0 {
		t.Fatal("a dry run stored the roster")
	}
	e.do(e.admin, "POST", api.PathAdminRosters+lyceeUAI, []byte(rosterCSV), &rp)
	if _, err := a.Pull(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if len(a.Manifest.Blobs) != 1 || a.Manifest.Blobs[0].Digest != rp.Digest {
		t.Fatalf("blobs = %+v, want the roster %s", a.Manifest.Blobs, rp.Digest)
	}
	data, err := a.Get(ctx, api.PathBlobs+rp.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := manifest.VerifyBlob(a.Manifest.Blobs[0], data); err != nil {
		t.Errorf("VerifyBlob() = %v", err)
	}
	// The next year: one pupil changed class, the teacher left, a new pupil came.
	next := "role;id;last_name;first_name;birth_date;class\neleve;123456789AB;Durand;Paul;2010-05-04;2B\neleve;987654321CD;Petit;Léa;2011-01-02;6A\n"
	e.do(e.admin, "POST", api.PathAdminRosters+lyceeUAI, []byte(next), &rp)
	if strings.Join(rp.Added, ",") != "987654321CD" || strings.Join(rp.Departed, ",") != "T0001" || strings.Join(rp.Changed, ",") != "123456789AB" {
		t.Errorf("roster diff = added %v, departed %v, changed %v", rp.Added, rp.Departed, rp.Changed)
	}
	var audit []api.AuditEntry
	e.do(e.admin, "GET", api.PathAdminAudit+"?target=establishment:"+lyceeUAI, nil, &audit)
	if audit[0].Action != "roster.import" || audit[0].Before == "" || audit[0].Before == audit[0].After {
		t.Errorf("audit = %+v", audit[0])
	}
}

// A new root with a new director key: every manifest is signed with it,
// and agents walk to the new root.
func TestRootRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	a := e.agent(lyceeUAI, "")
	if _, err := a.Pull(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Rotate(e.keys.Dir, []string{"director"}, time.Now().AddDate(1, 0, 0)); err != nil {
		t.Fatal(err)
	}
	env, err := os.ReadFile(filepath.Join(e.keys.Dir, keys.RootFile(2)))
	if err != nil {
		t.Fatal(err)
	}
	var info api.RootInfo
	e.do(e.admin, "POST", api.PathAdminRoots, api.RootRequest{Envelope: env}, &info)
	if info.Version != 2 {
		t.Errorf("published root %+v", info)
	}
	// The agent's pinned root does not know the new director key…
	if _, err := a.Pull(ctx, 0); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Pull() before walking to root 2 = %v, want a refusal", err)
	}
	// …until it walks to version 2.
	root2, err := a.Get(ctx, api.PathRoots+"2")
	if err != nil {
		t.Fatal(err)
	}
	if a.Trust, err = a.Trust.UpdateRoot(root2); err != nil {
		t.Fatalf("UpdateRoot(2) = %v", err)
	}
	if changed, err := a.Pull(ctx, 0); err != nil || !changed {
		t.Fatalf("Pull() after walking to root 2 = %v, %v", changed, err)
	}
	// A new agent pins version 2 at once.
	b := e.agent(collegeUAI, "")
	if b.Trust.Version() != 2 {
		t.Errorf("a new agent pinned root %d", b.Trust.Version())
	}
	var roots []api.RootInfo
	e.do(e.admin, "GET", api.PathAdminRoots, nil, &roots)
	if len(roots) != 2 {
		t.Errorf("roots = %+v", roots)
	}
}

// Two replicas on one PostgreSQL: a change through A wakes a long poll
// held by B; a revocation through A is enforced by B's handshake.
func TestReplicasOnPostgres(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	open := func() store.Store {
		s, err := store.OpenPostgres(t.Context(), pg.DSN)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	stateDir := t.TempDir() // the replicas share the CA, keys and secrets key
	k := ctltest.NewKeys(t)
	ea := newEnv(t, envOptions{store: open(), stateDir: stateDir, keys: k})
	eb := newEnv(t, envOptions{store: open(), stateDir: stateDir, keys: k, noSetup: true})
	ctx := context.Background()
	ea.publish("1.0.0", 1)
	ea.setVar("fleet", "message", "Bonjour")
	ea.do(ea.admin, "POST", api.PathAdminAssignments, api.AssignRequest{Level: "fleet", Module: "motd", Version: "1.0.0"}, nil)
	a := ea.agent(lyceeUAI, "amon-ha")
	a.URL = eb.url // it talks to replica B from now on
	if _, err := a.Pull(ctx, 0); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		changed, err := a.Pull(ctx, time.Minute)
		if err == nil && !changed {
			err = errors.New("the long poll on B ended without a new manifest")
		}
		got <- err
	}()
	waitFor(t, "B to hold the long poll", func() bool { return eb.ctl.srv.Hub.Holding() == 1 })
	start := time.Now()
	ea.setVar("server:amon-ha", "message", "Changé sur A")
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the long poll on B was not woken 20 s after the change on A")
	}
	t.Logf("change on A reached the long poll on B in %v", time.Since(start))
	if s := noteSpec(t, a); s.Message != "Changé sur A" {
		t.Errorf("message = %q", s.Message)
	}
	// Revoked through A: B's handshake refuses it.
	ea.do(ea.admin, "POST", api.PathAdminServers+"/amon-ha/revoke", nil, nil)
	waitFor(t, "B to learn of the revocation", func() bool { return eb.ctl.srv.Deny.Denied(a.Cert()) })
	fresh := a.NewClient()
	defer fresh.CloseIdleConnections()
	var he *ctltest.HTTPError
	if _, err := a.PullWith(ctx, fresh, 0); err == nil || errors.As(err, &he) {
		t.Errorf("Pull() from B after revocation on A = %v, want a handshake error", err)
	}
}
