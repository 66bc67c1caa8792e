package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLoadgenSendsAtRateAndReports(t *testing.T) {
	for _, mode := range [][]string{nil, {"-spin"}} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) { testSendsAtRateAndReports(t, mode) })
	}
}

func testSendsAtRateAndReports(t *testing.T, extra []string) {
	var mu sync.Mutex
	bodies := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies[string(b)]++
		mu.Unlock()
		if r.Header.Get("X-Key") != "k" || r.URL.RawQuery != "q=1" {
			w.WriteHeader(400)
		}
	}))
	defer srv.Close()
	var out bytes.Buffer
	start := time.Now()
	err := run(append([]string{"-url", srv.URL + "/p?q=1", "-rate", "200", "-duration", "250ms", "-warmup", "50ms",
		"-conns", "2", "-users", "3", "-header", "X-Key: k", "-body", `u{{n}}`}, extra...), &out)
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	t.Log(out.String())
	// 10 warm-up requests, then 50 measured; all answered.
	for _, want := range []string{"50 requests, 50 answered", "statuses map[200:50]", "unanswered 0", "p99"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("report lacks %q:\n%s", want, out.String())
		}
	}
	// Under the lock: loadgen's raw system calls are invisible to the race detector.
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 3 || bodies["u0"]+bodies["u1"]+bodies["u2"] != 60 {
		t.Fatalf("bodies %v, want u0 u1 u2, 60 in all", bodies)
	}
	// Open loop: 60 requests at 200/s take 300 ms, not less.
	if elapsed < 295*time.Millisecond {
		t.Fatalf("60 requests at 200/s took only %s", elapsed)
	}
}

// TestLatencyCountsQueueing: a stall of the server shows in the latency of every request that
// was due during it, not only in the one that stalled (as a closed-loop client would report).
func TestLatencyCountsQueueing(t *testing.T) {
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		stall := n == 10
		mu.Unlock()
		if stall {
			time.Sleep(40 * time.Millisecond) // the stall under test (simulated service time)
		}
	}))
	defer srv.Close()
	var out bytes.Buffer
	// One connection, 100 requests 1 ms apart: requests 11-50 were due during the stall.
	err := run([]string{"-url", srv.URL, "-rate", "1000", "-duration", "100ms", "-warmup", "0s", "-conns", "1", "-body", "x"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(out.String())
	p90 := reportedMillis(t, out.String(), "latency (from intended send):", "p90")
	if p90 < 10 {
		t.Fatalf("p90 %.3f ms: the requests queued behind a 40 ms stall were not counted", p90)
	}
}

func reportedMillis(t *testing.T, report, line, pct string) float64 {
	t.Helper()
	re := regexp.MustCompile(regexp.QuoteMeta(line) + `.*\b` + pct + ` ([0-9.]+)ms`)
	m := re.FindStringSubmatch(report)
	if m == nil {
		t.Fatalf("no %s %s in:\n%s", line, pct, report)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestRunIsBounded: a server that never answers ends the run -timeout after the last request,
// with every request reported unanswered.
func TestRunIsBounded(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	var out bytes.Buffer
	start := time.Now()
	err := run([]string{"-url", srv.URL, "-rate", "100", "-duration", "100ms", "-warmup", "0s", "-timeout", "200ms", "-conns", "2"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Fatalf("run took %s", elapsed)
	}
	for _, want := range []string{"10 requests, 0 answered", "unanswered 10", "p50 unanswered", "connection error"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// TestChunkedAndLargeAnswers: answers without Content-Length (chunked) and larger than the read
// buffer are read to their end, so the next answer on the connection is found.
func TestChunkedAndLargeAnswers(t *testing.T) {
	big := strings.Repeat("x", 200<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chunked" {
			for range 3 {
				_, _ = io.WriteString(w, big[:5000])
				w.(http.Flusher).Flush()
			}
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		_, _ = io.WriteString(w, big)
	}))
	defer srv.Close()
	for _, path := range []string{"/chunked", "/large"} {
		var out bytes.Buffer
		if err := run([]string{"-url", srv.URL + path, "-method", "GET", "-rate", "200", "-duration", "100ms", "-warmup", "0s", "-conns", "1"}, &out); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "statuses map[200:20]") {
			t.Fatalf("%s:\n%s", path, out.String())
		}
	}
}

func TestFlags(t *testing.T) {
	tests := []struct {
		args []string
		ok   bool
	}{
		{[]string{"-url", "http://127.0.0.1:8000/v1/check_gate"}, true},
		{[]string{"-url", "http://localhost:8000/"}, true},
		{[]string{"-url", "http://[::1]:8000/"}, true},
		{[]string{"-url", "http://127.9.9.9/"}, true},
		{[]string{"-url", "http://example.com/"}, false},
		{[]string{"-url", "http://10.0.0.1:8000/"}, false},
		{[]string{"-url", "http://127.0.0.1.example.com/"}, false},
		{[]string{"-url", "https://127.0.0.1/"}, false},
		{[]string{}, false},
		{[]string{"-url", "http://127.0.0.1/", "-rate", "0"}, false},
		{[]string{"-url", "http://127.0.0.1/", "-conns", "0"}, false},
		{[]string{"-url", "http://127.0.0.1/", "-rate", "1000000", "-duration", "1h"}, false},
		{[]string{"-url", "http://127.0.0.1/", "-timeout", "0s"}, false},
	}
	for _, tc := range tests {
		_, err := parseFlags(tc.args)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v, want ok %v", tc.args, err, tc.ok)
		}
	}
}

func TestBuildRequest(t *testing.T) {
	tests := []struct {
		method, body string
		headers      []string
		want         string
		ok           bool
	}{
		{"POST", `{"a":1}`, []string{"STATSIG-API-KEY: secret-x", "X-Empty:"},
			"POST /p?q=1 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: sigedge-loadgen\r\nContent-Length: 7\r\nSTATSIG-API-KEY: secret-x\r\nX-Empty: \r\n\r\n{\"a\":1}", true},
		{"GET", "", nil, "GET /p?q=1 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: sigedge-loadgen\r\n\r\n", true},
		{"POST", "", nil, "POST /p?q=1 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: sigedge-loadgen\r\nContent-Length: 0\r\n\r\n", true},
		{"POST", "", []string{"no colon"}, "", false},
		{"POST", "", []string{"X-A: b\r\nX-Injected: c"}, "", false},
		{"POST", "", []string{"Content-Length: 5"}, "", false},
		{"POST", "", []string{"Bad Name: v"}, "", false},
	}
	for _, tc := range tests {
		got, err := buildRequest(tc.method, "127.0.0.1:8000", "/p?q=1", tc.headers, tc.body)
		if (err == nil) != tc.ok || string(got) != tc.want {
			t.Errorf("%s %q %q: %q, %v; want %q", tc.method, tc.body, tc.headers, got, err, tc.want)
		}
	}
}

func TestResponseParser(t *testing.T) {
	type answer struct {
		status  int
		closing bool
	}
	tests := []struct {
		name, in string
		noBody   bool
		want     []answer // the complete answers in the input
		ok       bool
	}{
		{"content length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 201 Created\r\ncontent-length:0\r\n\r\n", false, []answer{{200, false}, {201, false}}, true},
		{"close", "HTTP/1.1 404 Not Found\r\ncontent-length:2\r\nconnection: Close\r\n\r\n{}", false, []answer{{404, true}}, true},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", false, []answer{{200, false}, {204, false}}, true},
		{"gzip then chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n", false, []answer{{200, false}}, true},
		{"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", true, []answer{{200, false}, {200, false}}, true},
		{"interim first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", false, []answer{{201, false}}, true},
		{"unframed: to the end", "HTTP/1.0 200 OK\r\n\r\nall of it", false, nil, true},
		{"incomplete body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", false, nil, true},
		{"bad status line", "HTTP/1.1 2x0 OK\r\n\r\n", false, nil, false},
		{"status too long", "HTTP/1.1 2000 OK\r\n\r\n", false, nil, false},
		{"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", false, nil, false},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false, nil, false},
		{"header without colon", "HTTP/1.1 200 OK\r\nnonsense\r\n\r\n", false, nil, false},
		{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false, nil, false},
		{"chunk without CRLF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n", false, nil, false},
		{"headers too long", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", maxHeaderBytes) + "\r\n\r\n", false, nil, false},
	}
	for _, tc := range tests {
		// All at once, then byte by byte: answers split anywhere across reads parse the same.
		for _, step := range []int{len(tc.in), 1} {
			t.Run(fmt.Sprintf("%s/%d", tc.name, step), func(t *testing.T) {
				p := responseParser{noBody: tc.noBody}
				var got []answer
				var buf []byte
				var err error
				for i := 0; i < len(tc.in) && err == nil; i += step {
					buf = append(buf, tc.in[i:min(i+step, len(tc.in))]...)
					for {
						var n int
						var done bool
						n, done, err = p.feed(buf)
						buf = buf[n:]
						if err != nil || !done {
							break
						}
						got = append(got, answer{p.status, p.closing})
					}
				}
				if (err == nil) != tc.ok {
					t.Fatalf("err %v, want ok %v", err, tc.ok)
				}
				if tc.ok && fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Fatalf("answers %v, want %v", got, tc.want)
				}
			})
		}
	}
}

func TestResponseParserDoesNotAllocate(t *testing.T) {
	body := `{"name":"new_checkout","value":true,"rule_id":"x","group_name":null}`
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	var p responseParser
	allocs := testing.AllocsPerRun(100, func() {
		if n, done, err := p.feed(resp); err != nil || !done || n != len(resp) || p.status != 200 {
			panic(fmt.Sprint(n, done, err))
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per response", allocs)
	}
}

func TestSummaryMeasuresFromTheIntendedTime(t *testing.T) {
	// Four requests after one warm-up: due every 100 µs; the third was sent 1 ms late; the last
	// was never answered.
	r := &result{
		warm:     1,
		intended: []int64{0, 100e3, 200e3, 300e3, 400e3},
		sent:     []int64{0, 100e3, 200e3, 1300e3, 400e3},
		done:     []int64{50e3, 150e3, 250e3, 1350e3, -1},
	}
	s := r.summarize()
	if s.requests != 4 || s.answered != 3 {
		t.Fatalf("%d requests, %d answered", s.requests, s.answered)
	}
	wantLatency := []int64{50e3, 50e3, 1050e3, unanswered}
	wantService := []int64{50e3, 50e3, 50e3, unanswered}
	wantLag := []int64{0, 0, 0, 1000e3}
	if fmt.Sprint(s.latency) != fmt.Sprint(wantLatency) || fmt.Sprint(s.service) != fmt.Sprint(wantService) || fmt.Sprint(s.lag) != fmt.Sprint(wantLag) {
		t.Fatalf("latency %v service %v lag %v", s.latency, s.service, s.lag)
	}
	for _, tc := range []struct {
		q    float64
		want int64
	}{{0.5, 50e3}, {0.75, 1050e3}, {0.76, unanswered}, {1, unanswered}} {
		if got := percentile(s.latency, tc.q); got != tc.want {
			t.Errorf("p%v = %d, want %d", tc.q*100, got, tc.want)
		}
	}
}
