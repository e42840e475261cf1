package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/alize-eple/alize/modules/manifest"
)

// ErrNoRun is what a Source answers outside a run: secrets and blobs are
// only at hand while the engine runs a manifest.
var ErrNoRun = errors.New("no manifest is being run")

// Source gives the kinds that resolve references themselves (a bind
// password "secret://ldap_bind", a roster blob by digest) what the
// manifest being run carries. The agent passes one to the kinds when it
// wires them and to New; the engine fills it for the length of each run
// and empties it after, so that no secret stays at hand between runs. It
// is safe for concurrent use.
type Source struct {
	mu sync.RWMutex
	in *Inputs
}

// NewSource returns an empty source.
func NewSource() *Source { return &Source{} }

func (s *Source) set(in *Inputs) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.in = in
}

// Secret returns the secret a reference names: "secret://<name>" (as a
// spec holds it) or "<name>".
func (s *Source) Secret(ref string) (manifest.Secret, error) {
	name := strings.TrimPrefix(ref, SecretPrefix)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.in == nil {
		return manifest.Secret{}, ErrNoRun
	}
	sec, ok := s.in.Secrets[name]
	if !ok {
		return manifest.Secret{}, fmt.Errorf("secret %q: not in the manifest, or it did not open (see the agent's log)", name)
	}
	return sec, nil
}

// BlobPath returns the path of a verified blob's copy, by "blob://<name>",
// name or digest.
func (s *Source) BlobPath(ref string) (string, error) {
	key := strings.TrimPrefix(ref, BlobPrefix)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.in == nil {
		return "", ErrNoRun
	}
	for _, b := range s.in.Blobs {
		if b.Name == key || b.Digest == key {
			return b.Path, nil
		}
	}
	return "", fmt.Errorf("blob %q: not in the manifest, or not fetched yet", key)
}

// Open returns the bytes of a blob of the manifest by its digest
// ("sha256:<hex>"), checked against it. It serves the accounts kind's
// roster.
func (s *Source) Open(digest string) ([]byte, error) {
	p, err := s.BlobPath(digest)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", digest, err)
	}
	sum := sha256.Sum256(b)
	if "sha256:"+hex.EncodeToString(sum[:]) != digest {
		return nil, fmt.Errorf("blob %s: the cached copy is damaged; the agent fetches it again at its next run", digest)
	}
	return b, nil
}
