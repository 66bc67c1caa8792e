package evalcore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/sigedge/sigedge/evalcore/internal/sha256x"
)

// ErrNoUpdates is returned by Compile for a payload that only says
// {"has_updates": false}: the caller should keep its current RuleSet.
var ErrNoUpdates = errors.New("evalcore: rule set has no updates")

// Format names a download_config_specs wire format.
type Format string

// The two rule-set wire formats.
const (
	FormatV1 Format = "v1"     // arrays of specs with inline conditions (legacy SDKs)
	FormatV2 Format = "dcs-v2" // maps keyed by name plus condition_map (server-core)
)

// CompileOptions tunes Compile. The zero value is ready to use.
type CompileOptions struct {
	// DisableRegexFallback turns off the backtracking engine used for
	// str_matches patterns that RE2 cannot compile (look-around,
	// back-references); such patterns then never match.
	DisableRegexFallback bool
}

// Problem is one part of a rule set that Compile dropped, and why.
type Problem struct {
	Section string // "feature_gates", "dynamic_configs", "layer_configs", "condition_map", ...
	Name    string // spec name or condition key
	Reason  string
}

func (p Problem) String() string { return p.Section + "/" + p.Name + ": " + p.Reason }

// RuleSet is a compiled, immutable rule set. It is safe for concurrent use.
type RuleSet struct {
	format   Format
	time     int64
	checksum string

	gates   map[string]*spec
	configs map[string]*spec
	layers  map[string]*spec

	gateNames, configNames, layerNames []string // sorted

	appID                 string
	hasAppID              bool
	sdkKeysToAppIDs       map[string]string
	hasSDKKeysToAppIDs    bool
	hashedKeysToAppIDs    map[string]string
	hasHashedKeysToAppIDs bool
	defaultEnv            string
	hasDefaultEnv         bool

	overrides     map[string][]configMapping
	overrideRules map[string]*rule
	hasMapping    bool

	// gateRefs are the distinct gate names pass_gate / fail_gate conditions
	// name (known or not), so the per-evaluation nested-gate memo is a slice
	// indexed at compile time instead of a map keyed by name; gateRefSpecs
	// holds their specs (nil when unknown).
	gateRefs     []string
	gateRefSpecs []*spec
	// numPrefixes counts the distinct fixed hash-input prefixes (bucket salts,
	// "specSalt.ruleSalt"): the size of the per-context hash memo.
	numPrefixes int
	// appIDValue is app_id's value for target_app conditions.
	appIDValue value

	paramStores []*paramStore
	cmabs       map[string]*cmabConfig
	cmabNames   []string // sorted

	sessionReplay *sessionReplayInfo
	problems      []Problem
}

type configMapping struct {
	newConfigName string
	rules         []mappingRule
}

type mappingRule struct {
	ruleName  string
	startTime int64
}

type paramStore struct {
	name          string
	params        []storeParam // sorted by name
	targetAppIDs  []string
	hasTargetApps bool
}

type storeParam struct {
	name   string
	fields []storeField // in output order
	refKey string       // field holding an entity name to hash ("" for static)
}

type storeField struct {
	key string
	raw []byte
}

// Time is the rule set's "time" (last config update time, ms since epoch).
func (rs *RuleSet) Time() int64 { return rs.time }

// Checksum is the rule set's "checksum" ("" when absent).
func (rs *RuleSet) Checksum() string { return rs.checksum }

// Format is the wire format the payload was in.
func (rs *RuleSet) Format() Format { return rs.format }

// Problems lists what Compile dropped from the payload.
func (rs *RuleSet) Problems() []Problem { return append([]Problem(nil), rs.problems...) }

// GateNames lists the feature_gates entries (segments and holdouts included), sorted.
func (rs *RuleSet) GateNames() []string { return append([]string(nil), rs.gateNames...) }

// ConfigNames lists the dynamic_configs entries (configs, experiments, autotunes), sorted.
func (rs *RuleSet) ConfigNames() []string { return append([]string(nil), rs.configNames...) }

// LayerNames lists the layer_configs entries, sorted.
func (rs *RuleSet) LayerNames() []string { return append([]string(nil), rs.layerNames...) }

// Entity reports the entity of a spec ("feature_gate", "segment", "holdout",
// "dynamic_config", "experiment", "autotune", "layer") and whether it exists.
// Gates are looked up first, then dynamic configs, then layers.
func (rs *RuleSet) Entity(name string) (string, bool) {
	if s := rs.gates[name]; s != nil {
		return s.entity, true
	}
	if s := rs.configs[name]; s != nil {
		return s.entity, true
	}
	if s := rs.layers[name]; s != nil {
		return s.entity, true
	}
	return "", false
}

// ConfigEntity reports the entity of a dynamic_configs entry.
func (rs *RuleSet) ConfigEntity(name string) (string, bool) {
	if s := rs.configs[name]; s != nil {
		return s.entity, true
	}
	return "", false
}

// Compile parses a download_config_specs payload (dcs-v2 or v1) into a RuleSet.
// A malformed spec or condition is dropped and reported in Problems; a payload
// that is not a rule set is an error; {"has_updates":false} yields ErrNoUpdates.
func Compile(payload []byte, opts CompileOptions) (*RuleSet, error) {
	top, err := decodeObject(payload)
	if err != nil {
		return nil, fmt.Errorf("evalcore: rule set is not a JSON object: %w", err)
	}
	hasSection := false
	for _, k := range []string{"feature_gates", "dynamic_configs", "layer_configs"} {
		if raw, ok := top[k]; ok && !isNull(raw) {
			hasSection = true
		}
	}
	if !hasSection {
		if raw, ok := top["has_updates"]; ok && bytes.Equal(bytes.TrimSpace(raw), []byte("false")) {
			return nil, ErrNoUpdates
		}
		return nil, errors.New("evalcore: payload has no feature_gates, dynamic_configs or layer_configs")
	}
	format := FormatV2
	if !isV2(top) {
		format = FormatV1
		conv, err := convertV1ToV2(top)
		if err != nil {
			return nil, err
		}
		top = conv
	}
	c := &compiler{opts: opts, rs: &RuleSet{format: format}}
	c.compile(top)
	return c.rs, nil
}

func isV2(top map[string]json.RawMessage) bool {
	if s, ok := jsonString(top["response_format"]); ok && s == "dcs-v2" {
		return true
	}
	for _, k := range []string{"feature_gates", "dynamic_configs", "layer_configs"} {
		if raw, ok := top[k]; ok && firstByte(raw) == '{' {
			return true
		}
	}
	return false
}

type compiler struct {
	opts     CompileOptions
	rs       *RuleSet
	conds    map[string]*condition
	targets  map[string]*target // memo by (raw target, op) so equal targets share one regex
	gateRefs map[string]int32
	prefixes map[string]int32
}

// gateRef interns a nested-gate name.
func (c *compiler) gateRef(name string) int32 {
	if i, ok := c.gateRefs[name]; ok {
		return i
	}
	i := int32(len(c.rs.gateRefs))
	c.gateRefs[name] = i
	c.rs.gateRefs = append(c.rs.gateRefs, name)
	return i
}

// prefixID interns a fixed hash-input prefix: equal prefixes share one memo
// slot, since equal inputs hash equally.
func (c *compiler) prefixID(p string) int32 {
	if i, ok := c.prefixes[p]; ok {
		return i
	}
	i := int32(len(c.prefixes))
	c.prefixes[p] = i
	return i
}

func (c *compiler) problem(section, name, format string, args ...any) {
	c.rs.problems = append(c.rs.problems, Problem{Section: section, Name: name, Reason: fmt.Sprintf(format, args...)})
}

func (c *compiler) compile(top map[string]json.RawMessage) {
	rs := c.rs
	if raw, ok := top["time"]; ok {
		if f, ok := jsonNumber(raw); ok {
			rs.time = int64(f)
		}
	}
	if raw, ok := top["checksum"]; ok {
		if s, ok := jsonString(raw); ok {
			rs.checksum = s
		} else if f, ok := jsonNumber(raw); ok {
			rs.checksum = jsNumberString(f)
		}
	}
	if s, ok := jsonString(top["app_id"]); ok {
		rs.appID, rs.hasAppID = s, true
		rs.appIDValue = newStringValue(s)
	}
	if s, ok := jsonString(top["default_environment"]); ok {
		rs.defaultEnv, rs.hasDefaultEnv = s, true
	}
	rs.sdkKeysToAppIDs, rs.hasSDKKeysToAppIDs = c.stringMap(top["sdk_keys_to_app_ids"])
	rs.hashedKeysToAppIDs, rs.hasHashedKeysToAppIDs = c.stringMap(top["hashed_sdk_keys_to_app_ids"])

	c.conds = map[string]*condition{}
	c.targets = map[string]*target{}
	c.gateRefs = map[string]int32{}
	c.prefixes = map[string]int32{}
	if raw, ok := top["condition_map"]; ok && !isNull(raw) {
		m, err := decodeObject(raw)
		if err != nil {
			c.problem("condition_map", "", "not an object: %v", err)
		}
		for key, craw := range m {
			cond, err := c.compileCondition(craw)
			if err != nil {
				c.problem("condition_map", key, "%v", err)
				continue
			}
			c.conds[key] = cond
		}
	}

	rs.gates, rs.gateNames = c.compileSection(top["feature_gates"], "feature_gates", sectionGate)
	rs.configs, rs.configNames = c.compileSection(top["dynamic_configs"], "dynamic_configs", sectionConfig)
	rs.layers, rs.layerNames = c.compileSection(top["layer_configs"], "layer_configs", sectionLayer)

	c.compileMappings(top["overrides"], top["override_rules"])
	c.resolve()
	c.compileParamStores(top["param_stores"])
	c.compileCMABs(top["cmab_configs"])
	if raw, ok := top["session_replay_info"]; ok && firstByte(raw) == '{' {
		rs.sessionReplay = compileSessionReplay(raw)
	}
	c.conds, c.targets, c.gateRefs, c.prefixes = nil, nil, nil, nil
}

// resolve links what evaluation would otherwise look up by name: nested
// gates and config delegates.
func (c *compiler) resolve() {
	rs := c.rs
	rs.gateRefSpecs = make([]*spec, len(rs.gateRefs))
	for i, name := range rs.gateRefs {
		if sp := rs.gates[name]; sp != nil {
			rs.gateRefSpecs[i] = sp
			sp.refIdx = int32(i)
		}
	}
	link := func(rules []*rule) {
		for _, r := range rules {
			if r.hasDelegate {
				r.delegateSpec = rs.configs[r.configDelegate]
			}
		}
	}
	for _, m := range []map[string]*spec{rs.gates, rs.configs, rs.layers} {
		for _, sp := range m {
			link(sp.rules)
		}
	}
	for _, r := range rs.overrideRules {
		link([]*rule{r})
	}
	rs.numPrefixes = len(c.prefixes)
}

func (c *compiler) stringMap(raw json.RawMessage) (map[string]string, bool) {
	if raw == nil || isNull(raw) {
		return nil, false
	}
	m, err := decodeObject(raw)
	if err != nil {
		return nil, false
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		if s, ok := jsonString(v); ok {
			out[k] = s
		}
	}
	return out, true
}

func (c *compiler) compileSection(raw json.RawMessage, name string, sec section) (map[string]*spec, []string) {
	out := map[string]*spec{}
	if raw == nil || isNull(raw) {
		return out, nil
	}
	m, err := decodeObject(raw)
	if err != nil {
		c.problem(name, "", "not an object: %v", err)
		return out, nil
	}
	for specName, sraw := range m {
		s, err := c.compileSpec(specName, sraw, sec)
		if err != nil {
			c.problem(name, specName, "%v", err)
			continue
		}
		out[specName] = s
	}
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	sort.Strings(names)
	return out, names
}

func (c *compiler) compileSpec(name string, raw json.RawMessage, sec section) (*spec, error) {
	f, err := decodeObject(raw)
	if err != nil {
		return nil, fmt.Errorf("spec is not an object")
	}
	s := &spec{name: name, section: sec, refIdx: -1}
	var ok bool
	if s.typ, err = reqString(f, "type"); err != nil {
		return nil, err
	}
	if s.salt, err = reqString(f, "salt"); err != nil {
		return nil, err
	}
	if s.idType, err = reqString(f, "idType"); err != nil {
		return nil, err
	}
	if s.entity, err = reqString(f, "entity"); err != nil {
		return nil, err
	}
	if s.enabled, ok = jsonBool(f["enabled"]); !ok {
		return nil, errors.New(`missing or non-boolean "enabled"`)
	}
	dv, present := f["defaultValue"]
	if !present {
		return nil, errors.New(`missing "defaultValue"`)
	}
	s.defaultValue = compactJSON(dv)
	s.defaultIsTrue = bytes.Equal(s.defaultValue, []byte("true"))
	s.isDeviceBased = s.idType == "stableID" || s.idType == "stableid"
	if s.isActive, err = optBoolField(f, "isActive"); err != nil {
		return nil, err
	}
	if s.hasSharedParams, err = optBoolField(f, "hasSharedParams"); err != nil {
		return nil, err
	}
	if s.forwardAll, err = optBoolField(f, "forwardAllExposures"); err != nil {
		return nil, err
	}
	nl, err := optBoolField(f, "useNewLayerEval")
	if err != nil {
		return nil, err
	}
	s.useNewLayerEval = nl.val()
	if s.explicitParams, s.hasExplicit, err = optStringList(f, "explicitParameters"); err != nil {
		return nil, err
	}
	if s.targetAppIDs, s.hasTargetApps, err = optStringList(f, "targetAppIDs"); err != nil {
		return nil, err
	}
	if v, present := f["version"]; present && !isNull(v) {
		n, ok := jsonUint(v, 1<<32-1)
		if !ok {
			return nil, errors.New(`"version" is not an unsigned 32-bit integer`)
		}
		s.version, s.hasVersion = uint32(n), true
	}
	rulesRaw, present := f["rules"]
	if !present || firstByte(rulesRaw) != '[' {
		return nil, errors.New(`missing or non-array "rules"`)
	}
	var rules []json.RawMessage
	if err := json.Unmarshal(rulesRaw, &rules); err != nil {
		return nil, fmt.Errorf("rules: %v", err)
	}
	for i, rraw := range rules {
		r, err := c.compileRule(rraw)
		if err != nil {
			return nil, fmt.Errorf("rule %d: %v", i, err)
		}
		ruleSalt := r.id
		if r.hasSalt {
			ruleSalt = r.salt
		}
		prefix := s.salt + "." + ruleSalt
		r.passPrefix = sha256x.New(prefix)
		r.passPrefixID = c.prefixID(prefix)
		s.rules = append(s.rules, r)
	}
	return s, nil
}

func (c *compiler) compileRule(raw json.RawMessage) (*rule, error) {
	f, err := decodeObject(raw)
	if err != nil {
		return nil, errors.New("not an object")
	}
	r := &rule{passPrefixID: -1}
	if r.name, err = reqString(f, "name"); err != nil {
		return nil, err
	}
	if r.id, err = reqString(f, "id"); err != nil {
		return nil, err
	}
	idType, err := reqString(f, "idType")
	if err != nil {
		return nil, err
	}
	r.unit = newUnitRef(idType)
	pp, ok := jsonNumber(f["passPercentage"])
	if !ok {
		return nil, errors.New(`missing or non-numeric "passPercentage"`)
	}
	r.passPercentage = pp
	rv, present := f["returnValue"]
	if !present {
		return nil, errors.New(`missing "returnValue"`)
	}
	r.returnValue = compactJSON(rv)
	r.returnIsFalse = bytes.Equal(r.returnValue, []byte("false"))
	if r.salt, r.hasSalt, err = optString(f, "salt"); err != nil {
		return nil, err
	}
	if r.groupName, r.hasGroup, err = optString(f, "groupName"); err != nil {
		return nil, err
	}
	if r.configDelegate, r.hasDelegate, err = optString(f, "configDelegate"); err != nil {
		return nil, err
	}
	if r.isExperimentGroup, err = optBoolField(f, "isExperimentGroup"); err != nil {
		return nil, err
	}
	if v, present := f["samplingRate"]; present && !isNull(v) {
		n, ok := jsonUint(v, 1<<64-1)
		if !ok {
			return nil, errors.New(`"samplingRate" is not an unsigned integer`)
		}
		r.samplingRate, r.hasSamplingRate = n, true
	}
	keys, present, err := optStringList(f, "conditions")
	if err != nil || !present {
		return nil, errors.New(`missing or invalid "conditions"`)
	}
	r.conds = make([]*condition, len(keys))
	for i, k := range keys {
		r.conds[i] = c.conds[k] // nil when missing: unsupported at evaluation
	}
	return r, nil
}

func (c *compiler) compileCondition(raw json.RawMessage) (*condition, error) {
	f, err := decodeObject(raw)
	if err != nil {
		return nil, errors.New("condition is not an object")
	}
	cond := &condition{gateRef: -1, saltID: -1}
	typ, err := reqString(f, "type")
	if err != nil {
		return nil, err
	}
	cond.typ = condTypes[typ]
	idType, err := reqString(f, "idType")
	if err != nil {
		return nil, err
	}
	cond.unit = newUnitRef(idType)
	op, hasOp, err := optString(f, "operator")
	if err != nil {
		return nil, err
	}
	if hasOp {
		cond.hasOp = true
		cond.op = opTypes[op]
	}
	field, hasField, err := optString(f, "field")
	if err != nil {
		return nil, err
	}
	cond.field, cond.hasField = newFieldRef(field), hasField
	cond.uaIndex = uaIndex(cond.field.lower)
	if av, present := f["additionalValues"]; present && !isNull(av) {
		m, err := decodeObject(av)
		if err != nil {
			return nil, errors.New(`"additionalValues" is not an object`)
		}
		for k, v := range m {
			s, ok := jsonString(v)
			if !ok {
				return nil, fmt.Errorf(`additionalValues[%q] is not a string`, k)
			}
			if k == "salt" {
				cond.salt = s
			}
		}
	}
	tv := f["targetValue"]
	key := string(tv)
	if cond.op == opMatches {
		key = "re:" + key
	}
	if t, ok := c.targets[key]; ok {
		cond.target = *t
	} else {
		t := c.compileTarget(tv, cond.op == opMatches)
		c.targets[key] = &t
		cond.target = t
	}
	switch cond.typ {
	case condPassGate, condFailGate:
		if cond.target.kind == targetString {
			cond.gateName = cond.target.str
		}
		if cond.gateName != "" {
			cond.gateRef = c.gateRef(cond.gateName)
		}
		cond.isSegment = strings.HasPrefix(cond.gateName, "segment:")
	case condUserBucket:
		cond.saltID = c.prefixID(cond.salt)
		cond.saltHash = sha256x.New(cond.salt)
		if cond.hasOp && (cond.op == opAny || cond.op == opNone) {
			cond.target.buckets = bucketBits(&cond.target)
		}
	}
	return cond, nil
}

// bucketBits is the bucket bitmap of an array or object target (nil for
// other kinds, which match no bucket through the general path anyway).
func bucketBits(t *target) *[16]uint64 {
	var keys []string
	switch t.kind {
	case targetArray:
		keys = t.lowers
	case targetObject:
		for k := range t.obj {
			keys = append(keys, k)
		}
	default:
		return nil
	}
	bits := new([16]uint64)
	for _, k := range keys {
		// Only canonical decimals equal a bucket's string view ("7", not "07").
		if n, err := strconv.Atoi(k); err == nil && n >= 0 && n < 1000 && strconv.Itoa(n) == k {
			bits[n/64] |= 1 << (n % 64)
		}
	}
	return bits
}

func (c *compiler) compileTarget(raw json.RawMessage, regex bool) target {
	var t target
	if raw == nil || isNull(raw) {
		return t
	}
	v, err := decodeAny(raw)
	if err != nil {
		return t
	}
	switch x := v.(type) {
	case bool:
		t.kind, t.b = targetBool, x
	case json.Number:
		t.kind = targetNumber
		t.num, t.hasNum = numberFloat(x), true
	case string:
		t.kind, t.str, t.hasStr = targetString, x, true
		t.num, t.hasNum = parseRustFloat(x)
		t.ts, t.hasTS = parseTargetTimestamp(x)
		if regex {
			t.re = c.compileRegex(x)
		}
	case []any:
		t.kind = targetArray
		t.set = make(map[string]arrayEntry, len(x))
		for i, el := range x {
			s := targetElementString(el)
			t.set[lowerString(s)] = arrayEntry{index: i, str: s}
		}
		keys := make([]string, 0, len(t.set))
		for k := range t.set {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return t.set[keys[i]].index < t.set[keys[j]].index })
		for _, k := range keys {
			t.lowers = append(t.lowers, k)
			t.entries = append(t.entries, t.set[k])
		}
	case map[string]any:
		t.kind = targetObject
		t.obj = make(map[string]string, len(x))
		for k, el := range x {
			t.obj[k] = targetElementString(el)
		}
	}
	return t
}

// compileRegex compiles a str_matches pattern with SC's (fancy-regex)
// reading of it: RE2 where it can run the pattern, a backtracking engine for
// look-around, back-references and the like (unless disabled).
func (c *compiler) compileRegex(pattern string) matcher {
	return compileRustRegex(pattern, !c.opts.DisableRegexFallback)
}

func (c *compiler) compileMappings(oraw, rraw json.RawMessage) {
	if oraw == nil || isNull(oraw) || rraw == nil || isNull(rraw) {
		return
	}
	om, err1 := decodeObject(oraw)
	rm, err2 := decodeObject(rraw)
	if err1 != nil || err2 != nil {
		c.problem("overrides", "", "overrides/override_rules are not objects")
		return
	}
	c.rs.hasMapping = true
	c.rs.overrideRules = map[string]*rule{}
	for name, raw := range rm {
		r, err := c.compileRule(raw)
		if err != nil {
			c.problem("override_rules", name, "%v", err)
			continue
		}
		c.rs.overrideRules[name] = r
	}
	c.rs.overrides = map[string][]configMapping{}
	for name, raw := range om {
		var list []struct {
			NewConfigName string `json:"new_config_name"`
			Rules         []struct {
				RuleName  string   `json:"rule_name"`
				StartTime *float64 `json:"start_time"`
			} `json:"rules"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			c.problem("overrides", name, "%v", err)
			continue
		}
		var ms []configMapping
		for _, m := range list {
			cm := configMapping{newConfigName: m.NewConfigName}
			for _, r := range m.Rules {
				mr := mappingRule{ruleName: r.RuleName}
				if r.StartTime != nil {
					mr.startTime = int64(*r.StartTime)
				}
				cm.rules = append(cm.rules, mr)
			}
			ms = append(ms, cm)
		}
		c.rs.overrides[name] = ms
	}
}

func (c *compiler) compileParamStores(raw json.RawMessage) {
	if raw == nil || isNull(raw) {
		return
	}
	m, err := decodeObject(raw)
	if err != nil {
		c.problem("param_stores", "", "not an object")
		return
	}
	names := sortedKeys(m)
	for _, name := range names {
		f, err := decodeObject(m[name])
		if err != nil {
			c.problem("param_stores", name, "not an object")
			continue
		}
		ps := &paramStore{name: name}
		ps.targetAppIDs, ps.hasTargetApps, _ = optStringList(f, "targetAppIDs")
		params, _ := decodeObject(f["parameters"])
		for _, pname := range sortedKeys(params) {
			pf, err := decodeObject(params[pname])
			if err != nil {
				c.problem("param_stores", name+"."+pname, "parameter is not an object")
				continue
			}
			ref, _ := jsonString(pf["ref_type"])
			p := storeParam{name: pname}
			var order []string
			// SC writes every parameter with its key as "name", whatever
			// name the entry itself carries.
			p.fields = append(p.fields, storeField{key: "name", raw: appendJSONString(nil, pname)})
			switch ref {
			case "static":
				order = []string{"ref_type", "param_type", "value"}
			case "gate":
				order, p.refKey = []string{"ref_type", "param_type", "gate_name", "pass_value", "fail_value"}, "gate_name"
			case "dynamic_config":
				order, p.refKey = []string{"ref_type", "param_type", "config_name", "param_name"}, "config_name"
			case "experiment":
				order, p.refKey = []string{"ref_type", "param_type", "experiment_name", "param_name"}, "experiment_name"
			case "layer":
				order, p.refKey = []string{"ref_type", "param_type", "layer_name", "param_name"}, "layer_name"
			default:
				c.problem("param_stores", name+"."+pname, "unknown ref_type %q", ref)
				continue
			}
			for _, k := range order {
				if v, ok := pf[k]; ok {
					p.fields = append(p.fields, storeField{key: k, raw: compactJSON(v)})
				}
			}
			ps.params = append(ps.params, p)
		}
		c.rs.paramStores = append(c.rs.paramStores, ps)
	}
}

// ---- small JSON helpers -------------------------------------------------

// decodeObject splits a JSON object into its members, as json.Unmarshal into
// a map[string]json.RawMessage does (the last of duplicate keys wins), but
// after one validation pass it only scans: the values alias raw (capacity
// clipped, so an append copies) instead of being copied one by one.
func decodeObject(raw []byte) (map[string]json.RawMessage, error) {
	if firstByte(raw) != '{' {
		return nil, errors.New("not a JSON object")
	}
	return splitObject(raw, false)
}

// splitObject is decodeObject; valid says raw is already known to be valid
// JSON (a member of an object decodeObject validated), so the validation
// pass is skipped.
func splitObject(raw []byte, valid bool) (map[string]json.RawMessage, error) {
	if firstByte(raw) != '{' {
		return nil, errors.New("not a JSON object")
	}
	if !valid && !json.Valid(raw) {
		var m map[string]json.RawMessage
		err := json.Unmarshal(raw, &m) // for its error message
		if err == nil {
			err = errors.New("invalid JSON")
		}
		return nil, err
	}
	t := trimJSONSpace(raw)
	m := make(map[string]json.RawMessage)
	i := skipJSONSpace(t, 1)
	for t[i] != '}' {
		kEnd := endOfJSONString(t, i)
		key, ok := fastString(t[i:kEnd])
		if !ok {
			if err := json.Unmarshal(t[i:kEnd], &key); err != nil {
				return nil, err
			}
		}
		i = skipJSONSpace(t, kEnd) + 1 // ':'
		i = skipJSONSpace(t, i)
		vEnd := endOfJSONValue(t, i)
		m[key] = json.RawMessage(t[i:vEnd:vEnd])
		i = skipJSONSpace(t, vEnd)
		if t[i] == ',' {
			i = skipJSONSpace(t, i+1)
		}
	}
	return m, nil
}

func skipJSONSpace(t []byte, i int) int {
	for i < len(t) && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r') {
		i++
	}
	return i
}

// endOfJSONString returns the index after the string literal starting at i
// (t is valid JSON).
func endOfJSONString(t []byte, i int) int {
	for j := i + 1; j < len(t); j++ {
		switch t[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(t)
}

// endOfJSONValue returns the index after the value starting at i (t is valid JSON).
func endOfJSONValue(t []byte, i int) int {
	switch t[i] {
	case '"':
		return endOfJSONString(t, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(t); j++ {
			switch t[j] {
			case '"':
				j = endOfJSONString(t, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(t)
	}
	j := i
	for j < len(t) && t[j] != ',' && t[j] != '}' && t[j] != ']' && t[j] != ' ' && t[j] != '\t' && t[j] != '\n' && t[j] != '\r' {
		j++
	}
	return j
}

// decodeAny decodes the first JSON value of raw as a json.Decoder with
// UseNumber does. Scalars, which are most of what users and targets hold,
// take a fast path: a Decoder costs microseconds and a 2 KB buffer each.
func decodeAny(raw []byte) (any, error) {
	t := trimJSONSpace(raw)
	if len(t) > 0 {
		switch c := t[0]; {
		case c == '"':
			if s, ok := fastString(t); ok {
				return s, nil
			}
		case c == 't' && string(t) == "true":
			return true, nil
		case c == 'f' && string(t) == "false":
			return false, nil
		case c == 'n' && string(t) == "null":
			return nil, nil
		case c == '-' || c >= '0' && c <= '9':
			if isJSONNumber(t) {
				return json.Number(t), nil
			}
		}
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

func trimJSONSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	for n := len(b); n > 0 && (b[n-1] == ' ' || b[n-1] == '\t' || b[n-1] == '\n' || b[n-1] == '\r'); n-- {
		b = b[:n-1]
	}
	return b
}

// fastString decodes a JSON string literal that is the whole of t and needs
// no unescaping or UTF-8 repair; ok is false for anything else (the caller
// falls back to encoding/json).
func fastString(t []byte) (string, bool) {
	if len(t) < 2 || t[0] != '"' || t[len(t)-1] != '"' {
		return "", false
	}
	body := t[1 : len(t)-1]
	ascii := true
	for _, c := range body {
		if c == '\\' || c == '"' || c < 0x20 {
			return "", false
		}
		if c >= 0x80 {
			ascii = false
		}
	}
	if !ascii && !utf8.Valid(body) {
		return "", false // encoding/json replaces invalid bytes with U+FFFD
	}
	return string(body), true
}

// isJSONNumber reports whether t is exactly one JSON number.
func isJSONNumber(t []byte) bool {
	i := 0
	if i < len(t) && t[i] == '-' {
		i++
	}
	switch {
	case i < len(t) && t[i] == '0':
		i++
	case i < len(t) && t[i] >= '1' && t[i] <= '9':
		for i < len(t) && t[i] >= '0' && t[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(t) && t[i] == '.' {
		i++
		if i == len(t) || t[i] < '0' || t[i] > '9' {
			return false
		}
		for i < len(t) && t[i] >= '0' && t[i] <= '9' {
			i++
		}
	}
	if i < len(t) && (t[i] == 'e' || t[i] == 'E') {
		i++
		if i < len(t) && (t[i] == '+' || t[i] == '-') {
			i++
		}
		if i == len(t) || t[i] < '0' || t[i] > '9' {
			return false
		}
		for i < len(t) && t[i] >= '0' && t[i] <= '9' {
			i++
		}
	}
	return i == len(t)
}

func firstByte(raw []byte) byte {
	for _, b := range raw {
		switch b {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return b
	}
	return 0
}

func isNull(raw []byte) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

func jsonString(raw []byte) (string, bool) {
	if firstByte(raw) != '"' {
		return "", false
	}
	if s, ok := fastString(trimJSONSpace(raw)); ok {
		return s, true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

func jsonBool(raw []byte) (bool, bool) {
	switch string(bytes.TrimSpace(raw)) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

func jsonNumber(raw []byte) (float64, bool) {
	b := firstByte(raw)
	if b != '-' && (b < '0' || b > '9') {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(bytes.TrimSpace(raw)), 64)
	if err != nil {
		return f, false
	}
	return f, true
}

func jsonUint(raw []byte, max uint64) (uint64, bool) {
	n, err := strconv.ParseUint(string(bytes.TrimSpace(raw)), 10, 64)
	if err != nil || n > max {
		return 0, false
	}
	return n, true
}

func reqString(f map[string]json.RawMessage, key string) (string, error) {
	s, ok := jsonString(f[key])
	if !ok {
		return "", fmt.Errorf("missing or non-string %q", key)
	}
	return s, nil
}

func optString(f map[string]json.RawMessage, key string) (string, bool, error) {
	raw, present := f[key]
	if !present || isNull(raw) {
		return "", false, nil
	}
	s, ok := jsonString(raw)
	if !ok {
		return "", false, fmt.Errorf("%q is not a string", key)
	}
	return s, true, nil
}

func optBoolField(f map[string]json.RawMessage, key string) (optBool, error) {
	raw, present := f[key]
	if !present || isNull(raw) {
		return optUnset, nil
	}
	b, ok := jsonBool(raw)
	if !ok {
		return optUnset, fmt.Errorf("%q is not a boolean", key)
	}
	if b {
		return optTrue, nil
	}
	return optFalse, nil
}

func optStringList(f map[string]json.RawMessage, key string) ([]string, bool, error) {
	raw, present := f[key]
	if !present || isNull(raw) {
		return nil, false, nil
	}
	var list []string
	if firstByte(raw) != '[' || json.Unmarshal(raw, &list) != nil {
		return nil, false, fmt.Errorf("%q is not a list of strings", key)
	}
	if list == nil {
		list = []string{}
	}
	return list, true, nil
}

func compactJSON(raw []byte) []byte {
	if isCompact(raw) {
		return bytes.Clone(raw)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return append([]byte(nil), raw...)
	}
	return buf.Bytes()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func numberFloat(n json.Number) float64 {
	f, _ := strconv.ParseFloat(string(n), 64)
	return f
}

// isCompact reports whether raw has no whitespace outside strings (so
// json.Compact would return it unchanged, assuming it is valid JSON).
func isCompact(raw []byte) bool {
	in := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case in && c == '\\':
			i++
		case c == '"':
			in = !in
		case !in && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return false
		}
	}
	return !in
}
