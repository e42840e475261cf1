package examples_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-version"

	"github.com/alize-eple/alize/modules/examples"
	"github.com/alize-eple/alize/modules/manifest"
	"github.com/alize-eple/alize/modules/schema"
)

// fleetSize is the national fleet: ~17,000 school servers.
const fleetSize = 17000

// benchKey is a test key from a fixed, public seed: never a real key.
func benchKey(tb testing.TB, name string) *manifest.Key {
	seed := sha256.Sum256([]byte("alize examples BENCHMARK TEST KEY, public, never use outside tests: " + name))
	k, err := manifest.NewKey(ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// fleet is what the controller holds before it signs: the three example
// modules parsed once, their releases, the kinds' checkers, and the keys.
type fleet struct {
	modules  []*schema.Module
	defs     [][]byte
	byDigest map[string][]byte // defs by digest: the agent's definition cache
	releases [][]byte
	director *manifest.Key
	rootEnv  []byte
}

func newFleet(tb testing.TB) *fleet {
	tb.Helper()
	root, release, director := benchKey(tb, "root"), benchKey(tb, "release"), benchKey(tb, "director")
	f := &fleet{director: director, byDigest: map[string][]byte{}}
	r := &manifest.Root{
		Version: 1,
		Expires: time.Now().Add(365 * 24 * time.Hour),
		Keys: map[string]manifest.PublicKey{
			root.ID(): root.PublicKey(), release.ID(): release.PublicKey(), director.ID(): director.PublicKey(),
		},
		Roles: manifest.Roles{
			Root:     manifest.Role{KeyIDs: []string{root.ID()}, Threshold: 1},
			Release:  manifest.Role{KeyIDs: []string{release.ID()}, Threshold: 1},
			Director: manifest.Role{KeyIDs: []string{director.ID()}, Threshold: 1},
		},
	}
	var err error
	if f.rootEnv, err = manifest.SignRoot(r, root); err != nil {
		tb.Fatal(err)
	}
	for _, name := range []string{"amon-firewall.yaml", "scribe-accounts.yaml", "scribe-shares.yaml"} {
		data, err := fs.ReadFile(examples.Files(), name)
		if err != nil {
			tb.Fatal(err)
		}
		m, err := schema.ParseModule(data)
		if err != nil {
			tb.Fatal(err)
		}
		env, err := manifest.SignRelease(&manifest.Release{Name: m.Name, Version: m.Version, Kind: m.Kind,
			Digest: manifest.Digest(data), Counter: 1, Agent: ">= 1.2, < 2"}, release)
		if err != nil {
			tb.Fatal(err)
		}
		f.modules = append(f.modules, m)
		f.defs = append(f.defs, data)
		f.byDigest[manifest.Digest(data)] = data
		f.releases = append(f.releases, env)
	}
	return f
}

// definition is the agent's store of definitions fetched by digest.
func (f *fleet) definition(digest string) []byte {
	return f.byDigest[digest]
}

// serverLevels are realistic, per-server variables: every server of the
// fleet has its own UAI, networks and interfaces.
func serverLevels(i int) []schema.Level {
	lv := levels()
	lv[0].Values["external_interface"] = fmt.Sprintf("wan%d", i%4)
	lv[0].Values["ldap_bind_password"] = schema.SecretRef("ldap_bind_password")
	n := 1000000 + i
	lv[1].Values["uai"] = fmt.Sprintf("%07d%c", n, "ABCDEFGHJKLMNPRSTUVWXYZ"[n%23])
	lv[1].Values["admin_cidr"] = fmt.Sprintf("10.%d.%d.0/24", 64+i/256%64, i%256)
	return lv
}

// build compiles (with each kind's check) and signs server i's manifest.
func (f *fleet) build(i int, check map[string]func([]byte) error, now time.Time) ([]byte, error) {
	all := serverLevels(i)
	m := &manifest.Manifest{
		Target:  manifest.Target{ServerID: fmt.Sprintf("srv-%05d", i), UAI: all[1].Values["uai"].(string)},
		Serial:  uint64(i + 1),
		Issued:  now,
		Expires: now.Add(14 * 24 * time.Hour),
	}
	for j, mod := range f.modules {
		var lv []schema.Level
		for _, l := range all {
			values := map[string]any{}
			for k, v := range l.Values {
				if _, ok := mod.Variables.Lookup(k); ok {
					values[k] = v
				}
			}
			lv = append(lv, schema.Level{Name: l.Name, Values: values})
		}
		r, err := schema.Resolve(&mod.Variables, lv)
		if err != nil {
			return nil, err
		}
		c, err := schema.Compile(mod, r, check[mod.Kind])
		if err != nil {
			return nil, err
		}
		values, err := r.ValuesJSON()
		if err != nil {
			return nil, err
		}
		// As the controller does: the definition travels apart, by digest,
		// and was checked against its release when it was published.
		m.Modules = append(m.Modules, manifest.Module{ReleaseEnvelope: f.releases[j],
			Values: values, Spec: c.Spec, SpecDigest: c.Digest})
	}
	return manifest.SignManifest(m, f.director)
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCompileSignFleet compiles (resolve, substitute, kind check) and
// signs the manifests of the whole national fleet: 17,000 servers with the
// three example modules each, on every core. One op is the whole fleet.
// Target: under 3 s on the 2-core development machine.
func BenchmarkCompileSignFleet(b *testing.B) {
	f := newFleet(b)
	raw := checkers(b)
	check := map[string]func([]byte) error{}
	for k, c := range raw {
		check[k] = c
	}
	now := time.Now()
	workers := runtime.GOMAXPROCS(0)
	// As the controller's director builds many manifests at once: the
	// collector at 5× the live heap (director.Config.BuildGC, set by
	// alize-controller serve). GOGC in the environment overrides it, to
	// compare.
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(400))
	}
	cpu0 := processCPU()
	for b.Loop() {
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Go(func() {
				for i := w; i < fleetSize; i += workers {
					if _, err := f.build(i, check, now); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/fleetSize, "µs/server")
	// CPU time says what the fleet costs whatever else the machine runs:
	// on two idle cores the wall time is about half of it.
	b.ReportMetric((processCPU()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
}

// BenchmarkVerifyExampleManifest is the agent's verification of a manifest
// of the three real example modules, with the real recompile
// (schema.Compiler) and the verifier's cache, as the agent runs it.
// "warm" is the steady state — the same modules, a new serial; "cold" is
// the first manifest after the agent starts. Target: under 150 µs.
func BenchmarkVerifyExampleManifest(b *testing.B) {
	f := newFleet(b)
	check := map[string]func([]byte) error{}
	for k, c := range checkers(b) {
		check[k] = c
	}
	now := time.Now()
	envelope, err := f.build(7, check, now)
	if err != nil {
		b.Fatal(err)
	}
	trust, err := manifest.PinRoot(f.rootEnv)
	if err != nil {
		b.Fatal(err)
	}
	uai := serverLevels(7)[1].Values["uai"].(string)
	verifier := func(cache *manifest.Cache, compiler *schema.Compiler) *manifest.Verifier {
		return &manifest.Verifier{Trust: trust, ServerID: "srv-00007", UAI: uai,
			AgentVersion: version.Must(version.NewVersion("1.2.0")), Compile: compiler.CompileBytes,
			Definitions: f.definition, Now: func() time.Time { return now }, Cache: cache}
	}
	b.Logf("manifest envelope: %d bytes", len(envelope))
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := verifier(&manifest.Cache{}, &schema.Compiler{}).Verify(envelope, manifest.State{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("warm", func(b *testing.B) {
		v := verifier(&manifest.Cache{}, &schema.Compiler{})
		if _, _, err := v.Verify(envelope, manifest.State{}); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, _, err := v.Verify(envelope, manifest.State{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
