package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/alize-eple/alize/modules"
	"github.com/alize-eple/alize/modules/manifest"
)

// The references a compiled spec may hold in place of a value the
// manifest carries apart.
const (
	// SecretPrefix + name: the manifest's sealed secret of that name
	// (modules/schema writes it for a secret variable).
	SecretPrefix = "secret://"
	// BlobPrefix + name: the manifest's blob of that name.
	BlobPrefix = "blob://"
)

// Inputs is what a manifest carries beside its specs, ready for one run.
type Inputs struct {
	// Secrets are the manifest's secrets, unsealed, by name.
	Secrets map[string]manifest.Secret
	// Blobs are the manifest's blobs, verified and cached.
	Blobs []Blob
}

// Blob is a verified blob: where its bytes are.
type Blob struct {
	Name   string // "roster"
	Digest string // "sha256:<hex>"
	Path   string // a read-only file holding exactly those bytes
}

// Adapt makes a kind runnable by the engine. deps names the kinds it
// depends on ("shares" depends on "accounts": the groups and homes it
// uses).
//
// Its Plan decodes the compiled spec strictly into S (modules.DecodeSpec),
// runs Validate, then the kind's Plan. The spec reaches the kind as
// compiled: a kind resolves its secret references and blobs itself,
// through the engine's Source. Check runs the kind's modules.Checker when
// it has one.
func Adapt[S any](k modules.Kind[S], deps ...string) Kind {
	return &adapted[S]{k: k, deps: slices.Clone(deps)}
}

// AdaptResolved is Adapt for a kind whose spec takes the values
// themselves: before decoding, every JSON string of the spec that is
// exactly a secret reference ("secret://<name>") is replaced by the
// secret's value, and every blob reference ("blob://<name>") by the path
// of the blob's verified copy.
func AdaptResolved[S any](k modules.Kind[S], deps ...string) Kind {
	return &adapted[S]{k: k, deps: slices.Clone(deps), resolve: true}
}

type adapted[S any] struct {
	k       modules.Kind[S]
	deps    []string
	resolve bool
}

func (a *adapted[S]) Name() string        { return a.k.Name() }
func (a *adapted[S]) DependsOn() []string { return slices.Clone(a.deps) }

func (a *adapted[S]) Plan(ctx context.Context, spec []byte, in Inputs) (modules.Plan, error) {
	want, done, err := a.decode(spec, in)
	if err != nil {
		return modules.Plan{}, err
	}
	defer done()
	return a.k.Plan(ctx, want)
}

func (a *adapted[S]) CheckSpec(ctx context.Context, spec []byte, in Inputs) error {
	c, ok := a.k.(modules.SpecCheck[S])
	if !ok {
		return a.Check(ctx)
	}
	want, done, err := a.decode(spec, in)
	if err != nil {
		return err
	}
	defer done()
	return c.CheckSpec(ctx, want)
}

// decode resolves (for AdaptResolved), decodes and validates a spec; done
// clears the resolved copy, which may hold secrets, once it is used.
func (a *adapted[S]) decode(spec []byte, in Inputs) (want S, done func(), err error) {
	done = func() {}
	if a.resolve {
		resolved, err := in.Resolve(spec)
		if err != nil {
			return want, nil, err
		}
		if len(resolved) > 0 && len(spec) > 0 && &resolved[0] != &spec[0] {
			done = func() { clear(resolved) } // a copy that may hold secrets
		}
		spec = resolved
	}
	want, err = modules.DecodeSpec[S](spec)
	if err != nil {
		done()
		return want, nil, err
	}
	if err := a.k.Validate(want); err != nil {
		done()
		return want, nil, fmt.Errorf("invalid spec: %w", err)
	}
	return want, done, nil
}

func (a *adapted[S]) Apply(ctx context.Context, p modules.Plan) (modules.Result, error) {
	return a.k.Apply(ctx, p)
}

func (a *adapted[S]) Check(ctx context.Context) error {
	if c, ok := a.k.(modules.Checker); ok {
		return c.Check(ctx)
	}
	return ErrNoCheck
}

// Resolve returns spec with every JSON string that is exactly a secret or
// blob reference replaced by the secret's value or the blob's path. A
// reference to a secret or blob the manifest does not carry is an error
// naming it (never a value). A spec without references is returned as is.
func (in Inputs) Resolve(spec []byte) ([]byte, error) {
	if !bytes.Contains(spec, []byte(SecretPrefix)) && !bytes.Contains(spec, []byte(BlobPrefix)) {
		return spec, nil
	}
	dec := json.NewDecoder(bytes.NewReader(spec))
	dec.UseNumber() // keep numbers exactly as compiled
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, fmt.Errorf("decode spec: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("decode spec: trailing data after the spec")
	}
	tree, err := in.resolve(tree)
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(tree)
	if err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}
	return out, nil
}

func (in Inputs) resolve(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			y, err := in.resolve(x)
			if err != nil {
				return nil, err
			}
			v[k] = y
		}
	case []any:
		for i, x := range v {
			y, err := in.resolve(x)
			if err != nil {
				return nil, err
			}
			v[i] = y
		}
	case string:
		if name, ok := strings.CutPrefix(v, SecretPrefix); ok {
			s, ok := in.Secrets[name]
			if !ok {
				return nil, fmt.Errorf("the spec refers to secret %q, which the manifest does not carry", name)
			}
			b := s.Reveal()
			defer clear(b)
			if !utf8.Valid(b) {
				return nil, fmt.Errorf("secret %q is not UTF-8 text: it cannot go into a spec", name)
			}
			return string(b), nil
		}
		if name, ok := strings.CutPrefix(v, BlobPrefix); ok {
			for _, b := range in.Blobs {
				if b.Name == name {
					return b.Path, nil
				}
			}
			return nil, fmt.Errorf("the spec refers to blob %q, which the manifest does not list", name)
		}
	}
	return v, nil
}
