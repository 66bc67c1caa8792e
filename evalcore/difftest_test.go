package evalcore

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Differential testing against the reference SDK (statsig-node-core, run by
// ../shared/reference). Opt-in: SIGEDGE_DIFFTEST=1, with SIGEDGE_REFERENCE
// pointing at an installed copy of the runner (npm ci done); rounds and seed
// from SIGEDGE_DIFFTEST_ROUNDS / SIGEDGE_DIFFTEST_SEED. A mismatching case is
// shrunk (SIGEDGE_DIFFTEST_SHRINK=0 skips that) and, with
// SIGEDGE_DIFFTEST_RECORD=1, written into testdata/regress;
// TestRegressionCases replays those cases always.

// regressionCase is a rule set, users and the reference's answers: evaluation
// records (Expected) and/or initialize records (Initialize, for ClientKey).
type regressionCase struct {
	Note       string            `json:"note,omitempty"`
	ClientKey  string            `json:"client_key,omitempty"`
	RuleSet    json.RawMessage   `json:"ruleset"`
	Users      []json.RawMessage `json:"users"`
	Expected   []json.RawMessage `json:"expected,omitempty"`
	Initialize []json.RawMessage `json:"initialize,omitempty"`
}

func referenceDir(t *testing.T) string {
	t.Helper()
	if os.Getenv("SIGEDGE_DIFFTEST") != "1" {
		t.Skip("differential test against the reference SDK is opt-in: set SIGEDGE_DIFFTEST=1 and SIGEDGE_REFERENCE")
	}
	dir := os.Getenv("SIGEDGE_REFERENCE")
	if dir == "" {
		t.Skip("SIGEDGE_REFERENCE (an installed copy of ../shared/reference) is not set")
	}
	return dir
}

// runReference evaluates users against payload with the reference runner.
func runReference(t *testing.T, dir string, payload []byte, users []json.RawMessage) []json.RawMessage {
	t.Helper()
	recs, err := runReferenceTool(t, dir, "evaluate", []string{"--quiet"}, payload, users)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// gcirExposureAlternatives returns the secondary exposures of every gate and
// the undelegated exposures of every layer in u's initialize response, built
// in evalcore's order and in orderVariants shuffled ones, keyed "gate/name"
// and "layer/name".
func gcirExposureAlternatives(e *Evaluator, u *User) map[string][][]expExposure {
	out := map[string][][]expExposure{}
	if u == nil {
		return out
	}
	shuffle := rand.New(rand.NewPCG(7, 11))
	for v := 0; v <= orderVariants; v++ {
		opts := InitOptions{Hash: HashNone}
		if v > 0 {
			opts.permute = func(names []string) []string {
				p := slices.Clone(names)
				shuffle.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
				return p
			}
		}
		raw, err := e.ClientInitializeResponse(u, opts)
		if err != nil {
			continue
		}
		var resp struct {
			Gates map[string]struct {
				Secondary []expExposure `json:"secondary_exposures"`
			} `json:"feature_gates"`
			Layers map[string]struct {
				Undelegated []expExposure `json:"undelegated_secondary_exposures"`
			} `json:"layer_configs"`
		}
		if json.Unmarshal(raw, &resp) != nil {
			continue
		}
		for n, g := range resp.Gates {
			out["gate/"+n] = append(out["gate/"+n], g.Secondary)
		}
		for n, l := range resp.Layers {
			out["layer/"+n] = append(out["layer/"+n], l.Undelegated)
		}
	}
	return out
}

// referenceSurvivors evaluates users with the reference; when the reference
// aborts (SC panics on some inputs), it finds the users it aborts on by
// running them one by one, logs them (nothing to compare there) and returns
// the others with their records.
func referenceSurvivors(t *testing.T, dir string, payload []byte, users []json.RawMessage) ([]json.RawMessage, []json.RawMessage) {
	t.Helper()
	recs, err := runReferenceTool(t, dir, "evaluate", []string{"--quiet"}, payload, users)
	if err == nil {
		return users, recs
	}
	var kept []json.RawMessage
	for _, u := range users {
		if _, err := runReferenceTool(t, dir, "evaluate", []string{"--quiet"}, payload, []json.RawMessage{u}); err != nil {
			t.Logf("the reference aborts on user %s: %.300s", u, err)
			continue
		}
		kept = append(kept, u)
	}
	return kept, runReference(t, dir, payload, kept)
}

// compareCase checks evalcore against expected records; it returns the diffs.
func compareCase(t *testing.T, c regressionCase) []string {
	t.Helper()
	rs, err := Compile(c.RuleSet, CompileOptions{})
	if err != nil {
		return []string{"compile: " + err.Error()}
	}
	e := NewEvaluator(rs, EvaluatorOptions{Countries: loadCountries()})
	users := make([]*User, len(c.Users))
	for i, raw := range c.Users {
		users[i], _ = ParseUser(raw)
	}
	// Exposure lists of gates and layers in initialize responses built in
	// shuffled spec orders, per user, computed when first needed.
	cache := map[int]map[string][][]expExposure{}
	alts := func(user int, kind, name string) [][]expExposure {
		if cache[user] == nil {
			cache[user] = gcirExposureAlternatives(e, users[user])
		}
		return cache[user][kind+"/"+name]
	}
	var out []string
	for _, rec := range c.Expected {
		diffs, label, skip := checkRecord(e, users, rec, nil, alts)
		if skip || len(diffs) == 0 {
			continue
		}
		out = append(out, label+": "+strings.Join(diffs, "; "))
	}
	return out
}

func TestRegressionCases(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "regress", "*.json"))
	gz, _ := filepath.Glob(filepath.Join("testdata", "regress", "*.json.gz"))
	files = append(files, gz...)
	if len(files) == 0 {
		t.Skip("no regression cases")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := readMaybeGzip(f)
			if err != nil {
				t.Fatal(err)
			}
			var c regressionCase
			if err := json.Unmarshal(b, &c); err != nil {
				t.Fatal(err)
			}
			if len(c.Expected) == 0 && len(c.Initialize) == 0 {
				t.Fatal("case has no expected records")
			}
			diffs := compareCase(t, c)
			diffs = append(diffs, compareInitCase(c)...)
			for i, d := range diffs {
				if i >= 10 {
					t.Errorf("...")
					break
				}
				t.Error(d)
			}
		})
	}
}

// readMaybeGzip reads a file, gunzipping names ending in .gz.
func readMaybeGzip(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil || !strings.HasSuffix(path, ".gz") {
		return b, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

func TestDifferentialRandom(t *testing.T) {
	dir := referenceDir(t)
	rounds, seed := diffRoundsAndSeed(10)
	for round := 0; round < rounds; round++ {
		// Odd rounds add target_app conditions and app ids to the rule set.
		g := &ruleGen{r: rand.New(rand.NewPCG(seed, uint64(round))), apps: round%2 == 1}
		payload, users := g.ruleSet(), g.users(25)
		c := regressionCase{RuleSet: payload, Users: users}
		c.Users, c.Expected = referenceSurvivors(t, dir, payload, users)
		if round == 0 {
			t.Logf("round 0: %d reference records", len(c.Expected))
		}
		if len(compareCase(t, c)) == 0 {
			continue
		}
		c = recordMismatch(t, dir, c, fmt.Sprintf("random_s%d_r%d.json", seed, round))
		for i, d := range compareCase(t, c) {
			if i >= 8 {
				break
			}
			t.Errorf("round %d: %s", round, d)
		}
	}
}

// ruleGen builds small random rule sets aimed at the risky corners:
// type coercion, versions, times, any/none with odd types, regexes, eq,
// nested gates, layers, disabled specs and unsupported conditions.
type ruleGen struct {
	r     *rand.Rand
	conds map[string]any
	gates []string
	apps  bool // add initialize-only parts (appExtras, target_app conditions)
}

func (g *ruleGen) pick(xs ...any) any { return xs[g.r.IntN(len(xs))] }

var genFields = []string{"email", "userID", "appVersion", "level", "Level", "tags", "flag", "ts", "country", "locale", "ip", "plan", "obj", "user_id", "app_version", "missing"}

func (g *ruleGen) target() any {
	switch g.r.IntN(14) {
	case 0:
		return nil
	case 1:
		return g.pick(true, false)
	case 2:
		return g.pick(9, 9.5, 0, -1, 1e21, 1700000000, 1700000000000, 4086454689000)
	case 3:
		return g.pick("9", "9.0", "1.2.3", "1.3", "v1.3", "1..2", " 2 ", "abc", "", "true", "2023-01-01T00:00:00Z", "2023-01-01 00:00:00", "1700000000", "^a.*", `(a)\1`, "(?=x)x", "[", "A_USER")
	case 4, 5, 6:
		n := g.r.IntN(4)
		arr := make([]any, n)
		for i := range arr {
			arr[i] = g.pick("9", "9.0", 9, 9.0, 1.5, true, "a", "A", "vip", "", "1.2.3", nil, "@statsig.com", "us", "US", "a_user")
		}
		return arr
	case 7:
		return map[string]any{"9": true, "a": true, "A": false}
	default:
		return g.pick("1.2", "a", "us", "9", "vip", "x@statsig.com", []any{"a_user", "9", "us"})
	}
}

var genOps = []string{"gt", "gte", "lt", "lte", "version_gt", "version_gte", "version_lt", "version_lte", "version_eq", "version_neq",
	"any", "none", "any_case_sensitive", "none_case_sensitive", "str_starts_with_any", "str_ends_with_any", "str_contains_any",
	"str_contains_none", "str_matches", "eq", "neq", "before", "after", "on", "array_contains_any", "array_contains_none",
	"array_contains_all", "not_array_contains_all", "in_segment_list", "not_in_segment_list", "encoded_any", "bogus"}

func (g *ruleGen) condition() string {
	id := "c" + strconv.Itoa(len(g.conds))
	c := map[string]any{"idType": g.pick("userID", "userID", "companyID", "stableID")}
	if g.apps && g.r.IntN(8) == 0 {
		c["type"] = "target_app"
		c["operator"] = g.pick("any", "none", "eq", "neq", "any_case_sensitive", "str_contains_any")
		c["targetValue"] = g.pick([]any{"app_a"}, []any{"app_b", "app_c"}, "app_a", nil, []any{"APP_C"})
		g.conds[id] = c
		return id
	}
	switch g.r.IntN(20) {
	case 0:
		c["type"] = "public"
	case 1, 2:
		c["type"] = g.pick("pass_gate", "fail_gate")
		if len(g.gates) > 0 && g.r.IntN(5) > 0 {
			c["targetValue"] = g.gates[g.r.IntN(len(g.gates))]
		} else {
			c["targetValue"] = g.pick("missing_gate", "segment:missing", "", 5)
		}
	case 3:
		c["type"] = "user_bucket"
		c["operator"] = g.pick("lt", "gte", "any", "none")
		c["additionalValues"] = map[string]any{"salt": "salt" + strconv.Itoa(g.r.IntN(3))}
		if c["operator"] == "any" || c["operator"] == "none" {
			m := map[string]any{}
			for i := 0; i < 300; i++ {
				m[strconv.Itoa(g.r.IntN(1000))] = true
			}
			c["targetValue"] = m
		} else {
			c["targetValue"] = g.r.IntN(1000)
		}
	case 4:
		c["type"] = "current_time"
		c["operator"] = g.pick("before", "after", "on", "gt")
		c["targetValue"] = g.pick(4086454689000, 1600000000000, "2099-01-01T00:00:00Z", 1700000000)
	case 5:
		c["type"] = "environment_field"
		c["field"] = g.pick("tier", "Tier", "region")
		c["operator"] = g.pick("any", "none", "eq")
		c["targetValue"] = g.pick([]any{"staging", "production"}, "staging", nil)
	case 6:
		c["type"] = "unit_id"
		c["operator"] = genOps[g.r.IntN(len(genOps))]
		c["targetValue"] = g.target()
	case 7:
		c["type"] = g.pick("javascript", "multi_pass_gate", "ip_based", "ua_based", "target_app")
		c["field"] = g.pick("country", "Country", "os_name", "ip")
		c["operator"] = g.pick("any", "none", "eq")
		c["targetValue"] = g.pick([]any{"US", "JP"}, nil, "")
	default:
		c["type"] = "user_field"
		c["field"] = genFields[g.r.IntN(len(genFields))]
		if g.r.IntN(30) > 0 {
			c["operator"] = genOps[g.r.IntN(len(genOps))]
		}
		c["targetValue"] = g.target()
	}
	g.conds[id] = c
	return id
}

func (g *ruleGen) rule(id string, ret any, extra map[string]any) map[string]any {
	n := 1 + g.r.IntN(3)
	conds := make([]string, n)
	for i := range conds {
		conds[i] = g.condition()
	}
	r := map[string]any{"name": id, "id": id, "salt": g.pick("", "rs", id), "passPercentage": g.pick(100, 100, 0, 50, 12.5),
		"returnValue": ret, "idType": g.pick("userID", "companyID"), "conditions": conds}
	for k, v := range extra {
		r[k] = v
	}
	return r
}

func (g *ruleGen) ruleSet() json.RawMessage {
	g.conds = map[string]any{}
	gates := map[string]any{}
	for i := 0; i < 8; i++ {
		name := fmt.Sprintf("gate_%d", i)
		if i%4 == 3 {
			name = fmt.Sprintf("segment:seg_%d", i)
		}
		var rules []any
		for j := 0; j < 1+g.r.IntN(3); j++ {
			rules = append(rules, g.rule(fmt.Sprintf("%s_r%d", name, j), g.pick(true, true, false), nil))
		}
		entity := "feature_gate"
		if strings.HasPrefix(name, "segment:") {
			entity = "segment"
		}
		gates[name] = map[string]any{"type": "feature_gate", "entity": entity, "salt": "salt_" + name,
			"enabled": g.r.IntN(5) > 0, "defaultValue": g.r.IntN(6) == 0, "idType": "userID", "rules": rules}
		g.gates = append(g.gates, name)
	}
	configs := map[string]any{}
	for i := 0; i < 4; i++ {
		name := fmt.Sprintf("exp_%d", i)
		var rules []any
		for j := 0; j < 1+g.r.IntN(3); j++ {
			rules = append(rules, g.rule(fmt.Sprintf("%s_r%d", name, j), map[string]any{"p": j, "name": name},
				map[string]any{"groupName": g.pick("Control", "Test", nil), "isExperimentGroup": g.pick(true, false, nil)}))
		}
		entity := g.pick("experiment", "dynamic_config", "autotune").(string)
		spec := map[string]any{"type": "dynamic_config", "entity": entity, "salt": "salt_" + name,
			"enabled": g.r.IntN(5) > 0, "defaultValue": map[string]any{"p": "default"}, "idType": g.pick("userID", "stableID"),
			"rules": rules, "isActive": g.pick(true, false, nil), "explicitParameters": g.pick([]any{"p"}, nil)}
		if g.r.IntN(2) == 0 {
			spec["version"] = g.r.IntN(20)
		}
		configs[name] = spec
	}
	layers := map[string]any{}
	for i := 0; i < 2; i++ {
		name := fmt.Sprintf("layer_%d", i)
		var rules []any
		for j := 0; j < 1+g.r.IntN(3); j++ {
			rules = append(rules, g.rule(fmt.Sprintf("%s_r%d", name, j), map[string]any{"p": "layer"},
				map[string]any{"configDelegate": g.pick(fmt.Sprintf("exp_%d", g.r.IntN(4)), "nope", nil)}))
		}
		layers[name] = map[string]any{"type": "dynamic_config", "entity": "layer", "salt": "salt_" + name,
			"enabled": true, "defaultValue": map[string]any{"p": "layer_default", "q": 1}, "idType": "userID", "rules": rules}
	}
	top := map[string]any{"response_format": "dcs-v2", "has_updates": true, "time": 1000,
		"feature_gates": gates, "dynamic_configs": configs, "layer_configs": layers,
		"experiment_to_layer": map[string]any{}, "condition_map": g.conds}
	if g.apps {
		g.appExtras(top)
	}
	b, _ := json.Marshal(top)
	return b
}

func (g *ruleGen) users(n int) []json.RawMessage {
	vals := []any{"9", 9, 9.0, 9.5, "9.0", -1, 1e21, "1e3", true, false, "true", "TRUE", nil, "", " ", "a_user", "A_USER",
		[]any{"vip", 9}, []any{}, map[string]any{"a": "1"}, "1.2.3", "1.3", "1..2", "v1.3", "1.2.3-beta", "2023-01-01T00:00:00Z",
		"2023-01-01 00:00:00", 1700000000, 1700000000000, "1700000000", "x@statsig.com", "aa", "US", "us", "1.1.1.1", "ünï"}
	var out []json.RawMessage
	for i := 0; i < n; i++ {
		u := map[string]any{}
		if g.r.IntN(6) > 0 {
			u["userID"] = g.pick("a_user", "9", "", "user_"+strconv.Itoa(i), "A_USER")
		}
		if g.r.IntN(3) == 0 {
			u["customIDs"] = map[string]any{g.pick("companyID", "companyid", "stableID").(string): g.pick("123", "", "c"+strconv.Itoa(i))}
		}
		for _, f := range []string{"email", "appVersion", "country", "locale", "ip"} {
			if g.r.IntN(3) == 0 {
				if s, ok := vals[g.r.IntN(len(vals))].(string); ok {
					u[f] = s
				}
			}
		}
		custom := map[string]any{}
		for j := 0; j < g.r.IntN(5); j++ {
			custom[genFields[g.r.IntN(len(genFields))]] = vals[g.r.IntN(len(vals))]
		}
		if len(custom) > 0 {
			u["custom"] = custom
		}
		if g.r.IntN(5) == 0 {
			u["privateAttributes"] = map[string]any{genFields[g.r.IntN(len(genFields))]: vals[g.r.IntN(len(vals))]}
		}
		if g.r.IntN(4) == 0 {
			u["statsigEnvironment"] = map[string]any{"tier": g.pick("staging", "STAGING", "production")}
		}
		b, _ := json.Marshal(u)
		out = append(out, b)
	}
	return out
}
