package moduletest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/alize-eple/alize/modules"
)

// dirKind is a small real kind for the harness's own tests: it keeps the
// files of a directory with the wanted contents. Its flaws are switches, so
// each rule of the contract can be seen catching a broken kind.
type dirKind struct {
	root string

	writesInPlan  bool // Plan touches the disk
	neverConverge bool // Apply does nothing
	appendOnApply bool // Apply appends instead of replacing: not idempotent
}

func (k *dirKind) Name() string { return "dir" }

func (k *dirKind) Validate(want map[string]string) error {
	var errs modules.FieldErrors
	for name := range want {
		if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
			errs.Add("files["+name+"]", "must be a plain file name")
		}
	}
	return errs.Err()
}

func (k *dirKind) Plan(ctx context.Context, want map[string]string) (modules.Plan, error) {
	p := modules.Plan{Kind: k.Name(), State: want}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		have, err := os.ReadFile(filepath.Join(k.root, n))
		switch {
		case errors.Is(err, os.ErrNotExist):
			p.Changes = append(p.Changes, modules.Change{Op: modules.OpCreate, Resource: "file", ID: n, Summary: "create " + n})
		case err != nil:
			return modules.Plan{}, err
		case string(have) != want[n]:
			p.Changes = append(p.Changes, modules.Change{Op: modules.OpUpdate, Resource: "file", ID: n, Summary: "rewrite " + n})
		}
	}
	if k.writesInPlan {
		if err := os.WriteFile(filepath.Join(k.root, ".plan-cache"), []byte("x"), 0o644); err != nil {
			return modules.Plan{}, err
		}
	}
	return p, nil
}

func (k *dirKind) Apply(ctx context.Context, p modules.Plan) (modules.Result, error) {
	want := p.State.(map[string]string)
	res := modules.Result{Kind: k.Name()}
	for _, c := range p.Changes {
		var err error
		switch {
		case k.neverConverge:
		case k.appendOnApply:
			var f *os.File
			f, err = os.OpenFile(filepath.Join(k.root, c.ID), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
			if err == nil {
				_, err = f.WriteString(want[c.ID])
				err = errors.Join(err, f.Close())
			}
		default:
			err = os.WriteFile(filepath.Join(k.root, c.ID), []byte(want[c.ID]), 0o644)
		}
		r := modules.ChangeResult{Change: c, Status: modules.StatusApplied}
		if err != nil {
			r.Status, r.Error = modules.StatusFailed, err.Error()
		}
		res.Changes = append(res.Changes, r)
	}
	return res, nil
}

func observeDir(root string) Observe {
	return func(ctx context.Context) (string, error) {
		entries, err := os.ReadDir(root)
		if err != nil {
			return "", err
		}
		var b strings.Builder
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(root, e.Name()))
			if err != nil {
				return "", err
			}
			fmt.Fprintf(&b, "%s=%q\n", e.Name(), data)
		}
		return b.String(), nil
	}
}

func TestConformingKindPasses(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "motd"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	Run[map[string]string](t, &dirKind{root: root}, map[string]string{"motd": "Bienvenue", "hosts": "127.0.0.1 localhost"}, observeDir(root))
}

func TestBrokenKindsAreCaught(t *testing.T) {
	tests := []struct {
		name string
		kind dirKind
		want string // a piece of the error the harness must give
	}{
		{"plan writes", dirKind{writesInPlan: true}, "Plan(want) wrote to the system"},
		{"apply does nothing", dirKind{neverConverge: true}, "after Apply(Plan(want)) is not empty"},
		{"apply not idempotent", dirKind{appendOnApply: true}, "applying twice changed the system"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := tt.kind
			k.root = t.TempDir()
			err := Check[map[string]string](t.Context(), &k, map[string]string{"motd": "Bienvenue"}, observeDir(k.root))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check(%s) = %v, want an error containing %q", tt.name, err, tt.want)
			}
		})
	}
}

func TestWantAlreadyMetIsRefused(t *testing.T) {
	root := t.TempDir()
	k := &dirKind{root: root}
	err := Check[map[string]string](t.Context(), k, map[string]string{}, observeDir(root))
	if err == nil || !strings.Contains(err.Error(), "must differ from the start state") {
		t.Errorf("Check(empty want) = %v, want the start-state error", err)
	}
}
