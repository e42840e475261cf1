package shares

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/alize-eple/alize/modules"
)

// renderedKeys are the only parameters the renderer writes.
var renderedKeys = []string{"comment", "path", "browseable", "guest ok", "read only", "valid users", "write list",
	"create mask", "directory mask", "inherit acls", "hide unreadable", "veto files", "vfs objects",
	"recycle:repository", "recycle:keeptree", "recycle:versions"}

// checkRendered fails when the include rendered for m holds anything but
// m's own sections, each made of known parameters on one line each.
func checkRendered(t *testing.T, m model, out []byte) {
	t.Helper()
	text := string(out)
	if !strings.HasPrefix(text, header) {
		t.Fatalf("rendered include lost its header:\n%s", text)
	}
	var names []string
	for _, sh := range m.shares {
		names = append(names, sh.name)
	}
	var got []string
	for _, sec := range parseSections(out) {
		got = append(got, sec.name)
		for _, p := range sec.params {
			if !slices.Contains(renderedKeys, p.key) {
				t.Fatalf("section [%s] has parameter %q:\n%s", sec.name, p.key, text)
			}
		}
	}
	if !slices.Equal(names, got) {
		t.Fatalf("rendered sections %q, want %q:\n%s", got, names, text)
	}
	for line := range strings.Lines(strings.TrimPrefix(text, header)) {
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") && strings.Count(line, "[") == 1 && strings.Count(line, "]") == 1:
		case strings.HasPrefix(line, "\t") && strings.Contains(line, " = ") && !strings.HasSuffix(line, "\\"):
			if strings.Contains(line, "%") && !strings.HasPrefix(line, "\tpath = ") {
				t.Fatalf("a macro outside a home share's path: %q", line)
			}
		default:
			t.Fatalf("line %q is neither a header nor a parameter:\n%s", line, text)
		}
	}
	if strings.ContainsAny(text, "\x00\r") {
		t.Fatalf("NUL or CR in the include:\n%q", text)
	}
}

// FuzzSpec decodes, validates and renders arbitrary specs: whatever
// passes Validate renders to its own sections and nothing else.
func FuzzSpec(f *testing.F) {
	for _, name := range []string{"scribe.json", "minimal.json", "everything.json"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"shares":[{"name":"a]\n[b","path":"/srv/a","read":["g"]}]}`))
	f.Add([]byte(`{"shares":[{"name":"{v}","path":"/srv/{v}","read":["{v}"],"for_each":{"var":"v","values":["x","y]"]}}]}`))
	f.Add([]byte(`{"homes":{"root":"/home","groups":["e"],"share":{"name":"perso","comment":"a\u2028b"}}}`))
	s, err := New(Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := modules.DecodeSpec[Spec](data)
		if err != nil {
			return
		}
		m, errs := s.compile(spec)
		if errs.Err() != nil {
			if s.Validate(spec) == nil {
				t.Fatal("compile reports problems Validate does not")
			}
			return
		}
		checkRendered(t, m, render(m, "/"))
		for _, d := range m.dirs {
			if !isPath(d.path) || strings.Contains(d.path, "..") && slices.Contains(strings.Split(d.path, "/"), "..") {
				t.Fatalf("directory %q passed", d.path)
			}
		}
	})
}

// FuzzNameAndPath tries share names, paths, comments and group names: a
// share that passes Validate is rendered as exactly one section with
// exactly that path, under an allowed root.
func FuzzNameAndPath(f *testing.F) {
	f.Add("commun", "/home/workgroups/commun", "Commun", "eleves")
	f.Add("a]\n[global", "/home/../etc", "x\ninclude = /etc/shadow", "g;h")
	f.Add("perso$", "/srv/a.b/c-d_e", "Élèves 3ᵉ", "profs-3a")
	f.Add("x", "/homework", "%u", "@g")
	s, err := New(Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name, path, comment, group string) {
		spec := Spec{Shares: []Share{{Name: name, Path: path, Comment: comment, Read: []string{group}}}}
		m, errs := s.compile(spec)
		if errs.Err() != nil {
			return
		}
		out := render(m, "/")
		checkRendered(t, m, out)
		secs := parseSections(out)
		if len(secs) != 1 || secs[0].name != name {
			t.Fatalf("share %q rendered as %v", name, secs)
		}
		if !strings.Contains(string(out), "\n\tpath = "+path+"\n") {
			t.Fatalf("path %q not rendered as itself:\n%s", path, out)
		}
		if !strings.HasPrefix(path, "/home/") && path != "/home" && !strings.HasPrefix(path, "/srv/") && path != "/srv" {
			t.Fatalf("path %q outside the allowed roots passed", path)
		}
		for _, c := range strings.Split(path, "/")[1:] {
			if c == "" || c == "." || c == ".." {
				t.Fatalf("path %q with component %q passed", path, c)
			}
		}
	})
}
