// Package admin serves the operational endpoints of both binaries on their admin port:
// /healthz (liveness), /readyz (readiness: every registered check passes), /metrics
// (Prometheus text format from the process's own registry) and, when enabled, /debug/pprof/.
//
// /readyz?exclude=<check> (repeatable, as Kubernetes' own API server does) leaves named checks
// out of the verdict; they are still run and listed under "excluded". A proxy probed with
// /readyz?exclude=nats stays in its Service while the region's NATS is down, because rule sets and
// evaluations are still served from memory (event intake answers 503 with Retry-After meanwhile).
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports why the process is not ready, or nil when it is.
type Check func() error

// Server is the admin HTTP server. Register checks before or after Start; it is safe for
// concurrent use.
type Server struct {
	registry *prometheus.Registry
	logger   *slog.Logger

	mu       sync.RWMutex
	checks   map[string]Check
	draining bool

	mux *http.ServeMux
	srv *http.Server
	ln  net.Listener
}

// NewRegistry returns a Prometheus registry with the Go runtime and process collectors, which each
// binary passes to its components (no global registry).
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// New returns an admin server exposing reg.
func New(reg *prometheus.Registry, logger *slog.Logger) *Server {
	s := &Server{registry: reg, logger: logger, checks: map[string]Check{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: false}))
	s.mux = mux
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s
}

// EnablePprof serves Go's profiler at /debug/pprof/ (config debug.pprof). Call it before Start.
func (s *Server) EnablePprof() {
	s.mux.HandleFunc("GET /debug/pprof/", pprof.Index) // also the named profiles: heap, goroutine, …
	s.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	s.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

// AddCheck registers a readiness check under name (e.g. "nats", "rulesets").
func (s *Server) AddCheck(name string, c Check) {
	s.mu.Lock()
	s.checks[name] = c
	s.mu.Unlock()
}

// SetDraining makes /readyz answer 503 from now on, so load balancers stop sending traffic while
// the process shuts down.
func (s *Server) SetDraining() {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
}

// Handler returns the admin endpoints, for tests and for serving on another listener.
func (s *Server) Handler() http.Handler { return s.srv.Handler }

// Start listens on addr and serves in the background. It returns the bound address.
func (s *Server) Start(addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s.ln = ln
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("admin server stopped", "err", err)
		}
	}()
	return ln.Addr(), nil
}

// Shutdown stops the admin server.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
}

// readiness is the /readyz body.
type readiness struct {
	Ready   bool              `json:"ready"`
	Reasons map[string]string `json:"reasons,omitempty"`
	// Excluded are failing checks the request asked to leave out (?exclude=name).
	Excluded map[string]string `json:"excluded,omitempty"`
}

// Ready runs every check and returns the failing ones by name.
func (s *Server) Ready() (bool, map[string]string) {
	ok, reasons, _ := s.ready(nil)
	return ok, reasons
}

// ready runs every check; failures of the excluded ones are returned apart and do not count.
func (s *Server) ready(exclude []string) (bool, map[string]string, map[string]string) {
	s.mu.RLock()
	draining := s.draining
	names := make([]string, 0, len(s.checks))
	for n := range s.checks {
		names = append(names, n)
	}
	checks := make([]Check, len(names))
	sort.Strings(names)
	for i, n := range names {
		checks[i] = s.checks[n]
	}
	s.mu.RUnlock()

	reasons, excluded := map[string]string{}, map[string]string{}
	if draining {
		reasons["shutdown"] = "the process is shutting down" // never excludable
	}
	for i, c := range checks {
		if err := c(); err != nil {
			if slices.Contains(exclude, names[i]) {
				excluded[names[i]] = err.Error()
			} else {
				reasons[names[i]] = err.Error()
			}
		}
	}
	return len(reasons) == 0, reasons, excluded
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	exclude := r.URL.Query()["exclude"]
	s.mu.RLock()
	for _, name := range exclude {
		if _, known := s.checks[name]; !known {
			s.mu.RUnlock()
			// A typo would silently make the probe stricter or laxer than intended.
			writeJSON(w, http.StatusBadRequest, map[string]any{"ready": false, "error": "unknown readiness check " + strconv.Quote(name) + " in exclude"})
			return
		}
	}
	s.mu.RUnlock()
	ok, reasons, excluded := s.ready(exclude)
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, readiness{Ready: ok, Reasons: reasons, Excluded: excluded})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
