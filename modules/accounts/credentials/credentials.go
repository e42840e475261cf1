// Package credentials keeps the initial passwords of new accounts until a
// technician prints them (`alize accounts passwords --class 3A`), encrypted
// at rest, and forgets them once printed or after their keep time.
//
// The accounts kind generates an initial password on the school server
// when it creates an account and adds it here before the account exists;
// the controller never sees it. Each Add writes one batch file, AES-256-GCM
// sealed with a random key kept beside it (root only, 0600), written
// atomically (temp file, fsync, rename). Encryption at rest keeps the
// passwords out of a copied or backed-up batch file that travels without
// the key; it does not protect them from root on the server, who may print
// them anyway.
//
// Who may import it: the accounts kind and the agent's CLI. It depends on
// the standard library and golang.org/x/sys.
package credentials

import (
	"bytes"
	"cmp"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/alize-eple/alize/modules/atomic"
)

// Record is the initial credentials of one new account. Its String and
// LogValue never show the password.
type Record struct {
	ID        string    `json:"id"` // the person's stable id
	Login     string    `json:"login"`
	LastName  string    `json:"last_name"`
	FirstName string    `json:"first_name"`
	Role      string    `json:"role"`
	Class     string    `json:"class,omitempty"`
	Password  string    `json:"password"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"` // forgotten from then on, printed or not
}

func (r Record) String() string {
	return fmt.Sprintf("%s (%s %s, %s %s)", r.Login, r.FirstName, r.LastName, r.Role, r.Class)
}

// LogValue hides the password from slog.
func (r Record) LogValue() slog.Value {
	return slog.GroupValue(slog.String("login", r.Login), slog.String("id", r.ID), slog.String("class", r.Class))
}

// Filter picks records; its zero value picks them all.
type Filter struct {
	Class string // "3A": exact class as the roster gives it
	Role  string // "eleve", "enseignant", "personnel"
}

func (f Filter) match(r Record) bool {
	return (f.Class == "" || r.Class == f.Class) && (f.Role == "" || r.Role == f.Role)
}

// Dir is where the kind keeps the store under a root directory ("/" in
// production).
func Dir(root string) string {
	return filepath.Join(root, "var", "lib", "alize", "accounts", "credentials")
}

// Store is the initial credentials store of one server. Its methods are
// safe for concurrent use, also across processes (the agent and the CLI):
// each holds an exclusive flock on the store while it works.
type Store struct {
	dir  string
	now  func() time.Time
	aead cipher.AEAD
	mu   sync.Mutex
}

const (
	keyFile   = "key"
	lockFile  = "lock"
	batchExt  = ".cred"
	magic     = "ALZCRED1"
	keyLength = 32
)

// Open opens the store in dir, making the directory (0700) and its key
// (0600) on first use. now is the clock records expire by.
func Open(dir string, now func() time.Time) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	key, err := loadKey(dir)
	if err != nil {
		return nil, fmt.Errorf("credentials: key: %w", err)
	}
	block, err := aes.NewCipher(key)
	clear(key)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	return &Store{dir: dir, now: now, aead: aead}, nil
}

// loadKey reads the store's key, or makes it: written to a temporary file,
// then linked to its name, so two processes starting together agree on
// one key.
func loadKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, keyFile)
	for range 2 {
		key, err := os.ReadFile(path)
		if err == nil {
			if len(key) != keyLength {
				return nil, fmt.Errorf("%s: %d bytes, want %d: the store is damaged; move the directory away to start a new one", path, len(key), keyLength)
			}
			return key, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		key = make([]byte, keyLength)
		rand.Read(key)
		tmp, err := writeTemp(dir, key, 0o600)
		clear(key)
		if err != nil {
			return nil, err
		}
		err = os.Link(tmp, path)
		os.Remove(tmp)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		if err := atomic.SyncDir(dir); err != nil {
			return nil, err
		}
	}
	return nil, errors.New("cannot make the key")
}

// Batch names the records one Add kept.
type Batch string

// Add keeps new records, in one batch file, and returns its name.
func (s *Store) Add(recs []Record) (Batch, error) {
	if len(recs) == 0 {
		return "", nil
	}
	name := fmt.Sprintf("%020d-%s%s", s.now().UnixNano(), randomHex(8), batchExt)
	return Batch(name), s.locked(func() error { return s.writeBatch(name, recs) })
}

// Forget drops the records of the given ids from one batch: accounts
// whose creation failed, or that existed already with another password.
func (s *Store) Forget(b Batch, ids []string) error {
	if len(ids) == 0 || b == "" {
		return nil
	}
	drop := make(map[string]bool, len(ids))
	for _, id := range ids {
		drop[id] = true
	}
	return s.locked(func() error {
		_, err := s.rewriteBatches(func(name string, r Record) bool { return name != string(b) || !drop[r.ID] })
		return err
	})
}

// Pending returns the records f picks that are neither printed nor
// expired, one per person (the newest), ordered by class, last name, first
// name. It forgets expired records on the way.
func (s *Store) Pending(f Filter) ([]Record, error) {
	var out []Record
	err := s.locked(func() error {
		all, err := s.rewrite(func(Record) bool { return true })
		out = pick(all, f)
		return err
	})
	return out, err
}

// Take hands the records f picks (as Pending) to use, and forgets them
// once use returns nil: `alize accounts passwords` prints them in use, so
// that a failed print forgets nothing.
func (s *Store) Take(f Filter, use func([]Record) error) error {
	return s.locked(func() error {
		all, err := s.rewrite(func(Record) bool { return true })
		if err != nil {
			return err
		}
		recs := pick(all, f)
		if err := use(recs); err != nil {
			return err
		}
		taken := map[string]bool{}
		for _, r := range recs {
			taken[r.ID] = true
		}
		_, err = s.rewrite(func(r Record) bool { return !taken[r.ID] })
		return err
	})
}

// Expire forgets the records past their expiry and returns how many are
// left.
func (s *Store) Expire() (int, error) {
	n := 0
	err := s.locked(func() error {
		all, err := s.rewrite(func(Record) bool { return true })
		n = len(all)
		return err
	})
	return n, err
}

func pick(all []Record, f Filter) []Record {
	newest := map[string]Record{}
	for _, r := range all {
		if f.match(r) {
			if o, ok := newest[r.ID]; !ok || r.Created.After(o.Created) {
				newest[r.ID] = r
			}
		}
	}
	out := make([]Record, 0, len(newest))
	for _, r := range newest {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Record) int {
		return cmp.Or(cmp.Compare(a.Class, b.Class), cmp.Compare(a.LastName, b.LastName),
			cmp.Compare(a.FirstName, b.FirstName), cmp.Compare(a.Login, b.Login))
	})
	return out
}

// locked runs fn holding the store's mutex and its flock.
func (s *Store) locked(fn func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.OpenFile(filepath.Join(s.dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("credentials: lock: %w", err)
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN)
	if err := fn(); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	return nil
}

// rewrite reads every batch, keeps the unexpired records keep accepts,
// rewrites (or removes) each batch that lost records, and returns what is
// left.
func (s *Store) rewrite(keep func(Record) bool) ([]Record, error) {
	return s.rewriteBatches(func(_ string, r Record) bool { return keep(r) })
}

func (s *Store) rewriteBatches(keep func(batch string, r Record) bool) ([]Record, error) {
	names, err := s.batches()
	if err != nil {
		return nil, err
	}
	now := s.now()
	var left []Record
	for _, name := range names {
		recs, err := s.readBatch(name)
		if err != nil {
			return nil, err
		}
		kept := recs[:0:0]
		for _, r := range recs {
			if now.Before(r.Expires) && keep(name, r) {
				kept = append(kept, r)
			}
		}
		left = append(left, kept...)
		switch {
		case len(kept) == len(recs):
		case len(kept) == 0:
			if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
				return nil, err
			}
			if err := atomic.SyncDir(s.dir); err != nil {
				return nil, err
			}
		default:
			if err := s.writeBatch(name, kept); err != nil {
				return nil, err
			}
		}
	}
	return left, nil
}

func (s *Store) batches() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), batchExt) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func (s *Store) writeBatch(name string, recs []Record) error {
	plain, err := json.Marshal(recs)
	if err != nil {
		return err
	}
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	out := append([]byte(magic), nonce...)
	out = s.aead.Seal(out, nonce, plain, []byte(magic+name))
	clear(plain)
	tmp, err := writeTemp(s.dir, out, 0o600)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, name)); err != nil {
		os.Remove(tmp)
		return err
	}
	return atomic.SyncDir(s.dir)
}

func (s *Store) readBatch(name string) ([]Record, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		return nil, err
	}
	n := len(magic) + s.aead.NonceSize()
	if len(data) < n || !bytes.HasPrefix(data, []byte(magic)) {
		return nil, fmt.Errorf("%s: not a credentials batch", name)
	}
	plain, err := s.aead.Open(nil, data[len(magic):n], data[n:], []byte(magic+name))
	if err != nil {
		return nil, fmt.Errorf("%s: cannot decrypt (damaged, or sealed with another key)", name)
	}
	defer clear(plain)
	var recs []Record
	if err := json.Unmarshal(plain, &recs); err != nil {
		return nil, fmt.Errorf("%s: damaged batch", name)
	}
	return recs, nil
}

// writeTemp writes data to a new temporary file of dir, synced, and
// returns its path.
func writeTemp(dir string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	err = errors.Join(err, f.Chmod(perm), f.Sync(), f.Close())
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// WriteCSV writes records for a spreadsheet or a mail merge: a header,
// then class;last_name;first_name;login;password, UTF-8, semicolons.
func WriteCSV(w io.Writer, recs []Record) error {
	cw := csv.NewWriter(w)
	cw.Comma = ';'
	cw.Write([]string{"class", "last_name", "first_name", "login", "password"})
	for _, r := range recs {
		cw.Write([]string{r.Class, r.LastName, r.FirstName, r.Login, r.Password})
	}
	cw.Flush()
	return cw.Error()
}

// WriteTable writes records as aligned columns for a terminal or a
// printer.
func WriteTable(w io.Writer, recs []Record) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "CLASSE\tNOM\tPRÉNOM\tIDENTIFIANT\tMOT DE PASSE")
	for _, r := range recs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cmp.Or(r.Class, "-"), r.LastName, r.FirstName, r.Login, r.Password)
	}
	return tw.Flush()
}
