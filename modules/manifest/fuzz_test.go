package manifest

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/go-cmp/cmp"
)

// addCorpus seeds a fuzz target with the stored hostile inputs of ext.
func addCorpus(f *testing.F, ext string) {
	files, err := filepath.Glob(filepath.Join("testdata", "hostile", "*"+ext))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// checkRefusal fails unless err is nil or a refusal that names a reason
// and holds no secret.
func checkRefusal(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if Code(err) == "" {
		t.Fatalf("refusal without a reason: %v", err)
	}
	if strings.Contains(err.Error(), fixtureSecret) {
		t.Fatalf("refusal holds the secret: %v", err)
	}
}

// FuzzScanJSON checks scanJSON against the JSON v2 decoder: on every valid
// JSON object, it refuses exactly those nested deeper than MaxDepth.
func FuzzScanJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,{"b":"]\""}]}`, `{"a":` + deep(MaxDepth) + `}`, `{"a":"\\"}`, `{} x`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, _ := scanJSON(data)
		opts := []jsontext.Options{jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)}
		dec := jsontext.NewDecoder(bytes.NewReader(data), opts...)
		v, err := dec.ReadValue()
		if err != nil {
			return // not valid JSON: the decoder refuses it whatever scanJSON says
		}
		v = bytes.Clone(v) // valid only until the next read
		_, err = dec.ReadToken()
		trailing := !errors.Is(err, io.EOF)
		depth := 0
		vd := jsontext.NewDecoder(bytes.NewReader(v), opts...)
		for {
			if _, err := vd.ReadToken(); err != nil {
				break
			}
			depth = max(depth, vd.StackDepth())
		}
		var want *Reason
		switch {
		case v.Kind() != '{':
			want = ErrMalformed
		case depth > MaxDepth:
			want = ErrTooDeep
		case trailing:
			want = ErrTrailingData
		}
		if r != want {
			t.Fatalf("scanJSON(%q) = %v (depth %d, trailing %v), want %v", data, r, depth, trailing, want)
		}
	})
}

// FuzzEnvelope decodes anything as a manifest envelope.
func FuzzEnvelope(f *testing.F) {
	fx := newFixture(f, false)
	f.Add(fx.sign(fx.manifest()))
	addCorpus(f, ".json")
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := decodeEnvelope("manifest", data, MaxEnvelopeSize, MaxManifestSize, PayloadTypeManifest)
		checkRefusal(t, err)
		if err == nil && (env.PayloadType != PayloadTypeManifest || len(env.Signatures) == 0 || len(env.Signatures) > MaxSignatures) {
			t.Fatalf("decodeEnvelope() accepted %+v", env)
		}
	})
}

// FuzzRoot pins and rotates to anything, signed or not.
func FuzzRoot(f *testing.F) {
	fx := newFixture(f, false)
	f.Add(fx.rootEnv)
	v2 := fx.rootV2()
	f.Add(signRootRaw(v2, fx.root1, fx.root2))
	p, _ := marshal(&v2)
	f.Add(p)
	addCorpus(f, ".json")
	f.Fuzz(func(t *testing.T, data []byte) {
		if tr, err := PinRoot(data); err == nil {
			if tr.Version() < 1 {
				t.Fatalf("PinRoot() accepted version %d", tr.Version())
			}
		} else {
			checkRefusal(t, err)
		}
		if tr, err := fx.trust.UpdateRoot(data); err == nil {
			if tr.Version() != 2 {
				t.Fatalf("UpdateRoot() accepted version %d after 1", tr.Version())
			}
		} else {
			checkRefusal(t, err)
		}
		// Signed by the root keys, the payload itself is explored.
		tr, err := fx.trust.UpdateRoot(signRaw(PayloadTypeRoot, data, fx.root1, fx.root2))
		checkRefusal(t, err)
		if err == nil && tr.Version() != 2 {
			t.Fatalf("UpdateRoot() accepted version %d after 1", tr.Version())
		}
		if fx.trust.Version() != 1 {
			t.Fatalf("UpdateRoot() changed the trust it was called on")
		}
	})
}

// FuzzManifest runs the whole Verify on anything, with the fixture's trust
// and state.
func FuzzManifest(f *testing.F) {
	fx := newFixture(f, false)
	f.Add(fx.sign(fx.manifest()))
	addCorpus(f, ".json")
	v := fx.verifier(&Cache{})
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzVerify(t, v, data)
	})
}

// FuzzManifestPayload signs anything with the director key and verifies
// it: past the signature, the payload's parsing and checks are explored.
func FuzzManifestPayload(f *testing.F) {
	fx := newFixture(f, false)
	f.Add(fx.payload(fx.manifest()))
	f.Add([]byte(`{"target":{"server_id":"srv-0951099D-01","uai":"0951099D"},"serial":42,"issued":"2026-03-02T07:59:00Z","expires":"2026-03-09T08:00:00Z","modules":[],"blobs":[],"secrets":[]}`))
	v := fx.verifier(&Cache{})
	f.Fuzz(func(t *testing.T, payload []byte) {
		fuzzVerify(t, v, signRaw(PayloadTypeManifest, payload, fx.director))
	})
}

func fuzzVerify(t *testing.T, v *Verifier, data []byte) {
	last := state()
	before := cloneState(last)
	m, next, err := v.Verify(data, last)
	checkRefusal(t, err)
	if diff := cmp.Diff(before, last); diff != "" {
		t.Fatalf("Verify changed the state passed in (-before +after):\n%s", diff)
	}
	if err != nil {
		return
	}
	if m.Serial <= before.Serial || next.Serial != m.Serial || m.Target != (Target{ServerID: serverID, UAI: uai}) {
		t.Fatalf("Verify() accepted serial %d target %+v after %d", m.Serial, m.Target, before.Serial)
	}
	for _, mod := range m.Modules {
		if Digest(mod.Definition) != mod.Release.Digest || Digest(mod.Spec) != mod.SpecDigest {
			t.Fatalf("Verify() accepted module %s with digests that do not match", mod.Release.Name)
		}
	}
}

// FuzzUnseal opens anything as the fixture agent's ldap-bind secret.
func FuzzUnseal(f *testing.F) {
	fx := newFixture(f, false)
	f.Add(fx.secret(serverID, "ldap-bind", 2, fx.agent).Sealed)
	f.Add(fx.secret(serverID, "ldap-bind", 2, fx.other).Sealed)
	addCorpus(f, ".age")
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Unseal(fx.agent, serverID, SecretRef{Name: "ldap-bind", Generation: 2, Sealed: data})
		checkRefusal(t, err)
		if err == nil && s.Len() > MaxSecretSize {
			t.Fatalf("Unseal() returned %d bytes", s.Len())
		}
	})
}
