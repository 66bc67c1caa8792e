//go:build amd64 && !purego

#include "textflag.h"

// func blockMasksAVX2(src *byte, blocks int, dst *uint64)
//
// Per 64-byte block, in two 32-byte halves: special = bytes equal to '"' or '\\', or at most 0x1f
// (min(b, 0x1f) == b). VPMOVMSKB turns each half into 32 bits of the block's word.
TEXT ·blockMasksAVX2(SB), NOSPLIT, $0-24
	MOVQ src+0(FP), SI
	MOVQ blocks+8(FP), CX
	MOVQ dst+16(FP), DI
	MOVQ $0x22, AX
	MOVQ AX, X0
	VPBROADCASTB X0, Y0
	MOVQ $0x5c, AX
	MOVQ AX, X1
	VPBROADCASTB X1, Y1
	MOVQ $0x1f, AX
	MOVQ AX, X2
	VPBROADCASTB X2, Y2

loop:
	TESTQ CX, CX
	JZ    done
	VMOVDQU (SI), Y3
	VMOVDQU 32(SI), Y4

	VPCMPEQB Y3, Y0, Y5
	VPCMPEQB Y3, Y1, Y6
	VPOR     Y5, Y6, Y5
	VPMINUB  Y3, Y2, Y7
	VPCMPEQB Y7, Y3, Y7
	VPOR     Y5, Y7, Y5

	VPCMPEQB Y4, Y0, Y6
	VPCMPEQB Y4, Y1, Y8
	VPOR     Y6, Y8, Y6
	VPMINUB  Y4, Y2, Y8
	VPCMPEQB Y8, Y4, Y8
	VPOR     Y6, Y8, Y6

	VPMOVMSKB Y5, AX
	VPMOVMSKB Y6, BX
	SHLQ $32, BX
	ORQ  BX, AX
	MOVQ AX, (DI)

	ADDQ $64, SI
	ADDQ $8, DI
	DECQ CX
	JMP  loop

done:
	VZEROUPPER
	RET
