package accounts

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/alize-eple/alize/modules"
	"github.com/alize-eple/alize/modules/accounts/credentials"
	"github.com/alize-eple/alize/modules/accounts/roster"
)

// Secret is a secret value the kind needs: the directory's bind password.
// The agent's unsealed manifest.Secret is one; its Reveal is called only
// to bind, and the kind never logs, reports or keeps a copy of it.
type Secret interface {
	Reveal() []byte
}

// Blobs gives the bytes of a blob the verified manifest lists, by digest
// ("sha256:<hex>"). The agent fetches and verifies blobs before it
// applies; the kind checks the digest again.
type Blobs interface {
	Open(digest string) ([]byte, error)
}

// Config is what the kind needs of the agent: how to reach the directory,
// where its files go, a clock and a logger.
type Config struct {
	// The directory, unless the spec's ldap section says otherwise.
	URL          string // "ldap://127.0.0.1:389" or "ldaps://…"
	BindDN       string // "cn=admin,o=gouv,c=fr"
	BindPassword Secret
	TLS          *tls.Config // for ldaps://; nil is the system's roots
	// Secrets resolves a secret reference of the spec ("secret://<name>",
	// as modules/schema compiles a secret variable) to the value the
	// agent unsealed from the manifest; nil when specs carry none.
	Secrets func(ref string) (Secret, error)

	// Root is the root of the file system the kind writes its initial
	// credentials store under (credentials.Dir): "/" in production, a
	// temporary directory in tests.
	Root string
	// Blobs gives the roster blobs; nil when specs carry their people
	// inline.
	Blobs Blobs

	Logger *slog.Logger     // nil discards
	Now    func() time.Time // nil is time.Now
	// Conns is how many connections Apply writes over: default 4.
	Conns int
	// Dial opens the connection to the directory; nil is a net.Dialer.
	// Tests dial from inside a network namespace.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// Accounts is the accounts kind: a Scribe-compatible directory of pupils
// and staff in the establishment's OpenLDAP.
type Accounts struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	cached struct {
		digest string
		file   *roster.File
	}
	store   *credentials.Store
	entries entryCache
	last    *Spec // the last spec planned, for Check
	// cachedWant is the desired state of the last blob roster planned.
	cachedWant struct {
		key string
		w   *want
	}
}

var (
	_ modules.Kind[Spec] = (*Accounts)(nil)
	_ modules.Checker    = (*Accounts)(nil)
)

// Name is the kind's name in modules and manifests.
const Name = "accounts"

// New makes the kind. It checks the configuration but does not connect:
// Plan, Apply and Check do, each time.
func New(cfg Config) (*Accounts, error) {
	if cfg.URL != "" {
		if u, err := url.Parse(cfg.URL); err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Host == "" {
			return nil, fmt.Errorf("accounts: URL %q: must be ldap://host[:port] or ldaps://host[:port]", cfg.URL)
		}
	}
	if cfg.Root == "" {
		return nil, errors.New(`accounts: no root directory ("/" in production)`)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Conns <= 0 {
		cfg.Conns = 4
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	return &Accounts{cfg: cfg, log: cfg.Logger.With("kind", Name)}, nil
}

// Name returns "accounts".
func (k *Accounts) Name() string { return Name }

// Validate checks a spec without any system: every problem, with its path.
// A roster blob's people are checked by Plan, which reads the blob, and
// by the controller's import (roster.ParseCSV).
func (k *Accounts) Validate(want Spec) error { return validate(want) }

func validate(want Spec) error {
	s := want.withDefaults()
	var errs modules.FieldErrors
	s.validate(&errs)
	if len(s.Roster.People) > 0 {
		wanted(s, s.Roster.People, "9999-12-31", inlineWhere, false, &errs)
	}
	return errs.Err()
}

// validator is the kind without a system, for the controller.
type validator struct{}

func (validator) Name() string             { return Name }
func (validator) Validate(want Spec) error { return validate(want) }

// Checker is the kind's SpecChecker: strict decoding and Validate, with no
// directory. The controller runs it before it signs a manifest.
func Checker() modules.SpecChecker { return modules.CheckerFor[Spec](validator{}) }

// Plan reads the directory (never writes) and returns the changes that
// bring it to want. It refuses, changing nothing, a spec or roster with
// problems, entries the kind does not manage standing in its way
// (ErrConflict), and an id range too small for the new accounts
// (ErrRangeExhausted).
func (k *Accounts) Plan(ctx context.Context, want Spec) (modules.Plan, error) {
	s := want.withDefaults()
	var errs modules.FieldErrors
	if s.validate(&errs); len(errs) > 0 {
		return modules.Plan{}, fmt.Errorf("accounts: %w", errs)
	}
	people, at, err := k.people(s)
	if err != nil {
		return modules.Plan{}, err
	}
	if len(people) == 0 && s.Roster.Complete {
		return modules.Plan{}, errors.New("accounts: roster: a complete roster without anybody would archive every account: refused (check the import)")
	}
	now := k.cfg.Now()
	today := now.Format(time.DateOnly)
	w := k.wantedFor(s, people, today, at, &errs)
	if err := errs.Err(); err != nil {
		return modules.Plan{}, fmt.Errorf("accounts: roster: %w", err)
	}
	l := newLayout(s)
	p, err := k.connect(ctx, &s, observeConns) // one per paged search: slapd pages one search a connection
	if err != nil {
		return modules.Plan{}, err
	}
	defer p.close()
	h, err := observe(ctx, p, l, &k.entries)
	if err != nil {
		return modules.Plan{}, fmt.Errorf("accounts: observe: %w", err)
	}
	st, changes, err := diff(s, l, h, w, now)
	if err != nil {
		return modules.Plan{}, err
	}
	st.now = now
	k.mu.Lock()
	k.last = &s
	k.mu.Unlock()
	return modules.Plan{Kind: Name, Changes: changes, State: st}, nil
}

// wantedFor is wanted, kept for the next plan of the same roster blob,
// day and group rules (a blob's people were checked when it was parsed).
func (k *Accounts) wantedFor(s Spec, people []roster.Person, today string, at where, errs *modules.FieldErrors) *want {
	if s.Roster.Blob == "" {
		return wanted(s, people, today, at, false, errs)
	}
	custom, _ := json.Marshal(s.Groups)
	key := s.Roster.Blob + "|" + today + "|" + string(custom)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cachedWant.key == key {
		return k.cachedWant.w
	}
	w := wanted(s, people, today, at, true, errs)
	if len(*errs) == 0 {
		k.cachedWant.key, k.cachedWant.w = key, w
	}
	return w
}

// people returns the roster's people and how to name their fields in
// messages.
func (k *Accounts) people(s Spec) ([]roster.Person, where, error) {
	if s.Roster.Blob == "" {
		return s.Roster.People, inlineWhere, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cached.digest == s.Roster.Blob {
		return k.cached.file.People, lineWhere(k.cached.file.Lines), nil
	}
	if k.cfg.Blobs == nil {
		return nil, nil, fmt.Errorf("accounts: roster blob %s: the kind has no blob store", s.Roster.Blob)
	}
	data, err := k.cfg.Blobs.Open(s.Roster.Blob)
	if err != nil {
		return nil, nil, fmt.Errorf("accounts: roster blob %s: %w", s.Roster.Blob, err)
	}
	sum := sha256.Sum256(data)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != s.Roster.Blob {
		return nil, nil, fmt.Errorf("accounts: roster blob %s: the bytes are %s", s.Roster.Blob, got)
	}
	f, err := roster.ParseCSV(data)
	if err != nil {
		return nil, nil, fmt.Errorf("accounts: roster blob %s:\n%w", s.Roster.Blob, err)
	}
	k.cached.digest, k.cached.file = s.Roster.Blob, f
	return f.People, lineWhere(f.Lines), nil
}

// Credentials opens the store of initial passwords, for
// `alize accounts passwords`.
func (k *Accounts) Credentials() (*credentials.Store, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.store == nil {
		st, err := credentials.Open(credentials.Dir(k.cfg.Root), k.cfg.Now)
		if err != nil {
			return nil, fmt.Errorf("accounts: %w", err)
		}
		k.store = st
	}
	return k.store, nil
}

// Check connects and binds to the directory of the last spec planned
// (else the Config's): Apply worked only if the directory still answers
// as the kind's bind DN.
func (k *Accounts) Check(ctx context.Context) error {
	k.mu.Lock()
	s := k.last
	k.mu.Unlock()
	p, err := k.connect(ctx, s, 1)
	if err != nil {
		return err
	}
	p.close()
	return nil
}

// CheckSpec is Check for the directory want names (alize check, in a
// process that has not planned it).
func (k *Accounts) CheckSpec(ctx context.Context, want Spec) error {
	p, err := k.connect(ctx, &want, 1)
	if err != nil {
		return err
	}
	p.close()
	return nil
}
