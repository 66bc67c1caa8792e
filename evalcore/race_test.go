//go:build race

package evalcore

// raceEnabled thins the slowest conformance loops under the race detector
// (which slows evaluation ~10×); normal runs check every record.
const raceEnabled = true
