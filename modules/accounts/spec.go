package accounts

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"github.com/alize-eple/alize/modules"
	"github.com/alize-eple/alize/modules/accounts/roster"
)

// Spec is the desired state of one establishment's accounts. Its JSON
// names are the wire format: the compiled spec is decoded strictly into
// it. Every section may be left out for its documented defaults, except
// the establishment and the roster.
type Spec struct {
	UAI     string `json:"uai"`     // "0951099D"
	Academy string `json:"academy"` // "versailles": the tree says ou=ac-versailles

	// LDAP says where the directory is; left out, the agent's
	// configuration does.
	LDAP *LDAP `json:"ldap,omitempty"`

	Tree      Tree      `json:"tree,omitzero"`
	IDs       IDs       `json:"ids,omitzero"`
	Logins    Logins    `json:"logins,omitzero"`
	Passwords Passwords `json:"passwords,omitzero"`
	Posix     Posix     `json:"posix,omitzero"`
	Groups    Groups    `json:"groups,omitzero"`
	Leavers   Leavers   `json:"leavers,omitzero"`
	// Samba, when set, makes every account a sambaSamAccount and every
	// group a sambaGroupMapping of that domain (ldapsam).
	Samba *Samba `json:"samba,omitempty"`

	Roster Roster `json:"roster"`
}

// LDAP is the directory the kind writes, and how it binds.
type LDAP struct {
	URL    string `json:"url,omitempty"`     // "ldap://127.0.0.1:389", "ldaps://annuaire.lycee.example:636"
	BindDN string `json:"bind_dn,omitempty"` // "cn=admin,o=gouv,c=fr"
	// BindPassword is a secret reference, "secret://<variable>", which
	// the agent resolves to the value it unsealed; never the password
	// itself, which would travel and be signed in clear.
	BindPassword string `json:"bind_password,omitempty"`
}

// secretPrefix starts a secret reference (modules/schema writes them).
const secretPrefix = "secret://"

// Tree places the accounts under the establishment's base
// ou=<UAI>,ou=ac-<academy>,ou=education,o=gouv,c=fr. Each is a DN relative
// to the base, made of ou= parts only. Defaults are Scribe's.
type Tree struct {
	Pupils  string `json:"pupils,omitempty"`  // "ou=eleves,ou=Utilisateurs"
	Staff   string `json:"staff,omitempty"`   // "ou=personnels,ou=Utilisateurs", teachers and other staff
	Groups  string `json:"groups,omitempty"`  // "ou=groupes"
	Archive string `json:"archive,omitempty"` // "ou=archives": leavers, disabled; outside ou=Utilisateurs so no tool lists them
}

// IDs are the ranges uidNumber and gidNumber are given from. A number once
// given is never given again, even after its account is purged.
type IDs struct {
	UID Range `json:"uid,omitzero"` // default 10000-59999
	GID Range `json:"gid,omitzero"` // default 60000-69999
}

// Range is an inclusive range of numbers.
type Range struct {
	Min int64 `json:"min"`
	Max int64 `json:"max"`
}

// Logins are the rules of login names: prenom.nom, over MaxLength p.nom,
// then prenom.n, collisions numbered (jean.dupont1, jean.dupont2…).
type Logins struct {
	MaxLength int `json:"max_length,omitempty"` // default 19 (the Windows limit is 20)
}

// Passwords are the rules of initial passwords. They are set when an
// account is created and never again; the agent generates them and keeps
// them, encrypted, for `alize accounts passwords` to print once.
type Passwords struct {
	// Pupils is "random" (the default) or "birth_date": the pupil's birth
	// date as DDMMYYYY, as Scribe did (weak: anyone knowing the date can
	// log in; random when the roster has no birth date). Staff always get
	// a random password.
	Pupils string `json:"pupils,omitempty"`
	Length int    `json:"length,omitempty"` // of random passwords: default 10, 8-64
	// PupilsMustChange and StaffMustChange force a change at the first
	// Samba logon (sambaPwdLastSet 0) and at the first PAM login
	// (shadowLastChange 0).
	PupilsMustChange bool `json:"pupils_must_change,omitempty"`
	StaffMustChange  bool `json:"staff_must_change,omitempty"`
	// KeepDays is how long an initial password waits to be printed before
	// it is forgotten: default 30, 1-365.
	KeepDays int `json:"keep_days,omitempty"`
}

// The initial password rules of pupils.
const (
	PasswordRandom    = "random"
	PasswordBirthDate = "birth_date"
)

// Posix is the Unix side of the accounts.
type Posix struct {
	HomeRoot string `json:"home_root,omitempty"` // default "/home": homes are <home_root>/<login>, where the shares kind makes them
	Shell    string `json:"shell,omitempty"`     // default "/bin/false"; leavers get /usr/sbin/nologin
}

// Groups are the rules of the groups under the groups OU. Every class,
// option, service and group a roster names becomes a group; so do the
// teaching teams (one per class: its teachers) and the three role groups
// eleves, professeurs, administratifs (the accounts' primary groups).
type Groups struct {
	TeamPrefix string        `json:"team_prefix,omitempty"` // default "profs-": the team of 3A is profs-3a
	Custom     []CustomGroup `json:"custom,omitempty"`      // groups to have even without members, with a description
}

// CustomGroup is a group the spec names itself.
type CustomGroup struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// Leavers are the rules of departures. A leaver is disabled (shadowExpire,
// sambaAcctFlags D, login shell /usr/sbin/nologin), taken out of every
// group and moved to the archive OU; the entry and the home directory are
// kept. Purging archived entries is a separate, explicit step (Purge).
type Leavers struct {
	RetentionDays int `json:"retention_days,omitempty"` // default 365: Expired lists leavers archived longer ago
}

// Samba is the Samba domain the accounts belong to.
type Samba struct {
	// DomainSID is the domain's SID (`net getlocalsid`): accounts get
	// DomainSID-(2*uidNumber+1000), groups DomainSID-(2*gidNumber+1001),
	// Samba's algorithmic mapping.
	DomainSID string `json:"domain_sid"`
}

// Roster says who the people are: either a roster blob the manifest lists
// (a CSV file, see the roster package) or the people inline, for small
// establishments and tests.
type Roster struct {
	Blob   string          `json:"blob,omitempty"` // "sha256:<64 hex>" of a roster CSV
	People []roster.Person `json:"people,omitempty"`
	// Complete says the roster is a complete snapshot of the
	// establishment: a managed account whose person it does not list is a
	// leaver. A partial roster (the default) leaves absent people as they
	// are; people with a past exit date are leavers either way.
	Complete bool `json:"complete,omitempty"`
}

// Defaults of the spec's optional fields.
const (
	DefaultPupilsOU      = "ou=eleves,ou=Utilisateurs"
	DefaultStaffOU       = "ou=personnels,ou=Utilisateurs"
	DefaultGroupsOU      = "ou=groupes"
	DefaultArchiveOU     = "ou=archives"
	DefaultLoginLength   = 19
	DefaultPasswordLen   = 10
	DefaultKeepDays      = 30
	DefaultHomeRoot      = "/home"
	DefaultShell         = "/bin/false"
	LeaverShell          = "/usr/sbin/nologin"
	DefaultTeamPrefix    = "profs-"
	DefaultRetentionDays = 365
)

// The role groups: every account's primary group, by role.
const (
	GroupPupils   = "eleves"
	GroupTeachers = "professeurs"
	GroupStaff    = "administratifs"
)

// withDefaults returns s with every optional field that is left out set to
// its default.
func (s Spec) withDefaults() Spec {
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&s.Tree.Pupils, DefaultPupilsOU)
	def(&s.Tree.Staff, DefaultStaffOU)
	def(&s.Tree.Groups, DefaultGroupsOU)
	def(&s.Tree.Archive, DefaultArchiveOU)
	if s.IDs.UID == (Range{}) {
		s.IDs.UID = Range{10000, 59999}
	}
	if s.IDs.GID == (Range{}) {
		s.IDs.GID = Range{60000, 69999}
	}
	if s.Logins.MaxLength == 0 {
		s.Logins.MaxLength = DefaultLoginLength
	}
	def(&s.Passwords.Pupils, PasswordRandom)
	if s.Passwords.Length == 0 {
		s.Passwords.Length = DefaultPasswordLen
	}
	if s.Passwords.KeepDays == 0 {
		s.Passwords.KeepDays = DefaultKeepDays
	}
	def(&s.Posix.HomeRoot, DefaultHomeRoot)
	def(&s.Posix.Shell, DefaultShell)
	def(&s.Groups.TeamPrefix, DefaultTeamPrefix)
	if s.Leavers.RetentionDays == 0 {
		s.Leavers.RetentionDays = DefaultRetentionDays
	}
	return s
}

// BaseDN is the establishment's base DN, in the tree EOLE Scribe uses.
func (s Spec) BaseDN() string {
	return "ou=" + ldap.EscapeDN(s.UAI) + ",ou=ac-" + ldap.EscapeDN(s.Academy) + ",ou=education,o=gouv,c=fr"
}

var (
	academyRE = regexp.MustCompile(`^[a-z]+(-[a-z]+)*$`)
	digestRE  = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	sidRE     = regexp.MustCompile(`^S-1-5-21-([0-9]{1,10})-([0-9]{1,10})-([0-9]{1,10})$`)
)

// uaiLetters are the 23 control letters of a UAI: a–z without i, o, q.
const uaiLetters = "ABCDEFGHJKLMNPRSTUVWXYZ"

// ValidUAI reports whether s is a UAI: 7 digits, then the letter the
// number modulo 23 gives.
func ValidUAI(s string) bool {
	if len(s) != 8 {
		return false
	}
	n, err := strconv.Atoi(s[:7])
	if err != nil || strings.ContainsAny(s[:7], "+-") {
		return false
	}
	return s[7] == uaiLetters[n%23]
}

// validate checks the spec's own fields (not the people); s has its
// defaults.
func (s Spec) validate(errs *modules.FieldErrors) {
	if !ValidUAI(s.UAI) {
		errs.Add("uai", "%s: must be 7 digits and the control letter (0951099D)", roster.Quote(s.UAI))
	}
	if !academyRE.MatchString(s.Academy) || len(s.Academy) > 40 {
		errs.Add("academy", "%s: must be the academy in lowercase letters and hyphens (versailles, aix-marseille)", roster.Quote(s.Academy))
	}
	if d := s.LDAP; d != nil {
		if d.URL != "" {
			if u, err := url.Parse(d.URL); err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Host == "" || u.Path != "" && u.Path != "/" {
				errs.Add("ldap.url", "%s: must be ldap://host[:port] or ldaps://host[:port]", roster.Quote(d.URL))
			}
		}
		if d.BindDN != "" {
			if _, err := ldap.ParseDN(d.BindDN); err != nil {
				errs.Add("ldap.bind_dn", "%s: must be a DN", roster.Quote(d.BindDN))
			}
		}
		if p := d.BindPassword; p != "" && (!strings.HasPrefix(p, secretPrefix) || len(p) == len(secretPrefix)) {
			errs.Add("ldap.bind_password", "must be a secret reference secret://<variable> (a secret variable of the module), never the password")
		}
	}
	ous := map[string]string{}
	for _, t := range []struct{ field, dn string }{
		{"tree.pupils", s.Tree.Pupils}, {"tree.staff", s.Tree.Staff},
		{"tree.groups", s.Tree.Groups}, {"tree.archive", s.Tree.Archive},
	} {
		norm, err := relativeOUs(t.dn)
		if err != nil {
			errs.Add(t.field, "%s: %v", roster.Quote(t.dn), err)
			continue
		}
		if other, dup := ous[norm]; dup {
			errs.Add(t.field, "%s is also %s: each must be its own OU", roster.Quote(t.dn), other)
		}
		ous[norm] = t.field
	}
	for _, r := range []struct {
		field string
		r     Range
	}{{"ids.uid", s.IDs.UID}, {"ids.gid", s.IDs.GID}} {
		switch {
		case r.r.Min < 1000:
			errs.Add(r.field+".min", "must be 1000 or more (below are system accounts), not %d", r.r.Min)
		case r.r.Max > maxID:
			errs.Add(r.field+".max", "must be at most %d (Samba RIDs are 32 bits), not %d", int64(maxID), r.r.Max)
		case r.r.Min > r.r.Max:
			errs.Add(r.field, "min %d is above max %d", r.r.Min, r.r.Max)
		}
	}
	if l := s.Logins.MaxLength; l < 8 || l > 32 {
		errs.Add("logins.max_length", "must be 8-32, not %d", l)
	}
	if p := s.Passwords.Pupils; p != PasswordRandom && p != PasswordBirthDate {
		errs.Add("passwords.pupils", "%s: must be %s or %s", roster.Quote(p), PasswordRandom, PasswordBirthDate)
	}
	if l := s.Passwords.Length; l < 8 || l > 64 {
		errs.Add("passwords.length", "must be 8-64, not %d", l)
	}
	if d := s.Passwords.KeepDays; d < 1 || d > 365 {
		errs.Add("passwords.keep_days", "must be 1-365, not %d", d)
	}
	for _, p := range []struct{ field, path string }{{"posix.home_root", s.Posix.HomeRoot}, {"posix.shell", s.Posix.Shell}} {
		if !path.IsAbs(p.path) || path.Clean(p.path) != p.path || len(p.path) > 200 || !printableASCII(p.path) || strings.ContainsAny(p.path, " :") {
			errs.Add(p.field, "%s: must be a clean absolute path of printable ASCII without spaces or colons", roster.Quote(p.path))
		}
	}
	if msg := checkTeamPrefix(s.Groups.TeamPrefix); msg != "" {
		errs.Add("groups.team_prefix", "%s", msg)
	}
	for i, g := range s.Groups.Custom {
		if msg := roster.CheckGroupName(g.Name); msg != "" {
			errs.Add(fmt.Sprintf("groups.custom[%d].name", i), "%s", msg)
		}
		if msg := checkDescription(g.Description); msg != "" {
			errs.Add(fmt.Sprintf("groups.custom[%d].description", i), "%s", msg)
		}
	}
	if d := s.Leavers.RetentionDays; d < 1 || d > 3650 {
		errs.Add("leavers.retention_days", "must be 1-3650, not %d", d)
	}
	if s.Samba != nil && !validSID(s.Samba.DomainSID) {
		errs.Add("samba.domain_sid", "%s: must be a domain SID S-1-5-21-<a>-<b>-<c> (net getlocalsid prints it)", roster.Quote(s.Samba.DomainSID))
	}
	r := s.Roster
	switch {
	case r.Blob != "" && len(r.People) > 0:
		errs.Add("roster", "give either blob or people, not both")
	case r.Blob == "" && len(r.People) == 0:
		errs.Add("roster", "give the roster: blob (the digest of a roster file the manifest lists) or people")
	case r.Blob != "" && !digestRE.MatchString(r.Blob):
		errs.Add("roster.blob", "%s: must be sha256:<64 lowercase hex digits>", roster.Quote(r.Blob))
	}
}

// maxID keeps 2*id+1001, a Samba RID, within 32 bits.
const maxID = 2_000_000_000

func validSID(s string) bool {
	m := sidRE.FindStringSubmatch(s)
	if m == nil {
		return false
	}
	for _, part := range m[1:] {
		if n, err := strconv.ParseUint(part, 10, 64); err != nil || n > 1<<32-1 {
			return false
		}
	}
	return true
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func checkTeamPrefix(p string) string {
	if len(p) > 16 || roster.Slug(p+"x") != p+"x" {
		return fmt.Sprintf("%s: must be at most 16 of a-z 0-9 - (profs-)", roster.Quote(p))
	}
	return ""
}

func checkDescription(d string) string {
	if len([]rune(d)) > 200 {
		return "must be at most 200 characters"
	}
	for _, r := range d {
		if r < 0x20 || r == 0x7f {
			return "must not hold control characters"
		}
	}
	return ""
}

// relativeOUs checks a DN relative to the base: ou= parts only. It returns
// it normalised (lower case, parsed and escaped again).
func relativeOUs(dn string) (string, error) {
	parsed, err := ldap.ParseDN(dn)
	if err != nil || len(parsed.RDNs) == 0 {
		return "", fmt.Errorf("must be a DN relative to the base, such as ou=eleves,ou=Utilisateurs")
	}
	if len(parsed.RDNs) > 4 {
		return "", fmt.Errorf("at most 4 levels")
	}
	parts := make([]string, 0, len(parsed.RDNs))
	for _, rdn := range parsed.RDNs {
		if len(rdn.Attributes) != 1 || !strings.EqualFold(rdn.Attributes[0].Type, "ou") || rdn.Attributes[0].Value == "" {
			return "", fmt.Errorf("must be made of ou= parts only")
		}
		v := rdn.Attributes[0].Value
		if len(v) > 64 || !printableASCII(strings.ReplaceAll(v, " ", "_")) {
			return "", fmt.Errorf("each ou must be at most 64 printable ASCII characters")
		}
		parts = append(parts, "ou="+ldap.EscapeDN(v))
	}
	return strings.ToLower(strings.Join(parts, ",")), nil
}

// under returns the DN of a relative DN of the tree under base, as given
// (not lowercased).
func under(rel, base string) string {
	parsed, _ := ldap.ParseDN(rel)
	parts := make([]string, 0, len(parsed.RDNs)+1)
	for _, rdn := range parsed.RDNs {
		parts = append(parts, "ou="+ldap.EscapeDN(rdn.Attributes[0].Value))
	}
	return strings.Join(append(parts, base), ",")
}
