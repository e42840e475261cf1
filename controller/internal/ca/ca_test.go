package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alize-eple/alize/controller/api"
)

var now = time.Date(2025, 9, 1, 8, 0, 0, 0, time.UTC)

func TestLoadOrCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	c, created, err := LoadOrCreate(dir, now)
	if err != nil || !created {
		t.Fatalf("LoadOrCreate() = %v, %v", created, err)
	}
	for name, want := range map[string]os.FileMode{KeyFile: 0o600, CertFile: 0o644} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, %v; want %v", name, fi.Mode().Perm(), err, want)
		}
	}
	again, created, err := LoadOrCreate(dir, now)
	if err != nil || created || again.Hash() != c.Hash() {
		t.Errorf("LoadOrCreate() again = %v, %v, hash %s; want the same CA", created, err, again.Hash())
	}
	if !strings.HasPrefix(c.Hash(), "sha256:") || c.Hash() != api.CAHash(c.Certificate()) {
		t.Errorf("Hash() = %s", c.Hash())
	}
	// A key that is not the certificate's is refused.
	other := filepath.Join(t.TempDir(), "other")
	if _, _, err := LoadOrCreate(other, now); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(other, KeyFile))
	os.WriteFile(filepath.Join(dir, KeyFile), b, 0o600)
	if _, err := Load(dir); err == nil {
		t.Error("Load() with another CA's key: no error")
	}
}

func TestCertificates(t *testing.T) {
	dir := t.TempDir()
	c, _, err := LoadOrCreate(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := c.ServerCertificate(dir, []string{"alize.ac-versailles.fr", "127.0.0.1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, ServerKeyFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("server key mode %v", fi.Mode().Perm())
	}
	opts := x509.VerifyOptions{Roots: c.Pool(), DNSName: "alize.ac-versailles.fr", CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if _, err := sc.Leaf.Verify(opts); err != nil {
		t.Errorf("server certificate: %v", err)
	}
	// Kept while it covers the names and is far from its end; remade otherwise.
	same, _ := c.ServerCertificate(dir, []string{"alize.ac-versailles.fr"}, now.Add(time.Hour))
	if same.Leaf.SerialNumber.Cmp(sc.Leaf.SerialNumber) != 0 {
		t.Error("the server certificate was remade without need")
	}
	for _, tc := range []struct {
		names []string
		at    time.Time
	}{{[]string{"alize.ac-versailles.fr", "other.example"}, now}, {[]string{"alize.ac-versailles.fr"}, now.AddDate(0, 11, 15)}} {
		re, err := c.ServerCertificate(dir, tc.names, tc.at)
		if err != nil || re.Leaf.SerialNumber.Cmp(sc.Leaf.SerialNumber) == 0 {
			t.Errorf("ServerCertificate(%v, %v) kept the old certificate (%v)", tc.names, tc.at, err)
		}
	}

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	is, err := c.IssueClient(&key.PublicKey, "amon-1", now, 72*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(is.PEM)
	cert, _ := x509.ParseCertificate(b.Bytes)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: c.Pool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if cert.Subject.CommonName != "amon-1" || !is.NotAfter.Equal(now.Add(72*time.Hour)) || is.Serial != SerialString(cert.SerialNumber) {
		t.Errorf("client certificate %s, until %v, serial %s", cert.Subject.CommonName, is.NotAfter, is.Serial)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: c.Pool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("a client certificate verifies as a server's")
	}
}

func csrPEM(t *testing.T, key crypto.Signer) string {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func TestParseCSRAndProof(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, k := range []crypto.Signer{ec, ed} {
		if _, err := ParseCSR(csrPEM(t, k)); err != nil {
			t.Errorf("ParseCSR(%T) = %v", k, err)
		}
	}
	good := csrPEM(t, ec)
	tampered := strings.Replace(good, good[100:104], "AAAA", 1)
	for name, text := range map[string]string{
		"P-384": csrPEM(t, p384), "RSA": csrPEM(t, rs), "garbage": "hello", "tampered": tampered,
		"two blocks": good + good, "huge": strings.Repeat("A", MaxCSR+1),
	} {
		if _, err := ParseCSR(text); err == nil {
			t.Errorf("ParseCSR(%s) = nil error", name)
		}
	}
	msg := []byte("alize renew-expired v1")
	for _, k := range []crypto.Signer{ec, ed} {
		spki, _ := SPKI(k.Public())
		var sig []byte
		if _, ok := k.(ed25519.PrivateKey); ok {
			sig, _ = k.Sign(rand.Reader, msg, crypto.Hash(0))
		} else {
			sum := sha256.Sum256(msg)
			sig, _ = k.Sign(rand.Reader, sum[:], crypto.SHA256)
		}
		if err := VerifyProof(spki, msg, sig); err != nil {
			t.Errorf("VerifyProof(%T) = %v", k, err)
		}
		if err := VerifyProof(spki, []byte("other"), sig); err == nil {
			t.Errorf("VerifyProof(%T, other message) = nil error", k)
		}
	}
}
