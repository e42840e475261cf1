package manifest

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	json "github.com/go-json-experiment/json"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-version"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

func TestVerifyAccepts(t *testing.T) {
	f := newFixture(t, false)
	m := f.manifest()
	env := f.sign(m)
	last := state()
	before := cloneState(last)
	got, next, err := f.verifier(nil).Verify(env, last)
	if err != nil {
		t.Fatalf("Verify() = %v", err)
	}
	if diff := cmp.Diff(before, last); diff != "" {
		t.Errorf("Verify changed the state passed in (-before +after):\n%s", diff)
	}
	want := State{
		Serial:      42,
		Counters:    map[string]uint64{"amon-firewall": 7, "scribe-accounts": 3, "scribe-shares": 5},
		Generations: map[string]uint64{"ldap-bind": 2},
	}
	if diff := cmp.Diff(want, next); diff != "" {
		t.Errorf("Verify() next state (-want +got):\n%s", diff)
	}
	if got.Target != m.Target || got.Serial != m.Serial || !got.Issued.Equal(m.Issued) || !got.Expires.Equal(m.Expires) {
		t.Errorf("Verify() = %+v %d %v %v, want %+v %d %v %v", got.Target, got.Serial, got.Issued, got.Expires, m.Target, m.Serial, m.Issued, m.Expires)
	}
	for i, mod := range got.Modules {
		fm := f.modules[i]
		wantRel := Release{Name: fm.name, Version: fm.version, Kind: fm.kind, Digest: Digest(fm.definition), Counter: fm.counter, Agent: fm.agent}
		if diff := cmp.Diff(wantRel, mod.Release); diff != "" {
			t.Errorf("modules[%d].Release (-want +got):\n%s", i, diff)
		}
		for _, c := range []struct {
			name      string
			got, want []byte
		}{
			{"ReleaseEnvelope", mod.ReleaseEnvelope, m.Modules[i].ReleaseEnvelope},
			{"Definition", mod.Definition, m.Modules[i].Definition},
			{"Values", mod.Values, m.Modules[i].Values},
			{"Spec", mod.Spec, m.Modules[i].Spec},
		} {
			if !bytes.Equal(c.got, c.want) {
				t.Errorf("modules[%d].%s = %q, want %q", i, c.name, c.got, c.want)
			}
		}
	}
	for i := range got.Modules {
		if diff := cmp.Diff(m.Modules[i].Sources, got.Modules[i].Sources); diff != "" || len(got.Modules[i].Sources) == 0 {
			t.Errorf("modules[%d].Sources (-want +got):\n%s", i, diff)
		}
	}
	if diff := cmp.Diff(m.Blobs, got.Blobs); diff != "" {
		t.Errorf("Blobs (-want +got):\n%s", diff)
	}
	if err := VerifyBlob(got.Blobs[0], rosterBlob); err != nil {
		t.Errorf("VerifyBlob() = %v", err)
	}
	sec, err := Unseal(f.agent, serverID, got.Secrets[0])
	if err != nil {
		t.Fatalf("Unseal() = %v", err)
	}
	if !sec.Equal(NewSecret([]byte(fixtureSecret))) {
		t.Errorf("Unseal() revealed another value")
	}
}

func TestVerifyNextStateKeepsHistory(t *testing.T) {
	f := newFixture(t, false)
	last := State{
		Serial:      41,
		Counters:    map[string]uint64{"amon-firewall": 2, "retired-module": 9},
		Generations: map[string]uint64{"ldap-bind": 1, "old-secret": 4},
	}
	_, next, err := f.verifier(nil).Verify(f.sign(f.manifest()), last)
	if err != nil {
		t.Fatalf("Verify() = %v", err)
	}
	want := State{
		Serial:      42,
		Counters:    map[string]uint64{"amon-firewall": 7, "retired-module": 9, "scribe-accounts": 3, "scribe-shares": 5},
		Generations: map[string]uint64{"ldap-bind": 2, "old-secret": 4},
	}
	if diff := cmp.Diff(want, next); diff != "" {
		t.Errorf("next state (-want +got):\n%s", diff)
	}
	if last.Counters["amon-firewall"] != 2 || len(last.Counters) != 2 {
		t.Errorf("Verify changed the state passed in: %v", last.Counters)
	}

	// A fresh agent (zero State) takes any valid manifest.
	if _, _, err := f.verifier(nil).Verify(f.sign(f.manifest()), State{}); err != nil {
		t.Errorf("Verify(fresh agent) = %v", err)
	}
}

func TestVerifyClockSkew(t *testing.T) {
	f := newFixture(t, false)
	m := f.manifest()
	m.Issued = t0.Add(MaxClockSkew)
	if _, _, err := f.verifier(nil).Verify(f.sign(m), state()); err != nil {
		t.Errorf("Verify(issued now+MaxClockSkew) = %v, want accepted", err)
	}
	m.Issued, m.Expires = t0.Add(-time.Hour), t0
	if _, _, err := f.verifier(nil).Verify(f.sign(m), state()); !errors.Is(err, ErrExpired) {
		t.Errorf("Verify(expires == now) = %v, want %v", err, ErrExpired)
	}
}

func TestVerifierNeedsItsFields(t *testing.T) {
	f := newFixture(t, false)
	env := f.sign(f.manifest())
	for _, c := range []struct {
		name  string
		unset func(v *Verifier)
	}{
		{"Trust", func(v *Verifier) { v.Trust = nil }},
		{"ServerID", func(v *Verifier) { v.ServerID = "" }},
		{"UAI", func(v *Verifier) { v.UAI = "" }},
		{"AgentVersion", func(v *Verifier) { v.AgentVersion = nil }},
		{"Compile", func(v *Verifier) { v.Compile = nil }},
		{"Now", func(v *Verifier) { v.Now = nil }},
	} {
		v := f.verifier(nil)
		c.unset(v)
		if _, _, err := v.Verify(env, state()); err == nil || Code(err) != "" {
			t.Errorf("Verify() without %s = %v, want a configuration error", c.name, err)
		}
	}
}

func TestVerifyCompileError(t *testing.T) {
	f := newFixture(t, false)
	v := f.verifier(nil)
	v.Compile = func(definition, values []byte) ([]byte, string, error) {
		return nil, "", errors.New("variables.zone_count: must be 1-16")
	}
	_, _, err := v.Verify(f.sign(f.manifest()), state())
	if !errors.Is(err, ErrCompile) {
		t.Fatalf("Verify() = %v, want %v", err, ErrCompile)
	}
	if !strings.Contains(err.Error(), "zone_count") {
		t.Errorf("Verify() = %v, want the compile error in the message", err)
	}
}

// Definitions travel apart: Verify names the missing ones, after every
// other check, and accepts once the agent has fetched them.
func TestVerifyAsksForMissingDefinitions(t *testing.T) {
	f := newFixture(t, false)
	env := f.sign(f.manifest())
	if bytes.Contains(env, []byte("definition")) {
		t.Error("the manifest carries a definition: definitions travel by digest")
	}
	have := map[string][]byte{}
	v := f.verifier(nil)
	v.Definitions = func(digest string) []byte { return have[digest] }
	_, _, err := v.Verify(env, state())
	want := []string{Digest(f.modules[0].definition), Digest(f.modules[1].definition), Digest(f.modules[2].definition)}
	if got := MissingDefinitions(err); !slices.Equal(got, want) {
		t.Fatalf("MissingDefinitions(%v) = %v, want %v", err, got, want)
	}
	if !errors.Is(err, ErrDefinitionMissing) || Code(err) != "definition_missing" {
		t.Errorf("Verify() = %v, want ErrDefinitionMissing (code definition_missing)", err)
	}
	have[want[1]] = f.modules[1].definition
	_, _, err = v.Verify(env, state())
	if got := MissingDefinitions(err); !slices.Equal(got, []string{want[0], want[2]}) {
		t.Fatalf("with one fetched, MissingDefinitions(%v) = %v, want the other two", err, got)
	}
	// A refusal comes before the request for definitions: nothing is
	// fetched for a manifest that will be refused anyway.
	_, _, err = v.Verify(env, State{Serial: 42})
	if !errors.Is(err, ErrRollback) {
		t.Errorf("a replayed manifest with definitions missing: Verify() = %v, want %v", err, ErrRollback)
	}
	for i, d := range want {
		have[d] = f.modules[i].definition
	}
	m, _, err := v.Verify(env, state())
	if err != nil {
		t.Fatalf("with every definition: Verify() = %v", err)
	}
	for i, mod := range m.Modules {
		if !bytes.Equal(mod.Definition, f.modules[i].definition) {
			t.Errorf("modules[%d].Definition is not the released definition", i)
		}
	}
	if MissingDefinitions(errors.New("other")) != nil || MissingDefinitions(nil) != nil {
		t.Error("MissingDefinitions of another error must be nil")
	}
}

// A spec is embedded byte for byte: escapes, HTML characters and all.
func TestSpecEmbeddedVerbatim(t *testing.T) {
	f := newFixture(t, false)
	spec := []byte(`{"banner":"<b>Coll\u00e8ge</b> & co","path":"C:\\partages","n":1.50}`)
	compile := func(definition, values []byte) ([]byte, string, error) { return spec, Digest(spec), nil }
	m := f.manifest()
	for i := range m.Modules {
		m.Modules[i].Spec, m.Modules[i].SpecDigest = spec, Digest(spec)
	}
	v := f.verifier(nil)
	v.Compile = compile
	got, _, err := v.Verify(f.sign(m), state())
	if err != nil {
		t.Fatalf("Verify() = %v", err)
	}
	if !bytes.Equal(got.Modules[0].Spec, spec) {
		t.Errorf("Spec = %s, want %s", got.Modules[0].Spec, spec)
	}
}

func TestSignManifestRefuses(t *testing.T) {
	f := newFixture(t, false)
	for _, c := range []struct {
		name string
		edit func(m *Manifest)
		want string
	}{
		{"spec not compact", func(m *Manifest) {
			m.Modules[0].Spec = []byte(`{"a": 1}`)
			m.Modules[0].SpecDigest = Digest(m.Modules[0].Spec)
		}, "not compact"},
		{"spec digest", func(m *Manifest) { m.Modules[0].SpecDigest = Digest(nil) }, "spec digest"},
		{"no release", func(m *Manifest) { m.Modules[1].ReleaseEnvelope = nil }, "no release"},
		{"definition not released", func(m *Manifest) { m.Modules[2].Definition = []byte("name: other\n") }, "definition is not the one"},
		{"serial zero", func(m *Manifest) { m.Serial = 0 }, "serial"},
		{"bad server id", func(m *Manifest) { m.Target.ServerID = "srv 1\n" }, "server_id"},
		{"too many secrets", func(m *Manifest) {
			for i := range MaxSecrets {
				m.Secrets = append(m.Secrets, SecretRef{Name: fmt.Sprintf("s%d", i), Generation: 1, Sealed: []byte("x")})
			}
		}, "too large"},
	} {
		m := f.manifest()
		c.edit(m)
		_, err := SignManifest(m, f.director)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("SignManifest(%s) = %v, want an error about %q", c.name, err, c.want)
		}
	}
	if _, err := SignManifest(f.manifest()); err == nil {
		t.Errorf("SignManifest() without a key = nil, want an error")
	}
}

func TestRootRotation(t *testing.T) {
	f := newFixture(t, false)
	d2, d3 := testKey("director-2"), testKey("director-3")

	// v2 rotates the director key and expired long ago: walking past it is allowed.
	v2 := f.rootV2()
	v2.Expires = t0.AddDate(0, -6, 0)
	env2, err := SignRoot(&v2, f.root1, f.root3)
	if err != nil {
		t.Fatal(err)
	}
	// v3 rotates the root keys themselves (signed by v2's root role and its own).
	r4, r5 := testKey("root-4"), testKey("root-5")
	v3 := f.rootV2(r4, r5)
	v3.Version = 3
	delete(v3.Keys, d2.ID())
	v3.Keys[d3.ID()] = d3.PublicKey()
	v3.Roles.Director = Role{KeyIDs: []string{d3.ID()}, Threshold: 1}
	env3, err := SignRoot(&v3, f.root1, f.root2, r4, r5)
	if err != nil {
		t.Fatal(err)
	}

	t2, err := f.trust.UpdateRoot(env2)
	if err != nil {
		t.Fatalf("UpdateRoot(v2) = %v", err)
	}
	if f.trust.Version() != 1 {
		t.Errorf("UpdateRoot changed the trust it was called on: version %d", f.trust.Version())
	}
	v := f.verifier(nil)
	v.Trust = t2
	if _, _, err := v.Verify(f.sign(f.manifest(), d2), state()); !errors.Is(err, ErrExpired) {
		t.Errorf("Verify() with expired root v2 = %v, want %v (freeze)", err, ErrExpired)
	}
	if _, err := f.trust.UpdateRoot(env3); !errors.Is(err, ErrRootVersion) {
		t.Errorf("UpdateRoot(v3) from v1 = %v, want %v", err, ErrRootVersion)
	}
	t3, err := t2.UpdateRoot(env3)
	if err != nil {
		t.Fatalf("UpdateRoot(v3) = %v", err)
	}
	v.Trust = t3
	if _, _, err := v.Verify(f.sign(f.manifest(), d3), state()); err != nil {
		t.Errorf("Verify() signed by the v3 director = %v", err)
	}
	for _, old := range []*Key{f.director, d2} {
		if _, _, err := v.Verify(f.sign(f.manifest(), old), state()); !errors.Is(err, ErrUnknownKey) {
			t.Errorf("Verify() signed by a rotated-out director = %v, want %v", err, ErrUnknownKey)
		}
	}
	// The old root keys no longer rotate anything.
	v4 := v3
	v4.Version = 4
	if _, err := t3.UpdateRoot(mustSignRoot(t, &v4, f.root1, f.root2)); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("UpdateRoot(v4 signed by the rotated-out root keys) = %v, want %v", err, ErrUnknownKey)
	}
	if _, err := t3.UpdateRoot(mustSignRoot(t, &v4, f.root1, f.root2, r4)); !errors.Is(err, ErrThreshold) {
		t.Errorf("UpdateRoot(v4 signed by one v3 root key) = %v, want %v", err, ErrThreshold)
	}
	if _, err := t3.UpdateRoot(mustSignRoot(t, &v4, r4, r5)); err != nil {
		t.Errorf("UpdateRoot(v4 signed by the v3 root keys) = %v", err)
	}
	// Pinning the stored envelope again gives the same trust.
	again, err := PinRoot(t3.Envelope())
	if err != nil || again.Version() != 3 {
		t.Errorf("PinRoot(stored v3) = %v, %v", again, err)
	}
	if diff := cmp.Diff(v3, again.Root()); diff != "" {
		t.Errorf("Root() (-want +got):\n%s", diff)
	}
}

func mustSignRoot(t *testing.T, r *Root, keys ...*Key) []byte {
	t.Helper()
	env, err := SignRoot(r, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// Signatures beyond the threshold by unknown keys, keys of other roles or
// bad ones are ignored, as TUF does.
func TestThresholdIgnoresExtraSignatures(t *testing.T) {
	f := newFixture(t, false)
	v2 := f.rootV2()
	env := mustSignRoot(t, &v2, f.stranger, f.root1, f.director, f.root1, f.root3)
	env = editEnvelope(env, func(e *dsse.Envelope) {
		e.Signatures = append(e.Signatures, e.Signatures[1])
		e.Signatures[len(e.Signatures)-1].Sig = e.Signatures[0].Sig // a bad signature under root1's id
	})
	if _, err := f.trust.UpdateRoot(env); err != nil {
		t.Errorf("UpdateRoot(threshold met, extra signatures) = %v", err)
	}
}

func TestCache(t *testing.T) {
	f := newFixture(t, false)
	c := &Cache{}
	v := f.verifier(c)
	compiles := 0
	v.Compile = func(d, vals []byte) ([]byte, string, error) {
		compiles++
		return testCompile(d, vals)
	}
	m := f.manifest()
	if _, _, err := v.Verify(f.sign(m), state()); err != nil {
		t.Fatalf("Verify() = %v", err)
	}
	if c.releases.len() != 3 || c.compiled.len() != 3 || compiles != 3 {
		t.Errorf("after one manifest: %d releases, %d compiled cached, %d compiles; want 3, 3, 3", c.releases.len(), c.compiled.len(), compiles)
	}
	// The next manifest changes one module's values: one compile.
	m.Serial = 43
	m.Modules[2].Values = []byte(`{"shares":[]}`)
	m.Modules[2].Spec, m.Modules[2].SpecDigest, _ = testCompile(m.Modules[2].Definition, m.Modules[2].Values)
	if _, _, err := v.Verify(f.sign(m), state()); err != nil {
		t.Fatalf("Verify(serial 43) = %v", err)
	}
	if compiles != 4 {
		t.Errorf("%d compiles after the second manifest, want 4", compiles)
	}
	// A cached release still meets the per-manifest checks.
	last := state()
	last.Counters["amon-firewall"] = 8
	if _, _, err := v.Verify(f.sign(m), last); !errors.Is(err, ErrReleaseRollback) {
		t.Errorf("Verify(cached release below the counter) = %v, want %v", err, ErrReleaseRollback)
	}
	v.AgentVersion = version.Must(version.NewVersion("1.1.0"))
	if _, _, err := v.Verify(f.sign(m), state()); !errors.Is(err, ErrAgentVersion) {
		t.Errorf("Verify(cached release, excluded agent) = %v, want %v", err, ErrAgentVersion)
	}
	v.AgentVersion = f.verifier(nil).AgentVersion
	// A cached compile result still needs the spec the manifest carries.
	bad := f.manifest()
	bad.Modules[0].Spec = []byte(`{"accept":"everything"}`)
	bad.Modules[0].SpecDigest = Digest(bad.Modules[0].Spec)
	if _, _, err := v.Verify(f.sign(bad), state()); !errors.Is(err, ErrSpecMismatch) {
		t.Errorf("Verify(spec other than the cached compile result) = %v, want %v", err, ErrSpecMismatch)
	}

	// After a rotation that drops release-1, what it signed is refused,
	// cached or not.
	v2 := f.rootV2()
	delete(v2.Keys, f.release1.ID())
	v2.Roles.Release = Role{KeyIDs: []string{f.release2.ID()}, Threshold: 1}
	t2, err := f.trust.UpdateRoot(mustSignRoot(t, &v2, f.root1, f.root2))
	if err != nil {
		t.Fatal(err)
	}
	v.Trust = t2
	if _, _, err := v.Verify(f.sign(f.manifest(), testKey("director-2")), state()); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Verify(release by a key rotated out, cached under the old root) = %v, want %v", err, ErrUnknownKey)
	}
}

func TestCacheBounded(t *testing.T) {
	var f fifo[int, int]
	for i := range MaxCacheEntries + 10 {
		f.put(i, i)
	}
	if f.len() != MaxCacheEntries {
		t.Errorf("len = %d, want %d", f.len(), MaxCacheEntries)
	}
	if _, ok := f.get(0); ok {
		t.Errorf("oldest entry kept")
	}
	if v, ok := f.get(MaxCacheEntries + 9); !ok || v != MaxCacheEntries+9 {
		t.Errorf("newest entry = %d, %v", v, ok)
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	s := NewSecret([]byte(fixtureSecret))
	holder := struct {
		Name   string
		Secret Secret
	}{"ldap-bind", s}
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %[1]v"} {
		outs = append(outs, fmt.Sprintf(verb, s), fmt.Sprintf(verb, holder), fmt.Sprintf(verb, &holder))
	}
	b1, err := stdjson.Marshal(holder)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := json.Marshal(holder)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("unsealed", "secret", s, "holder", holder)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("unsealed", "secret", s)
	outs = append(outs, string(b1), string(b2), logs.String(), s.String(), s.GoString())
	for _, out := range outs {
		for _, leak := range []string{fixtureSecret, hex.EncodeToString([]byte(fixtureSecret)), base64.StdEncoding.EncodeToString([]byte(fixtureSecret)), "99 111 114"} {
			if strings.Contains(strings.ToLower(out), strings.ToLower(leak)) {
				t.Errorf("secret printed: %s", out)
			}
		}
	}
	if err := stdjson.Unmarshal([]byte(`"x"`), &s); err == nil {
		t.Errorf("a Secret decoded from JSON")
	}
	if string(s.Reveal()) != fixtureSecret || s.Len() != len(fixtureSecret) {
		t.Errorf("Reveal() lost the value")
	}
}

func TestKeyNeverPrinted(t *testing.T) {
	k := testKey("root-1")
	leaks := []string{
		hex.EncodeToString(k.priv.Seed())[:16],
		strings.ToUpper(hex.EncodeToString(k.priv.Seed())[:16]),
		strings.Trim(fmt.Sprint(k.priv[:4]), "[]"),
		base64.StdEncoding.EncodeToString(k.priv.Seed())[:12],
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
		for _, out := range []string{fmt.Sprintf(verb, k), fmt.Sprintf(verb, *k), fmt.Sprintf(verb, struct{ K Key }{*k}), fmt.Sprintf(verb, []*Key{k})} {
			for _, leak := range leaks {
				if strings.Contains(out, leak) {
					t.Errorf("%s printed the private key: %s", verb, out)
				}
			}
		}
	}
}

func TestSealRefuses(t *testing.T) {
	f := newFixture(t, false)
	to := f.agent.Recipient()
	for _, c := range []struct {
		name, server, secret string
		gen                  uint64
		value                []byte
	}{
		{"server id", "", "ldap-bind", 1, nil},
		{"name", serverID, "LDAP bind", 1, nil},
		{"generation", serverID, "ldap-bind", 0, nil},
		{"too large", serverID, "ldap-bind", 1, make([]byte, MaxSecretSize+1)},
	} {
		if _, err := Seal(to, c.server, c.secret, c.gen, NewSecret(c.value)); err == nil {
			t.Errorf("Seal(%s) = nil error", c.name)
		}
	}
	// The largest secret allowed fits the sealed size limit.
	big := NewSecret(bytes.Repeat([]byte{0xff}, MaxSecretSize))
	sealed, err := Seal(to, serverID, "tls-key", 1, big)
	if err != nil {
		t.Fatalf("Seal(MaxSecretSize) = %v", err)
	}
	got, err := Unseal(f.agent, serverID, SecretRef{Name: "tls-key", Generation: 1, Sealed: sealed})
	if err != nil || !got.Equal(big) {
		t.Errorf("Unseal(MaxSecretSize) = %v", err)
	}
}

func TestScanJSON(t *testing.T) {
	for _, c := range []struct {
		in   string
		want *Reason
	}{
		{`{}`, nil},
		{" \n{\"a\":[1,{\"b\":\"]]]}}}\\\"\\\\\"}]}\t\n", nil},
		{`{"a":` + deep(MaxDepth-1) + `}`, nil},
		{`{"a":` + deep(MaxDepth) + `}`, ErrTooDeep},
		{`{"a":"` + strings.Repeat(`[`, 100) + `"}`, nil},
		{`{"a":"\\"}x`, ErrTrailingData},
		{`{"a":"\"}`, ErrMalformed},
		{`{} {}`, ErrTrailingData},
		{`[]`, ErrMalformed},
		{``, ErrMalformed},
		{`{`, ErrMalformed},
	} {
		if got, detail := scanJSON([]byte(c.in)); got != c.want {
			t.Errorf("scanJSON(%.40q) = %v (%s), want %v", c.in, got, detail, c.want)
		}
	}
}

func TestVerifyBlobAccepts(t *testing.T) {
	empty := BlobRef{Name: "empty", Digest: Digest(nil), Size: 0}
	if err := VerifyBlob(empty, nil); err != nil {
		t.Errorf("VerifyBlob(empty) = %v", err)
	}
	if err := VerifyBlob(BlobRef{Name: "x", Digest: Digest(nil), Size: MaxBlobSize + 1}, nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("VerifyBlob(listed over the limit) = %v, want %v", err, ErrTooLarge)
	}
}

func TestCode(t *testing.T) {
	if got := Code(nil); got != "" {
		t.Errorf("Code(nil) = %q", got)
	}
	if got := Code(errors.New("other")); got != "" {
		t.Errorf("Code(other) = %q", got)
	}
	err := fmt.Errorf("agent: pull: %w", refuse("manifest", "serial", ErrRollback, ""))
	if got := Code(err); got != "rollback" || !errors.Is(err, ErrRollback) {
		t.Errorf("Code(wrapped rollback) = %q", got)
	}
}

// One Verifier and one Cache serve concurrent calls (run with -race).
func TestVerifyConcurrent(t *testing.T) {
	f := newFixture(t, false)
	v := f.verifier(&Cache{})
	env := f.sign(f.manifest())
	done := make(chan error)
	for range 8 {
		go func() {
			_, _, err := v.Verify(env, state())
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Errorf("Verify() = %v", err)
		}
	}
}

// encodeEnvelope writes what the JSON encoder would.
func TestEncodeEnvelope(t *testing.T) {
	env := &dsse.Envelope{
		PayloadType: "application/vnd.alize.manifest+json; q=\"1\"\n",
		Payload:     "eyJhIjoxfQ==",
		Signatures:  []dsse.Signature{{KeyID: "k1", Sig: "c2ln"}, {KeyID: "k\u2028", Sig: "c2lnMg=="}},
	}
	got, err := encodeEnvelope(env)
	if err != nil {
		t.Fatal(err)
	}
	want, err := marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("encodeEnvelope() = %s, want %s", got, want)
	}
}

// A level names a group of the longest name the controller allows.
func TestSourcesTakeLongGroupNames(t *testing.T) {
	f := newFixture(t, false)
	m := f.manifest()
	m.Modules[0].Sources = map[string]string{"admin_cidr": "group:" + strings.Repeat("g", MaxNameLength)}
	env, err := SignManifest(m, f.director)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := f.verifier(nil).Verify(env, state())
	if err != nil || got.Modules[0].Sources["admin_cidr"] != m.Modules[0].Sources["admin_cidr"] {
		t.Errorf("Verify() = %v, sources %v", err, got)
	}
}

func TestCompactJSON(t *testing.T) {
	for in, want := range map[string]bool{
		`{"a":"b c"}`: true, `{"a":"\" ","b":[1,2]}`: true, `{"a":"\\"}`: true, `[]`: true,
		`{"a": 1}`: false, `{"a":1} `: false, "{\n}": false, `{"a":"\\" }`: false, `{"a":`: false, `{"a":1}{}`: false,
	} {
		if got := compactJSON([]byte(in)); got != want {
			t.Errorf("compactJSON(%s) = %v, want %v", in, got, want)
		}
	}
}
