package keys

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alize-eple/alize/modules/manifest"
)

func TestCeremonyAndRotation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	expires := time.Now().AddDate(1, 0, 0)
	t1, err := Init(dir, expires)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{RootKeyFile, ReleaseKeyFile, DirectorKeyFile} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v", f, fi.Mode().Perm(), err)
		}
	}
	if _, err := Init(dir, expires); err == nil || !strings.Contains(err.Error(), "runs once") {
		t.Errorf("Init() twice = %v", err)
	}
	// Rotate the root key, then the director key.
	if _, err := Rotate(dir, []string{"root"}, expires); err != nil {
		t.Fatal(err)
	}
	t3, err := Rotate(dir, []string{"director"}, expires)
	if err != nil {
		t.Fatal(err)
	}
	envs, err := RootFiles(dir)
	if err != nil || len(envs) != 3 {
		t.Fatalf("RootFiles() = %d, %v", len(envs), err)
	}
	// An agent pinned on version 1 walks to 3.
	walked := t1
	for _, env := range envs[1:] {
		if walked, err = walked.UpdateRoot(env); err != nil {
			t.Fatalf("UpdateRoot() = %v", err)
		}
	}
	r1, r3 := t1.Root(), t3.Root()
	if walked.Version() != 3 || r3.Roles.Root.KeyIDs[0] == r1.Roles.Root.KeyIDs[0] ||
		r3.Roles.Director.KeyIDs[0] == r1.Roles.Director.KeyIDs[0] || r3.Roles.Release.KeyIDs[0] != r1.Roles.Release.KeyIDs[0] {
		t.Errorf("roles after rotations: %+v", r3.Roles)
	}
	dks, err := DirectorKeys(dir, r3)
	if err != nil || len(dks) != 1 || dks[0].ID() != r3.Roles.Director.KeyIDs[0] {
		t.Errorf("DirectorKeys() = %v, %v", dks, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "director-v2.key")); err != nil {
		t.Errorf("the old director key was not kept: %v", err)
	}
	// A release signed with the release key verifies under the new root.
	rk, err := ReadKey(filepath.Join(dir, ReleaseKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	def := []byte("name: motd\nversion: 1.0.0\nkind: note\ndescription: {fr: m, en: m}\nvariables: {families: []}\nspec: {}\n")
	env, rel, err := SignRelease(def, 1, rk)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := t3.VerifyRelease(env); err != nil || got.Digest != manifest.Digest(def) || rel.Name != "motd" {
		t.Errorf("VerifyRelease() = %+v, %v", got, err)
	}
	// A missing version breaks the chain.
	os.Remove(filepath.Join(dir, RootFile(2)))
	if _, err := RootFiles(dir); err == nil {
		t.Error("RootFiles() with a gap: no error")
	}
	if _, err := DirectorKeys(t.TempDir(), r3); err == nil {
		t.Error("DirectorKeys() without the key: no error")
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(dir, time.Now().AddDate(1, 0, 0)); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, RootKeyFile)
	os.Chmod(p, 0o644)
	if _, err := ReadKey(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("ReadKey(0644) = %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "junk.key"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKey(filepath.Join(dir, "junk.key")); err == nil {
		t.Error("ReadKey(junk) = nil error")
	}
	if _, err := Rotate(dir, []string{"printer"}, time.Now()); err == nil {
		t.Error("Rotate(unknown role) = nil error")
	}
}

func TestSecretBox(t *testing.T) {
	p := filepath.Join(t.TempDir(), SecretsKeyFile)
	b, err := LoadOrCreateSecretBox(p)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := b.Seal("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), "s3cret") {
		t.Fatal("sealed text holds the secret")
	}
	again, err := LoadOrCreateSecretBox(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := again.Open(sealed); err != nil || got != "s3cret" {
		t.Errorf("Open() = %q, %v", got, err)
	}
	if _, err := NewSecretBox().Open(sealed); err == nil {
		t.Error("another box opened the secret")
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("secrets key mode %v", fi.Mode().Perm())
	}
}
