package modules

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Kind is agent code that knows how to observe and change one part of a
// server. S is the kind's typed desired-state spec.
//
// Plan observes the system and never writes; Apply does exactly what the
// plan says and is safe to re-run. After Apply(Plan(want)), Plan(want) is
// empty: the moduletest package checks it for every kind.
type Kind[S any] interface {
	Name() string                                      // "firewall"
	Validate(want S) error                             // pure; the controller runs it before signing
	Plan(ctx context.Context, want S) (Plan, error)    // observes the system, never writes
	Apply(ctx context.Context, p Plan) (Result, error) // does exactly p; safe to re-run
}

// Op is what a change does to a resource.
type Op string

// The operations a plan is made of.
const (
	OpCreate Op = "create"
	OpUpdate Op = "update"
	OpDelete Op = "delete" // only for resources the kind owns outright (a share section, a rule)
	OpMove   Op = "move"   // an account moved to the archive, never deleted
)

// Change is one step of a plan, written for a technician and the dashboard.
// It never carries a secret.
type Change struct {
	Op       Op     `json:"op"`
	Resource string `json:"resource"` // "user", "group", "share", "table", "directory", …
	ID       string `json:"id"`       // stable id of the resource: a DN, a share name, a path
	Summary  string `json:"summary"`  // one line a technician reads
}

func (c Change) String() string {
	return fmt.Sprintf("%s %s %s: %s", c.Op, c.Resource, c.ID, c.Summary)
}

// Plan is what a kind would do to reach the desired state. An empty plan
// means the server is as wanted; a non-empty plan on a server that was
// compliant is drift.
//
// Kinds keep whatever they need to apply the plan in State: the engine
// passes it back to Apply untouched and never serialises it.
type Plan struct {
	Kind    string   `json:"kind"`
	Changes []Change `json:"changes"`
	State   any      `json:"-"`
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool { return len(p.Changes) == 0 }

// Status is the outcome of one change.
type Status string

// The outcomes a result reports per change.
const (
	StatusApplied Status = "applied"
	StatusFailed  Status = "failed"
	StatusSkipped Status = "skipped" // not attempted because an earlier change it depends on failed
)

// ChangeResult is what happened to one change of a plan.
type ChangeResult struct {
	Change Change `json:"change"`
	Status Status `json:"status"`
	Error  string `json:"error,omitempty"` // never a secret
}

// Result is what Apply did, change by change.
type Result struct {
	Kind    string         `json:"kind"`
	Changes []ChangeResult `json:"changes"`
}

// Failed reports whether any change failed.
func (r Result) Failed() bool {
	for _, c := range r.Changes {
		if c.Status == StatusFailed {
			return true
		}
	}
	return false
}

// Checker is the optional ability of a kind to check, after applying, that
// the result actually works (a firewall probing its lifelines, a share
// listed by a client).
type Checker interface {
	Check(ctx context.Context) error
}

// SpecCheck is the optional ability of a kind to run its
// check from a spec, in a process that has not planned or applied it yet
// (alize check): the spec says where its services are (the directory's
// address, for the accounts).
type SpecCheck[S any] interface {
	CheckSpec(ctx context.Context, want S) error
}

// SpecChecker decodes a compiled spec strictly into a kind's Go type and
// validates it. The controller holds one per kind, wired explicitly, and
// runs it before it signs a manifest; the agent runs the same before it
// applies.
type SpecChecker func(spec []byte) error

// Validator is the part of a kind that needs no system: decoding and
// validating its spec.
type Validator[S any] interface {
	Name() string
	Validate(want S) error
}

// CheckerFor returns the SpecChecker of a kind.
func CheckerFor[S any](k Validator[S]) SpecChecker {
	return func(spec []byte) error {
		want, err := DecodeSpec[S](spec)
		if err != nil {
			return fmt.Errorf("%s: %w", k.Name(), err)
		}
		if err := k.Validate(want); err != nil {
			return fmt.Errorf("%s: %w", k.Name(), err)
		}
		return nil
	}
}

// DecodeSpec decodes a JSON spec strictly: an unknown field, a field name
// in the wrong case, a key given twice, nesting deeper than 64 levels and
// trailing data are all errors.
func DecodeSpec[S any](spec []byte) (S, error) {
	var want S
	err := decodeStrict(spec, &want)
	return want, err
}

// FieldErrors collects validation problems, each with the path of the field
// it concerns, so that one run reports every problem at once.
type FieldErrors []FieldError

// FieldError is one validation problem: "zones[2].services[0].port: must be 1-65535".
type FieldError struct {
	Path    string
	Message string
}

func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Message
	}
	return e.Path + ": " + e.Message
}

// Add records a problem at path.
func (es *FieldErrors) Add(path, format string, args ...any) {
	*es = append(*es, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

// Err returns nil when there is no problem, else the errors joined.
func (es FieldErrors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

func (es FieldErrors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap lets errors.As find each FieldError.
func (es FieldErrors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// ErrReverted is matched (errors.Is) by the error of an Apply that
// applied its changes, then rolled them back because they could not be
// confirmed (the firewall's commit-confirmed): the system is as before,
// and the agent reports the run reverted rather than failing.
var ErrReverted = errors.New("applied, then reverted")
