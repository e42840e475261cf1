package shares

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/alize-eple/alize/testenv"
)

func TestPIDDirectory(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, conf, want string
		ok               bool
	}{
		{"default", "[global]\n\tworkgroup = ALIZE\n", defaultPIDDir, true},
		{"global", "[global]\n\tpid directory = /var/run/x\n[docs]\n\tpath = /srv\n", "/var/run/x", true},
		{"before any section", "pid directory = /a\n[docs]\n", "/a", true},
		{"Samba's spelling of names", "[Global]\n\tPidDirectory = \"/b\"\n", "/b", true},
		{"the last one wins", "[global]\n\tpid directory = /a\n[global]\n\tpid directory = /b\n", "/b", true},
		{"a share's is not global", "[global]\n[docs]\n\tpid directory = /a\n", defaultPIDDir, true},
		{"commented out", "[global]\n;\tpid directory = /a\n", defaultPIDDir, true},
		{"substitution", "[global]\n\tpid directory = /run/%m\n", "/run/%m", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, ok := pidDirectory([]byte(tc.conf)); got != tc.want || ok != tc.ok {
				t.Errorf("pidDirectory(%q) = %q, %v; want %q, %v", tc.conf, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestReloadNeverSignalsAStranger: a stale pid file naming a process that
// is not smbd gets no SIGHUP (it would kill it): smbcontrol reloads.
func TestReloadNeverSignalsAStranger(t *testing.T) {
	t.Parallel()
	stranger := exec.Command("sleep", "60")
	must(t, stranger.Start())
	t.Cleanup(func() { stranger.Process.Kill(); stranger.Wait() })

	root := t.TempDir()
	pidDir := filepath.Join(root, "pid")
	write(t, filepath.Join(root, "smb.conf"), "[global]\n\tpid directory = "+pidDir+"\n")
	var smbcontrol atomic.Int32
	k, err := New(Config{Root: root, Include: testInclude, SmbConf: testSmbConf, Log: testLogger(t),
		Command: func(ctx context.Context, name string, arg ...string) *exec.Cmd {
			if name == "smbcontrol" {
				smbcontrol.Add(1)
				return exec.CommandContext(ctx, "true")
			}
			return exec.CommandContext(ctx, name, arg...)
		}})
	must(t, err)

	for _, pidFile := range []string{"", strconv.Itoa(stranger.Process.Pid), "0", "garbage"} {
		if pidFile != "" {
			write(t, filepath.Join(pidDir, "smbd.pid"), pidFile+"\n")
		}
		before := smbcontrol.Load()
		if err := k.reload(t.Context()); err != nil {
			t.Errorf("reload with the pid file %q: %v", pidFile, err)
		}
		if smbcontrol.Load() != before+1 {
			t.Errorf("reload with the pid file %q did not fall back to smbcontrol", pidFile)
		}
	}
	if err := unix.Kill(stranger.Process.Pid, 0); err != nil {
		t.Errorf("the process the stale pid file names: %v, want it alive", err)
	}
}

// TestReloadBySignal changes the share set of a real smbd again and
// again: each time, a new connection sees the new set at once, and no
// smbcontrol runs (smbd got SIGHUP).
func TestReloadBySignal(t *testing.T) {
	t.Parallel()
	var smbcontrol atomic.Int32
	srv := startServer(t, testenv.SmbdOptions{Users: scribeUsers, Groups: scribeGroups}, func(c *Config) {
		next := c.Command
		c.Command = func(ctx context.Context, name string, arg ...string) *exec.Cmd {
			if name == "smbcontrol" {
				smbcontrol.Add(1)
			}
			return next(ctx, name, arg...)
		}
	})
	spec := func(name string) Spec {
		return Spec{Shares: []Share{{Name: name, Path: "/srv/" + name, Read: []string{"eleves"},
			Directory: &Ownership{Mode: "0755"}}}}
	}
	prev := ""
	for _, name := range []string{"alpha", "beta", "gamma"} {
		converge(t, srv.kind, spec(name))
		if _, err := srv.ls(t, name, "eleve1", ""); err != nil {
			t.Errorf("share %s right after apply: %v", name, err)
		}
		if prev != "" {
			if _, err := srv.ls(t, prev, "eleve1", ""); err == nil || !strings.Contains(err.Error(), "NT_STATUS_BAD_NETWORK_NAME") {
				t.Errorf("share %s once replaced by %s: %v, want NT_STATUS_BAD_NETWORK_NAME", prev, name, err)
			}
		}
		prev = name
	}
	if n := smbcontrol.Load(); n != 0 {
		t.Errorf("smbcontrol ran %d times, want none: smbd reloads on SIGHUP", n)
	}
	// testenv keeps smbd's output there.
	if log, err := os.ReadFile(filepath.Join(srv.Dir, "smbd.log")); err != nil {
		t.Errorf("smbd's log: %v", err)
	} else if n := strings.Count(string(log), "Reloading services after SIGHUP"); n != 3 {
		t.Errorf("smbd reloaded on SIGHUP %d times, want 3:\n%s", n, log)
	}
}
