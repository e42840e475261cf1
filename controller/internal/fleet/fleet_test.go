package fleet

import (
	"strings"
	"testing"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/controller/internal/store"
	"github.com/google/go-cmp/cmp"
)

var now = time.Date(2025, 9, 1, 10, 0, 0, 0, time.UTC)

func TestState(t *testing.T) {
	mf := &store.Manifest{Serial: 5, Issued: now.Add(-time.Hour)}
	base := store.Server{ID: "s", PollInterval: 300, Enrolled: now.Add(-24 * time.Hour), LastSeen: now.Add(-time.Minute)}
	with := func(f func(*store.Server)) store.Server { s := base; f(&s); return s }
	reported := func(serial uint64, outcome api.Outcome) func(*store.Server) {
		return func(s *store.Server) {
			s.ReportID, s.ReportSerial, s.ReportOutcome, s.ReportTime = "r", serial, string(outcome), now.Add(-2*time.Minute)
		}
	}
	for _, tc := range []struct {
		name string
		sv   store.Server
		mf   *store.Manifest
		want string
	}{
		{"compliant", with(reported(5, api.OutcomeCompliant)), mf, api.StateCompliant},
		{"corrected", with(reported(5, api.OutcomeCorrected)), mf, api.StateCorrected},
		{"failing", with(reported(5, api.OutcomeFailing)), mf, api.StateFailing},
		{"reverted", with(reported(5, api.OutcomeReverted)), mf, api.StateFailing},
		{"refused", with(reported(5, api.OutcomeRefused)), mf, api.StateRefused},
		{"reported on an older manifest", with(reported(4, api.OutcomeCompliant)), mf, api.StatePending},
		{"never reported", base, mf, api.StatePending},
		{"no manifest", base, nil, api.StatePending},
		{"cannot build", with(func(s *store.Server) { s.CompileError = "x: mandatory" }), nil, api.StateFailing},
		{"silent past its schedule", with(func(s *store.Server) { s.LastSeen = now.Add(-26 * time.Minute) }), mf, api.StateNotReporting},
		{"silent within its schedule", with(func(s *store.Server) { s.LastSeen = now.Add(-24 * time.Minute) }), mf, api.StatePending},
		{"a slow schedule", with(func(s *store.Server) { s.PollInterval = 3600; s.LastSeen = now.Add(-2 * time.Hour) }), mf, api.StatePending},
		{"revoked", with(func(s *store.Server) { s.Revoked = now }), mf, api.StateRevoked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, reason := State(tc.sv, tc.mf, now); got != tc.want {
				t.Errorf("State() = %s (%s), want %s", got, reason, tc.want)
			}
		})
	}
}

func TestIndicators(t *testing.T) {
	lycee := store.Establishment{UAI: "0951099D", Academy: "versailles", Type: "lycee"}
	college := store.Establishment{UAI: "0780001C", Academy: "versailles", Type: "college"}
	mod := func(v string) []store.ManifestModule { return []store.ManifestModule{{Name: "motd", Version: v}} }
	issued := now.Add(-time.Hour)
	sv := func(id string, outcome api.Outcome, appliedAfter time.Duration) store.Server {
		s := store.Server{ID: id, PollInterval: 300, Enrolled: now.Add(-time.Hour), LastSeen: now, ReportID: "r", ReportSerial: 2, ReportOutcome: string(outcome), ReportTime: now}
		if appliedAfter > 0 {
			s.AppliedSerial, s.AppliedTime = 2, issued.Add(appliedAfter)
		}
		return s
	}
	rows := []Row{
		{sv("a", api.OutcomeCompliant, 10*time.Second), lycee, &store.Manifest{Serial: 2, Issued: issued, Modules: mod("1.0.0")}},
		{sv("b", api.OutcomeCorrected, 30*time.Second), college, &store.Manifest{Serial: 2, Issued: issued, Modules: mod("1.1.0")}},
		{sv("c", api.OutcomeFailing, 0), college, &store.Manifest{Serial: 2, Issued: issued, Modules: mod("1.1.0")}},
		{store.Server{ID: "d", Revoked: now}, college, nil},
	}
	got := Indicators(rows, now)
	want := []api.IndicatorRow{
		{By: "fleet", Key: "all", Servers: 3, Compliant: 1, Corrected: 1, Failing: 1, CompliancePercent: 200.0 / 3, MedianPushToAppliedSeconds: 20},
		{By: "academy", Key: "versailles", Servers: 3, Compliant: 1, Corrected: 1, Failing: 1, CompliancePercent: 200.0 / 3, MedianPushToAppliedSeconds: 20},
		{By: "type", Key: "college", Servers: 2, Corrected: 1, Failing: 1, CompliancePercent: 50, MedianPushToAppliedSeconds: 30},
		{By: "type", Key: "lycee", Servers: 1, Compliant: 1, CompliancePercent: 100, MedianPushToAppliedSeconds: 10},
		{By: "module", Key: "motd@1.0.0", Servers: 1, Compliant: 1, CompliancePercent: 100, MedianPushToAppliedSeconds: 10},
		{By: "module", Key: "motd@1.1.0", Servers: 2, Corrected: 1, Failing: 1, CompliancePercent: 50, MedianPushToAppliedSeconds: 30},
	}
	if diff := cmp.Diff(want, got.Rows); diff != "" {
		t.Errorf("Indicators() (-want +got):\n%s", diff)
	}
	csv := string(CSV(got))
	if !strings.HasPrefix(csv, "by,key,servers,") || !strings.Contains(csv, "module,motd@1.1.0,2,0,1,1,0,0,0,50.0,30.0\n") {
		t.Errorf("CSV() =\n%s", csv)
	}
}
