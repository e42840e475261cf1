package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/alize-eple/alize/controller/internal/ca"
	"github.com/alize-eple/alize/controller/internal/store"
)

// DenyList is the revocation deny-list the TLS handshake enforces: a
// certificate revoked by serial, or of a revoked server, is refused
// before any request is read.
type DenyList struct {
	mu      sync.RWMutex
	serials map[string]bool
	servers map[string]bool
	refused atomic.Uint64
}

// Load reads the deny-list from the store.
func (d *DenyList) Load(ctx context.Context, s store.Store) error {
	l, err := s.DenyList(ctx)
	if err != nil {
		return err
	}
	serials, servers := make(map[string]bool, len(l.Serials)), make(map[string]bool, len(l.Servers))
	for _, s := range l.Serials {
		serials[s] = true
	}
	for _, s := range l.Servers {
		servers[s] = true
	}
	d.mu.Lock()
	d.serials, d.servers = serials, servers
	d.mu.Unlock()
	return nil
}

// Denied reports whether a client certificate is on the deny-list.
func (d *DenyList) Denied(c *x509.Certificate) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.serials[ca.SerialString(c.SerialNumber)] || d.servers[c.Subject.CommonName]
}

var errRevoked = errors.New("alize: this client certificate is revoked")

// VerifyConnection is the tls.Config hook: it runs on every handshake,
// resumed sessions included (VerifyPeerCertificate does not run on those),
// after the chain verified, and refuses a revoked certificate.
func (d *DenyList) VerifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil // no client certificate: operator routes, enrollment
	}
	if d.Denied(cs.PeerCertificates[0]) {
		d.refused.Add(1)
		return errRevoked
	}
	return nil
}
