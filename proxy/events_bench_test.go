package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/wire"
)

// benchEvent is a realistic gate exposure as go-sdk sends it (about 520 bytes).
func benchEvent(i int) string {
	return fmt.Sprintf(`{"eventName":"statsig::gate_exposure","user":{"userID":"user-%d","email":"u%d@example.com","customIDs":{"companyID":"c%d"},"custom":{"plan":"pro"}},"value":"","metadata":{"gate":"new_checkout","gateValue":"true","ruleID":"6Nq0mUKkBLkAGVIfMCbNNr","reason":"Network","configSyncTime":"1767225600000","initTime":"1767225600000","serverTime":"1767225612345"},"secondaryExposures":[{"gate":"employees","gateValue":"false","ruleID":"default"}],"time":%d,"statsigMetadata":null}`, i, i, i%50, 1767225612345+int64(i))
}

// benchBatch builds distinct batches of n events cheaply: every body is head + a unique 20-digit id
// + tail, so JetStream's de-duplication never turns the load into no-ops. For gzip, the head and
// tail are compressed once: gzip bodies may be several members, and only the id is compressed per
// request.
type benchBatch struct {
	n                  int
	head, tail         []byte // plain
	gzHead, gzTail     []byte // gzip members
	seq                atomic.Int64
	plainLen, gzipSize int
}

func newBenchBatch(b *testing.B, n int) *benchBatch {
	var rest strings.Builder
	for i := 1; i < n; i++ {
		rest.WriteString(",")
		rest.WriteString(benchEvent(i))
	}
	bb := &benchBatch{n: n}
	bb.head = []byte(`{"events":[{"eventName":"bench","metadata":{"id":"`)
	bb.tail = []byte(`"},"user":{"userID":"bench"},"time":1767225612345}` + rest.String() +
		`],"statsigMetadata":{"sdkType":"go-sdk","sdkVersion":"1.35.1","languageVersion":"go1.26","sessionID":"8d6f1c9e"}}`)
	bb.gzHead, bb.gzTail = encodeBody(b, "gzip", bb.head), encodeBody(b, "gzip", bb.tail)
	bb.plainLen = len(bb.head) + 20 + len(bb.tail)
	bb.gzipSize = len(bb.gzHead) + len(bb.gzTail) + 40
	return bb
}

func (bb *benchBatch) id() []byte {
	return fmt.Appendf(nil, "%020d", bb.seq.Add(1))
}

// plain writes a new distinct body into buf (reused: the load generator should cost little CPU).
func (bb *benchBatch) plain(buf []byte) []byte {
	if len(buf) != bb.plainLen {
		buf = make([]byte, 0, bb.plainLen)
		buf = append(buf, bb.head...)
		buf = append(buf, make([]byte, 20)...)
		buf = append(buf, bb.tail...)
	}
	copy(buf[len(bb.head):], bb.id())
	return buf
}

// gzipped compresses only the unique id, with the caller's reusable writer and buffer.
func (bb *benchBatch) gzipped(zw *gzip.Writer, buf *bytes.Buffer) []byte {
	buf.Reset()
	buf.Grow(bb.gzipSize)
	buf.Write(bb.gzHead)
	zw.Reset(buf)
	_, _ = zw.Write(bb.id())
	_ = zw.Close()
	buf.Write(bb.gzTail)
	return buf.Bytes()
}

func purgeStream(b *testing.B, js jetstream.JetStream, name string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Purge(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkEventIntake measures events/s stored through POST /v1/log_event (each request answered
// only after JetStream's ack), against the limit: raw async publishing of the same message bytes
// to the same embedded JetStream by one client, in the same run. Run it with:
//
//	go test ./proxy -run '^$' -bench BenchmarkEventIntake -benchtime 5s
//
// The HTTP clients run in the same process and share the CPU with the proxy and the server.
func BenchmarkEventIntake(b *testing.B) {
	cfg := intakeConfig(b)
	cfg.NATS.Stream.MaxBytes = 8 * config.GiB
	cfg.Limits.MaxBodyBytes = 10 * config.MiB
	e := startIntake(b, cfg)
	name := cfg.NATS.Stream.Name
	nc, err := nats.Connect(e.app.NATSURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	rawJS, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256))
	if err != nil {
		b.Fatal(err)
	}
	subject := wire.EventSubject(cfg.NATS.Stream.SubjectPrefix, intakeServerKey)
	const clients = 32 // concurrent SDKs
	transport := &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true}
	b.Cleanup(transport.CloseIdleConnections)
	client := &http.Client{Transport: transport, Timeout: time.Minute}

	for _, n := range []int{100, 1000} {
		bb := newBenchBatch(b, n)
		// events/s depends on what else the machine runs; CPU time per event (of the whole process:
		// proxy, JetStream server and load generator) is steadier on a shared machine, and with
		// every core busy throughput is cores / CPU per event.
		var cpuStart time.Duration
		startCPU := func(b *testing.B) { b.ResetTimer(); cpuStart = processCPU(b) }
		report := func(b *testing.B) {
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(processCPU(b)-cpuStart)/float64(b.N*n), "cpu-ns/event")
		}
		b.Run(fmt.Sprintf("events=%d/raw-async-publish", n), func(b *testing.B) {
			purgeStream(b, e.js, name)
			b.SetBytes(int64(bb.plainLen))
			run := strconv.FormatInt(time.Now().UnixNano(), 36) // ids unique across runs: never duplicates
			// A ring of bodies larger than the pending window: a body is rewritten only long after
			// its message was acknowledged.
			ring := make([][]byte, 512)
			startCPU(b)
			for i := 0; i < b.N; i++ {
				body := bb.plain(ring[i%len(ring)])
				ring[i%len(ring)] = body
				msg := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{
					wire.MsgSDKKey: {intakeServerKey}, wire.MsgEndpoint: {"log_event"}, wire.MsgSource: {"sdk"},
					wire.MsgEventCount: {strconv.Itoa(n)}, wire.MsgReceivedAt: {"1767225612345"},
					jetstream.MsgIDHeader: {run + "-" + strconv.Itoa(i)},
				}}
				if _, err := rawJS.PublishMsgAsync(msg, jetstream.WithStallWait(time.Minute)); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-rawJS.PublishAsyncComplete():
			case <-time.After(time.Minute):
				b.Fatal("async publishes not acknowledged")
			}
			b.StopTimer()
			report(b)
		})
		for _, coding := range []string{"json", "gzip"} {
			b.Run(fmt.Sprintf("events=%d/http-%s", n, coding), func(b *testing.B) {
				purgeStream(b, e.js, name)
				b.SetBytes(int64(bb.plainLen))
				b.SetParallelism((clients + 1) / 2) // × GOMAXPROCS(2) goroutines
				var failed atomic.Int64
				startCPU(b)
				b.RunParallel(func(pb *testing.PB) {
					zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
					var gz bytes.Buffer
					var body []byte
					for pb.Next() {
						// The proxy has read the whole body before it answers, so it may be reused.
						if coding == "gzip" {
							body = bb.gzipped(zw, &gz)
						} else {
							body = bb.plain(body)
						}
						req, _ := http.NewRequest(http.MethodPost, e.base+"/v1/log_event", bytes.NewReader(body))
						req.Header.Set("STATSIG-API-KEY", intakeServerKey)
						req.Header.Set("STATSIG-SDK-TYPE", "go-sdk")
						if coding == "gzip" {
							req.Header.Set("Content-Encoding", "gzip")
						}
						resp, err := client.Do(req)
						if err != nil {
							failed.Add(1)
							continue
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusAccepted {
							failed.Add(1)
						}
					}
				})
				b.StopTimer()
				if f := failed.Load(); f > 0 {
					b.Fatalf("%d of %d requests failed", f, b.N)
				}
				report(b)
			})
		}
	}
}

// processCPU is the CPU time (user + system) the process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
