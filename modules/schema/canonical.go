package schema

import (
	"strconv"
	"unicode/utf8"
)

// This file writes canonical JSON: the one byte form of a value that
// Compile digests, so that the controller and the agent, given the same
// inputs, hash the same bytes.
//
// The form: no whitespace; object keys sorted by their bytes, each once;
// integers in decimal; other numbers in the shortest form that reads back
// to the same float64 (strconv 'g', -1); strings as UTF-8 with only these
// escapes: \" \\ \b \f \n \r \t, and \u00XX (lowercase hex) for the other
// C0 controls, DEL and the C1 controls, and \u2028 \u2029 \ufeff \ufffe
// \uffff. The extra escapes keep the output readable as YAML too, so that a
// module's canonical form parses back through either of ParseModule's
// readers.

const hexDigits = "0123456789abcdef"

// appendString appends s as a canonical JSON string. s must be valid UTF-8:
// every reader in this package refuses anything else.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"':
				b = append(b, '\\', '"')
			case '\\':
				b = append(b, '\\', '\\')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if needsEscape(r) {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u',
				hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// needsEscape reports whether a non-ASCII rune is escaped: the C1
// controls and the characters YAML reads as line breaks or byte order
// marks.
func needsEscape(r rune) bool {
	return (r >= 0x80 && r <= 0x9f) || r == 0x2028 || r == 0x2029 ||
		r == 0xfeff || r == 0xfffe || r == 0xffff
}

// appendFloat appends a float64 that is finite and not an integer below
// 2^53 (those are held as int64).
func appendFloat(b []byte, f float64) []byte {
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

// appendValue appends a typed variable value: nil, bool, int64, string or
// []any of those. Values reach it only after normalize, so another type
// is a bug in this package.
func appendValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		if v {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case string:
		return appendString(b, v)
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, e)
		}
		return append(b, ']')
	default:
		panic("schema: appendValue: unnormalized value")
	}
}

// object writes a canonical JSON object whose keys the caller gives in
// sorted order.
type object struct {
	b []byte
	n int
}

func (o *object) key(k string) {
	if o.n == 0 {
		o.b = append(o.b, '{')
	} else {
		o.b = append(o.b, ',')
	}
	o.n++
	o.b = appendString(o.b, k)
	o.b = append(o.b, ':')
}

func (o *object) close() []byte {
	if o.n == 0 {
		return append(o.b, '{', '}')
	}
	return append(o.b, '}')
}

func appendText(b []byte, t Text) []byte {
	o := object{b: b}
	o.key("en")
	o.b = appendString(o.b, t.EN)
	o.key("fr")
	o.b = appendString(o.b, t.FR)
	return o.close()
}

// Canonical returns the module definition in canonical JSON: what it
// means, without the comments and layout of its YAML. ParseModule reads it
// back to the same module, faster than the YAML; it is the form to sign and
// ship to agents that recompile (see CompileBytes).
func (m *Module) Canonical() []byte {
	o := object{b: make([]byte, 0, 2*len(m.spec)+256)}
	o.key("description")
	o.b = appendText(o.b, m.Description)
	o.key("kind")
	o.b = appendString(o.b, m.Kind)
	o.key("name")
	o.b = appendString(o.b, m.Name)
	if m.Requires.Agent != "" {
		o.key("requires")
		r := object{b: o.b}
		r.key("agent")
		r.b = appendString(r.b, m.Requires.Agent)
		o.b = r.close()
	}
	o.key("spec")
	o.b = append(o.b, m.spec...)
	if len(m.Variables.Families) > 0 {
		o.key("variables")
		o.b = m.Variables.appendCanonical(o.b)
	}
	o.key("version")
	o.b = appendString(o.b, m.Version)
	return o.close()
}

func (d *Dictionary) appendCanonical(b []byte) []byte {
	o := object{b: b}
	o.key("families")
	o.b = append(o.b, '[')
	for i, f := range d.Families {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		fo := object{b: o.b}
		fo.key("description")
		fo.b = appendText(fo.b, f.Description)
		fo.key("name")
		fo.b = appendString(fo.b, f.Name)
		fo.key("variables")
		fo.b = append(fo.b, '[')
		for j := range f.Variables {
			if j > 0 {
				fo.b = append(fo.b, ',')
			}
			fo.b = f.Variables[j].appendCanonical(fo.b)
		}
		fo.b = append(fo.b, ']')
		o.b = fo.close()
	}
	o.b = append(o.b, ']')
	return o.close()
}

func (v *Variable) appendCanonical(b []byte) []byte {
	o := object{b: b}
	if len(v.Choices) > 0 {
		o.key("choices")
		o.b = append(o.b, '[')
		for i, c := range v.Choices {
			if i > 0 {
				o.b = append(o.b, ',')
			}
			o.b = appendString(o.b, c)
		}
		o.b = append(o.b, ']')
	}
	if v.Default != nil {
		o.key("default")
		o.b = appendValue(o.b, v.Default)
	}
	o.key("description")
	o.b = appendText(o.b, v.Description)
	if v.Hidden {
		o.key("hidden")
		o.b = append(o.b, "true"...)
	}
	if v.List {
		o.key("list")
		o.b = append(o.b, "true"...)
	}
	if v.Mandatory {
		o.key("mandatory")
		o.b = append(o.b, "true"...)
	}
	if v.Max != nil {
		o.key("max")
		o.b = strconv.AppendInt(o.b, *v.Max, 10)
	}
	if v.Min != nil {
		o.key("min")
		o.b = strconv.AppendInt(o.b, *v.Min, 10)
	}
	o.key("name")
	o.b = appendString(o.b, v.Name)
	if v.Pattern != "" {
		o.key("pattern")
		o.b = appendString(o.b, v.Pattern)
	}
	o.key("type")
	o.b = appendString(o.b, string(v.Type))
	return o.close()
}
