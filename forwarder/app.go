// Package forwarder drains sigedge's JetStream event stream to Statsig: a durable pull consumer
// shared by any number of forwarder replicas, batches per SDK key, and a circuit breaker around
// Statsig's event API. A message is acked only after Statsig accepted the batch that holds it.
package forwarder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

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
	// Version names the build.
	Version string
	// NATSURLs overrides the servers of the configuration (tests, or an embedded proxy on port 0).
	NATSURLs []string
}

// App is a running forwarder process.
type App struct {
	cfg      config.Config
	logger   *slog.Logger
	registry *prometheus.Registry
	admin    *admin.Server
	nc       *nats.Conn
	js       jetstream.JetStream

	adminAddr net.Addr
	connected atomic.Bool
}

// NewApp connects to NATS and makes sure the streams exist.
func NewApp(ctx context.Context, o AppOptions) (_ *App, err error) {
	a := &App{cfg: o.Config, logger: o.Logger, registry: admin.NewRegistry()}
	if a.logger == nil {
		a.logger = slog.New(slog.DiscardHandler)
	}
	a.admin = admin.New(a.registry, a.logger)
	a.nc, err = natsutil.Connect(ctx, a.cfg.NATS, natsutil.ConnectOptions{
		Name: "sigedge-forwarder", URLs: o.NATSURLs, Logger: a.logger,
		OnStateChange: func(up bool) { a.connected.Store(up) },
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			a.nc.Close()
		}
	}()
	a.connected.Store(true)
	a.js, err = jetstream.New(a.nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	warnings, err := queue.EnsureStreams(ctx, a.js, a.cfg.NATS.Stream)
	if err != nil {
		return nil, fmt.Errorf("event streams: %w", err)
	}
	for _, w := range warnings {
		a.logger.Warn(w)
	}
	a.admin.AddCheck("nats", func() error {
		if !a.connected.Load() || !a.nc.IsConnected() {
			return errors.New("not connected to NATS")
		}
		return nil
	})
	return a, nil
}

// Start serves the admin endpoints and starts consuming.
func (a *App) Start() error {
	addr, err := a.admin.Start(a.cfg.Forwarder.AdminListen)
	if err != nil {
		return fmt.Errorf("admin listen %s: %w", a.cfg.Forwarder.AdminListen, err)
	}
	a.adminAddr = addr
	a.logger.Info("forwarder started", "admin", addr.String(), "stream", a.cfg.NATS.Stream.Name)
	return nil
}

// AdminAddr is the address of /healthz, /readyz and /metrics (after Start).
func (a *App) AdminAddr() net.Addr { return a.adminAddr }

// Ready reports readiness as /readyz does.
func (a *App) Ready() (bool, map[string]string) { return a.admin.Ready() }

// Shutdown stops pulling, flushes what is batched, and closes the NATS connection.
func (a *App) Shutdown(ctx context.Context) error {
	a.admin.SetDraining()
	var errs []error
	if err := a.nc.Drain(); err != nil {
		a.nc.Close()
	}
	if err := a.admin.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
