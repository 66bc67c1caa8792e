package forwarder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sony/gobreaker"
	"golang.org/x/time/rate"

	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/queue"
)

// msgOverhead is counted per held message on top of its data (headers, reply subject, bookkeeping),
// so that max_in_flight_bytes also bounds memory when messages are tiny.
const msgOverhead = 512

// tuning holds timing knobs that are not configuration; tests shorten them.
type tuning struct {
	pullWait        time.Duration // longest one pull request waits for messages (also bounds shutdown)
	fetchCount      int           // most messages asked for in one pull request
	lagInterval     time.Duration // how often consumer lag is read
	summaryInterval time.Duration // how often a progress line is logged
	retryPullAfter  time.Duration // wait after a failed pull
}

func defaultTuning() tuning {
	return tuning{pullWait: time.Second, fetchCount: 1000, lagInterval: 5 * time.Second,
		summaryInterval: time.Minute, retryPullAfter: time.Second}
}

// engine is the forwarding machinery of one forwarder process:
//
//	pull loop → batcher (per key and SDK instance) → send queue → workers → Statsig
//	                                                       ↑ retries (backoff) ┘
//
// Every pulled message is held (tracker) until it is acked (Statsig accepted its batch), moved to
// the dead-letter stream, or NAKed at shutdown; held messages get in-progress heartbeats so
// JetStream does not redeliver them while they wait.
type engine struct {
	cfg    config.Forwarder
	stream config.Stream
	logger *slog.Logger
	js     jetstream.JetStream
	m      *metrics
	up     *upstream
	br     *breaker
	lim    *rate.Limiter
	bt     *batcher
	q      *sendQueue
	held   *tracker
	tune   tuning

	maxPayload int
	pressure   chan struct{}
	sending    atomic.Int32 // attempts between POST and settling

	consMu sync.Mutex
	cons   jetstream.Consumer
	events jetstream.Stream // for lag reads
	bound  atomic.Bool
	bindMu sync.Mutex

	pullCancel, workCancel, bgCancel context.CancelFunc
	pullWG, workWG, bgWG             sync.WaitGroup

	// Totals for the periodic progress line.
	accBatches, accEvents, retries, deadLettered atomic.Int64
}

type engineOptions struct {
	cfg        config.Config
	logger     *slog.Logger
	js         jetstream.JetStream
	metrics    func(breakerState func() float64) *metrics
	version    string
	maxPayload int64
	tune       tuning
}

func newEngine(o engineOptions) *engine {
	f := o.cfg.Forwarder
	e := &engine{
		cfg: f, stream: o.cfg.NATS.Stream, logger: o.logger, js: o.js, tune: o.tune,
		up:         newUpstream(o.cfg.Upstream.Events, f.RequestTimeout, f.Concurrency, o.version),
		bt:         newBatcher(f.BatchMaxEvents, int(f.BatchMaxBytes), f.FlushInterval),
		q:          newSendQueue(),
		maxPayload: int(o.maxPayload),
		pressure:   make(chan struct{}, 1),
	}
	limit := rate.Inf
	if f.ReplayRate > 0 {
		limit = rate.Limit(f.ReplayRate)
	}
	e.lim = rate.NewLimiter(limit, 1) // burst 1: a recovering Statsig sees an even rate, not spikes
	var m *metrics
	e.br = newBreaker(f.Breaker, o.logger, func(_, to gobreaker.State) {
		if m != nil {
			m.breakerTransitions.WithLabelValues(to.String()).Inc()
		}
	})
	m = o.metrics(e.br.state)
	e.m = m
	e.held = newTracker(m)
	return e
}

// consumerConfig is the durable pull consumer every replica shares.
func consumerConfig(cfg config.Config) jetstream.ConsumerConfig {
	f := cfg.Forwarder
	return jetstream.ConsumerConfig{
		Durable:       f.ConsumerName,
		Description:   "sigedge forwarder: event batches to Statsig, acked once Statsig accepted them",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       f.AckWait,
		MaxDeliver:    -1, // never give up on a batch: Statsig outages can last longer than any count
		FilterSubject: cfg.NATS.Stream.SubjectPrefix + ".>",
		MaxAckPending: f.MaxAckPending,
	}
}

// bind creates or updates the durable consumer (and the streams, should they have been deleted).
func (e *engine) bind(ctx context.Context, cfg config.Config) error {
	e.bindMu.Lock()
	defer e.bindMu.Unlock()
	if _, err := queue.EnsureStreams(ctx, e.js, e.stream); err != nil {
		return fmt.Errorf("event streams: %w", err)
	}
	cons, err := e.js.CreateOrUpdateConsumer(ctx, e.stream.Name, consumerConfig(cfg))
	if err != nil {
		return fmt.Errorf("consumer %s on stream %s: %w", e.cfg.ConsumerName, e.stream.Name, err)
	}
	events, err := e.js.Stream(ctx, e.stream.Name)
	if err != nil {
		return fmt.Errorf("stream %s: %w", e.stream.Name, err)
	}
	e.consMu.Lock()
	e.cons, e.events = cons, events
	e.consMu.Unlock()
	e.bound.Store(true)
	e.m.consumerBound.Set(1)
	return nil
}

func (e *engine) consumer() (jetstream.Consumer, jetstream.Stream) {
	e.consMu.Lock()
	defer e.consMu.Unlock()
	return e.cons, e.events
}

// start runs the pull loop, the workers and the background loops.
func (e *engine) start(cfg config.Config) {
	pullCtx, pullCancel := context.WithCancel(context.Background())
	workCtx, workCancel := context.WithCancel(context.Background())
	bgCtx, bgCancel := context.WithCancel(context.Background())
	e.pullCancel, e.workCancel, e.bgCancel = pullCancel, workCancel, bgCancel
	e.pullWG.Go(func() { e.pullLoop(pullCtx, cfg) })
	for range e.cfg.Concurrency {
		e.workWG.Go(func() { e.worker(workCtx) })
	}
	e.bgWG.Go(func() { e.flushLoop(bgCtx) })
	e.bgWG.Go(func() { e.heartbeatLoop(bgCtx) })
	e.bgWG.Go(func() { e.lagLoop(bgCtx) })
	e.bgWG.Go(func() { e.summaryLoop(bgCtx) })
	e.logger.Info("forwarder consuming", "stream", e.stream.Name, "consumer", e.cfg.ConsumerName,
		"flush_interval", e.cfg.FlushInterval.String(), "batch_max_events", e.cfg.BatchMaxEvents,
		"replay_rate", e.cfg.ReplayRate, "concurrency", e.cfg.Concurrency, "upstream", e.up.base)
}

// ---- pulling ----

func (e *engine) pullLoop(ctx context.Context, cfg config.Config) {
	var failingSince time.Time
	for ctx.Err() == nil {
		if !e.waitForSpace(ctx) {
			return
		}
		cons, _ := e.consumer()
		// The pull asks for a number of messages, never for bytes: on a replicated consumer
		// (stream replicas > 1) nats-server 2.15 sends the 409 that ends a max_bytes pull ahead of
		// messages still waiting for their delivery to be replicated, so the client stops reading
		// and those messages sit unacked until ack_wait (5 min by default). Counting each message
		// as the largest it can be held keeps memory within the bound all the same: a compressed
		// body is held as stored and decoded, each at most the max payload (the proxy splits
		// batches by their JSON). Close to the bound, one message of any size is pulled, so the
		// bound is exceeded by at most one message.
		budget := int(e.cfg.MaxInFlightBytes) - int(e.held.bytesHeld())
		count := min(e.tune.fetchCount, max(1, budget/(2*e.maxPayload+64<<10)))
		mb, err := cons.Fetch(count, jetstream.FetchMaxWait(e.tune.pullWait))
		if err == nil {
			for msg := range mb.Messages() {
				e.receive(msg)
			}
			err = mb.Error()
		}
		if err == nil || errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) {
			if !failingSince.IsZero() {
				e.logger.Info("pulling from the event stream again", "failed_for", time.Since(failingSince).Round(time.Second).String())
				failingSince = time.Time{}
			}
			if !e.bound.Load() {
				e.bound.Store(true)
				e.m.consumerBound.Set(1)
			}
			continue
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
			e.logger.Warn("pull from the event stream failed; retrying", "consumer", e.cfg.ConsumerName, "err", err)
		}
		e.bound.Store(false)
		e.m.consumerBound.Set(0)
		if !sleepCtx(ctx, e.tune.retryPullAfter) {
			return
		}
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
			errors.Is(err, jetstream.ErrStreamNotFound) {
			bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if berr := e.bind(bctx, cfg); berr != nil {
				e.logger.Warn("re-creating the durable consumer failed", "err", berr)
			} else {
				e.logger.Info("durable consumer re-created", "consumer", e.cfg.ConsumerName)
			}
			cancel()
		}
	}
}

// waitForSpace blocks while the held bytes are at max_in_flight_bytes, asking the batcher to send
// what it holds, so memory stays bounded however large the backlog. False once ctx ends.
func (e *engine) waitForSpace(ctx context.Context) bool {
	for e.held.bytesHeld() >= int64(e.cfg.MaxInFlightBytes) {
		e.signalPressure()
		select {
		case <-ctx.Done():
			return false
		case <-e.held.released:
		case <-time.After(time.Second):
		}
	}
	return ctx.Err() == nil
}

func (e *engine) signalPressure() {
	select {
	case e.pressure <- struct{}{}:
	default:
	}
}

// receive takes one pulled message into a batch.
func (e *engine) receive(msg jetstream.Msg) {
	e.m.messagesReceived.Inc()
	m, err := parseMessage(msg)
	e.held.add(m)
	if err != nil {
		e.m.messagesMalformed.Inc()
		e.logger.Error("malformed event batch in the stream; moving it to the dead-letter stream",
			"seq", m.seq, "subject", msg.Subject(), "key_hash", m.keyHash, "err", err)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		e.deadLetter(ctx, &batch{keyHash: m.keyHash, msgs: []*message{m}}, 0, err.Error())
		cancel()
		return
	}
	if m.count == 0 {
		e.m.messagesEmpty.Inc()
		e.ackMsg(m)
		return
	}
	for _, b := range e.bt.add(m, time.Now()) {
		e.enqueue(b)
	}
}

func (e *engine) enqueue(b *batch) {
	b.notBefore = time.Time{}
	e.q.push(b)
}

// ---- background loops ----

// flushLoop sends batches that waited flush_interval, and under memory pressure with nothing being
// sent, the largest open batches.
func (e *engine) flushLoop(ctx context.Context) {
	tick := min(max(e.cfg.FlushInterval/10, 5*time.Millisecond), time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, b := range e.bt.due(now) {
				e.enqueue(b)
			}
		case <-e.pressure:
			if e.q.len() > 0 || e.sending.Load() > 0 {
				// Sends under way will free memory (and ack slots); flushing open batches now would
				// only make them smaller.
				continue
			}
			for _, b := range e.bt.flushLargest() {
				e.enqueue(b)
			}
		}
	}
}

// heartbeatLoop tells JetStream that held messages are still being worked on, so a batch waiting
// for its flush, a retry or the breaker is not redelivered to another replica meanwhile.
func (e *engine) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(max(e.cfg.AckWait/3, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, m := range e.held.snapshot() {
				_ = m.msg.InProgress() // a lost heartbeat costs at worst a duplicate send
			}
		}
	}
}

// lagLoop exports how far behind the forwarders are, and flushes open batches when JetStream is
// about to stop delivering because of max_ack_pending.
func (e *engine) lagLoop(ctx context.Context) {
	t := time.NewTicker(e.tune.lagInterval)
	defer t.Stop()
	for {
		e.readLag(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (e *engine) readLag(ctx context.Context) {
	e.m.queuedBatches.Set(float64(e.q.len()))
	cons, events := e.consumer()
	if cons == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := cons.Info(ctx)
	if err != nil {
		return
	}
	e.m.pending.Set(float64(info.NumPending))
	e.m.ackPending.Set(float64(info.NumAckPending))
	if info.NumAckPending >= e.cfg.MaxAckPending*9/10 && e.bt.open() > 0 {
		e.signalPressure()
	}
	age := 0.0
	if info.NumPending+uint64(info.NumAckPending) > 0 {
		// Everything at or below the ack floor is acked; the first message above it is the oldest
		// that may not be.
		raw, err := events.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(e.stream.SubjectPrefix+".>"))
		if err == nil {
			age = max(time.Since(raw.Time).Seconds(), 0)
		}
	}
	e.m.oldestUnacked.Set(age)
}

// summaryLoop logs one progress line a minute while anything happens.
func (e *engine) summaryLoop(ctx context.Context) {
	t := time.NewTicker(e.tune.summaryInterval)
	defer t.Stop()
	var lastB, lastE, lastR, lastD int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b, ev, r, d := e.accBatches.Load(), e.accEvents.Load(), e.retries.Load(), e.deadLettered.Load()
		bytesHeld, n := e.held.size()
		if b == lastB && r == lastR && d == lastD && n == 0 {
			continue
		}
		e.logger.Info("forwarder progress", "batches_accepted", b-lastB, "events_accepted", ev-lastE,
			"retries", r-lastR, "dead_lettered", d-lastD, "held_messages", n, "held_bytes", bytesHeld,
			"queued_batches", e.q.len(), "breaker", e.br.cb.State().String(), "interval", e.tune.summaryInterval.String())
		lastB, lastE, lastR, lastD = b, ev, r, d
	}
}

// ---- sending ----

func (e *engine) worker(ctx context.Context) {
	for {
		b, err := e.q.pop(ctx)
		if err != nil {
			return
		}
		e.send(ctx, b)
	}
}

// send makes one attempt at b and settles or reschedules it.
func (e *engine) send(ctx context.Context, b *batch) {
	// While the breaker is open nothing is sent (and so nothing acked): wait for the probe time.
	if err := e.br.waitClosed(ctx); err != nil {
		e.q.push(b)
		return
	}
	if err := e.lim.Wait(ctx); err != nil {
		e.q.push(b)
		return
	}
	done, err := e.br.allow()
	if err != nil {
		if errors.Is(err, gobreaker.ErrTooManyRequests) {
			// Half-open with its probes out: wait for their verdict.
			_ = e.br.waitChange(ctx, e.cfg.RequestTimeout)
		}
		e.q.push(b)
		return
	}
	e.m.batchesSent.WithLabelValues(b.endpoint).Inc()
	e.sending.Add(1)
	a := e.up.post(ctx, b)
	defer e.sending.Add(-1) // after the batch is settled or queued again
	if a.err != nil && ctx.Err() != nil {
		// Shutdown cancelled the request: not Statsig's fault, and the batch is NAKed by shutdown.
		done(true)
		e.q.push(b)
		return
	}
	out := outRetry
	if a.err == nil {
		out = classify(a.status)
	}
	done(out != outRetry)
	e.m.upstreamRequests.WithLabelValues(b.endpoint, a.describe()).Inc()
	e.m.upstreamLatency.WithLabelValues(b.endpoint).Observe(a.latency.Seconds())

	switch out {
	case outAccepted:
		e.accept(b, a)
	case outRetry, outThrottled:
		e.retry(b, a)
	case outKeyRefused:
		e.deadLetter(ctx, b, a.status, reasonOf(b, a))
	case outRejected:
		if len(b.msgs) > 1 {
			e.split(b, a)
		} else {
			e.deadLetter(ctx, b, a.status, reasonOf(b, a))
		}
	}
}

func reasonOf(b *batch, a attempt) string {
	return fmt.Sprintf("Statsig answered %d to POST /v1/%s: %s", a.status, b.endpoint, a.detail)
}

func (e *engine) accept(b *batch, a attempt) {
	for _, m := range b.msgs {
		e.ackMsg(m)
	}
	e.m.batchesAccepted.WithLabelValues(b.endpoint).Inc()
	e.m.eventsAccepted.WithLabelValues(b.endpoint).Add(float64(b.events))
	e.accBatches.Add(1)
	e.accEvents.Add(int64(b.events))
	if b.attempt > 0 {
		e.logger.Info("batch accepted after retries", "key_hash", b.keyHash, "endpoint", b.endpoint,
			"events", b.events, "messages", len(b.msgs), "attempts", b.attempt+1, "waited", time.Since(b.created).Round(time.Millisecond).String())
	} else {
		e.logger.Debug("batch accepted", "key_hash", b.keyHash, "endpoint", b.endpoint, "events", b.events,
			"messages", len(b.msgs), "status", a.status, "latency", a.latency.String())
	}
}

func (e *engine) retry(b *batch, a attempt) {
	b.attempt++
	d := backoff(b.attempt, e.cfg.RetryBackoffMin, e.cfg.RetryBackoffMax)
	if a.retryAfter > d {
		d = min(a.retryAfter, e.cfg.RetryBackoffMax)
	}
	b.notBefore = time.Now().Add(d)
	e.q.push(b)
	e.m.batchesRetried.WithLabelValues(a.describe()).Inc()
	e.retries.Add(1)
	args := []any{"key_hash", b.keyHash, "endpoint", b.endpoint, "result", a.describe(), "attempt", b.attempt,
		"retry_in", d.Round(time.Millisecond).String(), "events", b.events, "messages", len(b.msgs)}
	if a.err != nil {
		args = append(args, "err", a.err)
	} else if a.detail != "" {
		args = append(args, "body", a.detail)
	}
	e.logger.Warn("Statsig did not take a batch; it stays in the stream and is retried", args...)
}

// split halves a batch Statsig refused with a 4xx, so a bad message is found in log2(n) attempts
// and the good ones beside it still go through.
func (e *engine) split(b *batch, a attempt) {
	e.m.batchesSplit.Inc()
	e.logger.Warn("Statsig refused a batch; splitting it to isolate the bad message",
		"key_hash", b.keyHash, "endpoint", b.endpoint, "status", a.status, "body", a.detail, "messages", len(b.msgs))
	half := len(b.msgs) / 2
	for _, part := range [][]*message{b.msgs[:half], b.msgs[half:]} {
		nb := &batch{key: b.key, keyHash: b.keyHash, endpoint: b.endpoint, sdkType: b.sdkType,
			sdkVersion: b.sdkVersion, meta: b.meta, extra: b.extra, created: b.created, attempt: b.attempt}
		for _, m := range part {
			nb.msgs = append(nb.msgs, m)
			nb.events += m.count
			nb.bytes += len(m.events)
		}
		e.q.push(nb)
	}
}

// deadLetter moves every message of b to the dead-letter stream and acks it on the event stream.
// A message that cannot be dead-lettered (NATS trouble) is NAKed with a delay and comes back later.
func (e *engine) deadLetter(ctx context.Context, b *batch, status int, reason string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	label := fmt.Sprint(status)
	moved, events := 0, 0
	var firstSeq uint64
	for _, m := range b.msgs {
		out := deadLetterMsg(e.stream, m.msg, status, reason, time.Now())
		id := fmt.Sprintf("sigedge-dead-%s-%d", e.stream.Name, m.seq)
		_, err := e.js.PublishMsg(ctx, out, jetstream.WithExpectStream(e.stream.DeadLetterName), jetstream.WithMsgID(id))
		if err != nil {
			e.m.deadLetterErrors.Inc()
			e.logger.Error("could not move a batch to the dead-letter stream; it is retried later",
				"key_hash", b.keyHash, "seq", m.seq, "err", err)
			e.nakMsg(m, e.cfg.RetryBackoffMin, "dead_letter_failed")
			continue
		}
		e.ackMsg(m)
		if firstSeq == 0 {
			firstSeq = m.seq
		}
		moved++
		events += m.count
	}
	if moved == 0 {
		return
	}
	e.m.batchesDeadLetter.WithLabelValues(label).Inc()
	e.m.messagesDeadLetter.WithLabelValues(label).Add(float64(moved))
	e.m.eventsDeadLetter.WithLabelValues(label).Add(float64(events))
	e.deadLettered.Add(int64(moved))
	e.logger.Error("batch refused for good; moved to the dead-letter stream (fix the cause, then: forwarder replay-dlq -key-hash "+b.keyHash+")",
		"key_hash", b.keyHash, "endpoint", b.endpoint, "status", status, "reason", reason,
		"messages", moved, "events", events, "first_seq", firstSeq, "dead_letter_stream", e.stream.DeadLetterName)
}

// backoff is the wait before retry number n (1, 2, …): exponential from lo, capped at hi, with
// jitter in its upper half so batches that failed together do not retry together.
func backoff(n int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	floor := max(lo, d/2)
	if d <= floor {
		return d
	}
	return floor + time.Duration(rand.Int64N(int64(d-floor)+1))
}

// ---- settling ----

func (e *engine) ackMsg(m *message) {
	if !e.held.remove(m) {
		return
	}
	if err := m.msg.Ack(); err != nil {
		e.m.ackErrors.Inc()
		e.logger.Warn("ack failed; the message will be redelivered and sent again", "seq", m.seq, "key_hash", m.keyHash, "err", err)
	}
}

func (e *engine) nakMsg(m *message, delay time.Duration, reason string) {
	if !e.held.remove(m) {
		return
	}
	var err error
	if delay > 0 {
		err = m.msg.NakWithDelay(delay)
	} else {
		err = m.msg.Nak()
	}
	if err == nil {
		e.m.naks.WithLabelValues(reason).Inc()
	}
}

// shutdown stops pulling, sends what is batched while ctx allows, and hands everything else back to
// the stream with a NAK so that another replica takes it at once.
func (e *engine) shutdown(ctx context.Context) {
	start := time.Now()
	e.pullCancel()
	waitCtx(ctx, &e.pullWG)

	for _, b := range e.bt.flushAll() {
		e.enqueue(b)
	}
	// Keep a reserve of the time left to NAK and drain the connection.
	sendCtx := ctx
	if dl, ok := ctx.Deadline(); ok {
		reserve := min(time.Until(dl)/5, 2*time.Second)
		var cancel context.CancelFunc
		sendCtx, cancel = context.WithDeadline(ctx, dl.Add(-reserve))
		defer cancel()
	}
	reason := "sent"
wait:
	for {
		if _, n := e.held.size(); n == 0 {
			break
		}
		if e.br.isOpen() {
			reason = "breaker_open"
			break
		}
		select {
		case <-sendCtx.Done():
			reason = "shutdown_timeout"
			break wait
		case <-e.held.released:
		case <-time.After(100 * time.Millisecond): // to notice the breaker opening
		}
	}
	e.workCancel()
	e.workWG.Wait() // in-flight requests are cancelled with workCancel, so this is quick
	e.bgCancel()
	e.bgWG.Wait()

	e.q.drain()
	left := e.held.snapshot()
	for _, m := range left {
		e.nakMsg(m, 0, "shutdown")
	}
	if len(left) > 0 {
		e.logger.Warn("handed unsent batches back to the stream for another forwarder", "messages", len(left),
			"why", reason, "took", time.Since(start).Round(time.Millisecond).String())
	} else {
		e.logger.Info("everything batched was sent before stopping", "took", time.Since(start).Round(time.Millisecond).String())
	}
}

func waitCtx(ctx context.Context, wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// ---- held messages ----

// tracker holds every message between pull and settlement, for heartbeats, memory accounting and
// the final NAK.
type tracker struct {
	m        *metrics
	mu       sync.Mutex
	msgs     map[*message]struct{}
	bytes    int64
	released chan struct{} // one token after any release
}

func newTracker(m *metrics) *tracker {
	return &tracker{m: m, msgs: map[*message]struct{}{}, released: make(chan struct{}, 1)}
}

func (t *tracker) add(m *message) {
	t.mu.Lock()
	t.msgs[m] = struct{}{}
	t.bytes += int64(m.size + msgOverhead)
	b, n := t.bytes, len(t.msgs)
	t.mu.Unlock()
	t.m.inFlightBytes.Set(float64(b))
	t.m.inFlightMessages.Set(float64(n))
}

// remove forgets m and reports whether it was held (a message is settled once).
func (t *tracker) remove(m *message) bool {
	t.mu.Lock()
	if _, ok := t.msgs[m]; !ok {
		t.mu.Unlock()
		return false
	}
	delete(t.msgs, m)
	t.bytes -= int64(m.size + msgOverhead)
	b, n := t.bytes, len(t.msgs)
	t.mu.Unlock()
	t.m.inFlightBytes.Set(float64(b))
	t.m.inFlightMessages.Set(float64(n))
	select {
	case t.released <- struct{}{}:
	default:
	}
	return true
}

func (t *tracker) bytesHeld() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bytes
}

func (t *tracker) size() (int64, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bytes, len(t.msgs)
}

func (t *tracker) snapshot() []*message {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*message, 0, len(t.msgs))
	for m := range t.msgs {
		out = append(out, m)
	}
	return out
}
