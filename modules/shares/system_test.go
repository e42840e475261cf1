package shares

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/alize-eple/alize/modules"
	"github.com/alize-eple/alize/modules/moduletest"
	"github.com/alize-eple/alize/testenv"
)

// TestScribeShares applies Scribe's share set to a real smbd and uses it
// as its pupils and teachers would, through smbclient.
func TestScribeShares(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testenv.SmbdOptions{Users: scribeUsers, Groups: scribeGroups})
	converge(t, srv.kind, loadSpec(t, "scribe.json"))

	// Homes: created for every member of the home groups, owned by them.
	for _, u := range scribeUsers {
		uid, gid, mode := statOf(t, filepath.Join(srv.root, "home", u.Name))
		if uid != uint32(u.UID) || gid != uint32(u.UID) || mode != 0o700 {
			t.Errorf("home of %s: %d:%d %04o, want %d:%d 0700", u.Name, uid, gid, mode, u.UID, u.UID)
		}
	}

	srv.checkAccess(t, []access{
		// A pupil writes in their home and their class's work folder…
		{"eleve1", "perso", "devoir.txt", true, true},
		{"eleve1", "classes", `3a\travail\devoir.txt`, true, true},
		// …reads their class but writes nothing at its top…
		{"eleve1", "classes", `3a`, false, true},
		{"eleve1", "classes", `3a\notes.txt`, true, false},
		// …and nothing of another class.
		{"eleve1", "classes", `3b\travail\devoir.txt`, true, false},
		{"eleve1", "classes", `3b`, false, false},
		// A teacher writes in their classes, not in the others.
		{"prof1", "classes", `3a\cours.txt`, true, true},
		{"prof1", "classes", `3a\travail\corrige.txt`, true, true},
		{"prof1", "classes", `3b\cours.txt`, true, false},
		{"prof2", "classes", `3b\cours.txt`, true, true},
		// commun: read-only for pupils, writable by teachers.
		{"prof1", "commun", "circulaire.txt", true, true},
		{"eleve1", "commun", "", false, true},
		{"eleve1", "commun", "graffiti.txt", true, false},
		// professeurs: teachers only.
		{"prof2", "professeurs", "conseil.txt", true, true},
		{"eleve2", "professeurs", "", false, false},
		// groupes: members of the group only.
		{"eleve1", "groupes", `latin\version.txt`, true, true},
		{"eleve2", "groupes", `latin\version.txt`, true, false},
		// devoirs: teachers hand out, pupils read and hand in.
		{"prof1", "devoirs", `3a\distribution\sujet.txt`, true, true},
		{"eleve1", "devoirs", `3a\distribution\sujet2.txt`, true, false},
		{"eleve1", "devoirs", `3a\rendu\copie-eleve1.txt`, true, true},
		{"eleve2", "devoirs", `3a\rendu\copie-eleve2.txt`, true, false},
	})

	// The file a pupil put is theirs, on disk, in their home.
	if uid, _, _ := statOf(t, filepath.Join(srv.root, "home", "eleve1", "devoir.txt")); uid != 3001 {
		t.Errorf("devoir.txt in eleve1's home belongs to uid %d, want 3001", uid)
	}
	// What a teacher puts in a class inherits the default ACL: the pupils
	// of the class read it.
	if got, err := srv.get(t, "classes", "eleve1", `3a\cours.txt`); err != nil || !strings.Contains(got, "prof1") {
		t.Errorf("eleve1 reads prof1's 3a\\cours.txt: %q, %v; want prof1's text", got, err)
	}
	if got, err := srv.get(t, "devoirs", "eleve1", `3a\distribution\sujet.txt`); err != nil || !strings.Contains(got, "prof1") {
		t.Errorf("eleve1 reads the handed-out sujet.txt: %q, %v", got, err)
	}
	// Hidden unreadable: a pupil sees their class only.
	if out, err := srv.ls(t, "classes", "eleve1", ""); err != nil || !strings.Contains(out, "3a") || strings.Contains(out, "3b") {
		t.Errorf("ls classes as eleve1 = %q, %v; want 3a listed and 3b hidden", out, err)
	}
	// The drop box: a pupil hands in but cannot see the others' copies.
	if out, err := srv.ls(t, "devoirs", "eleve1", `3a\rendu`); err == nil && strings.Contains(out, "copie") {
		t.Errorf("ls devoirs\\3a\\rendu as eleve1 = %q; the drop box must not list the copies", out)
	}
	if out, err := srv.ls(t, "devoirs", "prof1", `3a\rendu`); err != nil || !strings.Contains(out, "copie-eleve1.txt") {
		t.Errorf("ls devoirs\\3a\\rendu as prof1 = %q, %v; want copie-eleve1.txt", out, err)
	}
	if err := srv.kind.Check(t.Context()); err != nil {
		t.Errorf("Check after apply: %v", err)
	}
}

// TestConformance runs the kind contract's harness on Scribe's set.
func TestConformance(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testenv.SmbdOptions{Users: scribeUsers, Groups: scribeGroups})
	moduletest.Run(t, srv.kind, loadSpec(t, "scribe.json"), func(context.Context) (string, error) {
		return snapshot(srv.root)
	})
}

// TestDriftRepaired edits the include file, a directory's mode and ACL
// and a home's owner by hand: the plan names each, applying repairs them,
// and the section written by hand in smb.conf survives throughout.
func TestDriftRepaired(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	manualDir := t.TempDir()
	must(t, os.Chmod(filepath.Dir(manualDir), 0o755))
	must(t, os.Chmod(manualDir, 0o777))
	srv := startServer(t, testenv.SmbdOptions{Users: scribeUsers, Groups: scribeGroups,
		Shares: fmt.Sprintf("[manuel]\n\tcomment = Written by hand\n\tpath = %s\n\tread only = no\n\tvalid users = prof1\n", manualDir)})
	conf := filepath.Join(srv.root, testSmbConf)
	inc := filepath.Join(srv.root, testInclude)
	before := read(t, conf)
	spec := loadSpec(t, "scribe.json")
	converge(t, srv.kind, spec)

	// smb.conf got one line, nothing else.
	after := read(t, conf)
	line := "\tinclude = " + inc + "\n"
	if strings.Count(after, line) != 1 || strings.Replace(after, line, "", 1) != before {
		t.Errorf("smb.conf after apply:\n%s\nwant the one line %q added to:\n%s", after, line, before)
	}
	if err := srv.put(t, "manuel", "prof1", "note.txt"); err != nil {
		t.Errorf("the share written by hand in smb.conf: %v", err)
	}

	// Hand edits, made live.
	rendered := read(t, inc)
	edited := strings.Replace(rendered, "write list = @professeurs\n\tcreate mask = 0664", "write list = @professeurs @eleves\n\tcreate mask = 0664", 1)
	edited += "\n[evil]\n\tpath = /\n\tvalid users = eleve1\n"
	write(t, inc, edited)
	must(t, srv.Reload(ctx))
	commun := filepath.Join(srv.root, "home/workgroups/commun")
	must(t, os.Chmod(commun, 0o777))
	if err := srv.put(t, "commun", "eleve1", "graffiti.txt"); err != nil {
		t.Fatalf("the hand edits did not take: %v", err)
	}
	must(t, unix.Removexattr(filepath.Join(srv.root, "home/workgroups/classes/3a"), xattrDefault))
	must(t, os.Chown(filepath.Join(srv.root, "home/eleve2"), 0, 0))

	got := mustPlan(t, srv.kind, spec)
	want := []string{
		"update home /home/eleve2: owner 0 → eleve2 (3002), group 0 → 3002 (3002)",
		"update directory /home/workgroups/classes/3a: default ACL none → user::rwx,group::r-x,group:5005:rwx,mask::rwx,other::---",
		"update directory /home/workgroups/commun: mode 0777 → 2775",
		"update share commun: set write list back as the module says",
		"delete share evil: remove share [evil]; its directory and files are kept",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Plan after hand edits (-want +got):\n%s", diff)
	}
	converge(t, srv.kind, spec)
	if got := mustPlan(t, srv.kind, spec); len(got) != 0 {
		t.Errorf("Plan after repair = %q, want empty", got)
	}
	if read(t, inc) != rendered {
		t.Errorf("include after repair:\n%s\nwant:\n%s", read(t, inc), rendered)
	}
	if err := srv.put(t, "commun", "eleve1", "graffiti2.txt"); !denied(err) {
		t.Errorf("eleve1 writes in commun after repair: %v, want access denied", err)
	}
	if _, err := srv.ls(t, "evil", "eleve1", ""); err == nil || !strings.Contains(err.Error(), "NT_STATUS_BAD_NETWORK_NAME") {
		t.Errorf("share evil after repair: %v, want NT_STATUS_BAD_NETWORK_NAME", err)
	}
	if err := srv.put(t, "manuel", "prof1", "note2.txt"); err != nil {
		t.Errorf("the share written by hand in smb.conf after repair: %v", err)
	}
	if read(t, conf) != after {
		t.Errorf("smb.conf changed while repairing drift:\n%s", read(t, conf))
	}

	// A comment added to the include, outside any share.
	write(t, inc, "# note\n"+rendered)
	if got := mustPlan(t, srv.kind, spec); !slices.Equal(got, []string{"update file /etc/samba/alize-shares.conf: rewrite the file: it was edited outside its shares"}) {
		t.Errorf("Plan after a comment was added = %q", got)
	}
	// The include line removed from smb.conf by hand.
	write(t, conf, before)
	must(t, srv.Reload(ctx))
	if err := srv.kind.Check(ctx); err == nil {
		t.Error("Check without the include line = nil, want an error")
	}
	got = mustPlan(t, srv.kind, spec)
	if len(got) != 2 || !strings.HasPrefix(got[1], "update file /smb.conf: add the line") {
		t.Errorf("Plan without the include line = %q", got)
	}
	converge(t, srv.kind, spec)
	if read(t, conf) != after {
		t.Errorf("smb.conf after the line is put back:\n%s\nwant:\n%s", read(t, conf), after)
	}
	if err := srv.put(t, "commun", "prof2", "retour.txt"); err != nil {
		t.Errorf("commun after the include line is back: %v", err)
	}
}

// TestScribeSharesLDAP uses accounts in the directory (ldapsam), as the
// accounts kind makes them, through smbclient.
func TestScribeSharesLDAP(t *testing.T) {
	t.Parallel()
	school := testenv.School{UAI: "0951099D", Academy: "versailles"}
	var ldif strings.Builder
	for _, u := range scribeUsers {
		ou := "personnels"
		if strings.HasPrefix(u.Name, "eleve") {
			ou = "eleves"
		}
		fmt.Fprintf(&ldif, "dn: uid=%s,ou=%s,ou=Utilisateurs,%s\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n"+
			"uid: %[1]s\ncn: %[1]s\nsn: %[1]s\nuidNumber: %[4]d\ngidNumber: %[4]d\nhomeDirectory: /home/%[1]s\n\n",
			u.Name, ou, school.BaseDN(), u.UID)
	}
	l := testenv.StartSlapd(t, testenv.SlapdOptions{School: &school, LDIF: ldif.String()})
	srv := startServer(t, testenv.SmbdOptions{LDAP: l, Users: scribeUsers, Groups: scribeGroups})
	converge(t, srv.kind, loadSpec(t, "scribe.json"))
	srv.checkAccess(t, []access{
		{"eleve1", "perso", "devoir.txt", true, true},
		{"eleve1", "classes", `3a\travail\devoir.txt`, true, true},
		{"eleve1", "classes", `3b\travail\devoir.txt`, true, false},
		{"prof1", "classes", `3a\cours.txt`, true, true},
		{"eleve2", "commun", "graffiti.txt", true, false},
	})
}

// TestRecycle keeps deleted files in the bin when Samba's recycle module
// is installed; without it the include is refused before it goes live.
func TestRecycle(t *testing.T) {
	t.Parallel()
	noModules := t.TempDir()
	srv := startServer(t, testenv.SmbdOptions{Users: scribeUsers, Groups: scribeGroups},
		func(c *Config) { c.VFSModules = noModules })
	spec := Spec{Shares: []Share{{Name: "commun", Path: "/home/commun", Write: []string{"professeurs"},
		Recycle: &Recycle{}, Directory: &Ownership{Group: "professeurs", Mode: "2770"}}}}
	inc := filepath.Join(srv.root, testInclude)

	// Without the module.
	p, err := srv.kind.Plan(t.Context(), spec)
	must(t, err)
	res, err := srv.kind.Apply(t.Context(), p)
	must(t, err)
	last := res.Changes[len(res.Changes)-1]
	if last.Status != modules.StatusFailed || !strings.Contains(last.Error, "samba-vfs-modules") {
		t.Errorf("Apply of a recycle bin without its module:\n%s", results(res))
	}
	if _, err := os.Stat(inc); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused include reached %s: %v", inc, err)
	}

	// With the module (Debian package samba-vfs-modules, which samba
	// recommends and testenv installs).
	testenv.Require(t, "samba-vfs")
	k, err := New(Config{Root: srv.root, Include: testInclude, SmbConf: testSmbConf, Command: srv.kind.command, Log: testLogger(t)})
	must(t, err)
	if err := k.haveVFS("recycle"); err != nil {
		t.Fatalf("samba-vfs-modules is installed but the kind does not find recycle: %v", err)
	}
	converge(t, k, spec)
	must(t, srv.put(t, "commun", "prof1", "brouillon.txt"))
	if _, err := srv.Client(t.Context(), "commun", "prof1", srv.pw["prof1"], "rm brouillon.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(srv.root, "home/commun/.corbeille/brouillon.txt")); err != nil {
		t.Errorf("the deleted file is not in the recycle bin: %v", err)
	}
}

// access is one thing a user tries through smbclient: put a file, or
// list a folder; ok says whether it must be allowed.
type access struct {
	user, share, path string
	put               bool // else ls
	ok                bool
}

// checkAccess tries every step, side by side: they do not depend on each
// other.
func (s *server) checkAccess(t *testing.T, steps []access) {
	t.Run("access", func(t *testing.T) {
		for _, st := range steps {
			what := "ls"
			if st.put {
				what = "put"
			}
			t.Run(fmt.Sprintf("%s %s %s %s", st.user, what, st.share, st.path), func(t *testing.T) {
				t.Parallel()
				var err error
				if st.put {
					err = s.put(t, st.share, st.user, st.path)
				} else {
					_, err = s.ls(t, st.share, st.user, st.path)
				}
				switch {
				case st.ok && err != nil:
					t.Errorf("%s %s as %s in [%s]: %v, want it allowed", what, st.path, st.user, st.share, err)
				case !st.ok && !denied(err):
					t.Errorf("%s %s as %s in [%s]: %v, want access denied", what, st.path, st.user, st.share, err)
				}
			})
		}
	})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
