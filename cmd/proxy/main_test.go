package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sigedge/sigedge/internal/cli"
)

func run(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cli.Run(ctx, program(), args, nil, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestHelpAndVersion(t *testing.T) {
	code, _, stderr := run(t, context.Background(), "--help")
	if code != 0 || !strings.Contains(stderr, "-config") || !strings.Contains(stderr, "-version") {
		t.Errorf("--help: code %d, output %q", code, stderr)
	}
	code, stdout, _ := run(t, context.Background(), "-version")
	if code != 0 || !strings.HasPrefix(stdout, "sigedge-proxy dev") {
		t.Errorf("-version: code %d, output %q", code, stdout)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadConfigExitsWithOneClearLine(t *testing.T) {
	dead := freePort(t) // nothing listens there once freePort returns
	tests := []struct{ name, config, want string }{
		{"bad yaml", "log: [oops", "invalid YAML"},
		{"unknown field", "proxy:\n  lisen: :1\n", "lisen"},
		{"negative interval", "rulesets:\n  poll_interval: -10s\n", "rulesets.poll_interval"},
		{"unreachable nats", fmt.Sprintf("nats:\n  embedded: false\n  urls: [nats://127.0.0.1:%d]\n  connect_timeout: 1s\nproxy:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n", dead), "cannot connect"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(t, context.Background(), "-config", writeConfig(t, tc.config))
			if code == 0 {
				t.Fatal("exit code 0")
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "sigedge-proxy: ") || !strings.Contains(last, tc.want) {
				t.Errorf("last line %q does not name the problem %q (stderr: %s)", last, tc.want, stderr)
			}
		})
	}
}

// TestServeAndShutdown runs the binary's main logic in-process on the bundled example: it becomes
// ready, serves the example rule set, and shuts down cleanly when signalled.
func TestServeAndShutdown(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	example := filepath.Join(filepath.Dir(file), "..", "..", "examples", "example-rules.json")
	port, adminPort := freePort(t), freePort(t)
	cfg := writeConfig(t, fmt.Sprintf(`
proxy:
  listen: 127.0.0.1:%d
  admin_listen: 127.0.0.1:%d
nats:
  data_dir: %s
  port: 0
rulesets:
  offline:
    - sdk_key: secret-example
      file: %s
`, port, adminPort, t.TempDir(), example))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		code, _, _ := run(t, ctx, "-config", cfg)
		done <- code
	}()

	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 20s (last error %v)", err)
		}
		select {
		case code := <-done:
			t.Fatalf("exited early with %d", code)
		case <-time.After(50 * time.Millisecond):
		}
	}
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/v2/download_config_specs/secret-example.json", port), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"new_checkout"`)) {
		t.Fatalf("rule set not served: %d %.200s", resp.StatusCode, body)
	}

	cancel() // as SIGTERM does
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("shutdown exit code %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not shut down within 30s")
	}
}
