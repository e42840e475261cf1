package firewall

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/alize-eple/alize/modules/atomic"
)

// Probe attempts: each opens a new connection and gives up after
// attemptTimeout; a failed attempt is retried after retryPause until the
// deadline.
const (
	attemptTimeout = 2 * time.Second
	retryPause     = 100 * time.Millisecond
)

type check struct {
	name string
	run  func(ctx context.Context) error
}

// probe runs the controller probe and the spec's probes concurrently, each
// over new connections until it passes, and returns why those that did not
// pass before the deadline failed.
func (f *Firewall) probe(ctx context.Context, probes []Probe) error {
	var checks []check
	if f.confirm.Controller != "" {
		checks = append(checks, check{"controller " + f.confirm.Controller + " (tls)", f.tlsProbe})
	}
	for _, p := range probes {
		switch p.Check {
		case "tcp":
			checks = append(checks, check{p.Name + " (tcp " + p.Address + ")", func(ctx context.Context) error { return f.tcpProbe(ctx, p.Address) }})
		case "dns":
			checks = append(checks, check{p.Name + " (dns " + p.Address + ")", func(ctx context.Context) error { return f.dnsProbe(ctx, p.Address) }})
		}
	}
	if len(checks) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, f.confirm.Deadline)
	defer cancel()
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { errs[i] = retry(ctx, c) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func retry(ctx context.Context, c check) error {
	pause := time.NewTimer(0)
	defer pause.Stop()
	<-pause.C
	for {
		attempt, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := c.run(attempt)
		cancel()
		if err == nil {
			return nil
		}
		pause.Reset(retryPause)
		select {
		case <-ctx.Done():
			return fmt.Errorf("probe %s did not pass before the deadline: %w", c.name, err)
		case <-pause.C:
		}
	}
}

func (f *Firewall) tlsProbe(ctx context.Context) error {
	conn, err := f.confirm.Dial(ctx, "tcp", f.confirm.Controller)
	if err != nil {
		return err
	}
	defer conn.Close()
	cfg := f.confirm.TLS.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(f.confirm.Controller)
	}
	return tls.Client(conn, cfg).HandshakeContext(ctx)
}

func (f *Firewall) tcpProbe(ctx context.Context, addr string) error {
	conn, err := f.confirm.Dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// dnsProbe asks the root's name servers over UDP and waits for any answer
// to its query: an answer, even an error, proves the path both ways.
func (f *Firewall) dnsProbe(ctx context.Context, addr string) error {
	conn, err := f.confirm.Dial(ctx, "udp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return err
		}
	}
	id := uint16(rand.Uint32())
	query := []byte{
		byte(id >> 8), byte(id), 0x01, 0x00, // id, recursion desired
		0, 1, 0, 0, 0, 0, 0, 0, // one question
		0, 0, 2, 0, 1, // ".", NS, IN
	}
	if _, err := conn.Write(query); err != nil {
		return err
	}
	buf := make([]byte, 512)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return err
		}
		if n >= 12 && buf[0] == query[0] && buf[1] == query[1] && buf[2]&0x80 != 0 {
			return nil
		}
	}
}

// pendingState is what an apply leaves on disk while its ruleset is not
// confirmed: the table to restore if the agent dies in the window.
type pendingState struct {
	Version  int       `json:"version"`
	Started  time.Time `json:"started"`
	Deadline time.Time `json:"deadline"`
	Previous snapshot  `json:"previous"`
}

const pendingVersion = 1

func (f *Firewall) savePending(prev tableState, start time.Time) error {
	snap, err := encodeSnapshot(prev)
	if err != nil {
		return fmt.Errorf("firewall: save the previous table: %w", err)
	}
	data, err := json.Marshal(pendingState{Version: pendingVersion, Started: start, Deadline: start.Add(f.confirm.Deadline), Previous: snap})
	if err != nil {
		return fmt.Errorf("firewall: save the previous table: %w", err)
	}
	if err := writeFileAtomic(f.pendingPath(), data, 0o600); err != nil {
		return fmt.Errorf("firewall: save the previous table: %w", err)
	}
	return nil
}

// saveConfirmed saves a confirmed ruleset for boot (nft text) and for
// reverts (a snapshot).
func (f *Firewall) saveConfirmed(st *planState) error {
	snap, err := encodeSnapshot(st.want.state)
	if err != nil {
		return err
	}
	data, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(f.confirmedPath(), data, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(f.BootPath(), st.want.rs.render(), 0o600)
}

// lastConfirmed reads the last confirmed table; without one, a table
// that does not exist.
func (f *Firewall) lastConfirmed() (tableState, error) {
	data, err := os.ReadFile(f.confirmedPath())
	if errors.Is(err, os.ErrNotExist) {
		return tableState{}, nil
	}
	if err != nil {
		return tableState{}, fmt.Errorf("firewall: last confirmed ruleset: %w", err)
	}
	var snap snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return tableState{}, fmt.Errorf("firewall: last confirmed ruleset %s: %w", f.confirmedPath(), err)
	}
	ts, err := snap.decode()
	if err != nil {
		return tableState{}, fmt.Errorf("firewall: last confirmed ruleset %s: %w", f.confirmedPath(), err)
	}
	return ts, nil
}

func (f *Firewall) loadPending() (pendingState, bool, error) {
	data, err := os.ReadFile(f.pendingPath())
	if errors.Is(err, os.ErrNotExist) {
		return pendingState{}, false, nil
	}
	if err != nil {
		return pendingState{}, false, fmt.Errorf("firewall: pending state: %w", err)
	}
	var p pendingState
	if err := json.Unmarshal(data, &p); err != nil {
		return pendingState{}, false, fmt.Errorf("firewall: pending state %s: %w", f.pendingPath(), err)
	}
	if p.Version != pendingVersion {
		return pendingState{}, false, fmt.Errorf("firewall: pending state %s: version %d, this agent reads %d", f.pendingPath(), p.Version, pendingVersion)
	}
	return p, true, nil
}

func (f *Firewall) removePending() error {
	err := os.Remove(f.pendingPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("firewall: remove the pending state: %w", err)
	}
	if err := atomic.SyncDir(filepath.Dir(f.pendingPath())); err != nil {
		return fmt.Errorf("firewall: remove the pending state: %w", err)
	}
	return nil
}

// writeFileAtomic writes a file so that a crash leaves the old content or
// the new, never a mix: temporary file, fsync, rename, fsync of the
// directory.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomic.WriteFile(path, data, mode)
}
