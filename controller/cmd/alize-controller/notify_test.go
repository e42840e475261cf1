package main

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/alize-eple/alize/testenv"
)

// TestNotifySystemd: under systemd (Type=notify) the controller says READY
// once it listens, pings the watchdog while it serves and says STOPPING at
// the end.
func TestNotifySystemd(t *testing.T) {
	n := testenv.NewNotify(t)
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	stop := notifySystemd(t.Context(), ":8443")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for _, msg := range []string{"READY=1", "STATUS=serving on :8443", "WATCHDOG=1"} {
		if _, err := n.Wait(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	if _, err := n.Wait(ctx, "STOPPING=1"); err != nil {
		t.Fatal(err)
	}
}
