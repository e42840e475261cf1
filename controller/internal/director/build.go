package director

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/controller/internal/store"
	"github.com/alize-eple/alize/modules/manifest"
	"github.com/alize-eple/alize/modules/schema"
)

// parsedModule is a published module version, parsed once.
type parsedModule struct {
	meta store.Module // definition and release included
	mod  *schema.Module
}

// ensureParsed loads and parses every module version m assigns, once per
// process: published versions never change.
func (d *Director) ensureParsed(ctx context.Context, m *model) error {
	for _, byModule := range m.assigns {
		for _, a := range byModule {
			key := moduleKey(a.Module, a.Version)
			if _, ok := m.modules[key]; !ok {
				continue // the build reports it
			}
			d.mu.Lock()
			_, ok := d.parsed[key]
			d.mu.Unlock()
			if ok {
				continue
			}
			full, err := d.cfg.Store.Module(ctx, a.Module, a.Version)
			if err != nil {
				return err
			}
			mod, err := schema.ParseModule(full.Definition)
			if err != nil {
				return fmt.Errorf("module %s %s: %w", a.Module, a.Version, err)
			}
			d.mu.Lock()
			d.parsed[key] = &parsedModule{meta: full, mod: mod}
			d.mu.Unlock()
		}
	}
	return nil
}

func (d *Director) parsedModule(key string) *parsedModule {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.parsed[key]
}

// built is one server's manifest after a change.
type built struct {
	id        string
	unchanged bool
	err       error
	record    store.Manifest // when signed
	plan      api.PlanServer
}

// buildAll builds the manifests of ids, in parallel.
func (d *Director) buildAll(m *model, ids []string, now time.Time, sign, force bool) []built {
	out := make([]built, len(ids))
	workers := min(runtime.GOMAXPROCS(0), len(ids))
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				out[i] = d.build(m, m.servers[ids[i]], now, sign, force)
			}
		})
	}
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// secretUse is a secret a server's manifest seals.
type secretUse struct {
	plain  string
	source string // level and variable generation
}

// build compiles every module assigned to sv with the variables that
// resolve for it, and, when sign, seals its secrets and signs the
// manifest.
func (d *Director) build(m *model, sv store.Server, now time.Time, sign, force bool) built {
	b := built{id: sv.ID, plan: api.PlanServer{ServerID: sv.ID, UAI: sv.UAI}}
	fail := func(err error) built {
		b.err = err
		b.plan.Error = err.Error()
		return b
	}
	if _, ok := m.establishments[sv.UAI]; !ok {
		return fail(fmt.Errorf("establishment %s is unknown", sv.UAI))
	}
	levels := m.levelsOf(sv)

	// Which module versions: the highest level that assigns a module decides.
	chosen := map[string]string{}
	decided := map[string]bool{}
	for _, nl := range levels {
		for name, a := range m.assigns[nl.level] {
			if decided[name] {
				continue
			}
			decided[name] = true
			if a.Version != store.VersionNone {
				chosen[name] = a.Version
			}
		}
	}
	names := make([]string, 0, len(chosen))
	for n := range chosen {
		names = append(names, n)
	}
	slices.Sort(names)

	var (
		mods     []manifest.Module
		records  []store.ManifestModule
		secrets  = map[string]secretUse{}
		blobRefs = map[string]manifest.BlobRef{}
		errs     []error
	)
	for _, name := range names {
		version := chosen[name]
		pm := d.parsedModule(moduleKey(name, version))
		if pm == nil {
			errs = append(errs, fmt.Errorf("module %s %s is assigned but not published", name, version))
			continue
		}
		mod, rec, err := d.compileModule(m, sv, levels, pm, secrets, blobRefs)
		if err != nil {
			errs = append(errs, fmt.Errorf("module %s %s: %w", name, version, err))
			continue
		}
		mods = append(mods, mod)
		records = append(records, rec)
	}
	if err := errors.Join(errs...); err != nil {
		return fail(err)
	}

	blobNames := make([]string, 0, len(blobRefs))
	for n := range blobRefs {
		blobNames = append(blobNames, n)
	}
	slices.Sort(blobNames)
	secretNames := make([]string, 0, len(secrets))
	for n := range secrets {
		secretNames = append(secretNames, n)
	}
	slices.Sort(secretNames)

	// The inputs: equal inputs, same manifest (but for the ciphertexts).
	h := sha256.New()
	fmt.Fprintf(h, "target %s %s\n", sv.ID, sv.UAI)
	for _, mod := range mods {
		fmt.Fprintf(h, "module %s %s %s\n", manifest.Digest(mod.ReleaseEnvelope), manifest.Digest(mod.Values), mod.SpecDigest)
		for _, name := range sortedKeys(mod.Sources) {
			fmt.Fprintf(h, "source %s %s\n", name, mod.Sources[name]) // plan shows them: a value moved to another level is a change
		}
	}
	for _, n := range blobNames {
		fmt.Fprintf(h, "blob %s %s %d\n", n, blobRefs[n].Digest, blobRefs[n].Size)
	}
	for _, n := range secretNames {
		fmt.Fprintf(h, "secret %s %s %s\n", n, secrets[n].source, sv.AgeRecipient)
	}
	inputs := "sha256:" + hex.EncodeToString(h.Sum(nil))

	prev, hasPrev := m.manifests[sv.ID]
	if hasPrev && prev.Inputs == inputs && !force && prev.Expires.Sub(now) > d.cfg.RenewBefore {
		b.unchanged = true
		return b
	}
	b.plan.Modules = diffModules(prev.Modules, records)
	if !sign {
		return b
	}

	// Secret generations: the same source keeps its generation, another
	// one takes the next; names no longer used keep theirs, so that one
	// coming back never goes below what the agent has seen.
	states := map[string]store.SecretState{}
	for _, st := range prev.Secrets {
		states[st.Name] = st
	}
	var refs []manifest.SecretRef
	if len(secretNames) > 0 {
		rcpt, err := age.ParseX25519Recipient(sv.AgeRecipient)
		if err != nil {
			return fail(fmt.Errorf("the server's age recipient: %w", err))
		}
		for _, n := range secretNames {
			st, ok := states[n]
			switch {
			case !ok:
				st = store.SecretState{Name: n, Generation: 1, Source: secrets[n].source}
			case st.Source != secrets[n].source:
				st.Generation++
				st.Source = secrets[n].source
			}
			states[n] = st
			sealed, err := manifest.Seal(rcpt, sv.ID, n, st.Generation, manifest.NewSecret([]byte(secrets[n].plain)))
			if err != nil {
				return fail(fmt.Errorf("seal secret %s: %w", n, err))
			}
			refs = append(refs, manifest.SecretRef{Name: n, Generation: st.Generation, Sealed: sealed})
		}
	}
	var stateList []store.SecretState
	for _, n := range sortedKeys(states) {
		stateList = append(stateList, states[n])
	}
	blobs := make([]manifest.BlobRef, 0, len(blobNames))
	digests := make([]string, 0, len(blobNames))
	for _, n := range blobNames {
		blobs = append(blobs, blobRefs[n])
		digests = append(digests, blobRefs[n].Digest)
	}
	// The modules' definitions travel apart too, by the digest their
	// releases sign: the agent may fetch them as blobs.
	for _, name := range names {
		if pm := d.parsedModule(moduleKey(name, chosen[name])); pm != nil && !slices.Contains(digests, pm.meta.Digest) {
			digests = append(digests, pm.meta.Digest)
		}
	}
	serial := prev.Serial + 1
	mf := &manifest.Manifest{
		Target:  manifest.Target{ServerID: sv.ID, UAI: sv.UAI},
		Serial:  serial,
		Issued:  now,
		Expires: now.Add(d.cfg.ManifestTTL),
		Modules: mods,
		Blobs:   blobs,
		Secrets: refs,
	}
	env, err := manifest.SignManifest(mf, d.signingKeys()...)
	if err != nil {
		return fail(err)
	}
	b.plan.Serial = serial
	b.record = store.Manifest{
		ServerID: sv.ID, Serial: serial, Digest: manifest.Digest(env), Envelope: env,
		Issued: now, Expires: mf.Expires, Inputs: inputs,
		Modules: records, Blobs: digests, Secrets: stateList, PrevSerial: prev.Serial,
	}
	return b
}

// compileModule resolves and compiles one module for sv.
func (d *Director) compileModule(m *model, sv store.Server, levels []namedLevel, pm *parsedModule,
	secrets map[string]secretUse, blobRefs map[string]manifest.BlobRef) (manifest.Module, store.ManifestModule, error) {
	dict := &pm.mod.Variables
	slevels := []schema.Level{m.inventoryLevel(sv, dict)}
	var errs []error
	for _, nl := range levels {
		lv := schema.Level{Name: nl.name, Values: map[string]any{}}
		for name, v := range m.vars[nl.level] {
			dv, ok := dict.Lookup(name)
			if !ok || Reserved(name) {
				continue
			}
			path := nl.name + "." + name
			switch {
			case v.Secret() && dv.Type != schema.TypeSecret:
				errs = append(errs, fmt.Errorf("%s: set as a secret, but the module's variable is of type %s", path, dv.Type))
			case v.Secret():
				lv.Values[name] = m.secrets[varKey(v.Level, name)]
			case dv.Type == schema.TypeSecret:
				errs = append(errs, fmt.Errorf("%s: the module's variable is a secret: set it with --secret", path))
			default:
				dec := json.NewDecoder(bytes.NewReader(v.Value))
				dec.UseNumber()
				var x any
				if err := dec.Decode(&x); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", path, err))
					continue
				}
				if x != nil {
					lv.Values[name] = x
				}
			}
		}
		slevels = append(slevels, lv)
	}
	if err := errors.Join(errs...); err != nil {
		return manifest.Module{}, store.ManifestModule{}, err
	}
	resolved, err := schema.Resolve(dict, slevels)
	if err != nil {
		return manifest.Module{}, store.ManifestModule{}, err
	}
	check, ok := d.cfg.Checkers[pm.mod.Kind]
	if !ok {
		return manifest.Module{}, store.ManifestModule{}, fmt.Errorf("kind %q is not known to this controller", pm.mod.Kind)
	}
	compiled, err := schema.Compile(pm.mod, resolved, check)
	if err != nil {
		return manifest.Module{}, store.ManifestModule{}, err
	}
	values, err := resolved.ValuesJSON()
	if err != nil {
		return manifest.Module{}, store.ManifestModule{}, err
	}
	for _, name := range compiled.Secrets {
		plain, ok := resolved.Secret(name)
		if !ok {
			continue
		}
		source := resolved[name].From
		for _, nl := range levels {
			if nl.name == source {
				source = nl.level.String() + "#" + strconv.FormatUint(m.vars[nl.level][name].Generation, 10)
				break
			}
		}
		secrets[name] = secretUse{plain: plain, source: source}
	}
	for name, v := range resolved {
		s, ok := v.Value.(string)
		if !ok || v.Secret || !strings.HasPrefix(s, "sha256:") {
			continue
		}
		if size, ok := m.blobs[s]; ok {
			blobRefs[name] = manifest.BlobRef{Name: name, Digest: s, Size: size}
		}
	}
	// No Definition: it travels apart, and was checked against its
	// release when it was published.
	sources := make(map[string]string, len(resolved))
	for name, v := range resolved {
		if v.From != "" {
			sources[name] = v.From
		}
	}
	return manifest.Module{
			ReleaseEnvelope: pm.meta.Release,
			Sources:         sources,
			Values:          values,
			Spec:            compiled.Spec,
			SpecDigest:      compiled.Digest,
		}, store.ManifestModule{
			Name: pm.meta.Name, Version: pm.meta.Version, SpecDigest: compiled.Digest,
		}, nil
}

// diffModules says what happens to each module between two manifests.
func diffModules(from, to []store.ManifestModule) []api.PlanModule {
	old := map[string]store.ManifestModule{}
	for _, m := range from {
		old[m.Name] = m
	}
	var out []api.PlanModule
	seen := map[string]bool{}
	for _, m := range to {
		seen[m.Name] = true
		o, ok := old[m.Name]
		switch {
		case !ok:
			out = append(out, api.PlanModule{Module: m.Name, Change: api.PlanAdd, ToVersion: m.Version, ToSpec: m.SpecDigest})
		case o.Version != m.Version || o.SpecDigest != m.SpecDigest:
			out = append(out, api.PlanModule{Module: m.Name, Change: api.PlanUpdate, FromVersion: o.Version, ToVersion: m.Version, FromSpec: o.SpecDigest, ToSpec: m.SpecDigest})
		}
	}
	for _, m := range from {
		if !seen[m.Name] {
			out = append(out, api.PlanModule{Module: m.Name, Change: api.PlanRemove, FromVersion: m.Version, FromSpec: m.SpecDigest})
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
