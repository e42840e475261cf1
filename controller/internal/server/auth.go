package server

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/controller/internal/store"
)

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// randomWord returns n random bytes as lowercase base32.
func randomWord(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return lowerBase32.EncodeToString(b)
}

func hashSecret(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// NewOperatorToken makes an operator's id, bearer token and the hash the
// store keeps.
func NewOperatorToken() (id, token string, hash []byte) {
	id, secret := randomWord(10), randomWord(32)
	return id, api.OperatorTokenPrefix + "." + id + "." + secret, hashSecret(secret)
}

// caller is the operator behind a request.
type caller struct {
	store.Operator
}

// authenticate finds the operator of the request's bearer token.
func (s *srv) authenticate(r *http.Request) (*caller, error) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return nil, apiError(http.StatusUnauthorized, api.CodeUnauthorized, "this route needs an operator token: Authorization: Bearer alizeop1.…")
	}
	parts := strings.Split(strings.TrimSpace(tok), ".")
	if len(parts) != 3 || parts[0] != api.OperatorTokenPrefix || len(parts[1]) > 64 || len(parts[2]) > 128 {
		return nil, apiError(http.StatusUnauthorized, api.CodeUnauthorized, "not an operator token (alizeop1.<id>.<secret>)")
	}
	op, err := s.Store.Operator(r.Context(), parts[1])
	if errors.Is(err, store.ErrNotFound) {
		return nil, apiError(http.StatusUnauthorized, api.CodeUnauthorized, "unknown operator token")
	}
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(op.SecretHash, hashSecret(parts[2])) != 1 {
		return nil, apiError(http.StatusUnauthorized, api.CodeUnauthorized, "unknown operator token")
	}
	if !op.Revoked.IsZero() {
		return nil, apiError(http.StatusUnauthorized, api.CodeUnauthorized, "this operator token was revoked")
	}
	return &caller{op}, nil
}

// name is how the audit log names the operator.
func (c *caller) name() string { return "operator:" + c.Name }

func (c *caller) fleetAdmin() bool { return c.Role == api.RoleFleetAdmin }

// canRead reports whether the operator may read an object of an academy
// ("" for fleet-level objects: modules, fleet variables) and, for
// objects of one establishment, its UAI.
func (c *caller) canRead(academy, uai string) bool {
	switch c.Role {
	case api.RoleFleetAdmin:
		return true
	case api.RoleViewer:
		return len(c.Scope) == 0 || academy == "" || slices.Contains(c.Scope, academy)
	case api.RoleAcademyAdmin:
		return academy == "" || slices.Contains(c.Scope, academy)
	case api.RoleTechnician:
		return uai != "" && len(c.Scope) == 1 && c.Scope[0] == uai
	}
	return false
}

// canWrite reports whether the operator may change an object of an
// academy; fleet-level objects ("") are the fleet admins'.
func (c *caller) canWrite(academy string) bool {
	switch c.Role {
	case api.RoleFleetAdmin:
		return true
	case api.RoleAcademyAdmin:
		return academy != "" && slices.Contains(c.Scope, academy)
	}
	return false
}

// seesAll: the operator reads every object (lists need no filtering).
func (c *caller) seesAll() bool {
	return c.Role == api.RoleFleetAdmin || (c.Role == api.RoleViewer && len(c.Scope) == 0)
}

// agentID is the server a request's client certificate names. The
// handshake refused revoked certificates; a connection opened before a
// revocation is refused here.
func (s *srv) agentID(r *http.Request) (string, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return "", apiError(http.StatusUnauthorized, api.CodeUnauthorized, "this route needs the agent's client certificate")
	}
	leaf := r.TLS.VerifiedChains[0][0]
	if s.Deny.Denied(leaf) {
		return "", apiError(http.StatusForbidden, api.CodeRevoked, "this server's certificate is revoked: enroll it again with a new token")
	}
	return leaf.Subject.CommonName, nil
}
