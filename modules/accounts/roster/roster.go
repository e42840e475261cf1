// Package roster is the accounts kind's input: the people of one
// establishment (pupils, teachers, other staff), as a roster import gives
// them, and the CSV format the controller imports and the agent reads back
// from the roster blob.
//
// A person is known by a stable id (the INE for a pupil, the national staff
// id for staff), never by name. Check finds every problem of a person;
// ParseCSV reads a roster file and reports every bad line by number.
// docs/kinds/accounts.md documents the columns.
//
// Who may import it: the accounts kind, the controller's roster import and
// their tests. It depends on the standard library and golang.org/x/text.
package roster

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Role is what a person is in the establishment.
type Role string

// The roles. Their names are the values of the accounts' employeeType and
// of the role column of the CSV.
const (
	Pupil   Role = "eleve"      // a pupil: exactly one class
	Teacher Role = "enseignant" // a teacher: may teach classes (teaching teams)
	Staff   Role = "personnel"  // administrative, vie scolaire, technical staff
)

// Valid reports whether r is one of the roles.
func (r Role) Valid() bool { return r == Pupil || r == Teacher || r == Staff }

// Person is one person of a roster. The JSON names are the wire format of
// the accounts spec's inline roster and the CSV's column names.
type Person struct {
	ID        string   `json:"id"`                   // stable id: INE (pupils), national staff id (staff)
	Role      Role     `json:"role"`                 // eleve, enseignant, personnel
	LastName  string   `json:"last_name"`            // family or usage name
	FirstName string   `json:"first_name"`           // first first name
	BirthDate string   `json:"birth_date,omitempty"` // YYYY-MM-DD
	Email     string   `json:"email,omitempty"`
	Class     string   `json:"class,omitempty"`     // pupils: their one class ("3A")
	Options   []string `json:"options,omitempty"`   // pupils: options ("LATIN")
	Teaches   []string `json:"teaches,omitempty"`   // teachers: classes taught, giving the teams profs-<class>
	Services  []string `json:"services,omitempty"`  // staff services ("vie-scolaire", "intendance")
	Groups    []string `json:"groups,omitempty"`    // other groups
	ExitDate  string   `json:"exit_date,omitempty"` // YYYY-MM-DD: a leaver from that day on
}

// Limits on a person's fields, so that hostile or broken input cannot
// grow a directory entry without bound.
const (
	MaxIDLength    = 40
	MaxNameLength  = 100 // runes, for a first or last name
	MaxGroupLength = 64  // runes, for a class, option, service or group name
	MaxGroups      = 64  // values in one of options, teaches, services, groups
	MaxEmailLength = 254
)

// Problem is one thing wrong with a person: the field (its JSON name) and
// what is wrong.
type Problem struct {
	Field   string
	Message string
}

// Check returns every problem of p; none means p is a valid person.
func Check(p Person) []Problem {
	var ps []Problem
	add := func(field, format string, args ...any) {
		ps = append(ps, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	switch {
	case p.ID == "":
		add("id", "must not be empty: the INE of a pupil, the national id of staff")
	case len(p.ID) > MaxIDLength:
		add("id", "must be at most %d characters, not %d", MaxIDLength, len(p.ID))
	case !validID(p.ID):
		add("id", "%s: must be letters A-Z a-z, digits, - and _ only", Quote(p.ID))
	}
	if !p.Role.Valid() {
		add("role", "%s: must be %s, %s or %s", Quote(string(p.Role)), Pupil, Teacher, Staff)
	}
	if msg := checkName(p.LastName); msg != "" {
		add("last_name", "%s", msg)
	}
	if msg := checkName(p.FirstName); msg != "" {
		add("first_name", "%s", msg)
	}
	if p.BirthDate != "" && !validDate(p.BirthDate) {
		add("birth_date", "%s: must be a date YYYY-MM-DD", Quote(p.BirthDate))
	}
	if p.ExitDate != "" && !validDate(p.ExitDate) {
		add("exit_date", "%s: must be a date YYYY-MM-DD", Quote(p.ExitDate))
	}
	if p.Email != "" {
		if msg := checkEmail(p.Email); msg != "" {
			add("email", "%s", msg)
		}
	}
	switch {
	case p.Role == Pupil && p.Class == "":
		add("class", "a pupil must have a class")
	case p.Role != Pupil && p.Class != "" && p.Role.Valid():
		add("class", "only pupils have a class; staff give the classes they teach in teaches")
	case p.Class != "":
		if msg := CheckGroupName(p.Class); msg != "" {
			add("class", "%s", msg)
		}
	}
	if len(p.Options) > 0 && p.Role != Pupil && p.Role.Valid() {
		add("options", "only pupils have options; put staff in groups")
	}
	if len(p.Teaches) > 0 && p.Role != Teacher && p.Role.Valid() {
		add("teaches", "only teachers teach classes")
	}
	for _, l := range []struct {
		field  string
		values []string
	}{{"options", p.Options}, {"teaches", p.Teaches}, {"services", p.Services}, {"groups", p.Groups}} {
		if len(l.values) > MaxGroups {
			add(l.field, "at most %d values, not %d", MaxGroups, len(l.values))
			continue
		}
		for i, v := range l.values {
			if msg := CheckGroupName(v); msg != "" {
				add(fmt.Sprintf("%s[%d]", l.field, i), "%s", msg)
			}
		}
	}
	return ps
}

func validID(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func validDate(s string) bool {
	_, err := time.Parse(time.DateOnly, s)
	return err == nil && len(s) == len(time.DateOnly)
}

// checkName says what is wrong with a first or last name, or "".
func checkName(s string) string {
	switch {
	case strings.TrimSpace(s) == "":
		return "must not be empty"
	case strings.TrimSpace(s) != s:
		return fmt.Sprintf("%s: must not start or end with a space", Quote(s))
	case !utf8.ValidString(s):
		return "must be UTF-8 text"
	case utf8.RuneCountInString(s) > MaxNameLength:
		return fmt.Sprintf("must be at most %d characters, not %d", MaxNameLength, utf8.RuneCountInString(s))
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == utf8.RuneError || unicode.Is(unicode.Cf, r) {
			return fmt.Sprintf("%s: must not hold control characters (%U)", Quote(s), r)
		}
	}
	return ""
}

// CheckGroupName says what is wrong with a class, option, service or group
// name as a roster gives it, or "". A name is letters (accents allowed),
// digits, spaces and - _ . ' and holds at least one letter or digit, so
// that it folds to a valid group name.
func CheckGroupName(s string) string {
	switch {
	case strings.TrimSpace(s) == "":
		return "must not be empty"
	case strings.TrimSpace(s) != s:
		return fmt.Sprintf("%s: must not start or end with a space", Quote(s))
	case !utf8.ValidString(s):
		return "must be UTF-8 text"
	case utf8.RuneCountInString(s) > MaxGroupLength:
		return fmt.Sprintf("must be at most %d characters, not %d", MaxGroupLength, utf8.RuneCountInString(s))
	}
	alnum := false
	for _, r := range s {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			alnum = true
		case r == ' ' || r == '-' || r == '_' || r == '.' || r == '\'' || r == '’':
		default:
			return fmt.Sprintf("%s: may hold letters, digits, spaces and - _ . ' only", Quote(s))
		}
	}
	if !alnum || Slug(s) == "" {
		return fmt.Sprintf("%s: must hold a letter or a digit A-Z 0-9 once accents are removed", Quote(s))
	}
	return ""
}

func checkEmail(s string) string {
	local, domain, ok := strings.Cut(s, "@")
	switch {
	case len(s) > MaxEmailLength:
		return fmt.Sprintf("must be at most %d characters", MaxEmailLength)
	case !ok || local == "" || domain == "" || strings.Contains(domain, "@") || !strings.Contains(domain, "."):
		return fmt.Sprintf("%s: must be an address name@domain", Quote(s))
	}
	for _, r := range s {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),:;<>[\]`, r) {
			return fmt.Sprintf("%s: must be a plain ASCII address without spaces", Quote(s))
		}
	}
	return ""
}

// Quote quotes a value for a message, cut to 60 characters: a hostile
// value must not flood a log or a terminal.
func Quote(s string) string {
	const max = 60
	if utf8.RuneCountInString(s) > max {
		r := []rune(s)
		return fmt.Sprintf("%q…", string(r[:max]))
	}
	return fmt.Sprintf("%q", s)
}

// Fold removes accents and ligatures and lowers the case: "Chloé Œuvray"
// gives "chloe oeuvray". Letters without an ASCII form are kept as they
// are; Slug drops them.
func Fold(s string) string { return strings.ToLower(Unaccent(s)) }

// Unaccent removes accents and writes ligatures as two letters, keeping
// the case: "Chloé Œuvray" gives "Chloe OEuvray".
func Unaccent(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range norm.NFD.String(s) {
		if unicode.Is(unicode.Mn, r) {
			continue
		}
		if rep := ligature(r); rep != "" {
			b.WriteString(rep)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// ligature returns the ASCII form of the letters NFD does not decompose,
// or "".
func ligature(r rune) string {
	switch r {
	case 'æ':
		return "ae"
	case 'Æ':
		return "AE"
	case 'œ':
		return "oe"
	case 'Œ':
		return "OE"
	case 'ß':
		return "ss"
	case 'ẞ':
		return "SS"
	case 'ø':
		return "o"
	case 'Ø':
		return "O"
	case 'ł':
		return "l"
	case 'Ł':
		return "L"
	case 'đ', 'ð':
		return "d"
	case 'Đ', 'Ð':
		return "D"
	case 'þ':
		return "th"
	case 'Þ':
		return "TH"
	case 'ı':
		return "i"
	}
	return ""
}

// Slug folds s to the characters a login or group name may hold: a-z 0-9,
// with every run of spaces, hyphens and underscores made one hyphen;
// apostrophes, dots and anything else dropped, and no hyphen at either
// end. "Jean-Pierre", "jean pierre" and "JEAN  PIERRE" all give
// "jean-pierre"; "N'Diaye" gives "ndiaye".
func Slug(s string) string {
	var b strings.Builder
	hyphen := false
	for _, r := range Fold(s) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			if hyphen && b.Len() > 0 {
				b.WriteByte('-')
			}
			hyphen = false
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '_' || r == '\t':
			hyphen = true
		}
	}
	return b.String()
}
