// Package engine runs a verified manifest's modules through their kinds:
// each module's compiled spec is decoded strictly into its kind's type,
// validated, planned (observe + diff) and, when the module enforces,
// applied, with a result per change.
//
// Kinds run in the order their declared dependencies give (accounts before
// shares; firewall on its own). One kind failing never stops the
// independent others; the kinds that depend on it are skipped, with the
// reason. A non-empty plan on a module in report-only mode is drift: it is
// reported, never applied. During a run, the manifest's unsealed secrets
// and verified blobs are at hand through a Source, which the kinds were
// given when the agent wired them.
//
// Who may import it: the agent (agent/…). It imports modules (the kind
// contract), modules/manifest (secrets) and controller/api (report types).
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/modules"
)

// Mode says what the engine does with a module's non-empty plan.
type Mode string

// The modes of a module.
const (
	// Enforce applies the plan: drift is repaired. The default.
	Enforce Mode = "enforce"
	// ReportOnly never changes the system: drift is reported.
	ReportOnly Mode = "report-only"
)

// ParseMode reads a mode; "" is Enforce.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", Enforce:
		return Enforce, nil
	case ReportOnly:
		return ReportOnly, nil
	}
	return "", fmt.Errorf("mode %q: want %q or %q", s, Enforce, ReportOnly)
}

// Kind is a kind as the engine runs it. Build one with Adapt.
type Kind interface {
	// Name is the kind's name: "firewall".
	Name() string
	// DependsOn names the kinds that must be applied, without failing,
	// before this one.
	DependsOn() []string
	// Plan decodes spec strictly into the kind's type (after replacing the
	// references to secrets and blobs with in), validates it and plans.
	Plan(ctx context.Context, spec []byte, in Inputs) (modules.Plan, error)
	// Apply does exactly p.
	Apply(ctx context.Context, p modules.Plan) (modules.Result, error)
	// Check runs the kind's own check of its applied state
	// (modules.Checker); ErrNoCheck when the kind has none.
	Check(ctx context.Context) error
	// CheckSpec is Check for the state spec describes, in a process that
	// has not planned it (modules.SpecCheck; Check when the kind has no
	// such ability).
	CheckSpec(ctx context.Context, spec []byte, in Inputs) error
}

// ErrNoCheck is Kind.Check's answer for a kind without a check.
var ErrNoCheck = errors.New("this kind has no check")

// Module is one module of a manifest, as the engine runs it.
type Module struct {
	Name    string // "amon-firewall"
	Version string // "2.3.0"
	Kind    string // "firewall"
	Spec    []byte // the compiled spec (canonical JSON)
	Mode    Mode
}

// KindResult is what a run did with one module.
type KindResult struct {
	Kind    string         `json:"kind"`
	Module  string         `json:"module"`
	Version string         `json:"version"`
	Mode    Mode           `json:"mode"`
	Status  api.KindStatus `json:"status"`
	// Plan is what the plan said: the drift (report-only, dry run) or
	// what was applied.
	Plan []modules.Change `json:"plan,omitempty"`
	// Changes is what applying did, change by change (enforce only).
	Changes []modules.ChangeResult `json:"changes,omitempty"`
	// Error says why the kind is failing or skipped; never a secret.
	Error string        `json:"error,omitempty"`
	Took  time.Duration `json:"took"`
}

// Report is the result as a report carries it. Drift left alone
// (report-only, dry run) is listed with the status skipped and the reason.
func (r KindResult) Report() api.KindReport {
	kr := api.KindReport{
		Kind:    r.Kind,
		Module:  r.Module,
		Version: r.Version,
		Status:  r.Status,
		Error:   r.Error,
		Changes: r.Changes,
		TookMS:  r.Took.Milliseconds(),
	}
	if r.Changes == nil && r.Status == api.KindDrifted {
		for _, c := range r.Plan {
			kr.Changes = append(kr.Changes, modules.ChangeResult{Change: c, Status: modules.StatusSkipped, Error: "report-only: left as it is"})
		}
	}
	return kr
}

// Result is a run: a result per module, in the order they ran.
type Result struct {
	Started  time.Time    `json:"started"`
	Finished time.Time    `json:"finished"`
	Outcome  api.Outcome  `json:"outcome"`
	Kinds    []KindResult `json:"kinds"`
}

// Reports is the run's part of a report.
func (r Result) Reports() []api.KindReport {
	out := make([]api.KindReport, len(r.Kinds))
	for i, k := range r.Kinds {
		out[i] = k.Report()
	}
	return out
}

// Changed counts the changes applied.
func (r Result) Changed() int {
	n := 0
	for _, k := range r.Kinds {
		for _, c := range k.Changes {
			if c.Status == modules.StatusApplied {
				n++
			}
		}
	}
	return n
}

// Engine runs modules through the kinds it was built with. It holds no
// state between runs and may be used by one run at a time or several.
type Engine struct {
	kinds map[string]Kind
	names []string
	log   *slog.Logger
	now   func() time.Time
	src   *Source
}

// New builds an engine of kinds. src, when not nil, is the Source the
// kinds were given: each run fills it. New refuses two kinds of one name,
// and dependencies that name no kind or go round in a circle.
func New(log *slog.Logger, now func() time.Time, src *Source, kinds ...Kind) (*Engine, error) {
	e := &Engine{kinds: make(map[string]Kind, len(kinds)), log: log, now: now, src: src}
	for _, k := range kinds {
		if _, dup := e.kinds[k.Name()]; dup {
			return nil, fmt.Errorf("engine: kind %q given twice", k.Name())
		}
		e.kinds[k.Name()] = k
		e.names = append(e.names, k.Name())
	}
	for _, k := range kinds {
		for _, d := range k.DependsOn() {
			if _, ok := e.kinds[d]; !ok {
				return nil, fmt.Errorf("engine: kind %q depends on %q, which is not wired", k.Name(), d)
			}
		}
	}
	if _, err := e.order(e.names); err != nil {
		return nil, err
	}
	slices.Sort(e.names)
	return e, nil
}

// Kinds names the kinds the engine knows, sorted.
func (e *Engine) Kinds() []string { return slices.Clone(e.names) }

// Kind returns the kind called name.
func (e *Engine) Kind(name string) (Kind, bool) {
	k, ok := e.kinds[name]
	return k, ok
}

// order sorts kind names so that every kind comes after those it depends
// on, keeping the given order where dependencies leave a choice.
func (e *Engine) order(names []string) ([]string, error) {
	present := make(map[string]bool, len(names))
	for _, n := range names {
		present[n] = true
	}
	done := make(map[string]bool, len(names))
	var out []string
	for len(out) < len(names) {
		progressed := false
		for _, n := range names {
			if done[n] {
				continue
			}
			ready := true
			if k, ok := e.kinds[n]; ok {
				for _, d := range k.DependsOn() {
					if present[d] && !done[d] {
						ready = false
					}
				}
			}
			if ready {
				done[n] = true
				out = append(out, n)
				progressed = true
				break // restart from the first: keeps the given order
			}
		}
		if !progressed {
			var left []string
			for _, n := range names {
				if !done[n] {
					left = append(left, n)
				}
			}
			return nil, fmt.Errorf("engine: kinds %s depend on each other in a circle", strings.Join(left, ", "))
		}
	}
	return out, nil
}

// Run plans and applies mods (a manifest's modules). Modules in report-only
// mode are planned only. Every module gets a result.
func (e *Engine) Run(ctx context.Context, mods []Module, in Inputs) Result {
	return e.run(ctx, mods, in, false)
}

// Plan plans mods without applying anything (alize plan). A module with a
// non-empty plan is reported drifted.
func (e *Engine) Plan(ctx context.Context, mods []Module, in Inputs) Result {
	return e.run(ctx, mods, in, true)
}

// Check runs each module's kind check against the module's spec, with the
// manifest's inputs at hand, and returns its error by module name
// (ErrNoCheck for a kind without a check; an error for a kind this agent
// does not have).
func (e *Engine) Check(ctx context.Context, mods []Module, in Inputs) map[string]error {
	if e.src != nil {
		e.src.set(&in)
		defer e.src.set(nil)
	}
	out := make(map[string]error, len(mods))
	for _, m := range mods {
		k, ok := e.Kind(m.Kind)
		if !ok {
			out[m.Name] = fmt.Errorf("this agent has no kind %s (module %s): upgrade alize", m.Kind, m.Name)
			continue
		}
		out[m.Name] = k.CheckSpec(ctx, m.Spec, in)
	}
	return out
}

func (e *Engine) run(ctx context.Context, mods []Module, in Inputs, dryRun bool) Result {
	res := Result{Started: e.now()}
	if e.src != nil {
		e.src.set(&in)
		defer e.src.set(nil)
	}
	byKind := make(map[string][]int, len(mods))
	var names []string
	for i, m := range mods {
		if _, seen := byKind[m.Kind]; !seen {
			names = append(names, m.Kind)
		}
		byKind[m.Kind] = append(byKind[m.Kind], i)
	}
	order, err := e.order(names)
	if err != nil {
		order = names // New refused circles among known kinds: cannot happen
	}
	// Planning changes nothing, so every kind observes and plans at once,
	// side by side; a kind whose dependency then changes something is
	// planned again, against what its dependency made, before it applies.
	early := e.planAll(ctx, mods, byKind, in)
	// failed holds, for each kind that failed or was skipped, why;
	// changed the kinds that applied a change in this run.
	failed := make(map[string]string)
	changed := make(map[string]bool)
	for _, kind := range order {
		idx := byKind[kind]
		if len(idx) > 1 {
			var names []string
			for _, i := range idx {
				names = append(names, mods[i].Name)
			}
			msg := fmt.Sprintf("modules %s all have kind %s: a kind takes one module per server; assign only one", strings.Join(names, ", "), kind)
			for _, i := range idx {
				res.Kinds = append(res.Kinds, e.result(mods[i], api.KindFailing, msg))
			}
			failed[kind] = "kind " + kind + " failed"
			continue
		}
		m := mods[idx[0]]
		k, ok := e.kinds[kind]
		if !ok {
			res.Kinds = append(res.Kinds, e.result(m, api.KindFailing,
				fmt.Sprintf("this agent has no kind %q (module %s): upgrade alize", kind, m.Name)))
			failed[kind] = "kind " + kind + " failed"
			continue
		}
		if why := e.blocked(k, failed); why != "" {
			r := e.result(m, api.KindSkipped, "skipped: "+why)
			res.Kinds = append(res.Kinds, r)
			failed[kind] = "kind " + kind + " was skipped (" + why + ")"
			e.log.Warn("kind skipped", "kind", kind, "module", m.Name, "reason", why)
			continue
		}
		pre, ok := early[kind]
		for _, d := range k.DependsOn() {
			ok = ok && !changed[d]
		}
		if !ok {
			pre = nil
		}
		r := e.runOne(ctx, k, m, in, dryRun, pre)
		if r.Status == api.KindFailing {
			failed[kind] = "kind " + kind + " failed"
		}
		if slices.ContainsFunc(r.Changes, func(c modules.ChangeResult) bool { return c.Status == modules.StatusApplied }) {
			changed[kind] = true
		}
		res.Kinds = append(res.Kinds, r)
	}
	res.Finished = e.now()
	res.Outcome = outcome(res.Kinds)
	return res
}

// blocked says why k cannot run: a kind it depends on failed or was
// skipped; "" when it can.
func (e *Engine) blocked(k Kind, failed map[string]string) string {
	for _, d := range k.DependsOn() {
		if why, ok := failed[d]; ok {
			return why
		}
	}
	return ""
}

func (e *Engine) result(m Module, status api.KindStatus, msg string) KindResult {
	return KindResult{Kind: m.Kind, Module: m.Name, Version: m.Version, Mode: mode(m.Mode), Status: status, Error: msg}
}

func mode(m Mode) Mode {
	if m == "" {
		return Enforce
	}
	return m
}

// planned is a kind's plan made ahead, and how long it took.
type planned struct {
	plan modules.Plan
	err  error
	took time.Duration
}

// planAll plans, side by side, every kind that has exactly one module and
// that this agent knows.
func (e *Engine) planAll(ctx context.Context, mods []Module, byKind map[string][]int, in Inputs) map[string]*planned {
	out := make(map[string]*planned, len(byKind))
	var wg sync.WaitGroup
	for kind, idx := range byKind {
		k, ok := e.kinds[kind]
		if !ok || len(idx) != 1 {
			continue
		}
		pl := &planned{}
		out[kind] = pl
		m := mods[idx[0]]
		wg.Go(func() {
			start := e.now()
			pl.plan, pl.err = k.Plan(ctx, m.Spec, in)
			pl.took = e.now().Sub(start)
		})
	}
	wg.Wait()
	return out
}

// runOne plans one module (or takes the plan made ahead, pre) and, when
// it enforces, applies and checks it.
func (e *Engine) runOne(ctx context.Context, k Kind, m Module, in Inputs, dryRun bool, pre *planned) (r KindResult) {
	start := e.now()
	r = KindResult{Kind: m.Kind, Module: m.Name, Version: m.Version, Mode: mode(m.Mode)}
	log := e.log.With("kind", m.Kind, "module", m.Name)
	var p modules.Plan
	var err error
	if pre != nil {
		p, err = pre.plan, pre.err
		start = start.Add(-pre.took)
	} else {
		p, err = k.Plan(ctx, m.Spec, in)
	}
	defer func() { r.Took = e.now().Sub(start) }()
	if err != nil {
		r.Status, r.Error = api.KindFailing, "plan: "+err.Error()
		log.Error("plan failed", "err", err)
		return r
	}
	if p.Kind != m.Kind {
		r.Status, r.Error = api.KindFailing, fmt.Sprintf("plan: the kind returned a plan for %q", p.Kind)
		return r
	}
	r.Plan = p.Changes
	if p.Empty() {
		r.Status = api.KindApplied
		return r
	}
	if dryRun || r.Mode == ReportOnly {
		r.Status = api.KindDrifted
		if !dryRun {
			log.Warn("drift left alone", "changes", len(p.Changes), "mode", r.Mode)
		}
		return r
	}

	res, err := k.Apply(ctx, p)
	r.Changes = complete(p.Changes, res.Changes, err)
	for _, c := range r.Changes {
		switch c.Status {
		case modules.StatusApplied:
			log.Info("change applied", "change", c.Change.String())
		case modules.StatusFailed:
			log.Error("change failed", "change", c.Change.String(), "err", c.Error)
		default:
			log.Warn("change skipped", "change", c.Change.String(), "reason", c.Error)
		}
	}
	switch {
	case errors.Is(err, modules.ErrReverted):
		r.Status, r.Error = api.KindReverted, "apply: "+err.Error()
	case err != nil:
		r.Status, r.Error = api.KindFailing, "apply: "+err.Error()
	case anyNotApplied(r.Changes):
		r.Status, r.Error = api.KindFailing, "some changes were not applied"
	default:
		r.Status = api.KindApplied
	}
	if r.Status == api.KindApplied {
		if err := k.Check(ctx); err != nil && !errors.Is(err, ErrNoCheck) {
			r.Status, r.Error = api.KindFailing, "check after apply: "+err.Error()
			log.Error("check after apply failed", "err", err)
		}
	}
	return r
}

// complete gives every planned change a result: the one Apply returned,
// or, when Apply said nothing of it, failed (Apply failed) or skipped.
func complete(planned []modules.Change, got []modules.ChangeResult, applyErr error) []modules.ChangeResult {
	out := slices.Clone(got)
	have := make(map[modules.Change]int, len(got))
	for _, c := range got {
		have[c.Change]++
	}
	for _, c := range planned {
		if have[c] > 0 {
			have[c]--
			continue
		}
		cr := modules.ChangeResult{Change: c, Status: modules.StatusSkipped, Error: "not attempted"}
		if applyErr != nil {
			cr.Status, cr.Error = modules.StatusFailed, applyErr.Error()
		}
		out = append(out, cr)
	}
	return out
}

func anyNotApplied(cs []modules.ChangeResult) bool {
	for _, c := range cs {
		if c.Status != modules.StatusApplied {
			return true
		}
	}
	return false
}

// outcome sums a run up: failing when a kind failed or was skipped,
// corrected when changes were applied, drift when drift was left alone,
// else compliant.
func outcome(ks []KindResult) api.Outcome {
	var failing, reverted, changed, drifted bool
	for _, k := range ks {
		switch k.Status {
		case api.KindFailing, api.KindSkipped:
			failing = true
		case api.KindReverted:
			reverted = true
		case api.KindDrifted:
			drifted = true
		case api.KindApplied:
			changed = changed || len(k.Changes) > 0
		}
	}
	switch {
	case failing:
		return api.OutcomeFailing
	case reverted:
		return api.OutcomeReverted
	case changed:
		return api.OutcomeCorrected
	case drifted:
		return api.OutcomeDrift
	}
	return api.OutcomeCompliant
}
