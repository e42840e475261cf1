package manifest

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// The payload types of Alizé's DSSE envelopes. A verifier refuses an
// envelope of another type (ErrPayloadType) before it looks at the
// signatures, so that a document signed as one kind is never read as
// another. The type is also inside what is signed (DSSE's PAE).
const (
	PayloadTypeRoot     = "application/vnd.alize.root+json"
	PayloadTypeRelease  = "application/vnd.alize.release+json"
	PayloadTypeManifest = "application/vnd.alize.manifest+json"
)

// The roles a root gives keys to.
const (
	RoleRoot     = "root"     // offline: signs roots
	RoleRelease  = "release"  // offline: signs module releases
	RoleDirector = "director" // online, on the controller: signs per-server manifests
)

// signEnvelope signs payload with every key, through dsse's EnvelopeSigner,
// and returns the envelope's JSON.
func signEnvelope(payloadType string, payload []byte, keys []*Key) ([]byte, error) {
	signers := make([]dsse.Signer, 0, len(keys))
	for _, k := range keys {
		if k != nil {
			signers = append(signers, k)
		}
	}
	es, err := dsse.NewEnvelopeSigner(signers...)
	if err != nil {
		return nil, err
	}
	env, err := es.SignPayload(context.Background(), payloadType, payload)
	if err != nil {
		return nil, err
	}
	return encodeEnvelope(env)
}

// encodeEnvelope writes a signed dsse.Envelope as JSON. The payload and
// signatures are standard base64 (dsse encodes them so), whose characters
// need no escaping: they are copied as they are, which spares the
// controller a JSON encoder's pass over the largest field of each of its
// thousands of manifests. The other strings are quoted.
func encodeEnvelope(env *dsse.Envelope) ([]byte, error) {
	b := make([]byte, 0, len(env.Payload)+len(env.PayloadType)+64+len(env.Signatures)*192)
	b = append(b, `{"payloadType":`...)
	b, err := jsontext.AppendQuote(b, env.PayloadType)
	if err != nil {
		return nil, err
	}
	b = appendBase64(append(b, `,"payload":`...), env.Payload)
	b = append(b, `,"signatures":[`...)
	for i, s := range env.Signatures {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"keyid":`...)
		if b, err = jsontext.AppendQuote(b, s.KeyID); err != nil {
			return nil, err
		}
		b = appendBase64(append(b, `,"sig":`...), s.Sig)
		b = append(b, '}')
	}
	return append(b, "]}"...), nil
}

// appendBase64 appends s, standard base64, as a JSON string.
func appendBase64(b []byte, s string) []byte {
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// envelope is a DSSE envelope as it travels: the fields of dsse.Envelope,
// with the payload and signatures decoded from base64 as the JSON is read.
// dsse.Envelope keeps the payload as a base64 string that
// dsse.EnvelopeVerifier decodes again: for a manifest of tens of KiB, that
// second pass over the largest field costs as much as the first. Only
// standard base64 is accepted (what dsse's signer writes); DSSE would also
// allow the URL-safe alphabet.
type envelope struct {
	PayloadType string      `json:"payloadType"`
	Payload     []byte      `json:"payload"`
	Signatures  []signature `json:"signatures"`
}

type signature struct {
	KeyID string `json:"keyid"`
	Sig   []byte `json:"sig"`
}

// decodeEnvelope decodes a DSSE envelope strictly and checks its shape: at
// most maxEnvelope bytes, the payload type wanted, a payload of at most
// maxPayload bytes, and 1 to MaxSignatures signatures, each naming a key
// and holding 64 bytes. It does not verify the signatures.
func decodeEnvelope(doc string, data []byte, maxEnvelope, maxPayload int, payloadType string) (*envelope, error) {
	if len(data) > maxEnvelope {
		return nil, refuse(doc, "", ErrTooLarge, fmt.Sprintf("envelope of %d bytes, at most %d", len(data), maxEnvelope))
	}
	var env envelope
	if err := decodeStrict(doc, data, &env, false); err != nil {
		return nil, err
	}
	if env.PayloadType != payloadType {
		return nil, refuse(doc, "payloadType", ErrPayloadType, fmt.Sprintf("%s, want %q", clip(env.PayloadType), payloadType))
	}
	if len(env.Payload) > maxPayload {
		return nil, refuse(doc, "payload", ErrTooLarge, fmt.Sprintf("%d bytes, at most %d", len(env.Payload), maxPayload))
	}
	if len(env.Signatures) == 0 {
		return nil, refuse(doc, "signatures", ErrNoSignatures, "")
	}
	if len(env.Signatures) > MaxSignatures {
		return nil, refuse(doc, "signatures", ErrTooLarge, fmt.Sprintf("%d signatures, at most %d", len(env.Signatures), MaxSignatures))
	}
	for i, s := range env.Signatures {
		path := fmt.Sprintf("signatures[%d]", i)
		if s.KeyID == "" {
			return nil, refuse(doc, path+".keyid", ErrUnknownKey, "signature without a key id")
		}
		if len(s.Sig) != ed25519.SignatureSize {
			return nil, refuse(doc, path+".sig", ErrBadSignature, fmt.Sprintf("%d bytes, an ed25519 signature has %d", len(s.Sig), ed25519.SignatureSize))
		}
	}
	return &env, nil
}

// role is one role of a pinned root: its keys and how many distinct ones
// must sign.
type role struct {
	threshold int
	keys      map[string]ed25519.PublicKey
}

// keyring is the keys of one root, by role.
type keyring struct {
	roleOf map[string]string // key id → role name
	roles  map[string]*role
}

func newKeyring(r *Root) (*keyring, error) {
	k := &keyring{roleOf: make(map[string]string), roles: make(map[string]*role)}
	for _, rr := range []struct {
		name string
		r    Role
	}{{RoleRoot, r.Roles.Root}, {RoleRelease, r.Roles.Release}, {RoleDirector, r.Roles.Director}} {
		ro := &role{threshold: rr.r.Threshold, keys: make(map[string]ed25519.PublicKey, len(rr.r.KeyIDs))}
		for _, id := range rr.r.KeyIDs {
			pk, ok := r.Keys[id]
			if !ok {
				return nil, fmt.Errorf("role %s: key %s not listed", rr.name, shortID(id))
			}
			k.roleOf[id] = rr.name
			ro.keys[id] = ed25519.PublicKey(pk.Public)
		}
		k.roles[rr.name] = ro
	}
	return k, nil
}

// verify checks that env carries valid signatures, over DSSE's
// PAE(payloadType, payload), by at least threshold distinct keys of the
// role. Each key counts once, however many signatures it made. Signatures
// by unknown keys, by keys of other roles, and bad ones are not counted,
// and are ignored once the threshold is met, as TUF does; checking stops
// there.
func (k *keyring) verify(doc string, env *envelope, roleName string) error {
	ro := k.roles[roleName]
	var pae []byte
	valid := make(map[string]bool, ro.threshold)
	var bad, others, unknown []string
	for _, s := range env.Signatures {
		pub, mine := ro.keys[s.KeyID]
		switch {
		case mine && valid[s.KeyID]:
			continue // counted once
		case mine:
			if pae == nil {
				pae = dsse.PAE(env.PayloadType, env.Payload)
			}
			if !ed25519.Verify(pub, pae, s.Sig) {
				bad = append(bad, shortID(s.KeyID))
				continue
			}
			valid[s.KeyID] = true
			if len(valid) == ro.threshold {
				return nil
			}
		default:
			if r, ok := k.roleOf[s.KeyID]; ok {
				others = append(others, shortID(s.KeyID)+" of role "+r)
			} else {
				unknown = append(unknown, shortID(s.KeyID))
			}
		}
	}

	// Refused: the most telling reason first. A bad signature by a key of
	// the role is tampering (or a key id that lies); some valid ones, too
	// few; none valid, the keys that signed belong elsewhere.
	count := fmt.Sprintf("%d valid of the %d needed from role %s", len(valid), ro.threshold, roleName)
	if len(others) > 0 {
		count += "; not counted: key " + strings.Join(others, ", ")
	}
	if len(unknown) > 0 {
		count += "; not counted: unknown key " + strings.Join(unknown, ", ")
	}
	switch {
	case len(bad) > 0:
		return refuse(doc, "signatures", ErrBadSignature, "by key "+strings.Join(bad, ", ")+"; "+count)
	case len(valid) > 0:
		return refuse(doc, "signatures", ErrThreshold, count)
	case len(others) > 0:
		return refuse(doc, "signatures", ErrWrongRole, count)
	case len(unknown) > 0:
		return refuse(doc, "signatures", ErrUnknownKey, count)
	default:
		return refuse(doc, "signatures", ErrThreshold, count)
	}
}
