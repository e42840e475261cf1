// Package state keeps the agent's state on disk, under /var/lib/alize by
// default: keys, pinned root, last-known-good manifest, run history and the
// report outbox. Every write is atomic (temp file, fsync, rename, fsync of
// the directory): a crash or a power cut leaves either the old file or the
// new one, never a torn one. A file that does not decode is reported as
// corrupt and set aside, never a crash loop.
//
// Who may import it: the agent only (agent/…).
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/alize-eple/alize/modules/atomic"
)

// DefaultDir is where the agent keeps its state in production.
const DefaultDir = "/var/lib/alize"

// MaxFileSize bounds every state file the agent reads back.
const MaxFileSize = 64 << 20

// ErrLocked is returned by Lock when another process holds the run lock.
var ErrLocked = errors.New("another alize run is in progress")

// CorruptError says a state file could not be read back. The file has been
// moved aside to Quarantine so the agent can go on from a clean state.
type CorruptError struct {
	Path       string
	Quarantine string
	Err        error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("state file %s is corrupt (%v); kept as %s", e.Path, e.Err, e.Quarantine)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Store is the agent's state directory.
type Store struct {
	dir string
	now func() time.Time
}

// Open opens (creating when needed) the state directory, readable by root
// only.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	s := &Store{dir: dir, now: time.Now}
	s.removeTemps(dir)
	return s, nil
}

// Dir is the state directory.
func (s *Store) Dir() string { return s.dir }

// Path is the path of a state file given by its name relative to Dir.
func (s *Store) Path(name string) string { return filepath.Join(s.dir, filepath.FromSlash(name)) }

// WriteFile writes a state file atomically with mode perm.
func (s *Store) WriteFile(name string, data []byte, perm fs.FileMode) error {
	path := s.Path(name)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return atomic.WriteFile(path, data, perm)
}

// ReadFile reads a state file. A missing file gives an error matching
// fs.ErrNotExist; a file larger than MaxFileSize is corrupt.
func (s *Store) ReadFile(name string) ([]byte, error) {
	path := s.Path(name)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if fi.Size() > MaxFileSize {
		return nil, s.quarantine(path, fmt.Errorf("%d bytes, more than the %d allowed", fi.Size(), MaxFileSize))
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil && fi.Size() > 0 {
		return nil, fmt.Errorf("state: read %s: %w", path, err)
	}
	return data, nil
}

// WriteJSON writes v as a JSON state file, atomically, mode 0600.
func (s *Store) WriteJSON(name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("state: encode %s: %w", name, err)
	}
	return s.WriteFile(name, append(data, '\n'), 0o600)
}

// ReadJSON reads a JSON state file into v. A missing file gives an error
// matching fs.ErrNotExist; one that does not decode is quarantined and
// reported as a *CorruptError.
func (s *Store) ReadJSON(name string, v any) error {
	data, err := s.ReadFile(name)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return s.quarantine(s.Path(name), err)
	}
	return nil
}

// quarantine moves a corrupt file aside, keeping it for a human to look at.
func (s *Store) quarantine(path string, cause error) error {
	q := fmt.Sprintf("%s.corrupt-%s", path, s.now().UTC().Format("20060102T150405.000000000"))
	if err := os.Rename(path, q); err != nil {
		q = path + " (could not move it aside: " + err.Error() + ")"
	}
	return &CorruptError{Path: path, Quarantine: q, Err: cause}
}

// Lock takes the run lock: one run at a time on a server. The kernel
// releases it when the process dies, so a killed run never blocks the next.
func (s *Store) Lock() (unlock func(), err error) {
	f, err := os.OpenFile(s.Path("run.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("state: lock: %w", err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// staleTemp is the age past which a temporary file can only be a crash's
// leftover: a write takes milliseconds.
const staleTemp = 10 * time.Minute

// removeTemps deletes temporary files a crash left behind. A young one may
// be another process's write in flight (the daemon writing while a
// technician's command opens the store): it is left alone.
func (s *Store) removeTemps(dir string) {
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(d.Name(), ".tmp-") {
			return nil
		}
		if fi, err := d.Info(); err == nil && s.now().Sub(fi.ModTime()) > staleTemp {
			os.Remove(path)
		}
		return nil
	})
}
