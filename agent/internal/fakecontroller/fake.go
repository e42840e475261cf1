// Package fakecontroller is an in-process controller for the agent's
// tests: it implements the server side of controller/api over real TLS
// with a real CA (enrollment by token and CA hash, client certificates
// from the agent's CSR, renewal), and serves manifests really signed with
// modules/manifest (test keys) and compiled with modules/schema. It stands
// at the agent's process boundary only; the real controller is tested end
// to end in its own issue.
//
// Who may import it: agent tests only.
package fakecontroller

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/modules/manifest"
	"github.com/alize-eple/alize/modules/schema"
)

// TEST KEYS ONLY: derived from a public seed phrase, known to anyone who
// reads this file.
const testSeed = "alize fakecontroller TEST KEY, public, never use outside tests: "

// TestKey is a signing key derived from a public seed (tests only).
func TestKey(name string) *manifest.Key {
	seed := sha256.Sum256([]byte(testSeed + name))
	k, err := manifest.NewKey(ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		panic(err)
	}
	return k
}

// Options shape a fake controller.
type Options struct {
	ServerID, UAI, Academy string        // the identity given at enrollment
	Hints                  api.PollHints // given at enrollment
	NextPoll               int           // Alize-Next-Poll on manifest answers, seconds; 0 for none
	CertLifetime           time.Duration // of client certificates (default 24 h)
}

// Received is a report the controller got.
type Received struct {
	Report    api.Report
	Duplicate bool
}

// Controller is the fake controller.
type Controller struct {
	t    testing.TB
	opts Options

	ca       *x509.Certificate
	caKey    *ecdsa.PrivateKey
	caPEM    string
	tlsConf  *tls.Config
	RootKey  *manifest.Key
	Release  *manifest.Key
	Director *manifest.Key
	Stranger *manifest.Key // in no root
	roots    [][]byte      // root envelopes by version-1

	mu        sync.Mutex
	srv       *httptest.Server
	addr      string
	stopping  chan struct{}
	tokens    map[string]string // id → secret, until used
	recipient age.Recipient
	agentKey  ed25519.PublicKey
	certNo    int64
	envelope  []byte
	etag      string
	serial    uint64
	changed   chan struct{} // closed and replaced when the manifest changes
	blobs     map[string][]byte
	fetches   map[string]int
	reports   []Received
	seen      map[string]bool
	polls     int
	notMod    int
	unavail   int // seconds of Retry-After while unavailable; 0 when available
}

// New starts a fake controller on 127.0.0.1.
func New(t testing.TB, opts Options) *Controller {
	t.Helper()
	if opts.ServerID == "" {
		opts.ServerID = "srv-0951099D-01"
	}
	if opts.UAI == "" {
		opts.UAI = "0951099D"
	}
	if opts.Academy == "" {
		opts.Academy = "versailles"
	}
	if opts.CertLifetime == 0 {
		opts.CertLifetime = 24 * time.Hour
	}
	c := &Controller{
		t: t, opts: opts,
		RootKey: TestKey("root"), Release: TestKey("release"), Director: TestKey("director"), Stranger: TestKey("stranger"),
		tokens: map[string]string{}, changed: make(chan struct{}), blobs: map[string][]byte{}, fetches: map[string]int{}, seen: map[string]bool{},
	}
	c.makePKI()
	root := &manifest.Root{
		Version: 1,
		Expires: time.Now().AddDate(1, 0, 0),
		Keys: map[string]manifest.PublicKey{
			c.RootKey.ID(): c.RootKey.PublicKey(), c.Release.ID(): c.Release.PublicKey(), c.Director.ID(): c.Director.PublicKey(),
		},
		Roles: manifest.Roles{
			Root:     manifest.Role{KeyIDs: []string{c.RootKey.ID()}, Threshold: 1},
			Release:  manifest.Role{KeyIDs: []string{c.Release.ID()}, Threshold: 1},
			Director: manifest.Role{KeyIDs: []string{c.Director.ID()}, Threshold: 1},
		},
	}
	env, err := manifest.SignRoot(root, c.RootKey)
	if err != nil {
		t.Fatal(err)
	}
	c.roots = append(c.roots, env)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.addr = ln.Addr().String()
	c.start(ln)
	t.Cleanup(c.Stop)
	return c
}

func (c *Controller) makePKI() {
	var err error
	c.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		c.t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake controller CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &c.caKey.PublicKey, c.caKey)
	if err != nil {
		c.t.Fatal(err)
	}
	c.ca, _ = x509.ParseCertificate(der)
	c.caPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		c.t.Fatal(err)
	}
	stmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	sder, err := x509.CreateCertificate(rand.Reader, stmpl, c.ca, &key.PublicKey, c.caKey)
	if err != nil {
		c.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.ca)
	c.tlsConf = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{sder, der}, PrivateKey: key}},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
	}
}

func (c *Controller) start(ln net.Listener) {
	srv := httptest.NewUnstartedServer(c.routes())
	srv.Listener.Close()
	srv.Listener = ln
	srv.TLS = c.tlsConf.Clone()
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	c.mu.Lock()
	c.srv, c.stopping = srv, make(chan struct{})
	c.mu.Unlock()
}

// URL is the controller's address.
func (c *Controller) URL() string { return "https://" + c.addr }

// CAHash is the hash a token carries.
func (c *Controller) CAHash() string { return api.CAHash(c.ca) }

// Stop takes the controller down: connections are refused until Start.
func (c *Controller) Stop() {
	c.mu.Lock()
	srv, stopping := c.srv, c.stopping
	c.srv = nil
	c.mu.Unlock()
	if srv == nil {
		return
	}
	close(stopping) // ends the long polls
	srv.CloseClientConnections()
	srv.Close()
}

// Start brings a stopped controller back on the same address.
func (c *Controller) Start() {
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", c.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("fakecontroller: listen again on %s: %v", c.addr, err)
	}
	c.start(ln)
}

// Token issues a one-time enrollment token.
func (c *Controller) Token() string {
	var b [20]byte
	rand.Read(b[:])
	secret := hex.EncodeToString(b[:])
	id := fmt.Sprintf("tok%05d", len(c.tokens)+1)
	c.mu.Lock()
	c.tokens[id] = secret
	c.mu.Unlock()
	return api.Token{ID: id, Secret: secret, CAHash: c.CAHash()}.String()
}

// Module is a module to put in a manifest.
type Module struct {
	Definition []byte // YAML
	Values     []byte // JSON object naming every variable
	Counter    uint64 // release counter; 0 for 1
}

// Build compiles mods (with modules/schema) into the next manifest for the
// enrolled server, with blobs and secrets (sealed to the agent). Sign it
// and Serve it, or Publish it in one step.
func (c *Controller) Build(mods []Module, blobs map[string][]byte, secrets map[string]string) *manifest.Manifest {
	c.t.Helper()
	c.mu.Lock()
	c.serial++
	serial, recipient := c.serial, c.recipient
	c.mu.Unlock()
	m := &manifest.Manifest{
		Target:  manifest.Target{ServerID: c.opts.ServerID, UAI: c.opts.UAI},
		Serial:  serial,
		Issued:  time.Now().Add(-time.Minute),
		Expires: time.Now().Add(7 * 24 * time.Hour),
	}
	for _, mod := range mods {
		def, err := schema.ParseModule(mod.Definition)
		if err != nil {
			c.t.Fatalf("fakecontroller: module: %v", err)
		}
		spec, digest, err := schema.CompileBytes(mod.Definition, mod.Values)
		if err != nil {
			c.t.Fatalf("fakecontroller: compile %s: %v", def.Name, err)
		}
		counter := max(mod.Counter, 1)
		rel, err := manifest.SignRelease(&manifest.Release{
			Name: def.Name, Version: def.Version, Kind: def.Kind, Digest: manifest.Digest(mod.Definition), Counter: counter, Agent: def.Requires.Agent,
		}, c.Release)
		if err != nil {
			c.t.Fatal(err)
		}
		m.Modules = append(m.Modules, manifest.Module{ReleaseEnvelope: rel, Definition: mod.Definition, Values: mod.Values, Spec: spec, SpecDigest: digest})
		c.mu.Lock()
		c.blobs[manifest.Digest(mod.Definition)] = mod.Definition // definitions travel apart, as blobs
		c.mu.Unlock()
	}
	for name, b := range blobs {
		d := manifest.Digest(b)
		m.Blobs = append(m.Blobs, manifest.BlobRef{Name: name, Digest: d, Size: int64(len(b))})
		c.mu.Lock()
		c.blobs[d] = b
		c.mu.Unlock()
	}
	for name, v := range secrets {
		sealed, err := manifest.Seal(recipient, c.opts.ServerID, name, 1, manifest.NewSecret([]byte(v)))
		if err != nil {
			c.t.Fatal(err)
		}
		m.Secrets = append(m.Secrets, manifest.SecretRef{Name: name, Generation: 1, Sealed: sealed})
	}
	return m
}

// Sign signs a manifest, by default with the director key.
func (c *Controller) Sign(m *manifest.Manifest, keys ...*manifest.Key) []byte {
	c.t.Helper()
	if len(keys) == 0 {
		keys = []*manifest.Key{c.Director}
	}
	env, err := manifest.SignManifest(m, keys...)
	if err != nil {
		c.t.Fatalf("fakecontroller: sign: %v", err)
	}
	return env
}

// Serve makes env the manifest the controller serves, waking long polls.
func (c *Controller) Serve(env []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.envelope = env
	sum := sha256.Sum256(env)
	c.etag = `"` + hex.EncodeToString(sum[:8]) + `"`
	close(c.changed)
	c.changed = make(chan struct{})
}

// Publish builds, signs and serves the next manifest; it returns its
// serial.
func (c *Controller) Publish(mods []Module, blobs map[string][]byte, secrets map[string]string) uint64 {
	c.t.Helper()
	m := c.Build(mods, blobs, secrets)
	c.Serve(c.Sign(m))
	return m.Serial
}

// Reports returns the reports received, in order.
func (c *Controller) Reports() []Received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Received(nil), c.reports...)
}

// Polls returns how many manifest polls were answered, and how many of
// them with 304.
func (c *Controller) Polls() (total, notModified int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.polls, c.notMod
}

// BlobFetches returns how many times the blob of that digest was served.
func (c *Controller) BlobFetches(digest string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetches[digest]
}

// Unavailable makes the controller answer 503 with Retry-After (seconds);
// 0 makes it available again.
func (c *Controller) Unavailable(retryAfter int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unavail = retryAfter
}

func (c *Controller) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+api.PathEnroll, c.enroll)
	mux.HandleFunc("GET "+api.PathManifest, c.agent(c.manifest))
	mux.HandleFunc("GET "+api.PathBlobs+"{digest}", c.agent(c.blob))
	mux.HandleFunc("POST "+api.PathReports, c.agent(c.report))
	mux.HandleFunc("GET "+api.PathRoots+"{version}", c.agent(c.root))
	mux.HandleFunc("POST "+api.PathRenew, c.agent(c.renew))
	mux.HandleFunc("POST "+api.PathRenewExpired, c.renewExpired)
	return mux
}

func writeError(w http.ResponseWriter, status int, code, msg string, retryAfter int) {
	w.Header().Set("Content-Type", api.ContentTypeJSON)
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(api.ErrorBody{Error: &api.Error{Code: code, Message: msg, RetryAfter: retryAfter}})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", api.ContentTypeJSON)
	json.NewEncoder(w).Encode(v)
}

// agent authenticates an agent route by its client certificate.
func (c *Controller) agent(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != c.opts.ServerID {
			writeError(w, http.StatusUnauthorized, api.CodeUnauthorized, "a client certificate of this controller is required", 0)
			return
		}
		c.mu.Lock()
		unavail := c.unavail
		c.mu.Unlock()
		if unavail > 0 {
			writeError(w, http.StatusServiceUnavailable, api.CodeUnavailable, "the controller is busy", unavail)
			return
		}
		h(w, r)
	}
}

func (c *Controller) enroll(w http.ResponseWriter, r *http.Request) {
	var req api.EnrollRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, api.MaxRequestBody)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error(), 0)
		return
	}
	tok, err := api.ParseToken(req.Token)
	c.mu.Lock()
	secret, ok := c.tokens[tok.ID]
	if ok && err == nil && secret == tok.Secret {
		delete(c.tokens, tok.ID)
	} else {
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		writeError(w, http.StatusUnauthorized, api.CodeInvalidToken, "this enrollment token is unknown or was already used", 0)
		return
	}
	rcpt, err := age.ParseX25519Recipient(req.AgeRecipient)
	if err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, "age_recipient: "+err.Error(), 0)
		return
	}
	cert, pub, err := c.issue(req.CSR)
	if err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error(), 0)
		return
	}
	c.mu.Lock()
	c.recipient, c.agentKey = rcpt, pub
	c.mu.Unlock()
	writeJSON(w, api.EnrollResponse{
		ServerID: c.opts.ServerID, UAI: c.opts.UAI, Academy: c.opts.Academy,
		Certificate: cert, CA: c.caPEM, Root: json.RawMessage(c.roots[0]), Poll: c.opts.Hints,
	})
}

// issue makes a client certificate for a CSR.
func (c *Controller) issue(csrPEM string) (string, ed25519.PublicKey, error) {
	block, _ := pem.Decode([]byte(csrPEM))
	if block == nil {
		return "", nil, errors.New("csr: not PEM")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return "", nil, fmt.Errorf("csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return "", nil, fmt.Errorf("csr: %w", err)
	}
	pub, _ := csr.PublicKey.(ed25519.PublicKey)
	c.mu.Lock()
	c.certNo++
	no := c.certNo
	c.mu.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1000 + no), Subject: pkix.Name{CommonName: c.opts.ServerID},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(c.opts.CertLifetime),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.ca, csr.PublicKey, c.caKey)
	if err != nil {
		return "", nil, err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), pub, nil
}

func (c *Controller) manifest(w http.ResponseWriter, r *http.Request) {
	var wait time.Duration
	if s := r.URL.Query().Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > api.MaxWait {
			writeError(w, http.StatusBadRequest, api.CodeBadRequest, "wait: want a duration up to 5m", 0)
			return
		}
		wait = d
	}
	if c.opts.NextPoll > 0 {
		w.Header().Set(api.HeaderNextPoll, strconv.Itoa(c.opts.NextPoll))
	}
	inm := r.Header.Get("If-None-Match")
	deadline := time.After(wait)
	for {
		c.mu.Lock()
		env, etag, changed, stopping := c.envelope, c.etag, c.changed, c.stopping
		c.mu.Unlock()
		if env == nil && wait == 0 {
			c.count(false)
			writeError(w, http.StatusNotFound, api.CodeNotFound, "no manifest for this server yet", 0)
			return
		}
		if env != nil && (inm == "" || inm != etag) {
			c.count(false)
			w.Header().Set("ETag", etag)
			w.Header().Set("Content-Type", api.ContentTypeEnvelope)
			w.Write(env)
			return
		}
		select {
		case <-changed:
			continue
		case <-deadline:
			wait = 0
			if env == nil {
				continue
			}
		case <-stopping:
		case <-r.Context().Done():
		}
		c.count(true)
		w.Header().Set("ETag", etag)
		w.WriteHeader(http.StatusNotModified)
		return
	}
}

func (c *Controller) count(notModified bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.polls++
	if notModified {
		c.notMod++
	}
}

func (c *Controller) blob(w http.ResponseWriter, r *http.Request) {
	d := r.PathValue("digest")
	c.mu.Lock()
	b, ok := c.blobs[d]
	if ok {
		c.fetches[d]++
	}
	c.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, api.CodeNotFound, "no such blob in this server's manifest", 0)
		return
	}
	w.Header().Set("Content-Type", api.ContentTypeBlob)
	w.Write(b)
}

func (c *Controller) report(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, api.MaxRequestBody+1))
	if err != nil || len(body) > api.MaxRequestBody {
		writeError(w, http.StatusRequestEntityTooLarge, api.CodeTooLarge, "report too large", 0)
		return
	}
	var rep api.Report
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil || rep.ID == "" {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("report: %v", err), 0)
		return
	}
	c.mu.Lock()
	dup := c.seen[rep.ID]
	c.seen[rep.ID] = true
	c.reports = append(c.reports, Received{Report: rep, Duplicate: dup})
	c.mu.Unlock()
	writeJSON(w, api.ReportAck{ID: rep.ID, Duplicate: dup})
}

func (c *Controller) root(w http.ResponseWriter, r *http.Request) {
	v, err := strconv.Atoi(r.PathValue("version"))
	c.mu.Lock()
	roots := c.roots
	c.mu.Unlock()
	if err != nil || v < 1 || v > len(roots) {
		writeError(w, http.StatusNotFound, api.CodeNotFound, "no such root version", 0)
		return
	}
	w.Header().Set("Content-Type", api.ContentTypeEnvelope)
	w.Write(roots[v-1])
}

// AddRoot publishes the next root version (for rotation tests).
func (c *Controller) AddRoot(env []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.roots = append(c.roots, env)
}

func (c *Controller) renew(w http.ResponseWriter, r *http.Request) {
	var req api.RenewRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, api.MaxRequestBody)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error(), 0)
		return
	}
	cert, _, err := c.issue(req.CSR)
	if err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error(), 0)
		return
	}
	writeJSON(w, api.RenewResponse{Certificate: cert})
}

func (c *Controller) renewExpired(w http.ResponseWriter, r *http.Request) {
	var req api.RenewRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, api.MaxRequestBody)).Decode(&req); err != nil || req.Proof == nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, "a proof is required", 0)
		return
	}
	c.mu.Lock()
	key := c.agentKey
	c.mu.Unlock()
	if req.ServerID != c.opts.ServerID || key == nil ||
		!ed25519.Verify(key, api.ProofMessage(req.ServerID, req.CSR, req.Proof.Time), req.Proof.Signature) ||
		time.Since(req.Proof.Time).Abs() > 5*time.Minute {
		writeError(w, http.StatusUnauthorized, api.CodeUnauthorized, "the proof does not verify", 0)
		return
	}
	cert, _, err := c.issue(req.CSR)
	if err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error(), 0)
		return
	}
	writeJSON(w, api.RenewResponse{Certificate: cert})
}

// FilesModule is a module of the agent's test kind (testfiles): the files
// it writes are motd (from a variable), optionally token (a secret) and
// roster.csv (a blob), and delay_ms slows its apply.
type FilesModule struct {
	Version string // "1.0.0" when empty
	Counter uint64
	Motd    string
	DelayMS int
	Mode    string // alize_mode: "enforce", "report-only", or "" for the default
	Secret  bool   // the spec writes the secret "token" to a file
	Blob    bool   // the spec copies the blob "roster" to roster.csv
}

// Module is the test module's definition and values.
func (f FilesModule) Module() Module {
	version := f.Version
	if version == "" {
		version = "1.0.0"
	}
	var def strings.Builder
	fmt.Fprintf(&def, `name: test-files
version: %s
kind: testfiles
description: {fr: Fichiers de test, en: Test files}
variables:
  families:
    - name: main
      description: {fr: Principal, en: Main}
      variables:
        - name: alize_mode
          type: choice
          choices: [enforce, report-only]
          default: enforce
          description: {fr: Mode, en: Mode}
        - name: motd
          type: string
          default: Bienvenue
          description: {fr: Message du jour, en: Message of the day}
        - name: delay_ms
          type: int
          min: 0
          max: 60000
          default: 0
          description: {fr: Attente, en: Delay}
`, version)
	if f.Secret {
		def.WriteString(`        - name: token
          type: secret
          description: {fr: Jeton, en: Token}
`)
	}
	def.WriteString("spec:\n  files:\n    motd: \"${motd}\"\n")
	if f.Secret {
		def.WriteString("    token: \"${token}\"\n")
	}
	if f.Blob {
		def.WriteString("  copies:\n    roster.csv: \"blob://roster\"\n")
	}
	def.WriteString("  delay_ms: \"${delay_ms}\"\n")
	values := map[string]any{"motd": f.Motd, "delay_ms": f.DelayMS, "alize_mode": nil}
	if f.Mode != "" {
		values["alize_mode"] = f.Mode
	} else {
		values["alize_mode"] = "enforce"
	}
	if f.Motd == "" {
		values["motd"] = "Bienvenue"
	}
	if f.Secret {
		values["token"] = schema.SecretRef("token")
	}
	vb, err := json.Marshal(values)
	if err != nil {
		panic(err)
	}
	return Module{Definition: []byte(def.String()), Values: vb, Counter: f.Counter}
}
