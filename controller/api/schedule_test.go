package api

import (
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 9, 1, 8, 0, 0, 0, time.UTC)

func seeded(i int) *mrand.Rand { return mrand.New(mrand.NewPCG(uint64(i), 0x9e3779b97f4a7c15)) }

func TestSlotIsStableAndSpread(t *testing.T) {
	h := PollHints{IntervalSeconds: 600}
	a := NewSchedule("srv-0951099D-01", h, seeded(1))
	b := NewSchedule("srv-0951099D-01", h, seeded(2))
	if a.Slot() != b.Slot() {
		t.Errorf("Slot() differs for the same server id: %v, %v", a.Slot(), b.Slot())
	}
	if a.Slot() < 0 || a.Slot() >= 10*time.Minute {
		t.Errorf("Slot() = %v, want within the 10 min interval", a.Slot())
	}
	if c := NewSchedule("srv-0951099D-02", h, seeded(1)); c.Slot() == a.Slot() {
		t.Errorf("two servers share slot %v", a.Slot())
	}
}

func TestSuccessObeysTheHint(t *testing.T) {
	s := NewSchedule("srv-1", PollHints{IntervalSeconds: 900}, seeded(3))
	for range 100 {
		next := s.Success(t0, 120*time.Second)
		if d := next.Sub(t0); d < 120*time.Second || d >= 132*time.Second {
			t.Fatalf("Success(hint 120s) = now+%v, want in [120s, 132s)", d)
		}
	}
	// A hint of 0 ("come back now") is floored: no hot loop.
	if d := s.Success(t0, 0).Sub(t0); d < MinPollInterval {
		t.Errorf("Success(hint 0) = now+%v, want at least %v", d, MinPollInterval)
	}
}

func TestSuccessWithoutHintPollsAtTheSlot(t *testing.T) {
	s := NewSchedule("srv-1", PollHints{IntervalSeconds: 600}, seeded(4))
	now := t0
	for range 50 {
		next := s.Success(now, -1)
		gap := next.Sub(now)
		if gap < 5*time.Minute || gap >= 16*time.Minute {
			t.Fatalf("Success(no hint) = now+%v, want between half an interval and 1.6 intervals", gap)
		}
		off := time.Duration(next.UnixNano() % int64(10*time.Minute))
		if d := (off - s.Slot() + 10*time.Minute) % (10 * time.Minute); d >= time.Minute {
			t.Fatalf("poll at offset %v, slot %v: more than the 1 min jitter off", off, s.Slot())
		}
		now = next.Add(200 * time.Millisecond)
	}
}

func TestFailureBacksOffWithFullJitter(t *testing.T) {
	s := NewSchedule("srv-1", PollHints{IntervalSeconds: 60}, seeded(5))
	for n := 1; n <= 10; n++ {
		ceiling := min(time.Minute<<(n-1), 4*time.Minute)
		d := s.Failure(t0, 0).Sub(t0)
		if d < time.Second || d >= ceiling+time.Second {
			t.Errorf("failure %d: retry in %v, want in [1s, %v)", n, d, ceiling)
		}
		if s.Failures() != n {
			t.Errorf("Failures() = %d, want %d", s.Failures(), n)
		}
	}
	// Retry-After is a floor.
	for range 100 {
		if d := s.Failure(t0, 5*time.Minute).Sub(t0); d < 5*time.Minute {
			t.Fatalf("Failure(Retry-After 5m) = now+%v, sooner than asked", d)
		}
	}
	s.Success(t0, -1)
	if s.Failures() != 0 {
		t.Errorf("Failures() after a success = %d, want 0", s.Failures())
	}
}

func TestSetHintsDefaultsAndBounds(t *testing.T) {
	s := NewSchedule("srv-1", PollHints{}, seeded(6))
	if s.Interval() != DefaultPollInterval || s.Wait() != 0 {
		t.Errorf("zero hints: interval %v, wait %v; want %v, 0", s.Interval(), s.Wait(), DefaultPollInterval)
	}
	s.SetHints(PollHints{IntervalSeconds: 1 << 30, WaitSeconds: 3600, BootDelaySeconds: 5})
	if s.Interval() != MaxPollInterval || s.Wait() != MaxWait || s.Slot() >= MaxPollInterval {
		t.Errorf("huge hints: interval %v, wait %v, slot %v; want capped", s.Interval(), s.Wait(), s.Slot())
	}
	for range 50 {
		if d := s.First(t0).Sub(t0); d < 0 || d >= 5*time.Second {
			t.Fatalf("First() = now+%v, want within the 5 s boot delay", d)
		}
	}
}

// histogram counts times into n buckets of width w from start; times
// outside are counted in out.
func histogram(times []time.Time, start time.Time, w time.Duration, n int) (buckets []int, out int) {
	buckets = make([]int, n)
	for _, at := range times {
		i := int(at.Sub(start) / w)
		if at.Before(start) || i >= n {
			out++
			continue
		}
		buckets[i]++
	}
	return buckets, out
}

func peakPerSecond(times []time.Time) int {
	per := map[int64]int{}
	peak := 0
	for _, at := range times {
		per[at.Unix()]++
		peak = max(peak, per[at.Unix()])
	}
	return peak
}

func bars(buckets []int) string {
	var b strings.Builder
	for i, n := range buckets {
		fmt.Fprintf(&b, "%2d | %-60s %d\n", i, strings.Repeat("#", n/3), n)
	}
	return b.String()
}

// TestHerdAfterControllerRestart simulates 1,000 agents long-polling a
// controller that restarts: every long poll fails at the same instant,
// the controller is down for a minute, and then up. The first successful
// polls must spread over the rest of the poll interval (here 10 min) that
// follows the restart, never synchronised: every minute of the window
// gets its share, and no second sees more than a handful of polls. The
// few agents whose retry fell in the minute of downtime come back later,
// spread over twice the interval.
func TestHerdAfterControllerRestart(t *testing.T) {
	const agents = 1000
	interval := 10 * time.Minute
	down, up := t0, t0.Add(time.Minute)
	hints := PollHints{IntervalSeconds: int(interval / time.Second), WaitSeconds: 300}
	var first []time.Time
	for i := range agents {
		s := NewSchedule(fmt.Sprintf("srv-%07d", i), hints, seeded(1000+i))
		next := s.Failure(down, 0) // the long poll dropped when the controller stopped
		for next.Before(up) {
			next = s.Failure(next, 0) // connection refused while it is down
		}
		first = append(first, next)
	}
	// The window: from the controller's return to one interval after it
	// stopped.
	buckets, out := histogram(first, up, time.Minute, 9)
	t.Logf("first polls after the restart, per minute of the window:\n%s%d after the window", bars(buckets), out)
	if out > agents/10 {
		t.Errorf("%d of %d agents came back after the window, want at most 10%%", out, agents)
	}
	mean := (agents - out) / 9
	for i, n := range buckets {
		if n < mean*6/10 || n > mean*14/10 {
			t.Errorf("minute %d of the window has %d first polls, want %d ± 40%%", i, n, mean)
		}
	}
	if peak := peakPerSecond(first); peak > 12 {
		t.Errorf("busiest second has %d first polls, want at most 12 (%d agents over %v)", peak, agents, interval)
	}
}

// TestHerdAtBoot: 1,000 school servers powered on at 8:00 make their
// first poll spread over the boot delay.
func TestHerdAtBoot(t *testing.T) {
	const agents = 1000
	hints := PollHints{IntervalSeconds: 900, BootDelaySeconds: 600}
	var first []time.Time
	for i := range agents {
		first = append(first, NewSchedule(fmt.Sprintf("srv-%07d", i), hints, seeded(5000+i)).First(t0))
	}
	buckets, out := histogram(first, t0, time.Minute, 10)
	t.Logf("first polls after boot, per minute:\n%s", bars(buckets))
	if out != 0 {
		t.Errorf("%d first polls outside the 10 min boot delay", out)
	}
	for i, n := range buckets {
		if n < 60 || n > 140 {
			t.Errorf("minute %d after boot has %d first polls, want 100 ± 40", i, n)
		}
	}
	if peak := peakPerSecond(first); peak > 12 {
		t.Errorf("busiest second after boot has %d first polls, want at most 12", peak)
	}
}

// TestHerdAfterRetryAfter: a controller that answers everyone "503,
// Retry-After: 30" does not get everyone back at 30 s.
func TestHerdAfterRetryAfter(t *testing.T) {
	const agents = 1000
	hints := PollHints{IntervalSeconds: 600}
	var next []time.Time
	for i := range agents {
		s := NewSchedule(fmt.Sprintf("srv-%07d", i), hints, seeded(9000+i))
		n := s.Failure(t0, 30*time.Second)
		if n.Before(t0.Add(30 * time.Second)) {
			t.Fatalf("agent %d comes back at now+%v, before Retry-After", i, n.Sub(t0))
		}
		next = append(next, n)
	}
	buckets, out := histogram(next, t0.Add(30*time.Second), time.Minute, 10)
	t.Logf("polls after a Retry-After of 30 s, per minute:\n%s", bars(buckets))
	if out != 0 {
		t.Errorf("%d agents outside [30s, 30s + interval)", out)
	}
	for i, n := range buckets {
		if n < 60 || n > 140 {
			t.Errorf("minute %d has %d polls, want 100 ± 40", i, n)
		}
	}
}

// TestSteadyStateSlotsSpread: with no hints, servers poll at their slots,
// which spread over the interval.
func TestSteadyStateSlotsSpread(t *testing.T) {
	const agents = 1000
	hints := PollHints{IntervalSeconds: 600}
	var polls []time.Time
	for i := range agents {
		s := NewSchedule(fmt.Sprintf("srv-%07d", i), hints, seeded(20000+i))
		at := s.Success(t0, -1)
		polls = append(polls, at)
	}
	// Fold onto one interval.
	var folded []time.Time
	for _, p := range polls {
		folded = append(folded, t0.Add(time.Duration(p.UnixNano()%int64(10*time.Minute))))
	}
	buckets, _ := histogram(folded, t0, time.Minute, 10)
	t.Logf("steady-state polls per minute of the interval:\n%s", bars(buckets))
	for i, n := range buckets {
		if n < 60 || n > 140 {
			t.Errorf("minute %d of the interval has %d polls, want 100 ± 40", i, n)
		}
	}
}
