package firewall

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/alize-eple/alize/modules"
	"github.com/alize-eple/alize/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenLifelines are the lifelines the golden files are rendered with.
func goldenLifelines() Lifelines {
	return Lifelines{
		Controller:    []netip.AddrPort{netip.MustParseAddrPort("192.0.2.10:443"), netip.MustParseAddrPort("[2001:db8:ffff::10]:443")},
		AdminNetworks: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:ad::/48")},
	}
}

// goldenSpecs are the specs in testdata, by name.
func goldenSpecs(t testing.TB) map[string]Spec {
	t.Helper()
	paths, err := filepath.Glob("testdata/*.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no specs in testdata: %v", err)
	}
	specs := map[string]Spec{}
	for _, p := range paths {
		specs[strings.TrimSuffix(filepath.Base(p), ".json")] = loadSpec(t, p)
	}
	return specs
}

func loadSpec(t testing.TB, path string) Spec {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := modules.DecodeSpec[Spec](data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return s
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// logWriter sends a kind's log records to the test's log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newKind returns the kind working in ns, with its files under a
// temporary root.
func newKind(t testing.TB, ns *testenv.NetNS, edit func(*Config)) *Firewall {
	t.Helper()
	cfg := Config{Root: t.TempDir(), Log: testLogger(t), NetNS: ns.FD(), Lifelines: goldenLifelines()}
	cfg.Confirm.Dial = ns.DialContext
	if edit != nil {
		edit(&cfg)
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func nftBinary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"nft", "/usr/sbin/nft", "/sbin/nft"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("nft not found")
	return ""
}

// nft runs the nft command inside ns.
func nft(t testing.TB, ns *testenv.NetNS, args ...string) string {
	t.Helper()
	out, err := ns.Run(exec.Command(nftBinary(t), args...))
	if err != nil {
		t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// nftStdin runs nft -f - inside ns with text on its input.
func nftStdin(t testing.TB, ns *testenv.NetNS, text string) {
	t.Helper()
	cmd := exec.Command(nftBinary(t), "-f", "-")
	cmd.Stdin = strings.NewReader(text)
	if out, err := ns.Run(cmd); err != nil {
		t.Fatalf("nft -f: %v\n%s\ninput:\n%s", err, out, text)
	}
}

// ruleset is what `nft list ruleset` shows in ns: every table, the
// kind's and others'.
func listRuleset(t testing.TB, ns *testenv.NetNS) string {
	t.Helper()
	return nft(t, ns, "list", "ruleset")
}

// observer is the moduletest snapshot of a namespace: its whole ruleset.
func observer(t testing.TB, ns *testenv.NetNS) func(context.Context) (string, error) {
	bin := nftBinary(t)
	return func(ctx context.Context) (string, error) {
		out, err := ns.Run(exec.CommandContext(ctx, bin, "list", "ruleset"))
		return string(out), err
	}
}

// tableJSON lists the kind's table as nft's JSON, without handles, sets
// and chains sorted by name and set elements sorted, so that two tables
// made differently compare equal when the kernel holds the same thing.
func tableJSON(t testing.TB, ns *testenv.NetNS) string {
	t.Helper()
	raw := nft(t, ns, "-j", "list", "table", "inet", "alize")
	var doc struct {
		Nftables []map[string]any `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatalf("nft -j: %v\n%s", err, raw)
	}
	var sets, chains, rules []string
	for _, item := range doc.Nftables {
		for kind, v := range item {
			obj, ok := v.(map[string]any)
			if !ok {
				continue
			}
			delete(obj, "handle")
			if e, ok := obj["elem"].([]any); ok {
				sort.Slice(e, func(i, j int) bool { return jsonString(e[i]) < jsonString(e[j]) })
			}
			switch kind {
			case "set":
				sets = append(sets, jsonString(obj))
			case "chain":
				chains = append(chains, jsonString(obj))
			case "rule":
				rules = append(rules, jsonString(obj)) // in chain order, as listed
			}
		}
	}
	sort.Strings(sets)
	sort.Strings(chains)
	sort.SliceStable(rules, func(i, j int) bool { return ruleChain(rules[i]) < ruleChain(rules[j]) })
	return strings.Join(append(append(sets, chains...), rules...), "\n")
}

func ruleChain(ruleJSON string) string {
	var r struct {
		Chain string `json:"chain"`
	}
	json.Unmarshal([]byte(ruleJSON), &r)
	return r.Chain
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// serveTCP accepts connections on addr inside ns and writes each client
// the address it saw the connection come from, then closes it.
func serveTCP(t testing.TB, ns *testenv.NetNS, addr string) net.Listener {
	t.Helper()
	l, err := ns.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap())
			c.Close()
		}
	}()
	return l
}

// serveDNS answers every datagram on addr inside ns as a DNS server that
// refuses everything would: the query back, with the response bit set.
func serveDNS(t testing.TB, ns *testenv.NetNS, addr string) {
	t.Helper()
	var pc net.PacketConn
	err := ns.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen udp %s: %v", addr, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n >= 12 {
				buf[2] |= 0x80 // response
				buf[3] = buf[3]&0xf0 | 5
				pc.WriteTo(buf[:n], from)
			}
		}
	}()
}

// readDoc reads the kind's documentation.
func readDoc(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile("../../docs/kinds/firewall.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
