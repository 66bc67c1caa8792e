// Package config is the one typed configuration schema shared by cmd/proxy and cmd/forwarder.
//
// A configuration is read from a YAML file (unknown fields are errors), then every field can be
// overridden from the environment: the variable name is SIGEDGE_ followed by the field's YAML path in
// upper case joined with underscores, e.g. SIGEDGE_UPSTREAM_API or SIGEDGE_NATS_STREAM_REPLICAS. Lists
// of strings are comma-separated, maps are comma-separated KEY=VALUE pairs, lists of objects are JSON.
// Finally Validate checks every field and reports each problem as a *FieldError naming the field.
//
// Use Load for the whole sequence; Default returns the defaults that config.example.yaml documents.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration of sigedge. Both binaries read the same file; each uses the
// sections that concern it.
type Config struct {
	// Log selects the log level and format of both binaries.
	Log Log `yaml:"log"`
	// Debug turns on diagnostics of both binaries.
	Debug Debug `yaml:"debug"`
	// Proxy configures cmd/proxy's HTTP servers.
	Proxy Proxy `yaml:"proxy"`
	// Forwarder configures cmd/forwarder.
	Forwarder Forwarder `yaml:"forwarder"`
	// Upstream names Statsig's endpoints.
	Upstream Upstream `yaml:"upstream"`
	// RuleSets configures the rule-set cache.
	RuleSets RuleSets `yaml:"rulesets"`
	// NATS configures the embedded server or the connection to an external cluster, and the streams.
	NATS NATS `yaml:"nats"`
	// ClientKeys maps client SDK keys (client-…) to the server secret key whose rule sets answer them.
	ClientKeys map[string]string `yaml:"client_keys"`
	// AllowedSDKKeys, when not empty, is the only set of server keys the proxy serves; requests with
	// other keys are refused with 401 before anything reaches Statsig.
	AllowedSDKKeys []string `yaml:"allowed_sdk_keys"`
	// Limits bounds request sizes and memory.
	Limits Limits `yaml:"limits"`
}

// Log configures structured logging (log/slog).
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// Debug configures diagnostics for incidents.
type Debug struct {
	// Pprof serves Go's profiler (net/http/pprof) at /debug/pprof/ on the admin port: CPU, heap,
	// goroutine and mutex profiles of a live process. Off by default: profiles show internals, and
	// a CPU profile or trace costs CPU while it is taken.
	Pprof bool `yaml:"pprof"`
}

// Proxy configures cmd/proxy.
type Proxy struct {
	// Listen is the address SDKs and apps talk to.
	Listen string `yaml:"listen"`
	// AdminListen serves /healthz, /readyz and /metrics.
	AdminListen string `yaml:"admin_listen"`
	// ShutdownTimeout bounds the graceful drain on SIGINT/SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// ReadTimeout bounds reading one request, body included.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing one response.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes idle keep-alive connections.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// PublicURL is the base URL SDKs reach this proxy at; ID-list file URLs in get_id_lists answers are
	// rewritten to it. Empty means: derive it from each request's Host header.
	PublicURL string `yaml:"public_url"`
	// ExposureDedupe configures the optional de-duplication of exposure events.
	ExposureDedupe ExposureDedupe `yaml:"exposure_dedupe"`
	// RetryDedupe configures the recognition of events an SDK re-sends in a new batch.
	RetryDedupe RetryDedupe `yaml:"retry_dedupe"`
	// EvalExposures configures the exposures of the evaluations the proxy serves itself
	// (check_gate, get_config, get_layer).
	EvalExposures EvalExposures `yaml:"eval_exposures"`
}

// EvalExposures configures how the proxy logs the exposures its own evaluations cause.
type EvalExposures struct {
	// Enabled logs them (as an SDK would); a request can still opt out with disableExposureLogging.
	Enabled bool `yaml:"enabled"`
	// DedupeWindow logs one exposure per (key, user, spec, rule, value) per window; 0 turns it off.
	DedupeWindow time.Duration `yaml:"dedupe_window"`
	// DedupeMaxKeys bounds the memory of the de-duplication.
	DedupeMaxKeys int `yaml:"dedupe_max_keys"`
	// FlushInterval: exposures are batched per key and published at most this late.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// MaxBuffered bounds the exposures waiting to be published; beyond it new ones are dropped and counted.
	MaxBuffered int `yaml:"max_buffered"`
}

// ExposureDedupe drops repeated exposures of the same (user, spec, rule, value) within a window.
type ExposureDedupe struct {
	// Enabled turns de-duplication of SDK-sent exposures on (off by default: SDKs dedupe already).
	Enabled bool `yaml:"enabled"`
	// Window is how long an exposure key is remembered.
	Window time.Duration `yaml:"window"`
	// MaxKeys bounds the memory the de-duplication uses.
	MaxKeys int `yaml:"max_keys"`
}

// RetryDedupe recognises events an SDK re-sends in a new batch after a lost reply (statsig-node-core
// re-batches its retries, so their batch id differs): per SDK session (statsigMetadata.sessionID),
// events a recent batch stored are left out of later batches that repeat them. They are remembered
// for nats.stream.duplicate_window.
type RetryDedupe struct {
	// Enabled turns it on (the default).
	Enabled bool `yaml:"enabled"`
	// MaxEvents bounds the events remembered across all sessions (8 bytes each, plus about 100 bytes
	// per batch); least recently active sessions are forgotten first.
	MaxEvents int `yaml:"max_events"`
}

// Forwarder configures cmd/forwarder.
type Forwarder struct {
	// AdminListen serves /healthz, /readyz and /metrics.
	AdminListen string `yaml:"admin_listen"`
	// ConsumerName is the durable consumer shared by all forwarder replicas.
	ConsumerName string `yaml:"consumer_name"`
	// FlushInterval is the longest an event waits in a batch before it is sent.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// BatchMaxEvents sends a batch early once it holds this many events.
	BatchMaxEvents int `yaml:"batch_max_events"`
	// BatchMaxBytes sends a batch early once its events reach this size (uncompressed).
	BatchMaxBytes ByteSize `yaml:"batch_max_bytes"`
	// MaxInFlightBytes bounds the event bytes held in memory across all keys; pulling pauses above it.
	MaxInFlightBytes ByteSize `yaml:"max_in_flight_bytes"`
	// AckWait is how long JetStream waits for an ack before redelivering a message to another replica.
	AckWait time.Duration `yaml:"ack_wait"`
	// RequestTimeout bounds one POST to Statsig.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// RetryBackoffMin and RetryBackoffMax bound the exponential backoff between retries of a batch.
	RetryBackoffMin time.Duration `yaml:"retry_backoff_min"`
	RetryBackoffMax time.Duration `yaml:"retry_backoff_max"`
	// ReplayRate caps batches sent per second to Statsig (all keys), so a backlog drains without
	// flooding a recovering Statsig. 0 means unlimited.
	ReplayRate float64 `yaml:"replay_rate"`
	// Concurrency is how many POSTs to Statsig one forwarder has in flight at once.
	Concurrency int `yaml:"concurrency"`
	// MaxAckPending bounds the messages delivered to all replicas and not yet acked; JetStream stops
	// delivering above it.
	MaxAckPending int `yaml:"max_ack_pending"`
	// Breaker configures the circuit breaker around Statsig's event API.
	Breaker Breaker `yaml:"breaker"`
	// ShutdownTimeout bounds the final flush on SIGINT/SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// Breaker configures a sony/gobreaker circuit breaker.
type Breaker struct {
	// ConsecutiveFailures opens the breaker.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// OpenTimeout is how long the breaker stays open before a half-open probe.
	OpenTimeout time.Duration `yaml:"open_timeout"`
	// HalfOpenRequests is how many probes are let through while half-open.
	HalfOpenRequests int `yaml:"half_open_requests"`
}

// Upstream names Statsig's endpoints. Defaults are Statsig's public hosts.
type Upstream struct {
	// ConfigCDN serves download_config_specs (the /v1 and /v2 paths are appended).
	ConfigCDN string `yaml:"config_cdn"`
	// API serves get_id_lists (the /v1 path is appended).
	API string `yaml:"api"`
	// Events receives log_event (the /v1/log_event path is appended).
	Events string `yaml:"events"`
	// Timeout bounds one upstream request.
	Timeout time.Duration `yaml:"timeout"`
}

// RuleSets configures the rule-set cache.
type RuleSets struct {
	// PollInterval is how often each cached key is refreshed from Statsig.
	PollInterval time.Duration `yaml:"poll_interval"`
	// PollJitter spreads polls of many keys over time: each wait is PollInterval ± up to PollJitter.
	PollJitter time.Duration `yaml:"poll_jitter"`
	// IdleTimeout stops polling, and evicts, a key that no SDK asked for in this long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// InvalidKeyTTL is how long a key Statsig refused (401/403) is answered 401 without asking again.
	InvalidKeyTTL time.Duration `yaml:"invalid_key_ttl"`
	// IDListInterval is how often ID lists are refreshed from Statsig.
	IDListInterval time.Duration `yaml:"id_list_interval"`
	// Offline serves rule sets from files instead of Statsig (air-gapped sites, demos, tests).
	Offline []OfflineRuleSet `yaml:"offline"`
	// Environments sets the environment tier evaluations use per server key when the user has none
	// (e.g. {secret-abc: production}).
	Environments map[string]string `yaml:"environments"`
	// Share shares rule sets and ID lists between the proxies of a region through JetStream (a KV
	// bucket and an object store), so that only one proxy polls Statsig per key.
	Share Share `yaml:"share"`
}

// OfflineRuleSet is a rule-set file served for one server key.
type OfflineRuleSet struct {
	// SDKKey is the server secret key (secret-…) the file answers for.
	SDKKey string `yaml:"sdk_key" json:"sdk_key"`
	// File is a download_config_specs payload, v1 or dcs-v2; it is reloaded when it changes.
	File string `yaml:"file" json:"file"`
}

// Share configures region-wide sharing of rule sets and ID lists through JetStream.
type Share struct {
	// Enabled turns sharing on.
	Enabled bool `yaml:"enabled"`
	// Bucket is the KV bucket name; ID-list files go to the object store <Bucket>_idlists.
	Bucket string `yaml:"bucket"`
	// LeaseTTL is how long a proxy holds the poll lease of a key without renewing it.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
}

// NATS configures where events go: an embedded JetStream server, or an external cluster.
type NATS struct {
	// Embedded starts a JetStream server inside cmd/proxy (the zero-setup default).
	Embedded bool `yaml:"embedded"`
	// DataDir holds the embedded server's JetStream files.
	DataDir string `yaml:"data_dir"`
	// Host and Port are where the embedded server listens (127.0.0.1 so a local forwarder can connect).
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	// URLs of an external cluster (several seeds); when Embedded is true both binaries use the embedded
	// server's address instead.
	URLs []string `yaml:"urls"`
	// CredentialsFile is a NATS .creds file (JWT + NKey seed).
	CredentialsFile string `yaml:"credentials_file"`
	// NKeyFile is an NKey seed file.
	NKeyFile string `yaml:"nkey_file"`
	// TLS configures TLS to the cluster.
	TLS TLS `yaml:"tls"`
	// ConnectTimeout bounds the first connection at start-up.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// ReconnectWait is the base wait between reconnect attempts (jitter is added).
	ReconnectWait time.Duration `yaml:"reconnect_wait"`
	// PublishTimeout bounds the wait for JetStream's ack of one event batch; past it the SDK gets 503
	// and retries.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	// Stream configures the event stream.
	Stream Stream `yaml:"stream"`
}

// TLS holds the files of a TLS client configuration.
type TLS struct {
	// CAFile verifies the servers.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the client certificate, for mutual TLS.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether any TLS file is configured.
func (t TLS) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// Stream configures the JetStream event stream and its dead-letter stream.
type Stream struct {
	// Name of the event stream.
	Name string `yaml:"name"`
	// SubjectPrefix: events for a key are published to <prefix>.<key hash>.
	SubjectPrefix string `yaml:"subject_prefix"`
	// Replicas is the number of copies (1 embedded, 3 in a cluster).
	Replicas int `yaml:"replicas"`
	// MaxAge drops events older than this; MaxBytes bounds the stream's size.
	MaxAge   time.Duration `yaml:"max_age"`
	MaxBytes ByteSize      `yaml:"max_bytes"`
	// DeadLetterName is the stream that keeps batches Statsig refused for good.
	DeadLetterName string `yaml:"dead_letter_name"`
	// DeadLetterMaxAge is how long dead-lettered batches are kept for replay.
	DeadLetterMaxAge time.Duration `yaml:"dead_letter_max_age"`
	// DuplicateWindow is how long a batch id is remembered, so an SDK's retry is not stored twice.
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// Compression is how the proxy encodes a batch's body in its message: "s2" (klauspost/compress
	// S2; event JSON shrinks 5–10×, so the stream holds that much more of an outage and JetStream
	// stores and replicates that much less) or "none" (the JSON as received). Consumers read both:
	// the encoding is in each message's headers.
	Compression string `yaml:"compression"`
	// Placement pins the event stream, the dead-letter stream, the rule-set KV bucket and the ID-list
	// object store to a cluster or to servers with tags when they are created (empty: JetStream chooses).
	Placement Placement `yaml:"placement"`
}

// Values of Stream.Compression.
const (
	CompressionS2   = "s2"
	CompressionNone = "none"
)

// Placement selects the JetStream servers that hold a stream's replicas.
type Placement struct {
	// Cluster is the name of the NATS cluster (of a super-cluster) that holds the replicas.
	Cluster string `yaml:"cluster"`
	// Tags: only servers with every one of these server_tags hold replicas (e.g. one per zone).
	Tags []string `yaml:"tags"`
}

// Empty reports whether no placement is configured.
func (p Placement) Empty() bool { return p.Cluster == "" && len(p.Tags) == 0 }

// Limits bounds request sizes and memory.
type Limits struct {
	// MaxBodyBytes bounds a request body, compressed and after decompression.
	MaxBodyBytes ByteSize `yaml:"max_body_bytes"`
	// MaxInFlightEventBytes bounds the event request bodies (as received, and decompressed) held in
	// memory at once. A request over it waits up to nats.publish_timeout, then gets 503.
	MaxInFlightEventBytes ByteSize `yaml:"max_in_flight_event_bytes"`
	// MaxSDKKeys bounds the number of server keys cached at once (least recently used are evicted).
	MaxSDKKeys int `yaml:"max_sdk_keys"`
	// MaxUserBytes bounds the user object of an evaluation request.
	MaxUserBytes ByteSize `yaml:"max_user_bytes"`
}

// Default returns the configuration every field of which config.example.yaml documents.
func Default() Config {
	return Config{
		Log: Log{Level: "info", Format: "text"},
		Proxy: Proxy{
			Listen:          ":8000",
			AdminListen:     ":8001",
			ShutdownTimeout: 20 * time.Second,
			ReadTimeout:     30 * time.Second,
			WriteTimeout:    30 * time.Second,
			IdleTimeout:     90 * time.Second,
			ExposureDedupe:  ExposureDedupe{Enabled: false, Window: time.Minute, MaxKeys: 100_000},
			RetryDedupe:     RetryDedupe{Enabled: true, MaxEvents: 2_000_000},
			EvalExposures: EvalExposures{Enabled: true, DedupeWindow: time.Minute, DedupeMaxKeys: 100_000,
				FlushInterval: time.Second, MaxBuffered: 100_000},
		},
		Forwarder: Forwarder{
			AdminListen:      ":8002",
			ConsumerName:     "sigedge-forwarder",
			FlushInterval:    60 * time.Second,
			BatchMaxEvents:   1000,
			BatchMaxBytes:    4 * MiB,
			MaxInFlightBytes: 256 * MiB,
			AckWait:          5 * time.Minute,
			RequestTimeout:   30 * time.Second,
			RetryBackoffMin:  time.Second,
			RetryBackoffMax:  2 * time.Minute,
			ReplayRate:       20,
			Concurrency:      8,
			MaxAckPending:    100_000,
			Breaker:          Breaker{ConsecutiveFailures: 5, OpenTimeout: 30 * time.Second, HalfOpenRequests: 1},
			ShutdownTimeout:  25 * time.Second,
		},
		Upstream: Upstream{
			ConfigCDN: "https://api.statsigcdn.com",
			API:       "https://statsigapi.net",
			Events:    "https://statsigapi.net",
			Timeout:   10 * time.Second,
		},
		RuleSets: RuleSets{
			PollInterval:   10 * time.Second,
			PollJitter:     time.Second,
			IdleTimeout:    time.Hour,
			InvalidKeyTTL:  time.Minute,
			IDListInterval: time.Minute,
			Share:          Share{Enabled: true, Bucket: "sigedge_rulesets", LeaseTTL: 30 * time.Second},
		},
		NATS: NATS{
			Embedded:       true,
			DataDir:        "./data/nats",
			Host:           "127.0.0.1",
			Port:           4222,
			ConnectTimeout: 5 * time.Second,
			ReconnectWait:  time.Second,
			PublishTimeout: 2 * time.Second, // below go-sdk's 3 s HTTP timeout, so it hears the 503 and retries
			Stream: Stream{
				Name:             "SIGEDGE_EVENTS",
				SubjectPrefix:    "sigedge.events",
				Replicas:         1,
				MaxAge:           7 * 24 * time.Hour,
				MaxBytes:         10 * GiB,
				DeadLetterName:   "SIGEDGE_DEADLETTER",
				DeadLetterMaxAge: 30 * 24 * time.Hour,
				DuplicateWindow:  10 * time.Minute,
				Compression:      CompressionS2,
			},
		},
		Limits: Limits{MaxBodyBytes: 10 * MiB, MaxInFlightEventBytes: 256 * MiB, MaxSDKKeys: 1000, MaxUserBytes: 64 * KiB},
	}
}

// Load reads the YAML file at path (no file when path is empty), applies the environment overrides
// from environ (os.Environ() form) and validates the result. Every error names the file or field.
func Load(path string, environ []string) (Config, error) {
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		if err := decodeYAML(data, &cfg); err != nil {
			return Config{}, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := applyEnv(&cfg, environ); err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Parse decodes YAML data over the defaults and validates it, without environment overrides.
// It is what tests (and the chart's rendered ConfigMap check) use.
func Parse(data []byte) (Config, error) {
	cfg := Default()
	if err := decodeYAML(data, &cfg); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func decodeYAML(data []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file means all defaults
		}
		return fmt.Errorf("invalid YAML: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return nil
}

// ServerKeyFor returns the server key a client key maps to.
func (c *Config) ServerKeyFor(clientKey string) (string, bool) {
	k, ok := c.ClientKeys[clientKey]
	return k, ok
}

// NewLogger returns the slog logger the configuration asks for, writing to w.
func (l Log) NewLogger(w io.Writer) *slog.Logger {
	var level slog.Level
	switch l.Level {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
