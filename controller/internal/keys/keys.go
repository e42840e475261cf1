// Package keys handles the academy's signing keys as files an operator can
// move offline: the key ceremony (Init: root, release and director keys
// and the first root), root rotation (Rotate: a new root version signed
// by the old root keys and the new), release signing (SignRelease, run
// where the release key lives), loading the chain of roots, and the
// controller's own age key that seals secret variables at rest.
//
// Key files are PKCS#8 PEM, mode 0600; a key file readable by others is
// refused, as ssh does.
//
// Who may import it: controller packages only.
package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/alize-eple/alize/modules/atomic"
	"github.com/alize-eple/alize/modules/manifest"
	"github.com/alize-eple/alize/modules/schema"
)

// File names in a keys directory.
const (
	RootKeyFile     = "root.key"
	ReleaseKeyFile  = "release.key"
	DirectorKeyFile = "director.key"
)

// RootFile is the name of root version v's envelope.
func RootFile(v int) string { return fmt.Sprintf("root-%d.json", v) }

var rootFileRE = regexp.MustCompile(`^root-([1-9][0-9]*)\.json$`)

// WriteKey writes a new private key file, 0600. It never overwrites.
func WriteKey(path string, priv ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	if _, err := f.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		f.Close()
		return fmt.Errorf("keys: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("keys: %w", err)
	}
	return f.Close()
}

// ReadKey reads a private key file. It refuses a file that others than
// its owner may read.
func ReadKey(path string) (*manifest.Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("keys: %s is readable by others (mode %04o): chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("keys: %s: not a PEM \"PRIVATE KEY\"", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("keys: %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("keys: %s: not an ed25519 key", path)
	}
	return manifest.NewKey(priv)
}

func newKey(path string) (*manifest.Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if err := WriteKey(path, priv); err != nil {
		return nil, err
	}
	return manifest.NewKey(priv)
}

// Init is the key ceremony: in dir (made 0700, which must not hold keys
// yet) it makes the root, release and director keys and the first root,
// signed by the root key, expiring at expires.
func Init(dir string, expires time.Time) (*manifest.Trust, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	for _, f := range []string{RootKeyFile, ReleaseKeyFile, DirectorKeyFile, RootFile(1)} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return nil, fmt.Errorf("keys: %s exists already: keys init runs once; use keys rotate", filepath.Join(dir, f))
		}
	}
	var ks [3]*manifest.Key
	for i, f := range []string{RootKeyFile, ReleaseKeyFile, DirectorKeyFile} {
		k, err := newKey(filepath.Join(dir, f))
		if err != nil {
			return nil, err
		}
		ks[i] = k
	}
	root := &manifest.Root{
		Version: 1,
		Expires: expires.UTC(),
		Keys:    map[string]manifest.PublicKey{},
		Roles: manifest.Roles{
			Root:     manifest.Role{KeyIDs: []string{ks[0].ID()}, Threshold: 1},
			Release:  manifest.Role{KeyIDs: []string{ks[1].ID()}, Threshold: 1},
			Director: manifest.Role{KeyIDs: []string{ks[2].ID()}, Threshold: 1},
		},
	}
	for _, k := range ks {
		root.Keys[k.ID()] = k.PublicKey()
	}
	env, err := manifest.SignRoot(root, ks[0])
	if err != nil {
		return nil, err
	}
	trust, err := manifest.PinRoot(env)
	if err != nil {
		return nil, fmt.Errorf("keys: the new root does not verify: %w", err)
	}
	if err := atomic.WriteFile(filepath.Join(dir, RootFile(1)), env, 0o644); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return trust, nil
}

// Roles that Rotate may give new keys.
var rotatable = []string{manifest.RoleRoot, manifest.RoleRelease, manifest.RoleDirector}

// Rotate makes the next root version in dir, which holds the chain of
// roots and the current root key: the roles named get a new key (the old
// key file is kept as <role>-v<N>.key), the others keep theirs. The new
// root is signed by the old root key and, when the root key changes, by
// the new one too, as agents walking the chain require.
func Rotate(dir string, roles []string, expires time.Time) (*manifest.Trust, error) {
	for _, r := range roles {
		if !slices.Contains(rotatable, r) {
			return nil, fmt.Errorf("keys: rotate: unknown role %q (want root, release or director)", r)
		}
	}
	envs, err := RootFiles(dir)
	if err != nil {
		return nil, err
	}
	trust, err := Chain(envs)
	if err != nil {
		return nil, err
	}
	oldRootKey, err := ReadKey(filepath.Join(dir, RootKeyFile))
	if err != nil {
		return nil, err
	}
	cur := trust.Root()
	if !slices.Contains(cur.Roles.Root.KeyIDs, oldRootKey.ID()) {
		return nil, fmt.Errorf("keys: rotate: %s is not a root key of root version %d", RootKeyFile, cur.Version)
	}
	if cur.Roles.Root.Threshold > 1 {
		return nil, fmt.Errorf("keys: rotate: root version %d needs %d root signatures; this tool holds one root key", cur.Version, cur.Roles.Root.Threshold)
	}
	next := manifest.Root{Version: cur.Version + 1, Expires: expires.UTC(), Keys: map[string]manifest.PublicKey{}, Roles: cur.Roles}
	signers := []*manifest.Key{oldRootKey}
	files := map[string]string{manifest.RoleRoot: RootKeyFile, manifest.RoleRelease: ReleaseKeyFile, manifest.RoleDirector: DirectorKeyFile}
	for _, role := range roles {
		path := filepath.Join(dir, files[role])
		retired := filepath.Join(dir, fmt.Sprintf("%s-v%d.key", role, cur.Version))
		if _, err := os.Stat(path); err == nil {
			if err := os.Rename(path, retired); err != nil {
				return nil, fmt.Errorf("keys: rotate: %w", err)
			}
		}
		k, err := newKey(path)
		if err != nil {
			return nil, err
		}
		r := manifest.Role{KeyIDs: []string{k.ID()}, Threshold: 1}
		switch role {
		case manifest.RoleRoot:
			next.Roles.Root = r
			signers = append(signers, k)
		case manifest.RoleRelease:
			next.Roles.Release = r
		case manifest.RoleDirector:
			next.Roles.Director = r
		}
		next.Keys[k.ID()] = k.PublicKey()
	}
	for _, r := range []manifest.Role{next.Roles.Root, next.Roles.Release, next.Roles.Director} {
		for _, id := range r.KeyIDs {
			if _, ok := next.Keys[id]; !ok {
				next.Keys[id] = cur.Keys[id]
			}
		}
	}
	env, err := manifest.SignRoot(&next, signers...)
	if err != nil {
		return nil, err
	}
	nt, err := trust.UpdateRoot(env)
	if err != nil {
		return nil, fmt.Errorf("keys: rotate: the new root does not verify against the old: %w", err)
	}
	if err := atomic.WriteFile(filepath.Join(dir, RootFile(next.Version)), env, 0o644); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return nt, nil
}

// RootFiles reads the root envelopes of dir (root-N.json), in version
// order: 1, 2, … without a gap.
func RootFiles(dir string) ([][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	var versions []int
	for _, e := range entries {
		if m := rootFileRE.FindStringSubmatch(e.Name()); m != nil {
			v, _ := strconv.Atoi(m[1])
			versions = append(versions, v)
		}
	}
	slices.Sort(versions)
	if len(versions) == 0 {
		return nil, fmt.Errorf("keys: no %s in %s: run keys init", RootFile(1), dir)
	}
	var envs [][]byte
	for i, v := range versions {
		if v != i+1 {
			return nil, fmt.Errorf("keys: %s: %s is missing", dir, RootFile(i+1))
		}
		b, err := os.ReadFile(filepath.Join(dir, RootFile(v)))
		if err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		envs = append(envs, b)
	}
	return envs, nil
}

// Chain verifies a chain of root envelopes, versions 1 to N, each signed
// as the one before requires, and returns the trust in the last.
func Chain(envs [][]byte) (*manifest.Trust, error) {
	if len(envs) == 0 {
		return nil, errors.New("keys: no root")
	}
	t, err := manifest.PinRoot(envs[0])
	if err != nil {
		return nil, fmt.Errorf("keys: root version 1: %w", err)
	}
	if t.Version() != 1 {
		return nil, fmt.Errorf("keys: the first root is version %d, want 1", t.Version())
	}
	for i, env := range envs[1:] {
		if t, err = t.UpdateRoot(env); err != nil {
			return nil, fmt.Errorf("keys: root version %d: %w", i+2, err)
		}
	}
	return t, nil
}

// DirectorKeys reads the director key files of dir (director.key and
// director-*.key) and returns those the root lists for its director role.
func DirectorKeys(dir string, root manifest.Root) ([]*manifest.Key, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "director*.key"))
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	var out []*manifest.Key
	for _, p := range paths {
		k, err := ReadKey(p)
		if err != nil {
			return nil, err
		}
		if slices.Contains(root.Roles.Director.KeyIDs, k.ID()) {
			out = append(out, k)
		}
	}
	if len(out) < root.Roles.Director.Threshold {
		return nil, fmt.Errorf("keys: %s holds %d of the director keys root version %d lists, %d needed: copy the new %s there",
			dir, len(out), root.Version, root.Roles.Director.Threshold, DirectorKeyFile)
	}
	return out, nil
}

// SignRelease signs the release of a module definition file with release
// keys: name, version, kind and agent constraint come from the
// definition, which must parse.
func SignRelease(definition []byte, counter uint64, keys ...*manifest.Key) ([]byte, *manifest.Release, error) {
	m, err := schema.ParseModule(definition)
	if err != nil {
		return nil, nil, fmt.Errorf("module definition: %w", err)
	}
	r := &manifest.Release{
		Name:    m.Name,
		Version: m.Version,
		Kind:    m.Kind,
		Digest:  manifest.Digest(definition),
		Counter: counter,
		Agent:   m.Requires.Agent,
	}
	env, err := manifest.SignRelease(r, keys...)
	if err != nil {
		return nil, nil, err
	}
	return env, r, nil
}
