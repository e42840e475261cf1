package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "alize"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOpenIsRootOnly(t *testing.T) {
	s := open(t)
	fi, err := os.Stat(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode = %v, want 0700", fi.Mode().Perm())
	}
}

func TestJSONRoundTripAndAtomicMode(t *testing.T) {
	s := open(t)
	type applied struct {
		Serial uint64 `json:"serial"`
	}
	if err := s.WriteJSON("applied.json", applied{Serial: 42}); err != nil {
		t.Fatal(err)
	}
	var got applied
	if err := s.ReadJSON("applied.json", &got); err != nil || got.Serial != 42 {
		t.Fatalf("ReadJSON = %+v, %v; want serial 42", got, err)
	}
	fi, _ := os.Stat(s.Path("applied.json"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(s.Dir())
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestMissingFileIsNotCorrupt(t *testing.T) {
	s := open(t)
	var v map[string]any
	if err := s.ReadJSON("nothing.json", &v); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadJSON(missing) = %v, want fs.ErrNotExist", err)
	}
}

func TestCorruptFileIsSetAside(t *testing.T) {
	s := open(t)
	fixed := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return fixed }
	if err := os.WriteFile(s.Path("applied.json"), []byte(`{"serial": 4`), 0o600); err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	err := s.ReadJSON("applied.json", &v)
	var corrupt *CorruptError
	if !errors.As(err, &corrupt) {
		t.Fatalf("ReadJSON(truncated) = %v, want a *CorruptError", err)
	}
	if _, err := os.Stat(corrupt.Quarantine); err != nil {
		t.Errorf("quarantined copy %s: %v", corrupt.Quarantine, err)
	}
	if _, err := os.Stat(s.Path("applied.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("corrupt file still in place: %v", err)
	}
	// The next read starts clean.
	if err := s.ReadJSON("applied.json", &v); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadJSON after quarantine = %v, want fs.ErrNotExist", err)
	}
}

func TestCrashLeftoversAreRemovedAtOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "alize")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(dir, ".tmp-manifest.json-123")
	if err := os.WriteFile(leftover, []byte("half a mani"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(leftover, old, old); err != nil {
		t.Fatal(err)
	}
	// A write in flight in another process (the daemon) is left alone.
	inFlight := filepath.Join(dir, ".tmp-current-run.json-456")
	if err := os.WriteFile(inFlight, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leftover); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("leftover temp file still there: %v", err)
	}
	if _, err := os.Stat(inFlight); err != nil {
		t.Errorf("another process's write in flight was removed: %v", err)
	}
}

func TestOutboxOrderIdempotenceAck(t *testing.T) {
	s := open(t)
	o, err := s.Outbox(10)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"r-1", "r-2", "r-3", "r-2"} {
		if err := o.Put(id, []byte(`{"id":"`+id+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	ids := func() []string {
		p, err := o.Pending()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range p {
			out = append(out, e.ID)
		}
		return out
	}
	if diff := cmp.Diff([]string{"r-1", "r-2", "r-3"}, ids()); diff != "" {
		t.Errorf("Pending() (-want +got):\n%s", diff)
	}
	if err := o.Ack("r-1"); err != nil {
		t.Fatal(err)
	}
	if err := o.Ack("unknown"); err != nil {
		t.Errorf("Ack(unknown) = %v, want nil", err)
	}
	if err := o.Put("r-4", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	// A reopened outbox (the agent restarted) sees the same, in order.
	o2, _ := s.Outbox(10)
	o = o2
	if diff := cmp.Diff([]string{"r-2", "r-3", "r-4"}, ids()); diff != "" {
		t.Errorf("Pending() after restart (-want +got):\n%s", diff)
	}
	if err := o.Put("../../etc/passwd", nil); err == nil {
		t.Error("Put with a path in the id was accepted")
	}
}

func TestOutboxBoundDropsOldestAndCounts(t *testing.T) {
	s := open(t)
	o, _ := s.Outbox(3)
	for i := 1; i <= 5; i++ {
		if err := o.Put(fmt.Sprintf("r-%d", i), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	p, _ := o.Pending()
	if len(p) != 3 || p[0].ID != "r-3" || p[2].ID != "r-5" {
		t.Errorf("Pending() = %v, want r-3..r-5", p)
	}
	if n, err := o.Dropped(); n != 2 || err != nil {
		t.Errorf("Dropped() = %d, %v; want 2", n, err)
	}
	if n, _ := o.Dropped(); n != 0 {
		t.Errorf("Dropped() after reading = %d, want 0", n)
	}
}

func TestHistoryIsBounded(t *testing.T) {
	s := open(t)
	for i := 1; i <= 7; i++ {
		if err := s.AppendHistory(map[string]int{"run": i}, 5); err != nil {
			t.Fatal(err)
		}
	}
	runs, err := s.History()
	if err != nil {
		t.Fatal(err)
	}
	var first, last map[string]int
	json.Unmarshal(runs[0], &first)
	json.Unmarshal(runs[len(runs)-1], &last)
	if len(runs) != 5 || first["run"] != 3 || last["run"] != 7 {
		t.Errorf("History() = %s, want runs 3..7", runs)
	}
}

// TestLockIsReleasedWhenTheHolderDies runs a child that takes the lock and
// is killed: the lock must be free afterwards.
func TestLockIsReleasedWhenTheHolderDies(t *testing.T) {
	if dir := os.Getenv("ALIZE_STATE_LOCK_CHILD"); dir != "" {
		s, err := Open(dir)
		if err != nil {
			os.Exit(2)
		}
		if _, err := s.Lock(); err != nil {
			os.Exit(3)
		}
		fmt.Println("locked")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	s := open(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockIsReleasedWhenTheHolderDies$")
	cmd.Env = append(os.Environ(), "ALIZE_STATE_LOCK_CHILD="+s.Dir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf) != "locked" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not take the lock: %q, %v", buf, err)
	}
	if _, err := s.Lock(); !errors.Is(err, ErrLocked) {
		t.Errorf("Lock while the child holds it = %v, want ErrLocked", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	unlock, err := s.Lock()
	if err != nil {
		t.Fatalf("Lock after the holder died = %v, want it free", err)
	}
	unlock()
}
