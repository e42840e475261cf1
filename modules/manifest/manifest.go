package manifest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/alize-eple/alize/modules"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/hashicorp/go-version"
)

// Target names the one server a manifest is for.
type Target struct {
	ServerID string `json:"server_id"`
	UAI      string `json:"uai"` // the establishment's national code: "0951099D"
}

// Manifest is what one server must be, as the director signs it.
type Manifest struct {
	Target  Target
	Serial  uint64    // grows with every manifest for this server; the agent refuses any not above the last applied
	Issued  time.Time // when the director signed it
	Expires time.Time // past it the agent refuses it and keeps its last-known-good (freeze)
	Modules []Module
	Blobs   []BlobRef
	Secrets []SecretRef
}

// Module is one module of a manifest: the release that blesses its
// definition, the values resolved for this server, and the spec they
// compile to.
type Module struct {
	// ReleaseEnvelope is the release's DSSE envelope, exactly as the
	// release role signed it; the manifest embeds it.
	ReleaseEnvelope []byte
	// Release is the verified release. Verify sets it; SignManifest
	// ignores it.
	Release Release
	// Definition is the module definition file (YAML) the release's digest
	// covers. It does not travel in the manifest: the release names it by
	// digest, and the agent fetches it once, as a blob, and keeps it (see
	// Verifier.Definitions). Verify sets it; SignManifest checks it
	// against the release when it is given.
	Definition []byte
	// Values is the JSON object of the variable values resolved for this server.
	Values []byte
	// Spec is the compiled spec: canonical JSON, exactly as the compile
	// function returns it.
	Spec []byte
	// SpecDigest is "sha256:<hex>" of Spec.
	SpecDigest string
	// Sources says, for each variable that has a value, which level gave
	// it ("server", "establishment", "group:lycees", "academy", "fleet",
	// "inventory", "default"), for the technician's plan. Informative: it
	// takes no part in the compile.
	Sources map[string]string
}

// The manifest payload, as it travels. Embedded JSON (the release
// envelope, values, spec) is kept byte for byte.
type manifestWire struct {
	Target  Target       `json:"target"`
	Serial  uint64       `json:"serial"`
	Issued  time.Time    `json:"issued"`
	Expires time.Time    `json:"expires"`
	Modules []moduleWire `json:"modules"`
	Blobs   []BlobRef    `json:"blobs"`
	Secrets []SecretRef  `json:"secrets"`
}

type moduleWire struct {
	Release    jsontext.Value    `json:"release"`
	Values     jsontext.Value    `json:"values"`
	Spec       jsontext.Value    `json:"spec"`
	SpecDigest string            `json:"spec_digest"`
	Sources    map[string]string `json:"sources,omitempty"`
}

// validate checks the manifest's own rules (not the signatures, not the
// agent's state) and reports every problem with its path.
func (w *manifestWire) validate() error {
	var errs modules.FieldErrors
	if !validID(w.Target.ServerID) {
		errs.Add("target.server_id", "must be 1 to %d printable ASCII characters, got %s", MaxNameLength, clip(w.Target.ServerID))
	}
	if !validID(w.Target.UAI) {
		errs.Add("target.uai", "must be 1 to %d printable ASCII characters, got %s", MaxNameLength, clip(w.Target.UAI))
	}
	if w.Serial == 0 {
		errs.Add("serial", "must be 1 or more")
	}
	if w.Issued.IsZero() {
		errs.Add("issued", "missing")
	}
	if w.Expires.IsZero() {
		errs.Add("expires", "missing")
	} else if !w.Expires.After(w.Issued) {
		errs.Add("expires", "must be after issued")
	}
	for i, m := range w.Modules {
		path := fmt.Sprintf("modules[%d]", i)
		if m.Values.Kind() != '{' {
			errs.Add(path+".values", "must be a JSON object")
		}
		if m.Spec.Kind() != '{' {
			errs.Add(path+".spec", "must be a JSON object")
		}
		if !validDigest(m.SpecDigest) {
			errs.Add(path+".spec_digest", "must be sha256:<64 lowercase hex digits>, got %s", clip(m.SpecDigest))
		}
		if len(m.Sources) > MaxSources {
			errs.Add(path+".sources", "%d entries, at most %d", len(m.Sources), MaxSources)
			continue
		}
		for name, level := range m.Sources {
			if !validName(name) || !validLevel(level) {
				errs.Add(path+".sources", "%s: %s: must be a variable name and a level name", clip(name), clip(level))
				break
			}
		}
	}
	blobs := make(map[string]bool, len(w.Blobs))
	for i, b := range w.Blobs {
		path := fmt.Sprintf("blobs[%d]", i)
		if err := b.validate(); err != nil {
			errs.Add(path, "%v", err)
		}
		if blobs[b.Name] {
			errs.Add(path+".name", "%s listed twice", clip(b.Name))
		}
		blobs[b.Name] = true
	}
	secrets := make(map[string]bool, len(w.Secrets))
	for i, s := range w.Secrets {
		path := fmt.Sprintf("secrets[%d]", i)
		if !validName(s.Name) {
			errs.Add(path+".name", "must be a name of 1 to %d of a-z 0-9 . _ -, got %s", MaxNameLength, clip(s.Name))
		}
		if secrets[s.Name] {
			errs.Add(path+".name", "%s listed twice", clip(s.Name))
		}
		secrets[s.Name] = true
		if s.Generation == 0 {
			errs.Add(path+".generation", "must be 1 or more")
		}
		if len(s.Sealed) == 0 || len(s.Sealed) > MaxSealedSize {
			errs.Add(path+".sealed", "must be 1 to %d bytes, got %d", MaxSealedSize, len(s.Sealed))
		}
	}
	return errs.Err()
}

// tooMany refuses a manifest with more entries than the limits allow,
// before anything else is looked at.
func (w *manifestWire) tooMany() error {
	switch {
	case len(w.Modules) > MaxModules:
		return refuse("manifest", "modules", ErrTooLarge, fmt.Sprintf("%d modules, at most %d", len(w.Modules), MaxModules))
	case len(w.Blobs) > MaxBlobs:
		return refuse("manifest", "blobs", ErrTooLarge, fmt.Sprintf("%d blobs, at most %d", len(w.Blobs), MaxBlobs))
	case len(w.Secrets) > MaxSecrets:
		return refuse("manifest", "secrets", ErrTooLarge, fmt.Sprintf("%d secrets, at most %d", len(w.Secrets), MaxSecrets))
	}
	return nil
}

// SignManifest builds a manifest's payload and signs it with each key
// given (director keys): the controller runs it for each server. It checks
// what it can without the agent's state, so that the controller does not
// sign what every agent would refuse: the manifest's own rules and limits,
// each spec against its digest, each definition given against the digest
// in its release (read, not verified: verify releases with
// Trust.VerifyRelease when they are published). Definitions are not part
// of the payload: the agent fetches them by digest. Each Spec must be exactly what the compile
// function returned (compact JSON): it is embedded byte for byte.
func SignManifest(m *Manifest, keys ...*Key) ([]byte, error) {
	w := manifestWire{
		Target:  m.Target,
		Serial:  m.Serial,
		Issued:  m.Issued.UTC(),
		Expires: m.Expires.UTC(),
		Modules: make([]moduleWire, len(m.Modules)),
		Blobs:   m.Blobs,
		Secrets: m.Secrets,
	}
	for i, mod := range m.Modules {
		path := fmt.Sprintf("modules[%d]", i)
		if len(mod.ReleaseEnvelope) == 0 {
			return nil, fmt.Errorf("manifest: sign manifest: %s: no release", path)
		}
		if Digest(mod.Spec) != mod.SpecDigest {
			return nil, fmt.Errorf("manifest: sign manifest: %s: spec digest is not the spec's", path)
		}
		if !compactJSON(mod.Spec) {
			return nil, fmt.Errorf("manifest: sign manifest: %s: spec is not compact JSON", path)
		}
		rel, err := readRelease(mod.ReleaseEnvelope)
		if err != nil {
			return nil, fmt.Errorf("manifest: sign manifest: %s: %w", path, err)
		}
		if mod.Definition != nil && Digest(mod.Definition) != rel.Digest {
			return nil, fmt.Errorf("manifest: sign manifest: %s: definition is not the one release %s %s signed", path, rel.Name, rel.Version)
		}
		w.Modules[i] = moduleWire{
			Release:    jsontext.Value(mod.ReleaseEnvelope),
			Values:     jsontext.Value(mod.Values),
			Spec:       jsontext.Value(mod.Spec),
			SpecDigest: mod.SpecDigest,
			Sources:    mod.Sources,
		}
	}
	if err := w.tooMany(); err != nil {
		return nil, fmt.Errorf("manifest: sign manifest: %w", err)
	}
	if err := w.validate(); err != nil {
		return nil, fmt.Errorf("manifest: sign manifest: %w", err)
	}
	payload, err := marshal(&w)
	if err != nil {
		return nil, fmt.Errorf("manifest: sign manifest: %w", err)
	}
	if len(payload) > MaxManifestSize {
		return nil, fmt.Errorf("manifest: sign manifest: payload of %d bytes, at most %d", len(payload), MaxManifestSize)
	}
	env, err := signEnvelope(PayloadTypeManifest, payload, keys)
	if err != nil {
		return nil, fmt.Errorf("manifest: sign manifest: %w", err)
	}
	return env, nil
}

// validLevel: a level's name as the controller writes it, such as
// "group:" and a group name of up to MaxNameLength characters.
func validLevel(s string) bool { return printableUpTo(s, 2*MaxNameLength) }

// compactJSON reports whether b is one valid JSON value without
// insignificant whitespace, as the compile function writes specs.
func compactJSON(b []byte) bool {
	if !jsontext.Value(b).IsValid(jsontext.AllowDuplicateNames(true)) {
		return false
	}
	inString, escaped := false, false
	for _, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return false
		}
	}
	return true
}

// readRelease reads a release envelope's payload without verifying it.
func readRelease(envelope []byte) (Release, error) {
	env, err := decodeEnvelope("release", envelope, MaxReleaseSize, MaxReleaseSize, PayloadTypeRelease)
	if err != nil {
		return Release{}, err
	}
	var r Release
	if err := decodeStrict("release", env.Payload, &r, false); err != nil {
		return Release{}, err
	}
	return r, nil
}

// State is what an agent remembers of the manifests it accepted, so that
// it never goes back: the last serial, the highest release counter seen
// per module name, the highest secret generation seen per secret name.
// The agent stores it beside its last-known-good manifest. Entries are
// never removed: a module dropped and added again cannot come back older.
type State struct {
	Serial      uint64            `json:"serial"`
	Counters    map[string]uint64 `json:"counters,omitempty"`
	Generations map[string]uint64 `json:"generations,omitempty"`
}

// CompileFunc compiles a module definition (YAML) with its values (a JSON
// object) into a spec (canonical JSON) and the spec's digest
// ("sha256:<hex>"). It must be pure and deterministic: schema.CompileBytes.
type CompileFunc func(definition, values []byte) (spec []byte, digest string, err error)

// Verifier verifies manifests for one agent: its pinned root, its
// identity, its version, and the compile function it shares with the
// controller. Verify reads its fields and never changes them, so a
// Verifier may be used concurrently; to follow a root rotation, use a new
// Verifier (or set Trust between calls).
type Verifier struct {
	Trust        *Trust           // the pinned root
	ServerID     string           // this server's id
	UAI          string           // this server's establishment
	AgentVersion *version.Version // this agent's version, checked against each release's constraint
	// Compile recompiles each module: the spec must be exactly what the
	// signed definition and the values compile to, so that a director
	// cannot ship a spec the module's release does not allow. Required.
	Compile CompileFunc
	// Definitions returns the module definition whose digest is given
	// ("sha256:<hex>"), or nil when it does not have it: the agent's cache
	// of definitions fetched from the controller. Verify checks what it
	// returns against the digest. When a definition is missing, Verify
	// checks everything else and then returns an error that
	// MissingDefinitions reads: fetch those, and verify again.
	Definitions func(digest string) []byte
	Now         func() time.Time // the clock
	// Cache, if set, spares re-verifying releases and recompiling unchanged
	// modules from one manifest to the next (see Cache).
	Cache *Cache
}

var errVerifierConfig = errors.New("manifest: verifier needs Trust, ServerID, UAI, AgentVersion, Compile, Definitions and Now")

// Verify checks a manifest envelope and returns the manifest and the State
// to store once the agent takes it. It refuses, with an *Error wrapping
// one of the Err… reasons: an envelope or payload that is too large, too
// deep, not strict JSON, of the wrong payload type, not signed by the
// director role at threshold; a manifest for another server or
// establishment, with a serial not above last.Serial (ErrRollback),
// expired (ErrExpired) or issued in the future beyond MaxClockSkew
// (ErrIssuedInFuture); any manifest while the pinned root has expired
// (ErrExpired, freeze); a module without a valid release, with a release counter
// below the one last seen, a definition or spec that does not match its
// digest, a spec that is not what the definition and values compile to,
// a release that excludes this agent's version; a secret of a generation
// below the one last seen.
//
// Verify is pure: it reads no file and changes neither last nor anything
// the caller holds (only v.Cache, with successful results). A refused
// manifest changes nothing: the agent keeps its last-known-good manifest
// and State, and reports Code(err). On success the agent stores the
// manifest and the returned State together (atomically) before it
// applies: from then on an older or equal serial is refused, even if
// applying fails and is retried from the stored manifest.
func (v *Verifier) Verify(envelope []byte, last State) (*Manifest, State, error) {
	if v.Trust == nil || v.ServerID == "" || v.UAI == "" || v.AgentVersion == nil || v.Compile == nil || v.Definitions == nil || v.Now == nil {
		return nil, State{}, errVerifierConfig
	}
	const doc = "manifest"
	now := v.Now()
	if err := v.Trust.CheckFresh(now); err != nil {
		return nil, State{}, err
	}
	env, err := decodeEnvelope(doc, envelope, MaxEnvelopeSize, MaxManifestSize, PayloadTypeManifest)
	if err != nil {
		return nil, State{}, err
	}
	// The signature first: nothing in the payload is parsed before.
	if err := v.Trust.keys.verify(doc, env, RoleDirector); err != nil {
		return nil, State{}, err
	}
	var w manifestWire
	if err := decodeStrict(doc, env.Payload, &w, false); err != nil {
		return nil, State{}, err
	}
	if err := w.tooMany(); err != nil {
		return nil, State{}, err
	}
	if err := w.validate(); err != nil {
		return nil, State{}, &Error{Doc: doc, Reason: ErrInvalid, Err: err}
	}

	if w.Target.ServerID != v.ServerID {
		return nil, State{}, refuse(doc, "target.server_id", ErrWrongServer, fmt.Sprintf("for %s, this is %s", clip(w.Target.ServerID), clip(v.ServerID)))
	}
	if w.Target.UAI != v.UAI {
		return nil, State{}, refuse(doc, "target.uai", ErrWrongUAI, fmt.Sprintf("for %s, this is %s", clip(w.Target.UAI), clip(v.UAI)))
	}
	if w.Serial <= last.Serial {
		return nil, State{}, refuse(doc, "serial", ErrRollback, fmt.Sprintf("serial %d, last applied %d", w.Serial, last.Serial))
	}
	if !now.Before(w.Expires) {
		return nil, State{}, refuse(doc, "expires", ErrExpired, fmt.Sprintf("serial %d expired at %s, now %s", w.Serial, w.Expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
	}
	if w.Issued.After(now.Add(MaxClockSkew)) {
		return nil, State{}, refuse(doc, "issued", ErrIssuedInFuture, fmt.Sprintf("serial %d issued at %s, now %s (allowed skew %s)", w.Serial, w.Issued.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), MaxClockSkew))
	}

	out := &Manifest{
		Target:  w.Target,
		Serial:  w.Serial,
		Issued:  w.Issued,
		Expires: w.Expires,
		Modules: make([]Module, len(w.Modules)),
		Blobs:   w.Blobs,
		Secrets: w.Secrets,
	}
	var missing []string
	seen := make(map[string]int, len(w.Modules))
	for i, mw := range w.Modules {
		path := fmt.Sprintf("modules[%d]", i)
		if len(mw.Release) == 0 || mw.Release.Kind() == 'n' {
			return nil, State{}, refuse(doc, path+".release", ErrNoRelease, "")
		}
		vr, err := v.Trust.verifyRelease(mw.Release, v.Cache)
		if err != nil {
			return nil, State{}, fmt.Errorf("manifest: %s.release: %w", path, err)
		}
		rel := vr.release
		if j, ok := seen[rel.Name]; ok {
			return nil, State{}, refuse(doc, path, ErrInvalid, fmt.Sprintf("module %s already at modules[%d]", rel.Name, j))
		}
		seen[rel.Name] = i
		if c := last.Counters[rel.Name]; rel.Counter < c {
			return nil, State{}, refuse(doc, path+".release", ErrReleaseRollback, fmt.Sprintf("module %s release %s has counter %d, last seen %d", rel.Name, rel.Version, rel.Counter, c))
		}
		if d := Digest(mw.Spec); d != mw.SpecDigest {
			return nil, State{}, refuse(doc, path+".spec_digest", ErrSpecDigest, fmt.Sprintf("module %s: spec is %s, spec_digest says %s", rel.Name, d, mw.SpecDigest))
		}
		if vr.agent != nil && !vr.agent.Check(v.AgentVersion) {
			return nil, State{}, refuse(doc, path+".release", ErrAgentVersion, fmt.Sprintf("module %s release %s wants agent %s, this is %s", rel.Name, rel.Version, rel.Agent, v.AgentVersion))
		}
		def := v.Definitions(rel.Digest)
		switch {
		case def == nil:
			missing = append(missing, rel.Digest)
		case len(def) > MaxDefinitionSize:
			return nil, State{}, refuse(doc, path+".definition", ErrTooLarge, fmt.Sprintf("module %s: definition of %d bytes, at most %d", rel.Name, len(def), MaxDefinitionSize))
		case Digest(def) != rel.Digest:
			return nil, State{}, refuse(doc, path+".definition", ErrDefinitionDigest, fmt.Sprintf("module %s: definition is %s, release %s signed %s", rel.Name, Digest(def), rel.Version, rel.Digest))
		}
		out.Modules[i] = Module{
			ReleaseEnvelope: mw.Release,
			Release:         rel,
			Definition:      def,
			Values:          mw.Values,
			Spec:            mw.Spec,
			SpecDigest:      mw.SpecDigest,
			Sources:         mw.Sources,
		}
	}
	for i, s := range w.Secrets {
		if g := last.Generations[s.Name]; s.Generation < g {
			return nil, State{}, refuse(doc, fmt.Sprintf("secrets[%d].generation", i), ErrSecretGeneration, fmt.Sprintf("secret %s generation %d, last seen %d", s.Name, s.Generation, g))
		}
	}
	if len(missing) > 0 {
		return nil, State{}, &MissingDefinitionsError{Digests: missing}
	}
	// Recompile last: it is the costliest check.
	for i, mod := range out.Modules {
		if err := v.recompile(fmt.Sprintf("modules[%d]", i), mod); err != nil {
			return nil, State{}, err
		}
	}
	return out, last.next(out), nil
}

// MissingDefinitionsError is Verify's answer when the manifest passed
// every other check but some module definitions are not at hand: the
// agent fetches them by digest (the controller serves them as blobs; any
// mirror may, since the signed release names the digest) and verifies
// again. It is not a refusal.
type MissingDefinitionsError struct {
	Digests []string // "sha256:<hex>" of each missing definition
}

func (e *MissingDefinitionsError) Error() string {
	return fmt.Sprintf("manifest: %d module definition(s) to fetch: %s", len(e.Digests), strings.Join(e.Digests, ", "))
}

// Unwrap lets errors.Is find ErrDefinitionMissing.
func (e *MissingDefinitionsError) Unwrap() error { return ErrDefinitionMissing }

// MissingDefinitions returns the digests of the definitions Verify needs
// and did not have, or nil when err is not that.
func MissingDefinitions(err error) []string {
	var e *MissingDefinitionsError
	if errors.As(err, &e) {
		return e.Digests
	}
	return nil
}

// recompile checks that the module's spec is what its definition and
// values compile to. With a Cache, a definition and values already
// compiled to this very spec are not compiled again.
func (v *Verifier) recompile(path string, mod Module) error {
	var key [2 * sha256.Size]byte
	memo := v.Cache != nil && !v.Cache.noCompileMemo
	if memo {
		defSum := sha256.Sum256([]byte(mod.Release.Digest))
		copy(key[:], defSum[:])
		valSum := sha256.Sum256(mod.Values)
		copy(key[sha256.Size:], valSum[:])
		if d, ok := v.Cache.compiledDigest(key); ok && d == mod.SpecDigest {
			return nil
		}
	}
	name := mod.Release.Name
	spec, digest, err := v.Compile(mod.Definition, mod.Values)
	if err != nil {
		return &Error{Doc: "manifest", Path: path, Reason: ErrCompile, Detail: "module " + name, Err: err}
	}
	if digest != mod.SpecDigest || !bytes.Equal(spec, mod.Spec) {
		return refuse("manifest", path+".spec", ErrSpecMismatch, fmt.Sprintf("module %s compiles to %s, the manifest carries %s", name, clip(digest), mod.SpecDigest))
	}
	if memo {
		v.Cache.putCompiled(key, digest)
	}
	return nil
}

// next is the State after m is taken; s is left as it was.
func (s State) next(m *Manifest) State {
	n := State{
		Serial:      m.Serial,
		Counters:    maps.Clone(s.Counters),
		Generations: maps.Clone(s.Generations),
	}
	if n.Counters == nil && len(m.Modules) > 0 {
		n.Counters = make(map[string]uint64, len(m.Modules))
	}
	for _, mod := range m.Modules {
		n.Counters[mod.Release.Name] = max(n.Counters[mod.Release.Name], mod.Release.Counter)
	}
	if n.Generations == nil && len(m.Secrets) > 0 {
		n.Generations = make(map[string]uint64, len(m.Secrets))
	}
	for _, sec := range m.Secrets {
		n.Generations[sec.Name] = max(n.Generations[sec.Name], sec.Generation)
	}
	return n
}
