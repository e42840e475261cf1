package shares

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/alize-eple/alize/modules"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// production is the kind as the controller and a server build it.
func production(t testing.TB) *Shares {
	t.Helper()
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func loadSpec(t testing.TB, name string) Spec {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := modules.DecodeSpec[Spec](data)
	if err != nil {
		t.Fatalf("DecodeSpec(%s): %v", name, err)
	}
	return spec
}

// TestRenderGolden renders the include file of each spec in testdata/ and
// compares it with its golden file; -update rewrites them.
func TestRenderGolden(t *testing.T) {
	for _, name := range []string{"scribe", "minimal", "everything"} {
		t.Run(name, func(t *testing.T) {
			s := production(t)
			m, errs := s.compile(loadSpec(t, name+".json"))
			if err := errs.Err(); err != nil {
				t.Fatalf("compile: %v", err)
			}
			got := render(m, "/")
			golden := filepath.Join("testdata", name+".conf")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to write it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("render(%s) differs from %s (-want +got):\n%s", name, golden, diff)
			}
		})
	}
}

// TestRenderUnderRoot puts every path under the kind's root.
func TestRenderUnderRoot(t *testing.T) {
	s := production(t)
	m, _ := s.compile(loadSpec(t, "scribe.json"))
	got := string(render(m, "/tmp/x"))
	for _, want := range []string{"\tpath = /tmp/x/home/%u\n", "\tpath = /tmp/x/home/workgroups/commun\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("render under /tmp/x lacks %q:\n%s", want, got)
		}
	}
}

func TestParseSections(t *testing.T) {
	conf := "; comment\n[global]\n\tworkgroup = X\n# c\n[Commun]\n  Read Only=no\n\tvalid users = @a \\\n  @b\n[bad\n[x]\n"
	got := parseSections([]byte(conf))
	want := []section{
		{name: "global", text: "[global]\n\tworkgroup = X\n# c\n", params: []param{{"workgroup", "X"}}},
		{name: "Commun", text: "[Commun]\n  Read Only=no\n\tvalid users = @a \\\n  @b\n[bad\n",
			params: []param{{"read only", "no"}, {"valid users", "@a   @b"}}},
		{name: "x", text: "[x]\n"},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(section{}, param{})); diff != "" {
		t.Errorf("parseSections (-want +got):\n%s", diff)
	}
}

func TestWithInclude(t *testing.T) {
	const line = "\tinclude = /etc/samba/alize-shares.conf\n"
	for _, tc := range []struct{ name, conf, want string }{
		{"end of global", "[global]\n\tworkgroup = X\n\n# shares\n[manual]\n\tpath = /srv\n",
			"[global]\n\tworkgroup = X\n" + line + "\n# shares\n[manual]\n\tpath = /srv\n"},
		{"global last, no final newline", "# hi\n[global]\n  a = b", "# hi\n[global]\n  a = b\n" + line},
		{"empty global", "[global]\n[x]\n", "[global]\n" + line + "[x]\n"},
		{"continued line", "[GLOBAL]\n\ta = b \\\n c\n[x]\n", "[GLOBAL]\n\ta = b \\\n c\n" + line + "[x]\n"},
		{"implicit global", "a = b\n\n[x]\n", "a = b\n" + line + "\n[x]\n"},
		{"no global", "# c\n[x]\n\tpath = /srv\n", "# c\n" + line + "[x]\n\tpath = /srv\n"},
		{"empty", "", line},
		{"second global untouched", "[global]\n a = b\n[x]\n[global]\n c = d\n", "[global]\n a = b\n" + line + "[x]\n[global]\n c = d\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(withInclude([]byte(tc.conf), "/etc/samba/alize-shares.conf"))
			if got != tc.want {
				t.Errorf("withInclude(%q) = %q, want %q", tc.conf, got, tc.want)
			}
			if !hasInclude([]byte(got), "/etc/samba/alize-shares.conf") {
				t.Errorf("hasInclude(withInclude(%q)) = false", tc.conf)
			}
		})
	}
	for conf, want := range map[string]bool{
		"[global]\n\tinclude = /etc/samba/alize-shares.conf\n":         true,
		"[global]\nInclude=\"/etc/samba/alize-shares.conf\"\n":         true,
		"[global]\n;include = /etc/samba/alize-shares.conf\n":          false,
		"[global]\n\tinclude = /etc/samba/alize-shares.conf.bak\n":     false,
		"[global]\n\tinclude = /etc/samba/other.conf\n":                false,
		"[x]\n\tcomment = include = /etc/samba/alize-shares.conf\n":    false,
		"[x]\n\tpath = /srv\n\tinclude = /etc/samba/alize-shares.conf": true,
	} {
		if got := hasInclude([]byte(conf), "/etc/samba/alize-shares.conf"); got != want {
			t.Errorf("hasInclude(%q) = %v, want %v", conf, got, want)
		}
	}
}

func TestReplaceInclude(t *testing.T) {
	conf := "[global]\n\ta = b\n  include = /etc/samba/alize-shares.conf\n[x]\n"
	got := string(replaceInclude([]byte(conf), "/etc/samba/alize-shares.conf", "/etc/samba/.cand"))
	want := "[global]\n\ta = b\n\tinclude = /etc/samba/.cand\n[x]\n"
	if got != want {
		t.Errorf("replaceInclude = %q, want %q", got, want)
	}
}
