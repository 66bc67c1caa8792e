package forwarder

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/wire"
	"github.com/sigedge/sigedge/queue"
)

// maxReasonLen bounds the dead-letter reason header.
const maxReasonLen = 512

// deadLetterMsg builds the dead-letter copy of one stream message: same body and Sigedge-* headers,
// plus status, reason and time. Its subject keeps the key-hash token of the original subject, so
// replay-dlq can put it back where it came from.
func deadLetterMsg(stream config.Stream, m jetstream.Msg, status int, reason string, now time.Time) *nats.Msg {
	out := nats.NewMsg(deadLetterSubject(stream, m.Subject()))
	for k, vs := range m.Headers() {
		if strings.HasPrefix(k, "Nats-") {
			// Nats-Msg-Id and Nats-Expected-* belong to the original publish; kept, they could make
			// the dead-letter stream or a later replay drop the message as a duplicate.
			continue
		}
		out.Header[k] = vs
	}
	reason = strings.Join(strings.Fields(reason), " ")
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen] + "…"
	}
	out.Header.Set(wire.MsgDeadStatus, strconv.Itoa(status))
	out.Header.Set(wire.MsgDeadReason, reason)
	out.Header.Set(wire.MsgDeadAt, strconv.FormatInt(now.UnixMilli(), 10))
	out.Data = m.Data()
	return out
}

// deadLetterSubject maps <prefix>.<hash> to <dead-letter prefix>.<hash>.
func deadLetterSubject(stream config.Stream, subject string) string {
	rest := strings.TrimPrefix(subject, stream.SubjectPrefix+".")
	if rest == subject || rest == "" {
		rest = "unknown"
	}
	return queue.DeadLetterSubjectPrefix(stream) + "." + rest
}

// ReplayOptions select the dead-lettered batches ReplayDeadLetters moves back.
type ReplayOptions struct {
	// KeyHash, when set, moves only the batches of the key with this wire.KeyHash.
	KeyHash string
	// Limit, when positive, moves at most this many batches.
	Limit int
	// Progress, when set, is called after each batch moved.
	Progress func(moved int)
}

// ReplayDeadLetters moves dead-lettered batches back into the event stream, oldest first, so the
// forwarder sends them again, and returns how many it moved. Each batch is published to the event
// stream (and acknowledged by JetStream) before it is deleted from the dead-letter stream, so a
// failure in between leaves a copy in both rather than in neither; a Nats-Msg-Id derived from the
// dead-letter sequence makes a repeated replay within the duplicate window store it once.
func ReplayDeadLetters(ctx context.Context, js jetstream.JetStream, stream config.Stream, o ReplayOptions) (int, error) {
	dl, err := js.Stream(ctx, stream.DeadLetterName)
	if err != nil {
		return 0, fmt.Errorf("dead-letter stream %s: %w", stream.DeadLetterName, err)
	}
	filter := queue.DeadLetterSubjectPrefix(stream) + ".>"
	if o.KeyHash != "" {
		if strings.ContainsAny(o.KeyHash, ".*> ") {
			return 0, fmt.Errorf("key hash %q is not a key hash (see wire.KeyHash: 12 hex digits)", o.KeyHash)
		}
		filter = queue.DeadLetterSubjectPrefix(stream) + "." + o.KeyHash
	}
	moved := 0
	seq := uint64(1)
	for o.Limit <= 0 || moved < o.Limit {
		if err := ctx.Err(); err != nil {
			return moved, err
		}
		// Direct reads by sequence: no consumer is created on the dead-letter stream, and whatever
		// lands there while we run is picked up too.
		raw, err := dl.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return moved, nil
		}
		if err != nil {
			return moved, fmt.Errorf("read dead-letter message from seq %d: %w", seq, err)
		}
		out := nats.NewMsg(stream.SubjectPrefix + "." + strings.TrimPrefix(raw.Subject, queue.DeadLetterSubjectPrefix(stream)+"."))
		for k, vs := range raw.Header {
			switch {
			case strings.HasPrefix(k, "Nats-"), k == wire.MsgDeadStatus, k == wire.MsgDeadReason, k == wire.MsgDeadAt:
				continue
			}
			out.Header[k] = vs
		}
		out.Data = raw.Data
		id := fmt.Sprintf("sigedge-replay-%s-%d-%d", stream.DeadLetterName, raw.Sequence, raw.Time.UnixNano())
		if _, err := js.PublishMsg(ctx, out, jetstream.WithExpectStream(stream.Name), jetstream.WithMsgID(id)); err != nil {
			return moved, fmt.Errorf("republish dead-letter seq %d: %w", raw.Sequence, err)
		}
		if err := dl.DeleteMsg(ctx, raw.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return moved, fmt.Errorf("delete dead-letter seq %d after replay: %w", raw.Sequence, err)
		}
		moved++
		if o.Progress != nil {
			o.Progress(moved)
		}
		seq = raw.Sequence + 1
	}
	return moved, nil
}
