package schema

import (
	"os"
	"testing"
)

var exampleFiles = []string{"amon-firewall", "scribe-accounts", "scribe-shares"}

// exampleServer parses the three examples once and resolves them for one
// school server.
func exampleServer(b testing.TB) ([]*Module, []Resolved, [][]byte) {
	b.Helper()
	var ms []*Module
	var rs []Resolved
	var defs [][]byte
	for _, f := range exampleFiles {
		data, err := os.ReadFile("../examples/" + f + ".yaml")
		if err != nil {
			b.Fatal(err)
		}
		m := mustParse(b, data)
		r, err := Resolve(&m.Variables, levelsFor(m, realisticLevels()))
		if err != nil {
			b.Fatal(err)
		}
		ms, rs, defs = append(ms, m), append(rs, r), append(defs, data)
	}
	return ms, rs, defs
}

// BenchmarkCompile compiles one server's three modules from parsed
// modules and resolved values. Target: well under 30 µs per module (the
// fleet compiles and signs 17,000 servers × 3 modules in under 3 s on 2
// cores).
func BenchmarkCompile(b *testing.B) {
	ms, rs, _ := exampleServer(b)
	b.ReportAllocs()
	for b.Loop() {
		for i, m := range ms {
			if _, err := Compile(m, rs[i], nil); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkResolveCompile resolves and compiles one server's three
// modules, as the controller does when a variable changes.
func BenchmarkResolveCompile(b *testing.B) {
	ms, _, _ := exampleServer(b)
	levels := make([][]Level, len(ms))
	for i, m := range ms {
		levels[i] = levelsFor(m, realisticLevels())
	}
	b.ReportAllocs()
	for b.Loop() {
		for i, m := range ms {
			r, err := Resolve(&m.Variables, levels[i])
			if err != nil {
				b.Fatal(err)
			}
			if _, err := Compile(m, r, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkCompileBytes is the agent's recompile of one manifest's three
// modules, from the canonical JSON definitions. Target: well under the
// 150 µs of a whole manifest verify (which includes ed25519) — not met
// while the definitions are parsed on every call: the parse (regular
// expressions compiled, every field checked) is most of the cost, and a
// verifier that keeps parsed modules uses CompileValues instead.
func BenchmarkCompileBytes(b *testing.B) {
	ms, rs, _ := exampleServer(b)
	defs := make([][]byte, len(ms))
	values := make([][]byte, len(ms))
	for i, m := range ms {
		defs[i] = m.Canonical()
		v, err := rs[i].ValuesJSON()
		if err != nil {
			b.Fatal(err)
		}
		values[i] = v
	}
	b.ReportAllocs()
	for b.Loop() {
		for i := range defs {
			if _, _, err := CompileBytes(defs[i], values[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkCompileValues is the agent's recompile of one manifest's three
// modules when it keeps the parsed modules: values in, spec and digest out.
// Target: well under the 150 µs of a whole manifest verify.
func BenchmarkCompileValues(b *testing.B) {
	ms, rs, _ := exampleServer(b)
	values := make([][]byte, len(ms))
	for i, r := range rs {
		v, err := r.ValuesJSON()
		if err != nil {
			b.Fatal(err)
		}
		values[i] = v
	}
	b.ReportAllocs()
	for b.Loop() {
		for i, m := range ms {
			if _, _, err := m.CompileValues(values[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkCompileBytesYAML is CompileBytes from the YAML definitions:
// the YAML parser dominates; ship the canonical form to agents.
func BenchmarkCompileBytesYAML(b *testing.B) {
	_, rs, defs := exampleServer(b)
	values := make([][]byte, len(rs))
	for i, r := range rs {
		v, err := r.ValuesJSON()
		if err != nil {
			b.Fatal(err)
		}
		values[i] = v
	}
	b.ReportAllocs()
	for b.Loop() {
		for i := range defs {
			if _, _, err := CompileBytes(defs[i], values[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
}
