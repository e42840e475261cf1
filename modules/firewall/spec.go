package firewall

import (
	"bytes"
	"encoding/json"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Spec is the desired state of a school gateway's firewall. Its JSON tags
// are the wire format: the controller compiles a module's spec and the
// agent decodes it strictly into this type.
//
// The zero Spec (no zones) manages nothing: Plan is empty and the table is
// left as it is. As soon as zones are given, the kind owns the whole
// `inet alize` table: what the spec does not allow is dropped.
type Spec struct {
	// Zones bind interfaces to security levels, as EOLE Amon's zones do.
	Zones []Zone `json:"zones,omitempty"`
	// Policy overrides the level rule for chosen pairs of zones: forwarded
	// traffic, and the server's own traffic towards a zone (from: server).
	Policy []Flow `json:"policy,omitempty"`
	// Masquerade translates the source address of the listed zones'
	// traffic leaving through another zone (IPv4 only).
	Masquerade []Masquerade `json:"masquerade,omitempty"`
	// PortForwards send connections arriving on a zone to an inside host.
	PortForwards []PortForward `json:"port_forwards,omitempty"`
	// LogDrops logs dropped packets, rate-limited. Omitted: no logging.
	LogDrops *LogDrops `json:"log_drops,omitempty"`
	// Probes must pass, over new connections, before a new ruleset is
	// confirmed; the controller probe of the agent's configuration always
	// runs as well.
	Probes []Probe `json:"probes,omitempty"`
}

// Zone is a set of interfaces with one security level. By default traffic
// from a zone may reach a zone of lower level, not the reverse, and zones
// of equal level do not reach each other; traffic between interfaces of
// one zone passes. Nothing reaches the server itself but the zone's
// services, the lifelines and the ICMP essentials.
type Zone struct {
	Name  string `json:"name"`  // safe name: lowercase letters, digits, '-'
	Level int    `json:"level"` // 0 (external, the default) to 100
	// Interfaces are the Linux interfaces of the zone ("eth1", "br-admin").
	// An interface belongs to one zone only.
	Interfaces []string `json:"interfaces"`
	// Networks, when given, are the only source addresses accepted from
	// the zone's interfaces for forwarded traffic (anti-spoofing), per
	// address family: IPv4 networks do not restrict IPv6 and the reverse.
	Networks []string `json:"networks,omitempty"`
	// Sets are named groups of addresses in the zone, for sources and
	// destinations of rules.
	Sets []AddressSet `json:"sets,omitempty"`
	// Services are what the zone may reach on the server itself.
	Services []Allow `json:"services,omitempty"`
}

// AddressSet names addresses and networks of a zone ("direction",
// "cdi-printers"). Overlapping entries are merged.
type AddressSet struct {
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"` // canonical CIDRs or addresses, IPv4 or IPv6
}

// Flow is the policy from one zone to another. Without a Default, the
// zones' levels decide; explicit allows add to it.
type Flow struct {
	From string `json:"from"` // a zone, or "server" for the server's own traffic
	To   string `json:"to"`   // a zone
	// Default is what happens to traffic no allow matches: "accept",
	// "drop", or "" for the level rule (higher reaches lower; the server is
	// above every zone).
	Default string  `json:"default,omitempty"`
	Allow   []Allow `json:"allow,omitempty"`
}

// Allow is some traffic let through: a service of the catalogue
// (Services), or a protocol and port(s), or any traffic; optionally only
// from some sources and to some destinations. Sources and destinations are
// names of address sets of the zone the traffic comes from (or goes to),
// or literal canonical CIDRs and addresses.
//
// In JSON, a bare string is a service name: "https" is {"service": "https"}.
type Allow struct {
	Service      string   `json:"service,omitempty"`    // "ssh", "https", "dns"… (see Services)
	Protocol     string   `json:"protocol,omitempty"`   // "tcp" or "udp", with Port or PortRange
	Port         int      `json:"port,omitempty"`       // 1-65535
	PortRange    string   `json:"port_range,omitempty"` // "10000-20000"
	Sources      []string `json:"sources,omitempty"`
	Destinations []string `json:"destinations,omitempty"`
}

// UnmarshalJSON reads an Allow from an object (decoded strictly: unknown
// fields are errors) or from a bare service name.
func (a *Allow) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var name string
		if err := json.Unmarshal(b, &name); err != nil {
			return err
		}
		*a = Allow{Service: name}
		return nil
	}
	type plain Allow // without the method, to decode the object itself
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return err
	}
	*a = Allow(p)
	return nil
}

// UnmarshalJSONFrom is UnmarshalJSON for json/v2, which the agent and the
// controller use first (modules.DecodeSpec): the same forms, read from
// the decoder without copying the value out first.
func (a *Allow) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	if dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		*a = Allow{Service: tok.String()}
		return nil
	}
	type plain Allow
	var p plain
	if err := jsonv2.UnmarshalDecode(dec, &p, jsonv2.RejectUnknownMembers(true)); err != nil {
		return err
	}
	*a = Allow(p)
	return nil
}

// Masquerade translates the IPv4 source address of traffic from the From
// zones leaving through the To zone to the address of the outgoing
// interface. An empty From masquerades nothing, so that a module variable
// can turn it off.
type Masquerade struct {
	From []string `json:"from"`
	To   string   `json:"to"`
}

// PortForward sends connections arriving from a zone on a port to an
// inside host, a DMZ server for example (DNAT), and lets them through.
type PortForward struct {
	Name      string `json:"name"`
	Zone      string `json:"zone"`     // where the connections come from, usually the external zone
	Protocol  string `json:"protocol"` // "tcp" or "udp"
	Port      int    `json:"port"`
	ToAddress string `json:"to_address"`        // the inside host, IPv4 or IPv6
	ToPort    int    `json:"to_port,omitempty"` // default: Port
}

// LogDrops logs dropped packets to the kernel log with a prefix, at most
// Limit of them. Enabled must be given (true or false), so that a module
// can switch logging with a variable.
type LogDrops struct {
	Enabled *bool  `json:"enabled"`
	Prefix  string `json:"prefix,omitempty"` // default "alize-drop "
	Limit   string `json:"limit,omitempty"`  // "10/minute" (default); units second, minute, hour, day
}

// Probe is a check run from the server over a new connection after a new
// ruleset is loaded. If it does not pass before the deadline, the
// previous ruleset comes back.
type Probe struct {
	Name string `json:"name"`
	// Check is "tcp" (a TCP connection opens: LDAP, Samba, …) or "dns" (a
	// DNS query over UDP is answered).
	Check   string `json:"check"`
	Address string `json:"address"` // "10.1.0.5:389", "[2001:db8::53]:53"
}
