package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/controller/internal/ctltest"
	"github.com/alize-eple/alize/modules/firewall"
)

// cli runs the command line in a test.
type cli struct {
	t     *testing.T
	state string
	url   string
}

func (c *cli) run(stdin string, args ...string) (string, error) {
	c.t.Helper()
	var out bytes.Buffer
	all := append([]string{"--controller", c.url, "--state-dir", c.state}, args...)
	err := run(context.Background(), all, strings.NewReader(stdin), &out, io.Discard)
	return out.String(), err
}

func (c *cli) ok(args ...string) string {
	c.t.Helper()
	out, err := c.run("", args...)
	if err != nil {
		c.t.Fatalf("alize-controller %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The operator's path end to end, through the command line: the key
// ceremony, serve, the inventory, a real kind's module signed and
// published, a plan, a push, an agent that enrolls and reports, states,
// indicators, the audit log, a revocation, a root rotation.
func TestOperatorCommandLine(t *testing.T) {
	dir := t.TempDir()
	offline, state := filepath.Join(dir, "offline"), filepath.Join(dir, "state")
	addr := freePort(t)
	c := &cli{t: t, state: state, url: "https://" + addr}

	out := c.ok("keys", "init", "--dir", offline)
	if !strings.Contains(out, "move offline") {
		t.Errorf("keys init said:\n%s", out)
	}
	if _, err := c.run("", "keys", "init", "--dir", offline); err == nil || !strings.Contains(err.Error(), "keys init runs once") {
		t.Errorf("keys init twice = %v", err)
	}
	for _, f := range []string{"root.key", "release.key", "director.key"} {
		if fi, err := os.Stat(filepath.Join(offline, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, fi.Mode().Perm())
		}
	}
	// The controller gets the root chain and the director key only.
	if err := os.MkdirAll(filepath.Join(state, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"root-1.json", "director.key"} {
		copyFile(t, filepath.Join(offline, f), filepath.Join(state, "keys", f))
	}

	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- run(ctx, []string{"serve", "--state-dir", state, "--listen", addr, "--name", "127.0.0.1", "--log-level", "warn"}, nil, io.Discard, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	waitReady(t, c.url, filepath.Join(state, "ca", "ca.crt"))
	for _, f := range []string{"ca/ca.key", "ca/server.key", "secrets.key", "initial-admin.token", "controller.db"} {
		if fi, err := os.Stat(filepath.Join(state, f)); err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: %v, mode %v; want readable by its owner only", f, err, fi.Mode().Perm())
		}
	}

	if out := c.ok("whoami"); !strings.Contains(out, "admin") || !strings.Contains(out, "fleet_admin") {
		t.Errorf("whoami = %q", out)
	}
	c.ok("academy", "add", "versailles", "--title", "Académie de Versailles")
	c.ok("establishment", "add", "0951099D", "--academy", "versailles", "--name", "Lycée Camille Pissarro", "--type", "lycee", "--zone", "C")
	if _, err := c.run("", "establishment", "add", "0951099A", "--academy", "versailles", "--name", "x", "--type", "lycee", "--zone", "C"); err == nil ||
		!strings.Contains(err.Error(), "control letter") {
		t.Errorf("establishment add with a bad UAI = %v", err)
	}
	c.ok("group", "set", "lycees", "--academy", "versailles", "--rule-type", "lycee")

	// A real kind's module, signed offline and published.
	def := filepath.Join(dir, "amon-firewall.yaml")
	copyFile(t, filepath.Join("..", "..", "..", "modules", "examples", "amon-firewall.yaml"), def)
	c.ok("module", "sign", def, "--key", filepath.Join(offline, "release.key"), "--counter", "1")
	c.ok("module", "publish", def)
	if out := c.ok("module", "list"); !strings.Contains(out, "amon-firewall  2.3.0") {
		t.Errorf("module list:\n%s", out)
	}

	// A server enrolls with a token made on the command line.
	token := strings.SplitN(c.ok("token", "create", "--uai", "0951099D", "--server", "amon-pissarro", "--role", "amon"), "\n", 2)[0]
	a := ctltest.NewAgent(c.url)
	if _, err := a.Enroll(context.Background(), token); err != nil {
		t.Fatalf("enroll with the token from the command line: %v", err)
	}

	// Plan first: the module needs variables no level sets yet.
	out, err := c.run("", "plan", "assign", "group:lycees", "amon-firewall", "2.3.0")
	if err != nil || !strings.Contains(out, "FAILS") || !strings.Contains(out, "admin_cidr") || !strings.Contains(out, "REFUSED") || !strings.Contains(out, "dry run") {
		t.Errorf("plan assign = %v\n%s", err, out)
	}
	if _, err := c.run("", "assign", "group:lycees", "amon-firewall", "2.3.0"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("assign that breaks a server = %v, want refused", err)
	}
	for _, v := range [][]string{
		{"establishment:0951099D", "admin_cidr", "10.1.0.0/16"},
		{"establishment:0951099D", "pedagogical_cidrs", `["10.2.0.0/16"]`},
		{"establishment:0951099D", "web_server_address", "10.1.0.10"},
		{"fleet", "academy_admin_cidrs", `["10.255.0.0/16"]`},
		{"fleet", "controller_address", "10.255.0.5"},
	} {
		c.ok(append([]string{"var", "set"}, v...)...)
	}
	out = c.ok("plan", "assign", "group:lycees", "amon-firewall", "2.3.0")
	if !strings.Contains(out, "1 would change") || !strings.Contains(out, "add amon-firewall 2.3.0") {
		t.Errorf("plan assign:\n%s", out)
	}
	out = c.ok("assign", "group:lycees", "amon-firewall", "2.3.0")
	if !strings.Contains(out, "1 changed") {
		t.Errorf("assign:\n%s", out)
	}
	if changed, err := a.Pull(context.Background(), 0); err != nil || !changed {
		t.Fatalf("the agent's Pull() = %v, %v", changed, err)
	}
	var spec firewall.Spec
	if err := json.Unmarshal(a.Manifest.Modules[0].Spec, &spec); err != nil {
		t.Fatalf("the firewall spec: %v", err)
	}
	if _, err := a.Report(context.Background(), api.Report{ID: "run-1", Serial: a.State.Serial, Started: time.Now(), Finished: time.Now(), Outcome: api.OutcomeCorrected}); err != nil {
		t.Fatal(err)
	}
	if out := c.ok("servers", "list"); !strings.Contains(out, "amon-pissarro") || !strings.Contains(out, "corrected") {
		t.Errorf("servers list:\n%s", out)
	}
	if out := c.ok("servers", "show", "amon-pissarro"); !strings.Contains(out, "amon-firewall 2.3.0") {
		t.Errorf("servers show:\n%s", out)
	}
	if out := c.ok("reports", "--server", "amon-pissarro"); !strings.Contains(out, "corrected") {
		t.Errorf("reports:\n%s", out)
	}
	if out := c.ok("indicators", "--csv"); !strings.Contains(out, "module,amon-firewall@2.3.0,1,0,1,") {
		t.Errorf("indicators --csv:\n%s", out)
	}
	var ind api.Indicators
	if err := json.Unmarshal([]byte(c.ok("--json", "indicators")), &ind); err != nil || ind.Rows[0].CompliancePercent != 100 {
		t.Errorf("indicators --json = %+v, %v", ind, err)
	}

	// A secret comes from standard input, and is never shown.
	if _, err := c.run("", "var", "set", "fleet", "ldap_bind_password", "--secret", "oops"); err == nil {
		t.Error("var set --secret with the value on the command line: no error")
	}
	if _, err := c.run("s3cret\n", "var", "set", "fleet", "ldap_bind_password", "--secret"); err != nil {
		t.Errorf("var set --secret: %v", err)
	}
	if out := c.ok("var", "list"); strings.Contains(out, "s3cret") || !strings.Contains(out, "(secret)") {
		t.Errorf("var list shows:\n%s", out)
	}

	// Operators and roles.
	c.ok("operator", "add", "bob", "--role", "academy_admin", "--scope", "versailles", "--token-out", filepath.Join(dir, "bob.token"))
	bob := &cli{t: t, state: t.TempDir(), url: c.url}
	t.Setenv("ALIZE_TOKEN_FILE", filepath.Join(dir, "bob.token"))
	t.Setenv("ALIZE_CA", filepath.Join(state, "ca", "ca.crt"))
	if out, err := bob.run("", "whoami"); err != nil || !strings.Contains(out, "bob") {
		t.Errorf("bob's whoami = %q, %v", out, err)
	}
	if _, err := bob.run("", "var", "set", "fleet", "proxy_port", "3129"); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("bob setting a fleet variable = %v, want forbidden", err)
	}
	if out, err := bob.run("", "var", "set", "academy:versailles", "proxy_port", "3129"); err != nil || !strings.Contains(out, "1 changed") {
		t.Errorf("bob setting a Versailles variable = %v\n%s", err, out)
	}
	os.Unsetenv("ALIZE_TOKEN_FILE")
	out = c.ok("audit", "--actor", "operator:bob")
	if !strings.Contains(out, "var.set") || !strings.Contains(out, "academy:versailles.proxy_port") {
		t.Errorf("audit --actor operator:bob:\n%s", out)
	}

	// A root rotation (new director key), made offline, published.
	c.ok("keys", "rotate", "--dir", offline, "--role", "director")
	copyFile(t, filepath.Join(offline, "director.key"), filepath.Join(state, "keys", "director-2.key"))
	if out := c.ok("keys", "publish", filepath.Join(offline, "root-2.json")); !strings.Contains(out, "root version 2") {
		t.Errorf("keys publish:\n%s", out)
	}
	root2, err := a.Get(context.Background(), api.PathRoots+"2")
	if err != nil {
		t.Fatal(err)
	}
	if a.Trust, err = a.Trust.UpdateRoot(root2); err != nil {
		t.Fatal(err)
	}
	if changed, err := a.Pull(context.Background(), 0); err != nil || !changed {
		t.Errorf("Pull() after the rotation = %v, %v", changed, err)
	}

	// Revocation.
	c.ok("servers", "revoke", "amon-pissarro")
	if _, err := a.PullWith(context.Background(), a.NewClient(), 0); err == nil {
		t.Error("a revoked agent still pulls")
	}
	if out := c.ok("servers", "list", "--state", "revoked"); !strings.Contains(out, "amon-pissarro") {
		t.Errorf("servers list --state revoked:\n%s", out)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func waitReady(t *testing.T, url, caFile string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := ready(url, caFile); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("the controller is not ready after 15 s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ready(url, caFile string) error {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url + api.PathReadyz)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz: %s", resp.Status)
	}
	return nil
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"version"}, strings.NewReader(""), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if want := "alize-controller " + version + " ("; !strings.HasPrefix(out.String(), want) {
		t.Errorf("version = %q, want it to start with %q", out.String(), want)
	}
}

func TestMemTotal(t *testing.T) {
	got := memTotal()
	if got < 64<<20 || got > 1<<50 {
		t.Errorf("memTotal() = %d bytes: not this machine's memory", got)
	}
}
