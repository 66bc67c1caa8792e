// Command loadgen sends HTTP requests at a fixed rate (open loop) and reports the latency
// percentiles, measured from when each request was due, so a slow server cannot hide its queueing
// (no coordinated omission). Use it against a proxy on 127.0.0.1:
//
//	go run ./cmd/proxy -config config.example.yaml &
//	cd bench && go run ./loadgen -rate 10000 -duration 10s -url http://127.0.0.1:8000/v1/check_gate \
//	    -header 'STATSIG-API-KEY: secret-example' -body '{"user":{"userID":"u{{n}}"},"gateName":"new_checkout"}'
//
// {{n}} in the body is replaced by a counter modulo -users, so requests spread over many users.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	url := fs.String("url", "", "target URL (required; loopback only)")
	method := fs.String("method", "POST", "HTTP method")
	body := fs.String("body", "", "request body; {{n}} is replaced by the request number modulo -users")
	users := fs.Int("users", 1000, "distinct values of {{n}}")
	rate := fs.Int("rate", 1000, "requests per second")
	duration := fs.Duration("duration", 10*time.Second, "how long to send")
	conns := fs.Int("conns", 64, "concurrent connections (workers)")
	var hdrs headers
	fs.Var(&hdrs, "header", "a request header 'Name: value' (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" || !(strings.HasPrefix(*url, "http://127.") || strings.HasPrefix(*url, "http://localhost") || strings.HasPrefix(*url, "http://[::1]")) {
		return errors.New("-url must be a loopback http URL")
	}
	if *rate <= 0 || *conns <= 0 || *users <= 0 {
		return errors.New("-rate, -conns and -users must be positive")
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns}, Timeout: 10 * time.Second}

	total := int(float64(*rate) * duration.Seconds())
	due := make(chan time.Time, total)
	lat := make([]time.Duration, total)
	var mu sync.Mutex
	statuses := map[int]int{}
	failures := 0
	var wg sync.WaitGroup
	var next int
	var nextMu sync.Mutex
	for w := 0; w < *conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range due {
				nextMu.Lock()
				i := next
				next++
				nextMu.Unlock()
				b := strings.ReplaceAll(*body, "{{n}}", strconv.Itoa(i%*users))
				req, _ := http.NewRequest(*method, *url, bytes.NewBufferString(b))
				for _, h := range hdrs {
					k, v, _ := strings.Cut(h, ":")
					req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
				}
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				l := time.Since(d)
				mu.Lock()
				lat[i] = l
				if err != nil {
					failures++
				} else {
					statuses[resp.StatusCode]++
				}
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	interval := time.Second / time.Duration(*rate)
	// Requests are released in 1 ms slots: one sleep per slot instead of one per request keeps the
	// generator's own timer overhead out of the measurement.
	const slot = time.Millisecond
	for i := 0; i < total; {
		if w := time.Until(start.Add(time.Duration(i) * interval)); w > 0 {
			time.Sleep(w)
		}
		until := time.Since(start) + slot
		for ; i < total && time.Duration(i)*interval < until; i++ {
			due <- start.Add(time.Duration(i) * interval)
		}
	}
	close(due)
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	fmt.Fprintf(out, "%d requests in %s (%.0f/s achieved, %d/s target), statuses %v, transport failures %d\n",
		total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), *rate, statuses, failures)
	fmt.Fprintf(out, "latency p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
		pct(.50).Round(time.Microsecond), pct(.90).Round(time.Microsecond), pct(.99).Round(time.Microsecond),
		pct(.999).Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	return nil
}
