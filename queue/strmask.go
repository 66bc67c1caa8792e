package queue

import (
	"math/bits"
	"sync"
)

// String masks: a bitmap pass over the body that lets the scanner find the end of a string with a
// few bit operations instead of reading it byte by byte. For every 64-byte block of the body there
// are two words: bit k of quotes[b] is set when byte 64*b+k is '"', bit k of attention[b] when it
// is a backslash or a control byte (below 0x20). A string whose first quote after the opening one
// comes before any attention byte ends at that quote and is valid; any other string (escapes,
// control bytes, no closing quote) is left to the byte-by-byte str, which knows every rule. Escaped
// quotes need no special care: the backslash before one is an attention byte, so such strings never
// take the fast path. On amd64 with AVX2 the words come from assembly, 64 bytes per iteration;
// elsewhere there are no masks and the scanner reads strings byte by byte.

// minMaskedBody is the smallest body worth the mask pass: below it, reading strings byte by byte
// costs less than setting up the masks.
const minMaskedBody = 512

// blockMasks holds the two words of every 64-byte block of a body, interleaved: quotes of block b
// at 2b, attention at 2b+1.
type blockMasks []uint64

// fillBlockMasks computes the masks of data into dst (grown as needed) and returns them.
func fillBlockMasks(dst blockMasks, data []byte) blockMasks {
	blocks := (len(data) + 63) / 64
	if cap(dst) < 2*blocks {
		dst = make(blockMasks, 2*blocks)
	}
	dst = dst[:2*blocks]
	full := len(data) / 64
	if full > 0 {
		blockMasksAsm(&data[0], full, &dst[0])
	}
	if rest := data[full*64:]; len(rest) > 0 {
		// The last, partial block: padded with spaces, which are neither quotes nor attention bytes.
		var tail [64]byte
		for k := copy(tail[:], rest); k < len(tail); k++ {
			tail[k] = ' '
		}
		blockMasksAsm(&tail[0], 1, &dst[2*full])
	}
	return dst
}

// blockMasksGeneric is the portable definition of the masks of whole 64-byte blocks: the assembly
// is tested against it.
func blockMasksGeneric(data []byte, dst []uint64) {
	for b := 0; b < len(data)/64; b++ {
		var q, a uint64
		for k, c := range data[64*b : 64*b+64] {
			if c == '"' {
				q |= 1 << k
			}
			if c == '\\' || c < 0x20 {
				a |= 1 << k
			}
		}
		dst[2*b], dst[2*b+1] = q, a
	}
}

// strEnd is the index after the closing quote of the string at i, when the masks settle it within
// the block of its first byte (most strings), else -1 (no masks, or see scanner.str). It is small
// enough to be inlined into the scanner's hot loop.
func (m blockMasks) strEnd(i int) int {
	j := i + 1
	b := 2 * (j >> 6)
	if b+1 >= len(m) {
		return -1
	}
	q, a := m[b]>>(j&63), m[b+1]>>(j&63)
	// q&-q-1 has the bits below q's lowest: the bytes before the first quote.
	if q == 0 || a&(q&-q-1) != 0 {
		return -1
	}
	return j + bits.TrailingZeros64(q) + 1
}

// maskPool recycles mask buffers (a quarter of the body's size).
var maskPool sync.Pool

func getMasks() *blockMasks {
	if m, ok := maskPool.Get().(*blockMasks); ok {
		return m
	}
	return new(blockMasks)
}

// putMasks keeps buffers for bodies up to 4 MiB: rare huge batches should not pin memory.
func putMasks(m *blockMasks) {
	if cap(*m) <= (4<<20)/32 {
		maskPool.Put(m)
	}
}
