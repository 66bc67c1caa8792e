package evalcore

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// cond is a condition for the small rule sets the unit tests build.
type cond struct {
	Type, Field, Op string
	Target          any
	IDType          string
	Salt            string
}

// oneConditionGates builds a dcs-v2 rule set with one gate per condition
// ("g0", "g1", ...), each passing (rule "r<i>") when its condition holds.
func oneConditionGates(t testing.TB, conds ...cond) []byte {
	t.Helper()
	gates := map[string]any{}
	cm := map[string]any{}
	for i, c := range conds {
		id := fmt.Sprintf("c%d", i)
		idType := c.IDType
		if idType == "" {
			idType = "userID"
		}
		m := map[string]any{"type": c.Type, "idType": idType, "targetValue": c.Target}
		if c.Op != "" {
			m["operator"] = c.Op
		}
		if c.Field != "" {
			m["field"] = c.Field
		}
		if c.Salt != "" {
			m["additionalValues"] = map[string]string{"salt": c.Salt}
		}
		cm[id] = m
		gates[fmt.Sprintf("g%d", i)] = map[string]any{
			"type": "feature_gate", "entity": "feature_gate", "salt": "s", "enabled": true,
			"defaultValue": false, "idType": "userID",
			"rules": []any{map[string]any{"name": "r", "id": fmt.Sprintf("r%d", i), "salt": "",
				"passPercentage": 100, "returnValue": true, "idType": "userID", "conditions": []string{id}}},
		}
	}
	b, err := json.Marshal(map[string]any{"response_format": "dcs-v2", "has_updates": true, "time": 1000,
		"feature_gates": gates, "dynamic_configs": map[string]any{}, "layer_configs": map[string]any{},
		"experiment_to_layer": map[string]any{}, "condition_map": cm})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustCompile(t testing.TB, payload []byte) *RuleSet {
	t.Helper()
	rs, err := Compile(payload, CompileOptions{})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return rs
}

func mustUser(t testing.TB, raw string) *User {
	t.Helper()
	u, err := ParseUser([]byte(raw))
	if err != nil {
		t.Fatalf("ParseUser(%s): %v", raw, err)
	}
	return u
}

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testEvaluator(rs *RuleSet) *Evaluator {
	return NewEvaluator(rs, EvaluatorOptions{Now: func() time.Time { return testNow }})
}
