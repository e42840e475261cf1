package firewall

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/alize-eple/alize/testenv"
	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TestRefusedBatchChangesNothing loads a table whose batch the kernel
// refuses (a jump to a chain that does not exist, a lookup in a set that
// does not exist): the error names each refused message and its errno,
// and the ruleset, the kind's table and another application's, is as it
// was.
func TestRefusedBatchChangesNothing(t *testing.T) {
	testenv.Require(t, "nft", "netns")
	ns := testenv.NewNetNS(t, "gateway")
	nftStdin(t, ns, otherAppTable)
	good := compile(loadSpec(t, "testdata/school.json"), goldenLifelines()).state()
	loadTable(t, ns, good)
	before := listRuleset(t, ns)

	bad := good
	bad.chains = slices.Clone(good.chains)
	in := &bad.chains[0]
	if in.name != "input" {
		t.Fatalf("first chain is %q, want input", in.name)
	}
	in.rules = append(slices.Clone(in.rules),
		ruleState{
			exprs:    []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: "nowhere"}},
			userData: userdata.AppendString(nil, userdata.TypeComment, "jump to a missing chain"),
		},
		ruleState{exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Lookup{SourceRegister: 1, SetName: "nope"},
		}})
	n := len(in.rules)

	conn, err := dial(ns.FD())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = load(conn, bad)
	if err == nil {
		t.Fatal("load(a table with a jump to a missing chain) = nil, want an error")
	}
	for _, want := range []string{
		"load table inet alize: the kernel refused the batch, nothing was changed",
		`add rule ` + strconv.Itoa(n-2) + ` of chain input ("jump to a missing chain"): no such file or directory`,
		`add rule ` + strconv.Itoa(n-1) + ` of chain input: no such file or directory`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("load error = %q, want it to say %q", err, want)
		}
	}
	t.Logf("load: %v", err)
	if !errors.Is(err, syscall.ENOENT) {
		t.Errorf("errors.Is(%v, ENOENT) = false, want true", err)
	}
	if got := listRuleset(t, ns); got != before {
		t.Errorf("after a refused batch the ruleset is:\n%s\nwant it unchanged:\n%s", got, before)
	}

	// The same connection goes on working: the good table loads again,
	// and reads back as it was loaded.
	if err := load(conn, good); err != nil {
		t.Fatalf("load(good) after a refused batch = %v", err)
	}
	have, err := read(conn)
	if err != nil {
		t.Fatal(err)
	}
	if len(have.chains) != len(good.chains) {
		t.Fatalf("read back %d chains, want %d", len(have.chains), len(good.chains))
	}
	for i, c := range good.chains {
		if !rulesEqual(have.chains[i].rules, c.rules) {
			t.Errorf("chain %s read back differs from the one loaded", c.name)
		}
	}
}

// nlError is an NLMSG_ERROR answering the message seq, as the kernel
// writes it: capped (the refused message's header only), with the
// kernel's explanation when msg is not empty, or followed by the whole
// refused message of size payload.
func nlError(seq uint32, errno syscall.Errno, msg string, capped bool, payload int) []byte {
	var flags uint16
	var tail []byte
	if !capped {
		tail = make([]byte, payload)
	} else {
		flags |= unix.NLM_F_CAPPED
	}
	if msg != "" {
		flags |= unix.NLM_F_ACK_TLVS
		ae := netlink.NewAttributeEncoder()
		ae.String(unix.NLMSGERR_ATTR_MSG, msg)
		tlvs, _ := ae.Encode()
		tail = append(tail, tlvs...)
	}
	b := binary.NativeEndian.AppendUint32(nil, uint32(16+4+16+len(tail)))
	b = binary.NativeEndian.AppendUint16(b, unix.NLMSG_ERROR)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint64(b, 0)
	b = binary.NativeEndian.AppendUint32(b, uint32(-int32(errno)))
	b = binary.NativeEndian.AppendUint32(b, uint32(16+payload))
	b = binary.NativeEndian.AppendUint32(b, nftMsg|unix.NFT_MSG_NEWRULE)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	return append(b, tail...)
}

func TestParseAnswers(t *testing.T) {
	var buf []byte
	buf = append(buf, nlError(7, 0, "", true, 0)...)
	buf = append(buf, nlError(8, syscall.ENOENT, "Chain not found", true, 0)...)
	buf = append(buf, nlError(9, syscall.EINVAL, "bad expression", false, 40)...)
	buf = append(buf, nlError(10, syscall.EOPNOTSUPP, "", false, 24)...)
	got, err := parseAnswers(buf)
	if err != nil {
		t.Fatal(err)
	}
	want := []answer{
		{seq: 7},
		{seq: 8, errno: syscall.ENOENT, msg: "Chain not found"},
		{seq: 9, errno: syscall.EINVAL, msg: "bad expression"},
		{seq: 10, errno: syscall.EOPNOTSUPP},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(answer{})); diff != "" {
		t.Errorf("parseAnswers (-want +got):\n%s", diff)
	}
	if _, err := parseAnswers(buf[:len(buf)-3]); err == nil {
		t.Error("parseAnswers(a truncated message) = nil error, want one")
	}
}

// TestLargeSetLoads loads a set whose elements do not fit one netlink
// attribute (its 16-bit length): they go in several messages of the same
// batch, and the table reads back as wanted.
func TestLargeSetLoads(t *testing.T) {
	testenv.Require(t, "nft", "netns")
	ns := testenv.NewNetNS(t, "gateway")
	addrs := make([]string, 3000)
	for i := range addrs {
		addrs[i] = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 7), 15: byte(i<<1) | 1}).String()
	}
	spec := Spec{Zones: []Zone{
		{Name: "external", Interfaces: []string{"eth0"}},
		{Name: "admin", Level: 90, Interfaces: []string{"eth1"}, Sets: []AddressSet{{Name: "many", Addresses: addrs}},
			Services: []Allow{{Service: "ssh", Sources: []string{"many"}}}},
	}}
	if err := validate(spec).Err(); err != nil {
		t.Fatal(err)
	}
	f := newKind(t, ns, nil)
	apply(t, f, spec)
	if got := nft(t, ns, "list", "set", "inet", "alize", "admin_many_v6"); !strings.Contains(got, addrs[len(addrs)-1]) {
		t.Errorf("set admin_many_v6 lacks its last address %s:\n%.500s", addrs[len(addrs)-1], got)
	}
}
