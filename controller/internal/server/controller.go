package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/controller/internal/ca"
	"github.com/alize-eple/alize/controller/internal/director"
	"github.com/alize-eple/alize/controller/internal/keys"
	"github.com/alize-eple/alize/controller/internal/store"
	"github.com/alize-eple/alize/modules"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is what a Controller is made of.
type Config struct {
	// StateDir holds the CA (ca/), the secrets key and, by default, the
	// keys directory and the SQLite database.
	StateDir string
	// KeysDir holds the root chain (root-N.json) and the director key;
	// default StateDir/keys.
	KeysDir string
	// Names are the DNS names and addresses agents reach the controller
	// by: its TLS certificate covers them.
	Names    []string
	Store    store.Store
	Checkers map[string]modules.SpecChecker
	Settings Settings
	// BuildGC: see director.Config (0 leaves the collector alone).
	BuildGC int
	// ManifestTTL, RenewBefore: see director.Config. RefreshEvery: how
	// often manifests close to their end are looked for.
	ManifestTTL  time.Duration
	RenewBefore  time.Duration
	RefreshEvery time.Duration
	// ShutdownGrace: how long requests in flight may take to finish.
	ShutdownGrace time.Duration
	Clock         func() time.Time
	Log           *slog.Logger
}

// InitialAdminTokenFile is written in the state directory at first
// start: the token of the first fleet admin.
const InitialAdminTokenFile = "initial-admin.token"

// Controller is a running controller: its handler, TLS and background
// work.
type Controller struct {
	cfg      Config
	srv      *srv
	handler  http.Handler
	tls      *tls.Config
	drain    chan struct{}
	Director *director.Director
	CA       *ca.CA
}

// New makes a Controller: the CA (made at first start), the server
// certificate, the root chain, the director keys, the deny-list, the
// first fleet admin's token at first start.
func New(ctx context.Context, cfg Config) (*Controller, error) {
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.KeysDir == "" {
		cfg.KeysDir = filepath.Join(cfg.StateDir, "keys")
	}
	if cfg.RefreshEvery == 0 {
		cfg.RefreshEvery = time.Hour
	}
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = 30 * time.Second
	}
	if len(cfg.Names) == 0 {
		cfg.Names = []string{"localhost", "127.0.0.1"}
	}
	cfg.Settings.KeysDir = cfg.KeysDir
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, err
	}
	now := cfg.Clock()
	authority, created, err := ca.LoadOrCreate(filepath.Join(cfg.StateDir, "ca"), now)
	if err != nil {
		return nil, err
	}
	if created {
		cfg.Log.Info("CA created", "dir", filepath.Join(cfg.StateDir, "ca"), "ca_hash", authority.Hash())
	}
	cert, err := authority.ServerCertificate(filepath.Join(cfg.StateDir, "ca"), cfg.Names, now)
	if err != nil {
		return nil, err
	}
	secrets, err := keys.LoadOrCreateSecretBox(filepath.Join(cfg.StateDir, keys.SecretsKeyFile))
	if err != nil {
		return nil, err
	}
	roots, err := LoadRoots(ctx, cfg.Store, cfg.KeysDir, now)
	if err != nil {
		return nil, fmt.Errorf("roots: %w", err)
	}
	dks, err := keys.DirectorKeys(cfg.KeysDir, roots.Current().Root())
	if err != nil {
		return nil, err
	}
	hub := NewHub()
	deny := &DenyList{}
	if err := deny.Load(ctx, cfg.Store); err != nil {
		return nil, err
	}
	d := director.New(director.Config{
		Store: cfg.Store, Keys: dks, Trust: roots.Current, Checkers: cfg.Checkers, Secrets: secrets,
		Clock: cfg.Clock, Log: cfg.Log.With("component", "director"),
		ManifestTTL: cfg.ManifestTTL, RenewBefore: cfg.RenewBefore, Signed: hub.Signed, BuildGC: cfg.BuildGC,
	})
	metrics := NewMetrics(nil)
	c := &Controller{cfg: cfg, drain: make(chan struct{}), Director: d, CA: authority}
	c.srv = newSrv(Deps{
		Store: cfg.Store, Director: d, CA: authority, Roots: roots, Hub: hub, Deny: deny, Metrics: metrics,
		Clock: cfg.Clock, Log: cfg.Log, Settings: cfg.Settings, Drain: c.drain,
	})
	c.handler = c.srv.handler()
	metrics.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "alize_long_polls", Help: "Long polls held now."},
			func() float64 { return float64(hub.Holding()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "alize_manifests_signed_total", Help: "Manifests signed by this replica."},
			func() float64 { n, _ := d.Stats(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "alize_manifest_builds_failed_total", Help: "Server manifests that could not be built."},
			func() float64 { _, n := d.Stats(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "alize_tls_revoked_refused_total", Help: "TLS handshakes refused for a revoked certificate."},
			func() float64 { return float64(deny.refused.Load()) }),
		newIndicatorCollector(func(ctx context.Context) (api.Indicators, error) {
			rows, err := c.srv.fleetRows(ctx, nil)
			if err != nil {
				return api.Indicators{}, err
			}
			return indicatorsOf(rows, cfg.Clock()), nil
		}, 15*time.Second),
	)
	c.tls = &tls.Config{
		MinVersion:       tls.VersionTLS12,
		Certificates:     []tls.Certificate{cert},
		ClientAuth:       tls.VerifyClientCertIfGiven,
		ClientCAs:        authority.Pool(),
		VerifyConnection: deny.VerifyConnection,
	}
	if err := c.bootstrapAdmin(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// bootstrapAdmin makes the first fleet admin when there is no operator,
// its token in a file only root reads.
func (c *Controller) bootstrapAdmin(ctx context.Context) error {
	ops, err := c.cfg.Store.Operators(ctx)
	if err != nil || len(ops) > 0 {
		return err
	}
	id, token, hash := NewOperatorToken()
	now := c.cfg.Clock().UTC()
	path := filepath.Join(c.cfg.StateDir, InitialAdminTokenFile)
	err = c.cfg.Store.Commit(ctx, &store.Batch{
		Operators: []store.Operator{{ID: id, Name: "admin", Role: api.RoleFleetAdmin, SecretHash: hash, Created: now, CreatedBy: "controller"}},
		Audit:     []store.AuditEntry{{Time: now, Actor: "controller", Action: "operator.create", Target: "operator:admin", Detail: []byte(`{"role":"fleet_admin","first":true}`)}},
	})
	if errors.Is(err, store.ErrConflict) {
		return nil // another replica, starting at the same time, made it
	}
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("the first fleet admin's token: %w", err)
	}
	if _, err := f.WriteString(token + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("the first fleet admin's token: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("the first fleet admin's token: %w", err)
	}
	c.cfg.Log.Info("first fleet admin created", "operator", "admin", "token_file", path)
	return nil
}

// Handler is the controller's HTTP handler.
func (c *Controller) Handler() http.Handler { return c.handler }

// TLSConfig is the controller's TLS: its certificate, client
// certificates of its CA when given, and the deny-list checked at the
// handshake.
func (c *Controller) TLSConfig() *tls.Config { return c.tls.Clone() }

// Serve serves HTTPS on ln until ctx ends, with the background work:
// other replicas' events, the re-signing of manifests close to their end,
// the poll times written to the store. At the end it drains: long polls
// answer at once with a retry hint, requests in flight finish (within
// ShutdownGrace).
func (c *Controller) Serve(ctx context.Context, ln net.Listener) error {
	log := c.cfg.Log
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()

	ready := make(chan struct{})
	wg.Go(func() {
		if err := c.cfg.Store.Listen(bg, ready, c.event); err != nil {
			log.Error("listen failed", "err", err)
		}
	})
	select {
	case <-ready:
	case <-ctx.Done():
		return nil
	}
	wg.Go(func() { c.Director.Run(bg, c.cfg.RefreshEvery) })
	wg.Go(func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-bg.Done():
				return
			case <-t.C:
				c.srv.Hub.drop(time.Now().Add(-time.Minute))
				if err := c.srv.seen.flush(bg, c.cfg.Store); err != nil && bg.Err() == nil {
					log.Error("poll times not saved", "err", err)
				}
				if err := c.srv.Deny.Load(bg, c.cfg.Store); err != nil && bg.Err() == nil {
					log.Error("deny-list reload failed", "err", err)
				}
			}
		}
	})

	hs := &http.Server{
		Handler:           c.handler,
		TLSConfig:         c.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(tls.NewListener(ln, hs.TLSConfig)) }()
	log.Info("serving", "addr", ln.Addr().String(), "store", c.cfg.Store.Dialect(), "ca_hash", c.CA.Hash())

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	close(c.drain) // long polls answer 503 with Retry-After now
	sctx, cancel := context.WithTimeout(context.Background(), c.cfg.ShutdownGrace)
	defer cancel()
	err := hs.Shutdown(sctx)
	if ferr := c.srv.seen.flush(sctx, c.cfg.Store); ferr != nil {
		log.Error("poll times not saved", "err", ferr)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		hs.Close()
	}
	log.Info("stopped")
	return err
}

// event handles what another replica committed.
func (c *Controller) event(ev store.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch ev.Kind {
	case store.EventManifests:
		c.srv.Hub.Wake(ev.IDs)
	case store.EventRevoked:
		if err := c.srv.Deny.Load(ctx, c.cfg.Store); err != nil {
			c.cfg.Log.Error("deny-list reload failed", "err", err)
		}
	case store.EventRoots:
		c.reloadRoots(ctx)
	case store.EventResync:
		c.srv.Hub.WakeAll()
		if err := c.srv.Deny.Load(ctx, c.cfg.Store); err != nil {
			c.cfg.Log.Error("deny-list reload failed", "err", err)
		}
		c.reloadRoots(ctx)
	}
}

func (c *Controller) reloadRoots(ctx context.Context) {
	roots, err := LoadRoots(ctx, c.cfg.Store, c.cfg.KeysDir, c.cfg.Clock())
	if err != nil {
		c.cfg.Log.Error("roots reload failed", "err", err)
		return
	}
	if roots.Current().Version() == c.srv.Roots.Current().Version() {
		return
	}
	dks, err := keys.DirectorKeys(c.cfg.KeysDir, roots.Current().Root())
	if err != nil {
		c.cfg.Log.Error("roots reload: no director key for the new root", "version", roots.Current().Version(), "err", err)
		return
	}
	c.srv.Roots.set(roots.Current(), roots.envelopes)
	c.Director.SetKeys(dks)
	c.cfg.Log.Info("new root", "version", roots.Current().Version())
}
