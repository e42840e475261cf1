package firewall

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alize-eple/alize/modules"
)

// FuzzSpec decodes arbitrary specs strictly and validates them. Whatever
// the input: no panic; every problem has a path; a valid spec compiles
// and renders, deterministically, with its lifelines; and its JSON
// decodes back to a spec just as valid.
func FuzzSpec(f *testing.F) {
	paths, _ := filepath.Glob("testdata/*.json")
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		`{}`, `{"zones": []}`, `{"zones": [{"name": "a", "interfaces": ["eth0"], "services": ["ssh"]}]}`,
		`{"zones": [{"name": "a", "interfaces": ["eth0"], "sets": [{"name": "s", "addresses": ["10.0.0.0/8", "10.1.0.0/16", "255.255.255.255"]}],
		  "services": [{"sources": ["s"]}]}]}`,
		`{"zones": [{"name": "a", "level": 101, "interfaces": ["lo", "eth0"]}], "policy": [{"from": "server", "to": "a", "default": "drop"}]}`,
		`{"zones": [{"name": "a", "interfaces": ["eth0"]}], "port_forwards": [{"name": "x", "zone": "a", "protocol": "udp", "port": 1, "to_address": "::1"}]}`,
		schoolSpec,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := modules.DecodeSpec[Spec](data)
		if err != nil {
			return
		}
		errs := validate(spec)
		for _, e := range errs {
			if (e.Path == "" && !strings.Contains(e.Message, "rules, at most")) || e.Message == "" {
				t.Fatalf("problem without a path or message: %+v", e)
			}
		}
		if len(errs) > 0 {
			return
		}
		if len(spec.Zones) == 0 {
			return // manages nothing
		}
		rs := compile(spec, goldenLifelines())
		if got, est := rs.state().numRules(), estimateRules(spec, catalogue()); got > est {
			t.Fatalf("the spec makes %d rules, more than the %d estimated", got, est)
		}
		text := rs.render()
		if again := compile(spec, goldenLifelines()).render(); !bytes.Equal(text, again) {
			t.Fatal("rendering the same spec twice gave different texts")
		}
		for _, lifeline := range []string{`iifname "lo" accept comment "lifeline: loopback"`, "lifeline: agent to controller", "lifeline: academy admin networks to ssh"} {
			if !strings.Contains(string(text), lifeline) {
				t.Fatalf("rendered ruleset lacks %q:\n%s", lifeline, text)
			}
		}
		round, err := json.Marshal(spec)
		if err != nil {
			t.Fatal(err)
		}
		back, err := modules.DecodeSpec[Spec](round)
		if err != nil {
			t.Fatalf("a valid spec's JSON does not decode: %v\n%s", err, round)
		}
		if err := validate(back).Err(); err != nil {
			t.Fatalf("a valid spec's JSON is not valid: %v\n%s", err, round)
		}
	})
}
