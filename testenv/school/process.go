package school

import (
	"errors"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/alize-eple/alize/testenv"
)

// errRunning is returned by start when the process already runs.
var errRunning = errors.New("already running")

// process is a long-running child the story starts, stops, kills and
// starts again: the agent's daemon, the controller. It runs in its own
// process group, dies with its parent, and appends its output to a log.
type process struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and its log is closed
}

// start starts cmd inside ns, its output appended to logPath, and returns
// a channel closed when it exits.
func (p *process) start(ns *testenv.NetNS, cmd *exec.Cmd, logPath string) (<-chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return nil, errRunning
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := ns.Start(cmd); err != nil {
		logf.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	p.cmd, p.done = cmd, done
	return done, nil
}

// take forgets the running process and returns it, nil when none runs.
func (p *process) take() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	return cmd, done
}

// stop sends SIGTERM and waits, killing the process after 40 s.
func (p *process) stop() {
	cmd, done := p.take()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// kill kills the process with SIGKILL, as a power cut or a crash would.
func (p *process) kill() {
	if cmd, done := p.take(); cmd != nil {
		cmd.Process.Kill()
		<-done
	}
}

// pid is the process id, 0 when stopped.
func (p *process) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}
