// Package natsutil starts the embedded JetStream server and opens NATS connections for both
// binaries from the one configuration schema, so that they reach the same servers the same way.
package natsutil

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sigedge/sigedge/internal/config"
)

// EmbeddedMaxPayload is the largest message the embedded server accepts. Event batches larger than
// a server's max payload are split by the publisher, so this only bounds one message.
const EmbeddedMaxPayload = 8 << 20

// StartEmbedded starts a single JetStream server as configured by cfg (nats.embedded), with its files
// under cfg.DataDir, and waits until it accepts connections. Stop it with Shutdown.
//
// JetStream reads its files before the server listens, which after an unclean stop with a large
// backlog can take a while: StartEmbedded waits as long as that takes, saying so in the log every
// embeddedProgress. It fails when the server reports a fatal error (its port in use, JetStream
// unable to start) or when ctx ends, once the server has stopped again: if ctx ends during that
// recovery, after the recovery.
func StartEmbedded(ctx context.Context, cfg config.NATS, logger *slog.Logger) (*server.Server, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded nats: data dir: %w", err)
	}
	opts := &server.Options{
		ServerName:             "sigedge-embedded",
		Host:                   cfg.Host,
		Port:                   cfg.Port,
		JetStream:              true,
		StoreDir:               cfg.DataDir,
		MaxPayload:             EmbeddedMaxPayload,
		NoSigs:                 true, // the binary owns signal handling
		DisableJetStreamBanner: true,
	}
	if cfg.Port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	fatal := make(chan string, 1)
	srv.SetLoggerV2(&slogAdapter{l: logger.With("component", "nats-server"), fatal: fatal}, false, false, false)
	startDone := make(chan struct{})
	go func() {
		defer close(startDone)
		srv.Start()
	}()
	// stop shuts the server down once Start has returned: a Shutdown before would miss what Start
	// sets up after it (Shutdown runs once), leaving JetStream's files open.
	stop := func() {
		<-startDone
		Shutdown(srv)
	}
	started := time.Now()
	lastLog := started
	for {
		select {
		case msg := <-fatal:
			stop()
			return nil, fmt.Errorf("embedded nats: %s (%s, data dir %s)", msg, net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)), cfg.DataDir)
		case <-ctx.Done():
			stop()
			return nil, fmt.Errorf("embedded nats: not ready after %s: %w", time.Since(started).Round(time.Second), ctx.Err())
		default:
		}
		if srv.ReadyForConnections(embeddedPoll) {
			break
		}
		if now := time.Now(); now.Sub(lastLog) >= embeddedProgress {
			lastLog = now
			logger.Info("embedded JetStream still starting: recovering its streams from disk", "waited", now.Sub(started).Round(time.Second).String(), "data_dir", cfg.DataDir)
		}
	}
	if !srv.JetStreamEnabled() {
		stop()
		return nil, errors.New("embedded nats: JetStream did not start (check nats.data_dir is writable)")
	}
	return srv, nil
}

const (
	// embeddedPoll is how often StartEmbedded checks for a fatal error or the end of its context.
	embeddedPoll = 250 * time.Millisecond
	// embeddedProgress is how often a slow start is logged.
	embeddedProgress = 10 * time.Second
)

// Shutdown stops an embedded server and waits until it has written its files.
func Shutdown(srv *server.Server) {
	if srv == nil {
		return
	}
	srv.Shutdown()
	srv.WaitForShutdown()
}

// Drain drains nc, so that pending publishes, acks and NAKs reach the server, and closes it. It
// waits until the connection is closed, ctx is done or limit has passed, then closes it at once:
// shutdown must not hang on a dead server.
func Drain(ctx context.Context, nc *nats.Conn, limit time.Duration) {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-ctx.Done():
		nc.Close()
	case <-time.After(limit):
		nc.Close()
	}
}

// ConnectedCheck is a readiness check for nc: it fails while nc is not connected, or while up (kept
// by ConnectOptions.OnStateChange) says the last event was a disconnect.
func ConnectedCheck(nc *nats.Conn, up *atomic.Bool) func() error {
	return func() error {
		if !up.Load() || !nc.IsConnected() {
			return errors.New("not connected to NATS")
		}
		return nil
	}
}

// ServerURLs returns the URLs a client should dial: the embedded server's address, or the cluster.
func ServerURLs(cfg config.NATS) []string {
	if cfg.Embedded {
		host := cfg.Host
		if host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		return []string{"nats://" + net.JoinHostPort(host, strconv.Itoa(cfg.Port))}
	}
	return cfg.URLs
}

// ConnectOptions are the parts of a connection that differ between callers.
type ConnectOptions struct {
	// Name identifies the client to the servers (shown in monitoring).
	Name string
	// URLs overrides ServerURLs(cfg), e.g. the address an embedded server on port 0 actually got.
	URLs []string
	// Logger receives disconnect, reconnect and error events.
	Logger *slog.Logger
	// OnStateChange, if set, is called after every disconnect and reconnect (e.g. to update metrics).
	OnStateChange func(connected bool)
	// InProcess, when set (the embedded server), connects through memory instead of TCP: the URLs
	// then only name the connection. A publish and its ack then skip the kernel's loopback, which
	// cost the proxy a write each (bench/intakeload: 1-event batches 17-38 % faster, 100-event
	// ones about a quarter).
	InProcess nats.InProcessConnProvider
}

// Connect opens a connection to the configured servers. The first connection must succeed within
// cfg.ConnectTimeout (a wrong URL fails start-up with a clear error); after that the connection
// reconnects forever with cfg.ReconnectWait plus jitter between attempts.
func Connect(ctx context.Context, cfg config.NATS, o ConnectOptions) (*nats.Conn, error) {
	urls := o.URLs
	if len(urls) == 0 {
		urls = ServerURLs(cfg)
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.Timeout(cfg.ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(cfg.ReconnectWait),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			return ReconnectDelay(cfg.ReconnectWait, attempts, rand.Int64N)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			logger.Warn("nats disconnected", "err", err)
			if o.OnStateChange != nil {
				o.OnStateChange(false)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
			if o.OnStateChange != nil {
				o.OnStateChange(true)
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			logger.Error("nats async error", "subject", subject, "err", err)
		}),
	}
	if o.InProcess != nil {
		opts = append(opts, nats.InProcessServer(o.InProcess))
	}
	if cfg.CredentialsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredentialsFile))
	}
	if cfg.NKeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(cfg.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats: nkey_file: %w", err)
		}
		opts = append(opts, opt)
	}
	if cfg.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.TLS.CAFile))
	}
	if cfg.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.TLS.CertFile, cfg.TLS.KeyFile))
	}
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(joinURLs(urls), opts...)
		done <- result{nc, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("nats: cannot connect to %s: %w", joinURLs(urls), r.err)
		}
		logger.Info("nats connected", "server", r.nc.ConnectedUrlRedacted())
		return r.nc, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("nats: connect to %s: %w", joinURLs(urls), ctx.Err())
	}
}

// MaxReconnectDelay caps the wait between reconnect attempts (before jitter).
const MaxReconnectDelay = 30 * time.Second

// ReconnectDelay is the wait before reconnect attempt number attempts (as nats.go counts them):
// base doubled per attempt up to MaxReconnectDelay, plus up to 50 % jitter drawn with randN
// (rand.Int64N), so that a region's clients do not reconnect in lock step after a node restarts.
func ReconnectDelay(base time.Duration, attempts int, randN func(int64) int64) time.Duration {
	d := base << min(max(attempts, 0), 5)
	d = min(d, MaxReconnectDelay)
	return d + time.Duration(randN(int64(d)/2+1))
}

func joinURLs(urls []string) string {
	out := ""
	for i, u := range urls {
		if i > 0 {
			out += ","
		}
		out += u
	}
	return out
}

// slogAdapter sends nats-server's log lines to slog, and its first fatal error to fatal.
type slogAdapter struct {
	l     *slog.Logger
	fatal chan<- string // buffered; later fatal errors are only logged
}

func (a *slogAdapter) Noticef(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Errorf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Debugf(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Tracef(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }

func (a *slogAdapter) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	a.l.Error(msg)
	select {
	case a.fatal <- msg:
	default:
	}
}
