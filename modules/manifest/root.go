package manifest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"slices"
	"time"

	"github.com/alize-eple/alize/modules"
)

// Root is an academy's root of trust, as TUF has it: the keys, which role
// each serves, and how many of a role's keys must sign. It is signed by its
// own root role; a new version is also signed by the previous one's.
type Root struct {
	Version int                  `json:"version"` // 1, then one more at each rotation
	Expires time.Time            `json:"expires"` // past it, the agent takes no new manifest (freeze)
	Keys    map[string]PublicKey `json:"keys"`    // key id (KeyID) → key
	Roles   Roles                `json:"roles"`
}

// Roles gives each role its keys and threshold. Every key serves exactly
// one role: an online director key can never sign a release or a root.
type Roles struct {
	Root     Role `json:"root"`
	Release  Role `json:"release"`
	Director Role `json:"director"`
}

// Role lists the keys of a role and how many distinct ones must sign.
type Role struct {
	KeyIDs    []string `json:"keyids"`
	Threshold int      `json:"threshold"` // at least 1, at most len(KeyIDs)
}

// Validate checks the root's rules and reports every problem with its path.
func (r *Root) Validate() error {
	var errs modules.FieldErrors
	if r.Version < 1 {
		errs.Add("version", "must be 1 or more, got %d", r.Version)
	}
	if r.Expires.IsZero() {
		errs.Add("expires", "missing")
	}
	if len(r.Keys) == 0 || len(r.Keys) > MaxKeys {
		errs.Add("keys", "must list 1 to %d keys, got %d", MaxKeys, len(r.Keys))
	}
	ids := make([]string, 0, len(r.Keys))
	for id := range r.Keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		k := r.Keys[id]
		path := "keys." + shortID(id)
		if k.Type != KeyTypeEd25519 {
			errs.Add(path+".type", "must be %q, got %s", KeyTypeEd25519, clip(k.Type))
		}
		if len(k.Public) != ed25519.PublicKeySize {
			errs.Add(path+".public", "must be %d bytes, got %d", ed25519.PublicKeySize, len(k.Public))
			continue
		}
		if KeyID(k.Public) != id {
			errs.Add(path, "key id is not the SHA-256 of the key (%s)", shortID(KeyID(k.Public)))
		}
	}
	roleOf := make(map[string]string)
	for _, rr := range []struct {
		name string
		r    Role
	}{{RoleRoot, r.Roles.Root}, {RoleRelease, r.Roles.Release}, {RoleDirector, r.Roles.Director}} {
		path := "roles." + rr.name
		if len(rr.r.KeyIDs) == 0 || len(rr.r.KeyIDs) > MaxKeys {
			errs.Add(path+".keyids", "must list 1 to %d keys, got %d", MaxKeys, len(rr.r.KeyIDs))
		}
		if rr.r.Threshold < 1 || rr.r.Threshold > len(rr.r.KeyIDs) {
			errs.Add(path+".threshold", "must be 1 to %d (the number of keys), got %d", len(rr.r.KeyIDs), rr.r.Threshold)
		}
		for i, id := range rr.r.KeyIDs {
			kpath := fmt.Sprintf("%s.keyids[%d]", path, i)
			if _, ok := r.Keys[id]; !ok {
				errs.Add(kpath, "key %s is not listed in keys", shortID(id))
			}
			if other, ok := roleOf[id]; ok {
				if other == rr.name {
					errs.Add(kpath, "key %s listed twice", shortID(id))
				} else {
					errs.Add(kpath, "key %s already serves role %s: a key serves one role", shortID(id), other)
				}
				continue
			}
			roleOf[id] = rr.name
		}
	}
	for _, id := range ids {
		if _, ok := roleOf[id]; !ok {
			errs.Add("keys."+shortID(id), "serves no role")
		}
	}
	return errs.Err()
}

// SignRoot signs a root with each key given. A first root is signed by its
// own root role's keys; a rotation needs the previous root's root-role
// keys too (enough of each to meet both thresholds).
func SignRoot(r *Root, keys ...*Key) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("manifest: sign root: %w", err)
	}
	payload, err := marshal(r)
	if err != nil {
		return nil, fmt.Errorf("manifest: sign root: %w", err)
	}
	env, err := signEnvelope(PayloadTypeRoot, payload, keys)
	if err != nil {
		return nil, fmt.Errorf("manifest: sign root: %w", err)
	}
	return env, nil
}

// Trust is an agent's pinned root: what it verifies roots, releases and
// manifests against. It is immutable: UpdateRoot returns a new Trust and
// leaves the old one as it was. It is safe for concurrent use.
type Trust struct {
	envelope []byte
	digest   [sha256.Size]byte // of envelope: keys the release cache
	root     Root
	keys     *keyring
}

// PinRoot trusts a root envelope, at enrollment or when the agent starts
// again from the root it stored. The root must be valid and signed by its
// own root role at threshold. Where the envelope comes from is the
// caller's business: at enrollment, an authenticated channel (and, better,
// a digest in the enrollment token compared with Digest(envelope)).
//
// PinRoot does not check expiry, so that an agent that was off past its
// root's expiry can still load it and walk the chain to a fresh one; Verify
// refuses manifests while the pinned root is expired (see CheckFresh).
func PinRoot(envelope []byte) (*Trust, error) {
	env, err := decodeEnvelope("root", envelope, MaxRootSize, MaxRootSize, PayloadTypeRoot)
	if err != nil {
		return nil, err
	}
	t, err := parseRoot(envelope, env.Payload)
	if err != nil {
		return nil, err
	}
	if err := t.keys.verify("root", env, RoleRoot); err != nil {
		return nil, err
	}
	return t, nil
}

// parseRoot decodes and validates a root payload (not yet verified) into
// a Trust.
func parseRoot(envelope, payload []byte) (*Trust, error) {
	var r Root
	if err := decodeStrict("root", payload, &r, false); err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, &Error{Doc: "root", Reason: ErrInvalid, Err: err}
	}
	keys, err := newKeyring(&r)
	if err != nil {
		return nil, &Error{Doc: "root", Reason: ErrInvalid, Err: err}
	}
	return &Trust{
		envelope: bytes.Clone(envelope),
		digest:   sha256.Sum256(envelope),
		root:     r,
		keys:     keys,
	}, nil
}

// UpdateRoot verifies the next root and returns the Trust it makes; t is
// left unchanged, whatever happens. The new root's version must be exactly
// t's plus one: to rotate from version 3 to 6, the agent walks 4, 5 and 6
// in order, each verified against the one before. Each must be signed by
// the previous root's root role at its threshold, and by its own root role
// at its own threshold.
//
// Expiry is not checked here, as TUF does not: an agent may walk past an
// expired intermediate root (a server switched off for a year), and is
// refused manifests only if the last root it reaches is itself expired.
func (t *Trust) UpdateRoot(envelope []byte) (*Trust, error) {
	env, err := decodeEnvelope("root", envelope, MaxRootSize, MaxRootSize, PayloadTypeRoot)
	if err != nil {
		return nil, err
	}
	// Signed by the trusted root first: nothing else is parsed before.
	if err := t.keys.verify("root", env, RoleRoot); err != nil {
		return nil, annotate(err, fmt.Sprintf("checked against the pinned root version %d", t.root.Version))
	}
	next, err := parseRoot(envelope, env.Payload)
	if err != nil {
		return nil, err
	}
	if next.root.Version != t.root.Version+1 {
		return nil, refuse("root", "version", ErrRootVersion, fmt.Sprintf("got %d, pinned %d, want %d", next.root.Version, t.root.Version, t.root.Version+1))
	}
	if err := next.keys.verify("root", env, RoleRoot); err != nil {
		return nil, annotate(err, fmt.Sprintf("checked against the new root version %d itself", next.root.Version))
	}
	return next, nil
}

// CheckFresh returns an *Error with ErrExpired when the pinned root has
// expired at now. Verify calls it: an agent whose root has expired takes
// no new manifest and keeps its last-known-good (freeze) until it walks to
// a fresh root.
func (t *Trust) CheckFresh(now time.Time) error {
	if !now.Before(t.root.Expires) {
		return refuse("root", "expires", ErrExpired, fmt.Sprintf("version %d expired at %s", t.root.Version, t.root.Expires.UTC().Format(time.RFC3339)))
	}
	return nil
}

// Root returns a copy of the pinned root.
func (t *Trust) Root() Root {
	r := t.root
	r.Keys = make(map[string]PublicKey, len(t.root.Keys))
	for id, k := range t.root.Keys {
		r.Keys[id] = PublicKey{Type: k.Type, Public: bytes.Clone(k.Public)}
	}
	r.Roles.Root.KeyIDs = slices.Clone(t.root.Roles.Root.KeyIDs)
	r.Roles.Release.KeyIDs = slices.Clone(t.root.Roles.Release.KeyIDs)
	r.Roles.Director.KeyIDs = slices.Clone(t.root.Roles.Director.KeyIDs)
	return r
}

// Version is the pinned root's version.
func (t *Trust) Version() int { return t.root.Version }

// Envelope returns a copy of the pinned root's envelope, for the agent to
// store and pin again at its next start.
func (t *Trust) Envelope() []byte { return bytes.Clone(t.envelope) }
