package manifest

import (
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time this process has used (user and system, GC
// included). The benchmarks report it per operation as cpu-ns/op beside
// ns/op: on a shared machine the wall time of an operation grows with the
// load of others, its CPU time much less.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loop runs op b.N times and reports its CPU time per operation.
func loop(b *testing.B, op func()) {
	start := cpuTime()
	n := 0
	for b.Loop() {
		op()
		n++
	}
	b.ReportMetric(float64(cpuTime()-start)/float64(n), "cpu-ns/op")
}

// benchManifest is a realistic manifest: three modules the size of real
// firewall, accounts and shares modules (definitions of 1.5 to 4 KiB,
// specs of 0.3 to 3 KiB), a roster blob and a sealed secret.
func benchManifest(b *testing.B) (*fixture, []byte) {
	return benchManifestSized(b, true)
}

func benchManifestSized(b *testing.B, big bool) (*fixture, []byte) {
	f := newFixture(b, big)
	m := f.manifest()
	env := f.sign(m)
	size := 0
	for _, mod := range m.Modules {
		size += len(mod.Spec)
	}
	b.Logf("envelope %d bytes, payload %d bytes, specs %d bytes in all", len(env), len(f.payload(m)), size)
	return f, env
}

// BenchmarkVerifyManifest measures Verify on a realistic manifest, the
// recompilation of its three modules included (with testCompile here; the
// real schema.CompileBytes replaces it in the agent).
// Target: under 150 µs per manifest in an agent's steady state, on 2 cores.
//
//   - cold: nothing cached: 1 + 3 ed25519 verifications and 3 compiles.
//     An agent's first manifest after it starts.
//   - warm-releases: the releases verified before (Cache), every module
//     recompiled: a new manifest in which every module's values changed.
//   - warm: releases and compile results cached: a new manifest whose
//     modules did not change (a new serial, blob or secret) — the common case.
func BenchmarkVerifyManifest(b *testing.B) {
	f, env := benchManifest(b)
	benchVerify(b, f, env)
}

// BenchmarkVerifyManifestSmall is BenchmarkVerifyManifest with tiny
// modules (definitions and specs of a few hundred bytes): the difference
// is what the size of the definitions and specs costs.
func BenchmarkVerifyManifestSmall(b *testing.B) {
	f, env := benchManifestSized(b, false)
	benchVerify(b, f, env)
}

func benchVerify(b *testing.B, f *fixture, env []byte) {
	last := state()
	b.Run("cold", func(b *testing.B) {
		v := f.verifier(nil)
		loop(b, func() {
			if _, _, err := v.Verify(env, last); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("warm-releases", func(b *testing.B) {
		v := f.verifier(&Cache{noCompileMemo: true})
		loop(b, func() {
			if _, _, err := v.Verify(env, last); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("warm", func(b *testing.B) {
		v := f.verifier(&Cache{})
		loop(b, func() {
			if _, _, err := v.Verify(env, last); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// BenchmarkVerifyManifestSealed is Verify plus the Unseal of one secret.
// Target: under 500 µs.
func BenchmarkVerifyManifestSealed(b *testing.B) {
	f, env := benchManifest(b)
	last := state()
	for _, c := range []struct {
		name  string
		cache *Cache
	}{{"cold", nil}, {"warm", &Cache{}}} {
		b.Run(c.name, func(b *testing.B) {
			v := f.verifier(c.cache)
			loop(b, func() {
				m, _, err := v.Verify(env, last)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Unseal(f.agent, serverID, m.Secrets[0]); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// BenchmarkUnseal opens one sealed secret: age's X25519 unwrap (one
// scalar multiplication), then the check of the sealed text.
func BenchmarkUnseal(b *testing.B) {
	f := newFixture(b, false)
	ref := f.secret(serverID, "ldap-bind", 2, f.agent)
	loop(b, func() {
		if _, err := Unseal(f.agent, serverID, ref); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkSignManifest is the controller's cost per server: compile its
// three modules (testCompile here) and sign the manifest. Target: the
// 17,000 servers of the fleet in under 3 s on 2 cores, that is under
// 350 µs per server on one core.
func BenchmarkSignManifest(b *testing.B) {
	f, _ := benchManifest(b)
	m := f.manifest()
	sign := func() {
		mm := *m
		mm.Modules = make([]Module, len(m.Modules))
		for i, mod := range m.Modules {
			spec, digest, err := testCompile(mod.Definition, mod.Values)
			if err != nil {
				b.Fatal(err)
			}
			mod.Spec, mod.SpecDigest = spec, digest
			mm.Modules[i] = mod
		}
		if _, err := SignManifest(&mm, f.director); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("one-core", func(b *testing.B) {
		loop(b, sign)
	})
	b.Run("all-cores", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				sign()
			}
		})
	})
}

// BenchmarkVerifySteps breaks a warm Verify of the realistic manifest
// into its steps, to show where the time goes: most of it scales with the
// payload's size (base64, SHA-512 inside ed25519, JSON), and the module
// definitions are most of the payload.
func BenchmarkVerifySteps(b *testing.B) {
	f, env := benchManifest(b)
	e, err := decodeEnvelope("manifest", env, MaxEnvelopeSize, MaxManifestSize, PayloadTypeManifest)
	if err != nil {
		b.Fatal(err)
	}
	payload := e.Payload
	var w manifestWire
	if err := decodeStrict("manifest", payload, &w, false); err != nil {
		b.Fatal(err)
	}
	c := &Cache{}
	steps := []struct {
		name string
		op   func()
	}{
		{"decode-envelope", func() {
			decodeEnvelope("manifest", env, MaxEnvelopeSize, MaxManifestSize, PayloadTypeManifest)
		}},
		{"verify-director-signature", func() { f.trust.keys.verify("manifest", e, RoleDirector) }},
		{"decode-payload", func() {
			var w manifestWire
			decodeStrict("manifest", payload, &w, false)
		}},
		{"releases-cached", func() {
			for _, m := range w.Modules {
				f.trust.verifyRelease(m.Release, c)
			}
		}},
		{"digests", func() {
			for i, m := range w.Modules {
				Digest(f.modules[i].definition)
				Digest(m.Spec)
				Digest(m.Values)
			}
		}},
		{"compile", func() {
			for i, m := range w.Modules {
				testCompile(f.modules[i].definition, m.Values)
			}
		}},
	}
	for _, s := range steps {
		b.Run(s.name, func(b *testing.B) { loop(b, s.op) })
	}
}
