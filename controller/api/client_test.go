package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testPKI is a controller CA with a server certificate for 127.0.0.1 and
// one client certificate.
type testPKI struct {
	ca       *x509.Certificate
	caKey    *ecdsa.PrivateKey
	server   tls.Certificate // leaf + CA in the chain
	client   tls.Certificate
	pool     *x509.CertPool
	serverNo int64
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{}
	var err error
	p.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test controller CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.ca)
	p.server = p.leaf(t, "127.0.0.1", x509.ExtKeyUsageServerAuth, true)
	p.client = p.leaf(t, "srv-test", x509.ExtKeyUsageClientAuth, false)
	return p
}

func (p *testPKI) leaf(t testing.TB, name string, usage x509.ExtKeyUsage, withCA bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serverNo++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(100 + p.serverNo),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	chain := [][]byte{der}
	if withCA {
		chain = append(chain, p.ca.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key}
}

// server starts a TLS server with h that requires p's client certificate,
// and returns a Client for it.
func (p *testPKI) serve(t testing.TB, h http.Handler) (*httptest.Server, *Client) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{p.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.pool,
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	client := p.client
	c, err := NewClient(srv.URL, NewHTTPClient(AgentTLS(p.pool, func() (*tls.Certificate, error) { return &client, nil }, nil)), "alize/test")
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

const testEnvelope = `{"payloadType":"application/vnd.alize.manifest+json","payload":"e30=","signatures":[]}`

func TestManifestETagAndLongPoll(t *testing.T) {
	p := newTestPKI(t)
	var lastQuery, lastINM, lastUA atomic.Value
	_, c := p.serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != PathManifest {
			http.NotFound(w, r)
			return
		}
		lastQuery.Store(r.URL.RawQuery)
		lastINM.Store(r.Header.Get("If-None-Match"))
		lastUA.Store(r.Header.Get("User-Agent"))
		w.Header().Set(HeaderNextPoll, "42")
		if r.Header.Get("If-None-Match") == `"m-7"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", `"m-7"`)
		w.Header().Set("Content-Type", ContentTypeEnvelope)
		io.WriteString(w, testEnvelope)
	}))
	ctx := t.Context()

	got, err := c.Manifest(ctx, "", 0)
	if err != nil {
		t.Fatalf("Manifest() = %v", err)
	}
	if string(got.Envelope) != testEnvelope || got.ETag != `"m-7"` || got.NotModified || got.NextPoll != 42*time.Second || got.ServerTime.IsZero() {
		t.Errorf("Manifest() = %+v, want the envelope, ETag \"m-7\", next poll 42s, a server time", got)
	}
	if q := lastQuery.Load().(string); q != "" {
		t.Errorf("query without a wait = %q, want none", q)
	}
	if ua := lastUA.Load().(string); ua != "alize/test" {
		t.Errorf("User-Agent = %q, want alize/test", ua)
	}

	got, err = c.Manifest(ctx, `"m-7"`, 30*time.Second)
	if err != nil {
		t.Fatalf("Manifest(etag) = %v", err)
	}
	if !got.NotModified || got.Envelope != nil || got.ETag != `"m-7"` {
		t.Errorf("Manifest(etag) = %+v, want 304 keeping the ETag", got)
	}
	if q := lastQuery.Load().(string); q != "wait=30s" {
		t.Errorf("long poll query = %q, want wait=30s", q)
	}
	if inm := lastINM.Load().(string); inm != `"m-7"` {
		t.Errorf("If-None-Match = %q", inm)
	}
	// A wait beyond MaxWait is capped.
	if _, err := c.Manifest(ctx, `"m-7"`, time.Hour); err != nil {
		t.Fatal(err)
	}
	if q := lastQuery.Load().(string); q != "wait=300s" {
		t.Errorf("long poll query for an hour = %q, want wait=300s", q)
	}
}

func TestMutualTLSIsRequired(t *testing.T) {
	p := newTestPKI(t)
	srv, _ := p.serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	// A client with no certificate is refused at the handshake.
	c, _ := NewClient(srv.URL, NewHTTPClient(AgentTLS(p.pool, func() (*tls.Certificate, error) { return &tls.Certificate{}, nil }, nil)), "")
	if _, err := c.Manifest(t.Context(), "", 0); err == nil {
		t.Error("Manifest() without a client certificate succeeded")
	}
	// A client that does not trust the controller's CA refuses it.
	other := newTestPKI(t)
	cert := p.client
	c, _ = NewClient(srv.URL, NewHTTPClient(AgentTLS(other.pool, func() (*tls.Certificate, error) { return &cert, nil }, nil)), "")
	if _, err := c.Manifest(t.Context(), "", 0); err == nil {
		t.Error("Manifest() against a controller of another CA succeeded")
	}
}

func TestGzipIsUndoneAndLimited(t *testing.T) {
	p := newTestPKI(t)
	big := bytes.Repeat([]byte("a"), MaxManifestBody+10)
	_, c := p.serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			t.Errorf("Accept-Encoding = %q, want gzip", r.Header.Get("Accept-Encoding"))
		}
		body := []byte(testEnvelope)
		if r.URL.Query().Get("wait") != "" { // the test's way of asking for a bomb
			body = big
		}
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("ETag", `"g"`)
		zw := gzip.NewWriter(w)
		zw.Write(body)
		zw.Close()
	}))
	got, err := c.Manifest(t.Context(), "", 0)
	if err != nil || string(got.Envelope) != testEnvelope {
		t.Fatalf("Manifest() gzip = %q, %v; want the envelope, decompressed", got.Envelope, err)
	}
	if _, err := c.Manifest(t.Context(), "", time.Second); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Manifest() of a gzip bomb = %v, want ErrTooLarge", err)
	}
}

func TestErrorShape(t *testing.T) {
	p := newTestPKI(t)
	_, c := p.serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case PathManifest:
			w.Header().Set("Retry-After", "30")
			w.Header().Set("Content-Type", ContentTypeJSON)
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(ErrorBody{Error: &Error{Code: CodeUnavailable, Message: "the controller is restarting"}})
		case PathReports:
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "<html>proxy error</html>")
		default:
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(ErrorBody{Error: &Error{Code: CodeNotFound, Message: "no such root"}})
		}
	}))
	ctx := t.Context()
	_, err := c.Manifest(ctx, "", 0)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Manifest() = %v, want an *Error", err)
	}
	want := &Error{Status: 503, Code: CodeUnavailable, Message: "the controller is restarting", RetryAfter: 30}
	if diff := cmp.Diff(want, e); diff != "" {
		t.Errorf("Manifest() error (-want +got):\n%s", diff)
	}
	if RetryAfter(err) != 30*time.Second || !IsCode(err, CodeUnavailable) {
		t.Errorf("RetryAfter() = %v, IsCode(unavailable) = %v", RetryAfter(err), IsCode(err, CodeUnavailable))
	}
	_, err = c.Report(ctx, []byte(`{"id":"r-1"}`))
	if !IsCode(err, CodeInternalError) {
		t.Errorf("Report() through a broken proxy = %v, want code internal_error", err)
	}
	if _, err := c.Root(ctx, 3); !IsCode(err, CodeNotFound) {
		t.Errorf("Root(3) = %v, want not_found", err)
	}
}

func TestBlobLimitAndDigest(t *testing.T) {
	p := newTestPKI(t)
	blob := []byte("role;ine;nom\n")
	_, c := p.serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(blob)
	}))
	digest := "sha256:" + strings.Repeat("ab", 32)
	var buf bytes.Buffer
	if err := c.Blob(t.Context(), digest, int64(len(blob)), &buf); err != nil || buf.String() != string(blob) {
		t.Fatalf("Blob() = %q, %v", buf.String(), err)
	}
	buf.Reset()
	if err := c.Blob(t.Context(), digest, 4, &buf); !errors.Is(err, ErrTooLarge) || buf.Len() > 5 {
		t.Errorf("Blob() of more than listed = %v (%d bytes read), want ErrTooLarge after 5 bytes", err, buf.Len())
	}
	for _, bad := range []string{"sha256:../../etc/passwd", "md5:abc", "sha256:" + strings.Repeat("AB", 32)} {
		if err := c.Blob(t.Context(), bad, 1, io.Discard); err == nil {
			t.Errorf("Blob(%q) accepted a bad digest", bad)
		}
	}
}

func TestReportAndRedirectsNotFollowed(t *testing.T) {
	p := newTestPKI(t)
	var got []byte
	_, c := p.serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case PathReports:
			if ct := r.Header.Get("Content-Type"); ct != ContentTypeJSON {
				t.Errorf("Content-Type = %q", ct)
			}
			got, _ = io.ReadAll(r.Body)
			json.NewEncoder(w).Encode(ReportAck{ID: "r-1", Duplicate: true})
		case PathRenew:
			http.Redirect(w, r, "https://elsewhere.example/", http.StatusFound)
		}
	}))
	ack, err := c.Report(t.Context(), []byte(`{"id":"r-1"}`))
	if err != nil || ack != (ReportAck{ID: "r-1", Duplicate: true}) || string(got) != `{"id":"r-1"}` {
		t.Errorf("Report() = %+v, %v (server got %s)", ack, err, got)
	}
	if _, err := c.Report(t.Context(), make([]byte, MaxRequestBody+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Report() of an oversized report = %v, want ErrTooLarge", err)
	}
	if _, err := c.Renew(t.Context(), RenewRequest{CSR: "x"}); err == nil {
		t.Error("Renew() followed or accepted a redirect")
	}
}

func TestEnrollTLSChecksTheCAHash(t *testing.T) {
	p := newTestPKI(t)
	var enrolled EnrollRequest
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewDecoder(r.Body).Decode(&enrolled)
		json.NewEncoder(w).Encode(EnrollResponse{ServerID: "srv-1", UAI: "0951099D"})
	})
	start := func(chain tls.Certificate) *httptest.Server {
		srv := httptest.NewUnstartedServer(h)
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{chain}}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv
	}
	srv := start(p.server)
	enroll := func(url, hash string) error {
		c, err := NewClient(url, NewHTTPClient(EnrollTLS(hash)), "")
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Enroll(t.Context(), EnrollRequest{Token: "tok"})
		if err == nil && resp.ServerID != "srv-1" {
			return fmt.Errorf("answer %+v", resp)
		}
		return err
	}
	if err := enroll(srv.URL, CAHash(p.ca)); err != nil || enrolled.Token != "tok" {
		t.Errorf("Enroll() with the right CA hash = %v", err)
	}
	if err := enroll(srv.URL, CAHash(newTestPKI(t).ca)); err == nil || !strings.Contains(err.Error(), "does not contain the CA") {
		t.Errorf("Enroll() with another CA's hash = %v, want a refusal", err)
	}
	// A chain without the CA: nothing to check the hash against.
	leafOnly := p.server
	leafOnly.Certificate = leafOnly.Certificate[:1]
	if err := enroll(start(leafOnly).URL, CAHash(p.ca)); err == nil {
		t.Error("Enroll() against a chain without the CA succeeded")
	}
	// The right CA in the chain, but a leaf it did not sign.
	other := newTestPKI(t)
	forged := other.server
	forged.Certificate = [][]byte{other.server.Certificate[0], p.ca.Raw}
	if err := enroll(start(forged).URL, CAHash(p.ca)); err == nil {
		t.Error("Enroll() against a leaf of another CA, with the right CA appended, succeeded")
	}
}

func TestNewClientRefusesBadAddresses(t *testing.T) {
	for _, u := range []string{"http://ctl.example", "ctl.example", "https://", "https://ctl.example/?a=b"} {
		if _, err := NewClient(u, http.DefaultClient, ""); err == nil {
			t.Errorf("NewClient(%q) accepted it", u)
		}
	}
	c, err := NewClient("https://ctl.example/alize/", http.DefaultClient, "")
	if err != nil || c.BaseURL() != "https://ctl.example/alize" {
		t.Errorf("NewClient(with a path) = %v, %v", c, err)
	}
}

func TestParseHints(t *testing.T) {
	now := time.Date(2026, 9, 1, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"30", 30 * time.Second},
		{"-1", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"99999999", maxHint},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if got := parseSeconds(""); got != -1 {
		t.Errorf("parseSeconds(\"\") = %v, want -1 (no hint)", got)
	}
	if got := parseSeconds("0"); got != 0 {
		t.Errorf("parseSeconds(\"0\") = %v, want 0", got)
	}
}

func TestContextCancelsALongPoll(t *testing.T) {
	p := newTestPKI(t)
	release := make(chan struct{})
	defer close(release)
	_, c := p.serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := c.Manifest(ctx, "", time.Minute)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Manifest() after cancel = %v, want context.Canceled", err)
	}
}
