package shares

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/alize-eple/alize/modules"
	"github.com/alize-eple/alize/testenv"
)

const (
	offlinePasswd = "ana:x:3001:3001::/nonexistent:/bin/false\nbob:x:3002:3002::/nonexistent:/bin/false\nprof:x:2001:2001::/nonexistent:/bin/false\n"
	offlineGroup  = "ana:x:3001:\nbob:x:3002:\nprof:x:2001:\neleves:x:5000:ana,bob\nprofs:x:5001:prof\n"
)

// TestHomes creates a home for every member of the home groups and never
// deletes one: a user who leaves (archived) keeps theirs.
func TestHomes(t *testing.T) {
	t.Parallel()
	o := newOfflineRoot(t, offlinePasswd+"ghost.user:x:0:0::/:/bin/sh\n", offlineGroup+"odd:x:5002:root,../x,-s,nobody.here,ghost.user\n")
	spec := Spec{Homes: &Homes{Root: "/home", Groups: []string{"eleves", "odd"}, Users: []string{"prof"}, Mode: "0750"}}
	got := mustPlan(t, o.kind, spec)
	want := []string{
		"create home /home/ana: home of ana, ana:3001 0750",
		"create home /home/bob: home of bob, bob:3002 0750",
		"create home /home/prof: home of prof, prof:2001 0750",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("first Plan (-want +got):\n%s", diff)
	}
	converge(t, o.kind, spec)
	for _, u := range []string{"ana", "bob", "prof"} {
		if _, _, mode := statOf(t, filepath.Join(o.root, "home", u)); mode != 0o750 {
			t.Errorf("home of %s: mode %04o, want 0750", u, mode)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(o.root, "home"))
	if len(entries) != 3 {
		t.Errorf("homes made: %v, want ana, bob and prof only", entries)
	}

	// bob leaves (archived: out of the group), cleo arrives.
	write(t, filepath.Join(o.root, "group"), "root:x:0:\n"+strings.Replace(offlineGroup, "ana,bob", "ana,cleo", 1))
	write(t, filepath.Join(o.root, "passwd"), "root:x:0:0:root:/root:/bin/sh\n"+offlinePasswd+"cleo:x:3003:3003::/nonexistent:/bin/false\n")
	got = mustPlan(t, o.kind, spec)
	if !slices.Equal(got, []string{"create home /home/cleo: home of cleo, cleo:3003 0750"}) {
		t.Errorf("Plan after bob left and cleo came = %q, want cleo's home only", got)
	}
	converge(t, o.kind, spec)
	if _, err := os.Stat(filepath.Join(o.root, "home/bob")); err != nil {
		t.Errorf("bob's home after he left: %v, want it kept", err)
	}
	// Without homes in the spec, nothing of them is touched either.
	if got := mustPlan(t, o.kind, Spec{}); len(got) != 0 {
		t.Errorf("Plan(empty spec) = %q, want no change: homes are never deleted", got)
	}
}

// TestHostileSpecChangesNothing: Plan refuses an invalid spec with the
// path of each problem, and nothing on the server changes.
func TestHostileSpecChangesNothing(t *testing.T) {
	t.Parallel()
	o := newOfflineRoot(t, offlinePasswd, offlineGroup)
	converge(t, o.kind, Spec{Shares: []Share{{Name: "docs", Path: "/srv/docs", Read: []string{"eleves"}, Directory: &Ownership{}}}})
	before, err := snapshot(o.root)
	must(t, err)
	reloads := o.reloads
	for _, spec := range []Spec{
		{Shares: []Share{{Name: "docs]\n[evil", Path: "/srv/docs", Read: []string{"eleves"}}}},
		{Shares: []Share{{Name: "docs", Path: "/srv/../etc", Read: []string{"eleves"}, Directory: &Ownership{Mode: "0777"}}}},
		{Shares: []Share{{Name: "docs", Path: "/srv/docs", Read: []string{"eleves\n\tinclude = /tmp/evil.conf"}}}},
		{Directories: []Directory{{Path: "/etc/sudoers.d", Ownership: Ownership{Owner: "ana"}}}},
		{Homes: &Homes{Root: "/", Groups: []string{"eleves"}}},
	} {
		p, err := o.kind.Plan(t.Context(), spec)
		var fes modules.FieldErrors
		if !errors.As(err, &fes) || len(p.Changes) != 0 {
			t.Errorf("Plan(%+v) = %v, %v; want field errors and no change", spec, p.Changes, err)
		}
	}
	// A plan not made by Plan is refused too.
	forged := modules.Plan{Kind: "shares", Changes: []modules.Change{{Op: modules.OpCreate, Resource: "directory", ID: "/etc"}}}
	if _, err := o.kind.Apply(t.Context(), forged); err == nil {
		t.Error("Apply of a plan without state = nil error")
	}
	after, err := snapshot(o.root)
	must(t, err)
	if diff := cmp.Diff(before, after); diff != "" || o.reloads != reloads {
		t.Errorf("refused specs changed the server (reloads %d → %d) (-before +after):\n%s", reloads, o.reloads, diff)
	}
}

// TestInvalidIncludeNeverLive feeds the checked step includes testparm
// refuses: the live file stays as it was, smbd is not reloaded, no
// temporary file is left.
func TestInvalidIncludeNeverLive(t *testing.T) {
	t.Parallel()
	o := newOfflineRoot(t, offlinePasswd, offlineGroup)
	converge(t, o.kind, Spec{Shares: []Share{{Name: "docs", Path: "/srv/docs", Read: []string{"eleves"}}}})
	inc := filepath.Join(o.root, testInclude)
	live := read(t, inc)
	reloads := o.reloads
	for _, tc := range []struct {
		name, include string
		names         []string
		want          string
	}{
		// testparm exits 0 here: only its stderr tells.
		{"unknown parameter", "[x]\n\tpath = /srv/x\n\tvfs objets = recycle\n", []string{"x"}, `Unknown parameter encountered: "vfs objets"`},
		{"bad value", "[x]\n\tpath = /srv/x\n\tread only = peut-être\n", []string{"x"}, "value is not boolean"},
		{"share lost", "[x]\n\tpath = /srv/x\n", []string{"x", "y"}, "shares missing from testparm's view of the configuration: y"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := o.kind.commit(t.Context(), []byte(header+tc.include), tc.names, false)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "the live /etc/samba/alize-shares.conf is unchanged") {
				t.Errorf("commit = %v, want an error saying %q and that the live file is unchanged", err, tc.want)
			}
			if got := read(t, inc); got != live {
				t.Errorf("live include after a refused commit:\n%s\nwant:\n%s", got, live)
			}
			if o.reloads != reloads {
				t.Errorf("smbd reloaded after a refused commit")
			}
			entries, _ := os.ReadDir(filepath.Dir(inc))
			if len(entries) != 1 {
				t.Errorf("files beside the include after a refused commit: %v, want only it", entries)
			}
		})
	}

	// A problem the live smb.conf already has is not the include's: it
	// does not block it.
	conf := filepath.Join(o.root, testSmbConf)
	write(t, conf, strings.Replace(read(t, conf), "[global]\n", "[global]\n\tfoo bar = 1\n", 1))
	if err := o.kind.commit(t.Context(), []byte(header+"[x]\n\tpath = /srv/x\n"), []string{"x"}, false); err != nil {
		t.Errorf("commit with a hand-made mistake in smb.conf: %v, want nil", err)
	}
}

// TestReloadFailureRestores: when smbd cannot reload, the previous
// include and smb.conf come back and the changes are reported failed.
func TestReloadFailureRestores(t *testing.T) {
	t.Parallel()
	var fail error
	o := newOfflineRoot(t, offlinePasswd, offlineGroup, func(c *Config) {
		next := c.Reload
		c.Reload = func(ctx context.Context) error {
			if fail != nil {
				return fail
			}
			return next(ctx)
		}
	})
	conf := filepath.Join(o.root, testSmbConf)
	inc := filepath.Join(o.root, testInclude)
	confBefore := read(t, conf)
	spec := Spec{Shares: []Share{{Name: "docs", Path: "/srv/docs", Read: []string{"eleves"}}}}

	// First apply: smb.conf had no include line and there was no include.
	fail = errors.New("smbd is not running")
	p, err := o.kind.Plan(t.Context(), spec)
	must(t, err)
	res, err := o.kind.Apply(t.Context(), p)
	must(t, err)
	for _, c := range res.Changes {
		if c.Status != modules.StatusFailed || !strings.Contains(c.Error, "smbd is not running") || !strings.Contains(c.Error, "was put back") {
			t.Errorf("change after a failed reload: %+v", c)
		}
	}
	if got := read(t, conf); got != confBefore {
		t.Errorf("smb.conf after a failed reload:\n%s\nwant:\n%s", got, confBefore)
	}
	if _, err := os.Stat(inc); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("include after a failed first reload: %v, want none", err)
	}

	// Later applies: the previous include comes back.
	fail = nil
	converge(t, o.kind, spec)
	live := read(t, inc)
	fail = errors.New("reload refused")
	spec.Shares[0].Comment = "Documents"
	p, err = o.kind.Plan(t.Context(), spec)
	must(t, err)
	res, err = o.kind.Apply(t.Context(), p)
	must(t, err)
	if !res.Failed() {
		t.Errorf("Apply with a failing reload: %s", results(res))
	}
	if got := read(t, inc); got != live {
		t.Errorf("include after a failed reload:\n%s\nwant the previous one:\n%s", got, live)
	}
	if got := mustPlan(t, o.kind, spec); len(got) != 1 {
		t.Errorf("Plan after a failed reload = %q, want the change still to do", got)
	}
}

// TestSymlinksNeverFollowed: a symbolic link inside a managed path is
// refused; what it points to is not touched. An allowed root may be a
// link.
func TestSymlinksNeverFollowed(t *testing.T) {
	t.Parallel()
	o := newOfflineRoot(t, offlinePasswd, offlineGroup)
	victim := filepath.Join(o.root, "etc/secret")
	must(t, os.MkdirAll(victim, 0o700))
	must(t, os.MkdirAll(filepath.Join(o.root, "srv"), 0o755))
	must(t, os.Symlink(victim, filepath.Join(o.root, "srv/data")))
	must(t, os.Symlink(victim, filepath.Join(o.root, "srv/link")))
	must(t, os.MkdirAll(filepath.Join(o.root, "data/home"), 0o755))
	must(t, os.Symlink(filepath.Join(o.root, "data/home"), filepath.Join(o.root, "home")))
	spec := Spec{
		Directories: []Directory{
			{Path: "/srv/data/sub", Ownership: Ownership{Owner: "ana", Mode: "0777"}},
			{Path: "/srv/link", Ownership: Ownership{Owner: "ana", Mode: "0777"}},
			{Path: "/srv/ok", Ownership: Ownership{Owner: "ana"}},
		},
		Homes: &Homes{Root: "/home", Groups: []string{"profs"}},
	}
	p, err := o.kind.Plan(t.Context(), spec)
	must(t, err)
	res, err := o.kind.Apply(t.Context(), p)
	must(t, err)
	status := map[string]modules.ChangeResult{}
	for _, c := range res.Changes {
		status[c.Change.ID] = c
	}
	for _, id := range []string{"/srv/data/sub", "/srv/link"} {
		if c := status[id]; c.Status != modules.StatusFailed || !strings.Contains(c.Error, "is a symbolic link") {
			t.Errorf("%s: %+v, want failed: a symbolic link", id, c)
		}
	}
	for _, id := range []string{"/srv/ok", "/home/prof"} {
		if c := status[id]; c.Status != modules.StatusApplied {
			t.Errorf("%s: %+v, want applied", id, c)
		}
	}
	if uid, _, mode := statOf(t, victim); uid != 0 || mode != 0o700 {
		t.Errorf("the link's target: uid %d mode %04o, want untouched 0 0700", uid, mode)
	}
	if _, err := os.Stat(filepath.Join(victim, "sub")); err == nil {
		t.Error("a directory was made through the link")
	}
	if _, err := os.Stat(filepath.Join(o.root, "data/home/prof")); err != nil {
		t.Errorf("home made through the allowed root's link: %v", err)
	}
}

// TestACLOnDisk checks the ACL xattrs the kind writes, read back by the
// kernel and by getfacl.
func TestACLOnDisk(t *testing.T) {
	testenv.Require(t, "acl")
	t.Parallel()
	o := newOfflineRoot(t, offlinePasswd, offlineGroup)
	spec := Spec{Directories: []Directory{{Path: "/srv/classe", Ownership: Ownership{Group: "eleves", Mode: "2750",
		ACL: []ACLEntry{{Group: "profs", Perms: "rwx"}, {User: "bob", Perms: "r-x"}, {User: "ana", Perms: "--x"}}}}}}
	converge(t, o.kind, spec)
	dir := filepath.Join(o.root, "srv/classe")
	want := "user::rwx,user:3001:--x,user:3002:r-x,group::r-x,group:5001:rwx,mask::rwx,other::---"
	for _, x := range []string{xattrAccess, xattrDefault} {
		buf := make([]byte, 512)
		n, err := unix.Getxattr(dir, x, buf)
		must(t, err)
		a, err := decodeACL(buf[:n])
		if err != nil || a.String() != want {
			t.Errorf("%s = %v, %v; want %s", x, a, err, want)
		}
	}
	if _, gid, mode := statOf(t, dir); gid != 5000 || mode != 0o2770 {
		t.Errorf("stat: gid %d mode %04o, want 5000 2770 (group bits show the mask)", gid, mode)
	}
	{
		out, err := exec.Command("getfacl", "-n", "-p", dir).CombinedOutput()
		must(t, err)
		for _, line := range []string{"user:3002:r-x", "group::r-x", "group:5001:rwx", "mask::rwx", "other::---",
			"default:user:3001:--x", "default:group:5001:rwx", "default:mask::rwx", "flags: -s-"} {
			if !strings.Contains(string(out), line+"\n") {
				t.Errorf("getfacl lacks %q:\n%s", line, out)
			}
		}
	}
	// Without ACL entries, the ACLs go.
	spec.Directories[0].ACL = nil
	got := mustPlan(t, o.kind, spec)
	if len(got) != 1 || !strings.Contains(got[0], "ACL user::rwx") || !strings.Contains(got[0], "→ none") {
		t.Errorf("Plan without ACL = %q", got)
	}
	converge(t, o.kind, spec)
	for _, x := range []string{xattrAccess, xattrDefault} {
		if _, err := unix.Getxattr(dir, x, nil); !errors.Is(err, unix.ENODATA) {
			t.Errorf("%s after the ACL was dropped: %v, want none", x, err)
		}
	}
	if _, _, mode := statOf(t, dir); mode != 0o2750 {
		t.Errorf("mode after the ACL was dropped: %04o, want 2750", mode)
	}
}

// TestACLDrift: an ACL added by hand where none is wanted (a default ACL
// alone included), or one removed where one is wanted, is drift, and
// repaired.
func TestACLDrift(t *testing.T) {
	t.Parallel()
	o := newOfflineRoot(t, offlinePasswd, offlineGroup)
	spec := Spec{
		Homes:       &Homes{Root: "/home", Users: []string{"ana", "bob"}},
		Directories: []Directory{{Path: "/srv/classe", Ownership: Ownership{Group: "eleves", Mode: "2750", ACL: []ACLEntry{{Group: "profs", Perms: "rwx"}}}}},
	}
	converge(t, o.kind, spec)
	extra := newACL(0o700, nil, map[uint32]uint16{5001: 7}).encode()
	must(t, unix.Setxattr(filepath.Join(o.root, "home/ana"), xattrDefault, extra, 0))
	must(t, unix.Setxattr(filepath.Join(o.root, "home/bob"), xattrAccess, extra, 0))
	must(t, unix.Removexattr(filepath.Join(o.root, "srv/classe"), xattrAccess))
	got := mustPlan(t, o.kind, spec)
	want := []string{
		"update home /home/ana: default ACL user::rwx,group::---,group:5001:rwx,mask::rwx,other::--- → none",
		"update home /home/bob: mode 0770 → 0700, ACL user::rwx,group::---,group:5001:rwx,mask::rwx,other::--- → none",
		"update directory /srv/classe: ACL none → user::rwx,group::r-x,group:5001:rwx,mask::rwx,other::---",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Plan after hand-made ACL changes (-want +got):\n%s", diff)
	}
	converge(t, o.kind, spec)
	if got := mustPlan(t, o.kind, spec); len(got) != 0 {
		t.Errorf("Plan after repair = %q, want empty", got)
	}
}

// TestUnknownNamesFailAlone: a directory whose group does not exist yet
// fails on its own; the rest applies.
func TestUnknownNamesFailAlone(t *testing.T) {
	t.Parallel()
	o := newOfflineRoot(t, offlinePasswd, offlineGroup)
	spec := Spec{
		Shares: []Share{{Name: "c-{c}", Path: "/srv/{c}", Read: []string{"{c}"},
			Directory: &Ownership{Group: "{c}"}, ForEach: &ForEach{Var: "c", Values: []string{"eleves", "3z"}}}},
	}
	p, err := o.kind.Plan(t.Context(), spec)
	must(t, err)
	res, err := o.kind.Apply(t.Context(), p)
	must(t, err)
	var failed []string
	for _, c := range res.Changes {
		if c.Status == modules.StatusFailed {
			failed = append(failed, fmt.Sprintf("%s: %s", c.Change.ID, c.Error))
		}
	}
	want := []string{`/srv/3z: no group "3z" on this server (is the accounts kind applied?)`}
	if diff := cmp.Diff(want, failed); diff != "" {
		t.Errorf("failed changes (-want +got):\n%s", diff)
	}
	if _, gid, _ := statOf(t, filepath.Join(o.root, "srv/eleves")); gid != 5000 {
		t.Errorf("/srv/eleves group %d, want 5000", gid)
	}
}

// TestHandWrittenShareRefused: a share smb.conf already defines by hand
// would be merged by Samba with Alizé's; Plan refuses it.
func TestHandWrittenShareRefused(t *testing.T) {
	t.Parallel()
	o := newOfflineRoot(t, offlinePasswd, offlineGroup)
	conf := filepath.Join(o.root, testSmbConf)
	write(t, conf, read(t, conf)+"\n[Docs]\n\tpath = /srv/old\n")
	_, err := o.kind.Plan(t.Context(), Spec{Shares: []Share{{Name: "docs", Path: "/srv/docs", Read: []string{"eleves"}}}})
	if err == nil || !strings.Contains(err.Error(), "share [docs] is also written by hand in /smb.conf") {
		t.Errorf("Plan with [Docs] in smb.conf = %v, want it refused", err)
	}
}

// TestLookupUsers resolves many names with one listing, and asks by name
// for what the listing lacks (enumeration off, as nslcd may be set).
func TestLookupUsers(t *testing.T) {
	t.Parallel()
	var passwd strings.Builder
	var names []string
	for i := range 100 {
		fmt.Fprintf(&passwd, "u%03d:x:%d:%d::/:/bin/false\n", i, 4000+i, 4000+i)
		names = append(names, fmt.Sprintf("u%03d", i))
	}
	names = append(names, "nobody.here")
	for _, enumerate := range []bool{true, false} {
		o := newOfflineRoot(t, passwd.String(), "", func(c *Config) {
			next := c.Command
			c.Command = func(ctx context.Context, name string, arg ...string) *exec.Cmd {
				if name == "getent" && len(arg) == 1 && !enumerate {
					return exec.CommandContext(ctx, "true") // lists nothing
				}
				return next(ctx, name, arg...)
			}
		})
		got, err := o.kind.lookupUsers(t.Context(), names, nil)
		if err != nil || len(got) != 100 || got["u042"] != (passwdEntry{name: "u042", uid: 4042, gid: 4042}) {
			t.Errorf("lookupUsers (enumeration %v) = %d users, u042 %+v, %v; want the 100 asked for", enumerate, len(got), got["u042"], err)
		}
	}
}

// TestOmittedSharesUnmanaged: without shares nor a home share the include
// file is left alone; "shares: []" empties it.
func TestOmittedSharesUnmanaged(t *testing.T) {
	t.Parallel()
	o := newOfflineRoot(t, offlinePasswd, offlineGroup)
	converge(t, o.kind, Spec{Shares: []Share{{Name: "docs", Path: "/srv/docs", Read: []string{"eleves"}}}})
	for _, data := range []string{`{}`, `{"directories":[{"path":"/srv/x"}]}`, `{"homes":{"root":"/home","groups":["profs"]}}`} {
		spec, err := modules.DecodeSpec[Spec]([]byte(data))
		must(t, err)
		for _, c := range mustPlan(t, o.kind, spec) {
			if strings.Contains(c, "share") || strings.Contains(c, "file") {
				t.Errorf("Plan(%s) touches the include: %s", data, c)
			}
		}
	}
	spec, err := modules.DecodeSpec[Spec]([]byte(`{"shares":[]}`))
	must(t, err)
	if got := mustPlan(t, o.kind, spec); !slices.Equal(got, []string{"delete share docs: remove share [docs]; its directory and files are kept"}) {
		t.Errorf("Plan(shares: []) = %q, want docs removed", got)
	}
}
