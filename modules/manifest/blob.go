package manifest

import (
	"crypto/sha256"
	"errors"
	"fmt"
)

// BlobRef lists a blob in a manifest: large data (an account roster) that
// travels apart, fetched by digest from the controller or any mirror or
// cache. The signed manifest holds the digest, so the place it comes from
// needs no trust, and an unchanged blob is never fetched again.
type BlobRef struct {
	Name   string `json:"name"`   // what the modules call it: "roster"
	Digest string `json:"digest"` // "sha256:<hex>" of its bytes
	Size   int64  `json:"size"`   // its length in bytes, at most MaxBlobSize
}

func (b BlobRef) validate() error {
	var errs []error
	if !validName(b.Name) {
		errs = append(errs, fmt.Errorf("name must be 1 to %d of a-z 0-9 . _ -, got %s", MaxNameLength, clip(b.Name)))
	}
	if !validDigest(b.Digest) {
		errs = append(errs, fmt.Errorf("digest must be sha256:<64 lowercase hex digits>, got %s", clip(b.Digest)))
	}
	if b.Size < 0 || b.Size > MaxBlobSize {
		errs = append(errs, fmt.Errorf("size must be 0 to %d, got %d", MaxBlobSize, b.Size))
	}
	return errors.Join(errs...)
}

// VerifyBlob checks a blob's bytes against its entry in a verified
// manifest: no larger than MaxBlobSize (ErrTooLarge), the size listed
// (ErrBlobSize), the digest listed (ErrBlobDigest). The agent fetches at
// most ref.Size+1 bytes (io.LimitReader) before it calls it.
func VerifyBlob(ref BlobRef, data []byte) error {
	const doc = "blob"
	if len(data) > MaxBlobSize || ref.Size > MaxBlobSize {
		return refuse(doc, clip(ref.Name), ErrTooLarge, fmt.Sprintf("%d bytes (listed %d), at most %d", len(data), ref.Size, MaxBlobSize))
	}
	if int64(len(data)) != ref.Size {
		return refuse(doc, clip(ref.Name), ErrBlobSize, fmt.Sprintf("%d bytes, listed %d", len(data), ref.Size))
	}
	if got := digestString(sha256.Sum256(data)); got != ref.Digest {
		return refuse(doc, clip(ref.Name), ErrBlobDigest, fmt.Sprintf("bytes are %s, listed %s", got, clip(ref.Digest)))
	}
	return nil
}
