// Package director turns operators' changes into signed manifests: under
// the store's compile lock it loads the inventory, applies the change in
// memory, builds the manifest of every server the change concerns
// (resolve the variables, compile each module with its kind's check,
// seal the secrets, sign with the online director key), and commits the
// change, the new manifests and the audit entry in one transaction. Only
// the servers a change concerns are built, and only those whose inputs
// changed get a new manifest, with the next serial.
//
// A change that would make a server's manifest fail to build where it
// built before is refused whole, with the servers and errors: nothing is
// kept. A dry run returns the same plan and keeps nothing.
//
// Who may import it: controller packages only.
package director

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/controller/internal/keys"
	"github.com/alize-eple/alize/controller/internal/store"
	"github.com/alize-eple/alize/modules"
	"github.com/alize-eple/alize/modules/manifest"
)

// Config is what a Director works with.
type Config struct {
	Store store.Store
	// Keys are the director keys manifests are signed with.
	Keys []*manifest.Key
	// Trust returns the current root: releases are verified against it.
	Trust func() *manifest.Trust
	// Checkers are the kinds' spec checks, by kind name: a module of a
	// kind without one is refused.
	Checkers map[string]modules.SpecChecker
	Secrets  *keys.SecretBox
	Clock    func() time.Time
	Log      *slog.Logger
	// ManifestTTL is how long a manifest is valid; RenewBefore, how long
	// before its end it is signed again.
	ManifestTTL time.Duration
	RenewBefore time.Duration
	// Signed is called after a commit with the new manifests, to wake
	// their servers' long polls. It must not keep the slice.
	Signed func(ms []store.Manifest)
	// BuildGC, when above zero, is the collector's GOGC while a change
	// builds the manifests of at least BuildGCServers servers: such a
	// build allocates much and keeps little, and a collector that lets
	// the heap grow to BuildGC% above the live data spends far less CPU
	// on it (a fleet of 17,000: 2.0 s at 400 against 3.7 s at Go's 100).
	// Between builds the collector is as the process set it, so that the
	// heap of a controller holding thousands of connections stays small.
	BuildGC int
}

// BuildGCServers is the size of a build from which Config.BuildGC applies.
const BuildGCServers = 100

// Director builds and signs manifests.
type Director struct {
	cfg    Config
	mu     sync.Mutex
	parsed map[string]*parsedModule

	signed atomic.Uint64 // manifests signed
	failed atomic.Uint64 // server builds that failed
}

// New makes a Director.
func New(cfg Config) *Director {
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ManifestTTL == 0 {
		cfg.ManifestTTL = 14 * 24 * time.Hour
	}
	if cfg.RenewBefore == 0 {
		cfg.RenewBefore = cfg.ManifestTTL / 2
	}
	if cfg.Signed == nil {
		cfg.Signed = func([]store.Manifest) {}
	}
	return &Director{cfg: cfg, parsed: map[string]*parsedModule{}}
}

// SetKeys replaces the director keys (after a root rotation gave the
// director role a new key).
func (d *Director) SetKeys(ks []*manifest.Key) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cfg.Keys = ks
}

func (d *Director) signingKeys() []*manifest.Key {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg.Keys
}

// Stats are the Director's counters, for metrics.
func (d *Director) Stats() (signed, failed uint64) { return d.signed.Load(), d.failed.Load() }

// InputError is a change that is wrong in itself: a bad value, an unknown
// level or module. Its message says what to fix.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func invalid(format string, args ...any) error {
	return &InputError{Err: fmt.Errorf(format, args...)}
}

// RefusedError is a change refused because it would break the manifests
// of servers that build today. Plan lists them with their errors.
type RefusedError struct{ Plan *api.Plan }

func (e *RefusedError) Error() string {
	var b strings.Builder
	n := 0
	for _, s := range e.Plan.Servers {
		if s.Error == "" {
			continue
		}
		if n == 5 {
			fmt.Fprintf(&b, "\n… and %d more", e.Plan.Failed-n)
			break
		}
		fmt.Fprintf(&b, "\nserver %s (%s): %s", s.ServerID, s.UAI, s.Error)
		n++
	}
	return fmt.Sprintf("change refused: the manifests of %d servers would no longer build; nothing was changed%s", e.Plan.Failed, b.String())
}

// Change is an operator's change to what servers must be.
type Change interface {
	// apply checks the change against m, applies it to m, adds its
	// writes to b, and returns the servers it concerns and its audit
	// entry (none when Action is "").
	apply(d *Director, m *model, b *store.Batch, now time.Time) (scope, store.AuditEntry, error)
}

// strictness: may the change break servers that build today?
type lenient interface{ lenient() bool }

// oneServer: the change concerns one server only, whose part of the
// model is all it needs.
type oneServer interface{ server() string }

// oneEstablishment: the change concerns one establishment and its
// servers only.
type oneEstablishment interface{ establishment() string }

// forcing: re-sign manifests even when their inputs did not change.
type forcing interface{ force() bool }

// Apply applies a change as actor: builds the manifests it concerns and,
// unless dryRun, commits the change, the new manifests and the audit
// entry together, then wakes the servers' long polls.
func (d *Director) Apply(ctx context.Context, ch Change, actor string, dryRun bool) (*api.Plan, error) {
	start := time.Now()
	unlock, err := d.cfg.Store.Lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var only loadScope
	switch o := ch.(type) {
	case oneServer:
		only.server = o.server()
	case oneEstablishment:
		only.uai = o.establishment()
	}
	m, err := d.load(ctx, only)
	if err != nil {
		return nil, fmt.Errorf("director: load: %w", err)
	}
	now := d.cfg.Clock().UTC()
	// What built before the change.
	okBefore := map[string]bool{}
	for id, sv := range m.servers {
		_, has := m.manifests[id]
		okBefore[id] = has && sv.CompileError == ""
	}
	b := &store.Batch{CompileErrors: map[string]string{}}
	sc, audit, err := ch.apply(d, m, b, now)
	if err != nil {
		return nil, err
	}
	if err := d.ensureParsed(ctx, m); err != nil {
		return nil, fmt.Errorf("director: %w", err)
	}
	force := false
	if f, ok := ch.(forcing); ok {
		force = f.force()
	}
	strict := true
	if l, ok := ch.(lenient); ok {
		strict = !l.lenient()
	}
	ids := m.ids(sc)
	if d.cfg.BuildGC > 0 && len(ids) >= BuildGCServers {
		// Changes are serialized by the store's lock: one build at a time
		// sets the collector, and sets it back.
		defer debug.SetGCPercent(debug.SetGCPercent(d.cfg.BuildGC))
	}
	results := d.buildAll(m, ids, now, !dryRun, force)
	plan := &api.Plan{DryRun: dryRun, Touched: len(ids)}
	refused := false
	var signedIDs []string
	for _, r := range results {
		switch {
		case r.err != nil:
			plan.Failed++
			plan.Servers = append(plan.Servers, r.plan)
			if strict && okBefore[r.id] {
				refused = true
			}
		case !r.unchanged:
			plan.Changed++
			plan.Servers = append(plan.Servers, r.plan)
		}
	}
	if refused {
		plan.Refused = true
		if dryRun {
			return plan, nil
		}
		return plan, &RefusedError{Plan: plan}
	}
	if dryRun {
		return plan, nil
	}
	for _, r := range results {
		sv := m.servers[r.id]
		switch {
		case r.err != nil:
			if sv.CompileError != r.err.Error() {
				b.CompileErrors[r.id] = r.err.Error()
			}
		case r.unchanged:
			if sv.CompileError != "" {
				b.CompileErrors[r.id] = ""
			}
		default:
			if sv.CompileError != "" {
				b.CompileErrors[r.id] = ""
			}
			b.Manifests = append(b.Manifests, r.record)
			signedIDs = append(signedIDs, r.id)
		}
	}
	if audit.Action != "" {
		audit.Actor, audit.Time = actor, now
		b.Audit = append(b.Audit, audit)
	}
	if len(signedIDs) > 0 {
		b.Events = append(b.Events, store.Event{Kind: store.EventManifests, IDs: signedIDs})
	}
	if b.Empty() {
		return plan, nil
	}
	if err := d.cfg.Store.Commit(ctx, b); err != nil {
		var ie *InputError
		if errors.As(err, &ie) {
			return nil, err
		}
		if errors.Is(err, store.ErrConflict) {
			return nil, &InputError{Err: err}
		}
		return nil, fmt.Errorf("director: commit: %w", err)
	}
	d.signed.Add(uint64(len(signedIDs)))
	d.failed.Add(uint64(plan.Failed))
	d.cfg.Log.Info("change applied", "change", strings.TrimPrefix(fmt.Sprintf("%T", ch), "director."), "action", audit.Action, "target", audit.Target, "actor", actor,
		"touched", plan.Touched, "signed", len(signedIDs), "failed", plan.Failed, "took", time.Since(start).Round(time.Millisecond))
	if len(b.Manifests) > 0 {
		d.cfg.Signed(b.Manifests)
	}
	return plan, nil
}

// Run re-signs, every interval, the manifests that will expire within
// RenewBefore, and builds those of servers that have none, until ctx ends.
func (d *Director) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := d.Apply(ctx, refresh{}, "controller", false); err != nil && ctx.Err() == nil {
			d.cfg.Log.Error("refresh failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
