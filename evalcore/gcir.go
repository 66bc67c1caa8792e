package evalcore

import (
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
)

// HashAlgorithm names how a client initialize response hashes spec names.
type HashAlgorithm string

// Hash algorithms for ClientInitializeResponse.
const (
	HashDJB2   HashAlgorithm = "djb2" // SC's default
	HashSHA256 HashAlgorithm = "sha256"
	HashNone   HashAlgorithm = "none"
)

// ParseHashAlgorithm reads a hash algorithm name the way SC does (case-insensitive:
// "sha256", "djb2", "none"); anything else is reported as not ok.
func ParseHashAlgorithm(s string) (HashAlgorithm, bool) {
	switch strings.ToLower(s) {
	case "sha256":
		return HashSHA256, true
	case "djb2":
		return HashDJB2, true
	case "none":
		return HashNone, true
	}
	return "", false
}

// InitOptions configures ClientInitializeResponse.
type InitOptions struct {
	// Hash is the name hashing; "" means djb2 (SC's default).
	Hash HashAlgorithm
	// ClientKey is the client SDK key; it selects a target app through
	// sdk_keys_to_app_ids / hashed_sdk_keys_to_app_ids, and enables filtering.
	ClientKey string
	// TargetAppID, when set, is the target app (and enables filtering).
	TargetAppID string
	// SinceTime: when > 0 and the rule set is not newer, the response is
	// {"has_updates":false,"time":...}.
	SinceTime int64
	// SDKVersion goes into sdkInfo.sdkVersion ("" means "dev").
	SDKVersion string

	// permute, when set (tests only), reorders the names of each section
	// before they are evaluated. SC walks its spec maps in a per-process
	// random order, which the response's shared nested-gate memo and leaked
	// result can make visible; the differential tests use it to check that
	// some order reproduces what the reference answered.
	permute func([]string) []string
}

// ClientInitializeResponse builds the client initialize response (SC's v1
// format) for a user, as JSON. When an entry cannot be evaluated (the
// nesting limit), the response is SC's empty one: no entries, time 0,
// has_updates false.
func (e *Evaluator) ClientInitializeResponse(u *User, opts InitOptions) ([]byte, error) {
	return e.AppendClientInitializeResponse(nil, u, opts)
}

// AppendClientInitializeResponse appends ClientInitializeResponse's answer to
// dst, so that a caller can build answers in a recycled buffer, and returns the
// extended buffer.
func (e *Evaluator) AppendClientInitializeResponse(dst []byte, u *User, opts InitOptions) ([]byte, error) {
	rs := e.rs
	hash := opts.Hash
	if hash == "" {
		hash = HashDJB2
	}
	if opts.SinceTime > 0 && rs.time <= opts.SinceTime {
		b := append(dst, `{"has_updates":false,"time":`...)
		b = strconv.AppendInt(b, rs.time, 10)
		return append(b, '}'), nil
	}
	c := e.getCtx(u)
	defer e.putCtx(c)
	c.gcir = true

	// Target app (SC select_app_id, plus an explicit TargetAppID).
	var appID string
	hasApp := false
	switch {
	case opts.TargetAppID != "":
		appID, hasApp = opts.TargetAppID, true
	case opts.ClientKey == "":
		appID, hasApp = rs.appID, rs.hasAppID
	default:
		appID, hasApp = rs.appID, rs.hasAppID
		if rs.hasSDKKeysToAppIDs {
			appID, hasApp = rs.sdkKeysToAppIDs[opts.ClientKey]
		}
		if rs.hasHashedKeysToAppIDs {
			appID, hasApp = rs.hashedKeysToAppIDs[djb2String(opts.ClientKey)]
		}
	}
	c.appID = nil
	if hasApp {
		c.appIDVal = newStringValue(appID)
		c.appID = &c.appIDVal
	}
	filter := hasApp && (opts.ClientKey != "" || opts.TargetAppID != "")
	keep := func(ids []string, has bool) bool {
		if !filter {
			return true
		}
		if !has {
			return false
		}
		for _, id := range ids {
			if id == appID {
				return true
			}
		}
		return false
	}

	w := gcirWriter{hash: hash}
	// Size the buffer like the last response, so building one costs at most
	// a single allocation instead of a series of grow-and-copy steps.
	start := len(dst)
	b := slices.Grow(dst, int(max(e.gcirSize.Load()+e.gcirSize.Load()/8, 4096)))
	b = append(b, `{"feature_gates":{`...)
	first := true
	order := func(names []string) []string {
		if opts.permute != nil {
			return opts.permute(names)
		}
		return names
	}
	for _, name := range order(rs.gateNames) {
		sp := rs.gates[name]
		if sp.entity == "segment" || sp.entity == "holdout" || !keep(sp.targetAppIDs, sp.hasTargetApps) {
			continue
		}
		c.resetResult()
		c.evaluate(name, typeGate)
		if c.st.err != nil {
			return e.failedInitResponse(dst, u), nil
		}
		b, first = w.key(b, name, first)
		b = append(b, `{"name":`...)
		b = w.appendName(b, name)
		b = append(b, `,"value":`...)
		b = strconv.AppendBool(b, c.st.boolValue)
		b = w.common(b, &c.st)
		b = append(b, '}')
	}
	b = append(b, `},"dynamic_configs":{`...)
	first = true
	// SC lists contextual bandits (cmab_configs) with the dynamic configs,
	// filtered by their own targetAppIDs and evaluated after them; an entry
	// of both sections is written once, as the bandit.
	var bandits []string
	for _, name := range rs.cmabNames {
		if cm := rs.cmabs[name]; keep(cm.targetAppIDs, cm.hasTargetApps) {
			bandits = append(bandits, name)
		}
	}
	writeConfig := func(name, entity string, t specType) {
		st := &c.st
		b, first = w.key(b, name, first)
		b = append(b, `{"name":`...)
		b = w.appendName(b, name)
		b = append(b, `,"value":`...)
		b = appendRawValue(b, st.json, st.hasJSON)
		b = w.common(b, st)
		b = append(b, `,"is_device_based":`...)
		b = strconv.AppendBool(b, st.idType == "stableID" || st.idType == "stableid")
		if t == typeDynamicConfig {
			b = append(b, `,"passed":`...)
			b = strconv.AppendBool(b, st.boolValue)
		} else {
			if st.hasGroup {
				b = append(b, `,"group_name":`...)
				b = appendJSONString(b, st.groupName)
			}
			if st.isInLayer {
				b = append(b, `,"is_in_layer":true`...)
			}
			if st.hasExplicit {
				b = append(b, `,"explicit_parameters":`...)
				b = appendStringList(b, st.explicit)
			}
			if entity == "experiment" {
				b = append(b, `,"is_experiment_active":`...)
				b = strconv.AppendBool(b, st.isExperimentActive)
				b = append(b, `,"is_user_in_experiment":`...)
				b = strconv.AppendBool(b, st.isExperimentGroup)
			}
		}
		b = append(b, '}')
	}
	for _, name := range order(rs.configNames) {
		sp := rs.configs[name]
		if !keep(sp.targetAppIDs, sp.hasTargetApps) {
			continue
		}
		c.resetResult()
		t := typeExperiment
		if sp.entity == "dynamic_config" {
			t = typeDynamicConfig
		}
		c.evaluateSpec(name, t, sp)
		if c.st.err != nil {
			return e.failedInitResponse(dst, u), nil
		}
		if !slices.Contains(bandits, name) {
			writeConfig(name, sp.entity, t)
		}
	}
	for _, name := range order(bandits) {
		c.resetResult()
		c.evaluateSpec(name, typeExperiment, rs.configs[name])
		if c.st.err != nil {
			return e.failedInitResponse(dst, u), nil
		}
		writeConfig(name, "", typeExperiment)
	}
	b = append(b, `},"layer_configs":{`...)
	first = true
	for _, name := range order(rs.layerNames) {
		sp := rs.layers[name]
		if !keep(sp.targetAppIDs, sp.hasTargetApps) {
			continue
		}
		c.resetResult()
		c.evaluate(name, typeLayer)
		if c.st.err != nil {
			return e.failedInitResponse(dst, u), nil
		}
		st := &c.st
		b, first = w.key(b, name, first)
		b = append(b, `{"name":`...)
		b = w.appendName(b, name)
		b = append(b, `,"value":`...)
		b = appendRawValue(b, st.json, st.hasJSON)
		b = w.common(b, st)
		b = append(b, `,"is_device_based":`...)
		b = strconv.AppendBool(b, st.idType == "stableID" || st.idType == "stableid")
		b = append(b, `,"explicit_parameters":`...)
		b = appendStringList(b, st.explicit)
		b = append(b, `,"undelegated_secondary_exposures":`...)
		b = w.exposures(b, st.undelegated)
		if st.hasGroup {
			b = append(b, `,"group_name":`...)
			b = appendJSONString(b, st.groupName)
		}
		if st.hasDelegate && st.delegate != "" {
			b = append(b, `,"allocated_experiment_name":`...)
			b = w.appendName(b, st.delegate)
			b = append(b, `,"is_experiment_active":`...)
			b = strconv.AppendBool(b, st.isExperimentActive)
			b = append(b, `,"is_user_in_experiment":`...)
			b = strconv.AppendBool(b, st.isExperimentGroup)
		}
		if st.paramRuleIDs != nil {
			b = append(b, `,"parameter_rule_ids":`...)
			b = appendStringMap(b, st.paramRuleIDs)
		}
		b = append(b, '}')
	}
	b = append(b, `},"param_stores":{`...)
	first = true
	for _, ps := range rs.paramStores {
		if !keep(ps.targetAppIDs, ps.hasTargetApps) {
			continue
		}
		b, first = w.key(b, ps.name, first)
		b = append(b, '{')
		for i, p := range ps.params {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, p.name)
			b = append(b, ':', '{')
			for j, f := range p.fields {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, f.key)
				b = append(b, ':')
				if f.key == p.refKey {
					if s, ok := jsonString(f.raw); ok {
						b = w.appendName(b, s)
						continue
					}
				}
				b = append(b, f.raw...)
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	b = append(b, `},"time":`...)
	b = strconv.AppendInt(b, rs.time, 10)
	b = append(b, `,"has_updates":true,"hash_used":`...)
	b = appendJSONString(b, string(hash))
	b = append(b, `,"user":`...)
	b = u.appendLoggable(b, e.envRaw)
	b = append(b, `,"sdkParams":{},"evaluated_keys":{`...)
	comma := false
	if u.userID != nil && u.userID.hasStr && u.userID.str != "" {
		b = append(b, `"userID":`...)
		b = appendJSONString(b, u.userID.str)
		comma = true
	}
	if len(u.customIDs) > 0 {
		if comma {
			b = append(b, ',')
		}
		b = append(b, `"customIDs":{`...)
		for i, k := range u.customIDKeys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, u.customIDs[k].str)
		}
		b = append(b, '}')
	}
	b = append(b, `},"sdkInfo":{"sdkType":"sigedge","sdkVersion":`...)
	ver := opts.SDKVersion
	if ver == "" {
		ver = "dev"
	}
	b = appendJSONString(b, ver)
	b = append(b, '}')
	if u.hasPAHash {
		b = append(b, `,"pa_hash":`...)
		b = appendJSONString(b, u.paHash)
	}
	if sr := rs.sessionReplay; sr != nil {
		b = w.appendSessionReplay(b, c, sr)
	}
	b = append(b, '}')
	e.gcirSize.Store(int64(len(b) - start))
	return b, nil
}

// failedInitResponse is what SC answers when evaluating some entry fails
// (the nesting limit): no entries, time 0, has_updates false, and the user.
func (e *Evaluator) failedInitResponse(dst []byte, u *User) []byte {
	b := append(dst, `{"feature_gates":{},"dynamic_configs":{},"layer_configs":{},"param_stores":{},"time":0,"has_updates":false,"hash_used":"","user":`...)
	b = u.appendLoggable(b, e.envRaw)
	b = append(b, `,"sdkParams":{},"evaluated_keys":{},"sdkInfo":{}`...)
	if u.hasPAHash {
		b = append(b, `,"pa_hash":`...)
		b = appendJSONString(b, u.paHash)
	}
	return append(b, '}')
}

type gcirWriter struct {
	hash HashAlgorithm
	seen map[SecondaryExposure]struct{} // for long exposure lists only
}

// appendName appends HashName(name) as a JSON string without building the
// hashed name as a string first.
func (w *gcirWriter) appendName(b []byte, name string) []byte {
	switch w.hash {
	case HashDJB2:
		b = append(b, '"')
		b = strconv.AppendUint(b, uint64(djb2(name)), 10)
		return append(b, '"')
	case HashSHA256:
		sum := sha256.Sum256([]byte(name))
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, sum[:])
		return append(b, '"')
	}
	return appendJSONString(b, name)
}

func (w *gcirWriter) key(b []byte, name string, first bool) ([]byte, bool) {
	if !first {
		b = append(b, ',')
	}
	b = w.appendName(b, name)
	return append(b, ':'), false
}

// common writes rule_id, id_type and secondary_exposures.
func (w *gcirWriter) common(b []byte, st *state) []byte {
	b = append(b, `,"rule_id":`...)
	b = appendJSONString(b, st.reportedRuleID())
	b = append(b, `,"id_type":`...)
	b = appendJSONString(b, st.idType)
	b = append(b, `,"secondary_exposures":`...)
	return w.exposures(b, st.exps)
}

// exposures writes a de-duplicated (first occurrence kept) list with hashed gate names.
func (w *gcirWriter) exposures(b []byte, list []SecondaryExposure) []byte {
	// Short lists (the usual) are checked by scanning what came before; a
	// map pays off only for long ones.
	useMap := len(list) > 16
	if useMap {
		if w.seen == nil {
			w.seen = map[SecondaryExposure]struct{}{}
		}
		clear(w.seen)
	}
	b = append(b, '[')
	n := 0
	for i, x := range list {
		if useMap {
			if _, dup := w.seen[x]; dup {
				continue
			}
			w.seen[x] = struct{}{}
		} else if slices.Contains(list[:i], x) {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, `{"gate":`...)
		b = w.appendName(b, x.Gate)
		b = append(b, `,"gateValue":`...)
		if x.GateValue {
			b = append(b, `"true"`...)
		} else {
			b = append(b, `"false"`...)
		}
		b = append(b, `,"ruleID":`...)
		b = appendJSONString(b, x.RuleID)
		b = append(b, '}')
	}
	return append(b, ']')
}

// appendRawValue writes a result's JSON as SC's initialize response does:
// objects and booleans as they are (a leaked gate value stays false), null
// when the result has none or it is null, and {} for any other JSON (SC
// keeps a returnable as a boolean or an object only).
func appendRawValue(b, raw []byte, ok bool) []byte {
	switch {
	case !ok || len(raw) == 0 || string(raw) == "null":
		return append(b, "null"...)
	case raw[0] == '{' || string(raw) == "true" || string(raw) == "false":
		return append(b, raw...)
	}
	return append(b, "{}"...)
}

func appendStringList(b []byte, list []string) []byte {
	b = append(b, '[')
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}
