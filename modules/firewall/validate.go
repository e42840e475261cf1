package firewall

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/alize-eple/alize/modules"
)

// ServerZone is the name policy flows use for the server itself (Amon's
// "bastion"): it stands above every zone, so by default it reaches them
// all. It cannot be a zone's name.
const ServerZone = "server"

// Limits that keep a spec, and the ruleset it makes, a reasonable size.
const (
	maxNameLen      = 32
	maxLevel        = 100
	maxLogPrefixLen = 64
	maxZones        = 64
	maxInterfaces   = 64 // in all: forwarding rules grow with the square
	maxRules        = 10000
)

// reserved names a zone cannot take: the server pseudo-zone, and the
// prefix of the lifeline sets.
func reservedZone(name string) bool { return name == ServerZone || name == "lifeline" }

// validate checks a spec and returns every problem with its path.
func validate(s Spec) modules.FieldErrors {
	var errs modules.FieldErrors
	v := validator{errs: &errs, zones: map[string]*Zone{}, cat: catalogue()}
	v.zonesOK(s.Zones)
	if len(s.Zones) == 0 && (len(s.Policy) > 0 || len(s.Masquerade) > 0 || len(s.PortForwards) > 0 || s.LogDrops != nil || len(s.Probes) > 0) {
		errs.Add("zones", "required: the rest of the spec refers to zones")
	}
	v.policyOK(s.Policy)
	v.masqueradeOK(s.Masquerade)
	v.portForwardsOK(s.PortForwards)
	if s.LogDrops != nil {
		v.logDropsOK("log_drops", *s.LogDrops)
	}
	v.probesOK(s.Probes)
	if len(errs) == 0 {
		if n := estimateRules(s, v.cat); n > maxRules {
			errs.Add("", "the spec makes about %d rules, at most %d: group addresses in sets, ports in ranges", n, maxRules)
		}
	}
	return errs
}

// estimateRules counts, from above, the rules compile makes of a valid
// spec, without making them.
func estimateRules(s Spec, cat map[string][]portSpec) int {
	zones := map[string]*Zone{}
	for i := range s.Zones {
		zones[s.Zones[i].Name] = &s.Zones[i]
	}
	endpoints := func(list []string, z *Zone) int {
		n := 0
		for _, e := range list {
			if looksLikeAddress(e) || z == nil {
				n++
			} else if set := findSet(z, e); set != nil {
				v4, v6 := splitFamilies(set.Addresses)
				n += min(len(v4), 1) + min(len(v6), 1)
			}
		}
		return max(n, 1)
	}
	allow := func(a Allow, from, to *Zone) int {
		ports := 1
		if a.Service != "" {
			ports = 0
			for _, p := range cat[a.Service] {
				ports++
				if p.proto == "ping" {
					ports++ // ICMP and ICMPv6
				}
			}
		}
		return endpoints(a.Sources, from) * endpoints(a.Destinations, to) * ports
	}
	n := 32 // lifelines, essentials, logging
	for i := range s.Zones {
		z := &s.Zones[i]
		n += 3 * len(z.Interfaces) // dispatch, anti-spoofing per family
		for _, a := range z.Services {
			n += allow(a, z, nil)
		}
		for j := range s.Zones {
			n += len(z.Interfaces) * len(s.Zones[j].Interfaces)
		}
	}
	for _, f := range s.Policy {
		for _, a := range f.Allow {
			n += allow(a, zones[f.From], zones[f.To])
		}
		if to := zones[f.To]; to != nil {
			n += len(to.Interfaces) + 2
		}
	}
	for _, pf := range s.PortForwards {
		if z := zones[pf.Zone]; z != nil {
			n += 2 * len(z.Interfaces)
		}
	}
	for _, m := range s.Masquerade {
		for _, from := range m.From {
			if a, b := zones[from], zones[m.To]; a != nil && b != nil {
				n += len(a.Interfaces) * len(b.Interfaces)
			}
		}
	}
	return n
}

type validator struct {
	errs  *modules.FieldErrors
	zones map[string]*Zone // by name, the valid ones
	cat   map[string][]portSpec
}

func (v validator) add(path, format string, args ...any) { v.errs.Add(path, format, args...) }

func (v validator) zonesOK(zones []Zone) {
	if len(zones) > maxZones {
		v.add("zones", "at most %d zones, got %d", maxZones, len(zones))
	}
	ifaceZone := map[string]string{} // interface → path of the zone that has it
	total := 0
	for _, z := range zones {
		total += len(z.Interfaces)
	}
	if total > maxInterfaces {
		v.add("zones", "at most %d interfaces in all, got %d", maxInterfaces, total)
	}
	for i := range zones {
		z := &zones[i]
		p := fmt.Sprintf("zones[%d]", i)
		nameOK := v.nameOK(p+".name", z.Name)
		if nameOK && reservedZone(z.Name) {
			v.add(p+".name", "%q is reserved: choose another zone name", z.Name)
			nameOK = false
		}
		if nameOK {
			if _, dup := v.zones[z.Name]; dup {
				v.add(p+".name", "zone %q is defined twice", z.Name)
			} else {
				v.zones[z.Name] = z
			}
		}
		if z.Level < 0 || z.Level > maxLevel {
			v.add(p+".level", "must be 0-%d", maxLevel)
		}
		if len(z.Interfaces) == 0 {
			v.add(p+".interfaces", "required: at least one interface")
		}
		for j, ifc := range z.Interfaces {
			ip := fmt.Sprintf("%s.interfaces[%d]", p, j)
			if err := interfaceOK(ifc); err != nil {
				v.add(ip, "%v", err)
				continue
			}
			if other, taken := ifaceZone[ifc]; taken {
				v.add(ip, "interface %q is already in %s: an interface belongs to one zone", ifc, other)
				continue
			}
			ifaceZone[ifc] = p
		}
		for j, n := range z.Networks {
			if _, err := parseNetwork(n); err != nil {
				v.add(fmt.Sprintf("%s.networks[%d]", p, j), "%v", err)
			}
		}
		setNames := map[string]bool{}
		for j, set := range z.Sets {
			sp := fmt.Sprintf("%s.sets[%d]", p, j)
			if v.nameOK(sp+".name", set.Name) {
				if setNames[set.Name] {
					v.add(sp+".name", "set %q is defined twice in zone %q", set.Name, z.Name)
				}
				setNames[set.Name] = true
			}
			if len(set.Addresses) == 0 {
				v.add(sp+".addresses", "required: at least one address or network")
			}
			for k, a := range set.Addresses {
				if _, err := parseAddress(a); err != nil {
					v.add(fmt.Sprintf("%s.addresses[%d]", sp, k), "%v", err)
				}
			}
		}
	}
	// Services are checked once every zone is known, for their sets.
	for i := range zones {
		z := &zones[i]
		for j, a := range z.Services {
			p := fmt.Sprintf("zones[%d].services[%d]", i, j)
			if len(a.Destinations) > 0 {
				v.add(p+".destinations", "not allowed in a zone's services: they reach the server itself")
			}
			v.allowOK(p, a, z, nil, true, false)
		}
	}
}

func (v validator) policyOK(flows []Flow) {
	seen := map[[2]string]string{}
	for i, f := range flows {
		p := fmt.Sprintf("policy[%d]", i)
		var from, to *Zone
		fromOK := true
		switch {
		case f.From == "":
			v.add(p+".from", "required: a zone, or %q", ServerZone)
			fromOK = false
		case f.From == ServerZone:
		case v.zones[f.From] == nil:
			v.add(p+".from", "no zone %q", f.From)
			fromOK = false
		default:
			from = v.zones[f.From]
		}
		toOK := true
		switch {
		case f.To == "":
			v.add(p+".to", "required: a zone")
			toOK = false
		case f.To == ServerZone:
			v.add(p+".to", "traffic to the server itself is given by each zone's services")
			toOK = false
		case v.zones[f.To] == nil:
			v.add(p+".to", "no zone %q", f.To)
			toOK = false
		default:
			to = v.zones[f.To]
		}
		if fromOK && toOK {
			key := [2]string{f.From, f.To}
			if other, dup := seen[key]; dup {
				v.add(p, "%s already gives the policy from %q to %q", other, f.From, f.To)
			}
			seen[key] = p
		}
		switch f.Default {
		case "", "accept", "drop":
		default:
			v.add(p+".default", "must be accept, drop, or empty for the level rule")
		}
		for j, a := range f.Allow {
			ap := fmt.Sprintf("%s.allow[%d]", p, j)
			checkSrc := fromOK
			if f.From == ServerZone && len(a.Sources) > 0 {
				v.add(ap+".sources", "not allowed from %q: the source is the server itself", ServerZone)
				checkSrc = false
			}
			// References to a zone that is not there are not checked again.
			v.allowOK(ap, a, from, to, checkSrc, toOK)
		}
	}
}

// allowOK checks an Allow whose sources belong to zone from and whose
// destinations belong to zone to (nil: no sets to refer to). Sources and
// destinations are checked only when checkSrc and checkDst say so.
func (v validator) allowOK(p string, a Allow, from, to *Zone, checkSrc, checkDst bool) {
	switch {
	case a.Service != "":
		if _, ok := v.cat[a.Service]; !ok {
			v.add(p+".service", "unknown service %q (known: %s)", a.Service, strings.Join(Services(), ", "))
		}
		if a.Protocol != "" || a.Port != 0 || a.PortRange != "" {
			v.add(p, "give a service or a protocol and port, not both")
		}
	case a.Protocol != "":
		if a.Protocol != "tcp" && a.Protocol != "udp" {
			v.add(p+".protocol", "must be tcp or udp")
		}
		switch {
		case a.Port != 0 && a.PortRange != "":
			v.add(p, "give port or port_range, not both")
		case a.Port != 0:
			if !portOK(a.Port) {
				v.add(p+".port", "must be 1-65535")
			}
		case a.PortRange != "":
			if _, _, err := parsePortRange(a.PortRange); err != nil {
				v.add(p+".port_range", "%v", err)
			}
		default:
			v.add(p+".port", "required with protocol (or port_range)")
		}
	case a.Port != 0 || a.PortRange != "":
		v.add(p+".protocol", "required with a port: tcp or udp")
	case len(a.Sources) == 0 && len(a.Destinations) == 0:
		v.add(p, "must name a service, a protocol and port, or sources or destinations")
	}
	srcFams, dstFams := 0, 0
	if checkSrc {
		srcFams = v.endpointsOK(p+".sources", a.Sources, from)
	}
	if checkDst {
		dstFams = v.endpointsOK(p+".destinations", a.Destinations, to)
	}
	if srcFams != 0 && dstFams != 0 && srcFams&dstFams == 0 {
		v.add(p, "sources and destinations have no address family in common: the rule could never match")
	}
}

// Address families, as a bit set.
const (
	famV4 = 1 << iota
	famV6
)

// endpointsOK checks sources or destinations against zone z's sets and
// returns the address families they cover.
func (v validator) endpointsOK(p string, list []string, z *Zone) int {
	fams := 0
	for i, e := range list {
		ep := fmt.Sprintf("%s[%d]", p, i)
		if looksLikeAddress(e) {
			pfx, err := parseAddress(e)
			if err != nil {
				v.add(ep, "%v", err)
				continue
			}
			fams |= familyOf(pfx.Addr())
			continue
		}
		if z == nil {
			v.add(ep, "must be a CIDR or an address here: there are no sets to name")
			continue
		}
		set := findSet(z, e)
		if set == nil {
			v.add(ep, "no set %q in zone %q, and not an address", e, z.Name)
			continue
		}
		for _, a := range set.Addresses {
			if pfx, err := parseAddress(a); err == nil {
				fams |= familyOf(pfx.Addr())
			}
		}
	}
	return fams
}

func (v validator) masqueradeOK(ms []Masquerade) {
	seen := map[[2]string]bool{}
	for i, m := range ms {
		p := fmt.Sprintf("masquerade[%d]", i)
		if m.To == "" {
			v.add(p+".to", "required: the zone traffic leaves through")
		} else if v.zones[m.To] == nil {
			v.add(p+".to", "no zone %q", m.To)
		}
		for j, from := range m.From {
			fp := fmt.Sprintf("%s.from[%d]", p, j)
			switch {
			case v.zones[from] == nil:
				v.add(fp, "no zone %q", from)
			case from == m.To:
				v.add(fp, "a zone is not masqueraded towards itself")
			case seen[[2]string{from, m.To}]:
				v.add(fp, "%q towards %q is already masqueraded", from, m.To)
			default:
				seen[[2]string{from, m.To}] = true
			}
		}
	}
}

func (v validator) portForwardsOK(pfs []PortForward) {
	names := map[string]bool{}
	taken := map[string]string{}
	for i, pf := range pfs {
		p := fmt.Sprintf("port_forwards[%d]", i)
		if v.nameOK(p+".name", pf.Name) {
			if names[pf.Name] {
				v.add(p+".name", "port forward %q is defined twice", pf.Name)
			}
			names[pf.Name] = true
		}
		zoneOK := false
		switch {
		case pf.Zone == "":
			v.add(p+".zone", "required: the zone connections come from")
		case v.zones[pf.Zone] == nil:
			v.add(p+".zone", "no zone %q", pf.Zone)
		default:
			zoneOK = true
		}
		protoOK := pf.Protocol == "tcp" || pf.Protocol == "udp"
		if !protoOK {
			v.add(p+".protocol", "must be tcp or udp")
		}
		if !portOK(pf.Port) {
			v.add(p+".port", "must be 1-65535")
		}
		if pf.ToPort != 0 && !portOK(pf.ToPort) {
			v.add(p+".to_port", "must be 1-65535, or omitted for the same port")
		}
		to, err := parseHost(pf.ToAddress)
		if err != nil {
			v.add(p+".to_address", "%v", err)
			continue
		}
		if zoneOK && protoOK && portOK(pf.Port) {
			key := fmt.Sprintf("%s/%s/%d/%d", pf.Zone, pf.Protocol, pf.Port, familyOf(to))
			if other, dup := taken[key]; dup {
				v.add(p+".port", "%s already forwards %s %d from zone %q", other, pf.Protocol, pf.Port, pf.Zone)
			}
			taken[key] = p
		}
	}
}

func (v validator) logDropsOK(p string, l LogDrops) {
	if l.Enabled == nil {
		v.add(p+".enabled", "required: true or false")
	}
	if len(l.Prefix) > maxLogPrefixLen {
		v.add(p+".prefix", "at most %d characters", maxLogPrefixLen)
	}
	for _, c := range l.Prefix {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			v.add(p+".prefix", "printable ASCII only, without quotes or backslashes")
			break
		}
	}
	if l.Limit != "" {
		if _, _, err := parseLimit(l.Limit); err != nil {
			v.add(p+".limit", "%v", err)
		}
	}
}

func (v validator) probesOK(probes []Probe) {
	names := map[string]bool{}
	for i, pr := range probes {
		p := fmt.Sprintf("probes[%d]", i)
		if v.nameOK(p+".name", pr.Name) {
			if names[pr.Name] {
				v.add(p+".name", "probe %q is defined twice", pr.Name)
			}
			names[pr.Name] = true
		}
		if pr.Check != "tcp" && pr.Check != "dns" {
			v.add(p+".check", "must be tcp (a connection opens) or dns (a query over UDP is answered)")
		}
		if _, err := parseAddrPort(pr.Address); err != nil {
			v.add(p+".address", "%v", err)
		}
	}
}

// nameOK checks a safe name: 1-32 characters, lowercase letters, digits
// and '-', starting with a letter. Names end up in nftables chain and set
// names, and in comments.
func (v validator) nameOK(p, name string) bool {
	if err := safeName(name); err != nil {
		v.add(p, "%v", err)
		return false
	}
	return true
}

func safeName(name string) error {
	if name == "" {
		return fmt.Errorf("required")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("%q: at most %d characters", name, maxNameLen)
	}
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || i > 0 && (c >= '0' && c <= '9' || c == '-')
		if !ok {
			return fmt.Errorf("%q: lowercase letters, digits and '-', starting with a letter", name)
		}
	}
	return nil
}

// interfaceOK checks a Linux interface name, as nftables matches it.
func interfaceOK(name string) error {
	if name == "" || len(name) > 15 {
		return fmt.Errorf("%q: an interface name has 1-15 characters", name)
	}
	if name == "lo" {
		return fmt.Errorf("the loopback interface is a lifeline: it is always accepted and cannot be in a zone")
	}
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || i > 0 && (c == '-' || c == '_' || c == '.')
		if !ok {
			return fmt.Errorf("%q: letters, digits, '-', '_' and '.' only, starting with a letter or digit", name)
		}
	}
	return nil
}

func portOK(p int) bool { return p >= 1 && p <= 65535 }

// parsePortRange reads "low-high" (1 <= low <= high <= 65535).
func parsePortRange(s string) (lo, hi uint16, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q: must be low-high, like 10000-20000", s)
	}
	l, err1 := strconv.Atoi(a)
	h, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil || strconv.Itoa(l) != a || strconv.Itoa(h) != b {
		return 0, 0, fmt.Errorf("%q: must be low-high, like 10000-20000", s)
	}
	if !portOK(l) || !portOK(h) || l > h {
		return 0, 0, fmt.Errorf("%q: ports must be 1-65535, low before high", s)
	}
	return uint16(l), uint16(h), nil
}

// parseLimit reads "10/minute".
func parseLimit(s string) (rate uint64, unit string, err error) {
	n, u, ok := strings.Cut(s, "/")
	r, perr := strconv.ParseUint(n, 10, 32)
	if !ok || perr != nil || r == 0 || r > 10000 || strconv.FormatUint(r, 10) != n {
		return 0, "", fmt.Errorf("%q: must be a count (1-10000) per unit, like 10/minute", s)
	}
	switch u {
	case "second", "minute", "hour", "day":
	default:
		return 0, "", fmt.Errorf("%q: the unit must be second, minute, hour or day", s)
	}
	return r, u, nil
}

// looksLikeAddress tells a literal address or CIDR from a set name: set
// names have no '.', ':' or '/'.
func looksLikeAddress(s string) bool { return strings.ContainsAny(s, ".:/") }

// parseNetwork reads a canonical CIDR: no host bits, canonical spelling,
// not /0.
func parseNetwork(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q: not a CIDR network, like 10.1.0.0/16 or 2001:db8::/48", s)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q: write IPv4 networks in IPv4 form", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%q: host bits are set; the network is %s", s, m)
	}
	if p.String() != s {
		return netip.Prefix{}, fmt.Errorf("%q: write it %s", s, p)
	}
	if p.Bits() == 0 {
		return netip.Prefix{}, fmt.Errorf("%q: a /0 network means everything; omit the restriction instead", s)
	}
	return p, nil
}

// parseAddress reads a canonical CIDR or a canonical single address,
// returned as a /32 or /128 prefix.
func parseAddress(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return parseNetwork(s)
	}
	a, err := parseHost(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// parseHost reads one canonical unicast address.
func parseHost(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q: not an IP address, like 10.1.0.5 or 2001:db8::5", s)
	}
	if a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("%q: write IPv4 addresses in IPv4 form", s)
	}
	if a.String() != s {
		return netip.Addr{}, fmt.Errorf("%q: write it %s", s, a)
	}
	if a.IsUnspecified() || a.IsMulticast() {
		return netip.Addr{}, fmt.Errorf("%q: must be a unicast address", s)
	}
	return a, nil
}

// parseAddrPort reads "10.1.0.5:389" or "[2001:db8::5]:389".
func parseAddrPort(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Addr().Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%q: must be an address and port, like 10.1.0.5:389 or [2001:db8::5]:53", s)
	}
	if _, err := parseHost(ap.Addr().String()); err != nil || ap.String() != s {
		return netip.AddrPort{}, fmt.Errorf("%q: write it %s with a unicast address", s, ap)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q: the port must be 1-65535", s)
	}
	return ap, nil
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return famV4
	}
	return famV6
}

func findSet(z *Zone, name string) *AddressSet {
	for i := range z.Sets {
		if z.Sets[i].Name == name {
			return &z.Sets[i]
		}
	}
	return nil
}
