package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// daemon is a long-running child process started by a helper. It runs in
// its own process group, so that stopping it stops every process it forked
// (smbd forks one per client), and without touching the test's own group.
type daemon struct {
	name string
	cmd  *exec.Cmd
	log  string // path of its combined output
	done chan struct{}
	err  error // Wait's result, set before done closes
}

// startDaemon starts cmd (from inside ns when ns is not nil) with its
// output in dir/<name>.log, and registers a cleanup that stops it.
func startDaemon(t testing.TB, ns *NetNS, name, dir string, cmd *exec.Cmd) *daemon {
	t.Helper()
	d := &daemon{name: name, cmd: cmd, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	out, err := os.Create(d.log)
	if err != nil {
		t.Fatalf("testenv: %s: %v", name, err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	start := cmd.Start
	if ns != nil {
		start = func() error { return ns.Start(cmd) }
	}
	if err := start(); err != nil {
		out.Close()
		t.Fatalf("testenv: start %s: %v", name, err)
	}
	go func() {
		d.err = cmd.Wait()
		out.Close()
		close(d.done)
	}()
	t.Cleanup(func() {
		if err := d.stop(5 * time.Second); err != nil {
			t.Errorf("testenv: stop %s: %v", name, err)
		}
		if t.Failed() {
			t.Logf("testenv: %s output (%s):\n%s", name, d.log, tail(d.log, 40))
		}
	})
	return d
}

// PID is the daemon's process id, which is also its process group id.
func (d *daemon) PID() int { return d.cmd.Process.Pid }

// exited reports whether the daemon has exited, with Wait's error.
func (d *daemon) exited() (bool, error) {
	select {
	case <-d.done:
		return true, d.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the daemon's process group, then SIGKILL after
// grace, and waits until the leader is reaped and the group is empty.
func (d *daemon) stop(grace time.Duration) error {
	pgid := d.PID()
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-d.done
	}
	// Children the leader forked may outlive it for a moment.
	deadline := time.Now().Add(grace)
	for len(GroupMembers(pgid)) > 0 {
		if time.Now().After(deadline) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			if time.Now().After(deadline.Add(grace)) {
				return fmt.Errorf("process group %d still has members %v", pgid, GroupMembers(pgid))
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// GroupMembers lists the live processes of process group pgid.
func GroupMembers(pgid int) []int {
	var pids []int
	for _, p := range processes() {
		if p.pgid == pgid && p.state != 'Z' {
			pids = append(pids, p.pid)
		}
	}
	return pids
}

// Descendants lists the live processes descended from pid.
func Descendants(pid int) []int {
	children := map[int][]int{}
	for _, p := range processes() {
		if p.state != 'Z' {
			children[p.ppid] = append(children[p.ppid], p.pid)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		for _, c := range children[next] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// Alive reports whether a process with this pid exists and is not a zombie.
func Alive(pid int) bool {
	for _, p := range processes() {
		if p.pid == pid {
			return p.state != 'Z'
		}
	}
	return false
}

type procInfo struct {
	pid, ppid, pgid int
	state           byte
}

// processes reads the process table from /proc.
func processes() []procInfo {
	entries, _ := os.ReadDir("/proc")
	var out []procInfo
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// The command name is in parentheses and may hold spaces.
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 3 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		pgid, _ := strconv.Atoi(f[2])
		out = append(out, procInfo{pid: pid, ppid: ppid, pgid: pgid, state: f[0][0]})
	}
	return out
}

// run runs a short command to completion, returning its combined output in
// the error when it fails.
func run(cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return nil
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tempDir returns a fresh directory removed at cleanup whose ancestors
// other users can traverse: daemons switch to unprivileged users (smbd to
// the share user, PostgreSQL to postgres) and t.TempDir's parent is 0700.
func tempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return dir
}

func lookupUser(name string) (*user.User, error) {
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return nil, fmt.Errorf("no user %s", name)
		}
		return nil, err
	}
	return u, nil
}
