package forwarder

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sigedge/sigedge/forwarder/forwardertest"
	"github.com/sigedge/sigedge/internal/config"
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

// env is one test's surroundings: an embedded JetStream holding the event streams, a client of it,
// a fake Statsig, and a forwarder configuration for both, to adjust before start.
type env struct {
	t    testing.TB
	js   jetstream.JetStream
	fake *forwardertest.Fake
	cfg  config.Config
}

func newEnv(t testing.TB) *env {
	t.Helper()
	url, js := forwardertest.StartJetStream(t)
	return newEnvOn(t, url, js)
}

// newEnvOn is newEnv on a JetStream the test started itself, its streams already created.
func newEnvOn(t testing.TB, natsURL string, js jetstream.JetStream) *env {
	t.Helper()
	fake := forwardertest.NewFake(t)
	return &env{t: t, js: js, fake: fake, cfg: testConfig(t, natsURL, fake.URL())}
}

// start starts a forwarder with e.cfg (see startForwarder).
func (e *env) start() *App {
	e.t.Helper()
	return startForwarder(e.t, e.cfg)
}

// outage makes the fake Statsig answer status to every request while the returned switch is on
// (it starts on), and accept everything once it is off.
func (e *env) outage(status int) *atomic.Bool {
	var on atomic.Bool
	on.Store(true)
	e.fake.SetRespond(func(*forwardertest.Request, int) int {
		if on.Load() {
			return status
		}
		return http.StatusAccepted
	})
	return &on
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
	return startApp(t, AppOptions{Config: cfg})
}

// startApp is startForwarder with options; the test's logger, version and tuning fill what o leaves
// unset.
func startApp(t testing.TB, o AppOptions) *App {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	if o.Version == "" {
		o.Version = "test"
	}
	if o.tune == nil {
		o.tune = testTuning()
	}
	// Generous: on a cluster the consumer waits for its peers to elect a leader.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	app, err := NewApp(ctx, o)
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
	pad                                int    // bytes of padding per event
	encoding                           string // the stored body's wire.MsgEncoding ("": the JSON itself)
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

// batchOf is a log_event batch of key holding the events ids, with go-sdk metadata.
func batchOf(key string, ids []string) testBatch { return testBatch{key: key, meta: metaGo1, ids: ids} }

// publish stores b in the event stream as a proxy would.
func (e *env) publish(b testBatch) {
	e.t.Helper()
	e.publishRaw(forwardertest.Batch{Key: b.key, Endpoint: b.endpoint, SDKType: b.sdkType, SDKVersion: b.sdkVersion,
		Count: len(b.ids), Body: b.body(), Encoding: b.encoding})
}

// publishN publishes batch(0) to batch(n-1), in order, and returns all their event ids.
func (e *env) publishN(n int, batch func(i int) testBatch) []string {
	e.t.Helper()
	var all []string
	for i := range n {
		b := batch(i)
		all = append(all, b.ids...)
		e.publish(b)
	}
	return all
}

// publishRaw stores a message as given, its SDK's clock sdkClockAhead ahead.
func (e *env) publishRaw(b forwardertest.Batch) {
	e.t.Helper()
	b.ClientTime = time.Now().Add(sdkClockAhead)
	forwardertest.Publish(e.t, e.js, b)
}

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

// waitMetric waits until the metric's value (see metricValue) is want, failing the test after
// timeout.
func waitMetric(t testing.TB, reg prometheus.Gatherer, timeout time.Duration, name string, labels map[string]string, want float64) {
	t.Helper()
	series := name
	if len(labels) > 0 {
		series += fmt.Sprint(labels)
	}
	eventually(t, timeout, fmt.Sprintf("%s is not %v", series, want), func() bool {
		return metricValue(t, reg, name, labels) == want
	})
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

// consumer returns the state of the forwarders' durable consumer.
func (e *env) consumer() *jetstream.ConsumerInfo {
	e.t.Helper()
	return forwardertest.ConsumerInfo(e.t, e.js, e.cfg.Forwarder.ConsumerName)
}

// waitAllAcked waits until the consumer has nothing left to deliver and nothing unacked.
func (e *env) waitAllAcked() {
	e.t.Helper()
	eventually(e.t, 5*time.Second, "the consumer has messages not yet delivered or not acked", func() bool {
		info := e.consumer()
		return info.NumAckPending == 0 && info.NumPending == 0
	})
}

// deadLetters reads every message of the dead-letter stream.
func (e *env) deadLetters() []*jetstream.RawStreamMsg {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, config.Default().NATS.Stream.DeadLetterName)
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
