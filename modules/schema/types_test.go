package schema

import (
	"encoding/json"
	"regexp"
	"testing"
)

func TestValidUAI(t *testing.T) {
	tests := []struct {
		uai  string
		want string // "" for valid
	}{
		{"0951099D", ""},
		{"0750680G", ""}, // 750680 = 23 × 32638 + 6, and G is the seventh letter
		{"0000000A", ""},
		{"0000022Z", ""},
		{"0951099E", `UAI "0951099E": control letter is E, expected D`},
		{"0951099d", `UAI "0951099d": the control letter must be uppercase: 0951099D`},
		{"0951099", `UAI "0951099": must be 7 digits and a control letter, like 0951099D`},
		{"0951099DD", `UAI "0951099DD": must be 7 digits and a control letter, like 0951099D`},
		{"095I099D", `UAI "095I099D": must be 7 digits and a control letter, like 0951099D`},
		{"09510991", `UAI "09510991": must be 7 digits and a control letter, like 0951099D`},
		{"0000008I", `UAI "0000008I": control letter is I, expected J`},
		{"", `UAI "": must be 7 digits and a control letter, like 0951099D`},
	}
	for _, tt := range tests {
		err := ValidUAI(tt.uai)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("ValidUAI(%q) = %q, want %q", tt.uai, got, tt.want)
		}
	}
	if len(uaiLetters) != 23 {
		t.Errorf("uaiLetters has %d letters, want 23", len(uaiLetters))
	}
}

func TestTypes(t *testing.T) {
	one := int64(1)
	ten := int64(10)
	tests := []struct {
		v    Variable
		in   any
		want any    // typed value when err == ""
		err  string // message when refused
	}{
		{Variable{Type: TypeString}, "école", "école", ""},
		{Variable{Type: TypeString}, "", "", ""},
		{Variable{Type: TypeString}, 12, nil, "12 must be a string"},
		{Variable{Type: TypeString}, "secret://x", nil, `"secret://x": a value must not start with secret:// (kept for secret references)`},
		{Variable{Type: TypeString, Pattern: "[a-z]+", re: longest(`[a-z]+`)}, "abc1", nil, `"abc1" does not match pattern [a-z]+`},
		{Variable{Type: TypeInt}, 12, int64(12), ""},
		{Variable{Type: TypeInt}, uint8(12), int64(12), ""},
		{Variable{Type: TypeInt}, 12.0, int64(12), ""},
		{Variable{Type: TypeInt}, json.Number("-7"), int64(-7), ""},
		{Variable{Type: TypeInt}, 1.5, nil, "1.5 must be an integer"},
		{Variable{Type: TypeInt}, "12", nil, `"12" must be an integer`},
		{Variable{Type: TypeInt}, true, nil, "true must be an integer"},
		{Variable{Type: TypeInt}, uint64(1 << 63), nil, "9223372036854775808 must be an integer"},
		{Variable{Type: TypeInt, Min: &one, Max: &ten}, 0, nil, "0 is below the minimum 1"},
		{Variable{Type: TypeInt, Min: &one, Max: &ten}, 11, nil, "11 is above the maximum 10"},
		{Variable{Type: TypeBool}, true, true, ""},
		{Variable{Type: TypeBool}, "true", nil, "must be true or false"},
		{Variable{Type: TypePort}, 443, int64(443), ""},
		{Variable{Type: TypePort}, 0, nil, "0 is not a port (1-65535)"},
		{Variable{Type: TypePort}, 65536, nil, "65536 is not a port (1-65535)"},
		{Variable{Type: TypePortRange}, "1000-2000", "1000-2000", ""},
		{Variable{Type: TypePortRange}, "80-80", "80-80", ""},
		{Variable{Type: TypePortRange}, "2000-1000", nil, `"2000-1000" is not a port range (low-high, 1 <= low <= high <= 65535)`},
		{Variable{Type: TypePortRange}, "0-10", nil, `"0-10" is not a port range (low-high, 1 <= low <= high <= 65535)`},
		{Variable{Type: TypePortRange}, "080-90", nil, `"080-90" is not a port range (low-high, 1 <= low <= high <= 65535)`},
		{Variable{Type: TypePortRange}, "80", nil, `"80" is not a port range (low-high, 1 <= low <= high <= 65535)`},
		{Variable{Type: TypePortRange}, "+80-90", nil, `"+80-90" is not a port range (low-high, 1 <= low <= high <= 65535)`},
		{Variable{Type: TypeIPv4}, "10.0.0.1", "10.0.0.1", ""},
		{Variable{Type: TypeIPv4}, "::1", nil, `"::1" is not an IPv4 address`},
		{Variable{Type: TypeIPv4}, "010.0.0.1", nil, `"010.0.0.1" is not an IPv4 address`},
		{Variable{Type: TypeIPv6}, "2001:db8::1", "2001:db8::1", ""},
		{Variable{Type: TypeIPv6}, "fe80::1%eth0", nil, `"fe80::1%eth0" is not an IPv6 address`},
		{Variable{Type: TypeIPv6}, "10.0.0.1", nil, `"10.0.0.1" is not an IPv6 address`},
		{Variable{Type: TypeCIDR}, "10.0.0.0/8", "10.0.0.0/8", ""},
		{Variable{Type: TypeCIDR}, "2001:db8::/32", "2001:db8::/32", ""},
		{Variable{Type: TypeCIDR}, "10.0.0.0/33", nil, `"10.0.0.0/33" is not a CIDR`},
		{Variable{Type: TypeCIDR}, "10.0.0.0", nil, `"10.0.0.0" is not a CIDR`},
		{Variable{Type: TypeHostname}, "scribe-1", "scribe-1", ""},
		{Variable{Type: TypeHostname}, "scribe.lan", nil, `"scribe.lan" is not a hostname (one DNS label: letters, digits, '-', at most 63)`},
		{Variable{Type: TypeHostname}, "-scribe", nil, `"-scribe" is not a hostname (one DNS label: letters, digits, '-', at most 63)`},
		{Variable{Type: TypeDomain}, "alize.ac-versailles.fr", "alize.ac-versailles.fr", ""},
		{Variable{Type: TypeDomain}, "localhost", nil, `"localhost" is not a domain name`},
		{Variable{Type: TypeDomain}, "10.0.0.1", nil, `"10.0.0.1" is not a domain name`},
		{Variable{Type: TypeDomain}, "a..fr", nil, `"a..fr" is not a domain name`},
		{Variable{Type: TypeInterface}, "enp3s0", "enp3s0", ""},
		{Variable{Type: TypeInterface}, "br-admin.100", "br-admin.100", ""},
		{Variable{Type: TypeInterface}, "eth0:1", nil, `"eth0:1" is not a network interface name (1-15 characters, no '/', ':' or space)`},
		{Variable{Type: TypeInterface}, "a/b", nil, `"a/b" is not a network interface name (1-15 characters, no '/', ':' or space)`},
		{Variable{Type: TypeInterface}, "eth 0", nil, `"eth 0" is not a network interface name (1-15 characters, no '/', ':' or space)`},
		{Variable{Type: TypeInterface}, "..", nil, `".." is not a network interface name (1-15 characters, no '/', ':' or space)`},
		{Variable{Type: TypeInterface}, "abcdefghijklmnop", nil, `"abcdefghijklmnop" is not a network interface name (1-15 characters, no '/', ':' or space)`},
		{Variable{Type: TypeEmail}, "dsi@ac-versailles.fr", "dsi@ac-versailles.fr", ""},
		{Variable{Type: TypeEmail}, "DSI <dsi@ac-versailles.fr>", nil, `"DSI <dsi@ac-versailles.fr>" is not an email address`},
		{Variable{Type: TypeEmail}, "a.@ac-versailles.fr", nil, `"a.@ac-versailles.fr" is not an email address`},
		{Variable{Type: TypeEmail}, "dsi@localhost", nil, `"dsi@localhost" is not an email address`},
		{Variable{Type: TypeUAI}, "0951099D", "0951099D", ""},
		{Variable{Type: TypeUAI}, "0951099E", nil, `UAI "0951099E": control letter is E, expected D`},
		{Variable{Type: TypeChoice, Choices: []string{"a", "b"}}, "b", "b", ""},
		{Variable{Type: TypeChoice, Choices: []string{"a", "b"}}, "c", nil, `"c" is not one of: a, b`},
		{Variable{Name: "pw", Type: TypeSecret}, "hunter2", "hunter2", ""},
		{Variable{Name: "pw", Type: TypeSecret}, "secret://pw", "secret://pw", ""},
		{Variable{Name: "pw", Type: TypeSecret}, "secret://other", nil, "a secret value must not start with secret://"},
		{Variable{Name: "pw", Type: TypeSecret}, "", nil, "a secret must not be empty"},
		{Variable{Name: "pw", Type: TypeSecret}, 1234, nil, "must be a string"},
		{Variable{Name: "pw", Type: TypeSecret, Pattern: ".{12,}", re: longest(`.{12,}`)}, "hunter2", nil, "does not match pattern .{12,}"},
		{Variable{Type: TypePort, List: true}, []any{80, int64(443)}, []any{int64(80), int64(443)}, ""},
		{Variable{Type: TypePort, List: true}, []int{80, 443}, []any{int64(80), int64(443)}, ""},
		{Variable{Type: TypeCIDR, List: true}, []string{}, []any{}, ""},
		{Variable{Type: TypeCIDR, List: true}, []string{"10.0.0.0/8", "x"}, nil, `[1]: "x" is not a CIDR`},
		{Variable{Type: TypeCIDR, List: true}, "10.0.0.0/8", nil, "must be a list of cidr"},
		{Variable{Type: TypeCIDR}, nil, nil, ""},
	}
	for _, tt := range tests {
		got, err := tt.v.normalize(tt.in)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if gotErr != tt.err {
			t.Errorf("%s: normalize(%#v) error = %q, want %q", tt.v.Type, tt.in, gotErr, tt.err)
			continue
		}
		if diff := cmpDiff(tt.want, got); diff != "" {
			t.Errorf("%s: normalize(%#v) (-want +got):\n%s", tt.v.Type, tt.in, diff)
		}
	}
}

func TestNormalizeKeepsTypedList(t *testing.T) {
	v := Variable{Type: TypeCIDR, List: true}
	in := []any{"10.0.0.0/8", "192.168.0.0/16"}
	got, err := v.normalize(in)
	if err != nil {
		t.Fatal(err)
	}
	if &got.([]any)[0] != &in[0] {
		t.Errorf("normalize copied a list that was already typed")
	}
}

func longest(p string) *regexp.Regexp {
	re := regexp.MustCompile(p)
	re.Longest()
	return re
}

func TestPatternMatchesWhole(t *testing.T) {
	tests := []struct {
		pattern, value string
		want           bool
	}{
		{`a|ab`, "ab", true},
		{`a|ab`, "abc", false},
		{`[a-z]+`, "abc1", false},
		{`[a-z]+`, "1abc", false},
		{`b`, "ab", false},
		{`a*`, "", true},
		{`(?i)scribe`, "SCRIBE", true},
		{`^x$`, "x", true},
		{`x|y$`, "xy", false},
	}
	for _, tt := range tests {
		if got := fullMatch(longest(tt.pattern), tt.value); got != tt.want {
			t.Errorf("fullMatch(%q, %q) = %v, want %v", tt.pattern, tt.value, got, tt.want)
		}
	}
}
