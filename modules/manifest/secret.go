package manifest

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"filippo.io/age"
)

// Secret is a secret value: a bind password, a key. It prints, logs and
// marshals as "(secret)" whatever the verb or encoder, so that a stray
// log line or report shows no secret; Reveal is the one way to the bytes.
type Secret struct {
	b []byte
}

const redacted = "(secret)"

// NewSecret makes a Secret of a copy of value.
func NewSecret(value []byte) Secret { return Secret{b: bytes.Clone(value)} }

// Reveal returns a copy of the secret's bytes, for the one place that
// needs them (an LDAP bind, a file written 0600). Never log it.
func (s Secret) Reveal() []byte { return bytes.Clone(s.b) }

// Len is the secret's length in bytes.
func (s Secret) Len() int { return len(s.b) }

// Equal reports, in constant time, whether two secrets hold the same bytes.
func (s Secret) Equal(o Secret) bool { return subtle.ConstantTimeCompare(s.b, o.b) == 1 }

func (Secret) String() string                  { return redacted }
func (Secret) GoString() string                { return redacted }
func (Secret) Format(f fmt.State, _ rune)      { io.WriteString(f, redacted) }
func (Secret) MarshalJSON() ([]byte, error)    { return []byte(`"` + redacted + `"`), nil }
func (Secret) MarshalText() ([]byte, error)    { return []byte(redacted), nil }
func (Secret) LogValue() slog.Value            { return slog.StringValue(redacted) }
func (s *Secret) UnmarshalJSON([]byte) error   { return errSecretUnmarshal }
func (s *Secret) UnmarshalText(b []byte) error { return errSecretUnmarshal }

var errSecretUnmarshal = errors.New("manifest: a Secret is only made by Unseal or NewSecret")

// SecretRef is a sealed secret as a manifest lists it.
type SecretRef struct {
	Name       string `json:"name"`       // "ldap-bind"
	Generation uint64 `json:"generation"` // grows each time the secret changes
	Sealed     []byte `json:"sealed"`     // age ciphertext to the agent's X25519 key (base64 in JSON)
}

// sealedText is what is sealed: the value bound to its server, name and
// generation, so that a sealed value cannot be replayed to another server
// (sharing a key by mistake, a cloned disk image), under another name, or
// after it changed.
type sealedText struct {
	ServerID   string `json:"server_id"`
	Name       string `json:"name"`
	Generation uint64 `json:"generation"`
	Value      []byte `json:"value"` // base64 in JSON
}

// maxSealedText bounds the JSON that is sealed: the value in base64 and
// its server, name and generation.
const maxSealedText = (MaxSecretSize+2)/3*4 + 512

// Seal seals a secret value to an agent's age recipient (its X25519 key),
// bound to the server id, the secret's name and its generation. The
// controller runs it; only that agent can Unseal it.
func Seal(to age.Recipient, serverID, name string, generation uint64, value Secret) ([]byte, error) {
	switch {
	case !validID(serverID):
		return nil, fmt.Errorf("manifest: seal: server id %s is not valid", clip(serverID))
	case !validName(name):
		return nil, fmt.Errorf("manifest: seal: secret name %s is not valid", clip(name))
	case generation == 0:
		return nil, fmt.Errorf("manifest: seal: %s: generation must be 1 or more", name)
	case len(value.b) > MaxSecretSize:
		return nil, fmt.Errorf("manifest: seal: %s: value of %d bytes, at most %d", name, len(value.b), MaxSecretSize)
	}
	text, err := marshal(sealedText{ServerID: serverID, Name: name, Generation: generation, Value: value.b})
	if err != nil {
		return nil, fmt.Errorf("manifest: seal: %s: encode", name)
	}
	defer clear(text)
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, to)
	if err != nil {
		return nil, fmt.Errorf("manifest: seal: %s: %w", name, err)
	}
	if _, err := w.Write(text); err != nil {
		return nil, fmt.Errorf("manifest: seal: %s: %w", name, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("manifest: seal: %s: %w", name, err)
	}
	if buf.Len() > MaxSealedSize {
		return nil, fmt.Errorf("manifest: seal: %s: sealed to %d bytes, at most %d", name, buf.Len(), MaxSealedSize)
	}
	return buf.Bytes(), nil
}

// Unseal opens a secret of a verified manifest with the agent's age
// identity. It refuses, with an *Error: a sealed secret too large
// (ErrTooLarge), sealed to another agent's key (ErrSecretRecipient), not
// age or corrupt (ErrMalformed), sealed for another server
// (ErrSecretServer), under another name (ErrSecretName), or of another
// generation than the manifest lists (ErrSecretGeneration; Verify has
// already refused a listed generation below the last seen). No error
// holds any part of the value.
//
// The plaintext is wiped once decoded; Go cannot promise that no other
// copy stays in memory.
func Unseal(id age.Identity, serverID string, ref SecretRef) (Secret, error) {
	const doc = "secret"
	path := clip(ref.Name)
	if len(ref.Sealed) == 0 {
		return Secret{}, refuse(doc, path, ErrMalformed, "empty")
	}
	if len(ref.Sealed) > MaxSealedSize {
		return Secret{}, refuse(doc, path, ErrTooLarge, fmt.Sprintf("%d bytes, at most %d", len(ref.Sealed), MaxSealedSize))
	}
	r, err := age.Decrypt(bytes.NewReader(ref.Sealed), id)
	if err != nil {
		var nomatch *age.NoIdentityMatchError
		if errors.As(err, &nomatch) {
			return Secret{}, refuse(doc, path, ErrSecretRecipient, "this agent's key is not among its recipients")
		}
		// age's message may quote the input: leave it out.
		return Secret{}, refuse(doc, path, ErrMalformed, "not an age file, or a corrupt one")
	}
	text, err := io.ReadAll(io.LimitReader(r, maxSealedText+1))
	defer clear(text)
	if err != nil {
		return Secret{}, refuse(doc, path, ErrMalformed, "corrupt or truncated ciphertext")
	}
	if len(text) > maxSealedText {
		return Secret{}, refuse(doc, path, ErrTooLarge, fmt.Sprintf("sealed text over %d bytes", maxSealedText))
	}
	var st sealedText
	if err := decodeStrict(doc, text, &st, true); err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Path = path
		}
		return Secret{}, annotate(err, "in the sealed text")
	}
	defer clear(st.Value)
	switch {
	case st.ServerID != serverID:
		return Secret{}, refuse(doc, path, ErrSecretServer, fmt.Sprintf("sealed for server %s, this is %s", clip(st.ServerID), clip(serverID)))
	case st.Name != ref.Name:
		return Secret{}, refuse(doc, path, ErrSecretName, fmt.Sprintf("sealed as %s", clip(st.Name)))
	case st.Generation != ref.Generation:
		return Secret{}, refuse(doc, path, ErrSecretGeneration, fmt.Sprintf("generation %d sealed, the manifest lists %d", st.Generation, ref.Generation))
	case len(st.Value) > MaxSecretSize:
		return Secret{}, refuse(doc, path, ErrTooLarge, fmt.Sprintf("value over %d bytes", MaxSecretSize))
	}
	return NewSecret(st.Value), nil
}
