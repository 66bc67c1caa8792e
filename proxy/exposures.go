package proxy

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigedge/sigedge/internal/wire"
)

// ExposurePublisher stores exposure events of one key in the event stream, as one batch; it
// returns only once the stream has them. The queue package implements it.
type ExposurePublisher func(ctx context.Context, key string, events [][]byte) error

// exposureBatcher collects the exposures of the evaluations the proxy serves and publishes them per
// key at most every interval, so the evaluation hot path never waits for JetStream. Memory is
// bounded: beyond maxBuffered events new exposures are dropped and counted.
type exposureBatcher struct {
	publish     ExposurePublisher
	interval    time.Duration
	maxBuffered int
	logger      *slog.Logger
	counter     *prometheus.CounterVec // outcome: queued, published, dropped, deduplicated, retried

	mu      sync.Mutex
	pending map[string][][]byte
	count   int

	stop    chan struct{}
	stopped chan struct{}
}

func newExposureBatcher(publish ExposurePublisher, interval time.Duration, maxBuffered int, counter *prometheus.CounterVec, logger *slog.Logger) *exposureBatcher {
	b := &exposureBatcher{
		publish: publish, interval: interval, maxBuffered: maxBuffered, logger: logger, counter: counter,
		pending: map[string][][]byte{}, stop: make(chan struct{}), stopped: make(chan struct{}),
	}
	go b.run()
	return b
}

// add queues events for key.
func (b *exposureBatcher) add(key string, events [][]byte) {
	b.mu.Lock()
	room := b.maxBuffered - b.count
	if room < len(events) {
		if room < 0 {
			room = 0
		}
		b.counter.WithLabelValues("dropped").Add(float64(len(events) - room))
		events = events[:room]
	}
	b.pending[key] = append(b.pending[key], events...)
	b.count += len(events)
	b.mu.Unlock()
	b.counter.WithLabelValues("queued").Add(float64(len(events)))
}

func (b *exposureBatcher) run() {
	defer close(b.stopped)
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), b.interval*5+5*time.Second)
			b.flush(ctx)
			cancel()
		}
	}
}

// flush publishes everything queued. Events whose publish failed are put back for the next flush
// (while there is room), so a short JetStream outage does not lose them.
func (b *exposureBatcher) flush(ctx context.Context) {
	b.mu.Lock()
	batches := b.pending
	b.pending = map[string][][]byte{}
	b.count = 0
	b.mu.Unlock()
	for key, events := range batches {
		if len(events) == 0 {
			continue
		}
		if err := b.publish(ctx, key, events); err != nil {
			b.logger.Warn("exposures not published yet; retrying at the next flush", "key", wire.KeyHash(key), "events", len(events), "err", err)
			b.counter.WithLabelValues("retried").Add(float64(len(events)))
			b.add(key, events)
			continue
		}
		b.counter.WithLabelValues("published").Add(float64(len(events)))
	}
}

// Close stops the flush loop and publishes what is queued, bounded by ctx.
func (b *exposureBatcher) Close(ctx context.Context) {
	close(b.stop)
	<-b.stopped
	b.flush(ctx)
	b.mu.Lock()
	left := b.count
	b.mu.Unlock()
	if left > 0 {
		b.counter.WithLabelValues("dropped").Add(float64(left))
		b.logger.Error("exposures lost at shutdown: the event stream did not take them", "events", left)
	}
}
