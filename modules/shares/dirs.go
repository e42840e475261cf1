package shares

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// dirState is a directory as it is on disk.
type dirState struct {
	exists      bool
	uid, gid    uint32
	mode        uint32 // permission and special bits
	access, def acl    // nil when it has none
}

// dirTarget is a directory as it must be on this server, names resolved.
type dirTarget struct {
	resource string // "directory" or "home"
	path     string // as the spec writes it
	owner    string // names, for technicians
	group    string // empty for a home: its gid
	uid, gid uint32
	mode     uint32 // as the spec writes it, special bits included
	acl      acl    // nil without named entries
	aclText  string // the ACL's named entries as the spec names them
	err      error  // why it cannot be provisioned: Apply reports it failed
}

// statMode is the mode stat shows once the directory is as wanted: with an
// ACL the group bits are the ACL's mask.
func (t dirTarget) statMode() uint32 {
	if t.acl == nil {
		return t.mode
	}
	return t.mode&^0o070 | uint32(t.acl.mask())<<3
}

// groupName is the group as the spec names it, or its gid.
func (t dirTarget) groupName() string {
	if t.group == "" {
		return strconv.FormatUint(uint64(t.gid), 10)
	}
	return t.group
}

// describe is a directory's wanted state in a technician's words.
func (t dirTarget) describe() string {
	d := fmt.Sprintf("%s:%s %04o", t.owner, t.groupName(), t.mode)
	if t.resource == "home" {
		d = fmt.Sprintf("home of %s, %s:%s %04o", t.owner, t.owner, t.groupName(), t.mode)
	}
	if t.acl != nil {
		d += ", ACL " + t.aclText + " (also the default ACL)"
	}
	return d
}

// diff says what differs between the directory on disk and t, in a
// technician's words; empty when nothing does.
func (t dirTarget) diff(have dirState) []string {
	var d []string
	if have.uid != t.uid {
		d = append(d, fmt.Sprintf("owner %d → %s (%d)", have.uid, t.owner, t.uid))
	}
	if have.gid != t.gid {
		d = append(d, fmt.Sprintf("group %d → %s (%d)", have.gid, t.groupName(), t.gid))
	}
	if have.mode != t.statMode() {
		d = append(d, fmt.Sprintf("mode %04o → %04o", have.mode, t.statMode()))
	}
	if !equalACL(have.access, t.acl) {
		d = append(d, fmt.Sprintf("ACL %s → %s", orNone(have.access), orNone(t.acl)))
	}
	if !equalACL(have.def, t.acl) {
		d = append(d, fmt.Sprintf("default ACL %s → %s", orNone(have.def), orNone(t.acl)))
	}
	return d
}

func orNone(a acl) string {
	if a == nil {
		return "none"
	}
	return a.String()
}

func equalACL(a, b acl) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// base splits a spec path into the allowed root it lies under (on disk,
// under the kind's root) and the components below it. The allowed root
// may be a symbolic link, made by the administrator; nothing below it is
// followed.
func (s *Shares) base(p string) (string, []string) {
	i, comps := s.under(p)
	if i < 0 {
		// Validate keeps this from happening; refuse to walk anyway.
		return "", nil
	}
	return s.realRoots[i], comps
}

// under splits a spec path into the index of the allowed root it lies
// under (-1 when none) and the components below it.
func (s *Shares) under(p string) (int, []string) {
	best := -1
	for i, r := range s.allowedRoots {
		below := p == r || len(p) > len(r) && p[len(r)] == '/' && strings.HasPrefix(p, r)
		if below && (best < 0 || len(r) > len(s.allowedRoots[best])) {
			best = i
		}
	}
	if best < 0 {
		return -1, nil
	}
	rest := strings.TrimPrefix(p[len(s.allowedRoots[best]):], "/")
	if rest == "" {
		return best, nil
	}
	return best, strings.Split(rest, "/")
}

const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC

// openBelow opens the directory at components under base without
// following a symbolic link. missing is the number of trailing components
// that do not exist; fd is then the deepest one that does.
func openBelow(base string, components []string) (fd, missing int, err error) {
	fd, err = unix.Open(base, dirFlags, 0)
	if errors.Is(err, unix.ENOENT) {
		return -1, len(components) + 1, nil
	}
	if err != nil {
		return -1, 0, fmt.Errorf("open %s: %w", base, err)
	}
	return walkBelow(fd, base, components, 0)
}

// walkBelow goes down components from the directory fd of
// components[:from] (which it closes or returns), never following a
// symbolic link.
func walkBelow(fd int, base string, components []string, from int) (int, int, error) {
	for i := from; i < len(components); i++ {
		c := components[i]
		next, err := unix.Openat(fd, c, dirFlags|unix.O_NOFOLLOW, 0)
		if errors.Is(err, unix.ENOENT) {
			return fd, len(components) - i, nil
		}
		if err != nil {
			err = describeOpen(fd, c, filepath.Join(append([]string{base}, components[:i+1]...)...), err)
			unix.Close(fd)
			return -1, 0, err
		}
		unix.Close(fd)
		fd = next
	}
	return fd, 0, nil
}

// describeOpen explains why name, in the directory dirfd, would not open
// as a directory.
func describeOpen(dirfd int, name, p string, err error) error {
	var st unix.Stat_t
	if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		err = unix.ELOOP
	}
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%s is a symbolic link: it is never followed; remove it by hand", p)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%s is not a directory: move it away by hand", p)
	}
	return fmt.Errorf("open %s: %w", p, err)
}

// observeDirs reads the directories of targets, a few at a time: on a
// school server most are homes, thousands of them. Each allowed root is
// opened once.
func (s *Shares) observeDirs(targets []dirTarget) ([]dirState, []error) {
	states := make([]dirState, len(targets))
	errs := make([]error, len(targets))
	type where struct {
		root  int // in s.allowedRoots
		comps []string
	}
	wheres := make([]where, len(targets))
	bases := make([]int, len(s.allowedRoots)) // descriptors; -1 when missing
	opened := make([]bool, len(s.allowedRoots))
	defer func() {
		for i, fd := range bases {
			if opened[i] && fd >= 0 {
				unix.Close(fd)
			}
		}
	}()
	for i, t := range targets {
		root, comps := s.under(t.path)
		wheres[i] = where{root, comps}
		if root < 0 || opened[root] {
			continue
		}
		fd, err := unix.Open(s.realRoots[root], dirFlags, 0)
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return nil, []error{fmt.Errorf("open %s: %w", s.realRoots[root], err)}
		}
		bases[root], opened[root] = fd, true
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	workers := min(4, 1+len(targets)/256)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(targets) {
					return
				}
				w := wheres[i]
				if w.root < 0 {
					errs[i] = fmt.Errorf("%s is outside the allowed roots", targets[i].path)
					continue
				}
				states[i], errs[i] = observeDir(bases[w.root], s.realRoots[w.root], w.comps, targets[i].acl != nil)
			}
		})
	}
	wg.Wait()
	return states, errs
}

// observeDir reads the directory at components under base, whose
// descriptor is bfd (-1 when base is missing). wantACL says whether the
// directory should have ACLs: the cheapest way to read them differs.
func observeDir(bfd int, base string, comps []string, wantACL bool) (dirState, error) {
	switch {
	case bfd < 0:
		return dirState{}, nil
	case len(comps) == 0:
		return statFD(bfd, wantACL)
	}
	// The first component opens from the allowed root's descriptor, which
	// stays open for the other directories.
	fd, err := unix.Openat(bfd, comps[0], dirFlags|unix.O_NOFOLLOW, 0)
	if errors.Is(err, unix.ENOENT) {
		return dirState{}, nil
	}
	if err != nil {
		return dirState{}, describeOpen(bfd, comps[0], filepath.Join(base, comps[0]), err)
	}
	fd, missing, err := walkBelow(fd, base, comps, 1)
	if err != nil || missing > 0 {
		if fd >= 0 {
			unix.Close(fd)
		}
		return dirState{}, err
	}
	defer unix.Close(fd)
	return statFD(fd, wantACL)
}

// statFD reads the directory fd's owner, mode and ACLs.
func statFD(fd int, wantACL bool) (dirState, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return dirState{}, err
	}
	have := dirState{exists: true, uid: st.Uid, gid: st.Gid, mode: st.Mode & 0o7777}
	access, def := true, true
	var err error
	if !wantACL {
		// Most directories have no xattr at all, and should have none:
		// one listing tells, where reading each ACL takes two calls.
		if access, def, err = hasACLs(fd); err != nil {
			return have, err
		}
	}
	if access {
		if have.access, err = getACL(fd, xattrAccess); err != nil {
			return have, err
		}
	}
	if def {
		if have.def, err = getACL(fd, xattrDefault); err != nil {
			return have, err
		}
	}
	return have, nil
}

// hasACLs lists fd's xattrs to tell whether it has an access and a
// default ACL. The size of the list comes first: most directories have
// no xattr, and that one call tells.
func hasACLs(fd int) (access, def bool, err error) {
	var buf []byte
	for {
		n, err := unix.Flistxattr(fd, buf)
		switch {
		case errors.Is(err, unix.EOPNOTSUPP):
			return false, false, nil
		case errors.Is(err, unix.ERANGE):
			buf = nil // grown meanwhile: ask for the size again
			continue
		case err != nil:
			return false, false, fmt.Errorf("list xattrs: %w", err)
		case n == 0:
			return false, false, nil
		case buf == nil:
			buf = make([]byte, n)
			continue
		}
		for name := range bytes.SplitSeq(buf[:n], []byte{0}) {
			access = access || string(name) == xattrAccess
			def = def || string(name) == xattrDefault
		}
		return access, def, nil
	}
}

// getACL reads one ACL xattr; nil when there is none or the file system
// has no ACLs.
func getACL(fd int, name string) (acl, error) {
	var small [256]byte
	buf := small[:]
	for {
		n, err := unix.Fgetxattr(fd, name, buf)
		switch {
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.EOPNOTSUPP):
			return nil, nil
		case errors.Is(err, unix.ERANGE):
			size, err := unix.Fgetxattr(fd, name, nil)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", name, err)
			}
			buf = make([]byte, size)
			continue
		case err != nil:
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		a, err := decodeACL(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		return a, nil
	}
}

// provision makes the directory t: missing components are created
// (parents root-owned 0755, as mkdir -p makes them), then the directory
// gets its owner, ACLs and mode, through a descriptor that no symbolic
// link led to.
func (s *Shares) provision(t dirTarget) error {
	if t.err != nil {
		return t.err
	}
	base, comps := s.base(t.path)
	if base == "" {
		return fmt.Errorf("%s is outside the allowed roots", t.path)
	}
	if err := mkdirAll(base); err != nil {
		return err
	}
	fd, missing, err := openBelow(base, comps)
	if err != nil {
		return err
	}
	if missing > len(comps) {
		return fmt.Errorf("%s vanished while being created", base)
	}
	for i := len(comps) - missing; i < len(comps); i++ {
		perm := uint32(0o755)
		if i == len(comps)-1 {
			perm = 0o700 // nobody gets in before its owner and mode are set
		}
		err := unix.Mkdirat(fd, comps[i], perm)
		made := err == nil
		if err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Close(fd)
			return fmt.Errorf("create %s: %w", filepath.Join(append([]string{base}, comps[:i+1]...)...), err)
		}
		next, err := unix.Openat(fd, comps[i], dirFlags|unix.O_NOFOLLOW, 0)
		if err != nil {
			err = describeOpen(fd, comps[i], filepath.Join(append([]string{base}, comps[:i+1]...)...), err)
			unix.Close(fd)
			return err
		}
		unix.Close(fd)
		fd = next
		if made {
			// Whatever the agent's umask, parents stay traversable.
			if err := unix.Fchmod(fd, perm); err != nil {
				unix.Close(fd)
				return fmt.Errorf("chmod %s: %w", filepath.Join(append([]string{base}, comps[:i+1]...)...), err)
			}
		}
	}
	defer unix.Close(fd)
	if err := unix.Fchown(fd, int(t.uid), int(t.gid)); err != nil {
		return fmt.Errorf("chown %s: %w", t.path, err)
	}
	if t.acl != nil {
		v := t.acl.encode()
		if err := unix.Fsetxattr(fd, xattrAccess, v, 0); err != nil {
			return fmt.Errorf("set the ACL of %s: %w", t.path, aclErr(err))
		}
		if err := unix.Fsetxattr(fd, xattrDefault, v, 0); err != nil {
			return fmt.Errorf("set the default ACL of %s: %w", t.path, aclErr(err))
		}
	} else {
		for _, name := range []string{xattrAccess, xattrDefault} {
			if err := unix.Fremovexattr(fd, name); err != nil && !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.EOPNOTSUPP) {
				return fmt.Errorf("remove the ACL of %s: %w", t.path, err)
			}
		}
	}
	if err := unix.Fchmod(fd, t.statMode()); err != nil {
		return fmt.Errorf("chmod %s: %w", t.path, err)
	}
	return nil
}

func aclErr(err error) error {
	if errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("%w: the file system has no POSIX ACLs (mount it with acl)", err)
	}
	return err
}

// mkdirAll creates an allowed root when missing, root-owned 0755.
func mkdirAll(dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err == nil {
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := unix.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return nil
		}
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return unix.Chmod(dir, 0o755) // whatever the umask
}
