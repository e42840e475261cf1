package schema

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/alize-eple/alize/modules"
)

// Level is one place variables are set, for one server: "server",
// "establishment", "group:<name>", "academy", "fleet". Resolve takes the
// levels highest first: the first level that sets a variable gives it.
type Level struct {
	Name string `json:"name"`
	// Values maps a variable to its value at this level. A value is typed
	// as the variable is: a string, an integer (any Go integer type, or an
	// integral float64 or json.Number, as JSON decoding gives), a bool, or
	// a list of those. A nil value sets nothing: lower levels still apply.
	// A secret's value is the secret itself, which never leaves Resolved
	// but through Resolved.Secret.
	Values map[string]any `json:"values"`
}

// FromDefault is the From of a value that comes from the variable's
// default in the dictionary, below every level.
const FromDefault = "default"

// Value is a variable's resolved value and where it comes from.
type Value struct {
	Value  any    `json:"value"`          // typed: string, int64, bool, []any; nil for no value; a secret's reference
	From   string `json:"from,omitempty"` // the level that gave it, FromDefault, or "" for no value
	Hidden bool   `json:"hidden,omitempty"`
	Secret bool   `json:"secret,omitempty"`

	plain string // a secret's value, when a level gave it
}

// MarshalJSON writes the value for people: a secret reads "(secret)".
func (v Value) MarshalJSON() ([]byte, error) {
	type plain Value
	p := plain(v)
	if v.Secret && v.Value != nil {
		p.Value = "(secret)"
	}
	return json.Marshal(p)
}

func (v Value) String() string {
	var s string
	switch {
	case v.Value == nil:
		s = "(no value)"
	case v.Secret:
		s = "(secret)"
	default:
		b, ok := appendValueChecked(nil, v.Value)
		if !ok {
			s = fmt.Sprint(v.Value)
		} else {
			s = string(b)
		}
	}
	if v.From != "" {
		s += " (" + v.From + ")"
	}
	if v.Hidden {
		s += " [hidden]"
	}
	return s
}

// Resolved maps every variable of a dictionary to its value for one
// server. Its JSON and String forms, for people, never show a secret.
type Resolved map[string]Value

// String lists the values one a line, sorted by name:
// "admin_cidr = "10.1.0.0/16" (establishment)".
func (r Resolved) String() string {
	var b strings.Builder
	for _, name := range sortedKeys(r) {
		fmt.Fprintf(&b, "%s = %s\n", name, r[name])
	}
	return b.String()
}

// Secret returns the value of a secret variable, for the controller to
// seal for the server; false when no level gave it.
func (r Resolved) Secret(name string) (string, bool) {
	v, ok := r[name]
	if !ok || !v.Secret || v.plain == "" {
		return "", false
	}
	return v.plain, true
}

// ValuesJSON returns the values as CompileBytes takes them: one canonical
// JSON object, every variable by name, its typed value, null for no
// value, and a secret's reference "secret://<name>" (never the secret).
func (r Resolved) ValuesJSON() ([]byte, error) {
	b := make([]byte, 0, 64*len(r))
	b = append(b, '{')
	for i, name := range sortedKeys(r) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, name)
		b = append(b, ':')
		v := r[name]
		x := v.Value
		if v.Secret && x != nil {
			x = SecretRef(name)
		}
		var ok bool
		if b, ok = appendValueChecked(b, x); !ok {
			return nil, fmt.Errorf("values: %s: %T is not a resolved value", name, v.Value)
		}
	}
	return append(b, '}'), nil
}

// appendValueChecked is appendValue for values that may not come from
// Resolve.
func appendValueChecked(b []byte, x any) ([]byte, bool) {
	switch x := x.(type) {
	case nil, bool, int64, string:
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = appendValueChecked(b, e); !ok {
				return nil, false
			}
		}
		return append(b, ']'), true
	default:
		return nil, false
	}
	if s, ok := x.(string); ok && !utf8.ValidString(s) {
		return nil, false
	}
	return appendValue(b, x), true
}

// Resolve gives every variable of d its value for one server: from the
// first of levels (highest first) that sets it, else from the variable's
// default, else none. It checks every value against its variable, refuses
// a value for a variable d does not have, and a mandatory variable left
// without a value; it reports every problem, with paths like
// "establishment.admin_cidr".
func Resolve(d *Dictionary, levels []Level) (Resolved, error) {
	var errs modules.FieldErrors
	typed := make([]map[string]any, len(levels))
	seen := make(map[string]bool, len(levels))
	for li, lv := range levels {
		switch {
		case lv.Name == "":
			errs.Add(index("levels", li), "a level needs a name")
		case lv.Name == FromDefault:
			errs.Add(index("levels", li), "level name %q is kept for the dictionary's defaults", FromDefault)
		case seen[lv.Name]:
			errs.Add(index("levels", li), "level %q given twice", lv.Name)
		}
		seen[lv.Name] = true
		typed[li] = make(map[string]any, len(lv.Values))
		for _, name := range sortedKeys(lv.Values) {
			p := lv.Name + "." + name
			v, ok := d.Lookup(name)
			if !ok {
				errs.Add(p, "unknown variable: not in the module's dictionary")
				continue
			}
			x, err := v.normalize(lv.Values[name])
			if err != nil {
				errs.Add(valuePath(p, err), "%s", valueMessage(err))
				continue
			}
			if x != nil {
				typed[li][name] = x
			}
		}
	}
	r := make(Resolved, len(d.vars))
	for _, v := range d.vars {
		val := Value{Hidden: v.Hidden, Secret: v.Type == TypeSecret}
		for li := range levels {
			if x, ok := typed[li][v.Name]; ok {
				val.Value, val.From = x, levels[li].Name
				break
			}
		}
		if val.From == "" && v.Default != nil {
			val.Value, val.From = v.Default, FromDefault
		}
		if v.Mandatory && empty(val.Value) {
			if val.From == "" {
				errs.Add(v.Name, "mandatory variable has no value at any level")
			} else {
				errs.Add(val.From+"."+v.Name, "mandatory variable must not be empty")
			}
		}
		if val.Secret && val.Value != nil {
			if s := val.Value.(string); s != SecretRef(v.Name) {
				val.plain = s
			}
			val.Value = SecretRef(v.Name)
		}
		r[v.Name] = val
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return r, nil
}
