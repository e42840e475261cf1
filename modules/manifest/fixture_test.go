package manifest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/hashicorp/go-version"
)

// TEST KEYS ONLY. Every key of these tests is derived from a fixed,
// public seed phrase below, so that golden files stay stable. They are
// known to anyone who reads this file: never use them outside tests. No
// private key is written to testdata/.
const testSeedPrefix = "alize manifest package TEST KEY, public, never use outside tests: "

func testKey(name string) *Key {
	seed := sha256.Sum256([]byte(testSeedPrefix + name))
	k, err := NewKey(ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		panic(err)
	}
	return k
}

// testAgeIdentity derives an agent's age X25519 identity from a seed phrase
// (TEST ONLY), through the bech32 form age parses.
func testAgeIdentity(name string) *age.X25519Identity {
	seed := sha256.Sum256([]byte(testSeedPrefix + "age " + name))
	id, err := age.ParseX25519Identity(strings.ToUpper(bech32("age-secret-key-", seed[:])))
	if err != nil {
		panic(err)
	}
	return id
}

func bech32(hrp string, data []byte) string {
	const charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
	var values []byte
	acc, bits := 0, 0
	for _, b := range data {
		acc = (acc<<8 | int(b)) & 0xfff
		bits += 8
		for bits >= 5 {
			bits -= 5
			values = append(values, byte(acc>>bits&31))
		}
	}
	if bits > 0 {
		values = append(values, byte(acc<<(5-bits)&31))
	}
	polymod := func(v []byte) uint32 {
		gen := [5]uint32{0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3}
		chk := uint32(1)
		for _, x := range v {
			top := chk >> 25
			chk = (chk&0x1ffffff)<<5 ^ uint32(x)
			for i := range 5 {
				if top>>i&1 == 1 {
					chk ^= gen[i]
				}
			}
		}
		return chk
	}
	var exp []byte
	for _, c := range []byte(hrp) {
		exp = append(exp, c>>5)
	}
	exp = append(exp, 0)
	for _, c := range []byte(hrp) {
		exp = append(exp, c&31)
	}
	exp = append(exp, values...)
	mod := polymod(append(exp, 0, 0, 0, 0, 0, 0)) ^ 1
	for i := range 6 {
		values = append(values, byte(mod>>(5*(5-i))&31))
	}
	var b strings.Builder
	b.WriteString(hrp + "1")
	for _, v := range values {
		b.WriteByte(charset[v])
	}
	return b.String()
}

// testCompile stands in for schema.CompileBytes in these tests: the spec
// is the values, canonicalised (RFC 8785), under the definition's digest.
// Like the real one it is pure and deterministic.
func testCompile(definition, values []byte) ([]byte, string, error) {
	v := jsontext.Value(bytes.Clone(values))
	if err := v.Canonicalize(); err != nil {
		return nil, "", fmt.Errorf("values: %w", err)
	}
	if v.Kind() != '{' {
		return nil, "", errors.New("values: not an object")
	}
	spec := make([]byte, 0, len(v)+100)
	spec = append(spec, `{"definition":"`...)
	spec = append(spec, Digest(definition)...)
	spec = append(spec, `","values":`...)
	spec = append(spec, v...)
	spec = append(spec, '}')
	return spec, Digest(spec), nil
}

// t0 is "now" in every test.
var t0 = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

const (
	serverID = "srv-0951099D-01"
	uai      = "0951099D"
	// The secret value of the fixture: no error message may contain it.
	fixtureSecret = "correct-horse-battery-staple-0951099D"
)

// fixture is an academy: its keys, its root, its module releases, one
// server and its agent.
type fixture struct {
	root1, root2, root3 *Key // root role, threshold 2
	release1, release2  *Key // release role, threshold 1
	director            *Key // director role, threshold 1
	stranger            *Key // in no root

	root    Root
	rootEnv []byte
	trust   *Trust

	agent *age.X25519Identity // this server's agent
	other *age.X25519Identity // another school's agent

	modules []fixtureModule
	defs    map[string][]byte // the modules' definitions by digest, made at first use
}

type fixtureModule struct {
	name, kind, version string
	counter             uint64
	agent               string
	definition, values  []byte
}

// newFixture builds the academy. big selects realistic module sizes (a
// few KiB each, for benchmarks) instead of small ones (for golden files).
func newFixture(tb testing.TB, big bool) *fixture {
	tb.Helper()
	f := &fixture{
		root1:    testKey("root-1"),
		root2:    testKey("root-2"),
		root3:    testKey("root-3"),
		release1: testKey("release-1"),
		release2: testKey("release-2"),
		director: testKey("director-1"),
		stranger: testKey("stranger"),
		agent:    testAgeIdentity("agent " + serverID),
		other:    testAgeIdentity("agent of another school"),
	}
	f.root = f.newRoot(1, t0.AddDate(1, 0, 0))
	var err error
	f.rootEnv, err = SignRoot(&f.root, f.root1, f.root2)
	if err != nil {
		tb.Fatal(err)
	}
	f.trust, err = PinRoot(f.rootEnv)
	if err != nil {
		tb.Fatal(err)
	}
	f.modules = []fixtureModule{
		{name: "amon-firewall", kind: "firewall", version: "2.3.0", counter: 7, agent: ">= 1.2, < 2"},
		{name: "scribe-accounts", kind: "accounts", version: "1.1.0", counter: 3},
		{name: "scribe-shares", kind: "shares", version: "1.0.4", counter: 5, agent: ">= 1.0"},
	}
	for i := range f.modules {
		f.modules[i].definition, f.modules[i].values = moduleContent(f.modules[i].name, f.modules[i].kind, big)
	}
	return f
}

// definition is the agent's store of module definitions: the fixture's
// modules, by digest.
func (f *fixture) definition(digest string) []byte {
	if f.defs == nil {
		f.defs = map[string][]byte{}
		for _, m := range f.modules {
			f.defs[Digest(m.definition)] = m.definition
		}
	}
	return f.defs[digest]
}

// newRoot is the academy's root with the fixture's keys.
func (f *fixture) newRoot(v int, expires time.Time) Root {
	keys := map[string]PublicKey{}
	for _, k := range []*Key{f.root1, f.root2, f.root3, f.release1, f.release2, f.director} {
		keys[k.ID()] = k.PublicKey()
	}
	return Root{
		Version: v,
		Expires: expires,
		Keys:    keys,
		Roles: Roles{
			Root:     Role{KeyIDs: []string{f.root1.ID(), f.root2.ID(), f.root3.ID()}, Threshold: 2},
			Release:  Role{KeyIDs: []string{f.release1.ID(), f.release2.ID()}, Threshold: 1},
			Director: Role{KeyIDs: []string{f.director.ID()}, Threshold: 1},
		},
	}
}

// moduleContent makes a module definition (YAML) and its values (JSON).
// The big ones have the sizes of the real example modules
// (modules/examples: definitions of 7.7, 6.7 and 4.3 KiB, compact specs
// of 1.5, 0.7 and 1.1 KiB); the small ones fit golden files.
func moduleContent(name, kind string, big bool) (definition, values []byte) {
	defSize, valSize := 0, 0
	if big {
		defSize = map[string]int{"firewall": 7700, "accounts": 6700, "shares": 4300}[kind]
		valSize = map[string]int{"firewall": 1400, "accounts": 600, "shares": 1000}[kind]
	}
	var def, val strings.Builder
	fmt.Fprintf(&def, "# Module %s: TEST FIXTURE\nname: %s\nkind: %s\nrequires:\n  agent: \">= 1.2, < 2\"\nvariables:\n", name, name, kind)
	for i := 0; i < 2 || def.Len() < defSize; i++ {
		fmt.Fprintf(&def, "  %s_var_%02d:\n    type: string\n    default: \"value-%02d\"\n    help: \"what variable %d of this module sets\"\n", kind, i, i, i)
	}
	def.WriteString("spec:\n  items: \"{{ items }}\"\n")
	switch kind {
	case "firewall":
		val.WriteString(`{"masquerade":true,"zones":[{"name":"admin","interfaces":["ens18"],"services":[`)
		for s := 0; s < 3 || val.Len() < valSize; s++ {
			if s > 0 {
				val.WriteByte(',')
			}
			fmt.Fprintf(&val, `{"name":"svc-%d","port":%d,"proto":"tcp"}`, s, 1000+s)
		}
		val.WriteString(`]}]}`)
	case "accounts":
		val.WriteString(`{"base_dn":"ou=0951099D,ou=ac-versailles,ou=education,o=gouv,c=fr","roster":"roster","archive_ou":"ou=archives","groups":[`)
		for g := 0; g < 1 || val.Len() < valSize; g++ {
			if g > 0 {
				val.WriteByte(',')
			}
			fmt.Fprintf(&val, `"profs-%d"`, g)
		}
		val.WriteString(`]}`)
	default:
		val.WriteString(`{"shares":[`)
		for s := 0; s < 1 || val.Len() < valSize; s++ {
			if s > 0 {
				val.WriteByte(',')
			}
			fmt.Fprintf(&val, `{"name":"share-%d","path":"/home/partages/share-%d","group":"profs","mode":"2770"}`, s, s)
		}
		val.WriteString(`]}`)
	}
	return []byte(def.String()), []byte(val.String())
}

// release signs a module's release with keys (by default the first
// release key).
func (f *fixture) release(m fixtureModule, keys ...*Key) []byte {
	if len(keys) == 0 {
		keys = []*Key{f.release1}
	}
	env, err := SignRelease(&Release{
		Name: m.name, Version: m.version, Kind: m.kind,
		Digest: Digest(m.definition), Counter: m.counter, Agent: m.agent,
	}, keys...)
	if err != nil {
		panic(err)
	}
	return env
}

// module is a manifest module for m, compiled with testCompile.
func (f *fixture) module(m fixtureModule) Module {
	spec, digest, err := testCompile(m.definition, m.values)
	if err != nil {
		panic(err)
	}
	return Module{
		ReleaseEnvelope: f.release(m),
		Definition:      m.definition,
		Values:          m.values,
		Spec:            spec,
		SpecDigest:      digest,
		Sources:         map[string]string{"zone_count": "academy", "admin_cidr": "establishment"},
	}
}

var rosterBlob = []byte("role;ine;nom;prenom;classe\npupil;123456789AB;Martin;Léa;6A\n")

// manifest is a valid manifest for the fixture's server, above state().
func (f *fixture) manifest() *Manifest {
	m := &Manifest{
		Target:  Target{ServerID: serverID, UAI: uai},
		Serial:  42,
		Issued:  t0.Add(-time.Minute),
		Expires: t0.Add(7 * 24 * time.Hour),
		Blobs:   []BlobRef{{Name: "roster", Digest: Digest(rosterBlob), Size: int64(len(rosterBlob))}},
	}
	for _, mod := range f.modules {
		m.Modules = append(m.Modules, f.module(mod))
	}
	m.Secrets = []SecretRef{f.secret(serverID, "ldap-bind", 2, f.agent)}
	return m
}

// secret seals the fixture secret for a server, to an agent.
func (f *fixture) secret(server, name string, gen uint64, to *age.X25519Identity) SecretRef {
	sealed, err := Seal(to.Recipient(), server, name, gen, NewSecret([]byte(fixtureSecret)))
	if err != nil {
		panic(err)
	}
	return SecretRef{Name: name, Generation: gen, Sealed: sealed}
}

func (f *fixture) sign(m *Manifest, keys ...*Key) []byte {
	if len(keys) == 0 {
		keys = []*Key{f.director}
	}
	env, err := SignManifest(m, keys...)
	if err != nil {
		panic(err)
	}
	return env
}

// payload is m's payload JSON, for tests that tamper with it before
// signing it with signRaw.
func (f *fixture) payload(m *Manifest) []byte {
	env, err := decodeEnvelope("test", f.sign(m), MaxEnvelopeSize, MaxManifestSize, PayloadTypeManifest)
	if err != nil {
		panic(err)
	}
	return env.Payload
}

// signRaw signs any payload, valid or not, as any type.
func signRaw(payloadType string, payload []byte, keys ...*Key) []byte {
	env, err := signEnvelope(payloadType, payload, keys)
	if err != nil {
		panic(err)
	}
	return env
}

// state is the agent's last applied state: below the fixture manifest.
func state() State {
	return State{
		Serial:      41,
		Counters:    map[string]uint64{"amon-firewall": 7, "scribe-accounts": 3, "scribe-shares": 4},
		Generations: map[string]uint64{"ldap-bind": 2},
	}
}

func cloneState(s State) State {
	return State{Serial: s.Serial, Counters: maps.Clone(s.Counters), Generations: maps.Clone(s.Generations)}
}

func (f *fixture) verifier(cache *Cache) *Verifier {
	return &Verifier{
		Trust:        f.trust,
		ServerID:     serverID,
		UAI:          uai,
		AgentVersion: version.Must(version.NewVersion("1.4.0")),
		Compile:      testCompile,
		Definitions:  f.definition,
		Now:          func() time.Time { return t0 },
		Cache:        cache,
	}
}
