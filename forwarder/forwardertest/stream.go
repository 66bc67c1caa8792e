package forwardertest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/natstest"
	"github.com/sigedge/sigedge/internal/natsutil"
	"github.com/sigedge/sigedge/internal/wire"
	"github.com/sigedge/sigedge/queue"
)

// StartJetStream starts an embedded JetStream server as a proxy embeds it (config.Default().NATS),
// on a free 127.0.0.1 port with its files in a temp dir, creates the event streams in it, and returns
// its client URL and a client. Both are closed at the end of the test.
func StartJetStream(t testing.TB) (string, jetstream.JetStream) {
	t.Helper()
	cfg := config.Default().NATS
	cfg.DataDir = t.TempDir()
	cfg.Port = 0
	srv, err := natsutil.StartEmbedded(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { natsutil.Shutdown(srv) })
	js := natstest.Connect(t, srv.ClientURL())
	EnsureStreams(t, js, cfg.Stream)
	return srv.ClientURL(), js
}

// EnsureStreams creates the event and dead-letter streams before anything is published (in
// production the proxy does).
func EnsureStreams(t testing.TB, js jetstream.JetStream, stream config.Stream) {
	t.Helper()
	// Generous: a stream with replicas waits for its peers to elect a leader.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := queue.EnsureStreams(ctx, js, stream); err != nil {
		t.Fatal(err)
	}
}

// ConsumerInfo returns the state of the durable consumer name on the default event stream.
func ConsumerInfo(t testing.TB, js jetstream.JetStream, name string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, config.Default().NATS.Stream.Name, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// Batch is one SDK batch as a proxy stores it in the event stream: the headers the proxy sets and
// the body as the SDK sent it. Tests set the fields freely, including to values a proxy would never
// store, to see what the forwarder makes of them.
type Batch struct {
	Key                 string // the SDK key; the subject holds its hash
	Endpoint            string // wire.EndpointLogEvent when empty
	SDKType, SDKVersion string
	Count               int       // the event count header
	ClientTime          time.Time // STATSIG-CLIENT-TIME as the SDK sent it; no header when zero
	Body                []byte
	// Encoding is the body's wire.MsgEncoding: wire.EncodingS2 compresses Body as a proxy does;
	// any other value is set as the header with Body stored as it is.
	Encoding string
	// Stored, when set, is stored instead of Body, whatever Encoding says (a damaged body).
	Stored []byte
}

// Msg returns the message a proxy would publish for b, received now, on the default stream's
// subjects.
func (b Batch) Msg() *nats.Msg {
	msg := nats.NewMsg(wire.EventSubject(config.Default().NATS.Stream.SubjectPrefix, b.Key))
	endpoint := b.Endpoint
	if endpoint == "" {
		endpoint = wire.EndpointLogEvent
	}
	msg.Header.Set(wire.MsgSDKKey, b.Key)
	msg.Header.Set(wire.MsgEndpoint, endpoint)
	msg.Header.Set(wire.MsgSource, wire.SourceSDK)
	msg.Header.Set(wire.MsgSDKType, b.SDKType)
	msg.Header.Set(wire.MsgSDKVersion, b.SDKVersion)
	msg.Header.Set(wire.MsgEventCount, strconv.Itoa(b.Count))
	msg.Header.Set(wire.MsgReceivedAt, strconv.FormatInt(time.Now().UnixMilli(), 10))
	if !b.ClientTime.IsZero() {
		msg.Header.Set(wire.MsgClientTime, strconv.FormatInt(b.ClientTime.UnixMilli(), 10))
	}
	msg.Data = b.Body
	if b.Encoding != "" {
		msg.Header.Set(wire.MsgEncoding, b.Encoding)
	}
	switch {
	case b.Stored != nil:
		msg.Data = b.Stored
	case b.Encoding == wire.EncodingS2:
		if enc, ok := wire.AppendS2(nil, b.Body); ok {
			msg.Data = enc
		} else {
			msg.Header.Del(wire.MsgEncoding)
		}
	}
	return msg
}

// Publish stores b in the event stream, failing the test unless JetStream acknowledges it.
func Publish(t testing.TB, js jetstream.JetStream, b Batch) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, b.Msg()); err != nil {
		t.Fatal(err)
	}
}
