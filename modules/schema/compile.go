package schema

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/alize-eple/alize/modules"
)

// Compiled is a module compiled for one server: its spec with every
// variable substituted, in canonical JSON, and the spec's digest.
type Compiled struct {
	Module  string          `json:"module"`
	Version string          `json:"version"`
	Kind    string          `json:"kind"`
	Spec    json.RawMessage `json:"spec"`   // canonical JSON
	Digest  string          `json:"digest"` // "sha256:<hex>" of Spec
	// Secrets names the secret variables the spec refers to, sorted: the
	// controller seals each one for the server; the agent's kind replaces
	// each reference ("secret://<name>") with the unsealed value.
	Secrets []string `json:"secrets,omitempty"`
}

// Digest returns the digest of a compiled spec: "sha256:" and the hex
// SHA-256 of its bytes.
func Digest(spec []byte) string {
	sum := sha256.Sum256(spec)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Compile substitutes the resolved values into the module's spec, writes
// it as canonical JSON and runs the kind's check on it.
//
// r must hold exactly the module's variables, as Resolve returns them; a
// secret variable's value is its reference (or nil when it has none), so
// no secret ever enters the spec. check is the kind's strict decode and
// Validate (modules.CheckerFor); the controller and the agent always pass
// one. A nil check skips it, for tests and for kinds not written yet.
func Compile(m *Module, r Resolved, check modules.SpecChecker) (*Compiled, error) {
	vals, err := m.resolvedValues(r)
	if err != nil {
		return nil, err
	}
	spec, secrets, err := m.render(vals)
	if err != nil {
		return nil, err
	}
	if check != nil {
		if err := check(spec); err != nil {
			return nil, fmt.Errorf("check spec: %w", err)
		}
	}
	return &Compiled{
		Module:  m.Name,
		Version: m.Version,
		Kind:    m.Kind,
		Spec:    spec,
		Digest:  Digest(spec),
		Secrets: secrets,
	}, nil
}

// CompileBytes is Compile for the agent's verifier, from bytes: the module
// definition (YAML, or the canonical JSON of Module.Canonical, which reads
// several times faster) and the values object Resolved.ValuesJSON returns.
// The values object must name every variable of the module and no other:
// a variable without a value is null, a secret is its reference
// "secret://<name>" (or null). It returns exactly the spec and digest
// Compile returns for the same module and values. It runs no kind check:
// the agent decodes the spec into its kind's type next.
//
// It is ParseModule then CompileValues: a verifier that keeps parsed
// modules (by the digest of their signed definition) calls CompileValues
// alone, which costs a small fraction of the parse.
func CompileBytes(definition, values []byte) (spec []byte, digest string, err error) {
	m, err := ParseModule(definition)
	if err != nil {
		return nil, "", fmt.Errorf("module definition: %w", err)
	}
	return m.CompileValues(values)
}

// CompileValues is CompileBytes for a module already parsed: it checks the
// values object against the dictionary, substitutes, and returns the
// canonical JSON spec and its digest.
func (m *Module) CompileValues(values []byte) (spec []byte, digest string, err error) {
	vals, err := m.valuesJSON(values)
	if err != nil {
		return nil, "", err
	}
	spec, _, err = m.render(vals)
	if err != nil {
		return nil, "", err
	}
	return spec, Digest(spec), nil
}

// resolvedValues checks r against the dictionary and returns the values
// in dictionary order.
func (m *Module) resolvedValues(r Resolved) ([]any, error) {
	vars := m.Variables.vars
	vals := make([]any, len(vars))
	var errs modules.FieldErrors
	found := 0
	for i, v := range vars {
		rv, ok := r[v.Name]
		if !ok {
			errs.Add(v.Name, "no resolved value: resolve the values with module %s's dictionary", m.Name)
			continue
		}
		found++
		x, err := v.compileValue(rv.Value)
		if err != nil {
			errs.Add(valuePath(v.Name, err), "%s", valueMessage(err))
			continue
		}
		vals[i] = x
	}
	if len(r) > found {
		for _, name := range sortedKeys(r) {
			if _, ok := m.Variables.index[name]; !ok {
				errs.Add(name, "not a variable of module %s", m.Name)
			}
		}
	}
	return vals, errs.Err()
}

// valuesJSON reads a values object and returns the values in dictionary
// order.
func (m *Module) valuesJSON(data []byte) ([]any, error) {
	if len(data) > MaxValuesSize {
		return nil, modules.FieldErrors{{Path: "values", Message: fmt.Sprintf("%d bytes, more than the %d allowed", len(data), MaxValuesSize)}}
	}
	root, jerr := readJSON(data, newArena(len(data)))
	if jerr != nil {
		fe := jerr.fieldError()
		switch {
		case fe.Path == "":
			fe.Path = "values"
		case fe.Path[0] == '[':
			fe.Path = "values" + fe.Path
		default:
			fe.Path = "values." + fe.Path
		}
		return nil, modules.FieldErrors{fe}
	}
	if root.kind != kMap {
		return nil, modules.FieldErrors{{Path: "values", Message: fmt.Sprintf("must be an object, not %s", root.kind)}}
	}
	vars := m.Variables.vars
	vals := make([]any, len(vars))
	seen := make([]bool, len(vars))
	var errs modules.FieldErrors
	for _, e := range root.kids {
		i, ok := m.Variables.index[e.key]
		if !ok {
			errs.Add(join("values", e.key), "not a variable of module %s", m.Name)
			continue
		}
		seen[i] = true
		x, err := vars[i].compileValue(toAny(e.val))
		if err != nil {
			errs.Add(valuePath(join("values", e.key), err), "%s", valueMessage(err))
			continue
		}
		vals[i] = x
	}
	for i, v := range vars {
		if !seen[i] {
			errs.Add(join("values", v.Name), "missing (null when the variable has no value)")
		}
	}
	return vals, errs.Err()
}

// compileValue checks a resolved value: typed as the variable says, a
// reference for a secret, and present when mandatory.
func (v *Variable) compileValue(x any) (any, error) {
	if v.Type == TypeSecret {
		if x != nil && x != any(SecretRef(v.Name)) {
			return nil, fmt.Errorf("a secret's value must be its reference %s", SecretRef(v.Name))
		}
	} else {
		var err error
		if x, err = v.normalize(x); err != nil {
			return nil, err
		}
	}
	if v.Mandatory && empty(x) {
		return nil, fmt.Errorf("mandatory variable has no value")
	}
	return x, nil
}

// empty reports whether a typed value counts as no value for a mandatory
// variable: nil, "" or an empty list.
func empty(x any) bool {
	switch x := x.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case []any:
		return len(x) == 0
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ---- the spec template ----

// template is a spec parsed once, ready for substitution: runs of literal
// canonical JSON between the places that take a variable's value.
type template struct {
	lit  []byte
	segs []segment
}

type segment struct {
	kind     segKind
	from, to int    // segLiteral: lit[from:to]
	v        int    // segVariable: the variable's position
	parts    []part // segInterpolate
	path     string // segInterpolate: for messages
	line     int32
	isSecret bool // segVariable of a secret
}

type segKind uint8

const (
	segLiteral     segKind = iota
	segVariable            // a string that is exactly ${var}: the typed value
	segInterpolate         // ${var} inside a longer string: the value's text
)

// part is a piece of an interpolated string: literal text, or a variable
// when v >= 0.
type part struct {
	text string
	v    int
}

// templateBuilder turns the spec's nodes into a template, and into the
// canonical JSON of the spec as written (raw): the two differ only in the
// strings that hold a '$'.
type templateBuilder struct {
	d     *decoder // on the spec node; its path names the node in messages
	dict  *Dictionary
	t     template
	raw   []byte
	start int // start of the literal run not yet in a segment
}

// template parses the spec once: the decoder is on the spec node, and
// size is about the length of its canonical JSON.
func (d *decoder) template(dict *Dictionary, spec *node, size int) (template, []byte) {
	b := templateBuilder{d: d, dict: dict}
	b.t.lit = make([]byte, 0, size)
	b.raw = make([]byte, 0, size)
	b.t.segs = make([]segment, 0, 16)
	b.walk(spec)
	b.flush()
	return b.t, b.raw
}

// litByte appends a byte that is the same in the template and the raw
// spec.
func (b *templateBuilder) litByte(c byte) {
	b.t.lit = append(b.t.lit, c)
	b.raw = append(b.raw, c)
}

func (b *templateBuilder) flush() {
	if len(b.t.lit) > b.start {
		b.t.segs = append(b.t.segs, segment{kind: segLiteral, from: b.start, to: len(b.t.lit)})
		b.start = len(b.t.lit)
	}
}

func (b *templateBuilder) walk(n *node) {
	switch n.kind {
	case kMap:
		b.litByte('{')
		for i, e := range sortedEntries(n) {
			if i > 0 {
				b.litByte(',')
			}
			b.d.push(e.key)
			if strings.Contains(e.key, "${") {
				b.d.add(e.line, "variables are not substituted in keys (%q)", e.key)
			}
			start := len(b.t.lit)
			b.t.lit = appendString(b.t.lit, e.key)
			b.t.lit = append(b.t.lit, ':')
			b.raw = append(b.raw, b.t.lit[start:]...)
			b.walk(e.val)
			b.d.pop()
		}
		b.litByte('}')
	case kList:
		b.litByte('[')
		for i := range n.kids {
			if i > 0 {
				b.litByte(',')
			}
			b.d.pushIndex(i)
			b.walk(n.kids[i].val)
			b.d.pop()
		}
		b.litByte(']')
	case kString:
		b.str(n)
	default:
		start := len(b.t.lit)
		b.t.lit = appendNode(b.t.lit, n)
		b.raw = append(b.raw, b.t.lit[start:]...)
	}
}

// str adds a spec string: literal, a whole ${var}, or interpolated.
func (b *templateBuilder) str(n *node) {
	s := n.str
	if strings.IndexByte(s, '$') < 0 {
		b.literal(s, n)
		return
	}
	b.raw = appendString(b.raw, s)
	parts, ok := b.parse(s, n)
	if !ok {
		b.t.lit = appendString(b.t.lit, s) // keep going to report more problems
		return
	}
	switch {
	case len(parts) == 1 && parts[0].v >= 0:
		v := b.dict.vars[parts[0].v]
		b.flush()
		b.t.segs = append(b.t.segs, segment{kind: segVariable, v: v.pos, isSecret: v.Type == TypeSecret})
	case len(parts) == 1:
		b.literalOnly(parts[0].text, n)
	case len(parts) == 0:
		b.literalOnly("", n)
	default:
		for _, pt := range parts {
			if pt.v < 0 {
				continue
			}
			v := b.dict.vars[pt.v]
			switch {
			case v.Type == TypeSecret:
				b.d.add(n.line, "secret variable ${%s} must be the whole string, not part of %q", v.Name, s)
				ok = false
			case v.List:
				b.d.add(n.line, "list variable ${%s} must be the whole string, not part of %q", v.Name, s)
				ok = false
			}
		}
		if !ok {
			return
		}
		b.flush()
		b.t.segs = append(b.t.segs, segment{kind: segInterpolate, parts: parts, path: b.d.path(), line: n.line})
	}
}

// literal adds a string that is the same in the template and the raw spec.
func (b *templateBuilder) literal(s string, n *node) {
	start := len(b.t.lit)
	b.literalOnly(s, n)
	b.raw = append(b.raw, b.t.lit[start:]...)
}

// literalOnly adds a literal string to the template alone.
func (b *templateBuilder) literalOnly(s string, n *node) {
	if strings.HasPrefix(s, SecretPrefix) {
		b.d.add(n.line, "%q: %s is kept for secret references: use ${name} with a secret variable", s, SecretPrefix)
	}
	b.t.lit = appendString(b.t.lit, s)
}

// parse splits a string into literal text and variable references:
// "${name}" is a reference, "$${" a literal "${", any other '$' itself.
// Adjacent literal text is merged.
func (b *templateBuilder) parse(s string, n *node) ([]part, bool) {
	var parts []part
	var text []byte
	ok := true
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '$')
		if j < 0 {
			text = append(text, s[i:]...)
			break
		}
		text = append(text, s[i:i+j]...)
		i += j
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			text = append(text, "${"...)
			i += 3
		case strings.HasPrefix(s[i:], "${"):
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				b.d.add(n.line, "unterminated ${ in %q (write $${ for a literal ${)", s)
				return nil, false
			}
			name := s[i+2 : i+2+end]
			i += 2 + end + 1
			if !validVariableName(name) {
				b.d.add(n.line, "invalid variable reference ${%s} (names are lowercase snake_case; write $${ for a literal ${)", name)
				ok = false
				continue
			}
			v, found := b.dict.Lookup(name)
			if !found {
				b.d.add(n.line, "unknown variable ${%s}", name)
				ok = false
				continue
			}
			if len(text) > 0 {
				parts = append(parts, part{text: string(text), v: -1})
				text = text[:0]
			}
			parts = append(parts, part{v: v.pos})
		default:
			text = append(text, '$')
			i++
		}
	}
	if len(text) > 0 {
		parts = append(parts, part{text: string(text), v: -1})
	}
	return parts, ok
}

// render substitutes values (in dictionary order, checked) into the
// template and returns the canonical JSON spec and the secrets it refers
// to.
func (m *Module) render(vals []any) ([]byte, []string, error) {
	t := &m.template
	out := make([]byte, 0, len(t.lit)+len(t.lit)/2+64)
	var secrets []string
	var errs modules.FieldErrors
	var scratch []byte
	for i := range t.segs {
		s := &t.segs[i]
		switch s.kind {
		case segLiteral:
			out = append(out, t.lit[s.from:s.to]...)
		case segVariable:
			x := vals[s.v]
			if s.isSecret && x != nil {
				secrets = append(secrets, m.Variables.vars[s.v].Name)
			}
			out = appendValue(out, x)
		case segInterpolate:
			scratch = scratch[:0]
			ok := true
			for _, pt := range s.parts {
				if pt.v < 0 {
					scratch = append(scratch, pt.text...)
					continue
				}
				switch x := vals[pt.v].(type) {
				case string:
					scratch = append(scratch, x...)
				case int64:
					scratch = strconv.AppendInt(scratch, x, 10)
				case bool:
					scratch = strconv.AppendBool(scratch, x)
				default:
					errs = append(errs, modules.FieldError{Path: s.path, Message: fmt.Sprintf("${%s} has no value to put in the string (line %d)", m.Variables.vars[pt.v].Name, s.line)})
					ok = false
				}
			}
			if !ok {
				continue
			}
			str := string(scratch)
			if strings.HasPrefix(str, SecretPrefix) {
				errs = append(errs, modules.FieldError{Path: s.path, Message: fmt.Sprintf("%q: %s is kept for secret references (line %d)", str, SecretPrefix, s.line)})
				continue
			}
			out = appendString(out, str)
		}
	}
	if err := errs.Err(); err != nil {
		return nil, nil, err
	}
	slices.Sort(secrets)
	return out, slices.Compact(secrets), nil
}
