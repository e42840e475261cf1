package shares

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/alize-eple/alize/modules"
)

// Defaults of Config.
const (
	DefaultInclude = "/etc/samba/alize-shares.conf"
	DefaultSmbConf = "/etc/samba/smb.conf"
)

// DefaultAllowedRoots are where shares, directories and homes may be when
// Config.AllowedRoots is empty.
func DefaultAllowedRoots() []string { return []string{"/home", "/srv"} }

// Config is how the agent (or the controller, to validate) sets the kind
// up. The zero value is a production server's.
type Config struct {
	// Root is prefixed to every path the kind reads or writes: "/" (the
	// default) on a server, a temporary directory in tests.
	Root string
	// Include is the Alizé-owned include file; DefaultInclude when empty.
	Include string
	// SmbConf is smb.conf, which gets one line including Include;
	// DefaultSmbConf when empty.
	SmbConf string
	// AllowedRoots are the directories shares, provisioned directories
	// and homes must lie in; DefaultAllowedRoots when empty. They are
	// followed if symbolic links, nothing below them is.
	AllowedRoots []string
	// VFSModules is the directory of Samba's VFS modules, where a recycle
	// bin's recycle.so must be; searched in /usr/lib/*/samba/vfs when
	// empty.
	VFSModules string
	// Command builds the commands the kind runs: testparm, getent and,
	// unless Reload is set, smbcontrol. exec.CommandContext when nil.
	// Tests point getent at nss_wrapper through it.
	Command func(ctx context.Context, name string, arg ...string) *exec.Cmd
	// Reload makes smbd load the new configuration. When nil: SIGHUP to
	// the smbd of its pid file (in SmbConf's "pid directory", /run/samba
	// by default) or, when no running smbd is found that way,
	// `smbcontrol -s <SmbConf> smbd reload-config`. A server whose smbd
	// runs under systemd may reload the unit instead.
	Reload func(ctx context.Context) error
	// Log receives one record per change applied; discarded when nil.
	Log *slog.Logger
}

// Shares is the shares kind.
type Shares struct {
	root         string
	include      string // as on the server; s.real gives the path on disk
	smbConf      string
	allowedRoots []string
	realRoots    []string // allowedRoots on disk
	vfsDir       string
	command      func(ctx context.Context, name string, arg ...string) *exec.Cmd
	reload       func(ctx context.Context) error
	log          *slog.Logger
}

var (
	_ modules.Kind[Spec] = (*Shares)(nil)
	_ modules.Checker    = (*Shares)(nil)
)

// New returns the shares kind set up by cfg.
func New(cfg Config) (*Shares, error) {
	s := &Shares{
		root: cfg.Root, include: cfg.Include, smbConf: cfg.SmbConf,
		allowedRoots: slices.Clone(cfg.AllowedRoots), vfsDir: cfg.VFSModules,
		command: cfg.Command, reload: cfg.Reload, log: cfg.Log,
	}
	if s.root == "" {
		s.root = "/"
	}
	if s.include == "" {
		s.include = DefaultInclude
	}
	if s.smbConf == "" {
		s.smbConf = DefaultSmbConf
	}
	if len(s.allowedRoots) == 0 {
		s.allowedRoots = DefaultAllowedRoots()
	}
	var errs modules.FieldErrors
	if !filepath.IsAbs(s.root) || filepath.Clean(s.root) != s.root {
		errs.Add("Root", "%q: must be an absolute, clean path", s.root)
	}
	for field, p := range map[string]string{"Include": s.include, "SmbConf": s.smbConf} {
		if !isPath(p) {
			errs.Add(field, "%q: must be an absolute, clean path of plain names", p)
		}
	}
	if s.include == s.smbConf {
		errs.Add("Include", "must differ from SmbConf")
	}
	for i, r := range s.allowedRoots {
		if !isPath(r) {
			errs.Add(fmt.Sprintf("AllowedRoots[%d]", i), "%q: must be an absolute, clean path of plain names, not /", r)
		} else if dir := path.Dir(s.include); dir == r || strings.HasPrefix(dir, r+"/") {
			errs.Add(fmt.Sprintf("AllowedRoots[%d]", i), "%s holds the include file: a share could expose it", r)
		}
	}
	if err := errs.Err(); err != nil {
		return nil, fmt.Errorf("shares: config: %w", err)
	}
	for _, r := range s.allowedRoots {
		s.realRoots = append(s.realRoots, s.real(r))
	}
	if s.command == nil {
		s.command = exec.CommandContext
	}
	if s.reload == nil {
		s.reload = s.reloadSmbd
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("kind", s.Name())
	return s, nil
}

// Name is the kind's name in modules and manifests.
func (s *Shares) Name() string { return "shares" }

// real is where spec path p lies on disk.
func (s *Shares) real(p string) string { return filepath.Join(s.root, p) }

// planState is what Apply needs beyond the changes; the engine hands it
// back untouched.
type planState struct {
	dirs    map[int]dirTarget // by change index
	include []byte
	names   []string // shares testparm must list
	recycle bool
}

// Plan observes the server and returns what it would take to reach want.
// It writes nothing.
func (s *Shares) Plan(ctx context.Context, want Spec) (modules.Plan, error) {
	p := modules.Plan{Kind: s.Name()}
	m, errs := s.compile(want)
	if err := errs.Err(); err != nil {
		return p, fmt.Errorf("shares: invalid spec: %w", err)
	}
	inc, conf := s.real(s.include), s.real(s.smbConf)
	confData, err := os.ReadFile(conf)
	if err != nil {
		return p, fmt.Errorf("shares: read %s (is Samba installed?): %w", s.smbConf, err)
	}
	live, err := os.ReadFile(inc)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return p, fmt.Errorf("shares: read %s: %w", s.include, err)
	}
	if err := handWritten(confData, m.shares, s.smbConf); err != nil {
		return p, err
	}
	targets, err := s.targets(ctx, m)
	if err != nil {
		return p, err
	}

	st := &planState{dirs: map[int]dirTarget{}}
	states, dirErrs := s.observeDirs(targets)
	if len(states) != len(targets) {
		return p, fmt.Errorf("shares: %w", errors.Join(dirErrs...))
	}
	for i, t := range targets {
		have := states[i]
		if dirErrs[i] != nil && t.err == nil {
			t.err = dirErrs[i]
		}
		c := modules.Change{Resource: t.resource, ID: t.path}
		switch {
		case t.err != nil:
			c.Op, c.Summary = modules.OpUpdate, "cannot be provisioned: "+t.err.Error()
		case !have.exists:
			c.Op, c.Summary = modules.OpCreate, t.describe()
		default:
			d := t.diff(have)
			if len(d) == 0 {
				continue
			}
			c.Op, c.Summary = modules.OpUpdate, strings.Join(d, ", ")
		}
		st.dirs[len(p.Changes)] = t
		p.Changes = append(p.Changes, c)
	}

	if !m.include {
		// Neither shares nor a home share: the include file and smb.conf
		// are not managed, and left as they are.
		p.State = st
		return p, nil
	}
	st.include = render(m, s.root)
	configChanges := s.diffInclude(live, st.include, m)
	if !hasInclude(confData, inc) {
		configChanges = append(configChanges, modules.Change{Op: modules.OpUpdate, Resource: "file", ID: s.smbConf,
			Summary: fmt.Sprintf("add the line \"include = %s\" to [global]; nothing else changes", inc)})
	}
	if len(configChanges) > 0 {
		p.Changes = append(p.Changes, configChanges...)
		for _, sh := range m.shares {
			st.names = append(st.names, sh.name)
			st.recycle = st.recycle || sh.recycle != ""
		}
	}
	p.State = st
	return p, nil
}

// handWritten refuses a share that smb.conf itself defines: Samba would
// merge the two sections.
func handWritten(conf []byte, shares []shareModel, name string) error {
	defined := map[string]bool{}
	for _, sec := range parseSections(conf) {
		defined[strings.ToLower(sec.name)] = true
	}
	var errs []error
	for _, sh := range shares {
		if defined[strings.ToLower(sh.name)] {
			errs = append(errs, fmt.Errorf("shares: share [%s] is also written by hand in %s: remove that section or rename the share in the module", sh.name, name))
		}
	}
	return errors.Join(errs...)
}

// diffInclude compares the live include file with the wanted one, share
// by share.
func (s *Shares) diffInclude(live, want []byte, m model) []modules.Change {
	if bytes.Equal(live, want) {
		return nil
	}
	have := map[string]section{}
	var order []string
	for _, sec := range parseSections(live) {
		k := strings.ToLower(sec.name)
		if _, dup := have[k]; !dup {
			order = append(order, k)
			have[k] = sec
		}
	}
	var out []modules.Change
	wanted := map[string]bool{}
	for _, sec := range parseSections(want) {
		k := strings.ToLower(sec.name)
		wanted[k] = true
		old, ok := have[k]
		switch {
		case !ok:
			out = append(out, modules.Change{Op: modules.OpCreate, Resource: "share", ID: sec.name,
				Summary: "add share [" + sec.name + "] (" + shareWhere(m, sec.name) + ")"})
		case strings.TrimRight(old.text, " \t\n") != strings.TrimRight(sec.text, " \t\n"):
			out = append(out, modules.Change{Op: modules.OpUpdate, Resource: "share", ID: sec.name,
				Summary: "set " + diffParams(old.params, sec.params) + " back as the module says"})
		}
	}
	for _, k := range order {
		if !wanted[k] {
			out = append(out, modules.Change{Op: modules.OpDelete, Resource: "share", ID: have[k].name,
				Summary: "remove share [" + have[k].name + "]; its directory and files are kept"})
		}
	}
	if len(out) == 0 {
		out = append(out, modules.Change{Op: modules.OpUpdate, Resource: "file", ID: s.include,
			Summary: "rewrite the file: it was edited outside its shares"})
	}
	return out
}

func shareWhere(m model, name string) string {
	for _, sh := range m.shares {
		if sh.name == name {
			if sh.homesRoot != "" {
				return "each user's home under " + sh.homesRoot
			}
			return sh.path
		}
	}
	return ""
}

// diffParams names the parameters that differ, for a technician.
func diffParams(have, want []param) string {
	h, w := map[string]string{}, map[string]string{}
	for _, p := range have {
		h[p.key] = p.value
	}
	for _, p := range want {
		w[p.key] = p.value
	}
	var keys list
	for _, p := range want {
		if v, ok := h[p.key]; !ok || v != p.value {
			keys.add(p.key)
		}
	}
	for _, p := range have {
		if _, ok := w[p.key]; !ok {
			keys.add(p.key)
		}
	}
	if len(keys.items) == 0 {
		return "the section's layout"
	}
	return strings.Join(keys.items, ", ")
}

// targets resolves the directories and homes of m through NSS, ordered by
// path so that parents come first.
func (s *Shares) targets(ctx context.Context, m model) ([]dirTarget, error) {
	var groupNames, userNames nameSet
	for _, d := range m.dirs {
		userNames.add(d.owner)
		groupNames.add(d.group)
		for _, e := range d.acl {
			if e.user {
				userNames.add(e.name)
			} else {
				groupNames.add(e.name)
			}
		}
	}
	if m.homes != nil {
		for _, g := range m.homes.groups {
			groupNames.add(g)
		}
	}
	// Users resolve while the groups do: homes mean many users, all
	// listed at once; without homes every name is known already.
	var users, all map[string]passwdEntry
	var usersErr error
	var wg sync.WaitGroup
	if m.homes != nil {
		wg.Go(func() { all, usersErr = s.allUsers(ctx) })
	} else {
		wg.Go(func() { users, usersErr = s.lookupUsers(ctx, userNames.items, nil) })
	}
	groups, err := s.lookupGroups(ctx, groupNames.items)
	wg.Wait()
	if err = errors.Join(err, usersErr); err != nil {
		return nil, fmt.Errorf("shares: %w", err)
	}
	var homeUsers []string
	if m.homes != nil {
		seen := map[string]bool{}
		add := func(u string) {
			// A name NSS returns could be anything: only plain names get a
			// home, and never root.
			if !seen[u] && isName(u) && !isNumeric(u) && u != "root" {
				seen[u] = true
				homeUsers = append(homeUsers, u)
			}
		}
		for _, g := range m.homes.groups {
			for _, u := range groups[g].members {
				add(u)
			}
		}
		for _, u := range m.homes.users {
			add(u)
		}
		for _, u := range homeUsers {
			userNames.add(u)
		}
		if users, err = s.lookupUsers(ctx, userNames.items, all); err != nil {
			return nil, fmt.Errorf("shares: %w", err)
		}
	}

	var out []dirTarget
	for _, d := range m.dirs {
		t := dirTarget{resource: "directory", path: d.path, owner: d.owner, group: d.group, mode: d.mode}
		var errs []error
		t.uid, errs = resolveUser(users, d.owner, errs)
		t.gid, errs = resolveGroup(groups, d.group, errs)
		if len(d.acl) > 0 {
			named := [2]map[uint32]uint16{{}, {}}
			for _, e := range d.acl {
				var id uint32
				if e.user {
					id, errs = resolveUser(users, e.name, errs)
					named[0][id] |= e.perms
				} else {
					id, errs = resolveGroup(groups, e.name, errs)
					named[1][id] |= e.perms
				}
			}
			t.acl = newACL(d.mode, named[0], named[1])
			var text []string
			for _, e := range d.acl {
				kind := "group"
				if e.user {
					kind = "user"
				}
				text = append(text, kind+":"+e.name+":"+permString(e.perms))
			}
			t.aclText = strings.Join(text, ",")
		}
		t.err = errors.Join(errs...)
		out = append(out, t)
	}
	if m.homes != nil {
		for _, u := range homeUsers {
			pw, ok := users[u]
			if !ok || pw.uid == 0 {
				continue // listed in a group but unknown as a user, or root: no home
			}
			// The root is a clean path, u a plain name: no Join needed.
			out = append(out, dirTarget{resource: "home", path: m.homes.root + "/" + u,
				owner: u, uid: pw.uid, gid: pw.gid, mode: m.homes.mode})
		}
	}
	slices.SortStableFunc(out, func(a, b dirTarget) int { return strings.Compare(a.path, b.path) })
	// A home that is also a provisioned directory is the directory's.
	out = slices.CompactFunc(out, func(a, b dirTarget) bool { return a.path == b.path })
	return out, nil
}

// nameSet is the names to look up through NSS, each once, in order;
// numeric ids need no lookup.
type nameSet struct{ list }

func (n *nameSet) add(name string) {
	if !isNumeric(name) {
		n.list.add(name)
	}
}

func resolveUser(users map[string]passwdEntry, name string, errs []error) (uint32, []error) {
	if id, ok := numericID(name); ok {
		return id, errs
	}
	if u, ok := users[name]; ok {
		return u.uid, errs
	}
	return 0, append(errs, fmt.Errorf("no user %q on this server (is the accounts kind applied?)", name))
}

func resolveGroup(groups map[string]groupEntry, name string, errs []error) (uint32, []error) {
	if id, ok := numericID(name); ok {
		return id, errs
	}
	if g, ok := groups[name]; ok {
		return g.gid, errs
	}
	return 0, append(errs, fmt.Errorf("no group %q on this server (is the accounts kind applied?)", name))
}

func numericID(s string) (uint32, bool) {
	if !isNumeric(s) || len(s) > 10 {
		return 0, false
	}
	var id uint64
	for i := 0; i < len(s); i++ {
		id = id*10 + uint64(s[i]-'0')
	}
	if id >= 1<<32-1 {
		return 0, false
	}
	return uint32(id), true
}

// Apply does what p says: directories and homes first, each on its own,
// then the include file and smb.conf's include line in one checked step,
// and one reload. It is safe to re-run.
func (s *Shares) Apply(ctx context.Context, p modules.Plan) (modules.Result, error) {
	res := modules.Result{Kind: s.Name(), Changes: []modules.ChangeResult{}}
	if p.Kind != s.Name() {
		return res, fmt.Errorf("shares: a plan of kind %q", p.Kind)
	}
	if len(p.Changes) == 0 {
		return res, nil
	}
	st, ok := p.State.(*planState)
	if !ok {
		return res, errors.New("shares: the plan carries no state: make it with Plan")
	}
	res.Changes = make([]modules.ChangeResult, len(p.Changes))
	var config []int
	for i, c := range p.Changes {
		t, isDir := st.dirs[i]
		if !isDir {
			config = append(config, i)
			continue
		}
		if err := ctx.Err(); err != nil {
			s.record(&res, i, c, err)
			continue
		}
		s.record(&res, i, c, s.provision(t))
	}
	if len(config) > 0 {
		err := ctx.Err()
		if err == nil {
			err = s.commit(ctx, st.include, st.names, st.recycle)
		}
		for _, i := range config {
			s.record(&res, i, p.Changes[i], err)
		}
	}
	return res, nil
}

func (s *Shares) record(res *modules.Result, i int, c modules.Change, err error) {
	r := modules.ChangeResult{Change: c, Status: modules.StatusApplied}
	if err != nil {
		r.Status, r.Error = modules.StatusFailed, err.Error()
		s.log.Error("change failed", "change", c.String(), "error", err)
	} else {
		s.log.Info("change applied", "change", c.String())
	}
	res.Changes[i] = r
}

// Check verifies that the live configuration passes testparm and that
// smbd's view of it holds every share of the include file.
func (s *Shares) Check(ctx context.Context) error {
	data, err := os.ReadFile(s.real(s.include))
	if err != nil {
		return fmt.Errorf("shares: check: %w", err)
	}
	var names []string
	for _, sec := range parseSections(data) {
		names = append(names, sec.name)
	}
	dump, problems, err := s.runTestparm(ctx, s.real(s.smbConf))
	if len(problems) > 0 {
		err = errors.Join(err, errors.New(strings.Join(problems, "; ")))
	}
	if err != nil {
		return fmt.Errorf("shares: check: testparm %s: %w", s.smbConf, err)
	}
	listed := map[string]bool{}
	for _, sec := range parseSections(dump) {
		listed[strings.ToLower(sec.name)] = true
	}
	for _, n := range names {
		if !listed[strings.ToLower(n)] {
			return fmt.Errorf("shares: check: share [%s] of %s is not in the configuration smbd loads: is the include line in %s?", n, s.include, s.smbConf)
		}
	}
	return nil
}
