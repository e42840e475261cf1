package school_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alize-eple/alize/modules/examples"
	"github.com/alize-eple/alize/testenv/school"
)

// scaledRoster is a lycée of pupils pupils in classes classes (named
// c001…), with a teacher for every class.
func scaledRoster(pupils, classes int) (string, []string) {
	first := []string{"Chloé", "Lucas", "Aïcha", "Yann", "Léa", "Hugo", "Inès", "Nathan", "Emma", "Noah",
		"Jade", "Louis", "Zoé", "Adam", "Lina", "Gabriel", "Manon", "Arthur", "Camille", "Jules"}
	last := []string{"Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois", "Moreau", "Laurent",
		"Simon", "Michel", "Lefèvre", "Leroy", "Roux", "David", "Bertrand", "Morel", "Fournier", "Girard"}
	var b strings.Builder
	b.WriteString("role;id;last_name;first_name;birth_date;class;teaches\n")
	var names []string
	for c := range classes {
		names = append(names, fmt.Sprintf("c%03d", c+1))
	}
	for i := range pupils {
		fmt.Fprintf(&b, "eleve;%010dA;%s%s;%s;2011-%02d-%02d;%s;\n", i, last[i%len(last)], strings.Repeat("e", i/400),
			first[(i/len(last))%len(first)], 1+i%12, 1+i%28, names[i%classes])
	}
	for c, n := range names {
		fmt.Fprintf(&b, "enseignant;08E%09dAB;Prof%s;Claire;;;%s\n", c, strings.Repeat("x", c/20), n)
	}
	return b.String(), names
}

// scaledFirewall is the amon-firewall example with rules extra allowances
// from the external zone to the admin zone (published services).
func scaledFirewall(tb testing.TB, rules int) []byte {
	b, err := fs.ReadFile(examples.Files(), "amon-firewall.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	var p strings.Builder
	p.WriteString("    - from: external\n      to: admin\n      allow:\n")
	for i := range rules {
		fmt.Fprintf(&p, "        - {protocol: tcp, port: %d, destinations: [\"10.95.10.%d\"]}\n", 20000+i, 10+i%200)
	}
	s := strings.Replace(string(b), "  masquerade:\n", p.String()+"  masquerade:\n", 1)
	if s == string(b) {
		tb.Fatal("amon-firewall.yaml: no masquerade section to insert before")
	}
	return []byte(s)
}

// BenchmarkSchoolNoChange is one complete drift check of a converged
// school scaled to 2,000 pupils, 500 firewall rules and 100 class shares:
// `alize plan` as the technician runs it (a new process, which asks the
// running daemon: observe and plan of the three kinds between its runs),
// with nothing to change. Each kind's part is reported apart.
func BenchmarkSchoolNoChange(b *testing.B) {
	roster, classes := scaledRoster(2000, 100)
	s := school.Start(b, school.Options{Bin: bin, Roster: roster, Classes: classes, Firewall: scaledFirewall(b, 450)})
	var fig school.Figures
	start := time.Now()
	for _, st := range s.Story(&fig)[:2] {
		if err := st.Run(); err != nil {
			b.Logf("agent log:\n%s", s.Agent.Logs())
			b.Fatalf("%s: %v", st.Title, err)
		}
	}
	b.Logf("scaled school converged in %v (first run %v)", time.Since(start).Round(time.Millisecond), fig.FirstConverge.Round(time.Millisecond))
	out, code, err := s.Agent.Quiet("plan")
	if err != nil || code != 0 {
		b.Fatalf("alize plan of the converged school: exit %d, %v\n%s", code, err, out)
	}
	rules, _ := s.Run(s.Server, "school", "sh", "-c", "nft list table inet alize | grep -c -E 'accept|drop|jump|masquerade|dnat|log'")
	b.Logf("firewall rules in the live table: %s", strings.TrimSpace(rules))
	t0 := time.Now()
	if err := s.SyncNSS(); err != nil {
		b.Fatal(err)
	}
	b.Logf("the getent shim's refresh (nslcd's stand-in, run by each getent): %v", time.Since(t0).Round(time.Millisecond))
	if err := s.FreezeNSS(); err != nil {
		b.Fatal(err)
	}
	t0 = time.Now()
	if _, _, err := s.Agent.Quiet("version"); err != nil {
		b.Fatal(err)
	}
	b.Logf("alize version (process start in the school's namespaces): %v", time.Since(t0).Round(time.Millisecond))
	took := map[string][]float64{}
	b.ResetTimer()
	for b.Loop() {
		out, code, err := s.Agent.Quiet("plan", "--json")
		if err != nil || code != 0 {
			b.Fatalf("alize plan: exit %d, %v\n%s", code, err, out)
		}
		var plan struct {
			TookMS  int64 `json:"took_ms"`
			Modules []struct {
				Kind   string `json:"kind"`
				TookMS int64  `json:"took_ms"`
			} `json:"modules"`
		}
		if err := json.Unmarshal([]byte(out), &plan); err != nil {
			b.Fatalf("alize plan --json: %v", err)
		}
		for _, m := range plan.Modules {
			took[m.Kind] = append(took[m.Kind], float64(m.TookMS))
		}
		took["check"] = append(took["check"], float64(plan.TookMS))
	}
	b.StopTimer()
	// The drift check (the three kinds side by side) and each kind's
	// observe and plan, as the daemon timed them: medians.
	for kind, ms := range took {
		slices.Sort(ms)
		b.ReportMetric(ms[len(ms)/2], kind+"-ms")
	}
}
