package chart

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"
	"testing"
	"time"
)

// helmModule is the Helm release the tests render with. It is built from source through the Go module
// proxy (Helm is a Go program) into a cache shared by test runs, and never enters sigedge's go.mod.
const helmModule = "helm.sh/helm/v3/cmd/helm@v3.17.3"

// fetchFailure recognises a Go toolchain that cannot download modules (no network, GOPROXY=off):
// only then are the chart tests skipped; any other build failure fails them.
var fetchFailure = regexp.MustCompile(`(?i)dial tcp|no such host|connection refused|i/o timeout|TLS handshake timeout|network is unreachable|module lookup disabled|GOPROXY=off|GOFLAGS=-mod=vendor|temporary failure in name resolution`)

var (
	toolsOnce sync.Once
	tools     struct {
		helm, kubecheck string
		skip            string
		err             error
	}
)

// requireTools returns the paths of helm and of testdata/kubecheck, building them on first use.
func requireTools(t *testing.T) (helm, kubecheck string) {
	t.Helper()
	toolsOnce.Do(func() {
		start := time.Now()
		tools.helm, tools.skip, tools.err = buildHelm()
		if tools.err == nil && tools.skip == "" {
			tools.kubecheck, tools.skip, tools.err = buildKubecheck()
		}
		if d := time.Since(start); d > 5*time.Second {
			fmt.Fprintf(os.Stderr, "chart tests: built helm and kubecheck in %s (cached for later runs)\n", d.Round(time.Second))
		}
	})
	if tools.skip != "" {
		t.Skip(tools.skip)
	}
	if tools.err != nil {
		t.Fatal(tools.err)
	}
	return tools.helm, tools.kubecheck
}

func toolsDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "sigedge-chart-tools")
	return dir, os.MkdirAll(dir, 0o755)
}

func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("no go command in PATH")
	}
	return p, nil
}

// goEnv is the environment of the tool builds: the caller's, without workspace or -mod flags that
// could drag sigedge's go.mod in.
func goEnv(extra ...string) []string {
	return append(os.Environ(), append([]string{"GOWORK=off", "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0"}, extra...)...)
}

func buildHelm() (path, skip string, err error) {
	dir, err := toolsDir()
	if err != nil {
		return "", "", err
	}
	name := "helm-" + regexp.MustCompile(`[^A-Za-z0-9.]+`).ReplaceAllString(helmModule[len("helm.sh/helm/v3/cmd/helm@"):], "_")
	return buildCached(dir, name, func(goBin, out string) *exec.Cmd {
		// go install of pkg@version runs outside any module; GOBIN takes the binary.
		cmd := exec.Command(goBin, "install", "-ldflags=-s -w", helmModule)
		cmd.Dir = dir
		cmd.Env = goEnv("GOBIN=" + out)
		return cmd
	}, "helm")
}

func buildKubecheck() (path, skip string, err error) {
	src, err := filepath.Abs(filepath.Join("testdata", "kubecheck"))
	if err != nil {
		return "", "", err
	}
	h := sha256.New()
	for _, f := range []string{"main.go", "go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", "", err
		}
		h.Write(b)
	}
	h.Write([]byte(runtime.Version()))
	dir, err := toolsDir()
	if err != nil {
		return "", "", err
	}
	return buildCached(dir, "kubecheck-"+hex.EncodeToString(h.Sum(nil))[:16], func(goBin, out string) *exec.Cmd {
		cmd := exec.Command(goBin, "build", "-o", filepath.Join(out, "kubecheck"), ".")
		cmd.Dir = src
		cmd.Env = goEnv()
		return cmd
	}, "kubecheck")
}

// buildCached returns dir/name, building it with build (which writes binary bin into a temporary
// directory) unless it exists. A file lock keeps concurrent test runs from building it twice.
func buildCached(dir, name string, build func(goBin, out string) *exec.Cmd, bin string) (path, skip string, err error) {
	final := filepath.Join(dir, name)
	if st, err := os.Stat(final); err == nil && st.Mode().IsRegular() {
		return final, "", nil
	}
	unlock, err := lockFile(filepath.Join(dir, name+".lock"))
	if err != nil {
		return "", "", err
	}
	defer unlock()
	if _, err := os.Stat(final); err == nil {
		return final, "", nil // built by another run while we waited
	}
	goBin, err := goTool()
	if err != nil {
		return "", "cannot build " + name + ": " + err.Error(), nil
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(tmp)
	cmd := build(goBin, tmp)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if fetchFailure.Match(out.Bytes()) {
			return "", fmt.Sprintf("skipping: the Go toolchain cannot fetch the modules to build %s (%s):\n%s", name, err, lastLines(out.String(), 10)), nil
		}
		return "", "", fmt.Errorf("building %s: %v\n%s", name, err, lastLines(out.String(), 30))
	}
	if err := os.Rename(filepath.Join(tmp, bin), final); err != nil {
		return "", "", err
	}
	return final, "", nil
}

func lastLines(s string, n int) string {
	lines := regexp.MustCompile(`\r?\n`).Split(s, -1)
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	return b.String()
}
