// Package forwarder drains sigedge's JetStream event stream to Statsig, losing no event through an
// outage of Statsig, of a forwarder or of the network.
//
// Its interface is small: NewApp connects to NATS, makes sure the streams exist and binds the
// durable pull consumer; Start serves /healthz, /readyz and /metrics and starts forwarding; Shutdown
// stops pulling, sends what is batched within its deadline and hands the rest back to the stream.
// ReplayDeadLetters moves dead-lettered batches back into the event stream (forwarder replay-dlq).
//
// How it forwards:
//   - Any number of replicas share one durable consumer (forwarder.consumer_name, explicit ack,
//     AckWait forwarder.ack_wait, MaxAckPending forwarder.max_ack_pending); each message goes to one.
//   - Messages are batched per SDK key and SDK instance: a batch holds messages with the same key,
//     endpoint, SDK type/version and byte-identical statsigMetadata, so each request to Statsig
//     carries the statsigMetadata (session, SDK identity) and headers its SDK sent, unchanged. A
//     key's batches from many SDK instances are separate requests, as they would have been without
//     sigedge; batching merges the flushes of one SDK instance. A batch goes out after
//     forwarder.flush_interval, or earlier at batch_max_events / batch_max_bytes.
//   - log_event batches go gzipped to {upstream.events}/v1/log_event with the key, SDK headers,
//     STATSIG-EVENT-COUNT and STATSIG-CLIENT-TIME; rgstr batches (client SDKs, client key) go to
//     {upstream.events}/v1/rgstr as plain JSON with the key in the header and, as the JS client
//     sends it, in the k query parameter.
//   - A message is acked only after Statsig accepted its batch (2xx). Network errors, time-outs,
//     408, 429 and 5xx keep the batch in memory (with in-progress heartbeats to JetStream) and retry
//     it with capped exponential backoff and jitter; all but 429 count against a circuit breaker
//     (sony/gobreaker) that, while open, stops all sending and acking. 401/403 (the key's fault)
//     dead-letter the batch without tripping the breaker; other 4xx split the batch until the bad
//     message is alone, and dead-letter that one. Dead-lettered messages are acked on the event
//     stream, so nothing blocks a key.
//   - Sending is capped at forwarder.replay_rate batches/s, so a backlog after an outage drains
//     without flooding Statsig; memory is bounded by forwarder.max_in_flight_bytes (pulling pauses
//     at it; near it one message is pulled at a time, so it is exceeded by at most one message).
//
// Delivery is at least once: a batch Statsig accepted whose ack is lost (forwarder killed between
// the two, NATS down for longer than AckWait) is sent again.
package forwarder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

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

	tune *tuning // tests shorten the internal timings
}

// App is a running forwarder process.
type App struct {
	cfg      config.Config
	logger   *slog.Logger
	registry *prometheus.Registry
	admin    *admin.Server
	nc       *nats.Conn
	js       jetstream.JetStream
	engine   *engine

	adminAddr net.Addr
	connected atomic.Bool
	started   atomic.Bool
	stopping  atomic.Bool
}

// NewApp connects to NATS, makes sure the streams exist and binds the durable consumer.
func NewApp(ctx context.Context, o AppOptions) (_ *App, err error) {
	a := &App{cfg: o.Config, logger: o.Logger, registry: admin.NewRegistry()}
	if a.logger == nil {
		a.logger = slog.New(slog.DiscardHandler)
	}
	a.admin = admin.New(a.registry, a.logger)
	if a.cfg.Debug.Pprof {
		a.admin.EnablePprof()
	}
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
	a.js, err = queue.OpenStreams(ctx, a.nc, a.cfg.NATS.Stream, a.registry, a.logger)
	if err != nil {
		return nil, err
	}
	tune := defaultTuning()
	if o.tune != nil {
		tune = *o.tune
	}
	a.engine = newEngine(engineOptions{
		cfg: a.cfg, logger: a.logger, js: a.js, version: o.Version, maxPayload: a.nc.MaxPayload(), tune: tune,
		metrics: func(state func() float64) *metrics { return newMetrics(a.registry, state) },
	})
	if err := a.engine.bind(ctx, a.cfg); err != nil {
		return nil, err
	}
	a.admin.AddCheck("nats", natsutil.ConnectedCheck(a.nc, &a.connected))
	a.admin.AddCheck("consumer", func() error {
		if !a.engine.bound.Load() {
			return fmt.Errorf("durable consumer %s on stream %s is not bound (pulls fail)", a.cfg.Forwarder.ConsumerName, a.cfg.NATS.Stream.Name)
		}
		return nil
	})
	return a, nil
}

// Start serves the admin endpoints and starts forwarding.
func (a *App) Start() error {
	addr, err := a.admin.Start(a.cfg.Forwarder.AdminListen)
	if err != nil {
		return fmt.Errorf("admin listen %s: %w", a.cfg.Forwarder.AdminListen, err)
	}
	a.adminAddr = addr
	a.engine.start(a.cfg)
	a.started.Store(true)
	a.logger.Info("forwarder started", "admin", addr.String(), "stream", a.cfg.NATS.Stream.Name)
	return nil
}

// AdminAddr is the address of /healthz, /readyz and /metrics (after Start).
func (a *App) AdminAddr() net.Addr { return a.adminAddr }

// Registry is the App's Prometheus registry (what /metrics serves).
func (a *App) Registry() *prometheus.Registry { return a.registry }

// JetStream is the App's JetStream context (for tools such as replay-dlq sharing its connection).
func (a *App) JetStream() jetstream.JetStream { return a.js }

// Ready reports readiness as /readyz does.
func (a *App) Ready() (bool, map[string]string) { return a.admin.Ready() }

// Shutdown stops pulling, sends what is batched (bounded by ctx), NAKs what could not be sent so
// another replica takes it at once, and closes the NATS connection after its acks are flushed.
// Calls after the first return nil.
func (a *App) Shutdown(ctx context.Context) error {
	if !a.stopping.CompareAndSwap(false, true) {
		return nil
	}
	a.admin.SetDraining()
	if a.started.Load() {
		a.engine.shutdown(ctx)
	}
	var errs []error
	// Drain flushes the acks and NAKs.
	natsutil.Drain(ctx, a.nc, 5*time.Second)
	if a.adminAddr != nil {
		if err := a.admin.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
