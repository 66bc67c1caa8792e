package e2e_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sigedge/sigedge/forwarder"
	"github.com/sigedge/sigedge/forwarder/forwardertest"
	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/natstest"
	"github.com/sigedge/sigedge/proxy"
)

// TestRegionThroughput measures a region on this machine, with stream replicas 1 and 3 on a 3-node
// JetStream cluster: two proxies take SIGEDGE_BENCH_EVENTS events (default 200,000) as gzipped
// go-sdk log_event batches of 100 realistic exposures from SIGEDGE_BENCH_CONCURRENCY clients
// (default 32), then two forwarders drain the backlog to a fake Statsig, then both run at once.
// Everything (3 NATS servers, proxies, forwarders, load, fake) shares this process and its CPUs, so
// the numbers are a floor for the parts, and the CPU per 10,000 events an upper bound. Opt-in:
//
//	SIGEDGE_BENCH=1 go test -run TestRegionThroughput -v -timeout 30m ./forwarder/e2e/
func TestRegionThroughput(t *testing.T) {
	forwardertest.SkipUnlessBench(t, "measure a region's throughput")
	total := forwardertest.EnvInt(t, "SIGEDGE_BENCH_EVENTS", 200_000)
	conc := forwardertest.EnvInt(t, "SIGEDGE_BENCH_CONCURRENCY", 32)
	const perBatch = 100
	batches := total / perBatch
	bodies := benchBodies(t, 2*batches, perBatch) // distinct bodies: JetStream would de-duplicate repeats
	for _, replicas := range []int{1, 3} {
		t.Run(fmt.Sprintf("replicas %d", replicas), func(t *testing.T) {
			r := startBenchRegion(t, replicas)
			cpu0 := processCPU(t)
			took, retries := r.post(t, bodies[:batches], conc)
			intakeCPU := processCPU(t) - cpu0
			t.Logf("R%d intake: %d events in %s = %.0f events/s (%d batches retried after 503/errors); CPU %.2fs per 10k events",
				replicas, batches*perBatch, took.Round(time.Millisecond), float64(batches*perBatch)/took.Seconds(), retries,
				intakeCPU.Seconds()/float64(batches*perBatch)*10_000)

			cpu0, start := processCPU(t), time.Now()
			r.startForwarders(t)
			r.fake.WaitEvents(t, batches*perBatch, 20*time.Minute)
			drain := time.Since(start)
			drainCPU := processCPU(t) - cpu0
			t.Logf("R%d drain of the backlog: %d events in %s = %.0f events/s; CPU %.2fs per 10k events",
				replicas, batches*perBatch, drain.Round(time.Millisecond), float64(batches*perBatch)/drain.Seconds(),
				drainCPU.Seconds()/float64(batches*perBatch)*10_000)

			// Both at once, as in production: the time until the last event reached Statsig.
			cpu0, start = processCPU(t), time.Now()
			took, retries = r.post(t, bodies[batches:], conc)
			r.fake.WaitEvents(t, 2*batches*perBatch, 20*time.Minute)
			both := time.Since(start)
			bothCPU := processCPU(t) - cpu0
			t.Logf("R%d intake and drain together: %d events accepted in %s (%.0f events/s, %d retried), all at Statsig after %s = %.0f events/s end to end; CPU %.2fs per 10k events",
				replicas, batches*perBatch, took.Round(time.Millisecond), float64(batches*perBatch)/took.Seconds(), retries,
				both.Round(time.Millisecond), float64(batches*perBatch)/both.Seconds(), bothCPU.Seconds()/float64(batches*perBatch)*10_000)
		})
	}
}

type benchRegion struct {
	cfg     config.Config
	urls    []string
	proxies []string
	fake    *forwardertest.Fake
}

func startBenchRegion(t *testing.T, replicas int) *benchRegion {
	t.Helper()
	cluster := natstest.StartCluster(t, 3)
	fake := forwardertest.NewLightFake(t)
	cfg := config.Default()
	cfg.Log.Level = "warn"
	cfg.Proxy.Listen, cfg.Proxy.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Forwarder.AdminListen = "127.0.0.1:0"
	cfg.NATS.Embedded, cfg.NATS.URLs = false, cluster.URLs()
	cfg.NATS.Stream.Replicas = replicas
	cfg.Upstream.ConfigCDN, cfg.Upstream.API, cfg.Upstream.Events = fake.URL(), fake.URL(), fake.URL()
	cfg.RuleSets.Offline, cfg.ClientKeys = nil, nil
	cfg.RuleSets.Share.Enabled = false
	cfg.Forwarder.FlushInterval = time.Second
	cfg.Forwarder.ReplayRate = 0 // measure the forwarder, not the production cap of 20 batches/s
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := &benchRegion{cfg: cfg, urls: cluster.URLs(), fake: fake}
	for i := range 2 {
		px, _ := startProxy(t, proxy.AppOptions{Config: cfg, Logger: newLogger(io.Discard, fmt.Sprint("proxy", i)), Version: "bench"})
		r.proxies = append(r.proxies, "http://"+px.Addr().String())
	}
	return r
}

func (r *benchRegion) startForwarders(t *testing.T) {
	t.Helper()
	for i := range 2 {
		startForwarder(t, forwarder.AppOptions{Config: r.cfg, Logger: newLogger(io.Discard, fmt.Sprint("forwarder", i)), Version: "bench"})
	}
}

// post sends every body (alternating proxies) from conc clients, retrying 503s and errors as the
// SDKs do (bounded), and returns the time until the last was accepted.
func (r *benchRegion) post(t *testing.T, bodies [][]byte, conc int) (time.Duration, int64) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, DisableCompression: true}, Timeout: 30 * time.Second}
	var next, retries atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for c := range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(bodies) {
					return
				}
				ok := false
				for attempt := 0; attempt < 20 && !ok; attempt++ {
					if attempt > 0 {
						retries.Add(1)
						time.Sleep(100 * time.Millisecond) // the SDKs' backoff is longer still
					}
					req, _ := http.NewRequest("POST", r.proxies[(i+c)%len(r.proxies)]+"/v1/log_event", bytes.NewReader(bodies[i]))
					req.Header.Set("STATSIG-API-KEY", fmt.Sprintf("secret-bench%037d", i%4))
					req.Header.Set("Content-Encoding", "gzip")
					req.Header.Set("STATSIG-SDK-TYPE", "go-sdk")
					req.Header.Set("STATSIG-SDK-VERSION", "1.35.1")
					res, err := client.Do(req)
					if err != nil {
						continue
					}
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					ok = res.StatusCode == http.StatusAccepted
				}
				if !ok {
					failed.Store(fmt.Sprintf("batch %d not accepted after 20 attempts", i))
					return
				}
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f != nil {
		t.Fatal(f)
	}
	return time.Since(start), retries.Load()
}

// benchBodies builds n distinct gzipped log_event bodies of perBatch realistic exposures each.
func benchBodies(t *testing.T, n, perBatch int) [][]byte {
	t.Helper()
	out := make([][]byte, n)
	var plain bytes.Buffer
	for b := range out {
		plain.Reset()
		plain.WriteString(`{"events":[`)
		for i := range perBatch {
			if i > 0 {
				plain.WriteByte(',')
			}
			fmt.Fprintf(&plain, `{"eventName":"statsig::gate_exposure","user":{"userID":"user-%d","email":"u%d@example.com","customIDs":{"companyID":"c%d"},"custom":{"plan":"pro"}},"value":"","metadata":{"gate":"new_checkout","gateValue":"true","ruleID":"6Nq0mUKkBLkAGVIfMCbNNr","reason":"Network","configSyncTime":"1767225600000","initTime":"1767225600000","serverTime":"1767225612345","id":"b%d-%d"},"secondaryExposures":[{"gate":"employees","gateValue":"false","ruleID":"default"}],"time":1767225612345,"statsigMetadata":null}`, i, i, i%50, b, i)
		}
		plain.WriteString(`],"statsigMetadata":{"sdkType":"go-sdk","sdkVersion":"1.35.1","languageVersion":"go1.26","sessionID":"8d6f1c9e"}}`)
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		_, _ = zw.Write(plain.Bytes())
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		out[b] = gz.Bytes()
	}
	return out
}

// processCPU is the CPU time (user + system) this process used so far.
func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
