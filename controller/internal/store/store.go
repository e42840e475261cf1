// Package store keeps the controller's state: the inventory (academies,
// establishments, servers, groups), variables, published modules,
// assignments, signed manifests, enrollment tokens, certificates, reports,
// operators and the audit log.
//
// One interface, Store, has two implementations over database/sql: the
// embedded SQLite (modernc.org/sqlite, the default: one file) and
// PostgreSQL (pgx), for academies that run several controller replicas.
// Both run the same versioned migrations at open and pass one shared test
// suite (store_test.go). Times are stored as Unix microseconds, so both
// read back exactly what was written.
//
// Writes that change what servers must be go through Commit, one
// transaction for a whole Batch: an operator's change, the manifests it
// re-signs and its audit entries land together or not at all.
//
// Who may import it: controller packages only.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/alize-eple/alize/controller/api"
)

// Sentinel errors callers branch on.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict: the record exists already, or changed under us (a
	// manifest whose serial moved, a proof time not newer than the last).
	ErrConflict = errors.New("conflict")
	// ErrTokenUsed, ErrTokenExpired: an enrollment token that cannot be used.
	ErrTokenUsed    = errors.New("enrollment token already used")
	ErrTokenExpired = errors.New("enrollment token expired")
)

// Store is the controller's state. Every method is safe for concurrent use.
type Store interface {
	// Dialect is "sqlite" or "postgres".
	Dialect() string
	Ping(ctx context.Context) error
	Close() error
	// Migrations lists the versions of the migrations applied.
	Migrations(ctx context.Context) ([]int, error)

	// Inventory.
	Academies(ctx context.Context) ([]Academy, error)
	Establishments(ctx context.Context) ([]Establishment, error)
	Establishment(ctx context.Context, uai string) (Establishment, error)
	Groups(ctx context.Context) ([]Group, error)
	Servers(ctx context.Context) ([]Server, error)
	Server(ctx context.Context, id string) (Server, error)
	// ServersOf lists an establishment's servers.
	ServersOf(ctx context.Context, uai string) ([]Server, error)
	Variables(ctx context.Context) ([]Variable, error)
	Assignments(ctx context.Context) ([]Assignment, error)
	// Modules lists every published module version, without definitions
	// and release envelopes.
	Modules(ctx context.Context) ([]Module, error)
	// Module returns one module version, definition and release included.
	Module(ctx context.Context, name, version string) (Module, error)
	// Blobs lists the blobs' digests and sizes, without their bytes.
	Blobs(ctx context.Context) ([]Blob, error)
	Blob(ctx context.Context, digest string) (Blob, error)
	Roots(ctx context.Context) ([]Root, error)

	// Manifests lists the current manifest of every server, without the
	// envelopes.
	Manifests(ctx context.Context) ([]Manifest, error)
	// Manifest returns a server's current manifest, envelope included.
	Manifest(ctx context.Context, serverID string) (Manifest, error)

	// Commit writes a batch in one transaction, then tells the other
	// replicas about b.Events (PostgreSQL: NOTIFY, sent at commit).
	Commit(ctx context.Context, b *Batch) error

	// Enrollment and identity.
	Token(ctx context.Context, id string) (Token, error)
	Tokens(ctx context.Context) ([]Token, error)
	// Enroll consumes the token (unused, not expired at e.Time), creates
	// or re-keys the server, records its first certificate and the audit
	// entry, all at once. Re-enrolling an existing server (a token bound
	// to it) revokes its earlier certificates.
	Enroll(ctx context.Context, e Enrollment) error
	AddCertificate(ctx context.Context, c Certificate) error
	Certificates(ctx context.Context, serverID string) ([]Certificate, error)
	// UseProof records a renew-expired proof time: ErrConflict unless it
	// is later than the last one accepted for the server (a proof works
	// once).
	UseProof(ctx context.Context, serverID string, t time.Time) error
	// DenyList is what the TLS handshake refuses.
	DenyList(ctx context.Context) (DenyList, error)

	// Reports.
	// AddReport stores a report once (duplicate is true when its id was
	// stored before, and nothing changes), updates the server's last
	// report and applied serial, and keeps only the keep latest reports
	// of the server.
	AddReport(ctx context.Context, r Report, keep int) (duplicate bool, err error)
	Reports(ctx context.Context, f ReportFilter) ([]Report, error)
	// MarkSeen records when servers last polled.
	MarkSeen(ctx context.Context, seen map[string]time.Time) error

	// Operators and audit.
	Operator(ctx context.Context, id string) (Operator, error)
	Operators(ctx context.Context) ([]Operator, error)
	Audit(ctx context.Context, f AuditFilter) ([]AuditEntry, error)

	// Replicas.
	// Lock takes the compile lock, held while a change is compiled and
	// committed, so that manifests are always built from the latest
	// committed state (PostgreSQL: an advisory lock shared by replicas).
	Lock(ctx context.Context) (unlock func(), err error)
	// Listen calls fn with the events other replicas commit, until ctx
	// ends. SQLite has one process: it returns when ctx ends. ready is
	// closed once events are being received.
	Listen(ctx context.Context, ready chan<- struct{}, fn func(Event)) error
}

// Academy is one academy a controller serves.
type Academy struct {
	Name    string    `json:"name"` // lowercase: "versailles"
	Title   string    `json:"title"`
	Created time.Time `json:"created"`
}

// Establishment is one school.
type Establishment struct {
	UAI     string    `json:"uai"`
	Academy string    `json:"academy"`
	Name    string    `json:"name"`
	Type    string    `json:"type"` // college, lycee, lp, erea
	Zone    string    `json:"zone"` // A, B, C
	Created time.Time `json:"created"`
}

// Server is one enrolled school server.
type Server struct {
	ID           string    `json:"id"`
	UAI          string    `json:"uai"`
	Role         string    `json:"role"`
	Facts        api.Facts `json:"facts"`
	AgeRecipient string    `json:"age_recipient"`
	PublicKey    []byte    `json:"-"` // SubjectPublicKeyInfo (DER) of its TLS key
	PollInterval int       `json:"poll_interval"`
	Enrolled     time.Time `json:"enrolled"`
	Revoked      time.Time `json:"revoked,omitzero"`
	LastSeen     time.Time `json:"last_seen,omitzero"`
	LastProof    time.Time `json:"-"`
	// CompileError is why the last compile for this server failed, if it did.
	CompileError string `json:"compile_error,omitempty"`

	// The last report, and the last serial the server reported applied.
	ReportID      string    `json:"report_id,omitempty"`
	ReportTime    time.Time `json:"report_time,omitzero"`
	ReportSerial  uint64    `json:"report_serial,omitempty"`
	ReportOutcome string    `json:"report_outcome,omitempty"`
	ReportRefusal string    `json:"report_refusal,omitempty"`
	AppliedSerial uint64    `json:"applied_serial,omitempty"`
	AppliedTime   time.Time `json:"applied_time,omitzero"`
}

// Group is a set of establishments and servers: static members, or a
// rule, or both.
type Group struct {
	Name        string `json:"name"`
	Academy     string `json:"academy,omitempty"` // "" for a fleet-wide group
	Description string `json:"description,omitempty"`
	// Priority orders groups when several set the same variable or
	// assign the same module: the higher wins, then the name.
	Priority int        `json:"priority,omitempty"`
	Rule     *GroupRule `json:"rule,omitempty"`
	// Members are UAIs (the establishment's servers) or server ids.
	Members []string `json:"members,omitempty"`
}

// GroupRule selects establishments: every condition given must hold;
// within one, any value listed.
type GroupRule struct {
	Academies    []string `json:"academies,omitempty"`
	Types        []string `json:"types,omitempty"`
	Zones        []string `json:"zones,omitempty"`
	Departements []string `json:"departements,omitempty"` // the UAI's first three digits
}

// Level kinds, highest first in resolution: server > establishment >
// group > academy > fleet.
const (
	LevelServer        = "server"
	LevelEstablishment = "establishment"
	LevelGroup         = "group"
	LevelAcademy       = "academy"
	LevelFleet         = "fleet"
)

// Level is where a variable is set or a module assigned.
type Level struct {
	Kind string `json:"kind"`
	ID   string `json:"id,omitempty"` // "" for the fleet
}

func (l Level) String() string {
	if l.Kind == LevelFleet {
		return LevelFleet
	}
	return l.Kind + ":" + l.ID
}

// Variable is a value set at one level.
type Variable struct {
	Level Level  `json:"level"`
	Name  string `json:"name"`
	// Value is the JSON value; for a secret, null: the value is in Sealed.
	Value json.RawMessage `json:"value"`
	// Sealed is a secret's value, sealed to the controller's own age key.
	Sealed []byte `json:"-"`
	// Generation grows each time the variable is set.
	Generation uint64    `json:"generation"`
	Updated    time.Time `json:"updated"`
	UpdatedBy  string    `json:"updated_by"`
}

// Secret reports whether the variable holds a secret.
func (v Variable) Secret() bool { return len(v.Sealed) > 0 }

// VariableKey names a variable to delete.
type VariableKey struct {
	Level Level
	Name  string
}

// Module is a published module version.
type Module struct {
	Name        string    `json:"name"`
	Version     string    `json:"version"`
	Kind        string    `json:"kind"`
	Counter     uint64    `json:"counter"`
	Digest      string    `json:"digest"` // of Definition
	Agent       string    `json:"agent,omitempty"`
	Definition  []byte    `json:"-"` // the YAML the release signed
	Release     []byte    `json:"-"` // the release's DSSE envelope
	Published   time.Time `json:"published"`
	PublishedBy string    `json:"published_by"`
}

// Assignment assigns a module version to a level. Version VersionNone
// removes the module at that level and below.
type Assignment struct {
	Level     Level     `json:"level"`
	Module    string    `json:"module"`
	Version   string    `json:"version"`
	Updated   time.Time `json:"updated"`
	UpdatedBy string    `json:"updated_by"`
}

// VersionNone, as an assignment's version, excludes the module.
const VersionNone = "none"

// AssignmentKey names an assignment to delete.
type AssignmentKey struct {
	Level  Level
	Module string
}

// Blob is a content-addressed blob (an account roster).
type Blob struct {
	Digest  string    `json:"digest"`
	Size    int64     `json:"size"`
	Data    []byte    `json:"-"`
	Created time.Time `json:"created"`
}

// Root is a version of the academy's root of trust.
type Root struct {
	Version  int       `json:"version"`
	Envelope []byte    `json:"-"`
	Expires  time.Time `json:"expires"`
	Added    time.Time `json:"added"`
}

// Manifest is a server's current signed manifest.
type Manifest struct {
	ServerID string    `json:"server_id"`
	Serial   uint64    `json:"serial"`
	Digest   string    `json:"digest"` // of Envelope: the ETag
	Envelope []byte    `json:"-"`
	Issued   time.Time `json:"issued"`
	Expires  time.Time `json:"expires"`
	// Inputs is a digest of everything the manifest was built from but
	// the sealed ciphertexts: equal inputs, no new manifest.
	Inputs  string           `json:"inputs"`
	Modules []ManifestModule `json:"modules"`
	Blobs   []string         `json:"blobs,omitempty"` // digests
	Secrets []SecretState    `json:"secrets,omitempty"`
	// PrevSerial, on write, is the serial the row must still have
	// (0: no row yet), else Commit fails with ErrConflict. Serial must be
	// PrevSerial + 1.
	PrevSerial uint64 `json:"-"`
}

// ManifestModule is one module of a manifest, as plans compare them.
type ManifestModule struct {
	Name       string `json:"name"`
	Version    string `json:"version"`
	SpecDigest string `json:"spec_digest"`
}

// SecretState is a secret of a manifest: its generation, and where its
// value came from (level and variable generation): another source, a
// new generation.
type SecretState struct {
	Name       string `json:"name"`
	Generation uint64 `json:"generation"`
	Source     string `json:"source"`
}

// Token is an enrollment token. Only a hash of its secret is kept.
type Token struct {
	ID         string    `json:"id"`
	SecretHash []byte    `json:"-"`
	UAI        string    `json:"uai"`
	ServerID   string    `json:"server_id,omitempty"`
	Role       string    `json:"role,omitempty"`
	Expires    time.Time `json:"expires"`
	Created    time.Time `json:"created"`
	CreatedBy  string    `json:"created_by"`
	Used       time.Time `json:"used,omitzero"`
	UsedBy     string    `json:"used_by,omitempty"` // the server enrolled with it
}

// Enrollment is what Enroll writes.
type Enrollment struct {
	TokenID     string
	Time        time.Time
	Server      Server
	Certificate Certificate
	Audit       AuditEntry
	// Replace: the server exists (the token names it) and is re-keyed.
	Replace bool
}

// Certificate is a client certificate the CA issued.
type Certificate struct {
	Serial    string    `json:"serial"` // hex
	ServerID  string    `json:"server_id"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Revoked   time.Time `json:"revoked,omitzero"`
}

// DenyList is what the TLS handshake refuses: revoked certificates, and
// every certificate of a revoked server.
type DenyList struct {
	Serials []string
	Servers []string
}

// Report is an agent's report as stored.
type Report struct {
	ServerID string    `json:"server_id"`
	ID       string    `json:"id"`
	Serial   uint64    `json:"serial"`
	Outcome  string    `json:"outcome"`
	Refusal  string    `json:"refusal,omitempty"` // the refusal code
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Received time.Time `json:"received"`
	// Body is the whole api.Report, as JSON.
	Body json.RawMessage `json:"body,omitempty"`
	// Applied: the run applied (or confirmed) its manifest.
	Applied bool `json:"-"`
	// Facts, on write, update the server's when the report is its latest.
	Facts api.Facts `json:"-"`
}

// ReportFilter selects reports, newest first.
type ReportFilter struct {
	ServerID string
	Limit    int // 0: 100
}

// Operator is a person or a script with a bearer token and a role.
type Operator struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Role       string    `json:"role"`
	Scope      []string  `json:"scope,omitempty"` // academies, or the technician's UAI
	SecretHash []byte    `json:"-"`
	Created    time.Time `json:"created"`
	CreatedBy  string    `json:"created_by"`
	Revoked    time.Time `json:"revoked,omitzero"`
}

// AuditEntry is one line of the append-only audit log.
type AuditEntry struct {
	Seq    int64           `json:"seq"`
	Time   time.Time       `json:"time"`
	Actor  string          `json:"actor"`
	Action string          `json:"action"`
	Target string          `json:"target"`
	Before string          `json:"before,omitempty"` // digest of the object before
	After  string          `json:"after,omitempty"`  // digest of the object after
	Detail json.RawMessage `json:"detail,omitempty"`
}

// AuditFilter selects audit entries, newest first.
type AuditFilter struct {
	Actor  string
	Target string // prefix
	Since  time.Time
	Limit  int // 0: 100
}

// Event tells replicas what changed.
type Event struct {
	Kind string   `json:"kind"` // EventManifests, EventRevoked, EventRoots
	IDs  []string `json:"ids,omitempty"`
	// Origin is the replica that committed it (set by the store): a
	// replica's Listen does not deliver its own events.
	Origin string `json:"origin,omitempty"`
}

// Event kinds.
const (
	EventManifests = "manifests" // IDs: servers with a new manifest
	EventRevoked   = "revoked"   // the deny-list changed
	EventRoots     = "roots"     // a new root version
	// EventResync: events may have been missed (a lost LISTEN
	// connection): forget every cache.
	EventResync = "resync"
)

// ServerRevocation revokes a server and its certificates.
type ServerRevocation struct {
	ID   string
	Time time.Time
}

// Batch is a set of writes Commit makes in one transaction.
type Batch struct {
	Academies      []Academy
	Establishments []Establishment
	Groups         []Group
	DeleteGroups   []string

	Variables       []Variable
	DeleteVariables []VariableKey

	Modules           []Module // new versions only: ErrConflict if one exists
	Assignments       []Assignment
	DeleteAssignments []AssignmentKey
	Blobs             []Blob // kept if present

	Manifests []Manifest
	// CompileErrors sets (or clears, with "") servers' compile error.
	CompileErrors map[string]string

	Tokens          []Token
	Operators       []Operator
	RevokeOperators []string
	RevokeServers   []ServerRevocation
	Roots           []Root

	Audit  []AuditEntry
	Events []Event
}

// Empty reports whether the batch writes nothing.
func (b *Batch) Empty() bool {
	return len(b.Academies)+len(b.Establishments)+len(b.Groups)+len(b.DeleteGroups)+
		len(b.Variables)+len(b.DeleteVariables)+len(b.Modules)+len(b.Assignments)+
		len(b.DeleteAssignments)+len(b.Blobs)+len(b.Manifests)+len(b.CompileErrors)+
		len(b.Tokens)+len(b.Operators)+len(b.RevokeOperators)+len(b.RevokeServers)+
		len(b.Roots)+len(b.Audit) == 0
}
