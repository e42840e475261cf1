package firewall

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/alize-eple/alize/modules/moduletest"
	"github.com/alize-eple/alize/testenv"
	"github.com/google/go-cmp/cmp"
)

// TestDifferentialAgainstNft loads every golden spec twice, in two fresh
// namespaces: once through the kind's netlink batch, once with `nft -f`
// of its rendered text. nft must list the same table for both.
func TestDifferentialAgainstNft(t *testing.T) {
	testenv.Require(t, "nft", "netns")
	for _, name := range sortedNames(goldenSpecs(t)) {
		spec := goldenSpecs(t)[name]
		spec.Probes = nil // this test is about the table; probes are tested below
		t.Run(name, func(t *testing.T) {
			lib, file := testenv.NewNetNS(t, "lib"), testenv.NewNetNS(t, "file")
			f := newKind(t, lib, nil)
			p, err := f.Plan(t.Context(), spec)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Apply(t.Context(), p); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			text, err := f.Render(spec)
			if err != nil {
				t.Fatal(err)
			}
			nftStdin(t, file, string(text))
			if diff := cmp.Diff(tableJSON(t, file), tableJSON(t, lib)); diff != "" {
				t.Errorf("table built by the kind differs from nft -f of its rendering (-nft +kind):\n%s", diff)
			}
			// And the kind reads nft's table as its own: no drift.
			g := newKind(t, file, nil)
			p, err = g.Plan(t.Context(), spec)
			if err != nil {
				t.Fatal(err)
			}
			if !p.Empty() {
				t.Errorf("Plan on the table nft -f loaded = %v, want empty", p.Changes)
			}
		})
	}
}

// TestConformance runs the kind contract's harness on the school example,
// whose probes (DNS, LDAP, Samba on 10.1.0.5) answer inside the namespace.
func TestConformance(t *testing.T) {
	testenv.Require(t, "nft", "netns")
	ns := testenv.NewNetNS(t, "gateway")
	if err := ns.AddAddr("lo", netip.MustParsePrefix("10.1.0.5/32")); err != nil {
		t.Fatal(err)
	}
	serveTCP(t, ns, "10.1.0.5:389")
	serveTCP(t, ns, "10.1.0.5:445")
	serveDNS(t, ns, "10.1.0.5:53")
	nftStdin(t, ns, otherAppTable)
	f := newKind(t, ns, func(c *Config) { c.Confirm.Deadline = 5 * time.Second })
	moduletest.Run(t, f, loadSpec(t, "testdata/school.json"), observer(t, ns))
	if got := listRuleset(t, ns); !strings.Contains(got, "table ip otherapp") {
		t.Errorf("another application's table is gone after the conformance run:\n%s", got)
	}
}

// otherAppTable is another application's ruleset, which the kind must
// never touch.
const otherAppTable = `table ip otherapp {
	set blocked {
		type ipv4_addr
		elements = { 203.0.113.7 }
	}

	chain input {
		type filter hook input priority filter - 10; policy accept;
		ip saddr @blocked counter drop
		tcp dport 9100 accept comment "printer"
	}
}
`

// TestDrift flushes the ruleset, adds rules and set entries by hand,
// changes a policy: each is drift Plan sees and Apply repairs.
func TestDrift(t *testing.T) {
	testenv.Require(t, "nft", "netns")
	ns := testenv.NewNetNS(t, "gateway")
	f := newKind(t, ns, nil)
	spec := loadSpec(t, "testdata/school.json")
	spec.Probes = nil
	apply(t, f, spec)
	want := listRuleset(t, ns)

	drifts := []struct {
		name    string
		nft     []string
		summary string // a piece of the plan's summaries
	}{
		{"ruleset flushed", []string{"flush ruleset"}, "create the firewall"},
		{"rule added by hand", []string{"add rule inet alize input tcp dport 9999 accept"}, "remove 1 rule (a rule added by hand)"},
		{"rule deleted by hand", []string{"flush chain inet alize in_admin"}, `add 10 rules (tcp dport 22 accept comment "admin: ssh"`},
		{"set entry added by hand", []string{"add element inet alize admin_v4 { 10.9.0.0/16 }"}, "entries differ: 0 to add, 1 to remove"},
		{"policy changed by hand", []string{"add chain inet alize forward { policy accept ; }"}, "hook, priority or policy"},
		{"chain added by hand", []string{"add chain inet alize mine"}, "remove the chain and its 0 rules"},
	}
	for _, d := range drifts {
		t.Run(d.name, func(t *testing.T) {
			for _, cmd := range d.nft {
				nftStdin(t, ns, cmd)
			}
			p, err := f.Plan(t.Context(), spec)
			if err != nil {
				t.Fatal(err)
			}
			var summaries []string
			for _, c := range p.Changes {
				summaries = append(summaries, c.String())
			}
			if !strings.Contains(strings.Join(summaries, "\n"), d.summary) {
				t.Errorf("Plan after %s = %q, want a change saying %q", d.name, summaries, d.summary)
			}
			apply(t, f, spec)
			if got := listRuleset(t, ns); got != want {
				t.Errorf("after repairing %s, the ruleset is:\n%s\nwant:\n%s", d.name, got, want)
			}
		})
	}
}

// apply plans want and applies it, which must succeed and converge.
func apply(t testing.TB, f *Firewall, want Spec) {
	t.Helper()
	p, err := f.Plan(t.Context(), want)
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.Apply(t.Context(), p)
	if err != nil || res.Failed() {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	if p, err = f.Plan(t.Context(), want); err != nil || !p.Empty() {
		t.Fatalf("Plan after Apply = %v, %v; want empty", p.Changes, err)
	}
}

// TestEmptySpecManagesNothing: a spec without zones leaves a table alone,
// even one the kind did not write.
func TestEmptySpecManagesNothing(t *testing.T) {
	testenv.Require(t, "nft", "netns")
	ns := testenv.NewNetNS(t, "gateway")
	nftStdin(t, ns, "table inet alize {\n chain input {\n type filter hook input priority 0; policy accept;\n tcp dport 22 accept\n }\n}\n")
	before := listRuleset(t, ns)
	f := newKind(t, ns, nil)
	p, err := f.Plan(t.Context(), Spec{})
	if err != nil || !p.Empty() {
		t.Fatalf("Plan(Spec{}) = %v, %v; want empty", p.Changes, err)
	}
	if _, err := f.Apply(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	if got := listRuleset(t, ns); got != before {
		t.Errorf("Apply(Plan(Spec{})) changed the ruleset:\n%s", got)
	}
}

// TestSnapshotRestoresAHandWrittenTable saves a table the kind did not
// write (anonymous sets, a concatenation of intervals, counters, limits,
// log levels, jumps) as the pending state does, and restores it in
// another namespace: nft lists the same table.
// (Maps are the exception: google/nftables loses a verdict map's key type
// and the byte order nft shows a map's data in; see
// TestRevertFallsBackToLastConfirmed.)
func TestSnapshotRestoresAHandWrittenTable(t *testing.T) {
	testenv.Require(t, "nft", "netns")
	a, b := testenv.NewNetNS(t, "a"), testenv.NewNetNS(t, "b")
	nftStdin(t, a, handWritten)
	ts := readTable(t, a)
	snap, err := encodeSnapshot(ts)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	var back snapshot
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	restored, err := back.decode()
	if err != nil {
		t.Fatal(err)
	}
	loadTable(t, b, restored)
	if diff := cmp.Diff(nft(t, a, "list", "table", "inet", "alize"), nft(t, b, "list", "table", "inet", "alize")); diff != "" {
		t.Errorf("restored table differs (-saved +restored):\n%s", diff)
	}
}

const handWritten = `table inet alize {
	set ports {
		type inet_service
		elements = { 80, 443 }
	}
	set nets {
		type ipv4_addr
		flags interval
		elements = { 10.0.0.0/8, 192.168.0.0/16 }
	}
	set pairs {
		type ipv4_addr . inet_service
		flags interval
		elements = { 10.0.0.0/24 . 1000-2000, 10.0.1.1 . 22 }
	}
	chain input {
		type filter hook input priority filter + 5; policy accept;
		tcp dport @ports counter accept
		tcp dport { 22, 2222 } accept
		ip saddr @nets limit rate over 10/second drop
		ip saddr . tcp dport @pairs accept
		meta mark 0x00000001 log prefix "marked " level info
		jump side
	}
	chain side {
		udp dport 53 return
	}
}
`

func readTable(t testing.TB, ns *testenv.NetNS) tableState {
	t.Helper()
	conn, err := dial(ns.FD())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ts, err := read(conn)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func loadTable(t testing.TB, ns *testenv.NetNS, ts tableState) {
	t.Helper()
	conn, err := dial(ns.FD())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := load(conn, ts); err != nil {
		t.Fatal(err)
	}
}
