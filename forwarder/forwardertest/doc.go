// Package forwardertest is what the forwarder's tests share, in-process and as a binary: a fake of
// Statsig's event API (fake.go), an embedded JetStream holding the event streams and batches as a
// proxy stores them (stream.go), and the forwarder binary run as a child process (process.go). Only
// tests import it.
package forwardertest
