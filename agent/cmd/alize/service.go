package main

import (
	"errors"
	"fmt"

	"github.com/kardianos/service"
	"github.com/spf13/cobra"
)

// unitTemplate is packaging/systemd/alize.service, with the path of the
// binary left to kardianos/service ({{Path | cmdEscape}}): alize service
// install writes it. A test keeps the two the same.
const unitTemplate = `# The Alizé agent. Installed by the Debian package, or by
# ` + "`" + `alize service install` + "`" + ` (which writes this same unit, with the path of
# the alize binary that ran it).
[Unit]
Description=Alizé agent: keeps this school server as its academy wants it
Documentation=https://github.com/alize-eple/alize/blob/main/docs/technician.md
Wants=network-online.target
# alize-firewall.service has loaded the last confirmed ruleset at boot.
After=network-online.target nftables.service alize-firewall.service slapd.service smbd.service
# Never give up: a school server must stay managed.
StartLimitIntervalSec=0

[Service]
Type=notify
NotifyAccess=main
ExecStart={{Path | cmdEscape}} run
Restart=on-failure
RestartSec=15s
# The agent pings systemd every half of this while it is healthy, a long
# run included; stuck, it is restarted.
WatchdogSec=3min
TimeoutStartSec=2min
# SIGTERM: the run in progress ends and its report is saved (sent at the
# next start) within this time; a package upgrade restarts the agent so.
TimeoutStopSec=2min

# Root, because the kinds manage nftables (netlink), the school's OpenLDAP,
# Samba's configuration and the shares' directories, owned by users.
# Everything else is taken away. The capabilities root keeps:
#   CAP_NET_ADMIN     firewall: the inet alize table over netlink, and IP
#                     forwarding (net.ipv4.ip_forward) on a routing Amon
#   CAP_CHOWN         shares, homes: directories owned by their user/group
#   CAP_FOWNER        shares, homes: chmod and ACLs (setfacl) on
#                     directories root does not own
#   CAP_FSETID        shares: keep the setgid bit (2770) of a directory
#                     whose group root is not in
#   CAP_DAC_OVERRIDE  shares, homes: reach into users' 0700 directories;
#                     Samba's files (/etc/samba, /var/lib/samba)
#   CAP_KILL          smbcontrol smbd reload-config: Samba's messaging
#                     checks smbd's processes, which run as the users they
#                     serve, are alive (kill 0)
# LDAP needs none: it is a TCP client of slapd (AF_INET, below).
User=root
CapabilityBoundingSet=CAP_NET_ADMIN CAP_CHOWN CAP_FOWNER CAP_FSETID CAP_DAC_OVERRIDE CAP_KILL
NoNewPrivileges=yes
UMask=0022

# Files: the system is read-only but for what the agent and its kinds own.
# State (keys, enrollment, manifests, reports, firewall/boot.nft) in
# /var/lib/alize, 0700; the control socket in /run/alize.
StateDirectory=alize
StateDirectoryMode=0700
RuntimeDirectory=alize
RuntimeDirectoryMode=0700
RuntimeDirectoryPreserve=no
ConfigurationDirectory=alize
ProtectSystem=strict
# /home holds the users' and the shares' directories (the shares kind
# makes them); /root and /run/user stay out of reach.
ProtectHome=read-only
ReadWritePaths=/var/lib/alize /run/alize
ReadWritePaths=-/home -/srv
ReadWritePaths=-/etc/samba -/var/lib/samba -/var/cache/samba -/run/samba -/var/log/samba
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
# Not ProtectKernelTunables: the firewall kind may switch IP forwarding on
# (an Amon server routes). Not RestrictSUIDSGID: shares' directories are
# setgid (2770).
RestrictNamespaces=yes
RestrictRealtime=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
KeyringMode=private

[Install]
WantedBy=multi-user.target
`

// program is kardianos/service's view of alize: the service itself runs
// as "alize run" under systemd, so Start and Stop have nothing to do.
type program struct{}

func (program) Start(service.Service) error { return nil }
func (program) Stop(service.Service) error  { return nil }

func newService() (service.Service, error) {
	return service.New(program{}, &service.Config{
		Name:        "alize",
		DisplayName: "Alizé agent",
		Description: "Alizé agent: keeps this school server as its academy wants it",
		Arguments:   []string{"run"},
		Option:      service.KeyValue{"SystemdScript": unitTemplate},
	})
}

func newServiceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service install|uninstall|start|stop|status",
		Short: "Install, remove, start, stop the alize daemon as a system service",
		Long: `Manage the alize daemon as a system service (systemd on Debian):
  install    write the unit (hardened; Type=notify) and enable it at boot
  uninstall  disable it and remove the unit
  start      start the daemon now
  stop       stop the daemon (nothing is applied until it starts again)
  status     say whether the daemon runs`,
		ValidArgs: []string{"install", "uninstall", "start", "stop", "status"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usage("service takes one action: install, uninstall, start, stop or status")
			}
			s, err := newService()
			if err != nil {
				return fmt.Errorf("service: %w", err)
			}
			p := g.printer()
			switch args[0] {
			case "status":
				st, err := s.Status()
				word := "not installed"
				switch {
				case errors.Is(err, service.ErrNotInstalled):
				case err != nil:
					return fmt.Errorf("service status (%s): %w: is the service installed? alize service install", s.Platform(), err)
				case st == service.StatusRunning:
					word = "running"
				case st == service.StatusStopped:
					word = "stopped"
				default:
					word = "unknown"
				}
				if g.json {
					return p.json(map[string]string{"service": "alize", "status": word, "platform": s.Platform()})
				}
				p.printf("alize service (%s): %s\n", s.Platform(), p.word(word))
				if word != "running" {
					return attention()
				}
				return nil
			case "install", "uninstall", "start", "stop":
				if err := service.Control(s, args[0]); err != nil {
					return fmt.Errorf("service %s: %w", args[0], err)
				}
				p.printf("alize service: %s done\n", args[0])
				return nil
			}
			return usage("service %q: want install, uninstall, start, stop or status", args[0])
		},
	}
	addJSON(cmd, g)
	return cmd
}
