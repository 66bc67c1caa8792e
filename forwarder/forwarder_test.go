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
	natsURL := startNATS(t)
	js := connectJS(t, natsURL)
	ensureStreams(t, js)
	fake := newFakeStatsig(t)
	cfg := testConfig(t, natsURL, fake.URL())
	cfg.Forwarder.BatchMaxEvents = 25
	app := startForwarder(t, cfg)

	type source struct{ key, endpoint, sdkType, meta string }
	sources := []source{
		{keyA, endpointLogEvent, "go-sdk", metaGo1},
		{keyA, endpointLogEvent, "go-sdk", metaGo2},
		{keyB, endpointLogEvent, "go-sdk", metaGo1},
		{clientKey, endpointRgstr, "js-client", metaJS},
	}
	var want []string
	srcOf := map[string]source{}
	for i := range 40 {
		s := sources[i%len(sources)]
		n := 1 + i%7
		batchIDs := ids(fmt.Sprintf("m%d", i), n)
		for _, id := range batchIDs {
			srcOf[id] = s
		}
		want = append(want, batchIDs...)
		publishBatch(t, js, testBatch{key: s.key, endpoint: s.endpoint, sdkType: s.sdkType, sdkVersion: "v1", meta: s.meta, ids: batchIDs})
	}
	fake.WaitIDs(t, want, 15*time.Second)
	fake.AssertExactlyOnce(t, want)

	reqs := fake.Accepted()
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
		if len(r.IDs) > cfg.Forwarder.BatchMaxEvents {
			t.Errorf("request with %d events, batch_max_events is %d", len(r.IDs), cfg.Forwarder.BatchMaxEvents)
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
	eventually(t, 5*time.Second, "consumer still has unacked messages", func() bool {
		info := consumerInfo(t, js, cfg.Forwarder.ConsumerName)
		return info.NumAckPending == 0 && info.NumPending == 0
	})
	reg := app.Registry()
	eventually(t, 5*time.Second, fmt.Sprintf("events_accepted_total is not %d", len(want)), func() bool {
		return metricValue(t, reg, "sigedge_forwarder_events_accepted_total", nil) == float64(len(want))
	})
	if ok, reasons := app.Ready(); !ok {
		t.Errorf("not ready: %v", reasons)
	}
}

// TestFlushInterval checks that a batch below the size limits waits for flush_interval, and that a
// full one does not.
func TestFlushInterval(t *testing.T) {
	natsURL := startNATS(t)
	js := connectJS(t, natsURL)
	ensureStreams(t, js)
	fake := newFakeStatsig(t)
	cfg := testConfig(t, natsURL, fake.URL())
	cfg.Forwarder.FlushInterval = 700 * time.Millisecond
	cfg.Forwarder.BatchMaxEvents = 10
	startForwarder(t, cfg)

	start := time.Now()
	full := ids("full", 10)
	publishBatch(t, js, testBatch{key: keyA, meta: metaGo1, ids: full})
	fake.WaitIDs(t, full, 5*time.Second)
	if d := time.Since(start); d >= cfg.Forwarder.FlushInterval {
		t.Errorf("a full batch took %s, it should not wait for flush_interval", d)
	}
	start = time.Now()
	small := ids("small", 3)
	publishBatch(t, js, testBatch{key: keyA, meta: metaGo1, ids: small})
	fake.WaitIDs(t, small, 5*time.Second)
	if d := time.Since(start); d < cfg.Forwarder.FlushInterval {
		t.Errorf("a small batch was sent after %s, before flush_interval %s", d, cfg.Forwarder.FlushInterval)
	}
	fake.AssertExactlyOnce(t, append(full, small...))
}

// TestUpstreamDownThenBack: Statsig drops every connection for a while. The breaker opens, nothing
// is acked, and once Statsig is back the whole backlog arrives exactly once.
func TestUpstreamDownThenBack(t *testing.T) {
	natsURL := startNATS(t)
	js := connectJS(t, natsURL)
	ensureStreams(t, js)
	fake := newFakeStatsig(t)
	var down atomic.Bool
	down.Store(true)
	fake.SetRespond(func(*forwardertest.Request, int) int {
		if down.Load() {
			return forwardertest.DropConnection
		}
		return http.StatusAccepted
	})
	cfg := testConfig(t, natsURL, fake.URL())
	cfg.Forwarder.BatchMaxEvents = 20
	app := startForwarder(t, cfg)
	reg := app.Registry()

	var want []string
	for i := range 30 {
		b := ids(fmt.Sprintf("down%d", i), 5)
		want = append(want, b...)
		key := keyA
		if i%2 == 1 {
			key = keyB
		}
		publishBatch(t, js, testBatch{key: key, meta: metaGo1, ids: b})
	}
	eventually(t, 10*time.Second, "breaker did not open", func() bool {
		return metricValue(t, reg, "sigedge_forwarder_breaker_state", nil) == breakerOpen
	})
	eventually(t, 10*time.Second, "not every message was pulled", func() bool {
		return metricValue(t, reg, "sigedge_forwarder_in_flight_messages", nil) == 30
	})
	info := consumerInfo(t, js, cfg.Forwarder.ConsumerName)
	if info.NumAckPending != 30 || info.AckFloor.Stream != 0 {
		t.Errorf("while Statsig is down: %d messages pending ack, ack floor %d; want 30 and 0 (nothing acked)", info.NumAckPending, info.AckFloor.Stream)
	}
	if n, _ := fake.Counts(); len(n) != 0 {
		t.Fatalf("fake accepted events while down: %v", n)
	}
	if ok, reasons := app.Ready(); !ok {
		t.Errorf("an upstream outage made the forwarder unready: %v", reasons)
	}

	down.Store(false)
	fake.WaitIDs(t, want, 15*time.Second)
	fake.AssertExactlyOnce(t, want)
	eventually(t, 5*time.Second, "breaker did not close", func() bool {
		return metricValue(t, reg, "sigedge_forwarder_breaker_state", nil) == breakerClosed
	})
	eventually(t, 5*time.Second, "backlog not acked", func() bool {
		info := consumerInfo(t, js, cfg.Forwarder.ConsumerName)
		return info.NumAckPending == 0 && info.NumPending == 0
	})
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
	natsURL := startNATS(t)
	js := connectJS(t, natsURL)
	ensureStreams(t, js)
	fake := newFakeStatsig(t)
	fake.SetRespond(func(_ *forwardertest.Request, n int) int {
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
	cfg := testConfig(t, natsURL, fake.URL())
	cfg.Forwarder.BatchMaxEvents = 10
	cfg.Forwarder.Breaker.ConsecutiveFailures = 10
	app := startForwarder(t, cfg)

	var want []string
	for i := range 60 {
		b := ids(fmt.Sprintf("flaky%d", i), 1+i%4)
		want = append(want, b...)
		publishBatch(t, js, testBatch{key: []string{keyA, keyB}[i%2], meta: metaGo1, ids: b})
	}
	fake.WaitIDs(t, want, 20*time.Second)
	fake.AssertExactlyOnce(t, want)
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
	natsURL := startNATS(t)
	js := connectJS(t, natsURL)
	ensureStreams(t, js)
	fake := newFakeStatsig(t)
	var refuse atomic.Bool
	refuse.Store(true)
	fake.SetRespond(func(r *forwardertest.Request, _ int) int {
		if refuse.Load() && slices.Contains(r.IDs, "poison-0") {
			return http.StatusBadRequest
		}
		return http.StatusAccepted
	})
	cfg := testConfig(t, natsURL, fake.URL())
	cfg.Forwarder.FlushInterval = 300 * time.Millisecond
	app := startForwarder(t, cfg)
	reg := app.Registry()

	var good []string
	for i := range 12 {
		if i == 7 {
			publishBatch(t, js, testBatch{key: keyA, meta: metaGo1, ids: []string{"poison-0", "poison-1"}})
			continue
		}
		b := ids(fmt.Sprintf("good%d", i), 3)
		good = append(good, b...)
		publishBatch(t, js, testBatch{key: keyA, meta: metaGo1, ids: b})
	}
	fake.WaitIDs(t, good, 10*time.Second)
	eventually(t, 10*time.Second, "poison message not dead-lettered", func() bool {
		return metricValue(t, reg, "sigedge_forwarder_messages_dead_lettered_total", map[string]string{"status": "400"}) == 1
	})
	fake.AssertExactlyOnce(t, good)
	if metricValue(t, reg, "sigedge_forwarder_batches_split_total", nil) == 0 {
		t.Error("the refused batch was not split")
	}
	dead := deadLetters(t, js)
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
	eventually(t, 5*time.Second, "messages left unacked", func() bool {
		return consumerInfo(t, js, cfg.Forwarder.ConsumerName).NumAckPending == 0
	})

	refuse.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	moved, err := ReplayDeadLetters(ctx, js, cfg.NATS.Stream, ReplayOptions{})
	if err != nil || moved != 1 {
		t.Fatalf("ReplayDeadLetters = %d, %v; want 1", moved, err)
	}
	fake.WaitIDs(t, []string{"poison-0", "poison-1"}, 10*time.Second)
	fake.AssertExactlyOnce(t, append(good, "poison-0", "poison-1"))
	if n := len(deadLetters(t, js)); n != 0 {
		t.Errorf("%d dead letters left after replay", n)
	}
}

// TestKeyRefusedDoesNotBlockOthers: Statsig answers 401 for one key. Its batches go to the
// dead-letter stream, the breaker stays closed, and the other key's events flow.
func TestKeyRefusedDoesNotBlockOthers(t *testing.T) {
	natsURL := startNATS(t)
	js := connectJS(t, natsURL)
	ensureStreams(t, js)
	fake := newFakeStatsig(t)
	fake.SetRespond(func(r *forwardertest.Request, _ int) int {
		if r.Key == keyB {
			return http.StatusUnauthorized
		}
		return http.StatusAccepted
	})
	cfg := testConfig(t, natsURL, fake.URL())
	cfg.Forwarder.Breaker.ConsecutiveFailures = 2
	app := startForwarder(t, cfg)
	reg := app.Registry()

	var good []string
	for i := range 20 {
		b := ids(fmt.Sprintf("k%d", i), 2)
		if i%2 == 0 {
			good = append(good, b...)
			publishBatch(t, js, testBatch{key: keyA, meta: metaGo1, ids: b})
		} else {
			publishBatch(t, js, testBatch{key: keyB, meta: metaGo1, ids: b})
		}
	}
	fake.WaitIDs(t, good, 10*time.Second)
	eventually(t, 10*time.Second, "refused key's messages not all dead-lettered", func() bool {
		return metricValue(t, reg, "sigedge_forwarder_messages_dead_lettered_total", map[string]string{"status": "401"}) == 10
	})
	fake.AssertExactlyOnce(t, good)
	if got := metricValue(t, reg, "sigedge_forwarder_breaker_transitions_total", nil); got != 0 {
		t.Errorf("a key's 401 moved the breaker (%v transitions)", got)
	}
	if got := metricValue(t, reg, "sigedge_forwarder_batches_split_total", nil); got != 0 {
		t.Errorf("a key's 401 split batches (%v)", got)
	}
	for _, d := range deadLetters(t, js) {
		if d.Header.Get(wire.MsgSDKKey) != keyB || d.Header.Get(wire.MsgDeadStatus) != "401" {
			t.Errorf("dead letter %s for key %s status %s", d.Subject, wire.KeyHash(d.Header.Get(wire.MsgSDKKey)), d.Header.Get(wire.MsgDeadStatus))
		}
	}

	// replay-dlq for one key only, with a limit.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	moved, err := ReplayDeadLetters(ctx, js, cfg.NATS.Stream, ReplayOptions{KeyHash: wire.KeyHash(keyA)})
	if err != nil || moved != 0 {
		t.Errorf("replay for a key with no dead letters moved %d, %v", moved, err)
	}
	fake.SetRespond(nil)
	moved, err = ReplayDeadLetters(ctx, js, cfg.NATS.Stream, ReplayOptions{KeyHash: wire.KeyHash(keyB), Limit: 4})
	if err != nil || moved != 4 {
		t.Errorf("replay with limit 4 moved %d, %v", moved, err)
	}
	if n := len(deadLetters(t, js)); n != 6 {
		t.Errorf("%d dead letters left, want 6", n)
	}
}

// TestMalformedMessageIsDeadLettered: a message without a key or with a broken body cannot be sent;
// it goes to the dead-letter stream and does not hold anything up.
func TestMalformedMessageIsDeadLettered(t *testing.T) {
	natsURL := startNATS(t)
	js := connectJS(t, natsURL)
	ensureStreams(t, js)
	fake := newFakeStatsig(t)
	cfg := testConfig(t, natsURL, fake.URL())
	app := startForwarder(t, cfg)

	publishRaw(t, js, keyA, endpointLogEvent, "go-sdk", "1", 1, []byte(`{"events":[{"broken"`))
	publishRaw(t, js, "", endpointLogEvent, "go-sdk", "1", 1, testBatch{ids: []string{"nokey"}}.body())
	publishRaw(t, js, keyA, "initialize", "go-sdk", "1", 1, testBatch{ids: []string{"badendpoint"}}.body())
	publishRaw(t, js, keyA, endpointLogEvent, "go-sdk", "1", 0, []byte(`{"events":[],"statsigMetadata":{}}`))
	ok := ids("ok", 3)
	publishBatch(t, js, testBatch{key: keyA, meta: metaGo1, ids: ok})
	fake.WaitIDs(t, ok, 10*time.Second)
	eventually(t, 5*time.Second, "malformed messages not dead-lettered", func() bool {
		return metricValue(t, app.Registry(), "sigedge_forwarder_messages_dead_lettered_total", map[string]string{"status": "0"}) == 3
	})
	fake.AssertExactlyOnce(t, ok)
	dead := deadLetters(t, js)
	if len(dead) != 3 {
		t.Fatalf("%d dead letters, want 3", len(dead))
	}
	for _, d := range dead {
		if d.Header.Get(wire.MsgDeadStatus) != "0" || !strings.Contains(d.Header.Get(wire.MsgDeadReason), "malformed") {
			t.Errorf("dead letter %s: status %s reason %q", d.Subject, d.Header.Get(wire.MsgDeadStatus), d.Header.Get(wire.MsgDeadReason))
		}
	}
	if got := metricValue(t, app.Registry(), "sigedge_forwarder_messages_empty_total", nil); got != 1 {
		t.Errorf("messages_empty_total = %v, want 1", got)
	}
	eventually(t, 5*time.Second, "messages left unacked", func() bool {
		return consumerInfo(t, js, cfg.Forwarder.ConsumerName).NumAckPending == 0
	})
}

// TestHeartbeatsPreventRedelivery: batches wait in a forwarder (Statsig failing) for several times
// ack_wait. In-progress heartbeats keep JetStream from redelivering them, so nothing is duplicated.
func TestHeartbeatsPreventRedelivery(t *testing.T) {
	natsURL := startNATS(t)
	js := connectJS(t, natsURL)
	ensureStreams(t, js)
	fake := newFakeStatsig(t)
	var failing atomic.Bool
	failing.Store(true)
	fake.SetRespond(func(*forwardertest.Request, int) int {
		if failing.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusAccepted
	})
	cfg := testConfig(t, natsURL, fake.URL())
	cfg.Forwarder.AckWait = 600 * time.Millisecond
	cfg.Forwarder.RequestTimeout = 500 * time.Millisecond
	app := startForwarder(t, cfg)

	var want []string
	for i := range 10 {
		b := ids(fmt.Sprintf("hb%d", i), 2)
		want = append(want, b...)
		publishBatch(t, js, testBatch{key: keyA, meta: metaGo1, ids: b})
	}
	eventually(t, 5*time.Second, "messages not pulled", func() bool {
		return metricValue(t, app.Registry(), "sigedge_forwarder_in_flight_messages", nil) == 10
	})
	// Hold them for 4× ack_wait: the time is the test, not a wait for an event.
	time.Sleep(4 * cfg.Forwarder.AckWait)
	if info := consumerInfo(t, js, cfg.Forwarder.ConsumerName); info.NumRedelivered != 0 {
		t.Errorf("%d messages were redelivered while held", info.NumRedelivered)
	}
	failing.Store(false)
	fake.WaitIDs(t, want, 10*time.Second)
	fake.AssertExactlyOnce(t, want)
	if got := metricValue(t, app.Registry(), "sigedge_forwarder_messages_received_total", nil); got != 10 {
		t.Errorf("messages_received_total = %v, want 10 (no redelivery)", got)
	}
}

// TestTwoForwardersShareTheConsumer: two replicas on one durable consumer deliver every event once
// overall.
func TestTwoForwardersShareTheConsumer(t *testing.T) {
	natsURL := startNATS(t)
	js := connectJS(t, natsURL)
	ensureStreams(t, js)
	fake := newFakeStatsig(t)
	cfg := testConfig(t, natsURL, fake.URL())
	cfg.Forwarder.BatchMaxEvents = 20
	a1 := startForwarder(t, cfg)
	a2 := startForwarder(t, cfg)

	var want []string
	for i := range 200 {
		b := ids(fmt.Sprintf("two%d", i), 1+i%5)
		want = append(want, b...)
		publishBatch(t, js, testBatch{key: []string{keyA, keyB}[i%2], meta: []string{metaGo1, metaGo2}[i/2%2], ids: b})
	}
	fake.WaitIDs(t, want, 20*time.Second)
	fake.AssertExactlyOnce(t, want)
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
	natsURL := startNATS(t)
	js := connectJS(t, natsURL)
	ensureStreams(t, js)
	fake := newFakeStatsig(t)
	cfg := testConfig(t, natsURL, fake.URL())
	cfg.Forwarder.FlushInterval = time.Hour
	app := startForwarder(t, cfg)

	var want []string
	for i := range 10 {
		b := ids(fmt.Sprintf("sd%d", i), 3)
		want = append(want, b...)
		publishBatch(t, js, testBatch{key: keyA, meta: metaGo1, ids: b})
	}
	eventually(t, 5*time.Second, "messages not pulled", func() bool {
		return metricValue(t, app.Registry(), "sigedge_forwarder_in_flight_messages", nil) == 10
	})
	if ids, _ := fake.Counts(); len(ids) != 0 {
		t.Fatalf("sent before flush_interval: %v", ids)
	}
	shutdownApp(t, app)
	fake.AssertExactlyOnce(t, want)
	info := consumerInfo(t, js, cfg.Forwarder.ConsumerName)
	if info.NumAckPending != 0 || info.NumPending != 0 {
		t.Errorf("after shutdown: %d pending ack, %d pending", info.NumAckPending, info.NumPending)
	}
}

// TestShutdownHandsBackUnsent: Statsig is down when a forwarder stops. Shutdown returns within its
// timeout and NAKs what it held, so another replica sends it at once, long before ack_wait.
func TestShutdownHandsBackUnsent(t *testing.T) {
	natsURL := startNATS(t)
	js := connectJS(t, natsURL)
	ensureStreams(t, js)
	fake := newFakeStatsig(t)
	var down atomic.Bool
	down.Store(true)
	fake.SetRespond(func(*forwardertest.Request, int) int {
		if down.Load() {
			return http.StatusBadGateway
		}
		return http.StatusAccepted
	})
	cfg := testConfig(t, natsURL, fake.URL())
	cfg.Forwarder.AckWait = time.Minute // a redelivery by time-out would fail the test
	cfg.Forwarder.ShutdownTimeout = 2 * time.Second
	cfg.Forwarder.Breaker.OpenTimeout = time.Hour
	app := startForwarder(t, cfg)

	var want []string
	for i := range 10 {
		b := ids(fmt.Sprintf("hand%d", i), 2)
		want = append(want, b...)
		publishBatch(t, js, testBatch{key: keyA, meta: metaGo1, ids: b})
	}
	eventually(t, 10*time.Second, "breaker did not open", func() bool {
		return metricValue(t, app.Registry(), "sigedge_forwarder_breaker_state", nil) == breakerOpen
	})
	start := time.Now()
	shutdownApp(t, app)
	if d := time.Since(start); d > cfg.Forwarder.ShutdownTimeout+time.Second {
		t.Errorf("shutdown took %s, timeout %s", d, cfg.Forwarder.ShutdownTimeout)
	}
	down.Store(false)
	cfg2 := cfg
	cfg2.Forwarder.Breaker.OpenTimeout = 200 * time.Millisecond
	startForwarder(t, cfg2)
	fake.WaitIDs(t, want, 10*time.Second) // ≪ ack_wait: only a NAK makes this possible
	fake.AssertExactlyOnce(t, want)
}

// TestMemoryStaysBounded: with Statsig hanging and a backlog far larger than max_in_flight_bytes,
// the forwarder stops pulling at the bound; the rest stays in the stream until there is room.
func TestMemoryStaysBounded(t *testing.T) {
	natsURL := startNATS(t)
	js := connectJS(t, natsURL)
	ensureStreams(t, js)
	fake := newFakeStatsig(t)
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	fake.SetRespond(func(*forwardertest.Request, int) int {
		<-release
		return http.StatusAccepted
	})
	cfg := testConfig(t, natsURL, fake.URL())
	cfg.Forwarder.BatchMaxBytes = 16 << 10
	cfg.Forwarder.MaxInFlightBytes = 64 << 10
	cfg.Forwarder.RequestTimeout = 4 * time.Second
	cfg.Forwarder.AckWait = 5 * time.Second
	app := startForwarder(t, cfg)
	reg := app.Registry()

	var want []string
	for i := range 100 {
		b := ids(fmt.Sprintf("mem%d", i), 4)
		want = append(want, b...)
		publishBatch(t, js, testBatch{key: keyA, meta: metaGo1, ids: b, pad: 1000}) // ≈4 KiB a message
	}
	eventually(t, 10*time.Second, "pulling did not reach the bound", func() bool {
		return metricValue(t, reg, "sigedge_forwarder_in_flight_bytes", nil) >= float64(cfg.Forwarder.MaxInFlightBytes)
	})
	// Near the bound a pull asks for one message of any size, so the bound can be exceeded by one
	// message (≈4 KiB here), plus slack for per-message overhead estimates.
	limit := float64(cfg.Forwarder.MaxInFlightBytes) + 16<<10
	held := metricValue(t, reg, "sigedge_forwarder_in_flight_bytes", nil)
	if held > limit {
		t.Errorf("in-flight bytes %v above the bound %v", held, limit)
	}
	info := consumerInfo(t, js, cfg.Forwarder.ConsumerName)
	if info.NumPending == 0 {
		t.Errorf("everything was pulled (%d held messages) despite max_in_flight_bytes", info.NumAckPending)
	}
	t.Logf("held %v bytes in %d messages; %d left in the stream", held, info.NumAckPending, info.NumPending)

	releaseOnce.Do(func() { close(release) })
	fake.WaitIDs(t, want, 20*time.Second)
	fake.AssertExactlyOnce(t, want)
}

// TestLagMetrics: pending messages and the oldest unacked age are exported while Statsig is down.
func TestLagMetrics(t *testing.T) {
	natsURL := startNATS(t)
	js := connectJS(t, natsURL)
	ensureStreams(t, js)
	fake := newFakeStatsig(t)
	fake.SetRespond(func(*forwardertest.Request, int) int { return http.StatusServiceUnavailable })
	cfg := testConfig(t, natsURL, fake.URL())
	cfg.Forwarder.BatchMaxBytes = 32 << 10
	cfg.Forwarder.MaxInFlightBytes = 32 << 10 // a few messages held, the rest pending
	for i := range 10 {
		publishBatch(t, js, testBatch{key: keyA, meta: metaGo1, ids: ids(fmt.Sprintf("lag%d", i), 1), pad: 16 << 10})
	}
	published := time.Now()
	app := startForwarder(t, cfg)
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
	natsURL := startNATS(t)
	js := connectJS(t, natsURL)
	ensureStreams(t, js)
	fake := newFakeStatsig(t)
	cfg := testConfig(t, natsURL, fake.URL())
	app := startForwarder(t, cfg)
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
	if err := js.DeleteConsumer(ctx, cfg.NATS.Stream.Name, cfg.Forwarder.ConsumerName); err != nil {
		t.Fatal(err)
	}
	want := ids("after-delete", 3)
	eventually(t, 10*time.Second, "consumer not re-created", func() bool {
		_, err := js.Consumer(ctx, cfg.NATS.Stream.Name, cfg.Forwarder.ConsumerName)
		return err == nil
	})
	publishBatch(t, js, testBatch{key: keyA, meta: metaGo1, ids: want})
	fake.WaitIDs(t, want, 10*time.Second)
	shutdownApp(t, app)
	if ok, _ := app.Ready(); ok {
		t.Error("ready after shutdown")
	}
}
