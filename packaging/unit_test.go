package packaging

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alize-eple/alize/testenv"
)

// initScript makes the namespace's filesystem private, then becomes its
// systemd. /run and /sys/fs/cgroup get tmpfs of their own, the host's
// cgroup hierarchies moved under the latter (without it, systemd would
// remount the host's cgroup fs read-only: RECIPES.md); /etc, /var/lib and
// /usr/bin are overlays whose writes land in the test's directory, so
// what the unit creates (StateDirectory, ConfigurationDirectory) and the
// agent under test (/usr/bin/alize) never reach the host.
const initScript = `#!/bin/sh
set -e
D=%[1]s
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs $D/cg
for h in $(ls /sys/fs/cgroup); do
	mkdir $D/cg/$h
	mount --move /sys/fs/cgroup/$h $D/cg/$h
done
mount --move $D/cg /sys/fs/cgroup
for m in etc:/etc lib:/var/lib bin:/usr/bin; do
	n=${m%%%%:*}; p=${m#*:}
	mount -t overlay overlay -o lowerdir=$p,upperdir=$D/$n-up,workdir=$D/$n-work $p
done
export SYSTEMD_UNIT_PATH=$D/units
exec /lib/systemd/systemd --system --unit=multi-user.target --log-target=console
`

// stubUnits are the targets systemd and the unit under test pull in.
var stubUnits = []string{
	"sysinit", "basic", "multi-user", "network", "network-online", "network-pre", "sockets",
	"timers", "paths", "slices", "local-fs", "swap", "shutdown",
}

// TestAgentUnit starts the shipped alize.service, hardening and all, under
// a real systemd running as PID 1 of an isolated namespace: the agent
// (not enrolled) reaches READY (systemctl start of a Type=notify unit
// returns then), and stops cleanly on SIGTERM.
func TestAgentUnit(t *testing.T) {
	testenv.Require(t, "systemd-ns")
	dir := t.TempDir()
	for _, d := range []string{"units", "cg", "etc-up", "etc-work", "lib-up", "lib-work", "bin-up", "bin-work"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "bin-up", "alize"), "./agent/cmd/alize")
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build alize: %v\n%s", err, out)
	}
	unit, err := os.ReadFile("systemd/alize.service")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"alize.service": string(unit),
		"-.slice":       "[Unit]\nDescription=root slice stub\n",
		"exit.target":   "[Unit]\nDescription=exit stub\nDefaultDependencies=no\nRequires=systemd-exit.service\nAfter=systemd-exit.service\nAllowIsolate=yes\n",
		"systemd-exit.service": "[Unit]\nDescription=exit stub\nDefaultDependencies=no\n" +
			"[Service]\nType=oneshot\nExecStart=/bin/systemctl --force exit\n",
	}
	for _, s := range stubUnits {
		files[s+".target"] = "[Unit]\nDescription=" + s + " stub\n"
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, "units", name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	script := filepath.Join(dir, "init.sh")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(initScript, dir)), 0o755); err != nil {
		t.Fatal(err)
	}

	// A file, not a pipe: Wait must not wait for whatever inherited it.
	logFile, err := os.Create(filepath.Join(dir, "systemd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	log := logTail{logFile.Name()}
	ns := exec.Command("unshare", "--cgroup", "--pid", "--fork", "--kill-child=SIGKILL", "--mount",
		"--mount-proc", "--uts", "--ipc", "--net", "--propagation", "private", script)
	ns.Stdout, ns.Stderr = logFile, logFile
	if err := ns.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}) // closed when unshare has exited
	go func() { ns.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			ns.Process.Kill() // --kill-child takes systemd and the agent with it
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Errorf("unshare (pid %d) did not die", ns.Process.Pid)
			}
		}
	})

	// The namespace's PID 1 is unshare's child.
	var init int
	deadline := time.Now().Add(10 * time.Second)
	for init == 0 && time.Now().Before(deadline) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", ns.Process.Pid, ns.Process.Pid))
		if f := strings.Fields(string(b)); len(f) > 0 {
			init, _ = strconv.Atoi(f[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
	if init == 0 {
		t.Fatalf("unshare started no init:\n%s", log.String())
	}
	systemctl := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(init), "-m", "-p", "systemctl"}, args...)...)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	for state := ""; state != "running"; {
		state, _ = systemctl("is-system-running")
		if time.Now().After(deadline) {
			t.Fatalf("the namespace's systemd is %q, not running:\n%s", state, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Type=notify: start returns once the agent said READY=1.
	if out, err := systemctl("start", "alize.service"); err != nil {
		status, _ := systemctl("status", "--no-pager", "alize.service")
		t.Fatalf("systemctl start alize: %v %s\n%s\n%s", err, out, status, log.String())
	}
	show, _ := systemctl("show", "-p", "ActiveState", "-p", "StatusText", "-p", "WatchdogUSec", "alize.service")
	t.Logf("started: %s", strings.ReplaceAll(show, "\n", "; "))
	for _, want := range []string{"ActiveState=active", "StatusText=waiting for enrollment", "WatchdogUSec=3min"} {
		if !strings.Contains(show, want) {
			t.Errorf("after start, systemctl show alize = %q, want %s", show, want)
		}
	}
	if out, err := systemctl("stop", "alize.service"); err != nil {
		t.Fatalf("systemctl stop alize: %v %s", err, out)
	}
	show, _ = systemctl("show", "-p", "ActiveState", "-p", "Result", "-p", "ExecMainStatus", "alize.service")
	for _, want := range []string{"ActiveState=inactive", "Result=success", "ExecMainStatus=0"} {
		if !strings.Contains(show, want) {
			t.Errorf("after stop, systemctl show alize = %q, want %s", show, want)
		}
	}
	systemctl("exit")
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Errorf("the namespace's systemd did not exit")
	}
}

// logTail shows the namespace's systemd log in failures.
type logTail struct{ path string }

func (l logTail) String() string {
	b, _ := os.ReadFile(l.path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
