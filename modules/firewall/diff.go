package firewall

import (
	"fmt"
	"slices"
	"strings"

	"github.com/alize-eple/alize/modules"
)

const tableID = "inet " + tableName

// diff compares the live table with the wanted one and says, for a
// technician, what applying would change. It is pure. Rules are compared
// by their kernel expressions, so a rule added, removed or changed by hand
// is seen, and so is a flushed ruleset.
func diff(have tableState, want *compiled) []modules.Change {
	return diffStates(have, want.state, want.keys, want.rs)
}

// diffStates compares two tables; wantKeys are the keys of want's rules,
// chain by chain (nil: computed here), and wantRS, when not nil, the
// ruleset want comes from, for the text of its rules.
func diffStates(have, want tableState, wantKeys [][]string, wantRS *ruleset) []modules.Change {
	if wantKeys == nil {
		for _, c := range want.chains {
			wantKeys = append(wantKeys, c.keys())
		}
	}
	switch {
	case !want.exists && !have.exists:
		return nil
	case !want.exists:
		return []modules.Change{{Op: modules.OpDelete, Resource: "table", ID: tableID, Summary: "remove the firewall table"}}
	case !have.exists:
		return []modules.Change{{Op: modules.OpCreate, Resource: "table", ID: tableID,
			Summary: fmt.Sprintf("create the firewall: %s, %s, %s, lifelines included", plural(len(want.chains), "chain"), plural(len(want.sets), "set"), plural(want.numRules(), "rule"))}}
	}
	var texts map[string]string // built only when a chain differs
	text := func(key string) string {
		if texts == nil {
			texts = map[string]string{}
			for i, c := range wantKeys {
				for j, k := range c {
					if wantRS != nil {
						texts[k] = wantRS.chains[i].rules[j].String()
					}
				}
			}
		}
		return texts[key]
	}
	var changes []modules.Change

	haveSets := map[string]setState{}
	for _, s := range have.sets {
		if !s.anonymous {
			haveSets[s.name] = s
		}
	}
	for _, w := range want.sets {
		h, ok := haveSets[w.name]
		delete(haveSets, w.name)
		id := tableID + " set " + w.name
		switch {
		case !ok:
			changes = append(changes, modules.Change{Op: modules.OpCreate, Resource: "set", ID: id, Summary: "create the set"})
		case setKey(h) != setKey(w):
			changes = append(changes, modules.Change{Op: modules.OpUpdate, Resource: "set", ID: id, Summary: setSummary(h, w)})
		}
	}
	for _, h := range have.sets {
		if _, extra := haveSets[h.name]; extra {
			changes = append(changes, modules.Change{Op: modules.OpDelete, Resource: "set", ID: tableID + " set " + h.name, Summary: "remove the set: the spec does not have it"})
		}
	}

	haveChains := map[string]chainState{}
	for _, c := range have.chains {
		haveChains[c.name] = c
	}
	for i, w := range want.chains {
		h, ok := haveChains[w.name]
		delete(haveChains, w.name)
		id := tableID + " chain " + w.name
		if !ok {
			changes = append(changes, modules.Change{Op: modules.OpCreate, Resource: "chain", ID: id, Summary: "create the chain with " + plural(len(w.rules), "rule")})
			continue
		}
		var parts []string
		if chainKey(h) != chainKey(w) {
			parts = append(parts, "hook, priority or policy")
		}
		if !rulesEqual(h.rules, w.rules) {
			parts = append(parts, rulesSummary(h.rules, w.rules, h.keys(), wantKeys[i], text)...)
		}
		if len(parts) > 0 {
			changes = append(changes, modules.Change{Op: modules.OpUpdate, Resource: "chain", ID: id, Summary: strings.Join(parts, "; ")})
		}
	}
	for _, h := range have.chains {
		if _, extra := haveChains[h.name]; extra {
			changes = append(changes, modules.Change{Op: modules.OpDelete, Resource: "chain", ID: tableID + " chain " + h.name, Summary: "remove the chain and its " + plural(len(h.rules), "rule") + ": the spec does not have it"})
		}
	}
	return changes
}

func setSummary(have, want setState) string {
	if have.keyType != want.keyType || have.interval != want.interval || have.keyLen != want.keyLen {
		return "type or flags differ"
	}
	h, w := entries(have), entries(want)
	add, del := 0, 0
	for k, n := range w {
		add += max(0, n-h[k])
	}
	for k, n := range h {
		del += max(0, n-w[k])
	}
	return fmt.Sprintf("entries differ: %d to add, %d to remove", add, del)
}

// entries counts a set's entries: for an interval set each interval
// (a start with the end that follows it), else each element.
func entries(s setState) map[string]int {
	m := map[string]int{}
	es := sortedElems(s)
	for i := 0; i < len(es); i++ {
		key := fmt.Sprintf("%x", es[i].Key)
		if s.interval && !es[i].IntervalEnd && i+1 < len(es) && es[i+1].IntervalEnd {
			key += fmt.Sprintf("-%x", es[i+1].Key)
			i++
		}
		m[key]++
	}
	return m
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// rulesSummary says which rules a chain lacks, which it has in excess,
// and whether the order differs.
func rulesSummary(have, want []ruleState, hk, wk []string, text func(key string) string) []string {
	pending := map[string]int{}
	for _, k := range hk {
		pending[k]++
	}
	var missing []string
	for i, k := range wk {
		if pending[k] > 0 {
			pending[k]--
			continue
		}
		missing = append(missing, describe(want[i], text(k)))
	}
	var extra []string
	for i, k := range hk {
		if pending[k] > 0 {
			pending[k]--
			extra = append(extra, describe(have[i], text(k)))
		}
	}
	var parts []string
	if len(missing) > 0 {
		parts = append(parts, fmt.Sprintf("add %s (%s)", plural(len(missing), "rule"), firstFew(missing)))
	}
	if len(extra) > 0 {
		parts = append(parts, fmt.Sprintf("remove %s (%s)", plural(len(extra), "rule"), firstFew(extra)))
	}
	if len(parts) == 0 && slices.Equal(hk, wk) {
		parts = append(parts, "rewrite the rules (they differ in details)")
	} else if len(parts) == 0 {
		parts = append(parts, "put the rules back in order")
	}
	return parts
}

func describe(r ruleState, text string) string {
	switch {
	case text != "":
		return text
	case r.comment() != "":
		return fmt.Sprintf("a changed rule %q", r.comment())
	}
	return "a rule added by hand"
}

func firstFew(list []string) string {
	const n = 3
	if len(list) <= n {
		return strings.Join(list, "; ")
	}
	return strings.Join(list[:n], "; ") + fmt.Sprintf("; and %d more", len(list)-n)
}
