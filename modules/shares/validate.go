package shares

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/alize-eple/alize/modules"
)

// Limits of what a spec may hold. Samba itself has few limits; these keep
// names readable by Windows clients and a spec small enough to check.
const (
	maxShareName  = 80
	maxName       = 64 // user, group, for_each value
	maxComment    = 256
	maxPath       = 1024
	maxComponent  = 255
	maxVeto       = 64
	maxShares     = 2000   // once for_each is expanded
	maxDirs       = 20000  // once for_each is expanded
	maxListLength = 1000   // for_each values, veto patterns
	maxNames      = 256    // users or groups in one list
	maxNameTotal  = 100000 // users and groups of every share, once expanded
	maxACL        = 64     // named entries of one ACL
)

// model is a spec once checked, expanded (for_each) and given its
// defaults: what the kind renders and provisions.
type model struct {
	// include says whether the include file is managed: the spec has
	// shares (an empty list empties the file) or a home share.
	include bool
	shares  []shareModel // in rendering order: the homes share first
	dirs    []dirModel   // in spec order; planned by path
	homes   *homesModel
}

type shareModel struct {
	name       string
	path       string // as in the spec; rendered under the kind's root
	homesRoot  string // set for the homes share: path = homesRoot/%u
	comment    string
	browseable bool
	readOnly   bool
	valid      []string // "@group" or "user", readers and writers
	write      []string
	createMask string // normalised "0660", or ""
	dirMask    string
	hide       bool
	recycle    string // repository, or "" without a bin
	veto       []string
	inherit    bool // a directory with an ACL lies in the share
}

type dirModel struct {
	path  string
	owner string // name or numeric id
	group string
	mode  uint32 // with its special bits
	acl   []aclWant
}

type aclWant struct {
	user  bool // else a group
	name  string
	perms uint16 // rwx bits: 4, 2, 1
}

type homesModel struct {
	root   string
	groups []string
	users  []string
	mode   uint32
}

// Validate checks a spec without touching the system and reports every
// problem with the path of its field.
func (s *Shares) Validate(want Spec) error {
	_, errs := s.compile(want)
	return errs.Err()
}

// compile checks want and turns it into the model the kind works from.
func (s *Shares) compile(want Spec) (model, modules.FieldErrors) {
	c := compiler{roots: s.allowedRoots, shareNames: map[string]string{}, dirPaths: map[string]string{}}
	m := model{include: want.Shares != nil || want.Homes != nil && want.Homes.Share != nil}
	if want.Homes != nil {
		m.homes, m.shares = c.homes(*want.Homes, m.shares)
	}
	if len(want.Shares) > maxShares {
		c.errs.Add("shares", "%d shares, at most %d", len(want.Shares), maxShares)
	} else {
		for i, sh := range want.Shares {
			p := fmt.Sprintf("shares[%d]", i)
			copies := c.expand(p, sh.ForEach)
			if len(m.shares)+len(copies) > maxShares {
				c.errs.Add(p, "the spec expands to more than %d shares", maxShares)
				break
			}
			for _, e := range copies {
				x := substShare(sh, e.v, e.value)
				sm, dir, ok := c.share(p, e.suffix(), x, false)
				if !ok {
					continue
				}
				m.shares = append(m.shares, sm)
				if dir != nil {
					m.dirs = append(m.dirs, *dir)
				}
			}
		}
	}
	if len(want.Directories) > maxDirs {
		c.errs.Add("directories", "%d directories, at most %d", len(want.Directories), maxDirs)
	} else {
		for i, d := range want.Directories {
			p := fmt.Sprintf("directories[%d]", i)
			copies := c.expand(p, d.ForEach)
			if len(m.dirs)+len(copies) > maxDirs {
				c.errs.Add(p, "the spec expands to more than %d directories", maxDirs)
				break
			}
			for _, e := range copies {
				x := d
				x.Path = e.subst(d.Path)
				x.Ownership = substOwnership(d.Ownership, e.v, e.value)
				if dm, ok := c.dir(p, e.suffix(), x.Path, x.Ownership); ok {
					m.dirs = append(m.dirs, dm)
				}
			}
		}
	}
	// Samba must honour default ACLs in shares that hold some.
	var withACL []string
	for _, d := range m.dirs {
		if len(d.acl) > 0 {
			withACL = append(withACL, d.path)
		}
	}
	slices.Sort(withACL)
	for i := range m.shares {
		sh := &m.shares[i]
		if sh.homesRoot == "" {
			_, same := slices.BinarySearch(withACL, sh.path)
			j, _ := slices.BinarySearch(withACL, sh.path+"/")
			sh.inherit = same || j < len(withACL) && strings.HasPrefix(withACL[j], sh.path+"/")
		}
	}
	return m, c.dedupe()
}

type compiler struct {
	roots      []string
	nameCount  int // users and groups of the shares so far
	errs       modules.FieldErrors
	shareNames map[string]string // lower-case name → path of the field that declared it
	dirPaths   map[string]string
}

// dedupe keeps the first problem of each field: a template repeated by
// for_each reports its mistake once, for the first value that shows it.
func (c *compiler) dedupe() modules.FieldErrors {
	seen := map[string]bool{}
	var out modules.FieldErrors
	for _, e := range c.errs {
		if seen[e.Path] {
			continue
		}
		seen[e.Path] = true
		out = append(out, e)
	}
	return out
}

// expansion is one copy of a repeated share or directory.
type expansion struct {
	v, value string // "{class}", "3a"; empty without for_each
}

func (e expansion) subst(s string) string {
	if e.v == "" {
		return s
	}
	return strings.ReplaceAll(s, e.v, e.value)
}

// suffix is appended to the messages of one copy, so a problem that
// only some values cause says which.
func (e expansion) suffix() string {
	if e.v == "" {
		return ""
	}
	return fmt.Sprintf(" (for %s=%s)", strings.Trim(e.v, "{}"), e.value)
}

func (c *compiler) expand(p string, fe *ForEach) []expansion {
	if fe == nil {
		return []expansion{{}}
	}
	p += ".for_each"
	ok := true
	if !isVar(fe.Var) {
		c.errs.Add(p+".var", "%q: must be a lower-case word (letters, digits, '_'), as in {class}", fe.Var)
		ok = false
	}
	if len(fe.Values) > maxListLength {
		c.errs.Add(p+".values", "%d values, at most %d", len(fe.Values), maxListLength)
		return nil
	}
	seen := map[string]bool{}
	for i, v := range fe.Values {
		if !isToken(v, maxName) {
			c.errs.Add(fmt.Sprintf("%s.values[%d]", p, i), "%q: must be 1-%d letters, digits, '.', '_' or '-', starting with a letter or digit", v, maxName)
			ok = false
		} else if seen[v] {
			c.errs.Add(fmt.Sprintf("%s.values[%d]", p, i), "%q given twice", v)
			ok = false
		}
		seen[v] = true
	}
	if !ok {
		return nil
	}
	out := make([]expansion, len(fe.Values))
	for i, v := range fe.Values {
		out[i] = expansion{v: "{" + fe.Var + "}", value: v}
	}
	return out
}

func substShare(sh Share, v, value string) Share {
	if v == "" {
		return sh
	}
	r := func(s string) string { return strings.ReplaceAll(s, v, value) }
	rs := func(l []string) []string {
		out := make([]string, len(l))
		for i, s := range l {
			out[i] = r(s)
		}
		return out
	}
	sh.Name, sh.Path, sh.Comment = r(sh.Name), r(sh.Path), r(sh.Comment)
	sh.Read, sh.Write = rs(sh.Read), rs(sh.Write)
	sh.ReadUsers, sh.WriteUsers = rs(sh.ReadUsers), rs(sh.WriteUsers)
	if sh.Directory != nil {
		o := substOwnership(*sh.Directory, v, value)
		sh.Directory = &o
	}
	return sh
}

func substOwnership(o Ownership, v, value string) Ownership {
	if v == "" {
		return o
	}
	o.Owner = strings.ReplaceAll(o.Owner, v, value)
	o.Group = strings.ReplaceAll(o.Group, v, value)
	acl := make([]ACLEntry, len(o.ACL))
	for i, e := range o.ACL {
		e.User = strings.ReplaceAll(e.User, v, value)
		e.Group = strings.ReplaceAll(e.Group, v, value)
		acl[i] = e
	}
	o.ACL = acl
	return o
}

func (c *compiler) homes(h Homes, shares []shareModel) (*homesModel, []shareModel) {
	const p = "homes"
	hm := &homesModel{root: h.Root, groups: h.Groups, users: h.Users, mode: 0o700}
	ok := c.path(p+".root", "", h.Root)
	if len(h.Groups) == 0 && len(h.Users) == 0 {
		c.errs.Add(p+".groups", "name at least one group (or user) whose members get a home")
		ok = false
	}
	ok = c.names(p+".groups", "", h.Groups, true) && ok
	ok = c.names(p+".users", "", h.Users, false) && ok
	if h.Mode != "" {
		m, good := c.mode(p+".mode", "", h.Mode)
		ok = ok && good
		hm.mode = m
	}
	if sh := h.Share; sh != nil {
		sp := p + ".share"
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"path", sh.Path != ""}, {"read", len(sh.Read) > 0}, {"write", len(sh.Write) > 0},
			{"read_users", len(sh.ReadUsers) > 0}, {"write_users", len(sh.WriteUsers) > 0},
			{"read_only", sh.ReadOnly}, {"directory", sh.Directory != nil}, {"for_each", sh.ForEach != nil},
		} {
			if f.set {
				c.errs.Add(sp+"."+f.name, "must stay empty: the home share shows each user their own home, to the home groups and users")
				ok = false
			}
		}
		x := *sh
		x.Path, x.Read, x.ReadUsers, x.Directory, x.ForEach = "", nil, nil, nil, nil
		x.Write, x.WriteUsers, x.ReadOnly = h.Groups, h.Users, false
		if x.Browseable == nil {
			no := false
			x.Browseable = &no
		}
		sm, _, good := c.share(sp, "", x, true)
		if good && ok {
			sm.homesRoot = h.Root
			shares = append(shares, sm)
		}
	}
	if !ok {
		return nil, shares
	}
	return hm, shares
}

// share checks one share (already expanded) and returns it with the
// directory it provisions, if any.
func (c *compiler) share(p, sfx string, sh Share, home bool) (shareModel, *dirModel, bool) {
	ok := true
	if !isShareName(sh.Name) {
		c.errs.Add(p+".name", "%q: must be 1-%d letters, digits, '.', '_' or '-', starting with a letter or digit, with an optional final '$'%s", sh.Name, maxShareName, sfx+hint(sh.Name))
		ok = false
	} else if reservedShare(sh.Name) {
		c.errs.Add(p+".name", "%q is a name Samba reserves%s", sh.Name, sfx)
		ok = false
	} else if prev, dup := c.shareNames[strings.ToLower(sh.Name)]; dup {
		c.errs.Add(p+".name", "share %q is already declared by %s (share names ignore case)%s", sh.Name, prev, sfx)
		ok = false
	} else {
		c.shareNames[strings.ToLower(sh.Name)] = p
	}
	c.nameCount += len(sh.Read) + len(sh.Write) + len(sh.ReadUsers) + len(sh.WriteUsers)
	if c.nameCount > maxNameTotal {
		c.errs.Add(p, "the shares name more than %d users and groups in all, once expanded", maxNameTotal)
		return shareModel{}, nil, false
	}
	if !home {
		// The home share's path and users are the homes' own, checked there.
		ok = c.path(p+".path", sfx, sh.Path) && ok
		if len(sh.Read)+len(sh.Write)+len(sh.ReadUsers)+len(sh.WriteUsers) == 0 {
			c.errs.Add(p+".read", "name at least one group or user that may read or write%s", sfx)
			ok = false
		}
		ok = c.names(p+".read", sfx, sh.Read, true) && ok
		ok = c.names(p+".write", sfx, sh.Write, true) && ok
		ok = c.names(p+".read_users", sfx, sh.ReadUsers, false) && ok
		ok = c.names(p+".write_users", sfx, sh.WriteUsers, false) && ok
	}
	if !c.comment(p+".comment", sfx, sh.Comment) {
		ok = false
	}
	sm := shareModel{
		name: sh.Name, path: sh.Path, comment: sh.Comment,
		browseable: sh.Browseable == nil || *sh.Browseable,
		readOnly:   sh.ReadOnly, hide: sh.HideUnreadable,
	}
	var writers list
	for _, g := range sh.Write {
		writers.add("@" + g)
	}
	for _, u := range sh.WriteUsers {
		writers.add(u)
	}
	var valid list
	for _, g := range sh.Read {
		valid.add("@" + g)
	}
	for _, u := range sh.ReadUsers {
		valid.add(u)
	}
	for _, w := range writers.items {
		valid.add(w)
	}
	sm.valid = valid.items
	if !sh.ReadOnly {
		sm.write = writers.items
	}
	if sh.CreateMask != "" {
		m, good := c.mask(p+".create_mask", sfx, sh.CreateMask)
		sm.createMask, ok = fmt.Sprintf("%04o", m), ok && good
	}
	if sh.DirectoryMask != "" {
		m, good := c.mask(p+".directory_mask", sfx, sh.DirectoryMask)
		sm.dirMask, ok = fmt.Sprintf("%04o", m), ok && good
	}
	if sh.Recycle != nil {
		sm.recycle = sh.Recycle.Repository
		if sm.recycle == "" {
			sm.recycle = ".corbeille"
		}
		if !isFileName(sm.recycle) {
			c.errs.Add(p+".recycle.repository", "%q: must be one folder name of 1-%d letters, digits, '.', '_' or '-'%s", sm.recycle, maxName, sfx)
			ok = false
		}
	}
	if len(sh.VetoFiles) > maxListLength {
		c.errs.Add(p+".veto_files", "%d patterns, at most %d", len(sh.VetoFiles), maxListLength)
		ok = false
	}
	var veto list
	for i, v := range sh.VetoFiles {
		if !isVeto(v) {
			c.errs.Add(fmt.Sprintf("%s.veto_files[%d]", p, i), "%q: must be 1-%d letters, digits, spaces inside, '.', '_', '-', '~', '$', '*' or '?'%s", v, maxVeto, sfx)
			ok = false
			continue
		}
		veto.add(v)
	}
	sm.veto = veto.items
	var dir *dirModel
	if sh.Directory != nil {
		if d, good := c.dir(p+".directory", sfx, sh.Path, *sh.Directory); good {
			dir = &d
		} else {
			ok = false
		}
	}
	return sm, dir, ok
}

// list keeps strings in order, each once.
type list struct {
	seen  map[string]bool
	items []string
}

func (l *list) add(s string) {
	if l.seen[s] {
		return
	}
	if l.seen == nil {
		l.seen = map[string]bool{}
	}
	l.seen[s] = true
	l.items = append(l.items, s)
}

func (c *compiler) dir(p, sfx, dirPath string, o Ownership) (dirModel, bool) {
	ok := true
	if strings.HasSuffix(p, ".directory") {
		// The path was checked with the share's.
		ok = isPath(dirPath) && c.underRoot(dirPath)
	} else {
		ok = c.path(p+".path", sfx, dirPath)
	}
	if ok {
		if prev, dup := c.dirPaths[dirPath]; dup {
			c.errs.Add(p+pathField(p), "directory %s is already provisioned by %s%s", dirPath, prev, sfx)
			ok = false
		} else {
			c.dirPaths[dirPath] = p
		}
	}
	d := dirModel{path: dirPath, owner: "root", group: "root", mode: 0o755}
	if o.Owner != "" {
		if !isName(o.Owner) {
			c.errs.Add(p+".owner", "%q: %s%s", o.Owner, nameRule, sfx+hint(o.Owner))
			ok = false
		}
		d.owner = o.Owner
	}
	if o.Group != "" {
		if !isName(o.Group) {
			c.errs.Add(p+".group", "%q: %s%s", o.Group, nameRule, sfx+hint(o.Group))
			ok = false
		}
		d.group = o.Group
	}
	if o.Mode != "" {
		m, good := c.mode(p+".mode", sfx, o.Mode)
		d.mode, ok = m, ok && good
	}
	if len(o.ACL) > maxACL {
		c.errs.Add(p+".acl", "%d entries, at most %d", len(o.ACL), maxACL)
		return d, false
	}
	seen := map[string]bool{}
	for i, e := range o.ACL {
		ep := fmt.Sprintf("%s.acl[%d]", p, i)
		var w aclWant
		switch {
		case e.User != "" && e.Group != "":
			c.errs.Add(ep, "give a user or a group, not both%s", sfx)
			ok = false
			continue
		case e.User != "":
			w.user, w.name = true, e.User
			if !isName(e.User) {
				c.errs.Add(ep+".user", "%q: %s%s", e.User, nameRule, sfx+hint(e.User))
				ok = false
			}
		case e.Group != "":
			w.name = e.Group
			if !isName(e.Group) {
				c.errs.Add(ep+".group", "%q: %s%s", e.Group, nameRule, sfx+hint(e.Group))
				ok = false
			}
		default:
			c.errs.Add(ep, "give a user or a group%s", sfx)
			ok = false
			continue
		}
		perms, good := parsePerms(e.Perms)
		if !good {
			c.errs.Add(ep+".perms", "%q: must be three characters as getfacl writes them: r or -, w or -, x or - (\"r-x\")%s", e.Perms, sfx)
			ok = false
		}
		w.perms = perms
		key := fmt.Sprint(w.user, w.name)
		if seen[key] {
			c.errs.Add(ep, "%s given twice%s", w.name, sfx)
			ok = false
		}
		seen[key] = true
		d.acl = append(d.acl, w)
	}
	return d, ok
}

// pathField is where a duplicate directory is reported: its path field,
// or the share's path for a share's directory.
func pathField(p string) string {
	if strings.HasSuffix(p, ".directory") {
		return ""
	}
	return ".path"
}

func parsePerms(s string) (uint16, bool) {
	if len(s) != 3 {
		return 0, false
	}
	var p uint16
	for i, want := range "rwx" {
		switch rune(s[i]) {
		case want:
			p |= 4 >> i
		case '-':
		default:
			return 0, false
		}
	}
	return p, true
}

func (c *compiler) path(p, sfx, dir string) bool {
	if !isPath(dir) {
		c.errs.Add(p, "%q: must be an absolute, clean path (no '.', '..', '//' or final '/') of folder names made of letters, digits, '.', '_', '-', at most %d characters%s", dir, maxPath, sfx+hint(dir))
		return false
	}
	if !c.underRoot(dir) {
		c.errs.Add(p, "%s is outside the allowed roots (%s)%s", dir, strings.Join(c.roots, ", "), sfx)
		return false
	}
	return true
}

func (c *compiler) underRoot(dir string) bool {
	for _, r := range c.roots {
		if dir == r || strings.HasPrefix(dir, r+"/") {
			return true
		}
	}
	return false
}

func (c *compiler) comment(p, sfx, s string) bool {
	if s == "" {
		return true
	}
	if len(s) > maxComment || !utf8.ValidString(s) || strings.TrimSpace(s) != s {
		c.errs.Add(p, "must be valid text of at most %d bytes, without leading or trailing spaces%s", maxComment, sfx)
		return false
	}
	for _, r := range s {
		switch {
		case r == '%':
			c.errs.Add(p, "%q: '%%' would be a Samba macro%s", s, sfx)
			return false
		case r == '\\':
			c.errs.Add(p, "%q: '\\' may continue the line in smb.conf%s", s, sfx)
			return false
		case r == '{' || r == '}':
			c.errs.Add(p, "%q: '{' and '}' are kept for for_each placeholders; this one is unknown%s", s, sfx)
			return false
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || r == '\ufeff':
			c.errs.Add(p, "%q: control characters (newlines…) are refused%s", s, sfx)
			return false
		}
	}
	return true
}

// hint explains a '{' left in a field: a placeholder no for_each declares.
func hint(s string) string {
	if strings.ContainsAny(s, "{}") {
		return "; {…} is not a placeholder of this entry's for_each"
	}
	return ""
}

const nameRule = "must be 1-64 letters, digits, '.', '_' or '-', not starting with '-' or '.' (a user or group name, or a numeric id)"

func (c *compiler) names(p, sfx string, l []string, groups bool) bool {
	if len(l) > maxNames {
		c.errs.Add(p, "%d names, at most %d", len(l), maxNames)
		return false
	}
	ok := true
	for i, n := range l {
		if !isName(n) || (groups && isNumeric(n)) {
			rule := nameRule
			if groups {
				rule = "must be 1-64 letters, digits, '.', '_' or '-', not starting with '-' or '.', not all digits (a group name)"
			}
			c.errs.Add(fmt.Sprintf("%s[%d]", p, i), "%q: %s%s", n, rule, sfx+hint(n))
			ok = false
		}
	}
	return ok
}

func (c *compiler) mode(p, sfx, s string) (uint32, bool) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || len(s) < 3 || len(s) > 4 || m > 0o7777 {
		c.errs.Add(p, "%q: must be an octal mode of 3 or 4 digits (\"0755\", \"2770\")%s", s, sfx)
		return 0, false
	}
	if m&0o4000 != 0 {
		c.errs.Add(p, "%q: the setuid bit means nothing on a directory%s", s, sfx)
		return 0, false
	}
	return uint32(m), true
}

func (c *compiler) mask(p, sfx, s string) (uint32, bool) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || len(s) < 3 || len(s) > 4 || m > 0o777 {
		c.errs.Add(p, "%q: must be an octal mask from \"000\" to \"0777\"%s", s, sfx)
		return 0, false
	}
	return uint32(m), true
}

// isShareName: letters, digits, '.', '_', '-', starting with a letter or
// digit, an optional final '$'. No '[', ']', '=', '%', ';', '#', space,
// newline, '/', '\\' can get in.
func isShareName(s string) bool {
	if t, hidden := strings.CutSuffix(s, "$"); hidden {
		return isToken(t, maxShareName-1)
	}
	return isToken(s, maxShareName)
}

// reservedShare names Samba's and Windows' special shares.
func reservedShare(s string) bool {
	switch strings.ToLower(s) {
	case "global", "homes", "printers", "print$", "ipc$", "admin$":
		return true
	}
	return false
}

// isToken: 1-max of [A-Za-z0-9._-], starting with a letter or a digit.
func isToken(s string, max int) bool {
	if s == "" || len(s) > max || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isAlnum(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-' {
			return false
		}
	}
	return true
}

// isName is a user or group name (or a numeric id): 1-64 of
// [A-Za-z0-9._-], not starting with '-' (an option to getent) or '.'.
func isName(s string) bool {
	if s == "" || len(s) > maxName || s[0] == '-' || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-' {
			return false
		}
	}
	return true
}

func isNumeric(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isVar(s string) bool {
	if s == "" || len(s) > 32 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < 'a' || s[i] > 'z') && (s[i] < '0' || s[i] > '9') && s[i] != '_' {
			return false
		}
	}
	return true
}

// isFileName is one folder name: [A-Za-z0-9._-], not "." or "..".
func isFileName(s string) bool { return isComponent(s, maxName) }

func isComponent(s string, max int) bool {
	if s == "" || len(s) > max || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-' {
			return false
		}
	}
	return true
}

func isVeto(s string) bool {
	if s == "" || len(s) > maxVeto || s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && !strings.ContainsRune("._-~$*? ", rune(s[i])) {
			return false
		}
	}
	return true
}

// isPath: absolute, clean, not "/", components of [A-Za-z0-9._-] that are
// not "." or "..".
func isPath(p string) bool {
	if len(p) < 2 || len(p) > maxPath || p[0] != '/' || path.Clean(p) != p {
		return false
	}
	for _, c := range strings.Split(p[1:], "/") {
		if !isComponent(c, maxComponent) {
			return false
		}
	}
	return true
}

func isAlnum(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}
