package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alize-eple/alize/modules"
)

func TestCompileSubstitution(t *testing.T) {
	data := readFile(t, "testdata/good/every-type.yaml")
	m := mustParse(t, data)
	r, err := Resolve(&m.Variables, []Level{{Name: "server", Values: map[string]any{"pw": "hunter2", "i": 4}}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Compile(m, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"escaped":"${s} is not substituted, $$ and $ stay",` +
		`"literal":{"big":9007199254740993,"date":"2025-09-01","key.with dots":[],"n":1.5,"neg":0,"none":null,"t":true},` +
		`"secret":"secret://pw",` +
		`"text":"abc-4-false-8080 on scribe.ac-versailles.fr",` +
		`"typed":{"b":false,"flags":[],"i":4,"nets":["10.0.0.0/8","fd00::/8"],"p":8080,"ports":[80,443],"s":"abc"},` +
		`"unset":null}`
	if string(c.Spec) != want {
		t.Errorf("Spec =\n%s\nwant\n%s", c.Spec, want)
	}
	if c.Digest != Digest([]byte(want)) {
		t.Errorf("Digest = %s, want %s", c.Digest, Digest([]byte(want)))
	}
	if diff := cmpDiff([]string{"pw"}, c.Secrets); diff != "" {
		t.Errorf("Secrets (-want +got):\n%s", diff)
	}
	if c.Module != "every-type" || c.Version != "1.0.0-rc.1" || c.Kind != "files" {
		t.Errorf("Compiled = %s %s %s", c.Module, c.Version, c.Kind)
	}
	if !json.Valid(c.Spec) {
		t.Errorf("Spec is not valid JSON")
	}
}

func TestCompileStringEscapes(t *testing.T) {
	m := mustParse(t, []byte("name: esc\nversion: 1.0.0\nkind: files\ndescription: {fr: a, en: b}\n"+
		"variables:\n  families:\n    - name: f\n      description: {fr: a, en: b}\n      variables:\n"+
		"        - {name: s, type: string, description: {fr: a, en: b}}\n"+
		"spec:\n  s: \"${s}\"\n  t: \"<${s}>\"\n"))
	r, err := Resolve(&m.Variables, []Level{{Name: "server", Values: map[string]any{"s": "a\"b\\c\n\t\x01\x7f\u0085\u2028é<&>"}}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Compile(m, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"s":"a\"b\\c\n\t\u0001\u007f\u0085\u2028é<&>","t":"<a\"b\\c\n\t\u0001\u007f\u0085\u2028é<&>>"}`
	if string(c.Spec) != want {
		t.Errorf("Spec =\n%s\nwant\n%s", c.Spec, want)
	}
	var back map[string]string
	if err := json.Unmarshal(c.Spec, &back); err != nil || back["s"] != r["s"].Value {
		t.Errorf("Spec does not decode back to the value: %q, %v", back["s"], err)
	}
}

func TestCompileChecker(t *testing.T) {
	data := readFile(t, "testdata/good/minimal.yaml")
	m := mustParse(t, data)
	r, err := Resolve(&m.Variables, nil)
	if err != nil {
		t.Fatal(err)
	}
	type spec struct {
		MOTD string `json:"motd"`
	}
	var seen []byte
	check := func(b []byte) error {
		seen = b
		s, err := modules.DecodeSpec[spec](b)
		if err != nil {
			return err
		}
		if s.MOTD == "Bienvenue" {
			var errs modules.FieldErrors
			errs.Add("motd", "too welcoming")
			return errs
		}
		return nil
	}
	_, err = Compile(m, r, check)
	if err == nil || err.Error() != "check spec: motd: too welcoming" {
		t.Fatalf("Compile = %v, want the checker's error", err)
	}
	var fes modules.FieldErrors
	if !errors.As(err, &fes) {
		t.Errorf("checker's FieldErrors lost in %v", err)
	}
	if string(seen) != `{"motd":"Bienvenue"}` {
		t.Errorf("checker saw %s", seen)
	}
}

func TestCompileResolvedMismatch(t *testing.T) {
	data := readFile(t, "testdata/good/minimal.yaml")
	m := mustParse(t, data)
	_, err := Compile(m, Resolved{"other": {Value: "x"}}, nil)
	want := "motd: no resolved value: resolve the values with module minimal's dictionary\nother: not a variable of module minimal"
	if err == nil || err.Error() != want {
		t.Errorf("Compile = %v, want %s", err, want)
	}
	_, err = Compile(m, Resolved{"motd": {Value: 12}}, nil)
	if err == nil || err.Error() != "motd: 12 must be a string" {
		t.Errorf("Compile = %v, want a type error", err)
	}
}

// realisticLevels gives the examples the values a school server would
// get.
func realisticLevels() []Level {
	return []Level{
		{Name: "server", Values: map[string]any{
			"external_interface": "enp1s0",
			"samba_domain_sid":   "S-1-5-21-3623811015-3361044348-30300820",
			"ldap_bind_password": "Zm9vYmFyYmF6cXV4",
			"roster_blob":        "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
		}},
		{Name: "establishment", Values: map[string]any{
			"uai":                "0951099D",
			"admin_cidr":         "10.95.10.0/24",
			"pedagogical_cidrs":  []any{"10.95.20.0/22", "10.95.24.0/23"},
			"web_server_address": "10.95.10.80",
			"classes":            []any{"2nde1", "2nde2", "1ere-sti2d", "term-stmg"},
		}},
		{Name: "group:lycees", Values: map[string]any{"pedagogical_internet": "drop", "password_length": 12}},
		{Name: "academy", Values: map[string]any{
			"academy":             "versailles",
			"academy_admin_cidrs": []any{"172.20.0.0/16"},
			"controller_address":  "172.20.0.10",
			"dns_servers":         []any{"172.20.1.53", "172.20.2.53"},
		}},
		{Name: "fleet", Values: map[string]any{"log_drops_per_minute": 20}},
	}
}

// levelsFor keeps the values of levels that a module's dictionary has.
func levelsFor(m *Module, levels []Level) []Level {
	out := make([]Level, len(levels))
	for i, lv := range levels {
		out[i] = Level{Name: lv.Name, Values: map[string]any{}}
		for k, v := range lv.Values {
			if _, ok := m.Variables.Lookup(k); ok {
				out[i].Values[k] = v
			}
		}
	}
	return out
}

// TestCompileBytesMatchesCompile checks the agent's path against the
// controller's, from the YAML and from the canonical JSON definition.
func TestCompileBytesMatchesCompile(t *testing.T) {
	for name, data := range goodModules(t) {
		t.Run(filepath.Base(name), func(t *testing.T) {
			m := mustParse(t, data)
			levels := levelsFor(m, realisticLevels())
			if _, ok := m.Variables.Lookup("pw"); ok {
				levels[0].Values["pw"] = "p"
			}
			r, err := Resolve(&m.Variables, levels)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Compile(m, r, nil)
			if err != nil {
				t.Fatal(err)
			}
			values, err := r.ValuesJSON()
			if err != nil {
				t.Fatal(err)
			}
			spec, digest, err := m.CompileValues(values)
			if err != nil || !bytes.Equal(spec, c.Spec) || digest != c.Digest {
				t.Errorf("CompileValues = %s %s, %v\nCompile = %s %s", spec, digest, err, c.Spec, c.Digest)
			}
			for form, def := range map[string][]byte{"yaml": data, "canonical": m.Canonical()} {
				spec, digest, err := CompileBytes(def, values)
				if err != nil {
					t.Fatalf("%s: CompileBytes: %v", form, err)
				}
				if !bytes.Equal(spec, c.Spec) || digest != c.Digest {
					t.Errorf("%s: CompileBytes = %s %s\nCompile = %s %s", form, spec, digest, c.Spec, c.Digest)
				}
			}
		})
	}
}

func TestCompileBytesValues(t *testing.T) {
	data := readFile(t, "testdata/good/every-type.yaml")
	all := `"b":false,"ch":"b","dom":"ac-versailles.fr","flags":[],"host":"scribe","i":-3,"mail":"dsi@ac-versailles.fr",` +
		`"net":"2001:db8::/32","nets":["10.0.0.0/8"],"nic":"eth0","p":8080,"ports":[80],"pr":"1-2","s":"abc","unset":null,"uai":"0951099D","v4":"192.0.2.1","v6":"::1"`
	tests := []struct {
		name   string
		values string
		want   string
	}{
		{"secret as plaintext", `{` + all + `,"pw":"hunter2"}`, "values.pw: a secret's value must be its reference secret://pw"},
		{"missing variable", `{` + all + `}`, "values.pw: missing (null when the variable has no value)"},
		{"unknown variable", `{` + all + `,"pw":null,"zz":1}`, "values.zz: not a variable of module every-type"},
		{"bad element", `{` + strings.Replace(all, `"ports":[80]`, `"ports":[80,0]`, 1) + `,"pw":null}`, "values.ports[1]: 0 is not a port (1-65535)"},
		{"not an object", `[1]`, "values: must be an object, not a list"},
		{"not JSON", `{"a":}`, `values.a: invalid JSON: unexpected character '}' (line 1)`},
		{"duplicate key", `{"pw":null,"pw":null}`, `values.pw: duplicate key (first at line 1) (line 1)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := CompileBytes(data, []byte(tt.values))
			assertFieldError(t, err, tt.want)
		})
	}
	_, _, err := CompileBytes(data, []byte(`{`+all+`,"pw":"secret://pw"}`))
	if err != nil {
		t.Errorf("CompileBytes with the secret's reference: %v", err)
	}
}
