// Package api is the wire contract between the Alizé agent and its academy
// controller: the /v1 paths, the JSON request and response types, the one
// error shape, the enrollment token, and the poll hints. The controller
// serves it; the agent's client speaks it (docs/api.md describes it for
// people).
//
// Agent routes identify the server by its client certificate (mutual TLS),
// never by a path or a parameter: an agent can only ever name itself, so it
// reads only its own manifest and blobs and writes only its own reports.
//
// Who may import it: the agent, the controller, tests. It depends on the
// standard library and modules/ only: never on controller internals.
package api

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/alize-eple/alize/modules"
)

// Version is the API version every path starts with.
const Version = "v1"

// Agent routes. All but PathEnroll and PathRenewExpired require the
// agent's client certificate.
const (
	// PathEnroll: POST EnrollRequest → EnrollResponse. Authenticated by
	// the one-time token; the agent authenticates the controller by the CA
	// hash the token carries.
	PathEnroll = "/v1/enroll"
	// PathManifest: GET → the agent's manifest, a DSSE envelope
	// (ContentTypeEnvelope), with an ETag. If-None-Match with the current
	// ETag answers 304 Not Modified; ?wait=30s holds the request (long
	// poll) until a new manifest exists or the wait ends (then 304).
	PathManifest = "/v1/manifest"
	// PathBlobs + digest ("sha256:<hex>"): GET → the blob's bytes. Only
	// blobs listed in the agent's current manifest are served.
	PathBlobs = "/v1/blobs/"
	// PathReports: POST Report → ReportAck. Idempotent by Report.ID: a
	// second delivery of the same id is acknowledged and ignored.
	PathReports = "/v1/reports"
	// PathRoots + version: GET → that version of the academy's root
	// document (DSSE envelope), for agents walking a root rotation.
	PathRoots = "/v1/roots/"
	// PathRenew: POST RenewRequest → RenewResponse, with the current
	// (still valid) client certificate.
	PathRenew = "/v1/renew"
	// PathRenewExpired: POST RenewRequest with Proof → RenewResponse,
	// without a client certificate: for a server switched off past its
	// certificate's end (the summer holidays), within the grace period.
	PathRenewExpired = "/v1/renew-expired"
)

// Content types.
const (
	ContentTypeJSON     = "application/json"
	ContentTypeEnvelope = "application/vnd.dsse.envelope.v1+json"
	ContentTypeBlob     = "application/octet-stream"
)

// Headers beyond the standard ones (ETag, If-None-Match, Retry-After).
const (
	// HeaderNextPoll: seconds until the agent should poll again, on every
	// manifest answer (200 and 304). The controller uses it to spread and
	// slow the fleet.
	HeaderNextPoll = "Alize-Next-Poll"
)

// Limits the controller enforces on what agents send, and the agent on
// what the controller sends back.
const (
	MaxRequestBody  = 4 << 20  // bytes: a report of a whole first apply fits
	MaxResponseBody = 16 << 20 // bytes of JSON from the controller
	MaxWait         = 5 * time.Minute
)

// Facts are what an agent says about its server at enrollment and in
// reports. Informative only: the controller never trusts them for access.
type Facts struct {
	Hostname     string `json:"hostname,omitempty"`
	AgentVersion string `json:"agent_version,omitempty"`
	OS           string `json:"os,omitempty"`     // "Debian GNU/Linux 12 (bookworm)"
	Kernel       string `json:"kernel,omitempty"` // "6.1.0-26-amd64"
	Arch         string `json:"arch,omitempty"`   // "amd64"
}

// EnrollRequest is an agent's enrollment: the token an operator issued for
// one server of one establishment, and the public halves of the keys the
// agent made locally. No private key ever leaves the server.
type EnrollRequest struct {
	Token string `json:"token"`
	// CSR is a PEM "CERTIFICATE REQUEST" for the agent's TLS key (ECDSA
	// P-256 or ed25519); its subject is ignored: the controller names the
	// certificate after the server id.
	CSR string `json:"csr"`
	// AgeRecipient is the agent's X25519 public key ("age1…"): secrets for
	// this server are sealed to it.
	AgeRecipient string `json:"age_recipient"`
	Facts        Facts  `json:"facts"`
}

// EnrollResponse gives the agent its identity and what it must pin.
type EnrollResponse struct {
	ServerID string `json:"server_id"`
	UAI      string `json:"uai"`
	Academy  string `json:"academy"`
	// Certificate is the agent's client certificate (PEM), valid a few
	// days; renew it at two thirds of its life.
	Certificate string `json:"certificate"`
	// CA is the controller's CA certificate (PEM), whose hash the token
	// carried: the agent trusts the controller's server certificate
	// through it from now on.
	CA string `json:"ca"`
	// Root is the academy's current root document (DSSE envelope, as
	// JSON): the agent pins it.
	Root json.RawMessage `json:"root"`
	// Poll is the polling schedule the agent starts with.
	Poll PollHints `json:"poll"`
}

// PollHints is how the controller wants the agent to poll.
type PollHints struct {
	// Interval between polls, in seconds; each server polls in its own
	// slot within it.
	IntervalSeconds int `json:"interval_seconds"`
	// BootDelaySeconds: after boot, wait a random delay up to this before
	// the first poll (schools power on at 8:00).
	BootDelaySeconds int `json:"boot_delay_seconds"`
	// WaitSeconds: how long to hold a long poll.
	WaitSeconds int `json:"wait_seconds"`
}

// RenewRequest asks for a new client certificate for the same key.
type RenewRequest struct {
	CSR string `json:"csr"` // PEM, for the key the server enrolled with
	// For PathRenewExpired only: the server id and a proof of possession
	// of the registered key (see Proof).
	ServerID string `json:"server_id,omitempty"`
	Proof    *Proof `json:"proof,omitempty"`
}

// Proof proves that the caller holds the server's registered TLS key: a
// signature by that key over ProofMessage(server id, CSR, time). The
// controller accepts a time within a few minutes of its own clock, once.
type Proof struct {
	Time      time.Time `json:"time"`
	Signature []byte    `json:"signature"` // base64 in JSON
}

// ProofMessage is what a Proof signs.
func ProofMessage(serverID, csr string, t time.Time) []byte {
	return []byte(fmt.Sprintf("alize renew-expired v1\nserver %s\ntime %s\ncsr %s", serverID, t.UTC().Format(time.RFC3339), csr))
}

// RenewResponse carries the new certificate.
type RenewResponse struct {
	Certificate string `json:"certificate"` // PEM
}

// Outcome sums up what an agent did with a manifest.
type Outcome string

// The outcomes a report gives; the controller derives each server's state
// from them (compliant, corrected, failing, pending, refused manifest, not
// reporting).
const (
	OutcomeCompliant Outcome = "compliant" // nothing to change
	OutcomeCorrected Outcome = "corrected" // drift or a new manifest, repaired
	OutcomeFailing   Outcome = "failing"   // at least one change failed
	OutcomeRefused   Outcome = "refused"   // the manifest was refused; the last-known-good stays applied
	OutcomeReverted  Outcome = "reverted"  // applied then rolled back (the firewall's commit-confirmed)
	OutcomeDrift     Outcome = "drift"     // drift seen and left alone (report-only module)
)

// Report is what an agent did with a manifest, resource by resource. It
// never carries a secret.
type Report struct {
	// ID is the report's idempotent id, made by the agent: a report
	// delivered twice is stored once.
	ID string `json:"id"`
	// Serial and ManifestDigest name the manifest the run used: the one
	// applied, or the one refused.
	Serial         uint64    `json:"serial"`
	ManifestDigest string    `json:"manifest_digest,omitempty"`
	Started        time.Time `json:"started"`
	Finished       time.Time `json:"finished"`
	Outcome        Outcome   `json:"outcome"`
	// Refusal says why a manifest was refused (Outcome refused).
	Refusal *Refusal     `json:"refusal,omitempty"`
	Kinds   []KindReport `json:"kinds,omitempty"`
	Facts   Facts        `json:"facts"`
	// Dropped counts earlier reports lost because the agent's outbox was
	// full while the controller was out of reach.
	Dropped int `json:"dropped,omitempty"`
}

// Refusal is a refused manifest: the verifier's stable code ("rollback",
// "expired", "bad_signature", …) and its message.
type Refusal struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// KindStatus is where one kind stands after a run.
type KindStatus string

// The states of a kind in a report.
const (
	KindApplied  KindStatus = "applied"  // as wanted (changed or not)
	KindDrifted  KindStatus = "drifted"  // differs, left alone (report-only)
	KindFailing  KindStatus = "failing"  // a change or the plan failed
	KindSkipped  KindStatus = "skipped"  // not run: a kind it depends on failed
	KindReverted KindStatus = "reverted" // applied, then rolled back
)

// KindReport is one kind's part of a run.
type KindReport struct {
	Kind    string                 `json:"kind"`
	Module  string                 `json:"module"`  // "amon-firewall"
	Version string                 `json:"version"` // "2.3.0"
	Status  KindStatus             `json:"status"`
	Error   string                 `json:"error,omitempty"` // never a secret
	Changes []modules.ChangeResult `json:"changes,omitempty"`
	TookMS  int64                  `json:"took_ms"`
}

// ReportAck acknowledges a report.
type ReportAck struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate,omitempty"` // already stored: nothing changed
}

// Error is the one error shape every /v1 answer uses with a 4xx or 5xx
// status: {"error": {"code": "...", "message": "..."}}.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`    // stable, snake_case: "invalid_token", "not_found", …
	Message string `json:"message"` // for a person; never a secret
	// RetryAfter, in seconds, when the caller should come back (also in
	// the Retry-After header).
	RetryAfter int `json:"retry_after,omitempty"`
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("controller: %s (%d %s)", e.Message, e.Status, e.Code)
	}
	return fmt.Sprintf("controller: %s (%s)", e.Message, e.Code)
}

// ErrorBody is the JSON body that carries an Error.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// Error codes shared by both sides.
const (
	CodeBadRequest    = "bad_request"
	CodeTooLarge      = "too_large"
	CodeUnauthorized  = "unauthorized"   // no or bad credentials
	CodeForbidden     = "forbidden"      // valid credentials, not allowed
	CodeInvalidToken  = "invalid_token"  // unknown, used or expired enrollment token
	CodeRevoked       = "revoked"        // the server's certificate is on the deny-list
	CodeNotFound      = "not_found"      // includes: no manifest yet for this server
	CodeConflict      = "conflict"       // e.g. enrolling a server id twice
	CodeUnavailable   = "unavailable"    // shutting down, overloaded: retry after RetryAfter
	CodeInternalError = "internal_error" // the message says nothing more
)
