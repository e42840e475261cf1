package modules

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// wide has a field of every shape the kinds' specs use.
type wide struct {
	Name   string            `json:"name"`
	Port   int               `json:"port,omitempty"`
	Mask   uint16            `json:"mask,omitempty"`
	On     bool              `json:"on"`
	Tags   []string          `json:"tags,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	Inner  *wideInner        `json:"inner,omitempty"`
	List   []wideInner       `json:"list,omitempty"`
	Either []selfDecoding    `json:"either,omitempty"`
	NoTag  string
	wideEmbedded
}

type wideInner struct {
	Level int      `json:"level"`
	Names []string `json:"names"`
}

type wideEmbedded struct {
	Extra string `json:"extra,omitempty"`
}

// selfDecoding reads a bare string or an object, as firewall.Allow does.
type selfDecoding struct {
	Service string `json:"service,omitempty"`
	Port    int    `json:"port,omitempty"`
}

func (s *selfDecoding) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &s.Service)
	}
	type plain selfDecoding
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode((*plain)(s))
}

var strictSeeds = []string{
	`{"name":"a","port":80,"on":true,"tags":["x"],"labels":{"k":"v"},"inner":{"level":1,"names":["n"]},"list":[{"level":2,"names":[]}],"either":["ssh",{"service":"dns","port":53}],"NoTag":"t","extra":"e"}`,
	`{"name":"a","Name":"b"}`, `{"NAME":"a"}`, `{"notag":"x"}`, `{"name":"a","name":"b"}`,
	`{"labels":{"k":"v","k":"w"}}`, `{"either":[{"Service":"x"}]}`, `{"either":[{"service":"x","service":"y"}]}`,
	`{"port":1e2}`, `{"port":1.0}`, `{"port":-1}`, `{"mask":70000}`, `{"port":"80"}`, `{"name":"\ud800"}`,
	`{"name":"a"} {}`, `{"name":"a"}x`, `{"private":"p"}`, `{"wideEmbedded":{}}`, `{"inner":null}`, `{"tags":null}`,
	`{"inner":{"level":1,"unknown":2}}`, `{"labels":{"a":{"b":1}}}`, "{\"name\":\"\xff\"}", `{"on":"true"}`,
	`{"list":[` + strings.Repeat(`{"level":1,"names":["a"]},`, 5) + `{"level":0,"names":null}]}`,
	strings.Repeat("[", 66) + strings.Repeat("]", 66),
}

// FuzzDecodeStrictFastAgrees: the one-pass decoder accepts only what the
// reference decoder (key walk + encoding/json) accepts, with the same
// result; when it refuses, the reference decides.
func FuzzDecodeStrictFastAgrees(f *testing.F) {
	for _, s := range strictSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast, slow wide
		fastErr := decodeStrict(data, &fast)
		slowErr := decodeSlow(data, &slow)
		if (fastErr == nil) != (slowErr == nil) {
			t.Fatalf("%q: decodeStrict err %v, reference err %v", data, fastErr, slowErr)
		}
		if fastErr == nil && !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: decodeStrict %+v, reference %+v", data, fast, slow)
		}
	})
}

func TestNestingWithin(t *testing.T) {
	tests := []struct {
		data string
		max  int
		want bool
	}{
		{`{}`, 1, true},
		{`{"a":[]}`, 1, false},
		{`{"a":"[[[["}`, 1, true},
		{`{"a":"\"[[["}`, 1, true},
		{`{"a":"\\"}`, 1, true},
		{`[[["x"]]]`, 3, true},
		{`[[[["x"]]]]`, 3, false},
	}
	for _, tt := range tests {
		if got := nestingWithin([]byte(tt.data), tt.max); got != tt.want {
			t.Errorf("nestingWithin(%s, %d) = %v, want %v", tt.data, tt.max, got, tt.want)
		}
	}
}
