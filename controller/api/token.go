package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// TokenPrefix starts every enrollment token.
const TokenPrefix = "alize1"

// Token is a one-time enrollment token, as an operator hands it to a
// technician: "alize1.<id>.<secret>.<ca-hash>". The id finds the token in
// the controller's store (which keeps only a hash of the secret); the
// secret proves the bearer got it from the operator; the CA hash
// ("sha256:<hex>" of the controller CA certificate's SubjectPublicKeyInfo,
// as kubeadm's discovery hash) lets the agent trust the controller without
// any prior secret.
type Token struct {
	ID     string
	Secret string
	CAHash string
}

// String is the token as a technician types it.
func (t Token) String() string {
	return strings.Join([]string{TokenPrefix, t.ID, t.Secret, strings.TrimPrefix(t.CAHash, "sha256:")}, ".")
}

// ParseToken reads a token. Its errors never repeat the token.
func ParseToken(s string) (Token, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 4 || parts[0] != TokenPrefix {
		return Token{}, errors.New("enrollment token: not of the form alize1.<id>.<secret>.<ca-hash>: copy it again from the operator's message")
	}
	if !isToken(parts[1], 8, 32) {
		return Token{}, errors.New("enrollment token: bad id part")
	}
	if !isToken(parts[2], 32, 64) {
		return Token{}, errors.New("enrollment token: bad secret part")
	}
	if len(parts[3]) != 64 || !isHex(parts[3]) {
		return Token{}, errors.New("enrollment token: bad CA hash part (want 64 hex digits)")
	}
	return Token{ID: parts[1], Secret: parts[2], CAHash: "sha256:" + strings.ToLower(parts[3])}, nil
}

func isToken(s string, min, max int) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// CAHash is the hash a token carries for a CA certificate:
// "sha256:<hex>" of its SubjectPublicKeyInfo.
func CAHash(ca *x509.Certificate) string {
	sum := sha256.Sum256(ca.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// CheckCAHash reports whether one of the certificates (a TLS peer's chain)
// is the CA the token names. The agent enrolls only with a controller
// whose chain contains that CA.
func CheckCAHash(chain []*x509.Certificate, want string) error {
	for _, c := range chain {
		if subtle.ConstantTimeCompare([]byte(CAHash(c)), []byte(want)) == 1 {
			return nil
		}
	}
	return fmt.Errorf("the controller's certificate chain does not contain the CA named by the token (%s): wrong controller address, or an interception", want)
}
