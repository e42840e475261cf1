package shares

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/alize-eple/alize/modules"
	"github.com/alize-eple/alize/testenv"
)

// Where the kind keeps its files under a test's root.
const (
	testInclude = "/etc/samba/alize-shares.conf"
	testSmbConf = "/smb.conf"
)

// server is a real smbd with the shares kind pointed at it: the kind's
// root is smbd's directory, smb.conf is smbd's, getent resolves names
// through smbd's nss_wrapper files.
type server struct {
	*testenv.Smbd
	kind *Shares
	root string
	pw   map[string]string // user → password
}

// Scribe's people: two classes, their pupils and teachers.
var (
	scribeUsers = []testenv.SmbUser{
		{Name: "eleve1", Password: "Eleve1-Azerty", UID: 3001},
		{Name: "eleve2", Password: "Eleve2-Azerty", UID: 3002},
		{Name: "prof1", Password: "Prof1-Azerty", UID: 2001},
		{Name: "prof2", Password: "Prof2-Azerty", UID: 2002},
	}
	scribeGroups = map[string][]string{
		"eleves": {"eleve1", "eleve2"}, "professeurs": {"prof1", "prof2"},
		"3a": {"eleve1"}, "3b": {"eleve2"}, "profs-3a": {"prof1"}, "profs-3b": {"prof2"},
		"latin": {"eleve1", "prof1"},
	}
)

// startServer starts smbd with opts and sets the kind up against it;
// tweak adjusts the kind's configuration.
func startServer(t testing.TB, opts testenv.SmbdOptions, tweak ...func(*Config)) *server {
	t.Helper()
	testenv.Require(t, "testparm", "smbclient")
	smb := testenv.StartSmbd(t, opts)
	srv := &server{Smbd: smb, root: smb.Dir, pw: map[string]string{}}
	for _, u := range opts.Users {
		srv.pw[u.Name] = u.Password
	}
	cfg := Config{
		Root: smb.Dir, Include: testInclude, SmbConf: testSmbConf,
		Command: nssCommand(t, filepath.Join(smb.Dir, "passwd"), filepath.Join(smb.Dir, "group")),
		Log:     testLogger(t),
	}
	for _, f := range tweak {
		f(&cfg)
	}
	k, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.kind = k
	return srv
}

// nssCommand runs getent under nss_wrapper with these passwd and group
// files, as smbd runs; other commands run as they are.
func nssCommand(t testing.TB, passwd, group string) func(ctx context.Context, name string, arg ...string) *exec.Cmd {
	t.Helper()
	libs, _ := filepath.Glob("/usr/lib/*/libnss_wrapper.so")
	if len(libs) == 0 {
		t.Fatal("no libnss_wrapper.so, yet testenv found one for smbd")
	}
	env := append(os.Environ(), "LD_PRELOAD="+libs[0], "NSS_WRAPPER_PASSWD="+passwd, "NSS_WRAPPER_GROUP="+group)
	return func(ctx context.Context, name string, arg ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, name, arg...)
		if name == "getent" {
			cmd.Env = env
		}
		return cmd
	}
}

// offlineRoot is a kind without smbd, for what needs only files, testparm
// and getent: a temporary root with a minimal smb.conf and nss_wrapper
// files for users (uid) and groups (gid, members). Reloads are counted.
type offlineRoot struct {
	kind    *Shares
	root    string
	reloads int
}

func newOfflineRoot(t testing.TB, passwd, group string, tweak ...func(*Config)) *offlineRoot {
	t.Helper()
	testenv.Require(t, "testparm", "smbd")
	o := &offlineRoot{root: t.TempDir()}
	write(t, filepath.Join(o.root, "smb.conf"), "[global]\n\tserver role = standalone server\n\tworkgroup = ALIZE\n")
	write(t, filepath.Join(o.root, "passwd"), "root:x:0:0:root:/root:/bin/sh\n"+passwd)
	write(t, filepath.Join(o.root, "group"), "root:x:0:\n"+group)
	cfg := Config{
		Root: o.root, Include: testInclude, SmbConf: testSmbConf,
		Command: nssCommand(t, filepath.Join(o.root, "passwd"), filepath.Join(o.root, "group")),
		Reload:  func(context.Context) error { o.reloads++; return nil },
		Log:     testLogger(t),
	}
	for _, f := range tweak {
		f(&cfg)
	}
	k, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	o.kind = k
	return o
}

func write(t testing.TB, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// testLogger writes the kind's records to the test's log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlog struct{ t testing.TB }

func (l tlog) Write(p []byte) (int, error) {
	l.t.Helper()
	l.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// converge plans and applies want, failing the test on any error or
// failed change, and returns the plan it applied.
func converge(t testing.TB, k *Shares, want Spec) modules.Plan {
	t.Helper()
	ctx := context.Background()
	p, err := k.Plan(ctx, want)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	res, err := k.Apply(ctx, p)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if res.Failed() {
		t.Fatalf("Apply failed:\n%s", results(res))
	}
	return p
}

func results(res modules.Result) string {
	var b strings.Builder
	for _, c := range res.Changes {
		fmt.Fprintf(&b, "  %s: %s %s\n", c.Status, c.Change, c.Error)
	}
	return b.String()
}

// mustPlan returns the changes of Plan(want) as strings.
func mustPlan(t testing.TB, k *Shares, want Spec) []string {
	t.Helper()
	p, err := k.Plan(context.Background(), want)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	var out []string
	for _, c := range p.Changes {
		out = append(out, c.String())
	}
	return out
}

// snapshot is everything the kind may touch under root: smb.conf, the
// include file and the trees under the allowed roots, with owners, modes
// and ACLs. Moduletest compares two of them.
func snapshot(root string) (string, error) {
	var b strings.Builder
	for _, f := range []string{testSmbConf, testInclude} {
		data, err := os.ReadFile(filepath.Join(root, f))
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(&b, "%s: absent\n", f)
			continue
		}
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s:\n%s\n", f, data)
	}
	// Temporary files the kind leaves behind would show here.
	entries, _ := os.ReadDir(filepath.Join(root, filepath.Dir(testInclude)))
	for _, e := range entries {
		fmt.Fprintf(&b, "%s/%s\n", filepath.Dir(testInclude), e.Name())
	}
	for _, top := range []string{"home", "srv"} {
		var lines []string
		err := filepath.WalkDir(filepath.Join(root, top), func(p string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			line := fmt.Sprintf("/%s %d:%d %o", rel, st.Uid, st.Gid, st.Mode)
			for _, x := range []string{xattrAccess, xattrDefault} {
				buf := make([]byte, 1024)
				if n, err := unix.Lgetxattr(p, x, buf); err == nil {
					a, _ := decodeACL(buf[:n])
					line += " " + x[len("system.posix_acl_"):] + "=" + a.String()
				}
			}
			lines = append(lines, line)
			return nil
		})
		if err != nil {
			return "", err
		}
		sort.Strings(lines)
		b.WriteString(strings.Join(lines, "\n"))
		b.WriteString("\n")
	}
	return b.String(), nil
}

// statOf returns owner, group and mode (with special bits) of a path.
func statOf(t testing.TB, path string) (uint32, uint32, uint32) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid, st.Mode & 0o7777
}

// smbPut puts a small file as user at remote (a path in share); it
// returns smbclient's error.
func (s *server) put(t testing.TB, share, user, remote string) error {
	t.Helper()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "f.txt"), "bonjour from "+user+"\n")
	_, err := s.Client(t.Context(), share, user, s.pw[user], fmt.Sprintf(`lcd %s; put f.txt "%s"`, dir, remote))
	return err
}

// get fetches remote from share as user; it returns the file's contents.
func (s *server) get(t testing.TB, share, user, remote string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	if _, err := s.Client(t.Context(), share, user, s.pw[user], fmt.Sprintf(`lcd %s; get "%s" got.txt`, dir, remote)); err != nil {
		return "", err
	}
	data, err := os.ReadFile(filepath.Join(dir, "got.txt"))
	return string(data), err
}

// ls lists a folder of share as user.
func (s *server) ls(t testing.TB, share, user, dir string) (string, error) {
	t.Helper()
	return s.Client(t.Context(), share, user, s.pw[user], fmt.Sprintf(`ls "%s\*"`, dir))
}

func denied(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "NT_STATUS_ACCESS_DENIED") ||
		strings.Contains(err.Error(), "NT_STATUS_MEDIA_WRITE_PROTECTED"))
}
