// Package queue is sigedge's durable event queue on NATS JetStream: the stream definitions shared by
// the proxy (which publishes SDK event batches) and the forwarder (which consumes them), and the
// proxy's side of it: decoding SDK bodies and publishing batches.
//
// One message is one batch as an SDK sent it (decompressed JSON {"events":[…],"statsigMetadata":…}),
// with the headers of internal/wire (SDK key, SDK type/version, receive time, event count, endpoint,
// source). Batches are published to <subject_prefix>.<key hash>, so operators can see and limit
// traffic per key. Every message carries a Nats-Msg-Id derived from the batch, so an SDK's retry of
// a batch within the stream's duplicate window is stored once. A batch larger than the server's max
// payload is split by events into several messages (header wire.MsgPart = "i/n"). With
// nats.stream.compression s2 (the default) a body is stored as one S2 block and marked so
// (wire.MsgEncoding); consumers read any message's JSON with wire.DecodeBody.
//
// The interface is small:
//
//   - EnsureStreams creates the streams at start-up (idempotent; never changes an existing stream,
//     reports how it differs from the configuration; ReportMismatches logs that and exports it).
//     OpenStreams does both on a connection, as the binaries start.
//   - BodyDecoder.Decompress undoes any Content-Encoding an SDK sends (gzip, deflate, zstd, br),
//     bounded by a size limit; DecodeBatch validates the JSON and splits it into raw events, dropping
//     (and counting) malformed events rather than refusing the good ones beside them.
//   - Publisher.Publish stores a decoded SDK batch; Publisher.PublishBatch stores events the proxy
//     produces itself (exposures of its HTTP evaluations). Both return only once JetStream
//     acknowledged every message, or an error wrapping ErrUnavailable (nothing may be assumed
//     stored; answer 503 so the client retries).
//
// For example, the proxy's evaluation endpoints log an exposure with:
//
//	meta := queue.BatchMeta{Endpoint: wire.EndpointLogEvent, Source: wire.SourceProxy}
//	err := pub.PublishBatch(ctx, sdkKey, meta, [][]byte{exposureJSON})
//
// With proxy.retry_dedupe enabled (the default), the Publisher also leaves out the events an SDK
// re-sends in a new batch, which message ids cannot see (statsig-node-core re-batches its retries):
// per SDK session it remembers the event sequences recent batches stored (see retries.go).
//
// With proxy.exposure_dedupe enabled, the Publisher drops exposure events already stored within the
// window (same key, unit IDs, spec, rule and value); they are remembered only once stored, so a
// failed publish never makes its retry look like a duplicate.
package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigedge/sigedge/internal/config"
)

// StreamConfig is the JetStream configuration of the event stream cfg describes.
func StreamConfig(cfg config.Stream) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        cfg.Name,
		Description: "sigedge: Statsig SDK event batches waiting for the forwarder",
		Subjects:    []string{cfg.SubjectPrefix + ".>"},
		// WorkQueue: a batch leaves the stream once the forwarder acked it (Statsig accepted it), so
		// max_bytes bounds the backlog of unsent events, not a week of history.
		Retention: jetstream.WorkQueuePolicy,
		Storage:   jetstream.FileStorage,
		Replicas:  cfg.Replicas,
		MaxAge:    cfg.MaxAge,
		MaxBytes:  int64(cfg.MaxBytes),
		// DiscardNew: a full stream refuses new batches, so the proxy answers 503 and the SDK keeps
		// its events and retries, instead of old unsent events being dropped silently.
		Discard:    jetstream.DiscardNew,
		Duplicates: cfg.DuplicateWindow,
		Placement:  Placement(cfg),
	}
}

// Placement is the JetStream placement cfg asks for, or nil (JetStream chooses). The KV bucket of
// the rule sets uses it too, so that a region's JetStream data lives on the same servers.
func Placement(cfg config.Stream) *jetstream.Placement {
	if cfg.Placement.Empty() {
		return nil
	}
	return &jetstream.Placement{Cluster: cfg.Placement.Cluster, Tags: append([]string(nil), cfg.Placement.Tags...)}
}

// DeadLetterConfig is the JetStream configuration of the dead-letter stream.
func DeadLetterConfig(cfg config.Stream) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        cfg.DeadLetterName,
		Description: "sigedge: event batches Statsig refused for good (replay with forwarder replay-dlq)",
		Subjects:    []string{DeadLetterSubjectPrefix(cfg) + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		MaxAge:      cfg.DeadLetterMaxAge,
		MaxBytes:    int64(cfg.MaxBytes),
		Discard:     jetstream.DiscardOld,
		Placement:   Placement(cfg),
	}
}

// DeadLetterSubjectPrefix is the subject prefix of dead-lettered batches.
func DeadLetterSubjectPrefix(cfg config.Stream) string { return cfg.SubjectPrefix + "_dead" }

// Mismatch is one setting of an existing stream that differs from the configuration.
type Mismatch struct {
	Stream  string // stream name
	Setting string // configuration name of the setting, e.g. replicas, max_bytes
	Have    any    // what the stream has
	Want    any    // what the configuration says
}

// String is the warning both binaries log for m.
func (m Mismatch) String() string {
	return fmt.Sprintf("stream %s: %s is %v, configuration says %v (left unchanged; change it with the nats CLI if intended)", m.Stream, m.Setting, m.Have, m.Want)
}

// EnsureStreams creates the event and dead-letter streams when they are missing. An existing stream
// is left as it is, never recreated or updated (that could lose data or move it between servers);
// its settings that differ from the configuration are returned for the caller to report
// (ReportMismatches).
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg config.Stream) (mismatches []Mismatch, err error) {
	for _, want := range []jetstream.StreamConfig{StreamConfig(cfg), DeadLetterConfig(cfg)} {
		s, err := js.Stream(ctx, want.Name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			if _, err := js.CreateStream(ctx, want); err != nil {
				return mismatches, fmt.Errorf("create stream %s: %w", want.Name, err)
			}
			continue
		case err != nil:
			return mismatches, fmt.Errorf("look up stream %s: %w", want.Name, err)
		}
		mismatches = append(mismatches, diffStream(s.CachedInfo().Config, want)...)
	}
	return mismatches, nil
}

// ReportMismatches logs each mismatch as a warning and sets the gauge
// sigedge_stream_setting_mismatches{stream} on reg (0 for a stream as configured), so that a stream
// someone created or changed by hand — one replica where the region wants three — shows on a
// dashboard, not only in a start-up log line.
func ReportMismatches(reg prometheus.Registerer, logger *slog.Logger, cfg config.Stream, mismatches []Mismatch) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sigedge_stream_setting_mismatches",
		Help: "Settings of the stream that differ from the configuration (found at start-up; the stream is left unchanged).",
	}, []string{"stream"})
	g.WithLabelValues(cfg.Name).Set(0)
	g.WithLabelValues(cfg.DeadLetterName).Set(0)
	for _, m := range mismatches {
		g.WithLabelValues(m.Stream).Inc()
		if logger != nil {
			logger.Warn(m.String(), "stream", m.Stream, "setting", m.Setting)
		}
	}
	if reg != nil {
		_ = reg.Register(g) // a second App in one registry (tests) keeps the first gauge
	}
}

// OpenStreams is the start-up both binaries share: a JetStream handle on nc, the streams made sure
// of (EnsureStreams) and their differences from cfg reported on reg (ReportMismatches).
func OpenStreams(ctx context.Context, nc *nats.Conn, cfg config.Stream, reg prometheus.Registerer, logger *slog.Logger) (jetstream.JetStream, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	mismatches, err := EnsureStreams(ctx, js, cfg)
	if err != nil {
		return nil, fmt.Errorf("event streams: %w", err)
	}
	ReportMismatches(reg, logger, cfg, mismatches)
	return js, nil
}

func diffStream(have, want jetstream.StreamConfig) []Mismatch {
	var out []Mismatch
	add := func(field string, h, w any) {
		out = append(out, Mismatch{Stream: have.Name, Setting: field, Have: h, Want: w})
	}
	if strings.Join(have.Subjects, ",") != strings.Join(want.Subjects, ",") {
		add("subjects", have.Subjects, want.Subjects)
	}
	if have.Retention != want.Retention {
		add("retention", have.Retention, want.Retention)
	}
	if have.Replicas != want.Replicas {
		add("replicas", have.Replicas, want.Replicas)
	}
	if have.MaxAge != want.MaxAge {
		add("max_age", have.MaxAge, want.MaxAge)
	}
	if have.MaxBytes != want.MaxBytes {
		add("max_bytes", have.MaxBytes, want.MaxBytes)
	}
	if have.Discard != want.Discard {
		add("discard", have.Discard, want.Discard)
	}
	if have.Storage != want.Storage {
		add("storage", have.Storage, want.Storage)
	}
	if have.Duplicates != want.Duplicates && want.Duplicates != 0 {
		add("duplicate_window", have.Duplicates, want.Duplicates)
	}
	if want.Placement != nil && placementString(have.Placement) != placementString(want.Placement) {
		add("placement", placementString(have.Placement), placementString(want.Placement))
	}
	return out
}

func placementString(p *jetstream.Placement) string {
	if p == nil {
		return "{}"
	}
	return fmt.Sprintf("{cluster: %q, tags: %q}", p.Cluster, p.Tags)
}
