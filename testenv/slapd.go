package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	schemaDir   = "/etc/ldap/schema"
	sambaSchema = "/usr/share/doc/samba/examples/LDAP/samba.schema"
)

// School names an establishment whose Scribe-style tree a slapd is
// preloaded with.
type School struct {
	UAI     string // "0951099D"
	Academy string // "versailles" (the tree says ou=ac-versailles)
}

// BaseDN is the establishment's base:
// ou=<UAI>,ou=ac-<academy>,ou=education,o=gouv,c=fr.
func (s School) BaseDN() string {
	return fmt.Sprintf("ou=%s,ou=ac-%s,ou=education,%s", s.UAI, s.Academy, ScribeSuffix)
}

// ScribeSuffix is the suffix of the directories EOLE Scribe runs.
const ScribeSuffix = "o=gouv,c=fr"

// SlapdOptions says what directory to start.
type SlapdOptions struct {
	// Suffix of the database; ScribeSuffix when empty.
	Suffix string
	// School, when set, preloads the skeleton of a Scribe-style school
	// tree: the academy and establishment OUs, ou=Utilisateurs with
	// ou=eleves and ou=personnels, ou=groupes.
	School *School
	// LDIF is preloaded with slapadd before start (after the skeleton).
	LDIF string
	// NS runs slapd inside that namespace instead of the host's.
	NS *NetNS
}

// Slapd is a running OpenLDAP server on 127.0.0.1.
type Slapd struct {
	URL           string // ldap://127.0.0.1:PORT
	Port          int
	Suffix        string
	AdminDN       string
	AdminPassword string
	BaseDN        string // the school's base when School was set, else Suffix
	Dir           string
	NS            *NetNS

	d *daemon
}

// PID is slapd's process id.
func (s *Slapd) PID() int { return s.d.PID() }

// StartSlapd starts OpenLDAP (mdb backend; core, cosine, nis, inetorgperson
// and samba schemas) in a temporary directory and waits until it accepts
// connections. It is stopped and removed at cleanup.
func StartSlapd(t testing.TB, opts SlapdOptions) *Slapd {
	t.Helper()
	Require(t, "slapd")
	suffix := opts.Suffix
	if suffix == "" {
		suffix = ScribeSuffix
	}
	dir := tempDir(t)
	s := &Slapd{
		Suffix:        suffix,
		AdminDN:       "cn=admin," + suffix,
		AdminPassword: randomPassword(),
		BaseDN:        suffix,
		Dir:           dir,
		NS:            opts.NS,
	}
	if opts.School != nil {
		if suffix != ScribeSuffix {
			t.Fatalf("testenv: a Scribe school tree needs suffix %s, not %s", ScribeSuffix, suffix)
		}
		s.BaseDN = opts.School.BaseDN()
	}
	conf := filepath.Join(dir, "slapd.conf")
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatalf("testenv: slapd: %v", err)
	}
	if err := os.WriteFile(conf, []byte(s.config()), 0o600); err != nil {
		t.Fatalf("testenv: slapd: %v", err)
	}
	ldif := s.skeleton(opts.School) + "\n" + opts.LDIF
	if err := os.WriteFile(filepath.Join(dir, "preload.ldif"), []byte(ldif), 0o600); err != nil {
		t.Fatalf("testenv: slapd: %v", err)
	}
	slapadd, _ := lookPath("slapadd")
	if err := run(exec.Command(slapadd, "-q", "-f", conf, "-l", filepath.Join(dir, "preload.ldif"))); err != nil {
		t.Fatalf("testenv: slapd preload: %v", err)
	}

	port, err := opts.NS.FreePort()
	if err != nil {
		t.Fatalf("testenv: slapd: free port: %v", err)
	}
	s.Port = port
	s.URL = "ldap://127.0.0.1:" + strconv.Itoa(port)
	slapd, _ := lookPath("slapd")
	s.d = startDaemon(t, opts.NS, "slapd", dir, exec.Command(slapd, "-d", "0", "-f", conf, "-h", s.URL+"/"))
	if err := waitTCP(t.Context(), opts.NS, s.d, "127.0.0.1:"+strconv.Itoa(port)); err != nil {
		t.Fatalf("testenv: slapd: %v\n%s", err, tail(s.d.log, 20))
	}
	return s
}

func (s *Slapd) config() string {
	var b strings.Builder
	for _, sc := range []string{"core", "cosine", "nis", "inetorgperson"} {
		fmt.Fprintf(&b, "include %s/%s.schema\n", schemaDir, sc)
	}
	fmt.Fprintf(&b, "include %s\n", sambaSchema)
	fmt.Fprintf(&b, `modulepath /usr/lib/ldap
moduleload back_mdb
pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
sizelimit 500
database mdb
suffix "%[2]s"
rootdn "%[3]s"
rootpw %[4]s
directory %[1]s/db
maxsize 268435456
dbnosync
index objectClass eq
index uid,uidNumber,gidNumber,memberUid eq
index cn,sambaSID eq
`, s.Dir, s.Suffix, s.AdminDN, s.AdminPassword)
	return b.String()
}

// skeleton is the LDIF of the suffix entry and, for a school, the
// Scribe-style tree down to the establishment's users and groups OUs.
func (s *Slapd) skeleton(school *School) string {
	var b strings.Builder
	rdn, _, _ := strings.Cut(s.Suffix, ",")
	attr, value, _ := strings.Cut(rdn, "=")
	switch strings.ToLower(attr) {
	case "o":
		fmt.Fprintf(&b, "dn: %s\nobjectClass: top\nobjectClass: organization\no: %s\n\n", s.Suffix, value)
	case "dc":
		fmt.Fprintf(&b, "dn: %s\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\ndc: %s\no: %s\n\n", s.Suffix, value, value)
	default:
		fmt.Fprintf(&b, "dn: %s\nobjectClass: top\nobjectClass: organizationalUnit\nou: %s\n\n", s.Suffix, value)
	}
	if school == nil {
		return b.String()
	}
	ou := func(dn string) {
		rdn, _, _ := strings.Cut(dn, ",")
		_, name, _ := strings.Cut(rdn, "=")
		fmt.Fprintf(&b, "dn: %s\nobjectClass: top\nobjectClass: organizationalUnit\nou: %s\n\n", dn, name)
	}
	base := school.BaseDN()
	ou("ou=education," + s.Suffix)
	ou(fmt.Sprintf("ou=ac-%s,ou=education,%s", school.Academy, s.Suffix))
	ou(base)
	ou("ou=Utilisateurs," + base)
	ou("ou=eleves,ou=Utilisateurs," + base)
	ou("ou=personnels,ou=Utilisateurs," + base)
	ou("ou=groupes," + base)
	return b.String()
}

// waitTCP waits until address accepts connections, from inside ns when
// set, giving up when the daemon exits or after 10 s.
func waitTCP(ctx context.Context, ns *NetNS, d *daemon, address string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	dial := func() (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "tcp", address)
	}
	if ns != nil {
		dial = func() (net.Conn, error) { return ns.DialContext(ctx, "tcp", address) }
	}
	for {
		c, err := dial()
		if err == nil {
			c.Close()
			return nil
		}
		if done, werr := d.exited(); done {
			return fmt.Errorf("%s exited before listening on %s: %v", d.name, address, werr)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not listening on %s: %w", d.name, address, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func randomPassword() string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return "test-" + hex.EncodeToString(b)
}
