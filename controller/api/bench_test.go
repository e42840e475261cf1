package api

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPoll304: a poll answered 304 costs the agent under 1 ms of CPU
// (target). The controller runs in a child process, so that cpu-µs/op
// (user + system CPU of this process per poll) is the agent's own. ns/op
// is wall time, both sides. "keepalive" reuses the connection (a
// long-polling agent); "handshake" makes a new mutual TLS connection per
// poll (an agent polling every 15 minutes), with the agent's ed25519 key;
// "resumed" too, resuming the TLS session as the agent does.
func BenchmarkPoll304(b *testing.B) {
	p := newTestPKI(b)
	p.client = ed25519Client(b, p)
	ctx := b.Context()
	poll := func(b *testing.B, c *Client, fresh bool) {
		tr := c.hc.Transport.(*http.Transport)
		start := cpuTime()
		for b.Loop() {
			if fresh {
				tr.CloseIdleConnections()
			}
			ans, err := c.Manifest(ctx, `"m-42"`, 0)
			if err != nil || !ans.NotModified {
				b.Fatalf("Manifest() = %+v, %v", ans, err)
			}
		}
		b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-µs/op")
	}
	c := p.serveChild(b, nil)
	b.Run("keepalive", func(b *testing.B) { poll(b, c, false) })
	b.Run("handshake", func(b *testing.B) { poll(b, c, true) })
	c = p.serveChild(b, NewSessionCache())
	b.Run("resumed", func(b *testing.B) { poll(b, c, true) })
}

// serve304 answers every manifest poll with 304.
func serve304(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(HeaderNextPoll, "900")
	w.Header().Set("ETag", `"m-42"`)
	w.WriteHeader(http.StatusNotModified)
}

// serveChild starts a controller answering 304 in a child process (this
// test binary, see TestMain) and returns a client of it.
func (p *testPKI) serveChild(b testing.TB, sessions tls.ClientSessionCache) *Client {
	dir := b.TempDir()
	keyDER, err := x509.MarshalPKCS8PrivateKey(p.server.PrivateKey)
	if err != nil {
		b.Fatal(err)
	}
	var chain []byte
	for _, c := range p.server.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	os.WriteFile(filepath.Join(dir, "server.crt"), chain, 0o600)
	os.WriteFile(filepath.Join(dir, "server.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	os.WriteFile(filepath.Join(dir, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.ca.Raw}), 0o600)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ALIZE_POLL304_SERVER="+dir)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("child controller: %v", err)
	}
	client := p.client
	c, err := NewClient("https://"+strings.TrimSpace(addr), NewHTTPClient(AgentTLS(p.pool, func() (*tls.Certificate, error) { return &client, nil }, sessions)), "alize/bench")
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// TestMain runs the child controller of BenchmarkPoll304 when asked to.
func TestMain(m *testing.M) {
	if dir := os.Getenv("ALIZE_POLL304_SERVER"); dir != "" {
		os.Exit(childController(dir))
	}
	os.Exit(m.Run())
}

func childController(dir string) int {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(ln.Addr().String())
	go (&http.Server{Handler: http.HandlerFunc(serve304), ErrorLog: log.New(io.Discard, "", 0)}).Serve(ln)
	io.Copy(io.Discard, os.Stdin) // until the parent closes it
	return 0
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ed25519Client is a client certificate for an ed25519 key, as the agent
// makes at enrollment.
func ed25519Client(b *testing.B, p *testPKI) tls.Certificate {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(999), Subject: pkix.Name{CommonName: "srv-bench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, pub, p.caKey)
	if err != nil {
		b.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
}
