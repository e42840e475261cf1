package manifest

import (
	"errors"
	"strings"
)

// Reason is why a document was refused. Every refusal wraps exactly one
// Reason: callers branch with errors.Is(err, manifest.ErrRollback), and the
// agent reports Code(err), a stable word, to the controller.
type Reason struct {
	code string
	text string
}

func (r *Reason) Error() string { return r.text }

// Code is the stable snake_case word for the reason, for reports and metrics.
func (r *Reason) Code() string { return r.code }

// The reasons a document is refused. They are sentinels: compare them with
// errors.Is, never by message.
var (
	// Input that is too big, or holds too many of something.
	ErrTooLarge = &Reason{"too_large", "too large"}
	// JSON nested deeper than MaxDepth.
	ErrTooDeep = &Reason{"too_deep", "JSON nested too deeply"}
	// Not JSON, or JSON of the wrong shape or types.
	ErrMalformed = &Reason{"malformed", "malformed"}
	// Well-formed, but a field breaks a rule (missing, out of range, badly formed digest…).
	ErrInvalid = &Reason{"invalid", "invalid"}
	// An object has the same key twice (encoding/json would silently keep the last).
	ErrDuplicateKey = &Reason{"duplicate_key", "duplicate JSON key"}
	// A field the format does not have (field names match exactly, case included).
	ErrUnknownField = &Reason{"unknown_field", "unknown field"}
	// Bytes after the JSON document.
	ErrTrailingData = &Reason{"trailing_data", "trailing data after the JSON document"}
	// A payload, signature or byte field that is not valid base64.
	ErrBadBase64 = &Reason{"bad_base64", "bad base64"}
	// The envelope's payloadType is not the one expected here.
	ErrPayloadType = &Reason{"payload_type", "wrong payload type"}

	// The envelope has no signature at all.
	ErrNoSignatures = &Reason{"no_signatures", "no signatures"}
	// A signature by a key of the role does not verify: tampering, or a key id that lies.
	ErrBadSignature = &Reason{"bad_signature", "bad signature"}
	// Signed by a key the root does not list.
	ErrUnknownKey = &Reason{"unknown_key", "signed by a key the root does not know"}
	// Signed by a key of another role (a release key on a manifest, a director key on a release…).
	ErrWrongRole = &Reason{"wrong_role", "signed by a key of another role"}
	// Valid signatures by too few distinct keys of the role.
	ErrThreshold = &Reason{"threshold", "signature threshold not met"}

	// A new root whose version is not exactly the pinned one plus one.
	ErrRootVersion = &Reason{"root_version", "root version is not the next one"}
	// The manifest or the pinned root has expired: the agent keeps its
	// last-known-good configuration (freeze) until a fresh one comes.
	ErrExpired = &Reason{"expired", "expired"}
	// Issued later than now plus MaxClockSkew.
	ErrIssuedInFuture = &Reason{"issued_in_future", "issued in the future"}
	// The manifest targets another server.
	ErrWrongServer = &Reason{"wrong_server", "manifest for another server"}
	// The manifest targets another establishment (UAI).
	ErrWrongUAI = &Reason{"wrong_uai", "manifest for another establishment"}
	// The serial is not above the last applied one: a replayed or older manifest.
	ErrRollback = &Reason{"rollback", "serial not above the last applied one"}

	// A module carries no release.
	ErrNoRelease = &Reason{"no_release", "module without a release"}
	// A module's release counter is lower than the highest seen for that module.
	ErrReleaseRollback = &Reason{"release_rollback", "release counter lower than the last seen"}
	// The module definition is not the one the release signed.
	ErrDefinitionDigest = &Reason{"definition_digest", "definition does not match the release digest"}
	// A module definition the verifier does not have yet: not a refusal,
	// see MissingDefinitionsError.
	ErrDefinitionMissing = &Reason{"definition_missing", "module definition not fetched yet"}
	// The spec does not match its spec_digest.
	ErrSpecDigest = &Reason{"spec_digest", "spec does not match its digest"}
	// The spec is not what the definition and the values compile to.
	ErrSpecMismatch = &Reason{"spec_mismatch", "spec is not what the definition and values compile to"}
	// The definition and the values do not compile.
	ErrCompile = &Reason{"compile", "definition and values do not compile"}
	// The release's agent constraint excludes this agent's version.
	ErrAgentVersion = &Reason{"agent_version", "agent version excluded by the release"}

	// A blob's bytes do not hash to the digest the manifest lists.
	ErrBlobDigest = &Reason{"blob_digest", "blob does not match its digest"}
	// A blob's length is not the size the manifest lists.
	ErrBlobSize = &Reason{"blob_size", "blob is not the size listed"}

	// The secret is sealed to another agent's key: this agent cannot open it.
	ErrSecretRecipient = &Reason{"secret_recipient", "secret sealed to another agent"}
	// The sealed text names another server.
	ErrSecretServer = &Reason{"secret_server", "secret sealed for another server"}
	// The sealed text names another secret.
	ErrSecretName = &Reason{"secret_name", "secret name does not match"}
	// The secret's generation is older than the one expected or last seen.
	ErrSecretGeneration = &Reason{"secret_generation", "secret generation does not match"}
)

// Code returns the stable code of the Reason err wraps ("rollback",
// "bad_signature"…), or "" when err is not a refusal.
func Code(err error) string {
	var r *Reason
	if errors.As(err, &r) {
		return r.code
	}
	return ""
}

// Error is a refusal: which document, where in it, why, and what was found.
// Its message never holds a secret or a private key.
type Error struct {
	Doc    string  // "manifest", "root", "release", "envelope", "secret", "blob"
	Path   string  // where in the document: "target.uai", "modules[1].spec_digest"; may be empty
	Reason *Reason // why: one of the Err… sentinels
	Detail string  // what was found: "serial 41, last applied 42"; may be empty
	Err    error   // the underlying error (JSON decoder, compile…), if any
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Doc)
	if e.Path != "" {
		b.WriteString(": ")
		b.WriteString(e.Path)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason.text)
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap lets errors.Is find the Reason, and the underlying error if any.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Reason}
	}
	return []error{e.Reason, e.Err}
}

func refuse(doc, path string, r *Reason, detail string) *Error {
	return &Error{Doc: doc, Path: path, Reason: r, Detail: detail}
}

// annotate adds a note to the detail of the *Error in err, if any.
func annotate(err error, note string) error {
	var e *Error
	if errors.As(err, &e) {
		if e.Detail == "" {
			e.Detail = note
		} else {
			e.Detail += "; " + note
		}
	}
	return err
}
