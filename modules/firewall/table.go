package firewall

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// tableState is the whole `inet alize` table as netlink objects: what
// the kind loads, what it reads back from the kernel, and the snapshot a
// revert restores. Comparing two of them is how Plan sees drift.
type tableState struct {
	exists bool
	sets   []setState
	chains []chainState
}

type setState struct {
	name                                         string
	anonymous, constant, interval, isMap, concat bool
	keyType, keyLen, dataType, dataLen           uint32
	elems                                        []nftables.SetElement
}

type chainState struct {
	name     string
	typ      nftables.ChainType
	hook     *nftables.ChainHook
	priority *nftables.ChainPriority
	policy   *nftables.ChainPolicy
	device   string
	rules    []ruleState
}

type ruleState struct {
	exprs    []expr.Any
	userData []byte
}

func (r ruleState) comment() string {
	c, _ := userdata.GetString(r.userData, userdata.TypeComment)
	return c
}

// state is the table a ruleset makes.
func (rs *ruleset) state() tableState {
	ts := tableState{exists: true}
	for _, s := range rs.sets {
		ts.sets = append(ts.sets, setState{
			name: s.name, interval: s.interval,
			keyType: s.keyType.GetNFTMagic(), keyLen: s.keyType.Bytes,
			elems: s.elems,
		})
	}
	for _, c := range rs.chains {
		cs := chainState{name: c.name}
		if b := c.base; b != nil {
			hook, prio, pol := b.hook, b.prio, b.policy
			cs.typ, cs.hook, cs.priority, cs.policy = b.typ, &hook, &prio, &pol
		}
		for _, r := range c.rules {
			rule := ruleState{exprs: r.exprs}
			if r.comment != "" {
				rule.userData = userdata.AppendString(nil, userdata.TypeComment, r.comment)
			}
			cs.rules = append(cs.rules, rule)
		}
		ts.chains = append(ts.chains, cs)
	}
	return ts
}

// errUnreadable wraps what keeps an existing table from being read back:
// something in it google/nftables does not parse. It is drift the kind
// repairs by replacing the table, not a failure.
type errUnreadable struct{ err error }

func (e errUnreadable) Error() string { return "the table cannot be read back: " + e.err.Error() }
func (e errUnreadable) Unwrap() error { return e.err }

// read reads the live table back from the kernel.
func read(c *nftConn) (tableState, error) {
	ts, err := readContent(c.nft)
	if err != nil && ts.exists {
		return ts, errUnreadable{err}
	}
	return ts, err
}

func readContent(conn *nftables.Conn) (tableState, error) {
	t := ownTable()
	tables, err := conn.ListTablesOfFamily(t.Family)
	if err != nil {
		return tableState{}, fmt.Errorf("list tables: %w", err)
	}
	if !slices.ContainsFunc(tables, func(x *nftables.Table) bool { return x.Name == t.Name }) {
		return tableState{}, nil
	}
	ts := tableState{exists: true}
	sets, err := conn.GetSets(t)
	if err != nil {
		return ts, fmt.Errorf("list sets: %w", err)
	}
	for _, s := range sets {
		elems, err := conn.GetSetElements(s)
		if err != nil {
			return ts, fmt.Errorf("list elements of set %s: %w", s.Name, err)
		}
		ts.sets = append(ts.sets, setState{
			name: s.Name, anonymous: s.Anonymous, constant: s.Constant, interval: s.Interval,
			isMap: s.IsMap, concat: s.Concatenation,
			keyType: s.KeyType.GetNFTMagic(), keyLen: s.KeyType.Bytes,
			dataType: s.DataType.GetNFTMagic(), dataLen: s.DataType.Bytes,
			elems: elems,
		})
	}
	chains, err := conn.ListChainsOfTableFamily(t.Family)
	if err != nil {
		return ts, fmt.Errorf("list chains: %w", err)
	}
	for _, c := range chains {
		if c.Table.Name != t.Name {
			continue
		}
		rules, err := conn.GetRules(t, c)
		if err != nil {
			return ts, fmt.Errorf("list rules of chain %s: %w", c.Name, err)
		}
		cs := chainState{name: c.Name, typ: c.Type, hook: c.Hooknum, priority: c.Priority, policy: c.Policy, device: c.Device}
		for _, r := range rules {
			cs.rules = append(cs.rules, ruleState{exprs: r.Exprs, userData: r.UserData})
		}
		ts.chains = append(ts.chains, cs)
	}
	return ts, nil
}

// load replaces the table with ts in one netlink batch: the table is
// created if missing, deleted, and created again with everything in it,
// so the kernel swaps the old table for the new one at once or, if
// anything is refused, keeps the old one. A state that does not exist
// deletes the table.
func load(c *nftConn, ts tableState) error {
	b, err := replaceBatch(ts)
	if err == nil && c.batch == nil {
		c.batch, err = dialBatch(c.netns)
	}
	if err == nil {
		err = c.batch.send(b)
	}
	if err != nil {
		return fmt.Errorf("load table inet %s: %w", tableName, err)
	}
	return nil
}

// nftConn is a lasting connection to nf_tables in one network namespace:
// google/nftables reads the table back, a batchConn replaces it (opened
// at the first load, so that a plan opens one socket).
type nftConn struct {
	netns int
	nft   *nftables.Conn
	batch *batchConn
}

// dial opens a lasting netlink connection to nftables in the network
// namespace fd (0: the caller's own), with 8 MiB socket buffers: without
// them a large table does not fit the send buffer (EMSGSIZE), and the
// dumps that read it back overflow the receive buffer (ENOBUFS).
func dial(netns int) (*nftConn, error) {
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(bigBuffers)}
	if netns != 0 {
		opts = append(opts, nftables.WithNetNSFd(netns))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return &nftConn{netns: netns, nft: conn}, nil
}

// Close closes the connection's sockets.
func (c *nftConn) Close() error {
	err := c.nft.CloseLasting()
	if c.batch != nil {
		err = errors.Join(err, c.batch.Close())
	}
	return err
}

const socketBuffer = 8 << 20

func bigBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
			err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], socketBuffer)
			if errors.Is(err, syscall.EPERM) {
				err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], socketBuffer)
			}
			if err != nil && serr == nil {
				serr = fmt.Errorf("socket buffer: %w", err)
			}
		}
	})
	return errors.Join(err, serr)
}

// ruleKey is a rule's identity for comparison: its expressions as the
// kernel gets them, without batch-local set ids, and its comment.
func ruleKey(r ruleState) string {
	b := make([]byte, 0, 64*len(r.exprs))
	for _, e := range r.exprs {
		switch x := e.(type) {
		case *expr.Lookup:
			l := *x
			l.SetID = 0
			e = &l
		case *expr.Dynset:
			d := *x
			d.SetID = 0
			e = &d
		case *expr.Counter:
			e = &expr.Counter{}
		}
		data, err := expr.Marshal(inet, e)
		if err != nil {
			data = fmt.Appendf(nil, "%T%+v", e, e) // still comparable
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
		b = append(b, data...)
	}
	b = append(b, 0xff)
	b = append(b, r.userData...)
	return string(b)
}

// keys returns the keys of a chain's rules.
func (c chainState) keys() []string {
	ks := make([]string, len(c.rules))
	for i, r := range c.rules {
		ks[i] = ruleKey(r)
	}
	return ks
}

// setKey is a set's identity for comparison: its type, flags and
// elements in order, without nft's leading interval-end marker.
func setKey(s setState) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d/%d/%d/%d/%t%t%t%t%t|", s.keyType, s.keyLen, s.dataType, s.dataLen, s.anonymous, s.constant, s.interval, s.isMap, s.concat)
	for _, e := range sortedElems(s) {
		fmt.Fprintf(&b, "%x-%x-%x-%t;", e.Key, e.KeyEnd, e.Val, e.IntervalEnd)
		if e.VerdictData != nil {
			fmt.Fprintf(&b, "%d:%s;", e.VerdictData.Kind, e.VerdictData.Chain)
		}
	}
	return b.String()
}

func sortedElems(s setState) []nftables.SetElement {
	es := slices.Clone(s.elems)
	slices.SortStableFunc(es, func(a, b nftables.SetElement) int {
		if c := bytes.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		switch {
		case a.IntervalEnd == b.IntervalEnd:
			return 0
		case a.IntervalEnd:
			return -1
		}
		return 1
	})
	if s.interval && len(es) > 0 && es[0].IntervalEnd && allZero(es[0].Key) {
		es = es[1:] // nft marks the gap below the first interval
	}
	return es
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func chainKey(c chainState) string {
	s := string(c.typ) + "/" + c.device
	if c.hook != nil {
		s += fmt.Sprintf("/hook%d", *c.hook)
	}
	if c.priority != nil {
		s += fmt.Sprintf("/prio%d", *c.priority)
	}
	if c.policy != nil {
		s += fmt.Sprintf("/policy%d", *c.policy)
	}
	return s
}

// restorable says whether load can bring ts back as it was read.
// google/nftables reads a verdict map's key type as "verdict" and loses
// it, so such a map cannot be restored.
func (ts tableState) restorable() error {
	for _, s := range ts.sets {
		if s.isMap && (s.keyLen == 0 || s.keyType == nftables.TypeVerdict.GetNFTMagic()) {
			return fmt.Errorf("map %s cannot be read back faithfully", s.name)
		}
	}
	return nil
}

func (ts tableState) numRules() int {
	n := 0
	for _, c := range ts.chains {
		n += len(c.rules)
	}
	return n
}

// rulesEqual reports whether two chains' rules are the same, comparing
// expressions field by field: the no-drift case, without marshalling.
func rulesEqual(have, want []ruleState) bool {
	if len(have) != len(want) {
		return false
	}
	for i := range have {
		if !bytes.Equal(have[i].userData, want[i].userData) || len(have[i].exprs) != len(want[i].exprs) {
			return false
		}
		for j := range have[i].exprs {
			if !exprEqual(have[i].exprs[j], want[i].exprs[j]) {
				return false
			}
		}
	}
	return true
}

// exprEqual compares the expressions the kind writes field by field, set
// ids aside; any other by its netlink form, as ruleKey does.
func exprEqual(a, b expr.Any) bool {
	switch x := a.(type) {
	case *expr.Meta:
		y, ok := b.(*expr.Meta)
		return ok && *x == *y
	case *expr.Cmp:
		y, ok := b.(*expr.Cmp)
		return ok && x.Op == y.Op && x.Register == y.Register && bytes.Equal(x.Data, y.Data)
	case *expr.Payload:
		y, ok := b.(*expr.Payload)
		return ok && *x == *y
	case *expr.Lookup:
		y, ok := b.(*expr.Lookup)
		return ok && x.SourceRegister == y.SourceRegister && x.DestRegister == y.DestRegister &&
			x.IsDestRegSet == y.IsDestRegSet && x.SetName == y.SetName && x.Invert == y.Invert
	case *expr.Verdict:
		y, ok := b.(*expr.Verdict)
		return ok && *x == *y
	case *expr.Ct:
		y, ok := b.(*expr.Ct)
		return ok && *x == *y
	case *expr.Bitwise:
		y, ok := b.(*expr.Bitwise)
		return ok && x.SourceRegister == y.SourceRegister && x.DestRegister == y.DestRegister &&
			x.Len == y.Len && bytes.Equal(x.Mask, y.Mask) && bytes.Equal(x.Xor, y.Xor)
	case *expr.Immediate:
		y, ok := b.(*expr.Immediate)
		return ok && x.Register == y.Register && bytes.Equal(x.Data, y.Data)
	case *expr.Limit:
		y, ok := b.(*expr.Limit)
		return ok && *x == *y
	case *expr.Log:
		y, ok := b.(*expr.Log)
		return ok && x.Level == y.Level && x.Flags == y.Flags && x.Key == y.Key && x.Snaplen == y.Snaplen &&
			x.Group == y.Group && x.QThreshold == y.QThreshold && bytes.Equal(x.Data, y.Data)
	case *expr.NAT:
		y, ok := b.(*expr.NAT)
		return ok && *x == *y
	case *expr.Masq:
		y, ok := b.(*expr.Masq)
		return ok && *x == *y
	}
	return ruleKey(ruleState{exprs: []expr.Any{a}}) == ruleKey(ruleState{exprs: []expr.Any{b}})
}
