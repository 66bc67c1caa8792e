package configcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sigedge/sigedge/configcache/configcachetest"
	"github.com/sigedge/sigedge/internal/config"
)

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const testPoll = 100 * time.Millisecond

// testConfig is a valid configuration pointed at the fake upstream, with short intervals.
func testConfig(t *testing.T, up *configcachetest.Upstream, mod func(*config.Config)) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Upstream.ConfigCDN = up.URL
	cfg.Upstream.API = up.URL
	cfg.Upstream.Timeout = 2 * time.Second
	cfg.RuleSets.PollInterval = testPoll
	cfg.RuleSets.PollJitter = 10 * time.Millisecond
	cfg.RuleSets.IdleTimeout = time.Minute
	cfg.RuleSets.InvalidKeyTTL = time.Minute
	cfg.RuleSets.IDListInterval = testPoll
	cfg.RuleSets.Offline = nil
	cfg.RuleSets.Share.Enabled = false
	cfg.RuleSets.Share.LeaseTTL = time.Second
	cfg.ClientKeys = nil
	cfg.NATS.DataDir = t.TempDir()
	if mod != nil {
		mod(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	return cfg
}

type testCache struct {
	*Cache
	reg  *prometheus.Registry
	logs *syncBuffer
}

// newTestCache builds a cache whose logs are checked for secret keys at the end of the test.
func newTestCache(t *testing.T, opts Options) *testCache {
	t.Helper()
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.Registry = reg
	c, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if out := logs.String(); strings.Contains(out, "secret-") {
			t.Errorf("a secret key was logged:\n%s", out)
		}
		if testing.Verbose() {
			t.Logf("cache logs:\n%s", logs.String())
		}
	})
	return &testCache{Cache: c, reg: reg, logs: logs}
}

func spec(t int64, pass bool) configcachetest.Spec {
	return configcachetest.Spec{Time: t, Gates: []configcachetest.Gate{{Name: "g", Pass: pass}}}
}

func TestColdFetchIsSharedThenPolledWithSinceTime(t *testing.T) {
	for _, f := range []Format{FormatV1, FormatV2} {
		t.Run(f.String(), func(t *testing.T) {
			up := configcachetest.New(t)
			key := "secret-cold-" + f.String()
			up.SetSpec(key, spec(1000, true))
			c := newTestCache(t, Options{Config: testConfig(t, up, nil)})

			// 50 concurrent first requests share one upstream fetch.
			var wg sync.WaitGroup
			entries := make([]*Entry, 50)
			errs := make([]error, 50)
			for i := range entries {
				wg.Add(1)
				go func() {
					defer wg.Done()
					entries[i], errs[i] = c.Get(context.Background(), key, f)
				}()
			}
			wg.Wait()
			for i := range entries {
				if errs[i] != nil {
					t.Fatalf("Get %d: %v", i, errs[i])
				}
				if entries[i] != entries[0] {
					t.Fatalf("Get %d returned another entry", i)
				}
			}
			endpoint := "dcs_" + f.String()
			if n := up.Count("", endpoint); n != 1 {
				t.Fatalf("upstream fetches for 50 concurrent first requests: got %d, want 1", n)
			}
			e := entries[0]
			if e.Time != 1000 || e.Format != f || e.Source != SourceUpstream || len(e.Gzip) == 0 || e.ETag == "" {
				t.Fatalf("entry: time %d format %s source %s gzip %d etag %q", e.Time, e.Format, e.Source, len(e.Gzip), e.ETag)
			}
			// Polls ask with sinceTime; {"has_updates":false} keeps the very same entry.
			unchanged := c.m.updates.WithLabelValues(f.String(), "upstream", "unchanged")
			up.WaitFor(t, 5*time.Second, "two polls", func() bool { return counterValue(unchanged) >= 2 })
			for _, r := range up.Requests(func(r Request) bool { return r.Endpoint == endpoint })[1:] {
				if r.SinceTime != 1000 {
					t.Fatalf("poll sinceTime: got %d, want 1000", r.SinceTime)
				}
				if r.Header.Get("STATSIG-API-KEY") != key {
					t.Fatalf("poll without the key header")
				}
			}
			got, err := c.Get(context.Background(), key, f)
			if err != nil || got != e {
				t.Fatalf("after not-modified polls: entry %p (err %v), want the same %p", got, err, e)
			}
		})
	}
}

// Request is the fake's request record (alias for brevity).
type Request = configcachetest.Request

func TestRuleChangeReachesTheCacheWithinOnePoll(t *testing.T) {
	up := configcachetest.New(t)
	key := "secret-change"
	up.SetSpec(key, spec(1000, true))
	c := newTestCache(t, Options{Config: testConfig(t, up, nil)})
	e1, err := c.Get(context.Background(), key, FormatV2)
	if err != nil {
		t.Fatal(err)
	}
	up.SetSpec(key, spec(2000, false))
	changedAt := time.Now()
	up.WaitFor(t, testPoll+time.Second, "the new rule set", func() bool {
		e, err := c.Get(context.Background(), key, FormatV2)
		return err == nil && e.Time == 2000
	})
	e2, _ := c.Get(context.Background(), key, FormatV2)
	if e2 == e1 || bytes.Equal(e2.Payload, e1.Payload) || e2.ETag == e1.ETag {
		t.Fatal("entry not replaced")
	}
	t.Logf("change visible after %s", time.Since(changedAt))
}

func TestUpstreamTroubleKeepsTheLastGoodRuleSet(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(up *configcachetest.Upstream, key string)
		result  string // updates metric result that must grow
	}{
		{"503", func(up *configcachetest.Upstream, _ string) { up.SetMode(configcachetest.Fail) }, "failed"},
		{"timeout", func(up *configcachetest.Upstream, _ string) { up.SetMode(configcachetest.Hang) }, "failed"},
		{"not JSON", func(up *configcachetest.Upstream, _ string) { up.SetMode(configcachetest.Garbage) }, "rejected"},
		{"not a rule set", func(up *configcachetest.Upstream, key string) {
			up.SetPayload(key, 1, []byte(`{"time":5000,"message":"maintenance"}`))
		}, "rejected"},
		{"section of the wrong kind", func(up *configcachetest.Upstream, key string) {
			up.SetPayload(key, 1, []byte(`{"time":5000,"feature_gates":"nope","dynamic_configs":[]}`))
		}, "rejected"},
		{"does not compile", func(up *configcachetest.Upstream, key string) {
			up.SetPayload(key, 1, []byte(`{"time":5000,"feature_gates":[1],"has_updates":true}`))
		}, "rejected"},
		{"wrong format", func(up *configcachetest.Upstream, key string) {
			up.SetPayload(key, 1, spec(5000, false).V2())
		}, "rejected"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := configcachetest.New(t)
			key := "secret-trouble"
			up.SetSpec(key, spec(1000, true))
			cfg := testConfig(t, up, func(c *config.Config) { c.Upstream.Timeout = 300 * time.Millisecond })
			c := newTestCache(t, Options{Config: cfg, BreakerFailures: 1000})
			good, err := c.Get(context.Background(), key, FormatV1)
			if err != nil {
				t.Fatal(err)
			}
			tc.breakIt(up, key)
			m := c.m.updates.WithLabelValues("v1", "upstream", tc.result)
			up.WaitFor(t, 10*time.Second, "two failed polls", func() bool { return counterValue(m) >= 2 })
			got, err := c.Get(context.Background(), key, FormatV1)
			if err != nil || got != good {
				t.Fatalf("after upstream trouble: entry %p err %v, want the last good %p", got, err, good)
			}
		})
	}
}

func TestRefusedKeyIsNegativelyCached(t *testing.T) {
	up := configcachetest.New(t)
	c := newTestCache(t, Options{Config: testConfig(t, up, nil)})
	for i := 0; i < 20; i++ {
		_, err := c.Get(context.Background(), "secret-unknown", FormatV1)
		if !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("Get %d: got %v, want ErrInvalidKey", i, err)
		}
	}
	if n := up.Count("", "dcs_v1"); n != 1 {
		t.Fatalf("upstream calls for 20 requests with a refused key: got %d, want 1", n)
	}
	if c.keys.Len() != 0 {
		t.Fatalf("a refused key entered the LRU")
	}
	// After invalid_key_ttl the key is asked again.
	c.negatives.Add("invalid|secret-unknown", negative{until: time.Now().Add(-time.Second)})
	if _, err := c.Get(context.Background(), "secret-unknown", FormatV1); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("after TTL: %v", err)
	}
	if n := up.Count("", "dcs_v1"); n != 2 {
		t.Fatalf("upstream calls after the TTL: got %d, want 2", n)
	}
}

func TestRevokedKeyStopsBeingServed(t *testing.T) {
	up := configcachetest.New(t)
	key := "secret-revoked"
	up.SetSpec(key, spec(1000, true))
	c := newTestCache(t, Options{Config: testConfig(t, up, nil)})
	if _, err := c.Get(context.Background(), key, FormatV1); err != nil {
		t.Fatal(err)
	}
	up.RemoveKey(key)
	up.WaitFor(t, 5*time.Second, "the key to be dropped", func() bool {
		_, err := c.Get(context.Background(), key, FormatV1)
		return errors.Is(err, ErrInvalidKey)
	})
	if c.keys.Len() != 0 {
		t.Fatal("revoked key still held")
	}
}

func TestColdFailureIsNotAmplified(t *testing.T) {
	up := configcachetest.New(t)
	up.SetSpec("secret-down", spec(1000, true))
	up.SetMode(configcachetest.Fail)
	cfg := testConfig(t, up, func(c *config.Config) { c.RuleSets.PollInterval = time.Minute })
	c := newTestCache(t, Options{Config: cfg})
	for i := 0; i < 20; i++ {
		_, err := c.Get(context.Background(), "secret-down", FormatV2)
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Get %d: got %v, want ErrUnavailable", i, err)
		}
	}
	if n := up.Count("", "dcs_v2"); n != 1 {
		t.Fatalf("upstream calls for 20 requests while Statsig is down: got %d, want 1", n)
	}
}

func TestKeyAdmission(t *testing.T) {
	up := configcachetest.New(t)
	up.SetSpec("secret-allowed", spec(1000, true))
	up.SetSpec("secret-other", spec(1000, true))
	cfg := testConfig(t, up, func(c *config.Config) { c.AllowedSDKKeys = []string{"secret-allowed"} })
	c := newTestCache(t, Options{Config: cfg})
	cases := []struct {
		key  string
		want error
	}{
		{"secret-allowed", nil},
		{"secret-other", ErrNotAllowed},
		{"client-abc", ErrUnknownKey},
		{"", ErrUnknownKey},
		{"garbage", ErrUnknownKey},
	}
	for _, tc := range cases {
		_, err := c.Get(context.Background(), tc.key, FormatV2)
		if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
			t.Errorf("key %q: got %v, want %v", tc.key, err, tc.want)
		}
		if _, err := c.IDLists(context.Background(), tc.key); tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("IDLists key %q: got %v, want %v", tc.key, err, tc.want)
		}
	}
	if got := up.Requests(func(r Request) bool { return r.Key != "secret-allowed" }); len(got) != 0 {
		t.Fatalf("refused keys reached upstream: %d requests", len(got))
	}
}

func TestBreakerStopsPollingAFailingUpstream(t *testing.T) {
	up := configcachetest.New(t)
	key := "secret-breaker"
	up.SetSpec(key, spec(1000, true))
	cfg := testConfig(t, up, func(c *config.Config) { c.RuleSets.PollInterval = 50 * time.Millisecond; c.RuleSets.PollJitter = 0 })
	c := newTestCache(t, Options{Config: cfg, BreakerFailures: 2, BreakerOpen: time.Hour})
	if _, err := c.Get(context.Background(), key, FormatV2); err != nil {
		t.Fatal(err)
	}
	up.SetMode(configcachetest.Fail)
	open := c.m.upstreamRequests.WithLabelValues("dcs_v2", "breaker_open")
	up.WaitFor(t, 10*time.Second, "5 polls skipped by the open breaker", func() bool { return counterValue(open) >= 5 })
	failed := up.Requests(func(r Request) bool { return r.Endpoint == "dcs_v2" && r.SinceTime > 0 })
	if len(failed) != 2 {
		t.Fatalf("polls that reached a failing upstream: got %d, want 2 (then the breaker opens)", len(failed))
	}
	if e, err := c.Get(context.Background(), key, FormatV2); err != nil || e.Time != 1000 {
		t.Fatalf("stale entry not served: %v", err)
	}
}

func TestLRUBoundsKeys(t *testing.T) {
	up := configcachetest.New(t)
	for i := 0; i < 3; i++ {
		up.SetSpec(fmt.Sprintf("secret-k%d", i), spec(1000, true))
	}
	cfg := testConfig(t, up, func(c *config.Config) { c.Limits.MaxSDKKeys = 2 })
	c := newTestCache(t, Options{Config: cfg})
	for i := 0; i < 3; i++ {
		if _, err := c.Get(context.Background(), fmt.Sprintf("secret-k%d", i), FormatV1); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.keys.Len(); n != 2 {
		t.Fatalf("keys held: got %d, want 2", n)
	}
	if _, ok := c.keys.Peek("secret-k0"); ok {
		t.Fatal("the least recently used key was not evicted")
	}
	// Only k0's full fetches: the other keys' polls (and soon k0's, with sinceTime) run meanwhile.
	k0 := func() int {
		return len(up.Requests(func(r Request) bool {
			return r.Endpoint == "dcs_v1" && r.Key == "secret-k0" && r.SinceTime == 0
		}))
	}
	before := k0()
	if _, err := c.Get(context.Background(), "secret-k0", FormatV1); err != nil {
		t.Fatal(err)
	}
	if k0() != before+1 {
		t.Fatal("an evicted key was served without fetching it again")
	}
}

func TestIdleKeyStopsPollingAndIsEvicted(t *testing.T) {
	up := configcachetest.New(t)
	key := "secret-idle"
	up.SetSpec(key, spec(1000, true))
	cfg := testConfig(t, up, func(c *config.Config) {
		c.RuleSets.PollInterval = 50 * time.Millisecond
		c.RuleSets.PollJitter = 0
		c.RuleSets.IdleTimeout = 300 * time.Millisecond
	})
	c := newTestCache(t, Options{Config: cfg})
	if _, err := c.Get(context.Background(), key, FormatV2); err != nil {
		t.Fatal(err)
	}
	ks, _ := c.keys.Peek(key)
	up.WaitFor(t, 5*time.Second, "idle eviction", func() bool { return c.keys.Len() == 0 })
	select {
	case <-ks.stopCh:
	default:
		t.Fatal("evicted key's poller not stopped")
	}
	if _, ok := c.byHash.Load(ks.hash); ok {
		t.Fatal("evicted key still reachable by hash")
	}
}

func TestClientInfoIsForwardedUpstream(t *testing.T) {
	up := configcachetest.New(t)
	up.SetSpec("secret-ci", spec(1000, true))
	c := newTestCache(t, Options{Config: testConfig(t, up, nil), Version: "1.2.3"})
	ctx := WithClientInfo(context.Background(), ClientInfo{SDKType: "go-sdk", SDKVersion: "1.35.1"})
	if _, err := c.Get(ctx, "secret-ci", FormatV1); err != nil {
		t.Fatal(err)
	}
	up.WaitFor(t, 5*time.Second, "a poll", func() bool { return up.Count("", "dcs_v1") >= 2 })
	for _, r := range up.Requests(nil) {
		if r.Header.Get("STATSIG-SDK-TYPE") != "go-sdk" || r.Header.Get("STATSIG-SDK-VERSION") != "1.35.1" {
			t.Fatalf("SDK identity not forwarded: %v", r.Header)
		}
		if r.Header.Get("User-Agent") != "sigedge/1.2.3" {
			t.Fatalf("User-Agent: %q", r.Header.Get("User-Agent"))
		}
	}
}

func TestTransportErrorsDoNotLeakTheKey(t *testing.T) {
	up := configcachetest.New(t)
	cfg := testConfig(t, up, func(c *config.Config) { c.Upstream.ConfigCDN = "http://127.0.0.1:1" })
	c := newTestCache(t, Options{Config: cfg}) // its cleanup fails the test if "secret-" was logged
	_, err := c.Get(context.Background(), "secret-leaky-key", FormatV1)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "secret-leaky-key") {
		t.Fatalf("error carries the key: %v", err)
	}
}

func TestParseHead(t *testing.T) {
	cases := []struct {
		name    string
		payload string
		want    parsedHead
		err     string
	}{
		{"v1", `{"time":12,"feature_gates":[],"has_updates":true}`, parsedHead{time: 12, format: FormatV1}, ""},
		{"v2 by response_format", `{"time":12,"feature_gates":{},"response_format":"dcs-v2","checksum":"abc"}`, parsedHead{time: 12, checksum: "abc", format: FormatV2}, ""},
		{"v2 by maps", `{"time":12,"dynamic_configs":{}}`, parsedHead{time: 12, format: FormatV2}, ""},
		{"float time", `{"time":12.0,"layer_configs":[]}`, parsedHead{time: 12, format: FormatV1}, ""},
		{"no updates", `{"has_updates":false}`, parsedHead{}, "has_updates is false"},
		{"not a rule set", `{"time":1}`, parsedHead{}, "not a rule set"},
		{"not JSON", `<html>`, parsedHead{}, "not a JSON object"},
		{"fractional time", `{"time":1.5,"feature_gates":[]}`, parsedHead{}, "not an integer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseHead([]byte(tc.payload))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want error containing %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestDJB2MatchesTheSDKs(t *testing.T) {
	// Values computed with go-sdk's getDJB2Hash.
	cases := map[string]string{"": "0", "a": "97", "secret-abc": djb2Ref("secret-abc")}
	for in, want := range cases {
		if got := djb2(in); got != want {
			t.Errorf("djb2(%q) = %s, want %s", in, got, want)
		}
	}
}

// djb2Ref is go-sdk's getDJB2Hash, transcribed as the reference.
func djb2Ref(key string) string {
	hash := uint64(0)
	for _, b := range []byte(key) {
		hash = ((hash << 5) - hash) + uint64(b)
		hash = hash & ((1 << 32) - 1)
	}
	return fmt.Sprint(hash)
}

// counterValue reads a counter (the prometheus testutil package needs a module this repo lacks).
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
