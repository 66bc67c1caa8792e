//go:build !amd64 || purego

package queue

import "unsafe"

// haveBlockMasks is false: without SIMD the mask pass costs more than it saves.
const haveBlockMasks = false

// blockMasksAsm is the portable code: only tests ask for masks on these platforms.
func blockMasksAsm(src *byte, blocks int, dst *uint64) {
	blockMasksGeneric(unsafe.Slice(src, 64*blocks), unsafe.Slice(dst, blocks))
}
