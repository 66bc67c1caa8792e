//go:build !amd64 || purego

package queue

import "testing"

// setBlockMasks is never reached here (haveBlockMasks is false): the test that calls it skips.
func setBlockMasks(t *testing.T, on bool) { t.Fatal("no SIMD masks on this platform") }
