package e2e_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	statsig "github.com/statsig-io/go-sdk"

	"github.com/sigedge/sigedge/configcache/configcachetest"
	"github.com/sigedge/sigedge/forwarder/forwardertest"
	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/natstest"
	"github.com/sigedge/sigedge/proxy"
)

// ledger records what the proxies told the SDKs: the events of every log_event answered 2xx. An
// event in it was promised to Statsig; the region must deliver it whatever dies.
type ledger struct {
	mu       sync.Mutex
	accepted map[string]bool // event ids (metadata.id) of 2xx answers
	statuses map[int]int     // log_event answers by status (502: the front could not reach a proxy)
	changed  chan struct{}
}

func newLedger() *ledger {
	return &ledger{accepted: map[string]bool{}, statuses: map[int]int{}, changed: make(chan struct{})}
}

func (l *ledger) record(status int, ids []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.statuses[status]++
	if status < 200 || status > 299 {
		return
	}
	for _, id := range ids {
		if id != "" {
			l.accepted[id] = true
		}
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *ledger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.accepted)
}

func (l *ledger) ids() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.accepted))
	for id := range l.accepted {
		out = append(out, id)
	}
	return out
}

func (l *ledger) answers() map[int]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[int]int{}
	for k, v := range l.statuses {
		out[k] = v
	}
	return out
}

// waitMore waits until n more events than now were accepted: the region makes progress.
func (l *ledger) waitMore(t *testing.T, n int, timeout time.Duration, what string) {
	t.Helper()
	want := l.count() + n
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		got, ch := len(l.accepted), l.changed
		l.mu.Unlock()
		if got >= want {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("%s: %d events accepted, want %d within %s (answers so far %v)", what, got, want, timeout, l.answers())
		}
	}
}

// front is what the SDKs connect to, as a Kubernetes Service would be: it passes every request to
// one proxy (switched when that proxy goes away) and records log_event answers in the ledger.
type front struct {
	srv     *httptest.Server
	led     *ledger
	client  *http.Client
	mu      sync.Mutex
	backend string
}

func newFront(t *testing.T, led *ledger, backend string) *front {
	f := &front{led: led, backend: backend, client: &http.Client{Timeout: 10 * time.Second}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *front) setBackend(b string) {
	f.mu.Lock()
	f.backend = b
	f.mu.Unlock()
}

func (f *front) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	backend := f.backend
	f.mu.Unlock()
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, backend+r.URL.RequestURI(), bytes.NewReader(body))
	req.Header = r.Header.Clone()
	isLog := strings.HasSuffix(r.URL.Path, "/log_event")
	resp, err := f.client.Do(req)
	if err != nil {
		if isLog {
			f.led.record(http.StatusBadGateway, nil)
		}
		http.Error(w, err.Error(), http.StatusBadGateway) // go-sdk retries a 502
		return
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	if isLog {
		f.led.record(resp.StatusCode, eventIDs(r.Header.Get("Content-Encoding"), body))
	}
	for k, vs := range resp.Header {
		if k != "Content-Length" {
			w.Header()[k] = vs
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(reply)
}

// eventIDs returns the metadata.id of each event of a log_event body.
func eventIDs(encoding string, body []byte) []string {
	var rd io.Reader = bytes.NewReader(body)
	if encoding == "gzip" {
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil
		}
		rd = zr
	}
	var v struct {
		Events []struct {
			Metadata struct {
				ID string `json:"id"`
			} `json:"metadata"`
		} `json:"events"`
	}
	if err := json.NewDecoder(rd).Decode(&v); err != nil {
		return nil
	}
	out := make([]string, len(v.Events))
	for i, e := range v.Events {
		out[i] = e.Metadata.ID
	}
	return out
}

func TestMain(m *testing.M) {
	code := m.Run()
	forwardertest.RemoveBinary()
	os.Exit(code)
}

// TestRegionLosesNothing runs a region as deployed: a 3-node JetStream cluster, two proxies (stream
// replicas 3, rule sets shared through KV), two forwarder processes sharing the durable consumer,
// and four official go-sdk instances logging events through the proxies. Mid-load the stream's
// leader node is stopped and brought back, one proxy is shut down (its SDKs move to the other, as
// a Service would move them), and one forwarder is SIGKILLed while Statsig holds its request. Every
// event a proxy answered 2xx for arrives at the fake Statsig; the only duplicates are the batch in
// flight at the kill (exactly twice) and messages whose ack was lost around the node loss.
func TestRegionLosesNothing(t *testing.T) {
	cluster := natstest.StartCluster(t, 3)
	rules := configcachetest.New(t)
	fake := forwardertest.NewFake(t)
	keys := []string{"secret-region-a00000000000000000000000000000000", "secret-region-b00000000000000000000000000000000"}
	for _, k := range keys {
		rules.SetSpec(k, configcachetest.Spec{Time: 1000, Gates: []configcachetest.Gate{{Name: "g", Pass: true}}})
	}
	logs := &forwardertest.LockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("proxy logs:\n%s", logs.String())
		}
	})
	const ackWait = 3 * time.Second

	// Two proxies.
	cfg := config.Default()
	cfg.Proxy.Listen, cfg.Proxy.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.NATS.Embedded, cfg.NATS.URLs = false, cluster.URLs()
	cfg.NATS.Stream.Replicas = 3
	cfg.NATS.ReconnectWait = 50 * time.Millisecond
	cfg.NATS.PublishTimeout = 2 * time.Second // under go-sdk's 3 s request time-out: it hears the 503 and retries
	cfg.Upstream.ConfigCDN, cfg.Upstream.API, cfg.Upstream.Events = rules.URL, rules.URL, fake.URL()
	cfg.Upstream.Timeout = time.Second
	cfg.RuleSets.Offline, cfg.ClientKeys = nil, nil
	cfg.RuleSets.PollInterval, cfg.RuleSets.PollJitter, cfg.RuleSets.Share.LeaseTTL = time.Second, 100*time.Millisecond, 3*time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var proxies []*proxy.App
	var stops []func()
	for i := range 2 {
		px, shutdown := startProxy(t, proxy.AppOptions{Config: cfg, Logger: newLogger(logs, fmt.Sprintf("proxy%d", i+1)), Version: "test"})
		stop := func() {
			if err := shutdown(); err != nil {
				t.Errorf("proxy shutdown: %v", err)
			}
		}
		t.Cleanup(stop)
		proxies, stops = append(proxies, px), append(stops, stop)
	}
	base := func(px *proxy.App) string { return "http://" + px.Addr().String() }
	led := newLedger()
	fronts := []*front{newFront(t, led, base(proxies[0])), newFront(t, led, base(proxies[1]))}

	// Two forwarders; each tells Statsig who it is by a path prefix.
	fwdYAML := func(name string) string {
		return fmt.Sprintf(`log:
  level: info
forwarder:
  admin_listen: 127.0.0.1:0
  flush_interval: 200ms
  batch_max_events: 200
  concurrency: 1
  ack_wait: %s
  request_timeout: 2s
  retry_backoff_min: 50ms
  retry_backoff_max: 500ms
  replay_rate: 0
  shutdown_timeout: 5s
upstream:
  events: %s/%s
nats:
  embedded: false
  urls: [%s]
  reconnect_wait: 50ms
  stream:
    replicas: 3
rulesets:
  share:
    enabled: false
`, ackWait, fake.URL(), name, strings.Join(cluster.URLs(), ", "))
	}
	var armed atomic.Bool
	held := make(chan []string, 1)
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	fake.SetRespond(func(r *forwardertest.Request, _ int) int {
		if strings.HasPrefix(r.Path, "/f2/") && armed.CompareAndSwap(true, false) {
			held <- r.IDs
			<-release // Statsig holds the request until the forwarder is dead, then takes it
		}
		return http.StatusAccepted
	})
	forwardertest.StartProcess(t, "forwarder f1", forwardertest.WriteConfig(t, fwdYAML("f1")))
	f2 := forwardertest.StartProcess(t, "forwarder f2", forwardertest.WriteConfig(t, fwdYAML("f2")))

	// Four SDK instances, two per key, pointed at the proxies alternately.
	ctx, stopDrivers := context.WithCancel(context.Background())
	defer stopDrivers()
	var sent atomic.Int64
	var drivers sync.WaitGroup
	var clients []*statsig.Client
	for i := range 4 {
		opts := goSDKOptions(fronts[i%2].srv.URL + "/v1")
		opts.LoggingMaxBufferSize = 100
		opts.ConfigSyncInterval = time.Second
		client, details := statsig.NewClientWithDetails(keys[i/2], opts)
		if !details.Success {
			t.Fatalf("go-sdk %d did not initialize through the proxy: %v", i, details.Error)
		}
		clients = append(clients, client)
		drivers.Go(func() {
			tick := time.NewTicker(10 * time.Millisecond) // ~100 events/s per SDK
			defer tick.Stop()
			user := statsig.User{UserID: fmt.Sprint("user-", i)}
			for n := 0; n < 20_000; n++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				client.LogEvent(statsig.Event{EventName: "region_event", User: user, Value: fmt.Sprint(n),
					Metadata: map[string]string{"id": fmt.Sprintf("sdk%d-%d", i, n)}})
				sent.Add(1)
				if n%50 == 0 && !client.CheckGate(user, "g") { // rule sets keep being served too
					t.Errorf("go-sdk %d: gate g is off", i)
				}
			}
		})
	}
	led.waitMore(t, 300, 20*time.Second, "before any loss")
	fake.WaitIDs(t, led.ids()[:1], 20*time.Second)

	// 1. The stream's leader node goes away mid-load, and comes back.
	stream, consumer := cfg.NATS.Stream.Name, cfg.Forwarder.ConsumerName
	leader := cluster.StreamLeader("$G", stream)
	if leader < 0 {
		t.Fatal("the event stream has no leader")
	}
	consumerLeader := cluster.ConsumerLeader("$G", stream, consumer)
	nodeStopped := time.Now()
	cluster.Stop(leader)
	for deadline := time.Now().Add(20 * time.Second); cluster.StreamLeader("$G", stream) < 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no new stream leader 20s after the old one stopped")
		}
	}
	newLeader := time.Since(nodeStopped)
	// Both halves keep going on two nodes: the proxies store, the forwarders deliver.
	_, delivered := fake.Counts()
	led.waitMore(t, 300, 30*time.Second, "with the stream leader stopped")
	fake.WaitEvents(t, delivered+300, 30*time.Second)
	cluster.Restart(leader)
	cluster.WaitReady(30 * time.Second)
	nodeBack := time.Now()
	led.waitMore(t, 300, 30*time.Second, "after the node came back")
	t.Logf("node n%d (stream leader; consumer leader n%d) stopped for %s; a new stream leader after %s",
		leader+1, consumerLeader+1, nodeBack.Sub(nodeStopped).Round(time.Millisecond), newLeader.Round(time.Millisecond))
	for i, px := range proxies {
		waitReady(t, px, fmt.Sprintf("proxy%d", i+1))
	}

	// 2. One proxy is shut down; its SDKs go through the other one.
	fronts[1].setBackend(base(proxies[0]))
	stops[1]()
	led.waitMore(t, 300, 20*time.Second, "with one proxy left")

	// 3. A forwarder dies while Statsig holds its request (taken, never acked).
	armed.Store(true)
	var inFlight []string
	select {
	case inFlight = <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("forwarder f2 sent nothing to Statsig")
	}
	killed := time.Now()
	f2.Kill(t)
	releaseOnce.Do(func() { close(release) })
	led.waitMore(t, 300, 20*time.Second, "after the forwarder was killed")

	// Stop logging; the SDKs flush what they hold.
	stopDrivers()
	drivers.Wait()
	flushed := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for _, c := range clients {
			wg.Go(c.Shutdown)
		}
		wg.Wait()
		close(flushed)
	}()
	select {
	case <-flushed:
	case <-time.After(30 * time.Second):
		t.Fatal("go-sdk Shutdown did not return")
	}

	// Everything accepted arrives: what f2 held comes again after the ack wait, through f1.
	accepted := led.ids()
	fake.WaitIDs(t, accepted, 30*time.Second)
	heldSet := map[string]bool{}
	var heldIDs []string
	for _, id := range inFlight {
		if id != "" && !heldSet[id] {
			heldSet[id] = true
			heldIDs = append(heldIDs, id)
		}
	}
	fake.WaitIDsTimes(t, heldIDs, 2, ackWait+20*time.Second)
	counts, _ := fake.Counts()
	first := map[string]time.Time{}
	for _, r := range fake.Accepted() {
		for _, id := range r.IDs {
			if _, ok := first[id]; !ok {
				first[id] = r.At
			}
		}
	}
	nodeDups, killDups := 0, 0
	for id, n := range counts {
		if id == "" || n == 1 {
			continue
		}
		at := first[id]
		switch {
		case heldSet[id]:
			killDups += n - 1
		case n == 2 && !at.Before(nodeStopped.Add(-time.Second)) && !at.After(nodeBack.Add(ackWait+2*time.Second)):
			nodeDups++ // its ack went to a node that was stopping, or the consumer's leader changed
		case n == 2 && !at.Before(killed.Add(-time.Second)) && !at.After(killed):
			killDups++ // acked by f2 just before the kill, the ack still in its buffers
		default:
			t.Errorf("event %s arrived %d times, first at %s: outside any loss", id, n, at.Format(time.RFC3339Nano))
		}
	}
	var redelivered time.Time
	for _, r := range fake.Accepted() {
		if len(r.IDs) > 0 && heldSet[r.IDs[0]] && r.At.After(killed) {
			redelivered = r.At // the second time (the first request arrived before the kill)
		}
	}
	if !redelivered.IsZero() {
		t.Logf("the batch held at the kill was sent again %s after the kill (ack_wait %s)", redelivered.Sub(killed).Round(time.Millisecond), ackWait)
	}
	for id := range heldSet {
		if counts[id] != 2 {
			t.Errorf("event %s of the batch Statsig took from the killed forwarder arrived %d times, want 2 (taken, never acked, sent again)", id, counts[id])
		}
	}
	unanswered := ""
	if n := sent.Load() - int64(len(accepted)); n > 0 {
		// go-sdk retries a 5xx after 1 s, then 10 s; its Shutdown does not wait for a sleeping retry.
		unanswered = fmt.Sprintf(" (%d never had a 2xx: refused, and their go-sdk retry still sleeping at its shutdown)", n)
	}
	t.Logf("%d events logged by 4 go-sdk instances; the proxies answered 2xx for %d%s; log_event answers %v; all %d arrived at Statsig; duplicates: %d from the batch in flight at the forwarder kill (%d events), %d around the node loss",
		sent.Load(), len(accepted), unanswered, led.answers(), len(accepted), killDups, len(heldSet), nodeDups)
}

func newLogger(w io.Writer, app string) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})).With("app", app)
}

func waitReady(t *testing.T, px *proxy.App, name string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ok, reasons := px.Ready()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready: %v", name, reasons)
		}
	}
}
