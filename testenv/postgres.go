package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const pgBinDir = "/usr/lib/postgresql/15/bin"

// Postgres is a throwaway PostgreSQL cluster on 127.0.0.1, trusting local
// connections as user "alize".
type Postgres struct {
	DSN  string // postgres://alize@127.0.0.1:PORT/postgres?sslmode=disable
	Port int
	Dir  string
	PID  int // the postmaster's
}

// StartPostgres creates a cluster with initdb in a temporary directory,
// starts it and waits until it accepts connections. It is stopped and
// removed at cleanup.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	Require(t, "postgres")
	pg, err := lookupUser("postgres")
	if err != nil {
		t.Fatalf("testenv: postgres: %v", err)
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	dir := tempDir(t)
	// initdb refuses to run as root: the cluster belongs to postgres.
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatalf("testenv: postgres: %v", err)
	}
	p := &Postgres{Dir: dir}
	data := filepath.Join(dir, "data")
	asPostgres := func(args ...string) *exec.Cmd {
		runuser, _ := lookPath("runuser")
		return exec.Command(runuser, append([]string{"-u", "postgres", "--"}, args...)...)
	}
	if err := run(asPostgres(pgBinDir+"/initdb", "-D", data, "-A", "trust", "-U", "alize",
		"--no-sync", "--no-instructions", "-E", "UTF8", "--locale", "C")); err != nil {
		t.Fatalf("testenv: postgres initdb: %v", err)
	}
	port, err := (*NetNS)(nil).FreePort()
	if err != nil {
		t.Fatalf("testenv: postgres: free port: %v", err)
	}
	p.Port = port
	p.DSN = fmt.Sprintf("postgres://alize@127.0.0.1:%d/postgres?sslmode=disable", port)
	logFile := filepath.Join(dir, "postgres.log")
	opts := fmt.Sprintf("-k %s -p %d -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off", dir, port)
	start := asPostgres(pgBinDir+"/pg_ctl", "-D", data, "-l", logFile, "-w", "-t", "30", "-o", opts, "start")
	t.Cleanup(func() {
		stop := asPostgres(pgBinDir+"/pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "30", "stop")
		if err := run(stop); err != nil && p.PID != 0 && Alive(p.PID) {
			t.Errorf("testenv: postgres stop: %v", err)
		}
		// pg_ctl returns once the postmaster is gone; its children follow it.
		deadline := time.Now().Add(5 * time.Second)
		for p.PID != 0 && (Alive(p.PID) || len(Descendants(p.PID)) > 0) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if t.Failed() {
			t.Logf("testenv: postgres log:\n%s", tail(logFile, 40))
		}
	})
	if err := run(start); err != nil {
		t.Fatalf("testenv: postgres start: %v\n%s", err, tail(logFile, 20))
	}
	pidData, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		t.Fatalf("testenv: postgres: %v", err)
	}
	first, _, _ := strings.Cut(string(pidData), "\n")
	p.PID, _ = strconv.Atoi(first)
	return p
}
