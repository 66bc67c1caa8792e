package natsutil

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sigedge/sigedge/internal/config"
)

func embeddedConfig(t *testing.T) config.NATS {
	cfg := config.Default().NATS
	cfg.DataDir = t.TempDir()
	cfg.Port = 0
	return cfg
}

// TestEmbeddedJetStreamIsUsable starts the embedded server, creates a stream, publishes a message
// with an ack, reads it back, and checks the data survives a restart on the same data dir.
func TestEmbeddedJetStreamIsUsable(t *testing.T) {
	cfg := embeddedConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	roundTrip := func(publish bool) string {
		srv, err := StartEmbedded(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer Shutdown(srv)
		if h, _, _ := net.SplitHostPort(srv.Addr().String()); h != "127.0.0.1" {
			t.Errorf("embedded server listens on %s, want loopback", srv.Addr())
		}
		nc, err := Connect(ctx, cfg, ConnectOptions{Name: "test", URLs: []string{srv.ClientURL()}})
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage})
		if err != nil {
			t.Fatal(err)
		}
		if publish {
			ack, err := js.Publish(ctx, "t.one", []byte("hello"))
			if err != nil {
				t.Fatal(err)
			}
			if ack.Stream != "T" || ack.Sequence != 1 {
				t.Fatalf("ack %+v", ack)
			}
		}
		msg, err := s.GetMsg(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		return string(msg.Data)
	}
	if got := roundTrip(true); got != "hello" {
		t.Fatalf("read back %q", got)
	}
	if got := roundTrip(false); got != "hello" {
		t.Fatalf("after restart read back %q", got)
	}
}

func TestConnectUnreachableFailsClearly(t *testing.T) {
	// A port on loopback nobody listens on: take a free one and close it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := config.Default().NATS
	cfg.Embedded = false
	cfg.URLs = []string{"nats://" + addr}
	cfg.ConnectTimeout = time.Second
	start := time.Now()
	_, err = Connect(context.Background(), cfg, ConnectOptions{Name: "test"})
	if err == nil {
		t.Fatal("connected to nothing")
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "cannot connect") {
		t.Errorf("error does not name the server: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s to fail", d)
	}
}

func TestServerURLs(t *testing.T) {
	cfg := config.Default().NATS
	cfg.Host, cfg.Port = "0.0.0.0", 4333
	if got := ServerURLs(cfg); len(got) != 1 || got[0] != "nats://127.0.0.1:4333" {
		t.Errorf("embedded: %v", got)
	}
	cfg.Embedded = false
	cfg.URLs = []string{"nats://a:1", "nats://b:2"}
	if got := ServerURLs(cfg); len(got) != 2 {
		t.Errorf("cluster: %v", got)
	}
}
