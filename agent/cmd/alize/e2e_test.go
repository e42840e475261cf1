package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alize-eple/alize/agent/internal/daemon"
	"github.com/alize-eple/alize/agent/internal/fakecontroller"
	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/testenv"
)

// alizeBin is the agent binary the tests run, built once by TestMain with
// the test kind (build tag alizetest).
var alizeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "alize-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	alizeBin = filepath.Join(dir, "alize")
	// Not built with -race: each command would take a second to start.
	// The daemon's goroutines run under -race in agent/internal/daemon's
	// own tests.
	// Static, as shipped (packaging builds with CGO_ENABLED=0).
	build := exec.Command("go", "build", "-tags", "alizetest", "-o", alizeBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build alize:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// agentProc is one school server's agent: its state directory, socket,
// configuration and test-kind directory, and its daemon when started.
type agentProc struct {
	t      testing.TB
	dir    string
	state  string
	socket string
	config string
	files  string // the test kind's directory

	mu     sync.Mutex
	daemon *exec.Cmd
	done   chan struct{}
	logs   *bytes.Buffer
}

func newAgent(t testing.TB, config string) *agentProc {
	t.Helper()
	dir := t.TempDir()
	a := &agentProc{
		t: t, dir: dir,
		state:  filepath.Join(dir, "state"),
		socket: filepath.Join(dir, "agent.sock"),
		config: filepath.Join(dir, "agent.yaml"),
		files:  filepath.Join(dir, "files"),
	}
	if config == "" {
		config = "drift_interval: 1h\n"
	}
	if err := os.WriteFile(a.config, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.stop()
		if a.logs == nil {
			return
		}
		logs := a.logs.String()
		if strings.Contains(logs, "DATA RACE") {
			t.Errorf("the daemon has a data race")
		}
		if t.Failed() {
			t.Logf("daemon logs:\n%s", logs)
		}
	})
	return a
}

func (a *agentProc) command(args ...string) *exec.Cmd {
	full := append([]string{"--state-dir", a.state, "--socket", a.socket, "--config", a.config}, args...)
	cmd := exec.Command(alizeBin, full...)
	cmd.Env = append(os.Environ(), "ALIZE_TESTKIND_DIR="+a.files, "NO_COLOR=1")
	return cmd
}

// cli runs an alize command and returns its stdout, stderr and exit code.
func (a *agentProc) cli(args ...string) (stdout, stderr string, code int) {
	a.t.Helper()
	cmd := a.command(args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if strings.Contains(errb.String(), "DATA RACE") {
		a.t.Errorf("alize %s has a data race:\n%s", strings.Join(args, " "), errb.String())
	}
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		a.t.Fatalf("alize %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

// cliJSON runs a read command with --json into v.
func (a *agentProc) cliJSON(v any, args ...string) int {
	a.t.Helper()
	out, stderr, code := a.cli(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		a.t.Fatalf("alize %s --json: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, stderr)
	}
	return code
}

func (a *agentProc) status() daemon.Status {
	a.t.Helper()
	var st daemon.Status
	a.cliJSON(&st, "status")
	return st
}

// start starts the daemon (alize run).
func (a *agentProc) start() {
	a.t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	cmd := a.command("run")
	if a.logs == nil {
		a.logs = &bytes.Buffer{}
	}
	cmd.Stderr = &lockedWriter{w: a.logs}
	if err := cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	a.daemon, a.done = cmd, make(chan struct{})
	done := a.done
	go func() {
		cmd.Wait()
		close(done)
	}()
}

// kill sends SIGKILL to the daemon and waits for it to die.
func (a *agentProc) kill() {
	a.mu.Lock()
	cmd, done := a.daemon, a.done
	a.daemon = nil
	a.mu.Unlock()
	if cmd != nil {
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// stop sends SIGTERM and waits; it returns the exit code.
func (a *agentProc) stop() int {
	a.mu.Lock()
	cmd, done := a.daemon, a.done
	a.daemon = nil
	a.mu.Unlock()
	if cmd == nil {
		return -1
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
	}
	return cmd.ProcessState.ExitCode()
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (a *agentProc) file(name string) string {
	b, err := os.ReadFile(filepath.Join(a.files, name))
	if err != nil {
		return ""
	}
	return string(b)
}

// reportsFor returns the reports received for a serial with an outcome.
func reportsFor(ctl *fakecontroller.Controller, serial uint64, outcome api.Outcome) []api.Report {
	var out []api.Report
	for _, r := range ctl.Reports() {
		if r.Report.Serial == serial && r.Report.Outcome == outcome {
			out = append(out, r.Report)
		}
	}
	return out
}

func fastController(t testing.TB) *fakecontroller.Controller {
	return fakecontroller.New(t, fakecontroller.Options{
		Hints: api.PollHints{IntervalSeconds: 1, BootDelaySeconds: 1, WaitSeconds: 2},
	})
}

// TestEnroll: keys made locally, the controller trusted through the
// token's CA hash, a server enrolls once unless --force.
func TestEnroll(t *testing.T) {
	ctl := fastController(t)
	a := newAgent(t, "")

	if _, stderr, code := a.cli("enroll", ctl.URL()); code != exitUsage || !strings.Contains(stderr, "--token") {
		t.Errorf("enroll without a token: exit %d, %q; want %d asking for --token", code, stderr, exitUsage)
	}
	// A token naming another CA: the agent does not trust this controller.
	other := fakecontroller.New(t, fakecontroller.Options{})
	if _, stderr, code := a.cli("enroll", ctl.URL(), "--token", other.Token()); code != exitFailure || !strings.Contains(stderr, "does not contain the CA") {
		t.Errorf("enroll with another CA's token: exit %d, %q; want a refusal of the controller", code, stderr)
	}
	out, stderr, code := a.cli("enroll", ctl.URL(), "--token", ctl.Token())
	if code != 0 || !strings.Contains(out, "srv-0951099D-01") {
		t.Fatalf("enroll: exit %d\n%s%s", code, out, stderr)
	}
	st := a.status()
	if !st.Enrolled || st.Identity.ServerID != "srv-0951099D-01" || st.Identity.UAI != "0951099D" || st.Controller.Address != ctl.URL() {
		t.Errorf("status after enroll = %+v", st)
	}
	if _, stderr, code := a.cli("enroll", ctl.URL(), "--token", ctl.Token()); code != exitFailure || !strings.Contains(stderr, "--force") {
		t.Errorf("second enroll: exit %d, %q; want a refusal naming --force", code, stderr)
	}
	if _, stderr, code := a.cli("enroll", ctl.URL(), "--token", ctl.Token(), "--force"); code != 0 {
		t.Errorf("enroll --force: exit %d, %s", code, stderr)
	}
	// The state directory is root's only; so is the identity.
	for _, p := range []string{a.state, filepath.Join(a.state, "identity.json")} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, %v; want readable by root only", p, fi.Mode().Perm(), err)
		}
	}
}

// TestDaemonEndToEnd is one school server's story: enrolled, its daemon
// started under a fake systemd, a manifest applied, polls answered 304, a
// new manifest applied, a forged one refused and reported, the controller
// down while reports pile up, then back, and the daemon killed in the
// middle of a run.
func TestDaemonEndToEnd(t *testing.T) {
	ctl := fastController(t)
	a := newAgent(t, "")
	if out, stderr, code := a.cli("enroll", ctl.URL(), "--token", ctl.Token()); code != 0 {
		t.Fatalf("enroll: exit %d\n%s%s", code, out, stderr)
	}
	notify := testenv.NewNotify(t)
	t.Setenv("WATCHDOG_USEC", "500000")
	a.start()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for _, msg := range []string{"READY=1", "STATUS=", "WATCHDOG=1"} {
		if _, err := notify.Wait(ctx, msg); err != nil {
			t.Fatalf("sd_notify: %v", err)
		}
	}

	// No manifest yet: the daemon polls and finds none.
	waitFor(t, 10*time.Second, "a first poll", func() bool { n, _ := ctl.Polls(); return n > 0 })
	if _, _, code := a.cli("apply"); code != exitFailure {
		t.Errorf("apply without a manifest: exit %d, want %d", code, exitFailure)
	}

	// Manifest 1: a module of the test kind, with a secret and a blob.
	roster := []byte("role;ine;nom;prenom;classe\npupil;123456789AB;Martin;Léa;6A\n")
	mod := fakecontroller.FilesModule{Motd: "Bienvenue au collège", Secret: true, Blob: true}
	s1 := ctl.Publish([]fakecontroller.Module{mod.Module()}, map[string][]byte{"roster": roster}, map[string]string{"token": "s3cret-0951099D"})
	waitFor(t, 15*time.Second, "manifest 1 applied", func() bool { return a.file("motd") == "Bienvenue au collège" })
	if got := a.file("token"); got != "s3cret-0951099D" {
		t.Errorf("secret written = %q, want the unsealed value", got)
	}
	if got := a.file("roster.csv"); got != string(roster) {
		t.Errorf("blob copied = %q, want the roster", got)
	}
	waitFor(t, 15*time.Second, "the report of manifest 1", func() bool { return len(reportsFor(ctl, s1, api.OutcomeCorrected)) == 1 })
	rep := reportsFor(ctl, s1, api.OutcomeCorrected)[0]
	if len(rep.Kinds) != 1 || rep.Kinds[0].Kind != "testfiles" || rep.Kinds[0].Status != api.KindApplied || len(rep.Kinds[0].Changes) != 3 {
		t.Errorf("report of manifest 1 = %+v, want testfiles applied with 3 changes", rep.Kinds)
	}
	if strings.Contains(fmt.Sprint(ctl.Reports()), "s3cret") {
		t.Error("a report carries the secret")
	}

	// Unchanged, the manifest is answered 304.
	_, before := ctl.Polls()
	waitFor(t, 15*time.Second, "polls answered 304", func() bool { _, n := ctl.Polls(); return n >= before+2 })

	// Manifest 2: a new message of the day; the roster is not fetched again.
	mod.Motd = "Réunion à 17 h"
	s2 := ctl.Publish([]fakecontroller.Module{mod.Module()}, map[string][]byte{"roster": roster}, map[string]string{"token": "s3cret-0951099D"})
	waitFor(t, 15*time.Second, "manifest 2 applied", func() bool { return a.file("motd") == "Réunion à 17 h" })
	waitFor(t, 15*time.Second, "the report of manifest 2", func() bool { return len(reportsFor(ctl, s2, api.OutcomeCorrected)) == 1 })
	if n := ctl.BlobFetches("sha256:" + sha256hex(roster)); n != 1 {
		t.Errorf("the roster blob was fetched %d times, want once", n)
	}
	// The module definition travels apart, by digest, and is fetched once.
	if n := ctl.BlobFetches("sha256:" + sha256hex(mod.Module().Definition)); n != 1 {
		t.Errorf("the module definition was fetched %d times, want once", n)
	}

	// A manifest signed by a key the root does not know: refused,
	// reported, and manifest 2 stays applied.
	forged := ctl.Build([]fakecontroller.Module{(fakecontroller.FilesModule{Motd: "pirate"}).Module()}, nil, nil)
	ctl.Serve(ctl.Sign(forged, ctl.Stranger))
	waitFor(t, 15*time.Second, "the refusal reported", func() bool { return len(reportsFor(ctl, forged.Serial, api.OutcomeRefused)) == 1 })
	ref := reportsFor(ctl, forged.Serial, api.OutcomeRefused)[0]
	if ref.Refusal == nil || ref.Refusal.Code != "unknown_key" {
		t.Errorf("refusal = %+v, want code unknown_key", ref.Refusal)
	}
	if got := a.file("motd"); got != "Réunion à 17 h" {
		t.Errorf("after a refused manifest the motd is %q, want manifest 2's", got)
	}
	st := a.status()
	if st.Refused == nil || st.Manifest == nil || st.Manifest.Serial != s2 {
		t.Errorf("status after the refusal: refused %+v, manifest %+v; want the refusal shown, manifest %d kept", st.Refused, st.Manifest, s2)
	}
	if _, _, code := a.cli("status"); code != exitAttention {
		t.Errorf("status with a refused manifest: exit %d, want %d", code, exitAttention)
	}
	// Polled again, the refused manifest is answered 304, not reported again.
	_, before = ctl.Polls()
	waitFor(t, 15*time.Second, "polls of the refused manifest answered 304", func() bool { _, n := ctl.Polls(); return n >= before+1 })
	if n := len(reportsFor(ctl, forged.Serial, api.OutcomeRefused)); n != 1 {
		t.Errorf("the refusal was reported %d times, want once", n)
	}

	// The controller goes down; the technician applies three times; the
	// reports wait in the outbox; the controller comes back: each is
	// delivered exactly once.
	ctl.Stop()
	var ids []string
	for range 3 {
		var res daemon.ApplyResult
		if code := a.cliJSON(&res, "apply"); code != 0 || res.Run.Outcome != api.OutcomeCompliant || !res.Run.Reported {
			t.Fatalf("apply while the controller is down: exit %d, %+v", code, res.Run)
		}
		ids = append(ids, res.Run.ID)
	}
	if st := a.status(); st.Outbox < 3 {
		t.Errorf("outbox while the controller is down = %d reports, want at least 3", st.Outbox)
	}
	ctl.Start()
	waitFor(t, 20*time.Second, "the outbox delivered", func() bool { return a.status().Outbox == 0 })
	seen := map[string]int{}
	for _, r := range ctl.Reports() {
		seen[r.Report.ID]++
		if r.Duplicate {
			t.Errorf("report %s delivered twice", r.Report.ID)
		}
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("report %s received %d times, want exactly once", id, seen[id])
		}
	}

	// Manifest 4 takes 3 s to apply: the daemon is killed in the middle,
	// restarted, and converges; the run is reported once.
	slow := fakecontroller.FilesModule{Motd: "Après la coupure", DelayMS: 3000, Secret: true, Blob: true}
	s4 := ctl.Publish([]fakecontroller.Module{slow.Module()}, map[string][]byte{"roster": roster}, map[string]string{"token": "s3cret-0951099D"})
	waitFor(t, 15*time.Second, "the run of manifest 4 in progress", func() bool {
		st := a.status()
		return st.Daemon != nil && st.Daemon.Running != nil && st.Daemon.Running.Serial == s4
	})
	a.kill()
	if got := a.file("motd"); got == "Après la coupure" {
		t.Fatal("the run finished before the kill: the test proves nothing")
	}
	a.start()
	waitFor(t, 20*time.Second, "manifest 4 applied after the restart", func() bool { return a.file("motd") == "Après la coupure" })
	waitFor(t, 15*time.Second, "the report of manifest 4", func() bool { return len(reportsFor(ctl, s4, api.OutcomeCorrected)) >= 1 })
	if n := len(reportsFor(ctl, s4, api.OutcomeCorrected)); n != 1 {
		t.Errorf("manifest 4's run was reported %d times, want once", n)
	}
	// No report lost: every reported run of the history reached the
	// controller, once.
	var hist []daemon.RunRecord
	a.cliJSON(&hist, "history", "-n", "0")
	seen = map[string]int{}
	for _, r := range ctl.Reports() {
		seen[r.Report.ID]++
	}
	for _, r := range hist {
		if r.Reported && seen[r.ID] != 1 {
			t.Errorf("run %s (%s, serial %d) was reported %d times, want once", r.ID, r.Trigger, r.Serial, seen[r.ID])
		}
	}

	// SIGTERM: the daemon stops cleanly.
	if code := a.stop(); code != 0 {
		t.Errorf("daemon exit code after SIGTERM = %d, want 0", code)
	}
	if msgs := notify.Messages(); !contains(msgs, "STOPPING=1") {
		t.Errorf("sd_notify messages %q lack STOPPING=1", msgs)
	}
}

// TestTechnicianCommands: plan with variables' origins, drift repaired by
// apply, report-only left alone, check, history, without a daemon.
func TestTechnicianCommands(t *testing.T) {
	ctl := fastController(t)
	a := newAgent(t, "")
	if _, stderr, code := a.cli("enroll", ctl.URL(), "--token", ctl.Token()); code != 0 {
		t.Fatalf("enroll: %s", stderr)
	}
	ctl.Publish([]fakecontroller.Module{(fakecontroller.FilesModule{Motd: "Bonjour"}).Module()}, nil, nil)
	a.start()
	waitFor(t, 15*time.Second, "manifest applied", func() bool { return a.file("motd") == "Bonjour" })
	a.stop()

	// Nothing to change: plan exits 0 and says where values come from.
	var plan daemon.PlanResult
	if code := a.cliJSON(&plan, "plan"); code != 0 || plan.Outcome != api.OutcomeCompliant {
		t.Fatalf("plan of an applied manifest: exit %d, %+v", code, plan)
	}
	from := map[string]string{}
	for _, v := range plan.Modules[0].Variables {
		from[v.Name] = v.From
	}
	if from["motd"] != daemon.FromController || from["delay_ms"] != daemon.FromDefault {
		t.Errorf("variables' origins = %v, want motd from the controller, delay_ms the module default", from)
	}

	// Someone edits a managed file: plan shows it (exit 5), apply repairs.
	os.WriteFile(filepath.Join(a.files, "motd"), []byte("modifié à la main"), 0o644)
	out, _, code := a.cli("plan")
	if code != exitAttention || !strings.Contains(out, "rewrite motd") || !strings.Contains(out, "(controller)") {
		t.Errorf("plan after drift: exit %d\n%s", code, out)
	}
	out, _, code = a.cli("apply")
	if code != 0 || a.file("motd") != "Bonjour" || !strings.Contains(out, "corrected") {
		t.Errorf("apply after drift: exit %d, motd %q\n%s", code, a.file("motd"), out)
	}

	// Report-only: drift is shown, never repaired.
	a.start()
	s := ctl.Publish([]fakecontroller.Module{(fakecontroller.FilesModule{Motd: "Bonjour", Mode: "report-only"}).Module()}, nil, nil)
	waitFor(t, 15*time.Second, "the report-only manifest taken", func() bool { st := a.status(); return st.LastRun != nil && st.LastRun.Serial == s })
	os.WriteFile(filepath.Join(a.files, "motd"), []byte("modifié à la main"), 0o644)
	var res daemon.ApplyResult
	if code := a.cliJSON(&res, "apply"); code != exitAttention || res.Run.Outcome != api.OutcomeDrift {
		t.Errorf("apply in report-only: exit %d, outcome %s; want %d, drift", code, res.Run.Outcome, exitAttention)
	}
	if a.file("motd") != "modifié à la main" {
		t.Error("apply in report-only repaired the drift")
	}
	st := a.status()
	if len(st.Kinds) != 1 || st.Kinds[0].State != daemon.StateDrifted || st.Kinds[0].Mode != "report-only" {
		t.Errorf("status kinds = %+v, want testfiles drifted, report-only", st.Kinds)
	}
	waitFor(t, 15*time.Second, "the drift reported", func() bool { return len(reportsFor(ctl, s, api.OutcomeDrift)) >= 1 })

	// check: one line per check, the controller reachable, the clock right.
	var checks []daemon.Check
	a.cliJSON(&checks, "check")
	results := map[string]string{}
	for _, c := range checks {
		results[c.Name] = c.Result
	}
	for name, want := range map[string]string{"controller": "ok", "clock": "ok", "certificate": "ok", "manifest": "ok", "enrollment": "ok", "daemon": "ok", "slapd": "skipped", "firewall": "skipped"} {
		if results[name] != want {
			t.Errorf("check %s = %q, want %q (%+v)", name, results[name], want, checks)
		}
	}
	out, _, _ = a.cli("check")
	if !strings.Contains(out, "ok       controller") {
		t.Errorf("check output:\n%s", out)
	}

	// history: newest first.
	var hist []daemon.RunRecord
	a.cliJSON(&hist, "history")
	if len(hist) < 3 || hist[0].Trigger != daemon.TriggerTechnician || hist[0].Outcome != api.OutcomeDrift {
		t.Errorf("history = %+v, want the report-only apply first", hist)
	}
	out, _, _ = a.cli("history")
	if !strings.Contains(out, "technician") {
		t.Errorf("history output:\n%s", out)
	}
	// version, for scripts.
	var v map[string]string
	if a.cliJSON(&v, "version"); v["version"] != version {
		t.Errorf("version --json = %v", v)
	}
}

// TestCorruptStateIsReportedNotACrashLoop: a corrupt manifest file is set
// aside and reported; the daemon starts anyway, takes the controller's
// manifest again and converges.
func TestCorruptStateIsReportedNotACrashLoop(t *testing.T) {
	ctl := fastController(t)
	a := newAgent(t, "")
	if _, stderr, code := a.cli("enroll", ctl.URL(), "--token", ctl.Token()); code != 0 {
		t.Fatalf("enroll: %s", stderr)
	}
	ctl.Publish([]fakecontroller.Module{(fakecontroller.FilesModule{Motd: "Bonjour"}).Module()}, nil, nil)
	a.start()
	waitFor(t, 15*time.Second, "manifest applied", func() bool { return a.file("motd") == "Bonjour" })
	a.stop()

	os.WriteFile(filepath.Join(a.state, "manifest.json"), []byte(`{"envelope": "trunc`), 0o600)
	os.WriteFile(filepath.Join(a.state, "history.json"), []byte("\x00\x00garbage"), 0o600)
	os.Remove(filepath.Join(a.files, "motd"))
	st := a.status()
	if !strings.Contains(strings.Join(st.Warnings, "\n"), "corrupt") {
		t.Errorf("status warnings = %q, want the corrupt manifest reported", st.Warnings)
	}
	a.start()
	waitFor(t, 20*time.Second, "the manifest taken again and applied", func() bool { return a.file("motd") == "Bonjour" })
	matches, _ := filepath.Glob(filepath.Join(a.state, "manifest.json.corrupt*"))
	if len(matches) == 0 {
		t.Error("the corrupt manifest was not kept aside for a human")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
