package fleetsim

import (
	"math"
	"testing"
	"time"
)

func TestQuantileBound(t *testing.T) {
	inf := math.Inf(1)
	before := []Bucket{{0.001, 10}, {0.005, 20}, {0.05, 20}, {inf, 20}}
	// 1,000 answers between the readings: 950 ≤ 1 ms, 40 ≤ 5 ms, 9 ≤ 50 ms, 1 beyond.
	after := []Bucket{{0.001, 960}, {0.005, 1000}, {0.05, 1009}, {inf, 1010}}
	if got, ok := quantileBound(before, after, 0.5); !ok || got != time.Millisecond {
		t.Errorf("p50 = %s, %v; want 1ms", got, ok)
	}
	if got, ok := quantileBound(before, after, 0.99); !ok || got != 50*time.Millisecond {
		t.Errorf("p99 = %s, %v; want 50ms", got, ok)
	}
	if _, ok := quantileBound(before, after, 0.9999); ok {
		t.Errorf("p99.99 is beyond the last bound: want no answer")
	}
	if _, ok := quantileBound(before, before, 0.99); ok {
		t.Errorf("nothing observed: want no answer")
	}
}
