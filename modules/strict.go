package modules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// maxSpecDepth bounds the nesting of a spec: no kind needs more.
const maxSpecDepth = 64

var (
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
)

// checkKeys walks a JSON document against the Go type it will be decoded
// into, and refuses what encoding/json would quietly accept: an object key
// that matches a field only when case is ignored ("Write" for "write"), a
// key given twice, nesting deeper than maxSpecDepth. Values whose type
// decodes itself (json.Unmarshaler) are checked for duplicates only.
func checkKeys(data []byte, t reflect.Type) error {
	dec := jsontext.NewDecoder(bytes.NewReader(data), jsontext.AllowDuplicateNames(true))
	return walkValue(dec, t, "", 0)
}

func walkValue(dec *jsontext.Decoder, t reflect.Type, path string, depth int) error {
	if depth > maxSpecDepth {
		return fmt.Errorf("%s: nested more than %d levels", orRoot(path), maxSpecDepth)
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType)) {
		t = nil // the type reads its own JSON: only duplicates are checked below
	}
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	switch tok.Kind() {
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.PeekKind() != ']'; i++ {
			if err := walkValue(dec, elem, fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
	case '{':
		var fields map[string]reflect.Type
		var elem reflect.Type
		if t != nil {
			switch t.Kind() {
			case reflect.Struct:
				fields = jsonFields(t)
			case reflect.Map:
				elem = t.Elem()
			}
		}
		seen := map[string]bool{}
		for dec.PeekKind() != '}' {
			tok, err := dec.ReadToken()
			if err != nil {
				return err
			}
			key := tok.String()
			at := joinPath(path, key)
			if seen[key] {
				return fmt.Errorf("%s: given twice", at)
			}
			seen[key] = true
			next := elem
			if fields != nil {
				ft, ok := fields[key]
				if !ok {
					return unknownField(at, key, fields)
				}
				next = ft
			}
			if err := walkValue(dec, next, at, depth+1); err != nil {
				return err
			}
		}
	default:
		return nil // a scalar: encoding/json checks its type
	}
	_, err = dec.ReadToken() // the closing delimiter
	return err
}

func unknownField(at, key string, fields map[string]reflect.Type) error {
	for name := range fields {
		if strings.EqualFold(name, key) {
			return fmt.Errorf("%s: unknown field %q (field names are case-sensitive: did you mean %q?)", at, key, name)
		}
	}
	return fmt.Errorf("%s: unknown field %q", at, key)
}

// jsonFields maps the JSON names of a struct's fields to their types, as
// encoding/json sees them: tag names, embedded structs inlined.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for n, typ := range jsonFields(ft) {
					if _, ok := out[n]; !ok {
						out[n] = typ
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orRoot(path string) string {
	if path == "" {
		return "spec"
	}
	return path
}

// errTrailing is returned for data after the spec's one JSON value.
var errTrailing = errors.New("decode spec: trailing data after the spec")

// decodeStrict decodes data into v, strictly: exact field names, no
// unknown field, no duplicate key, one value only.
//
// A spec that is well formed (the usual case: the controller compiled it)
// is decoded in one pass by json/v2, which is case-sensitive, refuses
// duplicate and unknown names and trailing data. Only when that pass
// fails, or the spec nests deeper than it may, the key walk and
// encoding/json decide, so the result and the error are theirs: the fast
// pass only ever accepts what they accept.
func decodeStrict(data []byte, v any) error {
	if nestingWithin(data, maxSpecDepth) {
		if err := jsonv2.Unmarshal(data, v, jsonv2.RejectUnknownMembers(true)); err == nil {
			return nil
		}
		reflect.ValueOf(v).Elem().SetZero()
	}
	return decodeSlow(data, v)
}

// decodeSlow is the reference decoder: the key walk, then encoding/json.
func decodeSlow(data []byte, v any) error {
	if err := checkKeys(data, reflect.TypeOf(v)); err != nil {
		return fmt.Errorf("decode spec: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode spec: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errTrailing
	}
	return nil
}

// nestingWithin reports whether no array or object in data is opened more
// than max levels deep. It reads bytes only (strings skipped): a quick
// bound, not a parse.
func nestingWithin(data []byte, max int) bool {
	depth, inString, escaped := 0, false, false
	for _, c := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			if depth++; depth > max {
				return false
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return true
}
