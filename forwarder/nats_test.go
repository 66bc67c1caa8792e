package forwarder

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/natstest"
	"github.com/sigedge/sigedge/internal/natsutil"
	"github.com/sigedge/sigedge/queue"
)

// TestDrainsAReplicatedStreamWithoutStalling: on a 3-node cluster with stream replicas 3, a backlog
// many pulls long is drained well within ack_wait. (Pulls limited by bytes lost deliveries of a
// replicated consumer until ack_wait: the server's "batch completed" status overtook them.)
func TestDrainsAReplicatedStreamWithoutStalling(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	nc, err := nats.Connect(strings.Join(c.URLs(), ","))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream := config.Default().NATS.Stream
	stream.Replicas = 3
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := queue.EnsureStreams(ctx, js, stream); err != nil {
		t.Fatal(err)
	}
	fake := newFakeStatsig(t)
	cfg := testConfig(t, c.URLs()[0], fake.URL())
	cfg.NATS.URLs = c.URLs()
	cfg.NATS.Stream = stream
	cfg.Forwarder.AckWait = time.Minute // a stalled message would take this long to come again
	cfg.Forwarder.BatchMaxEvents = 100
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	var want []string
	for i := range 300 {
		b := ids(fmt.Sprintf("r3-%d", i), 2)
		want = append(want, b...)
		publishBatch(t, js, testBatch{key: []string{keyA, keyB}[i%2], meta: metaGo1, ids: b, pad: 200})
	}
	tune := testTuning()
	tune.fetchCount = 20 // the backlog is 15 pulls long
	for i := range 2 {
		app, err := NewApp(ctx, AppOptions{Config: cfg, Logger: testLogger(t).With("forwarder", i), Version: "test", tune: tune})
		if err != nil {
			t.Fatal(err)
		}
		if err := app.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { shutdownApp(t, app) })
	}
	start := time.Now()
	fake.WaitIDs(t, want, 20*time.Second)
	t.Logf("%d events in 300 messages drained by two forwarders in %s", len(want), time.Since(start).Round(time.Millisecond))
	fake.AssertExactlyOnce(t, want)
}

// TestReadinessWhileNATSIsDown: when its NATS server goes away the forwarder says so on /readyz
// (503, "not connected to NATS"); when the server is back it reconnects by itself, is ready again,
// and forwards what was published meanwhile.
func TestReadinessWhileNATSIsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ncfg := config.Default().NATS
	ncfg.DataDir, ncfg.Port = t.TempDir(), ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	srv, err := natsutil.StartEmbedded(ncfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { natsutil.Shutdown(srv) })
	url := srv.ClientURL()
	js := connectJS(t, url)
	ensureStreams(t, js)
	fake := newFakeStatsig(t)
	cfg := testConfig(t, url, fake.URL())
	cfg.NATS.ReconnectWait = 20 * time.Millisecond
	app := startForwarder(t, cfg)

	readyz := func() (int, string) {
		res, err := http.Get("http://" + app.AdminAddr().String() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	if st, body := readyz(); st != http.StatusOK {
		t.Fatalf("/readyz with NATS up: %d %s", st, body)
	}
	before := ids("before", 3)
	publishBatch(t, js, testBatch{key: keyA, meta: metaGo1, ids: before})
	fake.WaitIDs(t, before, 10*time.Second)

	natsutil.Shutdown(srv)
	// Pulls may fail (server shutdown) before the client notices the closed connection: wait for that.
	eventually(t, 10*time.Second, "no NATS reason in readiness with NATS down", func() bool {
		_, reasons := app.Ready()
		return reasons["nats"] != ""
	})
	if st, body := readyz(); st != http.StatusServiceUnavailable || !strings.Contains(body, "not connected to NATS") {
		t.Errorf("/readyz with NATS down: %d %s, want 503 saying NATS is not connected", st, body)
	}

	srv, err = natsutil.StartEmbedded(ncfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { natsutil.Shutdown(srv) })
	eventually(t, 10*time.Second, "not ready after NATS came back", func() bool { ok, _ := app.Ready(); return ok })
	after := ids("after", 3)
	publishBatch(t, js, testBatch{key: keyA, meta: metaGo1, ids: after}) // js reconnected too
	fake.WaitIDs(t, after, 10*time.Second)
	fake.AssertExactlyOnce(t, append(before, after...))
}
