package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigedge/sigedge/configcache"
	"github.com/sigedge/sigedge/internal/wire"
)

// ruleSetMetrics count what the SDK-facing rule-set and ID-list endpoints answer.
type ruleSetMetrics struct {
	responses *prometheus.CounterVec
	bytes     *prometheus.CounterVec
}

func newRuleSetMetrics(reg prometheus.Registerer) *ruleSetMetrics {
	m := &ruleSetMetrics{
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigedge_sdk_ruleset_responses_total",
			Help: "Answers of the SDK-facing rule-set endpoints by endpoint (dcs_v1, dcs_v2, get_id_lists, id_list_file) and result (full, not_modified, etag_match, or the HTTP status of an error).",
		}, []string{"endpoint", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigedge_sdk_ruleset_served_bytes_total",
			Help: "Body bytes served by the SDK-facing rule-set endpoints, by endpoint and content encoding (identity, gzip).",
		}, []string{"endpoint", "encoding"}),
	}
	reg.MustRegister(m.responses, m.bytes)
	return m
}

// registerRuleSets adds the rule-set endpoints SDKs poll, and the ID-list endpoints (idlists.go).
func (a *App) registerRuleSets(mux *http.ServeMux) {
	for _, v := range []struct {
		prefix string
		format configcache.Format
	}{{"/v1", configcache.FormatV1}, {"/v2", configcache.FormatV2}} {
		h := a.handleDCS(v.format)
		// {key} is "<key>.json"; without it (go-sdk DisableCDN) the key is in STATSIG-API-KEY.
		mux.Handle("GET "+v.prefix+"/download_config_specs/{key}", h)
		mux.Handle("POST "+v.prefix+"/download_config_specs/{key}", h)
		mux.Handle("GET "+v.prefix+"/download_config_specs", h)
		mux.Handle("POST "+v.prefix+"/download_config_specs", h)
	}
	a.registerIDLists(mux)
}

// sdkKey returns the key of a request: the STATSIG-API-KEY header, else the path's {key}.json.
func sdkKey(r *http.Request) string {
	if k := r.Header.Get(wire.HeaderAPIKey); k != "" {
		return k
	}
	k := r.PathValue("key")
	k = strings.TrimSuffix(k, ".json")
	return strings.TrimSuffix(k, ".js")
}

// checkServerKey answers 401/403 for a request whose key may not download rule sets.
func (a *App) checkServerKey(w http.ResponseWriter, endpoint, key string) bool {
	switch {
	case key == "":
		a.ruleSetError(w, endpoint, http.StatusUnauthorized, "missing SDK key: send STATSIG-API-KEY, or put the key in the path ({key}.json)")
	case wire.IsClientKey(key):
		a.ruleSetError(w, endpoint, http.StatusForbidden, "client keys cannot download rule sets (they would reveal every rule); client SDKs call /v1/initialize")
	case !wire.IsServerKey(key):
		a.ruleSetError(w, endpoint, http.StatusUnauthorized, "not a server secret key (secret-…)")
	default:
		return true
	}
	return false
}

func (a *App) ruleSetError(w http.ResponseWriter, endpoint string, status int, reason string) {
	a.rsMetric.responses.WithLabelValues(endpoint, strconv.Itoa(status)).Inc()
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	writeError(w, status, reason)
}

// cacheError answers an error of the rule-set cache.
func (a *App) cacheError(w http.ResponseWriter, endpoint string, err error) {
	switch {
	case errors.Is(err, configcache.ErrUnknownKey):
		a.ruleSetError(w, endpoint, http.StatusUnauthorized, "unknown SDK key")
	case errors.Is(err, configcache.ErrNotAllowed):
		a.ruleSetError(w, endpoint, http.StatusUnauthorized, "SDK key is not in allowed_sdk_keys")
	case errors.Is(err, configcache.ErrInvalidKey):
		a.ruleSetError(w, endpoint, http.StatusUnauthorized, "Statsig refused this SDK key (401/403); it is not asked again for "+a.cfg.RuleSets.InvalidKeyTTL.String())
	case errors.Is(err, configcache.ErrFormatUnavailable):
		a.ruleSetError(w, endpoint, http.StatusNotFound, err.Error())
	case errors.Is(err, configcache.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		a.ruleSetError(w, endpoint, http.StatusServiceUnavailable, err.Error())
	default:
		a.logger.Error("rule-set lookup failed", "endpoint", endpoint, "err", err)
		a.ruleSetError(w, endpoint, http.StatusInternalServerError, "internal error")
	}
}

// Response header values shared by every answer (net/http only reads them).
var (
	hdrJSON        = []string{"application/json"}
	hdrGzip        = []string{"gzip"}
	hdrVary        = []string{"Accept-Encoding"}
	hdrNoCache     = []string{"no-cache"}
	noUpdatesBody  = []byte(`{"has_updates":false}`)
	hdrNoUpdateLen = []string{strconv.Itoa(len(noUpdatesBody))}
)

func (a *App) handleDCS(f configcache.Format) http.HandlerFunc {
	endpoint := "dcs_" + f.String()
	// Series resolved once: label hashing per request would be a visible share of a cached answer.
	var (
		full        = a.rsMetric.responses.WithLabelValues(endpoint, "full")
		notModified = a.rsMetric.responses.WithLabelValues(endpoint, "not_modified")
		etagMatch   = a.rsMetric.responses.WithLabelValues(endpoint, "etag_match")
		identity    = a.rsMetric.bytes.WithLabelValues(endpoint, "identity")
		gzipped     = a.rsMetric.bytes.WithLabelValues(endpoint, "gzip")
	)
	return func(w http.ResponseWriter, r *http.Request) {
		key := sdkKey(r)
		if !a.checkServerKey(w, endpoint, key) {
			return
		}
		sinceTime, err := a.sinceTimeOf(r)
		if err != nil {
			a.ruleSetError(w, endpoint, http.StatusBadRequest, err.Error())
			return
		}
		ctx := r.Context()
		if t := r.Header.Get(wire.HeaderSDKType); t != "" {
			ctx = configcache.WithClientInfo(ctx, configcache.ClientInfo{SDKType: t, SDKVersion: r.Header.Get(wire.HeaderSDKVersion)})
		}
		e, err := a.cache.Get(ctx, key, f)
		if err != nil {
			a.cacheError(w, endpoint, err)
			return
		}
		h := w.Header()
		h["Content-Type"] = hdrJSON
		h["Cache-Control"] = hdrNoCache
		h["X-Since-Time"] = []string{strconv.FormatInt(e.Time, 10)}
		if sinceTime > 0 && sinceTime >= e.Time {
			// The SDK holds this rule set (or a newer one): the same answer Statsig gives.
			h["Content-Length"] = hdrNoUpdateLen
			_, _ = w.Write(noUpdatesBody)
			notModified.Inc()
			identity.Add(float64(len(noUpdatesBody)))
			return
		}
		h["Vary"] = hdrVary
		body, etag, bytesServed := e.Payload, e.ETag, identity
		gz := acceptsGzip(r.Header.Get("Accept-Encoding"))
		if gz {
			body, etag, bytesServed = e.Gzip, e.GzipETag, gzipped
		}
		h["Etag"] = []string{etag}
		if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, e) {
			w.WriteHeader(http.StatusNotModified)
			etagMatch.Inc()
			return
		}
		if gz {
			h["Content-Encoding"] = hdrGzip
		}
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
		_, _ = w.Write(body)
		full.Inc()
		bytesServed.Add(float64(len(body)))
	}
}

// sinceTimeOf reads sinceTime from the query, or from the JSON body of a POST ({"sinceTime": N}).
// Missing means 0 (send everything).
func (a *App) sinceTimeOf(r *http.Request) (int64, error) {
	if s, ok := queryValue(r.URL.RawQuery, "sinceTime"); ok && s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, errors.New("sinceTime must be an integer (milliseconds since the epoch)")
		}
		return n, nil
	}
	if r.Method != http.MethodPost || r.Body == nil || r.ContentLength == 0 {
		return 0, nil
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, int64(a.cfg.Limits.MaxBodyBytes)+1))
	if err != nil {
		return 0, fmt.Errorf("reading body: %v", err)
	}
	if int64(len(data)) > int64(a.cfg.Limits.MaxBodyBytes) {
		return 0, fmt.Errorf("body larger than limits.max_body_bytes (%s)", a.cfg.Limits.MaxBodyBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return 0, nil
	}
	var body struct {
		SinceTime json.Number `json:"sinceTime"`
	}
	if err := json.Unmarshal(data, &body); err != nil {
		return 0, errors.New(`body must be a JSON object such as {"sinceTime": 0}`)
	}
	if body.SinceTime == "" {
		return 0, nil
	}
	n, err := body.SinceTime.Int64()
	if err != nil {
		return 0, errors.New("sinceTime must be an integer (milliseconds since the epoch)")
	}
	return n, nil
}

// queryValue finds one parameter in a raw query without building url.Values (hot path).
func queryValue(raw, name string) (string, bool) {
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(part, "=")
		if k == name {
			if strings.ContainsAny(v, "%+") {
				if u, err := unescapeQuery(v); err == nil {
					return u, true
				}
			}
			return v, true
		}
	}
	return "", false
}

func unescapeQuery(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			b.WriteByte(' ')
		case '%':
			if i+2 >= len(s) {
				return "", errors.New("bad escape")
			}
			n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", err
			}
			b.WriteByte(byte(n))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// acceptsGzip reports whether an Accept-Encoding value allows gzip (gzip, x-gzip or *, with q > 0).
func acceptsGzip(ae string) bool {
	if ae == "" {
		return false
	}
	if ae == "gzip" {
		return true
	}
	star := false
	for _, part := range strings.Split(ae, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding != "gzip" && coding != "x-gzip" && coding != "*" {
			continue
		}
		ok := true
		for _, p := range strings.Split(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(strings.TrimSpace(k), "q") {
				if q, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && q <= 0 {
					ok = false
				}
			}
		}
		if coding == "*" {
			star = ok
			continue
		}
		return ok
	}
	return star
}

// etagMatches implements If-None-Match against both representations of e (weak comparison).
func etagMatches(inm string, e *configcache.Entry) bool {
	for _, t := range strings.Split(inm, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == e.ETag || t == e.GzipETag {
			return true
		}
	}
	return false
}
