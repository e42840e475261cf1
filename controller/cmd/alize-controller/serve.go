package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
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
			gc, budget := tuneGC(log)
			if budget != nil {
				go budget.keep(ctx)
			}
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
				Settings: settings, ManifestTTL: manifestTTL, Log: log, BuildGC: gc,
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
// which took a controller of 17,000 agents to 1,042 MiB; at 50, 891 MiB
// for the same CPU (testenv/fleetsim, SQLite). A build of many manifests
// (a fleet change) allocates much and keeps little: while it runs, the
// collector lets the heap grow to 5× the live data
// (director.Config.BuildGC), which spends a quarter less CPU on a
// fleet-wide change. A soft memory limit (memoryBudget) bounds both: it
// kept that controller under 1 GiB through a fleet change, for more
// collections while it lives close to it (steady CPU 24.7 s per 70 s
// against 17.6 s on SQLite, 18 s on PostgreSQL).
const (
	steadyGC = 50
	buildGC  = 400
	// budgetBytes is the soft memory limit the controller keeps to,
	// while what it keeps is under 2/3 of it.
	budgetBytes = 880 << 20
)

// tuneGC sets the collector between builds and returns its setting for
// builds (0 when GOGC is set) and the memory budget to keep (nil when
// GOMEMLIMIT is set): the operator's settings stay throughout.
func tuneGC(log *slog.Logger) (int, *memoryBudget) {
	var budget *memoryBudget
	if os.Getenv("GOMEMLIMIT") == "" {
		budget = &memoryBudget{budget: budgetBytes, ceiling: math.MaxInt64, live: liveBytes}
		if total := memTotal(); total > 0 {
			budget.ceiling = total / 2
		}
		log.Debug("garbage collector", "memory_budget_mib", budget.budget>>20, "memory_ceiling_mib", budget.ceiling>>20)
		budget.set()
	}
	if os.Getenv("GOGC") != "" {
		return 0, budget
	}
	debug.SetGCPercent(steadyGC)
	return buildGC, budget
}

// memoryBudget keeps the process's soft memory limit at budget, so that
// the collector works harder rather than let the heap grow past it; but
// never below 1.5× what the process keeps (its live heap and stacks), so
// that a controller that outgrew its budget does not collect without end,
// and never above ceiling (half the machine's memory), so that nothing
// takes the machine.
type memoryBudget struct {
	budget, ceiling int64
	live            func() int64
}

// limit is the soft memory limit for what the process keeps now.
func (m *memoryBudget) limit() int64 {
	return min(m.ceiling, max(m.budget, m.live()*3/2))
}

func (m *memoryBudget) set() { debug.SetMemoryLimit(m.limit()) }

// keep sets the limit again every 10 s, as what the process keeps
// changes, until ctx ends.
func (m *memoryBudget) keep(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.set()
		}
	}
}

// liveBytes is what the process keeps: its live heap after the last
// collection and its goroutine stacks.
func liveBytes() int64 {
	samples := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(samples)
	var n int64
	for _, s := range samples {
		if s.Value.Kind() == metrics.KindUint64 {
			n += int64(s.Value.Uint64())
		}
	}
	return n
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
