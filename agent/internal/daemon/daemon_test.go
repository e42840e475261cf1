package daemon

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alize-eple/alize/agent/internal/engine"
	"github.com/alize-eple/alize/agent/internal/fakecontroller"
	"github.com/alize-eple/alize/agent/internal/identity"
	"github.com/alize-eple/alize/agent/internal/state"
	"github.com/alize-eple/alize/agent/internal/testkind"
	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/modules/manifest"
)

// These tests run the daemon in-process, under the race detector, against
// the fake controller: the subprocess tests of agent/cmd/alize run the
// same code as a real process.

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// notes records sd_notify messages.
type notes struct {
	mu   sync.Mutex
	msgs []string
}

func (n *notes) add(s string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.msgs = append(n.msgs, s)
}

func (n *notes) has(prefix string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.ContainsFunc(n.msgs, func(m string) bool { return strings.HasPrefix(m, prefix) })
}

type testAgent struct {
	*Agent
	files  string
	socket string
	notes  *notes
	stop   func()
}

func enroll(t *testing.T, ctl *fakecontroller.Controller) *state.Store {
	t.Helper()
	s, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := identity.Enroll(t.Context(), s, identity.EnrollOptions{URL: ctl.URL(), Token: ctl.Token(), Now: time.Now}); err != nil {
		t.Fatal(err)
	}
	return s
}

func newTestAgent(t *testing.T, s *state.Store) *testAgent {
	t.Helper()
	return newTestAgentIn(t, s, filepath.Join(t.TempDir(), "files"))
}

// newTestAgentIn is newTestAgent with the test kind's directory given.
func newTestAgentIn(t *testing.T, s *state.Store, files string) *testAgent {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(tWriter{t}, nil))
	ta := &testAgent{files: files, socket: filepath.Join(dir, "agent.sock"), notes: &notes{}}
	kinds := func(*identity.Identity, *engine.Source) ([]engine.Kind, error) {
		return []engine.Kind{engine.AdaptResolved[testkind.Spec](&testkind.Kind{Dir: ta.files})}, nil
	}
	var err error
	ta.Agent, err = New(Options{
		Store: s, Kinds: kinds, Log: log, Now: time.Now, Version: "1.2.0",
		Socket: ta.socket, DriftInterval: time.Hour, Notify: ta.notes.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	return ta
}

// run starts the daemon; stop (also at cleanup) stops it and waits.
func (ta *testAgent) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ta.Run(ctx, 100*time.Millisecond) }()
	var once sync.Once
	ta.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run() = %v", err)
			}
		})
	}
	t.Cleanup(ta.stop)
}

func (ta *testAgent) file(name string) string {
	b, _ := os.ReadFile(filepath.Join(ta.files, name))
	return string(b)
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fast(t *testing.T, certLife time.Duration) *fakecontroller.Controller {
	return fakecontroller.New(t, fakecontroller.Options{
		Hints:        api.PollHints{IntervalSeconds: 1, BootDelaySeconds: 1, WaitSeconds: 1},
		CertLifetime: certLife,
	})
}

func TestDaemonAppliesReportsAndAnswersTheSocket(t *testing.T) {
	ctl := fast(t, 0)
	ta := newTestAgent(t, enroll(t, ctl))
	ta.run(t)
	waitFor(t, 10*time.Second, "READY=1 and a WATCHDOG=1", func() bool { return ta.notes.has("READY=1") && ta.notes.has("WATCHDOG=1") })

	serial := ctl.Publish([]fakecontroller.Module{(fakecontroller.FilesModule{Motd: "Bonjour", Secret: true}).Module()}, nil, map[string]string{"token": "t0k3n"})
	waitFor(t, 10*time.Second, "the manifest applied", func() bool { return ta.file("motd") == "Bonjour" && ta.file("token") == "t0k3n" })

	ctl2, err := DialControl(t.Context(), ta.socket)
	if err != nil {
		t.Fatal(err)
	}
	// Status and apply at once, through the socket, while the daemon polls.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if _, err := ctl2.Status(t.Context()); err != nil {
					t.Errorf("Status() = %v", err)
				}
			}
		}()
	}
	res, err := ctl2.Apply(t.Context())
	wg.Wait()
	if err != nil || res.Run.Outcome != api.OutcomeCompliant || res.Run.Trigger != TriggerTechnician {
		t.Fatalf("Apply() = %+v, %v; want a compliant technician run", res.Run, err)
	}
	st, err := ctl2.Status(t.Context())
	if err != nil || st.Daemon == nil || st.Manifest == nil || st.Manifest.Serial != serial || len(st.Kinds) != 1 || st.Kinds[0].State != StateApplied {
		t.Errorf("Status() = %+v, %v", st, err)
	}
	waitFor(t, 10*time.Second, "the reports delivered", func() bool {
		ids := map[string]bool{}
		for _, r := range ctl.Reports() {
			ids[r.Report.ID] = true
		}
		return len(ids) == 2
	})
	// The socket is the daemon's, root only.
	if fi, err := os.Stat(ta.socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	// A second daemon on the same socket refuses to start.
	other := newTestAgent(t, ta.store)
	other.opts.Socket = ta.socket
	if err := other.Run(t.Context(), 0); err == nil || !strings.Contains(err.Error(), "another alize daemon") {
		t.Errorf("second daemon: Run() = %v, want a refusal", err)
	}
	ta.stop()
	if !ta.notes.has("STOPPING=1") {
		t.Error("no STOPPING=1 at the end")
	}
	if _, err := os.Stat(ta.socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestDaemonWaitsForEnrollment(t *testing.T) {
	ctl := fast(t, 0)
	s, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	ta := newTestAgent(t, s)
	ta.run(t)
	waitFor(t, 5*time.Second, "READY=1 with a status saying so", func() bool {
		return ta.notes.has("READY=1") && ta.notes.has("STATUS=waiting for enrollment")
	})
	c, err := DialControl(t.Context(), ta.socket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(t.Context()); !errors.Is(err, identity.ErrNotEnrolled) {
		t.Errorf("Apply() before enrollment = %v, want ErrNotEnrolled", err)
	}
	if _, err := identity.Enroll(t.Context(), s, identity.EnrollOptions{URL: ctl.URL(), Token: ctl.Token(), Now: time.Now}); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctl.Publish([]fakecontroller.Module{(fakecontroller.FilesModule{Motd: "Enfin"}).Module()}, nil, nil)
	waitFor(t, 10*time.Second, "the manifest applied after enrollment", func() bool { return ta.file("motd") == "Enfin" })
}

func TestCertificateRenewal(t *testing.T) {
	t.Run("at two thirds of its life", func(t *testing.T) {
		ctl := fast(t, 4*time.Second)
		s := enroll(t, ctl)
		ta := newTestAgent(t, s)
		ta.run(t)
		first := ta.Status(nil).Identity.CertificateExpires
		waitFor(t, 15*time.Second, "a renewed certificate", func() bool {
			id, err := identity.Load(s)
			return err == nil && id.Certificate().NotAfter.After(first)
		})
	})
	t.Run("after it expired", func(t *testing.T) {
		ctl := fast(t, 2*time.Second)
		s := enroll(t, ctl)
		id, err := identity.Load(s)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(id.Certificate().NotAfter) + 200*time.Millisecond) // switched off for the summer
		ta := newTestAgent(t, s)
		ta.run(t)
		waitFor(t, 15*time.Second, "a certificate renewed with a proof of the key", func() bool {
			id, err := identity.Load(s)
			return err == nil && id.Certificate().NotAfter.After(time.Now())
		})
		ctl.Publish([]fakecontroller.Module{(fakecontroller.FilesModule{Motd: "Rentrée"}).Module()}, nil, nil)
		waitFor(t, 10*time.Second, "the manifest applied with the new certificate", func() bool { return ta.file("motd") == "Rentrée" })
	})
}

// TestRootRotation: the academy rotates its root and its director key;
// the agent walks to the new root and accepts manifests the new director
// signs.
func TestRootRotation(t *testing.T) {
	ctl := fast(t, 0)
	s := enroll(t, ctl)
	newRoot, newDirector := fakecontroller.TestKey("root-2"), fakecontroller.TestKey("director-2")
	r2 := &manifest.Root{
		Version: 2,
		Expires: time.Now().AddDate(1, 0, 0),
		Keys: map[string]manifest.PublicKey{
			newRoot.ID(): newRoot.PublicKey(), ctl.Release.ID(): ctl.Release.PublicKey(), newDirector.ID(): newDirector.PublicKey(),
		},
		Roles: manifest.Roles{
			Root:     manifest.Role{KeyIDs: []string{newRoot.ID()}, Threshold: 1},
			Release:  manifest.Role{KeyIDs: []string{ctl.Release.ID()}, Threshold: 1},
			Director: manifest.Role{KeyIDs: []string{newDirector.ID()}, Threshold: 1},
		},
	}
	env, err := manifest.SignRoot(r2, ctl.RootKey, newRoot)
	if err != nil {
		t.Fatal(err)
	}
	ctl.AddRoot(env)
	ta := newTestAgent(t, s)
	ta.run(t)
	m := ctl.Build([]fakecontroller.Module{(fakecontroller.FilesModule{Motd: "Nouvelle racine"}).Module()}, nil, nil)
	ctl.Serve(ctl.Sign(m, newDirector))
	waitFor(t, 10*time.Second, "the manifest of the new director applied", func() bool { return ta.file("motd") == "Nouvelle racine" })
	trust, err := identity.LoadTrust(s)
	if err != nil || trust.Version() != 2 {
		t.Errorf("pinned root after the rotation: version %v, %v; want 2", trust, err)
	}
}

// TestRetryAfterIsObeyed: an overloaded controller's 503 with Retry-After
// keeps the agent away at least that long.
func TestRetryAfterIsObeyed(t *testing.T) {
	ctl := fast(t, 0)
	ta := newTestAgent(t, enroll(t, ctl))
	ctl.Unavailable(3)
	ta.run(t)
	waitFor(t, 10*time.Second, "a first poll refused", func() bool { return readContact(ta.store).Failures > 0 })
	c := readContact(ta.store)
	if gap := c.NextPoll.Sub(c.LastErrorAt); gap < 3*time.Second {
		t.Errorf("next poll %v after a Retry-After of 3 s", gap)
	}
	ctl.Unavailable(0)
	waitFor(t, 15*time.Second, "the controller reached again", func() bool { return readContact(ta.store).Failures == 0 })
}

func TestStandaloneApplyHonoursTheLock(t *testing.T) {
	ctl := fast(t, 0)
	s := enroll(t, ctl)
	ta := newTestAgent(t, s)
	ctl.Publish([]fakecontroller.Module{(fakecontroller.FilesModule{Motd: "Seul"}).Module()}, nil, nil)
	ta.run(t)
	waitFor(t, 10*time.Second, "the manifest applied", func() bool { return ta.file("motd") == "Seul" })
	ta.stop()

	alone := newTestAgentIn(t, s, ta.files)
	unlock, err := s.Lock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alone.Apply(t.Context()); !errors.Is(err, state.ErrLocked) {
		t.Errorf("Apply() while another run holds the lock = %v, want ErrLocked", err)
	}
	unlock()
	res, err := alone.Apply(t.Context())
	if err != nil || res.Run.Outcome != api.OutcomeCompliant {
		t.Errorf("Apply() = %+v, %v", res.Run, err)
	}
	// The report went straight to the controller.
	found := false
	for _, r := range ctl.Reports() {
		found = found || r.Report.ID == res.Run.ID
	}
	if !found {
		t.Error("the standalone run's report did not reach the controller")
	}
}
