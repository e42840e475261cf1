//go:build !alizetest

package main

import (
	"log/slog"

	"github.com/alize-eple/alize/agent/internal/engine"
)

// testKinds is empty in alize as shipped: the test kind exists only in the
// test build (build tag alizetest).
func testKinds(*slog.Logger) []engine.Kind { return nil }
