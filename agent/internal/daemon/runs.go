package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/alize-eple/alize/agent/internal/engine"
	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/modules"
)

// newReportID makes a report id: the time, then random bits.
func newReportID(now time.Time) string {
	var b [6]byte
	rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// ApplyResult is a run: its record and each module's result in full.
type ApplyResult struct {
	Run   RunRecord           `json:"run"`
	Kinds []engine.KindResult `json:"kinds"`
}

// Apply converges the server now on the last-known-good manifest, as
// `alize apply` asks when no daemon runs: it takes the run lock
// (state.ErrLocked when a run is in progress), runs, reports through the
// outbox and tries to deliver the outbox once.
func (a *Agent) Apply(ctx context.Context) (ApplyResult, error) {
	if err := a.load(); err != nil {
		return ApplyResult{}, err
	}
	rec, err := a.run(ctx, TriggerTechnician)
	if err != nil {
		return rec, err
	}
	if _, err := a.flush(ctx); err != nil {
		a.log.Info("reports kept in the outbox", "err", err)
	}
	return rec, nil
}

// run runs the last-known-good manifest under the run lock and records
// the run. It reports to the controller (through the outbox) a new
// manifest's run, a technician's, and a drift run whose outcome changed or
// that corrected something.
func (a *Agent) run(ctx context.Context, trigger string) (ApplyResult, error) {
	unlock, err := a.store.Lock()
	if err != nil {
		return ApplyResult{}, err
	}
	defer unlock()
	lkg := a.lastKnownGood()
	if lkg == nil {
		return ApplyResult{}, ErrNoManifest
	}
	eng, err := a.kinds()
	if err != nil {
		return ApplyResult{}, err
	}
	ctx, cancel := a.runContext(ctx)
	defer cancel()

	// A run of this manifest that was killed: run it again under its id.
	cur := CurrentRun{ID: newReportID(a.now()), Trigger: trigger, Serial: lkg.Serial, Started: a.now().UTC()}
	var prev CurrentRun
	if err := a.store.ReadJSON(fileCurrentRun, &prev); err == nil && prev.Serial == lkg.Serial && prev.ID != "" {
		cur.ID, cur.Trigger = prev.ID, prev.Trigger
		a.log.Info("resuming an interrupted run", "report_id", prev.ID, "serial", prev.Serial)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.warn("the current-run marker was corrupt and was set aside", err)
	}
	if err := a.store.WriteJSON(fileCurrentRun, cur); err != nil {
		return ApplyResult{}, err
	}
	a.setRunning(&cur)
	defer a.setRunning(nil)
	a.opts.Notify(fmt.Sprintf("STATUS=applying manifest %d (%s)", lkg.Serial, cur.Trigger))
	a.log.Info("run started", "serial", lkg.Serial, "trigger", cur.Trigger, "report_id", cur.ID)

	in := a.inputs(ctx, lkg, true)
	res := eng.Run(ctx, a.modules(lkg), in)
	rec := RunRecord{
		ID: cur.ID, Trigger: cur.Trigger, Serial: lkg.Serial, Digest: lkg.Digest,
		Started: res.Started.UTC(), Finished: res.Finished.UTC(), Outcome: res.Outcome, Kinds: summarize(res),
	}

	var last Applied
	hadLast := a.store.ReadJSON(fileApplied, &last) == nil
	switch {
	case cur.Trigger != TriggerDrift && cur.Trigger != TriggerStart:
		rec.Reported = true
	case !hadLast || last.Serial != lkg.Serial:
		rec.Reported = true // the first run of this manifest
	case last.Run.Outcome != rec.Outcome || rec.Outcome == api.OutcomeCorrected:
		rec.Reported = true
	}
	if rec.Reported {
		if err := a.queueReport(rec, res); err != nil {
			a.log.Error("report not queued", "err", err)
			rec.Reported = false
		}
	}
	out := ApplyResult{Run: rec, Kinds: res.Kinds}
	if err := a.store.WriteJSON(fileApplied, Applied{Serial: lkg.Serial, Digest: lkg.Digest, Run: rec}); err != nil {
		return out, err
	}
	if err := a.store.AppendHistory(rec, HistorySize); err != nil {
		a.log.Error("history not written", "err", err)
	}
	if err := removeState(a.store, fileCurrentRun); err != nil {
		return out, err
	}
	a.log.Info("run finished", "serial", rec.Serial, "outcome", rec.Outcome, "took", rec.Took(), "reported", rec.Reported)
	return out, nil
}

// queueReport puts the run's report in the outbox.
func (a *Agent) queueReport(rec RunRecord, res engine.Result) error {
	r := api.Report{
		ID: rec.ID, Serial: rec.Serial, ManifestDigest: rec.Digest,
		Started: rec.Started, Finished: rec.Finished, Outcome: rec.Outcome,
		Kinds: res.Reports(), Facts: a.facts(),
	}
	return a.put(r)
}

// reportRefusal records and reports a refused manifest.
func (a *Agent) reportRefusal(env []byte, digest string, re *RefusedError) {
	now := a.now().UTC()
	rec := RunRecord{
		ID: newReportID(now), Trigger: TriggerManifest, Serial: payloadSerial(env), Digest: digest,
		Started: now, Finished: now, Outcome: api.OutcomeRefused, Refusal: &re.Refusal, Reported: true,
	}
	r := api.Report{
		ID: rec.ID, Serial: rec.Serial, ManifestDigest: digest, Started: now, Finished: now,
		Outcome: api.OutcomeRefused, Refusal: &re.Refusal, Facts: a.facts(),
	}
	if err := a.put(r); err != nil {
		a.log.Error("report not queued", "err", err)
		rec.Reported = false
	}
	if err := a.store.AppendHistory(rec, HistorySize); err != nil {
		a.log.Error("history not written", "err", err)
	}
}

// put encodes a report (cutting its change lists if it would be too large
// for the controller) and puts it in the outbox.
func (a *Agent) put(r api.Report) error {
	n, err := a.outbox.Dropped()
	if err != nil {
		return err
	}
	r.Dropped = n
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	for keep := 1000; len(data) > api.MaxRequestBody && keep >= 1; keep /= 10 {
		for i := range r.Kinds {
			if len(r.Kinds[i].Changes) > keep {
				cut := len(r.Kinds[i].Changes) - keep
				r.Kinds[i].Changes = append(r.Kinds[i].Changes[:keep:keep], modules.ChangeResult{
					Change: modules.Change{Resource: "report", ID: "truncated", Summary: fmt.Sprintf("%d more changes not listed: the report was too large", cut)},
					Status: modules.StatusSkipped,
				})
			}
		}
		if data, err = json.Marshal(r); err != nil {
			return fmt.Errorf("encode report: %w", err)
		}
	}
	return a.outbox.Put(r.ID, data)
}

// flush delivers the outbox in order, stopping at the first failure. It
// returns how many reports it delivered.
func (a *Agent) flush(ctx context.Context) (int, error) {
	a.mu.Lock()
	client := a.client
	a.mu.Unlock()
	if client == nil {
		return 0, nil
	}
	pending, err := a.outbox.Pending()
	if err != nil {
		return 0, err
	}
	sent := 0
	for _, e := range pending {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		ack, err := client.Report(rctx, e.Report)
		cancel()
		if err != nil && (api.IsCode(err, api.CodeBadRequest) || api.IsCode(err, api.CodeTooLarge) || errors.Is(err, api.ErrTooLarge)) {
			// The controller will never take it: drop it rather than
			// block every report behind it.
			a.log.Error("report refused by the controller, dropped", "report_id", e.ID, "err", err)
			if err := a.outbox.Ack(e.ID); err != nil {
				return sent, err
			}
			continue
		}
		if err != nil {
			return sent, err
		}
		if err := a.outbox.Ack(e.ID); err != nil {
			return sent, err
		}
		sent++
		a.log.Info("report delivered", "report_id", e.ID, "duplicate", ack.Duplicate)
	}
	return sent, nil
}

// History returns the recorded runs, newest first, at most n (all when
// n <= 0).
func (a *Agent) History(n int) ([]RunRecord, error) {
	raw, err := a.store.History()
	if err != nil {
		a.warn("the history file was corrupt and was set aside", err)
	}
	var out []RunRecord
	for i := len(raw) - 1; i >= 0 && (n <= 0 || len(out) < n); i-- {
		var r RunRecord
		if json.Unmarshal(raw[i], &r) == nil {
			out = append(out, r)
		}
	}
	return out, nil
}
