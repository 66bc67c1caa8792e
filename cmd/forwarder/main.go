// Command forwarder drains sigedge's JetStream event stream to Statsig, batched per SDK key, behind
// a circuit breaker, acking only what Statsig accepted.
package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/sigedge/sigedge/forwarder"
	"github.com/sigedge/sigedge/internal/cli"
	"github.com/sigedge/sigedge/internal/config"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(cli.Main(program()))
}

func program() cli.Program {
	return cli.Program{
		Name:            "sigedge-forwarder",
		Summary:         "forwards queued Statsig events from JetStream to Statsig, losing none",
		Version:         version,
		ShutdownTimeout: func(c config.Config) time.Duration { return c.Forwarder.ShutdownTimeout },
		Start: func(ctx context.Context, cfg config.Config, logger *slog.Logger) (cli.Service, error) {
			app, err := forwarder.NewApp(ctx, forwarder.AppOptions{Config: cfg, Logger: logger, Version: version})
			if err != nil {
				return nil, err
			}
			if err := app.Start(); err != nil {
				_ = app.Shutdown(context.Background())
				return nil, err
			}
			return app, nil
		},
	}
}
