package director

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/controller/internal/ctltest"
	"github.com/alize-eple/alize/controller/internal/keys"
	"github.com/alize-eple/alize/controller/internal/store"
	"github.com/alize-eple/alize/modules/manifest"
	"github.com/alize-eple/alize/modules/schema"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-version"
)

type fixture struct {
	t      testing.TB
	s      store.Store
	d      *Director
	keys   *ctltest.Keys
	now    time.Time
	ids    map[string]*age.X25519Identity // server id → its age identity
	signed []string
}

const (
	lyceeUAI   = "0951099D" // lycée, Versailles
	collegeUAI = "0780001C" // collège, Versailles
)

func newFixture(t *testing.T) *fixture { return newFixtureTB(t) }

func newFixtureTB(t testing.TB) *fixture {
	t.Helper()
	s, err := store.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	return newFixtureStore(t, s)
}

// newFixtureStore is a fixture on the store s, closed at cleanup.
func newFixtureStore(t testing.TB, s store.Store) *fixture {
	t.Helper()
	t.Cleanup(func() { s.Close() })
	f := &fixture{t: t, s: s, keys: ctltest.NewKeys(t), now: time.Date(2025, 9, 1, 8, 0, 0, 0, time.UTC), ids: map[string]*age.X25519Identity{}}
	f.d = New(Config{
		Store: s, Keys: []*manifest.Key{f.keys.Director}, Trust: func() *manifest.Trust { return f.keys.Trust },
		Checkers: ctltest.Checkers(), Secrets: keys.NewSecretBox(), Clock: func() time.Time { return f.now },
		Log: ctltest.Logger(t), ManifestTTL: 14 * 24 * time.Hour, RenewBefore: 7 * 24 * time.Hour,
		Signed: func(ms []store.Manifest) {
			for _, m := range ms {
				f.signed = append(f.signed, m.ServerID)
			}
		},
	})
	f.apply(PutAcademy{Academy: store.Academy{Name: "versailles", Title: "Versailles"}})
	f.apply(PutEstablishment{Establishment: store.Establishment{UAI: lyceeUAI, Academy: "versailles", Name: "Lycée Pissarro", Type: "lycee", Zone: "C"}})
	f.apply(PutEstablishment{Establishment: store.Establishment{UAI: collegeUAI, Academy: "versailles", Name: "Collège Moulin", Type: "college", Zone: "C"}})
	f.enroll("amon-lycee", lyceeUAI)
	f.enroll("amon-college", collegeUAI)
	return f
}

func (f *fixture) apply(ch Change) *api.Plan {
	f.t.Helper()
	p, err := f.d.Apply(context.Background(), ch, "alice", false)
	if err != nil {
		f.t.Fatalf("Apply(%T): %v", ch, err)
	}
	return p
}

func (f *fixture) enroll(id, uai string) {
	f.t.Helper()
	ageID, _ := age.GenerateX25519Identity()
	f.ids[id] = ageID
	tok := store.Token{ID: "tok-" + id, SecretHash: []byte("h"), UAI: uai, Expires: f.now.Add(time.Hour), Created: f.now}
	if err := f.s.Commit(context.Background(), &store.Batch{Tokens: []store.Token{tok}}); err != nil {
		f.t.Fatal(err)
	}
	err := f.s.Enroll(context.Background(), store.Enrollment{TokenID: tok.ID, Time: f.now,
		Server:      store.Server{ID: id, UAI: uai, Role: "amon", AgeRecipient: ageID.Recipient().String(), PublicKey: []byte("k"), PollInterval: 300, Enrolled: f.now},
		Certificate: store.Certificate{Serial: "c-" + id, ServerID: id, NotBefore: f.now, NotAfter: f.now.Add(72 * time.Hour)}})
	if err != nil {
		f.t.Fatal(err)
	}
	f.apply(Enrolled{ServerID: id})
}

func (f *fixture) publish(v string, counter uint64) {
	f.t.Helper()
	def := ctltest.NoteModule(v)
	if _, err := f.d.Publish(context.Background(), def, f.keys.Sign(f.t, def, counter), "alice"); err != nil {
		f.t.Fatalf("Publish(%s): %v", v, err)
	}
}

// verify checks a server's current manifest as its agent would, and
// returns it.
func (f *fixture) verify(id string, last manifest.State) (*manifest.Manifest, store.Manifest) {
	f.t.Helper()
	rec, err := f.s.Manifest(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	sv, _ := f.s.Server(context.Background(), id)
	v := &manifest.Verifier{Trust: f.keys.Trust, ServerID: id, UAI: sv.UAI, AgentVersion: version.Must(version.NewVersion("1.3.0")),
		Compile: schema.CompileBytes, Definitions: f.definition, Now: func() time.Time { return f.now }}
	m, _, err := v.Verify(rec.Envelope, last)
	if err != nil {
		f.t.Fatalf("agent %s refuses its manifest: %v", id, err)
	}
	return m, rec
}

// definition serves a published module definition by digest, as the
// controller's blob route does.
func (f *fixture) definition(digest string) []byte {
	b, err := f.s.Blob(context.Background(), digest)
	if err != nil {
		return nil
	}
	return b.Data
}

func spec(t *testing.T, m *manifest.Manifest, i int) ctltest.NoteSpec {
	t.Helper()
	var s ctltest.NoteSpec
	if err := json.Unmarshal(m.Modules[i].Spec, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func level(s string) store.Level {
	l, err := ParseLevel(s)
	if err != nil {
		panic(err)
	}
	return l
}

func TestEnrolledServersGetAnEmptyManifest(t *testing.T) {
	f := newFixture(t)
	m, rec := f.verify("amon-lycee", manifest.State{})
	if rec.Serial != 1 || len(m.Modules) != 0 {
		t.Errorf("first manifest: serial %d, %d modules; want 1, 0", rec.Serial, len(m.Modules))
	}
	if diff := cmp.Diff([]string{"amon-lycee", "amon-college"}, f.signed); diff != "" {
		t.Errorf("woken (-want +got):\n%s", diff)
	}
}

func TestPublish(t *testing.T) {
	f := newFixture(t)
	def := ctltest.NoteModule("1.0.0")
	good := f.keys.Sign(t, def, 1)
	// Signed by the director key instead of the release key.
	wrongRole, _, err := keys.SignRelease(def, 1, f.keys.Director)
	if err != nil {
		t.Fatal(err)
	}
	other := ctltest.NewKeys(t)
	for _, tc := range []struct {
		name    string
		def     []byte
		release []byte
		want    string
	}{
		{"unsigned", def, nil, "release: missing"},
		{"garbage", def, []byte("{"), "release: refused"},
		{"wrong role", def, wrongRole, "release: refused"},
		{"another academy's release key", def, other.Sign(t, def, 1), "release: refused"},
		{"definition changed after signing", append([]byte("# edited\n"), def...), good, "publish the file exactly as signed"},
		{"unknown kind", []byte(strings.Replace(string(def), "kind: note", "kind: printers", 1)), f.keys.Sign(t, []byte(strings.Replace(string(def), "kind: note", "kind: printers", 1)), 1), `kind "printers" is not known`},
		{"malformed YAML", []byte("name: [x"), nil, "release: missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.d.Publish(context.Background(), tc.def, tc.release, "alice")
			var ie *InputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Publish() = %v, want an InputError containing %q", err, tc.want)
			}
		})
	}
	if mods, _ := f.s.Modules(context.Background()); len(mods) != 0 {
		t.Fatalf("refused publications stored %d modules", len(mods))
	}
	f.publish("1.0.0", 1)
	if _, err := f.d.Publish(context.Background(), def, good, "alice"); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Publish(again) = %v, want ErrConflict", err)
	}
	f.publish("1.2.0", 5)
	def11 := ctltest.NoteModule("1.1.0")
	if _, err := f.d.Publish(context.Background(), def11, f.keys.Sign(t, def11, 6), "alice"); err == nil || !strings.Contains(err.Error(), "counter") {
		t.Errorf("Publish(1.1.0 with a counter above 1.2.0's) = %v, want a counter error", err)
	}
	f.publish("1.1.0", 3)
	audit, _ := f.s.Audit(context.Background(), store.AuditFilter{Target: "module:"})
	if len(audit) != 3 || audit[0].Action != "module.publish" || audit[0].Actor != "alice" {
		t.Errorf("audit = %+v", audit)
	}
}

func TestChangesCompileIncrementally(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.publish("1.0.0", 1)

	// Assigning a module whose mandatory variable is unset would break
	// both servers: refused, nothing kept.
	_, err := f.d.Apply(ctx, Assign{Level: level("fleet"), Module: "motd", Version: "1.0.0"}, "alice", false)
	var refused *RefusedError
	if !errors.As(err, &refused) || refused.Plan.Failed != 2 || !strings.Contains(err.Error(), "message: mandatory variable has no value") {
		t.Fatalf("Apply(assign without message) = %v, want refused for 2 servers", err)
	}
	if as, _ := f.s.Assignments(ctx); len(as) != 0 {
		t.Fatalf("a refused change stored %d assignments", len(as))
	}

	// Setting a variable no assigned module uses changes no manifest.
	p := f.apply(SetVariable{Level: level("fleet"), Name: "message", Value: json.RawMessage(`"Bonjour"`)})
	if p.Touched != 2 || p.Changed != 0 {
		t.Errorf("plan of an unused variable = %+v, want 2 touched, 0 changed", p)
	}

	// A dry run says what would happen, and keeps nothing.
	p, err = f.d.Apply(ctx, Assign{Level: level("fleet"), Module: "motd", Version: "1.0.0"}, "alice", true)
	if err != nil || !p.DryRun || p.Changed != 2 || p.Servers[0].Modules[0].Change != api.PlanAdd {
		t.Fatalf("dry run = %+v, %v", p, err)
	}
	if mf, _ := f.s.Manifest(ctx, "amon-lycee"); mf.Serial != 1 {
		t.Fatalf("a dry run signed serial %d", mf.Serial)
	}

	p = f.apply(Assign{Level: level("fleet"), Module: "motd", Version: "1.0.0"})
	if p.Changed != 2 || p.Servers[0].Serial != 2 {
		t.Errorf("assign plan = %+v", p)
	}
	m, _ := f.verify("amon-lycee", manifest.State{Serial: 1})
	if s := spec(t, m, 0); s.Message != "Bonjour" || s.UAI != lyceeUAI || s.Port != 22 {
		t.Errorf("spec = %+v", s)
	}

	// An establishment's value wins over the fleet's, for its server only.
	f.signed = nil
	p = f.apply(SetVariable{Level: level("establishment:" + lyceeUAI), Name: "message", Value: json.RawMessage(`"Salut le lycée"`)})
	if p.Touched != 1 || p.Changed != 1 || p.Servers[0].ServerID != "amon-lycee" || p.Servers[0].Modules[0].Change != api.PlanUpdate {
		t.Errorf("establishment plan = %+v", p)
	}
	if diff := cmp.Diff([]string{"amon-lycee"}, f.signed); diff != "" {
		t.Errorf("woken (-want +got):\n%s", diff)
	}
	m, _ = f.verify("amon-lycee", manifest.State{Serial: 2})
	if s := spec(t, m, 0); s.Message != "Salut le lycée" {
		t.Errorf("lycée message = %q", s.Message)
	}
	if _, rec := f.verify("amon-college", manifest.State{Serial: 1}); rec.Serial != 2 {
		t.Errorf("the collège was re-signed: serial %d", rec.Serial)
	}

	// A group by rule: every lycée of the academy.
	f.apply(PutGroup{Group: store.Group{Name: "lycees", Academy: "versailles", Rule: &store.GroupRule{Types: []string{"lycee"}}}})
	p = f.apply(SetVariable{Level: level("group:lycees"), Name: "port", Value: json.RawMessage(`2222`)})
	if p.Touched != 1 || p.Changed != 1 {
		t.Errorf("group plan = %+v", p)
	}
	m, _ = f.verify("amon-lycee", manifest.State{Serial: 3})
	if s := spec(t, m, 0); s.Port != 2222 {
		t.Errorf("port = %d, want the group's 2222", s.Port)
	}
	// The collège becomes a lycée: it joins the group, and only its
	// server is built again.
	p = f.apply(PutEstablishment{Establishment: store.Establishment{UAI: collegeUAI, Academy: "versailles", Name: "Lycée Jean Moulin", Type: "lycee", Zone: "C"}})
	if p.Touched != 1 || p.Changed != 1 {
		t.Errorf("establishment plan = %+v, want one server touched and changed", p)
	}
	m, _ = f.verify("amon-college", manifest.State{Serial: 2})
	if s := spec(t, m, 0); s.Port != 2222 {
		t.Errorf("the new lycée's port = %d, want the group's 2222", s.Port)
	}
	if _, rec := f.verify("amon-lycee", manifest.State{Serial: 3}); rec.Serial != 4 {
		t.Errorf("the other lycée was re-signed: serial %d", rec.Serial)
	}

	// A bad value for servers that build: refused, with its path.
	_, err = f.d.Apply(ctx, SetVariable{Level: level("fleet"), Name: "port", Value: json.RawMessage(`70000`)}, "alice", false)
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), "fleet.port") {
		t.Errorf("Apply(port 70000) = %v, want refused naming fleet.port", err)
	}
	// The kind's own check runs too.
	_, err = f.d.Apply(ctx, SetVariable{Level: level("server:amon-college"), Name: "message", Value: json.RawMessage(`"forbidden"`)}, "alice", false)
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), `must not be "forbidden"`) {
		t.Errorf("Apply(forbidden message) = %v, want refused by the kind's check", err)
	}

	// Bad input is refused before anything is built.
	for _, ch := range []Change{
		SetVariable{Level: level("establishment:0000000A"), Name: "message", Value: json.RawMessage(`"x"`)},
		SetVariable{Level: level("fleet"), Name: "uai", Value: json.RawMessage(`"0951099D"`)},
		SetVariable{Level: level("fleet"), Name: "Bad-Name", Value: json.RawMessage(`"x"`)},
		SetVariable{Level: level("fleet"), Name: "message", Value: json.RawMessage(`{"an":"object"}`)},
		SetVariable{Level: level("fleet"), Name: "message", Value: json.RawMessage(`"x" "y"`)},
		Assign{Level: level("fleet"), Module: "motd", Version: "9.9.9"},
		PutEstablishment{Establishment: store.Establishment{UAI: "0951099A", Academy: "versailles", Name: "x", Type: "lycee", Zone: "C"}},
		PutEstablishment{Establishment: store.Establishment{UAI: "0951099D", Academy: "versailles", Name: "x", Type: "university", Zone: "D"}},
		PutGroup{Group: store.Group{Name: "g", Members: []string{"nowhere"}}},
	} {
		if _, err := f.d.Apply(ctx, ch, "alice", false); !errors.As(err, new(*InputError)) {
			t.Errorf("Apply(%+v) = %v, want an InputError", ch, err)
		}
	}
	audit, _ := f.s.Audit(ctx, store.AuditFilter{Actor: "alice", Limit: 1000})
	if len(audit) != 10 { // 2 establishments, 1 academy, var, assign, var, group, var, establishment, (publish)
		for _, a := range audit {
			t.Logf("%s %s %s", a.Action, a.Target, a.Detail)
		}
		t.Errorf("%d audit entries", len(audit))
	}
}

func TestSecretsAndBlobs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.publish("1.0.0", 1)
	f.apply(SetVariable{Level: level("fleet"), Name: "message", Value: json.RawMessage(`"x"`)})
	f.apply(Assign{Level: level("fleet"), Module: "motd", Version: "1.0.0"})

	pw := "s3cret-ldap"
	f.apply(SetVariable{Level: level("server:amon-lycee"), Name: "password", Secret: &pw})
	m, rec := f.verify("amon-lycee", manifest.State{Serial: 2})
	if len(m.Secrets) != 1 || m.Secrets[0].Generation != 1 {
		t.Fatalf("secrets = %+v", m.Secrets)
	}
	got, err := manifest.Unseal(f.ids["amon-lycee"], "amon-lycee", m.Secrets[0])
	if err != nil || string(got.Reveal()) != pw {
		t.Fatalf("Unseal() = %v", err)
	}
	if strings.Contains(string(rec.Envelope), pw) {
		t.Fatal("the manifest holds the secret in clear")
	}
	if s := spec(t, m, 0); s.Password != "secret://password" {
		t.Errorf("spec password = %q, want the reference", s.Password)
	}
	vars, _ := f.s.Variables(ctx)
	for _, v := range vars {
		if strings.Contains(string(v.Value)+string(v.Sealed), pw) {
			t.Fatal("the store holds the secret in clear")
		}
	}
	// A non-secret value for a secret variable is refused.
	if _, err := f.d.Apply(ctx, SetVariable{Level: level("fleet"), Name: "password", Value: json.RawMessage(`"clear"`)}, "alice", false); err == nil || !strings.Contains(err.Error(), "--secret") {
		t.Errorf("Apply(secret in clear) = %v", err)
	}
	// Setting it again: next generation.
	pw2 := "n3w"
	f.apply(SetVariable{Level: level("server:amon-lycee"), Name: "password", Secret: &pw2})
	m, _ = f.verify("amon-lycee", manifest.State{Serial: rec.Serial, Generations: map[string]uint64{"password": 1}})
	if m.Secrets[0].Generation != 2 {
		t.Errorf("generation = %d, want 2", m.Secrets[0].Generation)
	}

	// A blob, named by a variable, travels by digest.
	data := []byte("role;id;last_name;first_name\n")
	digest := manifest.Digest(data)
	if err := f.s.Commit(ctx, &store.Batch{Blobs: []store.Blob{{Digest: digest, Size: int64(len(data)), Data: data, Created: f.now}}}); err != nil {
		t.Fatal(err)
	}
	f.apply(SetVariable{Level: level("establishment:" + collegeUAI), Name: "roster_blob", Value: json.RawMessage(`"` + digest + `"`)})
	m, rec = f.verify("amon-college", manifest.State{Serial: 2})
	if diff := cmp.Diff([]manifest.BlobRef{{Name: "roster_blob", Digest: digest, Size: int64(len(data))}}, m.Blobs); diff != "" {
		t.Errorf("blobs (-want +got):\n%s", diff)
	}
	// The server may fetch its blobs and its modules' definitions.
	want := []string{digest}
	for _, mod := range m.Modules {
		want = append(want, mod.Release.Digest)
	}
	if diff := cmp.Diff(want, rec.Blobs); diff != "" {
		t.Errorf("stored blobs (-want +got):\n%s", diff)
	}
}

func TestResignBeforeExpiry(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// Nothing to do yet.
	p := f.apply(refresh{})
	if p.Touched != 0 {
		t.Errorf("refresh at once touched %d", p.Touched)
	}
	f.now = f.now.Add(8 * 24 * time.Hour) // less than RenewBefore left
	p = f.apply(refresh{})
	if p.Changed != 2 {
		t.Errorf("refresh after 8 days = %+v, want 2 re-signed", p)
	}
	_, rec := f.verify("amon-lycee", manifest.State{Serial: 1})
	if rec.Serial != 2 || !rec.Expires.Equal(f.now.Add(14*24*time.Hour)) {
		t.Errorf("re-signed: serial %d, expires %v", rec.Serial, rec.Expires)
	}
	// A forced push re-signs unchanged manifests; a plain one does not.
	if p := f.apply(Push{Level: level("fleet")}); p.Changed != 0 {
		t.Errorf("push = %+v", p)
	}
	if p := f.apply(Push{Level: level("server:amon-college"), Force: true}); p.Changed != 1 || p.Touched != 1 {
		t.Errorf("forced push = %+v", p)
	}
	// Revoked servers are no longer built.
	f.apply(RevokeServer{ServerID: "amon-college"})
	if p := f.apply(Push{Level: level("fleet"), Force: true}); p.Touched != 1 {
		t.Errorf("push after revocation touched %d, want 1", p.Touched)
	}
	if d, _ := f.s.DenyList(ctx); len(d.Servers) != 1 {
		t.Errorf("deny-list = %+v", d)
	}
}

// countingStore counts the reads of every server and every manifest.
type countingStore struct {
	store.Store
	servers, manifests int
}

func (c *countingStore) Servers(ctx context.Context) ([]store.Server, error) {
	c.servers++
	return c.Store.Servers(ctx)
}

func (c *countingStore) Manifests(ctx context.Context) ([]store.Manifest, error) {
	c.manifests++
	return c.Store.Manifests(ctx)
}

// An enrollment reads the enrolled server's part of the store, not the
// fleet's (enrolling a fleet one server at a time would read it each
// time), and builds the same manifest a full build would.
func TestEnrollmentReadsOneServer(t *testing.T) {
	f := newFixture(t)
	f.publish("1.0.0", 1)
	f.apply(SetVariable{Level: level("fleet"), Name: "message", Value: json.RawMessage(`"bonjour"`)})
	f.apply(Assign{Level: level("fleet"), Module: "motd", Version: "1.0.0"})
	counting := &countingStore{Store: f.s}
	f.d.cfg.Store = counting
	defer func() { f.d.cfg.Store = f.s }()
	f.enroll("amon-lycee-2", lyceeUAI)
	if counting.servers != 0 || counting.manifests != 0 {
		t.Errorf("an enrollment read every server %d times and every manifest %d times, want none", counting.servers, counting.manifests)
	}
	m, _ := f.verify("amon-lycee-2", manifest.State{})
	if got := spec(t, m, 0).Message; got != "bonjour" {
		t.Errorf("the enrolled server's manifest says %q, want the fleet's message", got)
	}
	// Enrolled again (alize enroll --force), a server keeps its manifest
	// and its serial: never one below what its agent applied.
	f.apply(Push{Level: level("server:amon-lycee-2"), Force: true})
	before, err := f.s.Manifest(t.Context(), "amon-lycee-2")
	if err != nil {
		t.Fatal(err)
	}
	f.apply(Enrolled{ServerID: "amon-lycee-2"})
	after, err := f.s.Manifest(t.Context(), "amon-lycee-2")
	if err != nil {
		t.Fatal(err)
	}
	if before.Serial != 2 || after.Serial != before.Serial {
		t.Errorf("serial %d, then %d after a new enrollment; want 2 kept", before.Serial, after.Serial)
	}
}

// Each module says which level gave each value; a value that moves to
// another level unchanged still gives a new manifest, so that the
// technician's plan names the right level.
func TestSourcesFollowTheLevels(t *testing.T) {
	f := newFixture(t)
	f.publish("1.0.0", 1)
	f.apply(SetVariable{Level: level("fleet"), Name: "message", Value: json.RawMessage(`"bonjour"`)})
	f.apply(SetVariable{Level: level("establishment:" + lyceeUAI), Name: "message", Value: json.RawMessage(`"bonjour"`)})
	f.apply(Assign{Level: level("fleet"), Module: "motd", Version: "1.0.0"})
	m, _ := f.verify("amon-lycee", manifest.State{})
	want := map[string]string{"message": "establishment", "uai": "inventory", "port": "default"}
	if diff := cmp.Diff(want, m.Modules[0].Sources); diff != "" {
		t.Errorf("sources (-want +got):\n%s", diff)
	}
	f.apply(SetVariable{Level: level("establishment:" + lyceeUAI), Name: "message", Unset: true})
	m2, _ := f.verify("amon-lycee", manifest.State{Serial: m.Serial})
	if got := m2.Modules[0].Sources["message"]; got != "fleet" {
		t.Errorf("message from %q once unset at the establishment, want fleet", got)
	}
}

// TestBuildCollector: a build of BuildGCServers servers or more runs with
// the collector at BuildGC, set back after.
func TestBuildCollector(t *testing.T) {
	s, err := store.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	f := newBenchFixtureStore(t, s, BuildGCServers)
	gcBefore := debug.SetGCPercent(-1)
	debug.SetGCPercent(gcBefore)
	gcDuring := 0
	f.d.cfg.BuildGC = 300
	f.d.cfg.Signed = func([]store.Manifest) {
		gcDuring = debug.SetGCPercent(-1)
		debug.SetGCPercent(gcDuring)
	}
	p := f.apply(SetVariable{Level: level("fleet"), Name: "message", Value: json.RawMessage(`"collected"`)})
	if p.Changed < BuildGCServers {
		t.Fatalf("%d servers changed, want %d at least", p.Changed, BuildGCServers)
	}
	if gcDuring != 300 {
		t.Errorf("GOGC during the build = %d, want 300", gcDuring)
	}
	if gc := debug.SetGCPercent(gcBefore); gc != gcBefore {
		t.Errorf("GOGC after the build = %d, want it back at %d", gc, gcBefore)
	}
}
