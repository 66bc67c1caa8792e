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
	logs := &forwardertest.LockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("proxy and forwarder logs:\n%s", logs.String())
		}
	})
	px, _ := startProxy(t, proxy.AppOptions{Config: cfg, Logger: logger.With("app", "proxy"), Version: "test"})
	startForwarder(t, forwarder.AppOptions{Config: cfg, Logger: logger.With("app", "forwarder"),
		Version: "test", NATSURLs: []string{px.NATSURL()}})

	const sdkKey = "secret-e2e0000000000000000000000000000000000000"
	opts := goSDKOptions("http://" + px.Addr().String() + "/v1")
	opts.LoggingMaxBufferSize = 30 // several log_event calls, merged again by the forwarder
	opts.ConfigSyncInterval = time.Hour
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

// startProxy starts a proxy in-process (see startApp).
func startProxy(t *testing.T, o proxy.AppOptions) (*proxy.App, func() error) {
	t.Helper()
	return startApp(t, func(ctx context.Context) (*proxy.App, error) { return proxy.NewApp(ctx, o) })
}

// startForwarder starts a forwarder in-process, shut down at the end of the test.
func startForwarder(t *testing.T, o forwarder.AppOptions) *forwarder.App {
	t.Helper()
	fw, _ := startApp(t, func(ctx context.Context) (*forwarder.App, error) { return forwarder.NewApp(ctx, o) })
	return fw
}

// startApp makes an app with newApp and starts it. It returns the app and a function that shuts it
// down: the first call does, and returns the shutdown's error. The end of the test shuts it down if
// nothing did.
func startApp[A interface {
	Start() error
	Shutdown(context.Context) error
}](t *testing.T, newApp func(context.Context) (A, error)) (A, func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	a, err := newApp(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() (err error) {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err = a.Shutdown(ctx)
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return a, stop
}

// goSDKOptions are options for an official go-sdk talking to api: it flushes events every 100 ms,
// loads no ID lists in the background, skips the user-agent and country lookups, and logs nothing.
func goSDKOptions(api string) *statsig.Options {
	return &statsig.Options{
		API:                  api,
		LoggingInterval:      100 * time.Millisecond,
		IDListSyncInterval:   time.Hour,
		InitTimeout:          5 * time.Second,
		IPCountryOptions:     statsig.IPCountryOptions{Disabled: true},
		UAParserOptions:      statsig.UAParserOptions{Disabled: true},
		OutputLoggerOptions:  statsig.OutputLoggerOptions{LogCallback: func(string, error) {}},
		StatsigLoggerOptions: statsig.StatsigLoggerOptions{DisableInitDiagnostics: true, DisableSyncDiagnostics: true, DisableApiDiagnostics: true},
	}
}
