// Command proxy is sigedge's edge proxy: official Statsig SDKs point their API base URL at it.
// It serves rule sets and evaluations from its cache and queues SDK events in NATS JetStream.
package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/sigedge/sigedge/internal/cli"
	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/proxy"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(cli.Main(program()))
}

func program() cli.Program {
	return cli.Program{
		Name:            "sigedge-proxy",
		Summary:         "Statsig edge proxy: serves rule sets and evaluations to SDKs, queues their events in JetStream",
		Version:         version,
		ShutdownTimeout: func(c config.Config) time.Duration { return c.Proxy.ShutdownTimeout },
		Start: func(ctx context.Context, cfg config.Config, logger *slog.Logger) (cli.Service, error) {
			return cli.StartApp(proxy.NewApp(ctx, proxy.AppOptions{Config: cfg, Logger: logger, Version: version}))
		},
	}
}
