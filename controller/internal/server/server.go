// Package server is the controller's HTTPS API: the agent routes of
// controller/api (enrollment, manifests with long polls, blobs, reports,
// roots, certificate renewal), the operator routes (bearer tokens with
// roles, every route authorized, every change audited), /metrics,
// /healthz and /readyz. routes.go lists every route. Controller wires it
// to TLS (the CA, client certificates, the deny-list checked at the
// handshake), the background work and graceful shutdown.
//
// Who may import it: cmd/alize-controller and controller tests.
package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/controller/internal/ca"
	"github.com/alize-eple/alize/controller/internal/director"
	"github.com/alize-eple/alize/controller/internal/store"
)

// Settings are the controller's tunables.
type Settings struct {
	// ClientCertLifetime: agents' certificates live a few days, renewed
	// at two thirds.
	ClientCertLifetime time.Duration
	// RenewGrace: how long after its certificate's end a server may
	// still renew it by proof of possession (the summer holidays).
	RenewGrace time.Duration
	// ProofSkew: how far a proof's time may be from the controller's clock.
	ProofSkew time.Duration
	// PollInterval, BootDelay, LongPoll: the hints agents get.
	PollInterval time.Duration
	BootDelay    time.Duration
	LongPoll     time.Duration
	// TokenTTL is an enrollment token's default lifetime; MaxTokenTTL its longest.
	TokenTTL    time.Duration
	MaxTokenTTL time.Duration
	// ReportsKept: the last reports kept per server.
	ReportsKept int
	// KeysDir holds the root chain and the director keys.
	KeysDir string
}

// DefaultSettings are the settings of a controller nobody tuned.
func DefaultSettings() Settings {
	return Settings{
		ClientCertLifetime: 7 * 24 * time.Hour,
		RenewGrace:         120 * 24 * time.Hour,
		ProofSkew:          5 * time.Minute,
		PollInterval:       5 * time.Minute,
		BootDelay:          10 * time.Minute,
		LongPoll:           2 * time.Minute,
		TokenTTL:           24 * time.Hour,
		MaxTokenTTL:        30 * 24 * time.Hour,
		ReportsKept:        20,
	}
}

// Deps are what the handlers work with.
type Deps struct {
	Store    store.Store
	Director *director.Director
	CA       *ca.CA
	Roots    *Roots
	Hub      *Hub
	Deny     *DenyList
	Metrics  *Metrics
	Clock    func() time.Time
	Log      *slog.Logger
	Settings Settings
	// Drain is closed when the controller shuts down: long polls end
	// with a retry hint and /readyz fails.
	Drain <-chan struct{}
}

type srv struct {
	Deps
	seen seen
}

// NewServer returns the controller's HTTP handler.
func NewServer(d Deps) http.Handler {
	s := newSrv(d)
	return s.handler()
}

func newSrv(d Deps) *srv {
	if d.Clock == nil {
		d.Clock = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Drain == nil {
		d.Drain = make(chan struct{})
	}
	if d.Metrics == nil {
		d.Metrics = NewMetrics(nil)
	}
	return &srv{Deps: d}
}

func (s *srv) now() time.Time { return s.Clock().UTC() }

func (s *srv) draining() bool {
	select {
	case <-s.Drain:
		return true
	default:
		return false
	}
}

// --- answers ---

func apiError(status int, code, format string, args ...any) *api.Error {
	return &api.Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *api.Error {
	return apiError(http.StatusBadRequest, api.CodeBadRequest, format, args...)
}

func forbidden() *api.Error {
	return apiError(http.StatusForbidden, api.CodeForbidden, "your role does not allow this here")
}

func notFound(format string, args ...any) *api.Error {
	return apiError(http.StatusNotFound, api.CodeNotFound, format, args...)
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal_error","message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", api.ContentTypeJSON)
	w.WriteHeader(status)
	w.Write(b)
	w.Write([]byte("\n"))
}

// writeErr writes any error as the one error shape: *api.Error as is, a
// director InputError as bad_request, a refusal as conflict, store
// sentinels as not_found and conflict, anything else as internal_error
// (logged, never shown).
func (s *srv) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	var ae *api.Error
	var ie *director.InputError
	var re *director.RefusedError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &re):
		ae = apiError(http.StatusConflict, api.CodeConflict, "%s", re.Error())
	case errors.Is(err, store.ErrConflict):
		ae = apiError(http.StatusConflict, api.CodeConflict, "%s", err.Error())
	case errors.As(err, &ie):
		ae = badRequest("%s", ie.Error())
	case errors.Is(err, store.ErrNotFound):
		ae = notFound("%s", err.Error())
	default:
		s.Log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		ae = apiError(http.StatusInternalServerError, api.CodeInternalError, "internal error: the controller's log says more")
	}
	if ae.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(ae.RetryAfter))
	}
	writeJSON(w, ae.Status, api.ErrorBody{Error: ae})
}

// bodyTimeout bounds the time a client takes to send its request body.
// (http.Server.ReadTimeout would also end long polls.)
const bodyTimeout = 30 * time.Second

// readBody reads a request body of at most api.MaxRequestBody bytes,
// within bodyTimeout.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(bodyTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, api.MaxRequestBody))
	_ = rc.SetReadDeadline(time.Time{}) // the handler's work is not bounded by it
	return body, err
}

// decode reads a JSON body strictly: at most api.MaxRequestBody bytes,
// no unknown field, nothing after the value.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := readBody(w, r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return apiError(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "request body larger than %d bytes", api.MaxRequestBody)
		}
		return badRequest("reading the body: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("body: data after the JSON value")
	}
	return nil
}
