package schema

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// seedModules adds the good and bad modules and the examples to a fuzz
// corpus.
func seedModules(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, pattern := range []string{"testdata/good/*.yaml", "testdata/bad/*.yaml", "../examples/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			seeds = append(seeds, data)
		}
	}
	return seeds
}

// FuzzParseModule checks that ParseModule never panics, and that a module
// it accepts reads back from its canonical form, through either reader,
// to the same module.
func FuzzParseModule(f *testing.F) {
	for _, s := range seedModules(f) {
		f.Add(s)
		if m, err := ParseModule(s); err == nil {
			f.Add(m.Canonical())
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseModule(data)
		if err != nil {
			return
		}
		c := m.Canonical()
		if !json.Valid(c) {
			t.Fatalf("Canonical() is not JSON: %s", c)
		}
		again, err := ParseModule(c)
		if err != nil {
			t.Fatalf("ParseModule(Canonical()) = %v\n%s", err, c)
		}
		if diff := cmpDiff(m, again); diff != "" {
			t.Fatalf("module changed through its canonical form (-want +got):\n%s", diff)
		}
		if !bytes.Equal(again.Canonical(), c) {
			t.Fatalf("Canonical() is not stable:\n%s\n%s", c, again.Canonical())
		}
		fromYAML := parseYAMLOnly(t, c)
		if !bytes.Equal(fromYAML.Canonical(), c) {
			t.Fatalf("the YAML reader reads the canonical form differently:\n%s\n%s", c, fromYAML.Canonical())
		}
	})
}

// FuzzResolve feeds a level's values, as JSON, to the examples'
// dictionaries: Resolve never panics, and what it accepts compiles the
// same through Compile and CompileBytes.
func FuzzResolve(f *testing.F) {
	var mods []*Module
	for _, s := range seedModules(f) {
		if m, err := ParseModule(s); err == nil && len(m.Variables.vars) > 0 {
			mods = append(mods, m)
		}
	}
	for i, m := range mods {
		var r Resolved
		r, err := Resolve(&m.Variables, levelsFor(m, realisticLevels()))
		if err != nil {
			continue
		}
		values, _ := r.ValuesJSON()
		f.Add(uint8(i), values)
	}
	f.Add(uint8(0), []byte(`{"ssh_port": 65536, "admin_cidr": "10.0.0.0/33", "nets": [1, "x"], "uai": "0951099d"}`))
	f.Fuzz(func(t *testing.T, which uint8, values []byte) {
		m := mods[int(which)%len(mods)]
		var level map[string]any
		dec := json.NewDecoder(bytes.NewReader(values))
		dec.UseNumber()
		if err := dec.Decode(&level); err != nil {
			return
		}
		r, err := Resolve(&m.Variables, []Level{{Name: "server", Values: level}})
		if err != nil {
			return
		}
		c, err := Compile(m, r, nil)
		if err != nil {
			return // an interpolation without a value, for one
		}
		vj, err := r.ValuesJSON()
		if err != nil {
			t.Fatalf("ValuesJSON: %v", err)
		}
		spec, digest, err := CompileBytes(m.Canonical(), vj)
		if err != nil {
			t.Fatalf("CompileBytes refuses what Compile accepted: %v\nvalues %s", err, vj)
		}
		if !bytes.Equal(spec, c.Spec) || digest != c.Digest {
			t.Fatalf("CompileBytes = %s, Compile = %s", spec, c.Spec)
		}
	})
}

// FuzzCompile gives CompileBytes any definition and values: it never
// panics, and what it accepts is valid JSON that Compile reproduces.
func FuzzCompile(f *testing.F) {
	for _, s := range seedModules(f) {
		m, err := ParseModule(s)
		if err != nil {
			f.Add(s, []byte(`{}`))
			continue
		}
		r, err := Resolve(&m.Variables, levelsFor(m, realisticLevels()))
		if err != nil {
			f.Add(s, []byte(`{}`))
			continue
		}
		values, _ := r.ValuesJSON()
		f.Add(s, values)
		f.Add(m.Canonical(), values)
	}
	f.Fuzz(func(t *testing.T, definition, values []byte) {
		spec, digest, err := CompileBytes(definition, values)
		if err != nil {
			return
		}
		if !json.Valid(spec) || digest != Digest(spec) {
			t.Fatalf("CompileBytes gave %s %s", spec, digest)
		}
		m, err := ParseModule(definition)
		if err != nil {
			t.Fatalf("ParseModule refuses what CompileBytes accepted: %v", err)
		}
		vals, err := m.valuesJSON(values)
		if err != nil {
			t.Fatalf("values: %v", err)
		}
		r := make(Resolved, len(vals))
		for i, v := range m.Variables.vars {
			r[v.Name] = Value{Value: vals[i], Secret: v.Type == TypeSecret}
		}
		c, err := Compile(m, r, nil)
		if err != nil {
			t.Fatalf("Compile refuses what CompileBytes accepted: %v", err)
		}
		if !bytes.Equal(c.Spec, spec) {
			t.Fatalf("Compile = %s, CompileBytes = %s", c.Spec, spec)
		}
	})
}
