package queue

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/highwayhash"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/logutil"
	"github.com/sigedge/sigedge/internal/wire"
)

// ErrUnavailable is wrapped by every publish error that means "not stored, try again later":
// disconnected from NATS, no ack within the timeout, stream full, stream missing. Callers answer it
// with 503 so that the SDK keeps the events and retries.
var ErrUnavailable = errors.New("event stream unavailable")

// PublishError is a failed publish: Reason is a short metric label (disconnected, timeout,
// stream_full, no_stream, error).
type PublishError struct {
	Reason string
	Err    error
}

func (e *PublishError) Error() string {
	return "publish event batch: " + e.Reason + ": " + e.Err.Error()
}

// Unwrap returns both the cause and ErrUnavailable, so errors.Is works for either.
func (e *PublishError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// PublisherOptions configure a Publisher.
type PublisherOptions struct {
	// Conn is the NATS connection (owned by the caller; the Publisher never closes it).
	Conn *nats.Conn
	// Stream is the event stream's configuration (name, subject prefix).
	Stream config.Stream
	// Timeout bounds the wait for JetStream's ack of a batch (all of its messages).
	Timeout time.Duration
	// Dedupe configures the optional exposure de-duplication.
	Dedupe config.ExposureDedupe
	// Retries configures the recognition of events an SDK re-sends in a new batch (see Result.Retried);
	// they are remembered for Stream.DuplicateWindow, like batch ids.
	Retries config.RetryDedupe
	// Registerer receives the publisher's metrics (nil: not registered).
	Registerer prometheus.Registerer
	// Logger receives failures (rate-limited).
	Logger *slog.Logger
}

// BatchMeta describes where a batch came from. It becomes the headers of its messages.
type BatchMeta struct {
	// Endpoint is wire.EndpointLogEvent or wire.EndpointRgstr: where the forwarder sends it.
	Endpoint string
	// Source is wire.SourceSDK or wire.SourceProxy.
	Source string
	// SDKType, SDKVersion and ClientTime are what the SDK said (may be empty).
	SDKType, SDKVersion, ClientTime string
	// ReceivedAt is when the proxy received the batch; zero means now.
	ReceivedAt time.Time
	// ID is the batch's idempotency id: a retry with the same ID within the stream's duplicate window
	// is stored once. Empty means: derived from the key and the events (see BatchID).
	ID string
	// Metadata is the batch's raw statsigMetadata JSON, or nil.
	Metadata []byte
}

// Result says what a publish stored.
type Result struct {
	// Events is the number of events stored (or already stored by an earlier attempt).
	Events int
	// Messages is the number of JetStream messages the batch took.
	Messages int
	// Duplicates is how many of those JetStream recognised as already stored (an SDK's retry).
	Duplicates int
	// Retried is how many of Events an earlier batch of the same SDK session stored: the SDK
	// re-sent them in a new batch (statsig-node-core does, after a lost reply). They are not stored
	// again.
	Retried int
	// Dropped counts the events left out by the publisher (too large for a message, duplicate
	// exposures).
	Dropped DropCounts
	// BodyBytes is the size of the messages' JSON bodies; StoredBytes their size as published
	// (smaller when compressed).
	BodyBytes, StoredBytes int
}

// Publisher publishes event batches to the event stream and returns only once JetStream has
// acknowledged every message of a batch. It is safe for concurrent use.
type Publisher struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  config.Stream
	timeout time.Duration
	s2      bool // compress bodies (nats.stream.compression: s2)
	dedupe  *dedupe
	retries *retryMemory
	logger  *slog.Logger
	logs    logutil.Limiter
	m       publisherMetrics
}

// NewPublisher returns a publisher on o.Conn. The stream must exist (EnsureStreams).
func NewPublisher(o PublisherOptions) (*Publisher, error) {
	if o.Conn == nil {
		return nil, errors.New("queue: publisher needs a NATS connection")
	}
	if o.Timeout <= 0 {
		return nil, fmt.Errorf("queue: publish timeout must be positive, got %s", o.Timeout)
	}
	// A JetStream handle of our own: its async ack timeout clears acks that never come (a server
	// that died mid-publish), so pending state cannot grow without bound.
	js, err := jetstream.New(o.Conn,
		jetstream.WithPublishAsyncTimeout(o.Timeout),
		jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, fmt.Errorf("queue: jetstream: %w", err)
	}
	p := &Publisher{
		nc: o.Conn, js: js, stream: o.Stream, timeout: o.Timeout, logger: o.Logger,
		s2:   o.Stream.Compression == config.CompressionS2,
		logs: logutil.Limiter{Every: 10 * time.Second},
	}
	if p.logger == nil {
		p.logger = slog.New(slog.DiscardHandler)
	}
	if o.Dedupe.Enabled {
		p.dedupe = newDedupe(o.Dedupe.MaxKeys, o.Dedupe.Window)
	}
	if o.Retries.Enabled {
		if o.Stream.DuplicateWindow <= 0 || o.Retries.MaxEvents <= 0 {
			return nil, fmt.Errorf("queue: retry de-duplication needs a positive duplicate window and max events, got %s and %d",
				o.Stream.DuplicateWindow, o.Retries.MaxEvents)
		}
		p.retries = newRetryMemory(o.Stream.DuplicateWindow, o.Retries.MaxEvents)
	}
	p.m = newPublisherMetrics(p)
	if o.Registerer != nil {
		if err := p.m.register(o.Registerer); err != nil {
			return nil, fmt.Errorf("queue: metrics: %w", err)
		}
	}
	return p, nil
}

// batchIDKey keys the batch-id hash. It is not a secret: HighwayHash is used as a fast 128-bit hash
// (several GB/s), since SHA-256 of every batch cost as much CPU as validating it. Changing it (or
// the hash) changes every id, so a retry landing on a proxy of another version within the
// duplicate window would be stored twice: keep it stable.
var batchIDKey = []byte("sigedge event batch id, v1......")

// BatchID is the idempotency id of a batch: a 128-bit hash of the key and the raw "events" array, so
// an SDK's retry of the same batch (same events, whatever its compression or metadata) gets the
// same id.
func BatchID(key string, eventsRaw []byte) string {
	return batchID(key, eventsRaw)
}

func batchID(key string, parts ...[]byte) string {
	h, err := highwayhash.New128(batchIDKey)
	if err != nil {
		panic(err) // only for a key that is not 32 bytes
	}
	h.Write([]byte(key))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write(p)
	}
	var sum [highwayhash.Size128]byte
	return hex.EncodeToString(h.Sum(sum[:0]))
}

// PublishBatch publishes events (each the raw JSON of one event object) for key as one batch and
// waits for JetStream's ack. This is the entry point for batches the proxy produces itself
// (exposures of HTTP evaluations); SDK batches go through Publish.
func (p *Publisher) PublishBatch(ctx context.Context, key string, meta BatchMeta, events [][]byte) error {
	if meta.ID == "" {
		meta.ID = batchID(key, events...)
	}
	_, err := p.Publish(ctx, key, meta, &Batch{Events: events, Total: len(events), Metadata: meta.Metadata})
	return err
}

// Publish stores a decoded batch: as one message holding b.Body unchanged when every event is kept
// and it fits, otherwise rebuilt from the kept events (split by events into several messages when
// it is larger than the server's max payload). It returns once every message is acknowledged, or
// an error wrapping ErrUnavailable (nothing may be assumed stored: the caller answers 503 and the
// SDK retries; message ids make the retry idempotent), or ErrTooLarge when not even one event fits
// a message.
func (p *Publisher) Publish(ctx context.Context, key string, meta BatchMeta, b *Batch) (res Result, err error) {
	events := b.Events
	if p.retries != nil && meta.Source != wire.SourceProxy {
		if session := b.SessionID(); session != "" {
			var claim *retryClaim
			if events, claim, err = p.retries.claim(ctx, p.timeout, key, session, events); err != nil {
				return res, p.failed(key, &PublishError{Reason: "timeout", Err: fmt.Errorf("waiting for an earlier batch of this SDK session: %w", err)})
			}
			res.Retried = len(b.Events) - len(events)
			defer func() { claim.finish(err == nil) }()
		}
	}
	var remember []exposureKey
	if p.dedupe != nil {
		var n int
		events, remember, n = p.dedupe.filter(key, b.Metadata, events)
		res.Dropped[DropDuplicateExposure] = n
	}
	if len(events) == 0 {
		res.Events = res.Retried
		p.m.retried.Add(float64(res.Retried))
		p.m.dropped(&res.Dropped)
		return res, nil
	}
	if meta.ID == "" {
		meta.ID = BatchID(key, b.EventsRaw)
	}
	if meta.ReceivedAt.IsZero() {
		meta.ReceivedAt = time.Now()
	}
	if meta.Source == "" {
		meta.Source = wire.SourceSDK
	}
	if meta.Endpoint == "" {
		meta.Endpoint = wire.EndpointLogEvent
	}
	subject := wire.EventSubject(p.stream.SubjectPrefix, key)
	hdr := p.headers(key, meta)
	// Room for the body: max payload minus the headers, with slack for a part's header and id suffix.
	room := int(p.nc.MaxPayload()) - headerSize(hdr) - 64

	var one [1]part // the usual case, without an allocation
	var bodies []part
	if len(events) == len(b.Events) && b.Dropped.Total() == 0 && b.Body != nil && len(b.Body) <= room {
		one[0] = part{body: b.Body, events: len(events)}
		bodies = one[:]
	} else {
		var tooLarge int
		var err error
		bodies, tooLarge, err = buildBodies(events, b.Metadata, b.Fields, room)
		res.Dropped[DropTooLarge] = tooLarge
		if err != nil {
			p.m.dropped(&res.Dropped)
			return res, err
		}
		if len(bodies) == 0 {
			p.m.dropped(&res.Dropped)
			return res, fmt.Errorf("%w: each of the %d events is larger than a message may be (%d bytes)", ErrTooLarge, tooLarge, room)
		}
	}
	res.Events = len(events) - res.Dropped[DropTooLarge] + res.Retried

	if st := p.nc.Status(); st != nats.CONNECTED {
		// Fail fast: while reconnecting, nats.go would buffer the publish and the SDK would wait for
		// the full timeout to hear 503 anyway.
		return res, p.failed(key, &PublishError{Reason: "disconnected", Err: fmt.Errorf("NATS connection is %s", st)})
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	start := time.Now()
	var oneFuture [1]jetstream.PubAckFuture
	futures := oneFuture[:0]
	// Compressed bodies are in pooled buffers, recycled once every message is acknowledged: after
	// a failure nats.go may still hold a message to retry it, so they are left to the GC then.
	var oneBuf [1]*[]byte
	bufs := oneBuf[:0]
	for i, pt := range bodies {
		// Parts share the batch's headers but for their number and id, so each gets its own map:
		// nats.go keeps a message, headers included, until its ack (to retry it).
		h := hdr
		if len(bodies) > 1 {
			h = make(nats.Header, len(hdr)+1)
			for k, v := range hdr {
				h[k] = v
			}
			part := strconv.Itoa(i+1) + "/" + strconv.Itoa(len(bodies))
			h[wire.MsgPart] = []string{part}
			h[jetstream.MsgIDHeader] = []string{meta.ID + "." + part}
		}
		h[wire.MsgEventCount] = []string{strconv.Itoa(pt.events)}
		data := pt.body
		if p.s2 {
			buf := getS2Buffer()
			if enc, ok := wire.AppendS2((*buf)[:0], pt.body); ok {
				*buf, data = enc, enc
				h[wire.MsgEncoding] = []string{wire.EncodingS2}
			}
			bufs = append(bufs, buf)
		}
		res.BodyBytes += len(pt.body)
		res.StoredBytes += len(data)
		f, err := p.js.PublishMsgAsync(&nats.Msg{Subject: subject, Header: h, Data: data},
			jetstream.WithStallWait(p.timeout))
		if err != nil {
			return res, p.failed(key, classify(err))
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				res.Duplicates++
			}
		case err := <-f.Err():
			return res, p.failed(key, classify(err))
		case <-ctx.Done():
			return res, p.failed(key, &PublishError{Reason: "timeout", Err: fmt.Errorf("no ack from JetStream within %s: %w", p.timeout, ctx.Err())})
		}
	}
	for _, b := range bufs {
		putS2Buffer(b)
	}
	res.Messages = len(bodies)
	if p.dedupe != nil {
		p.dedupe.remember(remember)
	}
	p.m.published(meta, &res, time.Since(start))
	return res, nil
}

// s2Buffers recycles the buffers of compressed bodies (a message's worth: up to the max payload).
var s2Buffers = sync.Pool{New: func() any { return new([]byte) }}

func getS2Buffer() *[]byte { return s2Buffers.Get().(*[]byte) }

// putS2Buffer keeps buffers up to 4 MiB: rare huge batches should not pin memory.
func putS2Buffer(b *[]byte) {
	if cap(*b) <= 4<<20 {
		s2Buffers.Put(b)
	}
}

// headers returns the headers every message of a batch carries (its parts add theirs).
func (p *Publisher) headers(key string, meta BatchMeta) nats.Header {
	h := make(nats.Header, 11)
	h[wire.MsgSDKKey] = []string{key}
	h[wire.MsgEndpoint] = []string{meta.Endpoint}
	h[wire.MsgSource] = []string{meta.Source}
	h[wire.MsgReceivedAt] = []string{strconv.FormatInt(meta.ReceivedAt.UnixMilli(), 10)}
	h[jetstream.MsgIDHeader] = []string{meta.ID}
	h[jetstream.ExpectedStreamHeader] = []string{p.stream.Name}
	if v := headerValue(meta.SDKType); v != "" {
		h[wire.MsgSDKType] = []string{v}
	}
	if v := headerValue(meta.SDKVersion); v != "" {
		h[wire.MsgSDKVersion] = []string{v}
	}
	if v := headerValue(meta.ClientTime); v != "" {
		h[wire.MsgClientTime] = []string{v}
	}
	return h
}

// headerValue keeps client-supplied header values safe for a NATS header line: printable ASCII,
// bounded length.
func headerValue(v string) string {
	if len(v) > 128 {
		v = v[:128]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return -1
		}
		return r
	}, v)
}

// headerSize is the encoded size of h plus the event count every message adds.
func headerSize(h nats.Header) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n + len(wire.MsgEventCount) + 2 + 10 + 2
}

// part is one message's body and its number of events.
type part struct {
	body   []byte
	events int
}

// buildBodies packs events into as few bodies {"events":[…],"statsigMetadata":…,<fields>} of at
// most room bytes as possible, in order. Events that cannot fit any body are counted in tooLarge.
func buildBodies(events [][]byte, metadata []byte, fields [][]byte, room int) (bodies []part, tooLarge int, err error) {
	var tail []byte // everything after the events array
	tail = append(tail, ']')
	if len(metadata) > 0 {
		tail = append(tail, `,"statsigMetadata":`...)
		tail = append(tail, metadata...)
	}
	for _, f := range fields {
		tail = append(tail, ',')
		tail = append(tail, f...)
	}
	tail = append(tail, '}')
	const head = `{"events":[`
	overhead := len(head) + len(tail)
	if overhead >= room {
		return nil, 0, fmt.Errorf("%w: the batch's metadata alone (%d bytes) exceeds a message (%d bytes)", ErrTooLarge, overhead, room)
	}
	total := overhead
	for _, e := range events {
		total += len(e) + 1
	}
	var cur []byte
	n := 0
	flush := func() {
		if cur != nil {
			bodies = append(bodies, part{body: append(cur, tail...), events: n})
			cur, n = nil, 0
		}
	}
	for _, ev := range events {
		if overhead+len(ev) > room {
			tooLarge++
			continue
		}
		if cur != nil && len(cur)+1+len(ev)+len(tail) > room {
			flush()
		}
		if cur == nil {
			cur = make([]byte, 0, min(total, room)) // usually everything fits one message
			cur = append(cur, head...)
		} else {
			cur = append(cur, ',')
		}
		cur = append(cur, ev...)
		n++
	}
	flush()
	return bodies, tooLarge, nil
}

// classify turns a publish error into a PublishError with a metric reason.
func classify(err error) *PublishError {
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound:
		return &PublishError{Reason: "no_stream", Err: err}
	case errors.As(err, &apiErr) && isStreamFull(apiErr):
		return &PublishError{Reason: "stream_full", Err: err}
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return &PublishError{Reason: "no_stream", Err: err}
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, jetstream.ErrTooManyStalledMsgs),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return &PublishError{Reason: "timeout", Err: err}
	case errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionDraining), errors.Is(err, nats.ErrConnectionReconnecting):
		return &PublishError{Reason: "disconnected", Err: err}
	}
	return &PublishError{Reason: "error", Err: err}
}

// isStreamFull recognises the store error of a DiscardNew stream at its limits.
func isStreamFull(e *jetstream.APIError) bool {
	d := strings.ToLower(e.Description)
	return strings.Contains(d, "maximum bytes") || strings.Contains(d, "maximum messages")
}

func (p *Publisher) failed(key string, e *PublishError) error {
	p.m.failures.WithLabelValues(e.Reason).Inc()
	if ok, suppressed := p.logs.Allow(e.Reason); ok {
		args := []any{"reason", e.Reason, "key", wire.KeyHash(key), "stream", p.stream.Name, "err", e.Err, "suppressed", suppressed}
		if e.Reason == "stream_full" {
			// DiscardNew: nothing is dropped, but every SDK is now holding and retrying its events.
			p.logger.Error("event stream full: refusing event batches with 503 until the forwarder drains it "+
				"(check the forwarder and Statsig, or raise nats.stream.max_bytes)", args...)
		} else {
			p.logger.Warn("event batch not stored: answering 503 so the SDK retries", args...)
		}
	}
	return e
}
