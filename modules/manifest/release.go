package manifest

import (
	"crypto/sha256"
	"fmt"
	"sync"

	"github.com/alize-eple/alize/modules"
	"github.com/hashicorp/go-version"
)

// Release is a module release, signed offline by the release role: the
// module definition it blesses (by digest), and where it stands in the
// module's history. A controller, however compromised, can only ship
// definitions some release blesses, and never an older release than the
// agent has seen (Counter).
type Release struct {
	Name    string `json:"name"`            // module name: "amon-firewall"
	Version string `json:"version"`         // semver: "2.3.0"
	Kind    string `json:"kind"`            // the kind its spec is for: "firewall"
	Digest  string `json:"digest"`          // "sha256:<hex>" of the module definition file's bytes
	Counter uint64 `json:"counter"`         // grows with each release of this module name, never goes back
	Agent   string `json:"agent,omitempty"` // agent versions it runs on, a go-version constraint: ">= 1.2, < 2"
}

// maxConstraintLength bounds a release's agent constraint.
const maxConstraintLength = 128

// Validate checks the release's rules and reports every problem with its path.
func (r *Release) Validate() error {
	var errs modules.FieldErrors
	if !validName(r.Name) {
		errs.Add("name", "must be 1 to %d of a-z 0-9 . _ - (starting with a letter or digit), got %s", MaxNameLength, clip(r.Name))
	}
	if _, err := version.NewSemver(r.Version); err != nil || len(r.Version) > MaxNameLength {
		errs.Add("version", "must be a semantic version, got %s", clip(r.Version))
	}
	if !validName(r.Kind) {
		errs.Add("kind", "must be a kind name, got %s", clip(r.Kind))
	}
	if !validDigest(r.Digest) {
		errs.Add("digest", "must be sha256:<64 lowercase hex digits>, got %s", clip(r.Digest))
	}
	if r.Counter == 0 {
		errs.Add("counter", "must be 1 or more")
	}
	if r.Agent != "" {
		if _, err := parseConstraint(r.Agent); err != nil {
			errs.Add("agent", "must be a version constraint such as \">= 1.2, < 2\", got %s", clip(r.Agent))
		}
	}
	return errs.Err()
}

func parseConstraint(s string) (version.Constraints, error) {
	if len(s) > maxConstraintLength {
		return nil, fmt.Errorf("constraint longer than %d bytes", maxConstraintLength)
	}
	return version.NewConstraint(s)
}

// SignRelease signs a release with each key given (release-role keys,
// enough to meet the role's threshold). The release team runs it offline.
func SignRelease(r *Release, keys ...*Key) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("manifest: sign release: %w", err)
	}
	payload, err := marshal(r)
	if err != nil {
		return nil, fmt.Errorf("manifest: sign release: %w", err)
	}
	env, err := signEnvelope(PayloadTypeRelease, payload, keys)
	if err != nil {
		return nil, fmt.Errorf("manifest: sign release: %w", err)
	}
	if len(env) > MaxReleaseSize {
		return nil, fmt.Errorf("manifest: sign release: envelope of %d bytes, at most %d", len(env), MaxReleaseSize)
	}
	return env, nil
}

// VerifyRelease verifies a release envelope against the pinned root: a
// valid release signed by the release role at threshold. The controller
// runs it when a release is published; Verify runs it for each module of a
// manifest.
func (t *Trust) VerifyRelease(envelope []byte) (Release, error) {
	vr, err := t.verifyRelease(envelope, nil)
	return vr.release, err
}

// verifiedRelease is a release that verified, with its agent constraint parsed.
type verifiedRelease struct {
	release Release
	agent   version.Constraints // nil when the release sets none
}

func (t *Trust) verifyRelease(envelope []byte, c *Cache) (verifiedRelease, error) {
	var key [sha256.Size]byte
	if c != nil {
		key = releaseKey(t.digest, envelope)
		if vr, ok := c.release(key); ok {
			return vr, nil
		}
	}
	env, err := decodeEnvelope("release", envelope, MaxReleaseSize, MaxReleaseSize, PayloadTypeRelease)
	if err != nil {
		return verifiedRelease{}, err
	}
	if err := t.keys.verify("release", env, RoleRelease); err != nil {
		return verifiedRelease{}, err
	}
	var vr verifiedRelease
	if err := decodeStrict("release", env.Payload, &vr.release, false); err != nil {
		return verifiedRelease{}, err
	}
	if err := vr.release.Validate(); err != nil {
		return verifiedRelease{}, &Error{Doc: "release", Reason: ErrInvalid, Err: err}
	}
	if vr.release.Agent != "" {
		vr.agent, _ = parseConstraint(vr.release.Agent) // Validate parsed it
	}
	if c != nil {
		c.putRelease(key, vr)
	}
	return vr, nil
}

// releaseKey keys a verified release in a Cache: the digest of the pinned
// root's envelope and of the release envelope's exact bytes. Identical
// bytes under the identical root verify identically, so a hit needs no
// signature check; a new root keys everything afresh.
func releaseKey(root [sha256.Size]byte, envelope []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(root[:])
	h.Write(envelope)
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// Cache remembers, across calls to Verify, what need not be done again:
// the releases already verified (keyed by the digest of the root and of
// the release envelope's bytes) and the specs already compiled (keyed by
// the digests of the definition and of the values, holding the spec
// digest). It saves an agent the ed25519 verification of every release
// and the compilation of every unchanged module each time a new manifest
// comes. It only ever holds results of successful checks, is bounded
// (MaxCacheEntries per table, oldest out first), and is safe for
// concurrent use. Its zero value is ready to use. A Cache serves one
// Verifier: its compile results are those of that Verifier's Compile.
type Cache struct {
	mu       sync.Mutex
	releases fifo[[sha256.Size]byte, verifiedRelease]
	compiled fifo[[2 * sha256.Size]byte, string]

	noCompileMemo bool // benchmarks: measure with release caching only
}

func (c *Cache) release(k [sha256.Size]byte) (verifiedRelease, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.releases.get(k)
}

func (c *Cache) putRelease(k [sha256.Size]byte, vr verifiedRelease) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.releases.put(k, vr)
}

func (c *Cache) compiledDigest(k [2 * sha256.Size]byte) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.compiled.get(k)
}

func (c *Cache) putCompiled(k [2 * sha256.Size]byte, digest string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.compiled.put(k, digest)
}

// fifo is a bounded map that forgets its oldest entry when full.
type fifo[K comparable, V any] struct {
	m    map[K]V
	ring []K
	next int
}

func (f *fifo[K, V]) get(k K) (V, bool) {
	v, ok := f.m[k]
	return v, ok
}

func (f *fifo[K, V]) put(k K, v V) {
	if f.m == nil {
		f.m = make(map[K]V)
	}
	if _, ok := f.m[k]; ok {
		f.m[k] = v
		return
	}
	if len(f.ring) < MaxCacheEntries {
		f.ring = append(f.ring, k)
	} else {
		delete(f.m, f.ring[f.next])
		f.ring[f.next] = k
		f.next = (f.next + 1) % MaxCacheEntries
	}
	f.m[k] = v
}

func (f *fifo[K, V]) len() int { return len(f.m) }
