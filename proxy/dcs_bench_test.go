package proxy

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sigedge/sigedge/configcache/configcachetest"
	"github.com/sigedge/sigedge/internal/config"
)

// loadPayload is the shared conformance project (~430 kB dcs-v2) when present, else a generated
// rule set of similar size.
func loadPayload(b testing.TB) []byte {
	if data, err := os.ReadFile(filepath.Join("..", "..", "shared", "conformance", "eval_proj_dcs.json")); err == nil {
		return data
	}
	s := configcachetest.Spec{Time: 1000}
	for i := 0; len(s.V2()) < 430_000; i++ {
		s.Gates = append(s.Gates, configcachetest.Gate{Name: fmt.Sprintf("generated_gate_with_a_longish_name_%05d", i), Pass: i%2 == 0})
	}
	b.Logf("../shared/conformance/eval_proj_dcs.json not found: using a generated rule set")
	return s.V2()
}

// dcsBench is a proxy serving one cached rule set to "secret-bench", and what a baseline server
// needs to serve the same bytes.
type dcsBench struct {
	app           *App
	url           string // the proxy's base URL
	payload, gzip []byte
	time          int64 // the rule set's time (lcut): sinceTime for has_updates:false answers
}

func startDCSBench(tb testing.TB) *dcsBench {
	d := &dcsBench{payload: loadPayload(tb)}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	_, _ = zw.Write(d.payload)
	_ = zw.Close()
	d.gzip = gz.Bytes()
	var head struct {
		Time int64 `json:"time"`
	}
	if err := json.Unmarshal(d.payload, &head); err != nil {
		tb.Fatal(err)
	}
	d.time = head.Time
	up := configcachetest.New(tb)
	up.SetPayload(benchKey, 2, d.payload)
	cfg := rsConfig(tb, up, func(c *config.Config) {
		c.RuleSets.PollInterval = 10 * time.Second
		c.RuleSets.PollJitter = time.Second
		c.RuleSets.Share.LeaseTTL = 30 * time.Second
		c.Log.Level = "warn"
	})
	d.app, d.url, _ = rsStartProxy(tb, cfg)
	return d
}

const benchKey = "secret-bench"

// BenchmarkDCS measures rule-set answers per second through the proxy and, in the same run,
// through a minimal Go server returning the same bytes (the practical limit on this machine):
//
//	go test -run '^$' -bench BenchmarkDCS -benchtime 5s ./proxy/
//
// Both servers and the load-generating client share the machine; compare the req/s metric of
// proxy/… with baseline/… for the same case.
func BenchmarkDCS(b *testing.B) {
	d := startDCSBench(b)
	proxyURL, key := d.url, benchKey
	baseURL := benchBaseline(b, d.payload, d.gzip)
	since := strconv.FormatInt(d.time, 10)
	cases := []struct {
		name, query, encoding string
	}{
		{"full", "", ""},
		{"full_gzip", "", "gzip"},
		{"has_updates_false", "?sinceTime=" + since, "gzip"},
	}
	for _, tc := range cases {
		for _, target := range []struct{ name, base string }{{"proxy", proxyURL}, {"baseline", baseURL}} {
			b.Run(tc.name+"/"+target.name, func(b *testing.B) {
				url := target.base + "/v2/download_config_specs/" + key + ".json" + tc.query
				benchGet(b, url, key, tc.encoding)
			})
		}
	}
}

// BenchmarkDCSHandler is the CPU of one has_updates:false answer inside the process, without the
// network, next to the baseline server's handler; the difference is what the proxy adds (routing,
// key checks, cache lookup, metrics):
//
//	go test -run '^$' -bench BenchmarkDCSHandler -benchmem ./proxy/
func BenchmarkDCSHandler(b *testing.B) {
	d := startDCSBench(b)
	req := httptest.NewRequest("GET", "/v2/download_config_specs/"+benchKey+".json?sinceTime="+strconv.FormatInt(d.time, 10), nil)
	req.Header.Set("STATSIG-API-KEY", benchKey)
	req.Header.Set("Accept-Encoding", "gzip")
	for _, target := range []struct {
		name string
		h    http.Handler
	}{{"proxy", d.app.Handler()}, {"baseline", baselineHandler(d.payload, nil)}} {
		b.Run(target.name, func(b *testing.B) {
			w := &discardWriter{h: http.Header{}}
			target.h.ServeHTTP(w, req)
			if w.n != len(noUpdatesBody) {
				b.Fatalf("answer of %d bytes, want %s", w.n, noUpdatesBody)
			}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				target.h.ServeHTTP(w, req)
			}
		})
	}
}

// discardWriter is a ResponseWriter that only counts, so a benchmark sees the handler's own cost.
type discardWriter struct {
	h http.Header
	n int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { w.n = len(p); return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// benchBaseline is the practical limit: a minimal net/http server answering the same bytes with
// the same framing (Content-Type, Content-Length, gzip when asked), nothing else.
func benchBaseline(b testing.TB, payload, gz []byte) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: baselineHandler(payload, gz)}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

func baselineHandler(payload, gz []byte) http.Handler {
	noUpdates := []byte(`{"has_updates":false}`)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := payload
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("sinceTime") != "" {
			body = noUpdates
		} else if r.Header.Get("Accept-Encoding") == "gzip" {
			body = gz
			w.Header().Set("Content-Encoding", "gzip")
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})
}

// benchGet runs parallel GETs on 127.0.0.1 (16 goroutines on 2 cores) and reports req/s and MB/s.
func benchGet(b *testing.B, url, key, encoding string) {
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get := func(buf []byte) (int, error) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("STATSIG-API-KEY", key)
		if encoding != "" {
			req.Header.Set("Accept-Encoding", encoding)
		}
		res, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		n := 0
		for {
			m, err := res.Body.Read(buf)
			n += m
			if err == io.EOF {
				break
			}
			if err != nil {
				res.Body.Close()
				return n, err
			}
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			return n, fmt.Errorf("status %d", res.StatusCode)
		}
		return n, nil
	}
	n, err := get(make([]byte, 64<<10)) // warm the cache and check the answer once
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(n))
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 64<<10)
		for pb.Next() {
			if _, err := get(buf); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// TestLoadTargets serves the benchmark's proxy and baseline for an external load tool. It is
// opt-in: SIGEDGE_LOAD_TARGETS=60s keeps both up for 60 s and writes their URLs (proxy, then
// baseline, one per line, then the rule set's time for sinceTime) to SIGEDGE_LOAD_TARGETS_FILE.
// bench/ruleset-wrk.sh runs the whole comparison with wrk on pinned cores; by hand:
//
//	SIGEDGE_LOAD_TARGETS=120s SIGEDGE_LOAD_TARGETS_FILE=/tmp/targets go test -run TestLoadTargets ./proxy/ &
//	wrk -t2 -c32 -d10s -H 'Accept-Encoding: gzip' "$(sed -n 1p /tmp/targets)/v2/download_config_specs/secret-bench.json"
//	wrk -t2 -c32 -d10s -H 'Accept-Encoding: gzip' "$(sed -n 2p /tmp/targets)/v2/download_config_specs/secret-bench.json"
func TestLoadTargets(t *testing.T) {
	serveFor, err := time.ParseDuration(os.Getenv("SIGEDGE_LOAD_TARGETS"))
	if err != nil || serveFor <= 0 {
		t.Skip("set SIGEDGE_LOAD_TARGETS=<duration> (and SIGEDGE_LOAD_TARGETS_FILE) to serve load-test targets")
	}
	d := startDCSBench(t)
	proxyURL, baseURL := d.url, benchBaseline(t, d.payload, d.gzip)
	if st, _, _ := rsDo(t, "GET", proxyURL+"/v2/download_config_specs/"+benchKey+".json", "", nil); st != 200 {
		t.Fatalf("warm-up: %d", st)
	}
	if f := os.Getenv("SIGEDGE_LOAD_TARGETS_FILE"); f != "" {
		if err := os.WriteFile(f, []byte(proxyURL+"\n"+baseURL+"\n"+strconv.FormatInt(d.time, 10)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("proxy %s, baseline %s, lcut %d", proxyURL, baseURL, d.time)
	time.Sleep(serveFor) // serving for the external load tool; nothing to await
}
