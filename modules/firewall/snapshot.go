package firewall

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// snapshot is a tableState as JSON, for the pending state on disk: the
// previous table a revert restores, even after the agent was killed.
// Expressions are kept as the netlink attributes the kernel reported, so
// a table written by hand comes back as it was.
type snapshot struct {
	Exists bool            `json:"exists"`
	Sets   []snapshotSet   `json:"sets,omitempty"`
	Chains []snapshotChain `json:"chains,omitempty"`
}

type snapshotSet struct {
	Name      string         `json:"name"`
	Anonymous bool           `json:"anonymous,omitempty"`
	Constant  bool           `json:"constant,omitempty"`
	Interval  bool           `json:"interval,omitempty"`
	IsMap     bool           `json:"map,omitempty"`
	Concat    bool           `json:"concat,omitempty"`
	KeyType   uint32         `json:"key_type"`
	KeyLen    uint32         `json:"key_len"`
	DataType  uint32         `json:"data_type,omitempty"`
	DataLen   uint32         `json:"data_len,omitempty"`
	Elements  []snapshotElem `json:"elements,omitempty"`
}

type snapshotElem struct {
	Key         []byte        `json:"key,omitempty"`
	KeyEnd      []byte        `json:"key_end,omitempty"`
	Val         []byte        `json:"val,omitempty"`
	IntervalEnd bool          `json:"interval_end,omitempty"`
	Verdict     *expr.Verdict `json:"verdict,omitempty"`
}

type snapshotChain struct {
	Name     string         `json:"name"`
	Type     string         `json:"type,omitempty"`
	Hook     *uint32        `json:"hook,omitempty"`
	Priority *int32         `json:"priority,omitempty"`
	Policy   *uint32        `json:"policy,omitempty"`
	Device   string         `json:"device,omitempty"`
	Rules    []snapshotRule `json:"rules,omitempty"`
}

type snapshotRule struct {
	Exprs    []snapshotExpr `json:"exprs"`
	UserData []byte         `json:"userdata,omitempty"`
}

// snapshotExpr is one expression: its kernel name and its attributes.
type snapshotExpr struct {
	Name string `json:"name"`
	Data []byte `json:"data"`
}

const inet = byte(nftables.TableFamilyINet)

func encodeSnapshot(ts tableState) (snapshot, error) {
	snap := snapshot{Exists: ts.exists}
	for _, s := range ts.sets {
		ss := snapshotSet{
			Name: s.name, Anonymous: s.anonymous, Constant: s.constant, Interval: s.interval,
			IsMap: s.isMap, Concat: s.concat, KeyType: s.keyType, KeyLen: s.keyLen,
			DataType: s.dataType, DataLen: s.dataLen,
		}
		for _, e := range s.elems {
			ss.Elements = append(ss.Elements, snapshotElem{Key: e.Key, KeyEnd: e.KeyEnd, Val: e.Val, IntervalEnd: e.IntervalEnd, Verdict: e.VerdictData})
		}
		snap.Sets = append(snap.Sets, ss)
	}
	for _, c := range ts.chains {
		sc := snapshotChain{Name: c.name, Type: string(c.typ), Device: c.device}
		if c.hook != nil {
			h := uint32(*c.hook)
			sc.Hook = &h
		}
		if c.priority != nil {
			p := int32(*c.priority)
			sc.Priority = &p
		}
		if c.policy != nil {
			p := uint32(*c.policy)
			sc.Policy = &p
		}
		for _, r := range c.rules {
			sr := snapshotRule{UserData: r.userData, Exprs: []snapshotExpr{}}
			for _, e := range r.exprs {
				se, err := encodeExpr(e)
				if err != nil {
					return snapshot{}, fmt.Errorf("chain %s: %w", c.name, err)
				}
				sr.Exprs = append(sr.Exprs, se)
			}
			sc.Rules = append(sc.Rules, sr)
		}
		snap.Chains = append(snap.Chains, sc)
	}
	return snap, nil
}

func (snap snapshot) decode() (tableState, error) {
	ts := tableState{exists: snap.Exists}
	for _, s := range snap.Sets {
		ss := setState{
			name: s.Name, anonymous: s.Anonymous, constant: s.Constant, interval: s.Interval,
			isMap: s.IsMap, concat: s.Concat, keyType: s.KeyType, keyLen: s.KeyLen,
			dataType: s.DataType, dataLen: s.DataLen,
		}
		for _, e := range s.Elements {
			ss.elems = append(ss.elems, nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd, Val: e.Val, IntervalEnd: e.IntervalEnd, VerdictData: e.Verdict})
		}
		ts.sets = append(ts.sets, ss)
	}
	for _, c := range snap.Chains {
		cs := chainState{name: c.Name, typ: nftables.ChainType(c.Type), device: c.Device}
		if c.Hook != nil {
			h := nftables.ChainHook(*c.Hook)
			cs.hook = &h
		}
		if c.Priority != nil {
			p := nftables.ChainPriority(*c.Priority)
			cs.priority = &p
		}
		if c.Policy != nil {
			p := nftables.ChainPolicy(*c.Policy)
			cs.policy = &p
		}
		for _, r := range c.Rules {
			rs := ruleState{userData: r.UserData}
			for _, se := range r.Exprs {
				e, err := decodeExpr(se)
				if err != nil {
					return tableState{}, fmt.Errorf("chain %s: %w", c.Name, err)
				}
				rs.exprs = append(rs.exprs, e)
			}
			cs.rules = append(cs.rules, rs)
		}
		ts.chains = append(ts.chains, cs)
	}
	return ts, nil
}

// encodeExpr marshals an expression as the kernel gets it and splits it
// into its name and attributes.
func encodeExpr(e expr.Any) (snapshotExpr, error) {
	b, err := expr.Marshal(inet, e)
	if err != nil {
		return snapshotExpr{}, fmt.Errorf("expression %T: %w", e, err)
	}
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return snapshotExpr{}, fmt.Errorf("expression %T: %w", e, err)
	}
	ad.ByteOrder = binary.BigEndian
	var se snapshotExpr
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_EXPR_NAME:
			se.Name = ad.String()
		case unix.NFTA_EXPR_DATA:
			se.Data = ad.Bytes()
		}
	}
	if err := ad.Err(); err != nil || se.Name == "" {
		return snapshotExpr{}, fmt.Errorf("expression %T: cannot be saved (%v)", e, err)
	}
	return se, nil
}

func decodeExpr(se snapshotExpr) (expr.Any, error) {
	e := exprOfName(se.Name)
	if e == nil {
		return nil, fmt.Errorf("expression %q: unknown", se.Name)
	}
	if err := expr.Unmarshal(inet, se.Data, e); err != nil {
		return nil, fmt.Errorf("expression %q: %w", se.Name, err)
	}
	// A verdict travels as an immediate into the verdict register.
	if imm, ok := e.(*expr.Immediate); ok && imm.Register == unix.NFT_REG_VERDICT && len(imm.Data) == 0 {
		v := &expr.Verdict{}
		if err := expr.Unmarshal(inet, se.Data, v); err != nil {
			return nil, fmt.Errorf("expression %q: %w", se.Name, err)
		}
		return v, nil
	}
	return e, nil
}

// exprOfName returns an empty expression of a kernel expression name,
// for every expression google/nftables reads.
func exprOfName(name string) expr.Any {
	switch name {
	case "ct":
		return &expr.Ct{}
	case "range":
		return &expr.Range{}
	case "meta":
		return &expr.Meta{}
	case "cmp":
		return &expr.Cmp{}
	case "counter":
		return &expr.Counter{}
	case "objref":
		return &expr.Objref{}
	case "payload":
		return &expr.Payload{}
	case "lookup":
		return &expr.Lookup{}
	case "immediate":
		return &expr.Immediate{}
	case "bitwise":
		return &expr.Bitwise{}
	case "redir":
		return &expr.Redir{}
	case "nat":
		return &expr.NAT{}
	case "limit":
		return &expr.Limit{}
	case "quota":
		return &expr.Quota{}
	case "dynset":
		return &expr.Dynset{}
	case "log":
		return &expr.Log{}
	case "exthdr":
		return &expr.Exthdr{}
	case "match":
		return &expr.Match{}
	case "target":
		return &expr.Target{}
	case "connlimit":
		return &expr.Connlimit{}
	case "queue":
		return &expr.Queue{}
	case "flow_offload":
		return &expr.FlowOffload{}
	case "reject":
		return &expr.Reject{}
	case "masq":
		return &expr.Masq{}
	case "hash":
		return &expr.Hash{}
	case "fib":
		return &expr.Fib{}
	case "numgen":
		return &expr.Numgen{}
	case "notrack":
		return &expr.Notrack{}
	case "rt":
		return &expr.Rt{}
	case "socket":
		return &expr.Socket{}
	case "tproxy":
		return &expr.TProxy{}
	case "dup":
		return &expr.Dup{}
	case "secmark":
		return &expr.SecMark{}
	case "synproxy":
		return &expr.SynProxy{}
	case "cthelper":
		return &expr.CtHelper{}
	case "ctexpect":
		return &expr.CtExpect{}
	case "cttimeout":
		return &expr.CtTimeout{}
	}
	return nil
}
