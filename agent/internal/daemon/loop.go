package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/alize-eple/alize/agent/internal/identity"
	"github.com/alize-eple/alize/agent/internal/state"
	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/modules/manifest"
)

// loop is the daemon's state. One goroutine runs it: runs happen one at a
// time in it, while polls, report delivery, the control socket and the
// watchdog have their own goroutines.
type loop struct {
	a         *Agent
	sched     *api.Schedule
	applyReqs chan loopRequest[ApplyResult]
	planReqs  chan loopRequest[PlanResult]
	pollNow   chan struct{}
	reloads   chan struct{}
	pollDone  chan pollResult
	kick      chan struct{} // wakes the report sender
	stopped   chan struct{} // closed when the loop has returned
	beat      atomic.Int64  // unix nanos of the loop's last turn, for the watchdog
	contact   Contact
}

// loopRequest asks the loop to do something between its runs (converge
// now, plan) and wait for its result.
type loopRequest[T any] struct{ reply chan loopReply[T] }

type loopReply[T any] struct {
	res T
	err error
}

type pollResult struct {
	ans api.ManifestAnswer
	err error
	at  time.Time
}

// enrollRetry is how often a daemon waiting for enrollment looks again.
const enrollRetry = 10 * time.Second

// Run is the daemon: it runs until ctx is cancelled (SIGTERM), then
// returns nil once the run in progress, if any, has ended.
func (a *Agent) Run(ctx context.Context, watchdog time.Duration) error {
	l := &loop{
		a:         a,
		applyReqs: make(chan loopRequest[ApplyResult]),
		planReqs:  make(chan loopRequest[PlanResult]),
		pollNow:   make(chan struct{}, 1),
		reloads:   make(chan struct{}, 1),
		pollDone:  make(chan pollResult, 1),
		kick:      make(chan struct{}, 1),
		stopped:   make(chan struct{}),
	}
	ln, err := listenControl(a.opts.Socket)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: l.controlHandler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		os.Remove(a.opts.Socket)
	}()
	a.mu.Lock()
	a.live = Live{PID: pid(), Since: a.now().UTC(), Activity: "starting"}
	a.mu.Unlock()
	l.beat.Store(time.Now().UnixNano())
	if watchdog > 0 {
		go l.watchdog(ctx, watchdog)
	}
	go l.sender(ctx)
	err = l.run(ctx)
	close(l.stopped)
	a.opts.Notify("STOPPING=1")
	return err
}

func (l *loop) run(ctx context.Context) error {
	a := l.a
	ready := false
	// Wait for an identity: a server not yet enrolled keeps its daemon up,
	// ready, saying so, rather than crash-looping.
	for {
		err := a.load()
		if err == nil {
			break
		}
		msg := "waiting for enrollment: run alize enroll URL --token TOKEN"
		if !errors.Is(err, identity.ErrNotEnrolled) {
			msg = "cannot start: " + clip(err.Error(), 200)
			a.log.Error("cannot load the identity", "err", err)
		}
		l.setActivity("waiting for enrollment")
		if !ready {
			a.opts.Notify("READY=1")
			ready = true
		}
		a.opts.Notify("STATUS=" + msg)
		select {
		case <-ctx.Done():
			return nil
		case <-l.reloads:
			a.Reload()
		case <-time.After(enrollRetry):
		case req := <-l.applyReqs:
			req.reply <- loopReply[ApplyResult]{err: err}
		case req := <-l.planReqs:
			req.reply <- loopReply[PlanResult]{err: err}
		}
		l.beat.Store(time.Now().UnixNano())
	}
	id := a.identity()
	l.sched = api.NewSchedule(id.ServerID, id.Poll, a.opts.Rand)
	// If-None-Match names what the agent has: the last-known-good, or the
	// manifest it refused since; nothing when it lost its manifest.
	l.contact = readContact(a.store)
	switch lkg := a.lastKnownGood(); {
	case l.contact.Refused != nil && (lkg == nil || l.contact.Refused.At.After(lkg.Received)):
		l.contact.ETag = l.contact.Refused.ETag
	case lkg != nil:
		l.contact.ETag = lkg.ETag
	default:
		l.contact.ETag = ""
	}
	if !ready {
		a.opts.Notify("READY=1")
	}
	a.log.Info("daemon started", "server_id", id.ServerID, "uai", id.UAI, "controller", id.Controller, "serial", serialOf(a.lastKnownGood()))

	// The last-known-good first: a new manifest accepted but not applied
	// (or a run killed), else a check for drift since the last run.
	if lkg := a.lastKnownGood(); lkg != nil {
		trigger := TriggerStart
		var applied Applied
		if err := a.store.ReadJSON(fileApplied, &applied); err != nil || applied.Serial != lkg.Serial {
			trigger = TriggerManifest
		}
		l.runNow(ctx, trigger)
	}

	now := a.now()
	next := l.sched.First(now)
	pollTimer := time.NewTimer(next.Sub(now))
	defer pollTimer.Stop()
	l.setNextPoll(next)
	driftTimer := time.NewTimer(l.driftDelay())
	defer driftTimer.Stop()
	beat := time.NewTicker(time.Second)
	defer beat.Stop()
	polling := false
	l.idleStatus()

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-beat.C:
		case <-l.pollNow:
			if !polling {
				pollTimer.Reset(0)
			}
		case <-pollTimer.C:
			if polling {
				break
			}
			polling = true
			l.setActivity("polling")
			go l.poll(ctx, l.contact.ETag, l.sched.Wait())
		case r := <-l.pollDone:
			polling = false
			next := l.handlePoll(ctx, r)
			pollTimer.Reset(max(next.Sub(a.now()), 0))
			l.setNextPoll(next)
			l.idleStatus()
		case <-driftTimer.C:
			l.runNow(ctx, TriggerDrift)
			driftTimer.Reset(l.driftDelay())
			l.idleStatus()
		case req := <-l.applyReqs:
			res, err := l.runNow(ctx, TriggerTechnician)
			req.reply <- loopReply[ApplyResult]{res: res, err: err}
			driftTimer.Reset(l.driftDelay())
			l.idleStatus()
		case req := <-l.planReqs:
			// Between runs, with the kinds and the verified manifest
			// already at hand: what alize plan shows, changing nothing.
			l.setActivity("planning")
			res, err := a.Plan(ctx, nil, "")
			l.setActivity("idle")
			req.reply <- loopReply[PlanResult]{res: res, err: err}
		case <-l.reloads:
			a.log.Info("identity reloaded: the daemon restarts its loop")
			a.Reload()
			return l.run(ctx)
		}
		l.beat.Store(time.Now().UnixNano())
	}
}

// runNow runs the last-known-good manifest and wakes the report sender.
func (l *loop) runNow(ctx context.Context, trigger string) (ApplyResult, error) {
	l.setActivity("applying")
	defer l.setActivity("idle")
	res, err := l.a.run(ctx, trigger)
	// A run is rare and may have read a large roster: give the memory
	// back now, so that the idle daemon stays small.
	debug.FreeOSMemory()
	switch {
	case errors.Is(err, state.ErrLocked):
		l.a.log.Warn("run skipped: another alize run holds the lock", "trigger", trigger)
		err = ErrDaemonBusy
	case errors.Is(err, ErrNoManifest):
	case err != nil:
		l.a.log.Error("run failed", "trigger", trigger, "err", err)
	}
	l.wake()
	return res, err
}

func (l *loop) wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// poll asks the controller for the manifest (a long poll when the
// controller's hints ask for one).
func (l *loop) poll(ctx context.Context, etag string, wait time.Duration) {
	l.a.mu.Lock()
	client := l.a.client
	l.a.mu.Unlock()
	ans, err := client.Manifest(ctx, etag, wait)
	l.pollDone <- pollResult{ans: ans, err: err, at: l.a.now()}
}

// handlePoll takes a poll's answer and returns when to poll next.
func (l *loop) handlePoll(ctx context.Context, r pollResult) time.Time {
	a := l.a
	c := &l.contact
	var next time.Time
	switch {
	case r.err != nil && api.IsCode(r.err, api.CodeNotFound):
		// Reached, but the controller has no manifest for this server yet.
		l.answered(r)
		next = l.sched.Success(r.at, r.ans.NextPoll)
		if a.identity().RenewDue(r.at) {
			l.renew(ctx, r.at)
		}
		l.wake()
	case r.err != nil:
		if ctx.Err() != nil {
			return r.at
		}
		c.LastError, c.LastErrorAt = r.err.Error(), r.at.UTC()
		c.Failures++
		a.log.Warn("poll failed", "err", r.err, "failures", c.Failures)
		if api.IsCode(r.err, api.CodeUnauthorized) || api.IsCode(r.err, api.CodeForbidden) || a.identity().Expired(r.at) {
			l.renew(ctx, r.at)
		}
		next = l.sched.Failure(r.at, api.RetryAfter(r.err))
		a.opts.Notify(fmt.Sprintf("STATUS=controller unreachable (%d failures): retry at %s", c.Failures, next.Local().Format(time.TimeOnly)))
	default:
		l.answered(r)
		if !r.ans.NotModified {
			l.newManifest(ctx, r)
		}
		next = l.sched.Success(r.at, r.ans.NextPoll)
		if a.identity().RenewDue(r.at) {
			l.renew(ctx, r.at)
		}
		l.wake()
	}
	c.NextPoll = next.UTC()
	if err := a.store.WriteJSON(fileContact, c); err != nil {
		a.log.Error("contact not saved", "err", err)
	}
	return next
}

// answered records that the controller answered.
func (l *loop) answered(r pollResult) {
	c := &l.contact
	c.LastContact, c.LastError, c.Failures = r.at.UTC(), "", 0
	if !r.ans.ServerTime.IsZero() {
		c.ClockSkew = r.ans.ServerTime.Sub(r.at).Round(time.Second)
	}
}

// newManifest takes a manifest the controller sent: accepted, it is
// applied; refused, the refusal is reported once and the last-known-good
// stays applied.
func (l *loop) newManifest(ctx context.Context, r pollResult) {
	a := l.a
	c := &l.contact
	digest := manifest.Digest(r.ans.Envelope)
	st, err := a.accept(ctx, r.ans.Envelope, r.ans.ETag)
	var re *RefusedError
	switch {
	case errors.As(err, &re):
		a.log.Error("manifest refused", "code", re.Refusal.Code, "err", re.Refusal.Message, "digest", digest)
		a.opts.Notify("STATUS=manifest refused (" + re.Refusal.Code + "): the last-known-good stays applied")
		if c.Refused == nil || c.Refused.Digest != digest {
			a.reportRefusal(r.ans.Envelope, digest, re)
		}
		c.Refused = &Refused{At: r.at.UTC(), ETag: r.ans.ETag, Digest: digest, Serial: payloadSerial(r.ans.Envelope), Refusal: re.Refusal}
		c.ETag = r.ans.ETag
	case err != nil:
		// Not refused, not taken: a blob the controller did not serve.
		// The same manifest comes again at the next poll.
		a.log.Error("manifest not taken now", "err", err, "digest", digest)
	default:
		a.log.Info("manifest accepted", "serial", st.Serial, "digest", digest)
		c.ETag, c.Refused = st.ETag, nil
		if err := a.store.WriteJSON(fileContact, c); err != nil {
			a.log.Error("contact not saved", "err", err)
		}
		l.runNow(ctx, TriggerManifest)
	}
}

// renew renews the client certificate: with the current one while it is
// valid, with a proof of the key once it has expired.
func (l *loop) renew(ctx context.Context, now time.Time) {
	a := l.a
	id := a.identity()
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var err error
	if id.Expired(now) {
		err = id.RenewExpired(rctx, a.userAgent(), now)
	} else {
		a.mu.Lock()
		client := a.client
		a.mu.Unlock()
		err = id.Renew(rctx, client)
	}
	if err != nil {
		a.log.Error("certificate renewal failed", "err", err)
		return
	}
	a.log.Info("certificate renewed", "expires", id.Certificate().NotAfter)
}

// sender delivers the outbox whenever it is woken: after each run and
// each answer from the controller.
func (l *loop) sender(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		}
		if n, err := l.a.flush(ctx); err != nil && ctx.Err() == nil {
			l.a.log.Info("reports kept in the outbox", "sent", n, "err", err)
		}
	}
}

// watchdog pings systemd while the loop turns, or while a run is in
// progress and within its timeout. A loop stuck elsewhere stops the pings
// and systemd restarts the daemon.
func (l *loop) watchdog(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		healthy := time.Since(time.Unix(0, l.beat.Load())) < every
		if !healthy {
			l.a.mu.Lock()
			r := l.a.live.Running
			l.a.mu.Unlock()
			healthy = r != nil && time.Since(r.Started) < l.a.opts.RunTimeout+time.Minute
		}
		if healthy {
			l.a.opts.Notify("WATCHDOG=1")
		}
	}
}

// driftDelay is the time to the next drift check: the interval, give or
// take a tenth.
func (l *loop) driftDelay() time.Duration {
	d := l.a.opts.DriftInterval
	return d - d/10 + time.Duration(time.Now().UnixNano()%int64(d/5+1))
}

func (l *loop) setActivity(s string) {
	l.a.mu.Lock()
	defer l.a.mu.Unlock()
	l.a.live.Activity = s
}

func (l *loop) setNextPoll(t time.Time) {
	l.a.mu.Lock()
	defer l.a.mu.Unlock()
	l.a.live.NextPoll = t.UTC()
}

// idleStatus tells systemd where the agent stands.
func (l *loop) idleStatus() {
	a := l.a
	a.mu.Lock()
	next := a.live.NextPoll
	a.mu.Unlock()
	lkg := a.lastKnownGood()
	msg := "no manifest yet"
	if lkg != nil {
		var applied Applied
		if a.store.ReadJSON(fileApplied, &applied) == nil && applied.Serial == lkg.Serial {
			msg = fmt.Sprintf("manifest %d applied (%s)", lkg.Serial, applied.Run.Outcome)
		} else {
			msg = fmt.Sprintf("manifest %d not applied yet", lkg.Serial)
		}
	}
	if l.contact.Failures > 0 {
		msg += fmt.Sprintf("; controller unreachable (%d failures)", l.contact.Failures)
	}
	a.opts.Notify(fmt.Sprintf("STATUS=idle: %s; next poll at %s", msg, next.Local().Format(time.TimeOnly)))
}

func (a *Agent) setRunning(c *CurrentRun) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.live.Running = c
}

// liveStatus is a copy of the daemon's live status.
func (a *Agent) liveStatus() Live {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.live
	if l.Running != nil {
		r := *l.Running
		l.Running = &r
	}
	return l
}

func serialOf(s *Stored) uint64 {
	if s == nil {
		return 0
	}
	return s.Serial
}
