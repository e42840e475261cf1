package school

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Agent is the school server's alize agent. Its commands run in the
// school's network namespace and in a private mount namespace where
// /var/lib/alize (the kinds' own state: the firewall's confirmed ruleset,
// the initial passwords) is a directory of the simulation.
type Agent struct {
	s      *School
	Dir    string
	State  string
	Socket string
	Config string
	Log    string

	proc process
}

func (s *School) newAgent() *Agent {
	a := &Agent{s: s, Dir: filepath.Join(s.Dir, "agent")}
	a.State = filepath.Join(a.Dir, "state")
	a.Socket = filepath.Join(a.Dir, "agent.sock")
	a.Config = filepath.Join(a.Dir, "agent.yaml")
	a.Log = filepath.Join(a.Dir, "agent.log")
	s.varlib = filepath.Join(s.Dir, "varlib")
	config := fmt.Sprintf(`# The simulated school's agent.
drift_interval: 1h
log_level: info
checks:
  ldap: "127.0.0.1:%d"
  smb: "127.0.0.1:%d"
firewall:
  admin_networks: [10.255.0.0/24]
  confirm_deadline: 5s
shares:
  include: %s
  smb_conf: %s
  allowed_roots: [%s]
`, s.LDAP.Port, s.SMB.Port,
		filepath.Join(s.Dir, "alize-shares.conf"), s.SMB.Conf, s.Srv)
	if err := os.WriteFile(a.Config, []byte(config), 0o600); err != nil {
		s.t.Fatal(err)
	}
	// The mount point of the private /var/lib/alize must exist on the
	// host; made here, it is removed at cleanup when left empty.
	if _, err := os.Stat("/var/lib/alize"); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll("/var/lib/alize", 0o700); err != nil {
			s.t.Fatal(err)
		}
		s.createdVarlib = true
	}
	s.t.Cleanup(func() {
		a.Stop()
		if s.createdVarlib {
			os.Remove("/var/lib/alize")
		}
	})
	return a
}

// Command prepares an alize command as the school's technician runs it.
func (a *Agent) Command(ctx context.Context, args ...string) *exec.Cmd {
	all := append([]string{"--mount", "--propagation", "private", "--", "sh", "-c",
		`mount --bind "$0" /var/lib/alize && exec "$@"`, a.s.varlib,
		filepath.Join(a.s.bin, "alize"), "--state-dir", a.State, "--socket", a.Socket, "--config", a.Config}, args...)
	cmd := exec.CommandContext(ctx, "unshare", all...)
	env := []string{"NO_COLOR=1", "PATH=" + filepath.Join(a.s.Dir, "bin") + ":" + os.Getenv("PATH"),
		"NSS_WRAPPER_PASSWD=" + filepath.Join(a.s.SMB.Dir, "passwd"), "NSS_WRAPPER_GROUP=" + filepath.Join(a.s.SMB.Dir, "group")}
	if lib := nssWrapper(); lib != "" {
		env = append(env, "LD_PRELOAD="+lib)
	}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PATH=") && !strings.HasPrefix(e, "NOTIFY_SOCKET=") {
			env = append(env, e)
		}
	}
	cmd.Env = env
	return cmd
}

func nssWrapper() string {
	m, _ := filepath.Glob("/usr/lib/*/libnss_wrapper.so")
	if len(m) == 0 {
		return ""
	}
	return m[0]
}

// run runs an alize command; code is its exit code.
func (a *Agent) run(args ...string) (stdout, stderr string, code int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := a.Command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = a.s.Server.Do(cmd.Run)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code, err = ee.ExitCode(), nil
	}
	return out.String(), errb.String(), code, err
}

// CLI runs an alize command, shows it with its output, and returns its
// output and exit code.
func (a *Agent) CLI(args ...string) (string, int, error) {
	out, errb, code, err := a.run(args...)
	a.s.show("school", append([]string{"alize"}, args...), out+errb)
	if err != nil {
		return out, code, err
	}
	if code != 0 {
		a.s.Logf("      (exit %d)", code)
	}
	return out, code, nil
}

// Quiet runs an alize command without showing it.
func (a *Agent) Quiet(args ...string) (string, int, error) {
	out, errb, code, err := a.run(args...)
	return out + errb, code, err
}

// Status is the part of `alize status --json` the story reads.
type Status struct {
	Enrolled bool `json:"enrolled"`
	Daemon   *struct {
		Running *struct {
			Serial uint64 `json:"serial"`
		} `json:"running,omitempty"`
	} `json:"daemon,omitempty"`
	Manifest *struct {
		Serial uint64 `json:"serial"`
	} `json:"manifest,omitempty"`
	Refused *struct {
		Serial  uint64 `json:"serial"`
		Refusal struct {
			Code string `json:"code"`
		} `json:"refusal"`
	} `json:"refused,omitempty"`
	Kinds []struct {
		Kind   string `json:"kind"`
		State  string `json:"state"`
		Module string `json:"module"`
	} `json:"kinds,omitempty"`
	LastRun *struct {
		Serial  uint64 `json:"serial"`
		Outcome string `json:"outcome"`
	} `json:"last_run,omitempty"`
	Outbox   int      `json:"outbox"`
	Warnings []string `json:"warnings,omitempty"`
}

// Status reads `alize status --json`.
func (a *Agent) Status() (Status, error) {
	var st Status
	out, errb, _, err := a.run("status", "--json")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("alize status --json: %w: %s%s", err, out, errb)
	}
	return st, nil
}

// Sources reads `alize plan --json`: for each module, where each
// variable's value comes from.
func (a *Agent) Sources() (map[string]map[string]string, error) {
	var plan struct {
		Modules []struct {
			Module    string `json:"module"`
			Variables []struct {
				Name string `json:"name"`
				From string `json:"from"`
			} `json:"variables"`
		} `json:"modules"`
	}
	out, errb, _, err := a.run("plan", "--json")
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		return nil, fmt.Errorf("alize plan --json: %w: %s%s", err, out, errb)
	}
	src := map[string]map[string]string{}
	for _, m := range plan.Modules {
		src[m.Module] = map[string]string{}
		for _, v := range m.Variables {
			src[m.Module][v.Name] = v.From
		}
	}
	return src, nil
}

// Enroll enrolls the school server with a token.
func (a *Agent) Enroll(token string) error {
	out, code, err := a.CLI("enroll", ControllerURL, "--token", token)
	if err == nil && code != 0 {
		err = fmt.Errorf("alize enroll: exit %d: %s", code, out)
	}
	return err
}

// Start starts the daemon (alize run) in the school namespace.
func (a *Agent) Start() error {
	if _, err := a.proc.start(a.s.Server, a.Command(context.Background(), "run"), a.Log); err != nil {
		return fmt.Errorf("start alize run: %w", err)
	}
	return nil
}

// Stop stops the daemon with SIGTERM and waits for it.
func (a *Agent) Stop() { a.proc.stop() }

// Kill kills the daemon with SIGKILL, as a power cut would.
func (a *Agent) Kill() { a.proc.kill() }

// PID is the daemon's process id, 0 when stopped.
func (a *Agent) PID() int { return a.proc.pid() }

// Logs is the daemon's log so far.
func (a *Agent) Logs() string {
	b, _ := os.ReadFile(a.Log)
	return string(b)
}
