package director

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/alize-eple/alize/controller/internal/store"
	"github.com/alize-eple/alize/testenv"
)

// BenchmarkFleetChange measures a fleet-level variable change that
// re-signs the manifest of every server of an academy of 1,500 (the
// largest academies), on SQLite. Target: well under the 30 s in which a
// change must reach 99% of 17,000 agents.
func BenchmarkFleetChange(b *testing.B) {
	f := newBenchFixture(b, 1500)
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		p, err := f.d.Apply(ctx, SetVariable{Level: level("fleet"), Name: "message", Value: json.RawMessage(fmt.Sprintf(`"m%d"`, i))}, "bench", false)
		if err != nil || p.Changed < 1500 {
			b.Fatalf("Apply(): %d changed, %v", p.Changed, err)
		}
	}
}

// BenchmarkFleetChangeNation is the same change for the nation's 17,000
// servers, on each store: what `var set fleet` takes before testenv/fleetsim's
// agents can see it (load, build, sign, commit), without the agents.
func BenchmarkFleetChangeNation(b *testing.B) {
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			var s store.Store
			var err error
			if name == "sqlite" {
				s, err = store.OpenSQLite(b.Context(), filepath.Join(b.TempDir(), "c.db"))
			} else {
				s, err = store.OpenPostgres(b.Context(), testenv.StartPostgres(b).DSN)
			}
			if err != nil {
				b.Fatal(err)
			}
			f := newBenchFixtureStore(b, s, 17000)
			ctx := context.Background()
			for i := 0; b.Loop(); i++ {
				p, err := f.d.Apply(ctx, SetVariable{Level: level("fleet"), Name: "message", Value: json.RawMessage(fmt.Sprintf(`"m%d"`, i))}, "bench", false)
				if err != nil || p.Changed < 17000 {
					b.Fatalf("Apply(): %d changed, %v", p.Changed, err)
				}
			}
		})
	}
}

func newBenchFixture(b *testing.B, n int) *fixture {
	b.Helper()
	s, err := store.OpenSQLite(b.Context(), filepath.Join(b.TempDir(), "c.db"))
	if err != nil {
		b.Fatal(err)
	}
	return newBenchFixtureStore(b, s, n)
}

func newBenchFixtureStore(b testing.TB, s store.Store, n int) *fixture {
	b.Helper()
	f := newFixtureStore(b, s)
	ctx := context.Background()
	recipient, _ := age.GenerateX25519Identity()
	var batch store.Batch
	for i := range n {
		batch.Tokens = append(batch.Tokens, store.Token{ID: fmt.Sprintf("tok%05d", i), SecretHash: []byte("h"), UAI: lyceeUAI, Expires: f.now.Add(time.Hour), Created: f.now})
	}
	if err := f.s.Commit(ctx, &batch); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		id := fmt.Sprintf("srv-%05d", i)
		err := f.s.Enroll(ctx, store.Enrollment{TokenID: fmt.Sprintf("tok%05d", i), Time: f.now,
			Server:      store.Server{ID: id, UAI: lyceeUAI, AgeRecipient: recipient.Recipient().String(), PublicKey: []byte("k"), PollInterval: 300, Enrolled: f.now},
			Certificate: store.Certificate{Serial: "c-" + id, ServerID: id, NotBefore: f.now, NotAfter: f.now.Add(time.Hour)}})
		if err != nil {
			b.Fatal(err)
		}
	}
	f.publish("1.0.0", 1)
	if _, err := f.d.Apply(ctx, SetVariable{Level: level("fleet"), Name: "message", Value: json.RawMessage(`"x"`)}, "bench", false); err != nil {
		b.Fatal(err)
	}
	if _, err := f.d.Apply(ctx, Assign{Level: level("fleet"), Module: "motd", Version: "1.0.0"}, "bench", false); err != nil {
		b.Fatal(err)
	}
	return f
}
