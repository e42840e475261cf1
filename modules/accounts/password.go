package accounts

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"unicode/utf16"

	"golang.org/x/crypto/md4" //lint:ignore SA1019 sambaNTPassword is MD4 by definition: compatibility, not security
)

// passwordAlphabet has no look-alikes (0 O o, 1 l I): initial passwords
// are read off paper by pupils. 54 symbols: 10 give 57 bits.
const passwordAlphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789"

// randomPassword returns n symbols of passwordAlphabet from crypto/rand,
// without modulo bias.
func randomPassword(n int) string {
	const max = 256 - 256%len(passwordAlphabet)
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		rand.Read(buf[:]) // never fails (crypto/rand's documented promise)
		for _, b := range buf {
			if int(b) < max && len(out) < n {
				out = append(out, passwordAlphabet[int(b)%len(passwordAlphabet)])
			}
		}
	}
	return string(out)
}

// birthDatePassword is a birth date YYYY-MM-DD written DDMMYYYY.
func birthDatePassword(iso string) string {
	return iso[8:10] + iso[5:7] + iso[0:4]
}

// sshaHash is the userPassword value of a password: {SSHA}, salted SHA-1,
// as slapd's own `slappasswd` writes and every slapd verifies without a
// module (see docs/kinds/accounts.md for why not a slower scheme).
func sshaHash(password string) string {
	var salt [8]byte
	rand.Read(salt[:])
	h := sha1.New()
	h.Write([]byte(password))
	h.Write(salt[:])
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(h.Sum(nil), salt[:]...))
}

// ntHash is the sambaNTPassword of a password: MD4 of its UTF-16LE form,
// 32 uppercase hex digits.
func ntHash(password string) string {
	units := utf16.Encode([]rune(password))
	b := make([]byte, 2*len(units))
	for i, u := range units {
		binary.LittleEndian.PutUint16(b[2*i:], u)
	}
	h := md4.New()
	h.Write(b)
	clear(b)
	return strings.ToUpper(hex.EncodeToString(h.Sum(nil)))
}
