//go:build !race

package evalcore

const raceEnabled = false
