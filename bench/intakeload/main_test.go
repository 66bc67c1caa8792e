package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/proxy"
	"github.com/sigedge/sigedge/queue"
)

func TestBatchMakerMakesDistinctValidBatches(t *testing.T) {
	for _, n := range []int{1, 100} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			bm, err := newBatchMaker(n)
			if err != nil {
				t.Fatal(err)
			}
			zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
			seen := map[string]bool{}
			var buf []byte
			for i := range 4 {
				var body []byte
				if i%2 == 0 {
					var id []byte
					buf, id = bm.plain(buf) // reused: must still come out distinct
					body = buf
					if len(id) != idLen || !bytes.Contains(body, id) {
						t.Fatalf("id %q is not %d bytes of the body", id, idLen)
					}
				} else {
					zr, err := gzip.NewReader(bytes.NewReader(bm.gzipped(zw, nil)))
					if err != nil {
						t.Fatal(err)
					}
					if body, err = io.ReadAll(zr); err != nil {
						t.Fatal(err)
					}
				}
				b, err := queue.DecodeBatch(body)
				if err != nil {
					t.Fatalf("body %d: %v", i, err)
				}
				if len(b.Events) != n || b.Dropped.Total() != 0 {
					t.Fatalf("body %d: %d events kept, %d dropped, want %d kept", i, len(b.Events), b.Dropped.Total(), n)
				}
				if seen[string(b.EventsRaw)] {
					t.Fatalf("body %d repeats an earlier one", i)
				}
				seen[string(b.EventsRaw)] = true
			}
		})
	}
}

func TestNextIDsAreDistinctAcrossDigitCounts(t *testing.T) {
	bm := &batchMaker{nonce: "abc"}
	seen := map[string]bool{}
	for range 12345 {
		id := string(bm.nextID(nil))
		if len(id) != idLen || seen[id] {
			t.Fatalf("id %q: length %d or repeated", id, len(id))
		}
		seen[id] = true
	}
}

func TestParseRefusesWhatIsNotLoopback(t *testing.T) {
	tests := []struct {
		args []string
		ok   bool
	}{
		{nil, true},
		{[]string{"-url", "http://example.com"}, false},
		{[]string{"-nats", "nats://10.0.0.1:4222"}, false},
		{[]string{"-ready", "http://example.com/readyz"}, false},
		{[]string{"-ready", ""}, true},
		{[]string{"-events", "100,x"}, false},
		{[]string{"-modes", "raw,grpc"}, false},
		{[]string{"-rounds", "0"}, false},
	}
	for _, tc := range tests {
		if _, err := parse(tc.args); (err == nil) != tc.ok {
			t.Errorf("parse(%q) err = %v, want ok %v", tc.args, err, tc.ok)
		}
	}
}

// TestRunMeasuresAgainstARealProxy runs every phase briefly against a whole proxy (embedded
// JetStream) in this process, and checks the report against what the stream holds.
func TestRunMeasuresAgainstARealProxy(t *testing.T) {
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no upstream in this test", http.StatusUnauthorized)
	}))
	t.Cleanup(refuse.Close)
	cfg := config.Default()
	cfg.Proxy.Listen, cfg.Proxy.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.NATS.Port, cfg.NATS.DataDir = 0, t.TempDir()
	cfg.Upstream.ConfigCDN, cfg.Upstream.API, cfg.Upstream.Events = refuse.URL, refuse.URL, refuse.URL
	cfg.RuleSets.Offline, cfg.RuleSets.Share.Enabled = nil, false
	cfg.Proxy.EvalExposures.Enabled = false
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	app, err := proxy.NewApp(ctx, proxy.AppOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Shutdown(context.Background()) })

	var out bytes.Buffer
	err = run(ctx, []string{
		"-url", "http://" + app.Addr().String(), "-ready", "http://" + app.AdminAddr().String() + "/readyz",
		"-nats", app.NATSURL(), "-events", "3", "-duration", "150ms", "-rounds", "2", "-conns", "2",
	}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	report := out.String()
	// Two rounds of three phases, each with a positive rate; HTTP phases compare to raw.
	phase := regexp.MustCompile(`(?m)^round (\d)  events=3 +(raw|http-json|http-gzip) +(\d+) events/s +(\d+) batches`)
	lines := phase.FindAllStringSubmatch(report, -1)
	if len(lines) != 6 {
		t.Fatalf("want 6 phase lines, got %d:\n%s", len(lines), report)
	}
	for _, l := range lines {
		if r, _ := strconv.Atoi(l[3]); r <= 0 {
			t.Errorf("phase %q has no throughput", l[0])
		}
	}
	// Round 1 runs raw first, so its HTTP phases carry their ratio; the summary has both.
	if strings.Count(report, "× raw") < 2 || strings.Count(report, "   ratio ") != 2 {
		t.Errorf("no ratios to raw in the report:\n%s", report)
	}
	// The last phase's batches are in the stream (new before it): as many as the events it
	// reported, every one a valid batch of 3.
	last := lines[len(lines)-1]
	nc, err := nats.Connect(app.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(ctx, cfg.NATS.Stream.Name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := strconv.ParseUint(last[4], 10, 64); want == 0 || info.State.Msgs != want {
		t.Fatalf("the stream holds %d messages after %q", info.State.Msgs, last[0])
	}
	m, err := s.GetMsg(ctx, info.State.LastSeq)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := queue.DecodeBatch(m.Data); err != nil || len(b.Events) != 3 {
		t.Fatalf("stored message is not a batch of 3 (%v): %q", err, m.Data)
	}
	if got := m.Header.Get("Sigedge-Event-Count"); got != "3" {
		t.Errorf("event count header %q", got)
	}
}

func TestSummaryComparesEachRoundWithItsRawPhase(t *testing.T) {
	sec := time.Second
	all := []result{
		// Round 1: HTTP does half raw's events/s at twice its CPU per event; round 2: 0.8 and 0.4.
		{round: 1, size: 10, mode: "raw", events: 1000, elapsed: sec, serverCPU: sec / 1000},
		{round: 1, size: 10, mode: "http-json", events: 500, elapsed: sec, serverCPU: sec / 1000},
		{round: 2, size: 10, mode: "raw", events: 2000, elapsed: sec, serverCPU: sec / 1000},
		{round: 2, size: 10, mode: "http-json", events: 1600, elapsed: sec, serverCPU: 2 * sec / 1000},
	}
	got := summary(all, options{sizes: []int{10}, modes: []string{"raw", "http-json"}})
	for _, want := range []string{"ratio 0.50 – 0.80 (median 0.65)", "CPU/event ratio 0.40 – 0.50 (median 0.45)"} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
}
