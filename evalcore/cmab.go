package evalcore

import (
	"encoding/json"

	"github.com/sigedge/sigedge/evalcore/internal/sha256x"
)

// cmabConfig is a contextual-bandit config (cmab_configs entry).
type cmabConfig struct {
	name          string
	salt          string
	saltHash      sha256x.Prefix
	idType        string
	unit          unitRef
	enabled       bool
	defaultValue  []byte
	groups        []cmabGroup
	hasConfig     bool
	sampleRate    float64
	targetingGate string
	hasTargeting  bool
	targetAppIDs  []string
	hasTargetApps bool
	version       uint32
	hasVersion    bool
}

type cmabGroup struct {
	name, id  string
	exploreID string // id + ":explore", built once so results share it
	value     []byte
}

func (c *compiler) compileCMABs(raw json.RawMessage) {
	if raw == nil || isNull(raw) {
		return
	}
	m, err := decodeObject(raw)
	if err != nil {
		c.problem("cmab_configs", "", "not an object")
		return
	}
	c.rs.cmabs = map[string]*cmabConfig{}
	for name, craw := range m {
		f, err := decodeObject(craw)
		if err != nil {
			c.problem("cmab_configs", name, "not an object")
			continue
		}
		cm := &cmabConfig{name: name}
		cm.salt, _ = jsonString(f["salt"])
		cm.saltHash = sha256x.New(cm.salt)
		cm.idType, _ = jsonString(f["idType"])
		cm.unit = newUnitRef(cm.idType)
		cm.enabled, _ = jsonBool(f["enabled"])
		cm.defaultValue = []byte("{}")
		if dv, ok := f["defaultValue"]; ok {
			cm.defaultValue = compactJSON(dv)
		}
		if sr, ok := jsonNumber(f["sampleRate"]); ok {
			cm.sampleRate = sr
		}
		cm.hasConfig = f["config"] != nil && !isNull(f["config"])
		cm.targetingGate, cm.hasTargeting, _ = optString(f, "targetingGateName")
		cm.targetAppIDs, cm.hasTargetApps, _ = optStringList(f, "targetAppIDs")
		if v, ok := f["version"]; ok {
			if n, ok := jsonUint(v, 1<<32-1); ok {
				cm.version, cm.hasVersion = uint32(n), true
			}
		}
		var groups []struct {
			Name            string          `json:"name"`
			ID              string          `json:"id"`
			ParameterValues json.RawMessage `json:"parameterValues"`
		}
		_ = json.Unmarshal(f["groups"], &groups)
		for _, g := range groups {
			v := []byte("{}")
			if len(g.ParameterValues) > 0 {
				v = compactJSON(g.ParameterValues)
			}
			cm.groups = append(cm.groups, cmabGroup{name: g.Name, id: g.ID, exploreID: g.ID + ":explore", value: v})
		}
		c.rs.cmabs[name] = cm
	}
	c.rs.cmabNames = sortedKeys(c.rs.cmabs)
}

// evaluateCMAB evaluates a contextual bandit as far as it is deterministic:
// not started → "prestart"; targeting gate; without a trained config the
// group is chosen by hash ("explore"). With a config SC picks by weights or at
// random; evalcore then uses the same hash-based exploration. Like SC it
// reports the result active exactly when the bandit is enabled, whatever an
// experiment spec of the same name says, and sets that last: a matching
// targeting gate would have reset it. The id type and version are the
// bandit's, set (as in SC) after the targeting gate, which may have reset the
// whole result through a config mapping.
func (c *evalCtx) evaluateCMAB(name string, cm *cmabConfig) {
	st := &c.st
	if !st.hasName {
		st.name, st.hasName = name, true
	}
	identity := func() {
		st.idType, st.hasIDType = cm.idType, true
		if cm.hasVersion {
			st.version, st.hasVersion = cm.version, true
		}
	}
	if !cm.enabled || len(cm.groups) == 0 {
		identity()
		st.ruleID, st.hasRule = "prestart", true
		st.json, st.hasJSON = cm.defaultValue, true
		st.boolValue = false
		st.isExperimentActive = cm.enabled
		return
	}
	if cm.hasTargeting {
		// SC takes a targeting gate that cannot be evaluated (the nesting
		// limit) as failed: no exposure when the limit is reached right here,
		// one with the value false after a deeper failure.
		passes := false
		if c.prepNested() {
			c.evaluate(cm.targetingGate, typeGate)
			passes = st.err == nil && st.boolValue
			st.err = nil
			if len(cm.targetingGate) < 8 || cm.targetingGate[:8] != "segment:" {
				st.exps = append(st.exps, SecondaryExposure{Gate: cm.targetingGate, GateValue: passes, RuleID: st.ruleID})
			}
		}
		st.err = nil
		if !passes {
			identity()
			st.ruleID, st.hasRule = "inlineTargetingRules", true
			st.json, st.hasJSON = cm.defaultValue, true
			st.boolValue = false
			st.isExperimentActive = cm.enabled
			return
		}
	}
	identity()
	h := cm.saltHash.Sum64(c.u.unitString(&cm.unit)) % 10000
	idx := int(float64(h) / (10000.0 / float64(len(cm.groups))))
	if idx >= len(cm.groups) {
		idx = len(cm.groups) - 1
	}
	g := cm.groups[idx]
	st.ruleID, st.hasRule = g.id, true
	st.ruleSuffix, st.suffixBase, st.suffixFull = ":explore", g.id, g.exploreID
	st.groupName, st.hasGroup = g.name, true
	st.json, st.hasJSON = g.value, true
	st.boolValue = true
	st.isExperimentActive = cm.enabled
}
