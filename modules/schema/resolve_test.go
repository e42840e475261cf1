package schema

import (
	"encoding/json"
	"strings"
	"testing"
)

const levelsModule = `
name: levels
version: 1.0.0
kind: firewall
description: {fr: Niveaux, en: Levels}
variables:
  families:
    - name: main
      description: {fr: Principal, en: Main}
      variables:
        - {name: a, type: string, default: from-default, description: {fr: a, en: a}}
        - {name: b, type: string, default: from-default, description: {fr: b, en: b}}
        - {name: c, type: string, default: from-default, description: {fr: c, en: c}}
        - {name: d, type: string, default: from-default, description: {fr: d, en: d}}
        - {name: e, type: string, default: from-default, description: {fr: e, en: e}}
        - {name: f, type: string, default: from-default, description: {fr: f, en: f}}
        - {name: g, type: string, default: from-default, description: {fr: g, en: g}}
        - {name: none, type: port, description: {fr: none, en: none}}
        - {name: tuning, type: int, default: 3, hidden: true, description: {fr: t, en: t}}
        - {name: nets, type: cidr, list: true, description: {fr: n, en: n}}
        - {name: pw, type: secret, mandatory: true, description: {fr: pw, en: pw}}
spec:
  a: "${a}"
  pw: "${pw}"
`

func TestResolveOrder(t *testing.T) {
	m := mustParse(t, []byte(levelsModule))
	levels := []Level{
		{Name: "server", Values: map[string]any{"a": "server"}},
		{Name: "establishment", Values: map[string]any{"a": "establishment", "b": "establishment", "nets": []string{"10.0.0.0/8"}}},
		{Name: "group:lycees-pro", Values: map[string]any{"a": "g1", "b": "g1", "c": "g1"}},
		{Name: "group:rep-plus", Values: map[string]any{"a": "g2", "b": "g2", "c": "g2", "d": "g2"}},
		{Name: "academy", Values: map[string]any{"a": "academy", "b": "academy", "c": "academy", "d": "academy", "e": "academy", "pw": "s3cret-bind"}},
		{Name: "fleet", Values: map[string]any{"a": "fleet", "b": "fleet", "c": "fleet", "d": "fleet", "e": "fleet", "f": "fleet", "g": nil}},
	}
	r, err := Resolve(&m.Variables, levels)
	if err != nil {
		t.Fatal(err)
	}
	want := Resolved{
		"a":      {Value: "server", From: "server"},
		"b":      {Value: "establishment", From: "establishment"},
		"c":      {Value: "g1", From: "group:lycees-pro"},
		"d":      {Value: "g2", From: "group:rep-plus"},
		"e":      {Value: "academy", From: "academy"},
		"f":      {Value: "fleet", From: "fleet"},
		"g":      {Value: "from-default", From: FromDefault},
		"none":   {},
		"tuning": {Value: int64(3), From: FromDefault, Hidden: true},
		"nets":   {Value: []any{"10.0.0.0/8"}, From: "establishment"},
		"pw":     {Value: "secret://pw", From: "academy", Secret: true},
	}
	if diff := cmpDiff(want, r); diff != "" {
		t.Errorf("Resolve (-want +got):\n%s", diff)
	}
	if s, ok := r.Secret("pw"); !ok || s != "s3cret-bind" {
		t.Errorf(`Secret("pw") = %q, %v, want the academy's value`, s, ok)
	}
	if _, ok := r.Secret("a"); ok {
		t.Errorf(`Secret("a") found a secret in a string variable`)
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	m := mustParse(t, []byte(levelsModule))
	r, err := Resolve(&m.Variables, []Level{{Name: "server", Values: map[string]any{"pw": "s3cret-bind"}}})
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	values, err := r.ValuesJSON()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Compile(m, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"String": r.String(), "JSON": string(js), "ValuesJSON": string(values), "spec": string(c.Spec)} {
		if strings.Contains(out, "s3cret") {
			t.Errorf("%s shows the secret: %s", name, out)
		}
	}
	if !strings.Contains(r.String(), "pw = (secret) (server)\n") {
		t.Errorf("String() = %s, want a line pw = (secret) (server)", r)
	}
	if !strings.Contains(string(js), `"pw":{"value":"(secret)","from":"server","secret":true}`) {
		t.Errorf("JSON = %s, want pw shown as (secret)", js)
	}
	if !strings.Contains(r.String(), "tuning = 3 (default) [hidden]\n") || !strings.Contains(r.String(), "none = (no value)\n") {
		t.Errorf("String() = %s", r)
	}
}

func TestValuesJSON(t *testing.T) {
	m := mustParse(t, []byte(levelsModule))
	r, err := Resolve(&m.Variables, []Level{{Name: "server", Values: map[string]any{"pw": "x", "nets": []any{}}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.ValuesJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"a":"from-default","b":"from-default","c":"from-default","d":"from-default","e":"from-default","f":"from-default","g":"from-default","nets":[],"none":null,"pw":"secret://pw","tuning":3}`
	if string(got) != want {
		t.Errorf("ValuesJSON() = %s\nwant %s", got, want)
	}
}

func TestResolveErrors(t *testing.T) {
	m := mustParse(t, []byte(levelsModule))
	tests := []struct {
		name   string
		levels []Level
		want   []string
	}{
		{"every problem at once", []Level{
			{Name: "server", Values: map[string]any{"nets": []any{"10.0.0.0/8", "10.0.0.1/8"}, "zz": 1}},
			{Name: "establishment", Values: map[string]any{"none": 0, "tuning": "3"}},
		}, []string{
			`server.nets[1]: "10.0.0.1/8" is not a CIDR: host bits are set (the network is 10.0.0.0/8)`,
			`server.zz: unknown variable: not in the module's dictionary`,
			`establishment.none: 0 is not a port (1-65535)`,
			`establishment.tuning: "3" must be an integer`,
			`pw: mandatory variable has no value at any level`,
		}},
		{"secret never quoted", []Level{{Name: "server", Values: map[string]any{"pw": "secret://stolen"}}},
			[]string{`server.pw: a secret value must not start with secret://`, `pw: mandatory variable has no value at any level`}},
		{"empty mandatory", []Level{{Name: "server", Values: map[string]any{"pw": ""}}},
			[]string{`server.pw: a secret must not be empty`, `pw: mandatory variable has no value at any level`}},
		{"level names", []Level{{Name: "", Values: nil}, {Name: "default"}, {Name: "x", Values: map[string]any{"pw": "p"}}, {Name: "x"}},
			[]string{`levels[0]: a level needs a name`, `levels[1]: level name "default" is kept for the dictionary's defaults`, `levels[3]: level "x" given twice`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Resolve(&m.Variables, tt.levels)
			if err == nil {
				t.Fatal("Resolve: no error")
			}
			if diff := cmpDiff(strings.Join(tt.want, "\n"), err.Error()); diff != "" {
				t.Errorf("Resolve error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolveFromJSONLevels(t *testing.T) {
	// Levels as a controller reads them back from its store: JSON numbers
	// are float64.
	m := mustParse(t, []byte(levelsModule))
	var levels []Level
	if err := json.Unmarshal([]byte(`[{"name":"server","values":{"tuning":7,"pw":"p","nets":["10.0.0.0/8"]}}]`), &levels); err != nil {
		t.Fatal(err)
	}
	r, err := Resolve(&m.Variables, levels)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmpDiff(Value{Value: int64(7), From: "server", Hidden: true}, r["tuning"]); diff != "" {
		t.Errorf("tuning (-want +got):\n%s", diff)
	}
}
