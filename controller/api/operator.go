package api

import (
	"encoding/json"
	"time"
)

// Operator routes. They authenticate with a bearer token
// ("Authorization: Bearer alizeop1.<id>.<secret>") whose operator has a
// role; every route checks it, and every mutating route writes the audit
// log. Mutations that change what servers must be (variables,
// assignments, establishments, groups, rosters, push) take "dry_run":
// the answer is then the Plan of what they would do, and nothing is kept.
const (
	PathAdminWhoami         = "/v1/admin/whoami"         // GET → Whoami
	PathAdminAcademies      = "/v1/admin/academies"      // GET → []Academy; POST Academy
	PathAdminEstablishments = "/v1/admin/establishments" // GET → []Establishment; POST EstablishmentRequest → Plan
	PathAdminGroups         = "/v1/admin/groups"         // GET → []Group; POST GroupRequest → Plan (delete: true removes)
	PathAdminServers        = "/v1/admin/servers"        // GET → []ServerInfo; GET /{id} → ServerDetail; POST /{id}/revoke
	PathAdminTokens         = "/v1/admin/tokens"         // GET → []TokenInfo; POST TokenRequest → TokenResponse
	PathAdminVariables      = "/v1/admin/variables"      // GET → []VariableInfo; POST VariableRequest → Plan
	PathAdminModules        = "/v1/admin/modules"        // GET → []ModuleInfo; POST PublishRequest → ModuleInfo
	PathAdminAssignments    = "/v1/admin/assignments"    // GET → []AssignmentInfo; POST AssignRequest → Plan
	PathAdminPush           = "/v1/admin/push"           // POST PushRequest → Plan
	PathAdminRosters        = "/v1/admin/rosters/"       // POST /{uai}[?dry_run=true] (text/csv) → RosterPlan
	PathAdminReports        = "/v1/admin/reports"        // GET ?server=&limit= → []ReportInfo
	PathAdminIndicators     = "/v1/admin/indicators"     // GET ?format=csv → Indicators (or CSV)
	PathAdminAudit          = "/v1/admin/audit"          // GET ?actor=&target=&since=&limit= → []AuditEntry
	PathAdminOperators      = "/v1/admin/operators"      // GET → []OperatorInfo; POST OperatorRequest → OperatorResponse; POST /{id}/revoke
	PathAdminRoots          = "/v1/admin/roots"          // GET → []RootInfo; POST RootRequest (a rotated root)
)

// Other controller routes, without authentication.
const (
	PathHealthz = "/healthz" // the process is up
	PathReadyz  = "/readyz"  // the store answers and the controller is not shutting down
	PathMetrics = "/metrics" // Prometheus
)

// OperatorTokenPrefix starts every operator bearer token.
const OperatorTokenPrefix = "alizeop1"

// Operator roles.
const (
	// RoleFleetAdmin may do everything, keys and operators included.
	RoleFleetAdmin = "fleet_admin"
	// RoleAcademyAdmin manages the academies of its scope: their
	// establishments, groups, servers, variables, assignments, tokens.
	RoleAcademyAdmin = "academy_admin"
	// RoleTechnician reads what concerns its establishment (scope: one UAI).
	RoleTechnician = "technician"
	// RoleViewer reads everything (or the academies of its scope).
	RoleViewer = "viewer"
)

// Server states, derived from manifests and reports.
const (
	StateCompliant    = "compliant"     // applied its current manifest; nothing had to change
	StateCorrected    = "corrected"     // applied its current manifest, repairing drift or applying a change
	StateFailing      = "failing"       // a change failed, was reverted, or the manifest could not be built
	StatePending      = "pending"       // has not reported on its current manifest yet
	StateRefused      = "refused"       // refused its current manifest
	StateNotReporting = "not_reporting" // silent for longer than its own schedule allows
	StateRevoked      = "revoked"       // its certificates are on the deny-list
)

// Whoami is the operator a token belongs to.
type Whoami struct {
	ID    string   `json:"id"`
	Name  string   `json:"name"`
	Role  string   `json:"role"`
	Scope []string `json:"scope,omitempty"`
}

// Academy is one academy of the controller.
type Academy struct {
	Name    string    `json:"name"` // lowercase: "versailles", "aix-marseille"
	Title   string    `json:"title"`
	Created time.Time `json:"created,omitzero"`
}

// Establishment types and holiday zones.
const (
	TypeCollege = "college"
	TypeLycee   = "lycee"
	TypeLP      = "lp"
	TypeEREA    = "erea"
)

// Establishment is one school.
type Establishment struct {
	UAI     string    `json:"uai"` // "0951099D"
	Academy string    `json:"academy"`
	Name    string    `json:"name"`
	Type    string    `json:"type"` // college, lycee, lp, erea
	Zone    string    `json:"zone"` // holiday zone: A, B, C
	Created time.Time `json:"created,omitzero"`
}

// EstablishmentRequest adds or changes an establishment.
type EstablishmentRequest struct {
	Establishment
	DryRun bool `json:"dry_run,omitempty"`
}

// GroupRule selects establishments; every condition given must hold, and
// within one any value listed.
type GroupRule struct {
	Academies    []string `json:"academies,omitempty"`
	Types        []string `json:"types,omitempty"`
	Zones        []string `json:"zones,omitempty"`
	Departements []string `json:"departements,omitempty"` // "095": the UAI's first three digits
}

// Group is a set of establishments and servers.
type Group struct {
	Name        string     `json:"name"`
	Academy     string     `json:"academy,omitempty"` // "" for a fleet-wide group (fleet admins only)
	Description string     `json:"description,omitempty"`
	Priority    int        `json:"priority,omitempty"` // when groups disagree, the higher wins, then the name
	Rule        *GroupRule `json:"rule,omitempty"`
	Members     []string   `json:"members,omitempty"` // UAIs and server ids
}

// GroupRequest adds, changes or (Delete) removes a group.
type GroupRequest struct {
	Group
	Delete bool `json:"delete,omitempty"`
	DryRun bool `json:"dry_run,omitempty"`
}

// Levels are written "fleet", "academy:<name>", "group:<name>",
// "establishment:<uai>", "server:<id>".

// VariableRequest sets (or, with Unset, removes) a variable at a level.
// A secret is given in Secret, never in Value; it is sealed at rest and
// for each server, and never shown again.
type VariableRequest struct {
	Level  string          `json:"level"`
	Name   string          `json:"name"`
	Value  json.RawMessage `json:"value,omitempty"`
	Secret *string         `json:"secret,omitempty"`
	Unset  bool            `json:"unset,omitempty"`
	DryRun bool            `json:"dry_run,omitempty"`
}

// VariableInfo is a variable as set at one level.
type VariableInfo struct {
	Level      string          `json:"level"`
	Name       string          `json:"name"`
	Value      json.RawMessage `json:"value"` // a secret reads "(secret)"
	Secret     bool            `json:"secret,omitempty"`
	Generation uint64          `json:"generation"`
	Updated    time.Time       `json:"updated"`
	UpdatedBy  string          `json:"updated_by"`
}

// PublishRequest publishes a module version: its definition file and
// the release envelope the release key signed for it.
type PublishRequest struct {
	Definition string          `json:"definition"` // the YAML, byte for byte as signed
	Release    json.RawMessage `json:"release"`    // DSSE envelope
}

// ModuleInfo is a published module version.
type ModuleInfo struct {
	Name        string    `json:"name"`
	Version     string    `json:"version"`
	Kind        string    `json:"kind"`
	Counter     uint64    `json:"counter"`
	Digest      string    `json:"digest"`
	Agent       string    `json:"agent,omitempty"`
	Published   time.Time `json:"published"`
	PublishedBy string    `json:"published_by"`
}

// AssignRequest assigns a module version at a level ("none" excludes the
// module there and below), or with Unassign removes the assignment.
type AssignRequest struct {
	Level    string `json:"level"`
	Module   string `json:"module"`
	Version  string `json:"version,omitempty"`
	Unassign bool   `json:"unassign,omitempty"`
	DryRun   bool   `json:"dry_run,omitempty"`
}

// AssignmentInfo is a module version assigned at a level.
type AssignmentInfo struct {
	Level     string    `json:"level"`
	Module    string    `json:"module"`
	Version   string    `json:"version"`
	Updated   time.Time `json:"updated"`
	UpdatedBy string    `json:"updated_by"`
}

// PushRequest rebuilds and re-signs the manifests of a level's servers
// now (after a key rotation, or to retry servers whose manifest could
// not be built). Unchanged manifests are re-signed only with Force.
type PushRequest struct {
	Level  string `json:"level"`
	Force  bool   `json:"force,omitempty"`
	DryRun bool   `json:"dry_run,omitempty"`
}

// Plan is what a change does (or, dry run, would do) to which servers.
type Plan struct {
	DryRun bool `json:"dry_run,omitempty"`
	// Refused: the change breaks servers whose manifest builds today, so
	// it is refused (a dry run says it would be).
	Refused bool `json:"refused,omitempty"`
	// Touched servers are those the change concerns; Changed, those
	// whose manifest changes; Failed, those whose manifest cannot be
	// built with the change.
	Touched int          `json:"touched"`
	Changed int          `json:"changed"`
	Failed  int          `json:"failed"`
	Servers []PlanServer `json:"servers,omitempty"` // the changed and the failed
}

// PlanServer is what a change does to one server.
type PlanServer struct {
	ServerID string `json:"server_id"`
	UAI      string `json:"uai"`
	Serial   uint64 `json:"serial,omitempty"` // of the new manifest
	// Modules lists the modules that change; none when only the
	// signature, a secret, a blob or the expiry does.
	Modules []PlanModule `json:"modules,omitempty"`
	Error   string       `json:"error,omitempty"`
}

// Module changes in a plan.
const (
	PlanAdd    = "add"
	PlanRemove = "remove"
	PlanUpdate = "update" // another version, or another spec
)

// PlanModule is what happens to one module of a server.
type PlanModule struct {
	Module      string `json:"module"`
	Change      string `json:"change"`
	FromVersion string `json:"from_version,omitempty"`
	ToVersion   string `json:"to_version,omitempty"`
	FromSpec    string `json:"from_spec,omitempty"` // spec digests
	ToSpec      string `json:"to_spec,omitempty"`
}

// TokenRequest asks for an enrollment token for a server of an
// establishment.
type TokenRequest struct {
	UAI        string `json:"uai"`
	ServerID   string `json:"server_id,omitempty"` // bind it to this server (re-enrolls it if it exists)
	Role       string `json:"role,omitempty"`      // the server's role: "amon", "scribe"…
	TTLSeconds int    `json:"ttl_seconds,omitempty"`
}

// TokenResponse is the token to hand to the technician, shown once.
type TokenResponse struct {
	Token   string    `json:"token"`
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
}

// TokenInfo is an enrollment token, without its secret.
type TokenInfo struct {
	ID        string    `json:"id"`
	UAI       string    `json:"uai"`
	ServerID  string    `json:"server_id,omitempty"`
	Role      string    `json:"role,omitempty"`
	Expires   time.Time `json:"expires"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
	Used      time.Time `json:"used,omitzero"`
	UsedBy    string    `json:"used_by,omitempty"`
}

// ServerInfo is one server as operators see it.
type ServerInfo struct {
	ID            string    `json:"id"`
	UAI           string    `json:"uai"`
	Academy       string    `json:"academy"`
	Type          string    `json:"type"`
	Role          string    `json:"role"`
	State         string    `json:"state"`
	Reason        string    `json:"reason,omitempty"`
	Serial        uint64    `json:"serial,omitempty"` // of its current manifest
	AppliedSerial uint64    `json:"applied_serial,omitempty"`
	LastReport    time.Time `json:"last_report,omitzero"`
	LastSeen      time.Time `json:"last_seen,omitzero"`
	Enrolled      time.Time `json:"enrolled"`
	Revoked       time.Time `json:"revoked,omitzero"`
	Facts         Facts     `json:"facts"`
}

// ServerDetail is one server with its manifest and certificates.
type ServerDetail struct {
	ServerInfo
	CompileError    string           `json:"compile_error,omitempty"`
	ManifestIssued  time.Time        `json:"manifest_issued,omitzero"`
	ManifestExpires time.Time        `json:"manifest_expires,omitzero"`
	Modules         []ServerModule   `json:"modules,omitempty"`
	Certificates    []CertificateRef `json:"certificates,omitempty"`
}

// ServerModule is a module of a server's current manifest.
type ServerModule struct {
	Module     string `json:"module"`
	Version    string `json:"version"`
	SpecDigest string `json:"spec_digest"`
}

// CertificateRef is a client certificate issued to a server.
type CertificateRef struct {
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Revoked   time.Time `json:"revoked,omitzero"`
}

// ReportInfo is a stored report.
type ReportInfo struct {
	ServerID string    `json:"server_id"`
	Received time.Time `json:"received"`
	Report
}

// Indicators sum up the fleet's servers, per academy, establishment type
// and module version.
type Indicators struct {
	Generated time.Time      `json:"generated"`
	Rows      []IndicatorRow `json:"rows"`
}

// IndicatorRow is one slice of the fleet: By "fleet", "academy", "type"
// or "module" (Key "name@version": the servers whose current manifest
// has that version; together the rows of a module give its version
// spread).
type IndicatorRow struct {
	By           string `json:"by"`
	Key          string `json:"key"`
	Servers      int    `json:"servers"`
	Compliant    int    `json:"compliant"`
	Corrected    int    `json:"corrected"`
	Failing      int    `json:"failing"`
	Pending      int    `json:"pending"`
	Refused      int    `json:"refused"`
	NotReporting int    `json:"not_reporting"`
	// CompliancePercent: compliant and corrected, over all servers.
	CompliancePercent float64 `json:"compliance_percent"`
	// MedianPushToAppliedSeconds: from a manifest's signature to the
	// report that applied it, median over the servers that applied their
	// current manifest; 0 when none has.
	MedianPushToAppliedSeconds float64 `json:"median_push_to_applied_seconds"`
}

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	Seq    int64           `json:"seq"`
	Time   time.Time       `json:"time"`
	Actor  string          `json:"actor"`
	Action string          `json:"action"`
	Target string          `json:"target"`
	Before string          `json:"before,omitempty"` // digests of the object
	After  string          `json:"after,omitempty"`
	Detail json.RawMessage `json:"detail,omitempty"`
}

// OperatorRequest adds an operator.
type OperatorRequest struct {
	Name  string   `json:"name"`
	Role  string   `json:"role"`
	Scope []string `json:"scope,omitempty"` // academies (academy admin, viewer), or one UAI (technician)
}

// OperatorInfo is an operator, without its token.
type OperatorInfo struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Scope     []string  `json:"scope,omitempty"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
	Revoked   time.Time `json:"revoked,omitzero"`
}

// OperatorResponse carries a new operator's bearer token, shown once.
type OperatorResponse struct {
	Operator OperatorInfo `json:"operator"`
	Token    string       `json:"token"`
}

// RootRequest publishes the next root version (made offline by keys
// rotate).
type RootRequest struct {
	Envelope json.RawMessage `json:"envelope"`
}

// RootInfo is a root version the controller serves.
type RootInfo struct {
	Version int       `json:"version"`
	Expires time.Time `json:"expires"`
	Added   time.Time `json:"added"`
}

// RosterPlan is what importing a roster (CSV) does: the people added,
// departed (absent from this complete roster: disabled and archived by
// the agent, never deleted) and changed, by stable id, against the
// establishment's current roster; and the plan of the manifests it
// changes. With ?dry_run=true nothing is kept.
type RosterPlan struct {
	UAI      string   `json:"uai"`
	Digest   string   `json:"digest"` // of the roster blob, as the agent will fetch it
	People   int      `json:"people"`
	Encoding string   `json:"encoding"` // the CSV's: utf-8, windows-1252
	Added    []string `json:"added,omitempty"`
	Departed []string `json:"departed,omitempty"`
	Changed  []string `json:"changed,omitempty"`
	Plan     Plan     `json:"plan"`
}
