package evalcore

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGoldenHashes: spec §2 vectors.
func TestGoldenHashes(t *testing.T) {
	if got := h64("46fccb20-ae05-4dc0-a3d9-eebd4c6c7475.6a2fd20e-2ff6-4b97-bc6c-64b4c765d9d6.a_user"); got != 16522545949604324922 || got%10000 != 4922 {
		t.Errorf("h64 = %d", got)
	}
	if got := h64Parts("7433204e-76a3-498f-8540-96fd2e9224b5", "random_user_99") % 1000; got != 803 {
		t.Errorf("bucket = %d", got)
	}
	if got := sha256B64("test_public"); got != "cPaGkTiRBuP1SfwoxRtTvhT6Vxpa4v/342Z1N0pXUlc=" {
		t.Errorf("sha256 = %s", got)
	}
	if got := IDListKey("marcos_1"); got != "34jaY4Sb" {
		t.Errorf("id list key = %s", got)
	}
	for in, want := range map[string]string{"test_public": "3968762550", "héllo": "103094734"} {
		if got := djb2String(in); got != want {
			t.Errorf("djb2(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestNumberFormatting(t *testing.T) {
	for f, want := range map[float64]string{9: "9", 1.5: "1.5", 1e21: "1e+21", 0.000001: "0.000001", 1e-7: "1e-7", -2.5e300: "-2.5e+300", 123456789012: "123456789012"} {
		if got := jsNumberString(f); got != want {
			t.Errorf("jsNumberString(%v) = %s, want %s", f, got, want)
		}
	}
	for f, want := range map[float64]string{9: "9", 1e21: "1000000000000000000000", 18446744073709551615: "18446744073709552000", 0.1: "0.1"} {
		if got := formatRustFloat(f); got != want {
			t.Errorf("formatRustFloat(%v) = %s, want %s", f, got, want)
		}
	}
	for s, ok := range map[string]bool{"1.": true, ".5": true, ".": false, "1e5": true, "inf": true, "-NaN": true, " 1": false, "0x10": false, "1_0": false, "+3": true, "1e": false} {
		if _, got := parseRustFloat(s); got != ok {
			t.Errorf("parseRustFloat(%q) ok = %v", s, got)
		}
	}
}

// TestSpecCases: spec §12.1 rows on the conformance rule set (skipped when absent).
func TestSpecCases(t *testing.T) {
	c := loadConformance(t)
	e := c.evaluator()
	full := mustUser(t, `{"userID":"a_user","appVersion":"1.3","userAgent":"Mozilla/5.0 (iPhone; CPU iPhone OS 10_3_1 like Mac OS X) AppleWebKit/603.1.30 (KHTML, like Gecko) Version/10.0 Mobile/14E304 Safari/602.1","ip":"1.0.0.0","locale":"en_US","email":"a_user@statsig.com","country":"US","custom":{"level":9},"customIDs":{"companyID":"123","stableID":""}}`)
	cids := mustUser(t, `{"customIDs":{"companyID":"123","stableID":""}}`)
	u9f := mustUser(t, `{"userID":"9","appVersion":"1.3","userAgent":"Mozilla/5.0 (iPhone; CPU iPhone OS 10_3_1 like Mac OS X) AppleWebKit/603.1.30 (KHTML, like Gecko) Version/10.0 Mobile/14E304 Safari/602.1","ip":"1.0.0.0","locale":"en_US"}`)
	gates := []struct {
		u     *User
		name  string
		value bool
		rule  string
	}{
		{full, "test_string_comparisons", true, "2d4C53Q99ci76VNlkNUdQ7"},
		{cids, "test_nested_gate_condition", true, "6MlXHRavmo1ujM1NkZNjhQ"},
		{cids, "test_time_before", true, "7D6TdBegTvqbRaX911ML2M"},
		{cids, "test_segment_condition", false, "default"},
		{cids, "test_holdout_default_value_gate", true, "disabled"},
		{mustUser(t, `{"userID":"a_user","appVersion":"1.3"}`), "test_version", false, "default"},
		{mustUser(t, `{"userID":"a_user","custom":{"level":9}}`), "test_any_with_number_value", true, "5AO5DF4s86tam0jr6Yox9f"},
		{mustUser(t, `{"userID":"123","appVersion":"1.3","ip":"1.0.0.0","locale":"en_US","userAgent":"Mozilla/5.0 (Windows NT 5.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.5414.87 ADG/11.0.4060 Safari/537.36"}`), "test_many_rules", true, "6p3sVhzePA0Ybcf5r9fwDl"},
		{mustUser(t, `{"userID":"9"}`), "test_null_operator", true, "5kiqP6V3pTnL6GCbm5Vgtg"},
	}
	for _, g := range gates {
		r := e.CheckGate(g.u, g.name)
		if r.Value != g.value || r.RuleID != g.rule {
			t.Errorf("%s: got %v/%s, want %v/%s", g.name, r.Value, r.RuleID, g.value, g.rule)
		}
	}
	r := e.CheckGate(full, "test_string_comparisons")
	if len(r.SecondaryExposures) != 1 || r.SecondaryExposures[0] != (SecondaryExposure{"global_holdout", false, "3QoA4ncNdVGBaMt3N1KYjz:0.50:1"}) {
		t.Errorf("exposures = %+v", r.SecondaryExposures)
	}
	if x := e.GetExperiment(mustUser(t, `{"userID":"user-not-in-layer-holdout"}`), "targeted_exp_in_layer_with_holdout"); x.RuleID != "layerAssignment" {
		t.Errorf("layerAssignment: %s", x.RuleID)
	}
	if l := e.GetLayer(mustUser(t, `{"userID":"user-not-in-layer-holdout"}`), "Basic_test_layer"); l.RuleID != "54QJztEPRLXK7ZCvXeY9q4" || l.GroupName != "Control" {
		t.Errorf("Basic_test_layer: %s %s", l.RuleID, l.GroupName)
	}
	l := e.GetLayer(mustUser(t, `{"userID":"random_user_99"}`), "layer_with_many_params")
	var v map[string]any
	_ = json.Unmarshal(l.Value, &v)
	if l.RuleID != "7kGqF9fGepadpGpchGP5TK" || l.GroupName != "Control" || v["a_string"] != "control" || l.Version != 19 {
		t.Errorf("layer_with_many_params: %+v %v", l.Evaluation, v)
	}
	x := e.GetExperiment(u9f, "test_exp_5050_targeting")
	if x.RuleID != "targetingGate" || x.GroupName != "" || len(x.SecondaryExposures) != 3 || x.SecondaryExposures[1].Gate != "global_holdout" {
		t.Errorf("test_exp_5050_targeting: %+v", x.Evaluation)
	}
	if x := e.GetExperiment(u9f, "targeted_exp_in_layer_with_holdout"); x.RuleID != "layerAssignment" {
		t.Errorf("U9F layerAssignment: %s", x.RuleID)
	}
}

func TestIDListStore(t *testing.T) {
	s := NewIDListStore()
	s.SetList("l", []byte("+"+IDListKey("a")+"\r\n+"+IDListKey("b")+"\n-"+IDListKey("a")+"\n+\n \n"))
	if s.Contains("l", IDListKey("a")) || !s.Contains("l", IDListKey("b")) || s.Contains("other", IDListKey("b")) {
		t.Fatal("unexpected membership after SetList")
	}
	s.ApplyChanges("l", []byte("+"+IDListKey("c")+"\n"))
	if n, _ := s.Size("l"); n != 2 {
		t.Fatalf("size = %d", n)
	}
	s.ApplyChanges("l", []byte("+x  \n"))
	if !s.Contains("l", "x  ") {
		t.Fatal("SC keeps trailing spaces in ids")
	}
	rs := mustCompile(t, oneConditionGates(t, cond{Type: "unit_id", Op: "in_segment_list", Target: "l"}))
	e := NewEvaluator(rs, EvaluatorOptions{IDLists: s})
	if !e.CheckGate(mustUser(t, `{"userID":"b"}`), "g0").Value {
		t.Fatal("b should be in list l")
	}
	// Concurrent readers and writers (run with -race).
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				e.CheckGate(mustUser(t, `{"userID":"b"}`), "g0")
			}
		}()
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				s.ApplyChanges("l", []byte("+"+IDListKey(strings.Repeat("z", i+j))+"\n"))
			}
		}(i)
	}
	wg.Wait()
	s.DeleteList("l")
	if e.CheckGate(mustUser(t, `{"userID":"b"}`), "g0").Value {
		t.Fatal("deleted list still matches")
	}
}

func TestCountryLookup(t *testing.T) {
	cl := loadCountries()
	for ip, want := range map[string]string{"1.1.1.1": "US", "2.2.2.2": "FR", "14.14.14.14": "JP", "25.67.94.211": "GB", "27.67.94.211": "VN", "45.85.95.65": "CH", "58.96.74.25": "AU"} {
		if got, _ := lookupCountry(cl, ip); got != want {
			t.Errorf("%s: %q, want %q", ip, got, want)
		}
	}
	for _, ip := range []string{"999.1.1.1", "256.0.0.0", "1.2.3", "::1", "a.b.c.d", "", "1.1.1.1.1"} {
		if got, ok := lookupCountry(cl, ip); ok {
			t.Errorf("%s: got %q, want none", ip, got)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	if _, err := Compile([]byte(`{"has_updates":false}`), CompileOptions{}); !errors.Is(err, ErrNoUpdates) {
		t.Errorf("has_updates false: %v", err)
	}
	for _, p := range []string{`[]`, `"x"`, `{}`, `{"foo":1}`, `not json`} {
		if _, err := Compile([]byte(p), CompileOptions{}); err == nil {
			t.Errorf("%s: want an error", p)
		}
	}
	rs, err := Compile([]byte(`{"response_format":"dcs-v2","feature_gates":{"bad":{"type":"feature_gate"},"ok":{"type":"feature_gate","entity":"feature_gate","salt":"s","enabled":true,"defaultValue":true,"idType":"userID","rules":[]}},"condition_map":{"c":{"idType":"userID"}}}`), CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Problems()) != 2 || len(rs.GateNames()) != 1 {
		t.Errorf("problems = %v, gates = %v", rs.Problems(), rs.GateNames())
	}
	if r := testEvaluator(rs).CheckGate(mustUser(t, `{"userID":"u"}`), "ok"); !r.Value || r.RuleID != "default" {
		t.Errorf("defaultValue true gate: %+v", r)
	}
}

// TestConversionRoundTrip: the conformance rule set converted to v1 (and
// back) evaluates identically for every conformance user.
func TestConversionRoundTrip(t *testing.T) {
	c := loadConformance(t)
	v1, err := ConvertToV1(c.payload, V1Options{HashedSDKKeyUsed: "123"})
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	_ = json.Unmarshal(v1, &top)
	if string(top["hashed_sdk_key_used"]) != `"123"` || top["feature_gates"][0] != '[' {
		t.Fatalf("v1 payload shape: hashed=%s", top["hashed_sdk_key_used"])
	}
	v2, err := ConvertToV2(v1)
	if err != nil {
		t.Fatal(err)
	}
	e := c.evaluator()
	users := c.users
	if raceEnabled {
		// The normal run compares every user; under the race detector a
		// sample exercises the same code.
		users = nil
		for i := 0; i < len(c.users); i += 5 {
			users = append(users, c.users[i])
		}
	}
	for _, payload := range [][]byte{v1, v2} {
		rs, err := Compile(payload, CompileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		e2 := NewEvaluator(rs, EvaluatorOptions{Countries: loadCountries(), Now: func() time.Time { return fixedNow }})
		for _, u := range users {
			for _, n := range c.rs.gateNames {
				if a, b := e.CheckGate(u, n), e2.CheckGate(u, n); a.Value != b.Value || a.RuleID != b.RuleID || len(a.SecondaryExposures) != len(b.SecondaryExposures) {
					t.Fatalf("%s format %s: %+v vs %+v", n, rs.Format(), a, b)
				}
			}
			for _, n := range c.rs.configNames {
				if a, b := e.GetConfig(u, n), e2.GetConfig(u, n); string(a.Value) != string(b.Value) || a.RuleID != b.RuleID {
					t.Fatalf("%s format %s: %s/%s vs %s/%s", n, rs.Format(), a.RuleID, a.Value, b.RuleID, b.Value)
				}
			}
			for _, n := range c.rs.layerNames {
				if a, b := e.GetLayer(u, n), e2.GetLayer(u, n); string(a.Value) != string(b.Value) || a.RuleID != b.RuleID || a.AllocatedExperiment != b.AllocatedExperiment {
					t.Fatalf("%s format %s: %+v vs %+v", n, rs.Format(), a, b)
				}
			}
		}
	}
	noKey, _ := ConvertToV1(c.payload, V1Options{})
	if strings.Contains(string(noKey), "hashed_sdk_key_used") {
		t.Error("hashed_sdk_key_used written without being asked")
	}
}

func TestExposures(t *testing.T) {
	c := loadConformance(t)
	e := c.evaluator()
	u := mustUser(t, `{"userID":"user-in-layer-holdout-4","privateAttributes":{"secret":"x"},"custom":{"a":1}}`)
	g := e.CheckGate(u, "test_50_50")
	var ev struct {
		EventName string            `json:"eventName"`
		Metadata  map[string]string `json:"metadata"`
		User      map[string]any    `json:"user"`
		Time      int64             `json:"time"`
		Secondary []expExposure     `json:"secondaryExposures"`
	}
	b := e.AppendGateExposure(nil, u, &g, ExposureOptions{ReceivedAt: 5})
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if ev.EventName != GateExposureEvent || ev.Metadata["gate"] != "test_50_50" || ev.Metadata["reason"] != "Network:Recognized" ||
		ev.Metadata["lcut"] != "1767981029384" || ev.Metadata["receivedAt"] != "5" || ev.User["privateAttributes"] != nil || len(ev.Secondary) == 0 {
		t.Errorf("gate exposure: %s", b)
	}
	x := e.GetExperiment(u, "test_exp_5050_targeting")
	b = e.AppendConfigExposure(nil, u, &x, ExposureOptions{})
	if strings.Contains(string(b), "rulePassed") {
		t.Errorf("experiment exposure has rulePassed: %s", b)
	}
	d := e.GetDynamicConfig(u, "test_email_config")
	if b = e.AppendConfigExposure(nil, u, &d, ExposureOptions{}); !strings.Contains(string(b), `"rulePassed"`) {
		t.Errorf("config exposure lacks rulePassed: %s", b)
	}
	l := e.GetLayer(u, "test_layer_in_holdout")
	b = e.AppendLayerExposure(nil, u, &l, "layer_val", ExposureOptions{})
	ev.Secondary = nil
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	want := []expExposure{{"global_holdout", "false", "3QoA4ncNdVGBaMt3N1KYjz:0.50:1"}, {"layer_holdout", "true", "2bAVp6R3C85vCYrR6be36n:10.00:5"}}
	if ev.Metadata["isExplicitParameter"] != "false" || ev.Metadata["allocatedExperiment"] != "" || len(ev.Secondary) != 2 || ev.Secondary[0] != want[0] || ev.Secondary[1] != want[1] {
		t.Errorf("layer exposure: %s", b)
	}
}

func TestParseUserOddTypes(t *testing.T) {
	u := mustUser(t, `{"userID":123,"email":true,"customIDs":{"a":1.5,"b":null,"c":{}},"custom":{"n":null,"deep":[[[1]]]},"statsigEnvironment":{"tier":5}}`)
	if u.UserID() != "123" || u.email != nil {
		t.Errorf("userID %q email %v", u.UserID(), u.email)
	}
	if id, ok := u.CustomID("a"); !ok || id != "1.5" {
		t.Errorf("customID a = %q", id)
	}
	if _, ok := u.CustomID("b"); ok {
		t.Error("null customID kept")
	}
	for _, bad := range []string{`[]`, `nul`, `{"custom":[1]`} {
		if _, err := ParseUser([]byte(bad)); err == nil {
			t.Errorf("%s: want error", bad)
		}
	}
}
