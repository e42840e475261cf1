package firewall

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// tableName is the one table the kind owns, in the inet family.
const tableName = "alize"

func ownTable() *nftables.Table {
	return &nftables.Table{Name: tableName, Family: nftables.TableFamilyINet}
}

// ruleset is a compiled table: every set, chain and rule both as nft text
// (for `nft -f`, golden files and plan diffs) and as the netlink
// expressions the kernel gets. The two are built side by side by the
// same calls, so they cannot drift apart; the differential test checks
// that the kernel agrees.
type ruleset struct {
	sets   []*nset
	chains []*nchain
}

// nset is a named set of the table.
type nset struct {
	id       uint32 // batch-local id, for lookups in the same batch
	name     string
	keyType  nftables.SetDatatype
	interval bool
	text     []string // elements as nft writes them
	elems    []nftables.SetElement
}

// baseChain is how a chain hooks into the kernel.
type baseChain struct {
	typ      nftables.ChainType
	hook     nftables.ChainHook
	hookName string
	prio     nftables.ChainPriority
	prioName string
	policy   nftables.ChainPolicy
}

type nchain struct {
	name  string
	base  *baseChain // nil for a regular chain, reached by jumps
	rules []*nrule
}

// nrule is one rule, built statement by statement. Like nft, it adds a
// protocol dependency (meta nfproto, meta l4proto) before a match that
// needs it, unless an earlier match of the rule already gave it.
type nrule struct {
	text    []string
	exprs   []expr.Any
	comment string
	nf      byte // NFPROTO_IPV4 or NFPROTO_IPV6 once known
	l4      byte // IPPROTO_* once known
}

func newRule(comment string) *nrule { return &nrule{comment: comment} }

func (r *nrule) add(text string, es ...expr.Any) *nrule {
	if text != "" {
		r.text = append(r.text, text)
	}
	r.exprs = append(r.exprs, es...)
	return r
}

// String is the rule as nft writes it, with its comment.
func (r *nrule) String() string {
	s := strings.Join(r.text, " ")
	if r.comment != "" {
		s += " comment " + strconv.Quote(r.comment)
	}
	return s
}

func cmpEq(data []byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data} }

func metaLoad(key expr.MetaKey) *expr.Meta { return &expr.Meta{Key: key, Register: 1} }

// ifname pads an interface name as the kernel compares it (IFNAMSIZ).
func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}

func (r *nrule) iifname(n string) *nrule {
	return r.add(`iifname "`+n+`"`, metaLoad(expr.MetaKeyIIFNAME), cmpEq(ifname(n)))
}

func (r *nrule) oifname(n string) *nrule {
	return r.add(`oifname "`+n+`"`, metaLoad(expr.MetaKeyOIFNAME), cmpEq(ifname(n)))
}

// nfproto is an explicit "meta nfproto ipv4|ipv6".
func (r *nrule) nfproto(fam byte) *nrule {
	r.nf = fam
	return r.add("meta nfproto "+famName(fam), metaLoad(expr.MetaKeyNFPROTO), cmpEq([]byte{fam}))
}

func (r *nrule) needNF(fam byte) {
	if r.nf == fam {
		return
	}
	r.nf = fam
	r.add("", metaLoad(expr.MetaKeyNFPROTO), cmpEq([]byte{fam}))
}

func (r *nrule) needL4(p byte) {
	if r.l4 == p {
		return
	}
	r.l4 = p
	r.add("", metaLoad(expr.MetaKeyL4PROTO), cmpEq([]byte{p}))
}

func famName(fam byte) string {
	if fam == unix.NFPROTO_IPV4 {
		return "ipv4"
	}
	return "ipv6"
}

func famKeyword(fam byte) string {
	if fam == unix.NFPROTO_IPV4 {
		return "ip"
	}
	return "ip6"
}

func nfFamily(a netip.Addr) byte {
	if a.Is4() {
		return unix.NFPROTO_IPV4
	}
	return unix.NFPROTO_IPV6
}

// addrOffset is where the source or destination address sits in the
// network header.
func addrOffset(fam byte, dst bool) (off, size uint32) {
	switch {
	case fam == unix.NFPROTO_IPV4 && !dst:
		return 12, 4
	case fam == unix.NFPROTO_IPV4:
		return 16, 4
	case !dst:
		return 8, 16
	default:
		return 24, 16
	}
}

func dirName(dst bool) string {
	if dst {
		return "daddr"
	}
	return "saddr"
}

func loadNetwork(off, size uint32) *expr.Payload {
	return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size}
}

// addr matches a source or destination prefix, as nft does: a prefix on a
// byte boundary loads only its bytes; another one is masked.
func (r *nrule) addr(dst bool, p netip.Prefix) *nrule {
	fam := nfFamily(p.Addr())
	r.needNF(fam)
	off, size := addrOffset(fam, dst)
	a := p.Addr().AsSlice()
	bits := p.Bits()
	text := famKeyword(fam) + " " + dirName(dst) + " "
	if bits == p.Addr().BitLen() {
		text += p.Addr().String()
	} else {
		text += p.String()
	}
	if bits%8 == 0 {
		return r.add(text, loadNetwork(off, uint32(bits/8)), cmpEq(a[:bits/8]))
	}
	mask := make([]byte, size)
	for i := 0; i < bits; i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return r.add(text,
		loadNetwork(off, size),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: size, Mask: mask, Xor: make([]byte, size)},
		cmpEq(a))
}

// inSet matches a source or destination address against a named set.
func (r *nrule) inSet(dst bool, s *nset, invert bool) *nrule {
	fam := byte(unix.NFPROTO_IPV4)
	if s.keyType.GetNFTMagic() == nftables.TypeIP6Addr.GetNFTMagic() {
		fam = unix.NFPROTO_IPV6
	}
	r.needNF(fam)
	off, size := addrOffset(fam, dst)
	op := " "
	if invert {
		op = " != "
	}
	return r.add(famKeyword(fam)+" "+dirName(dst)+op+"@"+s.name,
		loadNetwork(off, size),
		&expr.Lookup{SourceRegister: 1, SetName: s.name, SetID: s.id, Invert: invert})
}

func protoNumber(proto string) byte {
	if proto == "udp" {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

// dport matches a TCP or UDP destination port or range.
func (r *nrule) dport(proto string, lo, hi uint16) *nrule {
	r.needL4(protoNumber(proto))
	load := &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
	if lo == hi {
		return r.add(fmt.Sprintf("%s dport %d", proto, lo), load, cmpEq(binaryutil.BigEndian.PutUint16(lo)))
	}
	return r.add(fmt.Sprintf("%s dport %d-%d", proto, lo, hi), load,
		&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: binaryutil.BigEndian.PutUint16(lo)},
		&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: binaryutil.BigEndian.PutUint16(hi)})
}

func icmpKeyword(v6 bool) (string, byte, byte) {
	if v6 {
		return "icmpv6", unix.NFPROTO_IPV6, unix.IPPROTO_ICMPV6
	}
	return "icmp", unix.NFPROTO_IPV4, unix.IPPROTO_ICMP
}

func loadICMPType() *expr.Payload {
	return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1}
}

// icmpType matches one ICMP or ICMPv6 type, by its nft name.
func (r *nrule) icmpType(v6 bool, typ icmpTypeName) *nrule {
	kw, nf, l4 := icmpKeyword(v6)
	r.needNF(nf)
	r.needL4(l4)
	return r.add(kw+" type "+typ.name, loadICMPType(), cmpEq([]byte{typ.code}))
}

// icmpSet matches ICMP or ICMPv6 types against a named set.
func (r *nrule) icmpSet(v6 bool, s *nset) *nrule {
	kw, nf, l4 := icmpKeyword(v6)
	r.needNF(nf)
	r.needL4(l4)
	return r.add(kw+" type @"+s.name, loadICMPType(), &expr.Lookup{SourceRegister: 1, SetName: s.name, SetID: s.id})
}

// Connection tracking states and statuses, as the kernel numbers them.
const (
	ctStateInvalid     = 1
	ctStateEstablished = 2
	ctStateRelated     = 4
	ctStatusDstNAT     = 0x20
)

func (r *nrule) ctBits(key expr.CtKey, bits uint32, text string) *nrule {
	return r.add(text,
		&expr.Ct{Register: 1, Key: key},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)})
}

func (r *nrule) ctEstablished() *nrule {
	return r.ctBits(expr.CtKeySTATE, ctStateEstablished|ctStateRelated, "ct state established,related")
}

func (r *nrule) ctInvalid() *nrule {
	return r.ctBits(expr.CtKeySTATE, ctStateInvalid, "ct state invalid")
}

func (r *nrule) ctDNAT() *nrule {
	return r.ctBits(expr.CtKeySTATUS, ctStatusDstNAT, "ct status dnat")
}

// limit lets through at most rate packets per unit, with nft's default
// burst of 5 packets.
func (r *nrule) limit(rate uint64, unit string) *nrule {
	per := expr.LimitTimeMinute
	switch unit {
	case "second":
		per = expr.LimitTimeSecond
	case "hour":
		per = expr.LimitTimeHour
	case "day":
		per = expr.LimitTimeDay
	}
	return r.add(fmt.Sprintf("limit rate %d/%s", rate, unit),
		&expr.Limit{Type: expr.LimitTypePkts, Rate: rate, Unit: per, Burst: 5})
}

// log logs with a prefix at the default level (warn), which the kernel
// reports back explicitly.
func (r *nrule) log(prefix string) *nrule {
	return r.add(`log prefix "`+prefix+`"`,
		&expr.Log{Key: 1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_LEVEL, Level: expr.LogLevelWarning, Data: []byte(prefix)})
}

func (r *nrule) accept() *nrule { return r.add("accept", &expr.Verdict{Kind: expr.VerdictAccept}) }
func (r *nrule) drop() *nrule   { return r.add("drop", &expr.Verdict{Kind: expr.VerdictDrop}) }
func (r *nrule) jump(chain string) *nrule {
	return r.add("jump "+chain, &expr.Verdict{Kind: expr.VerdictJump, Chain: chain})
}

func (r *nrule) masquerade() *nrule { return r.add("masquerade", &expr.Masq{}) }

// dnat rewrites the destination to addr:port. The kernel reports the
// maximum registers equal to the minimum ones; they are given so.
func (r *nrule) dnat(a netip.Addr, port uint16) *nrule {
	fam := nfFamily(a)
	to := fmt.Sprintf("%s:%d", a, port)
	if fam == unix.NFPROTO_IPV6 {
		to = fmt.Sprintf("[%s]:%d", a, port)
	}
	return r.add("dnat "+famKeyword(fam)+" to "+to,
		&expr.Immediate{Register: 1, Data: a.AsSlice()},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(fam), RegAddrMin: 1, RegAddrMax: 1, RegProtoMin: 2, RegProtoMax: 2, Specified: true})
}

// icmpTypeName is an ICMP or ICMPv6 type with its nft name.
type icmpTypeName struct {
	name string
	code byte
}

// The ICMP essentials: errors that path MTU discovery and diagnostics
// need, and for IPv6 neighbour and router discovery and multicast listener
// discovery, without which IPv6 does not work on a link.
func icmpEssentials() []icmpTypeName {
	return []icmpTypeName{{"destination-unreachable", 3}, {"time-exceeded", 11}, {"parameter-problem", 12}}
}

func icmpv6Essentials() []icmpTypeName {
	return append(icmpv6Errors(),
		icmpTypeName{"mld-listener-query", 130}, icmpTypeName{"mld-listener-report", 131},
		icmpTypeName{"mld-listener-done", 132}, icmpTypeName{"nd-router-solicit", 133},
		icmpTypeName{"nd-router-advert", 134}, icmpTypeName{"nd-neighbor-solicit", 135},
		icmpTypeName{"nd-neighbor-advert", 136}, icmpTypeName{"mld2-listener-report", 143})
}

// icmpv6Errors are the ICMPv6 essentials that cross a router; discovery
// messages stay on their link.
func icmpv6Errors() []icmpTypeName {
	return []icmpTypeName{{"destination-unreachable", 1}, {"packet-too-big", 2}, {"time-exceeded", 3}, {"parameter-problem", 4}}
}

func echoRequest(v6 bool) icmpTypeName {
	if v6 {
		return icmpTypeName{"echo-request", 128}
	}
	return icmpTypeName{"echo-request", 8}
}

// icmpSetOf makes a set of ICMP or ICMPv6 types.
func icmpSetOf(name string, v6 bool, types []icmpTypeName) *nset {
	s := &nset{name: name, keyType: nftables.TypeICMPType}
	if v6 {
		s.keyType = nftables.TypeICMP6Type
	}
	for _, t := range types {
		s.text = append(s.text, t.name)
		s.elems = append(s.elems, nftables.SetElement{Key: []byte{t.code}})
	}
	return s
}

// addrRange is an inclusive range of addresses of one family.
type addrRange struct{ lo, hi netip.Addr }

// addressSet makes an interval set of one family from prefixes, merging
// those that overlap or touch (the kernel refuses overlapping intervals).
func addressSet(name string, prefixes []netip.Prefix) *nset {
	s := &nset{name: name, keyType: nftables.TypeIPAddr, interval: true}
	if len(prefixes) > 0 && prefixes[0].Addr().Is6() {
		s.keyType = nftables.TypeIP6Addr
	}
	for _, r := range mergeRanges(prefixes) {
		s.text = append(s.text, rangeText(r))
		s.elems = append(s.elems, nftables.SetElement{Key: r.lo.AsSlice()})
		if end := r.hi.Next(); end.IsValid() {
			s.elems = append(s.elems, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
		}
	}
	return s
}

func mergeRanges(prefixes []netip.Prefix) []addrRange {
	rs := make([]addrRange, 0, len(prefixes))
	for _, p := range prefixes {
		rs = append(rs, addrRange{p.Masked().Addr(), lastAddr(p)})
	}
	sortRanges(rs)
	var out []addrRange
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			next := last.hi.Next()
			if !next.IsValid() || r.lo.Compare(next) <= 0 {
				if r.hi.Compare(last.hi) > 0 {
					last.hi = r.hi
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

func sortRanges(rs []addrRange) {
	slices.SortStableFunc(rs, func(a, b addrRange) int { return a.lo.Compare(b.lo) })
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(a)*8; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	out, _ := netip.AddrFromSlice(a)
	return out
}

// rangeText writes a range as nft lists it: an address, a prefix, or
// low-high.
func rangeText(r addrRange) string {
	if r.lo == r.hi {
		return r.lo.String()
	}
	for bits := 0; bits < r.lo.BitLen(); bits++ {
		p := netip.PrefixFrom(r.lo, bits)
		if p.Masked().Addr() == r.lo && lastAddr(p) == r.hi {
			return p.String()
		}
	}
	return r.lo.String() + "-" + r.hi.String()
}
