package fleetsim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"time"

	"filippo.io/age"
	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/modules/manifest"
)

// AgentVersion is the version the simulated agents claim.
const AgentVersion = "1.3.0"

// agent is one simulated school server: its identity from enrollment and
// the state its real counterpart keeps on disk (the rollback floor, the
// ETag), in memory.
type agent struct {
	f      *Fleet
	id     string
	uai    string
	client *api.Client
	hints  api.PollHints
	rnd    *mrand.Rand

	state  manifest.State // the last-known-good's: what Verify must not go below
	etag   string
	marker string // the marker of the last manifest whose report was acknowledged
	// fetched are the module definitions this agent fetched (each agent
	// fetches its own once, as the real one does; the bytes are shared).
	fetched []string
}

// enroll enrolls a server with its token as `alize enroll` does: fresh
// ECDSA and age keys, the controller trusted through the token's CA hash,
// then a mutual TLS client with the certificate it got.
func (f *Fleet) enroll(ctx context.Context, i int, e Enrollment) (*agent, error) {
	tok, err := api.ParseToken(e.Token)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	ageID, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: e.ServerID}}, key)
	if err != nil {
		return nil, err
	}
	ehc := api.NewHTTPClient(api.EnrollTLS(tok.CAHash))
	defer ehc.CloseIdleConnections()
	ec, err := api.NewClient(f.url, ehc, "alize/"+AgentVersion)
	if err != nil {
		return nil, err
	}
	resp, err := ec.Enroll(ctx, api.EnrollRequest{
		Token:        e.Token,
		CSR:          string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})),
		AgeRecipient: ageID.Recipient().String(),
		Facts:        api.Facts{Hostname: e.ServerID, AgentVersion: AgentVersion, OS: "Debian GNU/Linux 12 (bookworm)", Arch: "amd64"},
	})
	if err != nil {
		return nil, fmt.Errorf("enroll %s: %w", e.ServerID, err)
	}
	if resp.ServerID != e.ServerID || resp.UAI != e.UAI {
		return nil, fmt.Errorf("enroll %s: the controller named it %s of %s", e.ServerID, resp.ServerID, resp.UAI)
	}
	pool, err := f.pin(resp)
	if err != nil {
		return nil, fmt.Errorf("enroll %s: %w", e.ServerID, err)
	}
	block, _ := pem.Decode([]byte(resp.Certificate))
	if block == nil {
		return nil, fmt.Errorf("enroll %s: no certificate in the answer", e.ServerID)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("enroll %s: %w", e.ServerID, err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: key, Leaf: leaf}
	hc := api.NewHTTPClient(api.AgentTLS(pool, func() (*tls.Certificate, error) { return cert, nil }, api.NewSessionCache()))
	client, err := api.NewClient(f.url, hc, "alize/"+AgentVersion)
	if err != nil {
		return nil, err
	}
	return &agent{f: f, id: resp.ServerID, uai: resp.UAI, client: client, hints: resp.Poll,
		rnd: mrand.New(mrand.NewPCG(f.randSeed, uint64(i)))}, nil
}

// pin takes the root and CA an enrollment answer carries. Every agent of
// one controller gets the same bytes: the first agent pins them and the
// others share its *manifest.Trust (immutable) and CA pool, after
// checking that their bytes are the same. A real agent pins its own copy;
// sharing changes no check, only the simulation's memory.
func (f *Fleet) pin(resp api.EnrollResponse) (*x509.CertPool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.trust == nil {
		trust, err := manifest.PinRoot(resp.Root)
		if err != nil {
			return nil, fmt.Errorf("pin root: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(resp.CA)) {
			return nil, errors.New("no CA in the answer")
		}
		f.trust, f.rootBytes, f.caPool, f.caPEM, f.hints = trust, bytes.Clone(resp.Root), pool, resp.CA, resp.Poll
	}
	if !bytes.Equal(resp.Root, f.rootBytes) || resp.CA != f.caPEM {
		return nil, errors.New("the controller gave this agent another root or CA than the others")
	}
	return f.caPool, nil
}

// verify is the agent's verification of a manifest envelope, with its own
// server id and UAI, the pinned root, and its rollback floor. Module
// definitions travel apart: the ones the verifier lacks are fetched by
// digest from the blob endpoint, once per agent, as the real agent does.
// A definition that cannot be fetched now is an errFetch: not a refusal,
// the manifest is taken again at the next poll.
func (a *agent) verify(ctx context.Context, envelope []byte) (*manifest.Manifest, manifest.State, error) {
	v := &manifest.Verifier{
		Trust:        a.f.trust,
		ServerID:     a.id,
		UAI:          a.uai,
		AgentVersion: a.f.version,
		Compile:      a.f.compiler.CompileBytes,
		Now:          time.Now,
		Cache:        a.f.cache,
		Definitions: func(digest string) []byte {
			if !slices.Contains(a.fetched, digest) {
				return nil
			}
			a.f.mu.Lock()
			defer a.f.mu.Unlock()
			return a.f.definitions[digest]
		},
	}
	m, st, err := v.Verify(envelope, a.state)
	missing := manifest.MissingDefinitions(err)
	if missing == nil {
		return m, st, err
	}
	for _, digest := range missing {
		var b bytes.Buffer
		if err := a.client.Blob(ctx, digest, manifest.MaxDefinitionSize, &b); err != nil {
			return nil, manifest.State{}, &errFetch{err}
		}
		a.f.mu.Lock()
		a.f.definitions[digest] = b.Bytes()
		a.f.mu.Unlock()
		a.fetched = append(a.fetched, digest)
	}
	return v.Verify(envelope, a.state)
}

// errFetch is a module definition the agent could not fetch now.
type errFetch struct{ err error }

func (e *errFetch) Error() string { return "fetch a module definition: " + e.err.Error() }
func (e *errFetch) Unwrap() error { return e.err }

// run is the agent's daemon loop, as agent/internal/daemon's: the first
// poll at a random moment of the boot delay, then a long poll (with the
// ETag it has) whenever the schedule says; a new manifest is verified,
// applied (nothing to do) and reported.
func (a *agent) run(ctx context.Context) {
	sched := api.NewSchedule(a.id, a.hints, a.rnd)
	next := sched.First(time.Now())
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		wait := sched.Wait()
		start := time.Now()
		ans, err := a.client.Manifest(ctx, a.etag, wait)
		at := time.Now()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && api.IsCode(err, api.CodeNotFound):
			next = sched.Success(at, ans.NextPoll)
		case err != nil:
			a.f.count(&a.f.pollErrors, err)
			next = sched.Failure(at, api.RetryAfter(err))
		case ans.NotModified:
			a.f.poll304(at.Sub(start), wait)
			next = sched.Success(at, ans.NextPoll)
		default:
			a.take(ctx, ans, at)
			next = sched.Success(at, ans.NextPoll)
		}
	}
}

// take verifies a new manifest, applies it (a no-op) and reports; a
// refused one is reported as refused, and its ETag kept so that the
// controller does not send it again.
func (a *agent) take(ctx context.Context, ans api.ManifestAnswer, received time.Time) {
	m, st, err := a.verify(ctx, ans.Envelope)
	if errors.As(err, new(*errFetch)) {
		// Not taken now, not refused: the same manifest comes again.
		a.f.count(&a.f.pollErrors, err)
		return
	}
	rep := api.Report{
		Started: received.UTC(), ManifestDigest: manifest.Digest(ans.Envelope),
		Facts: api.Facts{Hostname: a.id, AgentVersion: AgentVersion},
	}
	marker := ""
	if err != nil {
		a.f.count(&a.f.refusals, err)
		rep.Outcome = api.OutcomeRefused
		rep.Refusal = &api.Refusal{Code: manifest.Code(err), Message: err.Error()}
		rep.ID = fmt.Sprintf("%s-refused-%s", a.id, rep.ManifestDigest)
	} else {
		a.state = st
		rep.Serial = m.Serial
		rep.ID = fmt.Sprintf("%s-%d", a.id, m.Serial)
		rep.Outcome = api.OutcomeCorrected
		for _, mod := range m.Modules {
			rep.Kinds = append(rep.Kinds, api.KindReport{Kind: mod.Release.Kind, Module: mod.Release.Name, Version: mod.Release.Version, Status: api.KindApplied})
			// The no-op apply: read what the spec wants (the marker is
			// the share's comment), change nothing.
			var spec struct {
				Shares []struct {
					Comment string `json:"comment"`
				} `json:"shares"`
			}
			if json.Unmarshal(mod.Spec, &spec) == nil && len(spec.Shares) > 0 {
				marker = spec.Shares[0].Comment
			}
		}
	}
	a.etag = ans.ETag
	rep.Finished = time.Now().UTC()
	body, err := json.Marshal(rep)
	if err != nil {
		a.f.count(&a.f.reportErrors, err)
		return
	}
	// Reports go out until acknowledged, as the agent's outbox sends
	// them: retried with jitter, idempotent by id.
	for attempt := 0; ; attempt++ {
		ack, err := a.client.Report(ctx, body)
		if err == nil && ack.ID == rep.ID {
			break
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = fmt.Errorf("acknowledged %q, sent %q", ack.ID, rep.ID)
		}
		a.f.count(&a.f.reportErrors, err)
		backoff := min(time.Second<<min(attempt, 5), 30*time.Second)
		select {
		case <-ctx.Done():
			return
		case <-time.After(api.RetryAfter(err) + time.Duration(a.rnd.Int64N(int64(backoff)))):
		}
	}
	if marker != "" && marker != a.marker {
		a.marker = marker
		a.f.acked(marker, time.Now())
	}
}
