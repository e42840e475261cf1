package manifest

import "time"

// Limits on every input. Each is checked before the input is parsed or
// allocated for, so that a hostile mirror, a broken controller or a fuzzer
// cannot make the agent spend unbounded memory or time. They are generous
// for a school server: a manifest of ten modules is tens of KiB, a roster
// blob of a large lycée a few MiB.
const (
	// MaxEnvelopeSize bounds a manifest envelope as received.
	MaxEnvelopeSize = 1 << 20 // 1 MiB
	// MaxManifestSize bounds a manifest payload once base64-decoded.
	MaxManifestSize = 512 << 10 // 512 KiB
	// MaxRootSize bounds a root envelope.
	MaxRootSize = 64 << 10 // 64 KiB
	// MaxReleaseSize bounds a release envelope, alone or embedded in a manifest.
	MaxReleaseSize = 16 << 10 // 16 KiB
	// MaxDefinitionSize bounds a module definition (schema.MaxModuleSize).
	MaxDefinitionSize = 1 << 20 // 1 MiB
	// MaxBlobSize bounds a blob (an account roster…).
	MaxBlobSize = 64 << 20 // 64 MiB
	// MaxSealedSize bounds a sealed secret (age ciphertext).
	MaxSealedSize = 64 << 10 // 64 KiB
	// MaxSecretSize bounds a secret value once unsealed.
	MaxSecretSize = 32 << 10 // 32 KiB

	// MaxDepth bounds the nesting of objects and arrays in any JSON
	// document, the embedded values and specs included (a manifest's own
	// structure takes 3 levels; a spec rarely more than 8).
	MaxDepth = 32
	// MaxSignatures bounds the signatures on one envelope.
	MaxSignatures = 16
	// MaxKeys bounds the keys a root lists.
	MaxKeys = 64
	// MaxModules, MaxBlobs and MaxSecrets bound the entries of a manifest.
	MaxModules = 64
	MaxBlobs   = 256
	MaxSecrets = 64
	// MaxSources bounds the variables whose level a module's sources name.
	MaxSources = 1024
	// MaxNameLength bounds module, blob and secret names, server ids and kinds.
	MaxNameLength = 64

	// MaxClockSkew is how far in the future a manifest's issued time may
	// be, so that an agent whose clock is a little behind the controller's
	// still accepts a fresh manifest. A manifest issued further ahead is
	// refused (ErrIssuedInFuture): it points to a wrong clock on one side.
	MaxClockSkew = 5 * time.Minute

	// MaxCacheEntries bounds each of a Cache's tables.
	MaxCacheEntries = 256
)
