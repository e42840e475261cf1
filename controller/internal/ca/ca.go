// Package ca is the controller's certificate authority: made at first
// start (key files 0600), it signs the controller's own TLS certificate
// and the agents' short-lived client certificates, checks the CSRs agents
// send and their proofs of possession for renewing an expired
// certificate.
//
// Who may import it: controller packages only.
package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/modules/atomic"
)

// Lifetimes.
const (
	caLifetime     = 20 * 365 * 24 * time.Hour
	serverLifetime = 365 * 24 * time.Hour
	serverRenew    = 30 * 24 * time.Hour // a server certificate is remade this long before it ends
	// backdate: certificates start a little in the past, for clocks
	// slightly behind the controller's.
	backdate = 5 * time.Minute
)

// CA is the controller's certificate authority.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
}

// File names in the CA directory.
const (
	CertFile       = "ca.crt"
	KeyFile        = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
)

// LoadOrCreate loads the CA from dir, or makes it when dir holds none.
// created tells which.
func LoadOrCreate(dir string, now time.Time) (c *CA, created bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("ca: %w", err)
	}
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	if _, err := os.Stat(certPath); err == nil {
		c, err := Load(dir)
		return c, false, err
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("ca: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("ca: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "Alizé controller CA", Organization: []string{"Alizé"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, false, fmt.Errorf("ca: %w", err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, false, err
	}
	if err := writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, false, err
	}
	c, err = Load(dir)
	return c, true, err
}

// Load loads the CA from dir.
func Load(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("ca: %s: %w", CertFile, err)
	}
	key, err := readKey(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, err
	}
	if !publicEqual(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("ca: %s does not match %s", KeyFile, CertFile)
	}
	return &CA{cert: cert, certPEM: certPEM, key: key}, nil
}

// Certificate is the CA certificate.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// PEM is the CA certificate, PEM-encoded.
func (c *CA) PEM() []byte { return bytes.Clone(c.certPEM) }

// Hash is the hash an enrollment token carries: "sha256:<hex>" of the
// CA's SubjectPublicKeyInfo.
func (c *CA) Hash() string { return api.CAHash(c.cert) }

// Pool is a pool holding the CA alone.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// ServerCertificate returns the controller's TLS certificate for names
// (DNS names or IP addresses), from dir when the one there covers them
// and is not near its end, else a new one written there.
func (c *CA) ServerCertificate(dir string, names []string, now time.Time) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile)
	if tc, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		leaf := tc.Leaf
		if leaf != nil && now.Before(leaf.NotAfter.Add(-serverRenew)) && coversNames(leaf, names) && leaf.CheckSignatureFrom(c.cert) == nil {
			return tc, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("ca: server certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(serverLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("ca: server certificate: %w", err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return tls.Certificate{}, err
	}
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), c.certPEM...)
	if err := writeFile(certPath, chain, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(certPath, keyPath)
}

func coversNames(leaf *x509.Certificate, names []string) bool {
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(leaf.DNSNames, n) {
			return false
		}
	}
	return true
}

// Issued is a client certificate the CA issued.
type Issued struct {
	PEM       []byte
	Serial    string // hex
	NotBefore time.Time
	NotAfter  time.Time
}

// IssueClient issues a client certificate for a server's key, named
// after the server id.
func (c *CA) IssueClient(pub crypto.PublicKey, serverID string, now time.Time, lifetime time.Duration) (Issued, error) {
	serial := randomSerial()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: serverID, OrganizationalUnit: []string{"alize-agent"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key)
	if err != nil {
		return Issued{}, fmt.Errorf("ca: issue: %w", err)
	}
	return Issued{
		PEM:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Serial:    SerialString(serial),
		NotBefore: tmpl.NotBefore,
		NotAfter:  tmpl.NotAfter,
	}, nil
}

// SerialString is how serials are kept in the store and the deny-list.
func SerialString(n *big.Int) string { return hex.EncodeToString(n.Bytes()) }

func randomSerial() *big.Int {
	b := make([]byte, 16)
	rand.Read(b)
	b[0] &= 0x7f
	b[0] |= 0x40 // always 16 bytes, always positive
	return new(big.Int).SetBytes(b)
}

// MaxCSR bounds a CSR in PEM.
const MaxCSR = 16 << 10

// ParseCSR reads an agent's CSR: PEM, a valid self-signature, and a key
// of a type agents use (ECDSA P-256 or ed25519).
func ParseCSR(text string) (*x509.CertificateRequest, error) {
	if len(text) > MaxCSR {
		return nil, fmt.Errorf("csr: larger than %d bytes", MaxCSR)
	}
	block, rest := pem.Decode([]byte(text))
	if block == nil || block.Type != "CERTIFICATE REQUEST" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("csr: not one PEM \"CERTIFICATE REQUEST\" block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr: signature: %w", err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("csr: ECDSA keys must be P-256")
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("csr: %T keys are not accepted: use ECDSA P-256 or ed25519", csr.PublicKey)
	}
	return csr, nil
}

// SPKI returns the DER SubjectPublicKeyInfo of a public key: how the
// store remembers a server's registered key.
func SPKI(pub crypto.PublicKey) ([]byte, error) {
	return x509.MarshalPKIXPublicKey(pub)
}

// VerifyProof checks a signature by the key whose SubjectPublicKeyInfo is
// spki over msg: ed25519 signs msg itself; ECDSA signs its SHA-256 (ASN.1
// signature), as crypto.Signer.Sign(rand, sha256(msg), crypto.SHA256)
// makes it.
func VerifyProof(spki, msg, sig []byte) error {
	pub, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		return fmt.Errorf("proof: registered key: %w", err)
	}
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if ed25519.Verify(k, msg, sig) {
			return nil
		}
	case *ecdsa.PublicKey:
		sum := sha256.Sum256(msg)
		if ecdsa.VerifyASN1(k, sum[:], sig) {
			return nil
		}
	default:
		return fmt.Errorf("proof: registered key of type %T", pub)
	}
	return errors.New("proof: the signature does not verify with the registered key")
}

func publicEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func readKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("ca: %s: not a PEM \"PRIVATE KEY\"", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: %s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("ca: %s: not a signing key", path)
	}
	return s, nil
}

// writeFile writes atomically: a temporary file with mode, fsync, rename.
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := atomic.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	return nil
}
