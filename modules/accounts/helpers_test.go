package accounts

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/alize-eple/alize/modules/accounts/roster"
	"github.com/alize-eple/alize/testenv"
)

var testSchool = testenv.School{UAI: "0951099D", Academy: "versailles"}

// testNow is the clock of the tests: the day after the rentrée.
var testNow = time.Date(2025, 9, 2, 9, 30, 0, 0, time.UTC)

// testSecret is a bind password for the tests.
type testSecret []byte

func (s testSecret) Reveal() []byte { return bytes.Clone(s) }

// memBlobs is a blob store in memory.
type memBlobs map[string][]byte

func (m memBlobs) Open(digest string) ([]byte, error) {
	b, ok := m[digest]
	if !ok {
		return nil, fmt.Errorf("no blob %s", digest)
	}
	return b, nil
}

// put stores data and returns its digest.
func (m memBlobs) put(data []byte) string {
	sum := sha256.Sum256(data)
	d := "sha256:" + hex.EncodeToString(sum[:])
	m[d] = data
	return d
}

// logWriter sends a slog handler's lines to t.Log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testLogger logs to t at level and above, and records every line in buf
// (to check that no secret is ever logged).
func testLogger(t testing.TB, level slog.Level, buf *bytes.Buffer) *slog.Logger {
	h := slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: level})
	if buf == nil {
		return slog.New(h)
	}
	return slog.New(fanout{h, slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})})
}

type fanout []slog.Handler

func (f fanout) Enabled(ctx context.Context, l slog.Level) bool {
	return slices.ContainsFunc(f, func(h slog.Handler) bool { return h.Enabled(ctx, l) })
}

func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	for _, h := range f {
		if h.Enabled(ctx, r.Level) {
			if err := h.Handle(ctx, r.Clone()); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f fanout) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithAttrs(as)
	}
	return out
}

func (f fanout) WithGroup(name string) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithGroup(name)
	}
	return out
}

// newKind makes the kind against a test slapd.
func newKind(t testing.TB, l *testenv.Slapd, mutate ...func(*Config)) *Accounts {
	t.Helper()
	cfg := Config{
		URL: l.URL, BindDN: l.AdminDN, BindPassword: testSecret(l.AdminPassword),
		Root: t.TempDir(), Now: func() time.Time { return testNow },
		Logger: testLogger(t, slog.LevelWarn, nil),
	}
	if l.NS != nil {
		cfg.Dial = l.NS.DialContext
	}
	for _, m := range mutate {
		m(&cfg)
	}
	k, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return k
}

func startSlapd(t testing.TB) *testenv.Slapd {
	t.Helper()
	school := testSchool
	return testenv.StartSlapd(t, testenv.SlapdOptions{School: &school})
}

// specFor is a spec of the test school with people inline.
func specFor(people []roster.Person) Spec {
	return Spec{
		UAI: testSchool.UAI, Academy: testSchool.Academy,
		Roster: Roster{People: people, Complete: true},
	}
}

var (
	firstNames = []string{"Léa", "Lucas", "Chloé", "Hugo", "Inès", "Louis", "Zoé", "Noah", "Manon", "Théo",
		"Jade", "Gabriel", "Éléonore", "Raphaël", "Anaïs", "Mathéo", "Maëlys", "Nathan", "Camille", "Enzo",
		"Sarah", "Adam", "Océane", "Timothée", "Clémence", "Jean-Baptiste", "Marie-Ange", "Yasmine", "Mohamed", "Aïcha",
		"Loïc", "Gaëlle", "François", "Joël", "Noémie", "Stéphane", "Hélène", "Jérôme", "Cécile", "Benoît",
		"Maximilien-Alexandre", "Anne-Charlotte", "Ève", "Côme", "Bérénice", "Aurélien", "Solène", "Quentin", "Lou", "Tom"}
	lastNames = []string{"Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau",
		"Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "David", "Bertrand", "Roux", "Vincent", "Fournier",
		"Morel", "Girard", "André", "Lefebvre", "Mercier", "Dupont", "Lambert", "Bonnet", "François", "Martinez",
		"N'Diaye", "Le Gall", "De La Fontaine", "Œuvrard", "Müller", "Nguyen", "Ben Saïd", "D'Artagnan", "Saint-Exupéry", "Lévêque",
		"Wolfeschlegelsteinhausen", "Château", "Bézier", "Pérez", "Ørsted", "Kowalski", "Da Silva", "Ménard", "Aubert", "Roussel"}
	options  = []string{"LATIN", "GREC", "ESP2", "ALL2", "Chinois", "Section européenne"}
	services = []string{"vie scolaire", "intendance", "direction", "CDI", "infirmerie"}
)

// className is the i-th of 60 classes: 6A…6O, 5A…5O, 4A…4O, 3A…3O.
func className(i int, classes int) string {
	levels := []string{"6", "5", "4", "3"}
	per := (classes + 3) / 4
	return levels[i/per%4] + string(rune('A'+i%per))
}

// genSchool makes a deterministic roster: pupils spread over classes
// (some with options), teachers teaching five classes each, other staff in
// services. Names have accents, hyphens, apostrophes, particles, and
// homonyms.
func genSchool(pupils, staff, classes int) []roster.Person {
	r := rand.New(rand.NewPCG(1, 2))
	people := make([]roster.Person, 0, pupils+staff)
	for i := range pupils {
		p := roster.Person{
			ID: fmt.Sprintf("%010d%c", 1200000000+i, 'A'+rune(i%26)), Role: roster.Pupil,
			LastName: lastNames[r.IntN(len(lastNames))], FirstName: firstNames[r.IntN(len(firstNames))],
			BirthDate: fmt.Sprintf("20%02d-%02d-%02d", 10+r.IntN(5), 1+r.IntN(12), 1+r.IntN(28)),
			Class:     className(i%classes, classes),
		}
		if r.IntN(4) == 0 {
			p.Options = []string{options[r.IntN(len(options))]}
		}
		people = append(people, p)
	}
	teachers := staff * 4 / 5
	for i := range staff {
		p := roster.Person{
			ID: fmt.Sprintf("%02dE%08dAB", 10+i%80, 5000000+i), Role: roster.Staff,
			LastName: lastNames[r.IntN(len(lastNames))], FirstName: firstNames[r.IntN(len(firstNames))],
			Email: fmt.Sprintf("agent%d@ac-versailles.fr", i),
		}
		if i < teachers {
			p.Role = roster.Teacher
			for j := range 5 {
				c := className((i*5+j)%classes, classes)
				if !slices.Contains(p.Teaches, c) {
					p.Teaches = append(p.Teaches, c)
				}
			}
		} else {
			p.Services = []string{services[i%len(services)]}
		}
		people = append(people, p)
	}
	return people
}

// dump is the moduletest observer: every entry under the base with its
// user attributes, sorted, as text.
func dump(l *testenv.Slapd) func(ctx context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		c, err := dialTest(ctx, l)
		if err != nil {
			return "", err
		}
		defer c.Close()
		res, err := c.SearchWithPaging(ldap.NewSearchRequest(l.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
			"(objectClass=*)", []string{"*"}, nil), 1000)
		if err != nil {
			return "", err
		}
		lines := make([]string, 0, len(res.Entries))
		for _, e := range res.Entries {
			var b strings.Builder
			b.WriteString("dn: " + e.DN + "\n")
			attrs := make([]string, 0, len(e.Attributes))
			for _, a := range e.Attributes {
				vals := slices.Sorted(slices.Values(a.Values))
				for _, v := range vals {
					attrs = append(attrs, a.Name+": "+v)
				}
			}
			sort.Strings(attrs)
			b.WriteString(strings.Join(attrs, "\n"))
			lines = append(lines, b.String())
		}
		sort.Strings(lines)
		return strings.Join(lines, "\n\n"), nil
	}
}

// dialTest connects to a test slapd as its admin.
func dialTest(ctx context.Context, l *testenv.Slapd) (*ldap.Conn, error) {
	var d net.Dialer
	dial := d.DialContext
	if l.NS != nil {
		dial = l.NS.DialContext
	}
	raw, err := dial(ctx, "tcp", strings.TrimPrefix(l.URL, "ldap://"))
	if err != nil {
		return nil, err
	}
	c := ldap.NewConn(raw, false)
	c.Start()
	if err := c.Bind(l.AdminDN, l.AdminPassword); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// entry reads one entry's attributes (lowercase names), or nil when it is
// missing.
func entry(t testing.TB, l *testenv.Slapd, dn string) map[string][]string {
	t.Helper()
	c, err := dialTest(t.Context(), l)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"*"}, nil))
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return nil
	}
	if err != nil {
		t.Fatalf("read %s: %v", dn, err)
	}
	out := map[string][]string{}
	for _, a := range res.Entries[0].Attributes {
		out[strings.ToLower(a.Name)] = a.Values
	}
	return out
}

// ldapDo runs fn on an admin connection to l.
func ldapDo(t testing.TB, l *testenv.Slapd, fn func(c *ldap.Conn) error) {
	t.Helper()
	c, err := dialTest(t.Context(), l)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := fn(c); err != nil {
		t.Fatal(err)
	}
}

// apply plans want and applies the plan, failing t on any error or failed
// change.
func apply(t testing.TB, k *Accounts, want Spec) []string {
	t.Helper()
	p, err := k.Plan(t.Context(), want)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	res, err := k.Apply(t.Context(), p)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if res.Failed() {
		for _, c := range res.Changes {
			if c.Status != "applied" {
				t.Errorf("%s: %s %s", c.Change, c.Status, c.Error)
			}
		}
		t.FailNow()
	}
	out := make([]string, len(p.Changes))
	for i, c := range p.Changes {
		out[i] = c.String()
	}
	return out
}
