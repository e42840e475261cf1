package roster

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCSVGood(t *testing.T) {
	data, err := os.ReadFile("testdata/good.csv")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ParseCSV(data)
	if err != nil {
		t.Fatalf("ParseCSV(good.csv) = %v", err)
	}
	want := []Person{
		{ID: "1234567890A", Role: Pupil, LastName: "Lefèvre", FirstName: "Chloé", BirthDate: "2012-03-14", Class: "3A", Options: []string{"LATIN", "ESP2"}},
		{ID: "1234567891B", Role: Pupil, LastName: "N'Diaye", FirstName: "Aïcha", BirthDate: "2012-11-02", Class: "3A", Groups: []string{"chorale"}},
		{ID: "1234567892C", Role: Pupil, LastName: `Le Gall "Yann"`, FirstName: "Yann", BirthDate: "2011-01-30", Class: "4B", ExitDate: "2025-07-04"},
		{ID: "08E0012345AB", Role: Teacher, LastName: "Œuvrard", FirstName: "Bérénice", Email: "b.oeuvrard@ac-versailles.fr", Teaches: []string{"3A", "4B"}},
		{ID: "08E0012346CD", Role: Staff, LastName: "Martin", FirstName: "Paul", Services: []string{"intendance"}},
	}
	if diff := cmp.Diff(want, f.People); diff != "" {
		t.Errorf("ParseCSV(good.csv) people (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{3, 4, 5, 7, 8}, f.Lines); diff != "" {
		t.Errorf("ParseCSV(good.csv) lines (-want +got):\n%s", diff)
	}
	if f.Encoding != "utf-8" || f.Separator != ';' {
		t.Errorf("ParseCSV(good.csv) = encoding %s, separator %q; want utf-8, ';'", f.Encoding, f.Separator)
	}
}

func TestParseCSVWindows1252(t *testing.T) {
	data, err := os.ReadFile("testdata/windows-1252.csv")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ParseCSV(data)
	if err != nil {
		t.Fatalf("ParseCSV(windows-1252.csv) = %v", err)
	}
	if f.Encoding != "windows-1252" || f.Separator != ',' {
		t.Errorf("ParseCSV(windows-1252.csv) = encoding %s, separator %q; want windows-1252, ','", f.Encoding, f.Separator)
	}
	if got := f.People[0].LastName + " " + f.People[1].LastName; got != "Lefèvre Œuvrard" {
		t.Errorf("ParseCSV(windows-1252.csv) names = %q, want %q", got, "Lefèvre Œuvrard")
	}
}

func TestParseCSVBad(t *testing.T) {
	data, err := os.ReadFile("testdata/bad.csv")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ParseCSV(data)
	var errs LineErrors
	if !errors.As(err, &errs) {
		t.Fatalf("ParseCSV(bad.csv) = %v, want LineErrors", err)
	}
	want := []string{
		"line 3, column id: must not be empty",
		`line 4, column role: "pirate": must be eleve, enseignant or personnel`,
		"line 5, column class: a pupil must have a class",
		`line 6, column id: id "1234567890A" already on line 2`,
		`line 7, column last_name: "Bad\x00Name": must not hold control characters (U+0000)`,
		`line 8, column birth_date: "31/02/2012": must be a date`,
		`line 9, column class: "3A,ou=x": may hold letters, digits, spaces and - _ . ' only`,
		"line 10: 7 fields, the header has 6",
		"line 11: extraneous or missing \" in quoted-field",
	}
	if len(errs) != len(want) {
		t.Errorf("ParseCSV(bad.csv) gave %d errors, want %d:\n%v", len(errs), len(want), err)
	}
	for i := range min(len(errs), len(want)) {
		if !strings.HasPrefix(errs[i].Error(), want[i]) {
			t.Errorf("error %d = %q, want it to start with %q", i, errs[i].Error(), want[i])
		}
	}
}

func TestParseCSVHeaders(t *testing.T) {
	tests := []struct {
		data, want string
	}{
		{"", "line 1: empty file"},
		{"role;id;last_name\n", "line 1: no column first_name"},
		{"role;id;last_name;first_name;shoe_size\n", `line 1: unknown column "shoe_size"`},
		{"role;id;nom;last_name;first_name\n", "line 1: column last_name given twice"},
	}
	for _, tt := range tests {
		_, err := ParseCSV([]byte(tt.data))
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("ParseCSV(%q) = %v, want an error starting %q", tt.data, err, tt.want)
		}
	}
}

func TestParseCSVStopsAtMaxErrors(t *testing.T) {
	data := "role;id;last_name;first_name\n" + strings.Repeat("pirate;x;y;z\n", 500)
	_, err := ParseCSV([]byte(data))
	var errs LineErrors
	if !errors.As(err, &errs) || len(errs) != MaxErrors {
		t.Fatalf("ParseCSV(500 bad lines) gave %d errors, want %d", len(errs), MaxErrors)
	}
	if !strings.Contains(err.Error(), "stopped after the first problems") {
		t.Errorf("the error does not say it stopped: %v", err)
	}
}

func TestFoldAndSlug(t *testing.T) {
	tests := []struct{ in, fold, slug string }{
		{"Chloé Œuvray", "chloe oeuvray", "chloe-oeuvray"},
		{"JEAN  PIERRE", "jean  pierre", "jean-pierre"},
		{"N'Diaye", "n'diaye", "ndiaye"},
		{"Straße Ørsted", "strasse orsted", "strasse-orsted"},
		{"--3ème A--", "--3eme a--", "3eme-a"},
		{"李", "李", ""},
	}
	for _, tt := range tests {
		if got := Fold(tt.in); got != tt.fold {
			t.Errorf("Fold(%q) = %q, want %q", tt.in, got, tt.fold)
		}
		if got := Slug(tt.in); got != tt.slug {
			t.Errorf("Slug(%q) = %q, want %q", tt.in, got, tt.slug)
		}
	}
}

// FuzzParseCSV checks that the parser never panics and that what it
// accepts is valid and survives a round trip through FormatCSV.
func FuzzParseCSV(f *testing.F) {
	for _, name := range []string{"testdata/good.csv", "testdata/bad.csv", "testdata/windows-1252.csv"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("role,id,last_name,first_name,class\neleve,1,a,b,c\n"))
	f.Add([]byte("role\tid\tlast_name\tfirst_name\nprof\tX\t\"a\"\"b\"\tc\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := ParseCSV(data)
		if err != nil {
			var errs LineErrors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("ParseCSV error %v is not LineErrors", err)
			}
			for _, e := range errs {
				if e.Line < 1 {
					t.Fatalf("error without a line: %v", e)
				}
			}
			return
		}
		seen := map[string]bool{}
		for _, p := range file.People {
			if ps := Check(p); len(ps) > 0 {
				t.Fatalf("ParseCSV accepted %+v with problems %v", p, ps)
			}
			if seen[p.ID] {
				t.Fatalf("ParseCSV accepted the id %q twice", p.ID)
			}
			seen[p.ID] = true
		}
		again, err := ParseCSV(FormatCSV(file.People))
		if err != nil {
			t.Fatalf("ParseCSV(FormatCSV(people)) = %v", err)
		}
		if diff := cmp.Diff(file.People, again.People); diff != "" {
			t.Fatalf("round trip (-first +again):\n%s", diff)
		}
	})
}
