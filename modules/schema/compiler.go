package schema

import (
	"crypto/sha256"
	"fmt"
	"sync"
)

// Compiler is CompileBytes with a memory of parsed modules: the agent's
// verifier sees the same few module definitions in manifest after
// manifest, and parsing one costs far more than compiling it. Modules are
// kept by the SHA-256 of their definition bytes — parsing is pure, so the
// same bytes always give the same module — and at most Max of them (16
// when zero); when full, the memory starts again. Safe for concurrent use.
type Compiler struct {
	Max int

	mu      sync.Mutex
	modules map[[sha256.Size]byte]*Module
}

// CompileBytes returns exactly what the package's CompileBytes returns.
func (c *Compiler) CompileBytes(definition, values []byte) (spec []byte, digest string, err error) {
	key := sha256.Sum256(definition)
	c.mu.Lock()
	m := c.modules[key]
	c.mu.Unlock()
	if m == nil {
		if m, err = ParseModule(definition); err != nil {
			return nil, "", fmt.Errorf("module definition: %w", err)
		}
		c.mu.Lock()
		max := c.Max
		if max <= 0 {
			max = 16
		}
		if c.modules == nil || len(c.modules) >= max {
			c.modules = make(map[[sha256.Size]byte]*Module)
		}
		c.modules[key] = m
		c.mu.Unlock()
	}
	return m.CompileValues(values)
}
