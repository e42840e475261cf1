package school_test

import (
	"strings"
	"testing"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/testenv/school"
)

// TestHostileMirror: a mirror in the path, holding the controller's TLS
// key and the agent's client key, rewrites the school's manifest (opening
// the admin network to the world). The agent refuses it, keeps its
// last-known-good applied, and the refusal shows at the controller; once
// the mirror is gone the school converges again.
func TestHostileMirror(t *testing.T) {
	s := converged(t)
	est := "establishment:" + school.UAI
	before, err := s.ServerState()
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.StartMirror()
	if err != nil {
		t.Fatal(err)
	}
	// The agent's open connection bypasses the mirror: it reconnects
	// through it after a restart.
	s.Agent.Stop()
	if err := s.Agent.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Controller.Operator("var", "set", est, "pedagogical_internet", "accept"); err != nil {
		t.Fatal(err)
	}
	var d api.ServerDetail
	if err := s.WaitFor(60*time.Second, "the refusal at the controller", func() bool {
		d, err = s.ServerState()
		return err == nil && d.State == api.StateRefused
	}); err != nil {
		t.Fatalf("%v (last: state %s, reason %q, serial %d, applied %d)", err, d.State, d.Reason, d.Serial, d.AppliedSerial)
	}
	if m.Tampered() == 0 {
		t.Fatal("the mirror rewrote no manifest: the agent did not go through it")
	}
	if !strings.Contains(d.Reason, "bad_signature") {
		t.Errorf("the controller's reason = %q, want the agent's code bad_signature", d.Reason)
	}
	if d.AppliedSerial != before.Serial {
		t.Errorf("applied serial %d at the controller, want the last-known-good %d", d.AppliedSerial, before.Serial)
	}
	st, err := s.Agent.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Manifest == nil || st.Manifest.Serial != before.Serial || st.Refused == nil || st.Refused.Refusal.Code != "bad_signature" {
		t.Errorf("alize status: manifest %+v, refused %+v; want serial %d kept and a bad_signature refusal", st.Manifest, st.Refused, before.Serial)
	}
	if err := s.PupilWeb(2 * time.Second); err == nil {
		t.Error("the pupil PC reaches the Internet: something of the tampered manifest was applied")
	}

	// The mirror gone, the next manifest reaches the school.
	m.Stop()
	for _, v := range []string{"drop", "accept"} {
		if _, err := s.Controller.Operator("var", "set", est, "pedagogical_internet", v); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.WaitApplied(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.PupilWeb(5 * time.Second); err != nil {
		t.Errorf("the school did not converge after the mirror left: %v", err)
	}
}
