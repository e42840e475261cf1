package identity_test

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alize-eple/alize/agent/internal/fakecontroller"
	"github.com/alize-eple/alize/agent/internal/identity"
	"github.com/alize-eple/alize/agent/internal/state"
)

func open(t *testing.T) *state.Store {
	t.Helper()
	s, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEnrollSavesWhatItChecked(t *testing.T) {
	ctl := fakecontroller.New(t, fakecontroller.Options{})
	s := open(t)
	if _, err := identity.Load(s); !errors.Is(err, identity.ErrNotEnrolled) {
		t.Fatalf("Load() before enrollment = %v, want ErrNotEnrolled", err)
	}
	id, err := identity.Enroll(t.Context(), s, identity.EnrollOptions{URL: ctl.URL() + "/", Token: ctl.Token(), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	got, err := identity.Load(s)
	if err != nil {
		t.Fatal(err)
	}
	if got.ServerID != "srv-0951099D-01" || got.UAI != "0951099D" || got.Academy != "versailles" || got.Controller != ctl.URL() {
		t.Errorf("Load() = %+v", got)
	}
	if _, ok := got.Certificate().PublicKey.(ed25519.PublicKey); !ok || got.AgeRecipient() != id.AgeRecipient() {
		t.Errorf("the certificate is not for the ed25519 key, or the age identity changed")
	}
	if !strings.HasPrefix(got.AgeRecipient(), "age1") {
		t.Errorf("AgeRecipient() = %q", got.AgeRecipient())
	}
	if trust, err := identity.LoadTrust(s); err != nil || trust.Version() != 1 {
		t.Errorf("LoadTrust() = %v, %v; want the root pinned", trust, err)
	}
	// No private key in clear anywhere but identity.json, root only.
	if fi, err := os.Stat(s.Path(identity.File)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("identity.json mode = %v, %v", fi.Mode().Perm(), err)
	}

	var already *identity.AlreadyEnrolledError
	if _, err := identity.Enroll(t.Context(), s, identity.EnrollOptions{URL: ctl.URL(), Token: ctl.Token(), Now: time.Now}); !errors.As(err, &already) {
		t.Errorf("second Enroll() = %v, want AlreadyEnrolledError", err)
	}
}

func TestEnrollRefusals(t *testing.T) {
	ctl := fakecontroller.New(t, fakecontroller.Options{})
	s := open(t)
	tok := ctl.Token()
	if _, err := identity.Enroll(t.Context(), s, identity.EnrollOptions{URL: ctl.URL(), Token: tok, Now: time.Now}); err != nil {
		t.Fatal(err)
	}
	// The token worked once.
	_, err := identity.Enroll(t.Context(), open(t), identity.EnrollOptions{URL: ctl.URL(), Token: tok, Now: time.Now})
	if err == nil || !strings.Contains(err.Error(), "ask the operator for a new one") {
		t.Errorf("Enroll() with a used token = %v", err)
	}
	if _, err := identity.Enroll(t.Context(), open(t), identity.EnrollOptions{URL: ctl.URL(), Token: "alize1.x.y.z", Now: time.Now}); err == nil {
		t.Error("Enroll() with a malformed token succeeded")
	}
	if _, err := identity.Enroll(t.Context(), open(t), identity.EnrollOptions{URL: "http://" + strings.TrimPrefix(ctl.URL(), "https://"), Token: ctl.Token(), Now: time.Now}); err == nil {
		t.Error("Enroll() over plain HTTP succeeded")
	}
}

func TestCorruptIdentityIsSetAside(t *testing.T) {
	s := open(t)
	if err := os.WriteFile(s.Path(identity.File), []byte(`{"server_id": "srv`), 0o600); err != nil {
		t.Fatal(err)
	}
	var corrupt *state.CorruptError
	if _, err := identity.Load(s); !errors.As(err, &corrupt) {
		t.Fatalf("Load() of a truncated file = %v, want a CorruptError", err)
	}
	if _, err := identity.Load(s); !errors.Is(err, identity.ErrNotEnrolled) {
		t.Errorf("Load() after the quarantine = %v, want ErrNotEnrolled", err)
	}
}
