package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/alize-eple/alize/agent/internal/daemon"
	"github.com/alize-eple/alize/agent/internal/engine"
	"github.com/alize-eple/alize/agent/internal/state"
)

// defaultConfig is the configuration file; it is optional.
const defaultConfig = "/etc/alize/agent.yaml"

// config is /etc/alize/agent.yaml. Every field is optional.
type config struct {
	StateDir      string            `json:"state_dir"`
	Socket        string            `json:"socket"`
	DriftInterval string            `json:"drift_interval"` // "30m"
	RunTimeout    string            `json:"run_timeout"`    // "15m"
	Mode          string            `json:"mode"`           // "report-only": nothing is ever changed
	Modes         map[string]string `json:"modes"`          // per module name
	LogLevel      string            `json:"log_level"`      // debug, info, warn, error
	Checks        struct {
		LDAP          string `json:"ldap"`           // "127.0.0.1:389"
		SMB           string `json:"smb"`            // "127.0.0.1:445"
		FirewallTable string `json:"firewall_table"` // "alize" (family inet)
	} `json:"checks"`
	kindsConfig
}

// loadConfig reads the configuration strictly (an unknown key is an
// error). The default file may be missing; a file named with --config
// may not.
func loadConfig(path string) (config, error) {
	var c config
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && path == defaultConfig {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("configuration: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return c, fmt.Errorf("configuration %s: %w", path, err)
	}
	return c, nil
}

// setup is what a command needs: the configuration, the state directory,
// the logger, the engine with its kinds, and the agent.
type setup struct {
	cfg    config
	store  *state.Store
	log    *slog.Logger
	agent  *daemon.Agent
	socket string
}

func (g *globals) setup(ctx context.Context, daemonMode bool) (*setup, error) {
	cfg, err := loadConfig(g.configPath)
	if err != nil {
		return nil, usage("%v", err)
	}
	s := &setup{cfg: cfg}
	dir := firstOf(g.stateDir, cfg.StateDir, state.DefaultDir)
	s.socket = firstOf(g.socket, cfg.Socket, daemon.DefaultSocket)
	level := slog.LevelWarn // the technician's commands print their results; logs are for trouble
	if daemonMode {
		level = slog.LevelInfo
	}
	if cfg.LogLevel != "" {
		if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
			return nil, usage("configuration: log_level %q: want debug, info, warn or error", cfg.LogLevel)
		}
	}
	s.log = newLogger(g.stderr, level, daemonMode)
	if os.Geteuid() != 0 && dir == state.DefaultDir {
		return nil, fmt.Errorf("alize must run as root: its state (%s) is root's only; try sudo alize", dir)
	}
	if s.store, err = state.Open(dir); err != nil {
		return nil, err
	}
	opts := daemon.Options{
		Store:   s.store,
		Log:     s.log,
		Now:     time.Now,
		Version: version,
		Socket:  s.socket,
		Notify:  notifySystemd(s.log),
	}
	if opts.DriftInterval, err = duration(cfg.DriftInterval, "drift_interval"); err != nil {
		return nil, err
	}
	if opts.RunTimeout, err = duration(cfg.RunTimeout, "run_timeout"); err != nil {
		return nil, err
	}
	if cfg.Mode != "" {
		if opts.Mode, err = engine.ParseMode(cfg.Mode); err != nil {
			return nil, usage("configuration: %v", err)
		}
	}
	if len(cfg.Modes) > 0 {
		opts.Modes = map[string]engine.Mode{}
		for name, m := range cfg.Modes {
			if opts.Modes[name], err = engine.ParseMode(m); err != nil {
				return nil, usage("configuration: modes.%s: %v", name, err)
			}
		}
	}
	opts.Checks = daemon.CheckTargets{
		LDAP: firstOf(cfg.Checks.LDAP, "127.0.0.1:389"),
		SMB:  firstOf(cfg.Checks.SMB, "127.0.0.1:445"),
	}
	opts.Checks.FirewallTable = firewallTable(firstOf(cfg.Checks.FirewallTable, "alize"))
	opts.Kinds = kinds(cfg.kindsConfig, s.log)
	if s.agent, err = daemon.New(opts); err != nil {
		return nil, err
	}
	return s, nil
}

func duration(s, name string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, usage("configuration: %s %q: want a duration such as 30m", name, s)
	}
	return d, nil
}

func firstOf(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// dialDaemon connects to the running daemon; nil when none answers.
func (s *setup) dialDaemon(ctx context.Context) *daemon.Control {
	c, err := daemon.DialControl(ctx, s.socket)
	if err != nil {
		return nil
	}
	return c
}
