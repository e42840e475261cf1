package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/alize-eple/alize/controller/internal/keys"
	"github.com/alize-eple/alize/controller/internal/store"
	"github.com/alize-eple/alize/modules/manifest"
)

// Roots is the academy's chain of roots as this controller trusts it.
type Roots struct {
	mu        sync.RWMutex
	trust     *manifest.Trust
	envelopes [][]byte // version v at v-1
}

// Current is the trust in the latest root.
func (r *Roots) Current() *manifest.Trust {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.trust
}

// Envelope returns root version v's envelope.
func (r *Roots) Envelope(v int) ([]byte, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if v < 1 || v > len(r.envelopes) {
		return nil, false
	}
	return r.envelopes[v-1], true
}

// Latest returns the latest root's envelope.
func (r *Roots) Latest() []byte {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.envelopes[len(r.envelopes)-1]
}

// LoadRoots reads the chain from the store; when the store has fewer
// versions than the files of keysDir (first start, or a rotation copied
// there), it verifies and stores the files' chain first.
func LoadRoots(ctx context.Context, s store.Store, keysDir string, now time.Time) (*Roots, error) {
	stored, err := s.Roots(ctx)
	if err != nil {
		return nil, err
	}
	var envs [][]byte
	for _, r := range stored {
		envs = append(envs, r.Envelope)
	}
	files, ferr := keys.RootFiles(keysDir)
	if ferr != nil && len(envs) == 0 {
		return nil, ferr
	}
	if len(files) > len(envs) {
		for i, env := range envs {
			if string(env) != string(files[i]) {
				return nil, fmt.Errorf("root version %d in %s is not the one the store holds", i+1, keysDir)
			}
		}
		trust, err := keys.Chain(files)
		if err != nil {
			return nil, err
		}
		var b store.Batch
		for i := len(envs); i < len(files); i++ {
			t, err := keys.Chain(files[:i+1])
			if err != nil {
				return nil, err
			}
			b.Roots = append(b.Roots, store.Root{Version: i + 1, Envelope: files[i], Expires: t.Root().Expires, Added: now})
		}
		b.Events = []store.Event{{Kind: store.EventRoots}}
		if err := s.Commit(ctx, &b); err != nil && !errors.Is(err, store.ErrConflict) {
			return nil, err
		}
		return &Roots{trust: trust, envelopes: files}, nil
	}
	trust, err := keys.Chain(envs)
	if err != nil {
		return nil, err
	}
	return &Roots{trust: trust, envelopes: envs}, nil
}

// next verifies the next root version against the current one.
func (r *Roots) next(env []byte) (*manifest.Trust, error) {
	return r.Current().UpdateRoot(env)
}

// set replaces the chain (after a root was published, here or on
// another replica).
func (r *Roots) set(trust *manifest.Trust, envs [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trust, r.envelopes = trust, envs
}
