package examples_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/alize-eple/alize/modules"
	"github.com/alize-eple/alize/modules/accounts"
	"github.com/alize-eple/alize/modules/examples"
	"github.com/alize-eple/alize/modules/firewall"
	"github.com/alize-eple/alize/modules/schema"
	"github.com/alize-eple/alize/modules/shares"
)

var update = flag.Bool("update", false, "rewrite the golden compiled specs in testdata/")

// levels are the variables of one lycée in the Versailles academy, as the
// controller would resolve them for its server, highest level first.
func levels() []schema.Level {
	return []schema.Level{
		{Name: "server", Values: map[string]any{
			"external_interface": "enp1s0",
			"admin_interface":    "enp2s0",
			"samba_domain_sid":   "S-1-5-21-3623811015-3361044348-30300820",
			"ldap_bind_password": "kT9#vQ2!mW7zR4pX",
			"roster_blob":        "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef",
		}},
		{Name: "establishment", Values: map[string]any{
			"uai":                "0951099D",
			"admin_cidr":         "10.95.10.0/24",
			"pedagogical_cidrs":  []any{"10.95.20.0/22", "10.95.24.0/23"},
			"web_server_address": "10.95.10.80",
			"classes":            []any{"2nde1", "2nde2", "1ere-sti2d", "term-stmg"},
		}},
		{Name: "group:lycees", Values: map[string]any{"pedagogical_internet": "drop", "masqueraded_zones": []any{"admin", "pedagogical"}}},
		{Name: "academy", Values: map[string]any{
			"academy":             "versailles",
			"academy_admin_cidrs": []any{"172.20.0.0/16"},
			"controller_address":  "172.20.0.10",
			"dns_servers":         []any{"172.20.1.53", "172.20.2.53"},
		}},
		{Name: "fleet", Values: map[string]any{"log_drops_per_minute": 20}},
	}
}

// levelsFor keeps, at each level, the variables the module declares: the
// controller stores variables per module.
func levelsFor(m *schema.Module) []schema.Level {
	var out []schema.Level
	for _, lv := range levels() {
		values := map[string]any{}
		for k, v := range lv.Values {
			if _, ok := m.Variables.Lookup(k); ok {
				values[k] = v
			}
		}
		out = append(out, schema.Level{Name: lv.Name, Values: values})
	}
	return out
}

// checkers are the kinds' strict decode and Validate, wired as the
// controller wires them: every example must compile into a spec its kind
// accepts.
func checkers(t testing.TB) map[string]modules.SpecChecker {
	t.Helper()
	fw, err := firewall.New(firewall.Config{Root: "/"})
	if err != nil {
		t.Fatal(err)
	}
	sh, err := shares.New(shares.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]modules.SpecChecker{
		"firewall": modules.CheckerFor[firewall.Spec](fw),
		"accounts": accounts.Checker(),
		"shares":   modules.CheckerFor[shares.Spec](sh),
	}
}

func TestExamples(t *testing.T) {
	check := checkers(t)
	names, err := fs.Glob(examples.Files(), "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"amon-firewall.yaml", "scribe-accounts.yaml", "scribe-shares.yaml"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Fatalf("examples (-want +got):\n%s", diff)
	}
	wantSecrets := map[string][]string{"scribe-accounts": {"ldap_bind_password"}}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			data, err := fs.ReadFile(examples.Files(), name)
			if err != nil {
				t.Fatal(err)
			}
			m, err := schema.ParseModule(data)
			if err != nil {
				t.Fatalf("ParseModule: %v", err)
			}
			if m.Name+".yaml" != name {
				t.Errorf("module %q is in %s", m.Name, name)
			}
			r, err := schema.Resolve(&m.Variables, levelsFor(m))
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if check[m.Kind] == nil {
				t.Fatalf("no kind %q", m.Kind)
			}
			c, err := schema.Compile(m, r, check[m.Kind])
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if diff := cmp.Diff(wantSecrets[m.Name], c.Secrets); diff != "" {
				t.Errorf("Secrets (-want +got):\n%s", diff)
			}
			if bytes.Contains(c.Spec, []byte("kT9#")) {
				t.Errorf("the compiled spec holds the bind password")
			}
			values, err := r.ValuesJSON()
			if err != nil {
				t.Fatal(err)
			}
			spec, digest, err := schema.CompileBytes(m.Canonical(), values)
			if err != nil || !bytes.Equal(spec, c.Spec) || digest != c.Digest {
				t.Errorf("CompileBytes = %s, %v; want Compile's %s", digest, err, c.Digest)
			}

			var pretty bytes.Buffer
			if err := json.Indent(&pretty, c.Spec, "", "  "); err != nil {
				t.Fatal(err)
			}
			pretty.WriteString("\n")
			golden := filepath.Join("testdata", strings.TrimSuffix(name, ".yaml")+".json")
			if *update {
				if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			wantSpec, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to write it)", err)
			}
			if diff := cmp.Diff(string(wantSpec), pretty.String()); diff != "" {
				t.Errorf("compiled spec (-%s +got):\n%s", golden, diff)
			}
		})
	}
}
