package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/controller/internal/ctltest"
	"github.com/alize-eple/alize/controller/internal/store"
	"github.com/alize-eple/alize/modules"
)

// The inventory every test starts with.
const (
	lyceeUAI   = "0951099D" // versailles, lycée
	collegeUAI = "0780001C" // versailles, collège
	creteilUAI = "0930001W" // créteil, collège
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t.IsZero() {
		return time.Now()
	}
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

type env struct {
	t        *testing.T
	st       store.Store
	ctl      *Controller
	url      string
	keys     *ctltest.Keys
	clock    *clock
	admin    *ctltest.Operator
	stateDir string
	cancel   context.CancelFunc
	done     chan error
}

type envOptions struct {
	store    store.Store // default: a new SQLite store
	stateDir string      // default: a new directory
	keys     *ctltest.Keys
	settings func(*Settings)
	checkers map[string]modules.SpecChecker // default: ctltest.Checkers()
	noSetup  bool
}

func openSQLite(t *testing.T) store.Store {
	t.Helper()
	s, err := store.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "controller.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newEnv starts a controller on 127.0.0.1 and, unless noSetup, makes the
// academies and establishments of the tests.
func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	if o.store == nil {
		o.store = openSQLite(t)
	}
	if o.stateDir == "" {
		o.stateDir = t.TempDir()
	}
	if o.keys == nil {
		o.keys = ctltest.NewKeys(t)
	}
	if o.checkers == nil {
		o.checkers = ctltest.Checkers()
	}
	settings := DefaultSettings()
	if o.settings != nil {
		o.settings(&settings)
	}
	e := &env{t: t, st: o.store, keys: o.keys, clock: &clock{}, stateDir: o.stateDir, done: make(chan error, 1)}
	ctl, err := New(t.Context(), Config{
		StateDir: o.stateDir, KeysDir: o.keys.Dir, Names: []string{"127.0.0.1"}, Store: o.store,
		Checkers: o.checkers, Settings: settings, Clock: e.clock.Now, Log: ctltest.Logger(t),
		ShutdownGrace: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.ctl = ctl
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.url = "https://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { e.done <- ctl.Serve(ctx, ln) }()
	t.Cleanup(e.stop)
	token, err := os.ReadFile(filepath.Join(o.stateDir, InitialAdminTokenFile))
	if err != nil && !o.noSetup {
		t.Fatal(err)
	}
	e.admin = e.operator(string(token))
	if !o.noSetup {
		e.setup()
	}
	return e
}

// stop shuts the controller down, once.
func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Errorf("Serve() = %v", err)
		}
	case <-time.After(20 * time.Second):
		e.t.Error("Serve() did not return 20 s after its context ended")
	}
}

func (e *env) pool() *x509.CertPool { return e.ctl.CA.Pool() }

// operator is an operator client with token.
func (e *env) operator(token string) *ctltest.Operator {
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.pool()}}}
	e.t.Cleanup(c.CloseIdleConnections)
	return &ctltest.Operator{URL: e.url, Token: token, Client: c}
}

// do calls an operator route as op and fails the test on an error.
func (e *env) do(op *ctltest.Operator, method, path string, in, out any) {
	e.t.Helper()
	if err := op.Do(context.Background(), method, path, in, out); err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
}

func (e *env) setup() {
	e.t.Helper()
	for _, a := range []api.Academy{{Name: "versailles", Title: "Académie de Versailles"}, {Name: "creteil", Title: "Académie de Créteil"}} {
		e.do(e.admin, "POST", api.PathAdminAcademies, a, nil)
	}
	for _, est := range []api.Establishment{
		{UAI: lyceeUAI, Academy: "versailles", Name: "Lycée Camille Pissarro", Type: api.TypeLycee, Zone: "C"},
		{UAI: collegeUAI, Academy: "versailles", Name: "Collège Jean Moulin", Type: api.TypeCollege, Zone: "C"},
		{UAI: creteilUAI, Academy: "creteil", Name: "Collège Pablo Neruda", Type: api.TypeCollege, Zone: "C"},
	} {
		e.do(e.admin, "POST", api.PathAdminEstablishments, api.EstablishmentRequest{Establishment: est}, nil)
	}
}

// publish signs and publishes version v of the test module.
func (e *env) publish(v string, counter uint64) {
	e.t.Helper()
	def := ctltest.NoteModule(v)
	e.do(e.admin, "POST", api.PathAdminModules, api.PublishRequest{Definition: string(def), Release: e.keys.Sign(e.t, def, counter)}, nil)
}

// token makes an enrollment token for a server of uai.
func (e *env) token(uai, serverID string) string {
	e.t.Helper()
	var resp api.TokenResponse
	e.do(e.admin, "POST", api.PathAdminTokens, api.TokenRequest{UAI: uai, ServerID: serverID, Role: "amon"}, &resp)
	return resp.Token
}

// agent enrolls a new agent in uai.
func (e *env) agent(uai, serverID string) *ctltest.Agent {
	e.t.Helper()
	a := ctltest.NewAgent(e.url)
	a.Now = e.clock.Now
	if _, err := a.Enroll(context.Background(), e.token(uai, serverID)); err != nil {
		e.t.Fatalf("Enroll: %v", err)
	}
	e.t.Cleanup(func() { a.Client().CloseIdleConnections() })
	return a
}

func (e *env) setVar(level, name string, value any) *api.Plan {
	e.t.Helper()
	b, _ := json.Marshal(value)
	var p api.Plan
	e.do(e.admin, "POST", api.PathAdminVariables, api.VariableRequest{Level: level, Name: name, Value: b}, &p)
	return &p
}

func (e *env) server(id string) api.ServerDetail {
	e.t.Helper()
	var d api.ServerDetail
	e.do(e.admin, "GET", api.PathAdminServers+"/"+id, nil, &d)
	return d
}

// auditCount is the number of audit entries.
func (e *env) auditCount() int {
	e.t.Helper()
	es, err := e.st.Audit(context.Background(), store.AuditFilter{Limit: 100000})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(es)
}
