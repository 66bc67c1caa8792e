package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	statsig "github.com/statsig-io/go-sdk"

	"github.com/sigedge/sigedge/configcache/configcachetest"
	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/natstest"
	"github.com/sigedge/sigedge/internal/wire"
	"github.com/sigedge/sigedge/queue"
)

// Tests of proxies in a region: an external JetStream (one server or a 3-node cluster), several
// proxies, and what they do when NATS or one of them goes away.

// regionProxy is a whole proxy started in-process against an external JetStream.
type regionProxy struct {
	t    *testing.T
	app  *App
	base string
	logs *rsLogBuffer
	once sync.Once
}

// regionConfig is rsConfig pointed at external NATS servers.
func regionConfig(t *testing.T, up *configcachetest.Upstream, urls []string, mod func(*config.Config)) config.Config {
	t.Helper()
	return rsConfig(t, up, func(c *config.Config) {
		c.NATS.Embedded = false
		c.NATS.URLs = urls
		c.NATS.ReconnectWait = 50 * time.Millisecond
		c.NATS.PublishTimeout = time.Second
		c.RuleSets.Share.Enabled = true
		if mod != nil {
			mod(c)
		}
	})
}

func startRegionProxy(t *testing.T, cfg config.Config) *regionProxy {
	t.Helper()
	p := &regionProxy{t: t, logs: &rsLogBuffer{}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := NewApp(ctx, AppOptions{
		Config:  cfg,
		Logger:  slog.New(slog.NewTextHandler(p.logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Version: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	p.app, p.base = a, "http://"+a.Addr().String()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("logs of the proxy at %s:\n%s", p.base, p.logs.String())
		}
	})
	return p
}

// stop shuts the proxy down gracefully (it releases its poll leases).
func (p *regionProxy) stop() {
	p.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.app.Shutdown(ctx); err != nil {
			p.t.Errorf("shutdown: %v", err)
		}
	})
}

// crash ends the proxy as a killed process ends, as far as the region can tell: its NATS
// connection drops first, so the poll leases it holds are not released but expire, and then it
// stops polling and serving.
func (p *regionProxy) crash() {
	p.once.Do(func() {
		p.app.nc.Close()
		_ = p.app.httpSrv.Close()
		p.app.closeDeps()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.app.admin.Shutdown(ctx)
	})
}

// dcsTime fetches key's v1 rule set as go-sdk does and returns its time.
func (p *regionProxy) dcsTime(key string) (int64, error) {
	req, _ := http.NewRequest("GET", p.base+"/v1/download_config_specs/"+key+".json", nil)
	req.Header.Set(wire.HeaderAPIKey, key)
	res, err := rsRawClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	var v struct {
		Time int64 `json:"time"`
	}
	if err := json.NewDecoder(res.Body).Decode(&v); err != nil || res.StatusCode != 200 {
		return 0, fmt.Errorf("status %d, decode: %v", res.StatusCode, err)
	}
	return v.Time, nil
}

// readyz asks the admin endpoint, as a Kubernetes probe does, with an optional query
// ("?exclude=nats").
func (p *regionProxy) readyz(query ...string) (int, map[string]string) {
	p.t.Helper()
	res, err := rsRawClient.Get("http://" + p.app.AdminAddr().String() + "/readyz" + strings.Join(query, ""))
	if err != nil {
		p.t.Fatal(err)
	}
	defer res.Body.Close()
	var v struct {
		Reasons map[string]string `json:"reasons"`
	}
	if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
		p.t.Fatalf("/readyz: %v", err)
	}
	return res.StatusCode, v.Reasons
}

// postEvents posts one log_event batch and returns the status and Retry-After.
func (p *regionProxy) postEvents(key, tag string) (int, string) {
	p.t.Helper()
	body, _ := intakeBatch(tag, 3)
	req, _ := http.NewRequest("POST", p.base+"/v1/log_event", strings.NewReader(string(body)))
	req.Header.Set(wire.HeaderAPIKey, key)
	res, err := rsRawClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode, res.Header.Get("Retry-After")
}

// TestProxyServesFromMemoryWhileNATSIsDown: with its JetStream unreachable, a proxy goes on serving
// rule sets and evaluations (and keeps them fresh from Statsig itself, as the region's lease cannot
// be read), serves a key it never saw from Statsig within the SDKs' patience, refuses events with
// 503 + Retry-After, and /readyz says 503 "not connected to NATS"; all recovers when NATS is back.
func TestProxyServesFromMemoryWhileNATSIsDown(t *testing.T) {
	n := startTestNATS(t, 1<<20)
	up := configcachetest.New(t)
	const key, newKey = "secret-nats-down", "secret-nats-down-new"
	gate := func(tm int64, pass bool) configcachetest.Spec {
		return configcachetest.Spec{Time: tm, Gates: []configcachetest.Gate{{Name: "g", Pass: pass}}}
	}
	up.SetSpec(key, gate(1000, true))
	up.SetSpec(newKey, gate(1000, true))
	cfg := regionConfig(t, up, []string{n.url()}, nil)
	p := startRegionProxy(t, cfg)

	checkGate := func(want bool) {
		t.Helper()
		status, body := postJSON(t, p.base+"/v1/check_gate", key, `{"user":{"userID":"u1"},"gateName":"g"}`)
		if status != 200 || !strings.Contains(body, fmt.Sprintf(`"value":%v`, want)) {
			t.Fatalf("check_gate: %d %s, want value %v", status, body, want)
		}
	}
	if tm, err := p.dcsTime(key); err != nil || tm != 1000 {
		t.Fatalf("rule set: %d %v", tm, err)
	}
	checkGate(true)
	if st, _ := p.postEvents(key, "before"); st != http.StatusAccepted {
		t.Fatalf("log_event with NATS up: %d", st)
	}
	if st, reasons := p.readyz(); st != 200 {
		t.Fatalf("/readyz with NATS up: %d %v", st, reasons)
	}

	n.stop()
	// The disconnect is noticed asynchronously: poll readiness, bounded.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ok, _ := p.app.Ready(); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still ready 10s after NATS stopped")
		}
	}
	st, reasons := p.readyz()
	if st != http.StatusServiceUnavailable || !strings.Contains(reasons["nats"], "not connected") {
		t.Errorf("/readyz with NATS down: %d %v, want 503 saying NATS is not connected", st, reasons)
	}
	// The probe a region uses to keep serving rule sets while its NATS is down.
	if st, reasons := p.readyz("?exclude=nats"); st != http.StatusOK {
		t.Errorf("/readyz?exclude=nats with NATS down: %d %v, want 200", st, reasons)
	}
	if tm, err := p.dcsTime(key); err != nil || tm != 1000 {
		t.Fatalf("rule set with NATS down: %d %v", tm, err)
	}
	checkGate(true)
	if st, retry := p.postEvents(key, "during"); st != http.StatusServiceUnavailable || retry == "" {
		t.Errorf("log_event with NATS down: %d (Retry-After %q), want 503 with Retry-After", st, retry)
	}

	// Statsig changes the rule: this proxy, unable to see the region's lease, polls it itself.
	up.SetSpec(key, gate(2000, false))
	changed := time.Now()
	budget := cfg.RuleSets.PollInterval + cfg.RuleSets.PollJitter + cfg.Upstream.Timeout + time.Second
	up.WaitFor(t, budget, "the change served with NATS down", func() bool {
		tm, err := p.dcsTime(key)
		return err == nil && tm == 2000
	})
	t.Logf("change served %s after it was made, with NATS down", time.Since(changed).Round(time.Millisecond))
	checkGate(false)

	// A key no proxy fetched before: straight from Statsig, within go-sdk's 3 s request time-out.
	began := time.Now()
	if tm, err := p.dcsTime(newKey); err != nil || tm != 1000 {
		t.Fatalf("new key with NATS down: %d %v", tm, err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("a new key took %s with NATS down (the SDK gives up after 3s)", took)
	}

	n.start()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ok, _ := p.app.Ready(); ok {
			break
		}
		if time.Now().After(deadline) {
			_, reasons := p.app.Ready()
			t.Fatalf("not ready 10s after NATS came back: %v", reasons)
		}
	}
	if st, _ := p.postEvents(key, "after"); st != http.StatusAccepted {
		t.Fatalf("log_event after NATS came back: %d", st)
	}
}

// TestProxiesOnAJetStreamCluster runs proxies against a real 3-node JetStream cluster: the streams
// get their replicas, an existing stream with other settings is reported and kept, and the poll
// lease of a rule set moves to the other proxy when its holder stops or dies, without ever having
// two proxies poll one key in steady state.
func TestProxiesOnAJetStreamCluster(t *testing.T) {
	c := natstest.StartCluster(t, 3)

	t.Run("an existing stream with other settings is reported and kept", func(t *testing.T) {
		up := configcachetest.New(t)
		cfg := regionConfig(t, up, c.URLs(), func(c *config.Config) {
			c.NATS.Stream.Name, c.NATS.Stream.DeadLetterName, c.NATS.Stream.SubjectPrefix = "DRIFT_EVENTS", "DRIFT_DEAD", "drift.events"
			c.NATS.Stream.Replicas = 3
			c.RuleSets.Share.Enabled = false
		})
		js := clusterJS(t, c)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		byHand := queue.StreamConfig(cfg.NATS.Stream)
		byHand.Replicas, byHand.MaxBytes = 1, 1<<20
		if _, err := js.CreateStream(ctx, byHand); err != nil {
			t.Fatal(err)
		}
		p := startRegionProxy(t, cfg)
		if !strings.Contains(p.logs.String(), "stream DRIFT_EVENTS: replicas is 1, configuration says 3") {
			t.Errorf("no warning about the replicas in the logs")
		}
		res, err := rsRawClient.Get("http://" + p.app.AdminAddr().String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		metrics, _ := io.ReadAll(res.Body)
		res.Body.Close()
		for _, want := range []string{`sigedge_stream_setting_mismatches{stream="DRIFT_EVENTS"} 2`, `sigedge_stream_setting_mismatches{stream="DRIFT_DEAD"} 0`} {
			if !strings.Contains(string(metrics), want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		// Left as it was, and in use: the proxy is ready and stores events in it.
		s, err := js.Stream(ctx, "DRIFT_EVENTS")
		if err != nil {
			t.Fatal(err)
		}
		if info, err := s.Info(ctx); err != nil || info.Config.Replicas != 1 || info.Config.MaxBytes != 1<<20 {
			t.Fatalf("stream changed: %+v %v", info.Config, err)
		}
		if st, reasons := p.readyz(); st != 200 {
			t.Errorf("/readyz: %d %v", st, reasons)
		}
		if st, _ := p.postEvents("secret-drift", "drift"); st != http.StatusAccepted {
			t.Errorf("log_event: %d", st)
		}
		if dead, err := js.Stream(ctx, "DRIFT_DEAD"); err != nil || dead.CachedInfo().Config.Replicas != 3 {
			t.Errorf("the missing dead-letter stream was not created with 3 replicas: %v", err)
		}
	})

	for _, how := range []string{"stopped", "crashed"} {
		t.Run("the poll lease moves when its holder is "+how, func(t *testing.T) {
			testLeaseHandOver(t, c, how)
		})
	}
}

func clusterJS(t *testing.T, c *natstest.Cluster) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(strings.Join(c.URLs(), ","), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// testLeaseHandOver: two proxies of a region, each with an official go-sdk attached, share one key.
// One polls Statsig, the other follows the KV bucket; never both in one poll interval. The poller
// is stopped (it releases its lease) or crashes (its lease expires): the other proxy takes over
// within lease_ttl + a poll interval, not before the lease expired, and a change made at Statsig
// after the loss reaches the go-sdk attached to the surviving proxy.
func testLeaseHandOver(t *testing.T, c *natstest.Cluster, how string) {
	up := configcachetest.New(t)
	key := "secret-lease-" + how
	spec := func(tm int64, on bool) configcachetest.Spec {
		return configcachetest.Spec{Time: tm, Gates: []configcachetest.Gate{{Name: "g", Pass: on}}}
	}
	up.SetSpec(key, spec(1000, true))
	regional := func(prefix string) config.Config {
		return regionConfig(t, up, c.URLs(), func(cfg *config.Config) {
			cfg.NATS.Stream.Replicas = 3
			cfg.RuleSets.Share.Bucket = "lease_" + how
			cfg.Upstream.ConfigCDN = up.URL + prefix // tells the proxies' polls apart at the fake
		})
	}
	cfg := regional("/a")
	proxies := map[string]*regionProxy{"/a": startRegionProxy(t, cfg), "/b": startRegionProxy(t, regional("/b"))}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if kv, err := clusterJS(t, c).Stream(ctx, "KV_"+cfg.RuleSets.Share.Bucket); err != nil || kv.CachedInfo().Config.Replicas != 3 {
		t.Fatalf("the rule-set KV bucket does not have 3 replicas: %v", err)
	}
	const sdkSync = 200 * time.Millisecond
	sdks := map[string]*statsig.Client{}
	for _, prefix := range []string{"/a", "/b"} { // /a first: it fetches the key and takes the lease
		client, details := statsig.NewClientWithDetails(key, &statsig.Options{
			API:                  proxies[prefix].base + "/v1",
			ConfigSyncInterval:   sdkSync,
			IDListSyncInterval:   time.Hour,
			StatsigLoggerOptions: statsig.StatsigLoggerOptions{DisableAllLogging: true, DisableInitDiagnostics: true, DisableSyncDiagnostics: true, DisableApiDiagnostics: true},
			OutputLoggerOptions:  statsig.OutputLoggerOptions{LogCallback: func(string, error) {}},
			IPCountryOptions:     statsig.IPCountryOptions{Disabled: true},
			UAParserOptions:      statsig.UAParserOptions{Disabled: true},
		})
		t.Cleanup(client.Shutdown)
		if !details.Success {
			t.Fatalf("go-sdk on proxy %s: %v", prefix, details.Error)
		}
		sdks[prefix] = client
	}
	user := statsig.User{UserID: "u1"}

	// polls are the proxies' refreshes of the key (cold fetches have sinceTime 0), oldest first.
	polls := func(prefix string, after time.Time) []configcachetest.Request {
		return up.Requests(func(r configcachetest.Request) bool {
			return r.Endpoint == "dcs_v1" && r.SinceTime > 0 && r.At.After(after) && (prefix == "" || r.Prefix == prefix)
		})
	}
	// Cold fetches only (sinceTime 0): on a slow machine the lease holder may already have polled.
	if n := len(up.Requests(func(r configcachetest.Request) bool { return r.Endpoint == "dcs_v1" && r.SinceTime == 0 })); n != 1 {
		t.Fatalf("%d cold fetches of the key, want 1 (the second proxy reads the KV bucket)", n)
	}
	// Steady state: consecutive polls of the region are at least an interval (minus jitter) apart,
	// so no two proxies poll the key in one interval.
	minGap := cfg.RuleSets.PollInterval - 2*cfg.RuleSets.PollJitter
	steady := func(what string, rs []configcachetest.Request) {
		t.Helper()
		for i := 1; i < len(rs); i++ {
			if gap := rs[i].At.Sub(rs[i-1].At); gap < minGap {
				t.Fatalf("%s: polls by %s and %s only %s apart (want ≥ %s): two proxies polled in one interval",
					what, rs[i-1].Prefix, rs[i].Prefix, gap, minGap)
			}
		}
	}
	began := time.Now()
	up.WaitFor(t, 6*cfg.RuleSets.PollInterval+time.Second, "5 polls of the region", func() bool { return len(polls("", began)) >= 5 })
	before := polls("", began)
	steady("before the loss", before)
	holder := before[0].Prefix
	survivor := map[string]string{"/a": "/b", "/b": "/a"}[holder]
	if n := len(polls(survivor, began)); n != 0 {
		t.Fatalf("both proxies polled: %s %d times, %s %d times", holder, len(polls(holder, began)), survivor, n)
	}

	if how == "stopped" {
		proxies[holder].stop()
	} else {
		proxies[holder].crash()
	}
	lost := time.Now()
	lastRenewal := polls(holder, began)
	last := lastRenewal[len(lastRenewal)-1].At
	up.SetSpec(key, spec(2000, false))

	ttl := cfg.RuleSets.Share.LeaseTTL
	budget := ttl + cfg.RuleSets.PollInterval + cfg.RuleSets.PollJitter + time.Second
	up.WaitFor(t, budget, "the surviving proxy to poll", func() bool { return len(polls(survivor, began)) > 0 })
	first := polls(survivor, began)[0]
	t.Logf("%s holder: the other proxy polled %s after the loss (%s after the holder's last renewal; lease_ttl %s)",
		how, first.At.Sub(lost).Round(time.Millisecond), first.At.Sub(last).Round(time.Millisecond), ttl)
	if how == "crashed" && first.At.Sub(last) < ttl-250*time.Millisecond {
		t.Errorf("took over %s after the last renewal, before the lease (%s) expired", first.At.Sub(last), ttl)
	}
	up.WaitFor(t, cfg.RuleSets.PollInterval+cfg.RuleSets.PollJitter+sdkSync+time.Second, "the change in the go-sdk on the surviving proxy",
		func() bool { return !sdks[survivor].CheckGate(user, "g") })
	t.Logf("the go-sdk on the surviving proxy saw the change %s after the loss", time.Since(lost).Round(time.Millisecond))

	// Steady again: only the survivor polls, one poll per interval.
	since := first.At.Add(-time.Millisecond)
	up.WaitFor(t, 4*cfg.RuleSets.PollInterval+time.Second, "3 more polls", func() bool { return len(polls("", since)) >= 3 })
	after := polls("", since)
	steady("after the hand-over", after)
	for _, r := range after {
		if r.Prefix != survivor {
			t.Fatalf("the %s proxy polled after the hand-over", how)
		}
	}
}
