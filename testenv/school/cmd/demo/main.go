// Command demo is `make demo`: it builds the simulated school of
// testenv/school, tells its story step by step, and removes everything
// (processes, namespaces, temporary directories) when it ends, succeeds or
// fails, or is interrupted (Ctrl-C, SIGTERM).
//
// With KEEP=1 (or --keep) it leaves the school running in the background
// once the story is told, prints how to reach it and how to stop it, and
// returns.
//
// Usage (as root): demo --bin DIR, where DIR holds alize and
// alize-controller.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/alize-eple/alize/testenv"
	"github.com/alize-eple/alize/testenv/school"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// childEnv marks the background process of KEEP=1.
const childEnv = "ALIZE_DEMO_BACKGROUND"

// logEnv names the background demo's log file, which it removes once it
// has cleaned up.
const logEnv = "ALIZE_DEMO_LOG"

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	bin := fs.String("bin", "bin", "directory holding alize and alize-controller")
	keep := fs.Bool("keep", os.Getenv("KEEP") == "1", "leave the school running in the background (KEEP=1)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	abs, err := filepath.Abs(*bin)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("the demo builds network namespaces and runs slapd, smbd and nftables: run it as root")
	}
	// Every part must be there: a missing one is an error, not a skip.
	os.Setenv(testenv.SystestEnv, "1")
	if *keep && os.Getenv(childEnv) == "" {
		return background(ctx, stdout)
	}
	// Daemons started on demand (samba-dcerpcd and its workers, by smbd)
	// are orphans once cleanup stops them: as the subreaper, the demo
	// reaps them rather than leaving zombies to a PID 1 that may not.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("subreaper: %w", err)
	}
	err = tell(ctx, abs, stdout, *keep)
	reapOrphans()
	return err
}

// reapOrphans waits for the orphans left to the demo, for a few seconds.
func reapOrphans() {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		switch {
		case err != nil: // ECHILD: none left
			return
		case pid == 0:
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// tell builds the school and tells its story. With keep, it then waits
// for SIGTERM or Ctrl-C before cleaning up.
func tell(ctx context.Context, bin string, stdout io.Writer, keep bool) (err error) {
	r := newRunner(ctx)
	defer func() {
		if v := recover(); v != nil && v != errFatal {
			panic(v)
		}
		if r.failed() && err == nil {
			err = errors.New(r.firstError())
		}
		fmt.Fprintln(stdout, "\nCleaning up: processes, namespaces, temporary directories…")
		r.cleanup()
		if errs := r.cleanupErrors(); errs != "" {
			err = errors.Join(err, errors.New(errs))
		}
		if err == nil {
			fmt.Fprintln(stdout, "Done: everything was removed.")
			if log := os.Getenv(logEnv); log != "" {
				os.Remove(log) // the background demo's own output
			}
		}
	}()

	start := time.Now()
	fmt.Fprintln(stdout, "Alizé demo: a school server configured from its academy, on one machine.")
	fmt.Fprintln(stdout, "")
	fmt.Fprintln(stdout, "Building the simulated school: network namespaces for the academy (controller),")
	fmt.Fprintln(stdout, "the Internet, the school server (firewall, OpenLDAP, Samba, the alize agent), a")
	fmt.Fprintln(stdout, "pupil's PC in the pedagogical zone and a PC in the admin zone…")
	s := school.Start(r, school.Options{Bin: bin, Log: stdout})
	fmt.Fprintf(stdout, "  ready in %.1f s: slapd, smbd and alize-controller are running\n", time.Since(start).Seconds())
	fmt.Fprintln(stdout, `
      academy 10.255.0.5 ── internet ── school server ──┬── pupil PC 10.95.20.10 (pedagogical)
      alize-controller      (router,     eth0 192.0.2.2  │
                            web site     eth1 10.95.10.1 └── admin PC 10.95.10.10 (admin)
                            203.0.113.80) eth2 10.95.20.1`)

	var fig school.Figures
	steps := s.Story(&fig)
	for i, st := range steps {
		if ctx.Err() != nil {
			return errors.New("interrupted")
		}
		fmt.Fprintf(stdout, "\n━━ %d/%d  %s\n", i+1, len(steps), st.Title)
		for _, l := range strings.Split(st.Explain, "\n") {
			fmt.Fprintf(stdout, "   %s\n", l)
		}
		fmt.Fprintln(stdout)
		if err := st.Run(); err != nil {
			fmt.Fprintf(stdout, "\n✗ %s: %v\n", st.Title, err)
			fmt.Fprintf(stdout, "\nagent log (last lines):\n%s\n", tail(s.Agent.Logs(), 30))
			return fmt.Errorf("step %d failed: %w", i+1, err)
		}
		fmt.Fprintf(stdout, "✓ %s\n", st.Title)
	}
	fmt.Fprintf(stdout, "\nEvery step succeeded in %.0f s. Measured: first convergence %.1f s after the agent\n", time.Since(start).Seconds(), fig.FirstConverge.Seconds())
	fmt.Fprintf(stdout, "started; a firewall change applied and reported %.2f s after the operator's command;\n", fig.PushToReport.Seconds())
	fmt.Fprintf(stdout, "a dangerous change reverted and reported in %.1f s (confirm deadline 5 s).\n", fig.Revert.Seconds())
	if !keep {
		return nil
	}
	printReach(stdout, s)
	fmt.Fprintln(stdout, readyMarker)
	<-ctx.Done()
	return nil
}

// readyMarker tells the foreground process of KEEP=1 that the story is
// told and the school stays up.
const readyMarker = "── the school stays up ──"

func printReach(w io.Writer, s *school.School) {
	enter := func(ns string) string { return fmt.Sprintf("nsenter -t %d -n", s.Anchors[ns]) }
	fmt.Fprintf(w, `
The school stays up for exploration (KEEP=1). Everything is in %s.

  School server (technician):
    %s status
    (a wrapper of alize in the school's namespace: plan, check, history, apply too)
    %s nft list table inet alize
  Academy (operator):
    %s servers list
    (a wrapper of alize-controller with the controller's address and admin token)
  Pupil's PC:
    %s smbclient //10.95.20.1/perso -U %s%%%s
    %s curl http://%s/
  Logs: %s, %s

Stop it and remove everything:
    kill %d
`, s.Dir,
		filepath.Join(s.Dir, "alize"),
		enter("school"),
		filepath.Join(s.Dir, "alize-controller"),
		enter("pupil"), school.PupilLogin, school.PupilNewPassword,
		enter("pupil"), school.WebAddr,
		s.Agent.Log, s.Controller.Log,
		os.Getpid())
	writeWrappers(s)
}

// writeWrappers writes DIR/alize and DIR/alize-controller: the commands
// as the technician and the operator run them, from the host.
func writeWrappers(s *school.School) {
	cmd := s.Agent.Command(context.Background())
	var env []string
	for _, e := range cmd.Env {
		if strings.HasPrefix(e, "PATH=") || strings.HasPrefix(e, "LD_PRELOAD=") || strings.HasPrefix(e, "NSS_WRAPPER_") || strings.HasPrefix(e, "NO_COLOR=") {
			env = append(env, shellQuote(e))
		}
	}
	agent := fmt.Sprintf("#!/bin/sh\n# alize on the simulated school server\nexec env %s nsenter -t %d -n %s \"$@\"\n",
		strings.Join(env, " "), s.Anchors["school"], strings.Join(quoteAll(cmd.Args), " "))
	os.WriteFile(filepath.Join(s.Dir, "alize"), []byte(agent), 0o755)
	ctl := fmt.Sprintf("#!/bin/sh\n# alize-controller, the academy operator's command line\nexec nsenter -t %d -n %s --controller %s --state-dir %s \"$@\"\n",
		s.Anchors["academy"], shellQuote(filepath.Join(s.Bin(), "alize-controller")), school.ControllerURL, shellQuote(s.Controller.State))
	os.WriteFile(filepath.Join(s.Dir, "alize-controller"), []byte(ctl), 0o755)
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = shellQuote(a)
	}
	return out
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// background runs the demo again as a background process (KEEP=1) with
// its output in a log file, shows that output until the story is told,
// and returns, leaving it running.
func background(ctx context.Context, stdout io.Writer) error {
	logf, err := os.CreateTemp("", "alize-demo-*.log")
	if err != nil {
		return err
	}
	defer logf.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), childEnv+"=1", logEnv+"="+logf.Name())
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var off int64
	show := func() string {
		b, _ := os.ReadFile(logf.Name())
		if int64(len(b)) > off {
			stdout.Write(b[off:])
			off = int64(len(b))
		}
		return string(b)
	}
	for {
		select {
		case err := <-exited:
			show()
			if err == nil {
				err = errors.New("the background demo ended")
			}
			return fmt.Errorf("%w (log: %s)", err, logf.Name())
		case <-ctx.Done():
			cmd.Process.Signal(syscall.SIGTERM)
			<-exited
			show()
			return errors.New("interrupted")
		case <-time.After(200 * time.Millisecond):
		}
		if strings.Contains(show(), readyMarker) {
			fmt.Fprintf(stdout, "(the demo runs in the background as pid %d; its output goes on in %s)\n", cmd.Process.Pid, logf.Name())
			return nil
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
