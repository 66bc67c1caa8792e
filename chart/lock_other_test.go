//go:build !unix

package chart

// lockFile does not lock where flock is missing: concurrent first runs may both build, and the
// rename that publishes each build is atomic, so the cache stays consistent.
func lockFile(string) (func(), error) { return func() {}, nil }
