package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/modules"
	"github.com/alize-eple/alize/modules/manifest"
	"github.com/alize-eple/alize/modules/schema"
)

// PlanResult is what alize plan shows: per module, what would change, and
// the values its variables take with where each comes from.
type PlanResult struct {
	Source  string       `json:"source"` // "last-known-good manifest" or the file's path
	Serial  uint64       `json:"serial"`
	Note    string       `json:"note,omitempty"` // e.g. the daemon would refuse this manifest
	Outcome api.Outcome  `json:"outcome"`        // compliant (nothing to do), drift (changes), failing
	Modules []PlanModule `json:"modules"`
	TookMS  int64        `json:"took_ms"` // observing and planning every kind (side by side)
}

// PlanModule is one module's plan.
type PlanModule struct {
	Kind      string           `json:"kind"`
	Module    string           `json:"module"`
	Version   string           `json:"version"`
	Mode      string           `json:"mode"`
	Status    api.KindStatus   `json:"status"` // applied (nothing to change), drifted (changes), failing, skipped
	Changes   []modules.Change `json:"changes,omitempty"`
	Error     string           `json:"error,omitempty"`
	Variables []Variable       `json:"variables,omitempty"`
	TookMS    int64            `json:"took_ms"` // how long observing and planning took
}

// Variable is a module variable's value for this server.
type Variable struct {
	Name  string `json:"name"`
	Value string `json:"value"` // JSON; "(secret)" for a secret
	// From says where the value comes from: the level the controller took
	// it from ("server", "establishment", "group:lycees", "academy",
	// "fleet", "inventory" — the establishment's record), "module default",
	// or "none" (no value). A manifest from a controller that does not say
	// gives "controller".
	From string `json:"from"`
}

// Where a variable's value comes from.
const (
	FromDefault    = "module default"
	FromController = "controller"
	FromNone       = "none"
)

// Plan says what applying would change now, changing nothing: for the
// last-known-good manifest, or for envelope when it is not nil (a
// manifest file: verified against the pinned root, for this server; an
// older serial than the last-known-good is noted, not refused).
func (a *Agent) Plan(ctx context.Context, envelope []byte, source string) (PlanResult, error) {
	if err := a.load(); err != nil {
		return PlanResult{}, err
	}
	st := a.lastKnownGood()
	res := PlanResult{Source: "last-known-good manifest"}
	if envelope != nil {
		res.Source = source
		m, next, err := a.verifyFetching(ctx, envelope, manifest.State{})
		if settled(err) {
			return PlanResult{}, err
		}
		if err != nil {
			return PlanResult{}, refusal(err)
		}
		if st != nil && m.Serial <= st.Serial {
			res.Note = fmt.Sprintf("serial %d is not above the applied %d: the daemon would refuse this manifest (rollback)", m.Serial, st.Serial)
		}
		st = newStored(envelope, "", a.now(), m, next)
	}
	if st == nil {
		return PlanResult{}, ErrNoManifest
	}
	res.Serial = st.Serial
	eng, err := a.kinds()
	if err != nil {
		return PlanResult{}, err
	}
	in := a.inputs(ctx, st, true)
	run := eng.Plan(ctx, a.modules(st), in)
	res.Outcome = run.Outcome
	res.TookMS = run.Finished.Sub(run.Started).Milliseconds()
	byName := map[string]StoredModule{}
	for _, m := range st.Modules {
		byName[m.Name] = m
	}
	for _, k := range run.Kinds {
		pm := PlanModule{Kind: k.Kind, Module: k.Module, Version: k.Version, Mode: string(k.Mode), Status: k.Status, Changes: k.Plan, Error: k.Error, TookMS: k.Took.Milliseconds()}
		pm.Variables = variables(byName[k.Module])
		res.Modules = append(res.Modules, pm)
	}
	return res, nil
}

// variables lists a module's variables with their values and origins.
func variables(m StoredModule) []Variable {
	def, err := schema.ParseModule(m.Definition)
	if err != nil {
		return nil
	}
	var values map[string]json.RawMessage
	if json.Unmarshal(m.Values, &values) != nil {
		return nil
	}
	var out []Variable
	for _, v := range def.Variables.Variables() {
		raw, ok := values[v.Name]
		x := Variable{Name: v.Name, Value: string(raw)}
		switch {
		case v.Type == schema.TypeSecret:
			x.Value, x.From = "(secret)", FromController
			if !ok || string(raw) == "null" {
				x.Value, x.From = "(none)", FromNone
			}
		case !ok || string(raw) == "null":
			x.Value, x.From = "(none)", FromNone
		case m.Sources == nil && v.Default != nil && sameJSON(raw, v.Default):
			x.From = FromDefault
		default:
			x.From = FromController
		}
		if src, ok := m.Sources[v.Name]; ok && x.From != FromNone {
			x.From = src
			if src == schema.FromDefault {
				x.From = FromDefault
			}
		}
		out = append(out, x)
	}
	return out
}

// sameJSON compares a JSON value with a Go value, as JSON.
func sameJSON(raw json.RawMessage, v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		return false
	}
	var x, y any
	if json.Unmarshal(raw, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// IsRefused reports whether err is a refused manifest.
func IsRefused(err error) bool {
	var re *RefusedError
	return errors.As(err, &re)
}
