package ctltest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/modules/manifest"
	"github.com/alize-eple/alize/modules/schema"
	"github.com/hashicorp/go-version"
)

// Agent is an in-process agent for the controller's tests: it speaks the
// controller/api contract as the real agent does (enroll with the CA hash
// check, mutual TLS, ETag and long polls, manifest verification, reports,
// renewals), without applying anything.
type Agent struct {
	URL      string
	Key      *ecdsa.PrivateKey
	Age      *age.X25519Identity
	ID       string
	UAI      string
	CertPEM  []byte
	CA       *x509.CertPool
	Trust    *manifest.Trust
	State    manifest.State
	ETag     string
	Manifest *manifest.Manifest
	Now      func() time.Time
	Poll     api.PollHints
	// Definitions are the module definitions fetched, by digest.
	Definitions map[string][]byte
	// Sessions, when set, lets the agent's clients resume TLS sessions.
	Sessions tls.ClientSessionCache

	client *http.Client
}

// NewAgent makes an agent with fresh keys, for the controller at url.
func NewAgent(url string) *Agent {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		panic(err)
	}
	return &Agent{URL: url, Key: key, Age: id, Now: time.Now}
}

// CSR makes a CSR for the agent's key.
func (a *Agent) CSR() string {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "agent"}}, a.Key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// Enroll enrolls with a token. Before sending it, the agent checks that
// the controller's TLS chain holds the CA the token names.
func (a *Agent) Enroll(ctx context.Context, token string) (*api.EnrollResponse, error) {
	tok, err := api.ParseToken(token)
	if err != nil {
		return nil, err
	}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // the chain is checked against the token's CA hash instead
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := api.CheckCAHash(cs.PeerCertificates, tok.CAHash); err != nil {
				return err
			}
			pool := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				pool.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool})
			return err
		},
	}}}
	defer c.CloseIdleConnections()
	var resp api.EnrollResponse
	req := api.EnrollRequest{Token: token, CSR: a.CSR(), AgeRecipient: a.Age.Recipient().String(), Facts: api.Facts{Hostname: "amon", AgentVersion: "1.3.0"}}
	if err := a.call(ctx, c, http.MethodPost, api.PathEnroll, req, &resp); err != nil {
		return nil, err
	}
	trust, err := manifest.PinRoot(resp.Root)
	if err != nil {
		return nil, fmt.Errorf("pin root: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(resp.CA)) {
		return nil, errors.New("enroll: no CA in the answer")
	}
	a.ID, a.UAI, a.CertPEM, a.CA, a.Trust, a.Poll = resp.ServerID, resp.UAI, []byte(resp.Certificate), pool, trust, resp.Poll
	a.client = nil
	return &resp, nil
}

// Client is the agent's mutual TLS client.
func (a *Agent) Client() *http.Client {
	if a.client == nil {
		a.client = a.NewClient()
	}
	return a.client
}

// NewClient makes a new mutual TLS client (its own connections).
func (a *Agent) NewClient() *http.Client {
	keyDER, _ := x509.MarshalPKCS8PrivateKey(a.Key)
	cert, err := tls.X509KeyPair(a.CertPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		panic(err)
	}
	return &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: a.CA, Certificates: []tls.Certificate{cert}, ClientSessionCache: a.Sessions},
		ForceAttemptHTTP2: true,
	}}
}

// HTTPError is an answer with an error status.
type HTTPError struct {
	Status     int
	Err        api.Error
	RetryAfter string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Err.Code, e.Err.Message)
}

func (a *Agent) call(ctx context.Context, c *http.Client, method, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, a.URL+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", api.ContentTypeJSON)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return readAnswer(resp, out)
}

func readAnswer(resp *http.Response, out any) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, api.MaxResponseBody))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		var eb api.ErrorBody
		json.Unmarshal(body, &eb)
		e := &HTTPError{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
		if eb.Error != nil {
			e.Err = *eb.Error
		}
		return e
	}
	switch out := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*out = body
		return nil
	}
	return json.Unmarshal(body, out)
}

// Pull asks for the agent's manifest (a long poll when wait > 0). A new
// one is verified as the agent does, and kept; changed says whether one
// came.
func (a *Agent) Pull(ctx context.Context, wait time.Duration) (changed bool, err error) {
	return a.PullWith(ctx, a.Client(), wait)
}

// PullWith is Pull with another client.
func (a *Agent) PullWith(ctx context.Context, c *http.Client, wait time.Duration) (bool, error) {
	u := a.URL + api.PathManifest
	if wait > 0 {
		u += "?wait=" + wait.String()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, err
	}
	if a.ETag != "" {
		req.Header.Set("If-None-Match", a.ETag)
	}
	resp, err := c.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified {
		return false, nil
	}
	if resp.StatusCode != http.StatusOK {
		return false, readAnswer(resp, nil)
	}
	if resp.Header.Get(api.HeaderNextPoll) == "" {
		return false, errors.New("no " + api.HeaderNextPoll + " header")
	}
	env, err := io.ReadAll(io.LimitReader(resp.Body, manifest.MaxEnvelopeSize+1))
	if err != nil {
		return false, err
	}
	v := &manifest.Verifier{Trust: a.Trust, ServerID: a.ID, UAI: a.UAI, AgentVersion: version.Must(version.NewVersion("1.3.0")),
		Compile: schema.CompileBytes, Definitions: a.definition, Now: a.Now}
	m, st, err := v.Verify(env, a.State)
	if missing := manifest.MissingDefinitions(err); missing != nil {
		// Definitions travel apart: fetch them by digest, as the agent does.
		for _, d := range missing {
			def, err := a.GetWith(ctx, c, api.PathBlobs+d)
			if err != nil {
				return false, fmt.Errorf("definition %s: %w", d, err)
			}
			if a.Definitions == nil {
				a.Definitions = map[string][]byte{}
			}
			a.Definitions[d] = def
		}
		m, st, err = v.Verify(env, a.State)
	}
	if err != nil {
		return false, fmt.Errorf("manifest refused: %w", err)
	}
	a.Manifest, a.State, a.ETag = m, st, resp.Header.Get("ETag")
	return true, nil
}

// definition is the agent's store of module definitions fetched by digest.
func (a *Agent) definition(digest string) []byte {
	if d := a.Definitions[digest]; manifest.Digest(d) == digest {
		return d
	}
	return nil
}

// Get fetches a path with the agent's client; the body of a 200.
func (a *Agent) Get(ctx context.Context, path string) ([]byte, error) {
	return a.GetWith(ctx, a.Client(), path)
}

// GetWith is Get with another client.
func (a *Agent) GetWith(ctx context.Context, c *http.Client, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, readAnswer(resp, nil)
	}
	return io.ReadAll(resp.Body)
}

// Report sends a report.
func (a *Agent) Report(ctx context.Context, r api.Report) (api.ReportAck, error) {
	var ack api.ReportAck
	err := a.call(ctx, a.Client(), http.MethodPost, api.PathReports, r, &ack)
	return ack, err
}

// Renew renews the certificate with the current one.
func (a *Agent) Renew(ctx context.Context, csr string) error {
	var resp api.RenewResponse
	if err := a.call(ctx, a.Client(), http.MethodPost, api.PathRenew, api.RenewRequest{CSR: csr}, &resp); err != nil {
		return err
	}
	a.CertPEM, a.client = []byte(resp.Certificate), nil
	return nil
}

// Proof signs a renew-expired proof at t.
func (a *Agent) Proof(csr string, t time.Time) *api.Proof {
	sum := sha256.Sum256(api.ProofMessage(a.ID, csr, t))
	sig, err := a.Key.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		panic(err)
	}
	return &api.Proof{Time: t, Signature: sig}
}

// RenewExpired renews an expired certificate by proof of possession,
// without a client certificate.
func (a *Agent) RenewExpired(ctx context.Context, req api.RenewRequest) error {
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: a.CA}}}
	defer c.CloseIdleConnections()
	var resp api.RenewResponse
	if err := a.call(ctx, c, http.MethodPost, api.PathRenewExpired, req, &resp); err != nil {
		return err
	}
	a.CertPEM, a.client = []byte(resp.Certificate), nil
	return nil
}

// Cert is the agent's current certificate.
func (a *Agent) Cert() *x509.Certificate {
	b, _ := pem.Decode(a.CertPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		panic(err)
	}
	return c
}

// CodeOf returns the API error code of err, or "".
func CodeOf(err error) string {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Err.Code
	}
	return ""
}

// Operator is an operator's HTTP client for tests.
type Operator struct {
	URL    string
	Token  string
	Client *http.Client
}

// Do calls an operator route with a JSON body (or raw bytes) and decodes
// the answer into out.
func (o *Operator) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	ctype := api.ContentTypeJSON
	switch in := in.(type) {
	case nil:
	case []byte:
		body, ctype = bytes.NewReader(in), "text/csv"
	default:
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, o.URL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ctype)
	if o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(o.Token))
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return readAnswer(resp, out)
}
