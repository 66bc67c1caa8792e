package forwardertest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sigedge/sigedge/internal/config"
)

// LockedBuffer collects output written from several goroutines (a child's stdout and stderr, an
// app's logger), to be printed when a test fails.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The forwarder binary, built once per test binary: a build takes seconds.
var build struct {
	once       sync.Once
	dir, path  string
	err        error
	removeOnce sync.Once
}

// Binary builds cmd/forwarder (once per test binary) and returns its path. A TestMain calling
// RemoveBinary after the tests removes it.
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "sigedge-forwarder-test-")
		if build.err != nil {
			return
		}
		build.path = filepath.Join(build.dir, "forwarder")
		goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
		out, err := exec.Command(goTool, "build", "-o", build.path, "github.com/sigedge/sigedge/cmd/forwarder").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// RemoveBinary removes what Binary built (nothing when it built nothing). Call it from TestMain once
// the tests have run.
func RemoveBinary() {
	build.removeOnce.Do(func() {
		if build.dir != "" {
			_ = os.RemoveAll(build.dir)
		}
	})
}

// WriteConfig writes a configuration file for a forwarder process, checks that it loads, and returns
// its path.
func WriteConfig(t testing.TB, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sigedge.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path, nil); err != nil {
		t.Fatalf("test config: %v\n%s", err, yaml)
	}
	return path
}

// Process is the forwarder binary running as a child of the test.
type Process struct {
	Cmd  *exec.Cmd
	out  LockedBuffer
	done chan struct{}
}

// StartProcess runs the forwarder binary with the configuration file at configPath, without the
// test's SIGEDGE_ environment variables (the file is the whole configuration). It is killed at the
// end of the test if still running, and its output is logged, under name, when the test failed.
func StartProcess(t testing.TB, name, configPath string) *Process {
	t.Helper()
	p := &Process{done: make(chan struct{})}
	p.Cmd = exec.Command(Binary(t), "-config", configPath)
	p.Cmd.Stdout, p.Cmd.Stderr = &p.out, &p.out
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, config.EnvPrefix) {
			p.Cmd.Env = append(p.Cmd.Env, kv)
		}
	}
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.Cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.String())
		}
	})
	return p
}

// Signal sends sig to the process.
func (p *Process) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// Wait waits until the process has exited and returns its exit code (-1 when a signal ended it),
// failing the test after timeout.
func (p *Process) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("forwarder did not exit within %s", timeout)
	}
	return p.Cmd.ProcessState.ExitCode()
}

// Kill kills the process with SIGKILL, as a crash would end it, and returns its exit code once it
// has exited (-1 unless it had exited already).
func (p *Process) Kill(t testing.TB) int {
	t.Helper()
	p.Signal(t, syscall.SIGKILL)
	return p.Wait(t, 10*time.Second)
}

// SkipUnlessBench skips a measurement unless SIGEDGE_BENCH is set: measurements take minutes. The
// skip message says "set SIGEDGE_BENCH=1 to " + what.
func SkipUnlessBench(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("SIGEDGE_BENCH") == "" {
		t.Skip("set SIGEDGE_BENCH=1 to " + what)
	}
}

// EnvInt returns the positive integer set in the environment variable name (a benchmark's knob), or
// def when it is unset.
func EnvInt(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q is not a positive integer", name, v)
	}
	return n
}
