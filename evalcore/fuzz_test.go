package evalcore

import (
	"encoding/json"
	"testing"
	"time"
)

type timeT = time.Time

// fuzzRuleSet exercises every condition type and the risky operators.
func fuzzRuleSet(t testing.TB) []byte {
	return oneConditionGates(t,
		cond{Type: "user_field", Field: "level", Op: "gt", Target: 5},
		cond{Type: "user_field", Field: "appVersion", Op: "version_gte", Target: "1.2.3"},
		cond{Type: "user_field", Field: "email", Op: "str_matches", Target: `(a)\1`},
		cond{Type: "user_field", Field: "email", Op: "str_contains_any", Target: []any{"@statsig"}},
		cond{Type: "user_field", Field: "tags", Op: "array_contains_all", Target: []any{"a", 1}},
		cond{Type: "user_field", Field: "ts", Op: "on", Target: "2023-01-01T00:00:00Z"},
		cond{Type: "user_field", Field: "x", Op: "eq", Target: map[string]any{"a": "1"}},
		cond{Type: "ip_based", Field: "country", Op: "any", Target: []any{"US"}},
		cond{Type: "ua_based", Field: "browser_version", Op: "version_gt", Target: "10"},
		cond{Type: "unit_id", Op: "in_segment_list", Target: "list", IDType: "companyID"},
		cond{Type: "environment_field", Field: "tier", Op: "any", Target: []any{"staging"}},
		cond{Type: "user_bucket", Op: "lt", Target: 500, Salt: "s"},
		cond{Type: "pass_gate", Target: "g0"},
		cond{Type: "current_time", Op: "after", Target: 0},
	)
}

func FuzzEvaluate(f *testing.F) {
	rs := mustCompile(f, fuzzRuleSet(f))
	store := NewIDListStore()
	store.SetList("list", []byte("+"+IDListKey("123")+"\n"))
	e := NewEvaluator(rs, EvaluatorOptions{Countries: loadCountries(), IDLists: store, Now: func() timeT { return testNow }})
	for _, s := range []string{
		`{"userID":"a","custom":{"level":9,"tags":["a",1],"x":{"a":1}},"email":"aa@statsig.com","ip":"1.1.1.1"}`,
		`{"customIDs":{"companyID":123},"appVersion":"1..2","userAgent":"Mozilla/5.0 (Windows NT 6.1) Chrome/109.0.5414.87"}`,
		`{"userID":9,"ip":"999.1.1.1","custom":{"ts":1700000000},"statsigEnvironment":{"tier":"staging"}}`,
		`{"userID":"x","ip":"-1.0.0.0","privateAttributes":{"k":[1,{"a":null}]}}`,
		`{}`, `[]`, `null`, `{"custom":{"a":[[[[[[[]]]]]]]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		u, err := ParseUser(raw)
		if err != nil {
			return
		}
		for _, name := range rs.gateNames {
			r := e.CheckGate(u, name)
			if r.Reason == ReasonRecognized && e.GateValue(u, name) != r.Value {
				t.Fatalf("GateValue and CheckGate disagree on %s", name)
			}
			ev := e.AppendGateExposure(nil, u, &r, ExposureOptions{Time: 1})
			if !json.Valid(ev) {
				t.Fatalf("invalid exposure JSON: %s", ev)
			}
		}
		b, err := e.ClientInitializeResponse(u, InitOptions{Hash: HashSHA256})
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(b) {
			t.Fatalf("invalid initialize JSON: %s", b)
		}
	})
}

func FuzzCompile(f *testing.F) {
	f.Add(fuzzRuleSet(f))
	f.Add([]byte(`{"has_updates":false}`))
	f.Add([]byte(`{"feature_gates":[{"name":"g","type":"feature_gate","salt":"s","enabled":true,"defaultValue":false,"rules":[{"id":"r","passPercentage":100,"returnValue":true,"conditions":[{"type":"user_bucket","operator":"any","targetValue":[1,2.0,"3"]}]}]}],"layers":{"l":["e"]}}`))
	f.Add([]byte(`{"feature_gates":{"g":{"type":"feature_gate","salt":1}},"condition_map":{"c":{"type":"public"}}}`))
	u := mustUser(f, `{"userID":"a","custom":{"level":9},"email":"a@b.c"}`)
	f.Fuzz(func(t *testing.T, payload []byte) {
		rs, err := Compile(payload, CompileOptions{})
		if err != nil {
			return
		}
		e := NewEvaluator(rs, EvaluatorOptions{Now: func() timeT { return testNow }})
		for _, n := range rs.gateNames {
			e.CheckGate(u, n)
		}
		for _, n := range rs.configNames {
			e.GetConfig(u, n)
		}
		for _, n := range rs.layerNames {
			r := e.GetLayer(u, n)
			_ = e.AppendLayerExposure(nil, u, &r, "p", ExposureOptions{})
		}
		if b, err := e.ClientInitializeResponse(u, InitOptions{Hash: HashNone}); err == nil && !json.Valid(b) {
			t.Fatalf("invalid initialize JSON: %s", b)
		}
		if v1, err := ConvertToV1(payload, V1Options{}); err == nil {
			if _, err := ConvertToV2(v1); err != nil && rs.Format() == FormatV2 {
				t.Logf("v1 → v2: %v", err)
			}
		}
	})
}
