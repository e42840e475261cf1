// Package manifest is Alizé's chain of trust: the DSSE envelopes, the
// academy root (keys, roles, thresholds, rotation), module releases,
// per-server manifests, blobs and sealed secrets, with both sides: what
// the controller and the release team sign, and what the agent verifies.
//
// An agent pins a root (PinRoot), walks its rotations one version at a
// time (Trust.UpdateRoot), then checks each manifest it pulls with a
// Verifier: signed by the director role, for this server, newer than the
// last applied, not expired, every module blessed by a release the
// release role signed, every spec what its definition and values compile
// to. A refused manifest changes nothing, and every refusal is an *Error
// wrapping one Reason (ErrRollback, ErrExpired, ErrBadSignature…) whose
// Code the agent reports. Blobs are checked with VerifyBlob, secrets
// opened with Unseal. docs/security.md tells what each check defends
// against, and what none of them does.
//
// Everything here is pure: no file, no network, no clock but the one the
// caller passes. Storing the pinned root, the last-known-good manifest and
// the State is the agent's job.
//
// Who may import it: the agent, the controller, and tools that sign
// (releases, roots). It imports modules (for FieldErrors), dsse from
// go-securesystemslib (signing, PAE), age (secrets), go-version (agent
// constraints) and the JSON v2 decoder (strict decoding); never
// modules/schema, whose compile function comes in through
// Verifier.Compile.
package manifest
