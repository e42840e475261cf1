package accounts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/alize-eple/alize/modules"
	"github.com/alize-eple/alize/modules/accounts/credentials"
	"github.com/alize-eple/alize/modules/accounts/roster"
	"github.com/alize-eple/alize/testenv"
)

// foreignLDIF is what a technician made by hand: an OU of their own with
// an account whose uidNumber is in the kind's range, an account in
// ou=eleves without the marker (its login is a pupil's prenom.nom), and a
// group in ou=groupes without the marker whose gidNumber is in the kind's
// range.
func foreignLDIF(base string) string {
	return fmt.Sprintf(`dn: ou=autres,%[1]s
objectClass: organizationalUnit
ou: autres

dn: uid=technicien,ou=autres,%[1]s
objectClass: inetOrgPerson
objectClass: posixAccount
uid: technicien
cn: Technicien
sn: Technicien
uidNumber: 10003
gidNumber: 10003
homeDirectory: /home/t/technicien

dn: uid=jean.dupont,ou=eleves,ou=Utilisateurs,%[1]s
objectClass: inetOrgPerson
objectClass: posixAccount
uid: jean.dupont
cn: Jean Dupont
sn: Dupont
uidNumber: 5000
gidNumber: 5000
homeDirectory: /home/j/jean.dupont
description: compte fait a la main

dn: cn=cdi-manuel,ou=groupes,%[1]s
objectClass: posixGroup
cn: cdi-manuel
gidNumber: 60001
memberUid: technicien
`, base)
}

// foreignDNs are the entries of foreignLDIF.
func foreignDNs(base string) []string {
	return []string{"ou=autres," + base, "uid=technicien,ou=autres," + base,
		"uid=jean.dupont,ou=eleves,ou=Utilisateurs," + base, "cn=cdi-manuel,ou=groupes," + base}
}

func pupil(id, first, last, class string) roster.Person {
	return roster.Person{ID: id, Role: roster.Pupil, FirstName: first, LastName: last, Class: class, BirthDate: "2012-05-17"}
}

func pupilsDN(l *testenv.Slapd, login string) string {
	return "uid=" + login + ",ou=eleves,ou=Utilisateurs," + l.BaseDN
}

func groupDN(l *testenv.Slapd, cn string) string { return "cn=" + cn + ",ou=groupes," + l.BaseDN }

func TestRosterChanges(t *testing.T) {
	school := testSchool
	base := school.BaseDN()
	l := testenv.StartSlapd(t, testenv.SlapdOptions{School: &school, LDIF: foreignLDIF(base)})
	foreign := map[string]map[string][]string{}
	for _, dn := range foreignDNs(base) {
		foreign[dn] = entry(t, l, dn)
	}
	k := newKind(t, l)

	people := []roster.Person{
		pupil("1000000001A", "Jean", "Dupont", "6A"),
		pupil("1000000002B", "Léa", "Martin", "6A"),
		pupil("1000000003C", "Hugo", "Petit", "6A"),
		pupil("1000000004D", "Zoé", "Roux", "6B"),
		pupil("1000000005E", "Inès", "Moreau", "6B"),
		{ID: "08E0000001AB", Role: roster.Teacher, FirstName: "Bérénice", LastName: "Œuvrard", Teaches: []string{"6A", "6B"}},
		{ID: "08E0000002AB", Role: roster.Staff, FirstName: "Paul", LastName: "Girard", Services: []string{"vie scolaire"}},
	}
	want := specFor(people)
	want.Samba = &Samba{DomainSID: "S-1-5-21-1-2-3"}
	apply(t, k, want)

	// The pupil homonym of the technician's hand-made jean.dupont is numbered.
	jean := entry(t, l, pupilsDN(l, "jean.dupont1"))
	if jean == nil || jean["employeenumber"][0] != "1000000001A" {
		t.Fatalf("Jean Dupont's account uid=jean.dupont1 = %v, want it with employeeNumber 1000000001A", jean)
	}
	// Numbers in use by the technician's entries are skipped.
	for _, login := range []string{"jean.dupont1", "lea.martin", "hugo.petit", "zoe.roux", "ines.moreau"} {
		if e := entry(t, l, pupilsDN(l, login)); e == nil || e["uidnumber"][0] == "10003" {
			t.Errorf("%s = %v, want an account without uidNumber 10003", login, e)
		}
	}
	if e := entry(t, l, groupDN(l, "6a")); e == nil || e["gidnumber"][0] == "60001" {
		t.Errorf("group 6a = %v, want one without gidNumber 60001", e)
	}
	checkMembers(t, l, "6a", "hugo.petit", "jean.dupont1", "lea.martin")
	checkMembers(t, l, "profs-6b", "berenice.oeuvrard")
	checkMembers(t, l, "vie-scolaire", "paul.girard")

	// A new account binds with its initial password ({SSHA} that slapd checks).
	store, err := k.Credentials()
	if err != nil {
		t.Fatal(err)
	}
	recs, err := store.Pending(credentials.Filter{Class: "6A"})
	if err != nil || len(recs) != 3 {
		t.Fatalf("Pending(6A) = %v, %v; want 3 records", recs, err)
	}
	c, err := dialTest(t.Context(), l)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Bind(pupilsDN(l, recs[0].Login), recs[0].Password); err != nil {
		t.Errorf("bind as %s with its initial password: %v", recs[0].Login, err)
	}
	if err := c.Bind(pupilsDN(l, recs[0].Login), "wrong"); err == nil {
		t.Errorf("bind as %s with a wrong password succeeded", recs[0].Login)
	}
	c.Close()
	hugo := entry(t, l, pupilsDN(l, "hugo.petit"))
	hugoPW := ""
	for _, r := range recs {
		if r.Login == "hugo.petit" {
			hugoPW = r.Password
		}
	}
	if got := hugo["sambantpassword"]; len(got) != 1 || got[0] != ntHash(hugoPW) {
		t.Errorf("hugo.petit sambaNTPassword = %v, want the NT hash of its initial password", got)
	}

	// A technician adds attributes to a managed account and a member to a
	// managed group: they survive.
	ldapDo(t, l, func(c *ldap.Conn) error {
		m := ldap.NewModifyRequest(pupilsDN(l, "lea.martin"), nil)
		m.Add("telephoneNumber", []string{"+33 1 23 45 67 89"})
		m.Add("description", []string{"déléguée de classe"})
		if err := c.Modify(m); err != nil {
			return err
		}
		m = ldap.NewModifyRequest(groupDN(l, "6a"), nil)
		m.Add("memberUid", []string{"technicien"})
		return c.Modify(m)
	})
	if p, err := k.Plan(t.Context(), want); err != nil || !p.Empty() {
		t.Fatalf("Plan after a technician's additions = %v, %v; want empty", p.Changes, err)
	}

	// The roster changes: a homonym arrives, Hugo leaves (absent from the
	// complete roster), Zoé leaves by exit date, Léa changes class, Inès
	// changes name.
	next := slices.Clone(people)
	next = slices.DeleteFunc(next, func(p roster.Person) bool { return p.ID == "1000000003C" })
	for i := range next {
		switch next[i].ID {
		case "1000000004D":
			next[i].ExitDate = "2025-07-04"
		case "1000000002B":
			next[i].Class = "6B"
		case "1000000005E":
			next[i].LastName = "Moreau-Lefèvre"
		}
	}
	next = append(next, pupil("1000000006F", "Jean", "Dupont", "6B"))
	want.Roster.People = next
	changes := apply(t, k, want)
	t.Logf("changes:\n%s", strings.Join(changes, "\n"))

	if e := entry(t, l, pupilsDN(l, "jean.dupont2")); e == nil || e["employeenumber"][0] != "1000000006F" {
		t.Errorf("the second Jean Dupont = %v, want uid=jean.dupont2", e)
	}
	for _, leaver := range []string{"hugo.petit", "zoe.roux"} {
		if e := entry(t, l, pupilsDN(l, leaver)); e != nil {
			t.Errorf("leaver %s still in ou=eleves", leaver)
		}
		e := entry(t, l, "uid="+leaver+",ou=archives,"+l.BaseDN)
		if e == nil {
			t.Fatalf("leaver %s not in ou=archives", leaver)
		}
		day := strconv.FormatInt(testNow.Unix()/86400, 10)
		checkAttr(t, leaver, e, "shadowexpire", day)
		checkAttr(t, leaver, e, "loginshell", LeaverShell)
		checkAttr(t, leaver, e, "sambaacctflags", "[DU         ]")
		checkAttr(t, leaver, e, "homedirectory", "/home/"+leaver)
		if len(e["userpassword"]) != 1 {
			t.Errorf("leaver %s lost its password hash", leaver)
		}
	}
	lea := entry(t, l, pupilsDN(l, "lea.martin"))
	checkAttr(t, "lea.martin", lea, "departmentnumber", "6B")
	checkAttr(t, "lea.martin", lea, "telephonenumber", "+33 1 23 45 67 89")
	checkAttr(t, "lea.martin", lea, "description", "déléguée de classe")
	ines := entry(t, l, pupilsDN(l, "ines.moreau"))
	checkAttr(t, "ines.moreau", ines, "sn", "Moreau-Lefèvre")
	checkAttr(t, "ines.moreau", ines, "cn", "Inès Moreau-Lefèvre")
	checkAttr(t, "ines.moreau", ines, "gecos", "Ines Moreau-Lefevre")
	checkMembers(t, l, "6a", "jean.dupont1", "technicien")
	checkMembers(t, l, "6b", "ines.moreau", "jean.dupont2", "lea.martin")
	checkMembers(t, l, GroupPupils, "ines.moreau", "jean.dupont1", "jean.dupont2", "lea.martin")

	if p, err := k.Plan(t.Context(), want); err != nil || !p.Empty() {
		t.Fatalf("Plan after the changes = %v, %v; want empty", p.Changes, err)
	}

	// Hugo comes back: his account is restored, login and password kept.
	want.Roster.People = append(want.Roster.People, people[2])
	apply(t, k, want)
	h := entry(t, l, pupilsDN(l, "hugo.petit"))
	if h == nil {
		t.Fatal("Hugo back in the roster, but not in ou=eleves")
	}
	checkAttr(t, "hugo.petit", h, "loginshell", DefaultShell)
	checkAttr(t, "hugo.petit", h, "sambaacctflags", "[U          ]")
	if _, ok := h["shadowexpire"]; ok {
		t.Error("hugo.petit keeps shadowExpire after coming back")
	}
	if !slices.Equal(h["userpassword"], hugo["userpassword"]) {
		t.Error("hugo.petit's password changed: initial passwords are set on creation only")
	}
	checkMembers(t, l, "6a", "hugo.petit", "jean.dupont1", "technicien")

	// A year later, Zoé's archived account is past its retention: only an
	// explicit Purge deletes it.
	later := newKind(t, l, func(c *Config) { c.Now = func() time.Time { return testNow.AddDate(1, 0, 1) } })
	expired, err := later.Expired(t.Context(), want)
	zoe := "uid=zoe.roux,ou=archives," + l.BaseDN
	if err != nil || len(expired) != 1 || expired[0].DN != zoe || expired[0].ID != "1000000004D" {
		t.Fatalf("Expired a year later = %+v, %v; want zoe.roux only", expired, err)
	}
	if p, err := later.Plan(t.Context(), want); err != nil || !p.Empty() {
		t.Errorf("Plan a year later = %v, %v; want empty: apply never purges", p.Changes, err)
	}
	if err := later.Purge(t.Context(), want, []string{pupilsDN(l, "lea.martin")}); err == nil {
		t.Error("Purge of an active account succeeded")
	}
	if err := later.Purge(t.Context(), want, []string{zoe}); err != nil {
		t.Fatal(err)
	}
	if entry(t, l, zoe) != nil {
		t.Error("zoe.roux still in the directory after Purge")
	}
	if expired, err := k.Expired(t.Context(), want); err != nil || len(expired) != 0 {
		t.Errorf("Expired today = %v, %v; want none", expired, err)
	}

	// The technician's entries were never touched.
	for dn, before := range foreign {
		if after := entry(t, l, dn); !equalEntries(before, after) {
			t.Errorf("%s changed:\nbefore %v\nafter  %v", dn, before, after)
		}
	}
}

func checkAttr(t *testing.T, who string, e map[string][]string, attr, want string) {
	t.Helper()
	if got := e[attr]; len(got) != 1 || got[0] != want {
		t.Errorf("%s %s = %q, want %q", who, attr, got, want)
	}
}

func checkMembers(t *testing.T, l *testenv.Slapd, cn string, want ...string) {
	t.Helper()
	got := slices.Sorted(slices.Values(entry(t, l, groupDN(l, cn))["memberuid"]))
	if !slices.Equal(got, want) {
		t.Errorf("members of %s = %v, want %v", cn, got, want)
	}
}

func equalEntries(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if k == "entrycsn" || k == "modifytimestamp" {
			continue
		}
		if !slices.Equal(slices.Sorted(slices.Values(v)), slices.Sorted(slices.Values(b[k]))) {
			return false
		}
	}
	return true
}

// TestSambaLogin checks that a pupil the kind creates logs in to Samba
// (ldapsam on the same directory) with the initial password, and no longer
// once a leaver.
func TestSambaLogin(t *testing.T) {
	testenv.Require(t, "smbclient")
	ns := testenv.NewNetNS(t, "school")
	school := testSchool
	l := testenv.StartSlapd(t, testenv.SlapdOptions{NS: ns, School: &school})
	share := t.TempDir()
	if err := os.Chmod(share, 0o777); err != nil {
		t.Fatal(err)
	}
	smb := testenv.StartSmbd(t, testenv.SmbdOptions{NS: ns, LDAP: l,
		Shares: "[commun]\n\tpath = " + share + "\n\tread only = no\n"})
	out, err := ns.Run(smb.Command(t.Context(), "net", "getlocalsid"))
	if err != nil {
		t.Fatalf("net getlocalsid: %v\n%s", err, out)
	}
	_, sid, _ := strings.Cut(strings.TrimSpace(string(out)), " is: ")

	k := newKind(t, l)
	want := specFor([]roster.Person{pupil("1000000001A", "Chloé", "Lefèvre", "3A")})
	want.Samba = &Samba{DomainSID: sid}
	apply(t, k, want)

	store, _ := k.Credentials()
	recs, err := store.Pending(credentials.Filter{Class: "3A"})
	if err != nil || len(recs) != 1 {
		t.Fatalf("Pending(3A) = %v, %v", recs, err)
	}
	login, pw := recs[0].Login, recs[0].Password
	acct := entry(t, l, pupilsDN(l, login))
	// smbd needs the Unix account: nss_wrapper's files stand for nss-ldap.
	line := fmt.Sprintf("%s:x:%s:%s:%s:/nonexistent:/bin/false\n", login, acct["uidnumber"][0], acct["gidnumber"][0], login)
	if err := smb.AppendNSS("passwd", line); err != nil {
		t.Fatal(err)
	}
	if err := smb.AppendNSS("group", fmt.Sprintf("%s:x:%s:\n", GroupPupils, acct["gidnumber"][0])); err != nil {
		t.Fatal(err)
	}

	if out, err := smb.Client(t.Context(), "commun", login, pw, "ls"); err != nil {
		t.Fatalf("smbclient as %s with the initial password: %v\n%s", login, err, out)
	}
	if _, err := smb.Client(t.Context(), "commun", login, pw+"x", "ls"); err == nil {
		t.Errorf("smbclient as %s with a wrong password succeeded", login)
	}

	// A leaver is disabled for Samba too.
	want.Roster.People = []roster.Person{pupil("1000000002B", "Léa", "Martin", "3A")}
	apply(t, k, want)
	if out, err := smb.Client(t.Context(), "commun", login, pw, "ls"); err == nil {
		t.Errorf("smbclient as the leaver %s succeeded:\n%s", login, out)
	}
}

func TestValidate(t *testing.T) {
	good := specFor([]roster.Person{pupil("1000000001A", "Jean", "Dupont", "3A")})
	if err := Checker()(mustJSON(t, good)); err != nil {
		t.Fatalf("Checker(good spec) = %v", err)
	}
	bad := Spec{
		UAI: "0951099E", Academy: "Versailles",
		Tree:      Tree{Pupils: "cn=eleves", Archive: "ou=groupes"},
		IDs:       IDs{UID: Range{Min: 500, Max: 600}, GID: Range{Min: 70000, Max: 60000}},
		Logins:    Logins{MaxLength: 40},
		Passwords: Passwords{Pupils: "123456", Length: 4, KeepDays: 1000},
		Posix:     Posix{HomeRoot: "home", Shell: "/bin/ba sh"},
		Groups:    Groups{TeamPrefix: "Profs ", Custom: []CustomGroup{{Name: "a,b"}}},
		Leavers:   Leavers{RetentionDays: -1},
		Samba:     &Samba{DomainSID: "S-1-5-32-544"},
		Roster: Roster{Blob: "sha256:abc", People: []roster.Person{
			{ID: "1", Role: "pirate", FirstName: "Jean", LastName: "Du\x00pont"},
			{ID: "1", Role: roster.Pupil, FirstName: strings.Repeat("a", 10000), LastName: "X", Class: `3A,ou=x`},
			{ID: "2", Role: roster.Pupil, FirstName: "Léa", LastName: "Roux", Class: "eleves"},
			{ID: "3", Role: roster.Teacher, FirstName: "Léa", LastName: "Roux", Class: "3A", Email: "not an address"},
		}},
	}
	err := validator{}.Validate(bad)
	var fe modules.FieldErrors
	if !errors.As(err, &fe) {
		t.Fatalf("Validate(bad) = %v, want FieldErrors", err)
	}
	paths := map[string]bool{}
	for _, e := range fe {
		paths[e.Path] = true
	}
	for _, p := range []string{"uai", "academy", "tree.pupils", "tree.archive", "ids.uid.min", "ids.gid", "logins.max_length",
		"passwords.pupils", "passwords.length", "passwords.keep_days", "posix.home_root", "posix.shell", "groups.team_prefix",
		"groups.custom[0].name", "leavers.retention_days", "samba.domain_sid", "roster",
		"roster.people[0].role", "roster.people[0].last_name", "roster.people[1].id", "roster.people[1].first_name",
		"roster.people[1].class", "roster.people[2].class", "roster.people[3].class", "roster.people[3].email"} {
		if !paths[p] {
			t.Errorf("Validate(bad) has no error at %s", p)
		}
	}
	if t.Failed() {
		t.Logf("Validate(bad):\n%v", err)
	}
	if err := Checker()([]byte(`{"uai":"0951099D","academy":"versailles","roster":{"people":[]},"colour":"red"}`)); err == nil || !strings.Contains(err.Error(), "unknown field") {
		t.Errorf("Checker(unknown field) = %v, want an unknown field error", err)
	}
}

func mustJSON(t *testing.T, s Spec) []byte {
	t.Helper()
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestBadInput checks that hostile or broken input is refused with a clear
// message before anything is written, and that DN special characters in
// names are only ever attribute values.
func TestBadInput(t *testing.T) {
	school := testSchool
	base := school.BaseDN()
	l := testenv.StartSlapd(t, testenv.SlapdOptions{School: &school, LDIF: foreignLDIF(base)})
	blobs := memBlobs{}
	k := newKind(t, l, func(c *Config) { c.Blobs = blobs })
	observe := dump(l)
	before, err := observe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ten := make([]roster.Person, 10)
	for i := range ten {
		ten[i] = pupil(fmt.Sprintf("10000000%02dA", i), "Élève", fmt.Sprintf("Numéro %c", 'A'+i), "3A")
	}
	tests := []struct {
		name string
		spec func() Spec
		want string
		is   error
	}{
		{"uid range exhausted", func() Spec {
			s := specFor(ten)
			s.IDs.UID = Range{Min: 10000, Max: 10009} // 10003 is the technician's
			return s
		}, "ids.uid: the range 10000-10009 is exhausted: 10 new accounts need a number and 9 are left", ErrRangeExhausted},
		{"gid range exhausted", func() Spec {
			s := specFor(ten)
			s.IDs.GID = Range{Min: 60000, Max: 60002}
			return s
		}, "ids.gid: the range 60000-60002 is exhausted", ErrRangeExhausted},
		{"group in the way", func() Spec {
			return specFor([]roster.Person{pupil("1000000001A", "Jean", "Martin", "CDI manuel")})
		}, "the group cdi-manuel exists (cn=cdi-manuel,ou=groupes," + base + ") and is not managed by Alizé", ErrConflict},
		{"NUL and DN specials in a class", func() Spec {
			return specFor([]roster.Person{pupil("1000000001A", "Jean\x00", "Martin", `3A,ou=x+cn="y"`)})
		}, `roster.people[0].first_name: "Jean\x00": must not hold control characters`, nil},
		{"very long name", func() Spec {
			return specFor([]roster.Person{pupil("1000000001A", "Jean", strings.Repeat("Martin-", 2000), "3A")})
		}, "roster.people[0].last_name: must be at most 100 characters, not 14000", nil},
		{"malformed roster file", func() Spec {
			s := specFor(nil)
			s.Roster.Blob = blobs.put([]byte("role;id;last_name;first_name;class\neleve;1;A;B;3A\neleve;1;C;D;3A\nprof;2;\"E;F;3A\n"))
			return s
		}, "line 3, column id: id \"1\" already on line 2", nil},
		{"complete roster of nobody", func() Spec {
			s := specFor(nil)
			s.Roster.Blob = blobs.put([]byte("role;id;last_name;first_name\n"))
			return s
		}, "a complete roster without anybody would archive every account", nil},
		{"roster blob missing", func() Spec {
			s := specFor(nil)
			s.Roster.Blob = "sha256:" + strings.Repeat("0", 64)
			return s
		}, "no blob sha256:0000", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := k.Plan(t.Context(), tt.spec())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Plan = %v, %v; want an error containing %q", p.Changes, err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Plan error %v is not %v", err, tt.is)
			}
			after, err := observe(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if after != before {
				t.Error("a refused plan changed the directory")
			}
		})
	}

	// Names full of DN and filter specials are values, never DN parts.
	hostile := roster.Person{ID: "1000000009Z", Role: roster.Pupil, FirstName: `Jean,+"\<>;=#`, LastName: `*)(uid=*))(|(uid=*`, Class: "3A"}
	apply(t, k, specFor([]roster.Person{hostile}))
	e := entry(t, l, pupilsDN(l, "jean.uiduid"))
	if e == nil {
		t.Fatalf("the hostile pupil's account is not uid=jean.uiduid")
	}
	checkAttr(t, "hostile", e, "cn", hostile.FirstName+" "+hostile.LastName)
	checkAttr(t, "hostile", e, "givenname", hostile.FirstName)
}

// TestNoSecretLeaks checks that initial passwords appear in no change,
// result, error or log line, and that the directory holds only hashes.
func TestNoSecretLeaks(t *testing.T) {
	l := startSlapd(t)
	var logs bytes.Buffer
	k := newKind(t, l, func(c *Config) { c.Logger = testLogger(t, slog.LevelWarn, &logs) })
	want := specFor(genSchool(30, 5, 2))
	want.Samba = &Samba{DomainSID: "S-1-5-21-1-2-3"}
	want.Passwords.Pupils = PasswordBirthDate
	p, err := k.Plan(t.Context(), want)
	if err != nil {
		t.Fatal(err)
	}
	res, err := k.Apply(t.Context(), p)
	if err != nil || res.Failed() {
		t.Fatalf("Apply = %v, %v", res, err)
	}
	store, _ := k.Credentials()
	recs, err := store.Pending(credentials.Filter{})
	if err != nil || len(recs) != 35 {
		t.Fatalf("Pending() = %d records, %v; want 35", len(recs), err)
	}
	reported := fmt.Sprintf("%+v %+v %s", p.Changes, res, logs.String())
	all, _ := dump(l)(t.Context())
	for _, r := range recs {
		if strings.Contains(reported, r.Password) {
			t.Errorf("the initial password of %s is in a change, a result or a log", r.Login)
		}
		if strings.Contains(all, r.Password) {
			t.Errorf("the initial password of %s is in the directory in clear", r.Login)
		}
		if r.Role == string(roster.Pupil) && len(r.Password) != 8 {
			t.Errorf("pupil %s initial password has %d characters, want a birth date DDMMYYYY", r.Login, len(r.Password))
		}
		if r.Role != string(roster.Pupil) && len(r.Password) != DefaultPasswordLen {
			t.Errorf("staff %s initial password has %d characters, want %d", r.Login, len(r.Password), DefaultPasswordLen)
		}
	}
	if !strings.Contains(logs.String(), "change applied") {
		t.Error("no change was logged")
	}
}

func TestPasswordHashes(t *testing.T) {
	// A known NT hash: MD4 of UTF-16LE "password".
	if got := ntHash("password"); got != "8846F7EAEE8FB117AD06BDD830B7586C" {
		t.Errorf("ntHash(password) = %s", got)
	}
	if got := birthDatePassword("2012-05-17"); got != "17052012" {
		t.Errorf("birthDatePassword = %s, want 17052012", got)
	}
	seen := map[string]bool{}
	for range 100 {
		pw := randomPassword(10)
		if len(pw) != 10 || strings.ContainsAny(pw, "0O1lI") || seen[pw] {
			t.Fatalf("randomPassword(10) = %q", pw)
		}
		seen[pw] = true
	}
	if a, b := sshaHash("x"), sshaHash("x"); a == b || !strings.HasPrefix(a, "{SSHA}") {
		t.Errorf("sshaHash gives %q and %q: want salted {SSHA} values", a, b)
	}
}

// TestLDAPFromSpec checks the spec's ldap section: the directory and
// bind DN it names, and its bind password as a secret reference the
// agent resolves.
func TestLDAPFromSpec(t *testing.T) {
	l := startSlapd(t)
	secrets := func(ref string) (Secret, error) {
		if ref != "secret://ldap_bind_password" {
			return nil, fmt.Errorf("no secret %s in the manifest", ref)
		}
		return testSecret(l.AdminPassword), nil
	}
	k, err := New(Config{Root: t.TempDir(), Secrets: secrets, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	want := specFor([]roster.Person{pupil("1000000001A", "Jean", "Martin", "3A")})
	want.LDAP = &LDAP{URL: l.URL, BindDN: l.AdminDN, BindPassword: "secret://ldap_bind_password"}
	apply(t, k, want)
	if entry(t, l, pupilsDN(l, "jean.martin")) == nil {
		t.Error("no account made through the spec's directory")
	}
	if err := k.Check(t.Context()); err != nil {
		t.Errorf("Check() = %v", err)
	}

	want.LDAP.BindPassword = "secret://other"
	if _, err := k.Plan(t.Context(), want); err == nil || !strings.Contains(err.Error(), "no secret secret://other") {
		t.Errorf("Plan with an unknown secret = %v", err)
	}
	want.LDAP.BindPassword = l.AdminPassword
	if err := k.Validate(want); err == nil || !strings.Contains(err.Error(), "ldap.bind_password: must be a secret reference") {
		t.Errorf("Validate with a password in clear = %v", err)
	}
	if err := k.Validate(want); err != nil && strings.Contains(err.Error(), l.AdminPassword) {
		t.Error("Validate's error shows the password")
	}
}

// TestNumbersNeverGivenTwice checks the allocator's compare-and-swap: two
// plans made from the same directory state give the same numbers; the
// second apply creates nothing and asks to plan again, and the new plan
// takes the next numbers.
func TestNumbersNeverGivenTwice(t *testing.T) {
	l := startSlapd(t)
	k1, k2 := newKind(t, l), newKind(t, l)
	a := specFor([]roster.Person{pupil("1000000001A", "Jean", "Martin", "3A")})
	a.Roster.Complete = false
	b := specFor([]roster.Person{pupil("1000000002B", "Léa", "Roux", "3A")})
	b.Roster.Complete = false
	pa, err := k1.Plan(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := k2.Plan(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := k1.Apply(t.Context(), pa); err != nil || res.Failed() {
		t.Fatalf("first Apply = %+v, %v", res, err)
	}
	res, err := k2.Apply(t.Context(), pb)
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, c := range res.Changes {
		if c.Status == modules.StatusFailed {
			failed++
			if !strings.Contains(c.Error, "plan again") {
				t.Errorf("%s failed with %q, want a plan again message", c.Change, c.Error)
			}
		}
	}
	if failed == 0 {
		t.Fatalf("the second Apply of a stale plan created entries: %+v", res.Changes)
	}
	if entry(t, l, pupilsDN(l, "lea.roux")) != nil {
		t.Fatal("lea.roux created with numbers another apply took")
	}
	apply(t, k2, b)
	jean, lea := entry(t, l, pupilsDN(l, "jean.martin")), entry(t, l, pupilsDN(l, "lea.roux"))
	if jean["uidnumber"][0] == lea["uidnumber"][0] {
		t.Errorf("jean.martin and lea.roux share uidNumber %s", jean["uidnumber"][0])
	}
}
