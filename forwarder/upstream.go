package forwarder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/sigedge/sigedge/internal/wire"
)

// outcome is what the forwarder does with a batch after one attempt.
type outcome int

const (
	// outAccepted: Statsig took the batch (2xx); ack it.
	outAccepted outcome = iota
	// outRetry: a network error, time-out, 408 or 5xx: Statsig's fault, counted by the breaker; retry.
	outRetry
	// outThrottled: 429; retry after Retry-After, without counting against the breaker (a rate limit
	// of one key must not stop the others).
	outThrottled
	// outKeyRefused: 401/403: the key's fault; every batch of the key would fail alike, so the batch is
	// dead-lettered whole, and other keys go on.
	outKeyRefused
	// outRejected: any other 4xx: something in the batch; it is split to find the bad message, and a
	// single bad message is dead-lettered.
	outRejected
)

func (o outcome) String() string {
	return [...]string{"accepted", "retry", "throttled", "key_refused", "rejected"}[o]
}

// classify maps one attempt's status (0 when there was no response) to an outcome.
func classify(status int) outcome {
	switch {
	case status >= 200 && status < 300:
		return outAccepted
	case status == http.StatusTooManyRequests:
		return outThrottled
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return outKeyRefused
	case status == http.StatusRequestTimeout:
		return outRetry
	case status >= 400 && status < 500:
		return outRejected
	}
	// No response, 5xx, and anything unexpected (1xx/3xx) mean Statsig is not well: keep and retry.
	return outRetry
}

// upstream posts batches to Statsig's event API.
type upstream struct {
	client    *http.Client
	base      string // upstream.events without a trailing slash
	userAgent string
}

// attempt is the result of one POST.
type attempt struct {
	status     int           // 0 when no response arrived
	err        error         // transport error, with the URL left out (it may carry a client key)
	timeout    bool          // err was a time-out
	retryAfter time.Duration // from a Retry-After header
	detail     string        // the start of the response body, for logs and dead-letter reasons
	latency    time.Duration
}

func newUpstream(base string, timeout time.Duration, concurrency int, version string) *upstream {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = max(100, concurrency*2)
	tr.MaxIdleConnsPerHost = concurrency
	return &upstream{
		client:    &http.Client{Transport: tr, Timeout: timeout},
		base:      strings.TrimRight(base, "/"),
		userAgent: "sigedge-forwarder/" + version,
	}
}

var gzipPool = sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(io.Discard, gzip.DefaultCompression); return w }}

// encodeBody writes the request body of b: {"events":[…all messages' events…],"statsigMetadata":…}.
// log_event bodies are gzipped as the server SDKs send them; rgstr bodies are plain JSON, which every
// client SDK version sends (newer ones flag gzip with a query parameter rather than a header).
func encodeBody(b *batch) []byte {
	var buf bytes.Buffer
	buf.Grow(b.bytes/4 + 256)
	var w io.Writer = &buf
	var zw *gzip.Writer
	if b.endpoint == endpointLogEvent {
		zw = gzipPool.Get().(*gzip.Writer)
		zw.Reset(&buf)
		w = zw
	}
	_, _ = io.WriteString(w, `{"events":[`)
	first := true
	for _, m := range b.msgs {
		if m.count == 0 {
			continue
		}
		if !first {
			_, _ = io.WriteString(w, ",")
		}
		first = false
		_, _ = w.Write(m.events)
	}
	_, _ = io.WriteString(w, "]")
	if b.meta != nil {
		_, _ = io.WriteString(w, `,"statsigMetadata":`)
		_, _ = w.Write(b.meta)
	}
	if b.extra != nil {
		_, _ = io.WriteString(w, ",")
		_, _ = w.Write(b.extra)
	}
	_, _ = io.WriteString(w, "}")
	if zw != nil {
		_ = zw.Close()
		zw.Reset(io.Discard) // drop the reference to buf
		gzipPool.Put(zw)
	}
	return buf.Bytes()
}

// post sends b once. The body is built at the first attempt and kept for retries.
func (u *upstream) post(ctx context.Context, b *batch) attempt {
	if b.body == nil {
		b.body = encodeBody(b)
	}
	target := u.base + "/v1/" + b.endpoint
	now := time.Now()
	if b.endpoint == endpointRgstr {
		// Client SDKs put their key and identity in the query (no CORS preflight); send both forms.
		q := url.Values{}
		q.Set("k", b.key)
		q.Set("ec", strconv.Itoa(b.events))
		q.Set("t", strconv.FormatInt(now.UnixMilli(), 10))
		if b.sdkType != "" {
			q.Set("st", b.sdkType)
		}
		if b.sdkVersion != "" {
			q.Set("sv", b.sdkVersion)
		}
		target += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(b.body))
	if err != nil {
		return attempt{err: fmt.Errorf("build request: %w", redactURLError(err))}
	}
	h := req.Header
	h.Set(wire.HeaderAPIKey, b.key)
	h.Set("Content-Type", "application/json")
	if b.endpoint == endpointLogEvent {
		h.Set("Content-Encoding", "gzip")
	}
	h.Set(wire.HeaderEventCount, strconv.Itoa(b.events))
	h.Set(wire.HeaderClientTime, strconv.FormatInt(clientTime(b, now).UnixMilli(), 10))
	h.Set(wire.HeaderRetryCount, strconv.Itoa(b.attempt))
	if b.sdkType != "" {
		h.Set(wire.HeaderSDKType, b.sdkType)
	}
	if b.sdkVersion != "" {
		h.Set(wire.HeaderSDKVersion, b.sdkVersion)
	}
	h.Set("User-Agent", u.userAgent)

	res, err := u.client.Do(req)
	a := attempt{latency: time.Since(now)}
	if err != nil {
		var ue *url.Error
		a.timeout = errors.As(err, &ue) && ue.Timeout() || errors.Is(err, context.DeadlineExceeded)
		a.err = redactURLError(err)
		return a
	}
	defer res.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(res.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10)) // so the connection can be reused
	a.status = res.StatusCode
	a.detail = strings.Join(strings.Fields(string(head)), " ")
	a.retryAfter = parseRetryAfter(res.Header.Get("Retry-After"), now)
	return a
}

// clientTime is the STATSIG-CLIENT-TIME of a request sent now. Statsig compares it with its own
// clock to correct the skew of the SDK's clock, which the event times come from. The SDK's own value
// is hours old after an outage, so it is not sent as is: the SDK's offset from the proxy's clock at
// receipt is kept and applied to now (the proxy's and forwarder's clocks are assumed in sync).
// Without that offset, the forwarder's clock is all there is.
func clientTime(b *batch, now time.Time) time.Time {
	if len(b.msgs) > 0 && b.msgs[0].hasOffset {
		return now.Add(b.msgs[0].clockOffset)
	}
	return now
}

// redactURLError drops the URL from an http.Client error: rgstr URLs carry the client key.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// parseRetryAfter reads a Retry-After header (seconds or an HTTP date); 0 when absent or invalid.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// describe is an attempt's result in a few words, for logs and metrics labels.
func (a attempt) describe() string {
	if a.err != nil {
		if a.timeout {
			return "timeout"
		}
		return "network_error"
	}
	return strconv.Itoa(a.status)
}
