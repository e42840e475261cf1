package roster

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// Column is a CSV column: its name in the header line is the Person
// field's JSON name.
type Column string

// The columns of a roster CSV. The first four are required; the others
// may be absent, or left empty on a line.
const (
	ColRole      Column = "role"
	ColID        Column = "id"
	ColLastName  Column = "last_name"
	ColFirstName Column = "first_name"
	ColBirthDate Column = "birth_date"
	ColEmail     Column = "email"
	ColClass     Column = "class"
	ColOptions   Column = "options"
	ColTeaches   Column = "teaches"
	ColServices  Column = "services"
	ColGroups    Column = "groups"
	ColExitDate  Column = "exit_date"
)

// Columns lists every column, in the order FormatCSV writes them.
func Columns() []Column {
	return []Column{ColRole, ColID, ColLastName, ColFirstName, ColBirthDate, ColEmail,
		ColClass, ColOptions, ColTeaches, ColServices, ColGroups, ColExitDate}
}

// columnAlias maps the folded French header names a spreadsheet made by
// hand tends to have to the columns.
func columnAlias(name string) (Column, bool) {
	switch Slug(name) {
	case "role", "profil", "profile":
		return ColRole, true
	case "id", "identifiant", "ine":
		return ColID, true
	case "last-name", "nom":
		return ColLastName, true
	case "first-name", "prenom":
		return ColFirstName, true
	case "birth-date", "date-naissance", "date-de-naissance":
		return ColBirthDate, true
	case "email", "mail", "courriel":
		return ColEmail, true
	case "class", "classe":
		return ColClass, true
	case "options":
		return ColOptions, true
	case "teaches", "enseigne":
		return ColTeaches, true
	case "services":
		return ColServices, true
	case "groups", "groupes":
		return ColGroups, true
	case "exit-date", "date-sortie", "date-de-sortie":
		return ColExitDate, true
	}
	return "", false
}

// ListSeparator separates the values of a list column (options, teaches,
// services, groups) inside its one field: "LATIN|ESP2".
const ListSeparator = "|"

// MaxErrors is how many line errors ParseCSV reports before it stops.
const MaxErrors = 100

// File is a parsed roster CSV.
type File struct {
	People []Person
	Lines  []int // Lines[i] is the line People[i] starts on
	// Encoding is "utf-8", or "windows-1252" when the bytes were not
	// UTF-8 (a spreadsheet saved as "CSV (separator: semicolon)").
	Encoding string
	// Separator is the field separator found in the header line.
	Separator rune
}

// LineError is one problem of a roster file.
type LineError struct {
	Line    int
	Column  string // "" when the problem is the whole line
	Message string
}

func (e LineError) Error() string {
	if e.Column == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Message)
	}
	return fmt.Sprintf("line %d, column %s: %s", e.Line, e.Column, e.Message)
}

// LineErrors is every problem ParseCSV found, in line order.
type LineErrors []LineError

func (es LineErrors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	if len(es) >= MaxErrors {
		b.WriteString("\n(stopped after the first problems: fix these and import again)")
	}
	return b.String()
}

// Unwrap lets errors.As find each LineError.
func (es LineErrors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// ParseCSV reads a roster file: a header line naming the columns (any
// order; see Columns, French names such as nom, prenom, classe are
// understood too), then one person a line. The separator is the one of
// ; , or tab found most in the header line. A UTF-8 byte order mark is
// dropped; bytes that are not UTF-8 are read as Windows-1252, which covers
// ISO-8859-1 and -15 text, and File.Encoding says so. Lines starting with
// # are comments. Dates are YYYY-MM-DD or DD/MM/YYYY.
//
// It reports every problem with its line number (up to MaxErrors), as
// LineErrors: a bad field, an unknown or missing column, a stable id
// given twice.
func ParseCSV(data []byte) (*File, error) {
	f := &File{Encoding: "utf-8"}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(data) {
		dec, err := charmap.Windows1252.NewDecoder().Bytes(data)
		if err != nil {
			return nil, LineErrors{{Line: 1, Message: "neither UTF-8 nor Windows-1252 text: save the file as CSV UTF-8"}}
		}
		data, f.Encoding = dec, "windows-1252"
	}
	header, _, _ := bytes.Cut(data, []byte("\n"))
	f.Separator = separator(header)

	r := csv.NewReader(bytes.NewReader(data))
	r.Comma = f.Separator
	r.Comment = '#'
	r.FieldsPerRecord = -1
	r.ReuseRecord = true

	var errs LineErrors
	add := func(line int, col Column, format string, args ...any) {
		if len(errs) < MaxErrors {
			errs = append(errs, LineError{Line: line, Column: string(col), Message: fmt.Sprintf(format, args...)})
		}
	}

	rec, err := r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, LineErrors{{Line: 1, Message: "empty file: the first line must name the columns (" + columnList() + ")"}}
		}
		return nil, LineErrors{csvError(err)}
	}
	line, _ := r.FieldPos(0)
	cols := make([]Column, len(rec))
	seen := map[Column]bool{}
	for i, name := range rec {
		c, ok := columnAlias(strings.TrimSpace(name))
		switch {
		case !ok:
			add(line, "", "unknown column %s (the columns are %s)", Quote(name), columnList())
		case seen[c]:
			add(line, "", "column %s given twice", c)
		}
		cols[i], seen[c] = c, true
	}
	for _, c := range []Column{ColRole, ColID, ColLastName, ColFirstName} {
		if !seen[c] {
			add(line, "", "no column %s: the first line must name the columns (%s)", c, columnList())
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}

	ids := map[string]int{}
	for len(errs) < MaxErrors {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, csvError(err))
			continue // the reader goes on at the next line
		}
		line, _ := r.FieldPos(0)
		if len(rec) != len(cols) {
			add(line, "", "%d fields, the header has %d: check the separator %q and quotes", len(rec), len(cols), f.Separator)
			continue
		}
		p, bad := person(cols, rec, func(col Column, msg string) { add(line, col, "%s", msg) })
		if bad {
			continue
		}
		for _, pr := range Check(p) {
			col, _, _ := strings.Cut(pr.Field, "[")
			add(line, Column(col), "%s", pr.Message)
		}
		if first, dup := ids[p.ID]; dup && p.ID != "" {
			add(line, ColID, "id %s already on line %d: a stable id names one person", Quote(p.ID), first)
			continue
		}
		ids[p.ID] = line
		f.People = append(f.People, p)
		f.Lines = append(f.Lines, line)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return f, nil
}

// person builds a Person from one record; bad reports a field it could not
// even read (a date in no known form, an unknown role).
func person(cols []Column, rec []string, fail func(Column, string)) (p Person, bad bool) {
	for i, c := range cols {
		v := strings.TrimSpace(rec[i])
		switch c {
		case ColRole:
			r, ok := ParseRole(v)
			if !ok {
				fail(c, fmt.Sprintf("%s: must be %s, %s or %s", Quote(v), Pupil, Teacher, Staff))
				bad = true
			}
			p.Role = r
		case ColID:
			p.ID = v
		case ColLastName:
			p.LastName = v
		case ColFirstName:
			p.FirstName = v
		case ColBirthDate, ColExitDate:
			d, ok := parseDate(v)
			if !ok {
				fail(c, fmt.Sprintf("%s: must be a date YYYY-MM-DD or DD/MM/YYYY", Quote(v)))
				bad = true
			}
			if c == ColBirthDate {
				p.BirthDate = d
			} else {
				p.ExitDate = d
			}
		case ColEmail:
			p.Email = v
		case ColClass:
			p.Class = v
		case ColOptions:
			p.Options = list(v)
		case ColTeaches:
			p.Teaches = list(v)
		case ColServices:
			p.Services = list(v)
		case ColGroups:
			p.Groups = list(v)
		}
	}
	return p, bad
}

// ParseRole reads a role as a person writes it: "élève", "ELEVE",
// "professeur", "administratif"… give the three roles.
func ParseRole(s string) (Role, bool) {
	switch Slug(s) {
	case "eleve", "eleves", "pupil", "student":
		return Pupil, true
	case "enseignant", "enseignants", "professeur", "professeurs", "prof", "profs", "teacher":
		return Teacher, true
	case "personnel", "personnels", "administratif", "administratifs", "personnel-administratif", "staff":
		return Staff, true
	}
	return "", false
}

func parseDate(s string) (string, bool) {
	if s == "" {
		return "", true
	}
	if validDate(s) {
		return s, true
	}
	if t, err := time.Parse("02/01/2006", s); err == nil && len(s) == len("02/01/2006") {
		return t.Format(time.DateOnly), true
	}
	return "", false
}

func list(s string) []string {
	if s == "" {
		return nil
	}
	var out []string
	for v := range strings.SplitSeq(s, ListSeparator) {
		if v = strings.TrimSpace(v); v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func separator(header []byte) rune {
	best, n := ';', -1
	for _, c := range []rune{';', ',', '\t'} {
		if k := bytes.Count(header, []byte(string(c))); k > n {
			best, n = c, k
		}
	}
	return best
}

func csvError(err error) LineError {
	var pe *csv.ParseError
	if !errors.As(err, &pe) {
		return LineError{Line: 1, Message: err.Error()}
	}
	msg := pe.Err.Error()
	if errors.Is(pe.Err, csv.ErrQuote) || errors.Is(pe.Err, csv.ErrBareQuote) {
		msg += ": a quote opened and never closed, or a quote inside an unquoted field"
	}
	return LineError{Line: pe.StartLine, Message: msg}
}

func columnList() string {
	names := make([]string, 0, len(Columns()))
	for _, c := range Columns() {
		names = append(names, string(c))
	}
	return strings.Join(names, ", ")
}

// FormatCSV writes people as a roster file ParseCSV reads back: UTF-8,
// semicolon-separated, every column.
func FormatCSV(people []Person) []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Comma = ';'
	rec := make([]string, 0, len(Columns()))
	for _, c := range Columns() {
		rec = append(rec, string(c))
	}
	w.Write(rec)
	for _, p := range people {
		rec = append(rec[:0], string(p.Role), p.ID, p.LastName, p.FirstName, p.BirthDate, p.Email,
			p.Class, strings.Join(p.Options, ListSeparator), strings.Join(p.Teaches, ListSeparator),
			strings.Join(p.Services, ListSeparator), strings.Join(p.Groups, ListSeparator), p.ExitDate)
		w.Write(rec)
	}
	w.Flush()
	return b.Bytes()
}
