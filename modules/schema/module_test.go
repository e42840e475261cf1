package schema

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-version"
)

// goodModules returns the definitions that must parse: testdata/good and
// the examples.
func goodModules(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, pattern := range []string{"testdata/good/*.yaml", "../examples/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out[f] = data
		}
	}
	if len(out) < 6 {
		t.Fatalf("found %d good modules, want 6 or more", len(out))
	}
	return out
}

func mustParse(t testing.TB, data []byte) *Module {
	t.Helper()
	m, err := ParseModule(data)
	if err != nil {
		t.Fatalf("ParseModule: %v", err)
	}
	return m
}

func TestParseModule(t *testing.T) {
	data := readFile(t, "testdata/good/every-type.yaml")
	m := mustParse(t, data)
	if m.Name != "every-type" || m.Version != "1.0.0-rc.1" || m.Kind != "files" || m.Requires.Agent != ">= 1.0" {
		t.Errorf("header = %q %q %q %q", m.Name, m.Version, m.Kind, m.Requires.Agent)
	}
	minus5, five, p1024 := int64(-5), int64(5), int64(1024)
	want := map[string]Variable{
		"i":     {Name: "i", Type: TypeInt, Description: Text{FR: "i", EN: "i"}, Default: int64(-3), Min: &minus5, Max: &five},
		"p":     {Name: "p", Type: TypePort, Description: Text{FR: "p", EN: "p"}, Default: int64(8080), Min: &p1024},
		"ch":    {Name: "ch", Type: TypeChoice, Description: Text{FR: "ch", EN: "ch"}, Default: "b", Choices: []string{"a", "b"}},
		"pw":    {Name: "pw", Type: TypeSecret, Description: Text{FR: "pw", EN: "pw"}},
		"unset": {Name: "unset", Type: TypeString, Description: Text{FR: "unset", EN: "unset"}, Hidden: true},
		"nets":  {Name: "nets", Type: TypeCIDR, List: true, Description: Text{FR: "nets", EN: "nets"}, Default: []any{"10.0.0.0/8", "fd00::/8"}},
		"flags": {Name: "flags", Type: TypeBool, List: true, Description: Text{FR: "flags", EN: "flags"}, Default: []any{}},
	}
	for name, w := range want {
		v, ok := m.Variables.Lookup(name)
		if !ok {
			t.Errorf("Lookup(%q) found nothing", name)
			continue
		}
		if diff := cmpDiff(w, *v); diff != "" {
			t.Errorf("variable %s (-want +got):\n%s", name, diff)
		}
	}
	if got := len(m.Variables.Variables()); got != 19 {
		t.Errorf("%d variables, want 19", got)
	}
	if !m.AllowsAgent(version.Must(version.NewVersion("1.3.0"))) || m.AllowsAgent(version.Must(version.NewVersion("0.9.0"))) {
		t.Errorf("AllowsAgent does not follow %q", m.Requires.Agent)
	}
}

// parseYAMLOnly parses with the YAML reader even when the document is
// JSON, to compare the two readers.
func parseYAMLOnly(t *testing.T, data []byte) *Module {
	t.Helper()
	root, derr := readYAML(data, newArena(len(data)))
	if derr != nil {
		t.Fatalf("readYAML: %v", derr)
	}
	var d decoder
	m := d.module(root)
	if err := d.errs.Err(); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return m
}

// TestCanonicalRoundTrip checks that a module's canonical form reads back
// to the same module, through the JSON reader and through the YAML one.
func TestCanonicalRoundTrip(t *testing.T) {
	for name, data := range goodModules(t) {
		t.Run(filepath.Base(name), func(t *testing.T) {
			m := mustParse(t, data)
			c := m.Canonical()
			fromJSON := mustParse(t, c)
			fromYAML := parseYAMLOnly(t, c)
			for _, got := range []*Module{fromJSON, fromYAML} {
				if diff := cmpDiff(m, got); diff != "" {
					t.Errorf("reparsed module (-want +got):\n%s", diff)
				}
				if !bytes.Equal(got.Canonical(), c) {
					t.Errorf("Canonical() of the reparsed module differs:\n%s\nwant\n%s", got.Canonical(), c)
				}
				if !bytes.Equal(got.template.lit, m.template.lit) || len(got.template.segs) != len(m.template.segs) {
					t.Errorf("reparsed template differs")
				}
			}
		})
	}
}

func TestJSONErrorsHaveLines(t *testing.T) {
	data := []byte("{\n\"description\": {\"en\": \"x\", \"fr\": \"x\"},\n\"kind\": \"files\",\n\"name\": \"x\",\n\"spec\": {\"a\": 1, \"a\": 2},\n\"version\": \"1.0.0\"\n}")
	_, err := ParseModule(data)
	assertFieldError(t, err, "spec.a: duplicate key (first at line 5) (line 5)")

	_, err = ParseModule([]byte("{\"name\": \"x\",\n \"spec\": {\"a\": [\"b]}}"))
	assertFieldError(t, err, "spec.a[0]: invalid JSON: unterminated string (line 2)")

	_, err = ParseModule([]byte("name: x\n  version: 1\n"))
	assertFieldError(t, err, "invalid YAML: mapping values are not allowed in this context (line 2)")
}

func TestFlowStyleYAMLIsNotJSON(t *testing.T) {
	// Starts like JSON, is YAML: the JSON reader gives way.
	data := []byte("{name: flow, version: 1.0.0, kind: files, description: {fr: a, en: b}, spec: {x: 1}}")
	m := mustParse(t, data)
	if string(m.SpecJSON()) != `{"x":1}` {
		t.Errorf("SpecJSON() = %s", m.SpecJSON())
	}
}

func TestSpecScalars(t *testing.T) {
	data := readFile(t, "testdata/good/every-type.yaml")
	m := mustParse(t, data)
	spec := string(m.SpecJSON())
	want := `"literal":{"big":9007199254740993,"date":"2025-09-01","key.with dots":[],"n":1.5,"neg":0,"none":null,"t":true}`
	if !bytes.Contains([]byte(spec), []byte(want)) {
		t.Errorf("SpecJSON() = %s\nwant it to hold %s", spec, want)
	}
}
