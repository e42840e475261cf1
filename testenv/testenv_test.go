package testenv_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/go-ldap/ldap/v3"
	"github.com/google/nftables"
	"github.com/jackc/pgx/v5"

	"github.com/alize-eple/alize/testenv"
)

// recorder stands for a test, to see whether Require fails or skips.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Skip(args ...any) {
	r.skip = fmt.Sprint(args...)
	runtime.Goexit()
}

func require(t *testing.T, parts ...string) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		testenv.Require(r, parts...)
	}()
	<-done
	return r
}

func TestRequire(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // testparm lives in /usr/bin: now it is missing

	t.Setenv(testenv.SystestEnv, "1")
	if r := require(t, "testparm"); !strings.Contains(r.fatal, "missing real parts: testparm") || r.skip != "" {
		t.Errorf("Require(testparm) under %s=1: fatal %q, skip %q; want a failure naming testparm", testenv.SystestEnv, r.fatal, r.skip)
	}
	t.Setenv(testenv.SystestEnv, "")
	if r := require(t, "testparm"); !strings.Contains(r.skip, "missing real parts: testparm") || r.fatal != "" {
		t.Errorf("Require(testparm) on a laptop: fatal %q, skip %q; want a skip naming testparm", r.fatal, r.skip)
	}
	if r := require(t, "no-such-part"); !strings.Contains(r.fatal, `unknown part "no-such-part"`) {
		t.Errorf("Require(no-such-part): fatal %q, want an unknown-part failure", r.fatal)
	}
}

func TestRequirePresentParts(t *testing.T) {
	r := require(t, "root", "nft", "slapd", "smbd", "testparm", "smbclient", "postgres")
	if r.fatal != "" || r.skip != "" {
		if testenv.Systest() {
			t.Fatalf("Require: %s%s", r.fatal, r.skip)
		}
		t.Skip(r.skip + r.fatal)
	}
}

// nsAlive reports whether any thread of any process is still in the
// network namespace with this inode.
func nsAlive(inode uint64) bool {
	tasks, _ := filepath.Glob("/proc/[0-9]*/task/[0-9]*/ns/net")
	want := fmt.Sprintf("net:[%d]", inode)
	for _, task := range tasks {
		if link, err := os.Readlink(task); err == nil && link == want {
			return true
		}
	}
	return false
}

func TestNetNSRuleStaysInside(t *testing.T) {
	testenv.Require(t, "nft")
	var inode uint64
	t.Run("in namespace", func(t *testing.T) {
		ns := testenv.NewNetNS(t, "fw")
		inode = ns.Inode()
		conn, err := nftables.New(nftables.WithNetNSFd(ns.FD()))
		if err != nil {
			t.Fatal(err)
		}
		table := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "alize_testenv_probe"})
		conn.AddChain(&nftables.Chain{Name: "input", Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
		if err := conn.Flush(); err != nil {
			t.Fatalf("add table in namespace: %v", err)
		}
		inside, err := ns.Run(exec.Command("nft", "list", "tables"))
		if err != nil || !strings.Contains(string(inside), "alize_testenv_probe") {
			t.Errorf("nft list tables inside = %q, %v; want the probe table", inside, err)
		}
		host, err := exec.Command("nft", "list", "tables").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list tables on the host: %v: %s", err, host)
		}
		if strings.Contains(string(host), "alize_testenv_probe") {
			t.Errorf("the host's ruleset has the namespace's table:\n%s", host)
		}
		if !nsAlive(inode) {
			t.Errorf("namespace %d not found in /proc while in use", inode)
		}
	})
	if nsAlive(inode) {
		t.Errorf("namespace %d still has a thread after cleanup", inode)
	}
}

func TestTopologyForwardsUntilDropped(t *testing.T) {
	testenv.Require(t, "nft")
	topo := testenv.NewTopology(t)
	l, err := topo.Server.Listen("tcp", netip.AddrPortFrom(topo.ServerAddr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "bonjour\n")
			c.Close()
		}
	}()
	dial := func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		c, err := topo.Client.DialContext(ctx, "tcp", l.Addr().String())
		if err != nil {
			return err
		}
		defer c.Close()
		got, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		if string(got) != "bonjour\n" {
			return fmt.Errorf("read %q", got)
		}
		return nil
	}
	if err := dial(); err != nil {
		t.Fatalf("client → server through the router: %v", err)
	}

	// Drop forwarded traffic in the router: the client must no longer reach the server.
	conn, err := nftables.New(nftables.WithNetNSFd(topo.Router.FD()))
	if err != nil {
		t.Fatal(err)
	}
	table := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "probe"})
	drop := nftables.ChainPolicyDrop
	conn.AddChain(&nftables.Chain{Name: "forward", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := dial(); err == nil {
		t.Fatal("client reached the server through a router that drops forwarding")
	}
}

func TestSlapdSchoolTree(t *testing.T) {
	school := testenv.School{UAI: "0951099D", Academy: "versailles"}
	base := school.BaseDN()
	s := testenv.StartSlapd(t, testenv.SlapdOptions{
		School: &school,
		LDIF: `dn: uid=jeanne.martin,ou=eleves,ou=Utilisateurs,` + base + `
objectClass: inetOrgPerson
objectClass: posixAccount
uid: jeanne.martin
cn: Jeanne Martin
sn: Martin
givenName: Jeanne
uidNumber: 10001
gidNumber: 10001
homeDirectory: /home/j/jeanne.martin
`,
	})
	if s.BaseDN != base {
		t.Errorf("BaseDN = %q, want %q", s.BaseDN, base)
	}
	c, err := ldap.DialURL(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind(s.AdminDN, s.AdminPassword); err != nil {
		t.Fatalf("bind as %s: %v", s.AdminDN, err)
	}
	res, err := c.Search(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(|(objectClass=organizationalUnit)(uid=jeanne.martin))", []string{"dn"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range res.Entries {
		got = append(got, e.DN)
	}
	for _, want := range []string{
		base,
		"ou=eleves,ou=Utilisateurs," + base,
		"ou=personnels,ou=Utilisateurs," + base,
		"ou=groupes," + base,
		"uid=jeanne.martin,ou=eleves,ou=Utilisateurs," + base,
	} {
		if !contains(got, want) {
			t.Errorf("search under %s: no %s among %q", base, want, got)
		}
	}
	if err := c.Bind(s.AdminDN, "wrong"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Errorf("bind with a wrong password = %v, want invalid credentials", err)
	}
}

func TestSlapdInNamespace(t *testing.T) {
	ns := testenv.NewNetNS(t, "school")
	s := testenv.StartSlapd(t, testenv.SlapdOptions{NS: ns})
	conn, err := ns.DialContext(t.Context(), "tcp", "127.0.0.1:"+strconv.Itoa(s.Port))
	if err != nil {
		t.Fatalf("dial slapd inside its namespace: %v", err)
	}
	c := ldap.NewConn(conn, false)
	c.Start()
	defer c.Close()
	if err := c.Bind(s.AdminDN, s.AdminPassword); err != nil {
		t.Fatalf("bind inside the namespace: %v", err)
	}
	res, err := c.Search(ldap.NewSearchRequest(s.Suffix, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"o"}, nil))
	if err != nil || len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("o") != "gouv" {
		t.Fatalf("base search of %s inside the namespace = %v, %v", s.Suffix, res, err)
	}
	// From the host the port is closed: slapd listens only in the namespace.
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.Port), time.Second); err == nil {
		c.Close()
		// Another host service may hold the same port number by chance: check it is not LDAP.
		t.Logf("host port %d is open: not slapd's, which is in the namespace", s.Port)
	}
}

func TestSmbdShareAndReload(t *testing.T) {
	testenv.Require(t, "smbclient")
	ctx := t.Context()
	dir := t.TempDir()
	share := filepath.Join(dir, "commun")
	must(t, os.Mkdir(share, 0o777))
	must(t, os.Chmod(share, 0o777))
	must(t, os.Chmod(dir, 0o755))
	include := filepath.Join(dir, "alize-shares.conf")
	s := testenv.StartSmbd(t, testenv.SmbdOptions{
		Users:   []testenv.SmbUser{{Name: "prof1", Password: "Azerty-12", UID: 2001}},
		Shares:  fmt.Sprintf("[commun]\n\tpath = %s\n\tread only = no\n", share),
		Include: include,
	})

	must(t, os.WriteFile(filepath.Join(dir, "cours.txt"), []byte("Chapitre 1\n"), 0o644))
	out, err := s.Client(ctx, "commun", "prof1", "Azerty-12", fmt.Sprintf("lcd %s; put cours.txt; ls", dir))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "cours.txt") {
		t.Errorf("smbclient ls after put = %q, want cours.txt listed", out)
	}
	if fi, err := os.Stat(filepath.Join(share, "cours.txt")); err != nil {
		t.Errorf("the file put over SMB is not on disk: %v", err)
	} else if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != 2001 {
		t.Errorf("cours.txt put by prof1 belongs to uid %d, want 2001", uid)
	}
	if _, err := s.Client(ctx, "commun", "prof1", "wrong", "ls"); err == nil || !strings.Contains(err.Error(), "NT_STATUS_LOGON_FAILURE") {
		t.Errorf("smbclient with a wrong password: %v, want NT_STATUS_LOGON_FAILURE", err)
	}

	// A share added to the include file appears after Reload.
	docs := filepath.Join(dir, "docs")
	must(t, os.Mkdir(docs, 0o755))
	must(t, os.WriteFile(filepath.Join(docs, "lisez-moi.txt"), []byte("x"), 0o644))
	if _, err := s.Client(ctx, "docs", "prof1", "Azerty-12", "ls"); err == nil {
		t.Fatal("share docs answers before it is configured")
	}
	must(t, os.WriteFile(include, []byte(fmt.Sprintf("[docs]\n\tpath = %s\n\tread only = yes\n", docs)), 0o644))
	if err := s.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	out, err = s.Client(ctx, "docs", "prof1", "Azerty-12", "ls")
	if err != nil {
		t.Fatalf("share docs after Reload: %v", err)
	}
	if !strings.Contains(out, "lisez-moi.txt") {
		t.Errorf("ls of docs = %q, want lisez-moi.txt", out)
	}
	if out, err := s.Command(ctx, "testparm", "--suppress-prompt").CombinedOutput(); err != nil {
		t.Errorf("testparm of the running configuration: %v\n%s", err, out)
	}
}

func TestSmbdWithLDAPAccounts(t *testing.T) {
	testenv.Require(t, "smbclient")
	ctx := t.Context()
	ns := testenv.NewNetNS(t, "school")
	school := testenv.School{UAI: "0951099D", Academy: "versailles"}
	base := school.BaseDN()
	l := testenv.StartSlapd(t, testenv.SlapdOptions{NS: ns, School: &school, LDIF: `dn: uid=paul.durand,ou=personnels,ou=Utilisateurs,` + base + `
objectClass: inetOrgPerson
objectClass: posixAccount
uid: paul.durand
cn: Paul Durand
sn: Durand
uidNumber: 3001
gidNumber: 3001
homeDirectory: /nonexistent
`})
	dir := t.TempDir()
	must(t, os.Chmod(dir, 0o777))
	s := testenv.StartSmbd(t, testenv.SmbdOptions{
		NS:     ns,
		LDAP:   l,
		Users:  []testenv.SmbUser{{Name: "paul.durand", Password: "Secret-34", UID: 3001}},
		Shares: fmt.Sprintf("[profs]\n\tpath = %s\n\tread only = no\n", dir),
	})
	if _, err := s.Client(ctx, "profs", "paul.durand", "Secret-34", "ls"); err != nil {
		t.Fatalf("log in with the password stored in LDAP: %v", err)
	}

	conn, err := ns.DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(l.Port))
	if err != nil {
		t.Fatal(err)
	}
	c := ldap.NewConn(conn, false)
	c.Start()
	defer c.Close()
	must(t, c.Bind(l.AdminDN, l.AdminPassword))
	res, err := c.Search(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(&(uid=paul.durand)(objectClass=sambaSamAccount))", []string{"sambaSID"}, nil))
	if err != nil || len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("sambaSID") == "" {
		t.Fatalf("paul.durand in LDAP as a sambaSamAccount: %v, %v", res, err)
	}
}

func TestPostgres(t *testing.T) {
	p := testenv.StartPostgres(t)
	c, err := pgx.Connect(t.Context(), p.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var one int
	if err := c.QueryRow(t.Context(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
}

func TestNotify(t *testing.T) {
	n := testenv.NewNotify(t)
	if sent, err := daemon.SdNotify(false, daemon.SdNotifyReady+"\nSTATUS=applied serial 7"); !sent || err != nil {
		t.Fatalf("SdNotify = %v, %v", sent, err)
	}
	if _, err := daemon.SdNotify(false, daemon.SdNotifyWatchdog); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := n.Wait(ctx, "WATCHDOG=1"); err != nil {
		t.Fatal(err)
	}
	got := n.Messages()
	want := []string{"READY=1", "STATUS=applied serial 7", "WATCHDOG=1"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Messages() = %q, want %q", got, want)
	}
}

// TestEverythingTogether starts a namespace with slapd and smbd (accounts in
// LDAP) and PostgreSQL, uses each, and checks that once the test is over no
// process, namespace or directory it started is left.
func TestEverythingTogether(t *testing.T) {
	testenv.Require(t, "smbclient")
	var (
		pids   []int
		groups []int
		dirs   []string
		inode  uint64
	)
	start := time.Now()
	t.Run("services", func(t *testing.T) {
		ns := testenv.NewNetNS(t, "school")
		inode = ns.Inode()
		l := testenv.StartSlapd(t, testenv.SlapdOptions{NS: ns})
		share := t.TempDir()
		must(t, os.Chmod(share, 0o777))
		s := testenv.StartSmbd(t, testenv.SmbdOptions{
			NS:     ns,
			Users:  []testenv.SmbUser{{Name: "eleve1", Password: "Motdepasse-1", UID: 4001}},
			Shares: fmt.Sprintf("[classes]\n\tpath = %s\n\tread only = no\n", share),
		})
		p := testenv.StartPostgres(t)
		pids = append(pids, l.PID(), s.PID(), p.PID)
		groups = append(groups, s.PID(), l.PID())
		dirs = append(dirs, l.Dir, s.Dir, p.Dir)

		if _, err := s.Client(t.Context(), "classes", "eleve1", "Motdepasse-1", "ls"); err != nil {
			t.Error(err)
		}
		c, err := pgx.Connect(t.Context(), p.DSN)
		if err != nil {
			t.Fatal(err)
		}
		c.Close(context.Background())
		if kids := testenv.Descendants(os.Getpid()); len(kids) == 0 {
			t.Errorf("no child process seen while slapd and smbd run")
		}
	})
	t.Logf("namespace + slapd + smbd + PostgreSQL started, used and stopped in %v", time.Since(start).Round(time.Millisecond))

	if kids := testenv.Descendants(os.Getpid()); len(kids) > 0 {
		t.Errorf("child processes left after cleanup: %v", kids)
	}
	for _, pid := range pids {
		if testenv.Alive(pid) {
			t.Errorf("process %d still alive after cleanup", pid)
		}
	}
	for _, g := range groups {
		if m := testenv.GroupMembers(g); len(m) > 0 {
			t.Errorf("process group %d still has members %v", g, m)
		}
	}
	if nsAlive(inode) {
		t.Errorf("namespace %d still in use after cleanup", inode)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("directory %s left after cleanup (stat: %v)", d, err)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
