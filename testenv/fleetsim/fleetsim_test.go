package fleetsim_test

import (
	"context"
	"testing"
	"time"

	"github.com/alize-eple/alize/testenv/fleetsim"
)

// TestFleetSmall runs a small fleet through the whole story on SQLite:
// every agent enrolls, verifies and reports its first manifest, polls
// steadily, then a fleet-level variable changes and every agent verifies
// and reports the new manifest, each report acknowledged. No timing is
// checked here: BenchmarkFleet17000 measures.
func TestFleetSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const agents = 50
	res, err := fleetsim.Run(ctx, t, fleetsim.Options{
		Agents: agents, Bin: bin,
		LongPoll: 3 * time.Second, BootDelay: time.Second, Steady: 4 * time.Second,
		Timeout: time.Minute, Log: t.Logf,
	})
	if err != nil {
		t.Fatalf("Run: %v (errors seen: %q)", err, res.Errors)
	}
	if res.Changed != agents {
		t.Errorf("the change touched %d manifests, want %d", res.Changed, agents)
	}
	if res.Converged != agents {
		t.Errorf("%d agents reported the change, want %d", res.Converged, agents)
	}
	if res.Refusals != 0 || res.ReportErrors != 0 {
		t.Errorf("%d manifests refused, %d reports failed, want none: %q", res.Refusals, res.ReportErrors, res.Errors)
	}
	if res.Polls304 == 0 {
		t.Errorf("no long poll ended without change during the steady phase")
	}
	if res.ControllerP99 == 0 {
		t.Errorf("the controller's latency histogram (/metrics) was not read")
	}
	if res.RSSPeak == 0 {
		t.Errorf("the controller's memory was not read")
	}
}
