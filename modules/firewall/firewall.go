package firewall

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/alize-eple/alize/modules"
)

// Name is the kind's name in modules and manifests.
const Name = "firewall"

// DefaultDeadline is how long a new ruleset has to pass its probes when
// the configuration does not say.
const DefaultDeadline = 30 * time.Second

// StateDir is where the kind keeps its files, under the root directory.
const StateDir = "var/lib/alize/firewall"

// Config is what the agent gives the kind when it wires it in run().
type Config struct {
	// Root is the root directory files go under: "/" in production, a
	// temporary directory in tests.
	Root string
	// Log receives a record per ruleset loaded, confirmed or reverted (the
	// engine logs each change). New adds kind=firewall to it.
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// NetNS is an open file descriptor of the network namespace to manage;
	// 0 means the agent's own.
	NetNS int
	// Lifelines are the rules no manifest can remove.
	Lifelines Lifelines
	// Confirm says how a new ruleset is confirmed.
	Confirm Confirm
}

// Confirm configures commit-confirmed applies.
type Confirm struct {
	// Controller is the controller's "host:port". After each apply a new
	// TLS connection must reach it, with TLS (the agent's own client
	// configuration: its CA pin and client certificate). Empty: no
	// controller probe.
	Controller string
	TLS        *tls.Config
	// Deadline bounds the whole confirmation: every probe must pass
	// before it. 0 means DefaultDeadline.
	Deadline time.Duration
	// Dial opens the probes' connections; nil means a net.Dialer. Tests
	// set it to dial from inside a network namespace.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// Firewall is the firewall kind. It is safe for concurrent use; applies
// and recoveries are serialised.
type Firewall struct {
	root      string
	log       *slog.Logger
	now       func() time.Time
	netns     int
	lifelines Lifelines
	confirm   Confirm

	mu     sync.Mutex
	probes []Probe // of the last confirmed spec, for Check

	cacheMu sync.Mutex
	cache   *compiled // of the last spec planned
}

var (
	_ modules.Kind[Spec]      = (*Firewall)(nil)
	_ modules.Checker         = (*Firewall)(nil)
	_ modules.Validator[Spec] = (*Firewall)(nil)
	_ modules.Validator[Spec] = Validator{}
)

// New returns the firewall kind for cfg.
func New(cfg Config) (*Firewall, error) {
	if cfg.Root == "" || !filepath.IsAbs(cfg.Root) {
		return nil, fmt.Errorf("firewall: root %q: must be an absolute directory", cfg.Root)
	}
	if err := cfg.Lifelines.check(); err != nil {
		return nil, err
	}
	if cfg.Confirm.Controller != "" {
		if cfg.Confirm.TLS == nil {
			return nil, errors.New("firewall: confirm: the controller probe needs the agent's TLS configuration")
		}
		if _, _, err := net.SplitHostPort(cfg.Confirm.Controller); err != nil {
			return nil, fmt.Errorf("firewall: confirm: controller %q: %w", cfg.Confirm.Controller, err)
		}
	}
	if cfg.Confirm.Deadline < 0 {
		return nil, fmt.Errorf("firewall: confirm: deadline %s: must be positive", cfg.Confirm.Deadline)
	}
	f := &Firewall{
		root: cfg.Root, log: cfg.Log, now: cfg.Now, netns: cfg.NetNS,
		lifelines: cfg.Lifelines, confirm: cfg.Confirm,
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	f.log = f.log.With("kind", Name)
	if f.now == nil {
		f.now = time.Now
	}
	if f.confirm.Deadline == 0 {
		f.confirm.Deadline = DefaultDeadline
	}
	if f.confirm.Dial == nil {
		var d net.Dialer
		f.confirm.Dial = d.DialContext
	}
	return f, nil
}

// Name returns "firewall".
func (f *Firewall) Name() string { return Name }

// Validate checks a spec without touching the system, reporting every
// problem with its path.
func (f *Firewall) Validate(want Spec) error { return validate(want).Err() }

// Validator is the part of the kind the controller needs: the spec's
// validation, with no system behind it. Wire it with
// modules.CheckerFor[firewall.Spec](firewall.Validator{}).
type Validator struct{}

// Name returns "firewall".
func (Validator) Name() string { return Name }

// Validate is Firewall.Validate.
func (Validator) Validate(want Spec) error { return validate(want).Err() }

// Render returns the ruleset want makes, lifelines included, as nft text
// (for `alize plan --diff`, golden files and `nft -c -f`).
func (f *Firewall) Render(want Spec) ([]byte, error) {
	if err := f.Validate(want); err != nil {
		return nil, err
	}
	return compile(want, f.lifelines).render(), nil
}

// BootPath is the file holding the last confirmed ruleset as nft text,
// for the boot unit that loads it before the network comes up.
func (f *Firewall) BootPath() string { return filepath.Join(f.root, StateDir, "boot.nft") }

func (f *Firewall) pendingPath() string { return filepath.Join(f.root, StateDir, "pending.json") }

// confirmedPath holds the last confirmed table as a snapshot: the boot
// file's twin, for a revert that cannot use the previous table.
func (f *Firewall) confirmedPath() string { return filepath.Join(f.root, StateDir, "confirmed.json") }

// compiled is a spec made into a table, with what Plan compares.
type compiled struct {
	spec  []byte // the spec as JSON: the cache's key
	rs    *ruleset
	state tableState
	keys  [][]string // of state's rules, chain by chain
}

// planState is what Apply needs of a plan.
type planState struct {
	want   *compiled
	probes []Probe
}

// prepare makes want into a table, or returns the one the last call made
// for the same spec: the agent plans the same spec at every poll.
func (f *Firewall) prepare(want Spec) (*compiled, error) {
	key, err := json.Marshal(want)
	if err != nil {
		return nil, fmt.Errorf("firewall: %w", err)
	}
	f.cacheMu.Lock()
	defer f.cacheMu.Unlock()
	if c := f.cache; c != nil && bytes.Equal(c.spec, key) {
		return c, nil
	}
	c := &compiled{spec: key, rs: compile(want, f.lifelines)}
	c.state = c.rs.state()
	for _, ch := range c.state.chains {
		c.keys = append(c.keys, ch.keys())
	}
	f.cache = c
	return c, nil
}

// Plan reads the live table and compares it with the one want makes.
// It never writes. A spec without zones manages nothing: its plan is
// empty.
func (f *Firewall) Plan(ctx context.Context, want Spec) (modules.Plan, error) {
	p := modules.Plan{Kind: Name}
	if err := f.Validate(want); err != nil {
		return p, fmt.Errorf("firewall: %w", err)
	}
	if len(want.Zones) == 0 {
		return p, nil
	}
	wanted, err := f.prepare(want)
	if err != nil {
		return p, err
	}
	conn, err := dial(f.netns)
	if err != nil {
		return p, fmt.Errorf("firewall: %w", err)
	}
	defer conn.Close()
	have, err := read(conn)
	var unreadable errUnreadable
	switch {
	case errors.As(err, &unreadable):
		p.Changes = []modules.Change{{Op: modules.OpUpdate, Resource: "table", ID: tableID, Summary: "replace the table: " + unreadable.Error()}}
	case err != nil:
		return p, fmt.Errorf("firewall: read table: %w", err)
	default:
		p.Changes = diff(have, wanted)
	}
	p.State = &planState{want: wanted, probes: want.Probes}
	return p, nil
}

// ErrReverted is matched (errors.Is) by the error Apply returns when the
// new ruleset was loaded but not confirmed, and the previous one is back.
var ErrReverted = errors.New("firewall: reverted to the previous ruleset")

// RevertError says why a new ruleset was reverted.
type RevertError struct {
	Reason error // the probes that failed, or the deadline
}

func (e *RevertError) Error() string {
	return fmt.Sprintf("firewall: the new ruleset was not confirmed and the previous one is back: %v", e.Reason)
}

// Is makes errors.Is(err, ErrReverted) true, and errors.Is(err,
// modules.ErrReverted), which the agent's engine reads.
func (e *RevertError) Is(target error) bool {
	return target == ErrReverted || target == modules.ErrReverted
}

func (e *RevertError) Unwrap() error { return e.Reason }

// Apply loads the planned table in one batch, then confirms it with the
// probes. If they do not all pass before the deadline, the previous table
// comes back, every change is reported failed and the error matches
// ErrReverted. A confirmed table is saved for boot.
func (f *Firewall) Apply(ctx context.Context, p modules.Plan) (modules.Result, error) {
	res := modules.Result{Kind: Name}
	if p.Empty() {
		return res, nil
	}
	st, ok := p.State.(*planState)
	if !ok {
		return res, errors.New("firewall: the plan was not made by the firewall kind")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fail := func(err error) (modules.Result, error) {
		for _, c := range p.Changes {
			res.Changes = append(res.Changes, modules.ChangeResult{Change: c, Status: modules.StatusFailed, Error: err.Error()})
		}
		return res, err
	}

	if _, err := f.recoverLocked(ctx); err != nil {
		return fail(err)
	}
	start := f.now()
	conn, err := dial(f.netns)
	if err != nil {
		return fail(fmt.Errorf("firewall: %w", err))
	}
	defer conn.Close()
	prev, err := read(conn)
	var unreadable errUnreadable
	if err != nil && !errors.As(err, &unreadable) {
		return fail(fmt.Errorf("firewall: read the previous table: %w", err))
	}
	rerr := err
	if rerr == nil {
		rerr = prev.restorable()
	}
	if rerr != nil {
		// Drift the kind cannot restore: a revert goes back to the last
		// confirmed ruleset instead, or to no table at all.
		if prev, err = f.lastConfirmed(); err != nil {
			return fail(err)
		}
		f.log.Warn("previous table cannot be restored as it is, a revert would load the last confirmed one", "reason", rerr, "confirmed", prev.exists)
	}
	if err := f.savePending(prev, start); err != nil {
		return fail(err)
	}
	if err := load(conn, st.want.state); err != nil {
		// The kernel refused the batch whole: the previous table is still there.
		return fail(errors.Join(fmt.Errorf("firewall: %w", err), f.removePending()))
	}
	f.log.Info("ruleset loaded", "rules", st.want.state.numRules(), "deadline", f.confirm.Deadline)

	if perr := f.probe(ctx, st.probes); perr != nil {
		f.log.Warn("ruleset not confirmed", "error", perr)
		if err := f.restore(conn, prev); err != nil {
			return fail(err)
		}
		f.log.Warn("ruleset reverted", "took", f.now().Sub(start))
		return fail(&RevertError{Reason: perr})
	}
	if err := f.saveConfirmed(st); err != nil {
		// What is live must be what boots: without the boot file, the
		// previous ruleset comes back.
		err = fmt.Errorf("firewall: save the boot ruleset: %w", err)
		if rerr := f.restore(conn, prev); rerr != nil {
			return fail(errors.Join(err, rerr))
		}
		return fail(&RevertError{Reason: err})
	}
	if err := f.removePending(); err != nil {
		return fail(err)
	}
	f.probes = st.probes
	for _, c := range p.Changes {
		res.Changes = append(res.Changes, modules.ChangeResult{Change: c, Status: modules.StatusApplied})
	}
	f.log.Info("ruleset confirmed", "changes", len(p.Changes), "took", f.now().Sub(start))
	return res, nil
}

// restore loads the previous table back. If the kernel refuses it, the
// last confirmed ruleset comes back instead; if there is none or it is
// refused too, the kind's table is removed: an open server can be reached
// and repaired, a locked one cannot. Only the removal is an error.
func (f *Firewall) restore(conn *nftConn, prev tableState) error {
	err := load(conn, prev)
	if err == nil {
		return f.removePending()
	}
	f.log.Error("previous ruleset refused", "error", err)
	if last, lerr := f.lastConfirmed(); lerr == nil && last.exists {
		if lerr = load(conn, last); lerr == nil {
			f.log.Warn("last confirmed ruleset loaded instead")
			return f.removePending()
		}
		f.log.Error("last confirmed ruleset refused", "error", lerr)
	}
	if derr := load(conn, tableState{}); derr != nil {
		return fmt.Errorf("firewall: restore the previous ruleset: %w; remove the table: %v", err, derr)
	}
	return errors.Join(fmt.Errorf("firewall: restore the previous ruleset: %w; the firewall table was removed instead", err), f.removePending())
}

// Recover reverts a ruleset an earlier run of the agent loaded but did not
// confirm: the agent calls it once at start, before anything else, and
// reports a revert when it returns true. Apply calls it too.
func (f *Firewall) Recover(ctx context.Context) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recoverLocked(ctx)
}

func (f *Firewall) recoverLocked(ctx context.Context) (bool, error) {
	pend, ok, err := f.loadPending()
	if err != nil || !ok {
		return false, err
	}
	prev, err := pend.Previous.decode()
	if err != nil {
		return false, fmt.Errorf("firewall: pending state %s: %w", f.pendingPath(), err)
	}
	conn, err := dial(f.netns)
	if err != nil {
		return false, fmt.Errorf("firewall: %w", err)
	}
	defer conn.Close()
	if err := f.restore(conn, prev); err != nil {
		return false, err
	}
	f.log.Warn("unconfirmed ruleset reverted at start", "loaded_at", pend.Started)
	return true, nil
}

// Check probes, over new connections, the controller and the probes of
// the last confirmed spec, without changing anything.
func (f *Firewall) Check(ctx context.Context) error {
	f.mu.Lock()
	probes := f.probes
	f.mu.Unlock()
	return f.probe(ctx, probes)
}
