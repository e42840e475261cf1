package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"

	"github.com/alize-eple/alize/agent/internal/daemon"
	"github.com/alize-eple/alize/agent/internal/identity"
	"github.com/alize-eple/alize/controller/api"
)

func newRunCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run the daemon (systemd starts it: alize service install)",
		Long: `Run the daemon: it loads the last-known-good manifest, tells systemd it is
ready, polls the controller in this server's own time slot, applies each new
manifest, checks for drift, and reports. It stops on SIGTERM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.setup(cmd.Context(), true)
			if err != nil {
				return err
			}
			watchdog, err := sddaemon.SdWatchdogEnabled(false)
			if err != nil {
				s.log.Warn("watchdog settings ignored", "err", err)
			}
			return s.agent.Run(cmd.Context(), watchdog)
		},
	}
}

func newEnrollCmd(g *globals) *cobra.Command {
	var token string
	var force bool
	cmd := &cobra.Command{
		Use:   "enroll URL --token TOKEN",
		Short: "Enroll this server with its academy's controller",
		Long: `Enroll this server with the controller at URL, with the one-time token an
operator of the academy issued for it. The server makes its own keys; the
token tells it which controller to trust. A server enrolls once: --force
enrolls it again (new keys; its manifest and pending reports are dropped).`,
		Example: "  alize enroll https://alize.ac-versailles.fr --token alize1.…",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usage("enroll takes the controller's address: alize enroll URL --token TOKEN")
			}
			if token == "" {
				return usage("enroll needs --token: the one-time token the academy's operator gave for this server")
			}
			s, err := g.setup(cmd.Context(), false)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			id, err := identity.Enroll(ctx, s.store, identity.EnrollOptions{
				URL: args[0], Token: token, Force: force,
				Facts: daemon.Facts(version), UserAgent: "alize/" + version, Now: time.Now,
			})
			var already *identity.AlreadyEnrolledError
			if errors.As(err, &already) {
				return &exitError{code: exitFailure, err: err}
			}
			if err != nil {
				return err
			}
			if force {
				if err := daemon.ForgetManifest(s.store); err != nil {
					return err
				}
			}
			running := false
			if c := s.dialDaemon(ctx); c != nil {
				running = c.Reload(ctx) == nil
			}
			p := g.printer()
			if g.json {
				return p.json(map[string]any{
					"server_id": id.ServerID, "uai": id.UAI, "academy": id.Academy, "controller": id.Controller,
					"certificate_expires": id.Certificate().NotAfter, "daemon_running": running,
				})
			}
			p.printf("%s this server is %s, of establishment %s (academy %s).\n", p.word("Enrolled:"), p.paint(bold, id.ServerID), id.UAI, id.Academy)
			p.printf("Controller: %s; certificate valid until %s.\n", id.Controller, stamp(id.Certificate().NotAfter))
			if running {
				p.printf("The daemon fetches this server's manifest at its next poll (alize status shows when).\n")
			} else {
				p.printf("Start the daemon so that it fetches this server's manifest:\n  alize service install && alize service start\n")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&token, "token", "", "the one-time enrollment token (alize1.…)")
	cmd.Flags().BoolVar(&force, "force", false, "enroll again a server already enrolled")
	addJSON(cmd, g)
	return cmd
}

func newStatusCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show where this server stands, on one screen",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.setup(cmd.Context(), false)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			var st daemon.Status
			if c := s.dialDaemon(ctx); c != nil {
				st, err = c.Status(ctx)
			}
			if st.Version == "" || err != nil {
				st = s.agent.Status(nil)
			}
			p := g.printer()
			if g.json {
				if err := p.json(st); err != nil {
					return err
				}
			} else {
				printStatus(p, st)
			}
			switch {
			case !st.Enrolled:
				return &exitError{code: exitNotEnrolled, quiet: true}
			case len(st.Warnings) > 0:
				return attention()
			}
			return nil
		},
	}
	addJSON(cmd, g)
	return cmd
}

func printStatus(p *printer, st daemon.Status) {
	const w = 13
	line := func(label, format string, args ...any) {
		p.printf("%-*s %s\n", w, label, fmt.Sprintf(format, args...))
	}
	if !st.Enrolled {
		line("Server", "%s", p.word("not enrolled"))
	} else {
		id := st.Identity
		line("Server", "%s  UAI %s  academy %s", p.paint(bold, id.ServerID), id.UAI, id.Academy)
		c := st.Controller
		reach := p.word("reachable")
		if !c.Reachable {
			reach = p.word("unreachable")
			if c.LastContact.IsZero() && c.Failures == 0 {
				reach = p.word("pending") + " (not contacted yet)"
			}
		}
		line("Controller", "%s  %s, last contact %s", c.Address, reach, p.ago(c.LastContact))
		line("Certificate", "valid until %s (%s)", stamp(id.CertificateExpires), p.in(id.CertificateExpires))
	}
	if d := st.Daemon; d != nil {
		act := d.Activity
		if d.Running != nil {
			act = fmt.Sprintf("applying manifest %d (%s, since %s)", d.Running.Serial, d.Running.Trigger, p.ago(d.Running.Started))
		}
		line("Daemon", "%s (pid %d, since %s), %s", p.word("running"), d.PID, stamp(d.Since), act)
	} else {
		line("Daemon", "%s", p.word("not running"))
	}
	if m := st.Manifest; m != nil {
		line("Manifest", "serial %d, received %s, expires %s", m.Serial, p.ago(m.Received), p.in(m.Expires))
	} else if st.Enrolled {
		line("Manifest", "none yet")
	}
	if r := st.Refused; r != nil {
		line("Refused", "%s serial %d (%s) %s", p.word("refused"), r.Serial, r.Refusal.Code, p.ago(r.At))
	}
	for i, k := range st.Kinds {
		label := ""
		if i == 0 {
			label = "Kinds"
		}
		detail := fmt.Sprintf("%d changes", k.Changes)
		switch k.State {
		case daemon.StateFailing:
			detail = fmt.Sprintf("%d failed", k.Changes)
		case daemon.StatePending, daemon.StateSkipped:
			detail = ""
		}
		mode := ""
		if k.Mode == "report-only" {
			mode = " [report-only]"
		}
		line(label, "%-10s %s %-12s %s %s%s", k.Kind, p.padded(k.State, 8), detail, k.Module, k.Version, mode)
	}
	if r := st.LastRun; r != nil {
		line("Last run", "%s, %s, took %s (%s)", stamp(r.Started), p.word(string(r.Outcome)), r.Took().Round(time.Millisecond), r.Trigger)
	}
	if st.Controller != nil {
		line("Next poll", "%s", p.in(st.Controller.NextPoll))
	}
	if st.Outbox > 0 {
		line("Reports", "%d waiting for the controller", st.Outbox)
	}
	for i, warn := range st.Warnings {
		label := ""
		if i == 0 {
			label = "Warnings"
		}
		line(label, "%s %s", p.word("warning"), warn)
	}
}

func newPlanCmd(g *globals) *cobra.Command {
	var file string
	var values bool
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show what applying would change now, changing nothing",
		Long: `Show, per kind and resource, what applying the manifest would change now,
and where each variable's value comes from. By default the last-known-good
manifest, planned by the daemon when it runs (between its runs), alone
otherwise; --manifest FILE plans a manifest file (checked as the daemon would).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.setup(cmd.Context(), false)
			if err != nil {
				return err
			}
			var env []byte
			if file != "" {
				if env, err = os.ReadFile(file); err != nil {
					return usage("--manifest: %v", err)
				}
			}
			var res daemon.PlanResult
			if c := s.dialDaemon(cmd.Context()); c != nil && env == nil {
				// The daemon has the manifest verified and the kinds at hand.
				res, err = c.Plan(cmd.Context())
			} else {
				res, err = s.agent.Plan(cmd.Context(), env, file)
			}
			if err != nil {
				if daemon.IsRefused(err) {
					return fmt.Errorf("this manifest would be refused: %w", err)
				}
				return err
			}
			p := g.printer()
			if g.json {
				if err := p.json(res); err != nil {
					return err
				}
			} else {
				printPlan(p, res, values)
			}
			switch res.Outcome {
			case api.OutcomeFailing:
				return failed()
			case api.OutcomeDrift:
				return attention()
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "manifest", "", "plan this manifest file (a DSSE envelope) instead of the last-known-good")
	cmd.Flags().BoolVar(&values, "values", true, "show the variables' values and where they come from")
	addJSON(cmd, g)
	return cmd
}

func printPlan(p *printer, res daemon.PlanResult, values bool) {
	p.printf("Plan of manifest %d (%s)\n", res.Serial, res.Source)
	if res.Note != "" {
		p.printf("%s %s\n", p.word("warning"), res.Note)
	}
	for _, m := range res.Modules {
		state := "up to date"
		switch m.Status {
		case "drifted":
			state = fmt.Sprintf("%s: %d changes", p.word("would change"), len(m.Changes))
		case "failing":
			state = p.word("failing")
		case "skipped":
			state = p.word("skipped")
		}
		mode := ""
		if m.Mode == "report-only" {
			mode = " [report-only: never applied]"
		}
		p.printf("\n%s (%s %s)%s: %s\n", p.paint(bold, m.Kind), m.Module, m.Version, mode, state)
		if m.Error != "" {
			p.printf("  %s\n", m.Error)
		}
		for _, c := range m.Changes {
			p.printf("  %-7s %-10s %s\n", c.Op, c.Resource, c.Summary)
		}
		if values && len(m.Variables) > 0 {
			p.printf("  variables:\n")
			for _, v := range m.Variables {
				p.printf("    %-24s %-40s %s\n", v.Name, v.Value, p.paint(dim, "("+v.From+")"))
			}
		}
	}
}

func newApplyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Converge now on the last-known-good manifest",
		Long: `Apply the last-known-good manifest now, through the daemon when it runs,
alone otherwise. One run at a time: if another is in progress, apply says so
and exits with status 4. Modules in report-only mode are never changed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.setup(cmd.Context(), false)
			if err != nil {
				return err
			}
			var res daemon.ApplyResult
			if c := s.dialDaemon(cmd.Context()); c != nil {
				res, err = c.Apply(cmd.Context())
			} else {
				res, err = s.agent.Apply(cmd.Context())
			}
			if err != nil {
				if exitCode(err) == exitBusy {
					return &exitError{code: exitBusy, err: errors.New("another alize run is in progress: wait for it to end (alize status shows it), then try again")}
				}
				return err
			}
			p := g.printer()
			if g.json {
				if err := p.json(res); err != nil {
					return err
				}
			} else {
				printApply(p, res)
			}
			switch res.Run.Outcome {
			case api.OutcomeFailing, api.OutcomeReverted:
				return failed()
			case api.OutcomeDrift:
				return attention()
			}
			return nil
		},
	}
	addJSON(cmd, g)
	return cmd
}

func printApply(p *printer, res daemon.ApplyResult) {
	r := res.Run
	p.printf("Manifest %d: %s in %s\n", r.Serial, p.word(string(r.Outcome)), r.Took().Round(time.Millisecond))
	for _, k := range res.Kinds {
		p.printf("\n%s (%s %s): %s\n", p.paint(bold, k.Kind), k.Module, k.Version, p.word(string(k.Status)))
		if k.Error != "" {
			p.printf("  %s\n", k.Error)
		}
		if k.Changes != nil {
			for _, c := range k.Changes {
				line := fmt.Sprintf("  %-8s %-7s %-10s %s", p.word(string(c.Status)), c.Change.Op, c.Change.Resource, c.Change.Summary)
				if c.Error != "" {
					line += ": " + c.Error
				}
				p.printf("%s\n", line)
			}
		} else {
			for _, c := range k.Plan {
				p.printf("  %-8s %-7s %-10s %s\n", p.word("drift"), c.Op, c.Resource, c.Summary)
			}
		}
	}
	if r.Reported {
		p.printf("\nThe report goes to the controller (id %s).\n", r.ID)
	}
}

func newCheckCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Diagnose this server: clock, controller, certificate, manifest, services, disk",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.setup(cmd.Context(), false)
			if err != nil {
				return err
			}
			running := s.dialDaemon(cmd.Context()) != nil
			checks := s.agent.Check(cmd.Context(), running)
			p := g.printer()
			if g.json {
				if err := p.json(checks); err != nil {
					return err
				}
			} else {
				for _, c := range checks {
					p.printf("%s %-12s %s\n", p.padded(c.Result, 8), c.Name, c.Message)
				}
			}
			worst := 0
			for _, c := range checks {
				switch c.Result {
				case daemon.CheckFailed:
					worst = max(worst, 2)
				case daemon.CheckWarning:
					worst = max(worst, 1)
				}
			}
			switch worst {
			case 2:
				return failed()
			case 1:
				return attention()
			}
			return nil
		},
	}
	addJSON(cmd, g)
	return cmd
}

func newHistoryCmd(g *globals) *cobra.Command {
	var n int
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List the last runs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.setup(cmd.Context(), false)
			if err != nil {
				return err
			}
			runs, err := s.agent.History(n)
			if err != nil {
				return err
			}
			p := g.printer()
			if g.json {
				if runs == nil {
					runs = []daemon.RunRecord{}
				}
				return p.json(runs)
			}
			if len(runs) == 0 {
				p.printf("No run yet.\n")
				return nil
			}
			for _, r := range runs {
				var parts []string
				for _, k := range r.Kinds {
					parts = append(parts, fmt.Sprintf("%s %s (%d)", k.Kind, k.Status, k.Changes))
				}
				detail := strings.Join(parts, ", ")
				if r.Refusal != nil {
					detail = r.Refusal.Code + ": " + r.Refusal.Message
				}
				p.printf("%s  serial %-5d %-10s %s  %-8s %s\n", stamp(r.Started), r.Serial, r.Trigger, p.padded(string(r.Outcome), 9), r.Took().Round(time.Millisecond), detail)
			}
			return nil
		},
	}
	cmd.Flags().IntVarP(&n, "number", "n", 20, "how many runs to list (0 for all kept)")
	addJSON(cmd, g)
	return cmd
}

func newVersionCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print alize's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			commit := "unknown"
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						commit = s.Value
					}
				}
			}
			p := g.printer()
			if g.json {
				return p.json(map[string]string{"version": version, "commit": commit, "go": runtime.Version(), "api": api.Version})
			}
			p.printf("alize %s (commit %s, %s, API %s)\n", version, commit, runtime.Version(), api.Version)
			return nil
		},
	}
	addJSON(cmd, g)
	return cmd
}
