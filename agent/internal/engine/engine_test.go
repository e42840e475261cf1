package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/modules"
	"github.com/alize-eple/alize/modules/manifest"
)

// memSpec is the in-memory test kind's spec: items by id.
type memSpec struct {
	Items map[string]string `json:"items"`
}

// memKind is an in-memory kind: its "system" is a map. It records the
// order kinds are applied in through a shared journal.
type memKind struct {
	name    string
	journal *journal

	mu        sync.Mutex
	have      map[string]string
	planErr   error
	failApply map[string]bool // ids whose change fails
	applyErr  error
	checkErr  error
	drop      bool // Apply reports no results at all
}

type journal struct {
	mu  sync.Mutex
	ops []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.ops = append(j.ops, s)
}

func (j *journal) get() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.ops)
}

var (
	_ modules.Kind[memSpec] = (*memKind)(nil)
	_ modules.Checker       = (*memKind)(nil)
)

func newMem(name string, j *journal) *memKind {
	return &memKind{name: name, journal: j, have: map[string]string{}, failApply: map[string]bool{}}
}

func (k *memKind) Name() string { return k.name }

func (k *memKind) Validate(want memSpec) error {
	var errs modules.FieldErrors
	for id := range want.Items {
		if id == "" {
			errs.Add("items", "an empty id")
		}
	}
	return errs.Err()
}

func (k *memKind) Plan(ctx context.Context, want memSpec) (modules.Plan, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.journal.add("plan " + k.name)
	if k.planErr != nil {
		return modules.Plan{}, k.planErr
	}
	p := modules.Plan{Kind: k.name}
	for _, id := range slices.Sorted(maps.Keys(want.Items)) {
		v, ok := k.have[id]
		switch {
		case !ok:
			p.Changes = append(p.Changes, modules.Change{Op: modules.OpCreate, Resource: "item", ID: id, Summary: "create " + id})
		case v != want.Items[id]:
			p.Changes = append(p.Changes, modules.Change{Op: modules.OpUpdate, Resource: "item", ID: id, Summary: "update " + id})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(k.have)) {
		if _, ok := want.Items[id]; !ok {
			p.Changes = append(p.Changes, modules.Change{Op: modules.OpDelete, Resource: "item", ID: id, Summary: "delete " + id})
		}
	}
	p.State = want
	return p, nil
}

func (k *memKind) Apply(ctx context.Context, p modules.Plan) (modules.Result, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.journal.add("apply " + k.name)
	res := modules.Result{Kind: k.name}
	if k.applyErr != nil {
		return res, k.applyErr
	}
	want := p.State.(memSpec)
	for _, c := range p.Changes {
		if k.failApply[c.ID] {
			res.Changes = append(res.Changes, modules.ChangeResult{Change: c, Status: modules.StatusFailed, Error: "refused by the test"})
			continue
		}
		if c.Op == modules.OpDelete {
			delete(k.have, c.ID)
		} else {
			k.have[c.ID] = want.Items[c.ID]
		}
		res.Changes = append(res.Changes, modules.ChangeResult{Change: c, Status: modules.StatusApplied})
	}
	if k.drop {
		res.Changes = nil
	}
	return res, nil
}

func (k *memKind) Check(ctx context.Context) error { return k.checkErr }

func (k *memKind) state() map[string]string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return maps.Clone(k.have)
}

func (k *memKind) set(id, v string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.have[id] = v
}

// testLog sends slog records to t.Log.
func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// school is the three kinds of a school server, as the agent wires them.
type school struct {
	j                          *journal
	firewall, accounts, shares *memKind
	engine                     *Engine
}

func newSchool(t *testing.T) *school {
	t.Helper()
	s := &school{j: &journal{}}
	s.firewall, s.accounts, s.shares = newMem("firewall", s.j), newMem("accounts", s.j), newMem("shares", s.j)
	var err error
	s.engine, err = New(testLog(t), time.Now, nil,
		Adapt[memSpec](s.shares, "accounts"),
		Adapt[memSpec](s.firewall),
		Adapt[memSpec](s.accounts),
	)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mod(kind, spec string) Module {
	return Module{Name: "scribe-" + kind, Version: "1.0.0", Kind: kind, Spec: []byte(spec)}
}

func statuses(r Result) map[string]api.KindStatus {
	out := map[string]api.KindStatus{}
	for _, k := range r.Kinds {
		out[k.Kind] = k.Status
	}
	return out
}

func kindsOf(r Result) []string {
	var out []string
	for _, k := range r.Kinds {
		out = append(out, k.Kind)
	}
	return out
}

func TestOrderFollowsDependencies(t *testing.T) {
	s := newSchool(t)
	mods := []Module{
		mod("shares", `{"items":{"commun":"2775"}}`),
		mod("firewall", `{"items":{"ssh":"admin"}}`),
		mod("accounts", `{"items":{"paul.durand":"6A"}}`),
	}
	res := s.engine.Run(t.Context(), mods, Inputs{})
	if diff := cmp.Diff([]string{"firewall", "accounts", "shares"}, kindsOf(res)); diff != "" {
		t.Errorf("run order (-want +got):\n%s", diff)
	}
	// The kinds plan side by side, then apply in order; shares plans
	// again once accounts has changed something, before it applies.
	ops := s.j.get()
	if len(ops) != 7 {
		t.Fatalf("operations = %v, want 7", ops)
	}
	if diff := cmp.Diff([]string{"plan accounts", "plan firewall", "plan shares"}, slices.Sorted(slices.Values(ops[:3]))); diff != "" {
		t.Errorf("first operations (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"apply firewall", "apply accounts", "plan shares", "apply shares"}, ops[3:]); diff != "" {
		t.Errorf("operations after planning (-want +got):\n%s", diff)
	}
	if res.Outcome != api.OutcomeCorrected || res.Changed() != 3 {
		t.Errorf("Run() outcome %s with %d changes, want corrected with 3", res.Outcome, res.Changed())
	}
	// A second run finds nothing to do: each kind plans once.
	s.j.mu.Lock()
	s.j.ops = nil
	s.j.mu.Unlock()
	res = s.engine.Run(t.Context(), mods, Inputs{})
	if res.Outcome != api.OutcomeCompliant {
		t.Errorf("second Run() = %s, want compliant: %+v", res.Outcome, res.Kinds)
	}
	if ops := s.j.get(); len(ops) != 3 {
		t.Errorf("operations of a run with nothing to do = %v, want the three plans only", ops)
	}
}

func TestFailureIsolation(t *testing.T) {
	mods := []Module{
		mod("shares", `{"items":{"commun":"2775"}}`),
		mod("firewall", `{"items":{"ssh":"admin"}}`),
		mod("accounts", `{"items":{"paul.durand":"6A","lea.martin":"5B"}}`),
	}
	t.Run("plan fails", func(t *testing.T) {
		s := newSchool(t)
		s.accounts.planErr = errors.New("ldap: dial 127.0.0.1:389: connection refused")
		res := s.engine.Run(t.Context(), mods, Inputs{})
		want := map[string]api.KindStatus{"firewall": api.KindApplied, "accounts": api.KindFailing, "shares": api.KindSkipped}
		if diff := cmp.Diff(want, statuses(res)); diff != "" {
			t.Errorf("statuses (-want +got):\n%s", diff)
		}
		sh := res.Kinds[2]
		if sh.Kind != "shares" || !strings.Contains(sh.Error, "accounts failed") {
			t.Errorf("shares result = %+v, want skipped because accounts failed", sh)
		}
		if !strings.Contains(res.Kinds[1].Error, "connection refused") {
			t.Errorf("accounts error = %q, want the plan's error", res.Kinds[1].Error)
		}
		if len(s.shares.state()) != 0 || len(s.firewall.state()) != 1 {
			t.Errorf("shares applied despite accounts failing, or firewall not applied")
		}
		if res.Outcome != api.OutcomeFailing {
			t.Errorf("outcome = %s, want failing", res.Outcome)
		}
	})
	t.Run("one change fails", func(t *testing.T) {
		s := newSchool(t)
		s.accounts.failApply["lea.martin"] = true
		res := s.engine.Run(t.Context(), mods, Inputs{})
		acc := res.Kinds[1]
		if acc.Status != api.KindFailing || len(acc.Changes) != 2 {
			t.Fatalf("accounts = %+v, want failing with 2 change results", acc)
		}
		got := map[string]modules.Status{}
		for _, c := range acc.Changes {
			got[c.Change.ID] = c.Status
		}
		if diff := cmp.Diff(map[string]modules.Status{"paul.durand": modules.StatusApplied, "lea.martin": modules.StatusFailed}, got); diff != "" {
			t.Errorf("change results (-want +got):\n%s", diff)
		}
		if statuses(res)["shares"] != api.KindSkipped || statuses(res)["firewall"] != api.KindApplied {
			t.Errorf("statuses = %v, want firewall applied, shares skipped", statuses(res))
		}
	})
	t.Run("apply errors without results", func(t *testing.T) {
		s := newSchool(t)
		s.accounts.applyErr = errors.New("ldap: server went away")
		res := s.engine.Run(t.Context(), mods, Inputs{})
		acc := res.Kinds[1]
		if acc.Status != api.KindFailing || len(acc.Changes) != 2 {
			t.Fatalf("accounts = %+v, want failing with a result per planned change", acc)
		}
		for _, c := range acc.Changes {
			if c.Status != modules.StatusFailed || !strings.Contains(c.Error, "went away") {
				t.Errorf("change %s = %s %q, want failed with the apply error", c.Change.ID, c.Status, c.Error)
			}
		}
	})
	t.Run("apply forgets results", func(t *testing.T) {
		s := newSchool(t)
		s.firewall.drop = true
		res := s.engine.Run(t.Context(), mods, Inputs{})
		fw := res.Kinds[0]
		if fw.Status != api.KindFailing || len(fw.Changes) != 1 || fw.Changes[0].Status != modules.StatusSkipped {
			t.Errorf("firewall = %+v, want failing with its change marked not attempted", fw)
		}
		if statuses(res)["shares"] != api.KindApplied {
			t.Errorf("shares = %s, want applied (it does not depend on the firewall)", statuses(res)["shares"])
		}
	})
	t.Run("apply reverted", func(t *testing.T) {
		s := newSchool(t)
		s.firewall.applyErr = fmt.Errorf("firewall: the new ruleset was not confirmed: %w", modules.ErrReverted)
		res := s.engine.Run(t.Context(), mods, Inputs{})
		if fw := res.Kinds[0]; fw.Status != api.KindReverted || !strings.Contains(fw.Error, "not confirmed") {
			t.Errorf("firewall = %+v, want reverted with the kind's error", fw)
		}
		if res.Outcome != api.OutcomeReverted || statuses(res)["shares"] != api.KindApplied {
			t.Errorf("outcome = %s, statuses %v; want reverted, the others applied", res.Outcome, statuses(res))
		}
	})
	t.Run("check after apply fails", func(t *testing.T) {
		s := newSchool(t)
		s.firewall.checkErr = errors.New("the controller is unreachable through the new ruleset")
		res := s.engine.Run(t.Context(), mods, Inputs{})
		if fw := res.Kinds[0]; fw.Status != api.KindFailing || !strings.Contains(fw.Error, "check after apply") {
			t.Errorf("firewall = %+v, want failing on its check", fw)
		}
	})
}

func TestBadSpecsFailTheirKindOnly(t *testing.T) {
	s := newSchool(t)
	mods := []Module{
		mod("firewall", `{"items":{"ssh":"admin"},"zones":[]}`), // unknown field
		mod("accounts", `{"items":{"":"x"}}`),                   // Validate refuses
		mod("files", `{"motd":"Bienvenue"}`),                    // no such kind
		mod("shares", `{"items":{"commun":"2775"}}`),
	}
	res := s.engine.Run(t.Context(), mods, Inputs{})
	want := map[string]api.KindStatus{"firewall": api.KindFailing, "accounts": api.KindFailing, "files": api.KindFailing, "shares": api.KindSkipped}
	if diff := cmp.Diff(want, statuses(res)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	for _, k := range res.Kinds {
		t.Logf("%s: %s", k.Kind, k.Error)
	}
	errs := map[string]string{}
	for _, k := range res.Kinds {
		errs[k.Kind] = k.Error
	}
	if !strings.Contains(errs["firewall"], `unknown field "zones"`) || !strings.Contains(errs["accounts"], "invalid spec") ||
		!strings.Contains(errs["files"], "upgrade alize") {
		t.Errorf("errors = %q", errs)
	}
}

func TestDriftRepairedWhenEnforcing(t *testing.T) {
	s := newSchool(t)
	mods := []Module{mod("accounts", `{"items":{"paul.durand":"6A"}}`)}
	s.engine.Run(t.Context(), mods, Inputs{})
	s.accounts.set("paul.durand", "tampered") // someone edits the directory by hand
	s.accounts.set("intrus", "x")

	res := s.engine.Run(t.Context(), mods, Inputs{})
	if res.Outcome != api.OutcomeCorrected || res.Changed() != 2 {
		t.Errorf("drift run = %s with %d changes, want corrected with 2", res.Outcome, res.Changed())
	}
	if diff := cmp.Diff(map[string]string{"paul.durand": "6A"}, s.accounts.state()); diff != "" {
		t.Errorf("state after repair (-want +got):\n%s", diff)
	}
}

func TestDriftReportedWhenReportOnly(t *testing.T) {
	s := newSchool(t)
	m := mod("accounts", `{"items":{"paul.durand":"6A"}}`)
	s.engine.Run(t.Context(), []Module{m}, Inputs{})
	s.accounts.set("paul.durand", "tampered")
	m.Mode = ReportOnly
	s.j.ops = nil

	res := s.engine.Run(t.Context(), []Module{m}, Inputs{})
	if res.Outcome != api.OutcomeDrift || res.Kinds[0].Status != api.KindDrifted || res.Changed() != 0 {
		t.Errorf("report-only run = %s, %+v; want drift, nothing applied", res.Outcome, res.Kinds[0])
	}
	if got := s.accounts.state()["paul.durand"]; got != "tampered" {
		t.Errorf("report-only run changed the system: %q", got)
	}
	if diff := cmp.Diff([]string{"plan accounts"}, s.j.get()); diff != "" {
		t.Errorf("operations in report-only (-want +got):\n%s", diff)
	}
	kr := res.Kinds[0].Report()
	if len(kr.Changes) != 1 || kr.Changes[0].Status != modules.StatusSkipped || !strings.Contains(kr.Changes[0].Error, "report-only") {
		t.Errorf("report of the drift = %+v, want the change listed, skipped, report-only", kr.Changes)
	}
	// A drifted kind does not block the kinds that depend on it.
	res = s.engine.Run(t.Context(), []Module{m, mod("shares", `{"items":{"commun":"2775"}}`)}, Inputs{})
	if statuses(res)["shares"] != api.KindApplied {
		t.Errorf("shares after drifted accounts = %s, want applied", statuses(res)["shares"])
	}
}

func TestPlanNeverApplies(t *testing.T) {
	s := newSchool(t)
	res := s.engine.Plan(t.Context(), []Module{mod("firewall", `{"items":{"ssh":"admin"}}`)}, Inputs{})
	if res.Kinds[0].Status != api.KindDrifted || len(res.Kinds[0].Plan) != 1 || len(s.firewall.state()) != 0 {
		t.Errorf("Plan() = %+v, state %v; want one planned change, nothing applied", res.Kinds[0], s.firewall.state())
	}
}

func TestTwoModulesOfOneKind(t *testing.T) {
	s := newSchool(t)
	a, b := mod("firewall", `{"items":{}}`), mod("firewall", `{"items":{}}`)
	b.Name = "other-firewall"
	res := s.engine.Run(t.Context(), []Module{a, b}, Inputs{})
	if len(res.Kinds) != 2 || res.Kinds[0].Status != api.KindFailing || res.Kinds[1].Status != api.KindFailing {
		t.Errorf("two firewall modules = %+v, want both failing", res.Kinds)
	}
}

func TestNewRefusesBadWiring(t *testing.T) {
	j := &journal{}
	a, b := newMem("accounts", j), newMem("shares", j)
	tests := []struct {
		name  string
		kinds []Kind
		want  string
	}{
		{"unknown dependency", []Kind{Adapt[memSpec](b, "accounts")}, "not wired"},
		{"circle", []Kind{Adapt[memSpec](a, "shares"), Adapt[memSpec](b, "accounts")}, "circle"},
		{"twice", []Kind{Adapt[memSpec](a), Adapt[memSpec](a)}, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(testLog(t), time.Now, nil, tt.kinds...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() = %v, want an error about %q", err, tt.want)
			}
		})
	}
}

func TestResolveSecretsAndBlobs(t *testing.T) {
	in := Inputs{
		Secrets: map[string]manifest.Secret{"ldap_bind": manifest.NewSecret([]byte("s3cret-0951099D"))},
		Blobs:   []Blob{{Name: "roster", Digest: "sha256:ab", Path: "/var/lib/alize/blobs/sha256-ab"}},
	}
	got, err := in.Resolve([]byte(`{"bind":"secret://ldap_bind","roster":"blob://roster","n":12345678901234567890,"list":["secret://ldap_bind","x"]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"bind":"s3cret-0951099D","list":["s3cret-0951099D","x"],"n":12345678901234567890,"roster":"/var/lib/alize/blobs/sha256-ab"}`
	if string(got) != want {
		t.Errorf("Resolve() = %s\nwant %s", got, want)
	}
	plain := []byte(`{"a":"b"}`)
	if got, _ := in.Resolve(plain); &got[0] != &plain[0] {
		t.Error("Resolve() copied a spec without references")
	}
	_, err = in.Resolve([]byte(`{"bind":"secret://other"}`))
	if err == nil || !strings.Contains(err.Error(), `"other"`) {
		t.Errorf("Resolve(unknown secret) = %v, want an error naming it", err)
	}
	if _, err := in.Resolve([]byte(`{"r":"blob://nope"}`)); err == nil {
		t.Error("Resolve(unknown blob) succeeded")
	}
}

// TestSecretNeverInResults: a kind that fails on a spec holding a secret
// does not leak it through the engine's result.
func TestSecretNeverInResults(t *testing.T) {
	j := &journal{}
	k := newMem("accounts", j)
	e, err := New(testLog(t), time.Now, nil, AdaptResolved[memSpec](k))
	if err != nil {
		t.Fatal(err)
	}
	in := Inputs{Secrets: map[string]manifest.Secret{"pw": manifest.NewSecret([]byte("TopSecret-42"))}}
	res := e.Run(t.Context(), []Module{mod("accounts", `{"items":{"admin":"secret://pw"}}`)}, in)
	if k.state()["admin"] != "TopSecret-42" {
		t.Fatalf("the kind got %q, want the secret's value", k.state()["admin"])
	}
	if s := fmt.Sprintf("%+v", res); strings.Contains(s, "TopSecret-42") {
		t.Errorf("the run's result holds the secret: %s", s)
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": Enforce, "enforce": Enforce, "report-only": ReportOnly} {
		if got, err := ParseMode(in); got != want || err != nil {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseMode("dry"); err == nil {
		t.Error("ParseMode(dry) accepted it")
	}
}

// refKind resolves its references itself, through a Source, as the
// accounts kind does with its bind password and roster.
type refKind struct {
	src     *Source
	secret  string
	blob    []byte
	sawSpec string
}

type refSpec struct {
	Password string `json:"password"`
	Roster   string `json:"roster"` // a digest
}

func (k *refKind) Name() string                { return "accounts" }
func (k *refKind) Validate(want refSpec) error { return nil }
func (k *refKind) Plan(ctx context.Context, want refSpec) (modules.Plan, error) {
	k.sawSpec = want.Password
	sec, err := k.src.Secret(want.Password)
	if err != nil {
		return modules.Plan{}, err
	}
	k.secret = string(sec.Reveal())
	if k.blob, err = k.src.Open(want.Roster); err != nil {
		return modules.Plan{}, err
	}
	return modules.Plan{Kind: "accounts"}, nil
}
func (k *refKind) Apply(ctx context.Context, p modules.Plan) (modules.Result, error) {
	return modules.Result{Kind: "accounts"}, nil
}

func TestSourceDuringRunsOnly(t *testing.T) {
	src := NewSource()
	k := &refKind{src: src}
	e, err := New(testLog(t), time.Now, src, Adapt[refSpec](k))
	if err != nil {
		t.Fatal(err)
	}
	roster := []byte("role;ine\n")
	path := t.TempDir() + "/roster"
	if err := os.WriteFile(path, roster, 0o400); err != nil {
		t.Fatal(err)
	}
	digest := "sha256:" + fmt.Sprintf("%x", sha256.Sum256(roster))
	in := Inputs{
		Secrets: map[string]manifest.Secret{"ldap_bind": manifest.NewSecret([]byte("pw-0951099D"))},
		Blobs:   []Blob{{Name: "roster", Digest: digest, Path: path}},
	}
	res := e.Run(t.Context(), []Module{mod("accounts", `{"password":"secret://ldap_bind","roster":"`+digest+`"}`)}, in)
	if res.Outcome != api.OutcomeCompliant {
		t.Fatalf("Run() = %+v", res.Kinds)
	}
	if k.sawSpec != "secret://ldap_bind" || k.secret != "pw-0951099D" || string(k.blob) != string(roster) {
		t.Errorf("the kind saw %q, resolved %q and %q; want the reference as compiled, then the secret and the roster", k.sawSpec, k.secret, k.blob)
	}
	if _, err := src.Secret("secret://ldap_bind"); !errors.Is(err, ErrNoRun) {
		t.Errorf("Secret() after the run = %v, want ErrNoRun: no secret at hand between runs", err)
	}
	if p, err := (&Source{in: &in}).BlobPath("blob://roster"); p != path || err != nil {
		t.Errorf("BlobPath(blob://roster) = %q, %v", p, err)
	}
	os.Chmod(path, 0o600)
	os.WriteFile(path, []byte("tampered"), 0o600)
	if _, err := (&Source{in: &in}).Open(digest); err == nil {
		t.Error("Open() of a damaged blob succeeded")
	}
}

// specChecked checks from its spec, with the run's secrets at hand, as the
// accounts kind binds to the directory its spec names.
type specChecked struct {
	refKind
	checked string
}

func (k *specChecked) CheckSpec(ctx context.Context, want refSpec) error {
	sec, err := k.src.Secret(want.Password)
	if err != nil {
		return err
	}
	k.checked = string(sec.Reveal())
	return nil
}

// alize check in a new process: each kind checks what its module's spec
// describes, with the manifest's secrets; a kind without that ability
// runs its plain check; a kind this agent lacks is an error.
func TestCheckFromSpec(t *testing.T) {
	src := NewSource()
	acc := &specChecked{refKind: refKind{src: src}}
	fw := newMem("firewall", &journal{})
	fw.checkErr = errors.New("lifeline to the controller closed")
	e, err := New(testLog(t), time.Now, src, Adapt[refSpec](acc), Adapt[memSpec](fw))
	if err != nil {
		t.Fatal(err)
	}
	in := Inputs{Secrets: map[string]manifest.Secret{"ldap_bind": manifest.NewSecret([]byte("pw-0951099D"))}}
	errs := e.Check(t.Context(), []Module{
		mod("accounts", `{"password":"secret://ldap_bind","roster":""}`),
		mod("firewall", `{"items":{}}`),
		mod("shares", `{}`),
	}, in)
	if errs["scribe-accounts"] != nil || acc.checked != "pw-0951099D" {
		t.Errorf("accounts check = %v with the secret %q, want nil with the manifest's secret", errs["scribe-accounts"], acc.checked)
	}
	if !errors.Is(errs["scribe-firewall"], fw.checkErr) {
		t.Errorf("firewall check = %v, want its own check's error", errs["scribe-firewall"])
	}
	if err := errs["scribe-shares"]; err == nil || !strings.Contains(err.Error(), "no kind shares") {
		t.Errorf("check of a kind the agent lacks = %v", err)
	}
	if _, err := src.Secret("secret://ldap_bind"); !errors.Is(err, ErrNoRun) {
		t.Errorf("Secret() after the check = %v, want ErrNoRun", err)
	}
}

// Each kind's result says how long it took, by the engine's clock.
func TestKindResultTook(t *testing.T) {
	var ticks atomic.Int64
	clock := func() time.Time { return time.Unix(0, 0).Add(time.Duration(ticks.Add(1)) * time.Millisecond) }
	k := newMem("firewall", &journal{})
	e, err := New(testLog(t), clock, nil, Adapt[memSpec](k))
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range []Result{
		e.Plan(t.Context(), []Module{mod("firewall", `{"items":{"a":"1"}}`)}, Inputs{}),
		e.Run(t.Context(), []Module{mod("firewall", `{"items":{"a":"1"}}`)}, Inputs{}),
	} {
		if len(res.Kinds) != 1 || res.Kinds[0].Took <= 0 {
			t.Errorf("kinds = %+v, want one with the time it took", res.Kinds)
		}
	}
}
