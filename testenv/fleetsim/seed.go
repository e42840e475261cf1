package fleetsim

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"filippo.io/age"
	"github.com/alize-eple/alize/controller/api"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"
)

// Seeding stands in for enrollment beyond the first agents. Enrolling
// through the API costs the controller a load of its whole model per
// server (director.Apply of the first manifest reads every server,
// establishment and manifest), so enrolling N servers one by one is
// quadratic: about 1,000 a minute at the start on this machine, and
// hours for 17,000; adding establishments one by one is quadratic for
// the same reason. The rest of the fleet is therefore written straight
// into the controller's store as the API writes it (its establishments; a server row with
// its public key and age recipient, a client certificate row, the
// certificate signed by the controller's CA key), and one `push fleet`
// builds and signs their first manifests in one change. Everything that
// is measured afterwards (polls, manifests, verification, reports, the
// change) goes through the real API. The rows follow the store's schema
// (controller/internal/store/migrations): a migration that changes the
// establishments, servers or certificates tables must change seedRows
// too.

// seedCA is the controller's CA, read from its state directory.
type seedCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func readCA(state string) (*seedCA, error) {
	certPEM, err := os.ReadFile(filepath.Join(state, "ca", "ca.crt"))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(state, "ca", "ca.key"))
	if err != nil {
		return nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, errors.New("the controller's CA files are not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New("the controller's CA key cannot sign")
	}
	return &seedCA{cert: cert, key: signer}, nil
}

// seeded is one server written into the store.
type seeded struct {
	e      Enrollment
	spki   []byte
	age    string
	serial string
	cert   *tls.Certificate
	from   time.Time
	to     time.Time
}

// seed writes the servers of enr into the controller's store (database:
// "" for its SQLite file, or the PostgreSQL URL), builds their manifests
// with `push fleet`, and returns their agents, ready to run. It needs one
// agent enrolled through the API first: the root and CA it pinned are
// every agent's.
func (f *Fleet) seedServers(ctx context.Context, c *Controller, database string, enr []Enrollment, first int, lifetime time.Duration) ([]*agent, error) {
	if f.trust == nil {
		return nil, errors.New("seed: enroll one agent through the API first")
	}
	ca, err := readCA(c.State)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	now := time.Now()
	rows := make([]seeded, len(enr))
	err = parallel(ctx, len(enr), runtime.GOMAXPROCS(0), func(i int) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		ageID, err := age.GenerateX25519Identity()
		if err != nil {
			return err
		}
		spki, err := x509.MarshalPKIXPublicKey(key.Public())
		if err != nil {
			return err
		}
		// As the controller's CA issues client certificates.
		sb := make([]byte, 16)
		rand.Read(sb)
		sb[0] = sb[0]&0x7f | 0x40
		tmpl := &x509.Certificate{
			SerialNumber: new(big.Int).SetBytes(sb),
			Subject:      pkix.Name{CommonName: enr[i].ServerID, OrganizationalUnit: []string{"alize-agent"}},
			NotBefore:    now.Add(-5 * time.Minute), NotAfter: now.Add(lifetime),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
		if err != nil {
			return err
		}
		leaf, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		rows[i] = seeded{e: enr[i], spki: spki, age: ageID.Recipient().String(), serial: hex.EncodeToString(sb),
			cert: &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, from: tmpl.NotBefore, to: tmpl.NotAfter}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	if err := seedRows(ctx, c, database, rows, f.hints.IntervalSeconds, now); err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	var plan api.Plan
	if err := c.Do(ctx, http.MethodPost, api.PathAdminPush, api.PushRequest{Level: "fleet"}, &plan); err != nil {
		return nil, fmt.Errorf("seed: push fleet: %w", err)
	}
	if plan.Changed < len(enr) || plan.Failed > 0 {
		return nil, fmt.Errorf("seed: push fleet built %d manifests for %d seeded servers (%d failed)", plan.Changed, len(enr), plan.Failed)
	}
	agents := make([]*agent, len(rows))
	for i, r := range rows {
		cert := r.cert
		hc := api.NewHTTPClient(api.AgentTLS(f.caPool, func() (*tls.Certificate, error) { return cert, nil }, api.NewSessionCache()))
		client, err := api.NewClient(f.url, hc, "alize/"+AgentVersion)
		if err != nil {
			return nil, err
		}
		agents[i] = &agent{f: f, id: r.e.ServerID, uai: r.e.UAI, client: client, hints: f.hints,
			rnd: mrand.New(mrand.NewPCG(f.randSeed, uint64(first+i)))}
	}
	return agents, nil
}

// seedRows inserts the servers and their certificates in one transaction.
func seedRows(ctx context.Context, c *Controller, database string, rows []seeded, pollInterval int, now time.Time) error {
	driver, dsn := "pgx", database
	if database == "" {
		q := url.Values{}
		q.Add("_pragma", "busy_timeout(30000)")
		q.Add("_pragma", "foreign_keys(1)")
		driver, dsn = "sqlite", "file:"+(&url.URL{Path: filepath.Join(c.State, "controller.db")}).EscapedPath()+"?"+q.Encode()
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Their establishments first (adding one through the API also loads
	// the director's whole model: quadratic too).
	for _, r := range rows {
		var i int
		fmt.Sscanf(r.e.UAI, "%07d", &i)
		e := establishment(i - 750000)
		if _, err := tx.ExecContext(ctx, `INSERT INTO establishments (uai, academy, name, type, zone, created) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (uai) DO NOTHING`,
			e.UAI, e.Academy, e.Name, e.Type, e.Zone, now.UnixMicro()); err != nil {
			return fmt.Errorf("establishment %s: %w", e.UAI, err)
		}
	}
	for _, r := range rows {
		facts, _ := json.Marshal(api.Facts{Hostname: r.e.ServerID, AgentVersion: AgentVersion, OS: "Debian GNU/Linux 12 (bookworm)", Arch: "amd64"})
		if _, err := tx.ExecContext(ctx, `INSERT INTO servers (id, uai, role, facts, age_recipient, public_key, poll_interval, enrolled) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			r.e.ServerID, r.e.UAI, r.e.Role, string(facts), r.age, r.spki, pollInterval, now.UnixMicro()); err != nil {
			return fmt.Errorf("server %s: %w", r.e.ServerID, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO certificates (serial, server_id, not_before, not_after) VALUES ($1, $2, $3, $4)`,
			r.serial, r.e.ServerID, r.from.UnixMicro(), r.to.UnixMicro()); err != nil {
			return fmt.Errorf("certificate of %s: %w", r.e.ServerID, err)
		}
	}
	return tx.Commit()
}
