package proxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/metrictest"
	"github.com/sigedge/sigedge/internal/natstest"
	"github.com/sigedge/sigedge/internal/wire"
	"github.com/sigedge/sigedge/queue"
)

const (
	intakeServerKey = "secret-intake-test"
	intakeClientKey = "client-intake-test"
)

// lockedBuffer collects a test proxy's logs (goroutines may log after the test ends, so not t.Log).
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// intakeEnv is a whole proxy started in-process, and a client of its event stream.
type intakeEnv struct {
	t    testing.TB
	app  *App
	base string
	cfg  config.Config
	js   jetstream.JetStream
	logs *lockedBuffer
}

// intakeConfig is a test configuration: loopback ports, temporary data, a fake Statsig that refuses
// everything (nothing may reach the internet), and the test keys.
func intakeConfig(t testing.TB) config.Config {
	t.Helper()
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"error":"fake statsig"}`, http.StatusUnauthorized)
	}))
	t.Cleanup(fake.Close)
	cfg := config.Default()
	cfg.Proxy.Listen, cfg.Proxy.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.NATS.Port, cfg.NATS.DataDir = 0, t.TempDir()
	cfg.NATS.ReconnectWait = 50 * time.Millisecond
	cfg.NATS.PublishTimeout = 2 * time.Second
	cfg.Upstream.ConfigCDN, cfg.Upstream.API, cfg.Upstream.Events = fake.URL, fake.URL, fake.URL
	cfg.RuleSets.Offline = nil
	cfg.RuleSets.Share.Enabled = false
	cfg.ClientKeys = map[string]string{intakeClientKey: intakeServerKey}
	cfg.Limits.MaxBodyBytes = 1 << 20
	return cfg
}

func startIntake(t testing.TB, cfg config.Config) *intakeEnv {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	app, err := NewApp(ctx, AppOptions{Config: cfg, Logger: logger, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = app.Shutdown(ctx)
		if t.Failed() {
			t.Logf("proxy logs:\n%s", logs.String())
		}
	})
	url := app.NATSURL()
	if url == "" {
		url = strings.Join(cfg.NATS.URLs, ",")
	}
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &intakeEnv{t: t, app: app, base: "http://" + app.Addr().String(), cfg: cfg, js: js, logs: logs}
}

type intakeReply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// post sends body to path with the given headers (name, value pairs).
func (e *intakeEnv) post(path string, body []byte, headers ...string) intakeReply {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.base+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return e.do(req)
}

func (e *intakeEnv) do(req *http.Request) intakeReply {
	e.t.Helper()
	r := doQuietly(req)
	if r.status == 0 {
		e.t.Fatal(r.raw)
	}
	if err := json.Unmarshal([]byte(r.raw), &r.body); err != nil && r.status != http.StatusNoContent {
		e.t.Fatalf("%s %s: %d reply is not JSON: %q", req.Method, req.URL.Path, r.status, r.raw)
	}
	return r
}

// messages returns every message of the event stream, in order.
func (e *intakeEnv) messages() []*jetstream.RawStreamMsg {
	e.t.Helper()
	return natstest.StreamMessages(e.t, e.js, e.cfg.NATS.Stream.Name)
}

// eventsIn returns the raw events of stored messages, in order.
func eventsIn(t testing.TB, msgs []*jetstream.RawStreamMsg) []string {
	t.Helper()
	var out []string
	for _, m := range msgs {
		b, err := queue.DecodeBatch(m.Data)
		if err != nil {
			t.Fatalf("message %d is not a batch: %v", m.Sequence, err)
		}
		for _, ev := range b.Events {
			out = append(out, string(ev))
		}
	}
	return out
}

// metricValue returns name{labels} from the app's registry (0 when absent).
func (e *intakeEnv) metricValue(name string, labels map[string]string) float64 {
	e.t.Helper()
	return metrictest.Value(e.t, e.app.registry, name, labels)
}

func intakeEvent(tag string, i int) string {
	return fmt.Sprintf(`{"eventName":"intake_test","value":%d,"metadata":{"tag":%q,"seq":"%d"},"user":{"userID":"u%d"},"time":1767225600000}`, i, tag, i, i)
}

// intakeBatch is a batch of n events tagged tag, as a server SDK sends it.
func intakeBatch(tag string, n int) (body []byte, events []string) {
	var sb strings.Builder
	sb.WriteString(`{"events":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		ev := intakeEvent(tag, i)
		events = append(events, ev)
		sb.WriteString(ev)
	}
	sb.WriteString(`],"statsigMetadata":{"sdkType":"meta-sdk","sdkVersion":"9.9.9","sessionID":"s1"}}`)
	return []byte(sb.String()), events
}

func encodeBody(t testing.TB, coding string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	switch coding {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "deflate":
		w = zlib.NewWriter(&buf)
	case "zstd":
		zw, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w = zw
	case "br":
		w = brotli.NewWriter(&buf)
	default:
		return data
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestEventIntakeAcceptsWhatTheSDKsSend(t *testing.T) {
	e := startIntake(t, intakeConfig(t))
	statsigEncoded := func(b []byte) []byte { // js-client's se=1: base64, reversed
		s := []byte(base64.StdEncoding.EncodeToString(b))
		for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
			s[i], s[j] = s[j], s[i]
		}
		return s
	}
	tests := []struct {
		name      string
		path      string
		coding    string // how the test encodes the body
		headers   []string
		encode    func([]byte) []byte
		key       string
		endpoint  string
		sdkType   string
		sdkVerson string
	}{
		{name: "plain JSON", path: "/v1/log_event", headers: []string{"STATSIG-API-KEY", intakeServerKey, "STATSIG-SDK-TYPE", "go-sdk", "STATSIG-SDK-VERSION", "1.35.1", "STATSIG-CLIENT-TIME", "1767225600000"},
			key: intakeServerKey, endpoint: "log_event", sdkType: "go-sdk", sdkVerson: "1.35.1"},
		{name: "gzip (go-sdk, statsig-node)", path: "/v1/log_event", coding: "gzip", headers: []string{"STATSIG-API-KEY", intakeServerKey, "Content-Encoding", "gzip", "STATSIG-EVENT-COUNT", "3"},
			key: intakeServerKey, endpoint: "log_event", sdkType: "meta-sdk", sdkVerson: "9.9.9"},
		{name: "zstd (statsig-node-core)", path: "/v1/log_event", coding: "zstd", headers: []string{"statsig-api-key", intakeServerKey, "content-encoding", "zstd", "statsig-sdk-type", "statsig-server-core-node", "statsig-sdk-version", "0.23.2"},
			key: intakeServerKey, endpoint: "log_event", sdkType: "statsig-server-core-node", sdkVerson: "0.23.2"},
		{name: "deflate", path: "/v1/log_event", coding: "deflate", headers: []string{"STATSIG-API-KEY", intakeServerKey, "Content-Encoding", "deflate"},
			key: intakeServerKey, endpoint: "log_event", sdkType: "meta-sdk", sdkVerson: "9.9.9"},
		{name: "brotli", path: "/v1/log_event", coding: "br", headers: []string{"STATSIG-API-KEY", intakeServerKey, "Content-Encoding", "br"},
			key: intakeServerKey, endpoint: "log_event", sdkType: "meta-sdk", sdkVerson: "9.9.9"},
		{name: "js-client: key and SDK in the query, gzip without a header", coding: "gzip",
			path:    "/v1/rgstr?k=" + intakeClientKey + "&st=javascript-client&sv=3.33.5&t=1767225600000&sid=x&ec=3&gz=1",
			headers: []string{"statsig-event-count", "3"}, key: intakeClientKey, endpoint: "rgstr", sdkType: "javascript-client", sdkVerson: "3.33.5"},
		{name: "js-client: statsig-encoded body", path: "/v1/rgstr?k=" + intakeClientKey + "&se=1", encode: statsigEncoded,
			headers: []string{"Content-Type", "text/plain"}, key: intakeClientKey, endpoint: "rgstr", sdkType: "meta-sdk", sdkVerson: "9.9.9"},
		{name: "server key on rgstr", path: "/v1/rgstr", headers: []string{"STATSIG-API-KEY", intakeServerKey},
			key: intakeServerKey, endpoint: "rgstr", sdkType: "meta-sdk", sdkVerson: "9.9.9"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plain, want := intakeBatch(fmt.Sprint("enc", i), 3)
			body := encodeBody(t, tc.coding, plain)
			if tc.encode != nil {
				body = tc.encode(body)
			}
			before := len(e.messages())
			r := e.post(tc.path, body, tc.headers...)
			if r.status != http.StatusAccepted || r.raw != "{\"success\":true}\n" {
				t.Fatalf("status %d %q, want 202 {\"success\":true}", r.status, r.raw)
			}
			msgs := e.messages()
			if len(msgs) != before+1 {
				t.Fatalf("%d new messages, want 1", len(msgs)-before)
			}
			m := msgs[len(msgs)-1]
			if string(m.Data) != string(plain) {
				t.Errorf("stored body %q differs from the batch sent", m.Data)
			}
			if got := eventsIn(t, msgs[len(msgs)-1:]); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("stored events %q", got)
			}
			if m.Subject != wire.EventSubject(e.cfg.NATS.Stream.SubjectPrefix, tc.key) {
				t.Errorf("subject %q", m.Subject)
			}
			for k, v := range map[string]string{wire.MsgSDKKey: tc.key, wire.MsgEndpoint: tc.endpoint, wire.MsgSource: "sdk",
				wire.MsgEventCount: "3", wire.MsgSDKType: tc.sdkType, wire.MsgSDKVersion: tc.sdkVerson} {
				if got := m.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if at, err := strconv.ParseInt(m.Header.Get(wire.MsgReceivedAt), 10, 64); err != nil || time.Since(time.UnixMilli(at)) > time.Minute {
				t.Errorf("received-at %q", m.Header.Get(wire.MsgReceivedAt))
			}
			if tc.endpoint == "rgstr" && r.header.Get("Access-Control-Allow-Origin") != "*" {
				t.Error("rgstr reply lacks CORS")
			}
		})
	}
	if got := e.metricValue("sigedge_events_accepted_total", map[string]string{"endpoint": "log_event"}); got != 15 {
		t.Errorf("accepted log_event events = %v, want 15", got)
	}
}

func TestEventIntakeRefusesBadInput(t *testing.T) {
	cfg := intakeConfig(t)
	cfg.AllowedSDKKeys = []string{intakeServerKey}
	e := startIntake(t, cfg)
	good, _ := intakeBatch("good", 2)
	bomb := encodeBody(t, "gzip", bytes.Repeat([]byte(" "), 2<<20))
	tests := []struct {
		name    string
		path    string
		body    []byte
		headers []string
		chunked bool
		status  int
		reason  string // metric label
		errText string // in the JSON error
	}{
		{"missing key", "/v1/log_event", good, nil, false, 401, "unauthorized", "missing SDK key"},
		{"key not allowed", "/v1/log_event", good, []string{"STATSIG-API-KEY", "secret-someone-else"}, false, 401, "unauthorized", "allowed_sdk_keys"},
		{"unknown client key", "/v1/rgstr?k=client-unknown", good, nil, false, 401, "unauthorized", "client_keys"},
		{"not a Statsig key", "/v1/log_event", good, []string{"STATSIG-API-KEY", "hello"}, false, 401, "unauthorized", "not a Statsig SDK key"},
		{"body over the limit", "/v1/log_event", bytes.Repeat([]byte("x"), 2<<20), []string{"STATSIG-API-KEY", intakeServerKey}, false, 413, "body_too_large", "limit"},
		{"chunked body over the limit", "/v1/log_event", bytes.Repeat([]byte("x"), 2<<20), []string{"STATSIG-API-KEY", intakeServerKey}, true, 413, "body_too_large", "limit"},
		{"zip bomb", "/v1/log_event", bomb, []string{"STATSIG-API-KEY", intakeServerKey, "Content-Encoding", "gzip"}, false, 413, "body_too_large", "inflates beyond"},
		{"broken gzip", "/v1/log_event", []byte("\x1f\x8b\x08garbage"), []string{"STATSIG-API-KEY", intakeServerKey, "Content-Encoding", "gzip"}, false, 400, "bad_encoding", "gzip"},
		{"unknown encoding", "/v1/log_event", good, []string{"STATSIG-API-KEY", intakeServerKey, "Content-Encoding", "lzma"}, false, 415, "unsupported_encoding", "lzma"},
		{"empty body", "/v1/log_event", nil, []string{"STATSIG-API-KEY", intakeServerKey}, false, 400, "invalid_json", "empty body"},
		{"invalid JSON", "/v1/log_event", []byte(`{"events":[{"eventName":"a"},]}`), []string{"STATSIG-API-KEY", intakeServerKey}, false, 400, "invalid_json", "offset"},
		{"not an object", "/v1/log_event", []byte(`[{"eventName":"a"}]`), []string{"STATSIG-API-KEY", intakeServerKey}, false, 400, "invalid_batch", "JSON object"},
		{"events not an array", "/v1/log_event", []byte(`{"events":{"eventName":"a"}}`), []string{"STATSIG-API-KEY", intakeServerKey}, false, 400, "invalid_batch", "must be an array"},
		{"no valid event", "/v1/log_event", []byte(`{"events":[1,{"eventName":2},{"value":3}]}`), []string{"STATSIG-API-KEY", intakeServerKey}, false, 400, "no_valid_events", "none of the 3 events"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.messages())
			req, err := http.NewRequest(http.MethodPost, e.base+tc.path, bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.chunked {
				req.Body = io.NopCloser(bytes.NewReader(tc.body)) // no length: sent chunked
				req.ContentLength = -1
			}
			for i := 0; i+1 < len(tc.headers); i += 2 {
				req.Header.Set(tc.headers[i], tc.headers[i+1])
			}
			r := e.do(req)
			if r.status != tc.status {
				t.Fatalf("status %d %q, want %d", r.status, r.raw, tc.status)
			}
			if r.body["success"] != false || !strings.Contains(fmt.Sprint(r.body["error"]), tc.errText) {
				t.Errorf("reply %q, want success false and an error mentioning %q", r.raw, tc.errText)
			}
			if strings.Contains(r.raw, intakeServerKey) {
				t.Error("the reply echoes the secret key")
			}
			if got := e.metricValue("sigedge_event_batches_rejected_total", map[string]string{"reason": tc.reason}); got < 1 {
				t.Errorf("rejected{reason=%q} = %v", tc.reason, got)
			}
			if n := len(e.messages()); n != before {
				t.Fatalf("%d messages stored for a refused request", n-before)
			}
			// Good requests are unaffected.
			if r := e.post("/v1/log_event", good, "STATSIG-API-KEY", intakeServerKey); r.status != http.StatusAccepted {
				t.Fatalf("a good batch after the bad one: %d %q", r.status, r.raw)
			}
		})
	}
	if strings.Contains(e.logs.String(), intakeServerKey) {
		t.Error("the logs contain a secret key")
	}
}

func TestEventIntakeKeepsGoodEventsBesideBadOnes(t *testing.T) {
	e := startIntake(t, intakeConfig(t))
	good1, good2 := intakeEvent("mixed", 1), intakeEvent("mixed", 2)
	body := `{"statsigMetadata":{"sdkType":"x"},"events":[` + good1 + `,5,{"eventName":3},{"no":"name"},` + good2 + `],"clientTime":"7"}`
	r := e.post("/v1/log_event", []byte(body), "STATSIG-API-KEY", intakeServerKey)
	if r.status != http.StatusAccepted || r.body["success"] != true || r.body["dropped"] != float64(3) {
		t.Fatalf("reply %d %q, want 202 success with dropped 3", r.status, r.raw)
	}
	msgs := e.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	if got := eventsIn(t, msgs); len(got) != 2 || got[0] != good1 || got[1] != good2 {
		t.Fatalf("stored events %q, want the two good ones byte for byte", got)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(msgs[0].Data, &top); err != nil || string(top["statsigMetadata"]) != `{"sdkType":"x"}` || string(top["clientTime"]) != `"7"` {
		t.Fatalf("stored batch lost its metadata: %s", msgs[0].Data)
	}
	if msgs[0].Header.Get(wire.MsgEventCount) != "2" {
		t.Errorf("event count header %q", msgs[0].Header.Get(wire.MsgEventCount))
	}
	for reason, want := range map[string]float64{"event_not_object": 1, "invalid_event_name": 1, "missing_event_name": 1} {
		if got := e.metricValue("sigedge_events_rejected_total", map[string]string{"reason": reason}); got != want {
			t.Errorf("rejected events{reason=%s} = %v, want %v", reason, got, want)
		}
	}
	// An empty batch is a success with nothing stored.
	if r := e.post("/v1/log_event", []byte(`{"events":[]}`), "STATSIG-API-KEY", intakeServerKey); r.status != http.StatusAccepted || r.body["success"] != true {
		t.Fatalf("empty batch: %d %q", r.status, r.raw)
	}
	if n := len(e.messages()); n != 1 {
		t.Fatalf("empty batch stored a message")
	}
}

// An SDK's retry of the same batch is stored once: the proxy's retry memory leaves its events out
// (the session sent them already), and without it (or on another replica) JetStream drops the
// message as a duplicate by its id.
func TestEventIntakeStoresARetriedBatchOnce(t *testing.T) {
	for _, memory := range []bool{true, false} {
		t.Run(fmt.Sprint("retry_dedupe=", memory), func(t *testing.T) {
			cfg := intakeConfig(t)
			cfg.Proxy.RetryDedupe.Enabled = memory
			e := startIntake(t, cfg)
			plain, want := intakeBatch("retry", 20)
			// The same batch three times: an SDK retrying after a lost reply, once re-encoded
			// differently (server-core requeues and re-compresses) and with another statsigMetadata.
			other := bytes.Replace(plain, []byte(`"sessionID":"s1"`), []byte(`"sessionID":"s1","flushType":"shutdown"`), 1)
			for i, send := range []struct {
				coding string
				body   []byte
			}{{"gzip", plain}, {"gzip", plain}, {"zstd", other}} {
				r := e.post("/v1/log_event", encodeBody(t, send.coding, send.body), "STATSIG-API-KEY", intakeServerKey, "Content-Encoding", send.coding)
				if r.status != http.StatusAccepted || r.body["success"] != true || r.body["dropped"] != nil {
					t.Fatalf("attempt %d: %d %q", i, r.status, r.raw)
				}
			}
			msgs := e.messages()
			if got := eventsIn(t, msgs); len(msgs) != 1 || strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("%d messages with %d events, want the batch once", len(msgs), len(got))
			}
			wantDups, wantRetried := 2.0, 0.0
			if memory {
				wantDups, wantRetried = 0, 40
			}
			dups := e.metricValue("sigedge_queue_duplicate_messages_total", nil)
			retried := e.metricValue("sigedge_queue_retried_events_total", nil)
			if dups != wantDups || retried != wantRetried {
				t.Errorf("duplicate messages %v, retried events %v; want %v and %v", dups, retried, wantDups, wantRetried)
			}
			accepted := e.metricValue("sigedge_events_accepted_total", map[string]string{"endpoint": "log_event"})
			if accepted != 60 {
				t.Errorf("accepted events %v, want 60: a retry's events are accepted (and stored once)", accepted)
			}
		})
	}
}

// TestEventIntakeReachesItsEmbeddedServerInProcess: with the embedded server, the proxy's own
// connection is an in-memory pipe, not TCP, and batches go through it; the server still listens on
// its port for the forwarder.
func TestEventIntakeReachesItsEmbeddedServerInProcess(t *testing.T) {
	e := startIntake(t, intakeConfig(t))
	if addr := e.app.nc.ConnectedAddr(); addr != "pipe" {
		t.Fatalf("the proxy's NATS connection goes to %q, want the in-process pipe", addr)
	}
	plain, want := intakeBatch("inproc", 5)
	if r := e.post("/v1/log_event", plain, "STATSIG-API-KEY", intakeServerKey); r.status != http.StatusAccepted {
		t.Fatalf("%d %q", r.status, r.raw)
	}
	// e.messages reads the stream over TCP, through the URL the forwarder uses.
	if got := eventsIn(t, e.messages()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("stored %q, want %q", got, want)
	}
}

// TestEventIntakeBoundsBodiesInFlight fills limits.max_in_flight_event_bytes with requests held
// mid-body (a chunked body is given room for the largest one until it is read): another request
// waits for room, and is stored once the held ones finish, or gets 503 when they do not within the
// publish timeout, or is counted as client_gone when its client leaves. A compressed body needs
// room for its decompressed size too.
func TestEventIntakeBoundsBodiesInFlight(t *testing.T) {
	// Just under limits.max_body_bytes (8 KiB) of JSON: alone it fits, beside a held body it does not.
	large, _ := intakeBatch("large", 1)
	for n := 2; ; n++ {
		next, _ := intakeBatch("large", n)
		if len(next) > 8*1024 {
			break
		}
		large = next
	}
	small, _ := intakeBatch("small", 3)
	tests := []struct {
		name   string
		held   int    // requests held mid-body, 8 KiB each
		body   []byte // what the other request sends
		coding string
		finish bool // the held requests finish while it waits
		leave  bool // its client gives up while it waits
	}{
		{"full, room frees up", 2, small, "", true, false},
		{"full, no room in time", 2, small, "", false, false},
		{"room for the gzip body, not for it decompressed", 1, large, "gzip", false, false},
		{"gzip body waits for room to decompress", 1, large, "gzip", true, false},
		// Read in full, its body lets net/http see the client leave (an unread one does not).
		{"gzip body waits for room to decompress, the client leaves", 1, large, "gzip", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := intakeConfig(t)
			cfg.Limits.MaxBodyBytes = 8 * config.KiB
			cfg.Limits.MaxInFlightEventBytes = 16 * config.KiB
			cfg.NATS.PublishTimeout = time.Second
			e := startIntake(t, cfg)

			var held []*slowPost
			for i := range tc.held {
				held = append(held, e.postSlowly(t, fmt.Sprint("held", i)))
			}
			e.awaitMetric(t, "sigedge_event_bytes_in_flight", nil, float64(tc.held*8*1024))
			ctx, leave := context.WithCancel(context.Background())
			defer leave()
			other := make(chan intakeReply, 1)
			body := tc.body
			if tc.coding != "" {
				body = encodeBody(t, tc.coding, body)
				if room := 16*1024 - tc.held*8*1024; len(body) > room || len(body)+len(tc.body) <= room {
					t.Fatalf("the %d-byte body (%d decompressed) must fit the %d bytes left only as received", len(body), len(tc.body), room)
				}
			}
			go func() {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.base+"/v1/log_event", bytes.NewReader(body))
				req.Header.Set(wire.HeaderAPIKey, intakeServerKey)
				if tc.coding != "" {
					req.Header.Set("Content-Encoding", tc.coding)
				}
				other <- doQuietly(req)
			}()
			switch {
			case tc.finish:
				e.awaitMetric(t, "sigedge_event_requests_waiting", nil, 1)
			case tc.leave:
				e.awaitMetric(t, "sigedge_event_requests_waiting", nil, 1)
				leave()
				<-other
				e.awaitMetric(t, "sigedge_event_batches_rejected_total", map[string]string{"endpoint": "log_event", "reason": "client_gone"}, 1)
			default:
				r := <-other
				if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" ||
					!strings.Contains(r.raw, "max_in_flight_event_bytes") {
					t.Fatalf("a request without room: %d %q, Retry-After %q; want 503 naming the limit", r.status, r.raw, r.header.Get("Retry-After"))
				}
				if n := e.metricValue("sigedge_event_batches_rejected_total", map[string]string{"endpoint": "log_event", "reason": "overloaded"}); n != 1 {
					t.Errorf("overloaded batches %v, want 1", n)
				}
			}
			for _, h := range held {
				if r := h.finish(); r.status != http.StatusAccepted {
					t.Fatalf("held request %s: %d %q", h.tag, r.status, r.raw)
				}
			}
			want := tc.held
			if tc.finish {
				if r := <-other; r.status != http.StatusAccepted {
					t.Fatalf("the waiting request: %d %q, want 202 once there was room", r.status, r.raw)
				}
				want++
			}
			if msgs := e.messages(); len(msgs) != want {
				t.Errorf("%d batches stored, want %d", len(msgs), want)
			}
			for _, m := range []string{"sigedge_event_bytes_in_flight", "sigedge_event_requests_waiting"} {
				if v := e.metricValue(m, nil); v != 0 {
					t.Errorf("%s = %v after every request was answered", m, v)
				}
			}
		})
	}
}

// slowPost is a log_event request whose body (chunked, of no declared length) is sent in two parts.
type slowPost struct {
	tag   string
	rest  []byte
	pipe  *io.PipeWriter
	reply chan intakeReply
}

// postSlowly starts a request and sends the first part of its body.
func (e *intakeEnv) postSlowly(t *testing.T, tag string) *slowPost {
	t.Helper()
	body, _ := intakeBatch(tag, 3)
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, e.base+"/v1/log_event", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(wire.HeaderAPIKey, intakeServerKey)
	s := &slowPost{tag: tag, rest: body[10:], pipe: pw, reply: make(chan intakeReply, 1)}
	go func() { s.reply <- doQuietly(req) }()
	if _, err := pw.Write(body[:10]); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pw.CloseWithError(errors.New("test over")) })
	return s
}

// finish sends the rest of the body and returns the reply.
func (s *slowPost) finish() intakeReply {
	go func() {
		_, _ = s.pipe.Write(s.rest)
		_ = s.pipe.Close()
	}()
	return <-s.reply
}

// doQuietly sends req and reads the reply, without a testing.T (for other goroutines): a failed
// request comes back as status 0 with the error in raw. intakeEnv.do is it, checked.
func doQuietly(req *http.Request) intakeReply {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return intakeReply{raw: err.Error()}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return intakeReply{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
}

// awaitMetric waits, for at most 10 s, until name{labels} is want.
func (e *intakeEnv) awaitMetric(t *testing.T, name string, labels map[string]string, want float64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		got := e.metricValue(name, labels)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", name, got, want)
		}
	}
}

// TestEventIntakeStoresConcurrentBatchesVerbatim posts distinct batches from several clients at once,
// plain and compressed, so that request buffers are recycled while others are in use: every batch
// must be stored once, byte for byte, under the id of its own events.
func TestEventIntakeStoresConcurrentBatchesVerbatim(t *testing.T) {
	e := startIntake(t, intakeConfig(t))
	const clients, perClient = 6, 15
	codings := []string{"", "gzip", "zstd", "deflate", "br"}
	type sent struct {
		plain []byte
		id    string
	}
	bodies := make(chan sent, clients*perClient)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for k := range perClient {
				// Sizes vary, so that a recycled buffer is sometimes larger than the next body.
				plain, _ := intakeBatch(fmt.Sprintf("c%d-%d", c, k), 1+(c*perClient+k)%40)
				coding := codings[(c+k)%len(codings)]
				r := e.post("/v1/log_event", encodeBody(t, coding, plain), "STATSIG-API-KEY", intakeServerKey, "Content-Encoding", coding)
				if r.status != http.StatusAccepted {
					t.Errorf("client %d batch %d (%q): %d %q", c, k, coding, r.status, r.raw)
					return
				}
				b, err := queue.DecodeBatch(plain)
				if err != nil {
					t.Error(err)
					return
				}
				bodies <- sent{plain: plain, id: queue.BatchID(intakeServerKey, b.EventsRaw)}
			}
		})
	}
	wg.Wait()
	close(bodies)
	if t.Failed() {
		return
	}
	want := map[string][]byte{}
	for b := range bodies {
		want[b.id] = b.plain
	}
	msgs := e.messages()
	if len(msgs) != clients*perClient || len(want) != clients*perClient {
		t.Fatalf("%d messages stored for %d distinct batches, want %d", len(msgs), len(want), clients*perClient)
	}
	for _, m := range msgs {
		id := m.Header.Get(jetstream.MsgIDHeader)
		if plain, ok := want[id]; !ok || !bytes.Equal(m.Data, plain) {
			t.Fatalf("message %d (id %q) is not the batch sent with that id: %q", m.Sequence, id, m.Data)
		}
		delete(want, id)
	}
	if got := e.metricValue("sigedge_event_requests_total", map[string]string{"endpoint": "log_event", "code": "202"}); got != clients*perClient {
		t.Errorf("requests answered 202 = %v, want %d", got, clients*perClient)
	}
}

func TestEventIntakeCORSPreflight(t *testing.T) {
	e := startIntake(t, intakeConfig(t))
	req, _ := http.NewRequest(http.MethodOptions, e.base+"/v1/rgstr?k="+intakeClientKey, nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "statsig-event-count,statsig-sdk-type")
	r := e.do(req)
	if r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != "*" ||
		r.header.Get("Access-Control-Allow-Headers") != "statsig-event-count,statsig-sdk-type" {
		t.Fatalf("preflight: %d %v", r.status, r.header)
	}
}

func TestEventIntakeDedupesExposuresWhenEnabled(t *testing.T) {
	cfg := intakeConfig(t)
	cfg.Proxy.ExposureDedupe = config.ExposureDedupe{Enabled: true, Window: time.Minute, MaxKeys: 1000}
	e := startIntake(t, cfg)
	expo := func(user string) string {
		return `{"eventName":"statsig::gate_exposure","user":{"userID":"` + user + `"},"metadata":{"gate":"g","gateValue":"true","ruleID":"r"},"time":1}`
	}
	custom := intakeEvent("dedupe", 1)
	r := e.post("/v1/log_event", []byte(`{"events":[`+expo("a")+`,`+expo("a")+`,`+custom+`]}`), "STATSIG-API-KEY", intakeServerKey)
	if r.status != http.StatusAccepted || r.body["dropped"] != float64(1) {
		t.Fatalf("first batch: %d %q", r.status, r.raw)
	}
	r = e.post("/v1/log_event", []byte(`{"events":[`+expo("a")+`,`+expo("b")+`,`+custom+`]}`), "STATSIG-API-KEY", intakeServerKey)
	if r.status != http.StatusAccepted {
		t.Fatalf("second batch: %d %q", r.status, r.raw)
	}
	got := eventsIn(t, e.messages())
	want := []string{expo("a"), custom, expo("b"), custom}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("stored %q, want %q", got, want)
	}
}

// testNATS is a JetStream server the proxy connects to as to a cluster (nats.embedded: false), so a
// test can stop it and start it again on the same port and files.
type testNATS struct {
	t    *testing.T
	opts *server.Options
	mu   sync.Mutex
	srv  *server.Server
}

func startTestNATS(t *testing.T, maxPayload int32) *testNATS {
	t.Helper()
	n := &testNATS{t: t, opts: &server.Options{
		ServerName: "intake-test", Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), MaxPayload: maxPayload, NoSigs: true, NoLog: true, DisableJetStreamBanner: true,
	}}
	n.start()
	n.opts.Port = n.srv.Addr().(*net.TCPAddr).Port // restarts reuse the port the proxy knows
	t.Cleanup(n.stop)
	return n
}

func (n *testNATS) start() {
	n.t.Helper()
	srv, err := server.NewServer(n.opts)
	if err != nil {
		n.t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(20 * time.Second) {
		n.t.Fatal("nats-server not ready")
	}
	n.mu.Lock()
	n.srv = srv
	n.mu.Unlock()
}

func (n *testNATS) stop() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

func (n *testNATS) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.opts.Port) }

func externalNATSConfig(t *testing.T, n *testNATS) config.Config {
	cfg := intakeConfig(t)
	cfg.NATS.Embedded = false
	cfg.NATS.URLs = []string{n.url()}
	return cfg
}

func TestEventIntakeSplitsBatchesLargerThanMaxPayload(t *testing.T) {
	n := startTestNATS(t, 32<<10)
	e := startIntake(t, externalNATSConfig(t, n))
	plain, want := intakeBatch("split", 2000) // about 250 KB, under limits.max_body_bytes
	for attempt := 0; attempt < 2; attempt++ {
		r := e.post("/v1/log_event", encodeBody(t, "gzip", plain), "STATSIG-API-KEY", intakeServerKey, "Content-Encoding", "gzip")
		if r.status != http.StatusAccepted {
			t.Fatalf("attempt %d: %d %q", attempt, r.status, r.raw)
		}
	}
	msgs := e.messages()
	if min := len(plain) / (32 << 10); len(msgs) < min {
		t.Fatalf("%d messages: a %d-byte batch needs at least %d under a 32 KiB max payload", len(msgs), len(plain), min)
	}
	for _, m := range msgs {
		if len(m.Data) > 32<<10 {
			t.Fatalf("message of %d bytes", len(m.Data))
		}
	}
	if got := eventsIn(t, msgs); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("stored %d events, want the %d sent, once and in order", len(got), len(want))
	}
}

// sdkLikeClient posts batches and retries like the SDKs do: on 5xx and transport errors, with a
// backoff, a bounded number of times.
type sdkLikeClient struct {
	base     string
	client   *http.Client
	attempts int
	backoff  time.Duration

	mu       sync.Mutex
	statuses map[int]int
	retryAft int
	saw503   chan struct{} // one (non-blocking) signal per 503
}

func (c *sdkLikeClient) send(ctx context.Context, body []byte) error {
	var last string
	for attempt := 0; attempt < c.attempts; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(c.backoff):
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/log_event", bytes.NewReader(body))
		req.Header.Set("STATSIG-API-KEY", intakeServerKey)
		resp, err := c.client.Do(req)
		if err != nil {
			last = err.Error()
			continue
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		c.mu.Lock()
		c.statuses[resp.StatusCode]++
		if resp.StatusCode == http.StatusServiceUnavailable {
			if resp.Header.Get("Retry-After") != "" {
				c.retryAft++
			}
			select {
			case c.saw503 <- struct{}{}:
			default:
			}
		}
		c.mu.Unlock()
		if resp.StatusCode == http.StatusAccepted {
			return nil
		}
		last = fmt.Sprintf("%d %s", resp.StatusCode, raw)
		if resp.StatusCode < 500 {
			return fmt.Errorf("not retryable: %s", last)
		}
	}
	return fmt.Errorf("gave up after %d attempts: %s", c.attempts, last)
}

// TestEventIntakeSurvivesAJetStreamOutage stops the JetStream server while SDK-like clients send
// batches: requests get 503 and are retried, and once JetStream is back every event is stored
// exactly once.
func TestEventIntakeSurvivesAJetStreamOutage(t *testing.T) {
	n := startTestNATS(t, 1<<20)
	cfg := externalNATSConfig(t, n)
	cfg.NATS.PublishTimeout = time.Second
	e := startIntake(t, cfg)
	c := &sdkLikeClient{base: e.base, client: &http.Client{Timeout: 10 * time.Second}, attempts: 200, backoff: 100 * time.Millisecond, statuses: map[int]int{}, saw503: make(chan struct{}, 64)}

	const workers, perWorker, eventsPerBatch = 4, 30, 10
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var sent sync.Map // event -> true
	progress := make(chan struct{}, workers*perWorker)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for b := 0; b < perWorker; b++ {
				body, events := intakeBatch(fmt.Sprintf("outage-%d-%d", w, b), eventsPerBatch)
				for _, ev := range events {
					sent.Store(ev, true)
				}
				if err := c.send(ctx, body); err != nil {
					errs <- fmt.Errorf("worker %d batch %d: %w", w, b, err)
					return
				}
				progress <- struct{}{}
			}
		}(w)
	}
	// Let some batches through, then take JetStream away mid-stream.
	for i := 0; i < workers*5; i++ {
		select {
		case <-progress:
		case err := <-errs:
			t.Fatal(err)
		case <-ctx.Done():
			t.Fatal("no progress before the outage")
		}
	}
	n.stop()
	// While it is down, the proxy answers 503 with Retry-After (probe until seen: the first requests
	// may still be in flight).
	probe, _ := intakeBatch("probe", 1)
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := e.post("/v1/log_event", probe, "STATSIG-API-KEY", intakeServerKey)
		if r.status == http.StatusServiceUnavailable {
			if r.header.Get("Retry-After") == "" || r.body["success"] != false {
				t.Fatalf("503 without Retry-After or success:false: %v %q", r.header, r.raw)
			}
			break
		}
		if r.status != http.StatusAccepted || time.Now().After(deadline) {
			t.Fatalf("while JetStream is down: %d %q", r.status, r.raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ok, reasons := e.app.Ready(); ok {
		t.Error("readyz is ready while NATS is down")
	} else if reasons["nats"] == "" {
		t.Errorf("readiness reasons %v lack nats", reasons)
	}
	// Keep it down until the clients themselves were refused and are retrying.
	for i := 0; i < workers; i++ {
		select {
		case <-c.saw503:
		case <-ctx.Done():
			t.Fatal("the clients never saw a 503 while JetStream was down")
		}
	}
	n.start()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c.mu.Lock()
	t.Logf("client saw statuses %v (%d 503s with Retry-After)", c.statuses, c.retryAft)
	if c.statuses[http.StatusServiceUnavailable] == 0 {
		t.Error("the SDK-like clients never saw a 503: the outage was not exercised")
	}
	c.mu.Unlock()

	counts := map[string]int{}
	for _, ev := range eventsIn(t, e.messages()) {
		counts[ev]++
	}
	missing, dup := 0, 0
	sent.Range(func(k, _ any) bool {
		switch counts[k.(string)] {
		case 0:
			missing++
		case 1:
		default:
			dup++
		}
		return true
	})
	if total := workers * perWorker * eventsPerBatch; missing > 0 || dup > 0 {
		t.Fatalf("of %d events sent, %d missing and %d stored more than once", total, missing, dup)
	}
}

func TestEventIntakeStreamFull(t *testing.T) {
	cfg := intakeConfig(t)
	cfg.NATS.Stream.MaxBytes = 64 << 10
	e := startIntake(t, cfg)
	var r intakeReply
	accepted := 0
	for i := 0; i < 100; i++ {
		body, _ := intakeBatch(fmt.Sprint("full", i), 50) // about 8 KB
		if r = e.post("/v1/log_event", body, "STATSIG-API-KEY", intakeServerKey); r.status != http.StatusAccepted {
			break
		}
		accepted++
	}
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !strings.Contains(fmt.Sprint(r.body["error"]), "stream_full") {
		t.Fatalf("full stream: %d %v %q, want 503 with Retry-After", r.status, r.header, r.raw)
	}
	if accepted == 0 || len(e.messages()) != accepted {
		t.Fatalf("accepted %d batches, stream holds %d", accepted, len(e.messages()))
	}
	if got := e.metricValue("sigedge_queue_publish_failures_total", map[string]string{"reason": "stream_full"}); got != 1 {
		t.Errorf("stream_full failures = %v, want 1", got)
	}
	if got := e.metricValue("sigedge_events_rejected_total", map[string]string{"reason": "unavailable"}); got != 50 {
		t.Errorf("rejected{unavailable} = %v, want 50", got)
	}
	if !strings.Contains(e.logs.String(), "event stream full") {
		t.Error("no log line says the stream is full")
	}
	// The gauges come from the stream's info, scraped over HTTP like Prometheus does.
	resp, err := http.Get("http://" + e.app.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(text), fmt.Sprintf("sigedge_queue_stream_messages %d", accepted)) ||
		!strings.Contains(string(text), "sigedge_queue_stream_max_bytes 65536") {
		t.Errorf("/metrics lacks the stream gauges:\n%s", grepLines(string(text), "sigedge_queue_stream"))
	}
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestProxyMadeExposuresAreStored(t *testing.T) {
	e := startIntake(t, intakeConfig(t))
	expo := []byte(`{"eventName":"statsig::gate_exposure","user":{"userID":"u"},"metadata":{"gate":"g","gateValue":"true","ruleID":"r"},"time":1}`)
	for attempt := 0; attempt < 2; attempt++ { // a retried flush is stored once
		if err := e.app.publishExposures(context.Background(), intakeServerKey, [][]byte{expo}); err != nil {
			t.Fatal(err)
		}
	}
	msgs := e.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if got := eventsIn(t, msgs); len(got) != 1 || got[0] != string(expo) {
		t.Fatalf("stored %q", got)
	}
	if m.Header.Get(wire.MsgSource) != "proxy" || m.Header.Get(wire.MsgEndpoint) != "log_event" || m.Header.Get(wire.MsgSDKKey) != intakeServerKey {
		t.Fatalf("headers %v", m.Header)
	}
}
