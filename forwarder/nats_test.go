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

	"github.com/sigedge/sigedge/forwarder/forwardertest"
	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/natstest"
	"github.com/sigedge/sigedge/internal/natsutil"
)

// TestDrainsAReplicatedStreamWithoutStalling: on a 3-node cluster with stream replicas 3, a backlog
// many pulls long is drained well within ack_wait. (Pulls limited by bytes lost deliveries of a
// replicated consumer until ack_wait: the server's "batch completed" status overtook them.)
func TestDrainsAReplicatedStreamWithoutStalling(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	js := c.JetStream(t)
	stream := config.Default().NATS.Stream
	stream.Replicas = 3
	forwardertest.EnsureStreams(t, js, stream)
	e := newEnvOn(t, c.URLs()[0], js)
	e.cfg.NATS.URLs = c.URLs()
	e.cfg.NATS.Stream = stream
	e.cfg.Forwarder.AckWait = time.Minute // a stalled message would take this long to come again
	e.cfg.Forwarder.BatchMaxEvents = 100
	if err := e.cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	want := e.publishN(300, func(i int) testBatch {
		b := batchOf([]string{keyA, keyB}[i%2], ids(fmt.Sprintf("r3-%d", i), 2))
		b.pad = 200
		return b
	})
	tune := testTuning()
	tune.fetchCount = 20 // the backlog is 15 pulls long
	for i := range 2 {
		startApp(t, AppOptions{Config: e.cfg, Logger: testLogger(t).With("forwarder", i), tune: tune})
	}
	start := time.Now()
	e.fake.WaitIDs(t, want, 20*time.Second)
	t.Logf("%d events in 300 messages drained by two forwarders in %s", len(want), time.Since(start).Round(time.Millisecond))
	e.fake.AssertExactlyOnce(t, want)
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
	srv, err := natsutil.StartEmbedded(context.Background(), ncfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { natsutil.Shutdown(srv) })
	js := natstest.Connect(t, srv.ClientURL())
	forwardertest.EnsureStreams(t, js, ncfg.Stream)
	e := newEnvOn(t, srv.ClientURL(), js)
	e.cfg.NATS.ReconnectWait = 20 * time.Millisecond
	app := e.start()

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
	e.publish(batchOf(keyA, before))
	e.fake.WaitIDs(t, before, 10*time.Second)

	natsutil.Shutdown(srv)
	// Pulls may fail (server shutdown) before the client notices the closed connection: wait for that.
	eventually(t, 10*time.Second, "no NATS reason in readiness with NATS down", func() bool {
		_, reasons := app.Ready()
		return reasons["nats"] != ""
	})
	if st, body := readyz(); st != http.StatusServiceUnavailable || !strings.Contains(body, "not connected to NATS") {
		t.Errorf("/readyz with NATS down: %d %s, want 503 saying NATS is not connected", st, body)
	}

	srv, err = natsutil.StartEmbedded(context.Background(), ncfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { natsutil.Shutdown(srv) })
	eventually(t, 10*time.Second, "not ready after NATS came back", func() bool { ok, _ := app.Ready(); return ok })
	after := ids("after", 3)
	e.publish(batchOf(keyA, after)) // js reconnected too
	e.fake.WaitIDs(t, after, 10*time.Second)
	e.fake.AssertExactlyOnce(t, append(before, after...))
}
