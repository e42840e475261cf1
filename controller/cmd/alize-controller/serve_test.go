package main

import "testing"

// TestMemoryBudget: the soft limit is the budget, raised to 1.5× what
// the process keeps when it outgrew it, and capped by the ceiling.
func TestMemoryBudget(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live, want int64
	}{
		{100 * mib, 880 * mib}, // an academy: the budget
		{580 * mib, 880 * mib}, // the nation between changes
		{700 * mib, 1050 * mib},
		{8000 * mib, 11000 * mib}, // the ceiling
	} {
		m := &memoryBudget{budget: 880 * mib, ceiling: 11000 * mib, live: func() int64 { return c.live }}
		if got := m.limit(); got != c.want {
			t.Errorf("keeping %d MiB: limit %d MiB, want %d MiB", c.live/mib, got/mib, c.want/mib)
		}
	}
	if live := liveBytes(); live <= 0 {
		t.Errorf("liveBytes() = %d: the runtime metrics are not read", live)
	}
}
