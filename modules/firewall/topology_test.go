package firewall

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alize-eple/alize/modules"
	"github.com/alize-eple/alize/testenv"
)

// school is a school gateway between the outside (the academy, the
// Internet: "server"), a pedagogical network ("client") and a DMZ, each in
// its own network namespace, over IPv4 and IPv6:
//
//	client 10.2.0.2 2001:db8:2::2 ── ped ┐
//	                                     gw ── ext ── server 192.0.2.2 2001:db8:e::2
//	dmz 10.3.0.10 2001:db8:3::10 ── dmz ┘
type school struct {
	gw, client, server, dmz *testenv.NetNS
}

func newSchool(t *testing.T) *school {
	t.Helper()
	testenv.Require(t, "nft", "netns")
	s := &school{
		gw:     testenv.NewNetNS(t, "gateway"),
		client: testenv.NewNetNS(t, "client"),
		server: testenv.NewNetNS(t, "server"),
		dmz:    testenv.NewNetNS(t, "dmz"),
	}
	for _, ns := range []*testenv.NetNS{s.gw, s.client, s.server, s.dmz} {
		// No duplicate address detection: addresses are usable at once.
		for _, key := range []string{"net/ipv6/conf/all/accept_dad", "net/ipv6/conf/default/accept_dad"} {
			if err := ns.WriteSysctl(key, "0"); err != nil {
				t.Fatal(err)
			}
		}
	}
	testenv.Veth(t, s.gw, "ext", s.server, "eth0")
	testenv.Veth(t, s.gw, "ped", s.client, "eth0")
	testenv.Veth(t, s.gw, "dmz", s.dmz, "eth0")
	pfx := netip.MustParsePrefix
	addr := netip.MustParseAddr
	steps := []error{
		s.gw.AddAddr("ext", pfx("192.0.2.1/24")), s.gw.AddAddr("ext", pfx("2001:db8:e::1/64")),
		s.gw.AddAddr("ped", pfx("10.2.0.1/24")), s.gw.AddAddr("ped", pfx("2001:db8:2::1/64")),
		s.gw.AddAddr("dmz", pfx("10.3.0.1/24")), s.gw.AddAddr("dmz", pfx("2001:db8:3::1/64")),
		s.server.AddAddr("eth0", pfx("192.0.2.2/24")), s.server.AddAddr("eth0", pfx("2001:db8:e::2/64")),
		s.client.AddAddr("eth0", pfx("10.2.0.2/24")), s.client.AddAddr("eth0", pfx("2001:db8:2::2/64")),
		s.dmz.AddAddr("eth0", pfx("10.3.0.10/24")), s.dmz.AddAddr("eth0", pfx("2001:db8:3::10/64")),
		s.server.AddDefaultRoute(addr("192.0.2.1")), s.server.AddDefaultRoute(addr("2001:db8:e::1")),
		s.client.AddDefaultRoute(addr("10.2.0.1")), s.client.AddDefaultRoute(addr("2001:db8:2::1")),
		s.dmz.AddDefaultRoute(addr("10.3.0.1")), s.dmz.AddDefaultRoute(addr("2001:db8:3::1")),
		s.gw.WriteSysctl("net/ipv4/ip_forward", "1"),
		s.gw.WriteSysctl("net/ipv6/conf/all/forwarding", "1"),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("topology step %d: %v", i, err)
		}
	}
	return s
}

// schoolLifelines: the academy's admin network is the server's address,
// and so is the controller.
func schoolLifelines() Lifelines {
	return Lifelines{
		Controller:    []netip.AddrPort{netip.MustParseAddrPort("192.0.2.2:8443")},
		AdminNetworks: []netip.Prefix{netip.MustParsePrefix("192.0.2.2/32"), netip.MustParsePrefix("2001:db8:e::2/128")},
	}
}

const schoolSpec = `{
	"zones": [
		{"name": "external", "interfaces": ["ext"]},
		{"name": "dmz", "level": 20, "interfaces": ["dmz"], "networks": ["10.3.0.0/24", "2001:db8:3::/64"]},
		{"name": "pedagogical", "level": 50, "interfaces": ["ped"], "networks": ["10.2.0.0/24", "2001:db8:2::/64"],
		 "services": ["proxy"]},
		{"name": "admin", "level": 90, "interfaces": ["adm"]}
	],
	"policy": [
		{"from": "pedagogical", "to": "external", "default": "drop", "allow": ["http"]}
	],
	"masquerade": [{"from": ["pedagogical", "dmz"], "to": "external"}],
	"port_forwards": [
		{"name": "web", "zone": "external", "protocol": "tcp", "port": 8080, "to_address": "10.3.0.10", "to_port": 80},
		{"name": "web6", "zone": "external", "protocol": "tcp", "port": 8080, "to_address": "2001:db8:3::10", "to_port": 80}
	],
	"log_drops": {"enabled": true}
}`

func mustSpec(t testing.TB, s string) Spec {
	t.Helper()
	spec, err := modules.DecodeSpec[Spec]([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// reach dials addr from ns. It returns the source address the far end
// saw, or "timeout" when the connection attempt got no answer (a firewall
// dropped it), or the error.
func reach(ns *testenv.NetNS, addr string) string {
	timeout := 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := ns.DialContext(ctx, "tcp", addr)
	var nerr net.Error
	switch {
	case errors.As(err, &nerr) && nerr.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case err != nil:
		return err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "read: " + err.Error()
	}
	return "seen from " + strings.TrimSpace(line)
}

// blocked dials with a short timeout, for attempts that must not get
// through: the answer is "timeout" when nothing came back.
func blocked(ns *testenv.NetNS, addr string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	c, err := ns.DialContext(ctx, "tcp", addr)
	if err == nil {
		c.Close()
		return "connected"
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return err.Error()
}

type probeCase struct {
	from *testenv.NetNS
	addr string
	want string // "seen from ADDR", or "timeout" for traffic the firewall drops
	why  string
}

func runCases(t *testing.T, cases []probeCase) {
	t.Helper()
	// Attempts from one namespace run one after the other (its thread does
	// the dialling); namespaces run side by side.
	byNS := map[*testenv.NetNS][]probeCase{}
	for _, c := range cases {
		byNS[c.from] = append(byNS[c.from], c)
	}
	var wg sync.WaitGroup
	for _, list := range byNS {
		wg.Go(func() {
			for _, c := range list {
				var got string
				if c.want == "timeout" {
					got = blocked(c.from, c.addr)
				} else {
					got = reach(c.from, c.addr)
				}
				if got != c.want {
					t.Errorf("%s → %s: %s, want %s (%s)", c.from.Name(), c.addr, got, c.want, c.why)
				}
			}
		})
	}
	wg.Wait()
}

// TestSchoolTopology applies a three-zone gateway firewall with a DMZ and
// checks, with real connections over IPv4 and IPv6, what passes and what
// is dropped.
func TestSchoolTopology(t *testing.T) {
	s := newSchool(t)
	for _, l := range []struct {
		ns   *testenv.NetNS
		addr string
	}{
		{s.server, ":80"}, {s.server, ":22"},
		{s.dmz, ":80"}, {s.client, ":80"},
		{s.gw, ":3128"}, {s.gw, ":2222"}, {s.gw, ":22"},
	} {
		serveTCP(t, l.ns, l.addr)
	}
	nftStdin(t, s.gw, otherAppTable)

	// Without the firewall everything is reachable: what times out below
	// is the firewall's doing.
	runCases(t, []probeCase{
		{s.client, "192.0.2.2:22", "seen from 10.2.0.2", "no firewall yet"},
		{s.server, "10.3.0.10:80", "seen from 192.0.2.2", "no firewall yet"},
		{s.server, "[2001:db8:2::2]:80", "seen from 2001:db8:e::2", "no firewall yet"},
		{s.client, "10.2.0.1:2222", "seen from 10.2.0.2", "no firewall yet"},
	})

	f := newKind(t, s.gw, func(c *Config) { c.Lifelines = schoolLifelines() })
	apply(t, f, mustSpec(t, schoolSpec))

	runCases(t, []probeCase{
		{s.client, "192.0.2.2:80", "seen from 192.0.2.1", "pedagogical → external allows http, masqueraded"},
		{s.client, "[2001:db8:e::2]:80", "seen from 2001:db8:2::2", "http over IPv6, not masqueraded"},
		{s.client, "192.0.2.2:22", "timeout", "pedagogical → external: only http"},
		{s.client, "[2001:db8:e::2]:22", "timeout", "pedagogical → external: only http, IPv6 too"},
		{s.client, "10.3.0.10:80", "seen from 10.2.0.2", "pedagogical (50) reaches the dmz (20) by level"},
		{s.client, "[2001:db8:3::10]:80", "seen from 2001:db8:2::2", "by level, IPv6"},
		{s.client, "10.2.0.1:3128", "seen from 10.2.0.2", "the proxy is a service of the pedagogical zone"},
		{s.client, "10.2.0.1:2222", "timeout", "not a service of the zone"},
		{s.client, "10.2.0.1:22", "timeout", "ssh is a lifeline for the academy's admin networks only"},
		{s.server, "192.0.2.1:8080", "seen from 192.0.2.2", "port forward to the dmz web server"},
		{s.server, "[2001:db8:e::1]:8080", "seen from 2001:db8:e::2", "IPv6 port forward to the dmz"},
		{s.server, "192.0.2.1:22", "seen from 192.0.2.2", "lifeline: the academy's admin network reaches ssh"},
		{s.server, "[2001:db8:e::1]:22", "seen from 2001:db8:e::2", "lifeline over IPv6"},
		{s.server, "10.3.0.10:80", "timeout", "external (0) does not reach the dmz (20) but through port forwards"},
		{s.server, "[2001:db8:2::2]:80", "timeout", "external does not reach pedagogical"},
		{s.server, "10.2.0.2:80", "timeout", "external does not reach pedagogical"},
		{s.dmz, "10.2.0.2:80", "timeout", "dmz (20) does not reach pedagogical (50)"},
		{s.dmz, "192.0.2.2:80", "seen from 192.0.2.1", "dmz reaches external by level, masqueraded"},
	})
	if got := nft(t, s.gw, "list", "table", "ip", "otherapp"); !strings.Contains(got, `tcp dport 9100 accept comment "printer"`) {
		t.Errorf("another application's table changed:\n%s", got)
	}
}
