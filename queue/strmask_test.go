package queue

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestBlockMasksMatchTheirDefinition checks the platform's mask code (AVX2 assembly on amd64)
// against blockMasksGeneric on bytes of every kind, for lengths around block boundaries, the partial
// last block included.
func TestBlockMasksMatchTheirDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// Bytes the masks single out, their neighbours, and bytes that differ only in the sign bit.
	alphabet := []byte{'"', '\\', 0x00, 0x1f, 0x20, 0x21, 0x5b, 0x5d, 0x7f, 0x80, 0x9f, 0xa2, 0xdc, 0xff, 'a', '\t', '\n'}
	for _, n := range []int{0, 1, 63, 64, 65, 127, 128, 129, 1000, 4096 + 17} {
		for round := range 20 {
			data := make([]byte, n)
			for k := range data {
				if round%2 == 0 {
					data[k] = alphabet[rng.IntN(len(alphabet))]
				} else {
					data[k] = byte(rng.Uint32())
				}
			}
			got := fillBlockMasks(nil, data)
			padded := append(bytes.Clone(data), bytes.Repeat([]byte{' '}, 63)...)
			want := make([]uint64, (n+63)/64)
			blockMasksGeneric(padded[:len(want)*64], want)
			if !slices.Equal(got, want) {
				t.Fatalf("n=%d round %d: masks\n%x\nwant\n%x", n, round, got, want)
			}
		}
	}
}

// TestBlockMasksWithoutSIMD runs the mask tests as on a CPU without AVX2 (or another platform):
// DecodeBatch reads strings byte by byte, and masks asked for by tests come from the portable code.
// No test of this package runs in parallel, so flipping the switch is safe here.
func TestBlockMasksWithoutSIMD(t *testing.T) {
	if !haveBlockMasks {
		t.Skip("no SIMD masks on this platform: the other tests already run without them")
	}
	setBlockMasks(t, false)
	t.Run("definition", TestBlockMasksMatchTheirDefinition)
	t.Run("decode", TestDecodeBatchWithMasksIsDecodeBatch)
}

// TestDecodeBatchWithMasksIsDecodeBatch decodes bodies whose strings sit across block boundaries,
// with escapes and control bytes at every offset, with and without masks: the results, errors
// included, must be the same.
func TestDecodeBatchWithMasksIsDecodeBatch(t *testing.T) {
	specials := []string{``, `\"`, `\\`, `\u0041`, `\n`, "\x01", "\t", `\x`, `\u12G4`, `é`, "\xff"}
	for _, sp := range specials {
		for pad := range 70 {
			for _, closed := range []bool{true, false} {
				str := strings.Repeat("a", pad) + sp + strings.Repeat("b", 70-pad)
				body := `{"events":[{"eventName":"e","v":"` + str + `"}],"n":"` + strings.Repeat("c", pad) + `"}`
				if !closed {
					body = `{"events":[{"eventName":"e","v":"` + str
				}
				compareMasked(t, []byte(body))
			}
		}
	}
	compareMasked(t, sampleBatch(100))
}

func compareMasked(t *testing.T, data []byte) {
	t.Helper()
	var plain, masked Batch
	plainErr := plain.decode(data, nil)
	maskedErr := masked.decode(data, fillBlockMasks(nil, data))
	if fmt.Sprint(plainErr) != fmt.Sprint(maskedErr) {
		t.Fatalf("%q: error %v with masks, %v without", data, maskedErr, plainErr)
	}
	if plainErr == nil && !reflect.DeepEqual(plain, masked) {
		t.Fatalf("%q: batch %+v with masks, %+v without", data, masked, plain)
	}
}

// BenchmarkBlockMasks is the cost of the mask pass alone over a 100-event batch.
func BenchmarkBlockMasks(b *testing.B) {
	body := sampleBatch(100)
	b.SetBytes(int64(len(body)))
	var m blockMasks
	for b.Loop() {
		m = fillBlockMasks(m, body)
	}
}
