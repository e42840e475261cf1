package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// A batch is one nf_tables transaction, marshalled into one buffer and
// sent in one sendmsg: NFNL_MSG_BATCH_BEGIN, the messages,
// NFNL_MSG_BATCH_END. The kernel applies it whole or not at all.
//
// As nft does, the messages do not ask for an acknowledgement each: the
// kernel answers only the ones it refuses. The last message alone asks
// for one, so that its answer says the kernel went through the whole
// batch. (google/nftables asks for an acknowledgement, and an echo of
// every rule, and reads each answer with two syscalls: most of the time
// of a 500-rule replace.)
type batch struct {
	buf  []byte
	msgs []batchMsg // what each message does, in order, for error reports
	last int        // offset of the last message's header
	err  error      // the first thing that could not be marshalled
}

// batchMsg says what a message of the batch does, for an error naming it.
type batchMsg struct {
	op   string // "add table", "add set", "add rule", …
	name string // of the table, set or chain
	rule int    // the rule's index in its chain, for "add rule"
	ud   []byte // the rule's user data, for its comment
}

func (m batchMsg) String() string {
	switch m.op {
	case "add rule":
		s := fmt.Sprintf("add rule %d of chain %s", m.rule, m.name)
		if c, ok := userdata.GetString(m.ud, userdata.TypeComment); ok && c != "" {
			s += " (" + strconv.Quote(c) + ")"
		}
		return s
	case "":
		return "the batch"
	}
	return m.op + " " + m.name
}

const (
	nlmsgHeaderLen = 16
	nftMsg         = unix.NFNL_SUBSYS_NFTABLES << 8
	nlaHeaderLen   = 4

	nftaSetFieldLen = 1 // in a concatenation's field description
)

func newBatch() *batch {
	b := &batch{buf: make([]byte, 0, 64<<10)}
	b.control(unix.NFNL_MSG_BATCH_BEGIN)
	return b
}

// control appends a batch begin or end message.
func (b *batch) control(typ uint16) {
	off := b.header(typ, unix.NLM_F_REQUEST, unix.AF_UNSPEC)
	binary.BigEndian.PutUint16(b.buf[off+nlmsgHeaderLen+2:], unix.NFNL_SUBSYS_NFTABLES) // res_id
	b.close(off)
}

// header appends a netlink header and an nfgenmsg; close sets the length
// once the attributes are in.
func (b *batch) header(typ, flags uint16, family byte) int {
	off := len(b.buf)
	b.buf = binary.NativeEndian.AppendUint32(b.buf, 0) // length, set by close
	b.buf = binary.NativeEndian.AppendUint16(b.buf, typ)
	b.buf = binary.NativeEndian.AppendUint16(b.buf, flags)
	b.buf = binary.NativeEndian.AppendUint32(b.buf, 0) // sequence, set by send
	b.buf = binary.NativeEndian.AppendUint32(b.buf, 0) // port id: the kernel's
	b.buf = append(b.buf, family, unix.NFNETLINK_V0, 0, 0)
	return off
}

func (b *batch) close(off int) {
	binary.NativeEndian.PutUint32(b.buf[off:], uint32(len(b.buf)-off))
}

// message starts an nf_tables message of the table's family.
func (b *batch) message(typ, flags uint16, m batchMsg) int {
	b.msgs = append(b.msgs, m)
	b.last = b.header(nftMsg|typ, unix.NLM_F_REQUEST|flags, byte(nftables.TableFamilyINet))
	return b.last
}

func (b *batch) attr(typ uint16, data []byte) {
	if len(data) > 0xffff-nlaHeaderLen && b.err == nil {
		b.err = fmt.Errorf("%s: an attribute of %d bytes does not fit netlink's 16-bit length", b.msgs[len(b.msgs)-1], len(data))
	}
	b.buf = binary.NativeEndian.AppendUint16(b.buf, uint16(nlaHeaderLen+len(data)))
	b.buf = binary.NativeEndian.AppendUint16(b.buf, typ)
	b.buf = append(b.buf, data...)
	b.pad()
}

func (b *batch) pad() {
	for len(b.buf)%4 != 0 {
		b.buf = append(b.buf, 0)
	}
}

func (b *batch) str(typ uint16, s string) {
	b.buf = binary.NativeEndian.AppendUint16(b.buf, uint16(nlaHeaderLen+len(s)+1))
	b.buf = binary.NativeEndian.AppendUint16(b.buf, typ)
	b.buf = append(b.buf, s...)
	b.buf = append(b.buf, 0)
	b.pad()
}

func (b *batch) u32(typ uint16, v uint32) {
	b.buf = binary.NativeEndian.AppendUint16(b.buf, nlaHeaderLen+4)
	b.buf = binary.NativeEndian.AppendUint16(b.buf, typ)
	b.buf = binary.BigEndian.AppendUint32(b.buf, v)
}

// nest starts a nested attribute; end closes it.
func (b *batch) nest(typ uint16) int {
	off := len(b.buf)
	b.buf = binary.NativeEndian.AppendUint16(b.buf, 0)
	b.buf = binary.NativeEndian.AppendUint16(b.buf, unix.NLA_F_NESTED|typ)
	return off
}

func (b *batch) end(off int) {
	n := len(b.buf) - off
	if n > 0xffff && b.err == nil {
		b.err = fmt.Errorf("%s: an attribute of %d bytes does not fit netlink's 16-bit length", b.msgs[len(b.msgs)-1], n)
	}
	binary.NativeEndian.PutUint16(b.buf[off:], uint16(n))
}

func (b *batch) table(typ, flags uint16, op string) {
	off := b.message(typ, flags, batchMsg{op: op, name: tableName})
	b.str(unix.NFTA_TABLE_NAME, tableName)
	b.u32(unix.NFTA_TABLE_FLAGS, 0)
	b.close(off)
}

// batchSet is how the rules of a batch find a set of the same batch: by
// its id, and its name as the batch gives it.
type batchSet struct {
	id   uint32
	name string
}

func newBatchSet(s setState, id uint32) batchSet {
	if s.anonymous {
		return batchSet{id, "__set%d"} // the kernel names it; rules find it by id
	}
	return batchSet{id, s.name}
}

// set adds a set and its elements, as nft does.
func (b *batch) set(s setState, bs batchSet) {
	name, id := bs.name, bs.id
	var flags uint32
	for _, f := range []struct {
		on   bool
		flag uint32
	}{
		{s.anonymous, unix.NFT_SET_ANONYMOUS}, {s.constant, unix.NFT_SET_CONSTANT},
		{s.interval, unix.NFT_SET_INTERVAL}, {s.isMap, unix.NFT_SET_MAP}, {s.concat, nftables.NFT_SET_CONCAT},
	} {
		if f.on {
			flags |= f.flag
		}
	}
	off := b.message(unix.NFT_MSG_NEWSET, unix.NLM_F_CREATE, batchMsg{op: "add set", name: s.name})
	b.str(unix.NFTA_SET_TABLE, tableName)
	b.str(unix.NFTA_SET_NAME, name)
	b.u32(unix.NFTA_SET_FLAGS, flags)
	b.u32(unix.NFTA_SET_KEY_TYPE, s.keyType)
	b.u32(unix.NFTA_SET_KEY_LEN, s.keyLen)
	b.u32(unix.NFTA_SET_ID, id)
	if s.isMap {
		dataType := s.dataType
		if dataType == nftables.TypeVerdict.GetNFTMagic() {
			dataType = unix.NFT_DATA_VERDICT
		}
		b.u32(unix.NFTA_SET_DATA_TYPE, dataType)
		b.u32(unix.NFTA_SET_DATA_LEN, s.dataLen)
	}
	if s.constant || s.concat {
		desc := b.nest(unix.NFTA_SET_DESC)
		if s.constant {
			b.u32(unix.NFTA_SET_DESC_SIZE, uint32(len(s.elems)))
		}
		if s.concat {
			fields := b.nest(nftables.NFTA_SET_DESC_CONCAT)
			for _, n := range concatFieldLens(s.keyType) {
				f := b.nest(unix.NFTA_LIST_ELEM)
				b.u32(nftaSetFieldLen, n)
				b.end(f)
			}
			b.end(fields)
		}
		b.end(desc)
	}
	if s.anonymous || s.constant || s.interval {
		b.attr(unix.NFTA_SET_USERDATA, userdata.AppendUint32(nil, userdata.NFTNL_UDATA_SET_KEYBYTEORDER, 2)) // big endian, as nft says
	}
	b.close(off)
	if len(s.elems) == 0 {
		return
	}
	// Elements go in messages of at most elemsPerMessage bytes of
	// elements, as nft splits them: a nested attribute's length has 16 bits.
	var list int
	for i, e := range s.elems {
		if i == 0 || len(b.buf)-list > elemsPerMessage {
			if i > 0 {
				b.end(list)
				b.close(off)
			}
			off = b.message(unix.NFT_MSG_NEWSETELEM, unix.NLM_F_CREATE, batchMsg{op: "add elements to set", name: s.name})
			b.str(unix.NFTA_SET_ELEM_LIST_TABLE, tableName)
			b.str(unix.NFTA_SET_ELEM_LIST_SET, name)
			b.u32(unix.NFTA_SET_ELEM_LIST_SET_ID, id)
			list = b.nest(unix.NFTA_SET_ELEM_LIST_ELEMENTS)
		}
		el := b.nest(unix.NFTA_LIST_ELEM)
		if e.IntervalEnd {
			b.u32(unix.NFTA_SET_ELEM_FLAGS, unix.NFT_SET_ELEM_INTERVAL_END)
		}
		b.value(unix.NFTA_SET_ELEM_KEY, e.Key)
		if len(e.KeyEnd) > 0 {
			b.value(nftables.NFTA_SET_ELEM_KEY_END, e.KeyEnd)
		}
		switch {
		case e.VerdictData != nil:
			data := b.nest(unix.NFTA_SET_ELEM_DATA)
			v := b.nest(unix.NFTA_DATA_VERDICT)
			b.u32(unix.NFTA_VERDICT_CODE, uint32(e.VerdictData.Kind))
			if e.VerdictData.Chain != "" {
				b.str(unix.NFTA_VERDICT_CHAIN, e.VerdictData.Chain)
			}
			b.end(v)
			b.end(data)
		case len(e.Val) > 0:
			b.value(unix.NFTA_SET_ELEM_DATA, e.Val)
		}
		if e.Comment != "" {
			b.attr(unix.NFTA_SET_ELEM_USERDATA, userdata.AppendString(nil, userdata.NFTNL_UDATA_SET_ELEM_COMMENT, e.Comment))
		}
		b.end(el)
	}
	b.end(list)
	b.close(off)
}

// elemsPerMessage bounds the elements of one message, in bytes.
const elemsPerMessage = 16 << 10

// value appends a nested NFTA_DATA_VALUE.
func (b *batch) value(typ uint16, data []byte) {
	off := b.nest(typ)
	b.attr(unix.NFTA_DATA_VALUE, data)
	b.end(off)
}

// concatFieldLens are the lengths of the fields of a concatenated key
// type: six bits of the type per field, the last field in the low bits.
func concatFieldLens(keyType uint32) []uint32 {
	var lens []uint32
	for t := keyType; t != 0; t >>= 6 {
		lens = append([]uint32{datatypeLen(t & 0x3f)}, lens...)
	}
	return lens
}

func datatypeLen(magic uint32) uint32 {
	for _, t := range []nftables.SetDatatype{
		nftables.TypeNFProto, nftables.TypeInteger, nftables.TypeIPAddr, nftables.TypeIP6Addr,
		nftables.TypeEtherAddr, nftables.TypeEtherType, nftables.TypeARPOp, nftables.TypeInetProto,
		nftables.TypeInetService, nftables.TypeICMPType, nftables.TypeTCPFlag, nftables.TypeMark,
		nftables.TypeIFIndex, nftables.TypeARPHRD, nftables.TypeCTState, nftables.TypeCTDir,
		nftables.TypeCTStatus, nftables.TypeICMP6Type, nftables.TypePktType, nftables.TypeDSCP,
		nftables.TypeECN, nftables.TypeIFName, nftables.TypeMHType, nftables.TypeDCCPPktType,
	} {
		if t.GetNFTMagic() == magic {
			return t.Bytes
		}
	}
	return 0
}

func (b *batch) chain(c chainState) {
	off := b.message(unix.NFT_MSG_NEWCHAIN, unix.NLM_F_CREATE, batchMsg{op: "add chain", name: c.name})
	b.str(unix.NFTA_CHAIN_TABLE, tableName)
	b.str(unix.NFTA_CHAIN_NAME, c.name)
	if c.hook != nil && c.priority != nil {
		hook := b.nest(unix.NFTA_CHAIN_HOOK)
		b.u32(unix.NFTA_HOOK_HOOKNUM, uint32(*c.hook))
		b.u32(unix.NFTA_HOOK_PRIORITY, uint32(*c.priority))
		if c.device != "" {
			b.str(unix.NFTA_HOOK_DEV, c.device)
		}
		b.end(hook)
	}
	if c.policy != nil {
		b.u32(unix.NFTA_CHAIN_POLICY, uint32(*c.policy))
	}
	if c.typ != "" {
		b.str(unix.NFTA_CHAIN_TYPE, string(c.typ))
	}
	b.close(off)
}

// rule appends a rule to its chain, its set lookups bound to the sets of
// the batch.
func (b *batch) rule(chain string, i int, r ruleState, sets map[string]batchSet) {
	off := b.message(unix.NFT_MSG_NEWRULE, unix.NLM_F_CREATE|unix.NLM_F_APPEND, batchMsg{op: "add rule", name: chain, rule: i, ud: r.userData})
	b.str(unix.NFTA_RULE_TABLE, tableName)
	b.str(unix.NFTA_RULE_CHAIN, chain)
	list := b.nest(unix.NFTA_RULE_EXPRESSIONS)
	for _, e := range r.exprs {
		data, err := expr.Marshal(inet, bindSet(e, sets))
		if err != nil && b.err == nil {
			b.err = fmt.Errorf("%s: %w", b.msgs[len(b.msgs)-1], err)
		}
		b.attr(unix.NLA_F_NESTED|unix.NFTA_LIST_ELEM, data)
	}
	b.end(list)
	if proto, ok := compatProto(r.exprs); ok {
		compat := b.nest(unix.NFTA_RULE_COMPAT)
		b.u32(unix.NFTA_RULE_COMPAT_PROTO, proto)
		b.u32(unix.NFTA_RULE_COMPAT_FLAGS, 0)
		b.end(compat)
	}
	if r.userData != nil {
		b.attr(unix.NFTA_RULE_USERDATA, r.userData)
	}
	b.close(off)
}

// bindSet points a set lookup at the set of the batch: a set created in
// the same batch is found by its batch id.
func bindSet(e expr.Any, sets map[string]batchSet) expr.Any {
	switch x := e.(type) {
	case *expr.Lookup:
		if s, ok := sets[x.SetName]; ok && (x.SetID != s.id || x.SetName != s.name) {
			l := *x
			l.SetName, l.SetID = s.name, s.id
			return &l
		}
	case *expr.Dynset:
		if s, ok := sets[x.SetName]; ok && (x.SetID != s.id || x.SetName != s.name) {
			d := *x
			d.SetName, d.SetID = s.name, s.id
			return &d
		}
	}
	return e
}

// compatProto is the protocol an xtables match or target of the rule
// (iptables-nft's) needs, as google/nftables and the kernel's nft_compat
// pair them.
func compatProto(es []expr.Any) (uint32, bool) {
	for _, e := range es {
		name := ""
		switch x := e.(type) {
		case *expr.Match:
			name = "match " + x.Name
		case *expr.Target:
			name = "target " + x.Name
		}
		switch name {
		case "match tcp", "match tcpmss", "match osf", "target TCPOPTSTRIP", "target TCPMSS":
			return unix.IPPROTO_TCP, true
		case "match udp":
			return unix.IPPROTO_UDP, true
		case "match udplite":
			return unix.IPPROTO_UDPLITE, true
		case "match sctp":
			return unix.IPPROTO_SCTP, true
		case "match ipcomp":
			return unix.IPPROTO_COMP, true
		case "match esp":
			return unix.IPPROTO_ESP, true
		}
	}
	return 0, false
}

// finish asks the last message for an acknowledgement and ends the batch.
func (b *batch) finish() {
	flags := binary.NativeEndian.Uint16(b.buf[b.last+6:])
	binary.NativeEndian.PutUint16(b.buf[b.last+6:], flags|unix.NLM_F_ACK)
	b.control(unix.NFNL_MSG_BATCH_END)
}

// replaceBatch is the batch that replaces the table with ts: the table is
// created if missing, deleted, and created again with everything in it. A
// state that does not exist deletes the table.
func replaceBatch(ts tableState) (*batch, error) {
	b := newBatch()
	b.table(unix.NFT_MSG_NEWTABLE, unix.NLM_F_CREATE, "add table")
	b.table(unix.NFT_MSG_DELTABLE, 0, "delete table")
	if ts.exists {
		b.table(unix.NFT_MSG_NEWTABLE, unix.NLM_F_CREATE, "add table")
		sets := make(map[string]batchSet, len(ts.sets))
		for i, s := range ts.sets {
			bs := newBatchSet(s, uint32(i+1))
			b.set(s, bs)
			sets[s.name] = bs
		}
		for _, c := range ts.chains {
			b.chain(c)
		}
		for _, c := range ts.chains {
			for i, r := range c.rules {
				b.rule(c.name, i, r, sets)
			}
		}
	}
	b.finish()
	return b, b.err
}

// batchConn is a netlink socket to nf_tables that sends batches.
type batchConn struct {
	nl   *netlink.Conn
	raw  syscall.RawConn
	seq  uint32
	rbuf []byte
}

// answerTimeout bounds the wait for the kernel's answer to a batch. The
// kernel handles a batch within the sendmsg that brings it, so its answer
// is already there; this only keeps a kernel bug from hanging the agent.
const answerTimeout = 10 * time.Second

func dialBatch(netns int) (*batchConn, error) {
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	if err := bigBuffers(nl); err != nil {
		nl.Close()
		return nil, fmt.Errorf("netlink: %w", err)
	}
	// Errors carry the refused message's header but not the message
	// (capped), and the kernel's explanation when it gives one. Kernels
	// without these options answer the long way, which is read as well.
	_ = nl.SetOption(netlink.CapAcknowledge, true)
	_ = nl.SetOption(netlink.ExtendedAcknowledge, true)
	raw, err := nl.SyscallConn()
	if err != nil {
		nl.Close()
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return &batchConn{nl: nl, raw: raw, rbuf: make([]byte, 64<<10)}, nil
}

func (c *batchConn) Close() error { return c.nl.Close() }

// send sends a batch and reads the kernel's answer: nothing but the
// acknowledgement of the last message when the kernel committed the
// batch, one error per refused message (and then nothing is changed).
func (c *batchConn) send(b *batch) error {
	first := c.seq + 1
	n := uint32(0)
	for off := 0; off < len(b.buf); n++ {
		c.seq++
		binary.NativeEndian.PutUint32(b.buf[off+8:], c.seq)
		off += int(binary.NativeEndian.Uint32(b.buf[off:]))
	}
	lastSeq := first + n - 2 // the message before the batch end
	var serr error
	err := c.raw.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b.buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return serr != unix.EAGAIN
	})
	if err = errors.Join(err, serr); err != nil {
		return fmt.Errorf("send the batch: %w", err)
	}
	// what names the message of a sequence number.
	what := func(seq uint32) batchMsg {
		if i := int(seq) - int(first) - 1; i >= 0 && i < len(b.msgs) {
			return b.msgs[i]
		}
		return batchMsg{}
	}
	if err := c.nl.SetReadDeadline(time.Now().Add(answerTimeout)); err != nil {
		return fmt.Errorf("receive the answer: %w", err)
	}
	var refused []error
	refusal := func() error {
		if len(refused) == 0 {
			return nil
		}
		return fmt.Errorf("the kernel refused the batch, nothing was changed: %w", errors.Join(refused...))
	}
	answered, failed := false, false
	for {
		// Wait for the last message's answer, or an error about the whole
		// batch; then take what else is there without waiting.
		wait := !answered && !failed
		n, err := c.recv(wait)
		if err == unix.EAGAIN && !wait {
			break
		}
		if err != nil {
			return errors.Join(refusal(), fmt.Errorf("receive the answer: %w", err))
		}
		answers, err := parseAnswers(c.rbuf[:n])
		if err != nil {
			return errors.Join(refusal(), fmt.Errorf("receive the answer: %w", err))
		}
		for _, a := range answers {
			if a.seq-first > lastSeq-first {
				continue // not this batch's (unsigned: wraps safely)
			}
			if a.seq == lastSeq {
				answered = true
			}
			if a.errno == 0 {
				continue
			}
			if a.seq == first {
				failed = true
			}
			err := error(a.errno)
			if a.msg != "" {
				err = fmt.Errorf("%w (%s)", a.errno, a.msg)
			}
			refused = append(refused, fmt.Errorf("%s: %w", what(a.seq), err))
		}
	}
	if err := refusal(); err != nil {
		return err
	}
	if !answered {
		return errors.New("the kernel did not answer the batch")
	}
	return nil
}

// recv reads one datagram into c.rbuf: waiting for it, or returning
// EAGAIN at once when there is none and wait is false.
func (c *batchConn) recv(wait bool) (int, error) {
	var n int
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), c.rbuf, unix.MSG_DONTWAIT|unix.MSG_TRUNC)
		return rerr != unix.EAGAIN || !wait
	})
	switch {
	case err != nil:
		return 0, err // the deadline, or the socket closed
	case rerr != nil:
		return 0, rerr
	case n > len(c.rbuf):
		return 0, fmt.Errorf("a datagram of %d bytes, more than %d", n, len(c.rbuf))
	}
	return n, nil
}

// answer is an NLMSG_ERROR: the sequence number of the message it
// answers, 0 or the error, and the kernel's explanation if any.
type answer struct {
	seq   uint32
	errno syscall.Errno
	msg   string
}

func parseAnswers(buf []byte) ([]answer, error) {
	var out []answer
	for len(buf) >= nlmsgHeaderLen {
		l := int(binary.NativeEndian.Uint32(buf))
		if l < nlmsgHeaderLen || l > len(buf) {
			return out, fmt.Errorf("malformed netlink message of %d bytes", l)
		}
		m := buf[:l]
		buf = buf[min(nlmsgAlign(l), len(buf)):]
		typ, flags := binary.NativeEndian.Uint16(m[4:]), binary.NativeEndian.Uint16(m[6:])
		if typ != unix.NLMSG_ERROR {
			continue
		}
		body := m[nlmsgHeaderLen:]
		if len(body) < 4+nlmsgHeaderLen {
			return out, fmt.Errorf("malformed netlink error of %d bytes", l)
		}
		a := answer{
			errno: syscall.Errno(-int32(binary.NativeEndian.Uint32(body))),
			seq:   binary.NativeEndian.Uint32(body[4+8:]),
		}
		if flags&unix.NLM_F_ACK_TLVS != 0 {
			tlvs := body[4+nlmsgHeaderLen:]
			if flags&unix.NLM_F_CAPPED == 0 { // the refused message follows its header
				tlvs = body[4+min(nlmsgAlign(int(binary.NativeEndian.Uint32(body[4:]))), len(body)-4):]
			}
			if ad, err := netlink.NewAttributeDecoder(tlvs); err == nil {
				for ad.Next() {
					if ad.Type() == unix.NLMSGERR_ATTR_MSG {
						a.msg = ad.String()
					}
				}
			}
		}
		out = append(out, a)
	}
	return out, nil
}

func nlmsgAlign(n int) int { return (n + 3) &^ 3 }
