package evalcore

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"unicode/utf8"
)

// h64 is SC's evaluation hash: the first 8 bytes of SHA-256, big-endian.
func h64(s string) uint64 {
	sum := sha256.Sum256([]byte(s))
	return binary.BigEndian.Uint64(sum[:8])
}

// h64Parts hashes a "." b "." c without building the joined string on the heap
// for short inputs.
func h64Parts(parts ...string) uint64 {
	var buf [256]byte
	b := buf[:0]
	for i, p := range parts {
		if i > 0 {
			b = append(b, '.')
		}
		b = append(b, p...)
	}
	sum := sha256.Sum256(b)
	return binary.BigEndian.Uint64(sum[:8])
}

// sha256B64 is standard base64 (padded) of SHA-256.
func sha256B64(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// djb2 hashes the Unicode scalar values of s (as SC does) into a uint32.
func djb2(s string) uint32 {
	var h uint32
	for _, r := range s {
		h = h*31 + uint32(r)
	}
	return h
}

// djb2String is djb2 printed in decimal.
func djb2String(s string) string { return strconv.FormatUint(uint64(djb2(s)), 10) }

// IDListKey is the key an ID list stores for a raw unit ID: the first 8
// characters of base64(sha256(id)).
func IDListKey(id string) string { return sha256B64(id)[:8] }

// HashName hashes a spec name for a client initialize response: "sha256",
// "djb2" or anything else (unchanged).
func HashName(name string, algo HashAlgorithm) string {
	switch algo {
	case HashSHA256:
		return sha256B64(name)
	case HashDJB2:
		return djb2String(name)
	}
	return name
}

func decodeRune(s string) (rune, int) { return utf8.DecodeRuneInString(s) }
