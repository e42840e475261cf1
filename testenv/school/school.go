// Package school is a simulated school on one machine, built from network
// namespaces, for the end-to-end tests and `make demo`:
//
//	academy ─── internet ─── school server (Amon + Scribe) ─┬─ pupil PC   (pedagogical zone)
//	controller  router,        eth0 external 192.0.2.2       │
//	10.255.0.5  a web site     eth1 admin     10.95.10.1  ───┴─ admin PC   (admin zone)
//	            203.0.113.80   eth2 pedag.    10.95.20.1
//
// The school server runs the real slapd, smbd (ldapsam on that slapd) and
// the real `alize` agent; the academy runs the real `alize-controller` on
// its embedded SQLite database, reached over the school's external link.
// Everything lives in temporary directories and namespaces and goes away
// at cleanup.
//
// Two stand-ins, both at process boundaries: a getent shim refreshes
// nss_wrapper's passwd and group files from the directory before it
// answers (nslcd's role on a real Scribe), and a TCP relay on the school's
// internal addresses, port 445, carries Samba connections to smbd, which
// testenv binds to 127.0.0.1.
//
// Only tests and the demo (testenv/school/cmd/demo) import this package.
package school

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/testenv"
)

// The school's fixed facts.
const (
	UAI            = "0951099D"
	AcademyName    = "versailles"
	ServerID       = "amon-pissarro"
	ControllerAddr = "10.255.0.5"
	ControllerPort = 8443
	ControllerURL  = "https://10.255.0.5:8443"
	WebAddr        = "203.0.113.80" // a web site on the Internet
	SchoolExtAddr  = "192.0.2.2"
	SchoolAdmAddr  = "10.95.10.1"
	SchoolPedAddr  = "10.95.20.1"
	PupilAddr      = "10.95.20.10"
	AdminPCAddr    = "10.95.10.10"
)

// Roster is the establishment's roster: two classes, their teachers and a
// member of staff. Pupils' initial passwords are their birth dates
// (DDMMYYYY), as the demo's accounts variables ask.
const Roster = `role;id;last_name;first_name;birth_date;class;teaches;services
eleve;1234567890A;Lefèvre;Chloé;2012-03-14;3A;;
eleve;1234567891B;N'Diaye;Aïcha;2012-11-02;3A;;
eleve;1234567892C;Le Gall;Yann;2011-01-30;4B;;
eleve;1234567893D;Martin;Lucas;2011-06-21;4B;;
enseignant;08E0012345AB;Œuvrard;Bérénice;;;3A|4B;
personnel;08E0012346CD;Durand;Paul;;;;intendance
`

// A pupil of the roster and the initial password the accounts kind gives.
const (
	PupilLogin    = "chloe.lefevre"
	PupilPassword = "14032012"
	// PupilNewPassword is the one she chooses at her first logon.
	PupilNewPassword = "Tournesol-2026"
)

// Options says how to build the school.
type Options struct {
	// Bin is a directory holding the alize and alize-controller binaries.
	Bin string
	// Log receives the walk-through: every command run and its output.
	// nil discards it.
	Log io.Writer
	// Roster replaces the establishment's roster (CSV) and Classes the
	// classes that get a share (lowercase names); Firewall replaces the
	// amon-firewall module's YAML (same name and version). For scaled
	// schools (the benchmark).
	Roster   string
	Classes  []string
	Firewall []byte
}

// School is a running simulated school.
type School struct {
	t   testing.TB
	Dir string
	bin string
	log io.Writer

	Academy, Internet, Server, Pupil, AdminPC *testenv.NetNS
	LDAP                                      *testenv.Slapd
	SMB                                       *testenv.Smbd

	Controller *Controller
	Agent      *Agent

	// DomainSID is the Samba domain's SID (net getlocalsid).
	DomainSID string
	// Offline holds the academy's offline keys (root, release).
	Offline string
	// Anchors are a process per namespace, for nsenter.
	Anchors map[string]int

	// Srv is where the shares live: a directory of its own under /srv,
	// one of the roots the controller allows shares in.
	Srv string

	opts          Options
	varlib        string // bound on /var/lib/alize in the agent's mount namespace
	createdVarlib bool
}

// Start builds the school: namespaces and links, the web site, slapd,
// smbd, the relay and the controller (started, empty). Provision, Enroll
// and Agent.Start tell the rest of the story.
func Start(t testing.TB, opts Options) *School {
	t.Helper()
	testenv.Require(t, "root", "netns", "nft", "slapd", "ldap-utils", "smbd", "testparm", "smbclient")
	for _, b := range []string{"alize", "alize-controller"} {
		if _, err := os.Stat(filepath.Join(opts.Bin, b)); err != nil {
			t.Fatalf("school: %v", err)
		}
	}
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &School{t: t, Dir: dir, bin: opts.Bin, log: opts.Log, Anchors: map[string]int{}, opts: opts}
	if s.opts.Roster == "" {
		s.opts.Roster = Roster
	}
	if len(s.opts.Classes) == 0 {
		s.opts.Classes = []string{"3a", "4b"}
	}
	if s.log == nil {
		s.log = io.Discard
	}
	s.network()
	srv, err := os.MkdirTemp("/srv", "alize-school-")
	if err != nil {
		t.Fatalf("school: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(srv) })
	if err := os.Chmod(srv, 0o755); err != nil {
		t.Fatal(err)
	}
	s.Srv = srv

	// The school server's directory and file server.
	school := testenv.School{UAI: UAI, Academy: AcademyName}
	s.LDAP = testenv.StartSlapd(t, testenv.SlapdOptions{NS: s.Server, School: &school})
	for _, d := range []string{"bin", "varlib", "agent"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// smbd starts samba-dcerpcd and its workers on demand (a password
	// change) in sessions of their own: stop them once smbd is gone.
	t.Cleanup(func() {
		if s.SMB != nil {
			killMatching(s.SMB.Conf)
		}
	})
	s.SMB = testenv.StartSmbd(t, testenv.SmbdOptions{NS: s.Server, LDAP: s.LDAP,
		Include: filepath.Join(dir, "alize-shares.conf")})
	out, err := s.Server.Run(s.SMB.Command(t.Context(), "net", "getlocalsid"))
	if err != nil {
		t.Fatalf("school: net getlocalsid: %v\n%s", err, out)
	}
	_, s.DomainSID, _ = strings.Cut(strings.TrimSpace(string(out)), " is: ")
	s.writeGetentShim()
	for _, addr := range []string{SchoolPedAddr, SchoolAdmAddr} {
		s.relay(addr+":445", "127.0.0.1:"+strconv.Itoa(s.SMB.Port))
	}
	s.Controller = s.startController()
	s.Agent = s.newAgent()
	return s
}

// network makes the namespaces and links, the addresses and routes.
func (s *School) network() {
	t := s.t
	s.Academy = testenv.NewNetNS(t, "academy")
	s.Internet = testenv.NewNetNS(t, "internet")
	s.Server = testenv.NewNetNS(t, "school")
	s.Pupil = testenv.NewNetNS(t, "pupil")
	s.AdminPC = testenv.NewNetNS(t, "admin-pc")
	testenv.Veth(t, s.Academy, "eth0", s.Internet, "academy")
	testenv.Veth(t, s.Server, "eth0", s.Internet, "school")
	testenv.Veth(t, s.Server, "eth1", s.AdminPC, "eth0")
	testenv.Veth(t, s.Server, "eth2", s.Pupil, "eth0")
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	steps := []struct {
		what string
		err  error
	}{
		{"academy", s.Academy.AddAddr("eth0", p(ControllerAddr+"/24"))},
		{"internet academy side", s.Internet.AddAddr("academy", p("10.255.0.1/24"))},
		{"internet school side", s.Internet.AddAddr("school", p("192.0.2.1/24"))},
		{"web site", s.Internet.AddAddr("lo", p(WebAddr+"/32"))},
		{"school external", s.Server.AddAddr("eth0", p(SchoolExtAddr+"/24"))},
		{"school admin", s.Server.AddAddr("eth1", p(SchoolAdmAddr+"/24"))},
		{"school pedagogical", s.Server.AddAddr("eth2", p(SchoolPedAddr+"/22"))},
		{"admin PC", s.AdminPC.AddAddr("eth0", p(AdminPCAddr+"/24"))},
		{"pupil PC", s.Pupil.AddAddr("eth0", p(PupilAddr+"/22"))},
		{"academy route", s.Academy.AddDefaultRoute(a("10.255.0.1"))},
		{"school route", s.Server.AddDefaultRoute(a("192.0.2.1"))},
		{"admin PC route", s.AdminPC.AddDefaultRoute(a(SchoolAdmAddr))},
		{"pupil route", s.Pupil.AddDefaultRoute(a(SchoolPedAddr))},
		{"internet forwarding", s.Internet.WriteSysctl("net/ipv4/ip_forward", "1")},
		{"school forwarding", s.Server.WriteSysctl("net/ipv4/ip_forward", "1")},
	}
	for _, st := range steps {
		if st.err != nil {
			t.Fatalf("school: network: %s: %v", st.what, st.err)
		}
	}
	// The web site: what a pupil reaches when the school lets them.
	ln, err := s.Internet.Listen("tcp", WebAddr+":80")
	if err != nil {
		t.Fatalf("school: web site: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "Bienvenue sur Internet\n")
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	for name, ns := range map[string]*testenv.NetNS{"academy": s.Academy, "internet": s.Internet, "school": s.Server, "pupil": s.Pupil, "admin-pc": s.AdminPC} {
		s.Anchors[name] = s.anchor(ns)
	}
}

// anchor starts a sleeping process in ns, so that a person can enter the
// namespace with nsenter -t PID -n.
func (s *School) anchor(ns *testenv.NetNS) int {
	cmd := exec.Command("sleep", "infinity")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := ns.Start(cmd); err != nil {
		s.t.Fatalf("school: anchor: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.t.Cleanup(func() { cmd.Process.Kill(); <-done })
	return cmd.Process.Pid
}

// relay carries TCP connections from listen (in the school namespace) to
// target, as smbd would bind its port 445 itself.
func (s *School) relay(listen, target string) {
	ln, err := s.Server.Listen("tcp", listen)
	if err != nil {
		s.t.Fatalf("school: relay %s: %v", listen, err)
	}
	var wg sync.WaitGroup
	s.t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				u, err := s.Server.DialContext(ctx, "tcp", target)
				cancel()
				if err != nil {
					return
				}
				defer u.Close()
				go func() { io.Copy(u, c); u.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, u)
			}()
		}
	}()
}

// writeGetentShim writes DIR/bin/getent: it refreshes nss_wrapper's files
// (which smbd reads too) from the directory, then runs the real getent
// over them. The agent's shares kind finds it first in its PATH.
func (s *School) writeGetentShim() {
	pw := filepath.Join(s.Dir, "ldap.secret")
	if err := os.WriteFile(pw, []byte(s.LDAP.AdminPassword), 0o600); err != nil {
		s.t.Fatal(err)
	}
	script := fmt.Sprintf(`#!/bin/sh
# getent for the simulated school: nslcd's stand-in. Users and groups come
# from the directory, through nss_wrapper's files.
set -e
dir=%[1]q
if [ -e "$dir/nss-frozen" ] && [ "$1" != "--sync-only" ]; then exec /usr/bin/getent "$@"; fi
search() {
	ldapsearch -x -LLL -o ldif-wrap=no -H %[2]q -D %[3]q -y %[4]q -b %[5]q "$@"
}
search '(objectClass=posixAccount)' uid uidNumber gidNumber homeDirectory | awk '
	/^uid: / {u=$2} /^uidNumber: / {n=$2} /^gidNumber: / {g=$2} /^homeDirectory: / {h=$2}
	/^$/ { if (u != "") print u ":x:" n ":" g "::" h ":/bin/false"; u=""; n=""; g=""; h="" }
	END { if (u != "") print u ":x:" n ":" g "::" h ":/bin/false" }' > "$dir/passwd.new.$$"
search '(objectClass=posixGroup)' cn gidNumber memberUid | awk '
	function out() { if (c != "") print c ":x:" g ":" m; c=""; g=""; m="" }
	/^cn: / {c=$2} /^gidNumber: / {g=$2} /^memberUid: / {m = (m == "" ? $2 : m "," $2)}
	/^$/ { out() } END { out() }' > "$dir/group.new.$$"
{ echo 'root:x:0:0:root:/root:/bin/sh'; echo 'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin'; cat "$dir/passwd.new.$$"; } > "$dir/passwd.tmp.$$"
{ echo 'root:x:0:'; echo 'nogroup:x:65534:'; cat "$dir/group.new.$$"; } > "$dir/group.tmp.$$"
rm -f "$dir/passwd.new.$$" "$dir/group.new.$$"
mv "$dir/passwd.tmp.$$" "$dir/passwd"
mv "$dir/group.tmp.$$" "$dir/group"
[ "$1" = "--sync-only" ] && exit 0
exec /usr/bin/getent "$@"
`, s.SMB.Dir, s.LDAP.URL, s.LDAP.AdminDN, pw, s.LDAP.BaseDN)
	if err := os.WriteFile(filepath.Join(s.Dir, "bin", "getent"), []byte(script), 0o755); err != nil {
		s.t.Fatal(err)
	}
}

// ProcessesUsing lists the processes whose command line holds needle (a
// directory of the school): none should be left after cleanup.
func ProcessesUsing(needle string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(b, []byte(needle)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killMatching kills the processes whose command line holds needle, and
// waits for them to go.
func killMatching(needle string) {
	find := func() []int { return ProcessesUsing(needle) }
	for _, p := range find() {
		syscall.Kill(p, syscall.SIGTERM)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && len(find()) > 0; {
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range find() {
		syscall.Kill(p, syscall.SIGKILL)
	}
}

// FreezeNSS makes the getent shim answer from its files as they are,
// without asking the directory first: a benchmark measures Alizé, not the
// stand-in (nslcd answers from its cache in a few milliseconds).
func (s *School) FreezeNSS() error {
	if err := s.SyncNSS(); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.SMB.Dir, "nss-frozen"), nil, 0o644)
}

// SyncNSS refreshes the users and groups smbd knows from the directory.
func (s *School) SyncNSS() error {
	out, err := s.Server.Run(exec.Command(filepath.Join(s.Dir, "bin", "getent"), "--sync-only"))
	if err != nil {
		return fmt.Errorf("getent shim: %w: %s", err, out)
	}
	return nil
}

// Bin is the directory of the binaries the school runs.
func (s *School) Bin() string { return s.bin }

// Logf writes a line of the walk-through.
func (s *School) Logf(format string, args ...any) {
	fmt.Fprintf(s.log, format+"\n", args...)
}

// show writes a command and its output to the walk-through.
func (s *School) show(prompt string, args []string, out string) {
	fmt.Fprintf(s.log, "  %s$ %s\n", prompt, strings.Join(quoteArgs(args), " "))
	out = strings.TrimRight(out, "\n")
	if out != "" {
		for _, l := range strings.Split(out, "\n") {
			fmt.Fprintf(s.log, "      %s\n", l)
		}
	}
}

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \"'[]$;|&*") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return out
}

// Run runs a command in a namespace, shows it, and returns its output.
func (s *School) Run(ns *testenv.NetNS, prompt string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(s.t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	out, err := ns.Run(cmd)
	s.show(prompt, append([]string{name}, args...), string(out))
	return string(out), err
}

// PupilSMB runs smbclient from the pupil's PC against the school server.
func (s *School) PupilSMB(share, user, password, commands string) (string, error) {
	conf := filepath.Join(s.Dir, "client.conf")
	if err := os.WriteFile(conf, []byte("[global]\n\tclient min protocol = SMB2\n"), 0o644); err != nil {
		return "", err
	}
	if err := s.SyncNSS(); err != nil {
		return "", err
	}
	return s.Run(s.Pupil, "pupil-pc", "smbclient", "-s", conf, "//"+SchoolPedAddr+"/"+share, "-U", user+"%"+password, "-c", commands)
}

// PupilChangePassword changes a pupil's password from the pupil's PC, as
// Windows asks at the first logon (smbpasswd -r, over SMB).
func (s *School) PupilChangePassword(user, old, new string) error {
	if err := s.SyncNSS(); err != nil {
		return err
	}
	conf := filepath.Join(s.Dir, "client.conf")
	if err := os.WriteFile(conf, []byte("[global]\n\tclient min protocol = SMB2\n"), 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(s.t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "smbpasswd", "-c", conf, "-s", "-r", SchoolPedAddr, "-U", user)
	cmd.Stdin = strings.NewReader(old + "\n" + new + "\n" + new + "\n")
	out, err := s.Pupil.Run(cmd)
	s.show("pupil-pc", []string{"smbpasswd", "-r", SchoolPedAddr, "-U", user}, string(out))
	if err != nil {
		return fmt.Errorf("smbpasswd -r: %w: %s", err, out)
	}
	return nil
}

// PupilWeb fetches the web site from the pupil's PC, within timeout.
func (s *School) PupilWeb(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(s.t.Context(), timeout)
	defer cancel()
	c, err := s.Pupil.DialContext(ctx, "tcp", WebAddr+":80")
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", WebAddr)
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if !bytes.Contains(b, []byte("Bienvenue")) {
		return fmt.Errorf("unexpected answer %q", b)
	}
	return nil
}

// WaitFor polls cond every 100 ms until it holds or timeout passes.
func (s *School) WaitFor(timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("waited %v for %s", timeout, what)
		}
		select {
		case <-s.t.Context().Done():
			return s.t.Context().Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// ServerState is the controller's view of the school's server.
func (s *School) ServerState() (api.ServerDetail, error) {
	var d api.ServerDetail
	out, err := s.Controller.Quiet("servers", "show", ServerID, "--json")
	if err != nil {
		return d, err
	}
	return d, json.Unmarshal([]byte(out), &d)
}

// WaitApplied waits until the controller shows the server's current
// manifest applied in one of the states given (compliant and corrected
// when none).
func (s *School) WaitApplied(timeout time.Duration, states ...string) (api.ServerDetail, error) {
	if len(states) == 0 {
		states = []string{api.StateCompliant, api.StateCorrected}
	}
	var d api.ServerDetail
	err := s.WaitFor(timeout, "the server's report on its current manifest ("+strings.Join(states, ", ")+")", func() bool {
		var err error
		d, err = s.ServerState()
		if err != nil || d.Serial == 0 || d.AppliedSerial != d.Serial {
			return d.CompileError != "" // will not come
		}
		for _, st := range states {
			if d.State == st {
				return true
			}
		}
		return false
	})
	if err == nil && d.CompileError != "" {
		err = errors.New("the server's manifest cannot be built")
	}
	if err != nil {
		err = fmt.Errorf("%w (last: state %s, serial %d, applied %d, reason %q)", err, d.State, d.Serial, d.AppliedSerial, d.Reason)
	}
	return d, err
}
