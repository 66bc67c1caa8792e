package proxy

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkEvalHandler measures one HTTP evaluation request through the handler, without the
// network: go test -run '^$' -bench BenchmarkEvalHandler -benchmem ./proxy
func BenchmarkEvalHandler(b *testing.B) {
	env := newEvalTestEnv(b, exampleRules(b))
	cases := []struct{ name, path, body string }{
		{"check_gate", "/v1/check_gate", `{"user":{"userID":"u%d","country":"US"},"gateName":"new_checkout"}`},
		{"check_gate_no_exposure", "/v1/check_gate", `{"user":{"userID":"u%d","country":"US"},"gateName":"new_checkout","disableExposureLogging":true}`},
		{"get_layer", "/v1/get_layer", `{"user":{"userID":"u%d"},"layerName":"checkout_layer"}`},
		{"initialize", "/v1/initialize", `{"user":{"userID":"u%d"}}`},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			key := testServerKey
			if c.path == "/v1/initialize" {
				key = testClientKey
			}
			h := http.NewServeMux()
			env.svc.register(h)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				body := strings.Replace(c.body, "%d", strconv.Itoa(i%1000), 1)
				req := httptest.NewRequest("POST", c.path, strings.NewReader(body))
				req.Header.Set("STATSIG-API-KEY", key)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatalf("%d %s", rec.Code, rec.Body.String())
				}
			}
		})
	}
}
