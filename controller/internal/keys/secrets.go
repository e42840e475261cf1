package keys

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"
)

// SecretsKeyFile holds the controller's own age identity, which seals
// secret variables at rest in the store. Replicas share it.
const SecretsKeyFile = "secrets.key"

// maxSecret bounds a secret variable's value.
const maxSecret = 32 << 10

// SecretBox seals secret variables for the store and opens them again
// when a manifest is built, so that the database (and its backups) never
// hold a secret in clear.
type SecretBox struct {
	id *age.X25519Identity
}

// LoadOrCreateSecretBox reads the identity at path, or makes it (0600).
func LoadOrCreateSecretBox(path string) (*SecretBox, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			return nil, fmt.Errorf("keys: secrets: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("keys: secrets: %w", err)
		}
		if _, err := f.WriteString(id.String() + "\n"); err != nil {
			f.Close()
			return nil, fmt.Errorf("keys: secrets: %w", err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("keys: secrets: %w", err)
		}
		return &SecretBox{id: id}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keys: secrets: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("keys: %s is readable by others (mode %04o): chmod 600 it", path, fi.Mode().Perm())
	}
	id, err := age.ParseX25519Identity(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("keys: %s: not an age identity", path)
	}
	return &SecretBox{id: id}, nil
}

// NewSecretBox makes a box with a fresh identity kept in memory (tests).
func NewSecretBox() *SecretBox {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		panic(err) // only fails if the system has no randomness
	}
	return &SecretBox{id: id}
}

// Seal seals a value.
func (b *SecretBox) Seal(value string) ([]byte, error) {
	if len(value) > maxSecret {
		return nil, fmt.Errorf("secret of %d bytes, at most %d", len(value), maxSecret)
	}
	var out bytes.Buffer
	w, err := age.Encrypt(&out, b.id.Recipient())
	if err != nil {
		return nil, fmt.Errorf("keys: seal: %w", err)
	}
	if _, err := io.WriteString(w, value); err != nil {
		return nil, fmt.Errorf("keys: seal: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("keys: seal: %w", err)
	}
	return out.Bytes(), nil
}

// Open opens a sealed value.
func (b *SecretBox) Open(sealed []byte) (string, error) {
	r, err := age.Decrypt(bytes.NewReader(sealed), b.id)
	if err != nil {
		return "", fmt.Errorf("keys: open secret: %w", err)
	}
	v, err := io.ReadAll(io.LimitReader(r, maxSecret+1))
	if err != nil {
		return "", fmt.Errorf("keys: open secret: %w", err)
	}
	return string(v), nil
}
