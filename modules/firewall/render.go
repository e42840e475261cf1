package firewall

import (
	"fmt"
	"strings"
)

// renderHeader starts every rendered ruleset. The three table lines make
// `nft -f` replace the table atomically, as the kind's own batch does.
const renderHeader = `# Alizé firewall: the table this server's agent owns. Do not edit: the
# agent replaces it whole. Loading this file with nft -f swaps the table
# at once; no other table is touched.
table inet alize
delete table inet alize
`

// render writes a ruleset as nft text.
func (rs *ruleset) render() []byte {
	var b strings.Builder
	b.WriteString(renderHeader)
	b.WriteString("table inet " + tableName + " {\n")
	first := true
	sep := func() {
		if !first {
			b.WriteString("\n")
		}
		first = false
	}
	for _, s := range rs.sets {
		sep()
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n", s.name, s.keyType.Name)
		if s.interval {
			b.WriteString("\t\tflags interval\n")
		}
		if len(s.text) > 0 {
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(s.text, ", "))
		}
		b.WriteString("\t}\n")
	}
	for _, c := range rs.chains {
		sep()
		fmt.Fprintf(&b, "\tchain %s {\n", c.name)
		if base := c.base; base != nil {
			policy := "accept"
			if base.policy == 0 {
				policy = "drop"
			}
			fmt.Fprintf(&b, "\t\ttype %s hook %s priority %s; policy %s;\n", base.typ, base.hookName, base.prioName, policy)
		}
		for _, r := range c.rules {
			b.WriteString("\t\t" + r.String() + "\n")
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return []byte(b.String())
}
