package school

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/alize-eple/alize/modules/examples"
)

// Controller is the academy's alize-controller, in the academy namespace.
type Controller struct {
	s     *School
	State string // its state directory
	Log   string // its log file

	proc process
}

// startController makes the academy's keys (keys init, offline), gives the
// controller its director key and root, and starts it.
func (s *School) startController() *Controller {
	c := &Controller{s: s, State: filepath.Join(s.Dir, "controller"), Log: filepath.Join(s.Dir, "controller.log")}
	s.Offline = filepath.Join(s.Dir, "offline-keys")
	if out, err := c.Quiet("keys", "init", "--dir", s.Offline); err != nil {
		s.t.Fatalf("school: keys init: %v\n%s", err, out)
	}
	keys := filepath.Join(c.State, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		s.t.Fatal(err)
	}
	for _, f := range []string{"root-1.json", "director.key"} {
		b, err := os.ReadFile(filepath.Join(s.Offline, f))
		if err != nil {
			s.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(keys, f), b, 0o600); err != nil {
			s.t.Fatal(err)
		}
	}
	if err := c.Start(); err != nil {
		s.t.Fatalf("school: %v", err)
	}
	s.t.Cleanup(func() { c.Stop() })
	return c
}

// Start starts the controller and waits until it answers.
func (c *Controller) Start() error {
	cmd := exec.Command(filepath.Join(c.s.bin, "alize-controller"), "serve",
		"--state-dir", c.State, "--listen", ControllerAddr+":"+strconv.Itoa(ControllerPort),
		"--name", ControllerAddr, "--log-level", "info",
		// Hints for a story told in seconds: a first poll within a
		// second of the agent's start, long polls of 20 s that a push
		// answers at once (the controller asks for the next one a second
		// after a long poll ends), plain polls every 10 s.
		"--poll-interval", "10s", "--boot-delay", "1s", "--long-poll", "20s")
	done, err := c.proc.start(c.s.Academy, cmd, c.Log)
	if err != nil {
		return fmt.Errorf("start alize-controller: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.Quiet("whoami"); err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("alize-controller exited at start: %s", tailFile(c.Log, 20))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("alize-controller does not answer after 30 s: %s", tailFile(c.Log, 20))
		}
	}
}

// Stop stops the controller with SIGTERM (it drains) and waits.
func (c *Controller) Stop() { c.proc.stop() }

// Kill kills the controller with SIGKILL, as a crash would.
func (c *Controller) Kill() { c.proc.kill() }

// PID is the controller's process id, 0 when stopped.
func (c *Controller) PID() int { return c.proc.pid() }

func (c *Controller) command(ctx context.Context, stdin string, args ...string) *exec.Cmd {
	all := append([]string{"--controller", ControllerURL, "--state-dir", c.State}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(c.s.bin, "alize-controller"), all...)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	return cmd
}

// Quiet runs an operator command in the academy and returns its output,
// without showing it.
func (c *Controller) Quiet(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := c.command(ctx, "", args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := c.s.Academy.Do(cmd.Run)
	if err != nil {
		return out.String() + errb.String(), fmt.Errorf("alize-controller %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Operator runs an operator command in the academy, shows it with its
// output, and returns the output.
func (c *Controller) Operator(args ...string) (string, error) {
	return c.OperatorStdin("", args...)
}

// OperatorStdin is Operator with standard input (a secret).
func (c *Controller) OperatorStdin(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := c.command(ctx, stdin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := c.s.Academy.Do(cmd.Run)
	c.s.show("academy", append([]string{"alize-controller"}, args...), out.String())
	if err != nil {
		return out.String(), fmt.Errorf("alize-controller %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// Provision is the academy operator's part: the academy and the
// establishment, the three example modules signed with the offline
// release key and published, their variables, the roster, the
// assignments. It stops at the first error.
func (s *School) Provision() error {
	c := s.Controller
	mods := filepath.Join(s.Dir, "modules")
	if err := os.MkdirAll(mods, 0o755); err != nil {
		return err
	}
	roster := filepath.Join(s.Dir, "eleves-2026.csv")
	if err := os.WriteFile(roster, []byte(s.opts.Roster), 0o644); err != nil {
		return err
	}
	steps := [][]string{
		{"academy", "add", AcademyName, "--title", "Académie de Versailles"},
		{"establishment", "add", UAI, "--academy", AcademyName, "--name", "Lycée Camille Pissarro", "--type", "lycee", "--zone", "C"},
	}
	for _, name := range []string{"amon-firewall", "scribe-accounts", "scribe-shares"} {
		b, err := fs.ReadFile(examples.Files(), name+".yaml")
		if err != nil {
			return err
		}
		if name == "amon-firewall" && s.opts.Firewall != nil {
			b = s.opts.Firewall
		}
		file := filepath.Join(mods, name+".yaml")
		if err := os.WriteFile(file, b, 0o644); err != nil {
			return err
		}
		steps = append(steps,
			[]string{"module", "sign", file, "--key", filepath.Join(s.Offline, "release.key"), "--counter", "1"},
			[]string{"module", "publish", file})
	}
	est := "establishment:" + UAI
	steps = append(steps, [][]string{
		// The academy: where its controller and its administrators are.
		{"var", "set", "academy:" + AcademyName, "controller_address", ControllerAddr},
		{"var", "set", "academy:" + AcademyName, "controller_port", strconv.Itoa(ControllerPort)},
		{"var", "set", "academy:" + AcademyName, "academy_admin_cidrs", `["10.255.0.0/24"]`},
		{"var", "set", "academy:" + AcademyName, "dns_servers", `["10.255.0.53"]`},
		// The establishment's networks (interfaces: the defaults, eth0-2).
		{"var", "set", est, "admin_cidr", "10.95.10.0/24"},
		{"var", "set", est, "pedagogical_cidrs", `["10.95.20.0/22"]`},
		{"var", "set", est, "web_server_address", "10.95.10.80"},
		// Its directory and Samba domain.
		{"var", "set", est, "ldap_url", s.LDAP.URL},
		{"var", "set", est, "ldap_bind_dn", s.LDAP.AdminDN},
		{"var", "set", est, "samba_domain_sid", s.DomainSID},
		{"var", "set", est, "pupils_initial_password", "birth_date"},
		// Its shares, under the simulation's directory.
		{"var", "set", est, "homes_root", filepath.Join(s.Srv, "home")},
		{"var", "set", est, "data_root", filepath.Join(s.Srv, "workgroups")},
		{"var", "set", est, "classes", classesJSON(s.opts.Classes)},
	}...)
	for _, st := range steps {
		if _, err := c.Operator(st...); err != nil {
			return err
		}
	}
	if _, err := c.OperatorStdin(s.LDAP.AdminPassword+"\n", "var", "set", est, "ldap_bind_password", "--secret"); err != nil {
		return err
	}
	if _, err := c.Operator("roster", "import", UAI, roster); err != nil {
		return err
	}
	for _, m := range [][]string{{"amon-firewall", "2.3.0"}, {"scribe-accounts", "1.4.0"}, {"scribe-shares", "1.1.2"}} {
		if _, err := c.Operator("assign", est, m[0], m[1]); err != nil {
			return err
		}
	}
	return nil
}

// Token creates the school server's one-time enrollment token.
func (s *School) Token() (string, error) {
	out, err := s.Controller.Operator("token", "create", "--uai", UAI, "--server", ServerID, "--role", "amon", "--ttl", "1h")
	if err != nil {
		return "", err
	}
	tok, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	if !strings.HasPrefix(tok, "alize1.") {
		return "", fmt.Errorf("token create said %q", out)
	}
	return strings.TrimSpace(tok), nil
}

func classesJSON(classes []string) string {
	b, _ := json.Marshal(classes)
	return string(b)
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
