//go:build alizetest

package main

import (
	"log/slog"
	"os"

	"github.com/alize-eple/alize/agent/internal/engine"
	"github.com/alize-eple/alize/agent/internal/testkind"
)

// testKinds wires, in the test build only, the kind of the agent's own
// end-to-end tests: the files of $ALIZE_TESTKIND_DIR.
func testKinds(*slog.Logger) []engine.Kind {
	dir := os.Getenv("ALIZE_TESTKIND_DIR")
	if dir == "" {
		return nil
	}
	return []engine.Kind{engine.AdaptResolved[testkind.Spec](&testkind.Kind{Dir: dir})}
}
