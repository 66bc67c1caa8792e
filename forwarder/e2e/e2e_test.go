// Package e2e_test runs the whole event path with real parts: the official Go SDK, a proxy with its
// embedded JetStream, and a forwarder, against a fake Statsig. It lives apart from the forwarder's
// own tests so that they do not depend on the proxy building.
package e2e_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	statsig "github.com/statsig-io/go-sdk"

	"github.com/sigedge/sigedge/forwarder"
	"github.com/sigedge/sigedge/forwarder/forwardertest"
	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/wire"
	"github.com/sigedge/sigedge/proxy"
)

// TestEndToEndGoSDK: the official Go SDK logs events to a real proxy (embedded JetStream), a
// forwarder drains the stream to a fake Statsig, and every event arrives exactly once, with the
// SDK's key, headers and statsigMetadata.
func TestEndToEndGoSDK(t *testing.T) {
	fake := forwardertest.NewFake(t)
	// Rule sets and ID lists: this fake Statsig knows no key, so the SDK starts without rules and
	// still logs custom events.
	noRules := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"error":"unknown key"}`, http.StatusUnauthorized)
	}))
	t.Cleanup(noRules.Close)

	cfg := config.Default()
	cfg.Proxy.Listen, cfg.Proxy.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.NATS.Port, cfg.NATS.DataDir = 0, t.TempDir()
	cfg.Upstream.ConfigCDN, cfg.Upstream.API, cfg.Upstream.Events = noRules.URL, noRules.URL, fake.URL()
	cfg.RuleSets.Offline = nil
	cfg.RuleSets.Share.Enabled = false
	cfg.ClientKeys = nil
	cfg.Forwarder.AdminListen = "127.0.0.1:0"
	cfg.Forwarder.FlushInterval = 200 * time.Millisecond
	cfg.Forwarder.ReplayRate = 0
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("proxy and forwarder logs:\n%s", logs.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	px, err := proxy.NewApp(ctx, proxy.AppOptions{Config: cfg, Logger: logger.With("app", "proxy"), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := px.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer scancel()
		_ = px.Shutdown(sctx)
	})
	fw, err := forwarder.NewApp(ctx, forwarder.AppOptions{Config: cfg, Logger: logger.With("app", "forwarder"),
		Version: "test", NATSURLs: []string{px.NATSURL()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := fw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = fw.Shutdown(sctx)
	})

	const sdkKey = "secret-e2e0000000000000000000000000000000000000"
	opts := &statsig.Options{
		API:                  "http://" + px.Addr().String() + "/v1",
		LoggingInterval:      100 * time.Millisecond,
		LoggingMaxBufferSize: 30, // several log_event calls, merged again by the forwarder
		ConfigSyncInterval:   time.Hour,
		IDListSyncInterval:   time.Hour,
		InitTimeout:          5 * time.Second,
		IPCountryOptions:     statsig.IPCountryOptions{Disabled: true},
		UAParserOptions:      statsig.UAParserOptions{Disabled: true},
		OutputLoggerOptions:  statsig.OutputLoggerOptions{LogCallback: func(string, error) {}},
		StatsigLoggerOptions: statsig.StatsigLoggerOptions{DisableInitDiagnostics: true, DisableSyncDiagnostics: true, DisableApiDiagnostics: true},
	}
	client := statsig.NewClientWithOptions(sdkKey, opts)
	const n = 200
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("e2e-%d", i)
		client.LogEvent(statsig.Event{EventName: "e2e_event", User: statsig.User{UserID: fmt.Sprint("u", i)},
			Value: fmt.Sprint(i), Metadata: map[string]string{"id": want[i]}})
	}
	done := make(chan struct{})
	go func() { client.Shutdown(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("go-sdk Shutdown did not return")
	}

	fake.WaitIDs(t, want, 30*time.Second)
	counts, _ := fake.Counts()
	for _, id := range want {
		if counts[id] != 1 {
			t.Errorf("event %s arrived %d times", id, counts[id])
		}
	}
	for id, c := range counts {
		if id != "" && !strings.HasPrefix(id, "e2e-") {
			t.Errorf("unexpected event id %s (%d times)", id, c)
		}
	}
	for _, r := range fake.Accepted() {
		if r.Key != sdkKey || r.Path != "/v1/log_event" || r.SDKType != "go-sdk" || r.SDKVersion == "" {
			t.Errorf("request to %s for key %s with SDK %s/%s", r.Path, wire.KeyHash(r.Key), r.SDKType, r.SDKVersion)
		}
		if !strings.Contains(r.Meta, `"sessionID"`) || !strings.Contains(r.Meta, `"go-sdk"`) {
			t.Errorf("statsigMetadata %s is not the SDK's", r.Meta)
		}
	}
	t.Logf("%d events in %d requests to Statsig", n, len(fake.Accepted()))
}

// lockedBuffer collects the apps' logs, printed when the test fails.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
