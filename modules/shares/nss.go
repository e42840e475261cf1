package shares

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// passwdEntry is a user as NSS knows it.
type passwdEntry struct {
	name     string
	uid, gid uint32
}

// groupEntry is a group as NSS knows it.
type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// getentChunk bounds the names given to one getent run.
const getentChunk = 1000

// enumerateAbove is the number of names above which lookupUsers lists
// every user once instead of asking for each.
const enumerateAbove = 64

// lookupUsers resolves user names through the server's NSS with getent,
// which sees what smbd sees (files, LDAP through nslcd or sssd); Go's own
// os/user reads only /etc/passwd without cgo. Names found in all (a
// listing of every user, or nil) are not asked for again; past
// enumerateAbove names, every user is listed at once. Unknown names are
// absent from the result.
func (s *Shares) lookupUsers(ctx context.Context, names []string, all map[string]passwdEntry) (map[string]passwdEntry, error) {
	if all == nil && len(names) > enumerateAbove {
		var err error
		if all, err = s.allUsers(ctx); err != nil {
			return nil, err
		}
	}
	out := make(map[string]passwdEntry, len(names))
	var rest []string
	for _, n := range names {
		if u, ok := all[n]; ok {
			out[n] = u
		} else {
			// Enumeration may be off (nslcd's nss_disable_enumeration):
			// what it did not return is asked for by name.
			rest = append(rest, n)
		}
	}
	return out, s.getent(ctx, "passwd", rest, func(f []string) error {
		u, err := parsePasswd(f)
		if err == nil {
			out[u.name] = u
		}
		return err
	})
}

// allUsers lists every user NSS can enumerate: one LDAP search through
// nslcd or sssd, where asking for each name is one request per name.
func (s *Shares) allUsers(ctx context.Context) (map[string]passwdEntry, error) {
	all := map[string]passwdEntry{}
	err := s.getentAll(ctx, "passwd", func(f []string) error {
		u, err := parsePasswd(f)
		if err == nil {
			all[u.name] = u
		}
		return err
	})
	return all, err
}

func parsePasswd(f []string) (passwdEntry, error) {
	if len(f) < 4 {
		return passwdEntry{}, fmt.Errorf("passwd entry with %d fields", len(f))
	}
	uid, err1 := strconv.ParseUint(f[2], 10, 32)
	gid, err2 := strconv.ParseUint(f[3], 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return passwdEntry{}, fmt.Errorf("passwd entry of %s: %w", f[0], err)
	}
	return passwdEntry{name: f[0], uid: uint32(uid), gid: uint32(gid)}, nil
}

// lookupGroups resolves group names through NSS, with their listed
// members (not the users whose primary group it is).
func (s *Shares) lookupGroups(ctx context.Context, names []string) (map[string]groupEntry, error) {
	out := make(map[string]groupEntry, len(names))
	err := s.getent(ctx, "group", names, func(f []string) error {
		if len(f) < 3 {
			return fmt.Errorf("group entry with %d fields", len(f))
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			return fmt.Errorf("group entry of %s: %w", f[0], err)
		}
		g := groupEntry{name: f[0], gid: uint32(gid)}
		if len(f) > 3 && f[3] != "" {
			g.members = strings.Split(f[3], ",")
		}
		out[f[0]] = g
		return nil
	})
	return out, err
}

// getent runs `getent db -- names…`, in chunks, and hands each entry's
// fields to add. No name, no run.
func (s *Shares) getent(ctx context.Context, db string, names []string, add func([]string) error) error {
	for len(names) > 0 {
		n := min(len(names), getentChunk)
		if err := s.runGetent(ctx, add, append([]string{db, "--"}, names[:n]...)...); err != nil {
			return err
		}
		names = names[n:]
	}
	return nil
}

// getentAll lists the whole database db.
func (s *Shares) getentAll(ctx context.Context, db string, add func([]string) error) error {
	return s.runGetent(ctx, add, db)
}

// runGetent runs getent with args and hands each entry's fields to add,
// which must not keep the slice. Exit status 2 means some names are
// unknown, and 3 that the database cannot be listed: neither is an error.
func (s *Shares) runGetent(ctx context.Context, add func([]string) error, args ...string) error {
	cmd := s.command(ctx, "getent", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) || (exit.ExitCode() != 2 && exit.ExitCode() != 3) {
			return fmt.Errorf("getent %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
		}
	}
	var fields []string // reused: add keeps the strings, never the slice
	for line := range strings.Lines(stdout.String()) {
		line = strings.TrimRight(line, "\n")
		if line == "" {
			continue
		}
		fields = fields[:0]
		for f := range strings.SplitSeq(line, ":") {
			fields = append(fields, f)
		}
		if err := add(fields); err != nil {
			return fmt.Errorf("getent %s: %w", args[0], err)
		}
	}
	return nil
}
