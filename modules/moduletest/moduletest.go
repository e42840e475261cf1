// Package moduletest is the conformance harness every kind runs in its
// tests: Plan never writes, Apply(Plan(want)) converges so that a new plan
// is empty, and applying again changes nothing.
//
// Who may import it: tests of kinds only.
package moduletest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/alize-eple/alize/modules"
)

// Observe returns a snapshot of everything the kind may touch (an nft
// ruleset listing, an LDIF dump, a file tree with modes). Two snapshots are
// equal when the system did not change in between.
type Observe func(ctx context.Context) (string, error)

// Run checks that k honours the kind contract for want, failing t
// otherwise. want must differ from the system's current state, so that the
// first plan is not empty.
func Run[S any](t *testing.T, k modules.Kind[S], want S, observe Observe) {
	t.Helper()
	if err := Check(t.Context(), k, want, observe); err != nil {
		t.Fatalf("conformance of kind %q:\n%v", k.Name(), err)
	}
}

// Check is Run without testing.T: it returns every broken rule it found.
func Check[S any](ctx context.Context, k modules.Kind[S], want S, observe Observe) error {
	if err := k.Validate(want); err != nil {
		return fmt.Errorf("Validate(want) = %v, want nil", err)
	}

	before, err := observe(ctx)
	if err != nil {
		return fmt.Errorf("observe: %w", err)
	}
	first, err := k.Plan(ctx, want)
	if err != nil {
		return fmt.Errorf("Plan(want): %w", err)
	}
	after, err := observe(ctx)
	if err != nil {
		return fmt.Errorf("observe: %w", err)
	}
	var errs []error
	if before != after {
		errs = append(errs, fmt.Errorf("Plan(want) wrote to the system:\nbefore:\n%s\nafter:\n%s", before, after))
	}
	if first.Empty() {
		errs = append(errs, errors.New("Plan(want) on a system not yet as wanted is empty: the test's want must differ from the start state"))
	}
	if first.Kind != k.Name() {
		errs = append(errs, fmt.Errorf("Plan(want).Kind = %q, want %q", first.Kind, k.Name()))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}

	res, err := k.Apply(ctx, first)
	if err != nil {
		return fmt.Errorf("Apply(Plan(want)): %w", err)
	}
	if res.Failed() {
		return fmt.Errorf("Apply(Plan(want)) reports failed changes: %+v", res.Changes)
	}
	if len(res.Changes) != len(first.Changes) {
		errs = append(errs, fmt.Errorf("Apply(Plan(want)) reported %d results for %d changes", len(res.Changes), len(first.Changes)))
	}

	second, err := k.Plan(ctx, want)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("Plan(want) after Apply: %w", err))...)
	}
	if !second.Empty() {
		errs = append(errs, fmt.Errorf("Plan(want) after Apply(Plan(want)) is not empty: %v", second.Changes))
	}

	converged, err := observe(ctx)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("observe: %w", err))...)
	}
	if converged == before {
		errs = append(errs, errors.New("Apply(Plan(want)) left the observed system unchanged"))
	}
	again, err := k.Apply(ctx, second)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("second Apply: %w", err))...)
	}
	if len(again.Changes) != 0 {
		errs = append(errs, fmt.Errorf("second Apply of an empty plan reported %d changes", len(again.Changes)))
	}
	// Re-applying the first plan must be harmless too: Apply is safe to re-run.
	if _, err := k.Apply(ctx, first); err != nil {
		errs = append(errs, fmt.Errorf("re-Apply of the first plan: %w", err))
	}
	final, err := observe(ctx)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("observe: %w", err))...)
	}
	if final != converged {
		errs = append(errs, fmt.Errorf("applying twice changed the system:\nafter the first apply:\n%s\nafter applying again:\n%s", converged, final))
	}
	third, err := k.Plan(ctx, want)
	if err != nil {
		errs = append(errs, fmt.Errorf("Plan(want) after re-apply: %w", err))
	} else if !third.Empty() {
		errs = append(errs, fmt.Errorf("Plan(want) after re-apply is not empty: %v", third.Changes))
	}
	return errors.Join(errs...)
}
