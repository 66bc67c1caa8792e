package uaparser

// Differential test against the reference SDK (statsig-node-core 0.23.2). Opt-in, because it
// needs Node and the reference installed:
//
//	ref=$(mktemp -d) && cp -r ../shared/reference/. "$ref" && (cd "$ref" && npm ci --no-audit --no-fund)
//	SIGEDGE_DIFFTEST=1 SIGEDGE_REFERENCE_DIR="$ref" go test -timeout 30m -run TestDifferential -v ./evalcore/internal/uaparser
//
// It builds a corpus of user agents (testdata/agreed.jsonl, the conformance users', the
// real-world list that ships with the uap-go module, hand-written seeds, and deterministic
// mutations of all of these), then checks Parse against the reference in two ways:
//
//  1. the reference's own helper, Statsig.getParsedUserAgentValueForUser (testdata/refparse.js),
//     which gives its four values directly, so a mismatch shows both sides;
//  2. the evaluation path that ua_based conditions really use: a rule set with one gate per user
//     agent and field, whose only condition is "<field> any_case_sensitive [Parse(ua).<field>]".
//     The reference passes the gate exactly where our value equals its value (testdata/refgates.js
//     checks the gates). This also guards against the helper drifting from what conditions see.
//
// Set SIGEDGE_DIFFTEST_WRITE=1 as well to rewrite testdata/agreed.jsonl from the reference's
// answers (the committed regression table that TestAgreed checks without Node).
// SIGEDGE_DIFFTEST_GENERATED sets how many mutated user agents to add (default 20000), and
// SIGEDGE_DIFFTEST_FUZZ_DIR adds the inputs FuzzParse has collected (see fuzzCorpus).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// maxUALen is SC's limit: longer user agents are not parsed at all by the evaluator.
const maxUALen = 1000

// agreedMaxGenerated caps how many generated user agents go into testdata/agreed.jsonl.
const agreedMaxGenerated = 2500

func TestDifferential(t *testing.T) {
	if os.Getenv("SIGEDGE_DIFFTEST") != "1" {
		t.Skip("differential test is opt-in: set SIGEDGE_DIFFTEST=1 and SIGEDGE_REFERENCE_DIR (see difftest_test.go)")
	}
	refDir := os.Getenv("SIGEDGE_REFERENCE_DIR")
	if refDir == "" {
		t.Skip("SIGEDGE_REFERENCE_DIR is not set")
	}
	if _, err := os.Stat(filepath.Join(refDir, "node_modules", "@statsig", "statsig-node-core")); err != nil {
		t.Skipf("reference not installed in %s: %v", refDir, err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not found")
	}

	corpus, keep := diffCorpus(t)
	t.Logf("corpus: %d user agents", len(corpus))

	ref := referenceHelper(t, refDir, corpus)
	mismatches, fields := 0, 0
	for i, ua := range corpus {
		want := ref[i]
		if want == nil {
			t.Errorf("reference gave no result for %q", ua)
			continue
		}
		got := Parse(ua)
		g := [4]string{got.OSName, got.OSVersion, got.BrowserName, got.BrowserVersion}
		for f := 0; f < 4; f++ {
			fields++
			if g[f] != want[f] {
				mismatches++
				if mismatches <= 60 {
					t.Errorf("%s: got %q, reference %q, ua %q", fieldNames[f], g[f], want[f], ua)
				}
			}
		}
	}
	t.Logf("helper: %d user agents, %d fields compared, %d mismatches", len(corpus), fields, mismatches)

	gateChecked, gateMismatches := referenceGates(t, refDir, corpus)
	t.Logf("evaluation path: %d user agents, %d fields compared, %d mismatches", gateChecked/4, gateChecked, gateMismatches)

	if os.Getenv("SIGEDGE_DIFFTEST_WRITE") == "1" {
		writeAgreed(t, corpus[:keep], ref[:keep])
	}
}

var fieldNames = [4]string{"os_name", "os_version", "browser_name", "browser_version"}

// diffCorpus returns the user agents to compare without duplicates, and how many of the first
// ones make up testdata/agreed.jsonl: the hand-written, conformance and uap-go ones, then the
// first agreedMaxGenerated mutations. Cases of an older agreed.jsonl that are no longer part of
// that come last, so they are still compared.
func diffCorpus(t *testing.T) ([]string, int) {
	seen := map[string]bool{}
	var out []string
	add := func(ua string) {
		if !seen[ua] {
			seen[ua] = true
			out = append(out, ua)
		}
	}
	for _, ua := range diffSeeds {
		add(ua)
	}
	for _, ua := range conformanceUAs(t) {
		add(ua)
	}
	for _, ua := range uapGoUAs(t) {
		add(ua)
	}
	fixed := len(out)

	n := 20000
	if s := os.Getenv("SIGEDGE_DIFFTEST_GENERATED"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("SIGEDGE_DIFFTEST_GENERATED: %v", err)
		}
		n = v
	}
	base := append([]string(nil), out...)
	rng := rand.New(rand.NewSource(20240601))
	for tries := 0; len(out) < fixed+n && tries < 10*n; tries++ {
		add(mutate(rng, base))
	}
	keep := min(len(out), fixed+agreedMaxGenerated)
	for _, c := range readAgreed(t) {
		add(c.ua)
	}
	if dir := os.Getenv("SIGEDGE_DIFFTEST_FUZZ_DIR"); dir != "" {
		for _, ua := range fuzzCorpus(t, dir) {
			add(ua)
		}
	}
	return out, keep
}

// fuzzCorpus reads the inputs FuzzParse found interesting (the directory is
// $(go env GOCACHE)/fuzz/github.com/sigedge/sigedge/evalcore/internal/uaparser/FuzzParse), as the
// reference will see them: the JSON that carries them to Node turns invalid UTF-8 into U+FFFD.
func fuzzCorpus(t *testing.T, dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("SIGEDGE_DIFFTEST_FUZZ_DIR: %v", err)
	}
	var out []string
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		// go test fuzz v1 / string("...")
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[1], "string(") {
			continue
		}
		ua, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "string("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		b, err := json.Marshal(ua)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &ua); err != nil {
			t.Fatal(err)
		}
		out = append(out, ua)
	}
	return out
}

// repoRoot finds the module root, so ../shared can be located next to it.
func repoRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

// conformanceUAs reads the user agents of ../shared/conformance/users.jsonl, if it is there.
func conformanceUAs(t *testing.T) []string {
	f, err := os.Open(filepath.Join(repoRoot(t), "..", "shared", "conformance", "users.jsonl"))
	if err != nil {
		t.Logf("no conformance users: %v", err)
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var u struct {
			UserAgent any `json:"userAgent"`
		}
		if err := json.Unmarshal(sc.Bytes(), &u); err != nil {
			t.Fatalf("conformance users: %v", err)
		}
		if s, ok := u.UserAgent.(string); ok {
			out = append(out, s)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("conformance users: %v", err)
	}
	return out
}

// uapGoUAs reads the list of real-world user agents that the uap-go module (already in go.mod)
// ships for its benchmarks, if the module is available.
func uapGoUAs(t *testing.T) []string {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/ua-parser/uap-go").Output()
	if err != nil {
		t.Logf("uap-go module not available: %v", err)
		return nil
	}
	data, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "uas"))
	if err != nil {
		t.Logf("uap-go user agent list not available: %v", err)
		return nil
	}
	return strings.Split(strings.TrimRight(string(data), "\n"), "\n")
}

// referenceHelper runs testdata/refparse.js over the corpus.
func referenceHelper(t *testing.T, refDir string, corpus []string) []*[4]string {
	var in bytes.Buffer
	for _, ua := range corpus {
		b, err := json.Marshal(ua)
		if err != nil {
			t.Fatal(err)
		}
		in.Write(b)
		in.WriteByte('\n')
	}
	script, err := filepath.Abs(filepath.Join("testdata", "refparse.js"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", script, refDir)
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("refparse.js: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) != len(corpus) {
		t.Fatalf("refparse.js: %d results for %d user agents", len(lines), len(corpus))
	}
	res := make([]*[4]string, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &res[i]); err != nil {
			t.Fatalf("refparse.js line %d: %v", i, err)
		}
	}
	return res
}

// referenceGates checks Parse through the reference's evaluation of ua_based conditions, in
// chunks of user agents (one rule set per chunk keeps the files small). It returns how many
// fields were compared and how many gates failed.
func referenceGates(t *testing.T, refDir string, corpus []string) (checked, failed int) {
	const chunk = 5000
	var eligible []string
	for _, ua := range corpus {
		// The evaluator never parses an absent or empty user agent, nor one over the limit.
		if ua != "" && len(ua) <= maxUALen {
			eligible = append(eligible, ua)
		}
	}
	dir := t.TempDir()
	for start := 0; start < len(eligible); start += chunk {
		end := min(start+chunk, len(eligible))
		c, f := gateChunk(t, refDir, dir, eligible[start:end])
		checked += c
		failed += f
	}
	return checked, failed
}

func gateChunk(t *testing.T, refDir, dir string, uas []string) (checked, failed int) {
	// One gate per (user agent, field), with a single rule whose only condition is
	// "<field> any_case_sensitive [our value]"; user i is checked against its four gates only.
	conditions := map[string]any{}
	gates := map[string]any{}
	var checks bytes.Buffer
	for i, ua := range uas {
		r := Parse(ua)
		vals := [4]string{r.OSName, r.OSVersion, r.BrowserName, r.BrowserVersion}
		var names []string
		for f, field := range fieldNames {
			id := fmt.Sprintf("g%d_%d", i, f)
			conditions[id] = map[string]any{
				"type": "ua_based", "field": field, "operator": "any_case_sensitive",
				"targetValue": []string{vals[f]}, "idType": "userID", "additionalValues": map[string]any{},
			}
			gates[id] = map[string]any{
				"type": "feature_gate", "salt": id, "enabled": true, "defaultValue": false,
				"rules": []any{map[string]any{
					"name": id, "id": id, "salt": id, "passPercentage": 100,
					"conditions": []string{id}, "returnValue": true, "idType": "userID",
				}},
				"idType": "userID", "entity": "feature_gate",
			}
			names = append(names, id)
		}
		b, err := json.Marshal(map[string]any{
			"user":  map[string]string{"userID": strconv.Itoa(i), "userAgent": ua},
			"gates": names,
		})
		if err != nil {
			t.Fatal(err)
		}
		checks.Write(b)
		checks.WriteByte('\n')
	}
	dcs := map[string]any{
		"dynamic_configs": map[string]any{}, "feature_gates": gates, "layer_configs": map[string]any{},
		"experiment_to_layer": map[string]any{}, "condition_map": conditions,
		"has_updates": true, "time": 1,
	}
	dcsPath := filepath.Join(dir, "dcs.json")
	checksPath := filepath.Join(dir, "checks.jsonl")
	writeJSON(t, dcsPath, dcs)
	if err := os.WriteFile(checksPath, checks.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	script, err := filepath.Abs(filepath.Join("testdata", "refgates.js"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", script, refDir, dcsPath, checksPath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("refgates.js: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) != len(uas) {
		t.Fatalf("refgates.js: %d results for %d users", len(lines), len(uas))
	}
	for i, l := range lines {
		var pass [4]bool
		if err := json.Unmarshal([]byte(l), &pass); err != nil {
			t.Fatalf("refgates.js line %d: %v", i, err)
		}
		for f, ok := range pass {
			checked++
			if !ok {
				failed++
				if failed <= 60 {
					t.Errorf("evaluation path disagrees on %s (ours %+v) for %q", fieldNames[f], Parse(uas[i]), uas[i])
				}
			}
		}
	}
	return checked, failed
}

func writeJSON(t *testing.T, path string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeAgreed rewrites testdata/agreed.jsonl: one JSON array per line,
// [user agent, os_name, os_version, browser_name, browser_version], as the reference answered.
func writeAgreed(t *testing.T, uas []string, ref []*[4]string) {
	var buf bytes.Buffer
	for i, ua := range uas {
		if ref[i] == nil {
			continue
		}
		r := ref[i]
		b, err := json.Marshal([5]string{ua, r[0], r[1], r[2], r[3]})
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	if err := os.WriteFile(agreedPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d cases to %s", bytes.Count(buf.Bytes(), []byte{'\n'}), agreedPath)
}

// Mutation vocabulary: phrases that trigger the tokenizer's rules, odd versions and odd
// separators, so that generated user agents reach rule combinations real ones rarely do.
var mutPhrases = []string{
	"Mac OS X", "Mac OS X 10_15_7", "Mac OS 11", "Mac OS", "like Mac OS X", "like", "Intel Mac OS X 10.15",
	"iPhone", "iPhone OS 17_1", "iPhone14,2", "iPad", "iPad13,4", "iPadOS 16.2", "iOS", "iOS 18.6.2",
	"CPU OS 12_1", "CPU iPhone OS 9_3", "CPU", "Apple-iPhone7C2/1202.466", "AppleTV11,1/11.1",
	"CrOS x86_64 14541.0.0", "CrOS", "CrKey armv7l 1.5.16041", "PlayStation 4 3.11", "PlayStation",
	"Android", "Android 14", "Android 4.4.2", "Android-TV", "AndroidTV/1.2", "Windows", "Windows NT 10.0",
	"Windows NT 6.1", "Windows NT 5.1", "Windows NT 6.2", "Windows NT", "Windows XP", "Windows 98",
	"Windows Phone 8.1", "Windows Phone", "Windows_NT 10.0", "Win64", "x64", "WOW64",
	"Yahoo! Slurp", "Red Hat", "Ubuntu", "Ubuntu 22.04", "Mobile", "Mobile/15E148", "Linux", "linux",
	"Linux x86_64", "X11", "Nintendo 3DS", "Nintendo Switch", "MSIE 8.0", "MSIE", "Trident/7.0",
	"rv:11.0", "Kindle/3.0", "Kindle", "FxiOS/120.0", "EdgiOS/120.0.2210.150", "CriOS/120.0.6099.119",
	"GSA/360.1.737798518", "YisouSpider/5.0", "Edg/120.0.2210.91", "Edge/18.19041", "OPR/103.0.0.0",
	"SamsungBrowser/19.0", "HuaweiBrowser/15.0.4.312", "ChatGPT-User/1.0", "OAI-SearchBot/1.0",
	"NX/3.0.4.2.12", "Electron/28.1.0", "IEMobile/11.0", "Googlebot/2.1", "bingbot/2.0",
	"+http://www.google.com/bot.html", "http://www.bing.com/bingbot.htm", "MyCrawler/1.0", "crawler",
	"Foo/crawler", "Safari/537.36", "Safari", "CFNetwork/1410.0.3", "Darwin/22.0.0",
	"NetworkingExtension/8613.1.17", "OculusBrowser/31.0.0.6.75", "Firefox/121.0", "Gecko/20100101",
	"Silk/98.6.10", "YaBrowser/25.4.0.0", "Opera/9.80", "Version/17.2", "Version/4.0", "Version",
	"Chrome/120.0.0.0", "Chrome", "HeadlessChrome/109.0.5414.74", "axios/1.6.7", "AppleWebKit/537.36",
	"(KHTML, like Gecko)", "Mozilla/5.0", "wv", "U", "en-US", "Build/UP1A.231005.007", "Dalvik/2.1.0",
	"okhttp/4.12.0", "curl/8.4.0", "Trailer/93.3.8652.5", "Quark/6.11.2.531", "Xbox", "XBOX_ONE_ED",
	"Better Uptime Bot", "Better Uptime", "Radius Compilance Bot", "Uptime Monitoring Bot", "Uptime Monitoring",
	"AdsBot-Google-Mobile", "AdsBot-Google", "Bot", "bot", "Better", "Radius", "Uptime", "Monitoring",
	"Opera Mini/7.5.33361", "Opera Mobi", "UCBrowser/13.4.0.1306", "MiuiBrowser/17.1", "Vivaldi/6.5", "Brave/1",
	"DuckDuckGo/5", "Instagram 312.0.0.32.112", "FBAN/FBIOS", "FBAV/350.0.0.30.102", "Snapchat/12.0", "Line/13.1",
	"WhatsApp/2.23", "Twitter for iPhone", "Pinterest/12.1", "Spider", "spider", "Slurp", "bingpreview/1.0b",
	"facebookexternalhit/1.1", "Applebot/0.1", "Bytespider", "PetalBot", "Amazonbot/0.1", "ClaudeBot/1.0",
	"GPTBot/1.2", "PerplexityBot/1.0", "PhantomJS/2.1.1", "Silk-Accelerated=true", "Tizen 2.3", "Web0S", "webOS",
	"SMART-TV", "SmartTV", "BlackBerry 9800", "BB10", "KAIOS/2.5", "KaiOS", "SymbianOS/9.4", "Series60/5.0",
	"Fuchsia", "FreeBSD amd64", "OpenBSD", "SunOS sun4u", "Darwin", "watchOS/10.1", "tvOS 17.2", "visionOS/1.0",
	"HarmonyOS", "Windows CE", "Windows Mobile", "Xbox One", "Nintendo WiiU", "PlayStation Vita 3.61", "PSP",
	"Macintosh", "Intel", "PPC", "Mac_PowerPC", "Mac OS X Mach-O", "iPod", "iPod touch", "Watch6,1",
	"MSIE 6.0", "MSIE 11", "Trident", "Edge", "Edg", "OPR", "Silk", "YaBrowser", "Opera", "NX", "Kindle/3.0+",
	"Mobile Safari", "Mobile Safari/537.36", "Safari/604.1", "Version/4.0 Chrome/99.0", "HMSCore 6.15.0.302",
	"Linux; U; Android 4.0.3", "Android 6.0.1;", "(Linux; Android 10; K)", "like Gecko", "Gecko", "KHTML,",
}

var mutVersions = []string{
	"1", "1.2", "1.2.3", "1.2.3.4", "1.2.3.4.5", "10_15_7", "18_3_2", "1..2", "1.x", "x.1", ".5", ".",
	"..", "1.", "1,2,3", "1_2", "_5", "5.1", "5.2", "6.0", "6.1", "6.3", "10.0", "XP", "13.2b11866",
	"2b", "1.2b3.4", "0", "00.01", "1.2.3-beta", "12.0.0.0.1", "v1.2", "1.2;3", "1:2", "1/2/3",
	"9999999999999999999999", "1.2a.3", "1.2.", "1.2_3,4", "\u00e9.1", "1.\u0661",
}

var mutSeparators = []string{" ", ";", "; ", "  ", ";;", " ; ", "", "/", ":", "\t", ",", "+", "_", "(", ")", "\""}

var mutJunk = []string{
	"", "(", ")", "()", "\"", "+", "_", ",", ";", "/", ":", "\u00fc", "\u4e2d\u6587", "\u00a0", "\t", "\n",
	"\u200b", "\U0001F600", "[", "]", "{", "}", "<", ">", "'", "\\", "\u00ff", "#", "%20",
}

// mutate returns a new user agent derived from the base corpus.
func mutate(rng *rand.Rand, base []string) string {
	pick := func(list []string) string { return list[rng.Intn(len(list))] }
	pieces := func(s string) []string { return strings.Split(s, " ") }
	var s string
	switch rng.Intn(9) {
	case 8: // soup of separators, digits and pieces of keywords
		var b strings.Builder
		for n := 1 + rng.Intn(12); n > 0; n-- {
			switch rng.Intn(3) {
			case 0:
				const soup = " ;/:._,()+\"-!0123456789"
				b.WriteByte(soup[rng.Intn(len(soup))])
			case 1:
				p := pick(mutPhrases)
				i := rng.Intn(len(p))
				b.WriteString(p[i : i+rng.Intn(len(p)-i)+1])
			default:
				b.WriteString(pick(mutVersions))
			}
		}
		s = b.String()
	case 0: // random phrases only
		n := 1 + rng.Intn(7)
		var b strings.Builder
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteString(pick(mutSeparators[:6]))
			}
			b.WriteString(pick(mutPhrases))
		}
		s = b.String()
	case 1: // splice two user agents
		a, c := pieces(pick(base)), pieces(pick(base))
		s = strings.Join(append(append([]string(nil), a[:rng.Intn(len(a)+1)]...), c[rng.Intn(len(c)):]...), " ")
	case 2: // truncate
		u := pick(base)
		s = u[:rng.Intn(len(u)+1)]
	default:
		s = pick(base)
	}
	// then a few edits
	for n := rng.Intn(4); n > 0; n-- {
		p := pieces(s)
		i := rng.Intn(len(p))
		switch rng.Intn(9) {
		case 0, 1: // insert a phrase
			p = append(p[:i], append([]string{pick(mutPhrases)}, p[i:]...)...)
		case 2: // delete a piece
			p = append(p[:i], p[i+1:]...)
		case 3: // replace a version
			if j := strings.IndexAny(p[i], "/:"); j >= 0 {
				p[i] = p[i][:j+1] + pick(mutVersions)
			} else {
				p[i] = p[i] + "/" + pick(mutVersions)
			}
		case 4: // a bare version after a piece
			p = append(p[:i], append([]string{pick(mutVersions)}, p[i:]...)...)
		case 5: // wrap in junk
			p[i] = pick(mutJunk) + p[i] + pick(mutJunk)
		case 6: // change a separator
			if i+1 < len(p) {
				p[i] = p[i] + pick(mutSeparators) + p[i+1]
				p = append(p[:i+1], p[i+2:]...)
			}
		case 7: // swap two pieces
			j := rng.Intn(len(p))
			p[i], p[j] = p[j], p[i]
		case 8: // duplicate a piece
			p = append(p[:i], append([]string{p[i]}, p[i:]...)...)
		}
		s = strings.Join(p, " ")
	}
	return s
}
