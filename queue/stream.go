// Package queue is sigedge's durable event queue on NATS JetStream: the stream definitions shared by
// the proxy (which publishes SDK event batches) and the forwarder (which consumes them), and the
// proxy's side of it: decoding SDK bodies and publishing batches.
//
// One message is one batch as an SDK sent it (decompressed JSON {"events":[…],"statsigMetadata":…}),
// with the headers of internal/wire (SDK key, SDK type/version, receive time, event count, endpoint,
// source). Batches are published to <subject_prefix>.<key hash>, so operators can see and limit
// traffic per key. Every message carries a Nats-Msg-Id derived from the batch, so an SDK's retry of
// a batch within the stream's duplicate window is stored once. A batch larger than the server's max
// payload is split by events into several messages (header wire.MsgPart = "i/n").
//
// The interface is small:
//
//   - EnsureStreams creates the streams at start-up (idempotent; never changes an existing stream).
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
// With proxy.exposure_dedupe enabled, the Publisher drops exposure events already stored within the
// window (same key, unit IDs, spec, rule and value); they are remembered only once stored, so a
// failed publish never makes its retry look like a duplicate.
package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

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
	}
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
	}
}

// DeadLetterSubjectPrefix is the subject prefix of dead-lettered batches.
func DeadLetterSubjectPrefix(cfg config.Stream) string { return cfg.SubjectPrefix + "_dead" }

// EnsureStreams creates the event and dead-letter streams when they are missing. An existing stream
// is left as it is, never recreated (that could lose data); settings that differ from the
// configuration are returned as warnings for the caller to log.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg config.Stream) (warnings []string, err error) {
	for _, want := range []jetstream.StreamConfig{StreamConfig(cfg), DeadLetterConfig(cfg)} {
		s, err := js.Stream(ctx, want.Name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			if _, err := js.CreateStream(ctx, want); err != nil {
				return warnings, fmt.Errorf("create stream %s: %w", want.Name, err)
			}
			continue
		case err != nil:
			return warnings, fmt.Errorf("look up stream %s: %w", want.Name, err)
		}
		warnings = append(warnings, diffStream(s.CachedInfo().Config, want)...)
	}
	return warnings, nil
}

func diffStream(have, want jetstream.StreamConfig) []string {
	var out []string
	add := func(field string, h, w any) {
		out = append(out, fmt.Sprintf("stream %s: %s is %v, configuration says %v (left unchanged; change it with the nats CLI if intended)", have.Name, field, h, w))
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
	return out
}
