package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sigedge/sigedge/internal/wire"
)

// StreamMessages returns every message held in stream name, in order, with event-batch bodies
// decoded to their JSON (wire.DecodeBody; the Sigedge-Encoding header stays, so tests can see how a
// body was stored).
func StreamMessages(t testing.TB, js jetstream.JetStream, name string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get message %d of %s: %v", seq, name, err)
		}
		m.Data = BatchBody(t, m)
		out = append(out, m)
	}
	return out
}

// BatchBody returns the JSON of an event-batch message, decoded as its Sigedge-Encoding header says.
func BatchBody(t testing.TB, m *jetstream.RawStreamMsg) []byte {
	t.Helper()
	body, err := wire.DecodeBody(m.Header.Get(wire.MsgEncoding), m.Data)
	if err != nil {
		t.Fatalf("message %d: %v", m.Sequence, err)
	}
	return body
}
