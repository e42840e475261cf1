package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	mrand "math/rand/v2"
	"time"
)

// Poll timing defaults, used when the controller's PollHints leave a
// field at zero.
const (
	DefaultPollInterval = 15 * time.Minute
	DefaultBootDelay    = 10 * time.Minute
	// MinPollInterval and MaxPollInterval bound the interval a controller
	// may set.
	MinPollInterval = time.Second
	MaxPollInterval = 24 * time.Hour
)

// Schedule decides when an agent polls, so that 17,000 servers never poll
// together:
//
//   - each server has its own slot in the poll interval, from a hash of
//     its id: with no hint from the controller, it polls at its slot of
//     every interval (plus jitter);
//   - the first poll after the agent starts waits a random delay up to
//     the boot delay (schools power on at 8:00);
//   - after an answer the controller's next-poll hint (Alize-Next-Poll)
//     is obeyed, plus a little jitter;
//   - after a failure the agent backs off exponentially with full jitter,
//     starting from a random point of the whole interval (a controller
//     that restarts drops every long poll at once: the agents come back
//     spread over the interval, not together), never sooner than the
//     controller's Retry-After.
//
// A Schedule is used by one goroutine (it holds its random source).
type Schedule struct {
	slot       time.Duration
	interval   time.Duration
	jitter     time.Duration
	bootDelay  time.Duration
	maxBackoff time.Duration
	wait       time.Duration
	failures   int
	rnd        *mrand.Rand
}

// NewSchedule returns the schedule of the server serverID under hints (a
// field at zero takes its default).
// rnd is the random source (nil: one seeded from crypto/rand); tests and
// simulations pass a seeded one.
func NewSchedule(serverID string, hints PollHints, rnd *mrand.Rand) *Schedule {
	if rnd == nil {
		var seed [16]byte
		rand.Read(seed[:])
		rnd = mrand.New(mrand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])))
	}
	s := &Schedule{rnd: rnd}
	sum := sha256.Sum256([]byte(serverID))
	s.SetHints(hints)
	s.slot = time.Duration(binary.BigEndian.Uint64(sum[:8]) % uint64(s.interval))
	return s
}

// SetHints applies new poll hints (from an enrollment answer). The slot
// keeps its place in the new interval.
func (s *Schedule) SetHints(h PollHints) {
	old := s.interval
	s.interval = DefaultPollInterval
	if h.IntervalSeconds > 0 {
		s.interval = min(max(time.Duration(h.IntervalSeconds)*time.Second, MinPollInterval), MaxPollInterval)
	}
	s.bootDelay = DefaultBootDelay
	if h.BootDelaySeconds > 0 {
		s.bootDelay = min(time.Duration(h.BootDelaySeconds)*time.Second, MaxPollInterval)
	}
	s.wait = min(max(time.Duration(h.WaitSeconds)*time.Second, 0), MaxWait)
	s.jitter = s.interval / 10
	s.maxBackoff = 4 * s.interval
	if old > 0 && old != s.interval {
		s.slot = time.Duration(uint64(s.slot) * uint64(s.interval) / uint64(old))
	}
}

// Interval is the poll interval.
func (s *Schedule) Interval() time.Duration { return s.interval }

// Wait is how long a poll may be held by the controller (long poll); 0
// for none.
func (s *Schedule) Wait() time.Duration { return s.wait }

// Slot is this server's offset in every interval (epoch-aligned).
func (s *Schedule) Slot() time.Duration { return s.slot }

// Failures is the number of failures in a row.
func (s *Schedule) Failures() int { return s.failures }

// First is when to poll first after the agent starts at now: a random
// delay up to the boot delay.
func (s *Schedule) First(now time.Time) time.Time {
	return now.Add(s.uniform(s.bootDelay))
}

// Success is when to poll next after an answer at now. nextPoll is the
// controller's hint (negative for none): obeyed, plus jitter of up to a
// tenth of it. Without a hint, the next slot at least half an interval
// away, plus jitter.
func (s *Schedule) Success(now time.Time, nextPoll time.Duration) time.Time {
	s.failures = 0
	if nextPoll >= 0 {
		nextPoll = min(max(nextPoll, MinPollInterval), MaxPollInterval)
		return now.Add(nextPoll + s.uniform(min(s.jitter, nextPoll/10)))
	}
	return s.nextSlot(now).Add(s.uniform(s.jitter))
}

// Failure is when to try again after a failure at now (no answer, or an
// error answer). The delay is drawn uniformly ("full jitter") from zero to
// the interval times 2^(failures-1), capped at four intervals; the
// controller's retryAfter (0 for none) is added to it, so that agents
// told to come back in 30 s do not all come back at 30 s.
func (s *Schedule) Failure(now time.Time, retryAfter time.Duration) time.Time {
	s.failures++
	ceiling := s.maxBackoff
	if s.failures < 8 {
		ceiling = min(s.interval<<(s.failures-1), s.maxBackoff)
	}
	d := max(s.uniform(ceiling), min(time.Second, s.interval/10))
	if retryAfter > 0 {
		d += min(retryAfter, MaxPollInterval)
	}
	return now.Add(d)
}

// nextSlot is the first slot time at least half an interval after now.
func (s *Schedule) nextSlot(now time.Time) time.Time {
	n := now.UnixNano()
	iv := int64(s.interval)
	t := n - n%iv + int64(s.slot)
	for t-n < iv/2 {
		t += iv
	}
	return time.Unix(0, t)
}

// uniform draws from [0, d).
func (s *Schedule) uniform(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(s.rnd.Int64N(int64(d)))
}
