package firewall

import "sort"

// portSpec is one protocol and port range a service uses; ping is ICMP and
// ICMPv6 echo requests.
type portSpec struct {
	proto  string // "tcp", "udp", or "ping"
	lo, hi uint16
}

// catalogue is the built-in services a spec names: ssh, https, dns…
// It returns a fresh value each time: the catalogue cannot be changed.
func catalogue() map[string][]portSpec {
	tcp := func(p uint16) portSpec { return portSpec{"tcp", p, p} }
	udp := func(p uint16) portSpec { return portSpec{"udp", p, p} }
	return map[string][]portSpec{
		"dhcp":       {udp(67)},
		"dns":        {udp(53), tcp(53)},
		"http":       {tcp(80)},
		"http-alt":   {tcp(8080)},
		"https":      {tcp(443)},
		"imaps":      {tcp(993)},
		"ipp":        {tcp(631)},
		"kerberos":   {tcp(88), udp(88)},
		"ldap":       {tcp(389)},
		"ldaps":      {tcp(636)},
		"ntp":        {udp(123)},
		"openvpn":    {udp(1194)},
		"ping":       {{proto: "ping"}},
		"proxy":      {tcp(3128)},
		"rdp":        {tcp(3389)},
		"smb":        {tcp(445), tcp(139)},
		"smtp":       {tcp(25)},
		"snmp":       {udp(161)},
		"ssh":        {tcp(22)},
		"submission": {tcp(587)},
		"syslog":     {udp(514)},
	}
}

// Services returns the names of the built-in services, sorted.
func Services() []string {
	c := catalogue()
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
