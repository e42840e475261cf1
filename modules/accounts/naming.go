package accounts

import (
	"strconv"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"github.com/alize-eple/alize/modules/accounts/roster"
)

// loginBase is the login a person gets when nobody has it yet:
// prenom.nom; over max characters p.nom, then prenom.n, then p.nom cut.
// Accents are removed, case lowered; spaces and hyphens inside a name
// become one hyphen, apostrophes and other signs go (see roster.Slug). A
// login starts with a letter: leading digits are dropped, and a name
// without any letter gives the role's word (eleve, prof, personnel).
func loginBase(first, last string, role roster.Role, max int) string {
	return splitName(first, last, role).login(max)
}

// nameParts are a person's names folded for a login.
type nameParts struct {
	f, l string
	role roster.Role
}

func splitName(first, last string, role roster.Role) nameParts {
	f, l := letterFirst(roster.Slug(first)), roster.Slug(last)
	if f == "" {
		l = letterFirst(l)
	}
	return nameParts{f: f, l: l, role: role}
}

func (n nameParts) login(max int) string {
	f, l := n.f, n.l
	var forms []string
	switch {
	case f != "" && l != "":
		forms = []string{f + "." + l, f[:1] + "." + l, f + "." + l[:1], f[:1] + "." + l}
	case f != "":
		forms = []string{f}
	case l != "":
		forms = []string{l}
	default:
		forms = []string{roleWord(n.role)}
	}
	for _, s := range forms[:len(forms)-1] {
		if len(s) <= max {
			return s
		}
	}
	return cut(forms[len(forms)-1], max)
}

// chooseLogin returns the login of a new person: loginBase, or when
// taken holds it, the same rules for a login shortened to leave room for
// a number, then 1, 2…: jean.dupont1, and j.saint-exupery1 for a
// jean-baptiste.saint-exupery already cut. taken holds lowercase names.
func chooseLogin(first, last string, role roster.Role, max int, taken func(string) bool) string {
	parts := splitName(first, last, role)
	if base := parts.login(max); !taken(base) {
		return base
	}
	for n := 1; ; n++ {
		digits := strconv.Itoa(n)
		if s := parts.login(max-len(digits)) + digits; !taken(s) {
			return s
		}
	}
}

// cut shortens s to at most max bytes (s is ASCII) and drops the dots and
// hyphens it would end with.
func cut(s string, max int) string {
	if len(s) > max {
		s = s[:max]
	}
	return strings.TrimRight(s, ".-")
}

func letterFirst(s string) string {
	return strings.TrimLeft(s, "0123456789-")
}

func roleWord(r roster.Role) string {
	switch r {
	case roster.Teacher:
		return "prof"
	case roster.Staff:
		return "personnel"
	}
	return "eleve"
}

// validLogin reports whether s is a login the kind may give: a lowercase
// letter, then letters and digits in parts joined by single dots or
// hyphens, at most max characters.
func validLogin(s string, max int) bool {
	if s == "" || len(s) > max || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	prev := byte('a')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
		case c == '.' || c == '-':
			if prev == '.' || prev == '-' {
				return false
			}
		default:
			return false
		}
		prev = c
	}
	return prev != '.' && prev != '-'
}

// reservedLogin reports whether a login must never be given: system and
// well-known Windows names.
func reservedLogin(s string) bool {
	switch s {
	case "root", "admin", "administrateur", "administrator", "guest", "invite", "nobody",
		"daemon", "bin", "sys", "sync", "games", "man", "mail", "news", "www-data", "backup",
		"operator", "postmaster", "samba", "ldap", "openldap", "alize", "eleve", "prof", "personnel":
		return true
	}
	return false
}

// groupCN is the cn of the group a roster name gives: "3ème A" → "3eme-a".
func groupCN(name string) string { return roster.Slug(name) }

// maxGroupCN is the longest group name the kind makes.
const maxGroupCN = 64

// childDN is the DN of the entry attr=value under parent, the value
// escaped as RFC 4514 says.
func childDN(attr, value, parent string) string {
	return attr + "=" + ldap.EscapeDN(value) + "," + parent
}

// dnKey is a DN's comparison form: each attribute type and value lowered,
// values escaped again. Two DNs naming one entry give the same key.
func dnKey(dn string) (key, parent string, ok bool) {
	parsed, err := ldap.ParseDN(dn)
	if err != nil || len(parsed.RDNs) == 0 {
		return "", "", false
	}
	parts := make([]string, len(parsed.RDNs))
	for i, rdn := range parsed.RDNs {
		avas := make([]string, len(rdn.Attributes))
		for j, a := range rdn.Attributes {
			avas[j] = strings.ToLower(a.Type) + "=" + ldap.EscapeDN(strings.ToLower(a.Value))
		}
		parts[i] = strings.Join(avas, "+")
	}
	return strings.Join(parts, ","), strings.Join(parts[1:], ","), true
}
