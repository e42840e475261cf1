package fleetsim_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/alize-eple/alize/testenv/fleetsim"
)

// bin holds the alize-controller binary, built once by TestMain as it
// ships (static, no race detector: the controller is measured, not the
// detector).
var bin string

func TestMain(m *testing.M) {
	// Every simulated agent holds a connection: raise the open-file
	// limit before the controller starts, so that it inherits it.
	if _, err := fleetsim.RaiseFileLimit(); err != nil {
		fmt.Fprintln(os.Stderr, "raise the open-file limit:", err)
		os.Exit(1)
	}
	// FLEETSIM_BIN names a directory holding an alize-controller
	// already built (a release to measure); otherwise it is built here.
	if dir := os.Getenv("FLEETSIM_BIN"); dir != "" {
		bin = dir
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "alize-fleetsim-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = dir
	if err := fleetsim.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
