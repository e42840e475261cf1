package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Every document is decoded strictly, with the JSON v2 decoder
// (github.com/go-json-experiment/json, the mirror of Go's encoding/json/v2):
// unlike encoding/json it refuses duplicate keys anywhere in the document
// (embedded values and specs included), matches field names exactly
// (encoding/json would take "SERIAL" or "ſerial" for "serial"), and refuses
// invalid UTF-8. Unknown fields are refused too. scanJSON adds what it
// cannot be told: a nesting limit, and exactly one top-level object.

// decodeStrict decodes data, one JSON object, into v. On failure it returns
// an *Error for doc; quiet leaves out the decoder's message (for documents
// that hold a secret).
func decodeStrict(doc string, data []byte, v any, quiet bool) error {
	if r, detail := scanJSON(data); r != nil {
		return refuse(doc, "", r, detail)
	}
	err := json.Unmarshal(data, v, json.RejectUnknownMembers(true))
	if err == nil {
		return nil
	}
	var r *Reason
	var b64 base64.CorruptInputError
	switch {
	case errors.Is(err, jsontext.ErrDuplicateName):
		r = ErrDuplicateKey
	case errors.Is(err, json.ErrUnknownName):
		r = ErrUnknownField
	case errors.As(err, &b64):
		r = ErrBadBase64
	default:
		r = ErrMalformed
	}
	if quiet {
		return refuse(doc, "", r, "")
	}
	// Say where, from the decoder's JSON pointer, and what, without the
	// decoder's Go type names or the offending value.
	var sem *json.SemanticError
	var syn *jsontext.SyntacticError
	switch {
	case errors.As(err, &syn):
		return refuse(doc, safePath(string(syn.JSONPointer)), r, fmt.Sprintf("%v (at byte %d)", syn.Err, syn.ByteOffset))
	case errors.As(err, &sem):
		var detail string
		switch {
		case r == ErrUnknownField:
		case r == ErrBadBase64:
			detail = sem.Err.Error()
		case sem.Err != nil:
			detail = "unexpected JSON " + sem.JSONKind.String() + ": " + sem.Err.Error()
		default:
			detail = "unexpected JSON " + sem.JSONKind.String()
		}
		return refuse(doc, safePath(string(sem.JSONPointer)), r, detail)
	}
	return &Error{Doc: doc, Reason: r, Err: err}
}

// safePath returns a JSON pointer for a message: as is when short and
// printable, else clipped and quoted (member names come from the input).
func safePath(p string) string {
	if len(p) > 80 || !utf8.ValidString(p) {
		return clip(p)
	}
	for _, c := range p {
		if !strconv.IsPrint(c) || c == '"' {
			return clip(p)
		}
	}
	return p
}

// scanJSON checks what the decoder does not: data is exactly one JSON
// object (whitespace around it aside) nested at most MaxDepth deep. It only
// tracks strings and brackets; the decoder checks everything else. On valid
// JSON it is exact, so it never lets a too-deep document through; on invalid
// JSON it may pass, and the decoder refuses.
func scanJSON(data []byte) (*Reason, string) {
	i := skipSpace(data, 0)
	if i == len(data) || data[i] != '{' {
		return ErrMalformed, "not a JSON object"
	}
	depth := 0
	for i < len(data) {
		switch data[i] {
		case '"':
			end := stringEnd(data, i+1)
			if end < 0 {
				return ErrMalformed, "unterminated string"
			}
			i = end
		case '{', '[':
			depth++
			if depth > MaxDepth {
				return ErrTooDeep, fmt.Sprintf("more than %d levels at byte %d", MaxDepth, i)
			}
		case '}', ']':
			depth--
			if depth == 0 {
				if j := skipSpace(data, i+1); j != len(data) {
					return ErrTrailingData, fmt.Sprintf("%d bytes after the document", len(data)-j)
				}
				return nil, ""
			}
		}
		i++
	}
	return ErrMalformed, "unexpected end of JSON"
}

// stringEnd returns the index of the quote closing the string whose
// content starts at i, or -1. A quote preceded by an odd run of
// backslashes is escaped.
func stringEnd(data []byte, i int) int {
	for {
		j := bytes.IndexByte(data[i:], '"')
		if j < 0 {
			return -1
		}
		q := i + j
		n := 0
		for k := q - 1; k >= i && data[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return q
		}
		i = q + 1
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// marshal encodes v deterministically (map keys sorted), keeping embedded
// raw JSON strings exactly as they are.
func marshal(v any) ([]byte, error) {
	return json.Marshal(v, json.Deterministic(true), jsontext.PreserveRawStrings(true))
}

// Digest returns "sha256:<hex>" of b, the form every digest in Alizé takes.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return digestString(sum)
}

func digestString(sum [sha256.Size]byte) string {
	var buf [len("sha256:") + 2*sha256.Size]byte
	copy(buf[:], "sha256:")
	hex.Encode(buf[len("sha256:"):], sum[:])
	return string(buf[:])
}

// validDigest reports whether d is "sha256:" and 64 lowercase hex digits.
func validDigest(d string) bool {
	const prefix = "sha256:"
	if len(d) != len(prefix)+2*sha256.Size || d[:len(prefix)] != prefix {
		return false
	}
	for _, c := range []byte(d[len(prefix):]) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// validName reports whether s is a name Alizé accepts for modules, blobs,
// secrets and kinds: 1 to MaxNameLength characters, lowercase ASCII
// letters, digits, '.', '_' and '-', starting with a letter or digit. Names
// may end up in paths and logs, so nothing else is allowed.
func validName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLength {
		return false
	}
	for i, c := range []byte(s) {
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// validID reports whether s is a printable ASCII identifier (a server id,
// a UAI) of 1 to MaxNameLength characters. It is compared exactly, never
// interpreted.
func validID(s string) bool { return printableUpTo(s, MaxNameLength) }

// printableUpTo reports whether s is 1 to max bytes of printable ASCII,
// spaces excluded.
func printableUpTo(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}
