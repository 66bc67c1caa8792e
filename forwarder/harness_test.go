package forwarder

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sigedge/sigedge/forwarder/forwardertest"
	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/natsutil"
	"github.com/sigedge/sigedge/internal/wire"
	"github.com/sigedge/sigedge/queue"
)

// testLogger logs to the test log when -v is given, else nowhere.
func testLogger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startNATS starts an embedded JetStream server on 127.0.0.1 with its files in a temp dir.
func startNATS(t testing.TB) string {
	t.Helper()
	cfg := config.Default().NATS
	cfg.DataDir = t.TempDir()
	cfg.Port = 0
	srv, err := natsutil.StartEmbedded(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { natsutil.Shutdown(srv) })
	return srv.ClientURL()
}

// connectJS opens a client connection for publishing and inspecting streams.
func connectJS(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
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

// testConfig is a configuration with short timings for tests.
func testConfig(t testing.TB, natsURL, upstreamURL string) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.NATS.Embedded = false
	cfg.NATS.URLs = []string{natsURL}
	cfg.Upstream.Events = upstreamURL
	f := &cfg.Forwarder
	f.AdminListen = "127.0.0.1:0"
	f.FlushInterval = 100 * time.Millisecond
	f.AckWait = 5 * time.Second
	f.RequestTimeout = 2 * time.Second
	f.RetryBackoffMin = 10 * time.Millisecond
	f.RetryBackoffMax = 100 * time.Millisecond
	f.ReplayRate = 0
	f.Breaker = config.Breaker{ConsecutiveFailures: 3, OpenTimeout: 200 * time.Millisecond, HalfOpenRequests: 1}
	f.ShutdownTimeout = 5 * time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func testTuning() *tuning {
	return &tuning{pullWait: 200 * time.Millisecond, fetchCount: 1000, lagInterval: 50 * time.Millisecond,
		summaryInterval: time.Second, retryPullAfter: 50 * time.Millisecond}
}

// startForwarder starts a forwarder App and shuts it down at the end of the test (if the test did
// not already).
func startForwarder(t testing.TB, cfg config.Config) *App {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	app, err := NewApp(ctx, AppOptions{Config: cfg, Logger: testLogger(t), Version: "test", tune: testTuning()})
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { shutdownApp(t, app) }) })
	return app
}

func shutdownApp(t testing.TB, app *App) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), app.cfg.Forwarder.ShutdownTimeout)
	defer cancel()
	if err := app.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// ---- publishing ----

type testBatch struct {
	key, endpoint, sdkType, sdkVersion string
	meta                               string // raw statsigMetadata, "" for none
	ids                                []string
	pad                                int // bytes of padding per event
}

// body is the batch as an SDK would send it; each event carries its id in metadata.id.
func (b testBatch) body() []byte {
	var buf bytes.Buffer
	buf.WriteString(`{"events":[`)
	pad := strings.Repeat("x", b.pad)
	for i, id := range b.ids {
		if i > 0 {
			buf.WriteString(",")
		}
		fmt.Fprintf(&buf, `{"eventName":"test_event","user":{"userID":"u-%s"},"value":null,"metadata":{"id":%q,"pad":%q},"time":1700000000000,"statsigMetadata":null}`, id, id, pad)
	}
	buf.WriteString("]")
	if b.meta != "" {
		buf.WriteString(`,"statsigMetadata":` + b.meta)
	}
	buf.WriteString("}")
	return buf.Bytes()
}

// sdkClockAhead is how far the test SDKs' clocks run ahead of the proxy's.
const sdkClockAhead = 5 * time.Second

func publishBatch(t testing.TB, js jetstream.JetStream, b testBatch) {
	t.Helper()
	publishRaw(t, js, b.key, b.endpoint, b.sdkType, b.sdkVersion, len(b.ids), b.body())
}

func publishRaw(t testing.TB, js jetstream.JetStream, key, endpoint, sdkType, sdkVersion string, count int, body []byte) {
	t.Helper()
	msg := nats.NewMsg(wire.EventSubject(config.Default().NATS.Stream.SubjectPrefix, key))
	msg.Header.Set(wire.MsgSDKKey, key)
	if endpoint == "" {
		endpoint = endpointLogEvent
	}
	msg.Header.Set(wire.MsgEndpoint, endpoint)
	msg.Header.Set(wire.MsgSDKType, sdkType)
	msg.Header.Set(wire.MsgSDKVersion, sdkVersion)
	msg.Header.Set(wire.MsgEventCount, strconv.Itoa(count))
	now := time.Now()
	msg.Header.Set(wire.MsgReceivedAt, strconv.FormatInt(now.UnixMilli(), 10))
	msg.Header.Set(wire.MsgClientTime, strconv.FormatInt(now.Add(sdkClockAhead).UnixMilli(), 10))
	msg.Header.Set(wire.MsgSource, "sdk")
	msg.Data = body
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
}

// ensureStreams creates the streams before anything is published (the proxy does in production).
func ensureStreams(t testing.TB, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := queue.EnsureStreams(ctx, js, config.Default().NATS.Stream); err != nil {
		t.Fatal(err)
	}
}

// ---- fake Statsig ----

func newFakeStatsig(t testing.TB) *forwardertest.Fake { return forwardertest.NewFake(t) }

// ---- metrics and waiting ----

// metricValue sums a counter or gauge family on the registry, over series matching labels.
func metricValue(t testing.TB, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				if !hasLabel(m, k, v) {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				total += m.Counter.GetValue()
			case m.Gauge != nil:
				total += m.Gauge.GetValue()
			case m.Histogram != nil:
				total += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return total
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

// eventually polls cond every 5 ms until it holds, failing the test after timeout. It is for
// states that have no event to wait on (gauges, consumer info).
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func consumerInfo(t testing.TB, js jetstream.JetStream, name string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, config.Default().NATS.Stream.Name, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// deadLetters reads every message of the dead-letter stream.
func deadLetters(t testing.TB, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, config.Default().NATS.Stream.DeadLetterName)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	seq := uint64(1)
	for range 10_000 {
		raw, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(">"))
		if err != nil {
			break
		}
		out = append(out, raw)
		seq = raw.Sequence + 1
	}
	return out
}

// ids returns n event ids with a prefix.
func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

func testConfigStream() config.Stream { return config.Default().NATS.Stream }
