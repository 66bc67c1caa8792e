// Command intakeload measures the proxy's event intake (POST /v1/log_event, answered after
// JetStream's ack) against its limit: raw async JetStream publishing of the same bodies, with the
// same headers, to the same JetStream server, in the same run. Unlike the in-process benchmark
// (BenchmarkEventIntake), the load comes from this separate process, so that run.sh can pin the
// proxy with its embedded JetStream to one core and the load to the other:
//
//	bench/intakeload/run.sh [-duration 10s] [-rounds 3] [-events 100,1000]
//
// Each round runs every phase once per batch size, in an order rotated from round to round (raw,
// raw-s2, http-json, http-gzip, then raw-s2, http-json, http-gzip, raw, …) so that drift of a
// shared machine does not always favour the same phase. Every phase starts from a new stream (see fresh), every body is
// distinct (JetStream's de-duplication never turns the load into no-ops), and only acknowledged
// batches (202 for HTTP, an ack for raw) are counted.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sigedge/sigedge/internal/wire"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "intakeload:", err)
		os.Exit(1)
	}
}

type options struct {
	url, ready, natsURL, key, stream, prefix string
	sizes                                    []int
	modes                                    []string
	duration                                 time.Duration
	rounds, conns, pending, serverPID        int
}

func parse(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("intakeload", flag.ContinueOnError)
	fs.StringVar(&o.url, "url", "http://127.0.0.1:18100", "the proxy's base URL (loopback only)")
	fs.StringVar(&o.ready, "ready", "http://127.0.0.1:18101/readyz", "readiness URL waited for (up to 30 s) before measuring; empty: do not wait")
	fs.StringVar(&o.natsURL, "nats", "nats://127.0.0.1:14322", "the proxy's JetStream (its embedded server), for the raw publisher and the fresh stream of each phase (loopback only)")
	fs.StringVar(&o.key, "key", "secret-intakeload", "server SDK key the batches are sent for")
	fs.StringVar(&o.stream, "stream", "SIGEDGE_EVENTS", "the event stream (nats.stream.name)")
	fs.StringVar(&o.prefix, "subject-prefix", "sigedge.events", "nats.stream.subject_prefix")
	events := fs.String("events", "100,1000", "batch sizes (events per request), comma-separated")
	modes := fs.String("modes", "raw,raw-s2,http-json,http-gzip", "phases of a round: raw, raw-s2, http-json, http-gzip")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of one phase")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds (each runs every phase once per batch size)")
	fs.IntVar(&o.conns, "conns", 32, "concurrent HTTP clients (SDKs), each waiting for its answer")
	fs.IntVar(&o.pending, "pending", 256, "raw publisher: most unacknowledged messages")
	fs.IntVar(&o.serverPID, "server-pid", 0, "the proxy's pid, to report its CPU use (0: not reported)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if !loopback(o.url, "http://") || !loopback(o.natsURL, "nats://") || (o.ready != "" && !loopback(o.ready, "http://")) {
		return o, errors.New("-url, -ready and -nats must be loopback URLs (http://127.…, nats://127.…)")
	}
	for _, s := range strings.Split(*events, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return o, fmt.Errorf("-events: %q is not a positive number", s)
		}
		o.sizes = append(o.sizes, n)
	}
	for _, m := range strings.Split(*modes, ",") {
		m = strings.TrimSpace(m)
		if m != "raw" && m != "raw-s2" && m != "http-json" && m != "http-gzip" {
			return o, fmt.Errorf("-modes: unknown phase %q", m)
		}
		o.modes = append(o.modes, m)
	}
	if o.duration <= 0 || o.rounds < 1 || o.conns < 1 || o.pending < 1 {
		return o, errors.New("-duration, -rounds, -conns and -pending must be positive")
	}
	return o, nil
}

func loopback(u, scheme string) bool {
	rest, ok := strings.CutPrefix(u, scheme)
	return ok && (strings.HasPrefix(rest, "127.") || strings.HasPrefix(rest, "localhost") || strings.HasPrefix(rest, "[::1]"))
}

// result is one phase's outcome.
type result struct {
	round, size int
	mode        string
	events      int64 // acknowledged
	elapsed     time.Duration
	genCPU      time.Duration // this process
	serverCPU   time.Duration // the proxy's, when -server-pid is given
}

func (r result) rate() float64 { return float64(r.events) / r.elapsed.Seconds() }

// cpuPerEvent is the proxy's CPU time per acknowledged event, in nanoseconds.
func (r result) cpuPerEvent() float64 { return float64(r.serverCPU.Nanoseconds()) / float64(r.events) }

func run(ctx context.Context, args []string, out io.Writer) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	if o.ready != "" {
		if err := waitReady(ctx, o.ready, 30*time.Second); err != nil {
			return err
		}
	}
	nc, err := nats.Connect(o.natsURL, nats.Name("intakeload"))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", o.natsURL, err)
	}
	defer nc.Close()
	var rawFailures atomic.Int64
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(o.pending),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { rawFailures.Add(1) }))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	stream, err := js.Stream(ctx, o.stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", o.stream, err)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: o.conns, MaxConnsPerHost: o.conns, DisableCompression: true}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: time.Minute}
	subject := wire.EventSubject(o.prefix, o.key)

	fmt.Fprintf(out, "intakeload: %d rounds × %v events × %v, %s each, %d HTTP clients, raw window %d\n",
		o.rounds, o.sizes, o.modes, o.duration, o.conns, o.pending)
	var all []result
	for round := 1; round <= o.rounds; round++ {
		for _, n := range o.sizes {
			bm, err := newBatchMaker(n)
			if err != nil {
				return err
			}
			// Rotate the order from round to round.
			k := (round - 1) % len(o.modes)
			for _, mode := range append(slices.Clone(o.modes[k:]), o.modes[:k]...) {
				if err := fresh(ctx, js, stream); err != nil {
					return err
				}
				r := result{round: round, size: n, mode: mode}
				gen0, srv0 := selfCPU(), procCPU(o.serverPID)
				start := time.Now()
				if mode == "raw" || mode == "raw-s2" {
					rawFailures.Store(0)
					r.events, err = publishRaw(js, bm, subject, mode == "raw-s2", o)
					if f := rawFailures.Load(); err == nil && f > 0 {
						err = fmt.Errorf("%d raw publishes failed", f)
					}
				} else {
					r.events, err = postHTTP(client, bm, mode == "http-gzip", o)
				}
				r.elapsed = time.Since(start)
				r.genCPU, r.serverCPU = selfCPU()-gen0, procCPU(o.serverPID)-srv0
				if err != nil {
					return fmt.Errorf("round %d, %d events, %s: %w", round, n, mode, err)
				}
				all = append(all, r)
				fmt.Fprintln(out, r.line(all))
			}
		}
	}
	fmt.Fprint(out, summary(all, o))
	return nil
}

// isRaw reports whether mode is a reference phase (publishing straight to JetStream).
func isRaw(mode string) bool { return strings.HasPrefix(mode, "raw") }

// fresh gives a phase the state the first phase had: the stream is deleted and created again with
// its configuration (a purge would keep JetStream's duplicate-detection ids, hundreds of thousands
// after a fast phase, and the GC of the server would scan them through the next phases), and no
// dirty pages are left (a phase writes GBs to the page cache, whose writeback would slow the next).
func fresh(ctx context.Context, js jetstream.JetStream, stream jetstream.Stream) error {
	cfg := stream.CachedInfo().Config
	if err := js.DeleteStream(ctx, cfg.Name); err != nil {
		return fmt.Errorf("delete %s: %w", cfg.Name, err)
	}
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		return fmt.Errorf("create %s again: %w", cfg.Name, err)
	}
	syscall.Sync()
	return nil
}

// line formats a phase, with its ratios to the raw phases of the same round and size when there are.
func (r result) line(all []result) string {
	s := fmt.Sprintf("round %d  events=%-5d %-10s %9.0f events/s %7d batches", r.round, r.size, r.mode, r.rate(), r.events/int64(r.size))
	for _, ref := range []string{"raw", "raw-s2"} {
		if raw, ok := find(all, r.round, r.size, ref); ok && !isRaw(r.mode) {
			s += fmt.Sprintf("  %.2f× %s", r.rate()/raw.rate(), ref)
		}
	}
	s += fmt.Sprintf("  generator %.2f cores", r.genCPU.Seconds()/r.elapsed.Seconds())
	if r.serverCPU > 0 {
		s += fmt.Sprintf(", proxy %.2f cores (%.0f ns/event)", r.serverCPU.Seconds()/r.elapsed.Seconds(), r.cpuPerEvent())
	}
	return s
}

func find(all []result, round, size int, mode string) (result, bool) {
	for _, r := range all {
		if r.round == round && r.size == size && r.mode == mode {
			return r, true
		}
	}
	return result{}, false
}

// summary gives, per batch size and phase, the range of events/s and of the ratios to the raw
// phases over the rounds (each ratio against the raw phase of its own round): raw is the issue's
// limit (the bodies as received), raw-s2 publishes them S2-compressed as the proxy stores them by
// default. With -server-pid it also gives the ratio of the proxy's CPU time per event, raw over
// HTTP: what the throughput ratio is when the proxy has its core to itself, steadier than events/s
// on a machine others use too.
func summary(all []result, o options) string {
	var sb strings.Builder
	sb.WriteString("summary (min–max over rounds):\n")
	for _, n := range o.sizes {
		for _, mode := range o.modes {
			var rates []float64
			for _, r := range all {
				if r.size == n && r.mode == mode {
					rates = append(rates, r.rate())
				}
			}
			if len(rates) == 0 {
				continue
			}
			fmt.Fprintf(&sb, "  events=%-5d %-10s %9.0f – %9.0f events/s\n", n, mode, slices.Min(rates), slices.Max(rates))
			if isRaw(mode) {
				continue
			}
			for _, ref := range []string{"raw", "raw-s2"} {
				var ratios, cpuRatios []float64
				for _, r := range all {
					if r.size != n || r.mode != mode {
						continue
					}
					if raw, ok := find(all, r.round, n, ref); ok {
						ratios = append(ratios, r.rate()/raw.rate())
						if r.serverCPU > 0 && raw.serverCPU > 0 {
							cpuRatios = append(cpuRatios, raw.cpuPerEvent()/r.cpuPerEvent())
						}
					}
				}
				if len(ratios) == 0 {
					continue
				}
				fmt.Fprintf(&sb, "      vs %-7s ratio %.2f – %.2f (median %.2f)", ref, slices.Min(ratios), slices.Max(ratios), median(ratios))
				if len(cpuRatios) > 0 {
					fmt.Fprintf(&sb, "   CPU/event ratio %.2f – %.2f (median %.2f)", slices.Min(cpuRatios), slices.Max(cpuRatios), median(cpuRatios))
				}
				sb.WriteString("\n")
			}
		}
	}
	return sb.String()
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// publishRaw publishes distinct plain bodies asynchronously for o.duration (at most o.pending
// unacknowledged) and returns the events of the acknowledged messages once every ack is in. With
// compressed, each body is S2-compressed first, as the proxy stores it (nats.stream.compression).
func publishRaw(js jetstream.JetStream, bm *batchMaker, subject string, compressed bool, o options) (int64, error) {
	// A body is rewritten only after twice the window of later publishes: by then it was acked
	// (nats.go also copies a message into its write buffer when it is published).
	ring := make([][]byte, 2*o.pending)
	var zring [][]byte
	if compressed {
		zring = make([][]byte, len(ring))
	}
	count := strconv.Itoa(bm.n)
	deadline := time.Now().Add(o.duration)
	var sent int64
	for i := 0; time.Now().Before(deadline); i++ {
		body, id := bm.plain(ring[i%len(ring)])
		ring[i%len(ring)] = body
		// The headers the proxy puts on a batch (queue.Publisher), built per message as it does.
		msg := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{
			wire.MsgSDKKey: {o.key}, wire.MsgEndpoint: {wire.EndpointLogEvent}, wire.MsgSource: {wire.SourceSDK},
			wire.MsgReceivedAt: {strconv.FormatInt(time.Now().UnixMilli(), 10)},
			wire.MsgSDKType:    {"go-sdk"}, wire.MsgSDKVersion: {"1.35.1"}, wire.MsgClientTime: {"1767225612345"},
			jetstream.MsgIDHeader: {string(id)}, jetstream.ExpectedStreamHeader: {o.stream},
			wire.MsgEventCount: {count},
		}}
		if compressed {
			if enc, ok := wire.AppendS2(zring[i%len(zring)][:0], body); ok {
				zring[i%len(zring)] = enc
				msg.Data = enc
				msg.Header[wire.MsgEncoding] = []string{wire.EncodingS2}
			}
		}
		if _, err := js.PublishMsgAsync(msg, jetstream.WithStallWait(time.Minute)); err != nil {
			return 0, fmt.Errorf("publish: %w", err)
		}
		sent++
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return 0, errors.New("async publishes not acknowledged within a minute")
	}
	return sent * int64(bm.n), nil
}

// postHTTP runs o.conns clients that each post distinct batches and wait for the answer, for
// o.duration, and returns the events of the batches answered 202.
func postHTTP(client *http.Client, bm *batchMaker, gzipped bool, o options) (int64, error) {
	deadline := time.Now().Add(o.duration)
	var accepted atomic.Int64
	var failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range o.conns {
		wg.Go(func() {
			zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
			for time.Now().Before(deadline) {
				body := bm.pool.Get().(*[]byte)
				if gzipped {
					*body = bm.gzipped(zw, *body)
				} else {
					*body, _ = bm.plain(*body)
				}
				req, err := http.NewRequest(http.MethodPost, o.url+"/v1/log_event", nil)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					failed.Add(1)
					return
				}
				// The transport closes the body when it no longer reads it: only then is the buffer reused.
				req.Body = &pooledBody{Reader: bytes.NewReader(*body), buf: body, pool: &bm.pool}
				req.ContentLength = int64(len(*body))
				req.Header.Set(wire.HeaderAPIKey, o.key)
				req.Header.Set(wire.HeaderSDKType, "go-sdk")
				req.Header.Set(wire.HeaderSDKVersion, "1.35.1")
				req.Header.Set(wire.HeaderClientTime, "1767225612345")
				req.Header.Set("Content-Type", "application/json")
				if gzipped {
					req.Header.Set("Content-Encoding", "gzip")
				}
				resp, err := client.Do(req)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					failed.Add(1)
					continue
				}
				reply, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					firstErr.CompareAndSwap(nil, fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(reply)))
					failed.Add(1)
					continue
				}
				accepted.Add(1)
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return 0, fmt.Errorf("%d of %d requests failed, first: %v", f, f+accepted.Load(), firstErr.Load())
	}
	return accepted.Load() * int64(bm.n), nil
}

// pooledBody is a request body whose buffer returns to its pool when the transport closes it.
type pooledBody struct {
	*bytes.Reader
	buf    *[]byte
	pool   *sync.Pool
	closed atomic.Bool
}

func (b *pooledBody) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.pool.Put(b.buf)
	}
	return nil
}

func waitReady(ctx context.Context, url string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("readiness URL: %w", err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready within %s: %v", url, limit, last)
		case <-tick.C:
		}
	}
}

// selfCPU is the CPU time (user + system) this process used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the CPU time (user + system) of process pid so far, from /proc (0 when unknown).
func procCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces) start at the last ')'; utime and stime are
	// fields 14 and 15, in clock ticks of 1/100 s (USER_HZ is 100 in Linux's user ABI).
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0
	}
	f := strings.Fields(string(stat[end+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}
