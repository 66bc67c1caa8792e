package configcache

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the cache's Prometheus series, registered on the process's registry.
type metrics struct {
	upstreamRequests *prometheus.CounterVec
	upstreamSeconds  *prometheus.HistogramVec
	lookups          *prometheus.CounterVec
	updates          *prometheus.CounterVec
	share            *prometheus.CounterVec
	offlineReloads   *prometheus.CounterVec
	idListSyncs      *prometheus.CounterVec
	hits             [3]prometheus.Counter // lookups{result="hit"} by Format: resolved once, it is the hot path
}

func newMetrics(reg prometheus.Registerer, c *Cache) *metrics {
	m := &metrics{
		upstreamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigedge_upstream_requests_total",
			Help: "Requests to Statsig's rule-set and ID-list endpoints by endpoint and outcome (ok, refused, status_5xx, status_4xx, status_429, timeout, network_error, breaker_open).",
		}, []string{"endpoint", "outcome"}),
		upstreamSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sigedge_upstream_request_duration_seconds",
			Help:    "Latency of requests to Statsig's rule-set and ID-list endpoints by endpoint and outcome.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint", "outcome"}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigedge_ruleset_lookups_total",
			Help: "Rule-set lookups by format and result: hit (served from memory), miss (fetched now), offline, refused (invalid or not allowed key), unavailable.",
		}, []string{"format", "result"}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigedge_ruleset_updates_total",
			Help: "Rule-set refreshes by format, source (upstream, share) and result: updated, unchanged, rejected (bad payload kept out), failed (upstream error, stale entry kept).",
		}, []string{"format", "source", "result"}),
		share: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigedge_ruleset_share_events_total",
			Help: "Region sharing through JetStream: lease_acquired, lease_lost, lease_error (rule-set and ID-list leases), published, publish_skipped, publish_failed, too_large, kv_hit, kv_miss (rule sets), idlists_published, idlists_publish_failed, idlists_too_large (ID lists).",
		}, []string{"event"}),
		offlineReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigedge_ruleset_offline_loads_total",
			Help: "Loads of rulesets.offline files by result (ok, error).",
		}, []string{"result"}),
		idListSyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigedge_idlist_syncs_total",
			Help: "ID-list synchronisations by source and result: upstream (Statsig: ok, failed) and region (the region's store: updated, unchanged, stale, rejected = unusable copy kept out, failed = store unreachable).",
		}, []string{"source", "result"}),
	}
	for _, f := range formats {
		m.hits[f] = m.lookups.WithLabelValues(f.String(), "hit")
	}
	reg.MustRegister(m.upstreamRequests, m.upstreamSeconds, m.lookups, m.updates, m.share, m.offlineReloads, m.idListSyncs,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sigedge_ruleset_keys",
			Help: "SDK keys with rule sets held in memory (polled from Statsig or shared), offline keys excluded.",
		}, func() float64 { return float64(c.keys.Len()) }),
		&keyCollector{c: c},
	)
	return m
}

// keyCollector reports per-key series at scrape time, so evicted keys disappear with them.
type keyCollector struct{ c *Cache }

var (
	descTime = prometheus.NewDesc("sigedge_ruleset_time_seconds",
		"The rule set's own time (lcut: Statsig's last change) per key hash, format and source.", []string{"key", "format", "source"}, nil)
	descSync = prometheus.NewDesc("sigedge_ruleset_last_sync_timestamp_seconds",
		"When the rule set was last confirmed current (fetched, not modified, or renewed by the region's poller), per key hash and format.", []string{"key", "format"}, nil)
	descAge = prometheus.NewDesc("sigedge_ruleset_age_seconds",
		"Seconds since the rule set was last confirmed current: grows while Statsig is unreachable and stale rules are served.", []string{"key", "format"}, nil)
	descSize = prometheus.NewDesc("sigedge_ruleset_size_bytes",
		"Size of the served payload (uncompressed) per key hash and format.", []string{"key", "format"}, nil)
)

func (k *keyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descTime
	ch <- descSync
	ch <- descAge
	ch <- descSize
}

func (k *keyCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	emit := func(hash string, f Format, e *Entry, synced time.Time) {
		if e == nil {
			return
		}
		ch <- prometheus.MustNewConstMetric(descTime, prometheus.GaugeValue, float64(e.Time)/1000, hash, f.String(), string(e.Source))
		ch <- prometheus.MustNewConstMetric(descSync, prometheus.GaugeValue, float64(synced.UnixNano())/1e9, hash, f.String())
		ch <- prometheus.MustNewConstMetric(descAge, prometheus.GaugeValue, now.Sub(synced).Seconds(), hash, f.String())
		ch <- prometheus.MustNewConstMetric(descSize, prometheus.GaugeValue, float64(len(e.Payload)), hash, f.String())
	}
	for _, ks := range k.c.keys.Values() {
		for _, f := range formats {
			s := ks.slot(f)
			emit(ks.hash, f, s.entry.Load(), time.Unix(0, s.synced.Load()))
		}
	}
	for _, o := range k.c.offline {
		for _, f := range formats {
			e := o.entries[f].Load()
			if e != nil {
				emit(o.hash, f, e, e.Received)
			}
		}
	}
}
