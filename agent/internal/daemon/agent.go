// Package daemon is what `alize run` does: load the last-known-good
// manifest, tell systemd it is ready, poll the controller in the server's
// own time slot, verify each new manifest, unseal its secrets, fetch its
// blobs, apply it through the engine, report through the on-disk outbox,
// check for drift on a timer, and answer the local control socket. The
// same Agent serves the technician's commands run alone (apply, plan,
// status, check) when no daemon runs.
//
// Who may import it: agent/cmd/alize and agent tests.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-version"

	"github.com/alize-eple/alize/agent/internal/engine"
	"github.com/alize-eple/alize/agent/internal/identity"
	"github.com/alize-eple/alize/agent/internal/state"
	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/modules/manifest"
	"github.com/alize-eple/alize/modules/schema"
)

// Defaults.
const (
	DefaultSocket        = "/run/alize/agent.sock"
	DefaultDriftInterval = 30 * time.Minute
	DefaultRunTimeout    = 15 * time.Minute
	// OutboxSize bounds the reports kept while the controller is out of
	// reach: at one report per drift run every 30 min, over three weeks.
	OutboxSize = 1000
	// HistorySize bounds the run history.
	HistorySize = 200
)

// ErrNoManifest: nothing to apply yet.
var ErrNoManifest = errors.New("no manifest yet: the agent has not received one from the controller (see alize status)")

// KindsFunc builds the kinds the agent applies, once its identity is
// known (id is nil before enrollment: the firewall's lifelines need the
// controller's address). src gives the kinds the secrets and blobs of the
// manifest being run.
type KindsFunc func(id *identity.Identity, src *engine.Source) ([]engine.Kind, error)

// Options configure an Agent.
type Options struct {
	Store   *state.Store
	Kinds   KindsFunc
	Log     *slog.Logger
	Now     func() time.Time
	Version string // this agent's version (semver)

	// Socket is the control socket's path (DefaultSocket).
	Socket string
	// DriftInterval is how often the daemon checks for drift
	// (DefaultDriftInterval); RunTimeout bounds one run.
	DriftInterval time.Duration
	RunTimeout    time.Duration
	// Mode, when set, overrides every module's mode; Modes overrides the
	// mode of the modules it names. Without either, a module's mode is its
	// alize_mode variable (enforce when it has none).
	Mode  engine.Mode
	Modes map[string]engine.Mode
	// Notify sends an sd_notify message ("READY=1"); nil sends nothing.
	Notify func(state string)
	// Rand is the schedule's random source; nil for a random one.
	Rand *rand.Rand
	// Checks are the local services alize check probes.
	Checks CheckTargets
}

// Agent is the agent on one server.
type Agent struct {
	opts    Options
	store   *state.Store
	log     *slog.Logger
	now     func() time.Time
	version *version.Version
	outbox  *state.Outbox
	cache   manifest.Cache
	// compiler keeps the parsed module definitions: a manifest whose
	// values changed recompiles without parsing its modules again.
	compiler schema.Compiler
	// defs keeps the module definitions read from the blob cache.
	defsMu sync.Mutex
	defs   map[string][]byte

	factsOnce sync.Once
	factsVal  api.Facts

	mu       sync.Mutex
	id       *identity.Identity
	engine   *engine.Engine
	client   *api.Client
	trust    *manifest.Trust
	lkg      *Stored
	warnings []string
	live     Live
}

// New returns the agent of opts.Store. It loads nothing yet.
func New(opts Options) (*Agent, error) {
	if opts.Store == nil || opts.Kinds == nil || opts.Log == nil || opts.Now == nil {
		return nil, errors.New("daemon: New needs Store, Kinds, Log and Now")
	}
	v, err := version.NewSemver(opts.Version)
	if err != nil {
		return nil, fmt.Errorf("daemon: agent version %q: %w", opts.Version, err)
	}
	if opts.Socket == "" {
		opts.Socket = DefaultSocket
	}
	if opts.DriftInterval <= 0 {
		opts.DriftInterval = DefaultDriftInterval
	}
	if opts.RunTimeout <= 0 {
		opts.RunTimeout = DefaultRunTimeout
	}
	if opts.Notify == nil {
		opts.Notify = func(string) {}
	}
	ob, err := opts.Store.Outbox(OutboxSize)
	if err != nil {
		return nil, err
	}
	return &Agent{opts: opts, store: opts.Store, log: opts.Log, now: opts.Now, version: v, outbox: ob}, nil
}

// Store is the agent's state directory.
func (a *Agent) Store() *state.Store { return a.store }

// userAgent names the agent to the controller.
func (a *Agent) userAgent() string { return "alize/" + a.opts.Version }

// warn records a problem the technician must see in alize status (a
// corrupt state file set aside…), and logs it.
func (a *Agent) warn(msg string, err error) {
	a.log.Warn(msg, "err", err)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.warnings = append(a.warnings, msg+": "+err.Error())
	if len(a.warnings) > 20 {
		a.warnings = a.warnings[len(a.warnings)-20:]
	}
}

// load loads, once, the identity, the pinned root and the last-known-good
// manifest. ErrNotEnrolled when the server has no identity. A corrupt
// manifest file is set aside and reported: the agent goes on without it.
func (a *Agent) load() error {
	a.mu.Lock()
	loaded := a.id != nil
	a.mu.Unlock()
	if loaded {
		return nil
	}
	id, err := identity.Load(a.store)
	if err != nil {
		var corrupt *state.CorruptError
		if errors.As(err, &corrupt) {
			a.warn("the identity file was corrupt: enroll this server again", err)
			return identity.ErrNotEnrolled
		}
		return err
	}
	trust, err := identity.LoadTrust(a.store)
	if err != nil {
		return fmt.Errorf("%w: enroll this server again with alize enroll --force", err)
	}
	client, err := id.Client(a.userAgent())
	if err != nil {
		return err
	}
	lkg, err := loadStored(a.store)
	if err != nil {
		var corrupt *state.CorruptError
		if !errors.As(err, &corrupt) {
			return err
		}
		a.warn("the last-known-good manifest was corrupt and was set aside; the next manifest from the controller replaces it", err)
		lkg = nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.id, a.trust, a.client, a.lkg = id, trust, client, lkg
	return nil
}

// Reload forgets what load loaded (after an enrollment).
func (a *Agent) Reload() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.id, a.trust, a.client, a.lkg, a.engine = nil, nil, nil, nil, nil
}

// kinds returns the engine, building the kinds the first time (after
// load): alize status needs none of them.
func (a *Agent) kinds() (*engine.Engine, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.engine != nil {
		return a.engine, nil
	}
	src := engine.NewSource()
	kinds, err := a.opts.Kinds(a.id, src)
	if err != nil {
		return nil, fmt.Errorf("set up the kinds: %w", err)
	}
	if a.engine, err = engine.New(a.log, a.now, src, kinds...); err != nil {
		return nil, err
	}
	return a.engine, nil
}

func (a *Agent) identity() *identity.Identity {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.id
}

func (a *Agent) lastKnownGood() *Stored {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lkg
}

func (a *Agent) verifier() *manifest.Verifier {
	a.mu.Lock()
	defer a.mu.Unlock()
	return &manifest.Verifier{
		Trust:        a.trust,
		ServerID:     a.id.ServerID,
		UAI:          a.id.UAI,
		AgentVersion: a.version,
		Compile:      a.compiler.CompileBytes,
		Definitions:  a.definition,
		Now:          a.now,
		Cache:        &a.cache,
	}
}

// lastState is what the verifier must not go below: the last-known-good
// manifest's, or the floor kept apart when that one was lost. Without a
// last-known-good, the floor's own serial is taken again (the manifest
// that was lost), never an older one.
func (a *Agent) lastState() manifest.State {
	if lkg := a.lastKnownGood(); lkg != nil {
		return lkg.State
	}
	var st manifest.State
	if err := a.store.ReadJSON(fileTrustState, &st); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.warn("the rollback floor file was corrupt and was set aside", err)
	}
	if st.Serial > 0 {
		st.Serial--
	}
	return st
}

// ForgetManifest removes the manifest, its run state and the pending
// reports: what enroll --force does before the server takes a new
// identity. The history stays.
func ForgetManifest(s *state.Store) error {
	for _, name := range []string{fileManifest, fileTrustState, fileApplied, fileCurrentRun, fileContact} {
		if err := removeState(s, name); err != nil {
			return err
		}
	}
	// The outbox's reports, not its directory: a running daemon keeps it.
	des, err := os.ReadDir(s.Path("outbox"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("state: %w", err)
	}
	for _, d := range des {
		if err := removeAll(filepath.Join(s.Path("outbox"), d.Name())); err != nil {
			return err
		}
	}
	return nil
}

// modules turns the stored manifest's modules into the engine's, each with
// its mode.
func (a *Agent) modules(lkg *Stored) []engine.Module {
	out := make([]engine.Module, len(lkg.Modules))
	for i, m := range lkg.Modules {
		out[i] = engine.Module{Name: m.Name, Version: m.Version, Kind: m.Kind, Spec: m.Spec, Mode: a.modeOf(m)}
	}
	return out
}

// modeOf is a module's mode: the configuration's override, else the
// module's alize_mode variable, else enforce.
func (a *Agent) modeOf(m StoredModule) engine.Mode {
	if md, ok := a.opts.Modes[m.Name]; ok {
		return md
	}
	if a.opts.Mode != "" {
		return a.opts.Mode
	}
	md, err := engine.ParseMode(valueString(m.Values, ModeVariable))
	if err != nil {
		return engine.Enforce
	}
	return md
}

// context with the run timeout, not cancelled with the daemon: a run that
// started finishes (kinds leave the system consistent) unless it takes too
// long.
func (a *Agent) runContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), a.opts.RunTimeout)
}
