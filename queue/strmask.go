package queue

import (
	"math/bits"
	"sync"
)

// String masks: a bitmap pass over the body that lets the scanner find the end of a string with a
// few bit operations instead of reading it byte by byte. For every 64-byte block of the body there
// is one word whose bit k is set when byte 64*b+k is special inside a string: '"', a backslash or
// a control byte (below 0x20). When the first special byte after an opening quote is a quote, the
// string ends there and is valid; any other string (escapes, control bytes, no closing quote) is
// left to the byte-by-byte readStr, which knows every rule. Escaped quotes need no care of their
// own: the backslash before one comes first. On amd64 with AVX2 the words come from assembly, 64
// bytes per iteration; elsewhere there are no masks and the scanner reads strings byte by byte.

// minMaskedBody is the smallest body worth the mask pass: below it, reading strings byte by byte
// costs less than setting up the masks.
const minMaskedBody = 512

// blockMasks holds the special-byte word of every 64-byte block of a body.
type blockMasks []uint64

// fillBlockMasks computes the masks of data into dst (grown as needed) and returns them.
func fillBlockMasks(dst blockMasks, data []byte) blockMasks {
	blocks := (len(data) + 63) / 64
	if cap(dst) < blocks {
		dst = make(blockMasks, blocks)
	}
	dst = dst[:blocks]
	full := len(data) / 64
	if full > 0 {
		blockMasksAsm(&data[0], full, &dst[0])
	}
	if rest := data[full*64:]; len(rest) > 0 {
		// The last, partial block: padded with spaces, which are not special.
		var tail [64]byte
		for k := copy(tail[:], rest); k < len(tail); k++ {
			tail[k] = ' '
		}
		blockMasksAsm(&tail[0], 1, &dst[full])
	}
	return dst
}

// blockMasksGeneric is the portable definition of the masks of whole 64-byte blocks: the assembly
// is tested against it.
func blockMasksGeneric(data []byte, dst []uint64) {
	for b := 0; b < len(data)/64; b++ {
		var w uint64
		for k, c := range data[64*b : 64*b+64] {
			if c == '"' || c == '\\' || c < 0x20 {
				w |= 1 << k
			}
		}
		dst[b] = w
	}
}

// nextSpecial is the index of the first special byte in the 64 bytes from j, or -1 when there is
// none there or j is in the last block (the caller reads on byte by byte). It is small enough to be
// inlined into the scanner's hot loop.
func (m blockMasks) nextSpecial(j int) int {
	b := j >> 6
	if b+1 >= len(m) {
		return -1
	}
	// The word of the 64 bytes from j, from j's block and the next: the next block's word is
	// shifted up by 64-s in two steps, so that no shift reaches 64 (s == 0 takes none of it).
	s := uint(j & 63)
	if w := m[b]>>s | m[b+1]<<1<<(63-s); w != 0 {
		return j + bits.TrailingZeros64(w)
	}
	return -1
}

// maskPool recycles mask buffers (an eighth of the body's size).
var maskPool sync.Pool

func getMasks() *blockMasks {
	if m, ok := maskPool.Get().(*blockMasks); ok {
		return m
	}
	return new(blockMasks)
}

// putMasks keeps buffers for bodies up to 4 MiB: rare huge batches should not pin memory.
func putMasks(m *blockMasks) {
	if cap(*m) <= (4<<20)/64 {
		maskPool.Put(m)
	}
}
