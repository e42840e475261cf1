package school_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/testenv/school"
)

// bin holds the alize and alize-controller binaries the tests run, built
// once by TestMain as they ship (static, no race detector: each command
// would take a second to start).
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "alize-school-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = dir
	build := exec.Command("go", "build", "-trimpath", "-o", dir+"/", "./agent/cmd/alize", "./controller/cmd/alize-controller")
	build.Dir = filepath.Join("..", "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build the binaries:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// logWriter sends the walk-through to the test log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-min(len(p), 1)]))
	return len(p), nil
}

// TestSchoolStory is `make demo`'s story, checked: the academy sets up,
// the school enrolls and converges, a pupil logs in to Samba from the
// pupil PC, a firewall change arrives in seconds, hand-made drift is
// repaired, a dangerous change is reverted by commit-confirmed.
func TestSchoolStory(t *testing.T) {
	var s *school.School
	// Registered first, so run last: nothing of the school is left.
	t.Cleanup(func() {
		if s == nil {
			return
		}
		for _, dir := range []string{s.Dir, s.SMB.Dir, s.LDAP.Dir} {
			if left := school.ProcessesUsing(dir); len(left) > 0 {
				t.Errorf("processes of %s left running after cleanup: %v", dir, left)
			}
		}
		if _, err := os.Stat(s.Dir); err == nil {
			t.Errorf("%s left after cleanup", s.Dir)
		}
		if _, err := os.Stat(s.Srv); err == nil {
			t.Errorf("%s left after cleanup", s.Srv)
		}
	})
	s = school.Start(t, school.Options{Bin: bin, Log: logWriter{t}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", s.Agent.Logs())
			b, _ := os.ReadFile(s.Controller.Log)
			t.Logf("controller log:\n%s", b)
		}
	})
	var fig school.Figures
	for _, st := range s.Story(&fig) {
		t.Logf("== %s", st.Title)
		if err := st.Run(); err != nil {
			t.Fatalf("%s: %v", st.Title, err)
		}
	}
	t.Logf("figures: first converge %v, push to report %v, revert %v", fig.FirstConverge, fig.PushToReport, fig.Revert)
}

// converged builds the school and tells the story up to the school's first
// convergence.
func converged(t *testing.T) *school.School {
	t.Helper()
	s := school.Start(t, school.Options{Bin: bin, Log: logWriter{t}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", s.Agent.Logs())
			b, _ := os.ReadFile(s.Controller.Log)
			t.Logf("controller log:\n%s", b)
		}
	})
	var fig school.Figures
	for _, st := range s.Story(&fig)[:2] {
		if err := st.Run(); err != nil {
			t.Fatalf("%s: %v", st.Title, err)
		}
	}
	return s
}

// TestSchoolRestarts: the controller killed in the middle of a push, and
// the agent killed in the middle of a run; each time the school converges
// and every report the agent made reaches the controller, once.
func TestSchoolRestarts(t *testing.T) {
	s := converged(t)
	est := "establishment:" + school.UAI

	// The controller dies just after signing a change, while the agent
	// takes it; it comes back 2 s later.
	before, err := s.ServerState()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Controller.Operator("var", "set", est, "pedagogical_internet", "accept"); err != nil {
		t.Fatal(err)
	}
	s.Controller.Kill()
	time.Sleep(2 * time.Second)
	if err := s.Controller.Start(); err != nil {
		t.Fatal(err)
	}
	d, err := s.WaitApplied(60 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if d.Serial <= before.Serial {
		t.Fatalf("serial %d after the push, want above %d", d.Serial, before.Serial)
	}
	if err := s.PupilWeb(5 * time.Second); err != nil {
		t.Errorf("the change is not applied after the controller's restart: %v", err)
	}

	// The agent is killed as soon as a run starts; restarted, it runs the
	// manifest again and converges.
	logsBefore := len(s.Agent.Logs())
	before = d
	if _, err := s.Controller.Operator("var", "set", est, "pedagogical_internet", "drop"); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitFor(30*time.Second, "the run of the new manifest to start", func() bool {
		return strings.Contains(s.Agent.Logs()[logsBefore:], "run started")
	}); err != nil {
		t.Fatal(err)
	}
	s.Agent.Kill()
	if strings.Contains(s.Agent.Logs()[logsBefore:], "run finished") {
		t.Log("(the run finished before the kill: this time the restart proves less)")
	}
	if err := s.Agent.Start(); err != nil {
		t.Fatal(err)
	}
	if d, err = s.WaitApplied(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	if d.Serial <= before.Serial {
		t.Fatalf("serial %d after the agent's restart, want above %d", d.Serial, before.Serial)
	}
	if err := s.PupilWeb(2 * time.Second); err == nil {
		t.Error("the pupil PC reaches the Internet: the change was not applied after the agent's restart")
	}

	// No report lost, none twice: every reported run of the agent's
	// history is at the controller once.
	out, _, err := s.Agent.Quiet("history", "-n", "0", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var hist []struct {
		ID       string `json:"id"`
		Serial   uint64 `json:"serial"`
		Trigger  string `json:"trigger"`
		Reported bool   `json:"reported"`
	}
	if err := json.Unmarshal([]byte(out), &hist); err != nil {
		t.Fatalf("alize history --json: %v\n%s", err, out)
	}
	if err := s.WaitFor(30*time.Second, "the outbox to empty", func() bool {
		st, err := s.Agent.Status()
		return err == nil && st.Outbox == 0
	}); err != nil {
		t.Fatal(err)
	}
	out, err = s.Controller.Quiet("reports", "--server", school.ServerID, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var reports []api.ReportInfo
	if err := json.Unmarshal([]byte(out), &reports); err != nil {
		t.Fatalf("reports --json: %v\n%s", err, out)
	}
	seen := map[string]int{}
	for _, r := range reports {
		seen[r.ID]++
	}
	for _, r := range hist {
		if r.Reported && seen[r.ID] != 1 {
			t.Errorf("run %s (serial %d, %s) is at the controller %d times, want once", r.ID, r.Serial, r.Trigger, seen[r.ID])
		}
	}
}
