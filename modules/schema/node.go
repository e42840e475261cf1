package schema

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
)

// A node is one element of a parsed document, whichever reader made it:
// the YAML reader for files people write, the JSON reader for the
// canonical form machines exchange. Everything after the readers works on
// nodes, so both forms mean exactly the same thing.
type node struct {
	kind nodeKind
	line int32
	str  string  // kString
	num  int64   // kInt; kBool: 1 for true; kFloat: the float64's bits (finite, not an integer below 2^53)
	kids []entry // kMap: the entries in document order, keys unique; kList: the items, without keys
}

func (n *node) flag() bool       { return n.num != 0 }
func (n *node) float() float64   { return math.Float64frombits(uint64(n.num)) }
func (n *node) item(i int) *node { return n.kids[i].val }

// entry is a mapping's key and value, or a list's item (key "").
type entry struct {
	key  string
	line int32
	val  *node
}

type nodeKind uint8

const (
	kNull nodeKind = iota
	kBool
	kInt
	kFloat
	kString
	kList
	kMap
)

func (k nodeKind) String() string {
	return [...]string{"null", "a boolean", "an integer", "a number", "a string", "a list", "a mapping"}[k]
}

// get returns the value of key in a mapping node, or nil.
func (n *node) get(key string) *node {
	for i := range n.kids {
		if n.kids[i].key == key {
			return n.kids[i].val
		}
	}
	return nil
}

// arena hands out nodes, and the slices of a mapping's entries and a
// list's items, from a few large chunks: a module is a few hundred nodes,
// and one allocation for each would dominate the agent's recompile.
type arena struct {
	nodes []node
	kids  []entry
	size  int // nodes in the next chunk
}

// Chunks stay below 32 KiB: larger allocations skip the allocator's size
// classes and cost far more.
const (
	maxNodeChunk = 512  // × 56 bytes
	maxKidChunk  = 1024 // × 32 bytes
)

// newArena sizes the first chunks for a document of n bytes: canonical
// JSON runs about 20 bytes a node.
func newArena(n int) *arena {
	return &arena{size: max(n/20, 16)}
}

func (a *arena) new(kind nodeKind, line int32) *node {
	if len(a.nodes) == cap(a.nodes) {
		a.nodes = make([]node, 0, min(a.size, maxNodeChunk))
	}
	a.nodes = a.nodes[:len(a.nodes)+1]
	n := &a.nodes[len(a.nodes)-1]
	n.kind, n.line = kind, line
	return n
}

// kidSlice copies src into the arena.
func (a *arena) kidSlice(src []entry) []entry {
	if len(src) == 0 {
		return nil
	}
	if cap(a.kids)-len(a.kids) < len(src) {
		a.kids = make([]entry, 0, max(min(a.size, maxKidChunk), len(src)))
	}
	start := len(a.kids)
	a.kids = append(a.kids, src...)
	return a.kids[start:len(a.kids):len(a.kids)]
}

// docError is a problem a reader found, with its field path ("" when
// unknown) and line (0 when unknown).
type docError struct {
	path string
	line int32
	msg  string
}

func (e *docError) Error() string {
	if e.line == 0 {
		return e.msg
	}
	return fmt.Sprintf("%s (line %d)", e.msg, e.line)
}

func errorAt(p *pathElem, line int32, format string, args ...any) *docError {
	return &docError{path: p.String(), line: line, msg: fmt.Sprintf(format, args...)}
}

// maxSafeInt bounds the floats held as integers: below it every integer
// is exact in a float64.
const maxSafeInt = 1 << 53

// number makes a node from a finite float, holding integral values as
// integers so that 1.0 and 1 are the same value in every form.
func (a *arena) number(f float64, line int32) *node {
	if f == math.Trunc(f) && math.Abs(f) < maxSafeInt {
		n := a.new(kInt, line)
		n.num = int64(f)
		return n
	}
	n := a.new(kFloat, line)
	n.num = int64(math.Float64bits(f))
	return n
}

// readDocument reads data as canonical JSON when it looks like JSON and
// reads as such, else as YAML. Both give the same nodes for a document
// that both accept; JSON is tried first only because it is much faster.
func readDocument(data []byte, a *arena) (*node, *docError) {
	i := firstNonSpace(data)
	if i == len(data) || data[i] != '{' {
		return readYAML(data, a)
	}
	n, jerr := readJSON(data, a)
	if jerr == nil {
		return n, nil
	}
	if jerr.fatal {
		return nil, &jerr.docError
	}
	// Not JSON: perhaps YAML flow style, which YAML reads.
	n, yerr := readYAML(data, a)
	if yerr == nil {
		return n, nil
	}
	// Neither: report as JSON what was meant as JSON ({"…).
	if j := i + 1 + firstNonSpace(data[i+1:]); j < len(data) && data[j] == '"' {
		return nil, &jerr.docError
	}
	return nil, yerr
}

func firstNonSpace(data []byte) int {
	for i, c := range data {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return i
		}
	}
	return len(data)
}

// ---- YAML ----

// leadingZeroInt matches the integers YAML 1.1 reads as octal: 0750 is
// 488 to the YAML library, which a file mode written by hand never means.
var leadingZeroInt = regexp.MustCompile(`^[-+]?0[0-9_]+$`)

func readYAML(data []byte, a *arena) (n *node, derr *docError) {
	defer func() {
		// The YAML library has panicked on malformed input in the past; an
		// agent must refuse such a document, not crash on it.
		if r := recover(); r != nil {
			n, derr = nil, errorAt(nil, 0, "invalid YAML: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errorAt(nil, 0, "empty document")
		}
		msg, line := splitYAMLError(err)
		return nil, errorAt(nil, line, "invalid YAML: %s", msg)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errorAt(nil, int32(extra.Line), "more than one YAML document")
	}
	if len(doc.Content) != 1 {
		return nil, errorAt(nil, 0, "empty document")
	}
	return convertYAML(doc.Content[0], a, nil, 1)
}

// splitYAMLError turns the YAML library's "yaml: line 3: did not find
// expected key" into the message and its line.
func splitYAMLError(err error) (string, int32) {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(s, "line "); ok {
		if n, msg, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(n); err == nil && line > 0 {
				return msg, int32(line)
			}
		}
	}
	return s, 0
}

func convertYAML(y *yaml.Node, a *arena, p *pathElem, depth int) (*node, *docError) {
	line := int32(y.Line)
	if y.Kind == yaml.AliasNode || y.Anchor != "" {
		return nil, errorAt(p, line, "anchors and aliases are not supported")
	}
	switch y.Kind {
	case yaml.MappingNode, yaml.SequenceNode:
		if depth > MaxDepth {
			return nil, errorAt(p, line, "nested deeper than %d levels", MaxDepth)
		}
	}
	switch y.Kind {
	case yaml.MappingNode:
		if t := y.ShortTag(); t != "!!map" {
			return nil, errorAt(p, line, "unsupported tag %s", y.Tag)
		}
		n := a.new(kMap, line)
		n.kids = make([]entry, 0, len(y.Content)/2)
		var keys keySet
		for i := 0; i+1 < len(y.Content); i += 2 {
			k, v := y.Content[i], y.Content[i+1]
			kl := int32(k.Line)
			if k.Kind == yaml.AliasNode || k.Anchor != "" {
				return nil, errorAt(p, kl, "anchors and aliases are not supported")
			}
			if k.Kind != yaml.ScalarNode {
				return nil, errorAt(p, kl, "a mapping key must be a string")
			}
			switch k.ShortTag() {
			case "!!str":
			case "!!merge":
				return nil, errorAt(p, kl, "merge keys (<<) are not supported")
			default:
				return nil, errorAt(p, kl, "mapping key %s must be a string (quote it)", k.Value)
			}
			if !utf8.ValidString(k.Value) {
				return nil, errorAt(p, kl, "mapping key is not valid UTF-8")
			}
			if first := keys.seen(n.kids, k.Value); first != nil {
				return nil, errorAt(&pathElem{parent: p, key: k.Value, idx: -1}, kl, "duplicate key (first at line %d)", first.line)
			}
			val, err := convertYAML(v, a, &pathElem{parent: p, key: k.Value, idx: -1}, depth+1)
			if err != nil {
				return nil, err
			}
			n.kids = append(n.kids, entry{key: k.Value, line: kl, val: val})
		}
		return n, nil
	case yaml.SequenceNode:
		if t := y.ShortTag(); t != "!!seq" {
			return nil, errorAt(p, line, "unsupported tag %s", y.Tag)
		}
		n := a.new(kList, line)
		n.kids = make([]entry, 0, len(y.Content))
		for i, c := range y.Content {
			item, err := convertYAML(c, a, &pathElem{parent: p, idx: i}, depth+1)
			if err != nil {
				return nil, err
			}
			n.kids = append(n.kids, entry{line: item.line, val: item})
		}
		return n, nil
	case yaml.ScalarNode:
		return convertYAMLScalar(y, a, p)
	}
	return nil, errorAt(p, line, "unsupported YAML node")
}

// keySet finds duplicate keys in a mapping being read: a scan while the
// mapping is small, an index once it is large, so that a mapping of many
// keys costs no more than linear time.
type keySet struct {
	index map[string]int
}

// seen reports the entry of es with key, if any; es are the entries so far,
// and the caller appends the new one after the call.
func (ks *keySet) seen(es []entry, key string) *entry {
	const scan = 16
	if len(es) < scan {
		for i := range es {
			if es[i].key == key {
				return &es[i]
			}
		}
		return nil
	}
	if ks.index == nil {
		ks.index = make(map[string]int, 2*len(es))
		for i := range es {
			ks.index[es[i].key] = i
		}
	}
	if i, ok := ks.index[key]; ok {
		return &es[i]
	}
	ks.index[key] = len(es)
	return nil
}

func convertYAMLScalar(y *yaml.Node, a *arena, p *pathElem) (*node, *docError) {
	line := int32(y.Line)
	switch y.ShortTag() {
	case "!!str", "!!timestamp":
		// A date stays the text it was written as.
		if !utf8.ValidString(y.Value) {
			return nil, errorAt(p, line, "string is not valid UTF-8")
		}
		n := a.new(kString, line)
		n.str = y.Value
		return n, nil
	case "!!null":
		return a.new(kNull, line), nil
	case "!!bool":
		var b bool
		if err := y.Decode(&b); err != nil {
			return nil, errorAt(p, line, "%q is not a boolean", y.Value)
		}
		n := a.new(kBool, line)
		if b {
			n.num = 1
		}
		return n, nil
	case "!!int":
		if leadingZeroInt.MatchString(y.Value) {
			return nil, errorAt(p, line, "%s is ambiguous (a leading 0 means octal to YAML): quote it as a string, or write octal as 0o…", y.Value)
		}
		var i int64
		if err := y.Decode(&i); err != nil {
			return nil, errorAt(p, line, "%s is not an integer in the 64-bit range", y.Value)
		}
		n := a.new(kInt, line)
		n.num = i
		return n, nil
	case "!!float":
		var f float64
		if err := y.Decode(&f); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, errorAt(p, line, "%s is not a finite number", y.Value)
		}
		return a.number(f, line), nil
	}
	return nil, errorAt(p, line, "unsupported tag %s", y.Tag)
}

// ---- JSON ----

// jsonError is a JSON reader's problem: fatal when the document is JSON
// but breaks a limit (YAML would refuse it the same way), not fatal when
// it is merely not JSON.
type jsonError struct {
	docError
	fatal bool
}

type jsonReader struct {
	data  []byte
	src   string // data as a string, copied once: unescaped strings are slices of it
	pos   int
	line  int32
	a     *arena
	stack []step  // where the reader is, for messages
	kids  []entry // entries and items of the mappings and lists being read, innermost last
}

// step is one element of the reader's path: a key, or an index when idx >= 0.
type step struct {
	key string
	idx int
}

func (r *jsonReader) path() string { return renderPath("", r.stack) }

func (r *jsonReader) fatal(line int32, format string, args ...any) *jsonError {
	return &jsonError{docError: docError{path: r.path(), line: line, msg: fmt.Sprintf(format, args...)}, fatal: true}
}

// readJSON reads one JSON value (RFC 8259) and nothing after it.
func readJSON(data []byte, a *arena) (*node, *jsonError) {
	r := jsonReader{data: data, src: string(data), line: 1, a: a}
	r.space()
	n, err := r.value(1)
	if err != nil {
		return nil, err
	}
	r.space()
	if r.pos != len(r.data) {
		return nil, r.syntax("data after the end of the JSON value")
	}
	return n, nil
}

func (r *jsonReader) syntax(msg string) *jsonError {
	return &jsonError{docError: docError{path: r.path(), line: r.line, msg: "invalid JSON: " + msg}}
}

func (r *jsonReader) space() {
	for r.pos < len(r.data) {
		switch r.data[r.pos] {
		case '\n':
			r.line++
		case ' ', '\t', '\r':
		default:
			return
		}
		r.pos++
	}
}

func (r *jsonReader) value(depth int) (*node, *jsonError) {
	if r.pos >= len(r.data) {
		return nil, r.syntax("unexpected end of input")
	}
	line := r.line
	switch c := r.data[r.pos]; {
	case c == '{' || c == '[':
		if depth > MaxDepth {
			return nil, r.fatal(line, "nested deeper than %d levels", MaxDepth)
		}
		if c == '{' {
			return r.object(depth)
		}
		return r.array(depth)
	case c == '"':
		s, err := r.string()
		if err != nil {
			return nil, err
		}
		n := r.a.new(kString, line)
		n.str = s
		return n, nil
	case c == '-' || (c >= '0' && c <= '9'):
		return r.number()
	case c == 't':
		return r.literal("true", kBool, true)
	case c == 'f':
		return r.literal("false", kBool, false)
	case c == 'n':
		return r.literal("null", kNull, false)
	}
	return nil, r.syntax(fmt.Sprintf("unexpected character %q", r.data[r.pos]))
}

func (r *jsonReader) literal(word string, kind nodeKind, b bool) (*node, *jsonError) {
	if !bytes.HasPrefix(r.data[r.pos:], []byte(word)) {
		return nil, r.syntax("invalid literal")
	}
	r.pos += len(word)
	n := r.a.new(kind, r.line)
	if b {
		n.num = 1
	}
	return n, nil
}

func (r *jsonReader) object(depth int) (*node, *jsonError) {
	n := r.a.new(kMap, r.line)
	r.pos++ // {
	r.space()
	if r.pos < len(r.data) && r.data[r.pos] == '}' {
		r.pos++
		return n, nil
	}
	base := len(r.kids)
	var keys keySet
	for {
		if r.pos >= len(r.data) || r.data[r.pos] != '"' {
			return nil, r.syntax("expected a string key")
		}
		kl := r.line
		key, err := r.string()
		if err != nil {
			return nil, err
		}
		r.stack = append(r.stack, step{key: key, idx: -1})
		if first := keys.seen(r.kids[base:], key); first != nil {
			return nil, r.fatal(kl, "duplicate key (first at line %d)", first.line)
		}
		r.space()
		if r.pos >= len(r.data) || r.data[r.pos] != ':' {
			return nil, r.syntax("expected ':' after a key")
		}
		r.pos++
		r.space()
		val, err := r.value(depth + 1)
		if err != nil {
			return nil, err
		}
		r.kids = append(r.kids, entry{key: key, line: kl, val: val})
		r.stack = r.stack[:len(r.stack)-1]
		r.space()
		if r.pos >= len(r.data) {
			return nil, r.syntax("unexpected end of input")
		}
		switch r.data[r.pos] {
		case ',':
			r.pos++
			r.space()
		case '}':
			r.pos++
			n.kids = r.a.kidSlice(r.kids[base:])
			r.kids = r.kids[:base]
			return n, nil
		default:
			return nil, r.syntax("expected ',' or '}'")
		}
	}
}

func (r *jsonReader) array(depth int) (*node, *jsonError) {
	n := r.a.new(kList, r.line)
	r.pos++ // [
	r.space()
	if r.pos < len(r.data) && r.data[r.pos] == ']' {
		r.pos++
		return n, nil
	}
	base := len(r.kids)
	for {
		r.stack = append(r.stack, step{idx: len(r.kids) - base})
		item, err := r.value(depth + 1)
		if err != nil {
			return nil, err
		}
		r.stack = r.stack[:len(r.stack)-1]
		r.kids = append(r.kids, entry{line: item.line, val: item})
		r.space()
		if r.pos >= len(r.data) {
			return nil, r.syntax("unexpected end of input")
		}
		switch r.data[r.pos] {
		case ',':
			r.pos++
			r.space()
		case ']':
			r.pos++
			n.kids = r.a.kidSlice(r.kids[base:])
			r.kids = r.kids[:base]
			return n, nil
		default:
			return nil, r.syntax("expected ',' or ']'")
		}
	}
}

func (r *jsonReader) string() (string, *jsonError) {
	r.pos++ // opening quote
	start := r.pos
	ascii := true
	for r.pos < len(r.data) {
		c := r.data[r.pos]
		switch {
		case c == '"':
			str := r.src[start:r.pos]
			r.pos++
			if !ascii && !utf8.ValidString(str) {
				return "", r.syntax("string is not valid UTF-8")
			}
			return str, nil
		case c >= utf8.RuneSelf:
			ascii = false
		case c == '\\':
			return r.escapedString(start)
		case c < 0x20:
			return "", r.syntax("control character in a string")
		}
		r.pos++
	}
	return "", r.syntax("unterminated string")
}

// escapedString finishes a string that holds escapes, from its start.
func (r *jsonReader) escapedString(start int) (string, *jsonError) {
	b := make([]byte, 0, r.pos-start+16)
	b = append(b, r.data[start:r.pos]...)
	for r.pos < len(r.data) {
		c := r.data[r.pos]
		switch {
		case c == '"':
			r.pos++
			if !utf8.Valid(b) {
				return "", r.syntax("string is not valid UTF-8")
			}
			return string(b), nil
		case c < 0x20:
			return "", r.syntax("control character in a string")
		case c != '\\':
			b = append(b, c)
			r.pos++
			continue
		}
		if r.pos+1 >= len(r.data) {
			break
		}
		e := r.data[r.pos+1]
		r.pos += 2
		switch e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			ru, ok := r.hex4()
			if !ok {
				return "", r.syntax("invalid \\u escape")
			}
			if utf16.IsSurrogate(ru) {
				lo, ok := rune(0), false
				if r.pos+1 < len(r.data) && r.data[r.pos] == '\\' && r.data[r.pos+1] == 'u' {
					r.pos += 2
					lo, ok = r.hex4()
				}
				ru = utf16.DecodeRune(ru, lo)
				if !ok || ru == utf8.RuneError {
					return "", r.syntax("invalid surrogate pair in a \\u escape")
				}
			}
			b = utf8.AppendRune(b, ru)
		default:
			return "", r.syntax("invalid escape")
		}
	}
	return "", r.syntax("unterminated string")
}

func (r *jsonReader) hex4() (rune, bool) {
	if r.pos+4 > len(r.data) {
		return 0, false
	}
	var v rune
	for _, c := range r.data[r.pos : r.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	r.pos += 4
	return v, true
}

func (r *jsonReader) number() (*node, *jsonError) {
	start := r.pos
	d := r.data
	if r.pos < len(d) && d[r.pos] == '-' {
		r.pos++
	}
	digits := func() int {
		s := r.pos
		for r.pos < len(d) && d[r.pos] >= '0' && d[r.pos] <= '9' {
			r.pos++
		}
		return r.pos - s
	}
	intStart := r.pos
	n := digits()
	if n == 0 || (n > 1 && d[intStart] == '0') {
		return nil, r.syntax("invalid number")
	}
	integer := true
	if r.pos < len(d) && d[r.pos] == '.' {
		r.pos++
		integer = false
		if digits() == 0 {
			return nil, r.syntax("invalid number")
		}
	}
	if r.pos < len(d) && (d[r.pos] == 'e' || d[r.pos] == 'E') {
		r.pos++
		integer = false
		if r.pos < len(d) && (d[r.pos] == '+' || d[r.pos] == '-') {
			r.pos++
		}
		if digits() == 0 {
			return nil, r.syntax("invalid number")
		}
	}
	text := string(d[start:r.pos])
	if integer {
		i, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			// Fatal: YAML would read the same text as something else.
			return nil, r.fatal(r.line, "%s is out of the 64-bit integer range", text)
		}
		nd := r.a.new(kInt, r.line)
		nd.num = i
		return nd, nil
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return nil, r.fatal(r.line, "%s is out of the range of a 64-bit float", text)
	}
	return r.a.number(f, r.line), nil
}

// ---- back to bytes and values ----

// appendNode appends a node as canonical JSON: keys sorted.
func appendNode(b []byte, n *node) []byte {
	switch n.kind {
	case kNull:
		return append(b, "null"...)
	case kBool:
		if n.flag() {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case kInt:
		return strconv.AppendInt(b, n.num, 10)
	case kFloat:
		return appendFloat(b, n.float())
	case kString:
		return appendString(b, n.str)
	case kList:
		b = append(b, '[')
		for i := range n.kids {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendNode(b, n.kids[i].val)
		}
		return append(b, ']')
	}
	b = append(b, '{')
	for i, e := range sortedEntries(n) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, e.key)
		b = append(b, ':')
		b = appendNode(b, e.val)
	}
	return append(b, '}')
}

// sortedEntries returns a mapping's entries sorted by key bytes.
func sortedEntries(n *node) []entry {
	if slices.IsSortedFunc(n.kids, cmpEntry) {
		return n.kids
	}
	es := slices.Clone(n.kids)
	slices.SortFunc(es, cmpEntry)
	return es
}

func cmpEntry(a, b entry) int {
	switch {
	case a.key < b.key:
		return -1
	case a.key > b.key:
		return 1
	}
	return 0
}

// toAny turns a scalar or list node into a plain Go value (string, int64,
// float64, bool, nil, []any); a mapping becomes map[string]any.
func toAny(n *node) any {
	switch n.kind {
	case kBool:
		return n.flag()
	case kInt:
		return n.num
	case kFloat:
		return n.float()
	case kString:
		return n.str
	case kList:
		l := make([]any, len(n.kids))
		for i := range n.kids {
			l[i] = toAny(n.kids[i].val)
		}
		return l
	case kMap:
		m := make(map[string]any, len(n.kids))
		for _, e := range n.kids {
			m[e.key] = toAny(e.val)
		}
		return m
	}
	return nil
}
