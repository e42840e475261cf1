// Package examples holds example module definitions, as an academy would
// publish them: amon-firewall (an Amon-like three-zone firewall),
// scribe-accounts (Scribe-like LDAP accounts) and scribe-shares
// (Scribe-like Samba shares). They document the module format by example,
// seed the schema package's fuzz targets, and give the fleet benchmarks
// and the simulated school realistic modules to compile.
//
// Who may import it: tests, benchmarks and test environments only; a
// controller or agent never depends on it.
package examples

import (
	"embed"
	"io/fs"
)

//go:embed *.yaml
var files embed.FS

// Files returns the example definitions, one "<name>.yaml" per module.
func Files() fs.FS { return files }
