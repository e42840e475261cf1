package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Type is the type of a variable's value (of each element, for a list).
type Type string

// The variable types.
const (
	TypeString    Type = "string"     // any UTF-8 text, optionally matching a pattern
	TypeInt       Type = "int"        // a 64-bit integer, optionally within min/max
	TypeBool      Type = "bool"       // true or false
	TypePort      Type = "port"       // 1-65535
	TypePortRange Type = "port_range" // "1000-2000": low-high, 1 <= low <= high <= 65535
	TypeIPv4      Type = "ipv4"       // "10.0.0.1"
	TypeIPv6      Type = "ipv6"       // "2001:db8::1", no zone
	TypeCIDR      Type = "cidr"       // "10.0.0.0/8" or "2001:db8::/32": a network, no host bits set
	TypeHostname  Type = "hostname"   // one DNS label: "scribe"
	TypeDomain    Type = "domain"     // two labels or more: "alize.ac-versailles.fr"
	TypeInterface Type = "interface"  // a Linux network device name: "eth0", "enp3s0", "br-admin"
	TypeEmail     Type = "email"      // "dsi@ac-versailles.fr"
	TypeUAI       Type = "uai"        // "0951099D": 7 digits and the control letter
	TypeChoice    Type = "choice"     // one of the variable's choices
	TypeSecret    Type = "secret"     // never in a spec: compile writes a reference
)

// knownTypes lists the types in the order the documentation gives them.
var knownTypes = [...]Type{
	TypeString, TypeInt, TypeBool, TypePort, TypePortRange, TypeIPv4, TypeIPv6,
	TypeCIDR, TypeHostname, TypeDomain, TypeInterface, TypeEmail, TypeUAI,
	TypeChoice, TypeSecret,
}

func (t Type) known() bool {
	for _, k := range knownTypes {
		if t == k {
			return true
		}
	}
	return false
}

// numeric reports whether values of t are integers (and min/max apply).
func (t Type) numeric() bool { return t == TypeInt || t == TypePort }

// textual reports whether values of t are strings a pattern may constrain.
func (t Type) textual() bool {
	switch t {
	case TypeString, TypeHostname, TypeDomain, TypeInterface, TypeEmail, TypeSecret:
		return true
	}
	return false
}

// SecretPrefix starts every secret reference: compile writes
// "secret://<variable>" where the spec uses a secret variable, and the
// agent's kinds replace it with the unsealed value.
const SecretPrefix = "secret://"

// SecretRef returns the reference compile writes for a secret variable.
func SecretRef(name string) string { return SecretPrefix + name }

// uaiLetters are the 23 control letters: A to Z without I, O and Q.
const uaiLetters = "ABCDEFGHJKLMNPRSTUVWXYZ"

// ValidUAI checks an establishment's UAI (ex-RNE): 7 digits then the
// control letter, the 7-digit number modulo 23 indexing A–Z without I, O,
// Q (0 → A). The letter must be uppercase: "0951099D", not "0951099d".
func ValidUAI(s string) error {
	if len(s) != 8 {
		return fmt.Errorf("UAI %q: must be 7 digits and a control letter, like 0951099D", s)
	}
	n := 0
	for i := 0; i < 7; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return fmt.Errorf("UAI %q: must be 7 digits and a control letter, like 0951099D", s)
		}
		n = n*10 + int(c-'0')
	}
	want := uaiLetters[n%23]
	got := s[7]
	switch {
	case got == want:
		return nil
	case got >= 'a' && got <= 'z' && got-'a'+'A' == want:
		return fmt.Errorf("UAI %q: the control letter must be uppercase: %s%c", s, s[:7], want)
	case got < 'A' || got > 'Z':
		return fmt.Errorf("UAI %q: must be 7 digits and a control letter, like 0951099D", s)
	}
	return fmt.Errorf("UAI %q: control letter is %c, expected %c", s, got, want)
}

// normalize checks a value against a variable and returns it in its typed
// form: string, int64, bool, or []any of those for a list; nil stays nil
// (no value). It accepts the Go values a caller may hold: any integer
// type, float64 and json.Number with an integral value, []string, []int…
//
// Messages never quote a secret's value.
func (v *Variable) normalize(x any) (any, error) {
	if x == nil {
		return nil, nil
	}
	if !v.List {
		return v.element(x)
	}
	switch l := x.(type) {
	case []any:
		out, copied := l, false
		for i, e := range l {
			ne, err := v.element(e)
			if err != nil {
				return nil, elemError{index: i, err: err}
			}
			if !sameScalar(ne, e) {
				if !copied {
					out, copied = slices.Clone(l), true
				}
				out[i] = ne
			}
		}
		return out, nil
	case []string:
		return v.normalize(anySlice(l))
	case []int:
		return v.normalize(anySlice(l))
	case []int64:
		return v.normalize(anySlice(l))
	case []bool:
		return v.normalize(anySlice(l))
	}
	return nil, fmt.Errorf("must be a list of %s", v.Type)
}

// elemError is a problem with one element of a list value.
type elemError struct {
	index int
	err   error
}

func (e elemError) Error() string { return fmt.Sprintf("[%d]: %v", e.index, e.err) }
func (e elemError) Unwrap() error { return e.err }

// valuePath returns the path a value error concerns: base, or base[i] for
// one element of a list.
func valuePath(base string, err error) string {
	if e, ok := err.(elemError); ok {
		return index(base, e.index)
	}
	return base
}

// valueMessage returns a value error's message without the element index
// valuePath put in the path.
func valueMessage(err error) string {
	if e, ok := err.(elemError); ok {
		return e.err.Error()
	}
	return err.Error()
}

// sameScalar reports whether normalizing e returned e itself, so that a
// list already typed is not copied.
func sameScalar(ne, e any) bool {
	switch ne := ne.(type) {
	case string:
		s, ok := e.(string)
		return ok && s == ne
	case int64:
		i, ok := e.(int64)
		return ok && i == ne
	case bool:
		b, ok := e.(bool)
		return ok && b == ne
	}
	return false
}

func anySlice[T any](l []T) []any {
	out := make([]any, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// element checks one scalar value of the variable's type.
func (v *Variable) element(x any) (any, error) {
	switch v.Type {
	case TypeBool:
		b, ok := x.(bool)
		if !ok {
			return nil, errors.New("must be true or false")
		}
		return b, nil
	case TypeInt, TypePort:
		i, ok := toInt64(x)
		if !ok {
			return nil, fmt.Errorf("%s must be an integer", describe(x))
		}
		if v.Type == TypePort && (i < 1 || i > 65535) {
			return nil, fmt.Errorf("%d is not a port (1-65535)", i)
		}
		if v.Min != nil && i < *v.Min {
			return nil, fmt.Errorf("%d is below the minimum %d", i, *v.Min)
		}
		if v.Max != nil && i > *v.Max {
			return nil, fmt.Errorf("%d is above the maximum %d", i, *v.Max)
		}
		return i, nil
	}
	s, ok := x.(string)
	if !ok {
		if v.Type == TypeSecret {
			return nil, errors.New("must be a string")
		}
		return nil, fmt.Errorf("%s must be a string", describe(x))
	}
	if !utf8.ValidString(s) {
		return nil, errors.New("is not valid UTF-8")
	}
	if v.Type == TypeSecret {
		if s == "" {
			return nil, errors.New("a secret must not be empty")
		}
		if strings.HasPrefix(s, SecretPrefix) && s != SecretRef(v.Name) {
			return nil, fmt.Errorf("a secret value must not start with %s", SecretPrefix)
		}
		if s != SecretRef(v.Name) && v.re != nil && !fullMatch(v.re, s) {
			return nil, fmt.Errorf("does not match pattern %s", v.Pattern)
		}
		return s, nil
	}
	if strings.HasPrefix(s, SecretPrefix) {
		return nil, fmt.Errorf("%q: a value must not start with %s (kept for secret references)", s, SecretPrefix)
	}
	if err := checkText(v.Type, s); err != nil {
		return nil, err
	}
	if v.Type == TypeChoice && !v.isChoice(s) {
		return nil, fmt.Errorf("%q is not one of: %s", s, strings.Join(v.Choices, ", "))
	}
	if v.re != nil && !fullMatch(v.re, s) {
		return nil, fmt.Errorf("%q does not match pattern %s", s, v.Pattern)
	}
	return s, nil
}

// fullMatch reports whether re, set to leftmost-longest, matches the whole
// of s: a match of the whole exists exactly when the leftmost-longest
// match starts at 0 and ends at len(s).
func fullMatch(re *regexp.Regexp, s string) bool {
	loc := re.FindStringIndex(s)
	return loc != nil && loc[0] == 0 && loc[1] == len(s)
}

func (v *Variable) isChoice(s string) bool {
	if v.choices != nil {
		_, ok := v.choices[s]
		return ok
	}
	for _, c := range v.Choices {
		if c == s {
			return true
		}
	}
	return false
}

// describe quotes a value for a message.
func describe(x any) string {
	switch x := x.(type) {
	case string:
		return strconv.Quote(x)
	case nil:
		return "null"
	case []any, []string, []int, []int64, []bool:
		return "a list"
	case map[string]any:
		return "a mapping"
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return fmt.Sprint(x)
}

// toInt64 accepts the integer forms a Go caller may hold.
func toInt64(x any) (int64, bool) {
	switch x := x.(type) {
	case int64:
		return x, true
	case int:
		return int64(x), true
	case int32:
		return int64(x), true
	case int16:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint:
		if uint64(x) > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	case float64:
		if x != math.Trunc(x) || math.Abs(x) >= maxSafeInt {
			return 0, false
		}
		return int64(x), true
	case json.Number:
		i, err := x.Int64()
		return i, err == nil
	}
	return 0, false
}

// checkText checks a string against a textual type (not secret, which
// has no form).
func checkText(t Type, s string) error {
	switch t {
	case TypeString, TypeChoice:
		return nil
	case TypePortRange:
		lo, hi, ok := strings.Cut(s, "-")
		l, err1 := strconv.Atoi(lo)
		h, err2 := strconv.Atoi(hi)
		if !ok || err1 != nil || err2 != nil || !plainDigits(lo) || !plainDigits(hi) ||
			l < 1 || h > 65535 || l > h {
			return fmt.Errorf("%q is not a port range (low-high, 1 <= low <= high <= 65535)", s)
		}
	case TypeIPv4:
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return fmt.Errorf("%q is not an IPv4 address", s)
		}
	case TypeIPv6:
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return fmt.Errorf("%q is not an IPv6 address", s)
		}
	case TypeCIDR:
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("%q is not a CIDR", s)
		}
		if p.Masked() != p {
			return fmt.Errorf("%q is not a CIDR: host bits are set (the network is %s)", s, p.Masked())
		}
	case TypeHostname:
		if !validLabel(s) {
			return fmt.Errorf("%q is not a hostname (one DNS label: letters, digits, '-', at most 63)", s)
		}
	case TypeDomain:
		if !validDomain(s) {
			return fmt.Errorf("%q is not a domain name", s)
		}
	case TypeInterface:
		if !validInterface(s) {
			return fmt.Errorf("%q is not a network interface name (1-15 characters, no '/', ':' or space)", s)
		}
	case TypeEmail:
		if !validEmail(s) {
			return fmt.Errorf("%q is not an email address", s)
		}
	case TypeUAI:
		return ValidUAI(s)
	}
	return nil
}

func plainDigits(s string) bool {
	if s == "" || len(s) > 5 || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validLabel checks one DNS label (RFC 1123): 1-63 letters, digits and
// hyphens, not starting or ending with a hyphen.
func validLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validDomain checks a fully qualified name of two labels or more, at most
// 253 characters, without the trailing dot; its last label is not all
// digits (that would be an IPv4 address).
func validDomain(s string) bool {
	if len(s) > 253 || !strings.Contains(s, ".") {
		return false
	}
	last := ""
	for label := range strings.SplitSeq(s, ".") {
		if !validLabel(label) {
			return false
		}
		last = label
	}
	return !plainDigitsAny(last)
}

func plainDigitsAny(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validInterface follows the kernel's dev_valid_name: 1-15 bytes, not "."
// or "..", no '/', ':' or white space; Alizé also asks for printable ASCII.
func validInterface(s string) bool {
	if len(s) == 0 || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '/' || c == ':' {
			return false
		}
	}
	return true
}

// validEmail checks a bare address, local@domain: a dot-atom local part of
// at most 64 characters and a domain name. Display names ("Name <a@b>")
// and quoted local parts are refused.
func validEmail(s string) bool {
	local, domain, ok := strings.Cut(s, "@")
	if !ok || len(local) == 0 || len(local) > 64 || !validDomain(domain) {
		return false
	}
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return false
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte(".!#$%&'*+/=?^_`{|}~-", c) >= 0 {
			continue
		}
		return false
	}
	return true
}
