package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigedge/sigedge/configcache"
	"github.com/sigedge/sigedge/evalcore"
	"github.com/sigedge/sigedge/internal/wire"
)

// EvaluatorSource returns the evaluator of a server key's current rule set, fetching the rule set
// when the key is new. The rule-set cache implements it.
type EvaluatorSource func(ctx context.Context, serverKey string) (*evalcore.Evaluator, error)

// errUnknownKey is what an EvaluatorSource returns for a key it cannot serve; the evaluation
// endpoints answer 401 for it.
var errUnknownKey = errors.New("unknown SDK key")

// evalService answers Statsig's HTTP evaluation API (check_gate, get_config, get_layer) and client
// initialize from the cached rule sets, and logs the exposures those evaluations cause.
type evalService struct {
	source     EvaluatorSource
	exposures  *exposureBatcher // nil: exposures are not logged
	dedupe     *expirable.LRU[uint64, struct{}]
	clientKeys map[string]string
	allowed    map[string]bool // nil: every server key
	maxBody    int64
	maxUser    int64
	version    string
	logger     *slog.Logger

	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	exposed   *prometheus.CounterVec
	evaluated *prometheus.CounterVec
	// deduplicated is exposed's "deduplicated" child, resolved once: looking a child up hashes
	// its labels, on every exposure otherwise.
	deduplicated prometheus.Counter
	initMetrics  endpointMetrics
}

// endpointMetrics are the children of the evaluation metrics an endpoint's answered requests
// update, resolved once per endpoint rather than per request.
type endpointMetrics struct {
	ok        prometheus.Counter
	latency   prometheus.Observer
	evaluated prometheus.Counter
}

// endpointMetrics resolves an endpoint's children; evaluated only for the evaluation endpoints
// (initialize does not count its evaluations).
func (s *evalService) endpointMetrics(endpoint string, evaluations bool) endpointMetrics {
	m := endpointMetrics{ok: s.requests.WithLabelValues(endpoint, "200"), latency: s.latency.WithLabelValues(endpoint)}
	if evaluations {
		m.evaluated = s.evaluated.WithLabelValues(endpoint)
	}
	return m
}

// newEvalService builds the App's evaluation endpoints on its rule-set cache and event stream.
func (a *App) newEvalService() *evalService {
	x := a.cfg.Proxy.EvalExposures
	o := evalOptions{
		Source: func(ctx context.Context, key string) (*evalcore.Evaluator, error) {
			ev, err := a.cache.Evaluator(ctx, key)
			if errors.Is(err, configcache.ErrUnknownKey) || errors.Is(err, configcache.ErrInvalidKey) || errors.Is(err, configcache.ErrNotAllowed) {
				return nil, fmt.Errorf("%w: %v", errUnknownKey, err)
			}
			return ev, err
		},
		ClientKeys:    a.cfg.ClientKeys,
		AllowedKeys:   a.cfg.AllowedSDKKeys,
		MaxBody:       int64(a.cfg.Limits.MaxBodyBytes),
		MaxUser:       int64(a.cfg.Limits.MaxUserBytes),
		DedupeWindow:  x.DedupeWindow,
		DedupeMaxKeys: x.DedupeMaxKeys,
		FlushInterval: x.FlushInterval,
		MaxBuffered:   x.MaxBuffered,
		Version:       a.version,
		Logger:        a.logger,
		Registry:      a.registry,
	}
	if x.Enabled {
		o.Publish = a.publishExposures
	}
	return newEvalService(o)
}

// evalOptions configure an evalService.
type evalOptions struct {
	Source  EvaluatorSource
	Publish ExposurePublisher // nil: exposures are not logged
	// ClientKeys maps client keys to server keys (initialize).
	ClientKeys map[string]string
	// AllowedKeys, when not empty, are the only server keys served.
	AllowedKeys []string
	// MaxBody bounds a request body (before and after decompression); MaxUser the user object.
	MaxBody, MaxUser int64
	// DedupeWindow and DedupeMaxKeys: an exposure of the same (key, user, spec, rule, value) is
	// logged once per window; a zero window turns de-duplication off.
	DedupeWindow  time.Duration
	DedupeMaxKeys int
	// FlushInterval and MaxBuffered bound how late and how many exposures wait to be published.
	FlushInterval time.Duration
	MaxBuffered   int
	Version       string
	Logger        *slog.Logger
	Registry      prometheus.Registerer
}

func newEvalService(o evalOptions) *evalService {
	s := &evalService{
		source: o.Source, clientKeys: o.ClientKeys, maxBody: o.MaxBody, maxUser: o.MaxUser,
		version: o.Version, logger: o.Logger,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigedge_eval_requests_total", Help: "Evaluation API requests by endpoint and HTTP status.",
		}, []string{"endpoint", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sigedge_eval_request_seconds", Help: "Latency of answered evaluation API requests.",
			Buckets: []float64{.0001, .00025, .0005, .001, .002, .005, .01, .025, .05, .1, .5},
		}, []string{"endpoint"}),
		exposed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigedge_eval_exposures_total", Help: "Exposures of served evaluations by outcome (queued, published, retried, deduplicated, dropped).",
		}, []string{"outcome"}),
		evaluated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigedge_evaluations_total", Help: "Gates, configs and layers evaluated for the HTTP API, by endpoint.",
		}, []string{"endpoint"}),
	}
	s.deduplicated = s.exposed.WithLabelValues("deduplicated")
	s.initMetrics = s.endpointMetrics("initialize", false)
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if len(o.AllowedKeys) > 0 {
		s.allowed = map[string]bool{}
		for _, k := range o.AllowedKeys {
			s.allowed[k] = true
		}
	}
	if o.Registry != nil {
		o.Registry.MustRegister(s.requests, s.latency, s.exposed, s.evaluated)
	}
	if o.Publish != nil {
		if o.DedupeWindow > 0 {
			s.dedupe = expirable.NewLRU[uint64, struct{}](o.DedupeMaxKeys, nil, o.DedupeWindow)
		}
		s.exposures = newExposureBatcher(o.Publish, o.FlushInterval, o.MaxBuffered, s.exposed, s.logger)
	}
	return s
}

// Close publishes the exposures still queued, bounded by ctx.
func (s *evalService) Close(ctx context.Context) {
	if s.exposures != nil {
		s.exposures.Close(ctx)
	}
}

// evalRequest is the body of check_gate, get_config, get_layer and initialize.
type evalRequest struct {
	User                   json.RawMessage `json:"user"`
	GateName               *string         `json:"gateName"`
	GateNames              []string        `json:"gateNames"`
	ConfigName             *string         `json:"configName"`
	ConfigNames            []string        `json:"configNames"`
	LayerName              *string         `json:"layerName"`
	LayerNames             []string        `json:"layerNames"`
	DisableExposureLogging bool            `json:"disableExposureLogging"`
	StatsigMetadata        struct {
		ExposureLoggingDisabled bool `json:"exposureLoggingDisabled"`
	} `json:"statsigMetadata"`
	// initialize
	Hash      string          `json:"hash"`
	SinceTime json.RawMessage `json:"sinceTime"`

	// single backs the list names returns for a single name, so that it needs no allocation of
	// its own (the request is allocated anyway).
	single [1]string
}

// maxNamesPerRequest bounds the batch forms, as Statsig's API does.
const maxNamesPerRequest = 100

type evalKind int

const (
	kindGate evalKind = iota
	kindConfig
	kindLayer
)

func (k evalKind) String() string {
	return [...]string{"check_gate", "get_config", "get_layer"}[k]
}

func (s *evalService) register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/check_gate", s.handleEval(kindGate))
	mux.HandleFunc("POST /v1/get_config", s.handleEval(kindConfig))
	mux.HandleFunc("POST /v1/get_experiment", s.handleEval(kindConfig))
	mux.HandleFunc("POST /v1/get_layer", s.handleEval(kindLayer))
	mux.HandleFunc("POST /v1/initialize", s.handleInitialize)
}

// apiError is an evaluation request refused with a status and a reason.
type apiError struct {
	status int
	reason string
}

func (e *apiError) Error() string { return e.reason }

func badRequest(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// readBody reads a request body, gzip-decoded when so encoded, bounded by maxBody before and
// after decompression.
func (s *evalService) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	if (enc == "" || enc == "identity") && r.ContentLength >= 0 && r.ContentLength <= s.maxBody {
		// A plain body of a declared length within bounds (the usual request): the server's body
		// reader stops at Content-Length, so one buffer of that size replaces io.ReadAll's growing
		// one and the limiting readers.
		data := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, data); err != nil {
			return nil, badRequest("cannot read body: %v", err)
		}
		return data, nil
	}
	body := http.MaxBytesReader(w, r.Body, s.maxBody)
	var rd io.Reader = body
	switch enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, badRequest("body is not valid gzip: %v", err)
		}
		defer zr.Close()
		rd = zr
	default:
		return nil, &apiError{http.StatusUnsupportedMediaType, "unsupported Content-Encoding " + strconv.Quote(enc) + " (use gzip or none)"}
	}
	data, err := io.ReadAll(io.LimitReader(rd, s.maxBody+1))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig) || int64(len(data)) > s.maxBody:
		return nil, &apiError{http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", s.maxBody)}
	case err != nil:
		return nil, badRequest("cannot read body: %v", err)
	}
	return data, nil
}

// readRequest reads and decodes the body of an evaluation or initialize request.
func (s *evalService) readRequest(w http.ResponseWriter, r *http.Request) (*evalRequest, *evalcore.User, *apiError) {
	data, aerr := s.readBody(w, r)
	if aerr != nil {
		return nil, nil, aerr
	}
	return s.decode(data)
}

// decode parses an evaluation request and its user.
func (s *evalService) decode(data []byte) (*evalRequest, *evalcore.User, *apiError) {
	var req evalRequest
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil, badRequest("empty body: send a JSON object such as {\"user\":{\"userID\":\"u1\"},\"gateName\":\"my_gate\"}")
	}
	if err := decodeEvalRequest(data, &req); err != nil {
		return nil, nil, badRequest("body is not a valid request: %v", err)
	}
	raw := bytes.TrimSpace(req.User)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		raw = []byte("{}") // Statsig evaluates a missing user as an empty one
	}
	if raw[0] != '{' {
		return nil, nil, badRequest("user must be a JSON object")
	}
	if int64(len(raw)) > s.maxUser {
		return nil, nil, &apiError{http.StatusRequestEntityTooLarge, fmt.Sprintf("user object larger than %d bytes (limits.max_user_bytes)", s.maxUser)}
	}
	u, err := evalcore.ParseUser(raw)
	if err != nil {
		return nil, nil, badRequest("invalid user: %v", err)
	}
	req.User = raw
	return &req, u, nil
}

// names returns the names a request asks for, and whether it used the batch form.
func (req *evalRequest) names(k evalKind) ([]string, bool, *apiError) {
	var one *string
	var many []string
	field := ""
	switch k {
	case kindGate:
		one, many, field = req.GateName, req.GateNames, "gateName"
	case kindConfig:
		one, many, field = req.ConfigName, req.ConfigNames, "configName"
	default:
		one, many, field = req.LayerName, req.LayerNames, "layerName"
	}
	switch {
	case one != nil && many != nil:
		return nil, false, badRequest("send %s or %ss, not both", field, field)
	case one != nil:
		if *one == "" {
			return nil, false, badRequest("%s is empty", field)
		}
		req.single[0] = *one
		return req.single[:], false, nil
	case many != nil:
		if len(many) == 0 || len(many) > maxNamesPerRequest {
			return nil, false, badRequest("%ss must list 1 to %d names", field, maxNamesPerRequest)
		}
		for i, n := range many {
			if n == "" {
				return nil, false, badRequest("%ss[%d] is empty", field, i)
			}
		}
		return many, true, nil
	}
	return nil, false, badRequest("missing %s (or %ss for several)", field, field)
}

// serverKeyOf authenticates an evaluation request: only server secret keys may ask for
// server-side evaluations.
func (s *evalService) serverKeyOf(r *http.Request) (string, *apiError) {
	key := r.Header.Get(wire.HeaderAPIKey)
	switch {
	case key == "":
		return "", &apiError{http.StatusUnauthorized, "missing STATSIG-API-KEY header"}
	case wire.IsClientKey(key):
		return "", &apiError{http.StatusForbidden, "client keys may call /v1/initialize, /v1/log_event and /v1/rgstr only; use a server secret key"}
	case !wire.IsServerKey(key):
		return "", &apiError{http.StatusUnauthorized, "STATSIG-API-KEY is not a server secret key (secret-…)"}
	case s.allowed != nil && !s.allowed[key]:
		return "", &apiError{http.StatusUnauthorized, "SDK key is not in allowed_sdk_keys"}
	}
	return key, nil
}

func (s *evalService) evaluator(ctx context.Context, key string) (*evalcore.Evaluator, *apiError) {
	ev, err := s.source(ctx, key)
	switch {
	case errors.Is(err, errUnknownKey):
		return nil, &apiError{http.StatusUnauthorized, "unknown SDK key (Statsig refused it, or it is not configured)"}
	case err != nil:
		return nil, &apiError{http.StatusServiceUnavailable, "rule set not available: " + err.Error()}
	}
	return ev, nil
}

func (s *evalService) fail(w http.ResponseWriter, endpoint string, e *apiError) {
	s.requests.WithLabelValues(endpoint, strconv.Itoa(e.status)).Inc()
	if e.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeError(w, e.status, e.reason)
}

func (s *evalService) handleEval(k evalKind) http.HandlerFunc {
	endpoint := k.String()
	m := s.endpointMetrics(endpoint, true)
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		key, aerr := s.serverKeyOf(r)
		if aerr != nil {
			s.fail(w, endpoint, aerr)
			return
		}
		req, user, aerr := s.readRequest(w, r)
		if aerr != nil {
			s.fail(w, endpoint, aerr)
			return
		}
		names, batch, aerr := req.names(k)
		if aerr != nil {
			s.fail(w, endpoint, aerr)
			return
		}
		ev, aerr := s.evaluator(r.Context(), key)
		if aerr != nil {
			s.fail(w, endpoint, aerr)
			return
		}
		logExposures := s.exposures != nil && !req.DisableExposureLogging && !req.StatsigMetadata.ExposureLoggingDisabled
		var unit uint64
		if logExposures {
			unit = unitHash(user)
		}
		buf := answerBufs.Get().(*[]byte)
		out := (*buf)[:0]
		defer func() { putAnswerBuf(buf, out) }()
		if batch {
			out = append(out, '{')
		}
		var events [][]byte
		for i, name := range names {
			if batch {
				if i > 0 {
					out = append(out, ',')
				}
				out = evalcore.AppendJSONString(out, name)
				out = append(out, ':')
			}
			var exps [][]byte
			out, exps = s.evaluate(out, ev, k, user, name, logExposures, key, unit)
			events = append(events, exps...)
		}
		if batch {
			out = append(out, '}')
		}
		if len(events) > 0 {
			s.exposures.add(key, events)
		}
		m.evaluated.Add(float64(len(names)))
		m.ok.Inc()
		w.Header()["Content-Type"] = jsonContentType
		_, _ = w.Write(out)
		m.latency.Observe(time.Since(start).Seconds())
	}
}

// answerBufs hold the buffers evaluation answers are built in: the response writer copies an
// answer, so its buffer serves the next request instead of being garbage.
var answerBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// maxPooledAnswer bounds the buffers kept in answerBufs (a batch answer may be large).
const maxPooledAnswer = 64 << 10

// putAnswerBuf hands buf back to answerBufs once the answer out built in it is written, keeping
// the array out grew into unless it is too large to keep.
func putAnswerBuf(buf *[]byte, out []byte) {
	if out != nil && cap(out) <= maxPooledAnswer {
		*buf = out[:0]
	}
	answerBufs.Put(buf)
}

// evaluate appends one result in Statsig's HTTP API shape and returns the exposure events to log.
func (s *evalService) evaluate(out []byte, ev *evalcore.Evaluator, k evalKind, u *evalcore.User, name string, log bool, key string, unit uint64) ([]byte, [][]byte) {
	var events [][]byte
	switch k {
	case kindGate:
		r := ev.CheckGate(u, name)
		out = append(out, `{"name":`...)
		out = evalcore.AppendJSONString(out, name)
		out = append(out, `,"value":`...)
		out = strconv.AppendBool(out, r.Value)
		out = append(out, `,"rule_id":`...)
		out = evalcore.AppendJSONString(out, r.RuleID)
		out = append(out, `,"group_name":`...)
		out = appendNullableString(out, r.GroupName)
		out = append(out, '}')
		if log && s.firstExposure(key, unit, "g", name, r.RuleID, strconv.FormatBool(r.Value)) {
			events = append(events, ev.AppendGateExposure(nil, u, &r, evalcore.ExposureOptions{}))
		}
	case kindConfig:
		r := ev.GetConfig(u, name)
		out = append(out, `{"name":`...)
		out = evalcore.AppendJSONString(out, name)
		out = append(out, `,"value":`...)
		out = append(out, r.Value...)
		out = append(out, `,"rule_id":`...)
		out = evalcore.AppendJSONString(out, r.RuleID)
		out = append(out, `,"group":`...)
		out = evalcore.AppendJSONString(out, r.RuleID)
		out = append(out, `,"group_name":`...)
		out = appendNullableString(out, r.GroupName)
		if r.Experiment {
			out = append(out, `,"is_experiment_active":`...)
			out = strconv.AppendBool(out, r.IsExperimentActive)
			out = append(out, `,"is_user_in_experiment":`...)
			out = strconv.AppendBool(out, r.IsUserInExperiment)
		}
		out = append(out, '}')
		if log && s.firstExposure(key, unit, "c", name, r.RuleID, strconv.FormatBool(r.RulePassed)) {
			events = append(events, ev.AppendConfigExposure(nil, u, &r, evalcore.ExposureOptions{}))
		}
	case kindLayer:
		r := ev.GetLayer(u, name)
		out = append(out, `{"name":`...)
		out = evalcore.AppendJSONString(out, name)
		out = append(out, `,"value":`...)
		out = append(out, r.Value...)
		out = append(out, `,"rule_id":`...)
		out = evalcore.AppendJSONString(out, r.RuleID)
		out = append(out, `,"ruleID":`...)
		out = evalcore.AppendJSONString(out, r.RuleID)
		out = append(out, `,"group_name":`...)
		out = appendNullableString(out, r.GroupName)
		out = append(out, `,"allocatedExperimentName":`...)
		out = appendNullableString(out, r.AllocatedExperiment)
		out = append(out, '}')
		if log {
			// An HTTP client receives every parameter at once, so every parameter counts as read.
			for _, param := range objectKeys(r.Value) {
				if s.firstExposure(key, unit, "l", name, r.RuleID, param) {
					events = append(events, ev.AppendLayerExposure(nil, u, &r, param, evalcore.ExposureOptions{}))
				}
			}
		}
	}
	return out, events
}

// firstExposure reports whether an exposure with these parts was not logged within the dedupe
// window, and remembers it.
func (s *evalService) firstExposure(key string, unit uint64, parts ...string) bool {
	if s.dedupe == nil {
		return true
	}
	h := fnvAddString(fnvOffset64, key)
	for i := 0; i < 8; i++ {
		h = (h ^ (unit >> (8 * i) & 0xff)) * fnvPrime64
	}
	for _, p := range parts {
		h = fnvAddString(h, p)
	}
	if _, seen := s.dedupe.Get(h); seen {
		s.deduplicated.Inc()
		return false
	}
	s.dedupe.Add(h, struct{}{})
	return true
}

// unitHash identifies the user for exposure de-duplication by its unit IDs (userID, customIDs),
// as evaluation reads them: {"userID":7} and {"userID":"7"} are one user, as they are for
// bucketing.
func unitHash(u *evalcore.User) uint64 {
	h := uint64(fnvOffset64)
	for idType, id := range u.UnitIDs {
		h = fnvAddString(fnvAddString(h, idType), id)
	}
	return h
}

// FNV-1a, 64 bits, written out so that hashing strings does not allocate (hash/fnv takes
// []byte through an interface).
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// fnvAddString hashes s and a 0 separator (so that ("ab","c") and ("a","bc") differ).
func fnvAddString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime64
	}
	return h * fnvPrime64 // ^ 0
}

// objectKeys lists the top-level keys of a JSON object, in order (nil for anything else: a
// layer's value always is an object).
func objectKeys(raw []byte) []string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 || raw[0] != '{' || !json.Valid(raw) {
		return nil
	}
	var keys []string
	// json.Valid allows 10,000 levels of nesting: so does the walk, which then cannot fail.
	for s := (jsonScan{t: raw, i: 1, limit: 10_001}); ; {
		lit, _, ok := s.member()
		if !ok {
			return keys
		}
		k, _ := jsonStringValue(lit)
		keys = append(keys, k)
	}
}

func appendNullableString(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, "null"...)
	}
	return evalcore.AppendJSONString(dst, s)
}

// handleInitialize answers a client SDK's initialize with the client initialize response for its
// user, evaluated from the rule set of the server key the client key maps to.
func (s *evalService) handleInitialize(w http.ResponseWriter, r *http.Request) {
	const endpoint = "initialize"
	start := time.Now()
	key := r.Header.Get(wire.HeaderAPIKey)
	if key == "" {
		key = r.URL.Query().Get("k") // @statsig/js-client sends the key as a query parameter
	}
	var serverKey string
	switch {
	case key == "":
		s.fail(w, endpoint, &apiError{http.StatusUnauthorized, "missing client key (STATSIG-API-KEY header or k query parameter)"})
		return
	case wire.IsClientKey(key):
		sk, ok := s.clientKeys[key]
		if !ok {
			s.fail(w, endpoint, &apiError{http.StatusUnauthorized, "unknown client key: map it to a server key in client_keys"})
			return
		}
		serverKey = sk
	default:
		s.fail(w, endpoint, &apiError{http.StatusUnauthorized, "initialize takes a client key (client-…)"})
		return
	}
	req, user, aerr := s.readRequest(w, r)
	if aerr != nil {
		s.fail(w, endpoint, aerr)
		return
	}
	opts := evalcore.InitOptions{ClientKey: key, SDKVersion: s.version}
	if req.Hash != "" {
		h, ok := evalcore.ParseHashAlgorithm(req.Hash)
		if !ok {
			s.fail(w, endpoint, badRequest("hash must be none, djb2 or sha256, got %q", req.Hash))
			return
		}
		opts.Hash = h
	}
	if st := bytes.TrimSpace(req.SinceTime); len(st) > 0 && !bytes.Equal(st, []byte("null")) {
		n, err := strconv.ParseInt(strings.Trim(string(st), `"`), 10, 64)
		if err != nil {
			s.fail(w, endpoint, badRequest("sinceTime must be an integer (milliseconds)"))
			return
		}
		opts.SinceTime = n
	}
	ev, aerr := s.evaluator(r.Context(), serverKey)
	if aerr != nil {
		s.fail(w, endpoint, aerr)
		return
	}
	buf := answerBufs.Get().(*[]byte)
	out, err := ev.AppendClientInitializeResponse((*buf)[:0], user, opts)
	defer func() { putAnswerBuf(buf, out) }()
	if err != nil {
		s.fail(w, endpoint, &apiError{http.StatusInternalServerError, "initialize failed: " + err.Error()})
		return
	}
	s.initMetrics.ok.Inc()
	w.Header()["Content-Type"] = jsonContentType
	_, _ = w.Write(out)
	s.initMetrics.latency.Observe(time.Since(start).Seconds())
}

// jsonContentType is the Content-Type header value of every answer, shared: Header.Set would
// allocate a new slice per response (net/http only reads it; Add would copy it on append).
var jsonContentType = []string{"application/json"}
