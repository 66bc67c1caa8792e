package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/logutil"
	"github.com/sigedge/sigedge/internal/wire"
	"github.com/sigedge/sigedge/queue"
)

// Event intake: POST /v1/log_event (server SDKs) and POST /v1/rgstr (client SDKs).
//
// A batch is answered 202 {"success":true} only after JetStream acknowledged it. Status codes are
// chosen for how the SDKs retry (protocol.md §1.10): 503 + Retry-After for "not stored, try again"
// (every SDK retries 503; server-core does not retry 429 or 413, so those would lose events); 400,
// 413 and 415 only for bodies a retry cannot fix; 401 for a missing or refused key.
//
// Malformed events inside an otherwise valid batch (not an object, no string eventName) are dropped
// and counted (metric sigedge_events_rejected_total, and "dropped" in the response); the good events
// beside them are stored. A batch none of whose events is valid is refused with 400.
//
// Memory is bounded by limits.max_in_flight_event_bytes: a request holds its share (the body as
// received, then also decompressed) until it is answered. A request that finds the budget used up
// waits for it in turn, up to nats.publish_timeout for waiting and storing together, and is
// otherwise answered 503 (reason "overloaded"), so that a burst of large batches slows SDKs down
// rather than taking the proxy past its memory limit.

// retryAfterSeconds is what a 503 asks SDKs to wait (the official SDKs use their own backoff; this
// is for other clients and load balancers).
const retryAfterSeconds = "5"

// eventIntake serves the intake endpoints.
type eventIntake struct {
	limit      int64
	allowed    map[string]bool
	clientKeys map[string]string
	pub        *queue.Publisher
	bodies     *queue.BodyDecoder
	logger     *slog.Logger
	logs       logutil.Limiter

	memory       *semaphore.Weighted // limits.max_in_flight_event_bytes
	memoryWait   time.Duration       // nats.publish_timeout
	bytesHeld    prometheus.Gauge
	requestsWait prometheus.Gauge

	requests      *prometheus.CounterVec
	batchesOK     *prometheus.CounterVec
	batchesRefuse *prometheus.CounterVec
	eventsOK      *prometheus.CounterVec
	eventsRefuse  *prometheus.CounterVec
}

// startEvents creates the event publisher and the intake handlers' state. NewApp calls it once the
// streams exist.
func (a *App) startEvents() error {
	pub, err := queue.NewPublisher(queue.PublisherOptions{
		Conn: a.nc, Stream: a.cfg.NATS.Stream, Timeout: a.cfg.NATS.PublishTimeout,
		Dedupe: a.cfg.Proxy.ExposureDedupe, Retries: a.cfg.Proxy.RetryDedupe, Registerer: a.registry, Logger: a.logger,
	})
	if err != nil {
		return fmt.Errorf("event publisher: %w", err)
	}
	bodies, err := queue.NewBodyDecoder(int64(a.cfg.Limits.MaxBodyBytes))
	if err != nil {
		return err
	}
	a.events = pub
	a.intake = newEventIntake(a.cfg, pub, bodies, a.logger)
	return a.intake.register(a.registry)
}

func newEventIntake(cfg config.Config, pub *queue.Publisher, bodies *queue.BodyDecoder, logger *slog.Logger) *eventIntake {
	in := &eventIntake{
		limit: int64(cfg.Limits.MaxBodyBytes), allowed: map[string]bool{}, clientKeys: cfg.ClientKeys,
		pub: pub, bodies: bodies, logger: logger, logs: logutil.Limiter{Every: 10 * time.Second},
		memory:     semaphore.NewWeighted(int64(cfg.Limits.MaxInFlightEventBytes)),
		memoryWait: cfg.NATS.PublishTimeout,
		bytesHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sigedge_event_bytes_in_flight",
			Help: "Bytes of event request bodies held in memory (as received and decompressed), bounded by limits.max_in_flight_event_bytes.",
		}),
		requestsWait: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sigedge_event_requests_waiting",
			Help: "Event requests waiting for room under limits.max_in_flight_event_bytes.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigedge_event_requests_total",
			Help: "Event intake requests by endpoint (log_event, rgstr) and HTTP status.",
		}, []string{"endpoint", "code"}),
		batchesOK: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigedge_event_batches_accepted_total",
			Help: "Event batches stored in JetStream and answered 202, by endpoint.",
		}, []string{"endpoint"}),
		batchesRefuse: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigedge_event_batches_rejected_total",
			Help: "Event batches refused, by endpoint and reason (unauthorized, body_too_large, bad_body, unsupported_encoding, bad_encoding, invalid_json, invalid_batch, no_valid_events, unavailable, overloaded, client_gone).",
		}, []string{"endpoint", "reason"}),
		eventsOK: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigedge_events_accepted_total",
			Help: "Events of batches answered 202, by endpoint: stored in JetStream, now or by an earlier attempt (an SDK's retry counts again; see sigedge_queue_retried_events_total).",
		}, []string{"endpoint"}),
		eventsRefuse: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigedge_events_rejected_total",
			Help: "Events not stored, by endpoint and reason: dropped from a stored batch (event_not_object, missing_event_name, invalid_event_name, event_too_large, duplicate_exposure) or in a refused batch (no_valid_events, unavailable — the SDK retries those).",
		}, []string{"endpoint", "reason"}),
	}
	for _, k := range cfg.AllowedSDKKeys {
		in.allowed[k] = true
	}
	for _, ep := range []string{wire.EndpointLogEvent, wire.EndpointRgstr} {
		in.batchesOK.WithLabelValues(ep)
		in.eventsOK.WithLabelValues(ep)
		in.batchesRefuse.WithLabelValues(ep, "unavailable")
		in.batchesRefuse.WithLabelValues(ep, "overloaded")
	}
	return in
}

func (in *eventIntake) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{in.requests, in.batchesOK, in.batchesRefuse, in.eventsOK, in.eventsRefuse, in.bytesHeld, in.requestsWait} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("event intake metrics: %w", err)
		}
	}
	return nil
}

// publishExposures stores exposures the proxy produced itself (its evaluation endpoints) as one
// batch for key, returning once JetStream has them; it matches ExposurePublisher.
func (a *App) publishExposures(ctx context.Context, key string, events [][]byte) error {
	return a.events.PublishBatch(ctx, key, queue.BatchMeta{
		Endpoint: wire.EndpointLogEvent, Source: wire.SourceProxy,
		SDKType: "sigedge-proxy", SDKVersion: a.version,
		// Statsig sees these exposures as coming from an SDK named sigedge-proxy.
		Metadata: []byte(`{"sdkType":"sigedge-proxy","sdkVersion":` + strconv.Quote(a.version) + `}`),
	}, events)
}

// registerEvents adds the event intake endpoints (log_event, rgstr).
func (a *App) registerEvents(mux *http.ServeMux) {
	mux.Handle("POST /v1/log_event", a.intake.handler(wire.EndpointLogEvent))
	mux.Handle("POST /v1/rgstr", a.intake.handler(wire.EndpointRgstr))
	// Browsers send a CORS preflight before js-client's POST (it sets statsig-* headers).
	mux.HandleFunc("OPTIONS /v1/rgstr", corsPreflight)
}

func corsPreflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
		h.Set("Access-Control-Allow-Headers", req)
	}
	h.Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
}

var acceptedBody = []byte(`{"success":true}` + "\n")

func (in *eventIntake) handler(endpoint string) http.HandlerFunc {
	// The counters of every stored batch, looked up once rather than per request.
	accepted := in.requests.WithLabelValues(endpoint, strconv.Itoa(http.StatusAccepted))
	batchesOK, eventsOK := in.batchesOK.WithLabelValues(endpoint), in.eventsOK.WithLabelValues(endpoint)
	return func(w http.ResponseWriter, r *http.Request) {
		received := time.Now()
		if endpoint == wire.EndpointRgstr {
			w.Header().Set("Access-Control-Allow-Origin", "*")
		}
		var q url.Values // server SDKs send no query: skip parsing one
		if r.URL.RawQuery != "" {
			q = r.URL.Query()
		}
		// Server SDKs send the key in a header; js-client sends it as the query parameter k.
		key := strings.TrimSpace(r.Header.Get(wire.HeaderAPIKey))
		if key == "" {
			key = strings.TrimSpace(q.Get("k"))
		}
		req := &intakeRequest{in: in, w: w, r: r, endpoint: endpoint, key: key, accepted: accepted}
		if msg := in.authorize(key); msg != "" {
			req.refuse(http.StatusUnauthorized, "unauthorized", msg, nil)
			return
		}

		if r.ContentLength > in.limit {
			req.refuse(http.StatusRequestEntityTooLarge, "body_too_large",
				fmt.Sprintf("body of %d bytes exceeds the limit of %d (limits.max_body_bytes)", r.ContentLength, in.limit), nil)
			return
		}
		// Room for the body before reading it: its length, or the largest a body may be when the
		// client does not say (chunked); the unused rest goes back once it is read.
		share := memoryShare{in: in, ctx: r.Context()}
		defer share.release()
		want := r.ContentLength
		if want <= 0 {
			want = in.limit
		}
		if !share.take(want) {
			in.overloaded(req)
			return
		}
		// Buffers are recycled once the batch is stored (or refused before publishing): after a
		// failed publish nats.go may still hold the data for a retry, so they are left to the GC.
		raw, plain := getBuffer(), getBuffer()
		recycle := func() { putBuffer(raw); putBuffer(plain) }
		if r.ContentLength > 0 {
			raw.Grow(int(r.ContentLength) + 1)
		}
		if _, err := raw.ReadFrom(http.MaxBytesReader(w, r.Body, in.limit)); err != nil {
			recycle()
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				req.refuse(http.StatusRequestEntityTooLarge, "body_too_large",
					fmt.Sprintf("body exceeds the limit of %d bytes (limits.max_body_bytes)", in.limit), nil)
				return
			}
			req.refuse(http.StatusBadRequest, "bad_body", "could not read the body: "+err.Error(), nil)
			return
		}

		share.giveBack(want - int64(raw.Len()))

		data, err := in.bodies.DecompressInto(plain, r.Header.Get("Content-Encoding"), raw.Bytes())
		if err == nil && q.Get("se") == "1" {
			data, err = queue.DecodeStatsigEncoded(data)
		}
		// A decoded body is held beside the raw one until the answer. (Decoding itself may briefly
		// hold up to limits.max_body_bytes more per request than is counted.)
		if err == nil && plain.Len() > 0 && !share.take(int64(plain.Len())) {
			recycle()
			in.overloaded(req)
			return
		}
		b := getBatch()
		defer putBatch(b) // Publish keeps nothing of it
		if err == nil {
			err = b.Decode(data)
		}
		if err != nil {
			recycle()
			status, reason := decodeStatus(err)
			req.refuse(status, reason, err.Error(), nil)
			return
		}
		if b.Total == 0 || len(b.Events) == 0 {
			defer recycle() // nothing is published
		}
		if b.Total == 0 {
			// Nothing to store; answer success so the SDK does not retry an empty batch.
			req.reply(http.StatusAccepted, acceptedBody)
			return
		}
		req.countDropped(&b.Dropped)
		if len(b.Events) == 0 {
			req.refuse(http.StatusBadRequest, "no_valid_events",
				fmt.Sprintf("none of the %d events is an object with a string eventName", b.Total), b.Dropped.Map())
			in.eventsRefuse.WithLabelValues(endpoint, "no_valid_events").Add(float64(b.Total))
			return
		}

		meta := queue.BatchMeta{
			Endpoint: endpoint, Source: wire.SourceSDK, ReceivedAt: received, Metadata: b.Metadata,
			SDKType:    firstNonEmpty(r.Header.Get(wire.HeaderSDKType), q.Get("st")),
			SDKVersion: firstNonEmpty(r.Header.Get(wire.HeaderSDKVersion), q.Get("sv")),
			ClientTime: firstNonEmpty(r.Header.Get(wire.HeaderClientTime), q.Get("t")),
		}
		if meta.SDKType == "" || meta.SDKVersion == "" {
			t, v := b.SDKInfo()
			meta.SDKType, meta.SDKVersion = firstNonEmpty(meta.SDKType, t), firstNonEmpty(meta.SDKVersion, v)
		}
		req.sdkType = meta.SDKType
		// The request's context ends if the SDK gives up; the publisher adds its own timeout (which
		// the share's context shortens if the request waited for memory).
		res, err := in.pub.Publish(share.ctx, key, meta, b)
		req.countDropped(&res.Dropped)
		switch {
		case errors.Is(err, queue.ErrTooLarge):
			req.refuse(http.StatusRequestEntityTooLarge, "body_too_large", err.Error(), nil)
			return
		case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
			req.refuse(499, "client_gone", "the client closed the request before the batch was stored", nil)
			return
		case err != nil:
			w.Header().Set("Retry-After", retryAfterSeconds)
			req.refuse(http.StatusServiceUnavailable, "unavailable", "events not stored, retry later: "+err.Error(), nil)
			in.eventsRefuse.WithLabelValues(endpoint, "unavailable").Add(float64(len(b.Events)))
			return
		}
		recycle() // every message is acknowledged: nothing holds the bytes any more
		batchesOK.Inc()
		eventsOK.Add(float64(res.Events))
		dropped := b.Dropped
		for i, n := range res.Dropped {
			dropped[i] += n
		}
		if dropped.Total() == 0 {
			req.reply(http.StatusAccepted, acceptedBody)
			return
		}
		body, _ := json.Marshal(map[string]any{"success": true, "dropped": dropped.Total(), "dropped_reasons": dropped.Map()})
		req.reply(http.StatusAccepted, append(body, '\n'))
	}
}

// overloaded refuses a request that found no room under limits.max_in_flight_event_bytes in time
// (or whose client left while it waited).
func (in *eventIntake) overloaded(req *intakeRequest) {
	if req.r.Context().Err() != nil {
		req.refuse(499, "client_gone", "the client closed the request while it waited for room", nil)
		return
	}
	req.w.Header().Set("Retry-After", retryAfterSeconds)
	req.refuse(http.StatusServiceUnavailable, "overloaded",
		"the proxy holds as many event bodies as limits.max_in_flight_event_bytes allows; retry later", nil)
}

// memoryShare is one request's part of limits.max_in_flight_event_bytes.
type memoryShare struct {
	in     *eventIntake
	ctx    context.Context // the request's; once it had to wait, bounded by nats.publish_timeout
	cancel context.CancelFunc
	held   int64
}

// take adds n bytes to the share. When the budget has no room it waits in turn (FIFO, so a large
// body is not starved by small ones), within the share's deadline; false means it gave up.
func (m *memoryShare) take(n int64) bool {
	if n <= 0 {
		return true
	}
	if !m.in.memory.TryAcquire(n) {
		if m.cancel == nil {
			m.ctx, m.cancel = context.WithTimeout(m.ctx, m.in.memoryWait)
		}
		m.in.requestsWait.Inc()
		err := m.in.memory.Acquire(m.ctx, n)
		m.in.requestsWait.Dec()
		if err != nil {
			return false
		}
	}
	m.held += n
	m.in.bytesHeld.Add(float64(n))
	return true
}

// giveBack returns up to n bytes of the share.
func (m *memoryShare) giveBack(n int64) {
	if n = min(n, m.held); n > 0 {
		m.in.memory.Release(n)
		m.held -= n
		m.in.bytesHeld.Sub(float64(n))
	}
}

// release returns the whole share once the request is answered.
func (m *memoryShare) release() {
	m.giveBack(m.held)
	if m.cancel != nil {
		m.cancel()
	}
}

// decodeStatus maps a body decoding error to its status and metric reason.
func decodeStatus(err error) (int, string) {
	switch {
	case errors.Is(err, queue.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "body_too_large"
	case errors.Is(err, queue.ErrUnsupportedEncoding):
		return http.StatusUnsupportedMediaType, "unsupported_encoding"
	case errors.Is(err, queue.ErrBadEncoding):
		return http.StatusBadRequest, "bad_encoding"
	case errors.Is(err, queue.ErrInvalidJSON):
		return http.StatusBadRequest, "invalid_json"
	}
	return http.StatusBadRequest, "invalid_batch"
}

// authorize returns why key may not send events, or "" when it may. Server keys are checked against
// allowed_sdk_keys (when set), client keys against client_keys.
func (in *eventIntake) authorize(key string) string {
	switch {
	case key == "":
		return "missing SDK key: send the STATSIG-API-KEY header (or the k query parameter)"
	case wire.IsServerKey(key):
		if len(in.allowed) > 0 && !in.allowed[key] {
			return "this SDK key is not served by this proxy (allowed_sdk_keys)"
		}
	case wire.IsClientKey(key):
		if _, ok := in.clientKeys[key]; !ok {
			return "this client key is not configured on this proxy (client_keys)"
		}
	default:
		return "not a Statsig SDK key (secret-… or client-…)"
	}
	return ""
}

// intakeRequest carries one request's labels for its reply, metrics and log line.
type intakeRequest struct {
	in       *eventIntake
	w        http.ResponseWriter
	r        *http.Request
	endpoint string
	key      string
	sdkType  string
	accepted prometheus.Counter // requests{endpoint, 202}
}

func (q *intakeRequest) reply(status int, body []byte) {
	q.w.Header().Set("Content-Type", "application/json")
	q.w.WriteHeader(status)
	_, _ = q.w.Write(body)
	if status == http.StatusAccepted {
		q.accepted.Inc()
	} else {
		q.in.requests.WithLabelValues(q.endpoint, strconv.Itoa(status)).Inc()
	}
}

func (q *intakeRequest) refuse(status int, reason, msg string, dropped map[string]int) {
	q.in.batchesRefuse.WithLabelValues(q.endpoint, reason).Inc()
	body := map[string]any{"success": false, "error": msg}
	if len(dropped) > 0 {
		body["dropped_reasons"] = dropped
	}
	b, _ := json.Marshal(body)
	q.reply(status, append(b, '\n'))
	// One line per reason every few seconds: a misbehaving client or an outage must not flood the log.
	if ok, suppressed := q.in.logs.Allow(reason); ok {
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelWarn
		}
		keyHash := ""
		if q.key != "" {
			keyHash = wire.KeyHash(q.key)
		}
		q.in.logger.Log(q.r.Context(), level, "event batch refused",
			"endpoint", q.endpoint, "status", status, "reason", reason, "detail", msg, "key", keyHash,
			"sdk_type", firstNonEmpty(q.sdkType, q.r.Header.Get(wire.HeaderSDKType)), "remote", q.r.RemoteAddr,
			"suppressed_since_last", suppressed)
	}
}

func (q *intakeRequest) countDropped(d *queue.DropCounts) {
	for r, n := range d {
		if n > 0 {
			q.in.eventsRefuse.WithLabelValues(q.endpoint, queue.DropReason(r).String()).Add(float64(n))
		}
	}
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// bodyBuffers recycles request body buffers, saving the allocation (and zeroing) of up to
// limits.max_body_bytes per request.
var bodyBuffers sync.Pool

func getBuffer() *bytes.Buffer {
	if b, ok := bodyBuffers.Get().(*bytes.Buffer); ok {
		b.Reset()
		return b
	}
	return new(bytes.Buffer)
}

// putBuffer keeps buffers up to 4 MiB: rare huge batches should not pin memory.
func putBuffer(b *bytes.Buffer) {
	if b.Cap() <= 4<<20 {
		bodyBuffers.Put(b)
	}
}

// batches recycles decoded batches: their Events slices were a third of the intake's allocations.
var batches sync.Pool

func getBatch() *queue.Batch {
	if b, ok := batches.Get().(*queue.Batch); ok {
		return b
	}
	return new(queue.Batch)
}

// putBatch drops the batch's references into the body, so that a pooled batch does not keep a body
// alive, and keeps batches of up to 64k events.
func putBatch(b *queue.Batch) {
	if cap(b.Events) > 1<<16 {
		return
	}
	clear(b.Events[:cap(b.Events)])
	clear(b.Fields[:cap(b.Fields)])
	*b = queue.Batch{Events: b.Events[:0], Fields: b.Fields[:0]}
	batches.Put(b)
}
