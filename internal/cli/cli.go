// Package cli is the command-line shell both binaries share: flags, configuration loading, logging,
// and the run-until-signal-then-drain lifecycle with a bounded shutdown.
package cli

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

	"github.com/sigedge/sigedge/internal/config"
)

// Service is a started process part that can be shut down gracefully.
type Service interface {
	Shutdown(ctx context.Context) error
}

// Program describes one binary.
type Program struct {
	// Name is the binary's name, e.g. "sigedge-proxy".
	Name string
	// Summary is the one-line description shown by --help.
	Summary string
	// Version is the build version (set with -ldflags "-X main.version=…").
	Version string
	// ShutdownTimeout picks the drain bound from the configuration.
	ShutdownTimeout func(config.Config) time.Duration
	// Start builds and starts the service.
	Start func(ctx context.Context, cfg config.Config, logger *slog.Logger) (Service, error)
}

// App is a service that is made first and then started, as proxy.App and forwarder.App are.
type App interface {
	Service
	Start() error
}

// StartApp starts app, the result of a constructor that returned err, for Program.Start: written
// StartApp(NewApp(…)). An app that fails to start is shut down again, releasing what its
// constructor opened.
func StartApp[A App](app A, err error) (Service, error) {
	if err != nil {
		return nil, err
	}
	if err := app.Start(); err != nil {
		_ = app.Shutdown(context.Background())
		return nil, err
	}
	return app, nil
}

// Main runs p with the process's arguments and environment, and returns the exit code.
func Main(p Program) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, p, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
}

// Run is Main with everything passed in, so tests can run a binary in-process. It returns once ctx
// is done and the service has shut down, or at once on a start-up error.
func Run(ctx context.Context, p Program, args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(p.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "path of the YAML configuration file (see config.example.yaml); every field can also be set with a SIGEDGE_* environment variable")
	showVersion := fs.Bool("version", false, "print the version and exit")
	checkOnly := fs.Bool("check-config", false, "validate the configuration and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s: %s\n\nUsage: %s [flags]\n\nFlags:\n", p.Name, p.Summary, p.Name)
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "\nEnvironment: SIGEDGE_<FIELD_PATH>, e.g. SIGEDGE_UPSTREAM_API, SIGEDGE_NATS_URLS, SIGEDGE_LOG_LEVEL.\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q (see --help)\n", p.Name, fs.Arg(0))
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "%s %s\n", p.Name, VersionString(p.Version))
		return 0
	}
	cfg, err := config.Load(*configPath, environ)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", p.Name, err)
		return 1
	}
	if *checkOnly {
		fmt.Fprintf(stdout, "%s: configuration OK\n", p.Name)
		return 0
	}
	logger := cfg.Log.NewLogger(stderr).With("service", p.Name)
	svc, err := p.Start(ctx, cfg, logger)
	if err != nil {
		logger.Error("start-up failed", "err", err)
		fmt.Fprintf(stderr, "%s: %v\n", p.Name, err)
		return 1
	}
	<-ctx.Done()
	timeout := p.ShutdownTimeout(cfg)
	logger.Info("shutting down", "timeout", timeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := svc.Shutdown(sctx); err != nil {
		logger.Error("shutdown incomplete", "err", err)
		return 1
	}
	logger.Info("stopped")
	return 0
}

// VersionString is the version and, when known, the VCS revision the binary was built from.
func VersionString(v string) string {
	if v == "" {
		v = "dev"
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return v + " (" + s.Value[:12] + ", " + bi.GoVersion + ")"
			}
		}
		return v + " (" + bi.GoVersion + ")"
	}
	return v
}
