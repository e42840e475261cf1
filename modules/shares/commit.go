package shares

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/alize-eple/alize/modules/atomic"
)

// commit puts a new include file live: written beside the live one,
// checked with testparm in the context of smb.conf (given the managed
// include line if it lacks it), renamed over the live one, then smbd
// reloads. A refused include never reaches the live file; a failed
// reload puts the previous files back.
func (s *Shares) commit(ctx context.Context, include []byte, names []string, recycle bool) error {
	inc, conf := s.real(s.include), s.real(s.smbConf)
	oldConf, err := os.ReadFile(conf)
	if err != nil {
		return fmt.Errorf("read %s: %w", s.smbConf, err)
	}
	oldInc, err := os.ReadFile(inc)
	hadInc := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", s.include, err)
	}
	newConf := oldConf
	if !hasInclude(oldConf, inc) {
		newConf = withInclude(oldConf, inc)
	}
	if recycle {
		if err := s.haveVFS("recycle"); err != nil {
			return err
		}
	}

	dir := filepath.Dir(inc)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Candidates an interrupted run left behind.
	stale, _ := filepath.Glob(filepath.Join(dir, ".alize-candidate-*"))
	for _, f := range stale {
		os.Remove(f)
	}
	tmp, err := writeTemp(dir, ".alize-candidate-*.conf", include, 0o644, false)
	if err != nil {
		return fmt.Errorf("write the new include: %w", err)
	}
	defer os.Remove(tmp) // a no-op once renamed
	// The new include goes to disk while testparm checks it.
	synced := make(chan error, 1)
	go func() { synced <- syncFile(tmp) }()
	// Only testparm reads the candidate smb.conf: no need to sync it.
	candConf, err := writeTemp(dir, ".alize-candidate-smb-*.conf", replaceInclude(newConf, inc, tmp), 0o600, false)
	if err != nil {
		return fmt.Errorf("write the candidate smb.conf: %w", err)
	}
	defer os.Remove(candConf)
	if err := s.testparm(ctx, candConf, conf, names); err != nil {
		return fmt.Errorf("testparm refuses the new include, the live %s is unchanged: %w", s.include, err)
	}
	if err := <-synced; err != nil {
		return fmt.Errorf("write the new include: %w", err)
	}

	if err := os.Rename(tmp, inc); err != nil {
		return fmt.Errorf("replace %s: %w", s.include, err)
	}
	_ = atomic.SyncDir(dir) // a failure only weakens durability: not reported
	if !bytes.Equal(newConf, oldConf) {
		if err := replaceFile(conf, newConf); err != nil {
			err = fmt.Errorf("add the include line to %s: %w", s.smbConf, err)
			return errors.Join(err, s.restore(inc, oldInc, hadInc, "", nil))
		}
	}
	if err := s.reload(ctx); err != nil {
		restoreConf := ""
		if !bytes.Equal(newConf, oldConf) {
			restoreConf = conf
		}
		if rerr := s.restore(inc, oldInc, hadInc, restoreConf, oldConf); rerr != nil {
			return fmt.Errorf("reload smbd: %w; putting the previous files back failed too: %v", err, rerr)
		}
		return fmt.Errorf("reload smbd: %w; the previous %s was put back", err, s.include)
	}
	return nil
}

// restore puts back the include file as it was (absent when it was) and,
// when conf is set, smb.conf.
func (s *Shares) restore(inc string, oldInc []byte, hadInc bool, conf string, oldConf []byte) error {
	var errs []error
	if hadInc {
		errs = append(errs, replaceFile(inc, oldInc))
	} else if err := os.Remove(inc); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	if conf != "" {
		errs = append(errs, replaceFile(conf, oldConf))
	}
	return errors.Join(errs...)
}

// testparm checks the candidate smb.conf. testparm exits 0 on an unknown
// parameter and only says so on stderr: any stderr line but its usual
// chatter is a problem, unless the live configuration (baseline) shows
// it too, being none of the include's doing. Every share of the include
// must be in testparm's dump.
func (s *Shares) testparm(ctx context.Context, candidate, baseline string, names []string) error {
	dump, problems, err := s.runTestparm(ctx, candidate)
	if err != nil && len(problems) == 0 {
		return err
	}
	if len(problems) > 0 {
		_, known, _ := s.runTestparm(ctx, baseline)
		seen := map[string]bool{}
		for _, l := range known {
			seen[l] = true
		}
		var ours []string
		for _, l := range problems {
			if !seen[l] {
				ours = append(ours, l)
			}
		}
		switch {
		case len(ours) > 0:
			return fmt.Errorf("%s", strings.Join(ours, "; "))
		case err != nil:
			return fmt.Errorf("%w; the live smb.conf fails too, fix it by hand: %s", err, strings.Join(problems, "; "))
		}
	}
	listed := map[string]bool{}
	for _, sec := range parseSections(dump) {
		listed[strings.ToLower(sec.name)] = true
	}
	var missing []string
	for _, n := range names {
		if !listed[strings.ToLower(n)] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("shares missing from testparm's view of the configuration: %s", strings.Join(missing, ", "))
	}
	return nil
}

// runTestparm runs `testparm -s conf`: its dump, the stderr lines that are
// not its usual chatter, and an error when it fails.
func (s *Shares) runTestparm(ctx context.Context, conf string) ([]byte, []string, error) {
	cmd := s.command(ctx, "testparm", "-s", conf)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var problems []string
	for line := range strings.Lines(stderr.String()) {
		if l := strings.TrimSpace(line); !testparmChatter(l) {
			problems = append(problems, l)
		}
	}
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			err = fmt.Errorf("testparm exited with status %d", exit.ExitCode())
		} else {
			err = fmt.Errorf("testparm: %w", err)
		}
	}
	return stdout.Bytes(), problems, err
}

func testparmChatter(l string) bool {
	return l == "" || l == "Loaded services file OK." ||
		strings.HasPrefix(l, "Load smb config files from ") ||
		strings.HasPrefix(l, "Weak crypto is allowed") ||
		strings.HasPrefix(l, "Server role: ")
}

// haveVFS checks that Samba's VFS module name is installed.
func (s *Shares) haveVFS(name string) error {
	dirs := []string{s.vfsDir}
	if s.vfsDir == "" {
		dirs, _ = filepath.Glob("/usr/lib/*/samba/vfs")
		dirs = append(dirs, "/usr/lib/samba/vfs", "/usr/lib64/samba/vfs")
	}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, name+".so")); err == nil {
			return nil
		}
	}
	return fmt.Errorf("a recycle bin needs Samba's VFS module %s, not installed here (looked in %s): install the Debian package samba-vfs-modules, or drop recycle from the share", name, strings.Join(dirs, ", "))
}

// writeTemp writes data to a new file in dir, synced to disk when durable
// (it is to replace a live file).
func writeTemp(dir, pattern string, data []byte, perm os.FileMode, durable bool) (string, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	err = errors.Join(err, f.Chmod(perm))
	if durable {
		err = errors.Join(err, f.Sync())
	}
	err = errors.Join(err, f.Close())
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// syncFile flushes the file name to disk.
func syncFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}

// replaceFile replaces path atomically (temp file, fsync, rename), keeping
// its mode and owner.
func replaceFile(path string, data []byte) error {
	perm, uid, gid := os.FileMode(0o644), -1, -1
	if fi, err := os.Stat(path); err == nil {
		perm = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}
	dir := filepath.Dir(path)
	tmp, err := writeTemp(dir, ".alize-*.tmp", data, perm, true)
	if err != nil {
		return err
	}
	if uid >= 0 {
		if err := os.Lchown(tmp, uid, gid); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	_ = atomic.SyncDir(dir) // a failure only weakens durability: not reported
	return nil
}
