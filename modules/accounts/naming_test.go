package accounts

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"

	"github.com/alize-eple/alize/modules/accounts/roster"
)

func TestLoginBase(t *testing.T) {
	tests := []struct {
		first, last string
		role        roster.Role
		want        string
	}{
		{"Jean", "Dupont", roster.Pupil, "jean.dupont"},
		{"Chloé", "Lefèvre", roster.Pupil, "chloe.lefevre"},
		{"JEAN-PIERRE", "LE GALL", roster.Pupil, "jean-pierre.le-gall"},
		{"Aïcha", "N'Diaye", roster.Pupil, "aicha.ndiaye"},
		{"Zoé", "D’Artagnan", roster.Pupil, "zoe.dartagnan"},
		{"Æsa", "Œuvrard", roster.Pupil, "aesa.oeuvrard"},
		{"Ørjan", "Müller", roster.Teacher, "orjan.muller"},
		// Over 19 characters: p.nom, then prenom.n, then p.nom cut.
		{"Maximilien", "De La Fontaine", roster.Pupil, "m.de-la-fontaine"},
		{"Quentin", "Wolfeschlegelsteinhausen", roster.Pupil, "quentin.w"},
		{"Maximilien-Alexandre", "Wolfeschlegelsteinhausen", roster.Pupil, "m.wolfeschlegelstei"},
		// Names without usable letters.
		{"李", "王", roster.Pupil, "eleve"},
		{"---", "!!!", roster.Teacher, "prof"},
		{"2Pac", "Shakur", roster.Pupil, "pac.shakur"},
		{"", "Dupont", roster.Staff, "dupont"},
		{"Jean", "", roster.Staff, "jean"},
		{"123", "456", roster.Staff, "personnel"},
		// DN and filter specials vanish.
		{`Jean,+"\<>;=#`, `Du(pont)*`, roster.Pupil, "jean.dupont"},
	}
	for _, tt := range tests {
		got := loginBase(tt.first, tt.last, tt.role, 19)
		if got != tt.want {
			t.Errorf("loginBase(%q, %q) = %q, want %q", tt.first, tt.last, got, tt.want)
		}
		if !validLogin(got, 19) {
			t.Errorf("loginBase(%q, %q) = %q: not a valid login", tt.first, tt.last, got)
		}
	}
}

func TestChooseLoginNumbersCollisions(t *testing.T) {
	taken := map[string]bool{"jean.dupont": true, "jean.dupont1": true, "jean-baptiste.simon": true}
	has := func(s string) bool { return taken[s] }
	if got := chooseLogin("Jean", "Dupont", roster.Pupil, 19, has); got != "jean.dupont2" {
		t.Errorf("chooseLogin(Jean Dupont) = %q, want jean.dupont2", got)
	}
	if got := chooseLogin("Jean-Baptiste", "Simon", roster.Pupil, 19, has); got != "j.simon1" {
		t.Errorf("chooseLogin(Jean-Baptiste Simon) = %q, want j.simon1", got)
	}
	if got := chooseLogin("Léa", "Martin", roster.Pupil, 19, has); got != "lea.martin" {
		t.Errorf("chooseLogin(Léa Martin) = %q, want lea.martin", got)
	}
}

// FuzzLogin checks that the login generator never gives an invalid login,
// whatever the names, the length limit and the collisions.
func FuzzLogin(f *testing.F) {
	f.Add("Jean", "Dupont", 19, 0)
	f.Add("Maximilien-Alexandre", "Wolfeschlegelsteinhausen", 8, 3)
	f.Add(`,+"\<>;=#`, "\x00\xff", 19, 12)
	f.Add("李", "王", 32, 100)
	f.Add("-9-", ".'.", 10, 1)
	f.Fuzz(func(t *testing.T, first, last string, max, collisions int) {
		max = 8 + abs(max)%25
		collisions = abs(collisions) % 40
		taken := map[string]bool{}
		for range collisions + 1 {
			got := chooseLogin(first, last, roster.Pupil, max, func(s string) bool { return taken[s] })
			if !validLogin(got, max) {
				t.Fatalf("chooseLogin(%q, %q, %d) = %q: not a valid login", first, last, max, got)
			}
			if taken[got] {
				t.Fatalf("chooseLogin(%q, %q, %d) = %q, which is taken", first, last, max, got)
			}
			taken[got] = true
		}
	})
}

func abs(n int) int {
	if n < 0 {
		if n == -n { // the smallest int
			return 0
		}
		return -n
	}
	return n
}

func TestValidLogin(t *testing.T) {
	for _, s := range []string{"a", "jean.dupont", "j.le-gall2", "a1"} {
		if !validLogin(s, 19) {
			t.Errorf("validLogin(%q) = false, want true", s)
		}
	}
	for _, s := range []string{"", "1a", ".a", "a.", "a..b", "a-.b", "Jean", "jean dupont", "é", strings.Repeat("a", 20)} {
		if validLogin(s, 19) {
			t.Errorf("validLogin(%q) = true, want false", s)
		}
	}
}

// FuzzChildDN checks that a value put in a DN with childDN comes back
// whole from a DN parser, whatever it holds: the kind's DNs cannot be
// made to name another entry.
func FuzzChildDN(f *testing.F) {
	for _, s := range []string{"jean.dupont", `a,ou=x`, `+"\<>;=#`, "#lead", " lead and trail ", "nul\x00byte", "é", "\\", "a\\,b", "=", "ou=eleves"} {
		f.Add(s)
	}
	const parent = "ou=groupes,ou=0951099D,ou=ac-versailles,ou=education,o=gouv,c=fr"
	f.Fuzz(func(t *testing.T, value string) {
		if value == "" || !utf8.ValidString(value) {
			return
		}
		dn := childDN("cn", value, parent)
		parsed, err := ldap.ParseDN(dn)
		if err != nil {
			t.Fatalf("ParseDN(childDN(%q)) = %v", value, err)
		}
		if len(parsed.RDNs) != 7 || len(parsed.RDNs[0].Attributes) != 1 {
			t.Fatalf("childDN(%q) = %q: %d RDNs, want 7", value, dn, len(parsed.RDNs))
		}
		if got := parsed.RDNs[0].Attributes[0]; got.Type != "cn" || got.Value != value {
			t.Fatalf("childDN(%q) = %q parses to %s=%q", value, dn, got.Type, got.Value)
		}
		rest := &ldap.DN{RDNs: parsed.RDNs[1:]}
		want, _ := ldap.ParseDN(parent)
		if !rest.Equal(want) {
			t.Fatalf("childDN(%q) = %q: parent is %v", value, dn, rest)
		}
	})
}
