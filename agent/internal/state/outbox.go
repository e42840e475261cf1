package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/alize-eple/alize/modules/atomic"
)

// Outbox holds reports until the controller has acknowledged them. Each
// report has an idempotent id (the controller ignores a second delivery of
// the same id), is one file on disk, and is delivered in the order it was
// put. When the outbox is full the oldest report is dropped and counted:
// the next report says how many were lost, so the controller knows.
type Outbox struct {
	dir string
	max int

	mu sync.Mutex
}

// OutboxEntry is one report waiting for delivery.
type OutboxEntry struct {
	Seq    uint64
	ID     string
	Report []byte
}

// Outbox opens the report outbox, keeping at most max reports.
func (s *Store) Outbox(max int) (*Outbox, error) {
	if max < 1 {
		return nil, fmt.Errorf("state: outbox size %d, want at least 1", max)
	}
	dir := s.Path("outbox")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return &Outbox{dir: dir, max: max}, nil
}

// validID keeps ids safe as file names.
func validID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("report id %q: must be 1 to 128 characters", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("report id %q: only letters, digits, - and _ are allowed", id)
		}
	}
	return nil
}

// Put adds a report. Putting an id already in the outbox changes nothing.
func (o *Outbox) Put(id string, report []byte) error {
	if err := validID(id); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	entries, err := o.list()
	if err != nil {
		return err
	}
	var next uint64 = 1
	for _, e := range entries {
		if e.id == id {
			return nil
		}
		next = e.seq + 1
	}
	if err := atomic.WriteFile(filepath.Join(o.dir, entryName(next, id)), report, 0o600); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	for len(entries)+1 > o.max {
		if err := os.Remove(filepath.Join(o.dir, entries[0].name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("outbox: %w", err)
		}
		entries = entries[1:]
		if err := o.addDropped(1); err != nil {
			return err
		}
	}
	return nil
}

// Pending returns the reports not yet acknowledged, oldest first.
func (o *Outbox) Pending() ([]OutboxEntry, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	entries, err := o.list()
	if err != nil {
		return nil, err
	}
	out := make([]OutboxEntry, 0, len(entries))
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(o.dir, e.name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("outbox: %w", err)
		}
		out = append(out, OutboxEntry{Seq: e.seq, ID: e.id, Report: data})
	}
	return out, nil
}

// Ack removes a delivered report. Acknowledging an unknown id is not an
// error: the report was already removed.
func (o *Outbox) Ack(id string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	entries, err := o.list()
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.id == id {
			if err := os.Remove(filepath.Join(o.dir, e.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("outbox: %w", err)
			}
		}
	}
	return nil
}

// Dropped says how many reports were dropped because the outbox was full,
// and resets the count: call it when building the next report.
func (o *Outbox) Dropped() (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, err := o.dropped()
	if err != nil || n == 0 {
		return n, err
	}
	if err := os.Remove(filepath.Join(o.dir, "dropped")); err != nil {
		return 0, fmt.Errorf("outbox: %w", err)
	}
	return n, nil
}

func (o *Outbox) dropped() (int, error) {
	data, err := os.ReadFile(filepath.Join(o.dir, "dropped"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("outbox: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || n < 0 {
		return 0, nil // a damaged counter is not worth stopping reports for
	}
	return n, nil
}

func (o *Outbox) addDropped(k int) error {
	n, err := o.dropped()
	if err != nil {
		return err
	}
	if err := atomic.WriteFile(filepath.Join(o.dir, "dropped"), []byte(strconv.Itoa(n+k)+"\n"), 0o600); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

type outboxFile struct {
	name string
	seq  uint64
	id   string
}

func entryName(seq uint64, id string) string { return fmt.Sprintf("%020d-%s.json", seq, id) }

// list returns the outbox files in delivery order, ignoring anything that
// is not a report file.
func (o *Outbox) list() ([]outboxFile, error) {
	des, err := os.ReadDir(o.dir)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	var out []outboxFile
	for _, d := range des {
		name := d.Name()
		stem, ok := strings.CutSuffix(name, ".json")
		if !ok || d.IsDir() {
			continue
		}
		seqText, id, ok := strings.Cut(stem, "-")
		if !ok || len(seqText) != 20 || validID(id) != nil {
			continue
		}
		seq, err := strconv.ParseUint(seqText, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, outboxFile{name: name, seq: seq, id: id})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out, nil
}
