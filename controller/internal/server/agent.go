package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"filippo.io/age"
	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/controller/internal/ca"
	"github.com/alize-eple/alize/controller/internal/director"
	"github.com/alize-eple/alize/controller/internal/store"
	"github.com/alize-eple/alize/modules/manifest"
)

func (s *srv) healthz(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
	return nil
}

func (s *srv) readyz(w http.ResponseWriter, r *http.Request) error {
	if s.draining() {
		return unavailable("shutting down")
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.Store.Ping(ctx); err != nil {
		return unavailable("the store does not answer")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ready\n"))
	return nil
}

func (s *srv) metrics(w http.ResponseWriter, r *http.Request) error {
	s.Metrics.handler.ServeHTTP(w, r)
	return nil
}

// unavailable is a 503 with a retry hint, spread so that a fleet does not
// come back all at once.
func unavailable(why string) *api.Error {
	retry := 5 + rand.IntN(25)
	return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, RetryAfter: retry,
		Message: fmt.Sprintf("the controller is unavailable (%s): retry in %d seconds", why, retry)}
}

func invalidToken(format string, args ...any) *api.Error {
	return apiError(http.StatusUnauthorized, api.CodeInvalidToken, format, args...)
}

func (s *srv) hints() api.PollHints {
	return api.PollHints{
		IntervalSeconds:  int(s.Settings.PollInterval / time.Second),
		BootDelaySeconds: int(s.Settings.BootDelay / time.Second),
		WaitSeconds:      int(s.Settings.LongPoll / time.Second),
	}
}

// maxFact bounds each fact an agent sends.
const maxFact = 256

func checkFacts(f api.Facts) error {
	for name, v := range map[string]string{"hostname": f.Hostname, "agent_version": f.AgentVersion, "os": f.OS, "kernel": f.Kernel, "arch": f.Arch} {
		if len(v) > maxFact || strings.ContainsFunc(v, unicode.IsControl) {
			return badRequest("facts.%s: at most %d printable characters", name, maxFact)
		}
	}
	return nil
}

// notServerIDChar reports a character a server id may not hold.
func notServerIDChar(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_')
}

func validServerID(id string) bool {
	return len(id) >= 1 && len(id) <= manifest.MaxNameLength && !strings.ContainsFunc(id, notServerIDChar) && id[0] != '-' && id[0] != '.'
}

func (s *srv) enroll(w http.ResponseWriter, r *http.Request) error {
	if s.draining() {
		return unavailable("shutting down")
	}
	ctx := r.Context()
	var req api.EnrollRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	tok, err := api.ParseToken(req.Token)
	if err != nil {
		return invalidToken("%v", err)
	}
	if subtle.ConstantTimeCompare([]byte(tok.CAHash), []byte(s.CA.Hash())) != 1 {
		return invalidToken("this token was made for another controller: its CA hash is not this controller's (%s); check the controller address", s.CA.Hash())
	}
	t, err := s.Store.Token(ctx, tok.ID)
	if errors.Is(err, store.ErrNotFound) {
		return invalidToken("unknown enrollment token: ask the operator for a new one")
	}
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(t.SecretHash, hashSecret(tok.Secret)) != 1 {
		return invalidToken("unknown enrollment token: ask the operator for a new one")
	}
	now := s.now()
	if !t.Used.IsZero() {
		return invalidToken("this enrollment token was already used: ask the operator for a new one")
	}
	if !now.Before(t.Expires) {
		return invalidToken("this enrollment token expired at %s: ask the operator for a new one", t.Expires.Format(time.RFC3339))
	}
	csr, err := ca.ParseCSR(req.CSR)
	if err != nil {
		return badRequest("%v", err)
	}
	if _, err := age.ParseX25519Recipient(req.AgeRecipient); err != nil {
		return badRequest("age_recipient: not an age X25519 recipient (age1…)")
	}
	if err := checkFacts(req.Facts); err != nil {
		return err
	}
	est, err := s.Store.Establishment(ctx, t.UAI)
	if err != nil {
		return err
	}
	id, replace := t.ServerID, false
	if id == "" {
		id = strings.ToLower(t.UAI) + "-" + randomWord(5)
	} else if existing, err := s.Store.Server(ctx, id); err == nil {
		if existing.UAI != t.UAI {
			return apiError(http.StatusConflict, api.CodeConflict, "server %s belongs to another establishment", id)
		}
		replace = true
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	spki, err := ca.SPKI(csr.PublicKey)
	if err != nil {
		return badRequest("csr: %v", err)
	}
	issued, err := s.CA.IssueClient(csr.PublicKey, id, now, s.Settings.ClientCertLifetime)
	if err != nil {
		return err
	}
	detail, _ := json.Marshal(map[string]string{"uai": t.UAI, "hostname": req.Facts.Hostname, "certificate": issued.Serial})
	err = s.Store.Enroll(ctx, store.Enrollment{
		TokenID: t.ID, Time: now, Replace: replace,
		Server: store.Server{ID: id, UAI: t.UAI, Role: t.Role, Facts: req.Facts, AgeRecipient: req.AgeRecipient,
			PublicKey: spki, PollInterval: int(s.Settings.PollInterval / time.Second), Enrolled: now},
		Certificate: store.Certificate{Serial: issued.Serial, ServerID: id, NotBefore: issued.NotBefore, NotAfter: issued.NotAfter},
		Audit: store.AuditEntry{Time: now, Actor: "token:" + t.ID, Action: "server.enroll", Target: "server:" + id,
			After: manifest.Digest(spki), Detail: detail},
	})
	switch {
	case errors.Is(err, store.ErrTokenUsed):
		return invalidToken("this enrollment token was already used: ask the operator for a new one")
	case errors.Is(err, store.ErrTokenExpired):
		return invalidToken("this enrollment token expired: ask the operator for a new one")
	case errors.Is(err, store.ErrConflict):
		return apiError(http.StatusConflict, api.CodeConflict, "server %s exists already", id)
	case err != nil:
		return err
	}
	s.Metrics.certificates.WithLabelValues("enroll").Inc()
	s.Log.Info("server enrolled", "server", id, "uai", t.UAI, "replace", replace)
	if replace {
		// Its earlier certificates are revoked: on every replica.
		if err := s.Store.Commit(ctx, &store.Batch{Events: []store.Event{{Kind: store.EventRevoked, IDs: []string{id}}}}); err != nil {
			s.Log.Error("revocation notice failed", "server", id, "err", err)
		}
		if err := s.Deny.Load(ctx, s.Store); err != nil {
			s.Log.Error("deny-list reload failed", "err", err)
		}
	}
	if _, err := s.Director.Apply(ctx, director.Enrolled{ServerID: id}, "controller", false); err != nil {
		s.Log.Error("first manifest failed", "server", id, "err", err)
	}
	writeJSON(w, http.StatusOK, api.EnrollResponse{
		ServerID: id, UAI: t.UAI, Academy: est.Academy,
		Certificate: string(issued.PEM), CA: string(s.CA.PEM()),
		Root: json.RawMessage(s.Roots.Latest()), Poll: s.hints(),
	})
	return nil
}

// etagMatches reports whether an If-None-Match header names etag.
func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || strings.Trim(t, `"`) == etag {
			return true
		}
	}
	return false
}

func (s *srv) manifest(w http.ResponseWriter, r *http.Request, id string) error {
	ctx := r.Context()
	s.seen.mark(id, s.now())
	var wait time.Duration
	if q := r.URL.Query().Get("wait"); q != "" {
		d, err := time.ParseDuration(q)
		if err != nil || d < 0 {
			return badRequest("wait: a duration such as 30s")
		}
		wait = min(d, api.MaxWait)
	}
	inm := r.Header.Get("If-None-Match")
	longPoll := wait > 0
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	held := false
	var heldFor time.Duration // time spent waiting, not working
	start := time.Now()
	defer func() {
		if held {
			s.Hub.hold(-1)
		}
		s.Metrics.answers.Observe((time.Since(start) - heldFor).Seconds())
	}()
	for {
		var woken <-chan struct{}
		if wait > 0 {
			woken = s.Hub.watch(id) // before reading: a change after the read wakes us
		}
		meta, err := s.Hub.meta(ctx, s.Store, id)
		if err != nil {
			return err
		}
		if meta.found && !etagMatches(inm, meta.etag) {
			if env := s.Hub.take(id, meta.etag); env != nil {
				return s.writeManifest(w, r, meta.etag, env, longPoll)
			}
			return s.serveManifest(w, r, id, longPoll)
		}
		if wait == 0 {
			if !meta.found {
				return notFound("no manifest for this server yet")
			}
			w.Header().Set("ETag", `"`+meta.etag+`"`)
			w.Header().Set(api.HeaderNextPoll, strconv.Itoa(s.nextPollAfter(longPoll)))
			w.WriteHeader(http.StatusNotModified)
			return nil
		}
		if s.draining() {
			return unavailable("shutting down")
		}
		if !held {
			s.Hub.hold(1)
			held = true
		}
		t0 := time.Now()
		select {
		case <-woken:
		case <-timeout:
			wait = 0 // answer what there is
		case <-ctx.Done():
		case <-s.Drain: // the next turn answers with a retry hint
		}
		heldFor += time.Since(t0)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// nextPoll is the Alize-Next-Poll hint, in seconds.
func (s *srv) nextPoll() int { return int(s.Settings.PollInterval / time.Second) }

// nextPollAfter is the hint after a manifest request. An agent that
// long-polls comes back at once (1 s): it then waits in a long poll nearly
// all the time, and a push reaches it in a second, not a poll interval
// later. Its holds end at times as spread as its polls began.
func (s *srv) nextPollAfter(longPoll bool) int {
	if longPoll {
		return 1
	}
	return s.nextPoll()
}

func (s *srv) serveManifest(w http.ResponseWriter, r *http.Request, id string, longPoll bool) error {
	mf, err := s.Store.Manifest(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("no manifest for this server yet")
	}
	if err != nil {
		return err
	}
	return s.writeManifest(w, r, mf.Digest, mf.Envelope, longPoll)
}

func (s *srv) writeManifest(w http.ResponseWriter, r *http.Request, etag string, env []byte, longPoll bool) error {
	w.Header().Set("ETag", `"`+etag+`"`)
	w.Header().Set(api.HeaderNextPoll, strconv.Itoa(s.nextPollAfter(longPoll)))
	writeBody(w, r, api.ContentTypeEnvelope, env)
	return nil
}

// gzipWriters keeps gzip writers between answers: a new one allocates
// and clears about 1 MB of compressor state, which made gzip and the
// garbage collector most of the controller's CPU when a fleet-level
// change sent 17,000 manifests (testenv/fleetsim).
var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return zw
}}

// writeBody writes a 200 body, gzipped when the client accepts it and it
// is worth it.
func writeBody(w http.ResponseWriter, r *http.Request, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Add("Vary", "Accept-Encoding")
	if len(body) < 1024 || !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
		return
	}
	var b bytes.Buffer
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(&b)
	zw.Write(body)
	zw.Close()
	gzipWriters.Put(zw)
	w.Header().Set("Content-Encoding", "gzip")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.Write(b.Bytes())
}

func (s *srv) blob(w http.ResponseWriter, r *http.Request, id string) error {
	digest := r.PathValue("digest")
	meta, err := s.Hub.meta(r.Context(), s.Store, id)
	if err != nil {
		return err
	}
	if !slices.Contains(meta.blobs, digest) {
		return notFound("no blob %.80q in this server's manifest", digest)
	}
	b, err := s.Store.Blob(r.Context(), digest)
	if err != nil {
		return err
	}
	writeBody(w, r, api.ContentTypeBlob, b.Data)
	return nil
}

var outcomes = []api.Outcome{api.OutcomeCompliant, api.OutcomeCorrected, api.OutcomeFailing, api.OutcomeRefused, api.OutcomeReverted, api.OutcomeDrift}

// maxReportID bounds a report's id.
const maxReportID = 128

func (s *srv) report(w http.ResponseWriter, r *http.Request, id string) error {
	var rep api.Report
	if err := decode(w, r, &rep); err != nil {
		return err
	}
	switch {
	case rep.ID == "" || len(rep.ID) > maxReportID || strings.ContainsFunc(rep.ID, func(r rune) bool { return r <= ' ' || r > '~' }):
		return badRequest("id: 1 to %d printable ASCII characters", maxReportID)
	case !slices.Contains(outcomes, rep.Outcome):
		return badRequest("outcome: %.40q is not one of compliant, corrected, failing, refused, reverted, drift", rep.Outcome)
	case rep.Finished.IsZero():
		return badRequest("finished: missing")
	case rep.Outcome == api.OutcomeRefused && rep.Refusal == nil:
		return badRequest("refusal: a refused manifest's report says why")
	}
	if err := checkFacts(rep.Facts); err != nil {
		return err
	}
	body, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	refusal := ""
	if rep.Refusal != nil {
		refusal = rep.Refusal.Code
		if len(refusal) > 64 {
			refusal = refusal[:64]
		}
	}
	now := s.now()
	dup, err := s.Store.AddReport(r.Context(), store.Report{
		ServerID: id, ID: rep.ID, Serial: rep.Serial, Outcome: string(rep.Outcome), Refusal: refusal,
		Started: rep.Started, Finished: rep.Finished, Received: now, Body: body, Facts: rep.Facts,
		Applied: rep.Outcome == api.OutcomeCompliant || rep.Outcome == api.OutcomeCorrected,
	}, s.Settings.ReportsKept)
	if err != nil {
		return err
	}
	s.seen.mark(id, now)
	if !dup {
		s.Metrics.reports.WithLabelValues(string(rep.Outcome)).Inc()
	}
	writeJSON(w, http.StatusOK, api.ReportAck{ID: rep.ID, Duplicate: dup})
	return nil
}

func (s *srv) root(w http.ResponseWriter, r *http.Request, _ string) error {
	v, err := strconv.Atoi(r.PathValue("version"))
	if err != nil {
		return badRequest("root version: a number")
	}
	env, ok := s.Roots.Envelope(v)
	if !ok {
		return notFound("no root version %d", v)
	}
	writeBody(w, r, api.ContentTypeEnvelope, env)
	return nil
}

func (s *srv) renew(w http.ResponseWriter, r *http.Request, id string) error {
	var req api.RenewRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.ServerID != "" || req.Proof != nil {
		return badRequest("server_id and proof are for %s only", api.PathRenewExpired)
	}
	sv, err := s.Store.Server(r.Context(), id)
	if err != nil {
		return err
	}
	return s.issue(w, r, sv, req.CSR, "renew")
}

// issue issues a new certificate for a server's registered key.
func (s *srv) issue(w http.ResponseWriter, r *http.Request, sv store.Server, csrText, how string) error {
	csr, err := ca.ParseCSR(csrText)
	if err != nil {
		return badRequest("%v", err)
	}
	spki, err := ca.SPKI(csr.PublicKey)
	if err != nil || !bytes.Equal(spki, sv.PublicKey) {
		return apiError(http.StatusForbidden, api.CodeForbidden, "the CSR is not for this server's registered key: to change keys, enroll again with a new token")
	}
	issued, err := s.CA.IssueClient(csr.PublicKey, sv.ID, s.now(), s.Settings.ClientCertLifetime)
	if err != nil {
		return err
	}
	if err := s.Store.AddCertificate(r.Context(), store.Certificate{Serial: issued.Serial, ServerID: sv.ID, NotBefore: issued.NotBefore, NotAfter: issued.NotAfter}); err != nil {
		return err
	}
	s.Metrics.certificates.WithLabelValues(how).Inc()
	s.Log.Info("certificate issued", "server", sv.ID, "how", how, "not_after", issued.NotAfter)
	writeJSON(w, http.StatusOK, api.RenewResponse{Certificate: string(issued.PEM)})
	return nil
}

func (s *srv) renewExpired(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var req api.RenewRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.ServerID == "" || req.Proof == nil {
		return badRequest("server_id and proof are required")
	}
	refused := func(format string, args ...any) error {
		return apiError(http.StatusUnauthorized, api.CodeUnauthorized, format, args...)
	}
	sv, err := s.Store.Server(ctx, req.ServerID)
	if errors.Is(err, store.ErrNotFound) {
		return refused("unknown server or bad proof")
	}
	if err != nil {
		return err
	}
	if !sv.Revoked.IsZero() {
		return apiError(http.StatusForbidden, api.CodeRevoked, "this server is revoked: enroll it again with a new token")
	}
	now := s.now()
	if d := now.Sub(req.Proof.Time); d > s.Settings.ProofSkew || d < -s.Settings.ProofSkew {
		return refused("the proof's time %s is more than %s from the controller's clock %s: set the server's clock (NTP)",
			req.Proof.Time.UTC().Format(time.RFC3339), s.Settings.ProofSkew, now.Format(time.RFC3339))
	}
	if err := ca.VerifyProof(sv.PublicKey, api.ProofMessage(req.ServerID, req.CSR, req.Proof.Time), req.Proof.Signature); err != nil {
		return refused("unknown server or bad proof")
	}
	certs, err := s.Store.Certificates(ctx, sv.ID)
	if err != nil {
		return err
	}
	var last time.Time
	for _, c := range certs {
		if c.Revoked.IsZero() && c.NotAfter.After(last) {
			last = c.NotAfter
		}
	}
	if last.IsZero() || now.After(last.Add(s.Settings.RenewGrace)) {
		return apiError(http.StatusForbidden, api.CodeForbidden, "the last certificate ended %s, beyond the grace period of %d days: enroll again with a new token",
			last.Format(time.DateOnly), int(s.Settings.RenewGrace.Hours()/24))
	}
	if err := s.Store.UseProof(ctx, sv.ID, req.Proof.Time); errors.Is(err, store.ErrConflict) {
		return refused("this proof was used already: make a new one")
	} else if err != nil {
		return err
	}
	return s.issue(w, r, sv, req.CSR, "renew_expired")
}
