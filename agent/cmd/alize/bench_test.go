package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alize-eple/alize/agent/internal/fakecontroller"
	"github.com/alize-eple/alize/modules/schema"
)

// BenchmarkStatus: `alize status` answers in under 100 ms (target), with
// the daemon running (through its socket) and without (from the state
// files). Each op is a whole process: start, read, print.
func BenchmarkStatus(b *testing.B) {
	ctl := fastController(b)
	a := newAgent(b, "")
	if _, stderr, code := a.cli("enroll", ctl.URL(), "--token", ctl.Token()); code != 0 {
		b.Fatalf("enroll: %s", stderr)
	}
	ctl.Publish([]fakecontroller.Module{(fakecontroller.FilesModule{Motd: "Bonjour"}).Module()}, nil, nil)
	a.start()
	waitFor(b, 20*time.Second, "manifest applied", func() bool { return a.file("motd") == "Bonjour" })
	status := func(b *testing.B) {
		for b.Loop() {
			cmd := a.command("status")
			if err := cmd.Run(); err != nil && cmd.ProcessState.ExitCode() > exitAttention {
				b.Fatal(err)
			}
		}
	}
	b.Run("daemon", status)
	a.stop()
	b.Run("files", status)
}

// BenchmarkIdleRSS: the daemon's resident memory after a minute of idling
// with a manifest of the three kinds (the example modules: amon-firewall,
// scribe-accounts with a roster of 2,000 pupils, scribe-shares) loaded.
// Target: under 20 MiB. The modules are report-only: nothing on this
// machine is changed (the kinds only observe). ALIZE_IDLE_SECONDS
// shortens the idle time for a quick look.
func BenchmarkIdleRSS(b *testing.B) {
	idle := 60 * time.Second
	if s := os.Getenv("ALIZE_IDLE_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("ALIZE_IDLE_SECONDS: %v", err)
		}
		idle = time.Duration(n) * time.Second
	}
	for b.Loop() {
		status := idleStatus(b, idle)
		b.ReportMetric(float64(procKB(status, "VmRSS:"))/1024, "idle-RSS-MiB")
		b.ReportMetric(float64(procKB(status, "RssAnon:"))/1024, "anon-RSS-MiB")
		b.ReportMetric(float64(procKB(status, "VmHWM:"))/1024, "peak-RSS-MiB")
	}
}

// idleStatus returns the idle daemon's /proc/<pid>/status.
func idleStatus(b *testing.B, idle time.Duration) []byte {
	ctl := fastController(b)
	a := newAgent(b, `drift_interval: 1h
modes: {amon-firewall: report-only, scribe-accounts: report-only, scribe-shares: report-only}
accounts: {url: "ldap://127.0.0.1:1"}
`)
	if _, stderr, code := a.cli("enroll", ctl.URL(), "--token", ctl.Token()); code != 0 {
		b.Fatalf("enroll: %s", stderr)
	}
	roster := rosterCSV(2000)
	mods := []fakecontroller.Module{
		exampleModule(b, "amon-firewall.yaml", map[string]any{
			"external_interface": "ens18", "admin_interface": "ens19", "pedagogical_interface": "ens20",
			"admin_cidr": "10.1.0.0/24", "pedagogical_cidrs": []any{"10.2.0.0/16"}, "academy_admin_cidrs": []any{"10.100.0.0/16"},
			"controller_address": "192.0.2.10", "web_server_address": "10.1.0.10",
		}),
		exampleModule(b, "scribe-accounts.yaml", map[string]any{
			"uai": "0951099D", "academy": "versailles", "ldap_bind_password": "not-a-real-password",
			"samba_domain_sid": "S-1-5-21-1-2-3", "roster_blob": "sha256:" + sha256hex(roster),
		}),
		exampleModule(b, "scribe-shares.yaml", map[string]any{"workgroup": "LYCEE"}),
	}
	serial := ctl.Publish(mods, map[string][]byte{"roster": roster}, map[string]string{"ldap_bind_password": "not-a-real-password"})
	a.start()
	waitFor(b, 60*time.Second, "the manifest taken and run", func() bool {
		st := a.status()
		return st.LastRun != nil && st.LastRun.Serial == serial
	})
	time.Sleep(idle)
	a.mu.Lock()
	pid := a.daemon.Process.Pid
	a.mu.Unlock()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	if testing.Verbose() {
		b.Logf("run: %+v\n%s", a.status().Kinds, status)
	}
	return status
}

func procKB(status []byte, field string) int {
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// exampleModule is a module of modules/examples with the values the
// server level gives (the mandatory ones), resolved as the controller
// does.
func exampleModule(b *testing.B, file string, server map[string]any) fakecontroller.Module {
	def, err := os.ReadFile(filepath.Join("..", "..", "..", "modules", "examples", file))
	if err != nil {
		b.Fatal(err)
	}
	m, err := schema.ParseModule(def)
	if err != nil {
		b.Fatalf("%s: %v", file, err)
	}
	given := map[string]any{}
	for name, v := range server {
		if _, ok := m.Variables.Lookup(name); ok { // the examples change: keep what they still have
			given[name] = v
		}
	}
	r, err := schema.Resolve(&m.Variables, []schema.Level{{Name: "server", Values: given}})
	if err != nil {
		b.Fatalf("%s: %v", file, err)
	}
	values, err := r.ValuesJSON()
	if err != nil {
		b.Fatal(err)
	}
	return fakecontroller.Module{Definition: def, Values: values}
}

// rosterCSV is a roster of n pupils in 60 classes.
func rosterCSV(n int) []byte {
	var buf bytes.Buffer
	buf.WriteString("role;id;last_name;first_name;birth_date;class\n")
	for i := range n {
		fmt.Fprintf(&buf, "pupil;%010d%c;Nom%d;Prénom%d;2012-03-%02d;%d%c\n", 1000000000+i, 'A'+rune(i%26), i, i, 1+i%28, 3+i%4, 'A'+rune(i%15))
	}
	return buf.Bytes()
}
