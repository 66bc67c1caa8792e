package forwarder

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigedge/sigedge/forwarder/forwardertest"
	"github.com/sigedge/sigedge/internal/wire"
)

const (
	keyA      = "secret-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	keyB      = "secret-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	clientKey = "client-ccccccccccccccccccccccccccccccccccccccc"
	metaGo1   = `{"sdkType":"go-sdk","sdkVersion":"1.35.1","sessionID":"s1"}`
	metaGo2   = `{"sdkType":"go-sdk","sdkVersion":"1.35.1","sessionID":"s2"}`
	metaJS    = `{"sdkType":"js-client","sdkVersion":"3.0.0","stableID":"st"}`
)

// TestForwardsEveryEventOnce publishes batches of several keys, SDK instances and both endpoints,
// and checks that each event reaches Statsig exactly once, in requests that never mix keys or SDK
// instances, with the key's headers.
func TestForwardsEveryEventOnce(t *testing.T) {
	e := newEnv(t)
	e.cfg.Forwarder.BatchMaxEvents = 25
	app := e.start()

	type source struct{ key, endpoint, sdkType, meta string }
	sources := []source{
		{keyA, endpointLogEvent, "go-sdk", metaGo1},
		{keyA, endpointLogEvent, "go-sdk", metaGo2},
		{keyB, endpointLogEvent, "go-sdk", metaGo1},
		{clientKey, endpointRgstr, "js-client", metaJS},
	}
	srcOf := map[string]source{}
	want := e.publishN(40, func(i int) testBatch {
		s := sources[i%len(sources)]
		b := testBatch{key: s.key, endpoint: s.endpoint, sdkType: s.sdkType, sdkVersion: "v1", meta: s.meta, ids: ids(fmt.Sprintf("m%d", i), 1+i%7)}
		if i%3 != 0 {
			// Proxies store S2 bodies (nats.stream.compression); older ones, the JSON itself.
			b.encoding = wire.EncodingS2
		}
		for _, id := range b.ids {
			srcOf[id] = s
		}
		return b
	})
	e.fake.WaitExactlyOnce(t, want, 15*time.Second)

	reqs := e.fake.Accepted()
	for _, r := range reqs {
		s := srcOf[r.IDs[0]]
		for _, id := range r.IDs {
			if srcOf[id] != s {
				t.Errorf("one request mixes events of %v and %v", s, srcOf[id])
			}
		}
		if r.Key != s.key {
			t.Errorf("request for %s sent with key %s", wire.KeyHash(s.key), wire.KeyHash(r.Key))
		}
		if r.Meta != s.meta {
			t.Errorf("statsigMetadata = %s, want %s", r.Meta, s.meta)
		}
		if r.SDKType != s.sdkType || r.SDKVersion != "v1" {
			t.Errorf("SDK headers %s/%s, want %s/v1", r.SDKType, r.SDKVersion, s.sdkType)
		}
		if r.EventCount != strconv.Itoa(len(r.IDs)) {
			t.Errorf("%s = %s for %d events", wire.HeaderEventCount, r.EventCount, len(r.IDs))
		}
		if len(r.IDs) > e.cfg.Forwarder.BatchMaxEvents {
			t.Errorf("request with %d events, batch_max_events is %d", len(r.IDs), e.cfg.Forwarder.BatchMaxEvents)
		}
		// The SDK's clock offset survives the queue: its client time is sdkClockAhead ahead.
		if ct, err := strconv.ParseInt(r.ClientTime, 10, 64); err != nil || (time.UnixMilli(ct).Sub(r.At)-sdkClockAhead).Abs() > time.Second {
			t.Errorf("%s = %q at %v, want %s ahead", wire.HeaderClientTime, r.ClientTime, r.At, sdkClockAhead)
		}
		switch s.endpoint {
		case endpointLogEvent:
			if r.Path != "/v1/log_event" || r.ContentEncoding != "gzip" {
				t.Errorf("log_event batch sent to %s with encoding %q", r.Path, r.ContentEncoding)
			}
		case endpointRgstr:
			q, _ := url.ParseQuery(r.Query)
			if r.Path != "/v1/rgstr" || q.Get("k") != clientKey || q.Get("ec") != strconv.Itoa(len(r.IDs)) || q.Get("st") != "js-client" {
				t.Errorf("rgstr batch sent to %s?%s", r.Path, r.Query)
			}
		}
	}
	// Batching merged messages: fewer requests than messages.
	if len(reqs) >= 40 {
		t.Errorf("%d requests for 40 messages: nothing was batched", len(reqs))
	}
	e.waitAllAcked()
	waitMetric(t, app.Registry(), 5*time.Second, "sigedge_forwarder_events_accepted_total", nil, float64(len(want)))
	if ok, reasons := app.Ready(); !ok {
		t.Errorf("not ready: %v", reasons)
	}
}

// TestFlushInterval checks that a batch below the size limits waits for flush_interval, and that a
// full one does not.
func TestFlushInterval(t *testing.T) {
	e := newEnv(t)
	flush := 700 * time.Millisecond
	e.cfg.Forwarder.FlushInterval = flush
	e.cfg.Forwarder.BatchMaxEvents = 10
	e.start()

	// sent publishes n events in one batch and returns them with the time until they all arrived.
	sent := func(prefix string, n int) ([]string, time.Duration) {
		start := time.Now()
		b := ids(prefix, n)
		e.publish(batchOf(keyA, b))
		e.fake.WaitIDs(t, b, 5*time.Second)
		return b, time.Since(start)
	}
	full, d := sent("full", 10)
	if d >= flush {
		t.Errorf("a full batch took %s, it should not wait for flush_interval", d)
	}
	small, d := sent("small", 3)
	if d < flush {
		t.Errorf("a small batch was sent after %s, before flush_interval %s", d, flush)
	}
	e.fake.AssertExactlyOnce(t, append(full, small...))
}

// TestUpstreamDownThenBack: Statsig drops every connection for a while. The breaker opens, nothing
// is acked, and once Statsig is back the whole backlog arrives exactly once.
func TestUpstreamDownThenBack(t *testing.T) {
	e := newEnv(t)
	down := e.outage(forwardertest.DropConnection)
	e.cfg.Forwarder.BatchMaxEvents = 20
	app := e.start()
	reg := app.Registry()

	want := e.publishN(30, func(i int) testBatch {
		return batchOf([]string{keyA, keyB}[i%2], ids(fmt.Sprintf("down%d", i), 5))
	})
	waitMetric(t, reg, 10*time.Second, "sigedge_forwarder_breaker_state", nil, breakerOpen)
	waitMetric(t, reg, 10*time.Second, "sigedge_forwarder_in_flight_messages", nil, 30)
	info := e.consumer()
	if info.NumAckPending != 30 || info.AckFloor.Stream != 0 {
		t.Errorf("while Statsig is down: %d messages pending ack, ack floor %d; want 30 and 0 (nothing acked)", info.NumAckPending, info.AckFloor.Stream)
	}
	if n, _ := e.fake.Counts(); len(n) != 0 {
		t.Fatalf("fake accepted events while down: %v", n)
	}
	if ok, reasons := app.Ready(); !ok {
		t.Errorf("an upstream outage made the forwarder unready: %v", reasons)
	}

	down.Store(false)
	e.fake.WaitExactlyOnce(t, want, 15*time.Second)
	waitMetric(t, reg, 5*time.Second, "sigedge_forwarder_breaker_state", nil, breakerClosed)
	e.waitAllAcked()
	if got := metricValue(t, reg, "sigedge_forwarder_batches_retried_total", map[string]string{"reason": "network_error"}); got == 0 {
		t.Error("no retry counted for network errors")
	}
	if got := metricValue(t, reg, "sigedge_forwarder_breaker_transitions_total", map[string]string{"to": "open"}); got == 0 {
		t.Error("no breaker transition to open counted")
	}
}

// TestIntermittentFailures: Statsig answers 500, 503, 429 and 408 to a share of requests. Every event
// arrives exactly once: a failed request records nothing, and only unacked batches are resent.
func TestIntermittentFailures(t *testing.T) {
	e := newEnv(t)
	e.fake.SetRespond(func(_ *forwardertest.Request, n int) int {
		switch n % 6 {
		case 1:
			return http.StatusInternalServerError
		case 3:
			return http.StatusTooManyRequests
		case 4:
			return []int{http.StatusServiceUnavailable, http.StatusRequestTimeout}[n%2]
		}
		return http.StatusAccepted
	})
	e.cfg.Forwarder.BatchMaxEvents = 10
	e.cfg.Forwarder.Breaker.ConsecutiveFailures = 10
	app := e.start()

	want := e.publishN(60, func(i int) testBatch {
		return batchOf([]string{keyA, keyB}[i%2], ids(fmt.Sprintf("flaky%d", i), 1+i%4))
	})
	e.fake.WaitExactlyOnce(t, want, 20*time.Second)
	reg := app.Registry()
	for _, reason := range []string{"500", "429"} {
		if metricValue(t, reg, "sigedge_forwarder_batches_retried_total", map[string]string{"reason": reason}) == 0 {
			t.Errorf("no retry counted for %s", reason)
		}
	}
	if got := metricValue(t, reg, "sigedge_forwarder_batches_dead_lettered_total", nil); got != 0 {
		t.Errorf("%v batches dead-lettered for retryable errors", got)
	}
}

// TestPoisonBatchIsDeadLetteredAndReplayed: Statsig answers 400 to any request holding one bad
// event. Its message alone is dead-lettered (the batch is split to find it), everything else of the
// key flows, and ReplayDeadLetters puts it back once Statsig accepts it.
func TestPoisonBatchIsDeadLetteredAndReplayed(t *testing.T) {
	e := newEnv(t)
	var refuse atomic.Bool
	refuse.Store(true)
	e.fake.SetRespond(func(r *forwardertest.Request, _ int) int {
		if refuse.Load() && slices.Contains(r.IDs, "poison-0") {
			return http.StatusBadRequest
		}
		return http.StatusAccepted
	})
	e.cfg.Forwarder.FlushInterval = 300 * time.Millisecond
	app := e.start()
	reg := app.Registry()

	poison := []string{"poison-0", "poison-1"}
	var good []string
	e.publishN(12, func(i int) testBatch {
		if i == 7 {
			b := batchOf(keyA, poison)
			b.encoding = wire.EncodingS2 // dead-lettered and replayed compressed, as a proxy stored it
			return b
		}
		b := ids(fmt.Sprintf("good%d", i), 3)
		good = append(good, b...)
		return batchOf(keyA, b)
	})
	e.fake.WaitIDs(t, good, 10*time.Second)
	waitMetric(t, reg, 10*time.Second, "sigedge_forwarder_messages_dead_lettered_total", map[string]string{"status": "400"}, 1)
	e.fake.AssertExactlyOnce(t, good)
	if metricValue(t, reg, "sigedge_forwarder_batches_split_total", nil) == 0 {
		t.Error("the refused batch was not split")
	}
	dead := e.deadLetters()
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	d := dead[0]
	if d.Header.Get(wire.MsgDeadStatus) != "400" || !strings.Contains(d.Header.Get(wire.MsgDeadReason), "fake says no") ||
		d.Header.Get(wire.MsgDeadAt) == "" || d.Header.Get(wire.MsgSDKKey) != keyA {
		t.Errorf("dead letter headers: %v", d.Header)
	}
	if want := "sigedge.events_dead." + wire.KeyHash(keyA); d.Subject != want {
		t.Errorf("dead letter subject %s, want %s", d.Subject, want)
	}
	e.waitAllAcked()

	refuse.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	moved, err := ReplayDeadLetters(ctx, e.js, e.cfg.NATS.Stream, ReplayOptions{})
	if err != nil || moved != 1 {
		t.Fatalf("ReplayDeadLetters = %d, %v; want 1", moved, err)
	}
	e.fake.WaitIDs(t, poison, 10*time.Second)
	e.fake.AssertExactlyOnce(t, append(good, poison...))
	if n := len(e.deadLetters()); n != 0 {
		t.Errorf("%d dead letters left after replay", n)
	}
}

// TestKeyRefusedDoesNotBlockOthers: Statsig answers 401 for one key. Its batches go to the
// dead-letter stream, the breaker stays closed, and the other key's events flow.
func TestKeyRefusedDoesNotBlockOthers(t *testing.T) {
	e := newEnv(t)
	e.fake.SetRespond(func(r *forwardertest.Request, _ int) int {
		if r.Key == keyB {
			return http.StatusUnauthorized
		}
		return http.StatusAccepted
	})
	e.cfg.Forwarder.Breaker.ConsecutiveFailures = 2
	app := e.start()
	reg := app.Registry()

	var good []string
	e.publishN(20, func(i int) testBatch {
		b := ids(fmt.Sprintf("k%d", i), 2)
		if i%2 == 1 {
			return batchOf(keyB, b)
		}
		good = append(good, b...)
		return batchOf(keyA, b)
	})
	e.fake.WaitIDs(t, good, 10*time.Second)
	waitMetric(t, reg, 10*time.Second, "sigedge_forwarder_messages_dead_lettered_total", map[string]string{"status": "401"}, 10)
	e.fake.AssertExactlyOnce(t, good)
	if got := metricValue(t, reg, "sigedge_forwarder_breaker_transitions_total", nil); got != 0 {
		t.Errorf("a key's 401 moved the breaker (%v transitions)", got)
	}
	if got := metricValue(t, reg, "sigedge_forwarder_batches_split_total", nil); got != 0 {
		t.Errorf("a key's 401 split batches (%v)", got)
	}
	for _, d := range e.deadLetters() {
		if d.Header.Get(wire.MsgSDKKey) != keyB || d.Header.Get(wire.MsgDeadStatus) != "401" {
			t.Errorf("dead letter %s for key %s status %s", d.Subject, wire.KeyHash(d.Header.Get(wire.MsgSDKKey)), d.Header.Get(wire.MsgDeadStatus))
		}
	}

	// replay-dlq for one key only, with a limit.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	moved, err := ReplayDeadLetters(ctx, e.js, e.cfg.NATS.Stream, ReplayOptions{KeyHash: wire.KeyHash(keyA)})
	if err != nil || moved != 0 {
		t.Errorf("replay for a key with no dead letters moved %d, %v", moved, err)
	}
	e.fake.SetRespond(nil)
	moved, err = ReplayDeadLetters(ctx, e.js, e.cfg.NATS.Stream, ReplayOptions{KeyHash: wire.KeyHash(keyB), Limit: 4})
	if err != nil || moved != 4 {
		t.Errorf("replay with limit 4 moved %d, %v", moved, err)
	}
	if n := len(e.deadLetters()); n != 6 {
		t.Errorf("%d dead letters left, want 6", n)
	}
}

// TestMalformedMessageIsDeadLettered: a message without a key or with a broken body cannot be sent;
// it goes to the dead-letter stream and does not hold anything up.
func TestMalformedMessageIsDeadLettered(t *testing.T) {
	e := newEnv(t)
	app := e.start()

	for _, b := range []forwardertest.Batch{
		{Key: keyA, Count: 1, Body: []byte(`{"events":[{"broken"`)},
		{Key: "", Count: 1, Body: testBatch{ids: []string{"nokey"}}.body()},
		{Key: keyA, Endpoint: "initialize", Count: 1, Body: testBatch{ids: []string{"badendpoint"}}.body()},
		{Key: keyA, Count: 1, Encoding: wire.EncodingS2, Stored: []byte("\xff\xff\xffnot s2")},
		{Key: keyA, Count: 1, Encoding: "gzip", Body: testBatch{ids: []string{"gzipped"}}.body()},
		{Key: keyA, Count: 0, Body: []byte(`{"events":[],"statsigMetadata":{}}`)}, // empty: acked, not dead
	} {
		b.SDKType, b.SDKVersion = "go-sdk", "1"
		e.publishRaw(b)
	}
	ok := ids("ok", 3)
	e.publish(batchOf(keyA, ok))
	e.fake.WaitIDs(t, ok, 10*time.Second)
	waitMetric(t, app.Registry(), 5*time.Second, "sigedge_forwarder_messages_dead_lettered_total", map[string]string{"status": "0"}, 5)
	e.fake.AssertExactlyOnce(t, ok)
	dead := e.deadLetters()
	if len(dead) != 5 {
		t.Fatalf("%d dead letters, want 5", len(dead))
	}
	for _, d := range dead {
		if d.Header.Get(wire.MsgDeadStatus) != "0" || !strings.Contains(d.Header.Get(wire.MsgDeadReason), "malformed") {
			t.Errorf("dead letter %s: status %s reason %q", d.Subject, d.Header.Get(wire.MsgDeadStatus), d.Header.Get(wire.MsgDeadReason))
		}
	}
	if got := metricValue(t, app.Registry(), "sigedge_forwarder_messages_empty_total", nil); got != 1 {
		t.Errorf("messages_empty_total = %v, want 1", got)
	}
	e.waitAllAcked()
}

// TestHeartbeatsPreventRedelivery: batches wait in a forwarder (Statsig failing) for several times
// ack_wait. In-progress heartbeats keep JetStream from redelivering them, so nothing is duplicated.
func TestHeartbeatsPreventRedelivery(t *testing.T) {
	e := newEnv(t)
	failing := e.outage(http.StatusServiceUnavailable)
	e.cfg.Forwarder.AckWait = 600 * time.Millisecond
	e.cfg.Forwarder.RequestTimeout = 500 * time.Millisecond
	app := e.start()

	want := e.publishN(10, func(i int) testBatch { return batchOf(keyA, ids(fmt.Sprintf("hb%d", i), 2)) })
	waitMetric(t, app.Registry(), 5*time.Second, "sigedge_forwarder_in_flight_messages", nil, 10)
	// Hold them for 4× ack_wait: the time is the test, not a wait for an event.
	time.Sleep(4 * e.cfg.Forwarder.AckWait)
	if info := e.consumer(); info.NumRedelivered != 0 {
		t.Errorf("%d messages were redelivered while held", info.NumRedelivered)
	}
	failing.Store(false)
	e.fake.WaitExactlyOnce(t, want, 10*time.Second)
	if got := metricValue(t, app.Registry(), "sigedge_forwarder_messages_received_total", nil); got != 10 {
		t.Errorf("messages_received_total = %v, want 10 (no redelivery)", got)
	}
}

// TestTwoForwardersShareTheConsumer: two replicas on one durable consumer deliver every event once
// overall.
func TestTwoForwardersShareTheConsumer(t *testing.T) {
	e := newEnv(t)
	e.cfg.Forwarder.BatchMaxEvents = 20
	a1 := e.start()
	a2 := e.start()

	want := e.publishN(200, func(i int) testBatch {
		return testBatch{key: []string{keyA, keyB}[i%2], meta: []string{metaGo1, metaGo2}[i/2%2], ids: ids(fmt.Sprintf("two%d", i), 1+i%5)}
	})
	e.fake.WaitExactlyOnce(t, want, 20*time.Second)
	// The fake counts an event before the forwarder sees the answer; wait for both to agree.
	var n1, n2 float64
	eventually(t, 5*time.Second, "replicas' accepted counts do not add up", func() bool {
		n1 = metricValue(t, a1.Registry(), "sigedge_forwarder_events_accepted_total", nil)
		n2 = metricValue(t, a2.Registry(), "sigedge_forwarder_events_accepted_total", nil)
		return n1+n2 == float64(len(want))
	})
	t.Logf("replica 1 forwarded %v events, replica 2 %v", n1, n2)
}

// TestShutdownSendsWhatIsBatched: with a flush interval far away, Shutdown still sends every batch
// before it returns.
func TestShutdownSendsWhatIsBatched(t *testing.T) {
	e := newEnv(t)
	e.cfg.Forwarder.FlushInterval = time.Hour
	app := e.start()

	want := e.publishN(10, func(i int) testBatch { return batchOf(keyA, ids(fmt.Sprintf("sd%d", i), 3)) })
	waitMetric(t, app.Registry(), 5*time.Second, "sigedge_forwarder_in_flight_messages", nil, 10)
	if ids, _ := e.fake.Counts(); len(ids) != 0 {
		t.Fatalf("sent before flush_interval: %v", ids)
	}
	shutdownApp(t, app)
	e.fake.AssertExactlyOnce(t, want)
	info := e.consumer()
	if info.NumAckPending != 0 || info.NumPending != 0 {
		t.Errorf("after shutdown: %d pending ack, %d pending", info.NumAckPending, info.NumPending)
	}
}

// TestShutdownHandsBackUnsent: Statsig is down when a forwarder stops. Shutdown returns within its
// timeout and NAKs what it held, so another replica sends it at once, long before ack_wait.
func TestShutdownHandsBackUnsent(t *testing.T) {
	e := newEnv(t)
	down := e.outage(http.StatusBadGateway)
	f := &e.cfg.Forwarder
	f.AckWait = time.Minute // a redelivery by time-out would fail the test
	f.ShutdownTimeout = 2 * time.Second
	f.Breaker.OpenTimeout = time.Hour
	app := e.start()

	want := e.publishN(10, func(i int) testBatch { return batchOf(keyA, ids(fmt.Sprintf("hand%d", i), 2)) })
	waitMetric(t, app.Registry(), 10*time.Second, "sigedge_forwarder_breaker_state", nil, breakerOpen)
	start := time.Now()
	shutdownApp(t, app)
	if d := time.Since(start); d > f.ShutdownTimeout+time.Second {
		t.Errorf("shutdown took %s, timeout %s", d, f.ShutdownTimeout)
	}
	down.Store(false)
	f.Breaker.OpenTimeout = 200 * time.Millisecond
	e.start()
	e.fake.WaitExactlyOnce(t, want, 10*time.Second) // ≪ ack_wait: only a NAK makes this possible
}

// TestMemoryStaysBounded: with Statsig hanging and a backlog far larger than max_in_flight_bytes,
// the forwarder stops pulling at the bound; the rest stays in the stream until there is room.
func TestMemoryStaysBounded(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	e.fake.SetRespond(func(*forwardertest.Request, int) int {
		<-release
		return http.StatusAccepted
	})
	f := &e.cfg.Forwarder
	f.BatchMaxBytes = 16 << 10
	f.MaxInFlightBytes = 64 << 10
	f.RequestTimeout = 4 * time.Second
	f.AckWait = 5 * time.Second
	app := e.start()
	reg := app.Registry()

	want := e.publishN(100, func(i int) testBatch {
		b := batchOf(keyA, ids(fmt.Sprintf("mem%d", i), 4))
		b.pad = 1000 // ≈4 KiB a message
		return b
	})
	eventually(t, 10*time.Second, "pulling did not reach the bound", func() bool {
		return metricValue(t, reg, "sigedge_forwarder_in_flight_bytes", nil) >= float64(f.MaxInFlightBytes)
	})
	// Near the bound a pull asks for one message of any size, so the bound can be exceeded by one
	// message (≈4 KiB here), plus slack for per-message overhead estimates.
	limit := float64(f.MaxInFlightBytes) + 16<<10
	held := metricValue(t, reg, "sigedge_forwarder_in_flight_bytes", nil)
	if held > limit {
		t.Errorf("in-flight bytes %v above the bound %v", held, limit)
	}
	info := e.consumer()
	if info.NumPending == 0 {
		t.Errorf("everything was pulled (%d held messages) despite max_in_flight_bytes", info.NumAckPending)
	}
	t.Logf("held %v bytes in %d messages; %d left in the stream", held, info.NumAckPending, info.NumPending)

	releaseOnce.Do(func() { close(release) })
	e.fake.WaitExactlyOnce(t, want, 20*time.Second)
}

// TestLagMetrics: pending messages and the oldest unacked age are exported while Statsig is down.
func TestLagMetrics(t *testing.T) {
	e := newEnv(t)
	e.fake.SetRespond(func(*forwardertest.Request, int) int { return http.StatusServiceUnavailable })
	e.cfg.Forwarder.BatchMaxBytes = 32 << 10
	e.cfg.Forwarder.MaxInFlightBytes = 32 << 10 // a few messages held, the rest pending
	e.publishN(10, func(i int) testBatch {
		b := batchOf(keyA, ids(fmt.Sprintf("lag%d", i), 1))
		b.pad = 16 << 10
		return b
	})
	published := time.Now()
	app := e.start()
	reg := app.Registry()
	eventually(t, 10*time.Second, "lag not exported", func() bool {
		return metricValue(t, reg, "sigedge_forwarder_pending_messages", nil) > 0 &&
			metricValue(t, reg, "sigedge_forwarder_ack_pending_messages", nil) > 0 &&
			metricValue(t, reg, "sigedge_forwarder_oldest_unacked_age_seconds", nil) > 0
	})
	if age := metricValue(t, reg, "sigedge_forwarder_oldest_unacked_age_seconds", nil); age > time.Since(published).Seconds()+5 {
		t.Errorf("oldest unacked age %v s is older than the messages", age)
	}
}

// TestReadiness: ready once bound; not ready while draining.
func TestReadiness(t *testing.T) {
	e := newEnv(t)
	app := e.start()
	if ok, reasons := app.Ready(); !ok {
		t.Fatalf("not ready: %v", reasons)
	}
	res, err := http.Get("http://" + app.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("/metrics: %s", res.Status)
	}
	// Deleting the consumer under a running forwarder: it notices and re-creates it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, consumer := e.cfg.NATS.Stream.Name, e.cfg.Forwarder.ConsumerName
	if err := e.js.DeleteConsumer(ctx, stream, consumer); err != nil {
		t.Fatal(err)
	}
	want := ids("after-delete", 3)
	eventually(t, 10*time.Second, "consumer not re-created", func() bool {
		_, err := e.js.Consumer(ctx, stream, consumer)
		return err == nil
	})
	e.publish(batchOf(keyA, want))
	e.fake.WaitIDs(t, want, 10*time.Second)
	shutdownApp(t, app)
	if ok, _ := app.Ready(); ok {
		t.Error("ready after shutdown")
	}
}
