package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestTokenRoundTrip(t *testing.T) {
	tok := Token{ID: "k3x9a2bq", Secret: strings.Repeat("s3cr", 8), CAHash: "sha256:" + strings.Repeat("ab", 32)}
	got, err := ParseToken(" " + tok.String() + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if got != tok {
		t.Errorf("ParseToken(String()) = %+v, want %+v", got, tok)
	}
}

func TestParseTokenRefusesAndNeverEchoes(t *testing.T) {
	secret := strings.Repeat("z9", 16)
	for _, bad := range []string{
		"",
		"alize1.k3x9a2bq." + secret, // no CA hash
		"alize2.k3x9a2bq." + secret + "." + strings.Repeat("ab", 32),       // other prefix
		"alize1.K3X9A2BQ." + secret + "." + strings.Repeat("ab", 32),       // upper case id
		"alize1.k3x9a2bq.short." + strings.Repeat("ab", 32),                // short secret
		"alize1.k3x9a2bq." + secret + "." + strings.Repeat("zz", 32),       // not hex
		"alize1.k3x9a2bq." + secret + "." + strings.Repeat("ab", 31),       // short hash
		"alize1.k3x9a2bq." + secret + "/x." + strings.Repeat("ab", 32),     // bad character
		"alize1.k3x9a2bq." + secret + "." + strings.Repeat("ab", 32) + ".", // extra part
	} {
		_, err := ParseToken(bad)
		if err == nil {
			t.Errorf("ParseToken(%q) accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("ParseToken error repeats the secret: %v", err)
		}
	}
}

func selfSigned(t *testing.T) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "alize CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCheckCAHash(t *testing.T) {
	ca, other := selfSigned(t), selfSigned(t)
	if err := CheckCAHash([]*x509.Certificate{other, ca}, CAHash(ca)); err != nil {
		t.Errorf("CheckCAHash(chain with the CA) = %v", err)
	}
	if err := CheckCAHash([]*x509.Certificate{other}, CAHash(ca)); err == nil {
		t.Error("CheckCAHash(chain without the CA) accepted")
	}
}
