package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/alize-eple/alize/agent/internal/engine"
	"github.com/alize-eple/alize/agent/internal/state"
	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/modules/manifest"
)

// The daemon's files in the state directory.
const (
	fileManifest   = "manifest.json"    // the last-known-good manifest (Stored)
	fileTrustState = "trust-state.json" // its manifest.State again: the rollback floor, should manifest.json be lost
	fileApplied    = "applied.json"     // the last finished run (Applied)
	fileCurrentRun = "current-run.json" // the run in progress (CurrentRun), gone when it ends
	fileContact    = "contact.json"     // the last exchange with the controller (Contact)
	dirBlobs       = "blobs"            // blobs by digest
)

// ModeVariable is the variable a module declares to choose its mode:
// a choice of "enforce" (the default) and "report-only".
const ModeVariable = "alize_mode"

// Stored is the last-known-good manifest: verified, its secrets openable
// and its blobs fetched, kept until a newer one is verified. An expired
// manifest stays applied (freeze) until a fresh one comes.
type Stored struct {
	Envelope []byte    `json:"envelope"` // exactly as received
	Digest   string    `json:"digest"`   // sha256 of Envelope
	ETag     string    `json:"etag,omitempty"`
	Received time.Time `json:"received"`

	ServerID string               `json:"server_id"`
	UAI      string               `json:"uai"`
	Serial   uint64               `json:"serial"`
	Issued   time.Time            `json:"issued"`
	Expires  time.Time            `json:"expires"`
	Modules  []StoredModule       `json:"modules"`
	Blobs    []manifest.BlobRef   `json:"blobs,omitempty"`
	Secrets  []manifest.SecretRef `json:"secrets,omitempty"`
	State    manifest.State       `json:"state"`
}

// StoredModule is one module of the stored manifest.
type StoredModule struct {
	Name       string          `json:"name"`
	Version    string          `json:"version"`
	Kind       string          `json:"kind"`
	Counter    uint64          `json:"counter"`
	Definition []byte          `json:"definition"`
	Values     json.RawMessage `json:"values"`
	Spec       json.RawMessage `json:"spec"`
	SpecDigest string          `json:"spec_digest"`
	// Sources: the level that gave each variable its value.
	Sources map[string]string `json:"sources,omitempty"`
}

func newStored(env []byte, etag string, received time.Time, m *manifest.Manifest, st manifest.State) *Stored {
	s := &Stored{
		Envelope: env, Digest: manifest.Digest(env), ETag: etag, Received: received.UTC(),
		ServerID: m.Target.ServerID, UAI: m.Target.UAI, Serial: m.Serial,
		Issued: m.Issued, Expires: m.Expires, Blobs: m.Blobs, Secrets: m.Secrets, State: st,
	}
	for _, mod := range m.Modules {
		s.Modules = append(s.Modules, StoredModule{
			Name: mod.Release.Name, Version: mod.Release.Version, Kind: mod.Release.Kind, Counter: mod.Release.Counter,
			Definition: mod.Definition, Values: mod.Values, Spec: mod.Spec, SpecDigest: mod.SpecDigest, Sources: mod.Sources,
		})
	}
	return s
}

// loadStored reads the last-known-good manifest; nil when there is none.
func loadStored(s *state.Store) (*Stored, error) {
	var st Stored
	err := s.ReadJSON(fileManifest, &st)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if st.Serial == 0 || manifest.Digest(st.Envelope) != st.Digest {
		if rerr := os.Rename(s.Path(fileManifest), s.Path(fileManifest)+".corrupt"); rerr != nil {
			return nil, fmt.Errorf("state: %w", rerr)
		}
		return nil, &state.CorruptError{Path: s.Path(fileManifest), Quarantine: s.Path(fileManifest) + ".corrupt", Err: errors.New("its envelope does not match its digest")}
	}
	return &st, nil
}

// save stores the manifest and its rollback floor. The floor is written
// after: a crash in between leaves an older floor, never a higher one.
func (st *Stored) save(s *state.Store) error {
	if err := s.WriteJSON(fileManifest, st); err != nil {
		return err
	}
	return s.WriteJSON(fileTrustState, st.State)
}

// Applied is the last finished run, kept for alize status.
type Applied struct {
	Serial uint64    `json:"serial"`
	Digest string    `json:"digest"`
	Run    RunRecord `json:"run"`
}

// CurrentRun marks a run in progress. A run killed before its end leaves
// it: the next start runs the same manifest again under the same report
// id, so that the controller gets one report of it, not two.
type CurrentRun struct {
	ID      string    `json:"id"`
	Trigger string    `json:"trigger"`
	Serial  uint64    `json:"serial"`
	Started time.Time `json:"started"`
}

// Contact is the last exchange with the controller.
type Contact struct {
	LastContact time.Time `json:"last_contact,omitzero"` // last answer, of any kind
	LastError   string    `json:"last_error,omitempty"`  // the last failure, cleared by an answer
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Failures    int       `json:"failures,omitempty"` // failures in a row
	NextPoll    time.Time `json:"next_poll,omitzero"`
	// ClockSkew is the controller's clock minus this server's, at the last answer.
	ClockSkew time.Duration `json:"clock_skew"`
	// ETag is the one sent as If-None-Match: the last-known-good's, or
	// the refused manifest's, so that it is not fetched again.
	ETag    string   `json:"etag,omitempty"`
	Refused *Refused `json:"refused,omitempty"`
}

// Refused is the last manifest the agent refused.
type Refused struct {
	At      time.Time   `json:"at"`
	ETag    string      `json:"etag,omitempty"`
	Digest  string      `json:"digest"`
	Serial  uint64      `json:"serial,omitempty"` // as the (unverified) payload says: for people only
	Refusal api.Refusal `json:"refusal"`
}

// RunRecord is one run, as the history keeps it.
type RunRecord struct {
	ID       string        `json:"id"`
	Trigger  string        `json:"trigger"` // TriggerManifest, TriggerDrift, TriggerTechnician, TriggerStart
	Serial   uint64        `json:"serial"`
	Digest   string        `json:"manifest_digest,omitempty"`
	Started  time.Time     `json:"started"`
	Finished time.Time     `json:"finished"`
	Outcome  api.Outcome   `json:"outcome"`
	Refusal  *api.Refusal  `json:"refusal,omitempty"`
	Kinds    []KindSummary `json:"kinds,omitempty"`
	Reported bool          `json:"reported"` // a report was queued for the controller
}

// Took is the run's duration.
func (r RunRecord) Took() time.Duration { return r.Finished.Sub(r.Started) }

// KindSummary is one kind's part of a run, without the change list.
type KindSummary struct {
	Kind    string         `json:"kind"`
	Module  string         `json:"module"`
	Version string         `json:"version"`
	Mode    engine.Mode    `json:"mode"`
	Status  api.KindStatus `json:"status"`
	Changes int            `json:"changes"` // planned (drift) or applied
	Failed  int            `json:"failed,omitempty"`
	Error   string         `json:"error,omitempty"`
	TookMS  int64          `json:"took_ms"`
}

// The triggers of a run.
const (
	TriggerManifest   = "manifest"   // a new manifest
	TriggerDrift      = "drift"      // the drift timer
	TriggerTechnician = "technician" // alize apply
	TriggerStart      = "start"      // the daemon started
)

func summarize(res engine.Result) []KindSummary {
	out := make([]KindSummary, len(res.Kinds))
	for i, k := range res.Kinds {
		s := KindSummary{Kind: k.Kind, Module: k.Module, Version: k.Version, Mode: k.Mode, Status: k.Status, Error: k.Error, TookMS: k.Took.Milliseconds()}
		if k.Changes != nil {
			for _, c := range k.Changes {
				if c.Status == "applied" {
					s.Changes++
				} else {
					s.Failed++
				}
			}
		} else {
			s.Changes = len(k.Plan)
		}
		out[i] = s
	}
	return out
}

func readContact(s *state.Store) Contact {
	var c Contact
	s.ReadJSON(fileContact, &c) // missing or corrupt (set aside): start afresh
	return c
}

func removeState(s *state.Store, name string) error {
	if err := os.Remove(s.Path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

func removeAll(path string) error {
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// valueString reads a string value from a values object; "" when absent
// or not a string.
func valueString(values []byte, name string) string {
	if !bytes.Contains(values, []byte(name)) {
		return ""
	}
	var m map[string]any
	if json.Unmarshal(values, &m) != nil {
		return ""
	}
	s, _ := m[name].(string)
	return s
}

// payloadSerial reads the serial an unverified envelope's payload claims,
// for people only (a refused manifest's report and status).
func payloadSerial(env []byte) uint64 {
	var e struct {
		Payload []byte `json:"payload"`
	}
	if json.Unmarshal(env, &e) != nil {
		return 0
	}
	var p struct {
		Serial uint64 `json:"serial"`
	}
	if json.Unmarshal(e.Payload, &p) != nil {
		return 0
	}
	return p.Serial
}

// clip cuts an untrusted or long message for a status line.
func clip(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", "; ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
