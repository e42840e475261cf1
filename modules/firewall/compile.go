package firewall

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// Lifelines are the rules the agent generates itself from its own
// configuration, never from a manifest: no spec can remove them.
// Loopback and established flows are always there.
type Lifelines struct {
	// Controller are the addresses and ports the agent reaches its
	// controller at: the server's new connections to them always pass.
	Controller []netip.AddrPort
	// AdminNetworks are the academy's administration networks: they
	// always reach the server's SSH port.
	AdminNetworks []netip.Prefix
	// SSHPort is the server's SSH port; 0 means 22.
	SSHPort uint16
}

func (l Lifelines) sshPort() uint16 {
	if l.SSHPort == 0 {
		return 22
	}
	return l.SSHPort
}

// check reports problems in the lifelines' configuration.
func (l Lifelines) check() error {
	var errs []string
	for _, c := range l.Controller {
		if !c.IsValid() || c.Port() == 0 || c.Addr().Zone() != "" || c.Addr().Is4In6() || c.Addr().IsUnspecified() {
			errs = append(errs, fmt.Sprintf("controller %s: must be a unicast address and a port", c))
		}
	}
	for _, p := range l.AdminNetworks {
		if !p.IsValid() || p.Masked() != p || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			errs = append(errs, fmt.Sprintf("admin network %s: must be a canonical network", p))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("firewall: lifelines: %s", strings.Join(errs, "; "))
	}
	return nil
}

// compiler turns a valid spec and the lifelines into a ruleset.
type compiler struct {
	rs      *ruleset
	spec    Spec
	cat     map[string][]portSpec
	zones   map[string]*Zone
	zoneSet map[string]map[string][2]*nset // zone → set name → IPv4, IPv6 set (either may be nil)
	netSet  map[string][2]*nset            // zone → its networks, IPv4 and IPv6
	logRule func(c *nchain)                // appends the drop-logging rule, if any
}

// compile builds the ruleset of a spec that passed validate.
func compile(s Spec, ll Lifelines) *ruleset {
	c := &compiler{
		rs:      &ruleset{},
		spec:    s,
		cat:     catalogue(),
		zones:   map[string]*Zone{},
		zoneSet: map[string]map[string][2]*nset{},
		netSet:  map[string][2]*nset{},
		logRule: func(*nchain) {},
	}
	for i := range s.Zones {
		c.zones[s.Zones[i].Name] = &s.Zones[i]
	}
	if l := s.LogDrops; l != nil && l.Enabled != nil && *l.Enabled {
		prefix, limit := l.Prefix, l.Limit
		if prefix == "" {
			prefix = "alize-drop "
		}
		if limit == "" {
			limit = "10/minute"
		}
		rate, unit, _ := parseLimit(limit)
		c.logRule = func(ch *nchain) {
			ch.rules = append(ch.rules, newRule("log dropped packets").limit(rate, unit).log(prefix))
		}
	}
	c.sets(ll)
	c.input(ll)
	c.forward()
	c.output(ll)
	c.nat()
	return c.rs
}

func (c *compiler) addSet(s *nset) *nset {
	s.id = uint32(len(c.rs.sets) + 1)
	c.rs.sets = append(c.rs.sets, s)
	return s
}

func (c *compiler) set(name string) *nset {
	for _, s := range c.rs.sets {
		if s.name == name {
			return s
		}
	}
	panic("firewall: no set " + name) // a bug in compile, never a spec problem
}

func (c *compiler) addChain(ch *nchain) *nchain {
	c.rs.chains = append(c.rs.chains, ch)
	return ch
}

// splitFamilies parses addresses (valid ones) into IPv4 and IPv6 prefixes.
func splitFamilies(list []string) (v4, v6 []netip.Prefix) {
	for _, a := range list {
		p, err := parseAddress(a)
		if err != nil {
			continue
		}
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return v4, v6
}

// familySets adds name_v4 and name_v6 for the families present.
func (c *compiler) familySets(name string, list []string) [2]*nset {
	var out [2]*nset
	v4, v6 := splitFamilies(list)
	if len(v4) > 0 {
		out[0] = c.addSet(addressSet(name+"_v4", v4))
	}
	if len(v6) > 0 {
		out[1] = c.addSet(addressSet(name+"_v6", v6))
	}
	return out
}

func (c *compiler) sets(ll Lifelines) {
	c.addSet(icmpSetOf("icmp_essential", false, icmpEssentials()))
	c.addSet(icmpSetOf("icmpv6_essential", true, icmpv6Essentials()))
	c.addSet(icmpSetOf("icmpv6_forward", true, icmpv6Errors()))
	var admin []string
	for _, p := range ll.AdminNetworks {
		admin = append(admin, p.Masked().String())
	}
	c.familySets("lifeline_admin", admin)
	for _, z := range c.spec.Zones {
		if len(z.Networks) > 0 {
			c.netSet[z.Name] = c.familySets(z.Name, z.Networks)
		}
		c.zoneSet[z.Name] = map[string][2]*nset{}
		for _, s := range z.Sets {
			c.zoneSet[z.Name][s.Name] = c.familySets(z.Name+"_"+s.Name, s.Addresses)
		}
	}
}

func filterChain(name, hookName string, hook nftables.ChainHook, policy nftables.ChainPolicy) *nchain {
	return &nchain{name: name, base: &baseChain{
		typ: nftables.ChainTypeFilter, hook: hook, hookName: hookName,
		prio: 0, prioName: "filter", policy: policy,
	}}
}

// lifelines appends the rules every filter chain starts with: loopback
// (in input and output) and established flows.
func lifelines(ch *nchain, lo func(*nrule) *nrule) {
	if lo != nil {
		ch.rules = append(ch.rules, lo(newRule("lifeline: loopback")).accept())
	}
	ch.rules = append(ch.rules, newRule("lifeline: established flows").ctEstablished().accept())
}

func dropInvalid(ch *nchain) {
	ch.rules = append(ch.rules, newRule("drop invalid packets").ctInvalid().drop())
}

func (c *compiler) icmpRules(ch *nchain, v6set string) {
	ch.rules = append(ch.rules,
		newRule("ICMP essentials").icmpSet(false, c.set("icmp_essential")).accept(),
		newRule("ICMPv6 essentials").icmpSet(true, c.set(v6set)).accept())
}

func (c *compiler) input(ll Lifelines) {
	in := c.addChain(filterChain("input", "input", *nftables.ChainHookInput, nftables.ChainPolicyDrop))
	lifelines(in, func(r *nrule) *nrule { return r.iifname("lo") })
	dropInvalid(in)
	for _, s := range c.rs.sets {
		if strings.HasPrefix(s.name, "lifeline_admin_") {
			in.rules = append(in.rules, newRule("lifeline: academy admin networks to ssh").inSet(false, s, false).dport("tcp", ll.sshPort(), ll.sshPort()).accept())
		}
	}
	c.icmpRules(in, "icmpv6_essential")
	var zoneChains []*nchain
	for _, z := range c.spec.Zones {
		if len(z.Services) == 0 {
			continue
		}
		zc := &nchain{name: "in_" + z.Name}
		for _, a := range z.Services {
			zc.rules = append(zc.rules, c.allowRules(z.Name+": ", a, &z, nil)...)
		}
		for _, ifc := range z.Interfaces {
			in.rules = append(in.rules, newRule("zone "+z.Name+" to the server").iifname(ifc).jump(zc.name))
		}
		zoneChains = append(zoneChains, zc)
	}
	c.logRule(in)
	for _, zc := range zoneChains {
		c.addChain(zc)
	}
}

// flow returns the policy entry from one zone (or the server) to another.
func (c *compiler) flow(from, to string) *Flow {
	for i := range c.spec.Policy {
		if f := &c.spec.Policy[i]; f.From == from && f.To == to {
			return f
		}
	}
	return nil
}

func (c *compiler) forward() {
	fw := c.addChain(filterChain("forward", "forward", *nftables.ChainHookForward, nftables.ChainPolicyDrop))
	lifelines(fw, nil)
	dropInvalid(fw)
	c.icmpRules(fw, "icmpv6_forward")
	for _, z := range c.spec.Zones {
		nets := c.netSet[z.Name]
		for _, s := range nets {
			if s == nil {
				continue
			}
			for _, ifc := range z.Interfaces {
				fw.rules = append(fw.rules, newRule(z.Name+": source outside the zone's networks").iifname(ifc).inSet(false, s, true).drop())
			}
		}
	}
	for _, pf := range c.spec.PortForwards {
		to, _ := parseHost(pf.ToAddress)
		for _, ifc := range c.zones[pf.Zone].Interfaces {
			fw.rules = append(fw.rules, newRule("port forward "+pf.Name).
				iifname(ifc).addr(true, netip.PrefixFrom(to, to.BitLen())).dport(pf.Protocol, toPort(pf), toPort(pf)).ctDNAT().accept())
		}
	}
	var pairChains []*nchain
	for i := range c.spec.Zones {
		a := &c.spec.Zones[i]
		for j := range c.spec.Zones {
			b := &c.spec.Zones[j]
			f := c.flow(a.Name, b.Name)
			accept, why := levelRule(a, b)
			if f != nil && f.Default != "" {
				accept, why = f.Default == "accept", "accepted by policy"
			}
			label := a.Name + " -> " + b.Name
			switch {
			case accept:
				for _, ia := range a.Interfaces {
					for _, ib := range b.Interfaces {
						fw.rules = append(fw.rules, newRule(label+": "+why).iifname(ia).oifname(ib).accept())
					}
				}
			case f != nil && len(f.Allow) > 0:
				pc := &nchain{name: "fwd_" + a.Name + "_" + b.Name}
				for _, al := range f.Allow {
					pc.rules = append(pc.rules, c.allowRules(label+": ", al, a, b)...)
				}
				for _, ia := range a.Interfaces {
					for _, ib := range b.Interfaces {
						fw.rules = append(fw.rules, newRule(label+": what the policy allows").iifname(ia).oifname(ib).jump(pc.name))
					}
				}
				pairChains = append(pairChains, pc)
			}
		}
	}
	c.logRule(fw)
	for _, pc := range pairChains {
		c.addChain(pc)
	}
}

// levelRule is Amon's default: a zone reaches itself and the zones of a
// lower level.
func levelRule(a, b *Zone) (bool, string) {
	switch {
	case a == b:
		return true, "same zone"
	case a.Level > b.Level:
		return true, fmt.Sprintf("accepted by level (%d > %d)", a.Level, b.Level)
	}
	return false, ""
}

func toPort(pf PortForward) uint16 {
	if pf.ToPort != 0 {
		return uint16(pf.ToPort)
	}
	return uint16(pf.Port)
}

func (c *compiler) output(ll Lifelines) {
	out := c.addChain(filterChain("output", "output", *nftables.ChainHookOutput, nftables.ChainPolicyAccept))
	lifelines(out, func(r *nrule) *nrule { return r.oifname("lo") })
	for _, ctl := range ll.Controller {
		out.rules = append(out.rules, newRule("lifeline: agent to controller "+ctl.String()).
			addr(true, netip.PrefixFrom(ctl.Addr(), ctl.Addr().BitLen())).dport("tcp", ctl.Port(), ctl.Port()).accept())
	}
	var zoneChains []*nchain
	for i := range c.spec.Zones {
		z := &c.spec.Zones[i]
		f := c.flow(ServerZone, z.Name)
		if f == nil || f.Default != "drop" {
			continue // the server stands above every zone: it reaches them
		}
		if len(zoneChains) == 0 {
			c.icmpRules(out, "icmpv6_essential")
		}
		zc := &nchain{name: "out_" + z.Name}
		for _, al := range f.Allow {
			zc.rules = append(zc.rules, c.allowRules("server -> "+z.Name+": ", al, nil, z)...)
		}
		c.logRule(zc)
		zc.rules = append(zc.rules, newRule("server -> "+z.Name+": drop the rest").drop())
		for _, ifc := range z.Interfaces {
			out.rules = append(out.rules, newRule("server -> "+z.Name+": what the policy allows").oifname(ifc).jump(zc.name))
		}
		zoneChains = append(zoneChains, zc)
	}
	for _, zc := range zoneChains {
		c.addChain(zc)
	}
}

func (c *compiler) nat() {
	if len(c.spec.PortForwards) > 0 {
		pre := c.addChain(&nchain{name: "prerouting", base: &baseChain{
			typ: nftables.ChainTypeNAT, hook: *nftables.ChainHookPrerouting, hookName: "prerouting",
			prio: *nftables.ChainPriorityNATDest, prioName: "dstnat", policy: nftables.ChainPolicyAccept,
		}})
		for _, pf := range c.spec.PortForwards {
			to, _ := parseHost(pf.ToAddress)
			for _, ifc := range c.zones[pf.Zone].Interfaces {
				pre.rules = append(pre.rules, newRule("port forward "+pf.Name).
					iifname(ifc).dport(pf.Protocol, uint16(pf.Port), uint16(pf.Port)).dnat(to, toPort(pf)))
			}
		}
	}
	var masq []*nrule
	for _, m := range c.spec.Masquerade {
		for _, from := range m.From {
			for _, ia := range c.zones[from].Interfaces {
				for _, ib := range c.zones[m.To].Interfaces {
					masq = append(masq, newRule("masquerade "+from+" -> "+m.To).
						nfproto(unix.NFPROTO_IPV4).iifname(ia).oifname(ib).masquerade())
				}
			}
		}
	}
	if len(masq) > 0 {
		c.addChain(&nchain{name: "postrouting", base: &baseChain{
			typ: nftables.ChainTypeNAT, hook: *nftables.ChainHookPostrouting, hookName: "postrouting",
			prio: *nftables.ChainPriorityNATSource, prioName: "srcnat", policy: nftables.ChainPolicyAccept,
		}, rules: masq})
	}
}

// endpoint is one source or destination of a rule: a named set, or a
// literal prefix.
type endpoint struct {
	label string
	set   *nset
	pfx   netip.Prefix
}

func (e *endpoint) family() byte {
	if e == nil {
		return 0
	}
	if e.set != nil {
		if e.set.keyType.GetNFTMagic() == nftables.TypeIP6Addr.GetNFTMagic() {
			return unix.NFPROTO_IPV6
		}
		return unix.NFPROTO_IPV4
	}
	return nfFamily(e.pfx.Addr())
}

func (e *endpoint) match(r *nrule, dst bool) {
	switch {
	case e == nil:
	case e.set != nil:
		r.inSet(dst, e.set, false)
	default:
		r.addr(dst, e.pfx)
	}
}

// endpoints resolves sources or destinations in zone z; nil when there
// are none, meaning any address.
func (c *compiler) endpoints(list []string, z *Zone) []*endpoint {
	if len(list) == 0 {
		return []*endpoint{nil}
	}
	var out []*endpoint
	for _, e := range list {
		if looksLikeAddress(e) {
			p, err := parseAddress(e)
			if err == nil {
				out = append(out, &endpoint{label: e, pfx: p})
			}
			continue
		}
		if z == nil {
			continue // validate refuses set names where there is no zone
		}
		for _, s := range c.zoneSet[z.Name][e] {
			if s != nil {
				out = append(out, &endpoint{label: e, set: s})
			}
		}
	}
	return out
}

// allowRules expands an Allow into rules: one per source, destination and
// protocol/port it covers.
func (c *compiler) allowRules(prefix string, a Allow, from, to *Zone) []*nrule {
	var ports []portSpec
	label := ""
	switch {
	case a.Service != "":
		ports, label = c.cat[a.Service], a.Service
	case a.Protocol != "" && a.PortRange != "":
		lo, hi, _ := parsePortRange(a.PortRange)
		ports, label = []portSpec{{a.Protocol, lo, hi}}, a.Protocol+" "+a.PortRange
	case a.Protocol != "":
		ports, label = []portSpec{{a.Protocol, uint16(a.Port), uint16(a.Port)}}, fmt.Sprintf("%s %d", a.Protocol, a.Port)
	default:
		ports, label = []portSpec{{}}, "any"
	}
	var rules []*nrule
	for _, src := range c.endpoints(a.Sources, from) {
		for _, dst := range c.endpoints(a.Destinations, to) {
			sf, df := src.family(), dst.family()
			if sf != 0 && df != 0 && sf != df {
				continue
			}
			fam := max(sf, df) // 0 when neither restricts the family
			comment := prefix + label
			if src != nil {
				comment += " from " + src.label
			}
			if dst != nil {
				comment += " to " + dst.label
			}
			for _, p := range ports {
				if p.proto == "ping" {
					for _, v6 := range []bool{false, true} {
						if fam == unix.NFPROTO_IPV4 && v6 || fam == unix.NFPROTO_IPV6 && !v6 {
							continue
						}
						r := newRule(comment)
						src.match(r, false)
						dst.match(r, true)
						rules = append(rules, r.icmpType(v6, echoRequest(v6)).accept())
					}
					continue
				}
				r := newRule(comment)
				src.match(r, false)
				dst.match(r, true)
				if p.proto != "" {
					r.dport(p.proto, p.lo, p.hi)
				}
				rules = append(rules, r.accept())
			}
		}
	}
	return rules
}
