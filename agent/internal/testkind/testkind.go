// Package testkind is a kind for the agent's own tests: the files of one
// directory. It lets the agent's end-to-end tests apply real manifests
// without touching the machine: only a test build of alize (build tag
// alizetest) wires it.
//
// Who may import it: agent/cmd/alize's test wiring and agent tests.
package testkind

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/alize-eple/alize/modules"
	"github.com/alize-eple/alize/modules/atomic"
)

// Name is the kind's name.
const Name = "testfiles"

// Spec is the files the directory must hold, and nothing else.
type Spec struct {
	// Files maps a file name to its content.
	Files map[string]string `json:"files"`
	// Copies maps a file name to a file to copy (a blob's path).
	Copies map[string]string `json:"copies,omitempty"`
	// DelayMS makes Apply wait this long before it writes anything, so
	// that a test can kill the agent in the middle of a run.
	DelayMS int `json:"delay_ms,omitempty"`
}

// Kind manages the files of Dir.
type Kind struct {
	Dir string
}

var _ modules.Kind[Spec] = (*Kind)(nil)

// Name is "testfiles".
func (k *Kind) Name() string { return Name }

// Validate refuses names that are not plain file names, and long delays.
func (k *Kind) Validate(want Spec) error {
	var errs modules.FieldErrors
	for _, name := range slices.Sorted(mapKeys(want.Files, want.Copies)) {
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || strings.HasPrefix(name, ".") {
			errs.Add("files."+name, "must be a plain file name")
		}
		if _, ok := want.Files[name]; ok {
			if _, ok := want.Copies[name]; ok {
				errs.Add("copies."+name, "also in files")
			}
		}
	}
	for name, src := range want.Copies {
		if !filepath.IsAbs(src) {
			errs.Add("copies."+name, "must be an absolute path, got %q", src)
		}
	}
	if want.DelayMS < 0 || want.DelayMS > 60000 {
		errs.Add("delay_ms", "must be 0 to 60000")
	}
	return errs.Err()
}

type planned struct {
	want    map[string][]byte
	delayMS int
}

// Plan compares the directory with want.
func (k *Kind) Plan(ctx context.Context, want Spec) (modules.Plan, error) {
	wantData := make(map[string][]byte, len(want.Files)+len(want.Copies))
	for name, content := range want.Files {
		wantData[name] = []byte(content)
	}
	for name, src := range want.Copies {
		b, err := os.ReadFile(src)
		if err != nil {
			return modules.Plan{}, fmt.Errorf("testfiles: copy %s: %w", name, err)
		}
		wantData[name] = b
	}
	have, err := k.read()
	if err != nil {
		return modules.Plan{}, err
	}
	p := modules.Plan{Kind: Name, State: planned{want: wantData, delayMS: want.DelayMS}}
	for _, name := range slices.Sorted(mapKeys(wantData, nil)) {
		old, ok := have[name]
		switch {
		case !ok:
			p.Changes = append(p.Changes, modules.Change{Op: modules.OpCreate, Resource: "file", ID: name, Summary: fmt.Sprintf("create %s (%d bytes)", name, len(wantData[name]))})
		case !bytes.Equal(old, wantData[name]):
			p.Changes = append(p.Changes, modules.Change{Op: modules.OpUpdate, Resource: "file", ID: name, Summary: fmt.Sprintf("rewrite %s (%d bytes)", name, len(wantData[name]))})
		}
	}
	for _, name := range slices.Sorted(mapKeys(have, nil)) {
		if _, ok := wantData[name]; !ok {
			p.Changes = append(p.Changes, modules.Change{Op: modules.OpDelete, Resource: "file", ID: name, Summary: "remove " + name})
		}
	}
	return p, nil
}

// Apply writes and removes files as planned.
func (k *Kind) Apply(ctx context.Context, p modules.Plan) (modules.Result, error) {
	st, ok := p.State.(planned)
	if !ok {
		return modules.Result{}, fmt.Errorf("testfiles: a plan from another kind")
	}
	if st.delayMS > 0 {
		select {
		case <-time.After(time.Duration(st.delayMS) * time.Millisecond):
		case <-ctx.Done():
			return modules.Result{}, ctx.Err()
		}
	}
	if err := os.MkdirAll(k.Dir, 0o755); err != nil {
		return modules.Result{}, fmt.Errorf("testfiles: %w", err)
	}
	res := modules.Result{Kind: Name}
	for _, c := range p.Changes {
		var err error
		path := filepath.Join(k.Dir, c.ID)
		if c.Op == modules.OpDelete {
			err = os.Remove(path)
		} else {
			err = atomic.WriteFile(path, st.want[c.ID], 0o644)
		}
		cr := modules.ChangeResult{Change: c, Status: modules.StatusApplied}
		if err != nil {
			cr.Status, cr.Error = modules.StatusFailed, err.Error()
		}
		res.Changes = append(res.Changes, cr)
	}
	return res, nil
}

func (k *Kind) read() (map[string][]byte, error) {
	des, err := os.ReadDir(k.Dir)
	if os.IsNotExist(err) {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("testfiles: %w", err)
	}
	have := make(map[string][]byte, len(des))
	for _, d := range des {
		if d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(k.Dir, d.Name()))
		if err != nil {
			return nil, fmt.Errorf("testfiles: %w", err)
		}
		have[d.Name()] = b
	}
	return have, nil
}

func mapKeys[V any](a, b map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range a {
			if !yield(k) {
				return
			}
		}
		for k := range b {
			if _, dup := a[k]; dup {
				continue
			}
			if !yield(k) {
				return
			}
		}
	}
}
