package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	statsig "github.com/statsig-io/go-sdk"

	"github.com/sigedge/sigedge/internal/sdktest"
	"github.com/sigedge/sigedge/queue"
)

// flakyFront sits between an official SDK and the proxy. The first log_event it sees is passed to
// the proxy, which stores it, and then answered 503: the reply is "lost", the way a timeout or a
// dropped connection loses it. The SDK must retry, and the retry must not be stored twice.
type flakyFront struct {
	t       *testing.T
	backend string
	srv     *httptest.Server
	decoder *queue.BodyDecoder // what the proxy reads a compressed body with

	mu       sync.Mutex
	failed   bool
	bodies   [][]byte // decoded log_event bodies, in arrival order
	statuses []int    // what the client was answered, per log_event
}

func newFlakyFront(t *testing.T, backend string) *flakyFront {
	decoder, err := queue.NewBodyDecoder(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	f := &flakyFront{t: t, backend: backend, decoder: decoder}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *flakyFront) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, f.backend+r.URL.RequestURI(), bytes.NewReader(body))
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	status := resp.StatusCode
	if strings.HasSuffix(r.URL.Path, "/log_event") {
		f.mu.Lock()
		if plain, err := f.decoder.Decompress(r.Header.Get("Content-Encoding"), body); err == nil {
			body = plain
		}
		f.bodies = append(f.bodies, body)
		if !f.failed && status == http.StatusAccepted {
			f.failed = true
			status, reply = http.StatusServiceUnavailable, []byte(`{"success":false,"error":"injected: reply lost"}`)
		}
		f.statuses = append(f.statuses, status)
		f.mu.Unlock()
	}
	for k, vs := range resp.Header {
		if k != "Content-Length" {
			w.Header()[k] = vs
		}
	}
	w.WriteHeader(status)
	_, _ = w.Write(reply)
}

// describeBodies lists each log_event body's events (name and metadata.seq) and idempotency id, to
// show how a retry differed from the batch it repeats.
func (f *flakyFront) describeBodies() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var sb strings.Builder
	for k, body := range f.bodies {
		b, err := queue.DecodeBatch(body)
		if err != nil {
			fmt.Fprintf(&sb, "  body %d: %v\n", k, err)
			continue
		}
		fmt.Fprintf(&sb, "  body %d: %d events, id %s:", k, len(b.Events), queue.BatchID(intakeServerKey, b.EventsRaw))
		for _, raw := range b.Events {
			var ev struct {
				EventName string         `json:"eventName"`
				Metadata  map[string]any `json:"metadata"`
			}
			_ = json.Unmarshal(raw, &ev)
			fmt.Fprintf(&sb, " %s/%v", ev.EventName, ev.Metadata["seq"])
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

func (f *flakyFront) logEventStatuses() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.statuses...)
}

// countTagged counts, in the event stream, the events named name by their metadata.seq.
func (e *intakeEnv) countTagged(name string) map[string]int {
	e.t.Helper()
	counts := map[string]int{}
	for _, raw := range eventsIn(e.t, e.messages()) {
		var ev struct {
			EventName string         `json:"eventName"`
			Metadata  map[string]any `json:"metadata"`
		}
		if err := json.Unmarshal([]byte(raw), &ev); err != nil {
			e.t.Fatalf("stored event is not JSON: %v", err)
		}
		if ev.EventName == name {
			counts[fmt.Sprint(ev.Metadata["seq"])]++
		}
	}
	return counts
}

// checkExactlyOnce fails unless seq 0..n-1 are each stored once, and the SDK retried after the
// injected failure. The retry may repeat the batch (the Go SDK, statsig-node) or re-send its events
// in a new batch (statsig-node-core: after newer events, or after a statsig::diagnostics event when
// slow); either way it must be recognised.
func checkExactlyOnce(t *testing.T, e *intakeEnv, f *flakyFront, name string, n int) {
	t.Helper()
	counts := e.countTagged(name)
	var bad []string
	for i := 0; i < n; i++ {
		if c := counts[fmt.Sprint(i)]; c != 1 {
			bad = append(bad, fmt.Sprintf("seq %d stored %d times", i, c))
		}
	}
	if len(counts) != n {
		bad = append(bad, fmt.Sprintf("%d distinct events stored, %d sent", len(counts), n))
	}
	if len(bad) > 0 {
		t.Fatalf("%s: %s\nlog_event bodies the SDK sent (answers %v):\n%s", name, strings.Join(bad, "; "), f.logEventStatuses(), f.describeBodies())
	}
	st := f.logEventStatuses()
	if len(st) < 2 || st[0] != http.StatusServiceUnavailable || st[len(st)-1] != http.StatusAccepted {
		t.Fatalf("log_event answers %v: want the injected 503 and then a retry answered 202", st)
	}
	dups := e.metricValue("sigedge_queue_duplicate_messages_total", nil)
	retried := e.metricValue("sigedge_queue_retried_events_total", nil)
	if dups < 1 && retried < 1 {
		t.Errorf("the retry was not recognised (duplicate messages %v, retried events %v)", dups, retried)
	}
}

func TestGoSDKEventsStoredExactlyOnce(t *testing.T) {
	e := startIntake(t, intakeConfig(t))
	f := newFlakyFront(t, e.base)
	opts := &statsig.Options{
		API:                  f.srv.URL + "/v1",
		LoggingInterval:      time.Hour, // flushed at Shutdown, in one batch
		LoggingMaxBufferSize: 1000,
		ConfigSyncInterval:   time.Hour,
		IDListSyncInterval:   time.Hour,
		InitTimeout:          5 * time.Second,
		IPCountryOptions:     statsig.IPCountryOptions{Disabled: true},
		UAParserOptions:      statsig.UAParserOptions{Disabled: true},
		OutputLoggerOptions:  statsig.OutputLoggerOptions{LogCallback: func(string, error) {}},
		StatsigLoggerOptions: statsig.StatsigLoggerOptions{DisableInitDiagnostics: true, DisableSyncDiagnostics: true, DisableApiDiagnostics: true},
	}
	// No rule set is served for this key: the SDK initialises without rules, and logging works.
	c := statsig.NewClientWithOptions(intakeServerKey, opts)
	const n = 50
	for i := 0; i < n; i++ {
		c.LogEvent(statsig.Event{EventName: "go_sdk_event", User: statsig.User{UserID: fmt.Sprint("u", i)},
			Value: fmt.Sprint(i), Metadata: map[string]string{"seq": fmt.Sprint(i)}})
	}
	done := make(chan struct{})
	go func() { c.Shutdown(); close(done) }() // flushes synchronously, retrying 503 after 1 s
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("go-sdk Shutdown did not return")
	}
	checkExactlyOnce(t, e, f, "go_sdk_event", n)
}

func TestNodeSDKEventsStoredExactlyOnce(t *testing.T) {
	sdktest.NodeModules(t) // skips without node
	tests := []struct {
		name, event, script string
	}{
		{"statsig-node", "node_sdk_event", `
const statsig = require('statsig-node');
const FRONT = process.env.FRONT;
// Every request, including sdk_exception (hard-coded to statsigapi.net), goes to the test front.
const networkOverrideFunc = (url, init) => fetch(url.replace(/^https?:\/\/[^/]+/, FRONT), init);
(async () => {
  await statsig.initialize(process.env.KEY, {
    api: FRONT + '/v1', networkOverrideFunc, loggingIntervalMs: 3600000, loggingMaxBufferSize: 1000,
    postLogsRetryBackoff: 100, disableDiagnostics: true, initTimeoutMs: 1000,
    rulesetsSyncIntervalMs: 3600000, idListsSyncIntervalMs: 3600000, disableIdListsSync: true,
  });
  for (let i = 0; i < Number(process.env.N); i++) {
    statsig.logEvent({userID: 'u' + i}, 'node_sdk_event', i, {seq: String(i)});
  }
  await statsig.flush();
  for (let i = Number(process.env.N); i < Number(process.env.N) + Number(process.env.M); i++) {
    statsig.logEvent({userID: 'u' + i}, 'node_sdk_event', i, {seq: String(i)});
  }
  await statsig.shutdownAsync();
  console.log('done');
})().catch((e) => { console.error(e); process.exit(1); });
`},
		{"statsig-node-core", "core_sdk_event", `
const { Statsig, StatsigUser } = require('@statsig/statsig-node-core');
const FRONT = process.env.FRONT;
(async () => {
  const s = new Statsig(process.env.KEY, {
    specsUrl: FRONT + '/v2/download_config_specs', logEventUrl: FRONT + '/v1/log_event',
    outputLogLevel: 'none', initTimeoutMs: 5000, specsSyncIntervalMs: 3600000,
    eventLoggingFlushIntervalMs: 3600000, eventLoggingMaxQueueSize: 1000,
  });
  await s.initialize();
  for (let i = 0; i < Number(process.env.N); i++) {
    s.logEvent(new StatsigUser({userID: 'u' + i}), 'core_sdk_event', i, {seq: String(i)});
  }
  // The first flush fails (503) and the batch is requeued. Shutdown sends the events logged since
  // and then the requeued ones, in one new batch: a retry that batch ids cannot recognise.
  await s.flushEvents();
  for (let i = Number(process.env.N); i < Number(process.env.N) + Number(process.env.M); i++) {
    s.logEvent(new StatsigUser({userID: 'u' + i}), 'core_sdk_event', i, {seq: String(i)});
  }
  await s.shutdown();
  console.log('done');
})().catch((e) => { console.error(e); process.exit(1); });
`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := startIntake(t, intakeConfig(t))
			f := newFlakyFront(t, e.base)
			const n, more = 40, 10 // logged before the failed flush, and after it
			out, err := sdktest.RunNode(t, 60*time.Second, tc.script, "FRONT="+f.srv.URL, "KEY="+intakeServerKey,
				fmt.Sprint("N=", n), fmt.Sprint("M=", more))
			if err != nil {
				t.Fatalf("%v\nstdout: %s", err, out)
			}
			checkExactlyOnce(t, e, f, tc.event, n+more)
		})
	}
}
