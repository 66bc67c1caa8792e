package natsutil

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/natstest"
)

// TestConnectFailsOverBetweenSeeds: with several seeds of which the first is down, the connection
// is made; when the node it uses stops, it reports the loss, reconnects to another node by itself,
// reports that too, and JetStream (an R3 stream) keeps acknowledging publishes.
func TestConnectFailsOverBetweenSeeds(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "nats://" + ln.Addr().String()
	ln.Close()

	cfg := config.Default().NATS
	cfg.Embedded = false
	cfg.URLs = append([]string{dead}, c.URLs()...)
	cfg.ReconnectWait = 20 * time.Millisecond
	states := make(chan bool, 16)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nc, err := Connect(ctx, cfg, ConnectOptions{Name: "failover-test", OnStateChange: func(up bool) {
		select {
		case states <- up:
		default:
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FAILOVER", Subjects: []string{"failover.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}

	first := nc.ConnectedUrl()
	node := -1
	for i, u := range c.URLs() {
		if u == first {
			node = i
		}
	}
	if node < 0 {
		t.Fatalf("connected to %s, not a cluster node", first)
	}
	c.Stop(node)
	for _, want := range []bool{false, true} {
		select {
		case up := <-states:
			if up != want {
				t.Fatalf("state change %v, want %v", up, want)
			}
		case <-ctx.Done():
			t.Fatalf("no state change to %v after node %d stopped", want, node+1)
		}
	}
	if now := nc.ConnectedUrl(); now == first || now == dead {
		t.Fatalf("reconnected to %s", now)
	}
	// The stream may still be electing a leader in place of the stopped node: retry, bounded.
	var pubErr error
	for attempt := 0; attempt < 50; attempt++ {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		_, pubErr = js.Publish(pctx, "failover.one", []byte("x"))
		pcancel()
		if pubErr == nil {
			break
		}
	}
	if pubErr != nil {
		t.Fatalf("no publish acknowledged after failing over to %s: %v", nc.ConnectedUrl(), pubErr)
	}
	t.Logf("failed over from %s to %s", first, nc.ConnectedUrl())
}

// TestReconnectDelay: the wait doubles from reconnect_wait per attempt up to 30 s, and jitter adds
// between 0 and 50 % to it.
func TestReconnectDelay(t *testing.T) {
	lowest := func(int64) int64 { return 0 }
	highest := func(n int64) int64 { return n - 1 }
	tests := []struct {
		base     time.Duration
		attempts int
		min, max time.Duration
	}{
		{time.Second, 0, time.Second, 1500 * time.Millisecond},
		{time.Second, 1, 2 * time.Second, 3 * time.Second},
		{time.Second, 3, 8 * time.Second, 12 * time.Second},
		{time.Second, 5, 30 * time.Second, 45 * time.Second},
		{time.Second, 1000, 30 * time.Second, 45 * time.Second},
		{50 * time.Millisecond, 2, 200 * time.Millisecond, 300 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s after %d attempts", tc.base, tc.attempts), func(t *testing.T) {
			if got := ReconnectDelay(tc.base, tc.attempts, lowest); got != tc.min {
				t.Errorf("without jitter %s, want %s", got, tc.min)
			}
			if got := ReconnectDelay(tc.base, tc.attempts, highest); got != tc.max {
				t.Errorf("with the most jitter %s, want %s", got, tc.max)
			}
		})
	}
	// Jitter spreads clients: 100 draws from the real source are not all equal.
	seen := map[time.Duration]bool{}
	for range 100 {
		seen[ReconnectDelay(time.Second, 2, rand.Int64N)] = true
	}
	if len(seen) < 2 {
		t.Errorf("100 delays took %d distinct values: no jitter", len(seen))
	}
}
