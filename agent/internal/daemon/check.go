package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"

	"github.com/alize-eple/alize/agent/internal/engine"
	"github.com/alize-eple/alize/agent/internal/identity"
	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/modules/manifest"
)

// CheckTargets are the local services alize check probes, and how.
type CheckTargets struct {
	LDAP string // slapd's address: "127.0.0.1:389"
	SMB  string // smbd's address: "127.0.0.1:445"
	// FirewallTable reports whether the firewall kind's nftables table is
	// present; nil skips the check.
	FirewallTable func(ctx context.Context) (bool, error)
}

// The results of a check.
const (
	CheckOK      = "ok"
	CheckWarning = "warning"
	CheckFailed  = "failed"
	CheckSkipped = "skipped"
)

// Check is one diagnostic, one line of alize check.
type Check struct {
	Name    string `json:"name"`
	Result  string `json:"result"` // CheckOK, CheckWarning, CheckFailed, CheckSkipped
	Message string `json:"message"`
}

// Check runs the diagnostics, in the manner of EOLE's diagnose: each says
// what it found and, when something is wrong, what to do.
func (a *Agent) Check(ctx context.Context, daemonRunning bool) []Check {
	now := a.now()
	var out []Check
	add := func(name, result, format string, args ...any) {
		out = append(out, Check{Name: name, Result: result, Message: fmt.Sprintf(format, args...)})
	}

	out = append(out, a.checkSpace())
	if daemonRunning {
		add("daemon", CheckOK, "the alize daemon is running")
	} else {
		add("daemon", CheckWarning, "the alize daemon is not running: start it with systemctl start alize")
	}

	err := a.load()
	if err != nil {
		if errors.Is(err, identity.ErrNotEnrolled) {
			add("enrollment", CheckFailed, "%v", err)
		} else {
			add("enrollment", CheckFailed, "the identity does not load: %v", err)
		}
		for _, n := range []string{"certificate", "controller", "clock", "manifest"} {
			add(n, CheckSkipped, "not enrolled")
		}
		return out
	}
	id := a.identity()
	add("enrollment", CheckOK, "enrolled as %s (UAI %s, academy %s) with %s", id.ServerID, id.UAI, id.Academy, id.Controller)

	cert := id.Certificate()
	life := cert.NotAfter.Sub(cert.NotBefore)
	switch left := cert.NotAfter.Sub(now); {
	case left <= 0:
		add("certificate", CheckFailed, "the client certificate expired on %s: the daemon renews it at its next poll; if that fails, enroll again with alize enroll --force", cert.NotAfter.Local().Format(time.DateTime))
	case left < life/6:
		add("certificate", CheckWarning, "the client certificate expires on %s and was not renewed yet: is the controller reachable?", cert.NotAfter.Local().Format(time.DateTime))
	default:
		add("certificate", CheckOK, "the client certificate is valid until %s (renewed at two thirds of its life)", cert.NotAfter.Local().Format(time.DateTime))
	}

	// The controller, and the clock against its own.
	a.mu.Lock()
	client := a.client
	a.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	start := time.Now()
	ans, perr := client.Manifest(cctx, readContact(a.store).ETag, 0)
	took := time.Since(start)
	cancel()
	var skew time.Duration
	var haveSkew bool
	switch {
	case perr == nil || isNotFound(perr):
		add("controller", CheckOK, "%s answers (%s)", id.Controller, took.Round(time.Millisecond))
		if !ans.ServerTime.IsZero() {
			skew, haveSkew = ans.ServerTime.Sub(a.now()), true
		}
	default:
		add("controller", CheckFailed, "%s does not answer: %v; check the network, the proxy, and the academy's firewall", id.Controller, perr)
	}
	switch {
	case !haveSkew:
		add("clock", CheckSkipped, "the controller's time is not known")
	case skew.Abs() > manifest.MaxClockSkew:
		add("clock", CheckFailed, "this server's clock is %s off the controller's: manifests will be refused; fix the time synchronisation (timedatectl, systemd-timesyncd)", skew.Abs().Round(time.Second))
	case skew.Abs() > 5*time.Second:
		add("clock", CheckWarning, "this server's clock is %s off the controller's: check its time synchronisation (timedatectl)", skew.Abs().Round(time.Second))
	default:
		add("clock", CheckOK, "this server's clock agrees with the controller's (within %s)", max(skew.Abs().Round(time.Second), time.Second))
	}

	lkg := a.lastKnownGood()
	switch {
	case lkg == nil:
		add("manifest", CheckWarning, "no manifest yet: the controller has assigned no module to this server, or was never reached")
	case !now.Before(lkg.Expires):
		add("manifest", CheckFailed, "manifest %d expired on %s: it stays applied (frozen) until the controller sends a fresh one", lkg.Serial, lkg.Expires.Local().Format(time.DateTime))
	case lkg.Expires.Sub(now) < 24*time.Hour:
		add("manifest", CheckWarning, "manifest %d expires on %s", lkg.Serial, lkg.Expires.Local().Format(time.DateTime))
	default:
		add("manifest", CheckOK, "manifest %d, received %s, valid until %s", lkg.Serial, lkg.Received.Local().Format(time.DateTime), lkg.Expires.Local().Format(time.DateTime))
	}

	kinds := map[string]bool{}
	if lkg != nil {
		for _, m := range lkg.Modules {
			kinds[m.Kind] = true
		}
	}
	out = append(out, a.checkService(ctx, "slapd", kinds["accounts"], a.opts.Checks.LDAP, "the directory (slapd)", "systemctl status slapd"))
	out = append(out, a.checkService(ctx, "smbd", kinds["shares"], a.opts.Checks.SMB, "the file server (smbd)", "systemctl status smbd"))
	switch {
	case !kinds["firewall"]:
		add("firewall", CheckSkipped, "no firewall module on this server")
	case a.opts.Checks.FirewallTable == nil:
		add("firewall", CheckSkipped, "this agent cannot list nftables tables")
	default:
		ok, err := a.opts.Checks.FirewallTable(ctx)
		switch {
		case err != nil:
			add("firewall", CheckFailed, "cannot list the nftables tables: %v", err)
		case !ok:
			add("firewall", CheckFailed, "the firewall table of Alizé is missing: run alize apply to restore it")
		default:
			add("firewall", CheckOK, "the firewall table of Alizé is in place")
		}
	}
	// The kinds' own checks.
	eng, err := a.kinds()
	if err != nil {
		add("kinds", CheckFailed, "%v", err)
	} else if lkg != nil {
		// Each kind checks the state its module's spec describes, with the
		// manifest's secrets and blobs at hand (the directory's address
		// and bind password are in the manifest, not in agent.yaml).
		errs := eng.Check(ctx, a.modules(lkg), a.inputs(ctx, lkg, false))
		for _, m := range lkg.Modules {
			switch err := errs[m.Name]; {
			case errors.Is(err, engine.ErrNoCheck):
			case err != nil:
				add("kind "+m.Kind, CheckFailed, "%v", err)
			default:
				add("kind "+m.Kind, CheckOK, "%s works as applied", m.Kind)
			}
		}
	}
	return out
}

func isNotFound(err error) bool { return api.IsCode(err, api.CodeNotFound) }

func (a *Agent) checkService(ctx context.Context, name string, wanted bool, addr, what, hint string) Check {
	c := Check{Name: name}
	switch {
	case !wanted:
		c.Result, c.Message = CheckSkipped, "no module of this server uses "+what
	case addr == "":
		c.Result, c.Message = CheckSkipped, "no address configured for "+what
	default:
		d := net.Dialer{Timeout: 3 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			c.Result, c.Message = CheckFailed, fmt.Sprintf("%s does not answer on %s: %v; see %s", what, addr, err, hint)
		} else {
			conn.Close()
			c.Result, c.Message = CheckOK, fmt.Sprintf("%s answers on %s", what, addr)
		}
	}
	return c
}

// checkSpace checks the free space where the state directory is.
func (a *Agent) checkSpace() Check {
	c := Check{Name: "disk"}
	var fs unix.Statfs_t
	if err := unix.Statfs(a.store.Dir(), &fs); err != nil {
		c.Result, c.Message = CheckFailed, fmt.Sprintf("cannot read the free space of %s: %v", a.store.Dir(), err)
		return c
	}
	free := int64(fs.Bavail) * int64(fs.Bsize)
	switch {
	case free < 100<<20:
		c.Result = CheckFailed
		c.Message = fmt.Sprintf("only %d MiB free for %s: the agent cannot keep its manifest and reports; free some space", free>>20, a.store.Dir())
	case free < 1<<30:
		c.Result = CheckWarning
		c.Message = fmt.Sprintf("%d MiB free for %s: free some space soon", free>>20, a.store.Dir())
	default:
		c.Result = CheckOK
		c.Message = fmt.Sprintf("%.1f GiB free for %s", float64(free)/(1<<30), a.store.Dir())
	}
	return c
}
