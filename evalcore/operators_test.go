package evalcore

import (
	"encoding/json"
	"errors"
	"testing"
)

// TestOperators checks every operator and condition type, including the
// spec's EDGE cases, one gate per (condition, user) row.
func TestOperators(t *testing.T) {
	type row struct {
		name string
		c    cond
		user string
		want bool
	}
	rows := []row{
		// numbers: needs a num view on both sides
		{"gt number", cond{Type: "user_field", Field: "level", Op: "gt", Target: 5}, `{"userID":"u","custom":{"level":9}}`, true},
		{"gt string number", cond{Type: "user_field", Field: "level", Op: "gt", Target: "5"}, `{"userID":"u","custom":{"level":"9"}}`, true},
		{"gt bool", cond{Type: "user_field", Field: "level", Op: "gt", Target: 0}, `{"userID":"u","custom":{"level":true}}`, false},
		{"lte missing", cond{Type: "user_field", Field: "level", Op: "lte", Target: 5}, `{"userID":"u"}`, false},
		{"lt inf string", cond{Type: "user_field", Field: "level", Op: "gt", Target: 5}, `{"userID":"u","custom":{"level":"inf"}}`, true},
		{"gte whitespace", cond{Type: "user_field", Field: "level", Op: "gte", Target: 5}, `{"userID":"u","custom":{"level":" 9"}}`, false},
		// versions
		{"version lt", cond{Type: "user_field", Field: "appVersion", Op: "version_lt", Target: "1.2.3.4"}, `{"userID":"u","appVersion":"1.3"}`, false},
		{"version gt pad", cond{Type: "user_field", Field: "appVersion", Op: "version_gt", Target: "1.2.3.4"}, `{"userID":"u","appVersion":"1.3"}`, true},
		{"version prerelease", cond{Type: "user_field", Field: "appVersion", Op: "version_eq", Target: "1.2.3"}, `{"userID":"u","appVersion":"1.2.3-beta"}`, true},
		{"version numeric target", cond{Type: "user_field", Field: "appVersion", Op: "version_eq", Target: 1}, `{"userID":"u","appVersion":"1"}`, false},
		{"version empty part", cond{Type: "user_field", Field: "appVersion", Op: "version_neq", Target: "1.2"}, `{"userID":"u","appVersion":"1..2"}`, false},
		{"version bad part late", cond{Type: "user_field", Field: "appVersion", Op: "version_gt", Target: "1.0"}, `{"userID":"u","appVersion":"1.2.x"}`, true},
		{"version trim", cond{Type: "user_field", Field: "appVersion", Op: "version_eq", Target: "1.2"}, `{"userID":"u","appVersion":"1. 2"}`, true},
		{"version numeric user", cond{Type: "user_field", Field: "v", Op: "version_gte", Target: "9"}, `{"userID":"u","custom":{"v":9}}`, true},
		{"version huge", cond{Type: "user_field", Field: "appVersion", Op: "version_gt", Target: "1.99999999999999999999"}, `{"userID":"u","appVersion":"1.100000000000000000000"}`, true},
		// any / none
		{"any number view", cond{Type: "user_field", Field: "level", Op: "any", Target: []any{"9", "9.0"}}, `{"userID":"u","custom":{"level":9}}`, true},
		{"any float renders short", cond{Type: "user_field", Field: "level", Op: "any", Target: []any{"9"}}, `{"userID":"u","custom":{"level":9.0}}`, true},
		{"any array user", cond{Type: "user_field", Field: "level", Op: "any", Target: []any{"9"}}, `{"userID":"u","custom":{"level":[9]}}`, false},
		{"any case", cond{Type: "user_field", Field: "email", Op: "any", Target: []any{"A@B.C"}}, `{"userID":"u","email":"a@b.c"}`, true},
		{"any missing matches empty", cond{Type: "user_field", Field: "email", Op: "any", Target: []any{""}}, `{"userID":"u"}`, true},
		{"any empty top-level is absent", cond{Type: "user_field", Field: "email", Op: "any", Target: []any{""}}, `{"userID":"u","email":""}`, true},
		{"none null target", cond{Type: "user_field", Field: "email", Op: "none", Target: nil}, `{"userID":"u","email":"x"}`, true},
		{"any bool", cond{Type: "user_field", Field: "b", Op: "any", Target: []any{"true"}}, `{"userID":"u","custom":{"b":true}}`, true},
		{"any numeric element", cond{Type: "user_field", Field: "level", Op: "any", Target: []any{9.0}}, `{"userID":"u","custom":{"level":9}}`, true},
		{"any_case_sensitive", cond{Type: "user_field", Field: "email", Op: "any_case_sensitive", Target: []any{"A"}}, `{"userID":"u","email":"a"}`, false},
		{"none_case_sensitive null", cond{Type: "user_field", Field: "userID", Op: "none_case_sensitive", Target: nil}, `{"userID":"a_user"}`, true},
		{"collapse later wins", cond{Type: "user_field", Field: "email", Op: "any_case_sensitive", Target: []any{"A", "a"}}, `{"userID":"u","email":"A"}`, false},
		// string contains
		{"starts_with", cond{Type: "user_field", Field: "email", Op: "str_starts_with_any", Target: []any{"JO"}}, `{"userID":"u","email":"john"}`, true},
		{"ends_with", cond{Type: "user_field", Field: "email", Op: "str_ends_with_any", Target: []any{"@statsig.com"}}, `{"userID":"u","email":"a@Statsig.com"}`, true},
		{"contains non-array", cond{Type: "user_field", Field: "email", Op: "str_contains_any", Target: "x"}, `{"userID":"u","email":"x"}`, false},
		{"contains_none missing", cond{Type: "user_field", Field: "email", Op: "str_contains_none", Target: []any{"a"}}, `{"userID":"u"}`, true},
		{"contains empty element", cond{Type: "user_field", Field: "email", Op: "str_contains_any", Target: []any{""}}, `{"userID":"u"}`, true},
		// regex
		{"regex", cond{Type: "user_field", Field: "email", Op: "str_matches", Target: "^a.*z$"}, `{"userID":"u","email":"abcz"}`, true},
		{"regex lookahead", cond{Type: "user_field", Field: "email", Op: "str_matches", Target: "^(?=a)a"}, `{"userID":"u","email":"aa"}`, true},
		{"regex backref", cond{Type: "user_field", Field: "email", Op: "str_matches", Target: `(a)\1`}, `{"userID":"u","email":"baa"}`, true},
		{"regex invalid", cond{Type: "user_field", Field: "email", Op: "str_matches", Target: "("}, `{"userID":"u","email":"("}`, false},
		{"regex number", cond{Type: "user_field", Field: "n", Op: "str_matches", Target: "^9$"}, `{"userID":"u","custom":{"n":9.0}}`, true},
		{"regex missing", cond{Type: "user_field", Field: "email", Op: "str_matches", Target: ".*"}, `{"userID":"u"}`, false},
		// eq / neq decided by the target type
		{"eq null missing", cond{Type: "user_field", Field: "email", Op: "eq", Target: nil}, `{"userID":"9"}`, true},
		{"eq null custom null", cond{Type: "user_field", Field: "x", Op: "eq", Target: nil}, `{"userID":"9","custom":{"x":null}}`, true},
		{"eq number string", cond{Type: "user_field", Field: "x", Op: "eq", Target: 9}, `{"userID":"9","custom":{"x":"9"}}`, true},
		{"eq string number", cond{Type: "user_field", Field: "x", Op: "eq", Target: "9"}, `{"userID":"9","custom":{"x":9}}`, true},
		{"eq bool string", cond{Type: "user_field", Field: "x", Op: "eq", Target: true}, `{"userID":"9","custom":{"x":"true"}}`, false},
		{"eq string bool", cond{Type: "user_field", Field: "x", Op: "eq", Target: "true"}, `{"userID":"9","custom":{"x":true}}`, true},
		{"eq array", cond{Type: "user_field", Field: "x", Op: "eq", Target: []any{"a", 1}}, `{"userID":"9","custom":{"x":["a",1]}}`, true},
		{"eq object", cond{Type: "user_field", Field: "x", Op: "eq", Target: map[string]any{"a": "1"}}, `{"userID":"9","custom":{"x":{"a":1}}}`, true},
		{"neq", cond{Type: "user_field", Field: "x", Op: "neq", Target: "a"}, `{"userID":"9"}`, true},
		// time
		{"before now", cond{Type: "current_time", Op: "before", Target: 4086454689000}, `{"userID":"u"}`, true},
		{"after seconds user", cond{Type: "user_field", Field: "t", Op: "after", Target: 1000}, `{"userID":"u","custom":{"t":1700000000}}`, true},
		{"after fractional", cond{Type: "user_field", Field: "t", Op: "after", Target: 1000}, `{"userID":"u","custom":{"t":1700000000.5}}`, false},
		{"after string ts", cond{Type: "user_field", Field: "t", Op: "after", Target: "2020-01-01T00:00:00Z"}, `{"userID":"u","custom":{"t":"2021-01-01T00:00:00Z"}}`, true},
		{"on same day", cond{Type: "user_field", Field: "t", Op: "on", Target: "2023-05-01 00:00:00"}, `{"userID":"u","custom":{"t":"2023-05-01 23:59:59"}}`, true},
		{"before missing", cond{Type: "user_field", Field: "t", Op: "before", Target: 1000}, `{"userID":"u"}`, false},
		{"current_time gt unsupported view", cond{Type: "current_time", Op: "gt", Target: 0}, `{"userID":"u"}`, false},
		// arrays
		{"array_contains_any", cond{Type: "user_field", Field: "tags", Op: "array_contains_any", Target: []any{"vip"}}, `{"userID":"u","custom":{"tags":["vip","x"]}}`, true},
		{"array_contains_all", cond{Type: "user_field", Field: "tags", Op: "array_contains_all", Target: []any{"vip", "x"}}, `{"userID":"u","custom":{"tags":["vip"]}}`, false},
		{"array_contains_none non-array", cond{Type: "user_field", Field: "tags", Op: "array_contains_none", Target: []any{"vip"}}, `{"userID":"u","custom":{"tags":"vip"}}`, false},
		{"not_array_contains_all", cond{Type: "user_field", Field: "tags", Op: "not_array_contains_all", Target: []any{"a", "b"}}, `{"userID":"u","custom":{"tags":["a"]}}`, true},
		{"array number element", cond{Type: "user_field", Field: "tags", Op: "array_contains_any", Target: []any{"1"}}, `{"userID":"u","custom":{"tags":[1.0]}}`, true},
		{"array empty target all", cond{Type: "user_field", Field: "tags", Op: "array_contains_all", Target: []any{}}, `{"userID":"u","custom":{"tags":[]}}`, true},
		// id lists (none loaded)
		{"in_segment_list", cond{Type: "unit_id", Op: "in_segment_list", Target: "list"}, `{"userID":"u"}`, false},
		{"not_in_segment_list", cond{Type: "unit_id", Op: "not_in_segment_list", Target: "list"}, `{"userID":"u"}`, true},
		// condition types
		{"public", cond{Type: "public"}, `{}`, true},
		{"unit_id customID lower", cond{Type: "unit_id", Op: "any", Target: []any{"123"}, IDType: "companyID"}, `{"customIDs":{"companyid":"123"}}`, true},
		{"unit_id customID exact first", cond{Type: "unit_id", Op: "any", Target: []any{"1"}, IDType: "companyID"}, `{"customIDs":{"companyID":"1","companyid":"2"}}`, true},
		{"user_bucket", cond{Type: "user_bucket", Op: "lt", Target: 1000, Salt: "x"}, `{"userID":"u"}`, true},
		{"user_bucket object", cond{Type: "user_bucket", Op: "any", Target: map[string]any{"803": true}, Salt: "7433204e-76a3-498f-8540-96fd2e9224b5"}, `{"userID":"random_user_99"}`, true},
		{"environment user", cond{Type: "environment_field", Field: "tier", Op: "any", Target: []any{"staging"}}, `{"userID":"u","statsigEnvironment":{"tier":"STAGING"}}`, true},
		{"environment missing", cond{Type: "environment_field", Field: "tier", Op: "any", Target: []any{"staging"}}, `{"userID":"u"}`, false},
		{"field private", cond{Type: "user_field", Field: "Foo", Op: "any", Target: []any{"bar"}}, `{"userID":"u","custom":{"x":1},"privateAttributes":{"Foo":"Bar"}}`, true},
		{"field custom before private", cond{Type: "user_field", Field: "Foo", Op: "any", Target: []any{"bar"}}, `{"userID":"u","custom":{"Foo":"nope"},"privateAttributes":{"Foo":"Bar"}}`, false},
		{"field alias user_id", cond{Type: "user_field", Field: "user_id", Op: "any", Target: []any{"u"}}, `{"userID":"u"}`, true},
		{"ip_based custom country", cond{Type: "ip_based", Field: "country", Op: "any", Target: []any{"CA"}}, `{"userID":"u","ip":"1.0.0.0","country":"CA"}`, true},
		{"target_app absent", cond{Type: "target_app", Op: "any", Target: []any{""}}, `{"userID":"u"}`, true},
	}
	conds := make([]cond, len(rows))
	for i, r := range rows {
		conds[i] = r.c
	}
	e := testEvaluator(mustCompile(t, oneConditionGates(t, conds...)))
	for i, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			got := e.CheckGate(mustUser(t, r.user), "g"+itoa(i))
			if got.Value != r.want {
				t.Errorf("value = %v, want %v (rule %q, reason %s)", got.Value, r.want, got.RuleID, got.Reason)
			}
		})
	}
}

func itoa(i int) string { return string(appendInt(nil, i)) }

func appendInt(b []byte, i int) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}

// TestUnsupported covers unknown types/operators, a null operator and a
// missing condition key, including the partial-AND value SC reports.
func TestUnsupported(t *testing.T) {
	payload := []byte(`{"response_format":"dcs-v2","time":1,"experiment_to_layer":{},"dynamic_configs":{},"layer_configs":{},
	"condition_map":{"pub":{"type":"public","idType":"userID"},"bad":{"type":"javascript","idType":"userID","operator":"any"},
	 "nullop":{"type":"user_field","field":"email","idType":"userID"},"enc":{"type":"user_field","field":"x","operator":"encoded_any","idType":"userID"}},
	"feature_gates":{
	 "a":{"type":"feature_gate","entity":"feature_gate","salt":"s","enabled":true,"defaultValue":false,"idType":"userID","rules":[{"name":"r","id":"r","passPercentage":100,"returnValue":true,"idType":"userID","conditions":["pub","bad"]}]},
	 "b":{"type":"feature_gate","entity":"feature_gate","salt":"s","enabled":true,"defaultValue":false,"idType":"userID","rules":[{"name":"r","id":"r","passPercentage":100,"returnValue":true,"idType":"userID","conditions":["nullop"]}]},
	 "c":{"type":"feature_gate","entity":"feature_gate","salt":"s","enabled":true,"defaultValue":false,"idType":"userID","rules":[{"name":"r","id":"r","passPercentage":100,"returnValue":true,"idType":"userID","conditions":["missing"]}]},
	 "d":{"type":"feature_gate","entity":"feature_gate","salt":"s","enabled":true,"defaultValue":false,"idType":"userID","rules":[{"name":"r","id":"r","passPercentage":100,"returnValue":true,"idType":"userID","conditions":["enc"]}]},
	 "n":{"type":"feature_gate","entity":"feature_gate","salt":"s","enabled":true,"defaultValue":false,"idType":"userID","rules":[{"name":"r","id":"r","passPercentage":100,"returnValue":true,"idType":"userID","conditions":["nested"]}]}
	}}`)
	payload = []byte(stringsReplace(string(payload), `"conditions":["nested"]`, `"conditions":["pub"]`))
	e := testEvaluator(mustCompile(t, payload))
	u := mustUser(t, `{"userID":"u"}`)
	for _, tc := range []struct {
		gate  string
		value bool
	}{{"a", true}, {"b", false}, {"c", false}, {"d", false}} {
		r := e.CheckGate(u, tc.gate)
		if r.Reason != ReasonUnsupported || r.Value != tc.value || r.RuleID != "" {
			t.Errorf("gate %s: got %+v, want unsupported value %v", tc.gate, r, tc.value)
		}
	}
	if r := e.CheckGate(u, "nope"); r.Reason != ReasonUnrecognized || r.Value || r.RuleID != "" {
		t.Errorf("unknown gate: %+v", r)
	}
}

func stringsReplace(s, old, new string) string {
	for i := 0; i+len(old) <= len(s); i++ {
		if s[i:i+len(old)] == old {
			return s[:i] + new + s[i+len(old):]
		}
	}
	return s
}

// TestNestingLimit: a gate that reaches itself (directly, or through an
// experiment_group condition, where SC itself overflows its stack) is an
// error result, not a crash; an initialize response then is SC's empty one.
func TestNestingLimit(t *testing.T) {
	// A config mapping whose rule fails resets SC's nesting count on every
	// level, so only evalcore's own depth bound stops that loop (SC crashes).
	mapping := `,"overrides":{"loop":[{"new_config_name":"other","rules":[{"rule_name":"or"}]}]},
		"override_rules":{"or":{"name":"or","id":"or","passPercentage":100,"returnValue":{},"idType":"userID","conditions":["no"]}}`
	for _, tc := range []struct {
		name, cond, extra string
		gate              bool // the looping spec is a gate (else an experiment)
	}{
		{"pass_gate", `{"type":"pass_gate","targetValue":"loop","idType":"userID"}`, "", true},
		{"experiment_group", `{"type":"experiment_group","field":"loop","operator":"any","targetValue":["g"],"idType":"userID"}`, "", false},
		{"pass_gate with a mapping", `{"type":"pass_gate","targetValue":"loop","idType":"userID"}`, mapping, true},
		{"experiment_group with a mapping", `{"type":"experiment_group","field":"loop","operator":"any","targetValue":["g"],"idType":"userID"}`, mapping, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := `{"type":"feature_gate","entity":"feature_gate","salt":"s","enabled":true,"defaultValue":false,"idType":"userID","rules":[{"name":"r","id":"r","passPercentage":100,"returnValue":true,"groupName":"g","idType":"userID","conditions":["self"]}]}`
			gates, configs := `{"loop":`+spec+`}`, `{}`
			if !tc.gate {
				gates, configs = `{}`, `{"loop":`+stringsReplace(spec, `"entity":"feature_gate"`, `"entity":"experiment"`)+`}`
			}
			payload := []byte(`{"response_format":"dcs-v2","time":1,"experiment_to_layer":{},"layer_configs":{},
			"condition_map":{"self":` + tc.cond + `,"no":{"type":"user_field","field":"x","operator":"eq","targetValue":"y","idType":"userID"}},
			"feature_gates":` + gates + `,"dynamic_configs":` + configs + tc.extra + `}`)
			e := testEvaluator(mustCompile(t, payload))
			u := mustUser(t, `{"userID":"u","privateAttributes":{"k":"v"}}`)
			var ev Evaluation
			if tc.gate {
				r := e.CheckGate(u, "loop")
				if r.Value {
					t.Errorf("value true for an error result")
				}
				ev = r.Evaluation
			} else {
				ev = e.GetExperiment(u, "loop").Evaluation
			}
			if ev.Reason != ReasonError || !errors.Is(ev.Err, ErrNestingLimit) || ev.RuleID != "" {
				t.Fatalf("got %+v, want a nesting-limit error result", ev)
			}
			b, err := e.ClientInitializeResponse(u, InitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var resp map[string]any
			if err := json.Unmarshal(b, &resp); err != nil {
				t.Fatal(err)
			}
			// experiment_group is unsupported in initialize responses: no loop there
			if tc.gate != (resp["has_updates"] == false && resp["time"] == 0.0 && len(resp["feature_gates"].(map[string]any)) == 0) {
				t.Errorf("initialize response: %s", b)
			}
			if resp["user"] == nil || (tc.gate && resp["pa_hash"] == nil) {
				t.Errorf("initialize response lacks the user or pa_hash: %s", b)
			}
		})
	}
}
