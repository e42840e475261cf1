// Package ctltest holds what the controller's tests share: a key
// ceremony in a temporary directory, a small test kind ("note") with its
// module definitions and check, and a logger writing to the test log.
//
// Who may import it: controller tests only.
package ctltest

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/alize-eple/alize/controller/internal/keys"
	"github.com/alize-eple/alize/modules"
	"github.com/alize-eple/alize/modules/manifest"
)

// Keys is an academy's keys, made for a test.
type Keys struct {
	Dir      string
	Trust    *manifest.Trust
	Root     *manifest.Key
	Release  *manifest.Key
	Director *manifest.Key
}

// NewKeys runs the key ceremony in a temporary directory.
func NewKeys(t testing.TB) *Keys {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	trust, err := keys.Init(dir, time.Now().AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	k := &Keys{Dir: dir, Trust: trust}
	for _, f := range []struct {
		name string
		dst  **manifest.Key
	}{{keys.RootKeyFile, &k.Root}, {keys.ReleaseKeyFile, &k.Release}, {keys.DirectorKeyFile, &k.Director}} {
		key, err := keys.ReadKey(filepath.Join(dir, f.name))
		if err != nil {
			t.Fatal(err)
		}
		*f.dst = key
	}
	return k
}

// Sign signs a module definition's release with the release key.
func (k *Keys) Sign(t testing.TB, definition []byte, counter uint64) []byte {
	t.Helper()
	env, _, err := keys.SignRelease(definition, counter, k.Release)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// NoteKind is the test kind's name.
const NoteKind = "note"

// NoteModule is the definition of version v of module "motd", of the
// note kind: a message, a port, the UAI from the inventory, a secret and
// a blob digest.
func NoteModule(v string) []byte {
	return fmt.Appendf(nil, `name: motd
version: %s
kind: note
description: {fr: Message du jour, en: Message of the day}
variables:
  families:
    - name: main
      description: {fr: Principal, en: Main}
      variables:
        - {name: message, type: string, mandatory: true, description: {fr: message, en: message}}
        - {name: port, type: port, default: 22, description: {fr: port, en: port}}
        - {name: uai, type: uai, mandatory: true, description: {fr: UAI, en: UAI}}
        - {name: password, type: secret, description: {fr: mot de passe, en: password}}
        - {name: roster_blob, type: string, pattern: "sha256:[0-9a-f]{64}", description: {fr: annuaire, en: roster}}
spec:
  message: "${message}"
  port: "${port}"
  uai: "${uai}"
  password: "${password}"
  roster: "${roster_blob}"
`, v)
}

// NoteSpec is the note kind's spec.
type NoteSpec struct {
	Message  string `json:"message"`
	Port     int    `json:"port"`
	UAI      string `json:"uai"`
	Password string `json:"password"`
	Roster   string `json:"roster"`
}

// NoteChecker is the note kind's strict decode and validation: a message
// "forbidden" is refused.
func NoteChecker() modules.SpecChecker {
	return func(spec []byte) error {
		s, err := modules.DecodeSpec[NoteSpec](spec)
		if err != nil {
			return err
		}
		if s.Message == "forbidden" {
			return errors.New("message: must not be \"forbidden\"")
		}
		return nil
	}
}

// Checkers are the kinds the tests' controllers know.
func Checkers() map[string]modules.SpecChecker {
	return map[string]modules.SpecChecker{NoteKind: NoteChecker()}
}

// Logger writes to the test's log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
