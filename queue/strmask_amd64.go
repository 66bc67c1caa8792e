//go:build amd64 && !purego

package queue

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// haveBlockMasks says whether blockMasksAsm is fast here; without AVX2 the scanner does without
// masks.
var haveBlockMasks = cpu.X86.HasAVX2

// blockMasksAVX2 writes the masks of blocks 64-byte blocks from src to dst (a word per block).
//
//go:noescape
func blockMasksAVX2(src *byte, blocks int, dst *uint64)

// blockMasksAsm computes masks with AVX2, or with the portable code on a CPU without it (only
// tests ask for masks there).
func blockMasksAsm(src *byte, blocks int, dst *uint64) {
	if !haveBlockMasks {
		blockMasksGeneric(unsafe.Slice(src, 64*blocks), unsafe.Slice(dst, blocks))
		return
	}
	blockMasksAVX2(src, blocks, dst)
}
