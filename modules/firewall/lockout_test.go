package firewall

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alize-eple/alize/modules"
	"github.com/alize-eple/alize/testenv"
)

// controller serves TLS on 192.0.2.2:8443 in the server namespace, as the
// academy's controller would, and returns the client configuration that
// trusts it.
func controller(t *testing.T, s *school) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "controller.test"},
		DNSNames:     []string{"controller.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.server.Listen("tcp", "192.0.2.2:8443")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	srv := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := tls.Server(c, srv)
				tc.SetDeadline(time.Now().Add(5 * time.Second))
				tc.Handshake()
			}()
		}
	}()
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{RootCAs: pool, ServerName: "controller.test"}
}

// lockoutSpecs are the school spec with a DNS probe towards the outside
// (good), and the same with the server's own traffic to the outside
// dropped, which the DNS probe cannot pass (locked).
func lockoutSpecs(t testing.TB) (good, locked Spec) {
	good = mustSpec(t, schoolSpec)
	good.Probes = []Probe{{Name: "academy-dns", Check: "dns", Address: "192.0.2.2:53"}}
	locked = mustSpec(t, schoolSpec)
	locked.Policy = append(locked.Policy, Flow{From: ServerZone, To: "external", Default: "drop"})
	locked.Probes = good.Probes
	return good, locked
}

func confirmed(tlsConf *tls.Config) func(*Config) {
	return func(c *Config) {
		c.Lifelines = schoolLifelines()
		c.Confirm.Controller = "192.0.2.2:8443"
		c.Confirm.TLS = tlsConf
		// Probes that pass return at once; only a revert waits this long.
		// It leaves room for a loaded machine.
		c.Confirm.Deadline = 3 * time.Second
	}
}

// TestLockoutIsReverted applies a manifest whose probes cannot pass: it
// is reverted by its deadline, the previous rules are back, identical,
// and the boot ruleset is still the confirmed one.
func TestLockoutIsReverted(t *testing.T) {
	s := newSchool(t)
	serveDNS(t, s.server, "192.0.2.2:53")
	nftStdin(t, s.gw, otherAppTable)
	f := newKind(t, s.gw, confirmed(controller(t, s)))
	good, locked := lockoutSpecs(t)
	apply(t, f, good)
	before := listRuleset(t, s.gw)
	boot, err := os.ReadFile(f.BootPath())
	if err != nil {
		t.Fatalf("no boot ruleset after a confirmed apply: %v", err)
	}

	p, err := f.Plan(t.Context(), locked)
	if err != nil || p.Empty() {
		t.Fatalf("Plan(locked) = %v, %v; want changes", p.Changes, err)
	}
	res, err := f.Apply(t.Context(), p)
	if !errors.Is(err, ErrReverted) || !errors.Is(err, modules.ErrReverted) {
		t.Fatalf("Apply(locked) error = %v, want ErrReverted (and modules.ErrReverted, for the engine)", err)
	}
	var rev *RevertError
	if !errors.As(err, &rev) || !strings.Contains(rev.Reason.Error(), "academy-dns") {
		t.Errorf("RevertError = %v, want it to name the failed probe academy-dns", err)
	}
	if !res.Failed() || len(res.Changes) != len(p.Changes) {
		t.Errorf("Apply(locked) result = %+v, want every change failed", res)
	}
	if after := listRuleset(t, s.gw); after != before {
		t.Errorf("after the revert the ruleset is:\n%s\nwant the previous one, identical:\n%s", after, before)
	}
	if got, _ := os.ReadFile(f.BootPath()); string(got) != string(boot) {
		t.Errorf("the boot ruleset changed although the new ruleset was not confirmed")
	}
	if _, err := os.Stat(f.pendingPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pending state left after the revert: %v", err)
	}
	if p, err := f.Plan(t.Context(), good); err != nil || !p.Empty() {
		t.Errorf("Plan(good) after the revert = %v, %v; want empty", p.Changes, err)
	}
	if err := f.Check(t.Context()); err != nil {
		t.Errorf("Check after the revert = %v, want nil", err)
	}
}

// TestLifelinesOutliveTheManifest applies a manifest that drops the
// server's traffic to the outside: the controller stays reachable (its
// lifeline comes first), so the ruleset is confirmed, and other traffic
// to the outside is dropped.
func TestLifelinesOutliveTheManifest(t *testing.T) {
	s := newSchool(t)
	serveTCP(t, s.server, ":80")
	f := newKind(t, s.gw, confirmed(controller(t, s)))
	_, locked := lockoutSpecs(t)
	locked.Probes = nil
	apply(t, f, locked)
	if err := f.Check(t.Context()); err != nil {
		t.Errorf("Check (controller over TLS) = %v, want nil", err)
	}
	runCases(t, []probeCase{{s.gw, "192.0.2.2:80", "timeout", "server → external is dropped by the manifest"}})

	// The counter-proof: without the controller lifeline, the same
	// manifest cuts the controller off and is reverted.
	bare := newKind(t, s.gw, func(c *Config) {
		confirmed(f.confirm.TLS)(c)
		c.Lifelines.Controller = nil
	})
	apply(t, bare, mustSpec(t, schoolSpec))
	p, err := bare.Plan(t.Context(), locked)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bare.Apply(t.Context(), p); !errors.Is(err, ErrReverted) || !strings.Contains(err.Error(), "controller") {
		t.Errorf("Apply without the controller lifeline = %v, want a revert naming the controller probe", err)
	}
}

// TestTCPProbeDeadline: a TCP probe whose packets are dropped keeps
// trying new connections until the deadline, then the ruleset reverts.
func TestTCPProbeDeadline(t *testing.T) {
	s := newSchool(t)
	serveTCP(t, s.server, "192.0.2.2:389")
	f := newKind(t, s.gw, func(c *Config) {
		c.Lifelines = schoolLifelines()
		c.Confirm.Deadline = time.Second
	})
	_, locked := lockoutSpecs(t)
	locked.Probes = []Probe{{Name: "ldap", Check: "tcp", Address: "192.0.2.2:389"}}
	p, err := f.Plan(t.Context(), locked)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Apply(t.Context(), p)
	if !errors.Is(err, ErrReverted) || !strings.Contains(err.Error(), "ldap (tcp 192.0.2.2:389) did not pass before the deadline") {
		t.Errorf("Apply = %v, want a revert naming the ldap probe and the deadline", err)
	}
	if out := nft(t, s.gw, "list", "tables"); strings.Contains(out, "alize") {
		t.Errorf("there was no table before, there must be none after the revert:\n%s", out)
	}
}

// TestKilledInsideTheWindowRevertsOnRestart applies from a child process
// inside the gateway's namespace, kills it with SIGKILL while its probes
// wait, and restarts the kind: Recover brings the previous rules back.
func TestKilledInsideTheWindowRevertsOnRestart(t *testing.T) {
	s := newSchool(t)
	serveDNS(t, s.server, "192.0.2.2:53")
	nftStdin(t, s.gw, otherAppTable)
	f := newKind(t, s.gw, func(c *Config) { c.Lifelines = schoolLifelines() })
	good, locked := lockoutSpecs(t)
	good.Probes = nil
	apply(t, f, good)
	before := listRuleset(t, s.gw)
	boot, _ := os.ReadFile(f.BootPath())

	spec, err := jsonMarshal(locked)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "helper.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=apply-and-wait", helperRootEnv+"="+f.root, helperSpecEnv+"="+spec)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.gw.Start(cmd); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Wait until the child is inside its window: pending state written
	// and the new ruleset live.
	inWindow := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && !inWindow; {
		select {
		case err := <-exited:
			out, _ := os.ReadFile(logPath)
			t.Fatalf("helper exited before being killed: %v\n%s", err, out)
		case <-time.After(50 * time.Millisecond):
		}
		_, err := os.Stat(f.pendingPath())
		inWindow = err == nil && listRuleset(t, s.gw) != before
	}
	if !inWindow {
		out, _ := os.ReadFile(logPath)
		t.Fatalf("the helper never got inside its confirmation window:\n%s", out)
	}
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("helper: %v, want it killed", err)
	}
	if listRuleset(t, s.gw) == before {
		t.Fatal("the unconfirmed ruleset should still be live after the kill")
	}

	restarted := newKind(t, s.gw, func(c *Config) {
		c.Root = f.root
		c.Lifelines = schoolLifelines()
	})
	reverted, err := restarted.Recover(t.Context())
	if err != nil || !reverted {
		t.Fatalf("Recover = %t, %v; want true, nil", reverted, err)
	}
	if after := listRuleset(t, s.gw); after != before {
		t.Errorf("after Recover the ruleset is:\n%s\nwant the previous one:\n%s", after, before)
	}
	if got, _ := os.ReadFile(f.BootPath()); string(got) != string(boot) {
		t.Error("the boot ruleset changed although the killed apply was never confirmed")
	}
	if reverted, err := restarted.Recover(t.Context()); err != nil || reverted {
		t.Errorf("second Recover = %t, %v; want false, nil", reverted, err)
	}
}

// TestRevertFallsBackToLastConfirmed: when the previous table holds what
// the kind cannot restore as it is (a verdict map added by hand), a
// revert loads the last confirmed ruleset.
func TestRevertFallsBackToLastConfirmed(t *testing.T) {
	s := newSchool(t)
	f := newKind(t, s.gw, func(c *Config) {
		c.Lifelines = schoolLifelines()
		c.Confirm.Deadline = 500 * time.Millisecond
	})
	good, locked := lockoutSpecs(t)
	good.Probes = nil
	apply(t, f, good)
	confirmedRules := listRuleset(t, s.gw)
	nftStdin(t, s.gw, "add map inet alize gates { type ipv4_addr : verdict; elements = { 10.0.0.1 : accept } }")
	p, err := f.Plan(t.Context(), locked)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Apply(t.Context(), p); !errors.Is(err, ErrReverted) {
		t.Fatalf("Apply(locked) = %v, want ErrReverted", err)
	}
	if got := listRuleset(t, s.gw); got != confirmedRules {
		t.Errorf("after the revert the ruleset is:\n%s\nwant the last confirmed one:\n%s", got, confirmedRules)
	}
}

// TestRecoverWithNothingPending does nothing.
func TestRecoverWithNothingPending(t *testing.T) {
	testenv.Require(t, "nft", "netns")
	ns := testenv.NewNetNS(t, "gateway")
	nftStdin(t, ns, otherAppTable)
	before := listRuleset(t, ns)
	f := newKind(t, ns, nil)
	if reverted, err := f.Recover(t.Context()); err != nil || reverted {
		t.Errorf("Recover = %t, %v; want false, nil", reverted, err)
	}
	if got := listRuleset(t, ns); got != before {
		t.Errorf("Recover with nothing pending changed the ruleset")
	}
}

// TestMain runs the helper process the SIGKILL test starts when its
// environment variable selects it, and the tests otherwise.
func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helperMain(mode))
	}
	os.Exit(m.Run())
}

// The helper process the SIGKILL test starts: the test binary itself,
// selected by an environment variable.
const (
	helperEnv     = "ALIZE_FIREWALL_TEST_HELPER"
	helperRootEnv = "ALIZE_FIREWALL_TEST_ROOT"
	helperSpecEnv = "ALIZE_FIREWALL_TEST_SPEC"
)

func helperMain(mode string) int {
	if mode != "apply-and-wait" {
		fmt.Fprintf(os.Stderr, "helper: unknown mode %q\n", mode)
		return 2
	}
	f, err := New(Config{
		Root:      os.Getenv(helperRootEnv),
		Log:       slog.New(slog.NewTextHandler(os.Stderr, nil)),
		Lifelines: schoolLifelines(),
		Confirm:   Confirm{Deadline: time.Minute}, // killed long before
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	spec, err := modules.DecodeSpec[Spec]([]byte(os.Getenv(helperSpecEnv)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	ctx := context.Background()
	p, err := f.Plan(ctx, spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	_, err = f.Apply(ctx, p)
	fmt.Fprintln(os.Stderr, "helper: the window ended before the kill:", err)
	return 3
}

func jsonMarshal(v any) (string, error) {
	s := jsonString(v)
	if s == "null" {
		return "", fmt.Errorf("cannot marshal %T", v)
	}
	return s, nil
}
