package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limits the client enforces on what the controller sends back, beyond
// MaxResponseBody (JSON answers). They match modules/manifest's own
// limits, which the agent checks again once it has the bytes.
const (
	// MaxManifestBody bounds a manifest envelope as received (after gzip).
	MaxManifestBody = 1 << 20
	// MaxRootBody bounds a root envelope as received.
	MaxRootBody = 64 << 10
	// MaxBlobBody bounds a blob as received.
	MaxBlobBody = 64 << 20
	// maxErrorBody bounds the JSON error body read from a 4xx or 5xx answer.
	maxErrorBody = 64 << 10
	// maxHint bounds the Retry-After and Alize-Next-Poll hints the client
	// obeys: a broken controller cannot silence an agent for longer.
	maxHint = 24 * time.Hour
)

// ErrTooLarge is returned when an answer is larger than its limit.
var ErrTooLarge = errors.New("answer larger than allowed")

// Client speaks the agent side of the /v1 API. Build it with NewClient
// over an *http.Client from NewHTTPClient: mutual TLS (AgentTLS) for the
// agent routes, the token's CA hash (EnrollTLS) for enrollment. gzip is
// negotiated by the transport and undone transparently; every answer is
// read through a size limit, after decompression. A Client is safe for
// concurrent use.
type Client struct {
	base      *url.URL
	hc        *http.Client
	userAgent string
}

// NewClient returns a client for the controller at baseURL
// ("https://alize.ac-versailles.fr"), sending requests through hc and
// naming itself userAgent ("alize/1.2.0").
func NewClient(baseURL string, hc *http.Client, userAgent string) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("controller address %q: %w", baseURL, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("controller address %q: want https://host[:port]", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("controller address %q: no query or fragment allowed", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if hc == nil {
		return nil, errors.New("api: NewClient needs an *http.Client")
	}
	return &Client{base: u, hc: hc, userAgent: userAgent}, nil
}

// BaseURL is the controller's address.
func (c *Client) BaseURL() string { return c.base.String() }

// NewHTTPClient returns an HTTP client for the controller: the TLS
// configuration given, HTTP/1.1 keep-alive (one connection is enough for
// an agent), gzip, dial and handshake timeouts. An idle connection is kept
// 20 minutes, beyond the default poll interval, so that a poll costs no
// TLS handshake while the controller keeps the connection (TCP keep-alive
// probes hold NAT mappings open meanwhile). Requests have no overall
// timeout: each call's context bounds it (a long poll lasts its wait).
func NewHTTPClient(conf *tls.Config) *http.Client {
	d := &net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           d.DialContext,
			TLSClientConfig:       conf,
			TLSHandshakeTimeout:   15 * time.Second,
			MaxIdleConns:          2,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       20 * time.Minute,
			ExpectContinueTimeout: time.Second,
			// A 304 carries no body: nothing to decompress. Everything
			// else may come gzip-compressed; the transport asks for it and
			// undoes it.
			DisableCompression: false,
		},
		// The API never redirects; following one could leak the client
		// certificate's use to another host.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// AgentTLS is the agent's mutual TLS configuration: it trusts only the
// controller's CA (pinned at enrollment) and presents the client
// certificate cert returns (so that a renewed certificate is used from the
// next connection on, without a new client). sessions, when not nil,
// resumes TLS sessions: a poll every 15 minutes then costs the agent no
// certificate verification (see BenchmarkPoll304); a renewal must empty it
// (SessionCache.Clear), or resumed sessions go on naming the old
// certificate until it expires.
func AgentTLS(ca *x509.CertPool, cert func() (*tls.Certificate, error), sessions tls.ClientSessionCache) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    ca,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return cert()
		},
		ClientSessionCache: sessions,
	}
}

// SessionCache is a TLS client session cache that can be emptied.
type SessionCache struct {
	mu sync.Mutex
	c  tls.ClientSessionCache
}

// NewSessionCache returns an empty cache.
func NewSessionCache() *SessionCache { return &SessionCache{c: tls.NewLRUClientSessionCache(4)} }

// Get implements tls.ClientSessionCache.
func (s *SessionCache) Get(key string) (*tls.ClientSessionState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c.Get(key)
}

// Put implements tls.ClientSessionCache.
func (s *SessionCache) Put(key string, cs *tls.ClientSessionState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.c.Put(key, cs)
}

// Clear forgets every session.
func (s *SessionCache) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.c = tls.NewLRUClientSessionCache(4)
}

// EnrollTLS is the TLS configuration for enrollment and for a renewal
// without a valid certificate: the agent has no CA yet, only the hash the
// token carries (CAHash). The controller's chain must contain a CA
// certificate with that hash, and the controller's certificate must be
// valid for the host under that CA; otherwise the handshake fails.
// Without a client certificate: enrollment is authenticated by the token.
func EnrollTLS(caHash string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain is checked below against the CA the token names, not
		// against the system's CAs.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyByCAHash(cs, caHash)
		},
	}
}

func verifyByCAHash(cs tls.ConnectionState, caHash string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the controller presented no certificate")
	}
	if err := CheckCAHash(cs.PeerCertificates, caHash); err != nil {
		return err
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		if CAHash(c) == caHash {
			roots.AddCert(c)
		} else {
			inter.AddCert(c)
		}
	}
	leaf := cs.PeerCertificates[0]
	if CAHash(leaf) == caHash {
		roots.AddCert(leaf) // a self-signed controller certificate named by the token
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		DNSName:       cs.ServerName,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("the controller's certificate is not valid under the CA named by the token: %w", err)
	}
	return nil
}

// ManifestAnswer is the controller's answer to a manifest poll.
type ManifestAnswer struct {
	// Envelope is the manifest's DSSE envelope; nil when NotModified.
	Envelope []byte
	// ETag names the manifest; send it back as If-None-Match.
	ETag string
	// NotModified: the manifest is still the one named by the ETag sent
	// (or a long poll ended without a new one).
	NotModified bool
	// NextPoll is the controller's Alize-Next-Poll hint; negative when
	// the answer had none.
	NextPoll time.Duration
	// ServerTime is the answer's Date header (zero when absent), for a
	// clock skew check.
	ServerTime time.Time
}

// Manifest polls for the agent's manifest. etag is the ETag of the
// manifest the agent already has ("" for none): the controller answers
// 304 while it is current. wait > 0 asks for a long poll: the controller
// holds the request until a new manifest exists or the wait (at most
// MaxWait) ends. A server without a manifest yet answers an *Error with
// Code CodeNotFound.
func (c *Client) Manifest(ctx context.Context, etag string, wait time.Duration) (ManifestAnswer, error) {
	path := PathManifest
	if wait > 0 {
		wait = min(wait, MaxWait)
		path += "?wait=" + strconv.Itoa(int((wait+time.Second-1)/time.Second)) + "s"
		// The answer may take the whole wait: allow for it and a margin.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait+30*time.Second)
		defer cancel()
	}
	h := http.Header{"Accept": {ContentTypeEnvelope}}
	if etag != "" {
		h.Set("If-None-Match", etag)
	}
	resp, err := c.do(ctx, http.MethodGet, path, h, nil)
	if err != nil {
		return ManifestAnswer{NextPoll: -1}, err
	}
	defer resp.Body.Close()
	ans := ManifestAnswer{
		ETag:     resp.Header.Get("ETag"),
		NextPoll: parseSeconds(resp.Header.Get(HeaderNextPoll)),
	}
	if t, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		ans.ServerTime = t
	}
	if resp.StatusCode == http.StatusNotModified {
		ans.NotModified = true
		if ans.ETag == "" {
			ans.ETag = etag
		}
		return ans, nil
	}
	if resp.StatusCode != http.StatusOK {
		return ans, fmt.Errorf("controller: manifest: unexpected status %s", resp.Status)
	}
	ans.Envelope, err = readLimited(resp.Body, MaxManifestBody)
	if err != nil {
		return ans, fmt.Errorf("controller: manifest: %w", err)
	}
	return ans, nil
}

// Blob fetches a blob of the agent's current manifest by its digest
// ("sha256:<hex>") into w. It copies at most size bytes and fails when the
// controller sends more: the caller checks the digest of what it got.
func (c *Client) Blob(ctx context.Context, digest string, size int64, w io.Writer) error {
	if !validBlobDigest(digest) {
		return fmt.Errorf("controller: blob: digest %q is not sha256:<64 hex digits>", digest)
	}
	if size < 0 || size > MaxBlobBody {
		return fmt.Errorf("controller: blob %s: size %d out of range", digest, size)
	}
	resp, err := c.do(ctx, http.MethodGet, PathBlobs+digest, http.Header{"Accept": {ContentTypeBlob}}, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("controller: blob %s: unexpected status %s", digest, resp.Status)
	}
	n, err := io.Copy(w, io.LimitReader(resp.Body, size+1))
	if err != nil {
		return fmt.Errorf("controller: blob %s: %w", digest, err)
	}
	if n > size {
		return fmt.Errorf("controller: blob %s: more than the %d bytes listed: %w", digest, size, ErrTooLarge)
	}
	return nil
}

// Report delivers a report, as JSON (the outbox keeps reports encoded).
// Delivery is idempotent by the report's id: a second delivery is
// acknowledged with Duplicate set.
func (c *Client) Report(ctx context.Context, report []byte) (ReportAck, error) {
	var ack ReportAck
	if len(report) > MaxRequestBody {
		return ack, fmt.Errorf("controller: report of %d bytes, more than the %d allowed: %w", len(report), MaxRequestBody, ErrTooLarge)
	}
	err := c.doJSON(ctx, http.MethodPost, PathReports, report, &ack)
	return ack, err
}

// Root fetches a version of the academy's root document (a DSSE
// envelope), for an agent walking a root rotation.
func (c *Client) Root(ctx context.Context, version int) ([]byte, error) {
	if version < 1 {
		return nil, fmt.Errorf("controller: root version %d: want 1 or more", version)
	}
	resp, err := c.do(ctx, http.MethodGet, PathRoots+strconv.Itoa(version), http.Header{"Accept": {ContentTypeEnvelope}}, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("controller: root %d: unexpected status %s", version, resp.Status)
	}
	b, err := readLimited(resp.Body, MaxRootBody)
	if err != nil {
		return nil, fmt.Errorf("controller: root %d: %w", version, err)
	}
	return b, nil
}

// Enroll enrolls the server. Use a client whose TLS configuration is
// EnrollTLS(token's CA hash).
func (c *Client) Enroll(ctx context.Context, req EnrollRequest) (EnrollResponse, error) {
	var resp EnrollResponse
	body, err := json.Marshal(req)
	if err != nil {
		return resp, fmt.Errorf("enroll: %w", err)
	}
	err = c.doJSON(ctx, http.MethodPost, PathEnroll, body, &resp)
	return resp, err
}

// Renew asks for a new client certificate for the same key, with the
// current (still valid) one.
func (c *Client) Renew(ctx context.Context, req RenewRequest) (RenewResponse, error) {
	var resp RenewResponse
	body, err := json.Marshal(req)
	if err != nil {
		return resp, fmt.Errorf("renew: %w", err)
	}
	err = c.doJSON(ctx, http.MethodPost, PathRenew, body, &resp)
	return resp, err
}

// RenewExpired asks for a new client certificate without a valid one,
// proving possession of the registered key (req.Proof). Use a client
// without a client certificate that trusts the controller's CA.
func (c *Client) RenewExpired(ctx context.Context, req RenewRequest) (RenewResponse, error) {
	var resp RenewResponse
	body, err := json.Marshal(req)
	if err != nil {
		return resp, fmt.Errorf("renew: %w", err)
	}
	err = c.doJSON(ctx, http.MethodPost, PathRenewExpired, body, &resp)
	return resp, err
}

// doJSON sends body (JSON) and decodes a 200 answer into out.
func (c *Client) doJSON(ctx context.Context, method, path string, body []byte, out any) error {
	h := http.Header{"Accept": {ContentTypeJSON}, "Content-Type": {ContentTypeJSON}}
	resp, err := c.do(ctx, method, path, h, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("controller: %s %s: unexpected status %s", method, path, resp.Status)
	}
	data, err := readLimited(resp.Body, MaxResponseBody)
	if err != nil {
		return fmt.Errorf("controller: %s %s: %w", method, path, err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("controller: %s %s: answer is not the JSON expected: %w", method, path, err)
	}
	return nil
}

// do sends a request and returns the answer when its status is below 400
// (the caller closes the body). A 4xx or 5xx answer becomes an *Error,
// from the JSON error body when there is one, with RetryAfter from the
// Retry-After header when the body has none.
func (c *Client) do(ctx context.Context, method, path string, h http.Header, body []byte) (*http.Response, error) {
	u := *c.base
	p, q, _ := strings.Cut(path, "?")
	u.Path = c.base.Path + p
	u.RawQuery = q
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), r)
	if err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("controller %s: %w", c.base.Host, unwrapURLError(err))
	}
	if resp.StatusCode < 400 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, errorFrom(resp)
}

// errorFrom makes an *Error of a 4xx or 5xx answer.
func errorFrom(resp *http.Response) *Error {
	e := &Error{Status: resp.StatusCode}
	data, _ := readLimited(resp.Body, maxErrorBody)
	var eb ErrorBody
	if json.Unmarshal(data, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
		e.Code, e.Message, e.RetryAfter = eb.Error.Code, eb.Error.Message, eb.Error.RetryAfter
	} else {
		e.Code = codeForStatus(resp.StatusCode)
		e.Message = strings.ToLower(http.StatusText(resp.StatusCode))
	}
	if d := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); d > 0 {
		e.RetryAfter = int((d + time.Second - 1) / time.Second)
	}
	e.RetryAfter = min(max(e.RetryAfter, 0), int(maxHint/time.Second))
	return e
}

func codeForStatus(status int) string {
	switch {
	case status == http.StatusBadRequest:
		return CodeBadRequest
	case status == http.StatusUnauthorized:
		return CodeUnauthorized
	case status == http.StatusForbidden:
		return CodeForbidden
	case status == http.StatusNotFound:
		return CodeNotFound
	case status == http.StatusConflict:
		return CodeConflict
	case status == http.StatusRequestEntityTooLarge:
		return CodeTooLarge
	case status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests:
		return CodeUnavailable
	case status >= 500:
		return CodeInternalError
	default:
		return CodeBadRequest
	}
}

// unwrapURLError drops net/http's "Get \"https://…\": " prefix: the
// caller says which controller.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// readLimited reads all of r, failing with ErrTooLarge past limit bytes.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("more than %d bytes: %w", limit, ErrTooLarge)
	}
	return b, nil
}

// parseSeconds reads a hint in whole seconds; negative when absent or
// malformed.
func parseSeconds(s string) time.Duration {
	if s == "" {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return min(time.Duration(n)*time.Second, maxHint)
}

// parseRetryAfter reads Retry-After: seconds or an HTTP date.
func parseRetryAfter(s string, now time.Time) time.Duration {
	if s == "" {
		return 0
	}
	if d := parseSeconds(s); d >= 0 {
		return d
	}
	if t, err := http.ParseTime(s); err == nil && t.After(now) {
		return min(t.Sub(now), maxHint)
	}
	return 0
}

func validBlobDigest(d string) bool {
	hex, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	for _, c := range hex {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// RetryAfter returns how long the controller asked to wait before the
// next request (0 when err says nothing).
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) && e.RetryAfter > 0 {
		return time.Duration(e.RetryAfter) * time.Second
	}
	return 0
}

// IsCode reports whether err is an *Error with that code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}
