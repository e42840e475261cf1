package daemon

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/alize-eple/alize/agent/internal/identity"
	"github.com/alize-eple/alize/controller/api"
)

// Live is what only a running daemon knows.
type Live struct {
	PID       int         `json:"pid"`
	Since     time.Time   `json:"since"`
	Activity  string      `json:"activity"` // "idle", "polling", "applying", "waiting for enrollment"
	Running   *CurrentRun `json:"running,omitempty"`
	NextPoll  time.Time   `json:"next_poll,omitzero"`
	NextDrift time.Time   `json:"next_drift,omitzero"`
}

// Status is everything alize status shows.
type Status struct {
	Version    string            `json:"version"`
	Daemon     *Live             `json:"daemon,omitempty"` // nil when no daemon answers
	Enrolled   bool              `json:"enrolled"`
	Identity   *IdentityStatus   `json:"identity,omitempty"`
	Controller *ControllerStatus `json:"controller,omitempty"`
	Manifest   *ManifestStatus   `json:"manifest,omitempty"`
	Refused    *Refused          `json:"refused,omitempty"` // the last manifest refused, when newer than the one applied
	Kinds      []KindState       `json:"kinds,omitempty"`
	LastRun    *RunRecord        `json:"last_run,omitempty"`
	Outbox     int               `json:"outbox"` // reports waiting for the controller
	Warnings   []string          `json:"warnings,omitempty"`
}

// IdentityStatus is who the server is.
type IdentityStatus struct {
	ServerID           string    `json:"server_id"`
	UAI                string    `json:"uai"`
	Academy            string    `json:"academy"`
	Enrolled           time.Time `json:"enrolled"`
	CertificateExpires time.Time `json:"certificate_expires"`
}

// ControllerStatus is the server's link with its controller.
type ControllerStatus struct {
	Address     string        `json:"address"`
	Reachable   bool          `json:"reachable"` // the last poll got an answer
	LastContact time.Time     `json:"last_contact,omitzero"`
	LastError   string        `json:"last_error,omitempty"`
	Failures    int           `json:"failures,omitempty"`
	NextPoll    time.Time     `json:"next_poll,omitzero"`
	ClockSkew   time.Duration `json:"clock_skew"`
}

// ManifestStatus is the last-known-good manifest.
type ManifestStatus struct {
	Serial   uint64    `json:"serial"`
	Digest   string    `json:"digest"`
	Received time.Time `json:"received"`
	Issued   time.Time `json:"issued"`
	Expires  time.Time `json:"expires"`
	Modules  int       `json:"modules"`
}

// The states of a kind in alize status.
const (
	StateApplied = "applied" // as the manifest wants
	StateDrifted = "drifted" // differs, left alone (report-only)
	StateFailing = "failing" // its plan, a change or its check failed
	StateSkipped = "skipped" // not run: a kind it depends on failed
	StatePending = "pending" // not applied yet (a new manifest, a run in progress)
)

// KindState is where one kind of the manifest stands.
type KindState struct {
	Kind    string `json:"kind"`
	Module  string `json:"module"`
	Version string `json:"version"`
	Mode    string `json:"mode"`
	State   string `json:"state"`
	Changes int    `json:"changes"` // applied (applied), planned (drifted), failed (failing)
	Error   string `json:"error,omitempty"`
}

// Status gathers the agent's status from the state directory, with live
// as the daemon's own part (nil when the daemon does not run).
func (a *Agent) Status(live *Live) Status {
	now := a.now()
	st := Status{Version: a.opts.Version, Daemon: live}
	if err := a.load(); err != nil {
		if !errors.Is(err, identity.ErrNotEnrolled) {
			st.Warnings = append(st.Warnings, err.Error())
		} else {
			st.Warnings = append(st.Warnings, identity.ErrNotEnrolled.Error())
		}
		st.Warnings = append(st.Warnings, a.takeWarnings()...)
		return st
	}
	id := a.identity()
	st.Enrolled = true
	st.Identity = &IdentityStatus{ServerID: id.ServerID, UAI: id.UAI, Academy: id.Academy, Enrolled: id.Enrolled, CertificateExpires: id.Certificate().NotAfter}
	c := readContact(a.store)
	st.Controller = &ControllerStatus{
		Address: id.Controller, Reachable: !c.LastContact.IsZero() && c.Failures == 0, LastContact: c.LastContact,
		LastError: c.LastError, Failures: c.Failures, NextPoll: c.NextPoll, ClockSkew: c.ClockSkew,
	}
	if live != nil && !live.NextPoll.IsZero() {
		st.Controller.NextPoll = live.NextPoll
	}
	lkg := a.lastKnownGood()
	if lkg != nil {
		st.Manifest = &ManifestStatus{Serial: lkg.Serial, Digest: lkg.Digest, Received: lkg.Received, Issued: lkg.Issued, Expires: lkg.Expires, Modules: len(lkg.Modules)}
	}
	if c.Refused != nil && (lkg == nil || c.Refused.At.After(lkg.Received)) {
		st.Refused = c.Refused
	}
	var applied Applied
	hasApplied := a.store.ReadJSON(fileApplied, &applied) == nil
	if hasApplied {
		st.LastRun = &applied.Run
	}
	if lkg != nil {
		running := live != nil && live.Running != nil
		byModule := map[string]KindSummary{}
		if hasApplied && applied.Serial == lkg.Serial {
			for _, k := range applied.Run.Kinds {
				byModule[k.Module] = k
			}
		}
		for _, m := range lkg.Modules {
			ks := KindState{Kind: m.Kind, Module: m.Name, Version: m.Version, Mode: string(a.modeOf(m)), State: StatePending}
			if sum, ok := byModule[m.Name]; ok && !running {
				ks.Error = sum.Error
				switch sum.Status {
				case api.KindApplied:
					ks.State, ks.Changes = StateApplied, sum.Changes
				case api.KindDrifted:
					ks.State, ks.Changes = StateDrifted, sum.Changes
				case api.KindSkipped:
					ks.State = StateSkipped
				default:
					ks.State, ks.Changes = StateFailing, sum.Failed
				}
			}
			st.Kinds = append(st.Kinds, ks)
		}
	}
	if p, err := a.outbox.Pending(); err == nil {
		st.Outbox = len(p)
	}
	st.Warnings = append(a.attention(now, live, id.Certificate().NotBefore, st), a.takeWarnings()...)
	return st
}

func (a *Agent) takeWarnings() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.warnings...)
}

// attention says what needs the technician's attention, and what to do.
func (a *Agent) attention(now time.Time, live *Live, certStart time.Time, st Status) []string {
	var w []string
	if live == nil {
		w = append(w, "the alize daemon is not running: start it with systemctl start alize (status shows the state files it left)")
	}
	cert := st.Identity.CertificateExpires
	life := cert.Sub(certStart)
	switch {
	case !now.Before(cert):
		w = append(w, fmt.Sprintf("the client certificate expired on %s: the daemon renews it at its next poll; if the controller refuses, enroll this server again", cert.Local().Format(time.DateTime)))
	case cert.Sub(now) < life/6:
		w = append(w, fmt.Sprintf("the client certificate expires on %s and was not renewed: check that the controller is reachable (alize check)", cert.Local().Format(time.DateTime)))
	}
	if m := st.Manifest; m != nil {
		switch {
		case !now.Before(m.Expires):
			w = append(w, fmt.Sprintf("manifest %d expired on %s: the server keeps it applied (frozen) until the controller sends a fresh one; check that the controller is reachable", m.Serial, m.Expires.Local().Format(time.DateTime)))
		case m.Expires.Sub(now) < 24*time.Hour:
			w = append(w, fmt.Sprintf("manifest %d expires on %s: the controller normally sends a fresh one before", m.Serial, m.Expires.Local().Format(time.DateTime)))
		}
	} else if st.Refused == nil {
		w = append(w, "no manifest yet: the controller has not assigned any module to this server, or has not been reached")
	}
	if r := st.Refused; r != nil {
		keep := "nothing was applied"
		if st.Manifest != nil {
			keep = fmt.Sprintf("manifest %d stays applied", st.Manifest.Serial)
		}
		w = append(w, fmt.Sprintf("the controller's last manifest was refused (%s): %s; %s; tell the academy's operators", r.Refusal.Code, clip(r.Refusal.Message, 200), keep))
	}
	if c := st.Controller; c.Failures > 0 {
		since := "never reached"
		if !c.LastContact.IsZero() {
			since = "last reached " + c.LastContact.Local().Format(time.DateTime)
		}
		w = append(w, fmt.Sprintf("the controller does not answer (%d failures in a row, %s): %s; alize check tells more", c.Failures, since, clip(c.LastError, 160)))
	}
	if c := st.Controller; c.ClockSkew > time.Minute || c.ClockSkew < -time.Minute {
		w = append(w, fmt.Sprintf("this server's clock is %s off the controller's: check its time synchronisation (timedatectl)", c.ClockSkew.Abs().Round(time.Second)))
	}
	for _, k := range st.Kinds {
		switch k.State {
		case StateFailing:
			w = append(w, fmt.Sprintf("%s (%s) is failing: %s", k.Kind, k.Module, clip(k.Error, 200)))
		case StateSkipped:
			w = append(w, fmt.Sprintf("%s (%s) was not applied: %s", k.Kind, k.Module, clip(k.Error, 200)))
		case StateDrifted:
			w = append(w, fmt.Sprintf("%s (%s) differs from the manifest by %d changes, left as is (report-only): alize plan lists them", k.Kind, k.Module, k.Changes))
		}
	}
	if st.Outbox > 10 {
		w = append(w, fmt.Sprintf("%d reports wait for the controller: they are sent as soon as it answers", st.Outbox))
	}
	return w
}

// pid is this process's id, for the daemon's live status.
func pid() int { return os.Getpid() }
