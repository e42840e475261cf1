package fleetsim

import (
	"context"
	"crypto/x509"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/modules/manifest"
	"github.com/alize-eple/alize/modules/schema"
	"github.com/hashicorp/go-version"
)

// Options say what to simulate.
type Options struct {
	Agents int    // simulated servers
	Bin    string // directory holding the alize-controller binary (Build)
	// Database is "" for SQLite, or a postgres:// URL.
	Database string
	// LongPoll is the controller's --long-poll (30 s when zero): the
	// agents are in a long poll nearly all the time and come back a
	// second after each ends, so a steady fleet makes Agents/LongPoll
	// polls a second (the production default, 2 min, makes a quarter).
	LongPoll time.Duration
	// PollInterval is the controller's --poll-interval (1 min when zero):
	// agents in long polls never wait for it, but an agent whose poll
	// failed backs off within it (the production default, 5 min, makes
	// a run wait for its stragglers).
	PollInterval time.Duration
	// BootDelay is the controller's --boot-delay: an agent's first poll
	// comes at a random moment of it. When zero, 20 ms per agent (at
	// least 10 s): 50 new connections a second, which this machine takes
	// without a failure, while 17,000 agents starting within 10 s make
	// TLS handshakes wait past the controller's 10 s header timeout (it
	// closes them, the agents see EOF and back off).
	BootDelay time.Duration
	// Steady is how long steady polling is measured (two long polls and
	// 10 s when zero).
	Steady time.Duration
	// Enrolled is how many agents enroll through the API (all when zero);
	// the others are seeded into the controller's store (see seed), for a
	// controller that enrolls slowly.
	Enrolled int
	// Workers is how many operator calls and enrollments run at once
	// (32 when zero).
	Workers int
	// Timeout bounds each convergence (5 minutes when zero).
	Timeout time.Duration
	// Log, when set, receives progress.
	Log func(format string, args ...any)
}

// Result is what a run measured.
type Result struct {
	Agents int
	Store  string // sqlite or postgres

	Provision time.Duration // academy, establishments, module, tokens
	Enrolled  int           // agents enrolled through the API
	Enroll    time.Duration // those enrolled
	Seed      time.Duration // the others seeded into the store, their manifests built
	// FirstConvergence: from the first enrollment to the last agent's
	// first report acknowledged.
	FirstConvergence time.Duration

	// Steady polling: every long poll that ended without a change (304)
	// during the steady phase. Its latency is what the client saw beyond
	// the wait it asked for: its whole duration minus the wait (the
	// controller holds a long poll exactly that long from the moment its
	// handler runs, so the rest is queueing, TLS, HTTP and the handler).
	Polls304      int
	P50, P99, Max time.Duration
	// ControllerP99 is the controller's own: the upper bound of the
	// bucket of alize_manifest_answer_seconds (its latency, the time a
	// poll was held left out) that holds the 99th percentile of the
	// manifest requests it answered during the steady phase; 0 when it
	// could not be read.
	ControllerP99 time.Duration
	SteadyErrors  int64 // polls that failed during the steady phase

	// The change: a fleet-level variable set through the admin API.
	SetVariable time.Duration // the var set call, until the controller answered (every manifest signed)
	Changed     int           // servers whose manifest changed
	// To99 and To100: from the var set call to the report acknowledged
	// (by the agent that verified the new manifest) of 99% and of all
	// the agents.
	To99, To100 time.Duration
	Converged   int // agents that reported the change

	// Controller memory from /proc: VmHWM at the end (its peak since the
	// agents were seeded, or since it started when none was), and VmRSS
	// at the end of the steady phase and after the change.
	RSSPeak, RSSSteady, RSSEnd uint64
	// RSSSeedPeak is its peak while the seeded servers' manifests were
	// built (0 when none was seeded).
	RSSSeedPeak uint64
	// Controller CPU time: during the steady phase and during the change.
	CPUSteady, CPUChange time.Duration
	// SimPeak is the simulation process's own VmHWM.
	SimPeak uint64

	PollErrors, Refusals, ReportErrors int64
	Errors                             []string // the first few
	LoadStart, LoadEnd                 float64  // the machine's 1-minute load average
}

// Fleet is the simulated agents of one run.
type Fleet struct {
	url      string
	randSeed uint64
	version  *version.Version
	compiler *schema.Compiler
	cache    *manifest.Cache

	mu          sync.Mutex
	definitions map[string][]byte // module definitions fetched, by digest
	trust       *manifest.Trust
	rootBytes   []byte
	caPool      *x509.CertPool
	caPEM       string
	hints       api.PollHints // the first enrollment's
	logf        func(string, ...any)
	acks        map[string][]time.Time // marker → when each agent's report of it was acknowledged
	latencies   []time.Duration        // steady 304s
	errs        []string

	steady                             atomic.Bool
	steadyErrors                       atomic.Int64
	pollErrors, refusals, reportErrors atomic.Int64
}

// newFleet makes the fleet of agents for the controller at url. The
// agents share one schema.Compiler and one manifest.Cache: each real
// agent has its own, and they would hold the same entries (one module
// definition, the same values: the marker is set at fleet level), so
// sharing them spares the simulation's CPU (one parse and one compile per
// change instead of one per agent) and not the controller's.
func newFleet(url string) *Fleet {
	return &Fleet{
		url: url, randSeed: uint64(time.Now().UnixNano()),
		version:  version.Must(version.NewVersion(AgentVersion)),
		compiler: &schema.Compiler{}, cache: &manifest.Cache{},
		acks: map[string][]time.Time{}, definitions: map[string][]byte{},
	}
}

func (f *Fleet) count(n *atomic.Int64, err error) {
	n.Add(1)
	if f.steady.Load() && n == &f.pollErrors {
		f.steadyErrors.Add(1)
	}
	f.mu.Lock()
	first := len(f.errs) < 10
	if first {
		f.errs = append(f.errs, err.Error())
	}
	f.mu.Unlock()
	if first && f.logf != nil {
		f.logf("agent error: %v", err)
	}
}

func (f *Fleet) poll304(took, wait time.Duration) {
	if !f.steady.Load() {
		return
	}
	f.mu.Lock()
	f.latencies = append(f.latencies, max(took-wait, 0))
	f.mu.Unlock()
}

func (f *Fleet) acked(marker string, at time.Time) {
	f.mu.Lock()
	f.acks[marker] = append(f.acks[marker], at)
	f.mu.Unlock()
}

// waitAcked waits until need agents have had their report of marker
// acknowledged, and returns when the need-th was.
func (f *Fleet) waitAcked(ctx context.Context, marker string, need int) (time.Time, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		f.mu.Lock()
		acks := f.acks[marker]
		var at time.Time
		if len(acks) >= need {
			s := slices.Clone(acks)
			slices.SortFunc(s, time.Time.Compare)
			at = s[need-1]
		}
		got := len(acks)
		f.mu.Unlock()
		if !at.IsZero() {
			return at, nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%d of %d agents reported %q: %w", got, need, marker, ctx.Err())
		case <-tick.C:
		}
	}
}

func (f *Fleet) ackCount(marker string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.acks[marker])
}

// Run starts a controller, provisions it, enrolls opts.Agents agents and
// runs them: they converge on their first manifest, poll steadily for
// opts.Steady, then an operator sets a fleet-level variable and the run
// measures how fast the fleet reports it. Everything is stopped before
// Run returns (the controller at tb's cleanup).
func Run(ctx context.Context, tb TB, opts Options) (*Result, error) {
	if opts.LongPoll == 0 {
		opts.LongPoll = 30 * time.Second
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = time.Minute
	}
	if opts.BootDelay == 0 {
		opts.BootDelay = max(10*time.Second, time.Duration(opts.Agents)*20*time.Millisecond)
	}
	if opts.Steady == 0 {
		opts.Steady = 2*opts.LongPoll + 10*time.Second
	}
	if opts.Workers == 0 {
		opts.Workers = 32
	}
	if opts.Enrolled <= 0 || opts.Enrolled > opts.Agents {
		opts.Enrolled = opts.Agents
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Minute
	}
	logf := opts.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	res := &Result{Agents: opts.Agents, Enrolled: opts.Enrolled, Store: "sqlite", LoadStart: LoadAverage()}
	if opts.Database != "" {
		res.Store = "postgres"
	}
	c := StartController(tb, ControllerOptions{Bin: opts.Bin, Database: opts.Database, LongPoll: opts.LongPoll, BootDelay: opts.BootDelay, PollInterval: opts.PollInterval})

	t0 := time.Now()
	enr, err := Provision(ctx, c, opts.Agents, opts.Enrolled, opts.Workers)
	if err != nil {
		return res, fmt.Errorf("provision: %w", err)
	}
	res.Provision = time.Since(t0)
	logf("provisioned %d establishments and %d tokens in %s", (opts.Agents+1)/2, opts.Enrolled, res.Provision.Round(time.Millisecond))

	f := newFleet(c.URL)
	f.logf = logf
	defer func() {
		res.PollErrors, res.Refusals, res.ReportErrors = f.pollErrors.Load(), f.refusals.Load(), f.reportErrors.Load()
		f.mu.Lock()
		res.Errors = slices.Clone(f.errs)
		f.mu.Unlock()
	}()
	runCtx, stop := context.WithCancel(ctx)
	var running sync.WaitGroup
	defer func() {
		stop()
		running.Wait()
	}()
	t1 := time.Now()
	var enrolled atomic.Int64
	err = parallel(ctx, opts.Enrolled, opts.Workers, func(i int) error {
		a, err := f.enroll(ctx, i, enr[i])
		if err != nil {
			return err
		}
		if n := enrolled.Add(1); n%1000 == 0 {
			logf("%d agents enrolled (%s)", n, time.Since(t1).Round(time.Millisecond))
		}
		running.Go(func() { a.run(runCtx) })
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("enroll: %w", err)
	}
	res.Enroll = time.Since(t1)
	logf("%d agents enrolled in %s", opts.Enrolled, res.Enroll.Round(time.Millisecond))
	if rest := enr[opts.Enrolled:]; len(rest) > 0 {
		t := time.Now()
		agents, err := f.seedServers(ctx, c, opts.Database, rest, opts.Enrolled, 7*24*time.Hour)
		if err != nil {
			return res, err
		}
		for _, a := range agents {
			running.Go(func() { a.run(runCtx) })
		}
		res.Seed = time.Since(t)
		// Building 16,500 manifests in one push is what a fleet-level
		// change does too; its peak is kept apart, and the controller's
		// peak measured again from here (Linux: 5 > clear_refs).
		_, res.RSSSeedPeak, _ = c.Memory()
		if err := c.ResetPeak(); err != nil {
			logf("the controller's peak memory cannot be reset: %v", err)
		}
		logf("%d more agents seeded into the store, their manifests built, in %s (controller RSS peak %d MiB)", len(rest), res.Seed.Round(time.Millisecond), res.RSSSeedPeak>>20)
	}

	// An agent that failed backs off up to its poll interval, then
	// twice as long: give the stragglers that too.
	wctx, cancel := context.WithTimeout(ctx, opts.Timeout+opts.BootDelay+3*opts.PollInterval)
	stopProgress := f.progress(wctx, c, InitialMarker, logf)
	_, err = f.waitAcked(wctx, InitialMarker, opts.Agents)
	stopProgress()
	cancel()
	if err != nil {
		return res, fmt.Errorf("first convergence: %w; the controller's log ends:\n%s", err, c.LogTail(20))
	}
	res.FirstConvergence = time.Since(t1)
	logf("every agent reported its first manifest %s after the first enrollment", res.FirstConvergence.Round(time.Millisecond))

	// Steady polling.
	cpu0, _ := c.CPU()
	answers0, aerr := c.Answers(ctx)
	f.steady.Store(true)
	select {
	case <-time.After(opts.Steady):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	f.steady.Store(false)
	cpu1, _ := c.CPU()
	if aerr == nil {
		var answers1 []Bucket
		if answers1, aerr = c.Answers(ctx); aerr == nil {
			res.ControllerP99, _ = quantileBound(answers0, answers1, 0.99)
		}
	}
	if aerr != nil {
		logf("the controller's latency histogram: %v", aerr)
	}
	res.CPUSteady = cpu1 - cpu0
	res.RSSSteady, _, _ = c.Memory()
	f.mu.Lock()
	lat := slices.Clone(f.latencies)
	f.mu.Unlock()
	slices.Sort(lat)
	res.Polls304 = len(lat)
	res.P50, res.P99 = percentile(lat, 0.50), percentile(lat, 0.99)
	if len(lat) > 0 {
		res.Max = lat[len(lat)-1]
	}
	res.SteadyErrors = f.steadyErrors.Load()
	logf("steady %s: %d long polls ended 304; beyond their wait: p50 %s, p99 %s, max %s; the controller's own p99 ≤ %s; controller CPU %s, RSS %d MiB",
		opts.Steady, res.Polls304, res.P50, res.P99, res.Max, res.ControllerP99, res.CPUSteady, res.RSSSteady>>20)

	// The change.
	marker := "change-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	t2 := time.Now()
	plan, err := SetFleetVariable(ctx, c, MarkerVariable, marker)
	if err != nil {
		return res, fmt.Errorf("var set fleet %s: %w", MarkerVariable, err)
	}
	res.SetVariable = time.Since(t2)
	res.Changed = plan.Changed
	if plan.Refused || plan.Failed > 0 {
		return res, fmt.Errorf("var set fleet %s: refused (%d failed)", MarkerVariable, plan.Failed)
	}
	logf("var set fleet %s %s: %d of %d servers changed, answered in %s", MarkerVariable, marker, plan.Changed, plan.Touched, res.SetVariable.Round(time.Millisecond))
	wctx, cancel = context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	at99, err := f.waitAcked(wctx, marker, int(math.Ceil(0.99*float64(opts.Agents))))
	if err == nil {
		res.To99 = at99.Sub(t2)
		var at100 time.Time
		at100, err = f.waitAcked(wctx, marker, opts.Agents)
		res.To100 = at100.Sub(t2)
	}
	res.Converged = f.ackCount(marker)
	cpu2, _ := c.CPU()
	res.CPUChange = cpu2 - cpu1
	res.RSSEnd, res.RSSPeak, _ = c.Memory()
	res.SimPeak = selfPeak()
	res.LoadEnd = LoadAverage()
	if err != nil {
		return res, fmt.Errorf("change: %w; the controller's log ends:\n%s", err, c.LogTail(20))
	}
	logf("change reported by 99%% in %s, by all in %s; controller CPU %s; RSS peak %d MiB, now %d MiB",
		res.To99.Round(time.Millisecond), res.To100.Round(time.Millisecond), res.CPUChange, res.RSSPeak>>20, res.RSSEnd>>20)
	return res, nil
}

// progress logs every 20 s how many agents reported marker, and the
// controller's open files, CPU time and memory, until stop is called.
func (f *Fleet) progress(ctx context.Context, c *Controller, marker string, logf func(string, ...any)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(20 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", c.PID()))
			cpu, _ := c.CPU()
			rss, _, _ := c.Memory()
			f.mu.Lock()
			n := len(f.errs)
			f.mu.Unlock()
			logf("%d agents reported %q; controller: %d open files, CPU %s, RSS %d MiB; load %.1f; %d errors so far",
				f.ackCount(marker), marker, len(fds), cpu.Round(time.Millisecond), rss>>20, LoadAverage(), n)
		}
	}()
	return func() { cancel(); <-done }
}

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// selfPeak is this process's VmHWM.
func selfPeak() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	var kb uint64
	for _, line := range strings.Split(string(b), "\n") {
		if n, err := fmt.Sscanf(line, "VmHWM: %d kB", &kb); n == 1 && err == nil {
			return kb << 10
		}
	}
	return 0
}
