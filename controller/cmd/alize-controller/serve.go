package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/alize-eple/alize/controller/internal/server"
	"github.com/alize-eple/alize/controller/internal/store"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"
)

func serveCommand(stderr io.Writer) *cobra.Command {
	settings := server.DefaultSettings()
	var (
		stateDir, keysDir, listen, database, logLevel string
		names                                         []string
		manifestTTL                                   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the controller: the HTTPS API for agents and operators",
		Long: `Run the controller. At first start it makes its CA (STATE/ca, keys 0600), its
TLS certificate for the --name given, and the first fleet admin's token
(STATE/initial-admin.token). The keys directory must hold the root chain
(root-N.json) and the director key made by "keys init".

The database is SQLite (STATE/controller.db) unless --database (or
$ALIZE_DATABASE) gives a PostgreSQL URL, for several replicas.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
			gc, buildMemory := tuneGC(log)
			if database == "" {
				database = os.Getenv("ALIZE_DATABASE")
			}
			st, err := openStore(ctx, stateDir, database)
			if err != nil {
				return err
			}
			defer st.Close()
			if len(names) == 0 {
				host, err := os.Hostname()
				if err != nil {
					return err
				}
				names = []string{host, "localhost", "127.0.0.1"}
			}
			checkers, err := kindCheckers()
			if err != nil {
				return err
			}
			ctl, err := server.New(ctx, server.Config{
				StateDir: stateDir, KeysDir: keysDir, Names: names, Store: st, Checkers: checkers,
				Settings: settings, ManifestTTL: manifestTTL, Log: log, BuildGC: gc, BuildMemory: buildMemory,
			})
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			stopNotify := notifySystemd(ctx, listen)
			defer stopNotify()
			return ctl.Serve(ctx, ln)
		},
	}
	f := cmd.Flags()
	f.StringVar(&stateDir, "state-dir", defaultStateDir, "state directory: CA, secrets key, SQLite database")
	f.StringVar(&keysDir, "keys-dir", "", "keys directory: root chain and director key (default STATE/keys)")
	f.StringVar(&listen, "listen", defaultListen, "address to serve HTTPS on")
	f.StringSliceVar(&names, "name", nil, "DNS name or address agents reach the controller by (repeat; default: the host name, localhost)")
	f.StringVar(&database, "database", "", "\"sqlite\" or a postgres:// URL (default $ALIZE_DATABASE, else sqlite)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.DurationVar(&settings.PollInterval, "poll-interval", settings.PollInterval, "how often agents poll")
	f.DurationVar(&settings.BootDelay, "boot-delay", settings.BootDelay, "longest random delay before an agent's first poll after it starts")
	f.DurationVar(&settings.LongPoll, "long-poll", settings.LongPoll, "how long a poll is held waiting for a new manifest")
	f.DurationVar(&settings.ClientCertLifetime, "cert-lifetime", settings.ClientCertLifetime, "lifetime of agents' client certificates")
	f.DurationVar(&settings.RenewGrace, "renew-grace", settings.RenewGrace, "how long after its end an agent may renew its certificate by proof of possession")
	f.DurationVar(&manifestTTL, "manifest-ttl", 14*24*time.Hour, "lifetime of a signed manifest (re-signed at half of it)")
	return cmd
}

// The controller's garbage collector, unless GOGC or GOMEMLIMIT say
// otherwise. Between changes a controller holds its agents' long polls:
// ~35 KB each that stay (half of it the goroutine stacks of the
// connection and of its handler), ~600 MB at 17,000 agents, and it
// allocates little. Go's default (100) lets the heap grow by as much
// again as the live data and the stacks together before it collects,
// which took a controller of 17,000 agents to 1.05 GiB; at 50 it costs a
// few collections more a minute. A build of many manifests (a fleet
// change) allocates much and keeps little: while it runs, the collector
// lets the heap grow to 5× the live data (director.Config.BuildGC),
// which spends a quarter less CPU on a fleet-wide change, but no further
// than buildMemory (director.Config.BuildMemory). A soft limit of half
// the machine's memory keeps anything from taking the machine.
const (
	steadyGC    = 50
	buildGC     = 400
	buildMemory = 960 << 20
)

// tuneGC sets the collector between builds and returns its settings for
// builds: gc is 0 when GOGC is set, memory 0 when GOMEMLIMIT is, so that
// the operator's settings stay throughout.
func tuneGC(log *slog.Logger) (gc int, memory int64) {
	if os.Getenv("GOMEMLIMIT") == "" {
		memory = buildMemory
		if total := memTotal(); total > 0 {
			debug.SetMemoryLimit(total / 2)
			log.Debug("garbage collector", "memory_limit_mib", total/2>>20)
		}
	}
	if os.Getenv("GOGC") != "" {
		return 0, memory
	}
	debug.SetGCPercent(steadyGC)
	return buildGC, memory
}

// memTotal is the machine's memory in bytes (MemTotal of /proc/meminfo),
// or 0 when it cannot be read.
func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// openStore opens SQLite in the state directory, or PostgreSQL.
func openStore(ctx context.Context, stateDir, database string) (store.Store, error) {
	switch {
	case database == "" || database == "sqlite":
		return store.OpenSQLite(ctx, filepath.Join(stateDir, "controller.db"))
	case strings.HasPrefix(database, "postgres://"), strings.HasPrefix(database, "postgresql://"):
		return store.OpenPostgres(ctx, database)
	}
	return nil, fmt.Errorf("--database: %q is neither sqlite nor a postgres:// URL", database)
}

// notifySystemd tells systemd (Type=notify) that the controller is ready
// once it listens, pings its watchdog at half the interval while it runs,
// and says it is stopping when the returned function is called. Without
// NOTIFY_SOCKET (not under systemd) it does nothing.
func notifySystemd(ctx context.Context, listen string) (stop func()) {
	daemon.SdNotify(false, daemon.SdNotifyReady+"\nSTATUS=serving on "+listen)
	done := make(chan struct{})
	if every, err := daemon.SdWatchdogEnabled(false); err == nil && every > 0 {
		go func() {
			t := time.NewTicker(every / 2)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					daemon.SdNotify(false, daemon.SdNotifyWatchdog)
				case <-done:
					return
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	return func() {
		close(done)
		daemon.SdNotify(false, daemon.SdNotifyStopping)
	}
}
