package evalcore

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Random rule sets and users for the differential tests. The generator aims
// at the corners where an evaluator is most likely to part from the
// reference: every operator against every value type (numbers as strings and
// the reverse, booleans, nulls, arrays, objects), odd version and date shapes,
// case and Unicode, huge numbers, field lookup precedence (top level, custom,
// privateAttributes, aliases), unit id types, fractional and extreme pass
// percentages, salts, nested gates (chains, missing ones, the odd cycle),
// holdouts, segments, layers with allocated experiments and the new layer
// evaluation, config mappings, disabled specs, odd default values, malformed
// specs, unknown condition types and operators, user agents and IPs. Each
// corner is weighted so that a round still mostly exercises ordinary rules.

// ruleGen builds one random rule set and its users.
type ruleGen struct {
	r     *rand.Rand
	conds map[string]any
	// every spec name, known before any rule is built, so nested gates,
	// delegates and experiment_group conditions can point anywhere
	gates, configs, layers []string
	// built lists the gates built so far: nested gates mostly point at
	// those, which keeps cycles (the nesting-limit error) rare
	built []string
	apps  bool // add initialize-only parts (appExtras, target_app conditions)
	// leaf: build conditions that reach no other spec (for exp_grouped, the
	// experiment experiment_group conditions read: SC overflows its stack,
	// a crash, on an experiment_group cycle)
	leaf bool
}

func (g *ruleGen) pick(xs ...any) any { return xs[g.r.IntN(len(xs))] }

func (g *ruleGen) pickS(xs ...string) string { return xs[g.r.IntN(len(xs))] }

// oneIn is true with probability 1/n.
func (g *ruleGen) oneIn(n int) bool { return g.r.IntN(n) == 0 }

// weighted returns an index chosen with the given weights.
func (g *ruleGen) weighted(ws ...int) int {
	total := 0
	for _, w := range ws {
		total += w
	}
	n := g.r.IntN(total)
	for i, w := range ws {
		if n < w {
			return i
		}
		n -= w
	}
	return len(ws) - 1
}

// num writes a JSON number literally (9.0 stays 9.0, -0 stays -0).
func num(s string) json.Number { return json.Number(s) }

var (
	genWords = []string{"a_user", "A_USER", "user_1", "vip", "VIP", "a", "A", "", "  ", "true", "TRUE", "false", "null",
		"x@statsig.com", "X@STATSIG.COM", "us", "US", "JP", "en_US", "en-us", "1.1.1.1", "İstanbul", "istanbul",
		"i̇stanbul", "ΟΔΟΣ", "οδος", "Σ", "straße", "STRASSE", "ǅ", "😀", "ünï", "ÜNÏ", "\u212a", "k", "ﬀ", "ẞ", "iOS",
		"Android", "Chrome", "Windows", "Mac OS X", "Mobile Safari", "Chrome Mobile", "9", "9.0", "09", " 9", "9 ", "+9",
		"9e0", "-1", "0", "1e21", "NaN", "nan", "inf", "-inf", "Infinity", "1_000", "0x10", ".5", "5.", "1e", "-", "a\nb",
		"tab\there", `quo"te`, "back\\slash"}
	genVersions = []string{"1.2.3", "1.3", "1.2.3.4", "v1.3", "1..2", "1.2.3-beta", " 1.2 ", "01.02", "1.2.a", "1.-2",
		"-1.2", "1.2.3-beta.4", "99999999999999999999999999999999999999.1", "170141183460469231731687303715884105728",
		"10", "16.7.10", "109.0.5414.87", "0", "", "1.2.", "+1.2", "1 .2", "1.2.3.4.5.6", "١.٢", "1.2\t", "\t1.2", "2",
		"1.10", "1.9", "0.0.0", "-", "1-2", "1.2-3.4", "1.2\u00a0", "\u20031.2"}
	genDates = []string{"2023-01-01T00:00:00Z", "2023-01-01 00:00:00", "2023-01-01T00:00:00.123+05:30",
		"2023-01-01t00:00:00z", "2023-01-01", "1700000000", "1700000000000", "1700000000.5", "2099-12-31T23:59:59Z",
		"1969-12-31T23:59:59Z", "2023-13-01T00:00:00Z", "2023-01-01T00:00:00", "2023-01-01T00:00:00+0000", "20230101",
		"-1", "2023-01-01T24:00:00Z", "2023-06-15T10:00:00.123456789Z", "0001-01-01T00:00:00Z", "2023-01-01 00:00:00Z",
		"2023-01-01T00:00:00-08:00", "9999999999", "10000000000", "-9999999999"}
	genNumbers = []any{num("9"), num("9.0"), num("9.5"), num("0"), num("-0"), num("-1"), num("1e21"), num("1E3"),
		num("1e-7"), num("0.1"), num("9007199254740993"), num("18446744073709551615"), num("9223372036854775807"),
		num("1700000000"), num("1700000000000"), num("4086454689000"), num("1.5"), num("12345678901234567890"),
		num("255"), num("1000"), num("-1700000000"), num("1e308"), num("9999999999"), num("10000000000"),
		num("1700000000000.7"), num("2"), num("10")}
	genCountries = []string{"US", "us", "JP", "FR", "GB", "AU", "VN", "CH", "CA", "DE", ""}
	genIPs       = []string{"1.1.1.1", "2.2.2.2", "14.14.14.14", "25.67.94.211", "27.67.94.211", "45.85.95.65",
		"58.96.74.25", "1.0.0.0", "0.0.0.0", "255.255.255.255", "2001:db8::1", "::ffff:1.1.1.1", " 1.1.1.1", "1.1.1.1 ",
		"1.1.1", "1.1.1.1.1", "01.01.01.01", "-1.1.1.1", "+1.1.1.1", "a.b.c.d", "", "1.1.1.-1", "0.0.0.256",
		"8.8.8.8", "127.0.0.1", "192.168.0.1", "256.0.0.0"}
	genUserAgents = []string{
		"Mozilla/5.0 (iPhone; CPU iPhone OS 10_3_1 like Mac OS X) AppleWebKit/603.1.30 (KHTML, like Gecko) Version/10.0 Mobile/14E304 Safari/602.1",
		"Mozilla/5.0 (Windows NT 5.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.5414.87 ADG/11.0.4060 Safari/537.36",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/134.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Windows NT 6.1; Win64; x64; rv:109.0) Gecko/20100101 Firefox/115.0",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 16_7_10 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Linux; Android 13; SM-S901B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/112.0.0.0 Mobile Safari/537.36",
		"Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
		"Mozilla/5.0 (Linux; Android 12; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/100.0.4896.127 Mobile Safari/537.36",
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
		"Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
		"Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
		"Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.0)",
		"ChatGPT/1.2025.315 (Android 15; V2225; build 2531527)",
		"curl/8.4.0", "okhttp/4.12.0", "not a user agent", "", "Opera/9.80 (Windows NT 6.1) Presto/2.12.388 Version/12.16",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 OPR/106.0.0.0",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14.1; rv:120.0) Gecko/20100101 Firefox/120.0",
	}
	genUATargets = []string{"iOS", "Android", "Windows", "Mac OS X", "Linux", "Chrome OS", "Other", "Chrome", "Chrome Mobile",
		"Mobile Safari", "Safari", "Firefox", "Edge", "Opera", "Samsung Internet", "Chrome Mobile WebView",
		"Mobile Safari UI/WKWebView", "Chrome Mobile iOS", "Googlebot", "IE", "10", "16.7.10", "17.1", "109.0.5414.87",
		"109", "0.0.0", "15", "7", "XP", "10.15.7", "13", "120.0.0.0"}
	// condition fields: top-level names in several cases, aliases, custom keys
	genFields = []string{"email", "Email", "EMAIL", "userID", "userid", "UserID", "userId", "appVersion", "appversion",
		"APPVERSION", "country", "Country", "locale", "ip", "IP", "userAgent", "useragent", "user_agent", "user_id",
		"app_version", "ip_address", "level", "Level", "LEVEL", "tags", "flag", "ts", "plan", "obj", "ünï", "", "missing",
		"os_name", "tier"}
	// keys users put in custom / privateAttributes
	genCustomKeys = []string{"level", "Level", "LEVEL", "tags", "flag", "ts", "plan", "obj", "ünï", "", "email", "Email",
		"userID", "userid", "country", "locale", "appVersion", "app_version", "ip", "os_name", "browser_name",
		"os_version", "browser_version", "BROWSER_NAME", "user_agent", "userAgent", "tier"}
	genOps = []string{"gt", "gte", "lt", "lte", "version_gt", "version_gte", "version_lt", "version_lte", "version_eq",
		"version_neq", "any", "none", "any_case_sensitive", "none_case_sensitive", "str_starts_with_any",
		"str_ends_with_any", "str_contains_any", "str_contains_none", "str_matches", "eq", "neq", "before", "after", "on",
		"array_contains_any", "array_contains_none", "array_contains_all", "not_array_contains_all", "in_segment_list",
		"not_in_segment_list"}
	genOddOps  = []string{"encoded_any", "bogus", "ANY", "Eq", "", "multi_pass_gate", "version_GT", " any"}
	genRegexes = []string{"^a", "(?i)^a_user$", `\d+`, `^\d+$`, `\w+@statsig\.com`, `(a)\1`, `(?=x)x`, "[", "", ".*", "^$",
		"(?x) a _ user", `\bvip\b`, `^[0-9]+(\.[0-9]+)*$`, "ΟΔΟΣ", "(?i)οδος", `\p{L}+$`, `^\s*9`, "a{2}", "a{,2}",
		`\Qa.b\E`, "(?s)a.b", "^.{3}$", `\x{1F600}`, `(?<!x)user`, `^(?:a|b)+$`, "(?i)STATSIG", `[[:alpha:]]+`,
		`\u0041`, `(?P<n>a)`, `(?<n>a)\k<n>`, "a++", "(?>a)", `\z`, `\Aa`, "[^a]", "(?U)a+", `\h`, "(?m)^b", `\pN`}
	genSubstrings = []any{"a", "A", "@statsig", "@STATSIG.COM", "us", "1.", ".3", "", "İ", "i", "ß", "ss", "σ", "user",
		"_", " ", "9", num("9"), true, nil}
)

// atom is a scalar from the shared pools, so users and targets often meet.
func (g *ruleGen) atom() any {
	switch g.weighted(45, 15, 10, 20, 5, 5) {
	case 0:
		return g.pickS(genWords...)
	case 1:
		return g.pickS(genVersions...)
	case 2:
		return g.pickS(genDates...)
	case 3:
		return genNumbers[g.r.IntN(len(genNumbers))]
	case 4:
		return g.r.IntN(2) == 0
	}
	return nil
}

func (g *ruleGen) atoms(max int) []any {
	out := make([]any, g.r.IntN(max+1))
	for i := range out {
		out[i] = g.atom()
	}
	return out
}

// arrayBigNumbers lets user arrays hold integers beyond the 32-bit range,
// whose text SC prints as floats ("4294967296.0"); off while user.go does
// not print them so (regression case userjson_array_numbers), as every
// such user would mismatch.
const arrayBigNumbers = true

// userAtoms is atoms(max) for the inside of a user array.
func (g *ruleGen) userAtoms(max int) []any {
	out := g.atoms(max)
	for i, a := range out {
		if n, ok := a.(json.Number); ok && !arrayBigNumbers {
			if f, err := n.Float64(); err == nil && f == math.Trunc(f) && (f < -2147483648 || f > 4294967295) {
				out[i] = num("9")
			}
		}
	}
	return out
}

// userValue is a custom / private attribute value.
func (g *ruleGen) userValue() any {
	switch g.weighted(75, 12, 3, 4, 3, 3) {
	case 0:
		return g.atom()
	case 1:
		return g.userAtoms(3)
	case 2:
		return append([]any{g.userAtoms(2)}, g.userAtoms(1)...)
	case 3:
		return g.pick([]any{"vip", num("9")}, []any{"vip", "9"}, []any{}, []any{num("9.0")}, []any{"a", "A"},
			[]any{true, nil}, []any{"1.2.3"}, []any{"US", "JP"})
	case 4:
		return g.pick(map[string]any{"a": "1"}, map[string]any{"a": num("1")}, map[string]any{}, map[string]any{"a": []any{"x"}})
	}
	return g.pickS(genUATargets...)
}

// anyTarget is a target of any shape.
func (g *ruleGen) anyTarget() any {
	switch g.weighted(20, 40, 10, 5, 5) {
	case 0:
		return g.atom()
	case 1:
		return g.arrayTarget()
	case 2:
		return g.pick(map[string]any{"9": true, "a": true, "A": false}, map[string]any{"a": "1"}, map[string]any{},
			map[string]any{"a": num("1")}, map[string]any{"vip": true})
	case 3:
		return g.pick([]any{"vip", num("9")}, []any{"a", "A"}, []any{[]any{"x"}}, []any{map[string]any{"a": num("1")}})
	}
	return nil
}

func (g *ruleGen) arrayTarget() any {
	arr := g.atoms(4)
	if g.oneIn(8) {
		// case collisions and repeats (SC keeps the later one)
		arr = append(arr, "A", "a", "vip", "VIP")
	}
	if g.oneIn(20) {
		arr = append(arr, []any{"x"}, map[string]any{"a": num("1")})
	}
	return arr
}

// targetFor picks a target suited to op most of the time.
func (g *ruleGen) targetFor(op string) any {
	if g.oneIn(10) {
		return g.anyTarget()
	}
	switch op {
	case "gt", "gte", "lt", "lte":
		if g.oneIn(3) {
			return g.pickS("9", "9.0", "1e3", " 9", "-1", "abc", "inf", "NaN", "1700000000000")
		}
		return genNumbers[g.r.IntN(len(genNumbers))]
	case "version_gt", "version_gte", "version_lt", "version_lte", "version_eq", "version_neq":
		if g.oneIn(8) {
			return genNumbers[g.r.IntN(len(genNumbers))]
		}
		return g.pickS(genVersions...)
	case "any", "none", "any_case_sensitive", "none_case_sensitive":
		return g.arrayTarget()
	case "str_starts_with_any", "str_ends_with_any", "str_contains_any", "str_contains_none":
		if g.oneIn(5) {
			return g.pick(genSubstrings...)
		}
		n := 1 + g.r.IntN(3)
		arr := make([]any, n)
		for i := range arr {
			arr[i] = g.pick(genSubstrings...)
		}
		return arr
	case "str_matches":
		return g.pickS(genRegexes...)
	case "before", "after", "on":
		if g.oneIn(2) {
			return g.pickS(genDates...)
		}
		return genNumbers[g.r.IntN(len(genNumbers))]
	case "array_contains_any", "array_contains_none", "array_contains_all", "not_array_contains_all":
		return g.pick(g.arrayTarget(), []any{"vip"}, []any{"vip", num("9")}, []any{num("9.0")}, []any{"9"}, []any{})
	case "in_segment_list", "not_in_segment_list":
		return g.pick("list_a", "", num("5"), nil)
	}
	return g.anyTarget()
}

// operator picks an operator; now and then an unknown one, or none at all.
func (g *ruleGen) operator(c map[string]any) {
	switch g.weighted(90, 4, 3) {
	case 0:
		c["operator"] = genOps[g.r.IntN(len(genOps))]
	case 1:
		c["operator"] = g.pickS(genOddOps...)
	default:
		c["operator"] = nil
	}
}

func (g *ruleGen) idType() string {
	return g.pickS("userID", "userID", "userID", "userid", "USERID", "stableID", "stableid", "companyID", "companyid",
		"CompanyID", "")
}

// gateTarget is the target of a pass_gate / fail_gate condition.
func (g *ruleGen) gateTarget() any {
	switch g.weighted(60, 3, 10, 4, 3) {
	case 0:
		if len(g.built) > 0 {
			return g.built[g.r.IntN(len(g.built))]
		}
		return g.pickS("missing_gate", "")
	case 1:
		// any gate, the current one and later ones included: cycles
		return g.gates[g.r.IntN(len(g.gates))]
	case 2:
		return g.pickS("missing_gate", "segment:missing", "", "exp_0", "Gate_0")
	case 3:
		return g.pick(num("5"), nil, []any{"gate_0"}, true)
	}
	return g.pickS("holdout_0", "segment:seg_a")
}

func (g *ruleGen) condition() string {
	id := "c" + strconv.Itoa(len(g.conds))
	c := map[string]any{"idType": g.idType()}
	if g.apps && g.oneIn(8) {
		c["type"] = "target_app"
		c["operator"] = g.pickS("any", "none", "eq", "neq", "any_case_sensitive", "str_contains_any")
		c["targetValue"] = g.pick([]any{"app_a"}, []any{"app_b", "app_c"}, "app_a", nil, []any{"APP_C"})
		g.conds[id] = c
		return id
	}
	// (A rule naming a key missing from condition_map is unsupported in SC,
	// but the reference runner cannot list such a rule set's specs.)
	kinds := []int{35, 12, 6, 6, 7, 6, 5, 4, 5, 4, 1, 2}
	if g.leaf {
		kinds[1], kinds[8] = 0, 0
	}
	switch g.weighted(kinds...) {
	case 0:
		c["type"] = "user_field"
		c["field"] = g.pickS(genFields...)
		if g.oneIn(40) {
			delete(c, "field")
		}
		g.operator(c)
		op, _ := c["operator"].(string)
		c["targetValue"] = g.targetFor(op)
	case 1:
		c["type"] = g.pickS("pass_gate", "fail_gate")
		c["targetValue"] = g.gateTarget()
		if g.oneIn(4) {
			c["operator"] = g.pick("any", "none", nil)
		}
	case 2:
		c["type"] = "unit_id"
		g.operator(c)
		op, _ := c["operator"].(string)
		c["targetValue"] = g.targetFor(op)
	case 3:
		c["type"] = "user_bucket"
		c["operator"] = g.pickS("lt", "lt", "lte", "gt", "gte", "any", "none", "any", "none", "eq", "neq", "any_case_sensitive", "version_gt")
		switch g.weighted(8, 1, 1, 1) {
		case 0:
			c["additionalValues"] = map[string]any{"salt": "salt" + strconv.Itoa(g.r.IntN(3))}
		case 1:
			c["additionalValues"] = map[string]any{"salt": ""}
		case 2:
			c["additionalValues"] = map[string]any{"custom_field": "x"}
		}
		switch op := c["operator"]; {
		case op == "any" || op == "none" || op == "any_case_sensitive":
			if g.oneIn(3) {
				arr := []any{}
				for i := 0; i < 1+g.r.IntN(200); i++ {
					arr = append(arr, g.pick(num(strconv.Itoa(g.r.IntN(1000))), strconv.Itoa(g.r.IntN(1000)), "07", num("7.0")))
				}
				c["targetValue"] = arr
			} else {
				m := map[string]any{}
				for i := 0; i < 1+g.r.IntN(500); i++ {
					m[strconv.Itoa(g.r.IntN(1000))] = true
				}
				if g.oneIn(10) {
					m["-1"] = true
				}
				c["targetValue"] = m
			}
		default:
			c["targetValue"] = g.pick(num(strconv.Itoa(g.r.IntN(1001))), strconv.Itoa(g.r.IntN(1000)), num("500.5"), nil)
		}
	case 4:
		c["type"] = "ua_based"
		c["field"] = g.pickS("os_name", "os_name", "OS_NAME", "osname", "osName", "os_version", "osversion",
			"browser_name", "browser_name", "browserName", "browser_version", "BrowserVersion", "browserversion", "device", "")
		c["operator"] = g.pickS("any", "any", "none", "version_gt", "version_gte", "version_lt", "version_eq", "eq",
			"str_contains_any", "str_matches", "gt", "any_case_sensitive")
		switch c["operator"] {
		case "any", "none", "str_contains_any", "any_case_sensitive":
			arr := []any{}
			for i := 0; i < 1+g.r.IntN(3); i++ {
				arr = append(arr, g.pickS(genUATargets...))
			}
			c["targetValue"] = arr
		case "str_matches":
			c["targetValue"] = g.pickS("^Chrome", "(?i)mobile", `^\d+$`, "Safari$", "^1")
		case "gt":
			c["targetValue"] = num(g.pickS("10", "100", "15"))
		default:
			c["targetValue"] = g.pickS(genUATargets...)
		}
	case 5:
		c["type"] = "ip_based"
		c["field"] = g.pickS("country", "country", "country", "Country", "COUNTRY", "ip", "region")
		c["operator"] = g.pickS("any", "any", "none", "eq", "neq", "str_contains_any", "any_case_sensitive")
		if c["operator"] == "eq" || c["operator"] == "neq" {
			c["targetValue"] = g.pick("US", "us", "1.1.1.1", nil)
		} else {
			arr := []any{}
			for i := 0; i < 1+g.r.IntN(3); i++ {
				arr = append(arr, g.pickS(genCountries...))
			}
			c["targetValue"] = arr
		}
	case 6:
		c["type"] = "environment_field"
		c["field"] = g.pickS("tier", "tier", "tier", "Tier", "TIER", "region", "")
		c["operator"] = g.pickS("any", "any", "none", "eq", "neq", "any_case_sensitive", "str_contains_any", "str_matches")
		c["targetValue"] = g.pick([]any{"staging", "production"}, []any{"development"}, []any{"Staging"}, "staging",
			"production", nil, []any{""}, "^s")
	case 7:
		c["type"] = "current_time"
		c["operator"] = g.pickS("before", "after", "on", "gt", "lt", "eq", "version_gt")
		// far from now, so that answers do not change between runs
		c["targetValue"] = g.pick(num("4086454689000"), num("1600000000000"), "2099-01-01T00:00:00Z", num("1700000000"),
			"2020-01-01 00:00:00", "4086454689000", num("4086454689000.5"), "1600000000", nil, []any{num("1")})
	case 8:
		c["type"] = "experiment_group"
		switch g.weighted(12, 2, 1, 1) {
		case 0:
			c["field"] = "exp_grouped"
		case 1:
			c["field"] = "missing_exp"
		case 2:
			c["field"] = g.configs[g.r.IntN(len(g.configs))] // may form a cycle
		}
		c["operator"] = g.pickS("any", "none", "eq", "neq", "any_case_sensitive", "str_matches")
		c["targetValue"] = g.pick([]any{"Control"}, []any{"Test", "control"}, "Control", nil, []any{""}, "^T")
	case 9:
		c["type"] = "public"
		if g.oneIn(2) {
			g.operator(c)
			c["targetValue"] = g.anyTarget()
		}
	case 10:
		c["type"] = "target_app"
		c["operator"] = g.pickS("any", "none", "eq")
		c["targetValue"] = g.pick([]any{"app_a"}, nil)
	case 11:
		c["type"] = g.pickS("javascript", "multi_pass_gate", "multi_fail_gate", "user_bucket_encoded", "Public",
			"USER_FIELD", "", "unknown")
		c["field"] = g.pickS("email", "country")
		c["operator"] = g.pickS("any", "none", "eq")
		c["targetValue"] = g.pick([]any{"US", "gate_0"}, nil, "")
	}
	g.conds[id] = c
	return id
}

// rule builds a rule with 0-3 conditions.
func (g *ruleGen) rule(id string, ret any, extra map[string]any) map[string]any {
	n := g.weighted(3, 30, 12, 6, 2)
	conds := make([]any, n)
	for i := range conds {
		conds[i] = g.condition()
	}
	r := map[string]any{"name": id, "id": id, "passPercentage": g.passPercentage(),
		"returnValue": ret, "idType": g.idType(), "conditions": conds}
	switch g.weighted(2, 3, 2, 3) {
	case 1:
		r["salt"] = ""
	case 2:
		r["salt"] = "rs"
	case 3:
		r["salt"] = id
	}
	if g.oneIn(10) {
		r["samplingRate"] = g.pick(num("101"), num("0"), num("1"))
	}
	for k, v := range extra {
		r[k] = v
	}
	return r
}

func (g *ruleGen) passPercentage() any {
	switch g.weighted(45, 10, 10, 20, 3) {
	case 0:
		return num("100")
	case 1:
		return num("0")
	case 2:
		return g.pick(num("100.0"), num("0.0"), num("1e2"))
	case 3:
		return g.pick(num("50"), num("12.5"), num("0.5"), num("99.99"), num("33.333"), num("0.01"), num("66.6666666"))
	}
	return g.pick(num("-5"), num("150"), num("100.00001"))
}

// gateReturn is a gate rule's returnValue: usually a boolean.
func (g *ruleGen) gateValue(trueWeight, falseWeight int) any {
	switch g.weighted(trueWeight, falseWeight, 2) {
	case 0:
		return true
	case 1:
		return false
	}
	return g.pick("false", "true", nil, num("1"), num("0"), map[string]any{}, []any{})
}

// configValue is a config's returnValue / defaultValue: usually an object.
func (g *ruleGen) configValue(obj map[string]any) any {
	if g.oneIn(25) {
		return g.pick(nil, []any{num("1")}, "str", num("1"), true, false, map[string]any{})
	}
	return obj
}

// maybeBreak now and then makes a spec malformed (SC drops such a spec).
func (g *ruleGen) maybeBreak(spec map[string]any) {
	if !g.oneIn(60) {
		return
	}
	// (rules that are not an array would be one more, but the reference
	// runner cannot list such a rule set's specs)
	switch g.r.IntN(6) {
	case 0:
		delete(spec, "salt")
	case 1:
		spec["enabled"] = "true"
	case 2:
		spec["version"] = "1"
	case 3:
		delete(spec, "defaultValue")
	case 4:
		delete(spec, "idType")
	case 5:
		if rules, _ := spec["rules"].([]any); len(rules) > 0 {
			if g.oneIn(2) {
				delete(rules[0].(map[string]any), "id")
			} else {
				rules[0].(map[string]any)["passPercentage"] = "100"
			}
		}
	}
}

func (g *ruleGen) specCommon(spec map[string]any) {
	if g.oneIn(3) {
		spec["version"] = num(strconv.Itoa(g.r.IntN(30)))
	}
	if g.oneIn(15) {
		spec["forwardAllExposures"] = true
	}
	g.maybeBreak(spec)
}

func (g *ruleGen) ruleSet() json.RawMessage {
	g.conds = map[string]any{}
	g.gates = []string{"gate_0", "gate_1", "gate_2", "gate_3", "gate_4", "gate_5", "holdout_0", "segment:seg_a", "segment:seg_b",
		"gate_6", "gate_7", "gate_8", "gate_9"}
	nConfigs := 4 + g.r.IntN(3)
	g.configs = nil
	for i := 0; i < nConfigs; i++ {
		g.configs = append(g.configs, fmt.Sprintf("exp_%d", i))
	}
	g.layers = []string{"layer_0", "layer_1"}
	g.built = nil

	gates := map[string]any{}
	// holdout and segments first, so the gates' references can reach them
	order := []int{6, 7, 8, 0, 1, 2, 3, 4, 5, 9, 10, 11, 12}
	for _, i := range order {
		name := g.gates[i]
		entity := "feature_gate"
		switch {
		case strings.HasPrefix(name, "segment:"):
			entity = "segment"
		case strings.HasPrefix(name, "holdout"):
			entity = "holdout"
		}
		var rules []any
		if entity == "holdout" {
			pct := g.pick(num("0.5"), num("10"), num("50"), num("100"))
			rules = append(rules, map[string]any{"name": "ho:0.50:1", "id": "ho:0.50:1", "salt": "ho", "passPercentage": pct,
				"returnValue": true, "idType": g.pickS("userID", "userID", "stableID"), "conditions": []any{g.publicCond()}})
		} else {
			for j := 0; j < g.weighted(1, 6, 5, 3); j++ {
				rules = append(rules, g.rule(fmt.Sprintf("%s_r%d", name, j), g.gateValue(8, 2), maybeGroup(g)))
			}
			if g.oneIn(4) {
				rules = append(rules, map[string]any{"name": "catch", "id": name + "_catch", "salt": "", "passPercentage": g.passPercentage(),
					"returnValue": g.gateValue(3, 1), "idType": "userID", "conditions": []any{g.publicCond()}})
			}
		}
		spec := map[string]any{"type": "feature_gate", "entity": entity, "salt": g.pickS("salt_"+name, "salt_"+name, ""),
			"enabled": !g.oneIn(6), "defaultValue": g.gateValue(1, 8), "idType": g.pickS("userID", "userID", "stableID", "companyID", "userid", ""),
			"rules": nilToEmpty(rules)}
		g.specCommon(spec)
		gates[name] = spec
		g.built = append(g.built, name)
	}

	configs := map[string]any{}
	expToLayer := map[string]any{}
	layers := map[string]any{}
	// layer_0 allocates some experiments in the realistic shape; the other
	// configs and layer_1 are free-form
	layered := g.r.IntN(3)
	g.realisticLayer(layers, configs, expToLayer, "layer_0", g.configs[:layered])
	for _, name := range g.configs[layered:] {
		var rules []any
		for j := 0; j < g.weighted(1, 5, 5, 3); j++ {
			rules = append(rules, g.rule(fmt.Sprintf("%s_r%d", name, j), g.configValue(map[string]any{"p": num(strconv.Itoa(j)), "name": name}),
				map[string]any{"groupName": g.pick("Control", "Test", nil, ""), "isExperimentGroup": g.pick(true, false, nil)}))
		}
		entity := g.pickS("experiment", "experiment", "dynamic_config", "autotune")
		spec := map[string]any{"type": "dynamic_config", "entity": entity, "salt": "salt_" + name,
			"enabled": !g.oneIn(5), "defaultValue": g.configValue(map[string]any{"p": "default"}), "idType": g.pickS("userID", "userID", "stableID", "companyID"),
			"rules": nilToEmpty(rules), "isActive": g.pick(true, false, nil), "explicitParameters": g.pick([]any{"p"}, nil, []any{}),
			"hasSharedParams": g.pick(true, false, nil)}
		g.specCommon(spec)
		configs[name] = spec
	}
	{
		// the experiment experiment_group conditions mostly read
		g.leaf = true
		var rules []any
		for j := 0; j < 1+g.r.IntN(3); j++ {
			rules = append(rules, g.rule(fmt.Sprintf("grouped_r%d", j), map[string]any{"g": num(strconv.Itoa(j))},
				map[string]any{"groupName": g.pick("Control", "Test", "control", nil)}))
		}
		g.leaf = false
		configs["exp_grouped"] = map[string]any{"type": "dynamic_config", "entity": g.pickS("experiment", "experiment", "dynamic_config"),
			"salt": "salt_grouped", "enabled": !g.oneIn(8), "defaultValue": map[string]any{"g": "default"}, "idType": "userID",
			"rules": rules, "isActive": true}
	}
	{
		name := "layer_1"
		var rules []any
		for j := 0; j < g.weighted(1, 5, 5, 3); j++ {
			delegate := g.pick(g.configs[g.r.IntN(len(g.configs))], g.configs[g.r.IntN(len(g.configs))], "nope", "gate_0", "layer_0", nil)
			rules = append(rules, g.rule(fmt.Sprintf("%s_r%d", name, j), g.configValue(map[string]any{"p": "layer"}),
				map[string]any{"configDelegate": delegate}))
		}
		spec := map[string]any{"type": "dynamic_config", "entity": "layer", "salt": "salt_" + name,
			"enabled": !g.oneIn(8), "defaultValue": g.configValue(map[string]any{"p": "layer_default", "q": num("1")}),
			"idType": g.pickS("userID", "userID", "stableID"), "rules": nilToEmpty(rules)}
		if g.oneIn(3) {
			spec["useNewLayerEval"] = true
		}
		if g.oneIn(5) {
			spec["isActive"] = g.pick(true, false)
		}
		g.specCommon(spec)
		layers[name] = spec
	}
	top := map[string]any{"response_format": "dcs-v2", "has_updates": true, "time": 1000,
		"feature_gates": gates, "dynamic_configs": configs, "layer_configs": layers,
		"experiment_to_layer": expToLayer, "condition_map": g.conds}
	if g.oneIn(5) {
		top["default_environment"] = g.pickS("production", "staging", "Staging", "")
	}
	if g.oneIn(4) {
		g.configMapping(top)
	}
	if g.apps {
		g.appExtras(top)
	}
	var b []byte
	if g.oneIn(6) {
		b, _ = json.Marshal(g.toV1(top))
	} else {
		b, _ = json.Marshal(top)
	}
	return b
}

func maybeGroup(g *ruleGen) map[string]any {
	if g.oneIn(6) {
		return map[string]any{"groupName": g.pickS("Control", "Test")}
	}
	return nil
}

func nilToEmpty(rules []any) []any {
	if rules == nil {
		return []any{}
	}
	return rules
}

func (g *ruleGen) publicCond() string {
	id := "pub"
	g.conds[id] = map[string]any{"type": "public", "idType": "userID"}
	return id
}

// realisticLayer writes a layer with the shape the console produces:
// overrides, holdouts and experiment assignment by bucket, delegating to
// experiments that carry layerAssignment and targeting rules.
func (g *ruleGen) realisticLayer(layers, configs, expToLayer map[string]any, name string, exps []string) {
	salt := "salt_" + name
	alloc := map[string]map[string]any{}
	for _, e := range exps {
		alloc[e] = map[string]any{}
	}
	if len(exps) > 0 {
		for b := 0; b < 1000; b++ {
			if i := g.r.IntN(len(exps) + 1); i < len(exps) {
				alloc[exps[i]][strconv.Itoa(b)] = true
			}
		}
	}
	cond := func(c map[string]any) string {
		id := "c" + strconv.Itoa(len(g.conds))
		g.conds[id] = c
		return id
	}
	var lrules []any
	for _, e := range exps {
		if g.oneIn(2) {
			lrules = append(lrules, map[string]any{"name": e + ":id_override", "id": e + ":id_override", "salt": "", "passPercentage": num("100"),
				"returnValue": map[string]any{"p": "override"}, "idType": "userID", "configDelegate": e,
				"conditions": []any{cond(map[string]any{"type": "unit_id", "operator": "any", "idType": "userID", "targetValue": []any{"a_user", "9"}})}})
		}
	}
	if g.oneIn(2) {
		lrules = append(lrules, map[string]any{"name": "lh", "id": "layer_holdout_rule", "salt": "", "passPercentage": num("100"),
			"returnValue": map[string]any{"p": "layer_default"}, "idType": "userID",
			"conditions": []any{cond(map[string]any{"type": "pass_gate", "targetValue": "holdout_0", "idType": "userID", "operator": "any"})}})
	}
	for _, e := range exps {
		lrules = append(lrules, map[string]any{"name": "experimentAssignment", "id": "experimentAssignment", "salt": "", "passPercentage": num("100"),
			"returnValue": map[string]any{"p": "layer_default"}, "idType": "userID", "configDelegate": e,
			"conditions": []any{cond(map[string]any{"type": "user_bucket", "operator": "any", "idType": "userID",
				"additionalValues": map[string]any{"salt": salt}, "targetValue": alloc[e]})}})
	}
	layer := map[string]any{"type": "dynamic_config", "entity": "layer", "salt": salt, "enabled": true,
		"defaultValue": map[string]any{"p": "layer_default", "q": num("1"), "r": "layer_r"}, "idType": "userID", "rules": nilToEmpty(lrules)}
	if g.oneIn(5) {
		layer["useNewLayerEval"] = true
	}
	g.specCommon(layer)
	layers[name] = layer
	for _, e := range exps {
		expToLayer[e] = name
		def := map[string]any{"p": "layer_default", "q": num("1")}
		var rules []any
		if g.oneIn(3) {
			rules = append(rules, map[string]any{"name": e + ":id_override", "id": e + ":id_override", "salt": "", "passPercentage": num("100"),
				"groupName": "Control", "returnValue": map[string]any{"p": "control", "q": num("1")}, "idType": "userID",
				"conditions": []any{cond(map[string]any{"type": "user_field", "field": "userID", "operator": "any", "idType": "userID", "targetValue": []any{"a_user"}})}})
		}
		if g.oneIn(2) {
			rules = append(rules, map[string]any{"name": "eh", "id": e + "_holdout", "salt": "", "passPercentage": num("100"),
				"returnValue": def, "idType": "userID",
				"conditions": []any{cond(map[string]any{"type": "pass_gate", "targetValue": "holdout_0", "idType": "userID", "operator": "any"})}})
		}
		rules = append(rules, map[string]any{"name": "layerAssignment", "id": "layerAssignment", "salt": "", "passPercentage": num("100"),
			"returnValue": def, "idType": "userID",
			"conditions": []any{cond(map[string]any{"type": "user_bucket", "operator": "none", "idType": "userID",
				"additionalValues": map[string]any{"salt": salt}, "targetValue": alloc[e]})}})
		if g.oneIn(2) {
			rules = append(rules, map[string]any{"name": "targetingGate", "id": "targetingGate", "salt": "", "passPercentage": num("100"),
				"returnValue": def, "idType": "userID",
				"conditions": []any{cond(map[string]any{"type": "fail_gate", "targetValue": g.gates[g.r.IntN(6)], "idType": "userID"})}})
		}
		split := strconv.Itoa(1 + g.r.IntN(999))
		rules = append(rules,
			map[string]any{"name": "control", "id": e + "_control", "salt": e + "_control", "passPercentage": num("100"),
				"groupName": "Control", "isExperimentGroup": true, "returnValue": map[string]any{"p": "control", "q": num("1")}, "idType": "userID",
				"conditions": []any{cond(map[string]any{"type": "user_bucket", "operator": "lt", "idType": "userID",
					"additionalValues": map[string]any{"salt": "salt_" + e}, "targetValue": num(split)})}},
			map[string]any{"name": "test", "id": e + "_test", "salt": e + "_test", "passPercentage": num("100"),
				"groupName": "Test", "isExperimentGroup": true, "returnValue": map[string]any{"p": "test", "q": num("2")}, "idType": "userID",
				"conditions": []any{cond(map[string]any{"type": "user_bucket", "operator": "lt", "idType": "userID",
					"additionalValues": map[string]any{"salt": "salt_" + e}, "targetValue": num("1000")})}})
		spec := map[string]any{"type": "dynamic_config", "entity": "experiment", "salt": "salt_" + e, "enabled": true,
			"defaultValue": def, "idType": "userID", "rules": rules, "isActive": !g.oneIn(4), "hasSharedParams": true,
			"explicitParameters": g.pick([]any{"p"}, []any{"p", "q"}, []any{})}
		g.specCommon(spec)
		configs[e] = spec
	}
}

// configMapping adds SC's config mapping (overrides / override_rules).
func (g *ruleGen) configMapping(top map[string]any) {
	rules := map[string]any{}
	for i := 0; i < 2; i++ {
		rules[fmt.Sprintf("or_%d", i)] = g.rule(fmt.Sprintf("or_%d", i), map[string]any{}, nil)
	}
	if g.oneIn(2) {
		// one that applies to everybody
		rules["or_0"] = map[string]any{"name": "or_0", "id": "or_0", "salt": "", "passPercentage": g.pick(num("100"), num("50")),
			"returnValue": map[string]any{}, "idType": "userID", "conditions": []any{g.publicCond()}}
	}
	from := g.pick(g.configs[g.r.IntN(len(g.configs))], "gate_1", "layer_1").(string)
	to := g.pickS(g.configs[g.r.IntN(len(g.configs))], "gate_2", "layer_0", "missing_target")
	top["overrides"] = map[string]any{from: []any{map[string]any{"new_config_name": to, "rules": []any{
		map[string]any{"rule_name": "or_0", "start_time": g.pick(num("0"), num("4086454689000"), nil)},
		map[string]any{"rule_name": g.pickS("or_1", "missing_rule")},
	}}}}
	top["override_rules"] = rules
}

// toV1 rewrites a generated dcs-v2 rule set in the v1 format (arrays of
// named specs, inline conditions, user-bucket arrays, "layers"), sometimes
// leaving out what v1 readers infer (entity, idType, rule names).
func (g *ruleGen) toV1(top map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range top {
		switch k {
		case "condition_map", "response_format", "experiment_to_layer", "feature_gates", "dynamic_configs", "layer_configs":
		default:
			out[k] = v
		}
	}
	condMap := top["condition_map"].(map[string]any)
	for _, sec := range []string{"feature_gates", "dynamic_configs", "layer_configs"} {
		specs := top[sec].(map[string]any)
		list := []any{}
		for _, name := range sortedKeys(specs) {
			spec := map[string]any{"name": name}
			for k, v := range specs[name].(map[string]any) {
				spec[k] = v
			}
			if g.oneIn(4) {
				delete(spec, "entity")
			}
			if rules, ok := spec["rules"].([]any); ok {
				var nr []any
				for _, r := range rules {
					rule := map[string]any{}
					for k, v := range r.(map[string]any) {
						rule[k] = v
					}
					var conds []any
					for _, key := range rule["conditions"].([]any) {
						c, ok := condMap[key.(string)].(map[string]any)
						if !ok {
							continue // a missing key has no v1 form
						}
						cc := map[string]any{}
						for k, v := range c {
							cc[k] = v
						}
						if m, ok := cc["targetValue"].(map[string]any); ok && cc["type"] == "user_bucket" {
							var arr []any
							for _, k := range sortedKeys(m) {
								if n, err := strconv.Atoi(k); err == nil {
									arr = append(arr, n)
								}
							}
							cc["targetValue"] = arr
						}
						if g.oneIn(10) && cc["idType"] == "userID" {
							delete(cc, "idType")
						}
						conds = append(conds, cc)
					}
					rule["conditions"] = nilToEmpty(conds)
					if g.oneIn(10) {
						delete(rule, "name")
					}
					nr = append(nr, rule)
				}
				spec["rules"] = nilToEmpty(nr)
			}
			list = append(list, spec)
		}
		out[sec] = list
	}
	layers := map[string]any{}
	for e, l := range top["experiment_to_layer"].(map[string]any) {
		ls, _ := layers[l.(string)].([]any)
		layers[l.(string)] = append(ls, e)
	}
	out["layers"] = layers
	return out
}

func (g *ruleGen) users(n int) []json.RawMessage {
	var out []json.RawMessage
	for i := 0; i < n; i++ {
		u := map[string]any{}
		// (the reference's binding refuses a user whose userID, email, ip,
		// userAgent, country, locale or appVersion is not a string: such
		// users are rare here, as they test nothing but the refusal)
		switch g.weighted(80, 1, 3, 16) {
		case 0:
			u["userID"] = g.pick("a_user", "9", "", "user_"+strconv.Itoa(i), "A_USER", "üser", " a_user", strings.Repeat("x", 200), "user_"+strconv.Itoa(i%3))
		case 1:
			u["userID"] = g.pick(num("9"), true)
		case 2:
			u["userID"] = nil
		}
		if g.oneIn(3) {
			ids := map[string]any{}
			for j := 0; j <= g.r.IntN(3); j++ {
				key := g.pickS("companyID", "companyID", "companyid", "COMPANYID", "CompanyID", "stableID", "stableid", "StableID", "userID")
				ids[key] = g.pick("123", "", "c"+strconv.Itoa(i), "C"+strconv.Itoa(i%3), "123", num("123"), num("1.5"))
			}
			u["customIDs"] = ids
		}
		str := func(key string, pool []string, p int) {
			if !g.oneIn(p) {
				return
			}
			if g.oneIn(40) {
				u[key] = g.pick(num("9"), nil)
				return
			}
			u[key] = g.pickS(pool...)
		}
		str("email", []string{"x@statsig.com", "X@STATSIG.COM", "a_user@statsig.com", "user@example.com", "", "vip@Statsig.io", "9"}, 3)
		str("appVersion", genVersions, 3)
		str("country", genCountries, 4)
		str("locale", []string{"en_US", "en-us", "fr_FR", "", "EN_us"}, 4)
		str("ip", genIPs, 3)
		str("userAgent", genUserAgents, 3)
		if g.oneIn(60) {
			u["userAgent"] = strings.Repeat("Mozilla/5.0 (iPhone) ", 48) // over SC's 1000-character limit
		}
		custom := map[string]any{}
		for j := 0; j < g.weighted(3, 3, 3, 2, 1); j++ {
			custom[g.pickS(genCustomKeys...)] = g.userValue()
		}
		// (an empty custom object too, which SC logs as {}: regression case
		// userjson_nonobject_fields)
		if len(custom) > 0 || g.oneIn(3) {
			u["custom"] = custom
		}
		if g.oneIn(4) {
			pa := map[string]any{}
			for j := 0; j < 1+g.r.IntN(3); j++ {
				pa[g.pickS(genCustomKeys...)] = g.userValue()
			}
			u["privateAttributes"] = pa
		}
		if g.oneIn(4) {
			env := map[string]any{}
			switch g.r.IntN(6) {
			case 0, 1, 2:
				env["tier"] = g.pickS("staging", "STAGING", "production", "development", "")
			case 3:
				env["Tier"] = "staging"
			case 4:
				env["region"] = "eu"
			}
			u["statsigEnvironment"] = env
		}
		if g.oneIn(50) {
			// One of these fields not an object: the binding reads a string or
			// an array as an object keyed by index, a number or a boolean as
			// {} (regression cases userjson_nonobject_*).
			key := g.pickS("custom", "privateAttributes", "customIDs", "statsigEnvironment")
			u[key] = g.pick("ab", "", "\U0001F600", []any{"x", "9"}, []any{}, num("5"), true)
		}
		b, _ := json.Marshal(u)
		out = append(out, b)
	}
	return out
}
