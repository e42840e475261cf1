package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/alize-eple/alize/controller/internal/store"
)

// Hub holds the long polls: each waits on its server's channel, which a
// new manifest closes. It also caches what the 304 path needs of each
// server's current manifest (its digest and blobs), so that most polls
// never reach the store; and it hands the manifests this replica has just
// signed to the long polls they wake, so that a fleet-wide change does not
// read 17,000 manifests back from the store it wrote them to.
type Hub struct {
	mu      sync.Mutex
	waiters map[string]chan struct{}
	cache   map[string]manifestMeta
	holding int    // long polls held now
	gen     uint64 // grows at every Wake: a cache fill that saw it move is dropped
}

type manifestMeta struct {
	found  bool
	serial uint64
	etag   string // the manifest's digest
	blobs  []string
	// envelope is the manifest itself, kept from its signing for the
	// long poll it woke; the first answer takes it (take), and what no
	// poll took is dropped after a while (drop).
	envelope []byte
	signed   time.Time
}

// NewHub makes an empty Hub.
func NewHub() *Hub {
	return &Hub{waiters: map[string]chan struct{}{}, cache: map[string]manifestMeta{}}
}

// watch returns a channel closed at the next Wake of the server.
func (h *Hub) watch(id string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch, ok := h.waiters[id]
	if !ok {
		ch = make(chan struct{})
		h.waiters[id] = ch
	}
	return ch
}

// Wake tells the servers' long polls that they have a new manifest.
func (h *Hub) Wake(ids []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gen++
	for _, id := range ids {
		delete(h.cache, id)
		if ch, ok := h.waiters[id]; ok {
			close(ch)
			delete(h.waiters, id)
		}
	}
}

// Signed records manifests this replica has just committed and wakes
// their servers' long polls, which answer with the envelope handed over
// here. A manifest older than the one cached (a slower build's) is
// ignored.
func (h *Hub) Signed(ms []store.Manifest) {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gen++
	for _, m := range ms {
		id := m.ServerID
		old, ok := h.cache[id]
		if ok && old.found && old.serial > m.Serial {
			continue
		}
		meta := manifestMeta{found: true, serial: m.Serial, etag: m.Digest, blobs: m.Blobs}
		if ch, ok := h.waiters[id]; ok {
			meta.envelope, meta.signed = m.Envelope, now
			close(ch)
			delete(h.waiters, id)
		}
		h.cache[id] = meta
	}
}

// take returns the envelope handed over for a server's manifest of digest
// etag, once; nil when there is none (read it from the store).
func (h *Hub) take(id, etag string) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	m, ok := h.cache[id]
	if !ok || m.envelope == nil || m.etag != etag {
		return nil
	}
	env := m.envelope
	m.envelope = nil
	h.cache[id] = m
	return env
}

// drop forgets the envelopes handed over before t that no poll took (its
// agent went away meanwhile).
func (h *Hub) drop(t time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, m := range h.cache {
		if m.envelope != nil && m.signed.Before(t) {
			m.envelope = nil
			h.cache[id] = m
		}
	}
}

// handed counts the envelopes handed over and not taken yet.
func (h *Hub) handed() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.cache {
		if m.envelope != nil {
			n++
		}
	}
	return n
}

// WakeAll forgets every cached manifest and wakes every long poll.
func (h *Hub) WakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gen++
	clear(h.cache)
	for id, ch := range h.waiters {
		close(ch)
		delete(h.waiters, id)
	}
}

// Holding is how many long polls are held.
func (h *Hub) Holding() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.holding
}

func (h *Hub) hold(d int) {
	h.mu.Lock()
	h.holding += d
	h.mu.Unlock()
}

// meta returns what the cache knows of a server's manifest, asking the
// store on a miss.
func (h *Hub) meta(ctx context.Context, s store.Store, id string) (manifestMeta, error) {
	h.mu.Lock()
	m, ok := h.cache[id]
	gen := h.gen
	h.mu.Unlock()
	if ok {
		return m, nil
	}
	mf, err := s.Manifest(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		m = manifestMeta{}
	case err != nil:
		return manifestMeta{}, err
	default:
		m = manifestMeta{found: true, serial: mf.Serial, etag: mf.Digest, blobs: mf.Blobs}
	}
	h.mu.Lock()
	if h.gen == gen { // else a Wake came meanwhile: what we read may be stale
		h.cache[id] = m
	}
	h.mu.Unlock()
	return m, nil
}

// seen remembers when servers last polled, and writes it to the store
// now and then.
type seen struct {
	mu sync.Mutex
	m  map[string]time.Time
}

func (s *seen) mark(id string, t time.Time) {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[string]time.Time{}
	}
	s.m[id] = t
	s.mu.Unlock()
}

func (s *seen) flush(ctx context.Context, st store.Store) error {
	s.mu.Lock()
	m := s.m
	s.m = nil
	s.mu.Unlock()
	return st.MarkSeen(ctx, m)
}
