//go:build amd64 && !purego

package queue

import "testing"

// setBlockMasks switches the AVX2 mask pass on or off for the rest of the test.
func setBlockMasks(t *testing.T, on bool) {
	old := haveBlockMasks
	haveBlockMasks = on
	t.Cleanup(func() { haveBlockMasks = old })
}
