// Package sha256x computes Statsig's evaluation hash: the first 8 bytes, read big-endian, of
// SHA-256(prefix + "." + s), for a prefix fixed when the rule set is compiled (a salt, or
// "specSalt.ruleSalt") and a unit id known only at evaluation.
//
// The input is assembled in a stack buffer and hashed with crypto/sha256 (which uses the CPU's
// SHA extensions where present), so the hot path does not allocate.
package sha256x

import (
	"crypto/sha256"
	"encoding/binary"
)

// maxStack bounds the inputs assembled on the stack; longer ones are built on the heap.
const maxStack = 256

// Prefix is a hash-input prefix prepared at compile time.
type Prefix struct {
	full string
}

// New prepares prefix for Sum64.
func New(prefix string) Prefix { return Prefix{full: prefix} }

// String returns the prefix.
func (p *Prefix) String() string { return p.full }

// Sum64 returns the first 8 bytes, big-endian, of SHA-256(prefix "." s).
func (p *Prefix) Sum64(s string) uint64 { return Sum64(p.full, s) }

// Sum64 is the evaluation hash of prefix "." s.
func Sum64(prefix, s string) uint64 {
	var buf [maxStack]byte
	b := append(append(append(buf[:0], prefix...), '.'), s...)
	sum := sha256.Sum256(b)
	return binary.BigEndian.Uint64(sum[:8])
}
