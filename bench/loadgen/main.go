// Command loadgen sends HTTP/1.1 requests to a server on the loopback interface at a constant
// rate (open loop) and reports latency percentiles measured from when each request was due, so
// a server that falls behind cannot hide its queueing (coordinated omission, corrected as wrk2
// does). It is light enough to measure a sub-millisecond server at 10,000 requests/s on the
// same machine: one thread around epoll (engine_linux.go), a few keep-alive connections,
// requests serialized once, answers parsed only for their status and framing, no allocation
// per request, and waits timed to the microsecond. Every sample is kept: percentiles are exact.
//
// bench/loadgen/run.sh runs the proxy and loadgen on separate CPUs for check_gate, initialize
// and /healthz; by hand:
//
//	taskset -c 1 ./proxy -config config.example.yaml &
//	cd bench && go build -o /tmp/loadgen ./loadgen
//	taskset -c 0 /tmp/loadgen -spin -rate 10000 -duration 30s -url http://127.0.0.1:8000/v1/check_gate \
//	    -header 'STATSIG-API-KEY: secret-example' -body '{"user":{"userID":"u{{n}}"},"gateName":"new_checkout"}'
//
// {{n}} in the body is replaced by 0 … -users-1 in turn, so requests spread over many users.
// Requests go to an idle connection when there is one; when all are busy a request is
// pipelined behind another (HTTP/1.1 pipelining), and its wait counts in its latency. Besides
// the latency from the intended send, loadgen reports the latency from the actual send and the
// send lag: a lag that grows means loadgen itself could not keep up.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

// config is what a run does.
type config struct {
	url      *url.URL
	method   string
	body     string
	users    int
	headers  []string
	rate     int
	duration time.Duration
	warmup   time.Duration
	conns    int
	timeout  time.Duration
	spin     bool
}

// maxRequests bounds a run's memory (three int64 per request).
const maxRequests = 20_000_000

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	reqs, err := buildRequests(cfg)
	if err != nil {
		return err
	}
	res, err := generate(cfg, reqs)
	if err != nil {
		return err
	}
	res.report(out, cfg)
	return nil
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	rawURL := fs.String("url", "", "target URL (required): http:// on a loopback address")
	cfg := config{}
	fs.StringVar(&cfg.method, "method", "POST", "HTTP method")
	fs.StringVar(&cfg.body, "body", "", "request body; {{n}} is replaced by the request number modulo -users")
	fs.IntVar(&cfg.users, "users", 1000, "distinct values of {{n}}")
	fs.IntVar(&cfg.rate, "rate", 1000, "requests per second")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long to send (measured)")
	fs.DurationVar(&cfg.warmup, "warmup", 2*time.Second, "how long to send at the same rate before measuring")
	fs.IntVar(&cfg.conns, "conns", 16, "keep-alive connections")
	fs.DurationVar(&cfg.timeout, "timeout", 5*time.Second, "how long to wait for answers after the last request")
	fs.BoolVar(&cfg.spin, "spin", false, "poll instead of sleeping (85% of the time): the most precise timing, for a core of loadgen's own (taskset)")
	var hdrs headers
	fs.Var(&hdrs, "header", "a request header 'Name: value' (repeatable)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	cfg.headers = hdrs
	u, err := loopbackURL(*rawURL)
	if err != nil {
		return cfg, err
	}
	cfg.url = u
	switch {
	case cfg.rate <= 0 || cfg.rate > 1_000_000:
		return cfg, errors.New("-rate must be 1 to 1000000")
	case cfg.conns <= 0 || cfg.conns > 10_000:
		return cfg, errors.New("-conns must be 1 to 10000")
	case cfg.users <= 0 || cfg.users > 1_000_000:
		return cfg, errors.New("-users must be 1 to 1000000")
	case cfg.duration <= 0 || cfg.warmup < 0 || cfg.timeout <= 0:
		return cfg, errors.New("-duration and -timeout must be positive, -warmup not negative")
	case cfg.total() > maxRequests:
		return cfg, fmt.Errorf("-rate × (-warmup + -duration) is over %d requests", maxRequests)
	case cfg.method == "" || strings.ContainsAny(cfg.method, " \r\n"):
		return cfg, errors.New("-method must be one word")
	}
	return cfg, nil
}

// loopbackURL accepts only plain HTTP to this machine: loadgen is for benchmarks on 127.0.0.1.
func loopbackURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("-url %q: want http://127.0.0.1:PORT/path", raw)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("-url %q: only loopback addresses (127.0.0.1, ::1, localhost)", raw)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(host, "80")
	}
	return u, nil
}

// warm and total are the requests of the warm-up and of the whole run.
func (c config) warm() int  { return int(float64(c.rate) * c.warmup.Seconds()) }
func (c config) total() int { return c.warm() + int(float64(c.rate)*c.duration.Seconds()) }

// buildRequests serializes the request once per distinct body.
func buildRequests(cfg config) ([][]byte, error) {
	n := 1
	if strings.Contains(cfg.body, "{{n}}") {
		n = cfg.users
	}
	reqs := make([][]byte, n)
	for i := range reqs {
		body := strings.ReplaceAll(cfg.body, "{{n}}", fmt.Sprint(i))
		r, err := buildRequest(cfg.method, cfg.url.Host, cfg.url.RequestURI(), cfg.headers, body)
		if err != nil {
			return nil, err
		}
		reqs[i] = r
	}
	return reqs, nil
}

// result holds the times of every request of a run, as nanoseconds since its start.
type result struct {
	warm      int
	intended  []int64 // when each request was due
	sent      []int64 // when it was written
	done      []int64 // when its answer was read; -1: never
	pipelined int     // requests sent on a connection still busy with another
	sendErrs  int
	statuses  map[int]int // of the measured requests
	distinct  int         // distinct requests sent
	connErrs  []string
	cpu       time.Duration
	wall      time.Duration
}

func newResult(cfg config, distinct int) *result {
	total := cfg.total()
	r := &result{
		warm:     cfg.warm(),
		intended: make([]int64, total),
		sent:     make([]int64, total),
		done:     make([]int64, total),
		statuses: map[int]int{},
		distinct: distinct,
	}
	for i := range r.done {
		r.done[i] = -1
	}
	return r
}

// due is when request i is due, in nanoseconds from the start.
func (c config) due(i int) int64 { return int64(float64(i) * float64(time.Second) / float64(c.rate)) }

// percentiles of a sorted sample (nearest rank).
func percentile(sorted []int64, q float64) int64 {
	if len(sorted) == 0 {
		return -1
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

const unanswered = math.MaxInt64

// summary is the measured part of a run.
type summary struct {
	requests, answered int
	latency            []int64 // from intended send to answer, sorted; unanswered last
	service            []int64 // from actual send to answer, sorted; unanswered last
	lag                []int64 // actual - intended send, sorted
	firstDue, lastDone int64
}

func (r *result) summarize() summary {
	s := summary{requests: len(r.intended) - r.warm, lastDone: -1}
	if s.requests <= 0 {
		return s
	}
	s.firstDue = r.intended[r.warm]
	s.latency = make([]int64, 0, s.requests)
	s.service = make([]int64, 0, s.requests)
	s.lag = make([]int64, 0, s.requests)
	for i := r.warm; i < len(r.intended); i++ {
		s.lag = append(s.lag, r.sent[i]-r.intended[i])
		if r.done[i] < 0 {
			s.latency = append(s.latency, unanswered)
			s.service = append(s.service, unanswered)
			continue
		}
		s.answered++
		s.lastDone = max(s.lastDone, r.done[i])
		s.latency = append(s.latency, r.done[i]-r.intended[i])
		s.service = append(s.service, r.done[i]-r.sent[i])
	}
	slices.Sort(s.latency)
	slices.Sort(s.service)
	slices.Sort(s.lag)
	return s
}

func ms(ns int64) string {
	if ns == unanswered {
		return "unanswered"
	}
	return fmt.Sprintf("%.3fms", float64(ns)/1e6)
}

func (r *result) report(out io.Writer, cfg config) {
	s := r.summarize()
	fmt.Fprintf(out, "%s %s at %d/s for %s (+%s warm-up, not counted), %d connections, %d distinct requests\n",
		cfg.method, cfg.url, cfg.rate, cfg.duration, cfg.warmup, cfg.conns, r.distinct)
	achieved := 0.0
	if s.lastDone > s.firstDue {
		achieved = float64(s.answered) / (float64(s.lastDone-s.firstDue) / 1e9)
	}
	fmt.Fprintf(out, "%d requests, %d answered (%.0f/s achieved, %d/s target), statuses %v, unanswered %d, send errors %d\n",
		s.requests, s.answered, achieved, cfg.rate, r.statuses, s.requests-s.answered, r.sendErrs)
	line := func(name string, v []int64) {
		fmt.Fprintf(out, "%-32s p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n", name,
			ms(percentile(v, .50)), ms(percentile(v, .90)), ms(percentile(v, .99)), ms(percentile(v, .999)), ms(percentile(v, 1)))
	}
	line("latency (from intended send):", s.latency)
	line("service time (from actual send):", s.service)
	line("send lag (actual - intended):", s.lag)
	fmt.Fprintf(out, "pipelined behind a busy connection: %d of %d requests\n", r.pipelined, len(r.intended))
	if r.cpu > 0 {
		fmt.Fprintf(out, "loadgen CPU: %.2fs over %.2fs (%.0f%% of one core)\n", r.cpu.Seconds(), r.wall.Seconds(), 100*r.cpu.Seconds()/r.wall.Seconds())
	}
	for _, e := range r.connErrs {
		fmt.Fprintf(out, "connection error: %s\n", e)
	}
}
