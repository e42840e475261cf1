package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SmbUser is a Unix user known to a test smbd through nss_wrapper, with a
// Samba password. Nothing touches the host's /etc/passwd.
type SmbUser struct {
	Name     string
	Password string
	UID      int // GID is the same number, a personal group
}

// SmbdOptions says what Samba server to start.
type SmbdOptions struct {
	// Users are added to nss_wrapper's passwd and group files and to the
	// passdb (tdbsam, or the directory with LDAP).
	Users []SmbUser
	// Groups are extra Unix groups: name → member user names. Their GIDs
	// are given from 5000 up, in name order.
	Groups map[string][]string
	// LDAP switches the passdb to ldapsam against this directory; it must
	// run in the same namespace. Each user needs a posixAccount entry under
	// ou=Utilisateurs of its BaseDN: the test preloads it.
	LDAP *Slapd
	// Shares is appended to smb.conf after [global]: share sections.
	Shares string
	// Include is an extra file included at the end of [global] (created
	// empty if missing), as the shares kind's Alizé-owned include file.
	Include string
	// NS runs smbd inside that namespace instead of the host's.
	NS *NetNS
}

// Smbd is a running Samba file server on 127.0.0.1.
type Smbd struct {
	Port int
	Dir  string
	Conf string // smb.conf path: pass it to testparm, smbcontrol, smbpasswd
	NS   *NetNS

	env []string
	d   *daemon
}

// PID is smbd's process id, which is also its process group id.
func (s *Smbd) PID() int { return s.d.PID() }

// StartSmbd starts a standalone Samba server in a temporary directory and
// waits until it accepts connections. It is stopped and removed at cleanup.
func StartSmbd(t testing.TB, opts SmbdOptions) *Smbd {
	t.Helper()
	Require(t, "smbd")
	if opts.LDAP != nil && opts.LDAP.NS != opts.NS {
		t.Fatalf("testenv: smbd and its slapd must run in the same namespace")
	}
	dir := tempDir(t)
	s := &Smbd{Dir: dir, Conf: filepath.Join(dir, "smb.conf"), NS: opts.NS}
	for _, sub := range []string{"private", "lock", "state", "cache", "pid", "ncalrpc", "binddns"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatalf("testenv: smbd: %v", err)
		}
	}
	lib, err := nssWrapper()
	if err != nil {
		t.Fatalf("testenv: smbd: %v", err)
	}
	passwd, group := nssFiles(opts.Users, opts.Groups)
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatalf("testenv: smbd: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "group"), []byte(group), 0o644); err != nil {
		t.Fatalf("testenv: smbd: %v", err)
	}
	s.env = append(os.Environ(),
		"LD_PRELOAD="+lib,
		"NSS_WRAPPER_PASSWD="+filepath.Join(dir, "passwd"),
		"NSS_WRAPPER_GROUP="+filepath.Join(dir, "group"),
	)
	if opts.Include != "" {
		if _, err := os.Stat(opts.Include); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(opts.Include, nil, 0o644); err != nil {
				t.Fatalf("testenv: smbd: %v", err)
			}
		}
	}
	port, err := opts.NS.FreePort()
	if err != nil {
		t.Fatalf("testenv: smbd: free port: %v", err)
	}
	s.Port = port
	if err := os.WriteFile(s.Conf, []byte(s.config(opts)), 0o644); err != nil {
		t.Fatalf("testenv: smbd: %v", err)
	}

	ctx := t.Context()
	if opts.LDAP != nil {
		// smbpasswd keeps the directory's admin password in secrets.tdb.
		if out, err := s.Command(ctx, "smbpasswd", "-w", opts.LDAP.AdminPassword).CombinedOutput(); err != nil {
			t.Fatalf("testenv: smbd: store ldap admin password: %v\n%s", err, out)
		}
	}
	for _, u := range opts.Users {
		cmd := s.Command(ctx, "smbpasswd", "-a", "-s", u.Name)
		cmd.Stdin = strings.NewReader(u.Password + "\n" + u.Password + "\n")
		if out, err := s.run(cmd); err != nil {
			t.Fatalf("testenv: smbd: add user %s: %v\n%s", u.Name, err, out)
		}
	}

	smbd, _ := lookPath("smbd")
	cmd := exec.Command(smbd, "--foreground", "--no-process-group", "--debug-stdout", "-s", s.Conf)
	cmd.Env = s.env
	s.d = startDaemon(t, opts.NS, "smbd", dir, cmd)
	if err := waitTCP(ctx, opts.NS, s.d, "127.0.0.1:"+strconv.Itoa(port)); err != nil {
		t.Fatalf("testenv: smbd: %v\n%s", err, tail(s.d.log, 20))
	}
	return s
}

func (s *Smbd) config(opts SmbdOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, `[global]
	server role = standalone server
	workgroup = ALIZE
	smb ports = %[2]d
	interfaces = 127.0.0.1
	bind interfaces only = yes
	disable netbios = yes
	private dir = %[1]s/private
	lock directory = %[1]s/lock
	state directory = %[1]s/state
	cache directory = %[1]s/cache
	pid directory = %[1]s/pid
	ncalrpc dir = %[1]s/ncalrpc
	binddns dir = %[1]s/binddns
	log file = %[1]s/log.%%m
	log level = 1
	load printers = no
	printing = bsd
	printcap name = /dev/null
	disable spoolss = yes
	map to guest = never
`, s.Dir, s.Port)
	if l := opts.LDAP; l != nil {
		fmt.Fprintf(&b, `	passdb backend = ldapsam:%s
	ldap suffix = %s
	ldap user suffix = ou=Utilisateurs
	ldap group suffix = ou=groupes
	ldap admin dn = %s
	ldap ssl = off
	ldap passwd sync = no
`, l.URL, l.BaseDN, l.AdminDN)
	} else {
		fmt.Fprintf(&b, "\tpassdb backend = tdbsam:%s/private/passdb.tdb\n", s.Dir)
	}
	if opts.Include != "" {
		fmt.Fprintf(&b, "\tinclude = %s\n", opts.Include)
	}
	b.WriteString("\n")
	b.WriteString(opts.Shares)
	return b.String()
}

// Command prepares a Samba tool (smbpasswd, smbcontrol, testparm, pdbedit…)
// to run against this server: its smb.conf and its nss_wrapper users. Run
// it with s.run, or through s.NS when the server is in a namespace.
func (s *Smbd) Command(ctx context.Context, tool string, args ...string) *exec.Cmd {
	path, err := lookPath(tool)
	if err != nil {
		path = tool
	}
	switch tool {
	case "smbpasswd":
		args = append([]string{"-c", s.Conf}, args...)
	case "smbcontrol", "pdbedit", "net":
		args = append([]string{"-s", s.Conf}, args...)
	case "testparm":
		args = append(args, s.Conf) // the file is testparm's argument
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = s.env
	return cmd
}

// run runs a tool in the server's namespace.
func (s *Smbd) run(cmd *exec.Cmd) ([]byte, error) {
	if s.NS != nil {
		return s.NS.Run(cmd)
	}
	return cmd.CombinedOutput()
}

// Reload makes smbd re-read smb.conf and its include files.
func (s *Smbd) Reload(ctx context.Context) error {
	if out, err := s.run(s.Command(ctx, "smbcontrol", "smbd", "reload-config")); err != nil {
		return fmt.Errorf("smbcontrol reload-config: %w: %s", err, out)
	}
	return nil
}

// Client runs smbclient against share as user, with the given commands
// (`-c`), and returns its output.
func (s *Smbd) Client(ctx context.Context, share, user, password, commands string) (string, error) {
	path, err := lookPath("smbclient")
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, path, "-p", strconv.Itoa(s.Port), "//127.0.0.1/"+share,
		"-U", user+"%"+password, "-c", commands)
	// A client-side smb.conf so smbclient reads no host configuration.
	cmd.Args = append(cmd.Args, "-s", filepath.Join(s.Dir, "client.conf"))
	if err := os.WriteFile(filepath.Join(s.Dir, "client.conf"), []byte("[global]\n\tclient min protocol = SMB2\n"), 0o644); err != nil {
		return "", err
	}
	out, err := s.run(cmd)
	if err != nil {
		return string(out), fmt.Errorf("smbclient //127.0.0.1/%s as %s: %w: %s", share, user, err, out)
	}
	return string(out), nil
}

// AppendNSS adds lines to the server's nss_wrapper "passwd" or "group" file
// while smbd runs, as a directory's new accounts appear to nss-ldap.
// nss_wrapper reloads a file only when its mtime changes by whole seconds,
// so the file's mtime is moved one second past its last value: smbd sees
// the new lines at its next lookup, even within the same second.
func (s *Smbd) AppendNSS(file, lines string) error {
	if file != "passwd" && file != "group" {
		return fmt.Errorf("nss file %q: want passwd or group", file)
	}
	path := filepath.Join(s.Dir, file)
	before, err := os.Stat(path)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(lines); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	next := before.ModTime().Truncate(time.Second).Add(time.Second)
	if now := time.Now(); now.After(next) {
		next = now
	}
	return os.Chtimes(path, next, next)
}

// nssFiles renders nss_wrapper's passwd and group files.
func nssFiles(users []SmbUser, groups map[string][]string) (passwd, group string) {
	var p, g strings.Builder
	p.WriteString("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
	g.WriteString("root:x:0:\nnogroup:x:65534:\n")
	for _, u := range users {
		fmt.Fprintf(&p, "%s:x:%d:%d:%s:/nonexistent:/bin/false\n", u.Name, u.UID, u.UID, u.Name)
		fmt.Fprintf(&g, "%s:x:%d:\n", u.Name, u.UID)
	}
	names := make([]string, 0, len(groups))
	for n := range groups {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		fmt.Fprintf(&g, "%s:x:%d:%s\n", n, 5000+i, strings.Join(groups[n], ","))
	}
	return p.String(), g.String()
}

// nssWrapper finds libnss_wrapper.so for this architecture.
func nssWrapper() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/*/libnss_wrapper.so")
	if len(matches) == 0 {
		matches, _ = filepath.Glob("/usr/lib*/libnss_wrapper.so")
	}
	if len(matches) == 0 {
		return "", errors.New("no libnss_wrapper.so (Debian package libnss-wrapper)")
	}
	return matches[0], nil
}

func needNSSWrapper() error {
	_, err := nssWrapper()
	return err
}
