package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"
)

// FieldError is one problem with one field. Field is the YAML path (e.g. "nats.stream.replicas").
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return "config: " + e.Field + ": " + e.Problem }

// Errors is the list of problems Validate found. Its message is one line.
type Errors []*FieldError

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Field + ": " + e.Problem
	}
	return "config: " + strings.Join(parts, "; ")
}

// Unwrap lets errors.As find each *FieldError.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

func joinFieldErrors(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	var out Errors
	for _, err := range errs {
		var fe *FieldError
		if errors.As(err, &fe) {
			out = append(out, fe)
		} else {
			out = append(out, &FieldError{Field: "?", Problem: err.Error()})
		}
	}
	return out
}

// Validate checks every field. It returns Errors (one *FieldError per problem) or nil.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	oneOf := func(field, v string, allowed ...string) {
		for _, a := range allowed {
			if v == a {
				return
			}
		}
		bad(field, "must be one of %s, got %q", strings.Join(allowed, ", "), v)
	}
	positive := func(field string, d time.Duration) {
		if d <= 0 {
			bad(field, "must be a positive duration, got %s", d)
		}
	}
	addr := func(field, a string) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad(field, "must be host:port (e.g. :8000), got %q", a)
		}
	}
	baseURL := func(field, u string) {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad(field, "must be an http(s) URL, got %q", u)
		}
	}

	oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf("log.format", c.Log.Format, "text", "json")

	addr("proxy.listen", c.Proxy.Listen)
	addr("proxy.admin_listen", c.Proxy.AdminListen)
	positive("proxy.shutdown_timeout", c.Proxy.ShutdownTimeout)
	positive("proxy.read_timeout", c.Proxy.ReadTimeout)
	positive("proxy.write_timeout", c.Proxy.WriteTimeout)
	positive("proxy.idle_timeout", c.Proxy.IdleTimeout)
	if c.Proxy.PublicURL != "" {
		baseURL("proxy.public_url", c.Proxy.PublicURL)
	}
	if c.Proxy.ExposureDedupe.Enabled {
		positive("proxy.exposure_dedupe.window", c.Proxy.ExposureDedupe.Window)
		if c.Proxy.ExposureDedupe.MaxKeys <= 0 {
			bad("proxy.exposure_dedupe.max_keys", "must be positive, got %d", c.Proxy.ExposureDedupe.MaxKeys)
		}
	}

	if c.Proxy.RetryDedupe.Enabled && c.Proxy.RetryDedupe.MaxEvents <= 0 {
		bad("proxy.retry_dedupe.max_events", "must be positive, got %d", c.Proxy.RetryDedupe.MaxEvents)
	}

	if e := c.Proxy.EvalExposures; e.Enabled {
		if e.DedupeWindow < 0 {
			bad("proxy.eval_exposures.dedupe_window", "must be 0 (off) or positive, got %s", e.DedupeWindow)
		}
		if e.DedupeMaxKeys <= 0 {
			bad("proxy.eval_exposures.dedupe_max_keys", "must be positive, got %d", e.DedupeMaxKeys)
		}
		positive("proxy.eval_exposures.flush_interval", e.FlushInterval)
		if e.MaxBuffered <= 0 {
			bad("proxy.eval_exposures.max_buffered", "must be positive, got %d", e.MaxBuffered)
		}
	}

	f := c.Forwarder
	addr("forwarder.admin_listen", f.AdminListen)
	if strings.TrimSpace(f.ConsumerName) == "" || strings.ContainsAny(f.ConsumerName, ". *>") {
		bad("forwarder.consumer_name", "must be a name without spaces, dots, * or >, got %q", f.ConsumerName)
	}
	positive("forwarder.flush_interval", f.FlushInterval)
	if f.BatchMaxEvents <= 0 {
		bad("forwarder.batch_max_events", "must be positive, got %d", f.BatchMaxEvents)
	}
	if f.BatchMaxBytes <= 0 {
		bad("forwarder.batch_max_bytes", "must be positive, got %s", f.BatchMaxBytes)
	}
	if f.MaxInFlightBytes < f.BatchMaxBytes {
		bad("forwarder.max_in_flight_bytes", "must be at least forwarder.batch_max_bytes (%s), got %s", f.BatchMaxBytes, f.MaxInFlightBytes)
	}
	positive("forwarder.ack_wait", f.AckWait)
	positive("forwarder.request_timeout", f.RequestTimeout)
	positive("forwarder.retry_backoff_min", f.RetryBackoffMin)
	if f.RetryBackoffMax < f.RetryBackoffMin {
		bad("forwarder.retry_backoff_max", "must be at least forwarder.retry_backoff_min (%s), got %s", f.RetryBackoffMin, f.RetryBackoffMax)
	}
	if f.ReplayRate < 0 {
		bad("forwarder.replay_rate", "must be 0 (unlimited) or positive, got %g", f.ReplayRate)
	}
	if f.Concurrency < 1 || f.Concurrency > 1024 {
		bad("forwarder.concurrency", "must be 1..1024, got %d", f.Concurrency)
	}
	if f.MaxAckPending < 1 {
		bad("forwarder.max_ack_pending", "must be positive, got %d", f.MaxAckPending)
	}
	if f.Breaker.ConsecutiveFailures <= 0 {
		bad("forwarder.breaker.consecutive_failures", "must be positive, got %d", f.Breaker.ConsecutiveFailures)
	}
	positive("forwarder.breaker.open_timeout", f.Breaker.OpenTimeout)
	if f.Breaker.HalfOpenRequests <= 0 {
		bad("forwarder.breaker.half_open_requests", "must be positive, got %d", f.Breaker.HalfOpenRequests)
	}
	positive("forwarder.shutdown_timeout", f.ShutdownTimeout)
	if f.AckWait <= f.RequestTimeout {
		bad("forwarder.ack_wait", "must be longer than forwarder.request_timeout (%s), or batches are redelivered while still being sent", f.RequestTimeout)
	}

	baseURL("upstream.config_cdn", c.Upstream.ConfigCDN)
	baseURL("upstream.api", c.Upstream.API)
	baseURL("upstream.events", c.Upstream.Events)
	positive("upstream.timeout", c.Upstream.Timeout)

	r := c.RuleSets
	positive("rulesets.poll_interval", r.PollInterval)
	if r.PollJitter < 0 || r.PollJitter >= r.PollInterval {
		bad("rulesets.poll_jitter", "must be at least 0 and less than rulesets.poll_interval (%s), got %s", r.PollInterval, r.PollJitter)
	}
	positive("rulesets.idle_timeout", r.IdleTimeout)
	positive("rulesets.invalid_key_ttl", r.InvalidKeyTTL)
	positive("rulesets.id_list_interval", r.IDListInterval)
	seen := map[string]bool{}
	for i, o := range r.Offline {
		field := fmt.Sprintf("rulesets.offline[%d]", i)
		if !strings.HasPrefix(o.SDKKey, "secret-") {
			bad(field+".sdk_key", "must be a server secret key (secret-…), got %q", redact(o.SDKKey))
		}
		if seen[o.SDKKey] {
			bad(field+".sdk_key", "is listed twice")
		}
		seen[o.SDKKey] = true
		if o.File == "" {
			bad(field+".file", "is required")
		} else if st, err := os.Stat(o.File); err != nil {
			bad(field+".file", "cannot be read: %v", err)
		} else if st.IsDir() {
			bad(field+".file", "%s is a directory", o.File)
		}
	}
	if r.Share.Enabled {
		if !validName(r.Share.Bucket) {
			bad("rulesets.share.bucket", "must be letters, digits, - or _, got %q", r.Share.Bucket)
		}
		positive("rulesets.share.lease_ttl", r.Share.LeaseTTL)
		if minLease := r.PollInterval + r.PollJitter + c.Upstream.Timeout; r.Share.LeaseTTL <= minLease {
			bad("rulesets.share.lease_ttl", "must be longer than rulesets.poll_interval + poll_jitter + upstream.timeout (%s), or a slow poller loses its lease between polls", minLease)
		}
	}

	n := c.NATS
	if n.Embedded {
		if n.DataDir == "" {
			bad("nats.data_dir", "is required when nats.embedded is true")
		}
		if n.Port < 0 || n.Port > 65535 {
			bad("nats.port", "must be 0..65535 (0 picks a free port), got %d", n.Port)
		}
		if net.ParseIP(n.Host) == nil && n.Host != "localhost" {
			bad("nats.host", "must be an IP address, got %q", n.Host)
		}
	} else if len(n.URLs) == 0 {
		bad("nats.urls", "must list at least one server when nats.embedded is false")
	}
	for i, u := range n.URLs {
		p, err := url.Parse(u)
		if err != nil || p.Host == "" || !strings.HasPrefix(p.Scheme, "nats") && p.Scheme != "tls" && p.Scheme != "ws" && p.Scheme != "wss" {
			bad(fmt.Sprintf("nats.urls[%d]", i), "must be a nats:// or tls:// URL, got %q", u)
		}
	}
	for _, ff := range [][2]string{{"nats.credentials_file", n.CredentialsFile}, {"nats.nkey_file", n.NKeyFile},
		{"nats.tls.ca_file", n.TLS.CAFile}, {"nats.tls.cert_file", n.TLS.CertFile}, {"nats.tls.key_file", n.TLS.KeyFile}} {
		if ff[1] == "" {
			continue
		}
		if _, err := os.Stat(ff[1]); err != nil {
			bad(ff[0], "cannot be read: %v", err)
		}
	}
	if n.CredentialsFile != "" && n.NKeyFile != "" {
		bad("nats.nkey_file", "cannot be combined with nats.credentials_file")
	}
	if (n.TLS.CertFile == "") != (n.TLS.KeyFile == "") {
		bad("nats.tls.cert_file", "and nats.tls.key_file must be given together")
	}
	positive("nats.connect_timeout", n.ConnectTimeout)
	positive("nats.reconnect_wait", n.ReconnectWait)
	positive("nats.publish_timeout", n.PublishTimeout)
	if n.PublishTimeout >= c.Proxy.WriteTimeout {
		bad("nats.publish_timeout", "must be shorter than proxy.write_timeout (%s), or the SDK's connection is cut before it hears 503", c.Proxy.WriteTimeout)
	}
	s := n.Stream
	if !validName(s.Name) {
		bad("nats.stream.name", "must be letters, digits, - or _, got %q", s.Name)
	}
	if !validName(s.DeadLetterName) || s.DeadLetterName == s.Name {
		bad("nats.stream.dead_letter_name", "must be a valid stream name different from nats.stream.name, got %q", s.DeadLetterName)
	}
	if s.SubjectPrefix == "" || strings.ContainsAny(s.SubjectPrefix, " *>") || strings.HasSuffix(s.SubjectPrefix, ".") || strings.HasPrefix(s.SubjectPrefix, ".") {
		bad("nats.stream.subject_prefix", "must be a subject such as sigedge.events, got %q", s.SubjectPrefix)
	}
	if s.Replicas < 1 || s.Replicas > 5 {
		bad("nats.stream.replicas", "must be 1..5, got %d", s.Replicas)
	}
	if n.Embedded && s.Replicas != 1 {
		bad("nats.stream.replicas", "must be 1 with the embedded single server, got %d", s.Replicas)
	}
	positive("nats.stream.max_age", s.MaxAge)
	positive("nats.stream.dead_letter_max_age", s.DeadLetterMaxAge)
	if s.MaxBytes <= 0 {
		bad("nats.stream.max_bytes", "must be positive, got %s", s.MaxBytes)
	}
	positive("nats.stream.duplicate_window", s.DuplicateWindow)
	if s.DuplicateWindow > s.MaxAge {
		bad("nats.stream.duplicate_window", "must not exceed nats.stream.max_age (%s)", s.MaxAge)
	}
	oneOf("nats.stream.compression", s.Compression, CompressionS2, CompressionNone)
	if n.Embedded && !s.Placement.Empty() {
		bad("nats.stream.placement", "must be empty with the embedded single server")
	}
	if strings.ContainsAny(s.Placement.Cluster, " \t.*>") {
		bad("nats.stream.placement.cluster", "must be a NATS cluster name (no spaces, dots, * or >), got %q", s.Placement.Cluster)
	}
	for i, tag := range s.Placement.Tags {
		if strings.TrimSpace(tag) == "" || strings.ContainsAny(tag, " \t,") {
			bad(fmt.Sprintf("nats.stream.placement.tags[%d]", i), "must be a server tag without spaces or commas (e.g. az:eu-west-1a), got %q", tag)
		}
	}

	clientKeys := make([]string, 0, len(c.ClientKeys))
	for ck := range c.ClientKeys {
		clientKeys = append(clientKeys, ck)
	}
	sort.Strings(clientKeys)
	for _, ck := range clientKeys {
		sk := c.ClientKeys[ck]
		if !strings.HasPrefix(ck, "client-") {
			bad("client_keys", "key %q must be a client key (client-…)", redact(ck))
		}
		if !strings.HasPrefix(sk, "secret-") {
			bad("client_keys."+redact(ck), "must map to a server secret key (secret-…), got %q", redact(sk))
		}
	}
	for i, k := range c.AllowedSDKKeys {
		if !strings.HasPrefix(k, "secret-") {
			bad(fmt.Sprintf("allowed_sdk_keys[%d]", i), "must be a server secret key (secret-…), got %q", redact(k))
		}
	}

	if c.Limits.MaxBodyBytes < 1024 {
		bad("limits.max_body_bytes", "must be at least 1KiB, got %s", c.Limits.MaxBodyBytes)
	}
	if c.Limits.MaxInFlightEventBytes < 2*c.Limits.MaxBodyBytes {
		// One request may hold a body of the largest size as received and again decompressed.
		bad("limits.max_in_flight_event_bytes", "must be at least twice limits.max_body_bytes (%s), got %s",
			c.Limits.MaxBodyBytes, c.Limits.MaxInFlightEventBytes)
	}
	if c.Limits.MaxSDKKeys <= 0 {
		bad("limits.max_sdk_keys", "must be positive, got %d", c.Limits.MaxSDKKeys)
	}
	if c.Limits.MaxSDKKeys < len(r.Offline) {
		bad("limits.max_sdk_keys", "must be at least the number of offline rule sets (%d)", len(r.Offline))
	}
	if c.Limits.MaxUserBytes < 256 {
		bad("limits.max_user_bytes", "must be at least 256B, got %s", c.Limits.MaxUserBytes)
	}
	return joinFieldErrors(errs)
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// redact keeps secrets out of error messages: the prefix and the last 4 characters only.
func redact(key string) string {
	if len(key) <= 12 {
		return key
	}
	i := strings.IndexByte(key, '-')
	if i < 0 || i > 8 {
		i = 0
	}
	return key[:i+1] + "…" + key[len(key)-4:]
}
