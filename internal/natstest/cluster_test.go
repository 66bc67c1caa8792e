package natstest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterSurvivesLeaderLoss publishes to an R3 stream, stops the stream leader, keeps
// publishing, restarts the node, and reads every message back.
func TestClusterSurvivesLeaderLoss(t *testing.T) {
	c := StartCluster(t, 3)
	js := c.JetStream(t, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			// Retried while the cluster elects a new leader: each attempt is bounded, the loop too.
			var err error
			for attempt := 0; attempt < 100; attempt++ {
				pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
				_, err = js.Publish(pctx, "r3.msg", []byte(fmt.Sprint(i)), jetstream.WithMsgID(fmt.Sprint(i)))
				pcancel()
				if err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
		}
	}
	publish(0, 50)
	leader := c.StreamLeader("$G", "R3")
	if leader < 0 {
		t.Fatal("no stream leader")
	}
	c.Stop(leader)
	publish(50, 100)
	c.Restart(leader)
	c.WaitReady(30 * time.Second)

	s, err := js.Stream(ctx, "R3")
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 100 {
		t.Fatalf("stream holds %d messages, want 100 (msg ids de-duplicate retried publishes)", n)
	}
}
