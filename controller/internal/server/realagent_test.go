package server

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/controller/internal/ctltest"
	"github.com/alize-eple/alize/modules"
)

// filesModule is a module of the agent's test kind, "testfiles" (the
// files of one directory), built into a test build of alize (tag
// alizetest).
const filesModule = `name: motd-files
version: 1.0.0
kind: testfiles
description: {fr: Message du jour, en: Message of the day}
variables:
  families:
    - name: main
      description: {fr: Principal, en: Main}
      variables:
        - {name: message, type: string, mandatory: true, description: {fr: message, en: message}}
        - {name: uai, type: uai, mandatory: true, description: {fr: UAI, en: UAI}}
spec:
  files:
    motd: "${message}"
    uai: "${uai}"
`

// filesSpec is the testfiles kind's spec, as the agent's test kind reads it.
type filesSpec struct {
	Files   map[string]string `json:"files"`
	Copies  map[string]string `json:"copies,omitempty"`
	DelayMS int               `json:"delay_ms,omitempty"`
}

// lockedBuffer collects a subprocess's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The real agent, as a subprocess: it enrolls with a token, pulls, applies
// its test kind, reports; an operator changes a variable and the agent
// converges; revoked, it can no longer reach the controller.
func TestRealAgent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "alize")
	build := exec.Command("go", "build", "-tags", "alizetest", "-o", bin, "./agent/cmd/alize")
	build.Dir = filepath.Join("..", "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the agent: %v\n%s", err, out)
	}
	checkers := ctltest.Checkers()
	checkers["testfiles"] = func(spec []byte) error {
		_, err := modules.DecodeSpec[filesSpec](spec)
		return err
	}
	e := newEnv(t, envOptions{checkers: checkers, settings: func(s *Settings) {
		s.PollInterval, s.BootDelay, s.LongPoll = 2*time.Second, time.Second, 30*time.Second
	}})
	e.do(e.admin, "POST", api.PathAdminModules, api.PublishRequest{Definition: filesModule, Release: e.keys.Sign(t, []byte(filesModule), 1)}, nil)
	e.setVar("fleet", "message", "Bonjour")
	e.do(e.admin, "POST", api.PathAdminAssignments, api.AssignRequest{Level: "fleet", Module: "motd-files", Version: "1.0.0"}, nil)

	state, files := filepath.Join(dir, "state"), filepath.Join(dir, "files")
	config := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(config, []byte("drift_interval: 1h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	alize := func(args ...string) *exec.Cmd {
		cmd := exec.Command(bin, append([]string{"--state-dir", state, "--socket", filepath.Join(dir, "agent.sock"), "--config", config}, args...)...)
		cmd.Env = append(os.Environ(), "ALIZE_TESTKIND_DIR="+files, "NO_COLOR=1")
		return cmd
	}
	if out, err := alize("enroll", e.url, "--token", e.token(lyceeUAI, "amon-real")).CombinedOutput(); err != nil {
		t.Fatalf("alize enroll: %v\n%s", err, out)
	}
	daemon := alize("run")
	logs := &lockedBuffer{}
	daemon.Stdout, daemon.Stderr = logs, logs
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { daemon.Wait(); close(done) }()
	t.Cleanup(func() {
		daemon.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			daemon.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("agent logs:\n%s", logs.String())
		}
	})
	file := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(files, name))
		return string(b)
	}
	waitLong := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("waited 60 s for %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitLong("the agent to apply its manifest", func() bool { return file("motd") == "Bonjour" && file("uai") == lyceeUAI })
	waitLong("its report", func() bool {
		d := e.server("amon-real")
		return d.State == api.StateCorrected || d.State == api.StateCompliant
	})

	// An operator changes a variable: the agent converges.
	e.setVar("establishment:"+lyceeUAI, "message", "Salut")
	waitLong("the agent to converge on the change", func() bool { return file("motd") == "Salut" })
	waitLong("its report on the new manifest", func() bool {
		d := e.server("amon-real")
		return d.AppliedSerial == d.Serial && (d.State == api.StateCorrected || d.State == api.StateCompliant)
	})
	var reports []api.ReportInfo
	e.do(e.admin, "GET", api.PathAdminReports+"?server=amon-real", nil, &reports)
	if len(reports) < 2 || reports[0].Facts.AgentVersion == "" {
		t.Errorf("reports = %+v", reports)
	}

	// Revoked: the controller refuses it (at the handshake for a new
	// connection, at the next request on an open one).
	e.do(e.admin, "POST", api.PathAdminServers+"/amon-real/revoke", nil, nil)
	waitLong("the agent to be refused", func() bool {
		l := logs.String()
		return strings.Contains(l, "revoked") || strings.Contains(l, "bad certificate")
	})
}
