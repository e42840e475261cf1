package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/testenv"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// opener makes a fresh, empty store for one test; open2 opens a second
// Store on the same database (a replica), or nil when the dialect has
// no replicas.
type opener func(t *testing.T) (s Store, open2 func() Store)

func TestSQLite(t *testing.T) {
	t.Parallel()
	testStore(t, func(t *testing.T) (Store, func() Store) {
		path := filepath.Join(t.TempDir(), "controller.db")
		s, err := OpenSQLite(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, nil
	})
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	admin, err := OpenPostgres(t.Context(), pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	var n atomic.Int64
	testStore(t, func(t *testing.T) (Store, func() Store) {
		name := fmt.Sprintf("suite_%d", n.Add(1))
		if _, err := admin.(*sqlStore).db.ExecContext(t.Context(), `CREATE DATABASE `+name); err != nil {
			t.Fatal(err)
		}
		dsn := fmt.Sprintf("postgres://alize@127.0.0.1:%d/%s?sslmode=disable", pg.Port, name)
		open := func() Store {
			s, err := OpenPostgres(t.Context(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		return open(), open
	})
}

var t0 = time.Date(2025, 9, 1, 8, 0, 0, 0, time.UTC)

// seed writes an academy, two establishments and a server.
func seed(t *testing.T, s Store) {
	t.Helper()
	b := &Batch{
		Academies: []Academy{{Name: "versailles", Title: "Académie de Versailles", Created: t0}, {Name: "creteil", Title: "Créteil", Created: t0}},
		Establishments: []Establishment{
			{UAI: "0951099D", Academy: "versailles", Name: "Lycée Camille Pissarro", Type: "lycee", Zone: "C", Created: t0},
			{UAI: "0780001A", Academy: "versailles", Name: "Collège", Type: "college", Zone: "C", Created: t0},
		},
		Tokens: []Token{{ID: "tok00001", SecretHash: []byte("h"), UAI: "0951099D", Expires: t0.Add(time.Hour), Created: t0, CreatedBy: "admin"}},
	}
	commit(t, s, b)
	enroll(t, s, "tok00001", "srv-a", "0951099D", false)
}

func commit(t *testing.T, s Store, b *Batch) {
	t.Helper()
	if err := s.Commit(t.Context(), b); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func enroll(t *testing.T, s Store, token, id, uai string, replace bool) {
	t.Helper()
	err := s.Enroll(t.Context(), Enrollment{
		TokenID: token, Time: t0.Add(time.Minute), Replace: replace,
		Server:      Server{ID: id, UAI: uai, Role: "amon", Facts: api.Facts{Hostname: "amon"}, AgeRecipient: "age1x", PublicKey: []byte("spki-" + token), PollInterval: 300, Enrolled: t0.Add(time.Minute)},
		Certificate: Certificate{Serial: "c-" + token, ServerID: id, NotBefore: t0, NotAfter: t0.Add(72 * time.Hour)},
		Audit:       AuditEntry{Time: t0.Add(time.Minute), Actor: "token:" + token, Action: "enroll", Target: "server:" + id},
	})
	if err != nil {
		t.Fatalf("Enroll(%s): %v", token, err)
	}
}

func testStore(t *testing.T, open opener) {
	ctx := context.Background()
	run := func(name string, fn func(t *testing.T, s Store, open2 func() Store)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, open2 := open(t)
			fn(t, s, open2)
		})
	}

	run("migrations", func(t *testing.T, s Store, open2 func() Store) {
		vs, err := s.Migrations(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]int{1, 2}, vs); diff != "" {
			t.Errorf("Migrations() (-want +got):\n%s", diff)
		}
		if ss, ok := s.(*sqlStore); ok {
			// Running them again changes nothing.
			if err := ss.migrate(ctx); err != nil {
				t.Fatalf("migrate again: %v", err)
			}
			if vs2, _ := s.Migrations(ctx); !cmp.Equal(vs, vs2) {
				t.Errorf("Migrations() after a second run = %v, want %v", vs2, vs)
			}
		}
	})

	run("inventory", func(t *testing.T, s Store, _ func() Store) {
		seed(t, s)
		commit(t, s, &Batch{
			Establishments: []Establishment{{UAI: "0780001A", Academy: "versailles", Name: "Collège Jean Moulin", Type: "college", Zone: "C", Created: t0}},
			Groups: []Group{
				{Name: "lycees", Academy: "versailles", Priority: 2, Rule: &GroupRule{Academies: []string{"versailles"}, Types: []string{"lycee"}}},
				{Name: "pilot", Members: []string{"srv-a", "0780001A"}},
				{Name: "gone"},
			},
		})
		commit(t, s, &Batch{DeleteGroups: []string{"gone"}})
		as, err := s.Academies(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(as) != 2 || as[1].Name != "versailles" || as[1].Title != "Académie de Versailles" || !as[1].Created.Equal(t0) {
			t.Errorf("Academies() = %+v", as)
		}
		es, err := s.Establishments(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != 2 || es[0].UAI != "0780001A" || es[0].Name != "Collège Jean Moulin" {
			t.Errorf("Establishments() = %+v", es)
		}
		if _, err := s.Establishment(ctx, "0000000A"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Establishment(unknown) = %v, want ErrNotFound", err)
		}
		gs, err := s.Groups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []Group{
			{Name: "lycees", Academy: "versailles", Priority: 2, Rule: &GroupRule{Academies: []string{"versailles"}, Types: []string{"lycee"}}, Members: []string{}},
			{Name: "pilot", Members: []string{"srv-a", "0780001A"}},
		}
		if diff := cmp.Diff(want, gs, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("Groups() (-want +got):\n%s", diff)
		}
		sv, err := s.Server(ctx, "srv-a")
		if err != nil {
			t.Fatal(err)
		}
		if sv.UAI != "0951099D" || sv.Facts.Hostname != "amon" || string(sv.PublicKey) != "spki-tok00001" || sv.PollInterval != 300 {
			t.Errorf("Server() = %+v", sv)
		}
		// An establishment of an unknown academy is refused, and the batch with it.
		err = s.Commit(ctx, &Batch{
			Academies:      []Academy{{Name: "lille", Title: "Lille", Created: t0}},
			Establishments: []Establishment{{UAI: "0590001X", Academy: "nowhere", Name: "x", Type: "lp", Zone: "B", Created: t0}},
		})
		if err == nil {
			t.Fatal("Commit(establishment of an unknown academy) = nil, want an error")
		}
		if as, _ := s.Academies(ctx); len(as) != 2 {
			t.Errorf("a failed batch left %d academies, want 2", len(as))
		}
	})

	run("variables and assignments", func(t *testing.T, s Store, _ func() Store) {
		seed(t, s)
		commit(t, s, &Batch{
			Variables: []Variable{
				{Level: Level{Kind: LevelFleet}, Name: "ssh_port", Value: json.RawMessage(`22`), Generation: 1, Updated: t0, UpdatedBy: "admin"},
				{Level: Level{Kind: LevelEstablishment, ID: "0951099D"}, Name: "admin_cidr", Value: json.RawMessage(`"10.1.0.0/16"`), Generation: 1, Updated: t0, UpdatedBy: "admin"},
				{Level: Level{Kind: LevelServer, ID: "srv-a"}, Name: "ldap_bind_password", Value: json.RawMessage(`null`), Sealed: []byte("age-sealed"), Generation: 1, Updated: t0, UpdatedBy: "admin"},
			},
			Assignments: []Assignment{
				{Level: Level{Kind: LevelFleet}, Module: "amon-firewall", Version: "2.3.0", Updated: t0, UpdatedBy: "admin"},
				{Level: Level{Kind: LevelServer, ID: "srv-a"}, Module: "amon-firewall", Version: VersionNone, Updated: t0, UpdatedBy: "admin"},
			},
		})
		commit(t, s, &Batch{
			Variables:         []Variable{{Level: Level{Kind: LevelFleet}, Name: "ssh_port", Value: json.RawMessage(`2222`), Generation: 2, Updated: t0.Add(time.Hour), UpdatedBy: "bob"}},
			DeleteVariables:   []VariableKey{{Level: Level{Kind: LevelEstablishment, ID: "0951099D"}, Name: "admin_cidr"}},
			DeleteAssignments: []AssignmentKey{{Level: Level{Kind: LevelServer, ID: "srv-a"}, Module: "amon-firewall"}},
		})
		vs, err := s.Variables(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantVars := []Variable{
			{Level: Level{Kind: LevelFleet}, Name: "ssh_port", Value: json.RawMessage(`2222`), Generation: 2, Updated: t0.Add(time.Hour), UpdatedBy: "bob"},
			{Level: Level{Kind: LevelServer, ID: "srv-a"}, Name: "ldap_bind_password", Value: json.RawMessage(`null`), Sealed: []byte("age-sealed"), Generation: 1, Updated: t0, UpdatedBy: "admin"},
		}
		if diff := cmp.Diff(wantVars, vs); diff != "" {
			t.Errorf("Variables() (-want +got):\n%s", diff)
		}
		if !vs[1].Secret() || vs[0].Secret() {
			t.Errorf("Secret() = %v, %v; want false, true", vs[0].Secret(), vs[1].Secret())
		}
		as, err := s.Assignments(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(as) != 1 || as[0].Version != "2.3.0" || as[0].Level.Kind != LevelFleet {
			t.Errorf("Assignments() = %+v", as)
		}
	})

	run("modules blobs roots", func(t *testing.T, s Store, _ func() Store) {
		m := Module{Name: "amon-firewall", Version: "2.3.0", Kind: "firewall", Counter: 4, Digest: "sha256:aa", Agent: ">= 1.2", Definition: []byte("name: amon-firewall"), Release: []byte(`{"payload":""}`), Published: t0, PublishedBy: "admin"}
		commit(t, s, &Batch{Modules: []Module{m}, Blobs: []Blob{{Digest: "sha256:bb", Size: 3, Data: []byte("abc"), Created: t0}}, Roots: []Root{{Version: 1, Envelope: []byte("{}"), Expires: t0.AddDate(1, 0, 0), Added: t0}}})
		// The same version again, or the same counter: refused.
		for _, dup := range []Module{m, {Name: m.Name, Version: "2.4.0", Kind: "firewall", Counter: 4, Digest: "sha256:cc", Definition: []byte("x"), Release: []byte("{}"), Published: t0}} {
			if err := s.Commit(ctx, &Batch{Modules: []Module{dup}}); !errors.Is(err, ErrConflict) {
				t.Errorf("Commit(module %s counter %d again) = %v, want ErrConflict", dup.Version, dup.Counter, err)
			}
		}
		// A blob stored twice is kept once.
		commit(t, s, &Batch{Blobs: []Blob{{Digest: "sha256:bb", Size: 3, Data: []byte("abc"), Created: t0.Add(time.Hour)}}})
		got, err := s.Module(ctx, "amon-firewall", "2.3.0")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(m, got); diff != "" {
			t.Errorf("Module() (-want +got):\n%s", diff)
		}
		list, err := s.Modules(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].Definition != nil || list[0].Counter != 4 {
			t.Errorf("Modules() = %+v, want one, without its definition", list)
		}
		if _, err := s.Module(ctx, "amon-firewall", "9.9.9"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Module(unknown) = %v, want ErrNotFound", err)
		}
		b, err := s.Blob(ctx, "sha256:bb")
		if err != nil || string(b.Data) != "abc" || b.Size != 3 || !b.Created.Equal(t0) {
			t.Errorf("Blob() = %+v, %v", b, err)
		}
		if bs, _ := s.Blobs(ctx); len(bs) != 1 || bs[0].Data != nil {
			t.Errorf("Blobs() = %+v", bs)
		}
		rs, err := s.Roots(ctx)
		if err != nil || len(rs) != 1 || rs[0].Version != 1 || string(rs[0].Envelope) != "{}" {
			t.Errorf("Roots() = %+v, %v", rs, err)
		}
		if err := s.Commit(ctx, &Batch{Roots: []Root{{Version: 1, Envelope: []byte("{}"), Expires: t0, Added: t0}}}); !errors.Is(err, ErrConflict) {
			t.Errorf("Commit(root 1 again) = %v, want ErrConflict", err)
		}
	})

	run("manifests", func(t *testing.T, s Store, _ func() Store) {
		seed(t, s)
		m := Manifest{ServerID: "srv-a", Serial: 1, Digest: "sha256:01", Envelope: []byte("env1"), Issued: t0, Expires: t0.Add(24 * time.Hour), Inputs: "sha256:in1",
			Modules: []ManifestModule{{Name: "amon-firewall", Version: "2.3.0", SpecDigest: "sha256:s1"}},
			Blobs:   []string{"sha256:bb"}, Secrets: []SecretState{{Name: "pw", Generation: 1, Source: "server:srv-a#1"}}}
		commit(t, s, &Batch{Manifests: []Manifest{m}, CompileErrors: map[string]string{"srv-a": ""}})
		m2 := m
		m2.Serial, m2.Digest, m2.Envelope, m2.PrevSerial = 2, "sha256:02", []byte("env2"), 1
		commit(t, s, &Batch{Manifests: []Manifest{m2}})
		// Written from a stale view: refused, and the whole batch with it.
		stale := m
		stale.Serial, stale.PrevSerial = 2, 1
		err := s.Commit(ctx, &Batch{Manifests: []Manifest{stale}, Academies: []Academy{{Name: "lille", Title: "Lille", Created: t0}}})
		if !errors.Is(err, ErrConflict) {
			t.Errorf("Commit(stale manifest) = %v, want ErrConflict", err)
		}
		if as, _ := s.Academies(ctx); len(as) != 2 {
			t.Errorf("a refused batch added an academy")
		}
		// A first manifest for a server that has one: refused too.
		if err := s.Commit(ctx, &Batch{Manifests: []Manifest{m}}); !errors.Is(err, ErrConflict) {
			t.Errorf("Commit(first manifest again) = %v, want ErrConflict", err)
		}
		got, err := s.Manifest(ctx, "srv-a")
		if err != nil {
			t.Fatal(err)
		}
		m2.PrevSerial = 0
		if diff := cmp.Diff(m2, got); diff != "" {
			t.Errorf("Manifest() (-want +got):\n%s", diff)
		}
		list, err := s.Manifests(ctx)
		if err != nil || len(list) != 1 || list[0].Envelope != nil || list[0].Serial != 2 {
			t.Errorf("Manifests() = %+v, %v", list, err)
		}
		if _, err := s.Manifest(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Manifest(unknown) = %v, want ErrNotFound", err)
		}
		commit(t, s, &Batch{CompileErrors: map[string]string{"srv-a": "admin_cidr: mandatory"}})
		if sv, _ := s.Server(ctx, "srv-a"); sv.CompileError != "admin_cidr: mandatory" {
			t.Errorf("CompileError = %q", sv.CompileError)
		}
	})

	run("enrollment", func(t *testing.T, s Store, _ func() Store) {
		seed(t, s)
		// Used: refused, and nothing changes.
		err := s.Enroll(ctx, Enrollment{TokenID: "tok00001", Time: t0.Add(2 * time.Minute),
			Server:      Server{ID: "srv-b", UAI: "0951099D", Role: "amon", PublicKey: []byte("k"), Enrolled: t0},
			Certificate: Certificate{Serial: "c-x", ServerID: "srv-b", NotBefore: t0, NotAfter: t0.Add(time.Hour)}})
		if !errors.Is(err, ErrTokenUsed) {
			t.Errorf("Enroll(used token) = %v, want ErrTokenUsed", err)
		}
		if _, err := s.Server(ctx, "srv-b"); !errors.Is(err, ErrNotFound) {
			t.Errorf("a refused enrollment made a server: %v", err)
		}
		commit(t, s, &Batch{Tokens: []Token{
			{ID: "tok00002", SecretHash: []byte("h"), UAI: "0951099D", Expires: t0.Add(time.Minute), Created: t0, CreatedBy: "admin"},
			{ID: "tok00003", SecretHash: []byte("h"), UAI: "0951099D", ServerID: "srv-a", Expires: t0.Add(time.Hour), Created: t0, CreatedBy: "admin"},
			{ID: "tok00004", SecretHash: []byte("h"), UAI: "0951099D", Expires: t0.Add(time.Hour), Created: t0, CreatedBy: "admin"},
		}})
		// Expired at the time of use.
		err = s.Enroll(ctx, Enrollment{TokenID: "tok00002", Time: t0.Add(time.Minute),
			Server:      Server{ID: "srv-c", UAI: "0951099D", PublicKey: []byte("k"), Enrolled: t0},
			Certificate: Certificate{Serial: "c-y", ServerID: "srv-c", NotBefore: t0, NotAfter: t0.Add(time.Hour)}})
		if !errors.Is(err, ErrTokenExpired) {
			t.Errorf("Enroll(expired token) = %v, want ErrTokenExpired", err)
		}
		if err := s.Enroll(ctx, Enrollment{TokenID: "nope0000", Time: t0}); !errors.Is(err, ErrNotFound) {
			t.Errorf("Enroll(unknown token) = %v, want ErrNotFound", err)
		}
		// A new server under an id that exists: refused, token left unused.
		err = s.Enroll(ctx, Enrollment{TokenID: "tok00004", Time: t0.Add(time.Minute),
			Server:      Server{ID: "srv-a", UAI: "0951099D", PublicKey: []byte("k"), Enrolled: t0},
			Certificate: Certificate{Serial: "c-z", ServerID: "srv-a", NotBefore: t0, NotAfter: t0.Add(time.Hour)}})
		if !errors.Is(err, ErrConflict) {
			t.Errorf("Enroll(existing id) = %v, want ErrConflict", err)
		}
		if tok, _ := s.Token(ctx, "tok00004"); !tok.Used.IsZero() {
			t.Errorf("a refused enrollment used its token")
		}
		// Re-enrolling srv-a revokes its first certificate.
		enroll(t, s, "tok00003", "srv-a", "0951099D", true)
		certs, err := s.Certificates(ctx, "srv-a")
		if err != nil || len(certs) != 2 {
			t.Fatalf("Certificates() = %+v, %v", certs, err)
		}
		revoked := map[string]bool{}
		for _, c := range certs {
			revoked[c.Serial] = !c.Revoked.IsZero()
		}
		if diff := cmp.Diff(map[string]bool{"c-tok00001": true, "c-tok00003": false}, revoked); diff != "" {
			t.Errorf("revoked certificates (-want +got):\n%s", diff)
		}
		sv, _ := s.Server(ctx, "srv-a")
		if string(sv.PublicKey) != "spki-tok00003" {
			t.Errorf("re-enrolled key = %q", sv.PublicKey)
		}
		tok, err := s.Token(ctx, "tok00001")
		if err != nil || tok.UsedBy != "srv-a" || tok.Used.IsZero() {
			t.Errorf("Token() = %+v, %v", tok, err)
		}
		if ts, _ := s.Tokens(ctx); len(ts) != 4 {
			t.Errorf("Tokens() = %d tokens, want 4", len(ts))
		}
		if err := s.AddCertificate(ctx, Certificate{Serial: "c-renew", ServerID: "srv-a", NotBefore: t0, NotAfter: t0.Add(96 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if certs, _ := s.Certificates(ctx, "srv-a"); len(certs) != 3 || certs[2].Serial != "c-renew" {
			t.Errorf("Certificates() after renew = %+v", certs)
		}
		// Proofs: each time once, and only forward.
		if err := s.UseProof(ctx, "srv-a", t0); err != nil {
			t.Errorf("UseProof() = %v", err)
		}
		for _, when := range []time.Time{t0, t0.Add(-time.Second)} {
			if err := s.UseProof(ctx, "srv-a", when); !errors.Is(err, ErrConflict) {
				t.Errorf("UseProof(%v) = %v, want ErrConflict", when, err)
			}
		}
		if err := s.UseProof(ctx, "srv-a", t0.Add(time.Second)); err != nil {
			t.Errorf("UseProof(later) = %v", err)
		}
		// Revocation.
		d, err := s.DenyList(ctx)
		if err != nil || len(d.Servers) != 0 || len(d.Serials) != 1 {
			t.Errorf("DenyList() = %+v, %v", d, err)
		}
		commit(t, s, &Batch{RevokeServers: []ServerRevocation{{ID: "srv-a", Time: t0.Add(time.Hour)}}, Events: []Event{{Kind: EventRevoked, IDs: []string{"srv-a"}}}})
		d, _ = s.DenyList(ctx)
		if diff := cmp.Diff(DenyList{Serials: []string{"c-renew", "c-tok00001", "c-tok00003"}, Servers: []string{"srv-a"}}, d); diff != "" {
			t.Errorf("DenyList() (-want +got):\n%s", diff)
		}
		if err := s.Commit(ctx, &Batch{RevokeServers: []ServerRevocation{{ID: "srv-a", Time: t0}}}); !errors.Is(err, ErrNotFound) {
			t.Errorf("revoke twice = %v, want ErrNotFound", err)
		}
	})

	run("reports", func(t *testing.T, s Store, _ func() Store) {
		seed(t, s)
		rep := func(id string, serial uint64, outcome string, at time.Time, applied bool) Report {
			return Report{ServerID: "srv-a", ID: id, Serial: serial, Outcome: outcome, Started: at.Add(-time.Second), Finished: at, Received: at, Body: json.RawMessage(`{"id":"` + id + `"}`), Applied: applied}
		}
		for i := range 5 {
			dup, err := s.AddReport(ctx, rep(fmt.Sprintf("r%d", i), uint64(i+1), "corrected", t0.Add(time.Duration(i)*time.Minute), true), 3)
			if err != nil || dup {
				t.Fatalf("AddReport(r%d) = %v, %v", i, dup, err)
			}
		}
		dup, err := s.AddReport(ctx, rep("r4", 5, "failing", t0.Add(time.Hour), false), 3)
		if err != nil || !dup {
			t.Errorf("AddReport(r4 again) = %v, %v; want duplicate", dup, err)
		}
		// An old report delivered late does not become the last one.
		if _, err := s.AddReport(ctx, rep("late", 2, "failing", t0.Add(-time.Hour), false), 3); err != nil {
			t.Fatal(err)
		}
		rs, err := s.Reports(ctx, ReportFilter{ServerID: "srv-a"})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range rs {
			ids = append(ids, r.ID)
		}
		if diff := cmp.Diff([]string{"r4", "r3", "r2"}, ids); diff != "" {
			t.Errorf("Reports() kept (-want +got):\n%s", diff)
		}
		if string(rs[0].Body) != `{"id":"r4"}` || rs[0].Outcome != "corrected" || !rs[0].Finished.Equal(t0.Add(4*time.Minute)) {
			t.Errorf("Reports()[0] = %+v", rs[0])
		}
		sv, _ := s.Server(ctx, "srv-a")
		if sv.ReportID != "r4" || sv.ReportSerial != 5 || sv.ReportOutcome != "corrected" || sv.AppliedSerial != 5 || !sv.AppliedTime.Equal(t0.Add(4*time.Minute)) {
			t.Errorf("server's last report = %+v", sv)
		}
		// The latest report's facts become the server's (an upgraded agent).
		withFacts := rep("r9", 6, "compliant", t0.Add(5*time.Minute), true)
		withFacts.Facts = api.Facts{Hostname: "amon", AgentVersion: "1.4.0"}
		if _, err := s.AddReport(ctx, withFacts, 3); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddReport(ctx, rep("r10", 6, "compliant", t0.Add(6*time.Minute), true), 3); err != nil {
			t.Fatal(err)
		}
		if sv, _ := s.Server(ctx, "srv-a"); sv.Facts.AgentVersion != "1.4.0" {
			t.Errorf("facts after reports = %+v", sv.Facts)
		}
		if all, _ := s.Reports(ctx, ReportFilter{Limit: 2}); len(all) != 2 {
			t.Errorf("Reports(limit 2) = %d", len(all))
		}
		if err := s.MarkSeen(ctx, map[string]time.Time{"srv-a": t0.Add(2 * time.Hour), "gone": t0}); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkSeen(ctx, map[string]time.Time{"srv-a": t0}); err != nil {
			t.Fatal(err)
		}
		if sv, _ := s.Server(ctx, "srv-a"); !sv.LastSeen.Equal(t0.Add(2 * time.Hour)) {
			t.Errorf("LastSeen = %v", sv.LastSeen)
		}
		// Concurrent reports from many servers.
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for i := range 20 {
			wg.Go(func() {
				_, err := s.AddReport(ctx, rep(fmt.Sprintf("c%d", i), 6, "compliant", t0.Add(3*time.Hour), true), 3)
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("concurrent AddReport: %v", err)
			}
		}
	})

	run("reports written together", func(t *testing.T, s Store, _ func() Store) {
		seed(t, s)
		commit(t, s, &Batch{Tokens: []Token{{ID: "tok00002", SecretHash: []byte("h"), UAI: "0780001A", Expires: t0.Add(time.Hour), Created: t0, CreatedBy: "admin"}}})
		enroll(t, s, "tok00002", "srv-b", "0780001A", false)
		for uai, want := range map[string]string{"0780001A": "srv-b", "0951099D": "srv-a"} {
			if svs, err := s.ServersOf(ctx, uai); err != nil || len(svs) != 1 || svs[0].ID != want {
				t.Errorf("ServersOf(%s) = %+v, %v; want %s only", uai, svs, err, want)
			}
		}
		rep := func(server, id string, serial uint64, minute int, applied bool) *reportReq {
			at := t0.Add(time.Duration(minute) * time.Minute)
			return &reportReq{keep: 3, done: make(chan struct{}), r: Report{ServerID: server, ID: id, Serial: serial, Outcome: "compliant",
				Started: at, Finished: at, Received: at, Body: json.RawMessage(`{}`), Applied: applied}}
		}
		// One batch as a fleet change makes it: two servers, reports out
		// of order, one sent twice.
		batch := []*reportReq{
			rep("srv-a", "a1", 1, 1, true), rep("srv-b", "b1", 1, 1, true),
			rep("srv-a", "a3", 3, 3, false), rep("srv-a", "a2", 2, 2, true),
			rep("srv-b", "b1", 1, 1, true), // the agent's retry
			rep("srv-a", "a4", 4, 4, true), rep("srv-a", "a0", 1, 0, true),
		}
		s.(*sqlStore).writeBatch(batch)
		var dups []bool
		for _, r := range batch {
			if r.err != nil {
				t.Fatalf("report %s/%s: %v", r.r.ServerID, r.r.ID, r.err)
			}
			dups = append(dups, r.dup)
		}
		if diff := cmp.Diff([]bool{false, false, false, false, true, false, false}, dups); diff != "" {
			t.Errorf("duplicates (-want +got):\n%s", diff)
		}
		rs, _ := s.Reports(ctx, ReportFilter{ServerID: "srv-a"})
		var ids []string
		for _, r := range rs {
			ids = append(ids, r.ID)
		}
		if diff := cmp.Diff([]string{"a4", "a3", "a2"}, ids); diff != "" {
			t.Errorf("srv-a kept (-want +got):\n%s", diff)
		}
		a, _ := s.Server(ctx, "srv-a")
		if a.ReportID != "a4" || a.ReportSerial != 4 || a.AppliedSerial != 4 || !a.AppliedTime.Equal(t0.Add(4*time.Minute)) {
			t.Errorf("srv-a's last report %s serial %d, applied %d at %v; want a4, 4, 4 at minute 4", a.ReportID, a.ReportSerial, a.AppliedSerial, a.AppliedTime)
		}
		if b, _ := s.Server(ctx, "srv-b"); b.ReportID != "b1" || b.AppliedSerial != 1 {
			t.Errorf("srv-b's last report %s, applied %d; want b1, 1", b.ReportID, b.AppliedSerial)
		}
		// A batch that fails (a server the store does not know) is
		// written report by report: the others are kept.
		batch = []*reportReq{rep("srv-b", "b2", 2, 2, true), rep("srv-gone", "g1", 1, 1, true), rep("srv-a", "a4", 4, 4, true)}
		s.(*sqlStore).writeBatch(batch)
		if batch[0].err != nil || batch[0].dup || batch[1].err == nil || batch[2].err != nil || !batch[2].dup {
			t.Errorf("after a failed batch: b2 %v %v, g1 %v, a4 %v %v; want b2 written, g1 refused, a4 a duplicate",
				batch[0].dup, batch[0].err, batch[1].err, batch[2].dup, batch[2].err)
		}
		if b, _ := s.Server(ctx, "srv-b"); b.ReportID != "b2" || b.AppliedSerial != 2 {
			t.Errorf("srv-b's last report %s, applied %d; want b2, 2", b.ReportID, b.AppliedSerial)
		}
	})

	run("operators and audit", func(t *testing.T, s Store, _ func() Store) {
		commit(t, s, &Batch{Operators: []Operator{
			{ID: "op1", Name: "alice", Role: "fleet_admin", SecretHash: []byte("h1"), Created: t0, CreatedBy: "bootstrap"},
			{ID: "op2", Name: "bob", Role: "academy_admin", Scope: []string{"versailles"}, SecretHash: []byte("h2"), Created: t0, CreatedBy: "alice"},
		}})
		if err := s.Commit(ctx, &Batch{Operators: []Operator{{ID: "op3", Name: "alice", Role: "viewer", SecretHash: []byte("h"), Created: t0}}}); !errors.Is(err, ErrConflict) {
			t.Errorf("Commit(operator name twice) = %v, want ErrConflict", err)
		}
		commit(t, s, &Batch{RevokeOperators: []string{"op2"}})
		if err := s.Commit(ctx, &Batch{RevokeOperators: []string{"op2"}}); !errors.Is(err, ErrNotFound) {
			t.Errorf("revoke twice = %v, want ErrNotFound", err)
		}
		o, err := s.Operator(ctx, "op2")
		if err != nil || o.Revoked.IsZero() || o.Scope[0] != "versailles" || string(o.SecretHash) != "h2" {
			t.Errorf("Operator() = %+v, %v", o, err)
		}
		if os, _ := s.Operators(ctx); len(os) != 2 {
			t.Errorf("Operators() = %d", len(os))
		}
		for i, e := range []AuditEntry{
			{Actor: "alice", Action: "var.set", Target: "fleet.ssh_port", Before: "", After: "sha256:1", Detail: json.RawMessage(`{"value":22}`)},
			{Actor: "bob", Action: "assign", Target: "academy:versailles/amon-firewall", Before: "sha256:1", After: "sha256:2"},
			{Actor: "alice", Action: "var.set", Target: "fleet.admin_cidr"},
		} {
			e.Time = t0.Add(time.Duration(i) * time.Minute)
			commit(t, s, &Batch{Audit: []AuditEntry{e}})
		}
		all, err := s.Audit(ctx, AuditFilter{})
		if err != nil || len(all) != 3 || all[0].Target != "fleet.admin_cidr" || all[2].Seq >= all[0].Seq {
			t.Fatalf("Audit() = %+v, %v", all, err)
		}
		if string(all[2].Detail) != `{"value":22}` || all[1].Before != "sha256:1" || all[1].After != "sha256:2" {
			t.Errorf("Audit() entries = %+v", all)
		}
		for _, tc := range []struct {
			f    AuditFilter
			want int
		}{
			{AuditFilter{Actor: "alice"}, 2},
			{AuditFilter{Target: "fleet."}, 2},
			{AuditFilter{Target: "academy:versailles/"}, 1},
			{AuditFilter{Since: t0.Add(time.Minute)}, 2},
			{AuditFilter{Limit: 1}, 1},
		} {
			if got, err := s.Audit(ctx, tc.f); err != nil || len(got) != tc.want {
				t.Errorf("Audit(%+v) = %d entries, %v; want %d", tc.f, len(got), err, tc.want)
			}
		}
		// Nobody rewrites history, not even with SQL.
		db := s.(*sqlStore).db
		for _, q := range []string{`UPDATE audit SET actor = 'mallory'`, `DELETE FROM audit`} {
			if _, err := db.ExecContext(ctx, q); err == nil {
				t.Errorf("%s: no error, want the append-only trigger's", q)
			}
		}
		if all, _ := s.Audit(ctx, AuditFilter{}); len(all) != 3 || all[0].Actor != "alice" {
			t.Errorf("audit changed: %+v", all)
		}
	})

	run("lock", func(t *testing.T, s Store, open2 func() Store) {
		other := s
		if open2 != nil {
			other = open2() // another replica
		}
		unlock, err := s.Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if u, err := other.Lock(short); err == nil {
			u()
			t.Fatal("Lock() while held = nil error, want a timeout")
		}
		unlock()
		u, err := other.Lock(ctx)
		if err != nil {
			t.Fatalf("Lock() after unlock: %v", err)
		}
		u()
	})

	run("listen", func(t *testing.T, s Store, open2 func() Store) {
		if open2 == nil {
			lctx, cancel := context.WithCancel(ctx)
			ready := make(chan struct{})
			done := make(chan error)
			go func() { done <- s.Listen(lctx, ready, func(Event) {}) }()
			<-ready
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Listen() = %v", err)
			}
			return
		}
		seed(t, s)
		b := open2()
		lctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ready := make(chan struct{})
		got := make(chan Event, 100)
		go b.Listen(lctx, ready, func(ev Event) { got <- ev })
		<-ready
		// The committing replica listens too: it must not hear itself.
		own := make(chan Event, 100)
		ownReady := make(chan struct{})
		go s.Listen(lctx, ownReady, func(ev Event) { own <- ev })
		<-ownReady
		ids := make([]string, 2000) // more than one NOTIFY payload holds
		for i := range ids {
			ids[i] = fmt.Sprintf("server-%04d", i)
		}
		commit(t, s, &Batch{Audit: []AuditEntry{{Time: t0, Actor: "a", Action: "push", Target: "fleet"}}, Events: []Event{{Kind: EventManifests, IDs: ids}, {Kind: EventRoots}}})
		var seen []string
		roots := false
		timeout := time.After(10 * time.Second)
		for len(seen) < len(ids) || !roots {
			select {
			case ev := <-got:
				switch ev.Kind {
				case EventManifests:
					seen = append(seen, ev.IDs...)
				case EventRoots:
					roots = true
				}
			case <-timeout:
				t.Fatalf("after 10 s: %d ids seen, roots %v", len(seen), roots)
			}
		}
		if diff := cmp.Diff(ids, seen); diff != "" {
			t.Errorf("ids notified (-want +got):\n%s", diff)
		}
		// PostgreSQL delivers notifications in commit order: once s hears
		// b's event, it has heard all it was going to of its own.
		commit(t, b, &Batch{Events: []Event{{Kind: EventRevoked, IDs: []string{"from-b"}}}})
		select {
		case ev := <-own:
			if ev.Kind != EventRevoked || !slices.Equal(ev.IDs, []string{"from-b"}) {
				t.Errorf("the committing replica heard %s %d ids, its own event; want only the other replica's", ev.Kind, len(ev.IDs))
			}
		case <-time.After(10 * time.Second):
			t.Fatal("after 10 s, the first replica did not hear the second's event")
		}
	})
}
