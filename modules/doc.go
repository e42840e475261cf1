// Package modules is the contract between Alizé's agent engine and its kinds.
//
// A kind is agent code that observes and changes one part of a school
// server (firewall, accounts, shares). Each kind lives in its own package
// under modules/ and implements [Kind] for its typed spec. The controller
// uses the same kinds' Validate (through [SpecChecker]) before it signs a
// manifest, so a spec that would not apply is refused at the source.
//
// Who may import it: everyone (agent, controller, kinds, tests). It depends
// on the standard library only.
package modules
