package shares

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/alize-eple/alize/modules"
)

func TestValidateGood(t *testing.T) {
	s := production(t)
	for _, name := range []string{"scribe.json", "minimal.json", "everything.json"} {
		if err := s.Validate(loadSpec(t, name)); err != nil {
			t.Errorf("Validate(%s) = %v, want nil", name, err)
		}
	}
	if err := s.Validate(Spec{}); err != nil {
		t.Errorf("Validate(empty spec) = %v, want nil", err)
	}
}

// share is a valid share to spoil in a test.
func share() Share {
	return Share{Name: "commun", Path: "/home/commun", Read: []string{"eleves"}}
}

// TestValidateRefuses checks that each hostile or wrong input is refused
// with the path of its field.
func TestValidateRefuses(t *testing.T) {
	with := func(f func(*Share)) Spec {
		sh := share()
		f(&sh)
		return Spec{Shares: []Share{sh}}
	}
	dir := func(d Directory) Spec { return Spec{Directories: []Directory{d}} }
	for _, tc := range []struct {
		name string
		spec Spec
		path string // of the one problem
	}{
		{"name with newline", with(func(s *Share) { s.Name = "a\n[evil]" }), "shares[0].name"},
		{"name with brackets", with(func(s *Share) { s.Name = "a]b" }), "shares[0].name"},
		{"name opening a section", with(func(s *Share) { s.Name = "[global" }), "shares[0].name"},
		{"name with =", with(func(s *Share) { s.Name = "path=/etc" }), "shares[0].name"},
		{"name with macro", with(func(s *Share) { s.Name = "%u" }), "shares[0].name"},
		{"name with ;", with(func(s *Share) { s.Name = "a;b" }), "shares[0].name"},
		{"name with #", with(func(s *Share) { s.Name = "#a" }), "shares[0].name"},
		{"name with NUL", with(func(s *Share) { s.Name = "a\x00b" }), "shares[0].name"},
		{"name with space", with(func(s *Share) { s.Name = "a b" }), "shares[0].name"},
		{"name with slash", with(func(s *Share) { s.Name = "classes/3a" }), "shares[0].name"},
		{"empty name", with(func(s *Share) { s.Name = "" }), "shares[0].name"},
		{"name too long", with(func(s *Share) { s.Name = strings.Repeat("a", 81) }), "shares[0].name"},
		{"reserved global", with(func(s *Share) { s.Name = "GLOBAL" }), "shares[0].name"},
		{"reserved homes", with(func(s *Share) { s.Name = "homes" }), "shares[0].name"},
		{"reserved ipc$", with(func(s *Share) { s.Name = "IPC$" }), "shares[0].name"},
		{"dollar inside", with(func(s *Share) { s.Name = "a$b" }), "shares[0].name"},
		{"relative path", with(func(s *Share) { s.Path = "home/commun" }), "shares[0].path"},
		{"dot dot", with(func(s *Share) { s.Path = "/home/../etc" }), "shares[0].path"},
		{"dot dot at end", with(func(s *Share) { s.Path = "/home/commun/.." }), "shares[0].path"},
		{"dot", with(func(s *Share) { s.Path = "/home/./commun" }), "shares[0].path"},
		{"double slash", with(func(s *Share) { s.Path = "/home//commun" }), "shares[0].path"},
		{"final slash", with(func(s *Share) { s.Path = "/home/commun/" }), "shares[0].path"},
		{"path newline", with(func(s *Share) { s.Path = "/home/x\n[evil]\npath = /etc" }), "shares[0].path"},
		{"path macro", with(func(s *Share) { s.Path = "/home/%u" }), "shares[0].path"},
		{"path space", with(func(s *Share) { s.Path = "/home/a b" }), "shares[0].path"},
		{"path outside roots", with(func(s *Share) { s.Path = "/etc/samba" }), "shares[0].path"},
		{"path root", with(func(s *Share) { s.Path = "/" }), "shares[0].path"},
		{"path prefix trick", with(func(s *Share) { s.Path = "/homework" }), "shares[0].path"},
		{"empty path", with(func(s *Share) { s.Path = "" }), "shares[0].path"},
		{"comment newline", with(func(s *Share) { s.Comment = "a\n[evil]" }), "shares[0].comment"},
		{"comment CR", with(func(s *Share) { s.Comment = "a\rb" }), "shares[0].comment"},
		{"comment macro", with(func(s *Share) { s.Comment = "50%" }), "shares[0].comment"},
		{"comment continuation", with(func(s *Share) { s.Comment = "a\\" }), "shares[0].comment"},
		{"comment line separator", with(func(s *Share) { s.Comment = "a\u2028b" }), "shares[0].comment"},
		{"comment invalid utf-8", with(func(s *Share) { s.Comment = "a\xffb" }), "shares[0].comment"},
		{"comment placeholder", with(func(s *Share) { s.Comment = "Classe {class}" }), "shares[0].comment"},
		{"comment trailing space", with(func(s *Share) { s.Comment = "a " }), "shares[0].comment"},
		{"group with space", with(func(s *Share) { s.Read = []string{"domain users"} }), "shares[0].read[0]"},
		{"group with @", with(func(s *Share) { s.Write = []string{"@profs"} }), "shares[0].write[0]"},
		{"group with comma", with(func(s *Share) { s.Read = []string{"a,b"} }), "shares[0].read[0]"},
		{"group with macro", with(func(s *Share) { s.Read = []string{"%G"} }), "shares[0].read[0]"},
		{"group option", with(func(s *Share) { s.Read = []string{"-s"} }), "shares[0].read[0]"},
		{"group numeric", with(func(s *Share) { s.Read = []string{"1000"} }), "shares[0].read[0]"},
		{"user with newline", with(func(s *Share) { s.WriteUsers = []string{"a\ninclude = /x"} }), "shares[0].write_users[0]"},
		{"user with +", with(func(s *Share) { s.ReadUsers = []string{"+staff"} }), "shares[0].read_users[0]"},
		{"nobody", with(func(s *Share) { s.Read = nil }), "shares[0].read"},
		{"bad create mask", with(func(s *Share) { s.CreateMask = "0999" }), "shares[0].create_mask"},
		{"special bits in mask", with(func(s *Share) { s.DirectoryMask = "2775" }), "shares[0].directory_mask"},
		{"mask injection", with(func(s *Share) { s.CreateMask = "0644\ninclude = /x" }), "shares[0].create_mask"},
		{"veto slash", with(func(s *Share) { s.VetoFiles = []string{"a/b"} }), "shares[0].veto_files[0]"},
		{"veto newline", with(func(s *Share) { s.VetoFiles = []string{"*.exe\n[x]"} }), "shares[0].veto_files[0]"},
		{"veto macro", with(func(s *Share) { s.VetoFiles = []string{"%u"} }), "shares[0].veto_files[0]"},
		{"recycle path", with(func(s *Share) { s.Recycle = &Recycle{Repository: "../etc"} }), "shares[0].recycle.repository"},
		{"recycle dot dot", with(func(s *Share) { s.Recycle = &Recycle{Repository: ".."} }), "shares[0].recycle.repository"},
		{"dir owner", with(func(s *Share) { s.Directory = &Ownership{Owner: "a:b"} }), "shares[0].directory.owner"},
		{"dir group", with(func(s *Share) { s.Directory = &Ownership{Group: "-rf"} }), "shares[0].directory.group"},
		{"dir mode", with(func(s *Share) { s.Directory = &Ownership{Mode: "rwx"} }), "shares[0].directory.mode"},
		{"dir mode too big", with(func(s *Share) { s.Directory = &Ownership{Mode: "17777"} }), "shares[0].directory.mode"},
		{"dir setuid", with(func(s *Share) { s.Directory = &Ownership{Mode: "4755"} }), "shares[0].directory.mode"},
		{"acl both", with(func(s *Share) {
			s.Directory = &Ownership{ACL: []ACLEntry{{User: "a", Group: "b", Perms: "rwx"}}}
		}), "shares[0].directory.acl[0]"},
		{"acl none", with(func(s *Share) { s.Directory = &Ownership{ACL: []ACLEntry{{Perms: "rwx"}}} }), "shares[0].directory.acl[0]"},
		{"acl perms", with(func(s *Share) { s.Directory = &Ownership{ACL: []ACLEntry{{Group: "a", Perms: "rw"}}} }), "shares[0].directory.acl[0].perms"},
		{"acl perms order", with(func(s *Share) { s.Directory = &Ownership{ACL: []ACLEntry{{Group: "a", Perms: "xwr"}}} }), "shares[0].directory.acl[0].perms"},
		{"acl twice", with(func(s *Share) {
			s.Directory = &Ownership{ACL: []ACLEntry{{Group: "a", Perms: "rwx"}, {Group: "a", Perms: "r-x"}}}
		}), "shares[0].directory.acl[1]"},
		{"for_each var", with(func(s *Share) { s.ForEach = &ForEach{Var: "Class", Values: []string{"3a"}} }), "shares[0].for_each.var"},
		{"for_each value injection", with(func(s *Share) {
			s.Name, s.ForEach = "c-{c}", &ForEach{Var: "c", Values: []string{"3a]\n[evil"}}
		}), "shares[0].for_each.values[0]"},
		{"for_each value dot dot", with(func(s *Share) {
			s.Path, s.ForEach = "/home/{c}", &ForEach{Var: "c", Values: []string{".."}}
		}), "shares[0].for_each.values[0]"},
		{"for_each value twice", with(func(s *Share) {
			s.Name, s.ForEach = "c-{c}", &ForEach{Var: "c", Values: []string{"a", "a"}}
		}), "shares[0].for_each.values[1]"},
		{"unknown placeholder", with(func(s *Share) { s.Path = "/home/{class}" }), "shares[0].path"},
		{"placeholder of another var", with(func(s *Share) {
			s.Name, s.Path, s.ForEach = "c-{c}", "/home/{class}", &ForEach{Var: "c", Values: []string{"a"}}
		}), "shares[0].path"},
		{"for_each makes duplicates", with(func(s *Share) {
			s.ForEach = &ForEach{Var: "c", Values: []string{"a", "b"}}
		}), "shares[0].name"},
		{"dir relative", dir(Directory{Path: "srv/x"}), "directories[0].path"},
		{"dir outside", dir(Directory{Path: "/etc/cron.d"}), "directories[0].path"},
		{"dir owner", dir(Directory{Path: "/srv/x", Ownership: Ownership{Owner: "root\n"}}), "directories[0].owner"},
		{"dir acl user", dir(Directory{Path: "/srv/x", Ownership: Ownership{ACL: []ACLEntry{{User: "a b", Perms: "rwx"}}}}), "directories[0].acl[0].user"},
		{"homes outside", Spec{Homes: &Homes{Root: "/root", Groups: []string{"eleves"}}}, "homes.root"},
		{"homes nobody", Spec{Homes: &Homes{Root: "/home"}}, "homes.groups"},
		{"homes group", Spec{Homes: &Homes{Root: "/home", Groups: []string{"a\nb"}}}, "homes.groups[0]"},
		{"homes user", Spec{Homes: &Homes{Root: "/home", Users: []string{"../x"}}}, "homes.users[0]"},
		{"homes mode", Spec{Homes: &Homes{Root: "/home", Groups: []string{"e"}, Mode: "07000"}}, "homes.mode"},
		{"homes share path", Spec{Homes: &Homes{Root: "/home", Groups: []string{"e"}, Share: &Share{Name: "perso", Path: "/home"}}}, "homes.share.path"},
		{"homes share read", Spec{Homes: &Homes{Root: "/home", Groups: []string{"e"}, Share: &Share{Name: "perso", Read: []string{"x"}}}}, "homes.share.read"},
		{"homes share name", Spec{Homes: &Homes{Root: "/home", Groups: []string{"e"}, Share: &Share{Name: "per]so"}}}, "homes.share.name"},
		{"homes share clash", Spec{Homes: &Homes{Root: "/home", Groups: []string{"e"}, Share: &Share{Name: "Commun"}}, Shares: []Share{share()}}, "shares[0].name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := production(t).Validate(tc.spec)
			var fes modules.FieldErrors
			if !errors.As(err, &fes) {
				t.Fatalf("Validate = %v, want field errors", err)
			}
			var paths []string
			for _, fe := range fes {
				paths = append(paths, fe.Path)
			}
			if diff := cmp.Diff([]string{tc.path}, paths); diff != "" {
				t.Errorf("Validate = %v\nproblem paths (-want +got):\n%s", err, diff)
			}
		})
	}
}

// TestValidateReportsEverything checks that one run reports every problem.
func TestValidateReportsEverything(t *testing.T) {
	spec := Spec{
		Shares: []Share{
			{Name: "a]", Path: "../x", Comment: "%m", Read: []string{"a b"}, CreateMask: "9"},
			{Name: "ok", Path: "/home/ok", Write: []string{"g"}, VetoFiles: []string{"/"}},
			{Name: "OK", Path: "/home/ok2", Write: []string{"g"}},
		},
		Directories: []Directory{
			{Path: "/home/ok", Ownership: Ownership{Mode: "8"}},
			{Path: "/home/ok", ForEach: &ForEach{Var: "v", Values: []string{"x/y"}}},
		},
		Homes: &Homes{Root: "/etc", Groups: []string{"eleves"}},
	}
	err := production(t).Validate(spec)
	var got []string
	for _, fe := range err.(modules.FieldErrors) {
		got = append(got, fe.Path)
	}
	want := []string{
		"homes.root",
		"shares[0].name", "shares[0].path", "shares[0].read[0]", "shares[0].comment", "shares[0].create_mask",
		"shares[1].veto_files[0]",
		"shares[2].name",
		"directories[0].mode",
		"directories[1].for_each.values[0]",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Validate reported:\n%v\npaths (-want +got):\n%s", err, diff)
	}
}

func TestValidateDuplicateDirectory(t *testing.T) {
	spec := Spec{
		Shares:      []Share{{Name: "a", Path: "/srv/a", Read: []string{"g"}, Directory: &Ownership{}}},
		Directories: []Directory{{Path: "/srv/a"}},
	}
	err := production(t).Validate(spec)
	if err == nil || !strings.Contains(err.Error(), "directories[0].path: directory /srv/a is already provisioned by shares[0].directory") {
		t.Errorf("Validate = %v, want the duplicate directory reported", err)
	}
}

// TestValidateForEachOnce reports a template's mistake once, naming the
// value.
func TestValidateForEachOnce(t *testing.T) {
	spec := Spec{Directories: []Directory{{Path: "/srv/{c}", Ownership: Ownership{Owner: "x y"},
		ForEach: &ForEach{Var: "c", Values: []string{"a", "b", "c"}}}}}
	err := production(t).Validate(spec)
	want := `directories[0].owner: "x y": ` + nameRule + ` (for c=a)`
	if err == nil || err.Error() != want {
		t.Errorf("Validate = %v, want %s", err, want)
	}
}

func TestCheckerForDecodesStrictly(t *testing.T) {
	check := modules.CheckerFor[Spec](production(t))
	if err := check([]byte(`{"shares":[{"name":"a","path":"/srv/a","read":["g"]}]}`)); err != nil {
		t.Errorf("valid spec: %v", err)
	}
	for _, bad := range []string{
		`{"shares":[{"name":"a","path":"/srv/a","read":["g"],"vfs_objects":"x"}]}`, // unknown field
		`{"homes":{"root":"/home","groups":["e"],"quota_mib":2048}}`,
		`{"shares":[]} {}`,
		`{"shares":[{"name":"a\n[x]","path":"/srv/a","read":["g"]}]}`,
	} {
		if err := check([]byte(bad)); err == nil {
			t.Errorf("CheckerFor(%s) = nil, want an error", bad)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Root: "relative"},
		{Include: "/etc/samba/../x.conf"},
		{SmbConf: "smb.conf"},
		{AllowedRoots: []string{"/"}},
		{AllowedRoots: []string{"/etc"}},
		{Include: "/etc/samba/smb.conf"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error, want one", cfg)
		}
	}
}

// TestValidateBoundsExpansion: a small spec cannot expand into a huge
// configuration.
func TestValidateBoundsExpansion(t *testing.T) {
	values := make([]string, 1000)
	for i := range values {
		values[i] = fmt.Sprintf("v%d", i)
	}
	var spec Spec
	for i := range 3 {
		spec.Shares = append(spec.Shares, Share{Name: fmt.Sprintf("s%d-{x}", i), Path: "/srv/{x}", Read: []string{"g"},
			ForEach: &ForEach{Var: "x", Values: values}})
	}
	err := production(t).Validate(spec)
	if err == nil || !strings.Contains(err.Error(), "shares[2]: the spec expands to more than 2000 shares") {
		t.Errorf("Validate = %.300v, want the expansion refused at shares[2]", err)
	}
}
