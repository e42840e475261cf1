// Command alize-controller is the Alizé academy controller — `serve` — and
// the operators' command line, which talks to it with a bearer token:
// enrollment tokens, modules, variables, assignments, plans and pushes,
// servers, reports, indicators, the audit log. The key ceremony (`keys
// init`, `keys rotate`) and release signing (`module sign`) work on key
// files an operator can keep offline. docs/operator.md is the guide.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "alize-controller:", err)
		os.Exit(1)
	}
}

// Defaults of a packaged controller.
const (
	defaultStateDir   = "/var/lib/alize-controller"
	defaultListen     = ":8443"
	defaultController = "https://localhost:8443"
)

// run runs the command line args.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	root := &cobra.Command{
		Use:           "alize-controller",
		Short:         "The Alizé academy controller, and its operators' command line",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cl := &client{stdin: stdin, stdout: stdout}
	cl.flags(root)
	root.AddCommand(
		serveCommand(stderr),
		keysCommand(cl),
		moduleCommand(cl),
		tokenCommand(cl),
		academyCommand(cl),
		establishmentCommand(cl, false),
		groupCommand(cl, false),
		varCommand(cl, false),
		assignCommand(cl, false),
		unassignCommand(cl, false),
		assignmentsCommand(cl),
		pushCommand(cl, false),
		planCommand(cl),
		serversCommand(cl),
		reportsCommand(cl),
		indicatorsCommand(cl),
		auditCommand(cl),
		operatorCommand(cl),
		rosterCommand(cl, false),
		whoamiCommand(cl),
		versionCommand(),
	)
	return root.ExecuteContext(ctx)
}
