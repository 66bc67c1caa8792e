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
	"strings"
	"testing"
)

// Differential testing against the reference SDK (statsig-node-core, run by
// ../shared/reference). Opt-in: SIGEDGE_DIFFTEST=1, with SIGEDGE_REFERENCE
// pointing at an installed copy of the runner (npm ci done); rounds and seed
// from SIGEDGE_DIFFTEST_ROUNDS / SIGEDGE_DIFFTEST_SEED (SIGEDGE_DIFFTEST_FIRST
// starts at a later round, to replay one). A mismatching case is shrunk
// (SIGEDGE_DIFFTEST_SHRINK=0 skips that; SIGEDGE_DIFFTEST_SHRINK_BUDGET bounds
// the reference runs) and, with SIGEDGE_DIFFTEST_RECORD=1, written into
// testdata/regress; TestRegressionCases replays those cases always.
// SIGEDGE_DIFFTEST_DUMP=dir keeps unshrunk mismatching cases, and the rule
// sets and users the reference crashed on, for TestDifferentialCase
// (SIGEDGE_DIFFTEST_CASE=file), which also checks hand-written cases.

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
// dynamic config and the undelegated exposures of every layer in u's
// initialize response, built in evalcore's order and in orderVariants
// shuffled ones, keyed "gate/name", "config/name" and "layer/name".
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
			Configs map[string]struct {
				Secondary []expExposure `json:"secondary_exposures"`
			} `json:"dynamic_configs"`
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
		for n, g := range resp.Configs {
			out["config/"+n] = append(out["config/"+n], g.Secondary)
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
	if _, err := runReferenceTool(t, dir, "evaluate", []string{"--quiet"}, payload, nil); err != nil {
		t.Logf("the reference refuses the rule set: %.300s", err)
		return nil, nil
	}
	var kept, dropped []json.RawMessage
	for _, u := range users {
		if _, err := runReferenceTool(t, dir, "evaluate", []string{"--quiet"}, payload, []json.RawMessage{u}); err != nil {
			t.Logf("the reference aborts on user %s: %.300s", u, err)
			dropped = append(dropped, u)
			continue
		}
		kept = append(kept, u)
	}
	if d := os.Getenv("SIGEDGE_DIFFTEST_DUMP"); d != "" {
		// what the reference crashed on, for investigation
		name := fmt.Sprintf("crash_%x.json", djb2(string(payload)))
		_ = os.WriteFile(filepath.Join(d, name), marshalCase(regressionCase{RuleSet: payload, Users: dropped}), 0o644)
	}
	if len(kept) == 0 {
		return nil, nil
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
	files := regressionFiles()
	if len(files) == 0 {
		t.Skip("no regression cases")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c := readRegressionCase(t, f)
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
// regressionFiles lists the cases in testdata/regress (plain and gzipped).
func regressionFiles() []string {
	files, _ := filepath.Glob(filepath.Join("testdata", "regress", "*.json"))
	gz, _ := filepath.Glob(filepath.Join("testdata", "regress", "*.json.gz"))
	return append(files, gz...)
}

// readRegressionCase reads one case of testdata/regress.
func readRegressionCase(t *testing.T, path string) regressionCase {
	t.Helper()
	b, err := readMaybeGzip(path)
	if err != nil {
		t.Fatal(err)
	}
	var c regressionCase
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

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
	first, rounds, seed := diffRoundsAndSeed(10)
	var records, skipped, failed int
	defer func() {
		t.Logf("seed %d, rounds %d-%d: %d reference records compared, %d rounds without any, %d rounds mismatching",
			seed, first, first+rounds-1, records, skipped, failed)
	}()
	for round := first; round < first+rounds; round++ {
		// Odd rounds add target_app conditions and app ids to the rule set.
		g := &ruleGen{r: rand.New(rand.NewPCG(seed, uint64(round))), apps: round%2 == 1}
		payload, users := g.ruleSet(), g.users(40)
		c := regressionCase{RuleSet: payload, Users: users}
		c.Users, c.Expected = referenceSurvivors(t, dir, payload, users)
		if len(c.Users) == 0 {
			skipped++
			continue
		}
		records += len(c.Expected)
		if len(compareCase(t, c)) == 0 {
			continue
		}
		failed++
		if d := os.Getenv("SIGEDGE_DIFFTEST_DUMP"); d != "" {
			// Unshrunk failing cases, for investigation.
			_ = os.WriteFile(filepath.Join(d, fmt.Sprintf("random_s%d_r%d.json", seed, round)), marshalCase(c), 0o644)
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

// TestDifferentialCase runs one hand-written (or dumped) case, a JSON file
// named by SIGEDGE_DIFFTEST_CASE holding {"ruleset": ..., "users": [...]},
// through the reference and evalcore; SIGEDGE_DIFFTEST_SHRINK=1 shrinks a
// mismatching one; with SIGEDGE_DIFFTEST_RECORD=1 a mismatching (or,
// with SIGEDGE_DIFFTEST_KEEP=1, any) case is stored unshrunk in
// testdata/regress under the file's base name.
func TestDifferentialCase(t *testing.T) {
	dir := referenceDir(t)
	path := os.Getenv("SIGEDGE_DIFFTEST_CASE")
	if path == "" {
		t.Skip("SIGEDGE_DIFFTEST_CASE names no case file")
	}
	c := readRegressionCase(t, path)
	c.Initialize = nil // answers come from the reference, not the file
	c.Users, c.Expected = referenceSurvivors(t, dir, c.RuleSet, c.Users)
	// SIGEDGE_DIFFTEST_NOINIT=1: evaluations only (initialize responses of
	// a large case make its replay slow)
	if os.Getenv("SIGEDGE_DIFFTEST_NOINIT") != "1" {
		var err error
		if c.Initialize, err = referenceInit(t, dir, c.RuleSet, c.Users, c.ClientKey); err != nil {
			t.Fatal(err)
		}
	}
	diffs := append(compareCase(t, c), compareInitCase(c)...)
	if len(diffs) > 0 && os.Getenv("SIGEDGE_DIFFTEST_SHRINK") == "1" {
		// (with SIGEDGE_DIFFTEST_NOINIT=1 it shrinks on evaluations alone)
		c = shrinkCase(t, dir, c)
		diffs = append(compareCase(t, c), compareInitCase(c)...)
	}
	if os.Getenv("SIGEDGE_DIFFTEST_RECORD") == "1" && (len(diffs) > 0 || os.Getenv("SIGEDGE_DIFFTEST_KEEP") == "1") {
		if c.Note == "" {
			c.Note = "crafted case checked by TestDifferentialCase"
		}
		if err := os.WriteFile(filepath.Join("testdata", "regress", filepath.Base(path)), marshalCase(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	limit := 20
	if os.Getenv("SIGEDGE_DIFFTEST_VERBOSE") == "1" {
		limit = len(diffs)
	}
	for i, d := range diffs {
		if i >= limit {
			t.Errorf("... and %d more", len(diffs)-i)
			break
		}
		t.Error(d)
	}
}
