package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// conformanceDir is ../shared/conformance beside the repository, when it exists.
func conformanceDir(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "shared", "conformance")
	if _, err := os.Stat(filepath.Join(dir, "eval_proj_dcs.json")); err != nil {
		t.Skipf("conformance set not found at %s (it lives in ../shared beside the repo): %v", dir, err)
	}
	return dir
}

type conformanceSet struct {
	dcs   []byte
	users [][]byte
	large map[string]any
}

func loadConformance(t *testing.T) conformanceSet {
	dir := conformanceDir(t)
	var cs conformanceSet
	var err error
	if cs.dcs, err = os.ReadFile(filepath.Join(dir, "eval_proj_dcs.json")); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "users.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		cs.users = append(cs.users, line)
	}
	lv, err := os.ReadFile(filepath.Join(dir, "large_values.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(lv, &cs.large); err != nil {
		t.Fatal(err)
	}
	return cs
}

// resolveLarge replaces {"$large_value": key} placeholders (see the conformance README).
func (cs conformanceSet) resolveLarge(v any) any {
	switch x := v.(type) {
	case map[string]any:
		if k, ok := x["$large_value"].(string); ok && len(x) == 1 {
			return cs.large[k]
		}
		for k, e := range x {
			x[k] = cs.resolveLarge(e)
		}
	case []any:
		for i, e := range x {
			x[i] = cs.resolveLarge(e)
		}
	}
	return v
}

// dedupeExposures removes repeated {gate, gateValue, ruleID} entries, keeping the first, as the
// conformance README allows.
func dedupeExposures(v any) any {
	list, ok := v.([]any)
	if !ok {
		return v
	}
	seen := map[string]bool{}
	out := []any{}
	for _, e := range list {
		b, _ := json.Marshal(e)
		if !seen[string(b)] {
			seen[string(b)] = true
			out = append(out, e)
		}
	}
	return out
}

// sameString compares rule ids, group names and the like, where "" and null are the same.
func sameString(a, b any) bool {
	s := func(v any) string {
		if v == nil {
			return ""
		}
		return fmt.Sprint(v)
	}
	return s(a) == s(b)
}

// TestConformanceOverHTTP checks check_gate, get_config and get_layer over HTTP against the
// reference SDK's expected evaluations, for every user of the conformance set.
func TestConformanceOverHTTP(t *testing.T) {
	cs := loadConformance(t)
	env := newEvalTestEnv(t, cs.dcs)
	f, err := os.Open(filepath.Join(conformanceDir(t), "expected_evaluations.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	type record struct {
		User  int    `json:"user"`
		Kind  string `json:"kind"`
		Name  string `json:"name"`
		Error string `json:"error"`
		rest  map[string]any
	}
	byUser := map[int][]record{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(sc.Bytes(), &r.rest); err != nil {
			t.Fatal(err)
		}
		if r.Error == "" {
			byUser[r.User] = append(byUser[r.User], r)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}

	compared, mismatches := 0, 0
	users := make([]int, 0, len(byUser))
	for u := range byUser {
		users = append(users, u)
	}
	sort.Ints(users)
	for _, u := range users {
		recs := byUser[u]
		names := map[string][]string{}
		for _, r := range recs {
			names[r.Kind] = append(names[r.Kind], r.Name)
		}
		got := map[string]map[string]any{}
		for kind, path := range map[string]string{"gate": "/v1/check_gate", "config": "/v1/get_config", "layer": "/v1/get_layer"} {
			if len(names[kind]) == 0 {
				continue
			}
			field := map[string]string{"gate": "gateNames", "config": "configNames", "layer": "layerNames"}[kind]
			body := fmt.Sprintf(`{"user":%s,%q:%s,"disableExposureLogging":true}`, cs.users[u], field, mustJSON(names[kind]))
			status, resp := env.post(path, testServerKey, body)
			if status != http.StatusOK {
				t.Fatalf("user %d %s: %d %s", u, path, status, resp)
			}
			var m map[string]map[string]any
			if err := json.Unmarshal([]byte(resp), &m); err != nil {
				t.Fatalf("user %d %s: %v", u, path, err)
			}
			got[kind] = map[string]any{}
			for n, v := range m {
				got[kind][n] = v
			}
		}
		for _, r := range recs {
			res, _ := got[r.Kind][r.Name].(map[string]any)
			if res == nil {
				t.Errorf("user %d %s %s: missing from the answer", u, r.Kind, r.Name)
				mismatches++
				continue
			}
			compared++
			var diffs []string
			if want := cs.resolveLarge(r.rest["value"]); !reflect.DeepEqual(res["value"], want) {
				diffs = append(diffs, fmt.Sprintf("value %v, want %v", short(res["value"]), short(want)))
			}
			if !sameString(res["rule_id"], r.rest["rule_id"]) {
				diffs = append(diffs, fmt.Sprintf("rule_id %v, want %v", res["rule_id"], r.rest["rule_id"]))
			}
			if want, ok := r.rest["group_name"]; ok && !sameString(res["group_name"], want) {
				diffs = append(diffs, fmt.Sprintf("group_name %v, want %v", res["group_name"], want))
			}
			if want, ok := r.rest["allocated_experiment"]; ok && !sameString(res["allocatedExperimentName"], want) {
				diffs = append(diffs, fmt.Sprintf("allocatedExperimentName %v, want %v", res["allocatedExperimentName"], want))
			}
			if len(diffs) > 0 {
				mismatches++
				if mismatches <= 20 {
					t.Errorf("user %d %s %s: %s", u, r.Kind, r.Name, strings.Join(diffs, "; "))
				}
			}
		}
	}
	t.Logf("HTTP evaluations: %d compared, %d mismatches (%.2f%% agreement)", compared, mismatches, 100*float64(compared-mismatches)/float64(max(compared, 1)))
	if compared < 40000 {
		t.Fatalf("only %d records compared", compared)
	}
}

// TestConformanceInitializeOverHTTP checks /v1/initialize with hash none and djb2 against the
// reference's client initialize responses.
func TestConformanceInitializeOverHTTP(t *testing.T) {
	cs := loadConformance(t)
	env := newEvalTestEnv(t, cs.dcs)
	f, err := os.Open(filepath.Join(conformanceDir(t), "expected_initialize.jsonl.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	compared, mismatches := 0, 0
	for sc.Scan() {
		var line struct {
			User     int            `json:"user"`
			Hash     string         `json:"hash"`
			Response map[string]any `json:"response"`
			Error    string         `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		if line.Error != "" {
			continue
		}
		want := cs.resolveLarge(line.Response).(map[string]any)
		status, resp := env.post("/v1/initialize", testClientKey, fmt.Sprintf(`{"user":%s,"hash":%q}`, cs.users[line.User], line.Hash))
		if status != http.StatusOK {
			t.Fatalf("user %d hash %s: %d %s", line.User, line.Hash, status, resp)
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(resp), &got); err != nil {
			t.Fatal(err)
		}
		compared++
		var diffs []string
		for _, section := range []string{"feature_gates", "dynamic_configs", "layer_configs"} {
			g, _ := got[section].(map[string]any)
			w, _ := want[section].(map[string]any)
			if len(g) != len(w) {
				diffs = append(diffs, fmt.Sprintf("%s: %d entries, want %d", section, len(g), len(w)))
			}
			for name, we := range w {
				ge, ok := g[name].(map[string]any)
				if !ok {
					diffs = append(diffs, fmt.Sprintf("%s.%s missing", section, name))
					continue
				}
				wm := we.(map[string]any)
				for _, k := range []string{"secondary_exposures", "undelegated_secondary_exposures"} {
					if v, ok := ge[k]; ok {
						ge[k] = dedupeExposures(v)
					}
				}
				if !reflect.DeepEqual(ge, wm) {
					diffs = append(diffs, fmt.Sprintf("%s.%s: got %s want %s", section, name, short(ge), short(wm)))
				}
			}
		}
		for _, k := range []string{"time", "has_updates", "hash_used", "evaluated_keys", "user", "pa_hash", "param_stores", "can_record_session", "session_recording_rate", "recording_blocked"} {
			if !reflect.DeepEqual(got[k], want[k]) {
				diffs = append(diffs, fmt.Sprintf("%s: got %s want %s", k, short(got[k]), short(want[k])))
			}
		}
		if len(diffs) > 0 {
			mismatches++
			if mismatches <= 10 {
				t.Errorf("user %d hash %s: %s", line.User, line.Hash, strings.Join(diffs[:min(len(diffs), 5)], "\n  "))
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("HTTP initialize: %d responses compared, %d mismatching", compared, mismatches)
	if compared < 590 {
		t.Fatalf("only %d responses compared", compared)
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}
