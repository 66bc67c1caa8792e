package forwardertest

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sigedge/sigedge/internal/wire"
)

// DropConnection, returned by a respond function, closes the connection without an answer: a
// network error for the client.
const DropConnection = -1

// Request is one request as the fake saw it.
type Request struct {
	Path, Query     string
	Key             string // STATSIG-API-KEY
	SDKType         string
	SDKVersion      string
	EventCount      string // the STATSIG-EVENT-COUNT header
	ClientTime      string // the STATSIG-CLIENT-TIME header
	ContentEncoding string
	Meta            string   // raw statsigMetadata
	IDs             []string // metadata.id of each event, in order ("" when absent)
	Events          int      // number of events in the body
	At              time.Time
}

// Fake is the fake Statsig: an HTTP server on 127.0.0.1 that records every event it accepts, so a
// test can check that each event arrived exactly once. Events are identified by their metadata.id
// (set by the test). NewFake starts it (closed at the end of the test); SetRespond decides each
// request's status (and may block, to hold a request); WaitIDs waits for events; Counts and Accepted
// read what arrived; AssertExactlyOnce checks it. It is safe for concurrent use.
type Fake struct {
	srv *httptest.Server
	// light skips JSON decoding (benchmarks): only the STATSIG-EVENT-COUNT header is counted.
	light bool

	mu       sync.Mutex
	respond  func(r *Request, n int) int
	requests int
	accepted []Request
	ids      map[string]int
	events   int
	changed  chan struct{}
}

// NewFake starts a fake that accepts everything with 202 {"success":true}.
func NewFake(t testing.TB) *Fake {
	f := &Fake{ids: map[string]int{}, changed: make(chan struct{})}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// NewLightFake starts a fake that only counts events by the STATSIG-EVENT-COUNT header, after
// reading (and gunzipping) the body: cheap enough not to skew a benchmark of the forwarder.
func NewLightFake(t testing.TB) *Fake {
	f := NewFake(t)
	f.light = true
	return f
}

// URL is the base URL to configure as upstream.events.
func (f *Fake) URL() string { return f.srv.URL }

// SetRespond sets the function that decides each request's status (n counts requests from 1). A
// 2xx status records the request's events; any other records nothing. The function may block.
func (f *Fake) SetRespond(fn func(r *Request, n int) int) {
	f.mu.Lock()
	f.respond = fn
	f.mu.Unlock()
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	req, err := f.decode(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.requests++
	n, respond := f.requests, f.respond
	f.mu.Unlock()
	status := http.StatusAccepted
	if respond != nil {
		status = respond(req, n)
	}
	if status == DropConnection {
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				_ = c.Close()
				return
			}
		}
		status = http.StatusBadGateway
	}
	if status >= 200 && status < 300 {
		// Recorded before answering: a client that dies before reading the answer still had its
		// events taken, as with the real Statsig.
		f.mu.Lock()
		if !f.light {
			f.accepted = append(f.accepted, *req)
		}
		for _, id := range req.IDs {
			f.ids[id]++
		}
		f.events += req.Events
		close(f.changed)
		f.changed = make(chan struct{})
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"success":true}`)
		return
	}
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "0")
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, `{"message":"fake says no"}`)
}

func (f *Fake) decode(r *http.Request) (*Request, error) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, err
		}
		body = zr
	}
	req := &Request{
		Path: r.URL.Path, Query: r.URL.RawQuery,
		Key: r.Header.Get(wire.HeaderAPIKey), SDKType: r.Header.Get(wire.HeaderSDKType),
		SDKVersion: r.Header.Get(wire.HeaderSDKVersion), EventCount: r.Header.Get(wire.HeaderEventCount),
		ClientTime: r.Header.Get(wire.HeaderClientTime), ContentEncoding: r.Header.Get("Content-Encoding"),
		At: time.Now(),
	}
	if f.light {
		if _, err := io.Copy(io.Discard, body); err != nil {
			return nil, err
		}
		n, err := strconv.Atoi(req.EventCount)
		if err != nil {
			return nil, fmt.Errorf("bad %s: %q", wire.HeaderEventCount, req.EventCount)
		}
		req.Events = n
		return req, nil
	}
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	var parsed struct {
		Events []struct {
			Metadata struct {
				ID string `json:"id"`
			} `json:"metadata"`
		} `json:"events"`
		StatsigMetadata json.RawMessage `json:"statsigMetadata"`
	}
	if err := json.Unmarshal(data, &parsed); err != nil {
		return nil, fmt.Errorf("body is not JSON: %v", err)
	}
	req.Meta = string(parsed.StatsigMetadata)
	req.Events = len(parsed.Events)
	for _, e := range parsed.Events {
		req.IDs = append(req.IDs, e.Metadata.ID)
	}
	return req, nil
}

// WaitIDs waits until every id in want was accepted at least once, failing the test after timeout.
func (f *Fake) WaitIDs(t testing.TB, want []string, timeout time.Duration) {
	t.Helper()
	f.WaitIDsTimes(t, want, 1, timeout)
}

// WaitIDsTimes waits until every id in want was accepted at least n times (e.g. 2 for a batch that
// must be sent again), failing the test after timeout.
func (f *Fake) WaitIDsTimes(t testing.TB, want []string, n int, timeout time.Duration) {
	t.Helper()
	f.wait(t, timeout, func() (bool, string) {
		missing := 0
		for _, id := range want {
			if f.ids[id] < n {
				missing++
			}
		}
		if n == 1 {
			return missing == 0, fmt.Sprintf("%d of %d events have not arrived", missing, len(want))
		}
		return missing == 0, fmt.Sprintf("%d of %d events have not arrived %d times", missing, len(want), n)
	})
}

// WaitEvents waits until at least n events were accepted in all (light fakes count by header).
func (f *Fake) WaitEvents(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	f.wait(t, timeout, func() (bool, string) {
		return f.events >= n, fmt.Sprintf("%d of %d events arrived", f.events, n)
	})
}

// wait re-checks cond (called with f.mu held) after every accepted request.
func (f *Fake) wait(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		ok, why := cond()
		ch := f.changed
		f.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("fake Statsig, after %s: %s", timeout, why)
		}
	}
}

// Counts returns how often each event id was accepted, and the number of events accepted in all.
func (f *Fake) Counts() (map[string]int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make(map[string]int, len(f.ids))
	for k, v := range f.ids {
		ids[k] = v
	}
	return ids, f.events
}

// Accepted returns the accepted requests, in order (none for light fakes).
func (f *Fake) Accepted() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Request(nil), f.accepted...)
}

// WaitExactlyOnce waits until every id in want was accepted (WaitIDs), then checks that each was
// accepted exactly once and nothing else was (AssertExactlyOnce).
func (f *Fake) WaitExactlyOnce(t testing.TB, want []string, timeout time.Duration) {
	t.Helper()
	f.WaitIDs(t, want, timeout)
	f.AssertExactlyOnce(t, want)
}

// AssertExactlyOnce checks that every id in want was accepted exactly once and nothing else was.
func (f *Fake) AssertExactlyOnce(t testing.TB, want []string) {
	t.Helper()
	ids, _ := f.Counts()
	wantSet := make(map[string]bool, len(want))
	bad := 0
	for _, id := range want {
		wantSet[id] = true
		if ids[id] != 1 {
			if bad++; bad <= 20 {
				t.Errorf("event %s accepted %d times, want 1", id, ids[id])
			}
		}
	}
	for id, n := range ids {
		if !wantSet[id] {
			if bad++; bad <= 20 {
				t.Errorf("unexpected event %s accepted %d times", id, n)
			}
		}
	}
	if bad > 20 {
		t.Errorf("... %d problems in all", bad)
	}
}
