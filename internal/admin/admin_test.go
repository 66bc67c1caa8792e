package admin

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestEndpoints(t *testing.T) {
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "sigedge_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	s := New(reg, slog.New(slog.DiscardHandler))
	var natsErr error = errors.New("not connected to NATS")
	s.AddCheck("nats", func() error { return natsErr })
	s.AddCheck("rulesets", func() error { return nil })
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	readyBody := func(body string) readiness {
		var r readiness
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("readyz body %q: %v", body, err)
		}
		return r
	}

	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("healthz %d", code)
	}
	code, body := get("/readyz")
	if r := readyBody(body); code != 503 || r.Ready || r.Reasons["nats"] != "not connected to NATS" || len(r.Reasons) != 1 {
		t.Errorf("readyz while NATS down: %d %s", code, body)
	}
	for _, tc := range []struct {
		query    string
		code     int
		excluded bool
	}{
		{"?exclude=nats", 200, true},
		{"?exclude=rulesets", 503, false},
		{"?exclude=rulesets&exclude=nats", 200, true},
		{"?exclude=natz", 400, false}, // a typo must not pass silently
	} {
		code, body := get("/readyz" + tc.query)
		r := readyBody(body)
		if code != tc.code || r.Ready != (tc.code == 200) || (r.Excluded["nats"] != "") != tc.excluded {
			t.Errorf("readyz%s while NATS down: %d %s", tc.query, code, body)
		}
	}
	natsErr = nil
	if code, body := get("/readyz"); code != 200 || !readyBody(body).Ready {
		t.Errorf("readyz when ready: %d %s", code, body)
	}
	s.SetDraining()
	for _, path := range []string{"/readyz", "/readyz?exclude=nats"} {
		if code, body := get(path); code != 503 || readyBody(body).Reasons["shutdown"] == "" {
			t.Errorf("%s while draining: %d %s", path, code, body)
		}
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("healthz while draining %d (liveness must not fail during a drain)", code)
	}
	code, body = get("/metrics")
	if code != 200 || !strings.Contains(body, "sigedge_test_total 3") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("metrics: %d %.200s", code, body)
	}
}

// TestPprofOnlyWhenEnabled: the profiler is not served unless debug.pprof turns it on.
func TestPprofOnlyWhenEnabled(t *testing.T) {
	tests := []struct {
		name    string
		enable  bool
		path    string
		status  int
		bodyHas string
	}{
		{"off: index", false, "/debug/pprof/", http.StatusNotFound, ""},
		{"off: heap", false, "/debug/pprof/heap?debug=1", http.StatusNotFound, ""},
		{"on: index", true, "/debug/pprof/", http.StatusOK, "goroutine"},
		{"on: heap", true, "/debug/pprof/heap?debug=1", http.StatusOK, "heap profile"},
		{"on: goroutines", true, "/debug/pprof/goroutine?debug=1", http.StatusOK, "goroutine profile"},
		{"on: cmdline", true, "/debug/pprof/cmdline", http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(NewRegistry(), slog.New(slog.DiscardHandler))
			if tt.enable {
				s.EnablePprof()
			}
			srv := httptest.NewServer(s.Handler())
			t.Cleanup(srv.Close)
			resp, err := http.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.bodyHas) {
				t.Fatalf("GET %s: %d %.200q, want %d containing %q", tt.path, resp.StatusCode, body, tt.status, tt.bodyHas)
			}
		})
	}
}
