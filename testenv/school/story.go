package school

import (
	"fmt"
	"strings"
	"time"

	"github.com/alize-eple/alize/controller/api"
)

// Step is one chapter of the school's story: what it shows, and the code
// that plays it and checks it happened.
type Step struct {
	Title   string
	Explain string
	Run     func() error
}

// Figures are what the story measured.
type Figures struct {
	FirstConverge time.Duration // from the agent's start to its first report
	PushToReport  time.Duration // from the firewall change to the report applying it
	Revert        time.Duration // from the bad change to the report of its revert
}

// Story is the whole story, told the same way by `make demo` and the
// end-to-end test: the academy sets everything up, the school server
// enrolls and converges, a pupil logs in, a firewall change arrives in
// seconds, drift is repaired, a dangerous change is reverted.
func (s *School) Story(fig *Figures) []Step {
	est := "establishment:" + UAI
	return []Step{
		{
			Title: "The academy sets up its controller",
			Explain: "The academy's keys were made offline (alize-controller keys init); the controller runs\n" +
				"on its embedded SQLite database. The operator declares the academy and the lycée, signs\n" +
				"the three example modules with the offline release key, publishes them, sets their\n" +
				"variables, imports the roster of two classes and assigns the modules to the lycée.",
			Run: s.Provision,
		},
		{
			Title: "The school server enrolls and converges",
			Explain: "The operator makes a one-time token; the school's technician enrolls the server with it\n" +
				"(the token names the controller's CA: no other controller is trusted) and starts the\n" +
				"agent. It pulls its signed manifest over mutual TLS, applies the firewall, the accounts\n" +
				"and the shares, and reports.",
			Run: func() error {
				tok, err := s.Token()
				if err != nil {
					return err
				}
				if err := s.Agent.Enroll(tok); err != nil {
					return err
				}
				start := time.Now()
				if err := s.Agent.Start(); err != nil {
					return err
				}
				s.Logf("  (agent started: alize run)")
				if _, err := s.WaitApplied(120 * time.Second); err != nil {
					return err
				}
				fig.FirstConverge = time.Since(start)
				s.Logf("  converged in %.1f s", fig.FirstConverge.Seconds())
				s.Logf("")
				s.Logf("  The academy's fleet view:")
				if _, err := s.Controller.Operator("servers", "list"); err != nil {
					return err
				}
				s.Logf("")
				s.Logf("  The school's view:")
				out, code, err := s.Agent.CLI("status")
				if err != nil {
					return err
				}
				if code != 0 {
					return fmt.Errorf("alize status: exit %d after converging:\n%s", code, out)
				}
				if out, code, err := s.Agent.CLI("check"); err != nil || code != 0 {
					return fmt.Errorf("alize check: exit %d, %v:\n%s", code, err, out)
				}
				for _, k := range []string{"firewall", "accounts", "shares"} {
					if !strings.Contains(out, k) {
						return fmt.Errorf("alize status does not show the %s kind", k)
					}
				}
				// The technician's plan says which level gave each value.
				src, err := s.Agent.Sources()
				if err != nil {
					return err
				}
				fw, acc := src["amon-firewall"], src["scribe-accounts"]
				if fw["admin_cidr"] != "establishment" || fw["controller_address"] != "academy" || acc["uai"] != "inventory" {
					return fmt.Errorf("alize plan: the firewall's variables come from %v, the accounts' from %v; want admin_cidr from establishment, controller_address from academy, uai from inventory", fw, acc)
				}
				return nil
			},
		},
		{
			Title: "A pupil logs in to their share from the pupil PC",
			Explain: "Chloé Lefèvre (3A) was created in the school's OpenLDAP from the roster, with her\n" +
				"birth date as initial password, to change at her first logon. Samba (ldapsam on the\n" +
				"same directory) then lets her in to her home share \"perso\" and the common share, over\n" +
				"the pedagogical network, through the firewall. A wrong password is refused.",
			Run: func() error {
				if err := s.PupilChangePassword(PupilLogin, PupilPassword, PupilNewPassword); err != nil {
					return err
				}
				out, err := s.PupilSMB("perso", PupilLogin, PupilNewPassword, "mkdir devoirs; ls")
				if err != nil {
					return err
				}
				if !strings.Contains(out, "devoirs") {
					return fmt.Errorf("the pupil's home share does not list the folder she made")
				}
				if _, err := s.PupilSMB("commun", PupilLogin, PupilNewPassword, "ls"); err != nil {
					return err
				}
				if out, err := s.PupilSMB("perso", PupilLogin, "wrong-password", "ls"); err == nil || !strings.Contains(out, "LOGON_FAILURE") {
					return fmt.Errorf("a wrong password was not refused: %v", err)
				}
				return nil
			},
		},
		{
			Title: "A firewall change reaches the school in seconds",
			Explain: "The pedagogical zone may not reach the Internet directly (the Amon default). The\n" +
				"operator opens it: the controller compiles and signs the lycée's new manifest, answers\n" +
				"the agent's waiting long poll, and the agent applies it at once.",
			Run: func() error {
				if err := s.PupilWeb(2 * time.Second); err == nil {
					return fmt.Errorf("the pupil PC reaches the Internet before the change")
				}
				s.Logf("  pupil-pc$ curl http://%s/   → no answer: the firewall drops it", WebAddr)
				before, err := s.ServerState()
				if err != nil {
					return err
				}
				start := time.Now()
				if _, err := s.Controller.Operator("var", "set", est, "pedagogical_internet", "accept"); err != nil {
					return err
				}
				err = s.WaitFor(30*time.Second, "the report of the new manifest", func() bool {
					d, err := s.ServerState()
					return err == nil && d.Serial > before.Serial && d.AppliedSerial == d.Serial &&
						(d.State == api.StateCorrected || d.State == api.StateCompliant)
				})
				if err != nil {
					return err
				}
				fig.PushToReport = time.Since(start)
				s.Logf("  applied and reported %.2f s after the change", fig.PushToReport.Seconds())
				if err := s.PupilWeb(5 * time.Second); err != nil {
					return fmt.Errorf("the pupil PC does not reach the Internet after the change: %w", err)
				}
				s.Logf("  pupil-pc$ curl http://%s/   → Bienvenue sur Internet", WebAddr)
				return nil
			},
		},
		{
			Title: "A hand-made drift is repaired",
			Explain: "Someone deletes Alizé's nftables table by hand on the school server. `alize plan` shows\n" +
				"what differs from the manifest; `alize apply` puts it back, and the controller sees\n" +
				"the server as corrected.",
			Run: func() error {
				if _, err := s.Run(s.Server, "school", "nft", "delete", "table", "inet", "alize"); err != nil {
					return err
				}
				out, code, err := s.Agent.Quiet("plan")
				if err != nil {
					return err
				}
				s.show("school", []string{"alize", "plan"}, planSummary(out))
				s.Logf("      (exit %d: changes to make; the variables and their origins are left out here)", code)
				if code != 5 || !strings.Contains(out, "firewall") {
					return fmt.Errorf("alize plan after the drift: exit %d, want 5 with the firewall's changes", code)
				}
				out, code, err = s.Agent.CLI("apply")
				if err != nil {
					return err
				}
				if code != 0 || !strings.Contains(out, "corrected") {
					return fmt.Errorf("alize apply after the drift: exit %d, want 0 and corrected", code)
				}
				if _, err := s.Run(s.Server, "school", "nft", "list", "chain", "inet", "alize", "input"); err != nil {
					return fmt.Errorf("the firewall table is not back: %w", err)
				}
				if _, err := s.WaitApplied(20*time.Second, api.StateCorrected); err != nil {
					return err
				}
				_, err = s.Controller.Operator("servers", "list")
				return err
			},
		},
		{
			Title: "A dangerous firewall change is reverted by commit-confirmed",
			Explain: "The operator mistypes the academy's controller address (10.255.0.50): nothing in the\n" +
				"ruleset depends on it, so the school applies that manifest without a probe. The next\n" +
				"firewall change (the pupils' Internet closed again) is loaded, then probed: the\n" +
				"controller the manifest names does not answer, so within the confirm deadline (5 s\n" +
				"here) the previous ruleset comes back and the run is reported reverted. Fixing the\n" +
				"address lets the change through.",
			Run: func() error {
				before, err := s.ServerState()
				if err != nil {
					return err
				}
				if _, err := s.Controller.Operator("var", "set", "academy:"+AcademyName, "controller_address", "10.255.0.50"); err != nil {
					return err
				}
				err = s.WaitFor(30*time.Second, "the report of the mistyped address", func() bool {
					d, err := s.ServerState()
					return err == nil && d.Serial > before.Serial && d.AppliedSerial == d.Serial
				})
				if err != nil {
					return err
				}
				before, _ = s.ServerState()
				start := time.Now()
				if _, err := s.Controller.Operator("var", "set", est, "pedagogical_internet", "drop"); err != nil {
					return err
				}
				var d api.ServerDetail
				err = s.WaitFor(60*time.Second, "the report of the revert", func() bool {
					d, err = s.ServerState()
					return err == nil && d.Serial > before.Serial && d.State == api.StateFailing
				})
				if err == nil && !strings.Contains(d.Reason, "reverted") {
					err = fmt.Errorf("the controller shows the server failing for %q, want a revert", d.Reason)
				}
				if err != nil {
					return err
				}
				fig.Revert = time.Since(start)
				s.Logf("  reverted and reported %.1f s after the change", fig.Revert.Seconds())
				if _, err := s.Controller.Operator("servers", "list"); err != nil {
					return err
				}
				if _, _, err := s.Agent.CLI("history", "-n", "3"); err != nil {
					return err
				}
				if err := s.PupilWeb(5 * time.Second); err != nil {
					return fmt.Errorf("after the revert the pupil PC lost the Internet: %w", err)
				}
				s.Logf("  pupil-pc$ curl http://%s/   → Bienvenue sur Internet (the previous ruleset is back)", WebAddr)
				if _, err := s.Controller.Operator("var", "set", "academy:"+AcademyName, "controller_address", ControllerAddr); err != nil {
					return err
				}
				if _, err := s.WaitApplied(60 * time.Second); err != nil {
					return err
				}
				if err := s.PupilWeb(2 * time.Second); err == nil {
					return fmt.Errorf("the pupil PC still reaches the Internet once the change went through")
				}
				s.Logf("  pupil-pc$ curl http://%s/   → no answer: the change is confirmed", WebAddr)
				_, err = s.Controller.Operator("indicators")
				return err
			},
		},
	}
}

// planSummary is alize plan's output without the variables' listings.
func planSummary(out string) string {
	var b strings.Builder
	skip := false
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.TrimSpace(l) == "variables:":
			skip = true
			continue
		case strings.TrimSpace(l) == "":
			skip = false
		case skip:
			continue
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}
