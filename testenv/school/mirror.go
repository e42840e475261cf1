package school

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/alize-eple/alize/testenv"
)

// MirrorPort is where the hostile mirror listens, in the internet
// namespace.
const MirrorPort = 9443

// Mirror is a hostile mirror in the path between the school and the
// academy: the internet namespace redirects the school's connections to
// the controller to it. It holds the strongest position an attacker of the
// path can: the controller's TLS key and the agent's client key (stolen),
// so that TLS does not stop it. It forwards everything to the controller
// and rewrites the manifests it passes on: what stops it must be the
// director's signature, nothing else.
type Mirror struct {
	s        *School
	srv      *http.Server
	tampered atomic.Int64
}

// mirrorTable redirects the school's connections to the controller to the
// mirror.
var mirrorTable = fmt.Sprintf(`table ip hostile_mirror {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr %s tcp dport %d redirect to :%d
	}
}
`, ControllerAddr, ControllerPort, MirrorPort)

// StartMirror puts a hostile mirror in the path. New connections from the
// school to the controller reach it; connections open before do not.
func (s *School) StartMirror() (*Mirror, error) {
	m := &Mirror{s: s}
	serverCert, err := tls.LoadX509KeyPair(filepath.Join(s.Controller.State, "ca", "server.crt"), filepath.Join(s.Controller.State, "ca", "server.key"))
	if err != nil {
		return nil, fmt.Errorf("mirror: the controller's TLS key: %w", err)
	}
	var id struct {
		Key         string `json:"tls_key"`
		Certificate string `json:"certificate"`
		CA          string `json:"ca"`
	}
	b, err := os.ReadFile(filepath.Join(s.Agent.State, "identity.json"))
	if err != nil {
		return nil, fmt.Errorf("mirror: the agent's identity: %w", err)
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return nil, fmt.Errorf("mirror: the agent's identity: %w", err)
	}
	clientCert, err := tls.X509KeyPair([]byte(id.Certificate), []byte(id.Key))
	if err != nil {
		return nil, fmt.Errorf("mirror: the agent's client key: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(id.CA)) {
		return nil, errors.New("mirror: the agent's CA does not parse")
	}
	upstream := &url.URL{Scheme: "https", Host: net.JoinHostPort(ControllerAddr, strconv.Itoa(ControllerPort))}
	transport := &http.Transport{
		// Dialled from the internet namespace, which routes to the academy.
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return s.Internet.DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{clientCert}, RootCAs: roots, ServerName: ControllerAddr, MinVersion: tls.VersionTLS13},
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(upstream)
			r.Out.Header.Del("Accept-Encoding") // plain bodies, to rewrite them
		},
		Transport:      transport,
		ModifyResponse: m.tamper,
	}
	ln, err := s.Internet.Listen("tcp", ":"+strconv.Itoa(MirrorPort))
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	m.srv = &http.Server{
		Handler:           proxy,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS13},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go m.srv.ServeTLS(ln, "", "")
	if err := s.nft(s.Internet, mirrorTable); err != nil {
		m.srv.Close()
		return nil, fmt.Errorf("mirror: redirect: %w", err)
	}
	s.t.Cleanup(m.Stop)
	return m, nil
}

// Tampered is how many manifests the mirror rewrote.
func (m *Mirror) Tampered() int { return int(m.tampered.Load()) }

// Stop takes the mirror out of the path.
func (m *Mirror) Stop() {
	m.s.nft(m.s.Internet, "delete table ip hostile_mirror\n")
	m.srv.Close()
}

// tamper rewrites each manifest the controller sends: it opens the admin
// network to the whole world in the signed payload and leaves the
// signature as it was.
func (m *Mirror) tamper(resp *http.Response) error {
	if resp.Request.URL.Path != "/v1/manifest" || resp.StatusCode != http.StatusOK {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	var env map[string]any
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("mirror: manifest: %w", err)
	}
	payload, err := base64.StdEncoding.DecodeString(fmt.Sprint(env["payload"]))
	if err != nil {
		return fmt.Errorf("mirror: payload: %w", err)
	}
	evil := bytes.ReplaceAll(payload, []byte(`"10.95.10.0/24"`), []byte(`"0.0.0.0/0"`))
	if bytes.Equal(evil, payload) {
		evil[len(evil)/2] ^= 1
	}
	env["payload"] = base64.StdEncoding.EncodeToString(evil)
	out, err := json.Marshal(env)
	if err != nil {
		return err
	}
	m.tampered.Add(1)
	resp.Body = io.NopCloser(bytes.NewReader(out))
	resp.ContentLength = int64(len(out))
	resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
	resp.Header.Del("Content-Encoding")
	return nil
}

// nft loads a ruleset into a namespace.
func (s *School) nft(ns *testenv.NetNS, ruleset string) error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = bytes.NewReader([]byte(ruleset))
	if out, err := ns.Run(cmd); err != nil {
		return fmt.Errorf("nft: %w: %s", err, out)
	}
	return nil
}
