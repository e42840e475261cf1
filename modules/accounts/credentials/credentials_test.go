package credentials

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func record(id, class string, created time.Time) Record {
	return Record{ID: id, Login: "login." + id, LastName: "Nom" + id, FirstName: "Prénom", Role: "eleve", Class: class,
		Password: "secret-" + id, Created: created, Expires: created.Add(30 * 24 * time.Hour)}
}

func TestStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "credentials")
	c := &clock{time.Date(2025, 9, 2, 9, 0, 0, 0, time.UTC)}
	s, err := Open(dir, c.now)
	if err != nil {
		t.Fatal(err)
	}
	recs := []Record{record("1", "3A", c.t), record("2", "3A", c.t), record("3", "4B", c.t)}
	batch, err := s.Add(recs)
	if err != nil {
		t.Fatal(err)
	}

	// At rest: files root-only, no password in clear.
	for _, name := range []string{"", "key", string(batch)} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want no group or other access", filepath.Join(dir, name), fi.Mode().Perm())
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, string(batch)))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("secret-1")) || bytes.Contains(data, []byte("login.1")) {
		t.Error("the batch file holds credentials in clear")
	}

	// A reopened store (another process) reads them with the same key.
	s2, err := Open(dir, c.now)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.Pending(Filter{Class: "3A"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(recs[:2], got); diff != "" {
		t.Errorf("Pending(3A) (-want +got):\n%s", diff)
	}

	// A failed print forgets nothing; a good one forgets what it printed.
	if err := s.Take(Filter{Class: "3A"}, func([]Record) error { return errors.New("printer on fire") }); err == nil {
		t.Error("Take with a failing use = nil, want its error")
	}
	var printed bytes.Buffer
	if err := s.Take(Filter{Class: "3A"}, func(rs []Record) error { return WriteCSV(&printed, rs) }); err != nil {
		t.Fatal(err)
	}
	if want := "class;last_name;first_name;login;password\n3A;Nom1;Prénom;login.1;secret-1\n3A;Nom2;Prénom;login.2;secret-2\n"; printed.String() != want {
		t.Errorf("printed:\n%s\nwant:\n%s", printed.String(), want)
	}
	if left, _ := s.Pending(Filter{}); len(left) != 1 || left[0].ID != "3" {
		t.Errorf("after Take(3A), Pending = %v, want only 3", left)
	}

	// Forget drops the records of one batch only.
	c.t = c.t.Add(time.Hour)
	b2, err := s.Add([]Record{record("3", "4B", c.t), record("4", "4B", c.t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Forget(b2, []string{"3"}); err != nil {
		t.Fatal(err)
	}
	left, _ := s.Pending(Filter{Class: "4B"})
	if len(left) != 2 || left[0].ID != "3" || !left[0].Created.Equal(c.t.Add(-time.Hour)) || left[1].ID != "4" {
		t.Errorf("after Forget(b2, 3), Pending = %v, want the first 3 and 4", left)
	}

	// Expired records go, printed or not; empty batches are removed.
	c.t = c.t.Add(31 * 24 * time.Hour)
	if n, err := s.Expire(); err != nil || n != 0 {
		t.Errorf("Expire() = %d, %v; want 0 left", n, err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*"+batchExt))
	if len(names) != 0 {
		t.Errorf("batch files left after expiry: %v", names)
	}
}

func TestRecordNeverShowsPassword(t *testing.T) {
	r := record("1", "3A", time.Now())
	var b bytes.Buffer
	for _, s := range []string{r.String(), r.LogValue().String()} {
		b.WriteString(s)
	}
	if strings.Contains(b.String(), r.Password) {
		t.Errorf("String or LogValue shows the password: %s", b.String())
	}
}

func TestDamagedStore(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add([]Record{record("1", "3A", time.Now())}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key"), bytes.Repeat([]byte{1}, keyLength), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Pending(Filter{}); err == nil || !strings.Contains(err.Error(), "cannot decrypt") {
		t.Errorf("Pending with another key = %v, want a decrypt error", err)
	}
}
