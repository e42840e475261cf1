package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alize-eple/alize/modules"
)

// badCase is one file of testdata/bad: a module (or module and levels)
// that must fail at one stage with one message. Its header comments say
// which:
//
//	# stage: parse | resolve | compile
//	# levels: [{"name": "establishment", "values": {…}}]   (resolve, compile)
//	# want: <path>: <message>
type badCase struct {
	stage  string
	levels []Level
	want   string
	data   []byte
}

func readBadCase(t *testing.T, file string) badCase {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	c := badCase{data: data}
	for line := range bytes.Lines(data) {
		s, ok := strings.CutPrefix(strings.TrimRight(string(line), "\n"), "# ")
		if !ok {
			break
		}
		key, val, _ := strings.Cut(s, ": ")
		switch key {
		case "stage":
			c.stage = val
		case "want":
			c.want = val
		case "levels":
			if err := json.Unmarshal([]byte(val), &c.levels); err != nil {
				t.Fatalf("%s: levels: %v", file, err)
			}
		}
	}
	if c.stage == "" || c.want == "" {
		t.Fatalf("%s: header needs # stage: and # want:", file)
	}
	return c
}

func TestBadInput(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 {
		t.Fatalf("testdata/bad has %d cases, want 20 or more", len(files))
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			c := readBadCase(t, file)
			stage, err := runStages(c.data, c.levels)
			if err == nil {
				t.Fatalf("no error, want at stage %s: %s", c.stage, c.want)
			}
			if stage != c.stage {
				t.Errorf("failed at stage %s, want %s: %v", stage, c.stage, err)
			}
			assertFieldError(t, err, c.want)
		})
	}
}

// runStages parses, resolves and compiles, and says where it stopped.
func runStages(data []byte, levels []Level) (string, error) {
	m, err := ParseModule(data)
	if err != nil {
		return "parse", err
	}
	r, err := Resolve(&m.Variables, levels)
	if err != nil {
		return "resolve", err
	}
	if _, err := Compile(m, r, nil); err != nil {
		return "compile", err
	}
	return "", nil
}

// assertFieldError checks that err holds a FieldError that reads want.
func assertFieldError(t *testing.T, err error, want string) {
	t.Helper()
	var fes modules.FieldErrors
	if !errors.As(err, &fes) {
		t.Fatalf("error %q is not modules.FieldErrors", err)
	}
	for _, fe := range fes {
		if fe.Error() == want {
			return
		}
	}
	t.Errorf("errors:\n%v\nwant one that reads:\n%s", err, want)
}

func TestOversizedModule(t *testing.T) {
	data := append([]byte("name: big\nversion: 1.0.0\nkind: files\ndescription: {fr: Gros, en: Big}\nspec:\n  text: \""),
		bytes.Repeat([]byte("x"), MaxModuleSize)...)
	data = append(data, "\"\n"...)
	want := fmt.Sprintf("module definition is %d bytes, more than the 1048576 allowed", len(data))
	_, err := ParseModule(data)
	assertFieldError(t, err, want)
	_, _, err = CompileBytes(data, []byte("{}"))
	assertFieldError(t, err, want)
}

func TestOversizedValues(t *testing.T) {
	def := readFile(t, "testdata/good/minimal.yaml")
	values := append([]byte(`{"motd":"`), bytes.Repeat([]byte("x"), MaxValuesSize)...)
	values = append(values, `"}`...)
	_, _, err := CompileBytes(def, values)
	assertFieldError(t, err, fmt.Sprintf("values: %d bytes, more than the 1048576 allowed", len(values)))
}

func TestEveryProblemReported(t *testing.T) {
	data := []byte(`name: Bad_Name
version: "1.0"
kind: firewall
description: {fr: "", en: Bad}
extra: true
variables:
  families:
    - name: net
      description: {fr: Réseau, en: Network}
      variables:
        - {name: a, type: cidr, default: 10.0.0.0/33, description: {fr: a, en: a}}
        - {name: b, type: port, default: 0, description: {fr: b, en: b}}
spec:
  a: "${a}"
  c: "${c}"
`)
	_, err := ParseModule(data)
	var fes modules.FieldErrors
	if !errors.As(err, &fes) {
		t.Fatalf("ParseModule: %v, want FieldErrors", err)
	}
	var got []string
	for _, fe := range fes {
		got = append(got, fe.Error())
	}
	want := []string{
		`name: "Bad_Name" is not a module name (lowercase letters, digits and single hyphens, at most 63, like amon-firewall) (line 1)`,
		`version: "1.0" is not a version (MAJOR.MINOR.PATCH, like 2.3.0) (line 2)`,
		`description.fr: must not be empty (line 4)`,
		`extra: unknown field (line 5)`,
		`variables.families[0].variables[0].default: "10.0.0.0/33" is not a CIDR (line 11)`,
		`variables.families[0].variables[1].default: 0 is not a port (1-65535) (line 12)`,
		`spec.c: unknown variable ${c} (line 15)`,
	}
	if diff := cmpDiff(want, got); diff != "" {
		t.Errorf("ParseModule errors (-want +got):\n%s", diff)
	}
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
