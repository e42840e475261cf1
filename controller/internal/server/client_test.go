package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/alize-eple/alize/controller/api"
)

// The agent's own client (controller/api.Client) against this controller,
// with an ed25519 key as the agent makes: enroll, poll, report, renew,
// renew after expiry by proof.
func TestAgentClientCompatibility(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	token := e.token(collegeUAI, "scribe-moulin")
	tok, err := api.ParseToken(token)
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	csr := func() string {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	}
	ageID, _ := age.GenerateX25519Identity()
	enroller, err := api.NewClient(e.url, api.NewHTTPClient(api.EnrollTLS(tok.CAHash)), "alize/test")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := enroller.Enroll(ctx, api.EnrollRequest{Token: token, CSR: csr(), AgeRecipient: ageID.Recipient().String()})
	if err != nil {
		t.Fatalf("Enroll() = %v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(resp.CA))
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	certPEM := []byte(resp.Certificate)
	cert := func() (*tls.Certificate, error) {
		c, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
		return &c, err
	}
	c, err := api.NewClient(e.url, api.NewHTTPClient(api.AgentTLS(pool, cert, nil)), "alize/test")
	if err != nil {
		t.Fatal(err)
	}
	ans, err := c.Manifest(ctx, "", 0)
	if err != nil || ans.NotModified || len(ans.Envelope) == 0 || ans.NextPoll != 5*time.Minute {
		t.Fatalf("Manifest() = %+v, %v", ans, err)
	}
	again, err := c.Manifest(ctx, ans.ETag, time.Second)
	if err != nil || !again.NotModified || again.NextPoll != time.Second {
		t.Errorf("Manifest(etag, 1s wait) = %+v, %v; want not modified, next poll in 1 s (back in a long poll at once)", again, err)
	}
	report, _ := json.Marshal(api.Report{ID: "r1", Serial: 1, Started: time.Now(), Finished: time.Now(), Outcome: api.OutcomeCompliant})
	if ack, err := c.Report(ctx, report); err != nil || ack.ID != "r1" {
		t.Errorf("Report() = %+v, %v", ack, err)
	}
	if _, err := c.Root(ctx, 1); err != nil {
		t.Errorf("Root(1) = %v", err)
	}
	r, err := c.Renew(ctx, api.RenewRequest{CSR: csr()})
	if err != nil {
		t.Fatalf("Renew() = %v", err)
	}
	certPEM = []byte(r.Certificate)
	// After the summer, without a certificate, by proof.
	now := time.Now().Add(30 * 24 * time.Hour)
	e.clock.Set(now)
	req := csr()
	proof := &api.Proof{Time: now, Signature: ed25519.Sign(key, api.ProofMessage(resp.ServerID, req, now))}
	if _, err := enroller.RenewExpired(ctx, api.RenewRequest{CSR: req, ServerID: resp.ServerID, Proof: proof}); err != nil {
		t.Errorf("RenewExpired() = %v", err)
	}
}
