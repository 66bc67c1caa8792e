package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func TestLoadgenSendsAtRateAndReports(t *testing.T) {
	var mu sync.Mutex
	bodies := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies[string(b)] = true
		mu.Unlock()
		if r.Header.Get("X-Key") != "k" {
			w.WriteHeader(400)
		}
	}))
	defer srv.Close()
	var out bytes.Buffer
	err := run([]string{"-url", srv.URL, "-rate", "200", "-duration", "250ms", "-users", "3", "-header", "X-Key: k", "-body", `u{{n}}`}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "50 requests") || !strings.Contains(out.String(), "map[200:50]") || !strings.Contains(out.String(), "p99") {
		t.Fatalf("report: %s", out.String())
	}
	if len(bodies) != 3 {
		t.Fatalf("bodies %v, want u0 u1 u2", bodies)
	}
	if err := run([]string{"-url", "http://example.com/"}, &out); err == nil {
		t.Fatal("a non-loopback URL was accepted")
	}
}
