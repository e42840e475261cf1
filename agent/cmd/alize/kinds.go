package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/alize-eple/alize/agent/internal/daemon"
	"github.com/alize-eple/alize/agent/internal/engine"
	"github.com/alize-eple/alize/agent/internal/identity"
	"github.com/alize-eple/alize/modules/accounts"
	"github.com/alize-eple/alize/modules/firewall"
	"github.com/alize-eple/alize/modules/manifest"
	"github.com/alize-eple/alize/modules/shares"
)

// kindsConfig is the part of agent.yaml the kinds read. Everything is
// optional.
type kindsConfig struct {
	Firewall struct {
		// AdminNetworks always reach the server's SSH port, whatever a
		// manifest says ("10.1.0.0/16").
		AdminNetworks   []string `json:"admin_networks"`
		SSHPort         uint16   `json:"ssh_port"`
		ConfirmDeadline string   `json:"confirm_deadline"` // "30s"
	} `json:"firewall"`
	Accounts struct {
		// The directory, unless the modules' specs say (ldap section).
		URL              string `json:"url"`                // "ldap://127.0.0.1:389"
		BindDN           string `json:"bind_dn"`            // "cn=admin,o=gouv,c=fr"
		BindPasswordFile string `json:"bind_password_file"` // a root-only file holding the password
	} `json:"accounts"`
	Shares struct {
		Include      string   `json:"include"`       // default /etc/samba/alize-shares.conf
		SmbConf      string   `json:"smb_conf"`      // default /etc/samba/smb.conf
		AllowedRoots []string `json:"allowed_roots"` // default /home, /srv
	} `json:"shares"`
}

// kinds wires the kinds this agent applies and what each depends on: the
// one place where kinds meet the engine (no init() registry).
//
// The engine orders a manifest's modules by these dependencies: accounts
// before shares (the shares use the groups and homes accounts manages);
// the firewall depends on nothing and nothing on it. The kinds resolve
// their secret references and blobs through src, which the engine fills
// during each run.
func kinds(cfg kindsConfig, log *slog.Logger) daemon.KindsFunc {
	return func(id *identity.Identity, src *engine.Source) ([]engine.Kind, error) {
		fw, err := newFirewall(cfg, log, id)
		if err != nil {
			return nil, err
		}
		acc, err := newAccounts(cfg, log, src)
		if err != nil {
			return nil, err
		}
		sh, err := shares.New(shares.Config{
			Root: "/", Include: cfg.Shares.Include, SmbConf: cfg.Shares.SmbConf,
			AllowedRoots: cfg.Shares.AllowedRoots, Log: log,
		})
		if err != nil {
			return nil, err
		}
		ks := []engine.Kind{
			engine.Adapt[firewall.Spec](fw),
			engine.Adapt[accounts.Spec](acc),
			engine.Adapt[shares.Spec](sh, "accounts"),
		}
		return append(ks, testKinds(log)...), nil
	}
}

// newFirewall sets the firewall kind up. Its lifelines and its
// commit-confirmed probe need the controller: known once enrolled.
func newFirewall(cfg kindsConfig, log *slog.Logger, id *identity.Identity) (*firewall.Firewall, error) {
	fc := firewall.Config{Root: "/", Log: log, Now: time.Now}
	fc.Lifelines.SSHPort = cfg.Firewall.SSHPort
	for _, n := range cfg.Firewall.AdminNetworks {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return nil, fmt.Errorf("configuration: firewall.admin_networks: %w", err)
		}
		fc.Lifelines.AdminNetworks = append(fc.Lifelines.AdminNetworks, p)
	}
	if cfg.Firewall.ConfirmDeadline != "" {
		d, err := time.ParseDuration(cfg.Firewall.ConfirmDeadline)
		if err != nil {
			return nil, fmt.Errorf("configuration: firewall.confirm_deadline: %w", err)
		}
		fc.Confirm.Deadline = d
	}
	if id != nil {
		u, err := url.Parse(id.Controller)
		if err != nil {
			return nil, fmt.Errorf("controller address: %w", err)
		}
		hostport := u.Host
		if u.Port() == "" {
			hostport = net.JoinHostPort(u.Hostname(), "443")
		}
		fc.Confirm.Controller, fc.Confirm.TLS = hostport, id.TLSConfig()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", u.Hostname())
		if err != nil {
			// The probe still guards the controller: a ruleset that cuts it
			// off is reverted.
			log.Warn("controller address not resolved: no lifeline to it this time", "err", err)
		}
		_, port, _ := net.SplitHostPort(hostport)
		p, _ := netip.ParseAddrPort(net.JoinHostPort("0.0.0.0", port))
		for _, a := range addrs {
			fc.Lifelines.Controller = append(fc.Lifelines.Controller, netip.AddrPortFrom(a.Unmap(), p.Port()))
		}
	}
	return firewall.New(fc)
}

func newAccounts(cfg kindsConfig, log *slog.Logger, src *engine.Source) (*accounts.Accounts, error) {
	ac := accounts.Config{
		URL: cfg.Accounts.URL, BindDN: cfg.Accounts.BindDN,
		Secrets: func(ref string) (accounts.Secret, error) { return src.Secret(ref) },
		Blobs:   src,
		Root:    "/", Logger: log, Now: time.Now,
	}
	if f := cfg.Accounts.BindPasswordFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("configuration: accounts.bind_password_file: %w", err)
		}
		ac.BindPassword = manifest.NewSecret([]byte(strings.TrimRight(string(b), "\r\n")))
		clear(b)
	}
	return accounts.New(ac)
}
