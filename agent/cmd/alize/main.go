// Command alize is the Alizé agent on a school server: the daemon
// (alize run) that pulls, verifies, applies and reports its signed
// manifest, and the technician's commands (status, plan, apply, check,
// history, enroll, service, version). docs/technician.md describes them
// and their exit codes.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/alize-eple/alize/agent/internal/daemon"
	"github.com/alize-eple/alize/agent/internal/identity"
	"github.com/alize-eple/alize/agent/internal/state"
)

// version is the agent's version, set at build time
// (-ldflags "-X main.version=1.2.3"); the one package variable alize has.
var version = "1.2.0"

// Exit codes (docs/technician.md).
const (
	exitOK          = 0 // done; nothing needs attention
	exitFailure     = 1 // something failed (a kind, a check, the command itself)
	exitUsage       = 2 // the command line is wrong
	exitNotEnrolled = 3 // the server is not enrolled
	exitBusy        = 4 // another run is in progress
	exitAttention   = 5 // done, but something needs attention (drift, warnings, changes to make)
)

// exitError carries an exit code; quiet when the output already said it.
type exitError struct {
	code  int
	err   error
	quiet bool
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// attention ends a command that worked but found something to look at.
func attention() error { return &exitError{code: exitAttention, quiet: true} }

// failed ends a command whose output already says what failed.
func failed() error { return &exitError{code: exitFailure, quiet: true} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err))
}

// exitCode maps run's error to the process's exit status.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, identity.ErrNotEnrolled):
		return exitNotEnrolled
	case errors.Is(err, state.ErrLocked), errors.Is(err, daemon.ErrDaemonBusy):
		return exitBusy
	}
	return exitFailure
}

// run runs the alize command line args.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	g := &globals{stdout: stdout, stderr: stderr}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return nil
	}
	var ee *exitError
	if !g.started && !errors.As(err, &ee) {
		// Cobra refused the command line before any command ran.
		err = &exitError{code: exitUsage, err: fmt.Errorf("%w (see alize --help)", err)}
	}
	if !errors.As(err, &ee) || !ee.quiet {
		fmt.Fprintf(stderr, "alize: %v\n", err)
	}
	return err
}

// globals are the flags every command takes and what they open.
type globals struct {
	stdout, stderr io.Writer
	started        bool

	stateDir   string
	socket     string
	configPath string
	json       bool
	color      string
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "alize",
		Short: "The Alizé agent: keeps this school server as its academy wants it",
		Long: `alize keeps this school server configured as the academy's controller says:
it pulls a signed manifest, applies it (firewall, accounts, shares) and reports.

Commands for the technician: status, plan, apply, check, history.
The daemon is "alize run", started by systemd (alize service install).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			g.started = true
			return nil
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	pf := root.PersistentFlags()
	pf.StringVar(&g.stateDir, "state-dir", "", "state directory (default "+state.DefaultDir+", or state_dir in the configuration)")
	pf.StringVar(&g.socket, "socket", "", "the daemon's control socket (default "+daemon.DefaultSocket+")")
	pf.StringVar(&g.configPath, "config", defaultConfig, "configuration file")
	pf.StringVar(&g.color, "color", "auto", "colours: auto (on a terminal, unless NO_COLOR is set), always, never")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: fmt.Errorf("%w (see alize %s --help)", err, cmd.Name())}
	})
	root.AddCommand(
		newRunCmd(g), newEnrollCmd(g), newStatusCmd(g), newPlanCmd(g), newApplyCmd(g),
		newCheckCmd(g), newHistoryCmd(g), newServiceCmd(g), newVersionCmd(g),
	)
	return root
}

// addJSON gives a read command its --json flag.
func addJSON(cmd *cobra.Command, g *globals) {
	cmd.Flags().BoolVar(&g.json, "json", false, "print JSON for scripts instead of text")
}

// usage is a command-line error.
func usage(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}
