package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/controller/internal/keys"
	"github.com/alize-eple/alize/modules/atomic"
	"github.com/spf13/cobra"
)

type ioWriter = io.Writer

func whoamiCommand(cl *client) *cobra.Command {
	return &cobra.Command{
		Use: "whoami", Short: "Show the operator the token belongs to", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var who api.Whoami
			if err := cl.do(cmd.Context(), "GET", api.PathAdminWhoami, nil, &who); err != nil {
				return err
			}
			return cl.print(who, func(w io.Writer) { fmt.Fprintf(w, "%s\t%s\t%s\n", who.Name, who.Role, strings.Join(who.Scope, ",")) })
		},
	}
}

// --- modules ---

func moduleCommand(cl *client) *cobra.Command {
	cmd := &cobra.Command{Use: "module", Short: "Module releases: sign (offline), publish, list"}
	var keyFile, out string
	var counter uint64
	sign := &cobra.Command{
		Use:   "sign MODULE.yaml",
		Short: "Sign a module's release with the release key (offline)",
		Long: `Sign the release of a module definition with the release key: name, version,
kind and agent constraint come from the definition; --counter must grow with
each release of the module. Writes MODULE.release.json beside it (or --out).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			def, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			k, err := keys.ReadKey(keyFile)
			if err != nil {
				return err
			}
			env, rel, err := keys.SignRelease(def, counter, k)
			if err != nil {
				return err
			}
			if out == "" {
				out = strings.TrimSuffix(strings.TrimSuffix(args[0], ".yaml"), ".yml") + ".release.json"
			}
			if err := atomic.WriteFile(out, env, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cl.stdout, "release of %s %s (kind %s, counter %d) written to %s\n", rel.Name, rel.Version, rel.Kind, rel.Counter, out)
			return nil
		},
	}
	sign.Flags().StringVar(&keyFile, "key", "release.key", "the release key file")
	sign.Flags().Uint64Var(&counter, "counter", 0, "release counter: above every earlier release of this module (required)")
	sign.Flags().StringVarP(&out, "out", "o", "", "where to write the release (default MODULE.release.json)")
	sign.MarkFlagRequired("counter")

	var release string
	publish := &cobra.Command{
		Use:   "publish MODULE.yaml",
		Short: "Publish a module version with its signed release",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			def, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			if release == "" {
				release = strings.TrimSuffix(strings.TrimSuffix(args[0], ".yaml"), ".yml") + ".release.json"
			}
			rel, err := os.ReadFile(release)
			if err != nil {
				return fmt.Errorf("the signed release: %w (module sign makes it)", err)
			}
			var m api.ModuleInfo
			if err := cl.do(cmd.Context(), "POST", api.PathAdminModules, api.PublishRequest{Definition: string(def), Release: json.RawMessage(rel)}, &m); err != nil {
				return err
			}
			return cl.print(m, func(w io.Writer) {
				fmt.Fprintf(w, "published %s %s (kind %s, counter %d)\n", m.Name, m.Version, m.Kind, m.Counter)
			})
		},
	}
	publish.Flags().StringVar(&release, "release", "", "the signed release (default MODULE.release.json)")
	list := &cobra.Command{
		Use: "list", Short: "List published module versions", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ms []api.ModuleInfo
			if err := cl.do(cmd.Context(), "GET", api.PathAdminModules, nil, &ms); err != nil {
				return err
			}
			return cl.print(ms, func(w io.Writer) {
				fmt.Fprintln(w, "MODULE\tVERSION\tKIND\tCOUNTER\tPUBLISHED\tBY")
				for _, m := range ms {
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", m.Name, m.Version, m.Kind, m.Counter, date(m.Published), m.PublishedBy)
				}
			})
		},
	}
	cmd.AddCommand(sign, publish, list)
	return cmd
}

// --- enrollment tokens ---

func tokenCommand(cl *client) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Enrollment tokens"}
	var req api.TokenRequest
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create",
		Short: "Make a one-time enrollment token for a server of an establishment",
		Long: `Make a one-time enrollment token for one server of an establishment. Hand it to
the technician, who runs on the school server:
  alize enroll https://<controller>:8443 --token <token>
It carries the hash of this controller's CA, so the agent trusts no other.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req.TTLSeconds = int(ttl / time.Second)
			var resp api.TokenResponse
			if err := cl.do(cmd.Context(), "POST", api.PathAdminTokens, req, &resp); err != nil {
				return err
			}
			return cl.print(resp, func(w io.Writer) {
				fmt.Fprintln(w, resp.Token)
				fmt.Fprintf(w, "valid once, until %s\n", date(resp.Expires))
			})
		},
	}
	create.Flags().StringVar(&req.UAI, "uai", "", "the establishment's UAI (required)")
	create.Flags().StringVar(&req.ServerID, "server", "", "bind the token to this server id (re-enrolls it if it exists)")
	create.Flags().StringVar(&req.Role, "role", "", "the server's role: amon, scribe…")
	create.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid")
	create.MarkFlagRequired("uai")
	list := &cobra.Command{
		Use: "list", Short: "List enrollment tokens", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ts []api.TokenInfo
			if err := cl.do(cmd.Context(), "GET", api.PathAdminTokens, nil, &ts); err != nil {
				return err
			}
			return cl.print(ts, func(w io.Writer) {
				fmt.Fprintln(w, "ID\tUAI\tSERVER\tEXPIRES\tUSED BY\tCREATED BY")
				for _, t := range ts {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.UAI, dash(t.ServerID), date(t.Expires), dash(t.UsedBy), t.CreatedBy)
				}
			})
		},
	}
	cmd.AddCommand(create, list)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// --- inventory ---

func academyCommand(cl *client) *cobra.Command {
	cmd := &cobra.Command{Use: "academy", Short: "Academies"}
	var title string
	add := &cobra.Command{
		Use: "add NAME", Short: "Add an academy (or change its title)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p api.Plan
			return cl.do(cmd.Context(), "POST", api.PathAdminAcademies, api.Academy{Name: args[0], Title: title}, &p)
		},
	}
	add.Flags().StringVar(&title, "title", "", "its full name: \"Académie de Versailles\" (required)")
	add.MarkFlagRequired("title")
	list := &cobra.Command{
		Use: "list", Short: "List academies", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var as []api.Academy
			if err := cl.do(cmd.Context(), "GET", api.PathAdminAcademies, nil, &as); err != nil {
				return err
			}
			return cl.print(as, func(w io.Writer) {
				for _, a := range as {
					fmt.Fprintf(w, "%s\t%s\n", a.Name, a.Title)
				}
			})
		},
	}
	cmd.AddCommand(add, list)
	return cmd
}

func establishmentCommand(cl *client, dry bool) *cobra.Command {
	cmd := &cobra.Command{Use: "establishment", Short: "Establishments (schools)"}
	var req api.EstablishmentRequest
	add := &cobra.Command{
		Use: "add UAI", Short: "Add an establishment, or change it", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.UAI = args[0]
			req.DryRun = req.DryRun || dry
			var p api.Plan
			if err := cl.do(cmd.Context(), "POST", api.PathAdminEstablishments, req, &p); err != nil {
				return err
			}
			return cl.printPlan(&p)
		},
	}
	f := add.Flags()
	f.StringVar(&req.Academy, "academy", "", "its academy (required)")
	f.StringVar(&req.Name, "name", "", "its name (required)")
	f.StringVar(&req.Type, "type", "", "college, lycee, lp or erea (required)")
	f.StringVar(&req.Zone, "zone", "", "holiday zone: A, B or C (required)")
	if !dry {
		f.BoolVar(&req.DryRun, "dry-run", false, "show what it would do, change nothing")
	}
	for _, n := range []string{"academy", "name", "type", "zone"} {
		add.MarkFlagRequired(n)
	}
	if dry {
		return add
	}
	list := &cobra.Command{
		Use: "list", Short: "List establishments", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var es []api.Establishment
			if err := cl.do(cmd.Context(), "GET", api.PathAdminEstablishments, nil, &es); err != nil {
				return err
			}
			return cl.print(es, func(w io.Writer) {
				fmt.Fprintln(w, "UAI\tACADEMY\tTYPE\tZONE\tNAME")
				for _, e := range es {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", e.UAI, e.Academy, e.Type, e.Zone, e.Name)
				}
			})
		},
	}
	cmd.AddCommand(add, list)
	return cmd
}

func groupCommand(cl *client, dry bool) *cobra.Command {
	cmd := &cobra.Command{Use: "group", Short: "Groups of establishments and servers, static or by rule"}
	var req api.GroupRequest
	var rule api.GroupRule
	set := &cobra.Command{
		Use:   "set NAME",
		Short: "Add or change a group",
		Long: `Add or change a group: static members (--member, UAIs or server ids) and/or a
rule selecting establishments (--rule-type lycee --rule-academy versailles…).
Example: every lycée of Versailles:
  alize-controller group set lycees-versailles --academy versailles --rule-type lycee`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			if len(rule.Academies)+len(rule.Types)+len(rule.Zones)+len(rule.Departements) > 0 {
				req.Rule = &rule
			}
			req.DryRun = req.DryRun || dry
			var p api.Plan
			if err := cl.do(cmd.Context(), "POST", api.PathAdminGroups, req, &p); err != nil {
				return err
			}
			return cl.printPlan(&p)
		},
	}
	f := set.Flags()
	f.StringVar(&req.Academy, "academy", "", "the academy the group belongs to (none: fleet-wide)")
	f.StringVar(&req.Description, "description", "", "what the group is for")
	f.IntVar(&req.Priority, "priority", 0, "when groups disagree, the higher priority wins")
	f.StringSliceVar(&req.Members, "member", nil, "static member: a UAI or a server id (repeat)")
	f.StringSliceVar(&rule.Academies, "rule-academy", nil, "rule: establishments of these academies")
	f.StringSliceVar(&rule.Types, "rule-type", nil, "rule: establishments of these types (college, lycee, lp, erea)")
	f.StringSliceVar(&rule.Zones, "rule-zone", nil, "rule: establishments of these holiday zones")
	f.StringSliceVar(&rule.Departements, "rule-departement", nil, "rule: establishments of these départements (095)")
	if !dry {
		f.BoolVar(&req.DryRun, "dry-run", false, "show what it would do, change nothing")
	}
	del := &cobra.Command{
		Use: "delete NAME", Short: "Remove a group, and what is set and assigned at its level", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p api.Plan
			r := api.GroupRequest{Group: api.Group{Name: args[0]}, Delete: true, DryRun: dry}
			if err := cl.do(cmd.Context(), "POST", api.PathAdminGroups, r, &p); err != nil {
				return err
			}
			return cl.printPlan(&p)
		},
	}
	if dry {
		cmd.AddCommand(set, del)
		return cmd
	}
	list := &cobra.Command{
		Use: "list", Short: "List groups", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var gs []api.Group
			if err := cl.do(cmd.Context(), "GET", api.PathAdminGroups, nil, &gs); err != nil {
				return err
			}
			return cl.print(gs, func(w io.Writer) {
				fmt.Fprintln(w, "GROUP\tACADEMY\tPRIORITY\tRULE\tMEMBERS")
				for _, g := range gs {
					r := "-"
					if g.Rule != nil {
						b, _ := json.Marshal(g.Rule)
						r = string(b)
					}
					fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", g.Name, dash(g.Academy), g.Priority, r, dash(strings.Join(g.Members, ",")))
				}
			})
		},
	}
	cmd.AddCommand(set, del, list)
	return cmd
}

// --- variables, assignments, push, plan ---

// parseValue reads a variable's value as typed: JSON when it parses
// (22, true, ["a","b"], "quoted"), else the text itself.
func parseValue(s string) json.RawMessage {
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(s)
	return b
}

func varCommand(cl *client, dry bool) *cobra.Command {
	cmd := &cobra.Command{Use: "var", Short: "Variables at the fleet, academy, group, establishment or server level"}
	var secret, dryRun bool
	set := &cobra.Command{
		Use:   "set LEVEL NAME [VALUE]",
		Short: "Set a variable at a level, and sign the manifests it changes",
		Long: `Set a variable at a level: fleet, academy:<name>, group:<name>,
establishment:<uai> or server:<id>. VALUE is read as JSON when it parses
(22, true, ["10.0.0.0/8"], "text"), else as text. A secret (--secret) is read
from standard input, never from the command line, and never shown again.

The manifests of the servers it concerns are built and signed at once; a
change that would break a server's manifest is refused with the reason.
Use "plan var set …" (or --dry-run) to see what it would do first.`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := api.VariableRequest{Level: args[0], Name: args[1], DryRun: dryRun || dry}
			switch {
			case secret:
				if len(args) == 3 {
					return errors.New("a secret is read from standard input, not given on the command line")
				}
				b, err := io.ReadAll(io.LimitReader(cl.stdin, 64<<10))
				if err != nil {
					return err
				}
				s := strings.TrimRight(string(b), "\r\n")
				req.Secret = &s
			case len(args) == 3:
				req.Value = parseValue(args[2])
			default:
				return errors.New("give a VALUE, or --secret")
			}
			var p api.Plan
			if err := cl.do(cmd.Context(), "POST", api.PathAdminVariables, req, &p); err != nil {
				return err
			}
			return cl.printPlan(&p)
		},
	}
	set.Flags().BoolVar(&secret, "secret", false, "the value is a secret, read from standard input")
	unset := &cobra.Command{
		Use: "unset LEVEL NAME", Short: "Remove a variable from a level", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p api.Plan
			if err := cl.do(cmd.Context(), "POST", api.PathAdminVariables, api.VariableRequest{Level: args[0], Name: args[1], Unset: true, DryRun: dryRun || dry}, &p); err != nil {
				return err
			}
			return cl.printPlan(&p)
		},
	}
	if !dry {
		set.Flags().BoolVar(&dryRun, "dry-run", false, "show what it would do, change nothing")
		unset.Flags().BoolVar(&dryRun, "dry-run", false, "show what it would do, change nothing")
	} else {
		cmd.AddCommand(set, unset)
		return cmd
	}
	var level string
	list := &cobra.Command{
		Use: "list", Short: "List variables", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := api.PathAdminVariables
			if level != "" {
				path += "?level=" + url.QueryEscape(level)
			}
			var vs []api.VariableInfo
			if err := cl.do(cmd.Context(), "GET", path, nil, &vs); err != nil {
				return err
			}
			return cl.print(vs, func(w io.Writer) {
				fmt.Fprintln(w, "LEVEL\tNAME\tVALUE\tUPDATED\tBY")
				for _, v := range vs {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", v.Level, v.Name, v.Value, date(v.Updated), v.UpdatedBy)
				}
			})
		},
	}
	list.Flags().StringVar(&level, "level", "", "only this level")
	cmd.AddCommand(set, unset, list)
	return cmd
}

func assignCommand(cl *client, dry bool) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "assign LEVEL MODULE VERSION",
		Short: "Assign a module version at a level (\"none\" excludes it there)",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p api.Plan
			req := api.AssignRequest{Level: args[0], Module: args[1], Version: args[2], DryRun: dryRun || dry}
			if err := cl.do(cmd.Context(), "POST", api.PathAdminAssignments, req, &p); err != nil {
				return err
			}
			return cl.printPlan(&p)
		},
	}
	if !dry {
		cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show what it would do, change nothing")
	}
	return cmd
}

func unassignCommand(cl *client, dry bool) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "unassign LEVEL MODULE",
		Short: "Remove a module's assignment at a level",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p api.Plan
			req := api.AssignRequest{Level: args[0], Module: args[1], Unassign: true, DryRun: dryRun || dry}
			if err := cl.do(cmd.Context(), "POST", api.PathAdminAssignments, req, &p); err != nil {
				return err
			}
			return cl.printPlan(&p)
		},
	}
	if !dry {
		cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show what it would do, change nothing")
	}
	return cmd
}

func assignmentsCommand(cl *client) *cobra.Command {
	return &cobra.Command{
		Use: "assignments", Short: "List module assignments", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var as []api.AssignmentInfo
			if err := cl.do(cmd.Context(), "GET", api.PathAdminAssignments, nil, &as); err != nil {
				return err
			}
			return cl.print(as, func(w io.Writer) {
				fmt.Fprintln(w, "LEVEL\tMODULE\tVERSION\tUPDATED\tBY")
				for _, a := range as {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", a.Level, a.Module, a.Version, date(a.Updated), a.UpdatedBy)
				}
			})
		},
	}
}

func pushCommand(cl *client, dry bool) *cobra.Command {
	var force, dryRun bool
	cmd := &cobra.Command{
		Use:   "push [LEVEL]",
		Short: "Build and sign the manifests of a level's servers now (default: the fleet)",
		Long: `Build the manifests of a level's servers again and sign those whose inputs
changed (or, with --force, all of them: after a director key rotation). Changes
are signed as they are made; push retries servers whose manifest could not be
built, and re-signs on demand.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			level := "fleet"
			if len(args) == 1 {
				level = args[0]
			}
			var p api.Plan
			if err := cl.do(cmd.Context(), "POST", api.PathAdminPush, api.PushRequest{Level: level, Force: force, DryRun: dryRun || dry}, &p); err != nil {
				return err
			}
			return cl.printPlan(&p)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "sign again even the unchanged manifests")
	if !dry {
		cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show what it would do, change nothing")
	}
	return cmd
}

func planCommand(cl *client) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show what a change would do to which servers, changing nothing",
		Long: `Show what a change would do to which servers' manifests — modules added,
removed or updated, servers whose manifest would no longer build — without
changing anything. Then run the same command without "plan" to push it.
  alize-controller plan var set establishment:0951099D admin_cidr 10.1.0.0/16
  alize-controller plan assign academy:versailles amon-firewall 2.3.0`,
	}
	cmd.AddCommand(varCommand(cl, true), assignCommand(cl, true), unassignCommand(cl, true), pushCommand(cl, true),
		establishmentCommand(cl, true), groupCommand(cl, true), rosterCommand(cl, true))
	return cmd
}

// --- servers, reports, indicators, audit ---

func serversCommand(cl *client) *cobra.Command {
	cmd := &cobra.Command{Use: "servers", Short: "Enrolled servers and their state"}
	var academy, uai, state string
	list := &cobra.Command{
		Use: "list", Short: "List servers and their state", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			for k, v := range map[string]string{"academy": academy, "uai": uai, "state": state} {
				if v != "" {
					q.Set(k, v)
				}
			}
			var ss []api.ServerInfo
			if err := cl.do(cmd.Context(), "GET", api.PathAdminServers+"?"+q.Encode(), nil, &ss); err != nil {
				return err
			}
			return cl.print(ss, func(w io.Writer) {
				fmt.Fprintln(w, "SERVER\tUAI\tACADEMY\tSTATE\tSERIAL\tAPPLIED\tLAST REPORT\tREASON")
				for _, s := range ss {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", s.ID, s.UAI, s.Academy, s.State, s.Serial, s.AppliedSerial, date(s.LastReport), s.Reason)
				}
			})
		},
	}
	list.Flags().StringVar(&academy, "academy", "", "only this academy")
	list.Flags().StringVar(&uai, "uai", "", "only this establishment")
	list.Flags().StringVar(&state, "state", "", "only this state: compliant, corrected, failing, pending, refused, not_reporting, revoked")
	show := &cobra.Command{
		Use: "show ID", Short: "Show a server: state, manifest, certificates", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var d api.ServerDetail
			if err := cl.do(cmd.Context(), "GET", api.PathAdminServers+"/"+url.PathEscape(args[0]), nil, &d); err != nil {
				return err
			}
			return cl.print(d, func(w io.Writer) {
				fmt.Fprintf(w, "server\t%s (%s, %s)\n", d.ID, d.Role, d.Facts.Hostname)
				fmt.Fprintf(w, "establishment\t%s (%s, %s)\n", d.UAI, d.Academy, d.Type)
				fmt.Fprintf(w, "state\t%s\t%s\n", d.State, d.Reason)
				fmt.Fprintf(w, "manifest\tserial %d, applied %d, signed %s, expires %s\n", d.Serial, d.AppliedSerial, date(d.ManifestIssued), date(d.ManifestExpires))
				if d.CompileError != "" {
					fmt.Fprintf(w, "cannot build\t%s\n", strings.ReplaceAll(d.CompileError, "\n", "; "))
				}
				for _, m := range d.Modules {
					fmt.Fprintf(w, "module\t%s %s\t%s\n", m.Module, m.Version, m.SpecDigest)
				}
				fmt.Fprintf(w, "agent\t%s on %s %s\n", dash(d.Facts.AgentVersion), dash(d.Facts.OS), d.Facts.Arch)
				fmt.Fprintf(w, "last seen\t%s, last report %s\n", date(d.LastSeen), date(d.LastReport))
				for _, c := range d.Certificates {
					rv := ""
					if !c.Revoked.IsZero() {
						rv = " REVOKED " + date(c.Revoked)
					}
					fmt.Fprintf(w, "certificate\t%s\t%s → %s%s\n", c.Serial, date(c.NotBefore), date(c.NotAfter), rv)
				}
			})
		},
	}
	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Revoke a server: its certificates are refused at the TLS handshake", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var s api.ServerInfo
			if err := cl.do(cmd.Context(), "POST", api.PathAdminServers+"/"+url.PathEscape(args[0])+"/revoke", nil, &s); err != nil {
				return err
			}
			return cl.print(s, func(w io.Writer) { fmt.Fprintf(w, "%s revoked\n", s.ID) })
		},
	}
	cmd.AddCommand(list, show, revoke)
	return cmd
}

func reportsCommand(cl *client) *cobra.Command {
	var serverID string
	var limit int
	cmd := &cobra.Command{
		Use: "reports", Short: "The latest agent reports", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{"limit": {fmt.Sprint(limit)}}
			if serverID != "" {
				q.Set("server", serverID)
			}
			var rs []api.ReportInfo
			if err := cl.do(cmd.Context(), "GET", api.PathAdminReports+"?"+q.Encode(), nil, &rs); err != nil {
				return err
			}
			return cl.print(rs, func(w io.Writer) {
				fmt.Fprintln(w, "FINISHED\tSERVER\tSERIAL\tOUTCOME\tDETAIL")
				for _, r := range rs {
					detail := []string{}
					if r.Refusal != nil {
						detail = append(detail, r.Refusal.Code+": "+r.Refusal.Message)
					}
					for _, k := range r.Kinds {
						s := fmt.Sprintf("%s %s %s", k.Module, k.Version, k.Status)
						if n := len(k.Changes); n > 0 {
							s += fmt.Sprintf(" (%d changes)", n)
						}
						if k.Error != "" {
							s += ": " + k.Error
						}
						detail = append(detail, s)
					}
					fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", date(r.Finished), r.ServerID, r.Serial, r.Outcome, strings.Join(detail, "; "))
				}
			})
		},
	}
	cmd.Flags().StringVar(&serverID, "server", "", "only this server")
	cmd.Flags().IntVar(&limit, "limit", 20, "how many")
	return cmd
}

func indicatorsCommand(cl *client) *cobra.Command {
	var csv bool
	cmd := &cobra.Command{
		Use: "indicators", Short: "Fleet indicators: compliance, failures, versions, time to apply", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if csv {
				var b []byte
				if err := cl.do(cmd.Context(), "GET", api.PathAdminIndicators+"?format=csv", nil, &b); err != nil {
					return err
				}
				_, err := cl.stdout.Write(b)
				return err
			}
			var ind api.Indicators
			if err := cl.do(cmd.Context(), "GET", api.PathAdminIndicators, nil, &ind); err != nil {
				return err
			}
			return cl.print(ind, func(w io.Writer) {
				fmt.Fprintln(w, "BY\tKEY\tSERVERS\tCOMPLIANT %\tFAILING\tREFUSED\tPENDING\tSILENT\tMEDIAN TO APPLY")
				for _, r := range ind.Rows {
					fmt.Fprintf(w, "%s\t%s\t%d\t%.1f\t%d\t%d\t%d\t%d\t%s\n", r.By, r.Key, r.Servers, r.CompliancePercent, r.Failing, r.Refused, r.Pending, r.NotReporting,
						time.Duration(r.MedianPushToAppliedSeconds*float64(time.Second)).Round(time.Second))
				}
			})
		},
	}
	cmd.Flags().BoolVar(&csv, "csv", false, "print CSV")
	return cmd
}

func auditCommand(cl *client) *cobra.Command {
	var actor, target string
	var since time.Duration
	var limit int
	cmd := &cobra.Command{
		Use: "audit", Short: "The audit log: who changed what, when", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{"limit": {fmt.Sprint(limit)}}
			if actor != "" {
				q.Set("actor", actor)
			}
			if target != "" {
				q.Set("target", target)
			}
			if since > 0 {
				q.Set("since", time.Now().Add(-since).UTC().Format(time.RFC3339))
			}
			var es []api.AuditEntry
			if err := cl.do(cmd.Context(), "GET", api.PathAdminAudit+"?"+q.Encode(), nil, &es); err != nil {
				return err
			}
			return cl.print(es, func(w io.Writer) {
				fmt.Fprintln(w, "TIME\tACTOR\tACTION\tTARGET\tDETAIL")
				for _, e := range es {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", date(e.Time), e.Actor, e.Action, e.Target, e.Detail)
				}
			})
		},
	}
	cmd.Flags().StringVar(&actor, "actor", "", "only this actor (operator:<name>)")
	cmd.Flags().StringVar(&target, "target", "", "only targets starting so (establishment:0951099D)")
	cmd.Flags().DurationVar(&since, "since", 0, "only the last DURATION (24h)")
	cmd.Flags().IntVar(&limit, "limit", 50, "how many")
	return cmd
}

// --- operators, rosters ---

func operatorCommand(cl *client) *cobra.Command {
	cmd := &cobra.Command{Use: "operator", Short: "Operators and their roles"}
	var req api.OperatorRequest
	var tokenOut string
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add an operator and print its token (shown once)",
		Long: `Add an operator with a role:
  fleet_admin     everything
  academy_admin   the academies of --scope
  technician      reads its establishment (--scope UAI)
  viewer          reads everything (or the academies of --scope)`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			var resp api.OperatorResponse
			if err := cl.do(cmd.Context(), "POST", api.PathAdminOperators, req, &resp); err != nil {
				return err
			}
			if tokenOut != "" {
				if err := atomic.WriteFile(tokenOut, []byte(resp.Token+"\n"), 0o600); err != nil {
					return err
				}
				fmt.Fprintf(cl.stdout, "operator %s (%s) added; token written to %s\n", resp.Operator.Name, resp.Operator.Role, tokenOut)
				return nil
			}
			return cl.print(resp, func(w io.Writer) { fmt.Fprintln(w, resp.Token) })
		},
	}
	add.Flags().StringVar(&req.Role, "role", "", "fleet_admin, academy_admin, technician or viewer (required)")
	add.Flags().StringSliceVar(&req.Scope, "scope", nil, "academies, or the technician's UAI")
	add.Flags().StringVar(&tokenOut, "token-out", "", "write the token to this file (0600) instead of printing it")
	add.MarkFlagRequired("role")
	list := &cobra.Command{
		Use: "list", Short: "List operators", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var os []api.OperatorInfo
			if err := cl.do(cmd.Context(), "GET", api.PathAdminOperators, nil, &os); err != nil {
				return err
			}
			return cl.print(os, func(w io.Writer) {
				fmt.Fprintln(w, "ID\tNAME\tROLE\tSCOPE\tCREATED\tREVOKED")
				for _, o := range os {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", o.ID, o.Name, o.Role, dash(strings.Join(o.Scope, ",")), date(o.Created), date(o.Revoked))
				}
			})
		},
	}
	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Revoke an operator's token", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cl.do(cmd.Context(), "POST", api.PathAdminOperators+"/"+url.PathEscape(args[0])+"/revoke", nil, nil)
		},
	}
	cmd.AddCommand(add, list, revoke)
	return cmd
}

func rosterCommand(cl *client, dry bool) *cobra.Command {
	cmd := &cobra.Command{Use: "roster", Short: "Account rosters of establishments"}
	var dryRun bool
	imp := &cobra.Command{
		Use:   "import UAI FILE.csv",
		Short: "Import an establishment's roster (CSV): shows the people added, departed, changed",
		Long: `Import the complete roster of an establishment (CSV; columns role, id,
last_name, first_name, birth_date, class…, see docs/kinds/accounts.md). Every bad
line is reported with its number, and nothing is kept. The people added,
departed (disabled and archived by the agent, never deleted) and changed are
shown; with --dry-run (or "plan roster import") nothing is kept.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[1])
			if err != nil {
				return err
			}
			path := api.PathAdminRosters + url.PathEscape(args[0])
			if dryRun || dry {
				path += "?dry_run=true"
			}
			var rp api.RosterPlan
			if err := cl.do(cmd.Context(), "POST", path, data, &rp); err != nil {
				return err
			}
			return cl.print(rp, func(w io.Writer) {
				fmt.Fprintf(w, "%s: %d people (%s, %s)\n", rp.UAI, rp.People, filepath.Base(args[1]), rp.Encoding)
				fmt.Fprintf(w, "added\t%d\t%s\n", len(rp.Added), clipList(rp.Added))
				fmt.Fprintf(w, "departed\t%d\t%s\n", len(rp.Departed), clipList(rp.Departed))
				fmt.Fprintf(w, "changed\t%d\t%s\n", len(rp.Changed), clipList(rp.Changed))
			})
		},
	}
	if !dry {
		imp.Flags().BoolVar(&dryRun, "dry-run", false, "show the differences, keep nothing")
	}
	cmd.AddCommand(imp)
	return cmd
}

func clipList(ids []string) string {
	if len(ids) > 10 {
		return strings.Join(ids[:10], " ") + fmt.Sprintf(" … (%d more)", len(ids)-10)
	}
	return strings.Join(ids, " ")
}
