package manifest

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
)

// KeyTypeEd25519 is the only key type a root may list.
const KeyTypeEd25519 = "ed25519"

// KeyID returns the id of an ed25519 public key: the lowercase hex SHA-256
// of its 32 raw bytes. A root lists keys by this id, and every signature
// names the key that made it by this id.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])
}

// PublicKey is a key as a root lists it.
type PublicKey struct {
	Type   string `json:"type"`   // KeyTypeEd25519
	Public []byte `json:"public"` // the 32 raw bytes (base64 in JSON)
}

// Key is a private ed25519 signing key: a root, release or director key.
// It prints as its id only, never its private half. It implements
// dsse.Signer.
type Key struct {
	id   string
	priv ed25519.PrivateKey
}

// NewKey wraps an ed25519 private key. The key is not copied: the caller
// keeps it secret.
func NewKey(priv ed25519.PrivateKey) (*Key, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errors.New("manifest: new key: not an ed25519 private key")
	}
	return &Key{id: KeyID(priv.Public().(ed25519.PublicKey)), priv: priv}, nil
}

// ID is the key id (KeyID of its public half).
func (k Key) ID() string { return k.id }

// PublicKey is the key's entry in a root document.
func (k Key) PublicKey() PublicKey {
	return PublicKey{Type: KeyTypeEd25519, Public: []byte(k.priv.Public().(ed25519.PublicKey))}
}

// Sign signs data (a DSSE PAE) with the key. It implements dsse.Signer.
func (k Key) Sign(_ context.Context, data []byte) ([]byte, error) {
	if len(k.priv) != ed25519.PrivateKeySize {
		return nil, errors.New("manifest: sign: key not made by NewKey")
	}
	return ed25519.Sign(k.priv, data), nil
}

// KeyID returns ID. It implements dsse.Signer.
func (k Key) KeyID() (string, error) { return k.id, nil }

// String prints the key id only.
func (k Key) String() string { return "ed25519 key " + shortID(k.id) }

// GoString prints the key id only.
func (k Key) GoString() string { return k.String() }

// Format prints the key id only, whatever the verb, so that no
// fmt verb can print the private half.
func (k Key) Format(f fmt.State, _ rune) { fmt.Fprint(f, k.String()) }

// shortID shortens a key id for messages: enough to tell keys apart. An
// id that is not hex (it came from a hostile envelope) is clipped and quoted.
func shortID(id string) string {
	if len(id) != 2*sha256.Size {
		return clip(id)
	}
	for _, c := range []byte(id) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return clip(id)
		}
	}
	return id[:12] + "…"
}

// clip quotes an untrusted string for a message, cut to 80 bytes, so that
// it can neither flood a log nor forge lines in it.
func clip(s string) string {
	if len(s) > 80 {
		return strconv.Quote(s[:80]) + "…"
	}
	return strconv.Quote(s)
}
