package schema

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/hashicorp/go-version"

	"github.com/alize-eple/alize/modules"
)

// The limits every reader in this package enforces.
const (
	MaxModuleSize = 1 << 20 // bytes of a module definition
	MaxValuesSize = 1 << 20 // bytes of a values object given to CompileBytes
	MaxDepth      = 64      // nesting of mappings and lists in a document
)

// Module is a parsed, validated module definition. Build one only with
// ParseModule, and treat it as read-only: Compile relies on what
// ParseModule worked out once (where the spec uses which variable).
type Module struct {
	Name        string
	Version     string
	Kind        string
	Description Text
	Requires    Requires
	Variables   Dictionary

	agent    version.Constraints // parsed Requires.Agent; nil for any
	spec     []byte              // canonical JSON of the spec as written, before substitution
	template template            // the spec, ready for substitution
}

// Text is a description in French and in English; both are required.
type Text struct {
	FR string `json:"fr"`
	EN string `json:"en"`
}

// Requires holds what a module needs of the server.
type Requires struct {
	// Agent is a version constraint the agent must meet, like ">= 1.2, < 2"
	// (hashicorp/go-version syntax); empty for any version.
	Agent string `json:"agent,omitempty"`
}

// Dictionary is a module's variables, grouped in families.
type Dictionary struct {
	Families []Family

	vars  []*Variable    // every variable, in document order
	index map[string]int // name → position in vars
}

// Family is a named group of variables, as an operator's form shows them.
type Family struct {
	Name        string
	Description Text
	Variables   []Variable
}

// Variable is one typed variable of a dictionary.
type Variable struct {
	Name        string
	Type        Type
	List        bool // the value is a list of Type
	Description Text
	Default     any // typed like a value (string, int64, bool, []any); nil for none
	Mandatory   bool
	Min, Max    *int64   // int and port only; they bound each element of a list
	Pattern     string   // textual types: the value must match it whole
	Choices     []string // choice only
	Hidden      bool     // resolved as any other, flagged so that forms hide it

	re      *regexp.Regexp      // Pattern, leftmost-longest
	choices map[string]struct{} // Choices, when there are many
	pos     int                 // position in the dictionary
}

// Variables returns every variable of the dictionary in document order.
func (d *Dictionary) Variables() []*Variable { return d.vars }

// Lookup returns the variable called name.
func (d *Dictionary) Lookup(name string) (*Variable, bool) {
	i, ok := d.index[name]
	if !ok {
		return nil, false
	}
	return d.vars[i], true
}

// AllowsAgent reports whether an agent of version v may run the module.
func (m *Module) AllowsAgent(v *version.Version) bool {
	return m.agent == nil || m.agent.Check(v)
}

// SpecJSON returns the module's spec as written, before substitution, in
// canonical JSON.
func (m *Module) SpecJSON() []byte { return m.spec }

// ParseModule reads a module definition: YAML as people write it, or the
// canonical JSON form Canonical returns (JSON is YAML; it is only read
// faster). It refuses a document larger than MaxModuleSize or nested
// deeper than MaxDepth, unknown fields, duplicate keys, anchors and
// aliases, and reports every problem it finds as modules.FieldErrors, each
// with its field path and line.
func ParseModule(data []byte) (*Module, error) {
	if len(data) > MaxModuleSize {
		return nil, modules.FieldErrors{{Message: fmt.Sprintf("module definition is %d bytes, more than the %d allowed", len(data), MaxModuleSize)}}
	}
	root, derr := readDocument(data, newArena(len(data)))
	if derr != nil {
		return nil, modules.FieldErrors{derr.fieldError()}
	}
	d := decoder{src: data}
	m := d.module(root)
	if err := d.errs.Err(); err != nil {
		return nil, err
	}
	// The canonical form quotes what YAML need not, up to about twice the
	// size: it must fit the limit too, so that it always reads back.
	if len(data) > MaxModuleSize/4 {
		if n := len(m.Canonical()); n > MaxModuleSize {
			return nil, modules.FieldErrors{{Message: fmt.Sprintf("module definition is %d bytes in canonical form, more than the %d allowed", n, MaxModuleSize)}}
		}
	}
	return m, nil
}

func (e *docError) fieldError() modules.FieldError {
	return modules.FieldError{Path: e.path, Message: e.Error()}
}

// decoder turns nodes into a Module, collecting every problem. It keeps
// the path to the node it is on as a stack, rendered only for a message.
type decoder struct {
	errs     modules.FieldErrors
	stack    []step
	src      []byte                    // the document, to size buffers
	patterns map[string]*regexp.Regexp // compiled once per document: variables often share one
}

func (d *decoder) push(key string) { d.stack = append(d.stack, step{key: key, idx: -1}) }
func (d *decoder) pushIndex(i int) { d.stack = append(d.stack, step{idx: i}) }
func (d *decoder) pop()            { d.stack = d.stack[:len(d.stack)-1] }

func (d *decoder) path() string { return renderPath("", d.stack) }

// add reports a problem with the node the decoder is on.
func (d *decoder) add(line int32, format string, args ...any) {
	d.addPath(d.path(), line, format, args...)
}

// addKey reports a problem with the field key of the node the decoder is on.
func (d *decoder) addKey(key string, line int32, format string, args ...any) {
	d.addPath(join(d.path(), key), line, format, args...)
}

func (d *decoder) addPath(path string, line int32, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if line > 0 {
		msg = fmt.Sprintf("%s (line %d)", msg, line)
	}
	d.errs = append(d.errs, modules.FieldError{Path: path, Message: msg})
}

// fields walks a mapping, calling set for each entry with the decoder on
// it; set reports whether it knows the key. fields returns false when n is
// not a mapping.
func (d *decoder) fields(n *node, set func(e *entry) bool) bool {
	if n.kind != kMap {
		d.add(n.line, "must be a mapping, not %s", n.kind)
		return false
	}
	for i := range n.kids {
		e := &n.kids[i]
		d.push(e.key)
		if !set(e) {
			d.add(e.line, "unknown field")
		}
		d.pop()
	}
	return true
}

// require reports the missing fields of the mapping n.
func (d *decoder) require(n *node, keys ...string) {
	for _, k := range keys {
		if n.get(k) == nil {
			d.addKey(k, n.line, "required")
		}
	}
}

func (d *decoder) str(n *node) (string, bool) {
	if n.kind != kString {
		d.add(n.line, "must be a string, not %s", n.kind)
		return "", false
	}
	return n.str, true
}

func (d *decoder) boolean(n *node) bool {
	if n.kind != kBool {
		d.add(n.line, "must be true or false, not %s", n.kind)
		return false
	}
	return n.flag()
}

func (d *decoder) module(n *node) *Module {
	m := &Module{}
	var spec *node
	ok := d.fields(n, func(e *entry) bool {
		switch e.key {
		case "name":
			if s, ok := d.str(e.val); ok {
				if !validModuleName(s) {
					d.add(e.val.line, "%q is not a module name (lowercase letters, digits and single hyphens, at most 63, like amon-firewall)", s)
				}
				m.Name = s
			}
		case "version":
			if s, ok := d.str(e.val); ok {
				if !validSemver(s) {
					d.add(e.val.line, "%q is not a version (MAJOR.MINOR.PATCH, like 2.3.0)", s)
				}
				m.Version = s
			}
		case "kind":
			if s, ok := d.str(e.val); ok {
				if !validKindName(s) {
					d.add(e.val.line, "%q is not a kind name (lowercase letters, like firewall)", s)
				}
				m.Kind = s
			}
		case "description":
			m.Description = d.text(e.val)
		case "requires":
			m.Requires, m.agent = d.requires(e.val)
		case "variables":
			m.Variables = d.dictionary(e.val)
		case "spec":
			spec = e.val
		default:
			return false
		}
		return true
	})
	if !ok {
		return m
	}
	d.require(n, "name", "version", "kind", "description", "spec")
	if spec != nil {
		d.push("spec")
		defer d.pop()
		if spec.kind != kMap {
			d.add(spec.line, "must be a mapping, not %s", spec.kind)
			return m
		}
		m.template, m.spec = d.template(&m.Variables, spec, len(d.src))
	}
	return m
}

func (d *decoder) text(n *node) Text {
	var t Text
	if !d.fields(n, func(e *entry) bool {
		var dst *string
		switch e.key {
		case "fr":
			dst = &t.FR
		case "en":
			dst = &t.EN
		default:
			return false
		}
		if s, ok := d.str(e.val); ok {
			if strings.TrimSpace(s) == "" {
				d.add(e.val.line, "must not be empty")
			}
			*dst = s
		}
		return true
	}) {
		return t
	}
	d.require(n, "fr", "en")
	return t
}

func (d *decoder) requires(n *node) (Requires, version.Constraints) {
	var r Requires
	var c version.Constraints
	d.fields(n, func(e *entry) bool {
		if e.key != "agent" {
			return false
		}
		s, ok := d.str(e.val)
		if !ok {
			return true
		}
		r.Agent = s
		var err error
		if c, err = version.NewConstraint(s); err != nil || strings.TrimSpace(s) == "" {
			d.add(e.val.line, "%q is not a version constraint (like \">= 1.2, < 2\")", s)
			c = nil
		}
		return true
	})
	return r, c
}

func (d *decoder) dictionary(n *node) Dictionary {
	var dict Dictionary
	var families *node
	if !d.fields(n, func(e *entry) bool {
		if e.key != "families" {
			return false
		}
		families = e.val
		return true
	}) {
		return dict
	}
	d.require(n, "families")
	if families == nil {
		return dict
	}
	d.push("families")
	defer d.pop()
	if families.kind != kList {
		d.add(families.line, "must be a list, not %s", families.kind)
		return dict
	}
	if len(families.kids) > 0 {
		dict.Families = make([]Family, len(families.kids))
	}
	type place struct{ family, variable int }
	familyAt := make(map[string]int, len(families.kids))
	where := make(map[string]place)
	nvars := 0
	for i := range families.kids {
		fn := families.item(i)
		d.pushIndex(i)
		f := &dict.Families[i]
		d.family(fn, f)
		if f.Name != "" {
			if first, dup := familyAt[f.Name]; dup {
				d.addKey("name", fn.line, "duplicate family %q, first defined at variables.families[%d]", f.Name, first)
			} else {
				familyAt[f.Name] = i
			}
		}
		for j := range f.Variables {
			v := &f.Variables[j]
			if v.Name == "" {
				continue
			}
			if first, dup := where[v.Name]; dup {
				d.addPath(fmt.Sprintf("%s.variables[%d].name", d.path(), j), fn.get("variables").item(j).line,
					"duplicate variable %q, first defined at variables.families[%d].variables[%d]", v.Name, first.family, first.variable)
				continue
			}
			where[v.Name] = place{i, j}
			nvars++
		}
		d.pop()
	}
	dict.index = make(map[string]int, nvars)
	dict.vars = make([]*Variable, 0, nvars)
	for i := range dict.Families {
		for j := range dict.Families[i].Variables {
			v := &dict.Families[i].Variables[j]
			if p, ok := where[v.Name]; !ok || p != (place{i, j}) {
				continue
			}
			v.pos = len(dict.vars)
			dict.index[v.Name] = v.pos
			dict.vars = append(dict.vars, v)
		}
	}
	return dict
}

func (d *decoder) family(n *node, f *Family) {
	var vars *node
	if !d.fields(n, func(e *entry) bool {
		switch e.key {
		case "name":
			if s, ok := d.str(e.val); ok {
				if !validVariableName(s) {
					d.add(e.val.line, "%q is not a family name (lowercase snake_case, like network)", s)
				}
				f.Name = s
			}
		case "description":
			f.Description = d.text(e.val)
		case "variables":
			vars = e.val
		default:
			return false
		}
		return true
	}) {
		return
	}
	d.require(n, "name", "description", "variables")
	if vars == nil {
		return
	}
	d.push("variables")
	defer d.pop()
	if vars.kind != kList {
		d.add(vars.line, "must be a list, not %s", vars.kind)
		return
	}
	if len(vars.kids) == 0 {
		d.add(vars.line, "must list at least one variable")
		return
	}
	f.Variables = make([]Variable, len(vars.kids))
	for i := range vars.kids {
		d.pushIndex(i)
		d.variable(vars.item(i), &f.Variables[i])
		d.pop()
	}
}

func (d *decoder) variable(n *node, v *Variable) {
	var def, choices *node
	if !d.fields(n, func(e *entry) bool {
		switch e.key {
		case "name":
			if s, ok := d.str(e.val); ok {
				if !validVariableName(s) {
					d.add(e.val.line, "%q is not a variable name (lowercase snake_case, like admin_cidr)", s)
					s = ""
				}
				v.Name = s
			}
		case "type":
			if s, ok := d.str(e.val); ok {
				if !Type(s).known() {
					d.add(e.val.line, "unknown type %q (want one of %s)", s, typeList())
				}
				v.Type = Type(s)
			}
		case "list":
			v.List = d.boolean(e.val)
		case "description":
			v.Description = d.text(e.val)
		case "default":
			def = e.val
		case "mandatory":
			v.Mandatory = d.boolean(e.val)
		case "min", "max":
			if e.val.kind != kInt {
				d.add(e.val.line, "must be an integer, not %s", e.val.kind)
				break
			}
			i := e.val.num
			if e.key == "min" {
				v.Min = &i
			} else {
				v.Max = &i
			}
		case "pattern":
			if s, ok := d.str(e.val); ok {
				v.Pattern = s
				v.re = d.pattern(s, e.val.line)
			}
		case "choices":
			choices = e.val
		case "hidden":
			v.Hidden = d.boolean(e.val)
		default:
			return false
		}
		return true
	}) {
		return
	}
	d.require(n, "name", "type", "description")
	if !v.Type.known() {
		return
	}
	t := v.Type
	for _, b := range [...]struct {
		key string
		val *int64
	}{{"min", v.Min}, {"max", v.Max}} {
		switch {
		case b.val == nil:
		case !t.numeric():
			d.addKey(b.key, n.get(b.key).line, "%s applies to int and port only, not %s", b.key, t)
		case t == TypePort && (*b.val < 1 || *b.val > 65535):
			d.addKey(b.key, n.get(b.key).line, "%d is not a port (1-65535)", *b.val)
		}
	}
	if !t.numeric() {
		v.Min, v.Max = nil, nil
	}
	if v.Min != nil && v.Max != nil && *v.Min > *v.Max {
		d.addKey("min", n.get("min").line, "min %d is above max %d", *v.Min, *v.Max)
	}
	if v.Pattern != "" && !t.textual() {
		d.addKey("pattern", n.get("pattern").line, "pattern applies to string, hostname, domain, interface, email and secret only, not %s", t)
		v.re = nil
	}
	switch {
	case t == TypeChoice && choices == nil:
		d.addKey("choices", n.line, "required for a choice")
	case t != TypeChoice && choices != nil:
		d.addKey("choices", choices.line, "applies to choice only, not %s", t)
	case choices != nil:
		d.push("choices")
		v.Choices = d.choices(choices)
		d.pop()
		if len(v.Choices) > 16 {
			v.choices = make(map[string]struct{}, len(v.Choices))
			for _, c := range v.Choices {
				v.choices[c] = struct{}{}
			}
		}
	}
	if t == TypeSecret {
		if v.List {
			d.addKey("list", n.get("list").line, "a secret cannot be a list")
		}
		if def != nil && def.kind != kNull {
			d.addKey("default", def.line, "a secret has no default: set it for each server or establishment")
			def = nil
		}
	}
	if def != nil && def.kind != kNull {
		val, err := v.normalize(toAny(def))
		if err != nil {
			d.addPath(valuePath(join(d.path(), "default"), err), def.line, "%s", valueMessage(err))
		} else {
			v.Default = val
		}
	}
}

// pattern compiles a variable's pattern. It is compiled alone, never
// wrapped in anchors ("a)|(b" would escape them), and set to prefer the
// longest match: the value matches when the leftmost-longest match is the
// whole value (see fullMatch).
func (d *decoder) pattern(s string, line int32) *regexp.Regexp {
	if re, ok := d.patterns[s]; ok {
		return re
	}
	re, err := regexp.Compile(s)
	if err != nil {
		d.add(line, "pattern %q does not compile: %v", s, err)
		return nil
	}
	re.Longest()
	if d.patterns == nil {
		d.patterns = make(map[string]*regexp.Regexp)
	}
	d.patterns[s] = re
	return re
}

func (d *decoder) choices(n *node) []string {
	if n.kind != kList {
		d.add(n.line, "must be a list, not %s", n.kind)
		return nil
	}
	if len(n.kids) == 0 {
		d.add(n.line, "must list at least one choice")
		return nil
	}
	out := make([]string, 0, len(n.kids))
	set := make(map[string]struct{}, len(n.kids))
	for i := range n.kids {
		c := n.item(i)
		d.pushIndex(i)
		if c.kind != kString {
			d.add(c.line, "must be a string, not %s (quote it)", c.kind)
			d.pop()
			continue
		}
		switch {
		case c.str == "":
			d.add(c.line, "must not be empty")
		case strings.HasPrefix(c.str, SecretPrefix):
			d.add(c.line, "must not start with %s", SecretPrefix)
		default:
			if _, dup := set[c.str]; dup {
				d.add(c.line, "duplicate choice %q", c.str)
			}
		}
		set[c.str] = struct{}{}
		out = append(out, c.str)
		d.pop()
	}
	return out
}

// validModuleName: lowercase letters, digits and single hyphens inside,
// at most 63 characters.
func validModuleName(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' || strings.Contains(s, "--") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validKindName: lowercase letters, at most 32.
func validKindName(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// validVariableName: lowercase snake_case starting with a letter, at most
// 64 characters.
func validVariableName(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// validSemver: MAJOR.MINOR.PATCH without leading zeros, optionally
// -PRERELEASE (dot-separated [0-9A-Za-z-] identifiers); no build metadata,
// so that two different strings never name the same version.
func validSemver(s string) bool {
	core, pre, hasPre := strings.Cut(s, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if p == "" || len(p) > 9 || (len(p) > 1 && p[0] == '0') || !plainDigitsAny(p) {
			return false
		}
	}
	if hasPre {
		for id := range strings.SplitSeq(pre, ".") {
			if id == "" {
				return false
			}
			for i := 0; i < len(id); i++ {
				if c := id[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
					return false
				}
			}
		}
	}
	_, err := version.NewSemver(s)
	return err == nil
}

func typeList() string {
	s := make([]string, len(knownTypes))
	for i, t := range knownTypes {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}
