package fleetsim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/testenv"
)

// Build builds the alize-controller binary as it ships (static, no race
// detector) into dir.
func Build(dir string) error {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	build := exec.Command("go", "build", "-trimpath", "-o", dir+"/", "./controller/cmd/alize-controller")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build alize-controller: %w\n%s", err, b)
	}
	return nil
}

// RaiseFileLimit raises this process's open-file limit to its hard limit:
// every simulated agent holds a connection, and the controller, started
// afterwards, inherits the limit for its side of them. It returns the
// limit now in force.
func RaiseFileLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	return l.Cur, nil
}

// ControllerOptions says how to run the controller.
type ControllerOptions struct {
	Bin string // directory holding alize-controller
	// Database is "" for SQLite in the state directory, or a postgres:// URL.
	Database string
	// LongPoll is the controller's --long-poll: how long it holds a poll.
	LongPoll time.Duration
	// BootDelay is its --boot-delay: the longest random wait before an
	// agent's first poll.
	BootDelay time.Duration
	// PollInterval is its --poll-interval.
	PollInterval time.Duration
}

// Controller is a running alize-controller process on 127.0.0.1.
type Controller struct {
	Bin     string
	Dir     string // keys, state, module files, log
	State   string // its state directory
	Offline string // the offline keys (keys init)
	Log     string // its log file
	URL     string // https://127.0.0.1:PORT

	cmd   *exec.Cmd
	done  chan struct{}
	token string
	hc    *http.Client
}

// StartController makes the academy's keys, starts `alize-controller
// serve` and waits until it answers an operator. It is stopped at cleanup.
func StartController(tb TB, opts ControllerOptions) *Controller {
	tb.Helper()
	dir, err := os.MkdirTemp("", "alize-fleetsim-")
	if err != nil {
		tb.Fatalf("fleetsim: %v", err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	port, err := (*testenv.NetNS)(nil).FreePort()
	if err != nil {
		tb.Fatalf("fleetsim: free port: %v", err)
	}
	c := &Controller{
		Bin: filepath.Join(opts.Bin, "alize-controller"), Dir: dir,
		State: filepath.Join(dir, "state"), Offline: filepath.Join(dir, "offline-keys"),
		Log: filepath.Join(dir, "controller.log"), URL: "https://127.0.0.1:" + strconv.Itoa(port),
	}
	if out, err := c.CLI(context.Background(), "keys", "init", "--dir", c.Offline); err != nil {
		tb.Fatalf("fleetsim: keys init: %v\n%s", err, out)
	}
	keys := filepath.Join(c.State, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		tb.Fatalf("fleetsim: %v", err)
	}
	for _, f := range []string{"root-1.json", "director.key"} {
		b, err := os.ReadFile(filepath.Join(c.Offline, f))
		if err == nil {
			err = os.WriteFile(filepath.Join(keys, f), b, 0o600)
		}
		if err != nil {
			tb.Fatalf("fleetsim: %v", err)
		}
	}
	args := []string{"serve", "--state-dir", c.State, "--listen", "127.0.0.1:" + strconv.Itoa(port),
		"--name", "127.0.0.1", "--log-level", "warn",
		"--long-poll", opts.LongPoll.String(), "--boot-delay", opts.BootDelay.String(), "--poll-interval", opts.PollInterval.String()}
	if opts.Database != "" {
		args = append(args, "--database", opts.Database)
	}
	logf, err := os.Create(c.Log)
	if err != nil {
		tb.Fatalf("fleetsim: %v", err)
	}
	c.cmd = exec.Command(c.Bin, args...)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		logf.Close()
		tb.Fatalf("fleetsim: start alize-controller: %v", err)
	}
	c.done = make(chan struct{})
	go func() { c.cmd.Wait(); logf.Close(); close(c.done) }()
	tb.Cleanup(c.Stop)
	if err := c.waitReady(); err != nil {
		tb.Fatalf("fleetsim: %v", err)
	}
	return c
}

// TB is what the simulation needs of a *testing.T or *testing.B.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
	Logf(format string, args ...any)
}

// waitReady waits until the controller answers whoami with its first
// admin's token.
func (c *Controller) waitReady() error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := c.connect()
		if err == nil {
			var who api.Whoami
			if err = c.Do(context.Background(), http.MethodGet, api.PathAdminWhoami, nil, &who); err == nil {
				return nil
			}
		}
		select {
		case <-c.done:
			return fmt.Errorf("alize-controller exited at start:\n%s", c.LogTail(20))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("alize-controller does not answer after 60 s (%v):\n%s", err, c.LogTail(20))
		}
	}
}

// connect reads the admin token and the CA from the state directory.
func (c *Controller) connect() error {
	if c.hc != nil {
		return nil
	}
	tok, err := os.ReadFile(filepath.Join(c.State, "initial-admin.token"))
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(filepath.Join(c.State, "ca", "ca.crt"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("no CA certificate in ca.crt yet")
	}
	c.token = strings.TrimSpace(string(tok))
	c.hc = &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, MaxIdleConnsPerHost: 64}}
	return nil
}

// Do calls an operator route as the first fleet admin, as the operator
// command line does: in is sent as JSON, a 2xx answer decoded into out.
func (c *Controller) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", api.ContentTypeJSON)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, api.MaxResponseBody))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// Answers reads the controller's histogram of its own latency on manifest
// requests (alize_manifest_answer_seconds, the time a long poll was held
// left out) from /metrics: the cumulative count at each bucket's upper
// bound, in seconds, the last bound +Inf.
func (c *Controller) Answers(ctx context.Context) ([]Bucket, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+api.PathMetrics, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []Bucket
	sc := bufio.NewScanner(resp.Body)
	const prefix = `alize_manifest_answer_seconds_bucket{le="`
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		le, count, ok := strings.Cut(rest, `"} `)
		if !ok {
			return nil, fmt.Errorf("/metrics: %q", sc.Text())
		}
		b := Bucket{}
		if b.Le, err = strconv.ParseFloat(le, 64); err == nil {
			b.Count, err = strconv.ParseFloat(count, 64)
		}
		if err != nil {
			return nil, fmt.Errorf("/metrics: %q: %w", sc.Text(), err)
		}
		out = append(out, b)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("/metrics: no alize_manifest_answer_seconds histogram")
	}
	return out, nil
}

// Bucket is a histogram bucket: how many observations were at most Le.
type Bucket struct{ Le, Count float64 }

// quantileBound returns the upper bound of the bucket holding quantile q
// of what was observed between two readings of one histogram.
func quantileBound(before, after []Bucket, q float64) (time.Duration, bool) {
	if len(before) != len(after) || len(after) == 0 {
		return 0, false
	}
	total := after[len(after)-1].Count - before[len(before)-1].Count
	if total <= 0 {
		return 0, false
	}
	for i := range after {
		if after[i].Count-before[i].Count >= q*total {
			if math.IsInf(after[i].Le, 1) {
				return 0, false
			}
			return time.Duration(after[i].Le * float64(time.Second)), true
		}
	}
	return 0, false
}

// CLI runs an operator command of the binary against this controller.
func (c *Controller) CLI(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Bin, append([]string{"--controller", c.URL, "--state-dir", c.State}, args...)...)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("alize-controller %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// Stop stops the controller with SIGTERM and waits (SIGKILL after 30 s).
func (c *Controller) Stop() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
	if c.hc != nil {
		c.hc.CloseIdleConnections()
	}
}

// PID is the controller's process id.
func (c *Controller) PID() int { return c.cmd.Process.Pid }

// Memory is the controller's resident memory from /proc: now (VmRSS) and
// its peak since it started (VmHWM), in bytes.
func (c *Controller) Memory() (rss, peak uint64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", c.PID()))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, _ := strings.Cut(sc.Text(), ":")
		var kb uint64
		fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb)
		switch name {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			peak = kb << 10
		}
	}
	return rss, peak, sc.Err()
}

// ResetPeak resets the controller's VmHWM to its current VmRSS.
func (c *Controller) ResetPeak() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", c.PID()), []byte("5"), 0)
}

// CPU is the controller's CPU time so far (user + system), from
// /proc/PID/stat.
func (c *Controller) CPU() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.PID()))
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may hold spaces.
	_, rest, ok := strings.Cut(string(b), ") ")
	if !ok {
		return 0, errors.New("unexpected /proc stat")
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat")
	}
	utime, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100, nil // USER_HZ is 100 on Linux
}

// LogTail is the end of the controller's log.
func (c *Controller) LogTail(n int) string {
	b, _ := os.ReadFile(c.Log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// LoadAverage is the machine's 1-minute load average, from /proc/loadavg.
func LoadAverage() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	var l float64
	fmt.Sscanf(string(b), "%f", &l)
	return l
}
