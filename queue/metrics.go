package queue

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// publisherMetrics are the Publisher's Prometheus metrics.
type publisherMetrics struct {
	seconds    prometheus.Histogram
	messages   prometheus.Counter
	batches    *prometheus.CounterVec
	events     *prometheus.CounterVec
	duplicates prometheus.Counter
	retried    prometheus.Counter
	remembered prometheus.GaugeFunc
	failures   *prometheus.CounterVec
	drops      *prometheus.CounterVec
	bodyBytes  *prometheus.CounterVec
	stream     *streamCollector
}

func newPublisherMetrics(p *Publisher) publisherMetrics {
	m := publisherMetrics{
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sigedge_queue_publish_seconds",
			Help:    "Time from publishing an event batch to JetStream's ack of all its messages.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sigedge_queue_messages_published_total",
			Help: "JetStream messages acknowledged (a batch larger than the max payload takes several).",
		}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigedge_queue_batches_published_total",
			Help: "Event batches stored in the event stream, by producer (sdk or proxy).",
		}, []string{"source"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigedge_queue_events_published_total",
			Help: "Events of batches JetStream acknowledged, by producer (sdk or proxy). A retry's events that JetStream recognised by message id count again; those sigedge_queue_retried_events_total counts do not.",
		}, []string{"source"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sigedge_queue_duplicate_messages_total",
			Help: "Messages JetStream recognised as already stored (an SDK retried a batch that was stored).",
		}),
		retried: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sigedge_queue_retried_events_total",
			Help: "Events left out of a batch because an earlier batch of the same SDK session stored them (the SDK re-sent them in a new batch after a lost reply).",
		}),
		remembered: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sigedge_queue_retry_memory_events",
			Help: "Events remembered to recognise SDK retries (bounded by proxy.retry_dedupe.max_events).",
		}, func() float64 {
			if p.retries == nil {
				return 0
			}
			return float64(p.retries.events())
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigedge_queue_publish_failures_total",
			Help: "Event batches not stored (answered 503, the SDK retries), by reason: disconnected, timeout, stream_full, no_stream, error.",
		}, []string{"reason"}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigedge_queue_events_dropped_total",
			Help: "Events the publisher left out of a stored batch, by reason: event_too_large, duplicate_exposure.",
		}, []string{"reason"}),
		bodyBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigedge_queue_body_bytes_total",
			Help: "Bytes of acknowledged message bodies: form=json before encoding, form=stored as stored (nats.stream.compression); json/stored is the compression ratio.",
		}, []string{"form"}),
		stream: &streamCollector{p: p, every: 5 * time.Second},
	}
	// Pre-create the label values operators alert on, so the series exist at 0.
	for _, r := range []string{"disconnected", "timeout", "stream_full", "no_stream", "error"} {
		m.failures.WithLabelValues(r)
	}
	return m
}

func (m *publisherMetrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.seconds, m.messages, m.batches, m.events, m.duplicates, m.retried, m.remembered, m.failures, m.drops, m.bodyBytes, m.stream} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *publisherMetrics) published(meta BatchMeta, res *Result, d time.Duration) {
	m.seconds.Observe(d.Seconds())
	m.messages.Add(float64(res.Messages))
	m.batches.WithLabelValues(meta.Source).Inc()
	m.events.WithLabelValues(meta.Source).Add(float64(res.Events - res.Retried))
	m.duplicates.Add(float64(res.Duplicates))
	m.retried.Add(float64(res.Retried))
	m.bodyBytes.WithLabelValues("json").Add(float64(res.BodyBytes))
	m.bodyBytes.WithLabelValues("stored").Add(float64(res.StoredBytes))
	m.dropped(&res.Dropped)
}

func (m *publisherMetrics) dropped(d *DropCounts) {
	for r, n := range d {
		if n > 0 {
			m.drops.WithLabelValues(DropReason(r).String()).Add(float64(n))
		}
	}
}

// streamCollector reports the event stream's size from JetStream's stream info, fetched on scrape at
// most every few seconds (and with a short timeout, so a dead server does not stall /metrics).
type streamCollector struct {
	p     *Publisher
	every time.Duration

	mu       sync.Mutex
	fetched  time.Time
	ok       bool
	bytes    float64
	msgs     float64
	maxBytes float64
	errors   float64
}

var (
	streamBytesDesc = prometheus.NewDesc("sigedge_queue_stream_bytes",
		"Bytes held in the event stream (batches not yet removed by age or size limits).", nil, nil)
	streamMsgsDesc = prometheus.NewDesc("sigedge_queue_stream_messages",
		"Messages held in the event stream.", nil, nil)
	streamMaxBytesDesc = prometheus.NewDesc("sigedge_queue_stream_max_bytes",
		"The event stream's byte limit: at it, new batches are refused with 503 (alert on bytes/max_bytes).", nil, nil)
	streamInfoErrorsDesc = prometheus.NewDesc("sigedge_queue_stream_info_errors_total",
		"Failed reads of the event stream's info for these gauges.", nil, nil)
)

func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- streamBytesDesc
	ch <- streamMsgsDesc
	ch <- streamMaxBytesDesc
	ch <- streamInfoErrorsDesc
}

func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.fetched) >= c.every {
		c.fetched = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s, err := c.p.js.Stream(ctx, c.p.stream.Name)
		if err == nil {
			info, ierr := s.Info(ctx)
			if ierr == nil {
				c.ok = true
				c.bytes, c.msgs = float64(info.State.Bytes), float64(info.State.Msgs)
				c.maxBytes = float64(info.Config.MaxBytes)
			}
			err = ierr
		}
		cancel()
		if err != nil {
			c.errors++
		}
	}
	if c.ok {
		ch <- prometheus.MustNewConstMetric(streamBytesDesc, prometheus.GaugeValue, c.bytes)
		ch <- prometheus.MustNewConstMetric(streamMsgsDesc, prometheus.GaugeValue, c.msgs)
		ch <- prometheus.MustNewConstMetric(streamMaxBytesDesc, prometheus.GaugeValue, c.maxBytes)
	}
	ch <- prometheus.MustNewConstMetric(streamInfoErrorsDesc, prometheus.CounterValue, c.errors)
}
