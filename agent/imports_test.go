// Package agent_test keeps the agent's side of the layout honest: agent
// code (agent/…) may import modules/… and controller/api, never
// controller/internal/…. The agent runs on 17,000 school servers; the
// controller's internals (its CA, signer, store) must never be linked in.
package agent_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/alize-eple/alize"

// forbidden returns, for each agent package, the controller internals it
// depends on. deps maps a package to its transitive dependencies.
func forbidden(deps map[string][]string) []string {
	var bad []string
	for pkg, ds := range deps {
		if !strings.HasPrefix(pkg, module+"/agent") {
			continue
		}
		for _, d := range ds {
			if d == module+"/controller/internal" || strings.HasPrefix(d, module+"/controller/internal/") {
				bad = append(bad, pkg+" → "+d)
			}
		}
	}
	return bad
}

func TestForbiddenCatchesControllerInternals(t *testing.T) {
	deps := map[string][]string{
		module + "/agent/internal/engine": {"fmt", module + "/modules", module + "/controller/api"},
		module + "/agent/cmd/alize":       {module + "/controller/internal/store", "os"},
		module + "/controller/cmd/x":      {module + "/controller/internal/store"},
	}
	got := forbidden(deps)
	want := module + "/agent/cmd/alize → " + module + "/controller/internal/store"
	if len(got) != 1 || got[0] != want {
		t.Errorf("forbidden(…) = %q, want [%q]", got, want)
	}
}

func TestAgentDoesNotImportControllerInternals(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test",
		"-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, module+"/agent/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 {
			deps[f[0]] = f[1:]
		}
	}
	if len(deps) == 0 {
		t.Fatalf("go list found no agent package:\n%s", out)
	}
	if bad := forbidden(deps); len(bad) > 0 {
		t.Errorf("agent packages import controller internals:\n%s", strings.Join(bad, "\n"))
	}
}
