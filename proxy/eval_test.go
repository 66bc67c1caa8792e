package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/statsig-io/ip3country-go/pkg/countrylookup"

	"github.com/sigedge/sigedge/evalcore"
)

const (
	testServerKey = "secret-test"
	testClientKey = "client-test"
)

// recordingPublisher is an ExposurePublisher that keeps what it is given.
type recordingPublisher struct {
	mu     sync.Mutex
	events map[string][]map[string]any
	fail   bool
	got    chan struct{}
}

func (p *recordingPublisher) publish(_ context.Context, key string, events [][]byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail {
		return errors.New("stream unavailable")
	}
	for _, e := range events {
		var m map[string]any
		if err := json.Unmarshal(e, &m); err != nil {
			panic("exposure is not JSON: " + string(e))
		}
		p.events[key] = append(p.events[key], m)
	}
	select {
	case p.got <- struct{}{}:
	default:
	}
	return nil
}

func (p *recordingPublisher) snapshot(key string) []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]any(nil), p.events[key]...)
}

type evalTestEnv struct {
	t   testing.TB
	srv *httptest.Server
	svc *evalService
	pub *recordingPublisher
}

var (
	countriesOnce sync.Once
	countries     *countrylookup.CountryLookup
)

func testCountries() *countrylookup.CountryLookup {
	countriesOnce.Do(func() { countries = countrylookup.New() })
	return countries
}

func newEvalTestEnv(t testing.TB, dcs []byte) *evalTestEnv {
	t.Helper()
	rs, err := evalcore.Compile(dcs, evalcore.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ev := evalcore.NewEvaluator(rs, evalcore.EvaluatorOptions{Countries: testCountries()})
	pub := &recordingPublisher{events: map[string][]map[string]any{}, got: make(chan struct{}, 1)}
	svc := newEvalService(evalOptions{
		Source: func(_ context.Context, key string) (*evalcore.Evaluator, error) {
			if key != testServerKey {
				return nil, errUnknownKey
			}
			return ev, nil
		},
		Publish:       pub.publish,
		ClientKeys:    map[string]string{testClientKey: testServerKey},
		MaxBody:       1 << 20,
		MaxUser:       16 << 10,
		DedupeWindow:  time.Minute,
		DedupeMaxKeys: 1000,
		FlushInterval: 20 * time.Millisecond,
		MaxBuffered:   10_000,
		Version:       "test",
		Registry:      prometheus.NewRegistry(),
	})
	mux := http.NewServeMux()
	svc.register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		svc.Close(context.Background())
	})
	return &evalTestEnv{t: t, srv: srv, svc: svc, pub: pub}
}

func (e *evalTestEnv) post(path, key, body string, headers ...string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("STATSIG-API-KEY", key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitExposures waits (bounded) until at least n exposures were published for key.
func (e *evalTestEnv) waitExposures(key string, n int) []map[string]any {
	e.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		if got := e.pub.snapshot(key); len(got) >= n {
			return got
		}
		select {
		case <-e.pub.got:
		case <-deadline:
			e.t.Fatalf("only %d of %d exposures published", len(e.pub.snapshot(key)), n)
		}
	}
}

func exampleRules(t testing.TB) []byte {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "examples", "example-rules.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEvalEndpoints(t *testing.T) {
	env := newEvalTestEnv(t, exampleRules(t))
	tests := []struct {
		name, path, key, body string
		status                int
		want                  string // JSON the answer must equal (compared as values), or a substring of an error
	}{
		{"gate pass by segment", "/v1/check_gate", testServerKey, `{"user":{"userID":"beta-user"},"gateName":"new_checkout"}`,
			200, `{"name":"new_checkout","value":true,"rule_id":"new_checkout_beta","group_name":null}`},
		{"gate default", "/v1/check_gate", testServerKey, `{"user":{"userID":"u9","country":"FR"},"gateName":"new_checkout"}`,
			200, `{"name":"new_checkout","value":false,"rule_id":"default","group_name":null}`},
		{"gate unknown", "/v1/check_gate", testServerKey, `{"user":{"userID":"u1"},"gateName":"no_such_gate"}`,
			200, `{"name":"no_such_gate","value":false,"rule_id":"","group_name":null}`},
		{"missing user is an empty user", "/v1/check_gate", testServerKey, `{"gateName":"dark_mode"}`,
			200, `{"name":"dark_mode","value":true,"rule_id":"dark_mode_everyone","group_name":null}`},
		{"gate batch", "/v1/check_gate", testServerKey, `{"user":{"userID":"u1","email":"x@example.com"},"gateNames":["internal_tools","mobile_app_v2"]}`,
			200, `{"internal_tools":{"name":"internal_tools","value":true,"rule_id":"internal_tools_employees","group_name":null},
			       "mobile_app_v2":{"name":"mobile_app_v2","value":false,"rule_id":"default","group_name":null}}`},
		{"config by ip country", "/v1/get_config", testServerKey, `{"user":{"userID":"u1","ip":"1.1.1.1"},"configName":"checkout_settings"}`,
			200, `{"name":"checkout_settings","value":{"currency":"USD","max_items":20,"express":true},"rule_id":"checkout_settings_us","group":"checkout_settings_us","group_name":null}`},
		{"layer delegates to experiment", "/v1/get_layer", testServerKey, `{"user":{"userID":"u1"},"layerName":"checkout_layer"}`,
			200, ""},
		{"no key", "/v1/check_gate", "", `{"gateName":"dark_mode"}`, 401, "STATSIG-API-KEY"},
		{"client key refused", "/v1/check_gate", testClientKey, `{"gateName":"dark_mode"}`, 403, "client keys"},
		{"unknown server key", "/v1/check_gate", "secret-nope", `{"gateName":"dark_mode"}`, 401, "unknown SDK key"},
		{"not json", "/v1/check_gate", testServerKey, `{"gateName":`, 400, "not a valid request"},
		{"empty body", "/v1/check_gate", testServerKey, ``, 400, "empty body"},
		{"user not an object", "/v1/check_gate", testServerKey, `{"user":"u1","gateName":"x"}`, 400, "user must be a JSON object"},
		{"both forms", "/v1/check_gate", testServerKey, `{"gateName":"a","gateNames":["b"]}`, 400, "not both"},
		{"no name", "/v1/get_config", testServerKey, `{"user":{}}`, 400, "missing configName"},
		{"empty name", "/v1/get_layer", testServerKey, `{"layerName":""}`, 400, "layerName is empty"},
		{"too many names", "/v1/check_gate", testServerKey, `{"gateNames":` + mustJSON(make([]string, 101)) + `}`, 400, "1 to 100"},
		{"huge user", "/v1/check_gate", testServerKey, `{"user":{"userID":"` + strings.Repeat("x", 20<<10) + `"},"gateName":"a"}`, 413, "user object larger"},
		{"wrong type", "/v1/check_gate", testServerKey, `{"gateName":5}`, 400, "not a valid request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := env.post(tc.path, tc.key, tc.body)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, body)
			}
			if status != 200 {
				var e struct {
					Error string `json:"error"`
				}
				if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e.Error, tc.want) {
					t.Fatalf("error body %q does not mention %q", body, tc.want)
				}
				return
			}
			if tc.want != "" {
				assertJSONEqual(t, body, tc.want)
			}
		})
	}
}

func assertJSONEqual(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation: %v", err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("got  %s\nwant %s", gb, wb)
	}
}

// TestLayerAnswerAgreesWithExperiment checks the layer's answer is its allocated experiment's group.
func TestLayerAnswerAgreesWithExperiment(t *testing.T) {
	env := newEvalTestEnv(t, exampleRules(t))
	for _, user := range []string{"u1", "u2", "u3", "u4", "u5", "u6"} {
		_, lb := env.post("/v1/get_layer", testServerKey, `{"user":{"userID":"`+user+`"},"layerName":"checkout_layer","disableExposureLogging":true}`)
		_, eb := env.post("/v1/get_config", testServerKey, `{"user":{"userID":"`+user+`"},"configName":"button_color_test","disableExposureLogging":true}`)
		var l, e map[string]any
		_ = json.Unmarshal([]byte(lb), &l)
		_ = json.Unmarshal([]byte(eb), &e)
		if l["allocatedExperimentName"] != "button_color_test" || l["group_name"] != e["group_name"] || l["rule_id"] != e["rule_id"] {
			t.Fatalf("user %s: layer %s vs experiment %s", user, lb, eb)
		}
		if e["is_experiment_active"] != true || e["is_user_in_experiment"] != true {
			t.Fatalf("user %s: experiment flags missing: %s", user, eb)
		}
	}
}

func TestEvalExposures(t *testing.T) {
	env := newEvalTestEnv(t, exampleRules(t))
	// Two identical checks: the second is within the de-duplication window.
	for i := 0; i < 2; i++ {
		if status, body := env.post("/v1/check_gate", testServerKey, `{"user":{"userID":"beta-user","privateAttributes":{"secret":"x"}},"gateName":"new_checkout"}`); status != 200 {
			t.Fatal(status, body)
		}
	}
	// Logging disabled: nothing.
	env.post("/v1/check_gate", testServerKey, `{"user":{"userID":"quiet"},"gateName":"dark_mode","disableExposureLogging":true}`)
	env.post("/v1/get_config", testServerKey, `{"user":{"userID":"u1","country":"US"},"configName":"checkout_settings"}`)
	env.post("/v1/get_layer", testServerKey, `{"user":{"userID":"u1"},"layerName":"checkout_layer"}`)
	// gate + config + 2 layer parameters
	env.waitExposures(testServerKey, 4)
	env.svc.exposures.flush(context.Background()) // anything still queued is published now
	got := env.pub.snapshot(testServerKey)
	if len(got) != 4 {
		t.Fatalf("%d exposures, want 4: %v", len(got), got)
	}
	byName := map[string]map[string]any{}
	for _, e := range got {
		md := e["metadata"].(map[string]any)
		key := e["eventName"].(string)
		if p, ok := md["parameterName"]; ok {
			key += ":" + p.(string)
		}
		byName[key] = e
	}
	gate := byName["statsig::gate_exposure"]
	if gate == nil {
		t.Fatalf("no gate exposure: %v", got)
	}
	md := gate["metadata"].(map[string]any)
	if md["gate"] != "new_checkout" || md["gateValue"] != "true" || md["ruleID"] != "new_checkout_beta" {
		t.Errorf("gate exposure metadata %v", md)
	}
	if u := gate["user"].(map[string]any); u["userID"] != "beta-user" || u["privateAttributes"] != nil {
		t.Errorf("logged user %v (privateAttributes must never be logged)", u)
	}
	if cfg := byName["statsig::config_exposure"]; cfg == nil || cfg["metadata"].(map[string]any)["rulePassed"] != "true" {
		t.Errorf("config exposure %v", cfg)
	}
	for _, p := range []string{"button_color", "button_size"} {
		le := byName["statsig::layer_exposure:"+p]
		if le == nil {
			t.Fatalf("no layer exposure for %s: %v", p, got)
		}
		lmd := le["metadata"].(map[string]any)
		wantExplicit := map[string]string{"button_color": "true", "button_size": "false"}[p]
		if lmd["config"] != "checkout_layer" || lmd["isExplicitParameter"] != wantExplicit {
			t.Errorf("layer exposure %s metadata %v", p, lmd)
		}
		if (wantExplicit == "true") != (lmd["allocatedExperiment"] == "button_color_test") {
			t.Errorf("layer exposure %s allocatedExperiment %v", p, lmd["allocatedExperiment"])
		}
	}
}

func TestExposuresSurviveAPublishFailure(t *testing.T) {
	env := newEvalTestEnv(t, exampleRules(t))
	env.pub.mu.Lock()
	env.pub.fail = true
	env.pub.mu.Unlock()
	env.post("/v1/check_gate", testServerKey, `{"user":{"userID":"a"},"gateName":"dark_mode"}`)
	env.svc.exposures.flush(context.Background()) // fails: the events go back in the queue
	if n := len(env.pub.snapshot(testServerKey)); n != 0 {
		t.Fatalf("%d exposures published while the stream was down", n)
	}
	env.pub.mu.Lock()
	env.pub.fail = false
	env.pub.mu.Unlock()
	got := env.waitExposures(testServerKey, 1)
	if len(got) != 1 {
		t.Fatalf("%d exposures after recovery, want 1", len(got))
	}
}

func TestInitializeEndpoint(t *testing.T) {
	env := newEvalTestEnv(t, exampleRules(t))
	tests := []struct {
		name, key, query, body string
		headers                []string
		status                 int
		check                  func(t *testing.T, body map[string]any)
	}{
		{"client key, hash none", testClientKey, "", `{"user":{"userID":"beta-user"},"hash":"none"}`, nil, 200, func(t *testing.T, b map[string]any) {
			g := b["feature_gates"].(map[string]any)["new_checkout"].(map[string]any)
			if g["value"] != true || b["hash_used"] != "none" {
				t.Errorf("new_checkout %v hash %v", g, b["hash_used"])
			}
			if _, ok := b["feature_gates"].(map[string]any)["segment:beta_testers"]; ok {
				t.Error("segments must not appear in initialize")
			}
		}},
		{"key as query parameter, djb2 default", "", "?k=" + testClientKey, `{"user":{"userID":"u1"}}`, nil, 200, func(t *testing.T, b map[string]any) {
			if b["hash_used"] != "djb2" {
				t.Errorf("hash %v", b["hash_used"])
			}
			if _, ok := b["feature_gates"].(map[string]any)[evalcore.HashName("dark_mode", evalcore.HashDJB2)]; !ok {
				t.Errorf("dark_mode not under its djb2 name: %v", b["feature_gates"])
			}
		}},
		{"gzip body", testClientKey, "", gzipString(`{"user":{"userID":"u1"},"hash":"sha256"}`), []string{"Content-Encoding", "gzip"}, 200, func(t *testing.T, b map[string]any) {
			if b["hash_used"] != "sha256" {
				t.Errorf("hash %v", b["hash_used"])
			}
		}},
		{"since time current", testClientKey, "", `{"user":{"userID":"u1"},"sinceTime":1767225600000}`, nil, 200, func(t *testing.T, b map[string]any) {
			if b["has_updates"] != false {
				t.Errorf("want has_updates false, got %v", b)
			}
		}},
		{"server key refused", testServerKey, "", `{"user":{}}`, nil, 401, nil},
		{"unmapped client key", "client-other", "", `{"user":{}}`, nil, 401, nil},
		{"bad hash", testClientKey, "", `{"user":{},"hash":"md5"}`, nil, 400, nil},
		{"bad gzip", testClientKey, "", `not gzip`, []string{"Content-Encoding", "gzip"}, 400, nil},
		{"unknown encoding", testClientKey, "", `{}`, []string{"Content-Encoding", "compress"}, 415, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := env.post("/v1/initialize"+tc.query, tc.key, tc.body, tc.headers...)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, body)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(body), &m); err != nil {
				t.Fatalf("not JSON: %s", body)
			}
			if tc.check != nil {
				tc.check(t, m)
			}
		})
	}
}

func gzipString(s string) string {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write([]byte(s))
	_ = zw.Close()
	return b.String()
}
