package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/alize-eple/alize/agent/internal/identity"
)

// The control socket's routes: HTTP over the unix socket, JSON bodies.
const (
	routeStatus = "/v1/status" // GET → Status
	routeApply  = "/v1/apply"  // POST → RunRecord: converge now
	routePlan   = "/v1/plan"   // GET → PlanResult of the last-known-good, changing nothing
	routePoll   = "/v1/poll"   // POST: poll the controller now
	routeReload = "/v1/reload" // POST: read the identity again (after alize enroll)
)

// controlError is the control socket's error body.
type controlError struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"` // "busy", "no_manifest", "not_enrolled"
}

// errorCodes maps the errors a caller branches on to the socket's codes.
var errorCodes = []struct {
	err  error
	code string
}{
	{ErrDaemonBusy, "busy"},
	{ErrNoManifest, "no_manifest"},
	{identity.ErrNotEnrolled, "not_enrolled"},
}

// ErrDaemonBusy: the daemon could not take the run lock (another run).
var ErrDaemonBusy = errors.New("another alize run is in progress")

// listenControl listens on the control socket: root only (the directory
// 0700 when alize makes it, the socket 0600). A socket left by a daemon
// that died is replaced; one a live daemon answers on is an error.
func listenControl(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another alize daemon is running", path)
	}
	os.Remove(path)
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &peerCheck{UnixListener: ln.(*net.UnixListener)}, nil
}

// peerCheck accepts only connections from root or from the daemon's own
// user (the socket's mode already says so; this holds should it change).
type peerCheck struct{ *net.UnixListener }

func (l *peerCheck) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		if peerAllowed(c) {
			return c, nil
		}
		c.Close()
	}
}

func peerAllowed(c *net.UnixConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	return err == nil && cred != nil && (cred.Uid == 0 || int(cred.Uid) == os.Geteuid())
}

// controlHandler serves the control socket.
func (l *loop) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+routeStatus, func(w http.ResponseWriter, r *http.Request) {
		live := l.a.liveStatus()
		writeJSON(w, http.StatusOK, l.a.Status(&live))
	})
	mux.HandleFunc("POST "+routeApply, askLoop(l, l.applyReqs))
	mux.HandleFunc("GET "+routePlan, askLoop(l, l.planReqs))
	mux.HandleFunc("POST "+routePoll, func(w http.ResponseWriter, r *http.Request) {
		select {
		case l.pollNow <- struct{}{}:
		default:
		}
		writeJSON(w, http.StatusOK, struct{}{})
	})
	mux.HandleFunc("POST "+routeReload, func(w http.ResponseWriter, r *http.Request) {
		select {
		case l.reloads <- struct{}{}:
		default:
		}
		writeJSON(w, http.StatusOK, struct{}{})
	})
	return mux
}

// writeError answers an error the caller may branch on, by its code.
func writeError(w http.ResponseWriter, err error) {
	ce := controlError{Error: err.Error()}
	for _, ec := range errorCodes {
		if errors.Is(err, ec.err) {
			ce.Code = ec.code
		}
	}
	writeJSON(w, http.StatusConflict, ce)
}

// askLoop serves a route by a request to the daemon's loop, which runs it
// between its runs, and answers with its result.
func askLoop[T any](l *loop, reqs chan<- loopRequest[T]) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req := loopRequest[T]{reply: make(chan loopReply[T], 1)}
		select {
		case reqs <- req:
		case <-l.stopped:
			writeJSON(w, http.StatusServiceUnavailable, controlError{Error: "the daemon is stopping"})
			return
		case <-r.Context().Done():
			return
		}
		select {
		case rep := <-req.reply:
			if rep.err != nil {
				writeError(w, rep.err)
				return
			}
			writeJSON(w, http.StatusOK, rep.res)
		case <-r.Context().Done():
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// Control is a client of a running daemon's control socket.
type Control struct {
	hc *http.Client
}

// DialControl connects to the daemon's control socket; an error when no
// daemon answers there.
func DialControl(ctx context.Context, path string) (*Control, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("no alize daemon answers on %s: %w", path, err)
	}
	c.Close()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
	}
	return &Control{hc: &http.Client{Transport: tr}}, nil
}

// Status asks the daemon for its status.
func (c *Control) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.call(ctx, http.MethodGet, routeStatus, &st)
	return st, err
}

// Apply asks the daemon to converge now and waits for the run's end.
func (c *Control) Apply(ctx context.Context) (ApplyResult, error) {
	var res ApplyResult
	err := c.call(ctx, http.MethodPost, routeApply, &res)
	return res, err
}

// Plan asks the daemon what applying its last-known-good manifest would
// change now; it runs between the daemon's runs and changes nothing.
func (c *Control) Plan(ctx context.Context) (PlanResult, error) {
	var res PlanResult
	err := c.call(ctx, http.MethodGet, routePlan, &res)
	return res, err
}

// Poll asks the daemon to poll the controller now.
func (c *Control) Poll(ctx context.Context) error {
	return c.call(ctx, http.MethodPost, routePoll, nil)
}

// Reload asks the daemon to read its identity again.
func (c *Control) Reload(ctx context.Context) error {
	return c.call(ctx, http.MethodPost, routeReload, nil)
}

func (c *Control) call(ctx context.Context, method, route string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://alize"+route, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var ce controlError
		if json.Unmarshal(body, &ce) == nil && ce.Error != "" {
			for _, ec := range errorCodes {
				if ce.Code == ec.code {
					return ec.err
				}
			}
			return errors.New(ce.Error)
		}
		return fmt.Errorf("daemon: %s", resp.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	return nil
}
