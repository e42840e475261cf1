package server

import (
	"testing"
	"time"

	"github.com/alize-eple/alize/controller/internal/store"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestHubHandsSignedManifests: a manifest just signed goes to the long
// poll it wakes, once; a server that was not waiting reads the store; an
// older manifest never replaces a newer one; what nobody took is dropped.
func TestHubHandsSignedManifests(t *testing.T) {
	h := NewHub()
	waiting := h.watch("a")
	h.Signed([]store.Manifest{
		{ServerID: "a", Serial: 2, Digest: "da2", Envelope: []byte("envelope a2"), Blobs: []string{"b1"}},
		{ServerID: "b", Serial: 5, Digest: "db5", Envelope: []byte("envelope b5")},
	})
	if !closed(waiting) {
		t.Fatal("the long poll of a was not woken")
	}
	m, err := h.meta(t.Context(), nil, "a") // cached: the store is not asked
	if err != nil || !m.found || m.serial != 2 || m.etag != "da2" || len(m.blobs) != 1 {
		t.Fatalf("meta(a) = %+v, %v; want serial 2, digest da2, one blob", m, err)
	}
	if got := h.take("a", "da1"); got != nil {
		t.Errorf("take(a, another digest) = %q, want nil", got)
	}
	if got := string(h.take("a", "da2")); got != "envelope a2" {
		t.Errorf("take(a) = %q, want the envelope signed", got)
	}
	if got := h.take("a", "da2"); got != nil {
		t.Errorf("take(a) again = %q, want nil: handed once", got)
	}
	if got := h.take("b", "db5"); got != nil {
		t.Errorf("take(b) = %q, want nil: b held no long poll", got)
	}

	// A slower build's older manifest does not replace the newer one.
	h.Signed([]store.Manifest{{ServerID: "b", Serial: 4, Digest: "db4"}})
	if m, _ := h.meta(t.Context(), nil, "b"); m.etag != "db5" {
		t.Errorf("after an older manifest, b's digest is %s, want db5", m.etag)
	}

	// Handed but never taken: dropped after a while.
	h.watch("c")
	h.Signed([]store.Manifest{{ServerID: "c", Serial: 1, Digest: "dc1", Envelope: []byte("envelope c1")}})
	h.drop(time.Now().Add(-time.Minute))
	if h.handed() != 1 {
		t.Fatalf("%d envelopes handed before drop, want 1", h.handed())
	}
	h.drop(time.Now().Add(time.Second))
	if got := h.take("c", "dc1"); got != nil || h.handed() != 0 {
		t.Errorf("after drop, take(c) = %q and %d handed; want nil and 0", got, h.handed())
	}
	// A wake from another replica forgets what was cached.
	h.watch("a")
	h.Signed([]store.Manifest{{ServerID: "a", Serial: 3, Digest: "da3", Envelope: []byte("envelope a3")}})
	h.Wake([]string{"a"})
	if _, cached := h.cache["a"]; cached || h.handed() != 0 {
		t.Errorf("after Wake(a): a cached %v, %d handed; want false and 0", cached, h.handed())
	}
}
