// Package fleetsim simulates a fleet of school servers against one real
// controller, to measure the controller at the scale of the nation
// (issue 8: 17,000 agents): steady polling latency, how fast a fleet-level
// change reaches the fleet, and the controller's memory.
//
// The controller is the real alize-controller binary, run as its own
// process (`serve`, SQLite or PostgreSQL) so that its memory can be read
// from /proc. The agents all live in the calling process, each with its
// own keys, its own client certificate and its own mutual TLS connection,
// and run the real agent-side code: api.Client (enroll, long-poll
// manifest with ETag, report), api.Schedule for the timing, and
// manifest.Verifier for verification. Applying is a no-op: the module
// is of the real shares kind (the controller knows no test kind), and
// the simulated agent reports it applied without touching anything.
//
// Who may import it: tests and benchmarks only (its own, under
// `make test` and `make bench`).
package fleetsim
