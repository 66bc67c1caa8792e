package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/metrictest"
	"github.com/sigedge/sigedge/internal/natstest"
	"github.com/sigedge/sigedge/internal/wire"
)

// testJS is a real JetStream server on 127.0.0.1 with the event streams, and a connection to it.
type testJS struct {
	srv    *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	stream config.Stream
	reg    *prometheus.Registry
}

func startTestJS(t *testing.T, maxPayload int32, mutate func(*config.Stream)) *testJS {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		ServerName: "queue-test", Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), MaxPayload: maxPayload, NoSigs: true, NoLog: true, DisableJetStreamBanner: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream := config.Default().NATS.Stream
	if mutate != nil {
		mutate(&stream)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := EnsureStreams(ctx, js, stream); err != nil {
		t.Fatal(err)
	}
	return &testJS{srv: srv, nc: nc, js: js, stream: stream, reg: prometheus.NewRegistry()}
}

func (tj *testJS) publisher(t *testing.T, dedupe config.ExposureDedupe) *Publisher {
	t.Helper()
	p, err := NewPublisher(PublisherOptions{Conn: tj.nc, Stream: tj.stream, Timeout: 3 * time.Second, Dedupe: dedupe, Registerer: tj.reg})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// messages returns every message of the event stream, in order.
func (tj *testJS) messages(t *testing.T) []*jetstream.RawStreamMsg {
	t.Helper()
	return natstest.StreamMessages(t, tj.js, tj.stream.Name)
}

func decoded(t *testing.T, body []byte) *Batch {
	t.Helper()
	b, err := DecodeBatch(body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPublishStoresTheBatchVerbatim(t *testing.T) {
	tj := startTestJS(t, 1<<20, nil)
	p := tj.publisher(t, config.ExposureDedupe{})
	body := sampleBatch(10)
	received := time.UnixMilli(1767225600123)
	meta := BatchMeta{Endpoint: wire.EndpointLogEvent, SDKType: "go-sdk", SDKVersion: "1.35.1", ClientTime: "1767225600000", ReceivedAt: received}
	res, err := p.Publish(context.Background(), "secret-abc", meta, decoded(t, body))
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 10 || res.Messages != 1 || res.Duplicates != 0 {
		t.Fatalf("result = %+v", res)
	}
	msgs := tj.messages(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if string(m.Data) != string(body) {
		t.Error("stored body differs from the SDK's")
	}
	if want := wire.EventSubject(tj.stream.SubjectPrefix, "secret-abc"); m.Subject != want {
		t.Errorf("subject %q, want %q", m.Subject, want)
	}
	for k, want := range map[string]string{
		wire.MsgSDKKey: "secret-abc", wire.MsgEndpoint: "log_event", wire.MsgSource: "sdk", wire.MsgEventCount: "10",
		wire.MsgSDKType: "go-sdk", wire.MsgSDKVersion: "1.35.1", wire.MsgClientTime: "1767225600000",
		wire.MsgReceivedAt: "1767225600123", jetstream.MsgIDHeader: BatchID("secret-abc", decoded(t, body).EventsRaw),
		wire.MsgPart: "",
	} {
		if got := m.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
}

// TestPublishCompression: with s2 a body is stored compressed and marked so, with none it is stored
// as the JSON itself; either way it decodes to the batch the SDK sent, and the byte metrics say how
// much was saved.
func TestPublishCompression(t *testing.T) {
	body := sampleBatch(50)
	for _, tt := range []struct {
		compression  string
		wantEncoding string
	}{
		{config.CompressionS2, wire.EncodingS2},
		{config.CompressionNone, ""},
	} {
		t.Run(tt.compression, func(t *testing.T) {
			tj := startTestJS(t, 1<<20, func(s *config.Stream) { s.Compression = tt.compression })
			p := tj.publisher(t, config.ExposureDedupe{})
			res, err := p.Publish(context.Background(), "secret-abc", BatchMeta{Endpoint: wire.EndpointLogEvent}, decoded(t, body))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := tj.js.Stream(ctx, tj.stream.Name)
			if err != nil {
				t.Fatal(err)
			}
			m, err := s.GetMsg(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Header.Get(wire.MsgEncoding); got != tt.wantEncoding {
				t.Errorf("%s = %q, want %q", wire.MsgEncoding, got, tt.wantEncoding)
			}
			if res.BodyBytes != len(body) || res.StoredBytes != len(m.Data) {
				t.Errorf("result bytes %d json / %d stored, want %d / %d", res.BodyBytes, res.StoredBytes, len(body), len(m.Data))
			}
			if tt.wantEncoding != "" && len(m.Data)*3 > len(body) {
				t.Errorf("stored %d bytes for a %d-byte batch: expected at least 3x smaller", len(m.Data), len(body))
			}
			if got := natstest.BatchBody(t, m); string(got) != string(body) {
				t.Error("stored body does not decode to the SDK's batch")
			}
			jsonBytes := metrictest.Value(t, tj.reg, "sigedge_queue_body_bytes_total", map[string]string{"form": "json"})
			stored := metrictest.Value(t, tj.reg, "sigedge_queue_body_bytes_total", map[string]string{"form": "stored"})
			if jsonBytes != float64(len(body)) || stored != float64(len(m.Data)) {
				t.Errorf("body byte metrics json=%v stored=%v, want %d and %d", jsonBytes, stored, len(body), len(m.Data))
			}
		})
	}
}

func TestPublishRetryIsStoredOnce(t *testing.T) {
	tj := startTestJS(t, 1<<20, nil)
	p := tj.publisher(t, config.ExposureDedupe{})
	body := sampleBatch(5)
	for attempt, wantDup := range []int{0, 1, 1} {
		res, err := p.Publish(context.Background(), "secret-abc", BatchMeta{Endpoint: wire.EndpointLogEvent}, decoded(t, body))
		if err != nil {
			t.Fatal(err)
		}
		if res.Duplicates != wantDup {
			t.Fatalf("attempt %d: duplicates = %d, want %d", attempt, res.Duplicates, wantDup)
		}
	}
	// The same events under another key are another batch.
	if _, err := p.Publish(context.Background(), "secret-other", BatchMeta{Endpoint: wire.EndpointLogEvent}, decoded(t, body)); err != nil {
		t.Fatal(err)
	}
	if n := len(tj.messages(t)); n != 2 {
		t.Fatalf("%d messages, want 2", n)
	}
	if got := metrictest.Value(t, tj.reg, "sigedge_queue_duplicate_messages_total", nil); got != 2 {
		t.Errorf("duplicate metric = %v, want 2", got)
	}
}

// rebatched is a batch of the given session holding events, as an SDK sends them.
func rebatched(session string, events ...string) []byte {
	return []byte(`{"events":[` + strings.Join(events, ",") + `],"statsigMetadata":{"sdkType":"statsig-server-core","sessionID":"` + session + `"}}`)
}

// statsig-node-core re-sends the events of a batch whose reply it lost after newer events, cut at its
// batch size: other batches, other ids. The retry memory stores each event once; without it, or
// without a session id to tell SDK instances apart, the repeats are stored again.
func TestPublishRebatchedRetryIsStoredOnce(t *testing.T) {
	ev := func(i int) string { return sampleEvent(i) }
	tests := []struct {
		name        string
		retries     bool
		session     string
		wantStored  int
		wantRetried float64
	}{
		{"remembered per session", true, "session-1", 6, 4},
		{"off", false, "session-1", 10, 0},
		{"no session id", true, "", 10, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tj := startTestJS(t, 1<<20, nil)
			p, err := NewPublisher(PublisherOptions{Conn: tj.nc, Stream: tj.stream, Timeout: 3 * time.Second, Registerer: tj.reg,
				Retries: config.RetryDedupe{Enabled: tc.retries, MaxEvents: 1000}})
			if err != nil {
				t.Fatal(err)
			}
			batches := [][]byte{
				rebatched(tc.session, ev(0), ev(1), ev(2), ev(3)), // stored, the reply lost
				rebatched(tc.session, ev(4), ev(5), ev(0)),        // newer events, then the retry, cut
				rebatched(tc.session, ev(1), ev(2), ev(3)),        // the rest of the retry
			}
			wantRetried := []int{0, 1, 3}
			for i, body := range batches {
				res, err := p.Publish(context.Background(), "secret-abc", BatchMeta{Endpoint: wire.EndpointLogEvent}, decoded(t, body))
				if err != nil {
					t.Fatal(err)
				}
				want := 0
				if tc.wantRetried > 0 {
					want = wantRetried[i]
				}
				if res.Retried != want || res.Events != len(decoded(t, body).Events) {
					t.Errorf("batch %d: retried %d of %d events, want %d of %d", i, res.Retried, res.Events, want, len(decoded(t, body).Events))
				}
			}
			stored := storedEvents(t, tj.messages(t))
			if len(stored) != tc.wantStored {
				t.Errorf("%d events stored, want %d", len(stored), tc.wantStored)
			}
			seen := map[string]bool{}
			for _, e := range stored {
				seen[e] = true
			}
			for i := range 6 {
				if !seen[ev(i)] {
					t.Errorf("event %d was not stored", i)
				}
			}
			if got := metrictest.Value(t, tj.reg, "sigedge_queue_retried_events_total", nil); got != tc.wantRetried {
				t.Errorf("retried metric = %v, want %v", got, tc.wantRetried)
			}
			if got := metrictest.Value(t, tj.reg, "sigedge_queue_events_published_total", map[string]string{"source": "sdk"}); got != float64(tc.wantStored) {
				t.Errorf("published events metric = %v, want %d", got, tc.wantStored)
			}
		})
	}
}

// storedEvents decodes every stored message and returns its events' raw JSON, in order, checking
// each message's event count header.
func storedEvents(t *testing.T, msgs []*jetstream.RawStreamMsg) []string {
	t.Helper()
	var out []string
	for _, m := range msgs {
		b, err := DecodeBatch(m.Data)
		if err != nil {
			t.Fatalf("stored message %d is not a batch: %v", m.Sequence, err)
		}
		if b.Dropped.Total() != 0 {
			t.Fatalf("stored message %d holds invalid events", m.Sequence)
		}
		if got := m.Header.Get(wire.MsgEventCount); got != fmt.Sprint(len(b.Events)) {
			t.Errorf("message %d: event count header %q, body has %d", m.Sequence, got, len(b.Events))
		}
		for _, e := range b.Events {
			out = append(out, string(e))
		}
	}
	return out
}

func TestPublishSplitsBatchesLargerThanMaxPayload(t *testing.T) {
	const maxPayload = 16 << 10
	tj := startTestJS(t, maxPayload, nil)
	p := tj.publisher(t, config.ExposureDedupe{})
	huge := `{"eventName":"huge","value":"` + strings.Repeat("x", maxPayload) + `"}`
	var want []string
	var sb strings.Builder
	sb.WriteString(`{"statsigMetadata":{"sdkType":"t"},"events":[`)
	for i := 0; i < 200; i++ {
		ev := sampleEvent(i)
		want = append(want, ev)
		sb.WriteString(ev + ",")
		if i == 100 {
			sb.WriteString(huge + ",")
		}
	}
	sb.WriteString(`{"no":"name"}],"clientTime":"1"}`)
	body := []byte(sb.String())

	res, err := p.Publish(context.Background(), "client-xyz", BatchMeta{Endpoint: wire.EndpointRgstr}, decoded(t, body))
	if err != nil {
		t.Fatal(err)
	}
	if res.Dropped[DropTooLarge] != 1 || res.Events != 200 || res.Messages < 7 {
		t.Fatalf("result = %+v: want 200 events in several messages, 1 too large", res)
	}
	msgs := tj.messages(t)
	if len(msgs) != res.Messages {
		t.Fatalf("%d messages stored, result says %d", len(msgs), res.Messages)
	}
	ids := map[string]bool{}
	for i, m := range msgs {
		if size := len(m.Data); size > maxPayload {
			t.Errorf("message %d is %d bytes, max payload %d", i, size, maxPayload)
		}
		if got, want := m.Header.Get(wire.MsgPart), fmt.Sprintf("%d/%d", i+1, len(msgs)); got != want {
			t.Errorf("message %d part = %q, want %q", i, got, want)
		}
		ids[m.Header.Get(jetstream.MsgIDHeader)] = true
		var top map[string]json.RawMessage
		if err := json.Unmarshal(m.Data, &top); err != nil {
			t.Fatal(err)
		}
		if string(top["statsigMetadata"]) != `{"sdkType":"t"}` || string(top["clientTime"]) != `"1"` {
			t.Errorf("message %d lost the batch's other fields: %s", i, m.Data[:min(len(m.Data), 80)])
		}
	}
	if len(ids) != len(msgs) {
		t.Errorf("message ids are not distinct: %v", ids)
	}
	if got := storedEvents(t, msgs); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("stored events differ from the sent ones (%d stored, %d sent)", len(got), len(want))
	}
	// The SDK's retry of the same batch is recognised part by part.
	res, err = p.Publish(context.Background(), "client-xyz", BatchMeta{Endpoint: wire.EndpointRgstr}, decoded(t, body))
	if err != nil {
		t.Fatal(err)
	}
	if res.Duplicates != len(msgs) || len(tj.messages(t)) != len(msgs) {
		t.Fatalf("retry stored again: %+v", res)
	}
}

func TestPublishRefusesWhatCannotBeStored(t *testing.T) {
	tj := startTestJS(t, 4<<10, nil)
	p := tj.publisher(t, config.ExposureDedupe{})
	// Not one event fits a message.
	huge := []byte(`{"events":[{"eventName":"a","v":"` + strings.Repeat("x", 8<<10) + `"}]}`)
	if _, err := p.Publish(context.Background(), "secret-a", BatchMeta{}, decoded(t, huge)); !errors.Is(err, ErrTooLarge) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	// The metadata alone exceeds a message.
	meta := []byte(`{"events":[{"eventName":"a"}],"statsigMetadata":"` + strings.Repeat("m", 8<<10) + `"}`)
	if _, err := p.Publish(context.Background(), "secret-a", BatchMeta{}, decoded(t, meta)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if n := len(tj.messages(t)); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
}

func TestPublishWhenTheStreamIsFull(t *testing.T) {
	tj := startTestJS(t, 1<<20, func(s *config.Stream) { s.MaxBytes = 16 << 10 })
	p := tj.publisher(t, config.ExposureDedupe{})
	var err error
	stored := 0
	for i := 0; i < 100 && err == nil; i++ { // 16 KiB hold a handful of 5 KB batches
		err = p.PublishBatch(context.Background(), "secret-a", BatchMeta{}, [][]byte{[]byte(sampleEvent(i)), []byte(sampleEvent(i + 1000)), []byte(sampleEvent(i + 2000)), []byte(sampleEvent(i + 3000)), []byte(sampleEvent(i + 4000)), []byte(sampleEvent(i + 5000)), []byte(sampleEvent(i + 6000)), []byte(sampleEvent(i + 7000)), []byte(sampleEvent(i + 8000)), []byte(sampleEvent(i + 9000))})
		if err == nil {
			stored++
		}
	}
	var pe *PublishError
	if !errors.Is(err, ErrUnavailable) || !errors.As(err, &pe) || pe.Reason != "stream_full" {
		t.Fatalf("err = %v, want a stream_full PublishError", err)
	}
	if stored == 0 || len(tj.messages(t)) != stored {
		t.Fatalf("stored %d batches, stream holds %d", stored, len(tj.messages(t)))
	}
	if got := metrictest.Value(t, tj.reg, "sigedge_queue_publish_failures_total", map[string]string{"reason": "stream_full"}); got != 1 {
		t.Errorf("stream_full failures = %v, want 1", got)
	}
	if got := metrictest.Value(t, tj.reg, "sigedge_queue_stream_messages", nil); got != float64(stored) {
		t.Errorf("stream messages gauge = %v, want %d", got, stored)
	}
}

func TestPublishWhileDisconnectedFailsFast(t *testing.T) {
	tj := startTestJS(t, 1<<20, nil)
	p := tj.publisher(t, config.ExposureDedupe{})
	disconnected := make(chan struct{})
	tj.nc.SetDisconnectErrHandler(func(*nats.Conn, error) { close(disconnected) })
	tj.srv.Shutdown()
	select {
	case <-disconnected:
	case <-time.After(10 * time.Second):
		t.Fatal("client did not notice the server stopped")
	}
	start := time.Now()
	err := p.PublishBatch(context.Background(), "secret-a", BatchMeta{}, [][]byte{[]byte(`{"eventName":"a"}`)})
	var pe *PublishError
	if !errors.Is(err, ErrUnavailable) || !errors.As(err, &pe) || pe.Reason != "disconnected" {
		t.Fatalf("err = %v, want a disconnected PublishError", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s: a disconnected publisher must answer at once", d)
	}
}

func exposureEvent(name, user, spec, rule, value string) []byte {
	switch name {
	case "statsig::gate_exposure":
		return fmt.Appendf(nil, `{"eventName":%q,"user":{"userID":%q},"metadata":{"gate":%q,"ruleID":%q,"gateValue":%q,"serverTime":"1"},"time":1}`, name, user, spec, rule, value)
	case "statsig::config_exposure":
		return fmt.Appendf(nil, `{"eventName":%q,"user":{"userID":%q},"metadata":{"config":%q,"ruleID":%q,"rulePassed":%q},"time":2}`, name, user, spec, rule, value)
	}
	return fmt.Appendf(nil, `{"eventName":%q,"user":{"userID":%q},"metadata":{"config":%q,"ruleID":%q,"parameterName":%q,"allocatedExperiment":"","isExplicitParameter":"false"},"time":3}`, name, user, spec, rule, value)
}

func TestExposureKey(t *testing.T) {
	gate := exposureEvent("statsig::gate_exposure", "u1", "g", "r", "true")
	tests := []struct {
		name string
		a, b []byte
		same bool
	}{
		{"same exposure, other time and detail metadata", gate, []byte(`{"time":99,"eventName":"statsig::gate_exposure","user":{"userID":"u1"},"metadata":{"gate":"g","ruleID":"r","gateValue":"true","reason":"Network"}}`), true},
		{"other user", gate, exposureEvent("statsig::gate_exposure", "u2", "g", "r", "true"), false},
		{"other gate value", gate, exposureEvent("statsig::gate_exposure", "u1", "g", "r", "false"), false},
		{"other rule", gate, exposureEvent("statsig::gate_exposure", "u1", "g", "r2", "true"), false},
		{"other spec", gate, exposureEvent("statsig::gate_exposure", "u1", "g2", "r", "true"), false},
		{"config vs gate", gate, exposureEvent("statsig::config_exposure", "u1", "g", "r", "true"), false},
		{"layer parameters differ", exposureEvent("statsig::layer_exposure", "u1", "l", "r", "p1"), exposureEvent("statsig::layer_exposure", "u1", "l", "r", "p2"), false},
		{"custom IDs in any order",
			[]byte(`{"eventName":"statsig::config_exposure","user":{"customIDs":{"a":"1","b":"2"}},"metadata":{"config":"c","ruleID":"r"}}`),
			[]byte(`{"eventName":"statsig::config_exposure","user":{"customIDs":{"b":"2","a":"1"}},"metadata":{"config":"c","ruleID":"r"}}`), true},
		{"other custom ID",
			[]byte(`{"eventName":"statsig::config_exposure","user":{"customIDs":{"a":"1"}},"metadata":{"config":"c","ruleID":"r"}}`),
			[]byte(`{"eventName":"statsig::config_exposure","user":{"customIDs":{"a":"2"}},"metadata":{"config":"c","ruleID":"r"}}`), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ka, oka := keyOf("secret-a", nil, tc.a)
			kb, okb := keyOf("secret-a", nil, tc.b)
			if !oka || !okb {
				t.Fatalf("not recognised as exposures: %v %v", oka, okb)
			}
			if (ka == kb) != tc.same {
				t.Fatalf("same key = %v, want %v", ka == kb, tc.same)
			}
		})
	}
	for name, ev := range map[string][]byte{
		"custom event":         []byte(`{"eventName":"purchase","user":{"userID":"u1"},"metadata":{"gate":"statsig::gate_exposure"}}`),
		"exposure without IDs": []byte(`{"eventName":"statsig::gate_exposure","user":{},"metadata":{"gate":"g","ruleID":"r"}}`),
	} {
		if _, ok := keyOf("secret-a", nil, ev); ok {
			t.Errorf("%s: must never be de-duplicated", name)
		}
	}
	if k1, _ := keyOf("secret-a", nil, gate); func() bool { k2, _ := keyOf("secret-b", nil, gate); return k1 == k2 }() {
		t.Error("the same exposure under two keys must not collide")
	}
	// Client SDKs put the stableID in the batch's statsigMetadata.
	anon := []byte(`{"eventName":"statsig::gate_exposure","user":{},"metadata":{"gate":"g","ruleID":"r"}}`)
	k1, ok1 := keyOf("client-a", []byte(`"s1"`), anon)
	k2, ok2 := keyOf("client-a", []byte(`"s2"`), anon)
	if !ok1 || !ok2 || k1 == k2 {
		t.Error("stable IDs must identify anonymous users")
	}
}

func TestPublishDedupesExposures(t *testing.T) {
	tj := startTestJS(t, 1<<20, func(s *config.Stream) { s.MaxBytes = 8 << 10 })
	p := tj.publisher(t, config.ExposureDedupe{Enabled: true, Window: time.Hour, MaxKeys: 1000})
	g := func(user, value string) []byte { return exposureEvent("statsig::gate_exposure", user, "g", "r", value) }
	custom := []byte(`{"eventName":"purchase","user":{"userID":"u1"}}`)
	publish := func(events ...[]byte) (Result, error) {
		var sb strings.Builder
		sb.WriteString(`{"events":[`)
		for i, e := range events {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.Write(e)
		}
		sb.WriteString(`]}`)
		return p.Publish(context.Background(), "secret-a", BatchMeta{}, decoded(t, []byte(sb.String())))
	}
	res, err := publish(g("u1", "true"), g("u1", "true"), custom, custom, g("u2", "true"), g("u1", "false"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 5 || res.Dropped[DropDuplicateExposure] != 1 {
		t.Fatalf("first batch: %+v, want 5 stored (custom events are never deduplicated), 1 duplicate", res)
	}
	res, err = publish(g("u1", "true"), g("u3", "true"))
	if err != nil || res.Events != 1 || res.Dropped[DropDuplicateExposure] != 1 {
		t.Fatalf("second batch: %+v %v, want u3 stored and u1 dropped", res, err)
	}
	if got := storedEvents(t, tj.messages(t)); len(got) != 6 {
		t.Fatalf("stream holds %d events, want 6", len(got))
	}
	// Fill the stream so that the next publish fails: its exposures must not be remembered, or the
	// SDK's retry would be dropped as a duplicate of events that were never stored.
	// Tiny fillers, smaller than the exposure's message: once one does not fit, the exposure cannot.
	for i := 0; i < 1000; i++ {
		if err = p.PublishBatch(context.Background(), "secret-a", BatchMeta{}, [][]byte{fmt.Appendf(nil, `{"eventName":"n%d"}`, i)}); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("stream did not fill: %v", err)
	}
	if _, err := publish(g("u4", "true")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("publish to a full stream: %v", err)
	}
	s, err := tj.js.Stream(context.Background(), tj.stream.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	res, err = publish(g("u4", "true"))
	if err != nil || res.Events != 1 {
		t.Fatalf("retry after the failure: %+v %v, want the exposure stored", res, err)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err    error
		reason string
	}{
		{&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum bytes exceeded"}, "stream_full"},
		{&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum messages exceeded"}, "stream_full"},
		{&jetstream.APIError{Code: 404, ErrorCode: jetstream.JSErrCodeStreamNotFound, Description: "stream not found"}, "no_stream"},
		{jetstream.ErrNoStreamResponse, "no_stream"},
		{jetstream.ErrAsyncPublishTimeout, "timeout"},
		{jetstream.ErrTooManyStalledMsgs, "timeout"},
		{context.DeadlineExceeded, "timeout"},
		{nats.ErrDisconnected, "disconnected"},
		{nats.ErrConnectionClosed, "disconnected"},
		{errors.New("something else"), "error"},
	}
	for _, tc := range tests {
		pe := classify(tc.err)
		if pe.Reason != tc.reason || !errors.Is(pe, ErrUnavailable) || !errors.Is(pe, tc.err) {
			t.Errorf("classify(%v) = %q, want %q wrapping ErrUnavailable and the cause", tc.err, pe.Reason, tc.reason)
		}
	}
}

func TestHeaderValuesAreSanitised(t *testing.T) {
	for in, want := range map[string]string{
		"go-sdk":                 "go-sdk",
		"evil\r\nNats-Msg-Id: x": "evilNats-Msg-Id: x",
		"caf\u00e9":              "caf",
		strings.Repeat("v", 300): strings.Repeat("v", 128),
	} {
		if got := headerValue(in); got != want {
			t.Errorf("headerValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEnsureStreamsIsIdempotent(t *testing.T) {
	tj := startTestJS(t, 1<<20, nil)
	ctx := context.Background()
	if w, err := EnsureStreams(ctx, tj.js, tj.stream); err != nil || len(w) != 0 {
		t.Fatalf("second EnsureStreams: %v %v", w, err)
	}
	changed := tj.stream
	changed.MaxBytes *= 2
	w, err := EnsureStreams(ctx, tj.js, changed)
	if err != nil || len(w) != 2 || w[0].Setting != "max_bytes" || !strings.Contains(w[0].String(), "left unchanged") {
		t.Fatalf("EnsureStreams with another max_bytes: %q %v, want a warning per stream, nothing changed", w, err)
	}
	s, _ := tj.js.Stream(ctx, tj.stream.Name)
	if info, _ := s.Info(ctx); info.Config.MaxBytes != int64(tj.stream.MaxBytes) || info.Config.Discard != jetstream.DiscardNew {
		t.Fatalf("stream changed: %+v", info.Config)
	}
}
