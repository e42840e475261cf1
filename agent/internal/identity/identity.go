// Package identity is the agent's identity: who the server is (server id,
// UAI, academy), which controller it belongs to, and the keys it made
// itself at enrollment: an ed25519 TLS key (its client certificate is
// issued by the controller's CA and renewed at two thirds of its life) and
// an age X25519 identity (the controller seals the server's secrets to
// it). No private key ever leaves the server.
//
// Everything is kept in one file of the state directory, identity.json,
// readable by root only and written atomically, so that an enrollment or
// a renewal is never half done. The academy's root of trust, pinned at
// enrollment, is kept apart in root.json: it rotates on its own.
//
// Who may import it: the agent (agent/…).
package identity

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/alize-eple/alize/agent/internal/state"
	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/modules/manifest"
)

// The identity's files in the state directory.
const (
	File     = "identity.json"
	RootFile = "root.json"
)

// ErrNotEnrolled: the server has no identity yet.
var ErrNotEnrolled = errors.New("this server is not enrolled: ask the academy's operator for an enrollment token, then run: alize enroll URL --token TOKEN")

// AlreadyEnrolledError: enroll was asked on an enrolled server without
// --force.
type AlreadyEnrolledError struct{ ServerID, Controller string }

func (e *AlreadyEnrolledError) Error() string {
	return fmt.Sprintf("this server is already enrolled as %s with %s: to enroll it again (its keys, manifest and pending reports are replaced), add --force", e.ServerID, e.Controller)
}

// stored is identity.json.
type stored struct {
	ServerID    string        `json:"server_id"`
	UAI         string        `json:"uai"`
	Academy     string        `json:"academy"`
	Controller  string        `json:"controller"`
	Enrolled    time.Time     `json:"enrolled"`
	Poll        api.PollHints `json:"poll"`
	Key         string        `json:"tls_key"`     // PEM, PKCS #8 ed25519
	Certificate string        `json:"certificate"` // PEM
	CA          string        `json:"ca"`          // PEM
	AgeIdentity string        `json:"age_identity"`
}

// Identity is an enrolled server's identity. Its certificate may be
// renewed while it is in use; everything else is fixed.
type Identity struct {
	ServerID   string
	UAI        string
	Academy    string
	Controller string // the controller's address: "https://alize.ac-versailles.fr"
	Enrolled   time.Time
	Poll       api.PollHints

	store *state.Store
	key   ed25519.PrivateKey
	ca    *x509.Certificate
	pool  *x509.CertPool
	age   *age.X25519Identity

	sessions *api.SessionCache // emptied at each renewal

	mu   sync.Mutex
	s    stored
	cert *tls.Certificate // Leaf set
}

// Load reads the server's identity. ErrNotEnrolled when there is none; a
// *state.CorruptError when identity.json does not decode (it is set aside:
// the server must be enrolled again).
func Load(s *state.Store) (*Identity, error) {
	var st stored
	if err := s.ReadJSON(File, &st); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, ErrNotEnrolled
		}
		return nil, err
	}
	id, err := fromStored(s, st)
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w", s.Path(File), err)
	}
	return id, nil
}

func fromStored(s *state.Store, st stored) (*Identity, error) {
	id := &Identity{
		ServerID: st.ServerID, UAI: st.UAI, Academy: st.Academy, Controller: st.Controller,
		Enrolled: st.Enrolled, Poll: st.Poll, store: s, s: st, sessions: api.NewSessionCache(),
	}
	if id.ServerID == "" || id.Controller == "" {
		return nil, errors.New("no server id or controller")
	}
	block, _ := pem.Decode([]byte(st.Key))
	if block == nil {
		return nil, errors.New("no TLS key")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("TLS key: %w", err)
	}
	var ok bool
	if id.key, ok = k.(ed25519.PrivateKey); !ok {
		return nil, errors.New("TLS key: not ed25519")
	}
	if id.ca, err = parseCert(st.CA); err != nil {
		return nil, fmt.Errorf("controller CA: %w", err)
	}
	id.pool = x509.NewCertPool()
	id.pool.AddCert(id.ca)
	if id.cert, err = id.tlsCert(st.Certificate); err != nil {
		return nil, err
	}
	if id.age, err = age.ParseX25519Identity(st.AgeIdentity); err != nil {
		return nil, errors.New("age identity: not an AGE-SECRET-KEY")
	}
	return id, nil
}

func parseCert(p string) (*x509.Certificate, error) {
	block, _ := pem.Decode([]byte(p))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

// tlsCert makes the client certificate of a PEM certificate, checking it
// is for this identity's key.
func (id *Identity) tlsCert(certPEM string) (*tls.Certificate, error) {
	leaf, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	pub, ok := leaf.PublicKey.(ed25519.PublicKey)
	if !ok || !pub.Equal(id.key.Public()) {
		return nil, errors.New("client certificate: not for this server's key")
	}
	return &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: id.key, Leaf: leaf}, nil
}

// Certificate is the current client certificate.
func (id *Identity) Certificate() *x509.Certificate {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.cert.Leaf
}

// CA is the controller's CA certificate.
func (id *Identity) CA() *x509.Certificate { return id.ca }

// AgeIdentity opens the secrets sealed to this server.
func (id *Identity) AgeIdentity() *age.X25519Identity { return id.age }

// AgeRecipient is the public half of AgeIdentity ("age1…").
func (id *Identity) AgeRecipient() string { return id.age.Recipient().String() }

func (id *Identity) clientCert() (*tls.Certificate, error) {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.cert, nil
}

// TLSConfig is the agent's mutual TLS configuration with its controller:
// the controller's CA, this server's current certificate (renewals
// included). The firewall kind probes the controller with it.
func (id *Identity) TLSConfig() *tls.Config {
	return api.AgentTLS(id.pool, id.clientCert, id.sessions)
}

// Client returns an API client over mutual TLS: the controller's CA, this
// server's current certificate.
func (id *Identity) Client(userAgent string) (*api.Client, error) {
	return api.NewClient(id.Controller, api.NewHTTPClient(id.TLSConfig()), userAgent)
}

// RenewDue reports whether the certificate has passed two thirds of its
// life at now.
func (id *Identity) RenewDue(now time.Time) bool {
	c := id.Certificate()
	life := c.NotAfter.Sub(c.NotBefore)
	return !now.Before(c.NotBefore.Add(life * 2 / 3))
}

// Expired reports whether the certificate has expired at now.
func (id *Identity) Expired(now time.Time) bool { return !now.Before(id.Certificate().NotAfter) }

// Renew gets a new certificate for the same key through c (mutual TLS,
// with the current certificate) and saves it.
func (id *Identity) Renew(ctx context.Context, c *api.Client) error {
	csr, err := makeCSR(id.key)
	if err != nil {
		return err
	}
	resp, err := c.Renew(ctx, api.RenewRequest{CSR: csr})
	if err != nil {
		return fmt.Errorf("renew certificate: %w", err)
	}
	return id.setCert(resp.Certificate)
}

// RenewExpired gets a new certificate when the current one has expired (a
// server switched off for the summer): without a client certificate,
// proving possession of the registered key by signing
// api.ProofMessage(server id, CSR, now).
func (id *Identity) RenewExpired(ctx context.Context, userAgent string, now time.Time) error {
	csr, err := makeCSR(id.key)
	if err != nil {
		return err
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: id.pool}
	c, err := api.NewClient(id.Controller, api.NewHTTPClient(conf), userAgent)
	if err != nil {
		return err
	}
	now = now.UTC().Truncate(time.Second)
	req := api.RenewRequest{
		CSR:      csr,
		ServerID: id.ServerID,
		Proof:    &api.Proof{Time: now, Signature: ed25519.Sign(id.key, api.ProofMessage(id.ServerID, csr, now))},
	}
	resp, err := c.RenewExpired(ctx, req)
	if err != nil {
		return fmt.Errorf("renew expired certificate: %w", err)
	}
	return id.setCert(resp.Certificate)
}

func (id *Identity) setCert(certPEM string) error {
	c, err := id.tlsCert(certPEM)
	if err != nil {
		return fmt.Errorf("renewed certificate: %w", err)
	}
	if err := verifyClientCert(c.Leaf, id.pool); err != nil {
		return fmt.Errorf("renewed certificate: %w", err)
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	st := id.s
	st.Certificate = certPEM
	if err := id.store.WriteJSON(File, st); err != nil {
		return err
	}
	id.s, id.cert = st, c
	id.sessions.Clear() // a resumed session would present the old certificate
	return nil
}

func verifyClientCert(leaf *x509.Certificate, pool *x509.CertPool) error {
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: leaf.NotBefore.Add(time.Second)})
	if err != nil {
		return fmt.Errorf("not issued by the controller's CA: %w", err)
	}
	return nil
}

func makeCSR(key ed25519.PrivateKey) (string, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alize agent"}}, key)
	if err != nil {
		return "", fmt.Errorf("certificate request: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

// EnrollOptions is what Enroll needs.
type EnrollOptions struct {
	URL       string // the controller's address
	Token     string // the operator's one-time token
	Force     bool   // enroll again an enrolled server
	Facts     api.Facts
	UserAgent string
	Now       func() time.Time
	// HTTPClient builds the HTTP client for a TLS configuration (a test
	// seam); nil for api.NewHTTPClient.
	HTTPClient func(*tls.Config) *http.Client
}

// Enroll makes the server's keys, enrolls it with the controller named by
// opts.URL, trusting the controller through the CA hash the token
// carries, pins the academy's root, and saves the identity. It refuses an
// enrolled server unless opts.Force is set.
func Enroll(ctx context.Context, s *state.Store, opts EnrollOptions) (*Identity, error) {
	tok, err := api.ParseToken(opts.Token)
	if err != nil {
		return nil, err
	}
	if old, err := Load(s); err == nil && !opts.Force {
		return nil, &AlreadyEnrolledError{ServerID: old.ServerID, Controller: old.Controller}
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("enroll: make TLS key: %w", err)
	}
	ageID, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("enroll: make age identity: %w", err)
	}
	csr, err := makeCSR(key)
	if err != nil {
		return nil, err
	}
	newHTTP := opts.HTTPClient
	if newHTTP == nil {
		newHTTP = api.NewHTTPClient
	}
	c, err := api.NewClient(strings.TrimSuffix(opts.URL, "/"), newHTTP(api.EnrollTLS(tok.CAHash)), opts.UserAgent)
	if err != nil {
		return nil, err
	}
	resp, err := c.Enroll(ctx, api.EnrollRequest{Token: opts.Token, CSR: csr, AgeRecipient: ageID.Recipient().String(), Facts: opts.Facts})
	if err != nil {
		if api.IsCode(err, api.CodeInvalidToken) {
			return nil, fmt.Errorf("enroll: the controller refused the token (%w): ask the operator for a new one", err)
		}
		return nil, fmt.Errorf("enroll: %w", err)
	}

	// Check everything before anything is written.
	ca, err := parseCert(resp.CA)
	if err != nil {
		return nil, fmt.Errorf("enroll: the controller's CA: %w", err)
	}
	if api.CAHash(ca) != tok.CAHash {
		return nil, fmt.Errorf("enroll: the controller sent a CA other than the one the token names (%s)", tok.CAHash)
	}
	st := stored{
		ServerID: resp.ServerID, UAI: resp.UAI, Academy: resp.Academy,
		Controller: c.BaseURL(), Enrolled: opts.Now().UTC(), Poll: resp.Poll,
		Certificate: resp.Certificate, CA: resp.CA, AgeIdentity: ageID.String(),
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	st.Key = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	id, err := fromStored(s, st)
	if err != nil {
		return nil, fmt.Errorf("enroll: the controller's answer: %w", err)
	}
	if err := verifyClientCert(id.cert.Leaf, id.pool); err != nil {
		return nil, fmt.Errorf("enroll: the client certificate: %w", err)
	}
	trust, err := manifest.PinRoot(resp.Root)
	if err != nil {
		return nil, fmt.Errorf("enroll: the academy's root of trust: %w", err)
	}
	// The root first: identity.json is what makes the server enrolled.
	if err := SaveTrust(s, trust); err != nil {
		return nil, err
	}
	if err := s.WriteJSON(File, st); err != nil {
		return nil, err
	}
	return id, nil
}

// LoadTrust pins the root saved in the state directory.
func LoadTrust(s *state.Store) (*manifest.Trust, error) {
	env, err := s.ReadFile(RootFile)
	if err != nil {
		return nil, fmt.Errorf("pinned root: %w", err)
	}
	t, err := manifest.PinRoot(env)
	if err != nil {
		return nil, fmt.Errorf("pinned root %s: %w", s.Path(RootFile), err)
	}
	return t, nil
}

// SaveTrust saves the pinned root (at enrollment, and after a rotation).
func SaveTrust(s *state.Store, t *manifest.Trust) error {
	return s.WriteFile(RootFile, t.Envelope(), 0o600)
}
