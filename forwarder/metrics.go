package forwarder

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the forwarder's Prometheus series, registered on the App's own registry. No series
// is labelled by SDK key (unbounded); logs name keys by their hash.
type metrics struct {
	messagesReceived  prometheus.Counter
	messagesMalformed prometheus.Counter
	messagesEmpty     prometheus.Counter

	batchesSent        *prometheus.CounterVec // endpoint
	batchesAccepted    *prometheus.CounterVec // endpoint
	eventsAccepted     *prometheus.CounterVec // endpoint
	batchesRetried     *prometheus.CounterVec // reason
	batchesSplit       prometheus.Counter
	batchesDeadLetter  *prometheus.CounterVec // status
	messagesDeadLetter *prometheus.CounterVec // status
	eventsDeadLetter   *prometheus.CounterVec // status
	deadLetterErrors   prometheus.Counter

	upstreamRequests *prometheus.CounterVec   // endpoint, status
	upstreamLatency  *prometheus.HistogramVec // endpoint

	breakerTransitions *prometheus.CounterVec // to

	ackErrors prometheus.Counter
	naks      *prometheus.CounterVec // reason

	inFlightBytes    prometheus.Gauge
	inFlightMessages prometheus.Gauge
	queuedBatches    prometheus.Gauge
	pending          prometheus.Gauge
	ackPending       prometheus.Gauge
	oldestUnacked    prometheus.Gauge
	consumerBound    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, breakerState func() float64) *metrics {
	const ns, sub = "sigedge", "forwarder"
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, labels)
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &metrics{
		messagesReceived:  counter("messages_received_total", "Event-batch messages pulled from the stream (redeliveries included)."),
		messagesMalformed: counter("messages_malformed_total", "Messages that could not be parsed and went straight to the dead-letter stream."),
		messagesEmpty:     counter("messages_empty_total", "Messages without events, acked without sending."),

		batchesSent:        counterVec("batches_sent_total", "POSTs to Statsig (attempts, retries included).", "endpoint"),
		batchesAccepted:    counterVec("batches_accepted_total", "Batches Statsig accepted (2xx) and that were acked.", "endpoint"),
		eventsAccepted:     counterVec("events_accepted_total", "Events in batches Statsig accepted.", "endpoint"),
		batchesRetried:     counterVec("batches_retried_total", "Batch attempts that failed and will be retried, by status (network_error, timeout, 408, 429, 5xx).", "reason"),
		batchesSplit:       counter("batches_split_total", "Batches Statsig refused with a 4xx that were split to isolate the bad message."),
		batchesDeadLetter:  counterVec("batches_dead_lettered_total", "Batches moved to the dead-letter stream, by upstream status (0: malformed message).", "status"),
		messagesDeadLetter: counterVec("messages_dead_lettered_total", "Messages moved to the dead-letter stream, by upstream status.", "status"),
		eventsDeadLetter:   counterVec("events_dead_lettered_total", "Events moved to the dead-letter stream, by upstream status.", "status"),
		deadLetterErrors:   counter("dead_letter_errors_total", "Failed publishes to the dead-letter stream (the message is NAKed and tried again later)."),

		upstreamRequests: counterVec("upstream_requests_total", "POSTs to Statsig by endpoint and result (status code, network_error, timeout).", "endpoint", "status"),
		upstreamLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "upstream_latency_seconds",
			Help:    "Duration of POSTs to Statsig, including failed ones.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),

		breakerTransitions: counterVec("breaker_transitions_total", "Circuit breaker state changes, by new state.", "to"),

		ackErrors: counter("ack_errors_total", "Acks that could not be sent (the message will be redelivered and sent again)."),
		naks:      counterVec("naks_total", "Messages NAKed back to the stream, by reason.", "reason"),

		inFlightBytes:    gauge("in_flight_bytes", "Bytes of messages held in memory (pulled, not yet acked or NAKed)."),
		inFlightMessages: gauge("in_flight_messages", "Messages held in memory."),
		queuedBatches:    gauge("queued_batches", "Batches ready or waiting for a retry, not being sent right now."),
		pending:          gauge("pending_messages", "Messages in the stream not yet delivered to any forwarder (consumer num_pending)."),
		ackPending:       gauge("ack_pending_messages", "Messages delivered to forwarders and not yet acked (consumer num_ack_pending)."),
		oldestUnacked:    gauge("oldest_unacked_age_seconds", "Age of the oldest message of the stream not yet acked: how far behind Statsig is."),
		consumerBound:    gauge("consumer_bound", "1 while the durable consumer is bound and pulls succeed."),
	}
	reg.MustRegister(
		m.messagesReceived, m.messagesMalformed, m.messagesEmpty,
		m.batchesSent, m.batchesAccepted, m.eventsAccepted, m.batchesRetried, m.batchesSplit,
		m.batchesDeadLetter, m.messagesDeadLetter, m.eventsDeadLetter, m.deadLetterErrors,
		m.upstreamRequests, m.upstreamLatency, m.breakerTransitions, m.ackErrors, m.naks,
		m.inFlightBytes, m.inFlightMessages, m.queuedBatches, m.pending, m.ackPending, m.oldestUnacked, m.consumerBound,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "breaker_state",
			Help: "Circuit breaker around Statsig: 0 closed, 1 half-open, 2 open (nothing sent or acked)."}, breakerState),
	)
	return m
}
