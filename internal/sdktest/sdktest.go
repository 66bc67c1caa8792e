// Package sdktest gives integration tests the official Statsig SDKs as real clients: the Node SDKs
// (statsig-node, @statsig/statsig-node-core, @statsig/js-client) installed with npm from this
// package's node/package-lock.json into a cache shared by all test binaries.
package sdktest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// nodeDir is the directory of package.json, relative to this source file.
func nodeDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "node")
}

// NodeModules returns a directory whose node_modules holds the pinned Node SDKs, installing them
// with `npm ci` on first use. It skips the test when node or npm is missing, and fails it when the
// install fails. Scripts run with NODE_PATH set to the returned directory's node_modules (see RunNode).
func NodeModules(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: skipping the Node SDK interop test")
	}
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("npm is not installed: skipping the Node SDK interop test")
	}
	src := nodeDir()
	lock, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	sum := sha256.Sum256(lock)
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "sigedge-sdktest", hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	// Several test binaries may install at once: serialise with an exclusive lock on a file.
	lf, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("sdktest: lock: %v", err)
	}
	defer syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
	done := filepath.Join(dir, ".installed")
	if _, err := os.Stat(done); err == nil {
		return dir
	}
	for _, f := range []string{"package.json", "package-lock.json"} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatalf("sdktest: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatalf("sdktest: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("sdktest: npm ci in %s failed: %v\n%s", dir, err, out.String())
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	return dir
}

// RunNode runs a Node script (the source text) with the SDKs on its module path, the given extra
// environment, and a time limit. It returns stdout; stderr is included in the error on failure.
func RunNode(t testing.TB, timeout time.Duration, script string, env ...string) ([]byte, error) {
	t.Helper()
	dir := NodeModules(t)
	f := filepath.Join(t.TempDir(), "script.js")
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", f)
	cmd.Env = append(append(os.Environ(), "NODE_PATH="+filepath.Join(dir, "node_modules")), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("node script: %w\nstderr:\n%s", err, stderr.String())
	}
	return stdout.Bytes(), nil
}
