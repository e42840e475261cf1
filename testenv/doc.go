// Package testenv starts real services in throwaway places for Alizé's
// tests: network namespaces and veth topologies, OpenLDAP (slapd), Samba
// (smbd), PostgreSQL and a systemd notify socket. Everything a helper starts
// is stopped and removed through t.Cleanup, even when the test fails.
//
// A test that needs a real part says so first:
//
//	testenv.Require(t, "root", "slapd")
//
// On a laptop without the part the test is skipped with a clear message;
// under `make test` (ALIZE_SYSTEST=1) a missing part fails the test. No
// other test calls t.Skip for a missing part.
//
// Who may import it: tests only (any package's _test files, and the
// end-to-end school simulator). Production code never imports it.
package testenv
