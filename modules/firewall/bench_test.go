package firewall

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/alize-eple/alize/testenv"
)

// spec500 makes about 500 rules, lifelines included: a school whose
// admin zone offers many single ports.
func spec500(tb testing.TB) Spec {
	spec := Spec{Zones: []Zone{
		{Name: "external", Interfaces: []string{"eth0"}},
		{Name: "pedagogical", Level: 50, Interfaces: []string{"eth2"}, Networks: []string{"10.2.0.0/16"}, Services: []Allow{{Service: "dns"}, {Service: "proxy"}}},
		{Name: "admin", Level: 90, Interfaces: []string{"eth1"}, Networks: []string{"10.1.0.0/24"}},
	}, Masquerade: []Masquerade{{From: []string{"admin", "pedagogical"}, To: "external"}}}
	for n := 0; ; n++ {
		if rules := compile(spec, goldenLifelines()).state().numRules(); rules >= 500 {
			if rules != 500 {
				tb.Fatalf("spec500 makes %d rules", rules)
			}
			return spec
		}
		spec.Zones[2].Services = append(spec.Zones[2].Services, Allow{Protocol: "tcp", Port: 10000 + n})
	}
}

// BenchmarkFirewallReplace500 replaces a 500-rule table in one netlink
// batch. Target: under 20 ms, and faster than BenchmarkNftFile500.
func BenchmarkFirewallReplace500(b *testing.B) {
	ns := testenv.NewNetNS(b, "bench")
	ts := compile(spec500(b), goldenLifelines()).state()
	conn, err := dial(ns.FD())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	cpu := startCPU()
	for b.Loop() {
		if err := load(conn, ts); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// BenchmarkNftFile500 is the anchor: `nft -f` of the same ruleset,
// rendered, in a namespace (23-31 ms measured on the project's machine).
func BenchmarkNftFile500(b *testing.B) {
	testenv.Require(b, "nft")
	ns := testenv.NewNetNS(b, "bench")
	path := filepath.Join(b.TempDir(), "ruleset.nft")
	if err := os.WriteFile(path, compile(spec500(b), goldenLifelines()).render(), 0o644); err != nil {
		b.Fatal(err)
	}
	bin := nftBinary(b)
	cpu := startCPU()
	for b.Loop() {
		if out, err := ns.Run(exec.Command(bin, "-f", path)); err != nil {
			b.Fatalf("nft -f: %v\n%s", err, out)
		}
	}
	cpu.report(b)
}

// BenchmarkFirewallPlanNoChange500 observes a live 500-rule table and
// compares it with the wanted one: nothing to change. Target: under 10 ms.
func BenchmarkFirewallPlanNoChange500(b *testing.B) {
	ns := testenv.NewNetNS(b, "bench")
	f := newKind(b, ns, nil)
	spec := spec500(b)
	apply(b, f, spec)
	cpu := startCPU()
	for b.Loop() {
		p, err := f.Plan(b.Context(), spec)
		if err != nil || !p.Empty() {
			b.Fatalf("Plan = %v, %v; want empty", p.Changes, err)
		}
	}
	cpu.report(b)
}

// BenchmarkFirewallApply500 is the whole commit-confirmed apply of a
// 500-rule table without probes: read and save the previous table,
// replace, save the boot ruleset; three fsynced files. For information.
func BenchmarkFirewallApply500(b *testing.B) {
	ns := testenv.NewNetNS(b, "bench")
	f := newKind(b, ns, nil)
	p, err := f.Plan(b.Context(), spec500(b))
	if err != nil {
		b.Fatal(err)
	}
	cpu := startCPU()
	for b.Loop() {
		if _, err := f.Apply(b.Context(), p); err != nil {
			b.Fatal(fmt.Errorf("Apply: %w", err))
		}
	}
	cpu.report(b)
}

// cpuClock measures the CPU time (user and system) the process and the
// children it waited for used, for a figure the load of a shared machine
// does not inflate as much as wall time: reported as cpu-ms/op.
type cpuClock time.Duration

func cpuNow() time.Duration {
	var self, children syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(children.Utime) + tv(children.Stime)
}

func startCPU() cpuClock { return cpuClock(cpuNow()) }

func (c cpuClock) report(b *testing.B) {
	if b.N > 0 {
		b.ReportMetric(float64(cpuNow()-time.Duration(c))/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
	}
}
