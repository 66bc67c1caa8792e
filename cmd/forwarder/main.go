// Command forwarder drains sigedge's JetStream event stream to Statsig, batched per SDK key, behind
// a circuit breaker, acking only what Statsig accepted.
//
// Usage:
//
//	forwarder [-config FILE]                         run the forwarder until SIGINT/SIGTERM
//	forwarder replay-dlq [-config FILE] [-key-hash H] [-limit N]
//	                                                 move dead-lettered batches back into the event stream
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sigedge/sigedge/forwarder"
	"github.com/sigedge/sigedge/internal/cli"
	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/natsutil"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "replay-dlq" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := replayDLQ(ctx, os.Args[2:], os.Environ(), os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(cli.Main(program()))
}

func program() cli.Program {
	return cli.Program{
		Name:            "sigedge-forwarder",
		Summary:         "forwards queued Statsig events from JetStream to Statsig, losing none (subcommand: replay-dlq, see replay-dlq -help)",
		Version:         version,
		ShutdownTimeout: func(c config.Config) time.Duration { return c.Forwarder.ShutdownTimeout },
		Start: func(ctx context.Context, cfg config.Config, logger *slog.Logger) (cli.Service, error) {
			setMemoryLimit(cfg, logger)
			return cli.StartApp(forwarder.NewApp(ctx, forwarder.AppOptions{Config: cfg, Logger: logger, Version: version}))
		},
	}
}

// setMemoryLimit gives the Go runtime a soft memory limit derived from max_in_flight_bytes (unless
// GOMEMLIMIT is set): held messages are the bulk of the heap, and without a limit the garbage
// collector lets the heap reach twice the live data before collecting, so the process would need
// about twice the memory the bound promises.
func setMemoryLimit(cfg config.Config, logger *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := int64(cfg.Forwarder.MaxInFlightBytes)*3/2 + 128<<20
	debug.SetMemoryLimit(limit)
	logger.Info("Go memory limit set from forwarder.max_in_flight_bytes (override with GOMEMLIMIT)", "limit_bytes", limit)
}

// replayDLQ is the replay-dlq subcommand: it moves dead-lettered batches back into the event stream,
// so the forwarders send them again, and reports how many. It returns the exit code.
func replayDLQ(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	const name = "sigedge-forwarder replay-dlq"
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "path of the YAML configuration file; SIGEDGE_* environment variables override it")
	keyHash := fs.String("key-hash", "", "move only the batches of this key (its 12-hex-digit hash, as logged by the forwarder)")
	limit := fs.Int("limit", 0, "move at most this many batches (0: all)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s: move batches Statsig refused (the dead-letter stream) back into the event stream for another try.\n\nUsage: %s [flags]\n\nFlags:\n", name, name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q (see -help)\n", name, fs.Arg(0))
		return 2
	}
	if *limit < 0 {
		fmt.Fprintf(stderr, "%s: -limit must be 0 or positive\n", name)
		return 2
	}
	cfg, err := config.Load(*configPath, environ)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	logger := cfg.Log.NewLogger(stderr).With("service", name)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	nc, err := natsutil.Connect(ctx, cfg.NATS, natsutil.ConnectOptions{Name: "sigedge-replay-dlq", Logger: logger})
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintf(stderr, "%s: jetstream: %v\n", name, err)
		return 1
	}
	moved, err := forwarder.ReplayDeadLetters(ctx, js, cfg.NATS.Stream, forwarder.ReplayOptions{KeyHash: *keyHash, Limit: *limit})
	fmt.Fprintf(stdout, "moved %d dead-lettered batch(es) from %s back to %s\n", moved, cfg.NATS.Stream.DeadLetterName, cfg.NATS.Stream.Name)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	if err := nc.Flush(); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}
