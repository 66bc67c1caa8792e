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
		srv, err := StartEmbedded(context.Background(), cfg, nil)
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

// TestStartEmbeddedReportsFatalErrors: a server that cannot start (here: its port is taken) fails
// StartEmbedded with the server's own reason, not after a wait with a guess.
func TestStartEmbeddedReportsFatalErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { taken.Close() })
	cfg := embeddedConfig(t)
	cfg.Host, cfg.Port = "127.0.0.1", taken.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := StartEmbedded(ctx, cfg, nil)
	if err == nil {
		Shutdown(srv)
		t.Fatal("started on a port in use")
	}
	if ctx.Err() != nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Fatalf("err = %v, want the server's reason (address already in use) and the address", err)
	}
}

// TestStartEmbeddedStopsWithItsContext: a caller that gives up (the binary told to stop while the
// server recovers its streams) gets the context's error.
func TestStartEmbeddedStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	srv, err := StartEmbedded(ctx, embeddedConfig(t), nil)
	if err == nil {
		Shutdown(srv)
		t.Fatal("started although its context had ended")
	}
	if !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("err = %v, want the context's", err)
	}
}
