// Package schema reads Alizé module definitions and compiles them for one
// server.
//
// A module definition (YAML) names a kind, declares typed variables — a
// dictionary grouped in families, as EOLE's Creole and Rougail have — and
// writes the kind's desired state against them (its spec). The path is:
//
//	ParseModule(yaml)                 once per module version
//	Resolve(&m.Variables, levels)     per server: server > establishment > groups > academy > fleet > default
//	Compile(m, resolved, checker)     per server: canonical JSON spec, digest, secrets it refers to
//
// Substitution works on the parsed spec, never on text: a string that is
// exactly "${var}" takes the variable's typed value, "${var}" inside a
// longer string takes its text, "$${" is a literal "${". A secret never
// enters a spec: compile writes the reference "secret://<var>", which the
// agent's kind replaces with the value it unseals.
//
// The agent's verifier recompiles with CompileBytes(definition, values), or
// Module.CompileValues(values) for a module it has parsed before, which give
// the same bytes as Compile for the same inputs. docs/modules.md describes
// the file format and the rules.
//
// Who may import it: the controller (publish, plan, sign), the agent
// (verify), modules/manifest, and tests. It imports modules and third-party
// parsers only, never agent or controller code.
package schema
