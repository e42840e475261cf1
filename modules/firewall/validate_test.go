package firewall

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/alize-eple/alize/modules"
	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

func TestGoldenSpecsAreValid(t *testing.T) {
	for name, spec := range goldenSpecs(t) {
		if err := validate(spec).Err(); err != nil {
			t.Errorf("Validate(%s) = %v, want nil", name, err)
		}
	}
}

func TestZeroSpecIsValid(t *testing.T) {
	if err := validate(Spec{}).Err(); err != nil {
		t.Errorf("Validate(Spec{}) = %v, want nil: the zero spec manages nothing", err)
	}
}

// TestValidateReportsEveryProblem gives specs with problems and checks
// every problem is reported, at its path.
func TestValidateReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name string
		spec string
		want []string // "path: piece of the message"
	}{
		{
			name: "port out of range, deep in the spec",
			spec: `{"zones": [{"name": "a", "interfaces": ["eth0"]}, {"name": "b", "interfaces": ["eth1"]},
				{"name": "c", "interfaces": ["eth2"], "services": [{"protocol": "tcp", "port": 70000}]}]}`,
			want: []string{"zones[2].services[0].port: must be 1-65535"},
		},
		{
			name: "interface in two zones, and twice a zone name",
			spec: `{"zones": [{"name": "a", "interfaces": ["eth0"]}, {"name": "a", "interfaces": ["eth0"]}]}`,
			want: []string{
				`zones[1].name: zone "a" is defined twice`,
				`zones[1].interfaces[0]: interface "eth0" is already in zones[0]`,
			},
		},
		{
			name: "unsafe names and interfaces",
			spec: `{"zones": [{"name": "Péda", "interfaces": ["eth0\"; drop", "lo", "averyveryverylongname"]},
				{"name": "server", "interfaces": ["eth9"]}, {"name": "", "level": 101, "interfaces": []}]}`,
			want: []string{
				`zones[0].name: "Péda": lowercase letters`,
				`zones[0].interfaces[0]: "eth0\"; drop": letters, digits`,
				`zones[0].interfaces[1]: the loopback interface is a lifeline`,
				`zones[0].interfaces[2]: "averyveryverylongname": an interface name has 1-15 characters`,
				`zones[1].name: "server" is reserved`,
				`zones[2].name: required`,
				`zones[2].level: must be 0-100`,
				`zones[2].interfaces: required`,
			},
		},
		{
			name: "networks must be canonical CIDRs",
			spec: `{"zones": [{"name": "a", "interfaces": ["eth0"],
				"networks": ["10.1.2.3/16", "2001:DB8::/32", "10.0.0.0", "0.0.0.0/0", "::ffff:10.0.0.0/104"]}]}`,
			want: []string{
				`zones[0].networks[0]: "10.1.2.3/16": host bits are set; the network is 10.1.0.0/16`,
				`zones[0].networks[1]: "2001:DB8::/32": write it 2001:db8::/32`,
				`zones[0].networks[2]: "10.0.0.0": not a CIDR network`,
				`zones[0].networks[3]: "0.0.0.0/0": a /0 network means everything`,
				`zones[0].networks[4]: "::ffff:10.0.0.0/104": write IPv4 networks in IPv4 form`,
			},
		},
		{
			name: "sets",
			spec: `{"zones": [{"name": "a", "interfaces": ["eth0"],
				"sets": [{"name": "x", "addresses": ["10.0.0.1", "10.0.0.256"]}, {"name": "x", "addresses": []}]}]}`,
			want: []string{
				`zones[0].sets[0].addresses[1]: "10.0.0.256": not an IP address`,
				`zones[0].sets[1].name: set "x" is defined twice`,
				`zones[0].sets[1].addresses: required`,
			},
		},
		{
			name: "references resolve",
			spec: `{"zones": [{"name": "a", "interfaces": ["eth0"], "sets": [{"name": "v4only", "addresses": ["10.0.0.0/8"]}],
				"services": ["telnet", {"service": "ssh", "sources": ["nope"]}, {"service": "ssh", "destinations": ["10.0.0.1"]}]},
				{"name": "b", "interfaces": ["eth1"]}],
				"policy": [
					{"from": "a", "to": "nowhere"},
					{"from": "", "to": "server"},
					{"from": "a", "to": "b", "default": "reject", "allow": [{"sources": ["v4only"], "destinations": ["2001:db8::/32"]}]},
					{"from": "a", "to": "b"},
					{"from": "server", "to": "b", "allow": [{"service": "dns", "sources": ["v4only"]}]}
				],
				"masquerade": [{"from": ["a", "b", "b", "zz"], "to": "a"}, {"from": ["b"], "to": ""}],
				"port_forwards": [
					{"name": "web", "zone": "x", "protocol": "sctp", "port": 0, "to_address": "10.0.0.0/8", "to_port": 99999},
					{"name": "ok", "zone": "a", "protocol": "tcp", "port": 80, "to_address": "10.0.0.2"},
					{"name": "ok", "zone": "a", "protocol": "tcp", "port": 80, "to_address": "10.0.0.3"}
				]}`,
			want: []string{
				`zones[0].services[0].service: unknown service "telnet"`,
				`zones[0].services[1].sources[0]: no set "nope" in zone "a"`,
				`zones[0].services[2].destinations: not allowed in a zone's services`,
				`policy[0].to: no zone "nowhere"`,
				`policy[1].from: required`,
				`policy[1].to: traffic to the server itself is given by each zone's services`,
				`policy[2].default: must be accept, drop`,
				`policy[2].allow[0]: sources and destinations have no address family in common`,
				`policy[3]: policy[2] already gives the policy from "a" to "b"`,
				`policy[4].allow[0].sources: not allowed from "server"`,
				`masquerade[0].from[0]: a zone is not masqueraded towards itself`,
				`masquerade[0].from[2]: "b" towards "a" is already masqueraded`,
				`masquerade[0].from[3]: no zone "zz"`,
				`masquerade[1].to: required`,
				`port_forwards[0].zone: no zone "x"`,
				`port_forwards[0].protocol: must be tcp or udp`,
				`port_forwards[0].port: must be 1-65535`,
				`port_forwards[0].to_port: must be 1-65535`,
				`port_forwards[0].to_address: "10.0.0.0/8": not an IP address`,
				`port_forwards[2].name: port forward "ok" is defined twice`,
				`port_forwards[2].port: port_forwards[1] already forwards tcp 80 from zone "a"`,
			},
		},
		{
			name: "allows say what they allow",
			spec: `{"zones": [{"name": "a", "interfaces": ["eth0"], "services": [
				{}, {"service": "ssh", "port": 22}, {"protocol": "icmp", "port": 1}, {"protocol": "tcp"},
				{"port": 22}, {"protocol": "udp", "port_range": "20-10"}, {"protocol": "udp", "port": 1, "port_range": "1-2"}]}]}`,
			want: []string{
				`zones[0].services[0]: must name a service, a protocol and port, or sources or destinations`,
				`zones[0].services[1]: give a service or a protocol and port, not both`,
				`zones[0].services[2].protocol: must be tcp or udp`,
				`zones[0].services[3].port: required with protocol`,
				`zones[0].services[4].protocol: required with a port`,
				`zones[0].services[5].port_range: "20-10": ports must be 1-65535, low before high`,
				`zones[0].services[6]: give port or port_range, not both`,
			},
		},
		{
			name: "log drops and probes",
			spec: `{"zones": [{"name": "a", "interfaces": ["eth0"]}],
				"log_drops": {"prefix": "say \"hi\"", "limit": "ten/minute"},
				"probes": [{"name": "dns", "check": "ping", "address": "10.0.0.1"}, {"name": "dns", "check": "tcp", "address": "[2001:DB8::1]:389"}]}`,
			want: []string{
				`log_drops.enabled: required: true or false`,
				`log_drops.prefix: printable ASCII only`,
				`log_drops.limit: "ten/minute": must be a count`,
				`probes[0].check: must be tcp (a connection opens) or dns`,
				`probes[0].address: "10.0.0.1": must be an address and port`,
				`probes[1].name: probe "dns" is defined twice`,
				`probes[1].address: "[2001:DB8::1]:389": write it [2001:db8::1]:389`,
			},
		},
		{
			name: "too many rules",
			spec: `{"zones": [{"name": "a", "interfaces": ["eth0"]}, {"name": "b", "interfaces": ["eth1"]}],
				"policy": [{"from": "a", "to": "b", "allow": [{"service": "dns",
					"sources": [` + addresses("10.0.", 80) + `], "destinations": [` + addresses("10.1.", 80) + `]}]}]}`,
			want: []string{"the spec makes about 128"},
		},
		{
			name: "a spec without zones has nothing else",
			spec: `{"port_forwards": [{"name": "web", "zone": "ext", "protocol": "tcp", "port": 80, "to_address": "10.0.0.2"}]}`,
			want: []string{`zones: required`, `port_forwards[0].zone: no zone "ext"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := modules.DecodeSpec[Spec]([]byte(tt.spec))
			if err != nil {
				t.Fatalf("DecodeSpec: %v", err)
			}
			errs := validate(spec)
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if len(got) != len(tt.want) {
				t.Errorf("Validate gave %d problems, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i := range min(len(got), len(tt.want)) {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("problem %d = %q, want it to start with %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// addresses lists n addresses with a prefix, as JSON strings.
func addresses(prefix string, n int) string {
	list := make([]string, n)
	for i := range list {
		list[i] = fmt.Sprintf("%q", fmt.Sprintf("%s%d.%d", prefix, i/250, i%250+1))
	}
	return strings.Join(list, ", ")
}

// TestCheckerDecodesStrictly runs the kind's SpecChecker, as the
// controller does before signing: unknown fields are refused, paths are
// prefixed with the kind's name.
func TestCheckerDecodesStrictly(t *testing.T) {
	check := modules.CheckerFor[Spec](Validator{})
	tests := []struct {
		spec, want string
	}{
		{`{"zones": [{"name": "a", "interfaces": ["eth0"], "services": ["ssh"]}]}`, ""},
		{`{"zones": [{"name": "a", "interfaces": ["eth0"], "levle": 3}]}`, `unknown field "levle"`},
		{`{"zones": [{"name": "a", "interfaces": ["eth0"], "services": [{"service": "ssh", "verb": "open"}]}]}`, `unknown field "verb"`},
		{`{"zones": [{"name": "a", "interfaces": ["eth0"], "services": [42]}]}`, "cannot unmarshal number"},
		{`{"zones": [{"name": "a", "interfaces": ["eth0"]}]} {}`, "trailing data"},
		{`{"zones": [{"name": "a", "interfaces": ["eth0"], "services": [{"protocol": "tcp", "port": 0}]}]}`, "firewall: zones[0].services[0].port: required"},
	}
	for _, tt := range tests {
		err := check([]byte(tt.spec))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("check(%s) = %v, want nil", tt.spec, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("check(%s) = %v, want an error containing %q", tt.spec, err, tt.want)
		}
	}
}

// TestAllowFromString reads a bare service name as {"service": name}.
func TestAllowFromString(t *testing.T) {
	spec, err := modules.DecodeSpec[Spec]([]byte(`{"zones": [{"name": "a", "interfaces": ["eth0"], "services": ["ssh", {"service": "dns", "sources": ["10.0.0.0/8"]}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Allow{{Service: "ssh"}, {Service: "dns", Sources: []string{"10.0.0.0/8"}}}
	if diff := cmp.Diff(want, spec.Zones[0].Services); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
}

func TestFieldErrorsAreFound(t *testing.T) {
	err := validate(Spec{Zones: []Zone{{Name: "a"}}}).Err()
	var fe modules.FieldError
	if !errors.As(err, &fe) || fe.Path != "zones[0].interfaces" {
		t.Errorf("errors.As(Validate(...)) = %+v, want the FieldError of zones[0].interfaces", fe)
	}
}

func TestServicesAreDocumented(t *testing.T) {
	doc := readDoc(t)
	for _, s := range Services() {
		if !strings.Contains(doc, "`"+s+"`") {
			t.Errorf("docs/kinds/firewall.md does not list the service %q", s)
		}
	}
}

// TestDocExampleIsValid decodes the school example of
// docs/kinds/firewall.md, as the controller would compile it, and checks
// it validates and is the spec of testdata/school.json.
func TestDocExampleIsValid(t *testing.T) {
	doc := readDoc(t)
	_, rest, ok := strings.Cut(doc, "## A three-zone school")
	if !ok {
		t.Fatal("docs/kinds/firewall.md has no three-zone school example")
	}
	_, rest, _ = strings.Cut(rest, "```yaml\n")
	block, _, _ := strings.Cut(rest, "```")
	data, err := yaml.YAMLToJSON([]byte(block))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := modules.DecodeSpec[Spec](data)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(spec).Err(); err != nil {
		t.Fatalf("the doc's example is invalid: %v", err)
	}
	if diff := cmp.Diff(loadSpec(t, "testdata/school.json"), spec); diff != "" {
		t.Errorf("the doc's example differs from testdata/school.json (-json +doc):\n%s", diff)
	}
}
