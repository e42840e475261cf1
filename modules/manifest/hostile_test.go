package manifest

import (
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	"filippo.io/age"
	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/go-cmp/cmp"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// The operations a hostile input is fed to.
const (
	opManifest   = "manifest"   // Verifier.Verify with the fixture's state
	opRelease    = "release"    // Trust.VerifyRelease
	opPin        = "pin"        // PinRoot
	opUpdate     = "update"     // Trust.UpdateRoot from the fixture's root version 1
	opPinVerify  = "pin-verify" // PinRoot, then Verify a valid manifest with it
	opUnseal     = "unseal"     // Unseal as ldap-bind generation 2
	opBlob       = "blob"       // VerifyBlob against the fixture's roster
	opDefinition = "definition" // Verify the fixture's manifest, this served as module 0's definition
)

// hostileCase is one hostile or malformed input, and the one reason it
// must be refused for.
type hostileCase struct {
	name   string
	op     string
	want   *Reason
	inline bool // too large for testdata/: built by the test, not stored
	make   func(f *fixture) []byte
}

func (c hostileCase) file() string {
	ext := ".json"
	switch c.op {
	case opUnseal:
		ext = ".age"
	case opBlob:
		ext = ".bin"
	case opDefinition:
		ext = ".yaml"
	}
	return filepath.Join("testdata", "hostile", c.name+ext)
}

// replaceOnce replaces old, which must occur exactly once in b.
func replaceOnce(b []byte, old, new string) []byte {
	if n := bytes.Count(b, []byte(old)); n != 1 {
		panic(fmt.Sprintf("replaceOnce: %q occurs %d times", old, n))
	}
	return bytes.Replace(b, []byte(old), []byte(new), 1)
}

// replaceFirst replaces the first occurrence of old, which must occur.
func replaceFirst(b []byte, old, new string) []byte {
	if !bytes.Contains(b, []byte(old)) {
		panic(fmt.Sprintf("replaceFirst: %q does not occur", old))
	}
	return bytes.Replace(b, []byte(old), []byte(new), 1)
}

// editEnvelope decodes an envelope, lets edit change it, and encodes it again.
func editEnvelope(env []byte, edit func(e *dsse.Envelope)) []byte {
	var e dsse.Envelope
	if err := json.Unmarshal(env, &e); err != nil {
		panic(err)
	}
	edit(&e)
	out, err := marshal(&e)
	if err != nil {
		panic(err)
	}
	return out
}

// editPayload signs, with the director key, m's payload changed by edit.
func (f *fixture) editPayload(m *Manifest, edit func(p []byte) []byte) []byte {
	return signRaw(PayloadTypeManifest, edit(f.payload(m)), f.director)
}

// withModule returns the fixture manifest with module i changed by edit.
func (f *fixture) withModule(i int, edit func(m *Module)) *Manifest {
	m := f.manifest()
	edit(&m.Modules[i])
	return m
}

// signUnchecked signs m's wire form without SignManifest's checks, for
// manifests SignManifest would refuse to sign.
func (f *fixture) signUnchecked(m *Manifest) []byte {
	w := manifestWire{Target: m.Target, Serial: m.Serial, Issued: m.Issued, Expires: m.Expires, Blobs: m.Blobs, Secrets: m.Secrets}
	for _, mod := range m.Modules {
		w.Modules = append(w.Modules, moduleWire{
			Release: jsontext.Value(mod.ReleaseEnvelope),
			Values:  jsontext.Value(mod.Values), Spec: jsontext.Value(mod.Spec), SpecDigest: mod.SpecDigest, Sources: mod.Sources,
		})
	}
	p, err := marshal(&w)
	if err != nil {
		panic(err)
	}
	return signRaw(PayloadTypeManifest, p, f.director)
}

// sealRaw seals any plaintext to the agent.
func sealRaw(to age.Recipient, text []byte) []byte {
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, to)
	if err != nil {
		panic(err)
	}
	w.Write(text)
	w.Close()
	return buf.Bytes()
}

func deep(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }

// rootV2 is a valid next root: the director key is rotated.
func (f *fixture) rootV2(rootKeys ...*Key) Root {
	r := f.newRoot(2, t0.AddDate(1, 0, 0))
	d2 := testKey("director-2")
	delete(r.Keys, f.director.ID())
	r.Keys[d2.ID()] = d2.PublicKey()
	r.Roles.Director = Role{KeyIDs: []string{d2.ID()}, Threshold: 1}
	if len(rootKeys) > 0 {
		for _, id := range r.Roles.Root.KeyIDs {
			delete(r.Keys, id)
		}
		r.Roles.Root = Role{Threshold: 2}
		for _, k := range rootKeys {
			r.Keys[k.ID()] = k.PublicKey()
			r.Roles.Root.KeyIDs = append(r.Roles.Root.KeyIDs, k.ID())
		}
	}
	return r
}

func signRootRaw(r Root, keys ...*Key) []byte {
	p, err := marshal(&r)
	if err != nil {
		panic(err)
	}
	return signRaw(PayloadTypeRoot, p, keys...)
}

func hostileCases() []hostileCase {
	return []hostileCase{
		// The envelope.
		{name: "envelope-not-json", op: opManifest, want: ErrMalformed, make: func(f *fixture) []byte {
			return []byte("PK\x03\x04 this is a zip file, not an envelope")
		}},
		{name: "envelope-json-array", op: opManifest, want: ErrMalformed, make: func(f *fixture) []byte {
			return []byte(`[{"payloadType":"application/vnd.alize.manifest+json"}]`)
		}},
		{name: "envelope-oversized", op: opManifest, want: ErrTooLarge, inline: true, make: func(f *fixture) []byte {
			env := f.sign(f.manifest())
			return append(env, bytes.Repeat([]byte(" "), MaxEnvelopeSize+1-len(env))...)
		}},
		{name: "envelope-too-deep", op: opManifest, want: ErrTooDeep, make: func(f *fixture) []byte {
			return replaceOnce(f.sign(f.manifest()), `{"payloadType"`, `{"x":`+deep(MaxDepth+8)+`,"payloadType"`)
		}},
		{name: "envelope-unknown-field", op: opManifest, want: ErrUnknownField, make: func(f *fixture) []byte {
			return replaceOnce(f.sign(f.manifest()), `{"payloadType"`, `{"critical":false,"payloadType"`)
		}},
		{name: "envelope-field-wrong-case", op: opManifest, want: ErrUnknownField, make: func(f *fixture) []byte {
			return replaceOnce(f.sign(f.manifest()), `"payloadType"`, `"PayloadType"`)
		}},
		{name: "envelope-duplicate-key", op: opManifest, want: ErrDuplicateKey, make: func(f *fixture) []byte {
			return replaceOnce(f.sign(f.manifest()), `{"payloadType"`, `{"payloadType":"application/vnd.alize.root+json","payloadType"`)
		}},
		{name: "envelope-trailing-data", op: opManifest, want: ErrTrailingData, make: func(f *fixture) []byte {
			return append(f.sign(f.manifest()), []byte("\n{\"payloadType\":\"x\"}")...)
		}},
		{name: "payload-type-tampered", op: opManifest, want: ErrPayloadType, make: func(f *fixture) []byte {
			return editEnvelope(f.sign(f.manifest()), func(e *dsse.Envelope) { e.PayloadType = "application/vnd.alize.manifest+yaml" })
		}},
		{name: "payload-type-relabelled", op: opManifest, want: ErrBadSignature, make: func(f *fixture) []byte {
			// Signed by the director as another type, relabelled a manifest:
			// the type is inside what is signed.
			env := signRaw("application/vnd.alize.report+json", f.payload(f.manifest()), f.director)
			return editEnvelope(env, func(e *dsse.Envelope) { e.PayloadType = PayloadTypeManifest })
		}},
		{name: "payload-type-release", op: opManifest, want: ErrPayloadType, make: func(f *fixture) []byte {
			return f.release(f.modules[0])
		}},
		{name: "payload-bad-base64", op: opManifest, want: ErrBadBase64, make: func(f *fixture) []byte {
			return editEnvelope(f.sign(f.manifest()), func(e *dsse.Envelope) { e.Payload = "!!" + e.Payload[2:] })
		}},
		{name: "payload-url-safe-base64", op: opManifest, want: ErrBadBase64, make: func(f *fixture) []byte {
			// DSSE allows the URL-safe alphabet; Alizé's signers never write it.
			return editEnvelope(signRaw(PayloadTypeManifest, []byte(`{"serial":"???"}`), f.director), func(e *dsse.Envelope) {
				p, _ := base64.StdEncoding.DecodeString(e.Payload)
				if url := base64.URLEncoding.EncodeToString(p); url != e.Payload {
					e.Payload = url
					return
				}
				panic("payload has no + or / in standard base64")
			})
		}},
		{name: "payload-oversized", op: opManifest, want: ErrTooLarge, inline: true, make: func(f *fixture) []byte {
			p := f.payload(f.manifest())
			p = replaceOnce(p, `{"target"`, `{"pad":"`+strings.Repeat("a", MaxManifestSize)+`","target"`)
			return signRaw(PayloadTypeManifest, p, f.director)
		}},
		{name: "signatures-empty", op: opManifest, want: ErrNoSignatures, make: func(f *fixture) []byte {
			return editEnvelope(f.sign(f.manifest()), func(e *dsse.Envelope) { e.Signatures = []dsse.Signature{} })
		}},
		{name: "signatures-too-many", op: opManifest, want: ErrTooLarge, make: func(f *fixture) []byte {
			return editEnvelope(f.sign(f.manifest()), func(e *dsse.Envelope) {
				for range MaxSignatures {
					e.Signatures = append(e.Signatures, e.Signatures[0])
				}
			})
		}},
		{name: "signature-bad-base64", op: opManifest, want: ErrBadBase64, make: func(f *fixture) []byte {
			return editEnvelope(f.sign(f.manifest()), func(e *dsse.Envelope) { e.Signatures[0].Sig = "not*base64" })
		}},
		{name: "signature-truncated", op: opManifest, want: ErrBadSignature, make: func(f *fixture) []byte {
			return editEnvelope(f.sign(f.manifest()), func(e *dsse.Envelope) { e.Signatures[0].Sig = e.Signatures[0].Sig[:44] })
		}},
		{name: "signature-without-keyid", op: opManifest, want: ErrUnknownKey, make: func(f *fixture) []byte {
			return editEnvelope(f.sign(f.manifest()), func(e *dsse.Envelope) { e.Signatures[0].KeyID = "" })
		}},

		// The signatures.
		{name: "payload-tampered", op: opManifest, want: ErrBadSignature, make: func(f *fixture) []byte {
			return editEnvelope(f.sign(f.manifest()), func(e *dsse.Envelope) {
				p, _ := base64.StdEncoding.DecodeString(e.Payload)
				e.Payload = base64.StdEncoding.EncodeToString(replaceOnce(p, `"serial":42`, `"serial":99`))
			})
		}},
		{name: "signature-from-another-manifest", op: opManifest, want: ErrBadSignature, make: func(f *fixture) []byte {
			m := f.manifest()
			m.Serial = 43
			other := f.sign(m)
			var o dsse.Envelope
			json.Unmarshal(other, &o)
			return editEnvelope(f.sign(f.manifest()), func(e *dsse.Envelope) { e.Signatures = o.Signatures })
		}},
		{name: "signed-by-unknown-key", op: opManifest, want: ErrUnknownKey, make: func(f *fixture) []byte {
			return f.sign(f.manifest(), f.stranger)
		}},
		{name: "signed-by-release-key", op: opManifest, want: ErrWrongRole, make: func(f *fixture) []byte {
			return f.sign(f.manifest(), f.release1)
		}},
		{name: "signed-by-root-key", op: opManifest, want: ErrWrongRole, make: func(f *fixture) []byte {
			return f.sign(f.manifest(), f.root1)
		}},
		{name: "keyid-lies", op: opManifest, want: ErrBadSignature, make: func(f *fixture) []byte {
			return editEnvelope(f.sign(f.manifest(), f.release1), func(e *dsse.Envelope) { e.Signatures[0].KeyID = f.director.ID() })
		}},

		// The payload, signed by the director.
		{name: "payload-not-json", op: opManifest, want: ErrMalformed, make: func(f *fixture) []byte {
			return signRaw(PayloadTypeManifest, []byte("serial: 42\ntarget: srv-0951099D-01\n"), f.director)
		}},
		{name: "payload-invalid-utf8", op: opManifest, want: ErrMalformed, make: func(f *fixture) []byte {
			return f.editPayload(f.manifest(), func(p []byte) []byte { return replaceOnce(p, `"uai":"0951099D"`, "\"uai\":\"0951099D\xff\"") })
		}},
		{name: "payload-too-deep", op: opManifest, want: ErrTooDeep, make: func(f *fixture) []byte {
			return f.editPayload(f.manifest(), func(p []byte) []byte {
				// The first "values" is the module's (the spec holds them too).
				return replaceFirst(p, `"values":{"masquerade":true`, `"values":{"nest":`+deep(MaxDepth)+`,"masquerade":true`)
			})
		}},
		{name: "payload-unknown-field", op: opManifest, want: ErrUnknownField, make: func(f *fixture) []byte {
			return f.editPayload(f.manifest(), func(p []byte) []byte { return replaceOnce(p, `"serial":42`, `"serial":42,"priority":"high"`) })
		}},
		{name: "payload-field-wrong-case", op: opManifest, want: ErrUnknownField, make: func(f *fixture) []byte {
			return f.editPayload(f.manifest(), func(p []byte) []byte { return replaceOnce(p, `"serial":42`, `"SERIAL":42`) })
		}},
		{name: "payload-field-folded-case", op: opManifest, want: ErrUnknownField, make: func(f *fixture) []byte {
			// encoding/json would take "ſerial" (long s) for "serial".
			return f.editPayload(f.manifest(), func(p []byte) []byte { return replaceOnce(p, `"serial":42`, `"ſerial":42`) })
		}},
		{name: "payload-duplicate-key", op: opManifest, want: ErrDuplicateKey, make: func(f *fixture) []byte {
			return f.editPayload(f.manifest(), func(p []byte) []byte { return replaceOnce(p, `"serial":42`, `"serial":42,"serial":99`) })
		}},
		{name: "values-duplicate-escaped-key", op: opManifest, want: ErrDuplicateKey, make: func(f *fixture) []byte {
			return f.editPayload(f.manifest(), func(p []byte) []byte {
				return replaceFirst(p, `"values":{"masquerade":true`, `"values":{"masquerade":true,"\u006dasquerade":false`)
			})
		}},
		{name: "payload-trailing-data", op: opManifest, want: ErrTrailingData, make: func(f *fixture) []byte {
			return f.editPayload(f.manifest(), func(p []byte) []byte { return append(p, " {}"...) })
		}},
		{name: "payload-serial-negative", op: opManifest, want: ErrMalformed, make: func(f *fixture) []byte {
			return f.editPayload(f.manifest(), func(p []byte) []byte { return replaceOnce(p, `"serial":42`, `"serial":-42`) })
		}},
		{name: "payload-definition-inline", op: opManifest, want: ErrUnknownField, make: func(f *fixture) []byte {
			// Definitions travel apart, by digest: one inside the manifest is not read.
			return f.editPayload(f.manifest(), func(p []byte) []byte {
				return replaceFirst(p, `"values":`, `"definition":"bmFtZTogeAo=","values":`)
			})
		}},

		// The manifest's claims.
		{name: "wrong-server", op: opManifest, want: ErrWrongServer, make: func(f *fixture) []byte {
			m := f.manifest()
			m.Target.ServerID = "srv-0951099D-02"
			return f.sign(m)
		}},
		{name: "wrong-uai", op: opManifest, want: ErrWrongUAI, make: func(f *fixture) []byte {
			m := f.manifest()
			m.Target.UAI = "0780001Y"
			return f.sign(m)
		}},
		{name: "serial-equal", op: opManifest, want: ErrRollback, make: func(f *fixture) []byte {
			m := f.manifest()
			m.Serial = 41
			return f.sign(m)
		}},
		{name: "serial-lower", op: opManifest, want: ErrRollback, make: func(f *fixture) []byte {
			m := f.manifest()
			m.Serial = 7
			return f.sign(m)
		}},
		{name: "expired", op: opManifest, want: ErrExpired, make: func(f *fixture) []byte {
			m := f.manifest()
			m.Issued, m.Expires = t0.Add(-8*24*time.Hour), t0.Add(-time.Second)
			return f.sign(m)
		}},
		{name: "issued-in-future", op: opManifest, want: ErrIssuedInFuture, make: func(f *fixture) []byte {
			m := f.manifest()
			m.Issued = t0.Add(MaxClockSkew + time.Minute)
			return f.sign(m)
		}},
		{name: "expires-before-issued", op: opManifest, want: ErrInvalid, make: func(f *fixture) []byte {
			m := f.manifest()
			m.Issued, m.Expires = t0, t0.Add(-time.Hour)
			return f.signUnchecked(m)
		}},
		{name: "blob-digest-not-sha256", op: opManifest, want: ErrInvalid, make: func(f *fixture) []byte {
			m := f.manifest()
			m.Blobs[0].Digest = "md5:0cc175b9c0f1b6a831c399e269772661"
			return f.signUnchecked(m)
		}},
		{name: "secret-generation-rollback", op: opManifest, want: ErrSecretGeneration, make: func(f *fixture) []byte {
			m := f.manifest()
			m.Secrets = []SecretRef{f.secret(serverID, "ldap-bind", 1, f.agent)}
			return f.sign(m)
		}},

		// The modules.
		{name: "module-release-absent", op: opManifest, want: ErrNoRelease, make: func(f *fixture) []byte {
			m := f.manifest()
			return f.editPayload(m, func(p []byte) []byte {
				return replaceOnce(p, `"release":`+string(m.Modules[0].ReleaseEnvelope)+`,`, ``)
			})
		}},
		{name: "module-release-null", op: opManifest, want: ErrNoRelease, make: func(f *fixture) []byte {
			return f.signUnchecked(f.withModule(1, func(m *Module) { m.ReleaseEnvelope = []byte("null") }))
		}},
		{name: "module-release-unsigned", op: opManifest, want: ErrNoSignatures, make: func(f *fixture) []byte {
			return f.signUnchecked(f.withModule(0, func(m *Module) {
				m.ReleaseEnvelope = editEnvelope(m.ReleaseEnvelope, func(e *dsse.Envelope) { e.Signatures = nil })
			}))
		}},
		{name: "module-release-signed-by-director", op: opManifest, want: ErrWrongRole, make: func(f *fixture) []byte {
			return f.sign(f.withModule(0, func(m *Module) { m.ReleaseEnvelope = f.release(f.modules[0], f.director) }))
		}},
		{name: "module-release-signed-by-unknown-key", op: opManifest, want: ErrUnknownKey, make: func(f *fixture) []byte {
			return f.sign(f.withModule(2, func(m *Module) { m.ReleaseEnvelope = f.release(f.modules[2], f.stranger) }))
		}},
		{name: "module-release-tampered", op: opManifest, want: ErrBadSignature, make: func(f *fixture) []byte {
			return f.sign(f.withModule(0, func(m *Module) {
				m.ReleaseEnvelope = editEnvelope(m.ReleaseEnvelope, func(e *dsse.Envelope) {
					p, _ := base64.StdEncoding.DecodeString(e.Payload)
					e.Payload = base64.StdEncoding.EncodeToString(replaceOnce(p, `"counter":7`, `"counter":9`))
				})
			}))
		}},
		{name: "module-release-as-manifest-type", op: opManifest, want: ErrPayloadType, make: func(f *fixture) []byte {
			return f.signUnchecked(f.withModule(0, func(m *Module) {
				m.ReleaseEnvelope = editEnvelope(m.ReleaseEnvelope, func(e *dsse.Envelope) { e.PayloadType = PayloadTypeManifest })
			}))
		}},
		{name: "module-release-counter-lower", op: opManifest, want: ErrReleaseRollback, make: func(f *fixture) []byte {
			old := f.modules[0]
			old.counter = 6
			return f.sign(f.withModule(0, func(m *Module) { m.ReleaseEnvelope = f.release(old) }))
		}},
		{name: "module-duplicate", op: opManifest, want: ErrInvalid, make: func(f *fixture) []byte {
			m := f.manifest()
			m.Modules = append(m.Modules, m.Modules[1])
			return f.sign(m)
		}},
		{name: "module-definition-not-released", op: opDefinition, want: ErrDefinitionDigest, make: func(f *fixture) []byte {
			// A mirror or a damaged cache serves another definition under the released digest.
			return append(bytes.Clone(f.modules[0].definition), "  backdoor: {type: string}\n"...)
		}},
		{name: "module-definition-oversized", op: opDefinition, want: ErrTooLarge, inline: true, make: func(f *fixture) []byte {
			return bytes.Repeat([]byte("# padding\n"), MaxDefinitionSize/10+1)
		}},
		{name: "module-sources-not-names", op: opManifest, want: ErrInvalid, make: func(f *fixture) []byte {
			return f.signUnchecked(f.withModule(2, func(m *Module) { m.Sources = map[string]string{"admin_cidr": "group:\nlycées"} }))
		}},
		{name: "module-spec-digest-mismatch", op: opManifest, want: ErrSpecDigest, make: func(f *fixture) []byte {
			return f.signUnchecked(f.withModule(1, func(m *Module) { m.SpecDigest = Digest([]byte("another spec")) }))
		}},
		{name: "module-spec-not-compiled", op: opManifest, want: ErrSpecMismatch, make: func(f *fixture) []byte {
			return f.sign(f.withModule(0, func(m *Module) {
				m.Spec = replaceOnce(m.Spec, `"masquerade":true`, `"masquerade":true,"extra_rules":[{"accept":"any"}]`)
				m.SpecDigest = Digest(m.Spec)
			}))
		}},
		{name: "module-values-not-in-spec", op: opManifest, want: ErrSpecMismatch, make: func(f *fixture) []byte {
			return f.sign(f.withModule(0, func(m *Module) { m.Values = replaceOnce(m.Values, `"masquerade":true`, `"masquerade":false`) }))
		}},
		{name: "module-values-not-object", op: opManifest, want: ErrInvalid, make: func(f *fixture) []byte {
			return f.signUnchecked(f.withModule(2, func(m *Module) { m.Values = []byte(`["a"]`) }))
		}},
		{name: "module-agent-version-excluded", op: opManifest, want: ErrAgentVersion, make: func(f *fixture) []byte {
			newer := f.modules[2]
			newer.agent = ">= 2.0"
			return f.sign(f.withModule(2, func(m *Module) { m.ReleaseEnvelope = f.release(newer) }))
		}},

		// Releases alone.
		{name: "release-digest-not-sha256", op: opRelease, want: ErrInvalid, make: func(f *fixture) []byte {
			return signRaw(PayloadTypeRelease, []byte(`{"name":"amon-firewall","version":"2.3.0","kind":"firewall","digest":"sha256:xyz","counter":7}`), f.release1)
		}},
		{name: "release-unknown-field", op: opRelease, want: ErrUnknownField, make: func(f *fixture) []byte {
			return signRaw(PayloadTypeRelease, []byte(`{"name":"amon-firewall","version":"2.3.0","kind":"firewall","digest":"`+Digest(nil)+`","counter":7,"script":"curl | sh"}`), f.release1)
		}},

		// Roots.
		{name: "root-not-self-signed", op: opPin, want: ErrWrongRole, make: func(f *fixture) []byte {
			return signRootRaw(f.root, f.release1)
		}},
		{name: "root-self-threshold-not-met", op: opPin, want: ErrThreshold, make: func(f *fixture) []byte {
			return signRootRaw(f.root, f.root1)
		}},
		{name: "root-unknown-field", op: opPin, want: ErrUnknownField, make: func(f *fixture) []byte {
			p, _ := marshal(&f.root)
			return signRaw(PayloadTypeRoot, replaceOnce(p, `{"version":1`, `{"version":1,"consistent_snapshot":true`), f.root1, f.root2)
		}},
		{name: "root-key-id-not-its-hash", op: opPin, want: ErrInvalid, make: func(f *fixture) []byte {
			r := f.newRoot(1, t0.AddDate(1, 0, 0))
			r.Keys[f.director.ID()] = f.stranger.PublicKey()
			return signRootRaw(r, f.root1, f.root2)
		}},
		{name: "root-threshold-zero", op: opPin, want: ErrInvalid, make: func(f *fixture) []byte {
			r := f.newRoot(1, t0.AddDate(1, 0, 0))
			r.Roles.Director.Threshold = 0
			return signRootRaw(r, f.root1, f.root2)
		}},
		{name: "root-key-in-two-roles", op: opPin, want: ErrInvalid, make: func(f *fixture) []byte {
			r := f.newRoot(1, t0.AddDate(1, 0, 0))
			r.Roles.Release.KeyIDs = append(r.Roles.Release.KeyIDs, f.director.ID())
			return signRootRaw(r, f.root1, f.root2)
		}},
		{name: "root-manifest-type", op: opPin, want: ErrPayloadType, make: func(f *fixture) []byte {
			return f.sign(f.manifest())
		}},
		{name: "root-expired", op: opPinVerify, want: ErrExpired, make: func(f *fixture) []byte {
			r := f.newRoot(1, t0.Add(-time.Hour))
			return signRootRaw(r, f.root1, f.root2)
		}},
		{name: "root-update-skips-version", op: opUpdate, want: ErrRootVersion, make: func(f *fixture) []byte {
			r := f.rootV2()
			r.Version = 3
			return signRootRaw(r, f.root1, f.root2)
		}},
		{name: "root-update-replays-version", op: opUpdate, want: ErrRootVersion, make: func(f *fixture) []byte {
			return f.rootEnv
		}},
		{name: "root-update-old-threshold-not-met", op: opUpdate, want: ErrThreshold, make: func(f *fixture) []byte {
			return signRootRaw(f.rootV2(), f.root1)
		}},
		{name: "root-update-one-key-signs-twice", op: opUpdate, want: ErrThreshold, make: func(f *fixture) []byte {
			return signRootRaw(f.rootV2(), f.root1, f.root1)
		}},
		{name: "root-update-own-threshold-not-met", op: opUpdate, want: ErrThreshold, make: func(f *fixture) []byte {
			r4, r5 := testKey("root-4"), testKey("root-5")
			return signRootRaw(f.rootV2(r4, r5), f.root1, f.root2, r4)
		}},
		{name: "root-update-signed-by-director", op: opUpdate, want: ErrWrongRole, make: func(f *fixture) []byte {
			return signRootRaw(f.rootV2(), f.director)
		}},

		// Secrets.
		{name: "secret-sealed-to-another-agent", op: opUnseal, want: ErrSecretRecipient, make: func(f *fixture) []byte {
			return f.secret(serverID, "ldap-bind", 2, f.other).Sealed
		}},
		{name: "secret-for-another-server", op: opUnseal, want: ErrSecretServer, make: func(f *fixture) []byte {
			return f.secret("srv-0780001Y-01", "ldap-bind", 2, f.agent).Sealed
		}},
		{name: "secret-older-generation", op: opUnseal, want: ErrSecretGeneration, make: func(f *fixture) []byte {
			return f.secret(serverID, "ldap-bind", 1, f.agent).Sealed
		}},
		{name: "secret-other-name", op: opUnseal, want: ErrSecretName, make: func(f *fixture) []byte {
			return f.secret(serverID, "samba-join", 2, f.agent).Sealed
		}},
		{name: "secret-not-age", op: opUnseal, want: ErrMalformed, make: func(f *fixture) []byte {
			return []byte(fixtureSecret + "\n-----BEGIN PGP MESSAGE-----\n")
		}},
		{name: "secret-truncated", op: opUnseal, want: ErrMalformed, make: func(f *fixture) []byte {
			s := f.secret(serverID, "ldap-bind", 2, f.agent).Sealed
			return s[:len(s)-20]
		}},
		{name: "secret-text-unknown-field", op: opUnseal, want: ErrUnknownField, make: func(f *fixture) []byte {
			return sealRaw(f.agent.Recipient(), []byte(`{"server_id":"`+serverID+`","name":"ldap-bind","generation":2,"value":"`+
				base64.StdEncoding.EncodeToString([]byte(fixtureSecret))+`","note":"`+fixtureSecret+`"}`))
		}},
		{name: "secret-text-not-json", op: opUnseal, want: ErrMalformed, make: func(f *fixture) []byte {
			return sealRaw(f.agent.Recipient(), []byte(fixtureSecret))
		}},

		// Blobs.
		{name: "blob-tampered", op: opBlob, want: ErrBlobDigest, make: func(f *fixture) []byte {
			return replaceOnce(rosterBlob, "6A", "6B")
		}},
		{name: "blob-truncated", op: opBlob, want: ErrBlobSize, make: func(f *fixture) []byte {
			return rosterBlob[:len(rosterBlob)-1]
		}},
		{name: "blob-oversized", op: opBlob, want: ErrTooLarge, inline: true, make: func(f *fixture) []byte {
			return make([]byte, MaxBlobSize+1)
		}},
	}
}

// run feeds input to the case's operation and returns its error. It fails
// the test if a refusal still returned something to use.
func (f *fixture) run(t *testing.T, c hostileCase, input []byte, last State) error {
	t.Helper()
	switch c.op {
	case opManifest:
		m, next, err := f.verifier(&Cache{}).Verify(input, last)
		if err != nil && (m != nil || next.Serial != 0 || next.Counters != nil) {
			t.Errorf("Verify() refused but returned a manifest or a state")
		}
		return err
	case opRelease:
		_, err := f.trust.VerifyRelease(input)
		return err
	case opPin:
		tr, err := PinRoot(input)
		if err != nil && tr != nil {
			t.Errorf("PinRoot() refused but returned a trust")
		}
		return err
	case opUpdate:
		tr, err := f.trust.UpdateRoot(input)
		if err != nil && tr != nil {
			t.Errorf("UpdateRoot() refused but returned a trust")
		}
		return err
	case opPinVerify:
		tr, err := PinRoot(input)
		if err != nil {
			t.Fatalf("PinRoot() = %v, want the root pinned", err)
		}
		v := f.verifier(nil)
		v.Trust = tr
		_, _, err = v.Verify(f.sign(f.manifest()), last)
		return err
	case opUnseal:
		s, err := Unseal(f.agent, serverID, SecretRef{Name: "ldap-bind", Generation: 2, Sealed: input})
		if err != nil && s.Len() != 0 {
			t.Errorf("Unseal() refused but returned a value")
		}
		return err
	case opBlob:
		return VerifyBlob(f.manifest().Blobs[0], input)
	case opDefinition:
		v := f.verifier(&Cache{})
		released := Digest(f.modules[0].definition)
		v.Definitions = func(digest string) []byte {
			if digest == released {
				return input
			}
			return f.definition(digest)
		}
		m, next, err := v.Verify(f.sign(f.manifest()), last)
		if err != nil && (m != nil || next.Serial != 0) {
			t.Errorf("Verify() refused but returned a manifest or a state")
		}
		return err
	}
	t.Fatalf("unknown op %q", c.op)
	return nil
}

// TestHostile feeds every hostile input to the operation it targets and
// checks that it is refused for its own reason, with an *Error that names
// the document, leaks no secret, and leaves the agent's state and trust as
// they were. The inputs are stored in testdata/hostile (run with -update
// to write them again); the refusal messages in refusals.golden.
func TestHostile(t *testing.T) {
	cases := hostileCases()
	if len(cases) < 40 {
		t.Errorf("%d hostile cases, want at least 40", len(cases))
	}
	var golden strings.Builder
	seen := map[string]bool{}
	for i, c := range cases {
		if seen[c.name] {
			t.Fatalf("case %s listed twice", c.name)
		}
		seen[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			// Sealing draws randomness: make it the same at every run.
			cryptotest.SetGlobalRandom(t, uint64(i))
			f := newFixture(t, false)
			input := c.make(f)
			if !c.inline {
				if *update {
					if err := os.MkdirAll(filepath.Dir(c.file()), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(c.file(), input, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				stored, err := os.ReadFile(c.file())
				if err != nil {
					t.Fatalf("%v (run go test -run TestHostile -update)", err)
				}
				if !bytes.Equal(stored, input) {
					t.Errorf("%s is not what the case makes now: run go test -run TestHostile -update", c.file())
				}
				input = stored
			}
			last := state()
			before := cloneState(last)
			trustBefore := f.trust.Envelope()

			err := f.run(t, c, input, last)

			if !errors.Is(err, c.want) {
				t.Fatalf("%s(%s) = %v, want %s", c.op, c.name, err, c.want.Code())
			}
			if got := Code(err); got != c.want.Code() {
				t.Errorf("Code() = %q, want %q", got, c.want.Code())
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("error %T is not an *Error", err)
			}
			if msg := err.Error(); strings.Contains(msg, fixtureSecret) || strings.Contains(msg, base64.StdEncoding.EncodeToString([]byte(fixtureSecret))) {
				t.Errorf("error message holds the secret: %s", msg)
			}
			if diff := cmp.Diff(before, last); diff != "" {
				t.Errorf("state changed by a refused input (-before +after):\n%s", diff)
			}
			if !bytes.Equal(trustBefore, f.trust.Envelope()) || f.trust.Version() != 1 {
				t.Errorf("trust changed by a refused input")
			}
			fmt.Fprintf(&golden, "%s\t%s\t%s\n", c.name, Code(err), err)
		})
	}
	if t.Failed() || strings.Count(golden.String(), "\n") != len(cases) {
		return // a failure, or -run chose some cases only
	}
	goldenFile := filepath.Join("testdata", "hostile", "refusals.golden")
	if *update {
		if err := os.WriteFile(goldenFile, []byte(golden.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatalf("%v (run go test -run TestHostile -update)", err)
	}
	if diff := cmp.Diff(string(want), golden.String()); diff != "" {
		t.Errorf("refusal messages (-%s +now):\n%s", goldenFile, diff)
	}
}
