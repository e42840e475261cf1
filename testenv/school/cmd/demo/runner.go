package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

// errFatal is what runner.FailNow panics with; tell recovers it.
var errFatal = errors.New("fatal")

// runner lets the demo use testenv and testenv/school, which take a
// testing.TB, outside `go test`: cleanups run in reverse order at the end,
// a fatal error stops the story (by panicking back to tell), temporary
// directories are removed. Methods testenv never calls are left to the
// embedded nil interface.
type runner struct {
	testing.TB
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	cleanups []func()
	errs     []string
	cleanErr []string
	done     bool
}

func newRunner(parent context.Context) *runner {
	ctx, cancel := context.WithCancel(parent)
	return &runner{ctx: ctx, cancel: cancel}
}

func (r *runner) Helper()                  {}
func (r *runner) Name() string             { return "alize-demo" }
func (r *runner) Context() context.Context { return r.ctx }

func (r *runner) Cleanup(fn func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, fn)
}

func (r *runner) TempDir() string {
	dir, err := os.MkdirTemp("", "alize-demo-")
	if err != nil {
		r.Fatalf("temp dir: %v", err)
	}
	r.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			r.Errorf("remove %s: %v", dir, err)
		}
	})
	return dir
}

func (r *runner) Setenv(key, value string) {
	old, had := os.LookupEnv(key)
	os.Setenv(key, value)
	r.Cleanup(func() {
		if had {
			os.Setenv(key, old)
		} else {
			os.Unsetenv(key)
		}
	})
}

func (r *runner) Log(args ...any)                 { fmt.Fprintln(os.Stderr, args...) }
func (r *runner) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func (r *runner) Error(args ...any) { r.Errorf("%s", fmt.Sprint(args...)) }
func (r *runner) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	if r.done {
		r.cleanErr = append(r.cleanErr, msg)
	} else {
		r.errs = append(r.errs, msg)
	}
	fmt.Fprintln(os.Stderr, "error:", msg)
}

func (r *runner) Fail() { r.Errorf("failed") }
func (r *runner) FailNow() {
	r.mu.Lock()
	if len(r.errs) == 0 {
		r.errs = append(r.errs, "failed")
	}
	r.mu.Unlock()
	panic(errFatal)
}
func (r *runner) Fatal(args ...any)                 { r.Error(args...); r.FailNow() }
func (r *runner) Fatalf(format string, args ...any) { r.Errorf(format, args...); r.FailNow() }
func (r *runner) Skip(args ...any)                  { r.Fatal(args...) }
func (r *runner) Skipf(format string, args ...any)  { r.Fatalf(format, args...) }
func (r *runner) SkipNow()                          { r.FailNow() }
func (r *runner) Skipped() bool                     { return false }

func (r *runner) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.errs) > 0
}

func (r *runner) failed() bool { return r.Failed() }

func (r *runner) firstError() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) == 0 {
		return ""
	}
	return r.errs[0]
}

// cleanup cancels the context and runs the cleanups, newest first, each
// even when another panics (a cleanup's Fatalf).
func (r *runner) cleanup() {
	r.cancel()
	r.mu.Lock()
	r.done = true
	fns := r.cleanups
	r.cleanups = nil
	r.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		func() {
			defer func() {
				if v := recover(); v != nil && v != errFatal {
					r.Errorf("cleanup: %v", v)
				}
			}()
			fns[i]()
		}()
	}
}

func (r *runner) cleanupErrors() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.cleanErr, "; ")
}
