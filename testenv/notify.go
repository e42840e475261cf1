package testenv

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Notify is a fake systemd notify socket: it records every message a
// service sends with sd_notify (READY=1, STATUS=…, WATCHDOG=1, …).
type Notify struct {
	Path string

	conn    *net.UnixConn
	mu      sync.Mutex
	msgs    []string
	changed chan struct{} // closed and replaced on every message
	done    chan struct{}
}

// NewNotify listens on a unixgram socket in a temporary directory and sets
// NOTIFY_SOCKET to it for the test (so the test cannot be parallel).
func NewNotify(t *testing.T) *Notify {
	t.Helper()
	n := &Notify{Path: filepath.Join(t.TempDir(), "notify.sock"), changed: make(chan struct{}), done: make(chan struct{})}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.Path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("testenv: notify socket: %v", err)
	}
	n.conn = conn
	t.Setenv("NOTIFY_SOCKET", n.Path)
	go n.read()
	t.Cleanup(func() {
		conn.Close()
		<-n.done
	})
	return n
}

func (n *Notify) read() {
	defer close(n.done)
	buf := make([]byte, 64*1024)
	for {
		k, err := n.conn.Read(buf)
		if err != nil {
			return
		}
		// One datagram may carry several newline-separated assignments.
		n.mu.Lock()
		n.msgs = append(n.msgs, strings.Split(strings.TrimRight(string(buf[:k]), "\n"), "\n")...)
		close(n.changed)
		n.changed = make(chan struct{})
		n.mu.Unlock()
	}
}

// Messages returns every message received so far, in order.
func (n *Notify) Messages() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.msgs)
}

// Wait blocks until a message equal to msg (e.g. "READY=1"), or starting
// with it when it ends with "=" (e.g. "STATUS="), has arrived; it returns
// that message.
func (n *Notify) Wait(ctx context.Context, msg string) (string, error) {
	for {
		n.mu.Lock()
		for _, m := range n.msgs {
			if m == msg || (strings.HasSuffix(msg, "=") && strings.HasPrefix(m, msg)) {
				n.mu.Unlock()
				return m, nil
			}
		}
		changed := n.changed
		n.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return "", fmt.Errorf("notify: no %q among %q: %w", msg, n.Messages(), ctx.Err())
		}
	}
}
