package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigedge/sigedge/evalcore"
)

// BenchmarkEvalHandler measures one HTTP evaluation request through the handler, without the
// network: go test -run '^$' -bench BenchmarkEvalHandler -benchmem ./proxy
//
// Requests cycle through 1000 users, so exposures are de-duplicated after the first round, as
// in steady traffic. Exposures go to a publisher that drops them (the stream's cost is
// BenchmarkEventIntake's). "harness" is the cost of building and recording a request around a
// handler that only reads the body: subtract it for the handler's own cost.
func BenchmarkEvalHandler(b *testing.B) {
	rs, err := evalcore.Compile(exampleRules(b), evalcore.CompileOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ev := evalcore.NewEvaluator(rs, evalcore.EvaluatorOptions{Countries: testCountries()})
	svc := newEvalService(evalOptions{
		Source:        func(context.Context, string) (*evalcore.Evaluator, error) { return ev, nil },
		Publish:       func(context.Context, string, [][]byte) error { return nil },
		ClientKeys:    map[string]string{testClientKey: testServerKey},
		MaxBody:       1 << 20,
		MaxUser:       16 << 10,
		DedupeWindow:  time.Hour,
		DedupeMaxKeys: 100_000,
		FlushInterval: 100 * time.Millisecond,
		MaxBuffered:   100_000,
		Version:       "bench",
		Registry:      prometheus.NewRegistry(),
	})
	b.Cleanup(func() { svc.Close(context.Background()) })
	mux := http.NewServeMux()
	svc.register(mux)
	mux.HandleFunc("POST /harness", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte(`{}`))
	})
	const fullUser = `{"userID":"u%d","email":"a.b@example.com","ip":"1.2.3.4",` +
		`"userAgent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",` +
		`"country":"US","locale":"en_US","appVersion":"1.2.3","customIDs":{"companyID":"c9"},"custom":{"plan":"pro","level":9}}`
	cases := []struct{ name, path, body string }{
		{"harness", "/harness", `{"user":{"userID":"u%d","country":"US"},"gateName":"new_checkout"}`},
		{"check_gate", "/v1/check_gate", `{"user":{"userID":"u%d","country":"US"},"gateName":"new_checkout"}`},
		{"check_gate_no_exposure", "/v1/check_gate", `{"user":{"userID":"u%d","country":"US"},"gateName":"new_checkout","disableExposureLogging":true}`},
		{"check_gate_full_user", "/v1/check_gate", `{"user":` + fullUser + `,"gateName":"new_checkout"}`},
		{"get_layer", "/v1/get_layer", `{"user":{"userID":"u%d"},"layerName":"checkout_layer"}`},
		{"initialize", "/v1/initialize", `{"user":{"userID":"u%d"}}`},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			key := testServerKey
			if c.path == "/v1/initialize" {
				key = testClientKey
			}
			bodies := make([]string, 1000)
			for i := range bodies {
				bodies[i] = fmt.Sprintf(c.body, i)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				req := httptest.NewRequest("POST", c.path, strings.NewReader(bodies[i%len(bodies)]))
				req.Header.Set("STATSIG-API-KEY", key)
				rec := httptest.NewRecorder()
				mux.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatalf("%d %s", rec.Code, rec.Body.String())
				}
			}
		})
	}
}
