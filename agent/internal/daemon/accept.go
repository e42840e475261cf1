package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/alize-eple/alize/agent/internal/engine"
	"github.com/alize-eple/alize/agent/internal/identity"
	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/modules/manifest"
)

// RefusedError is a manifest the agent refused: the last-known-good stays
// applied, and the refusal is reported.
type RefusedError struct {
	Refusal api.Refusal
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("manifest refused (%s): %s", e.Refusal.Code, e.Refusal.Message)
}

func refusal(err error) *RefusedError {
	code := manifest.Code(err)
	if code == "" {
		code = "invalid"
	}
	return &RefusedError{Refusal: api.Refusal{Code: code, Message: err.Error()}}
}

// rootCodes are the refusals a root rotation can explain: the manifest is
// signed by keys of a root newer than the pinned one.
var rootCodes = map[string]bool{"unknown_key": true, "threshold": true, "wrong_role": true, "expired": true}

// verify verifies an envelope from the controller against the pinned root
// and the last state. When the refusal may come from a root rotation, it
// walks the controller's newer roots, one version at a time, and tries
// again. A *RefusedError when the manifest is refused.
func (a *Agent) verify(ctx context.Context, env []byte) (*manifest.Manifest, manifest.State, error) {
	last := a.lastState()
	m, next, err := a.verifyFetching(ctx, env, last)
	if err == nil {
		return m, next, nil
	}
	if settled(err) {
		return nil, manifest.State{}, err
	}
	if !rootCodes[manifest.Code(err)] {
		return nil, manifest.State{}, refusal(err)
	}
	walked, werr := a.walkRoots(ctx)
	if werr != nil {
		a.log.Warn("root rotation failed", "err", werr)
	}
	if !walked {
		return nil, manifest.State{}, refusal(err)
	}
	m, next, err = a.verifyFetching(ctx, env, last)
	if settled(err) {
		return nil, manifest.State{}, err
	}
	if err != nil {
		return nil, manifest.State{}, refusal(err)
	}
	return m, next, nil
}

// settled reports whether err already says what happened: a refusal, or
// a definition that could not be fetched now (not a refusal).
func settled(err error) bool {
	return errors.As(err, new(*fetchError)) || errors.As(err, new(*RefusedError))
}

// fetchError is a definition the agent could not fetch now (the
// controller out of reach…): not a refusal, tried again at the next poll.
type fetchError struct{ err error }

func (e *fetchError) Error() string { return e.err.Error() }
func (e *fetchError) Unwrap() error { return e.err }

// verifyFetching verifies env; when the verifier lacks module definitions
// (they travel apart, by digest), it fetches them into the cache and
// verifies again. A definition that cannot be fetched now is an error
// that is not a refusal: the agent tries again at its next poll.
func (a *Agent) verifyFetching(ctx context.Context, env []byte, last manifest.State) (*manifest.Manifest, manifest.State, error) {
	m, next, err := a.verifier().Verify(env, last)
	missing := manifest.MissingDefinitions(err)
	if missing == nil {
		return m, next, err
	}
	for _, digest := range missing {
		if err := a.fetchDefinition(ctx, digest); err != nil {
			if errors.As(err, new(*RefusedError)) {
				return nil, manifest.State{}, err
			}
			return nil, manifest.State{}, &fetchError{err}
		}
	}
	return a.verifier().Verify(env, last)
}

// walkRoots fetches the roots after the pinned one from the controller and
// pins each in turn (each verified against the one before). It reports
// whether the pinned root changed.
func (a *Agent) walkRoots(ctx context.Context) (bool, error) {
	a.mu.Lock()
	trust, client := a.trust, a.client
	a.mu.Unlock()
	walked := false
	for range 100 {
		env, err := client.Root(ctx, trust.Version()+1)
		if api.IsCode(err, api.CodeNotFound) {
			break
		}
		if err != nil {
			return walked, err
		}
		next, err := trust.UpdateRoot(env)
		if err != nil {
			return walked, fmt.Errorf("root version %d: %w", trust.Version()+1, err)
		}
		if err := identity.SaveTrust(a.store, next); err != nil {
			return walked, err
		}
		a.log.Info("root rotated", "version", next.Version())
		trust, walked = next, true
		a.mu.Lock()
		a.trust = trust
		a.mu.Unlock()
	}
	return walked, nil
}

// accept verifies a new manifest, opens its secrets, fetches its blobs
// and stores it as the last-known-good. A *RefusedError when it is
// refused; another error when it could not be taken now (a blob the
// controller did not serve): the agent tries again at the next poll.
func (a *Agent) accept(ctx context.Context, env []byte, etag string) (*Stored, error) {
	m, next, err := a.verify(ctx, env)
	if err != nil {
		return nil, err
	}
	id := a.identity()
	for _, ref := range m.Secrets {
		sec, err := manifest.Unseal(id.AgeIdentity(), id.ServerID, ref)
		if err != nil {
			return nil, refusal(err)
		}
		_ = sec // opened to check it; unsealed again at each run, never kept
	}
	for _, ref := range m.Blobs {
		if _, err := a.blob(ctx, ref, true); err != nil {
			var re *RefusedError
			if errors.As(err, &re) {
				return nil, err
			}
			return nil, fmt.Errorf("manifest %d: %w", m.Serial, err)
		}
	}
	st := newStored(env, etag, a.now(), m, next)
	if err := st.save(a.store); err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.lkg = st
	a.mu.Unlock()
	a.gcBlobs(st)
	return st, nil
}

// blobPath is where a blob of that digest is kept.
func (a *Agent) blobPath(digest string) string {
	return a.store.Path(dirBlobs + "/" + strings.Replace(digest, ":", "-", 1))
}

// blob returns the path of a verified copy of the blob: the cached one
// when it is there and intact, else (when fetch is set) one fetched from
// the controller. A blob is never fetched again once cached.
func (a *Agent) blob(ctx context.Context, ref manifest.BlobRef, fetch bool) (string, error) {
	path := a.blobPath(ref.Digest)
	err := checkBlobFile(path, ref)
	if err == nil {
		return path, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		a.log.Warn("cached blob damaged, fetching it again", "blob", ref.Name, "err", err)
		os.Remove(path)
	}
	if !fetch {
		return "", fmt.Errorf("blob %s (%s) is not in the cache: the daemon fetches it at its next poll", ref.Name, ref.Digest)
	}
	return path, a.fetchBlob(ctx, ref.Name, ref.Digest, ref.Size, func(sum []byte, tmp string) error { return checkSum(ref, sum, tmp) })
}

// fetchBlob fetches at most limit bytes of the blob of that digest from
// the controller into the cache, through check (given the bytes' SHA-256
// and the file), and moves it in place only when check passes.
func (a *Agent) fetchBlob(ctx context.Context, name, digest string, limit int64, check func(sum []byte, tmp string) error) error {
	path := a.blobPath(digest)
	a.mu.Lock()
	client := a.client
	a.mu.Unlock()
	if client == nil {
		return fmt.Errorf("blob %s (%s) is not in the cache, and this server is not enrolled", name, digest)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-blob-*")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	h := sha256.New()
	err = client.Blob(ctx, digest, limit, io.MultiWriter(f, h))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if errors.Is(err, api.ErrTooLarge) {
			return &RefusedError{Refusal: api.Refusal{Code: "blob_size", Message: fmt.Sprintf("blob %s: the controller sent more than the %d bytes allowed", name, limit)}}
		}
		return fmt.Errorf("fetch blob %s: %w", name, err)
	}
	if err := check(h.Sum(nil), tmp); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o400); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	a.log.Info("blob fetched", "blob", name, "digest", digest)
	return nil
}

// fetchDefinition fetches a module definition by its digest (the one a
// signed release names) into the blob cache.
func (a *Agent) fetchDefinition(ctx context.Context, digest string) error {
	return a.fetchBlob(ctx, "module definition", digest, manifest.MaxDefinitionSize, func(sum []byte, _ string) error {
		if got := "sha256:" + hex.EncodeToString(sum); got != digest {
			return &RefusedError{Refusal: api.Refusal{Code: "definition_digest", Message: fmt.Sprintf("module definition: bytes are %s, the release signed %s", got, digest)}}
		}
		return nil
	})
}

// definition is the verifier's store of module definitions: the cached
// blob of that digest when it is intact, else nil (the verifier then asks
// for it to be fetched). Definitions read are kept in memory.
func (a *Agent) definition(digest string) []byte {
	a.defsMu.Lock()
	defer a.defsMu.Unlock()
	if d, ok := a.defs[digest]; ok {
		return d
	}
	data, err := os.ReadFile(a.blobPath(digest))
	if err != nil || len(data) > manifest.MaxDefinitionSize || manifest.Digest(data) != digest {
		return nil
	}
	if a.defs == nil || len(a.defs) >= manifest.MaxModules*2 {
		a.defs = map[string][]byte{}
	}
	a.defs[digest] = data
	return data
}

// checkBlobFile checks a cached blob against its reference, reading it
// through a hash (never whole in memory).
func checkBlobFile(path string, ref manifest.BlobRef) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, ref.Size+1)); err != nil {
		return err
	}
	return checkSum(ref, h.Sum(nil), path)
}

func checkSum(ref manifest.BlobRef, sum []byte, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Size() != ref.Size {
		return &RefusedError{Refusal: api.Refusal{Code: "blob_size", Message: fmt.Sprintf("blob %s: %d bytes, the manifest lists %d", ref.Name, fi.Size(), ref.Size)}}
	}
	if got := "sha256:" + hex.EncodeToString(sum); got != ref.Digest {
		return &RefusedError{Refusal: api.Refusal{Code: "blob_digest", Message: fmt.Sprintf("blob %s: bytes are %s, the manifest lists %s", ref.Name, got, ref.Digest)}}
	}
	return nil
}

// gcBlobs removes the cached blobs the manifest no longer lists.
func (a *Agent) gcBlobs(st *Stored) {
	keep := map[string]bool{}
	for _, b := range st.Blobs {
		keep[filepath.Base(a.blobPath(b.Digest))] = true
	}
	for _, m := range st.Modules {
		keep[filepath.Base(a.blobPath(manifest.Digest(m.Definition)))] = true
	}
	des, err := os.ReadDir(a.store.Path(dirBlobs))
	if err != nil {
		return
	}
	for _, d := range des {
		if !keep[d.Name()] {
			os.Remove(filepath.Join(a.store.Path(dirBlobs), d.Name()))
		}
	}
}

// inputs opens the stored manifest's secrets and finds its blobs, for one
// run. A secret that does not open or a blob not in the cache is left out:
// the kinds that refer to it fail, saying which.
func (a *Agent) inputs(ctx context.Context, st *Stored, fetch bool) engine.Inputs {
	in := engine.Inputs{Secrets: map[string]manifest.Secret{}}
	id := a.identity()
	for _, ref := range st.Secrets {
		sec, err := manifest.Unseal(id.AgeIdentity(), id.ServerID, ref)
		if err != nil {
			a.log.Error("secret does not open", "secret", ref.Name, "err", err)
			continue
		}
		in.Secrets[ref.Name] = sec
	}
	for _, ref := range st.Blobs {
		p, err := a.blob(ctx, ref, fetch)
		if err != nil {
			a.log.Error("blob unavailable", "blob", ref.Name, "err", err)
			continue
		}
		in.Blobs = append(in.Blobs, engine.Blob{Name: ref.Name, Digest: ref.Digest, Path: p})
	}
	return in
}
