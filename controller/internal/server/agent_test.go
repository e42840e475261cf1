package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/controller/internal/ctltest"
	"github.com/alize-eple/alize/controller/internal/store"
	"github.com/alize-eple/alize/modules/manifest"
)

func noteSpec(t *testing.T, a *ctltest.Agent) ctltest.NoteSpec {
	t.Helper()
	if a.Manifest == nil || len(a.Manifest.Modules) != 1 {
		t.Fatalf("manifest = %+v, want one module", a.Manifest)
	}
	var s ctltest.NoteSpec
	if err := json.Unmarshal(a.Manifest.Modules[0].Spec, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func report(a *ctltest.Agent, id string, outcome api.Outcome) api.Report {
	now := a.Now()
	r := api.Report{ID: id, Serial: a.State.Serial, Started: now.Add(-time.Second), Finished: now, Outcome: outcome, Facts: api.Facts{Hostname: "amon"},
		Kinds: []api.KindReport{{Kind: "note", Module: "motd", Version: "1.0.0", Status: api.KindApplied}}}
	if outcome == api.OutcomeRefused {
		r.Refusal = &api.Refusal{Code: "rollback", Message: "serial not above the last applied one"}
	}
	return r
}

// An agent enrolls, pulls, reports; an operator changes a variable and
// the agent's long poll brings the new manifest; states, indicators and
// metrics follow.
func TestAgentLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	e.publish("1.0.0", 1)
	e.setVar("fleet", "message", "Bonjour")
	e.do(e.admin, "POST", api.PathAdminAssignments, api.AssignRequest{Level: "academy:versailles", Module: "motd", Version: "1.0.0"}, nil)

	a := e.agent(lyceeUAI, "amon-pissarro")
	if a.ID != "amon-pissarro" || a.UAI != lyceeUAI || a.Poll.IntervalSeconds != 300 {
		t.Errorf("enrolled as %s of %s, poll %+v", a.ID, a.UAI, a.Poll)
	}
	if cert := a.Cert(); cert.Subject.CommonName != "amon-pissarro" || cert.NotAfter.Sub(cert.NotBefore) > 8*24*time.Hour {
		t.Errorf("certificate: %s, %v to %v", cert.Subject.CommonName, cert.NotBefore, cert.NotAfter)
	}
	if changed, err := a.Pull(ctx, 0); err != nil || !changed {
		t.Fatalf("Pull() = %v, %v", changed, err)
	}
	if s := noteSpec(t, a); s.Message != "Bonjour" || s.UAI != lyceeUAI {
		t.Errorf("spec = %+v", s)
	}
	if d := e.server(a.ID); d.State != api.StatePending || d.Serial != a.State.Serial {
		t.Errorf("before its report: %s (%s), serial %d", d.State, d.Reason, d.Serial)
	}
	// Unchanged: 304, however often.
	if changed, err := a.Pull(ctx, 0); err != nil || changed {
		t.Errorf("second Pull() = %v, %v; want 304", changed, err)
	}
	ack, err := a.Report(ctx, report(a, "run-1", api.OutcomeCorrected))
	if err != nil || ack.Duplicate || ack.ID != "run-1" {
		t.Fatalf("Report() = %+v, %v", ack, err)
	}
	if ack, err := a.Report(ctx, report(a, "run-1", api.OutcomeCorrected)); err != nil || !ack.Duplicate {
		t.Errorf("Report(again) = %+v, %v; want a duplicate", ack, err)
	}
	if d := e.server(a.ID); d.State != api.StateCorrected || d.AppliedSerial != a.State.Serial {
		t.Errorf("after its report: %s (%s), applied %d", d.State, d.Reason, d.AppliedSerial)
	}

	// A long poll returns as soon as an operator's change signs a new manifest.
	got := make(chan error, 1)
	start := time.Now()
	go func() {
		changed, err := a.Pull(ctx, 30*time.Second)
		if err == nil && !changed {
			err = errors.New("long poll ended without a new manifest")
		}
		got <- err
	}()
	waitFor(t, "the long poll to be held", func() bool { return e.ctl.srv.Hub.Holding() == 1 })
	p := e.setVar("establishment:"+lyceeUAI, "message", "Salut")
	if p.Changed != 1 || p.Servers[0].ServerID != a.ID {
		t.Errorf("plan = %+v", p)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the long poll took %v", took)
	}
	if s := noteSpec(t, a); s.Message != "Salut" {
		t.Errorf("message = %q after the change", s.Message)
	}
	if _, err := a.Report(ctx, report(a, "run-2", api.OutcomeCompliant)); err != nil {
		t.Fatal(err)
	}

	// What operators read.
	var servers []api.ServerInfo
	e.do(e.admin, "GET", api.PathAdminServers+"?academy=versailles", nil, &servers)
	if len(servers) != 1 || servers[0].State != api.StateCompliant {
		t.Errorf("servers = %+v", servers)
	}
	var reports []api.ReportInfo
	e.do(e.admin, "GET", api.PathAdminReports+"?server="+a.ID, nil, &reports)
	if len(reports) != 2 || reports[0].ID != "run-2" || reports[0].Kinds[0].Module != "motd" {
		t.Errorf("reports = %+v", reports)
	}
	var ind api.Indicators
	e.do(e.admin, "GET", api.PathAdminIndicators, nil, &ind)
	if len(ind.Rows) == 0 || ind.Rows[0].Key != "all" || ind.Rows[0].CompliancePercent != 100 {
		t.Errorf("indicators = %+v", ind)
	}
	var csv []byte
	e.do(e.admin, "GET", api.PathAdminIndicators+"?format=csv", nil, &csv)
	if !bytes.Contains(csv, []byte("module,motd@1.0.0,1,1,")) {
		t.Errorf("indicators CSV:\n%s", csv)
	}
	metrics := e.get(api.PathMetrics)
	for _, want := range []string{`alize_servers{by="academy",key="versailles",state="compliant"} 1`, `alize_http_requests_total{code="200",route="POST /v1/reports"} 3`,
		`alize_manifests_signed_total`, `alize_compliance_ratio{by="fleet",key="all"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if got := e.get(api.PathHealthz); got != "ok\n" {
		t.Errorf("/healthz = %q", got)
	}
	if got := e.get(api.PathReadyz); got != "ready\n" {
		t.Errorf("/readyz = %q", got)
	}
	// The root the agent walks to, by version.
	if b, err := a.Get(ctx, api.PathRoots+"1"); err != nil || !bytes.Equal(b, a.Trust.Envelope()) {
		t.Errorf("GET root 1 = %v", err)
	}
	if _, err := a.Get(ctx, api.PathRoots+"2"); ctltest.CodeOf(err) != api.CodeNotFound {
		t.Errorf("GET root 2 = %v, want not_found", err)
	}
	// Every change is in the audit log, with its actor.
	var audit []api.AuditEntry
	e.do(e.admin, "GET", api.PathAdminAudit+"?target=establishment:"+lyceeUAI, nil, &audit)
	if len(audit) != 3 || audit[0].Action != "var.set" || audit[0].Actor != "operator:admin" || audit[0].After == "" || audit[2].Action != "establishment.put" {
		t.Errorf("audit = %+v", audit)
	}
}

func (e *env) get(path string) string {
	e.t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.pool()}}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(e.url + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRenewals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{settings: func(s *Settings) { s.ClientCertLifetime = 72 * time.Hour; s.RenewGrace = 90 * 24 * time.Hour }})
	ctx := context.Background()
	a := e.agent(collegeUAI, "")
	first := a.Cert()

	if err := a.Renew(ctx, a.CSR()); err != nil {
		t.Fatalf("Renew() = %v", err)
	}
	if a.Cert().SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Error("Renew() gave the same certificate")
	}
	if _, err := a.Pull(ctx, 0); err != nil {
		t.Fatalf("Pull() with the renewed certificate: %v", err)
	}
	// Another key cannot be slipped in by a renewal.
	other := ctltest.NewAgent(e.url)
	if err := a.Renew(ctx, other.CSR()); ctltest.CodeOf(err) != api.CodeForbidden {
		t.Errorf("Renew(another key) = %v, want forbidden", err)
	}
	if err := a.Renew(ctx, "not a csr"); ctltest.CodeOf(err) != api.CodeBadRequest {
		t.Errorf("Renew(garbage) = %v, want bad_request", err)
	}

	// The summer: the certificate ended weeks ago.
	summer := a.Cert().NotAfter.Add(60 * 24 * time.Hour)
	e.clock.Set(summer)
	csr := a.CSR()
	for _, tc := range []struct {
		name string
		req  api.RenewRequest
		code string
	}{
		{"no proof", api.RenewRequest{CSR: csr, ServerID: a.ID}, api.CodeBadRequest},
		{"proof from a clock far off", api.RenewRequest{CSR: csr, ServerID: a.ID, Proof: a.Proof(csr, summer.Add(-time.Hour))}, api.CodeUnauthorized},
		{"proof by another key", api.RenewRequest{CSR: csr, ServerID: a.ID, Proof: other.Proof(csr, summer)}, api.CodeUnauthorized},
		{"proof for another CSR", api.RenewRequest{CSR: csr, ServerID: a.ID, Proof: a.Proof(a.CSR(), summer)}, api.CodeUnauthorized},
		{"unknown server", api.RenewRequest{CSR: csr, ServerID: "nobody", Proof: a.Proof(csr, summer)}, api.CodeUnauthorized},
	} {
		if err := a.RenewExpired(ctx, tc.req); ctltest.CodeOf(err) != tc.code {
			t.Errorf("RenewExpired(%s) = %v, want %s", tc.name, err, tc.code)
		}
	}
	good := api.RenewRequest{CSR: csr, ServerID: a.ID, Proof: a.Proof(csr, summer)}
	if err := a.RenewExpired(ctx, good); err != nil {
		t.Fatalf("RenewExpired() = %v", err)
	}
	if !a.Cert().NotAfter.After(summer) {
		t.Errorf("the new certificate ends %v", a.Cert().NotAfter)
	}
	// A proof works once.
	if err := a.RenewExpired(ctx, good); ctltest.CodeOf(err) != api.CodeUnauthorized {
		t.Errorf("RenewExpired(same proof) = %v, want unauthorized", err)
	}
	// A year off: beyond the grace period.
	later := a.Cert().NotAfter.Add(100 * 24 * time.Hour)
	e.clock.Set(later)
	if err := a.RenewExpired(ctx, api.RenewRequest{CSR: csr, ServerID: a.ID, Proof: a.Proof(csr, later)}); ctltest.CodeOf(err) != api.CodeForbidden ||
		!strings.Contains(err.Error(), "grace period") {
		t.Errorf("RenewExpired(beyond the grace period) = %v, want forbidden", err)
	}
	certs, _ := e.st.Certificates(ctx, a.ID)
	if len(certs) != 3 {
		t.Errorf("%d certificates recorded, want 3", len(certs))
	}
}

// Enrollment refuses bad tokens and bad input, and leaves nothing behind.
func TestEnrollRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	used := e.token(lyceeUAI, "")
	if _, err := ctltest.NewAgent(e.url).Enroll(ctx, used); err != nil {
		t.Fatal(err)
	}
	var expired api.TokenResponse
	e.do(e.admin, "POST", api.PathAdminTokens, api.TokenRequest{UAI: lyceeUAI, TTLSeconds: 60}, &expired)
	e.clock.Set(time.Now().Add(2 * time.Minute))
	good := e.token(collegeUAI, "")
	tok, _ := api.ParseToken(good)
	wrongCA := api.Token{ID: tok.ID, Secret: tok.Secret, CAHash: "sha256:" + strings.Repeat("ab", 32)}
	wrongSecret := api.Token{ID: tok.ID, Secret: strings.Repeat("z", 39), CAHash: tok.CAHash}
	unknown := api.Token{ID: "abcdefghijklmnop", Secret: tok.Secret, CAHash: tok.CAHash}
	a := ctltest.NewAgent(e.url)

	post := func(req any) error {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.pool()}}}
		defer c.CloseIdleConnections()
		op := &ctltest.Operator{URL: e.url, Client: c}
		return op.Do(ctx, "POST", api.PathEnroll, req, nil)
	}
	req := func(token string) api.EnrollRequest {
		return api.EnrollRequest{Token: token, CSR: a.CSR(), AgeRecipient: a.Age.Recipient().String()}
	}
	for _, tc := range []struct {
		name string
		req  any
		code string
		msg  string
	}{
		{"used token", req(used), api.CodeInvalidToken, "already used"},
		{"expired token", req(expired.Token), api.CodeInvalidToken, "expired"},
		{"another controller's CA hash", req(wrongCA.String()), api.CodeInvalidToken, "another controller"},
		{"wrong secret", req(wrongSecret.String()), api.CodeInvalidToken, "unknown"},
		{"unknown token", req(unknown.String()), api.CodeInvalidToken, "unknown"},
		{"malformed token", req("alize1.x"), api.CodeInvalidToken, "not of the form"},
		{"bad CSR", api.EnrollRequest{Token: good, CSR: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", AgeRecipient: a.Age.Recipient().String()}, api.CodeBadRequest, "csr"},
		{"bad age recipient", api.EnrollRequest{Token: good, CSR: a.CSR(), AgeRecipient: "ssh-ed25519 AAAA"}, api.CodeBadRequest, "age_recipient"},
		{"unknown field", map[string]any{"token": good, "csr": a.CSR(), "age_recipient": a.Age.Recipient().String(), "admin": true}, api.CodeBadRequest, "unknown field"},
		{"oversized body", map[string]any{"token": good, "csr": strings.Repeat("A", api.MaxRequestBody)}, api.CodeTooLarge, "larger"},
		{"not JSON", []byte(`{"token":`), api.CodeBadRequest, "body"},
	} {
		err := post(tc.req)
		if ctltest.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("enroll with %s = %v, want %s mentioning %q", tc.name, err, tc.code, tc.msg)
		}
	}
	svs, _ := e.st.Servers(ctx)
	if len(svs) != 1 {
		t.Errorf("%d servers after the refusals, want the 1 enrolled", len(svs))
	}
	// The good token, refused above only for its bad companions, still works once.
	if _, err := a.Enroll(ctx, good); err != nil {
		t.Errorf("Enroll(good) = %v", err)
	}
}

// A revoked server is refused at the TLS handshake, and on connections it
// opened before.
func TestRevokedAtHandshake(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	a := e.agent(lyceeUAI, "amon-revoked")
	b := e.agent(lyceeUAI, "amon-kept")
	if _, err := a.Pull(ctx, 0); err != nil {
		t.Fatal(err)
	}
	open := a.Client() // its connection stays open
	// Another client that keeps its TLS session, to resume it later.
	a.Sessions = tls.NewLRUClientSessionCache(4)
	resuming := a.NewClient()
	defer resuming.CloseIdleConnections()
	if _, err := a.PullWith(ctx, resuming, 0); err != nil {
		t.Fatal(err)
	}
	resuming.CloseIdleConnections()
	if resp, err := resuming.Get(e.url + api.PathHealthz); err != nil || !resp.TLS.DidResume {
		t.Fatalf("the client did not resume its TLS session: %v", err)
	} else {
		resp.Body.Close()
	}
	resuming.CloseIdleConnections()

	var info api.ServerInfo
	e.do(e.admin, "POST", api.PathAdminServers+"/amon-revoked/revoke", nil, &info)
	if info.State != api.StateRevoked {
		t.Errorf("state after revocation = %s", info.State)
	}
	// A new connection: the handshake fails.
	fresh := a.NewClient()
	defer fresh.CloseIdleConnections()
	_, err := a.PullWith(ctx, fresh, 0)
	var he *ctltest.HTTPError
	if err == nil || errors.As(err, &he) {
		t.Fatalf("Pull() on a new connection = %v, want a TLS handshake error", err)
	}
	// The handshake is refused before any HTTP: at the TLS layer itself.
	// (Through HTTP the client may see the alert, or only the connection
	// closing under its request: a TLS 1.3 client learns of the refusal
	// at its first read. The raw check below reads the alert itself.)
	conn, err := tls.Dial("tcp", strings.TrimPrefix(e.url, "https://"), fresh.Transport.(*http.Transport).TLSClientConfig)
	if err == nil {
		err = conn.Handshake()
		if err == nil {
			// TLS 1.3 clients learn of a refused client certificate at their first read.
			_, err = conn.Read(make([]byte, 1))
		}
		conn.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "bad certificate") {
		t.Errorf("raw TLS handshake with a revoked certificate = %v, want bad certificate", err)
	}
	// A resumed session is refused too (no full handshake: the check
	// runs on resumption as well).
	var he2 *ctltest.HTTPError
	if _, err := a.PullWith(ctx, resuming, 0); err == nil || errors.As(err, &he2) {
		t.Errorf("Pull() resuming a TLS session = %v, want a TLS handshake error", err)
	}
	// A connection opened before: refused at its next request.
	if _, err := a.PullWith(ctx, open, 0); ctltest.CodeOf(err) != api.CodeRevoked {
		t.Errorf("Pull() on the old connection = %v, want revoked", err)
	}
	// Others are not affected.
	if _, err := b.Pull(ctx, 0); err != nil {
		t.Errorf("another server's Pull() = %v", err)
	}
	if m := e.get(api.PathMetrics); !strings.Contains(m, "alize_tls_revoked_refused_total ") || strings.Contains(m, "alize_tls_revoked_refused_total 0\n") {
		t.Error("/metrics does not count the refused handshakes")
	}
}

// An agent reads only its own manifest and blobs, and reports only as itself.
func TestAgentsAreIsolated(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	e.publish("1.0.0", 1)
	e.setVar("fleet", "message", "x")
	e.do(e.admin, "POST", api.PathAdminAssignments, api.AssignRequest{Level: "fleet", Module: "motd", Version: "1.0.0"}, nil)
	// B's establishment has a roster blob; A's has none.
	blob := []byte("secret-ish roster of B\n")
	digest := manifest.Digest(blob)
	if err := e.st.Commit(ctx, &store.Batch{Blobs: []store.Blob{{Digest: digest, Size: int64(len(blob)), Data: blob, Created: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
	e.setVar("establishment:"+creteilUAI, "roster_blob", digest)
	a := e.agent(lyceeUAI, "amon-a")
	b := e.agent(creteilUAI, "amon-b")
	for _, ag := range []*ctltest.Agent{a, b} {
		if _, err := ag.Pull(ctx, 0); err != nil {
			t.Fatal(err)
		}
		if ag.Manifest.Target.ServerID != ag.ID {
			t.Errorf("%s got the manifest of %s", ag.ID, ag.Manifest.Target.ServerID)
		}
	}
	if len(b.Manifest.Blobs) != 1 {
		t.Fatalf("B's blobs = %+v", b.Manifest.Blobs)
	}
	if got, err := b.Get(ctx, api.PathBlobs+digest); err != nil || !bytes.Equal(got, blob) {
		t.Errorf("B fetching its blob = %v", err)
	}
	if _, err := a.Get(ctx, api.PathBlobs+digest); ctltest.CodeOf(err) != api.CodeNotFound {
		t.Errorf("A fetching B's blob = %v, want not_found", err)
	}
	// No agent route takes a server id: a query naming B changes nothing.
	if _, err := a.Get(ctx, api.PathManifest+"?server_id=amon-b"); err != nil {
		t.Fatal(err)
	}
	env, _ := a.Get(ctx, api.PathManifest+"?server_id=amon-b")
	if !strings.Contains(string(env), "payload") || a.Manifest.Target.ServerID != "amon-a" {
		t.Error("A's manifest request answered something else")
	}
	if _, err := a.Report(ctx, report(a, "r1", api.OutcomeCompliant)); err != nil {
		t.Fatal(err)
	}
	if rs, _ := e.st.Reports(ctx, store.ReportFilter{ServerID: "amon-b"}); len(rs) != 0 {
		t.Errorf("A's report landed on B: %+v", rs)
	}
	// Without a client certificate, no agent route answers.
	for _, path := range []string{api.PathManifest, api.PathBlobs + digest, api.PathRoots + "1"} {
		if got := e.get(path); !strings.Contains(got, api.CodeUnauthorized) {
			t.Errorf("GET %s without a certificate = %s", path, got)
		}
	}
	// Operator tokens are not agent credentials either.
	var out json.RawMessage
	if err := e.admin.Do(ctx, "GET", api.PathManifest, nil, &out); ctltest.CodeOf(err) != api.CodeUnauthorized {
		t.Errorf("GET manifest with an operator token = %v, want unauthorized", err)
	}
	// Bad reports.
	for _, r := range []api.Report{
		{ID: "", Outcome: api.OutcomeCompliant, Finished: time.Now()},
		{ID: "x y", Outcome: api.OutcomeCompliant, Finished: time.Now()},
		{ID: "r", Outcome: "great", Finished: time.Now()},
		{ID: "r", Outcome: api.OutcomeRefused, Finished: time.Now()},
		{ID: "r", Outcome: api.OutcomeCompliant},
	} {
		if _, err := a.Report(ctx, r); ctltest.CodeOf(err) != api.CodeBadRequest {
			t.Errorf("Report(%+v) = %v, want bad_request", r, err)
		}
	}
}

// At shutdown, held long polls answer at once with a retry hint.
func TestShutdownEndsLongPolls(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	a := e.agent(lyceeUAI, "")
	if _, err := a.Pull(ctx, 0); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := a.Pull(ctx, 2*time.Minute)
		got <- err
	}()
	waitFor(t, "the long poll to be held", func() bool { return e.ctl.srv.Hub.Holding() == 1 })
	start := time.Now()
	e.stop()
	var err error
	select {
	case err = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the long poll was still held 10 s after shutdown")
	}
	var he *ctltest.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable || he.RetryAfter == "" || he.Err.RetryAfter == 0 {
		t.Errorf("long poll at shutdown = %v, want 503 with Retry-After", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("shutdown took %v", took)
	}
}
