package schema

import (
	"bytes"
	"testing"
)

func TestCompilerMatchesCompileBytes(t *testing.T) {
	ms, rs, _ := exampleServer(t)
	c := &Compiler{Max: 2}
	for round := 0; round < 3; round++ { // parse, then from memory, across evictions
		for i, m := range ms {
			def := m.Canonical()
			values, err := rs[i].ValuesJSON()
			if err != nil {
				t.Fatal(err)
			}
			want, wantDigest, err := CompileBytes(def, values)
			if err != nil {
				t.Fatal(err)
			}
			got, gotDigest, err := c.CompileBytes(def, values)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) || gotDigest != wantDigest {
				t.Errorf("round %d, module %s: Compiler.CompileBytes differs from CompileBytes", round, m.Name)
			}
		}
	}
	if len(c.modules) > 2 {
		t.Errorf("Compiler keeps %d modules, want at most Max=2", len(c.modules))
	}
	if _, _, err := c.CompileBytes([]byte("name: [broken"), []byte("{}")); err == nil {
		t.Error("Compiler.CompileBytes accepted a broken definition")
	}
}

// BenchmarkCompilerCompileBytes is the agent verifier's recompile of one
// manifest's three modules with a Compiler: the steady state, where the
// definitions were parsed at an earlier manifest.
func BenchmarkCompilerCompileBytes(b *testing.B) {
	ms, rs, _ := exampleServer(b)
	c := &Compiler{}
	defs := make([][]byte, len(ms))
	values := make([][]byte, len(ms))
	for i, m := range ms {
		defs[i] = m.Canonical()
		values[i], _ = rs[i].ValuesJSON()
	}
	b.ReportAllocs()
	for b.Loop() {
		for i := range defs {
			if _, _, err := c.CompileBytes(defs[i], values[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
}
