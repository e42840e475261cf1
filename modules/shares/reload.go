package shares

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// defaultPIDDir is where smbd writes its pid file when smb.conf does not
// say (Samba's PIDDIR on Debian).
const defaultPIDDir = "/run/samba"

// reloadSmbd is the default Reload: SIGHUP to the smbd of the pid file,
// as smbd(8) documents and Debian's unit does, which costs no process;
// smbcontrol (which loads Samba's libraries and the whole configuration
// before it sends its message) only when no running smbd is found that
// way. Both are asynchronous alike: smbd reloads in its event loop, and
// every connection it accepts afterwards sees the new shares.
func (s *Shares) reloadSmbd(ctx context.Context) error {
	err := s.signalSmbd()
	if err == nil {
		return nil
	}
	s.log.Debug("no smbd found by its pid file: reloading with smbcontrol", "error", err)
	return s.smbcontrolReload(ctx)
}

func (s *Shares) smbcontrolReload(ctx context.Context) error {
	out, err := s.command(ctx, "smbcontrol", "-s", s.real(s.smbConf), "smbd", "reload-config").CombinedOutput()
	if err != nil {
		return fmt.Errorf("smbcontrol smbd reload-config: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// signalSmbd sends SIGHUP to the process of smbd's pid file, once sure it
// is smbd: a stale pid file may name any process now, which SIGHUP could
// kill. The pidfd keeps the checked process and the signalled one the
// same.
func (s *Shares) signalSmbd() error {
	conf, err := os.ReadFile(s.real(s.smbConf))
	if err != nil {
		return err
	}
	dir, ok := pidDirectory(conf)
	if !ok {
		return errors.New("pid directory with a substitution")
	}
	data, err := os.ReadFile(filepath.Join(dir, "smbd.pid"))
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("pid file of smbd: %q", data)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	defer unix.Close(fd)
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return err
	}
	if c := strings.TrimSpace(string(comm)); c != "smbd" {
		return fmt.Errorf("pid %d is %s, not smbd", pid, c)
	}
	// Should pid have died and been reused since the pidfd was opened,
	// the pidfd's process is gone: ESRCH, nobody is signalled.
	return unix.PidfdSendSignal(fd, unix.SIGHUP, nil, 0)
}

// pidDirectory is smb.conf's global "pid directory", or Samba's default;
// false when it holds a substitution (%m…), which only Samba expands.
// Samba matches parameter names whatever their case and spaces.
func pidDirectory(conf []byte) (string, bool) {
	dir, global := defaultPIDDir, true // parameters before any section are global
	for _, l := range logicalLines(conf) {
		kind, name, key, value := lineKind(l.text)
		switch {
		case kind == '[':
			global = strings.EqualFold(name, "global")
		case kind == '=' && global && strings.ReplaceAll(key, " ", "") == "piddirectory":
			dir = unquote(value)
		}
	}
	return dir, !strings.Contains(dir, "%")
}
