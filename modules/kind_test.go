package modules_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/alize-eple/alize/modules"
)

type motd struct {
	Text  string `json:"text"`
	Lines int    `json:"lines,omitempty"`
}

type motdKind struct{}

func (motdKind) Name() string { return "motd" }
func (motdKind) Validate(want motd) error {
	var errs modules.FieldErrors
	if want.Text == "" {
		errs.Add("text", "must not be empty")
	}
	if want.Lines < 0 {
		errs.Add("lines", "must be 0 or more, not %d", want.Lines)
	}
	return errs.Err()
}

func TestCheckerFor(t *testing.T) {
	check := modules.CheckerFor[motd](motdKind{})
	tests := []struct {
		spec string
		want string // fragment of the error; "" for none
	}{
		{`{"text":"Bienvenue"}`, ""},
		{`{"text":"Bienvenue","colour":"red"}`, `unknown field "colour"`},
		{`{"text":"Bienvenue"} {"text":"again"}`, "trailing data"},
		{`{"text":1}`, "cannot unmarshal number"},
		{`{"text":"","lines":-2}`, "motd: text: must not be empty\nlines: must be 0 or more, not -2"},
		{`{"Text":"Bienvenue"}`, `Text: unknown field "Text" (field names are case-sensitive: did you mean "text"?)`},
		{`{"text":"Bienvenue","text":"Au revoir"}`, "text: given twice"},
		{`{"text":"a","lines":1,"lines":2}`, "lines: given twice"},
		{strings.Repeat("[", 70) + strings.Repeat("]", 70), "nested more than 64 levels"},
	}
	for _, tt := range tests {
		err := check([]byte(tt.spec))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("check(%s) = %v, want nil", tt.spec, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("check(%s) = %v, want an error containing %q", tt.spec, err, tt.want)
		}
	}
}

func TestFieldErrorsKeepEveryProblem(t *testing.T) {
	err := motdKind{}.Validate(motd{Lines: -1})
	var fe modules.FieldError
	if !errors.As(err, &fe) || fe.Path != "text" {
		t.Fatalf("errors.As(%v) = %v, want the first FieldError at path text", err, fe)
	}
	var all modules.FieldErrors
	if !errors.As(err, &all) || len(all) != 2 {
		t.Errorf("errors.As(FieldErrors) = %v, want 2 problems", all)
	}
	if (modules.FieldErrors{}).Err() != nil {
		t.Error("no problems must give a nil error")
	}
}

func TestPlanAndResult(t *testing.T) {
	if !(modules.Plan{Kind: "motd"}).Empty() {
		t.Error("a plan without changes must be empty")
	}
	c := modules.Change{Op: modules.OpCreate, Resource: "share", ID: "commun", Summary: "new share for all staff"}
	if got := c.String(); got != "create share commun: new share for all staff" {
		t.Errorf("Change.String() = %q", got)
	}
	r := modules.Result{Changes: []modules.ChangeResult{{Change: c, Status: modules.StatusApplied}}}
	if r.Failed() {
		t.Error("a result with only applied changes is not failed")
	}
	r.Changes = append(r.Changes, modules.ChangeResult{Change: c, Status: modules.StatusFailed, Error: "disk full"})
	if !r.Failed() {
		t.Error("a result with a failed change is failed")
	}
}

// FuzzDecodeSpec: decoding never panics, and what it accepts re-encodes
// to a spec it accepts again, equal.
func FuzzDecodeSpec(f *testing.F) {
	for _, seed := range []string{`{"text":"Bienvenue","lines":2}`, `{"Text":"x"}`, `{"text":"a","text":"b"}`, `[]`, `{"text":{"a":[1,2,{"b":null}]}}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := modules.DecodeSpec[motd](data)
		if err != nil {
			return
		}
		again, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		back, err := modules.DecodeSpec[motd](again)
		if err != nil || back != got {
			t.Fatalf("re-decode of %s = %+v, %v; want %+v", again, back, err, got)
		}
	})
}
