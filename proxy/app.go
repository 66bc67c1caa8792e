// Package proxy is the SDK-facing HTTP service of sigedge and its assembly into a running process.
//
// App wires the parts of cmd/proxy together: the embedded JetStream server (or the connection to a
// cluster), the event streams, the rule-set cache, the SDK-facing HTTP server and the admin server.
// Tests start a whole proxy in-process with NewApp + Start, exactly as cmd/proxy does.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/statsig-io/ip3country-go/pkg/countrylookup"

	"github.com/sigedge/sigedge/configcache"
	"github.com/sigedge/sigedge/evalcore"
	"github.com/sigedge/sigedge/internal/admin"
	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/natsutil"
	"github.com/sigedge/sigedge/queue"
)

// AppOptions configure an App.
type AppOptions struct {
	// Config is the validated configuration.
	Config config.Config
	// Logger receives the process's logs.
	Logger *slog.Logger
	// Version is reported by /readyz-independent build info and the User-Agent upstream.
	Version string
}

// App is a running proxy process.
type App struct {
	cfg     config.Config
	logger  *slog.Logger
	version string

	registry *prometheus.Registry
	admin    *admin.Server
	embedded *server.Server
	nc       *nats.Conn
	js       jetstream.JetStream
	cache    *configcache.Cache
	rsMetric *ruleSetMetrics  // dcs.go, idlists.go: answers of the rule-set and ID-list endpoints
	events   *queue.Publisher // events.go: the event stream's publisher, also for proxy-made exposures
	intake   *eventIntake     // events.go: log_event and rgstr
	eval     *evalService     // eval.go: check_gate, get_config, get_layer, initialize
	httpSrv  *http.Server

	addr      net.Addr
	adminAddr net.Addr
	connected atomic.Bool
}

// NewApp starts the process's dependencies: the embedded NATS server when configured, the NATS
// connection, the event streams and the rule-set cache. It does not listen for HTTP yet (Start).
// On error everything started so far is stopped again.
func NewApp(ctx context.Context, o AppOptions) (_ *App, err error) {
	a := &App{cfg: o.Config, logger: o.Logger, version: o.Version, registry: admin.NewRegistry()}
	if a.logger == nil {
		a.logger = slog.New(slog.DiscardHandler)
	}
	defer func() {
		if err != nil {
			a.closeDeps()
		}
	}()
	a.admin = admin.New(a.registry, a.logger)
	if a.cfg.Debug.Pprof {
		a.admin.EnablePprof()
	}

	var urls []string
	var inProcess nats.InProcessConnProvider
	if a.cfg.NATS.Embedded {
		a.embedded, err = natsutil.StartEmbedded(ctx, a.cfg.NATS, a.logger)
		if err != nil {
			return nil, err
		}
		urls = []string{a.embedded.ClientURL()}
		// The proxy's own connection goes through memory; the forwarder and other clients use the
		// URL.
		inProcess = a.embedded
		a.logger.Info("embedded JetStream started", "url", urls[0], "data_dir", a.cfg.NATS.DataDir)
	}
	a.nc, err = natsutil.Connect(ctx, a.cfg.NATS, natsutil.ConnectOptions{
		Name: "sigedge-proxy", URLs: urls, Logger: a.logger, InProcess: inProcess,
		OnStateChange: func(up bool) { a.connected.Store(up) },
	})
	if err != nil {
		return nil, err
	}
	a.connected.Store(true)
	a.js, err = queue.OpenStreams(ctx, a.nc, a.cfg.NATS.Stream, a.registry, a.logger)
	if err != nil {
		return nil, err
	}
	if err := a.startEvents(); err != nil {
		return nil, err
	}

	a.cache, err = configcache.New(ctx, configcache.Options{
		Config: a.cfg, Logger: a.logger, Registry: a.registry, Version: a.version,
		JetStream: a.js, MaxShareValue: int(a.nc.MaxPayload()),
		// The IP → country table is built once per process (a few MB) and shared by every key.
		EvaluatorOptions: evalcore.EvaluatorOptions{Countries: countrylookup.New()},
	})
	if err != nil {
		return nil, err
	}
	a.rsMetric = newRuleSetMetrics(a.registry)
	a.eval = a.newEvalService()

	a.admin.AddCheck("nats", natsutil.ConnectedCheck(a.nc, &a.connected))
	a.admin.AddCheck("rulesets", a.cache.Ready)

	a.httpSrv = &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       a.cfg.Proxy.ReadTimeout,
		WriteTimeout:      a.cfg.Proxy.WriteTimeout,
		IdleTimeout:       a.cfg.Proxy.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
	}
	return a, nil
}

// Handler is the SDK-facing HTTP handler.
func (a *App) Handler() http.Handler {
	return newRouter(a)
}

// Start listens on the configured addresses and serves in the background.
func (a *App) Start() error {
	adminAddr, err := a.admin.Start(a.cfg.Proxy.AdminListen)
	if err != nil {
		return fmt.Errorf("admin listen %s: %w", a.cfg.Proxy.AdminListen, err)
	}
	a.adminAddr = adminAddr
	ln, err := net.Listen("tcp", a.cfg.Proxy.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", a.cfg.Proxy.Listen, err)
	}
	a.addr = ln.Addr()
	go func() {
		if err := a.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.logger.Error("http server stopped", "err", err)
		}
	}()
	a.logger.Info("proxy listening", "addr", a.addr.String(), "admin", a.adminAddr.String())
	return nil
}

// Addr is the address SDKs reach the proxy at (after Start).
func (a *App) Addr() net.Addr { return a.addr }

// AdminAddr is the address of /healthz, /readyz and /metrics (after Start).
func (a *App) AdminAddr() net.Addr { return a.adminAddr }

// NATSURL is the URL of the embedded server, or "" when the proxy uses a cluster.
func (a *App) NATSURL() string {
	if a.embedded == nil {
		return ""
	}
	return a.embedded.ClientURL()
}

// Ready reports readiness as /readyz does.
func (a *App) Ready() (bool, map[string]string) { return a.admin.Ready() }

// Shutdown stops accepting requests, waits for in-flight ones (bounded by ctx), then closes the
// cache, drains the NATS connection and stops the embedded server.
func (a *App) Shutdown(ctx context.Context) error {
	a.admin.SetDraining()
	var errs []error
	if err := a.httpSrv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http drain: %w", err))
	}
	a.closeDeps()
	if err := a.admin.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("admin: %w", err))
	}
	return errors.Join(errs...)
}

func (a *App) closeDeps() {
	if a.eval != nil {
		// Exposures still queued go to the stream before the connection is drained.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		a.eval.Close(ctx)
		cancel()
	}
	if a.cache != nil {
		a.cache.Close()
	}
	if a.nc != nil {
		// Drain flushes pending publishes.
		natsutil.Drain(context.Background(), a.nc, 5*time.Second)
	}
	natsutil.Shutdown(a.embedded)
}
