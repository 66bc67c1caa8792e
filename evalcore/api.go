package evalcore

import (
	"bytes"
	"encoding/json"
)

// CheckGate evaluates a feature gate (segments and holdouts too).
func (e *Evaluator) CheckGate(u *User, name string) GateResult {
	c := e.getCtx(u)
	defer e.putCtx(c)
	rec := c.evaluateSpec(name, typeGate, e.rs.gates[name])
	var r GateResult
	c.fillEvaluation(&r.Evaluation, name, rec)
	if r.Reason != ReasonError {
		r.Value = c.st.boolValue
	}
	return r
}

// GateValue is CheckGate's value alone, without building a result: the
// cheapest call (no allocations).
func (e *Evaluator) GateValue(u *User, name string) bool {
	c := e.getCtx(u)
	defer e.putCtx(c)
	c.evaluateSpec(name, typeGate, e.rs.gates[name])
	return c.st.err == nil && c.st.boolValue
}

// GetDynamicConfig evaluates a dynamic_configs entry read as a dynamic config.
func (e *Evaluator) GetDynamicConfig(u *User, name string) ConfigResult {
	return e.config(u, name, typeDynamicConfig, e.rs.configs[name])
}

// GetExperiment evaluates a dynamic_configs entry read as an experiment.
func (e *Evaluator) GetExperiment(u *User, name string) ConfigResult {
	return e.config(u, name, typeExperiment, e.rs.configs[name])
}

// GetConfig evaluates a dynamic_configs entry the way its entity suggests:
// experiments (and bandits) as experiments, everything else as a dynamic
// config.
func (e *Evaluator) GetConfig(u *User, name string) ConfigResult {
	sp := e.rs.configs[name]
	// A contextual bandit with no spec of its name is read as the experiment
	// it stands for.
	if sp != nil && sp.entity == "experiment" || sp == nil && e.rs.cmabs[name] != nil {
		return e.config(u, name, typeExperiment, sp)
	}
	return e.config(u, name, typeDynamicConfig, sp)
}

// config evaluates a dynamic_configs entry; sp is configs[name].
func (e *Evaluator) config(u *User, name string, t specType, sp *spec) ConfigResult {
	c := e.getCtx(u)
	defer e.putCtx(c)
	rec := c.evaluateSpec(name, t, sp)
	var r ConfigResult
	c.fillEvaluation(&r.Evaluation, name, rec)
	r.Experiment = t == typeExperiment
	r.Value = emptyObject
	if sp != nil {
		r.Entity = sp.entity
	}
	if r.Reason == ReasonError {
		return r
	}
	st := &c.st
	r.Value = objectOrEmpty(st.json, st.hasJSON)
	r.RulePassed = st.boolValue
	r.IsExperimentActive = st.isExperimentActive
	r.IsUserInExperiment = st.isExperimentGroup
	r.IsInLayer = st.isInLayer
	r.IsDeviceBased = r.IDType == "stableID" || r.IDType == "stableid"
	if st.hasExplicit {
		r.ExplicitParameters, r.HasExplicit = st.explicit, true
	}
	return r
}

// GetLayer evaluates a layer.
func (e *Evaluator) GetLayer(u *User, name string) LayerResult {
	c := e.getCtx(u)
	defer e.putCtx(c)
	sp := e.rs.layers[name]
	rec := c.evaluateSpec(name, typeLayer, sp)
	var r LayerResult
	c.fillEvaluation(&r.Evaluation, name, rec)
	r.Value = emptyObject
	if r.Reason == ReasonError {
		return r
	}
	st := &c.st
	r.Value = objectOrEmpty(st.json, st.hasJSON)
	if st.hasDelegate {
		r.AllocatedExperiment = st.delegate
	}
	r.ExplicitParameters = st.explicit
	r.IsExperimentActive = st.isExperimentActive
	r.IsUserInExperiment = st.isExperimentGroup
	r.IsDeviceBased = r.IDType == "stableID" || r.IDType == "stableid"
	r.ParameterRuleIDs = st.paramRuleIDs
	if rec && st.err == nil && !st.unsupported && len(st.exps) > 0 && !st.hasUndelegated {
		// An unknown nested gate left SC's nesting count raised, so no
		// undelegated exposures were recorded. The reference's initialize
		// response evaluates layers after gates and configs with a shared
		// memo that usually avoids this; take the undelegated exposures
		// from a layer evaluation done that way.
		c2 := e.getCtx(u)
		defer e.putCtx(c2)
		c2.premMemo()
		c2.resetResult()
		c2.evaluateSpec(name, typeLayer, sp)
		if c2.st.hasUndelegated {
			r.UndelegatedSecondaryExposures = e.exps.intern(c2.st.undelegated)
		}
	}
	return r
}

// premMemo fills the nested-gate memo the way a client initialize response
// does before it reaches layers: every gate (not segments or holdouts), then
// every dynamic config.
func (c *evalCtx) premMemo() {
	for _, name := range c.rs.gateNames {
		if sp := c.rs.gates[name]; sp.entity != "segment" && sp.entity != "holdout" {
			c.resetResult()
			c.evaluate(name, typeGate)
		}
	}
	for _, name := range c.rs.configNames {
		t := typeExperiment
		if c.rs.configs[name].entity == "dynamic_config" {
			t = typeDynamicConfig
		}
		c.resetResult()
		c.evaluate(name, t)
	}
}

func (c *evalCtx) fillEvaluation(ev *Evaluation, name string, recognized bool) {
	st := &c.st
	ev.Name = name
	switch {
	case st.err != nil:
		ev.Reason, ev.Err = ReasonError, st.err
		return
	case !recognized:
		ev.Reason = ReasonUnrecognized
		return
	case st.unsupported:
		ev.Reason = ReasonUnsupported
	default:
		ev.Reason = ReasonRecognized
	}
	if st.hasRule {
		ev.RuleID = st.reportedRuleID()
	}
	ev.IDType = st.idType
	if st.hasGroup {
		ev.GroupName = st.groupName
	}
	ev.SecondaryExposures = c.e.exps.intern(st.exps)
	if st.hasUndelegated {
		ev.UndelegatedSecondaryExposures = c.e.exps.intern(st.undelegated)
	}
	ev.Version, ev.HasVersion = st.version, st.hasVersion
	ev.SamplingRate, ev.HasSamplingRate = st.samplingRate, st.hasSampling
	ev.ForwardAllExposures = st.forwardAll.val()
	ev.HasSeenAnalyticalGates = st.analytical
	if st.hasOverrideName {
		ev.OverrideConfigName = st.overrideName
	}
}

// objectOrEmpty returns raw when it is a JSON object, else {}.
func objectOrEmpty(raw []byte, ok bool) json.RawMessage {
	if ok && len(raw) > 0 && raw[0] == '{' {
		return raw
	}
	return emptyObject
}

// newLayerEval is SC's "new layer evaluation" (layer flag useNewLayerEval):
// several rules may contribute parameters, first writer wins.
func (c *evalCtx) newLayerEval(sp *spec) {
	st := &c.st
	var (
		values      = newOrderedObject()
		ruleIDs     = map[string]string{}
		passed      bool
		ruleID      = "default"
		delegate    string
		hasDelegate bool
		group       string
		hasGroup    bool
		isExpGroup  bool
		explicit    []string
		hasExplicit bool
		hasPassed   bool
		secondary   []SecondaryExposure
	)
	// SC collects exposures rule by rule: what the shared result holds is
	// moved to the layer's list after each rule's conditions, and after a
	// delegate whose value is used. A delegate passed over leaves its
	// exposures pending: the next rule's move picks them up, and after the
	// last rule they are dropped.
	base := len(st.exps)
	drain := func() {
		secondary = append(secondary, st.exps[base:]...)
		st.exps = st.exps[:base]
	}
	for _, r := range sp.rules {
		c.evaluateRule(r)
		if st.err != nil {
			return
		}
		drain()
		if st.unsupported {
			return
		}
		if !st.boolValue {
			continue
		}
		if !c.passPercentage(r, sp.salt) {
			continue
		}
		if c.evaluateDelegate(r) {
			if st.err != nil {
				return
			}
			// A delegate without a value (unsupported) is passed over; the
			// unsupported flag stays, so the next rule ends the evaluation
			// with the result as it then is.
			if hasPassed || !st.hasJSON {
				continue
			}
			// a value that is not an object contributes no parameter
			obj := newOrderedObject()
			if st.hasJSON && len(st.json) > 0 && st.json[0] == '{' {
				obj = parseOrderedObject(st.json)
			}
			if values.sharesKey(obj) {
				continue
			}
			values.merge(obj, r.id, ruleIDs)
			drain()
			passed = st.boolValue
			delegate, hasDelegate = st.delegate, st.hasDelegate
			group, hasGroup = st.groupName, st.hasGroup
			ruleID = r.id
			isExpGroup = r.isExperimentGroup.val()
			explicit, hasExplicit = st.explicit, st.hasExplicit
		} else {
			if st.err != nil {
				return
			}
			passed = true
			if len(r.returnValue) > 0 && r.returnValue[0] == '{' {
				values.merge(parseOrderedObject(r.returnValue), r.id, ruleIDs)
			}
		}
		hasPassed = true
	}
	if len(sp.defaultValue) > 0 && sp.defaultValue[0] == '{' {
		values.merge(parseOrderedObject(sp.defaultValue), "default", ruleIDs)
	}
	st.boolValue = passed
	st.delegate, st.hasDelegate = delegate, hasDelegate
	st.groupName, st.hasGroup = group, hasGroup
	st.ruleID, st.hasRule = ruleID, true
	st.json, st.hasJSON = values.bytes(), true
	st.isExperimentGroup = isExpGroup
	st.isExperimentActive = sp.isActive.val()
	st.explicit, st.hasExplicit = explicit, hasExplicit
	st.exps = append(st.exps[:0], secondary...)
	// The reference (statsig-node-core 0.23.2) leaves the undelegated list
	// of a new-style layer empty, whatever its rules saw.
	st.undelegated = st.undelegated[:0]
	st.hasUndelegated = true
	st.paramRuleIDs = ruleIDs
	c.finalize(sp, nil)
}

type orderedObject struct {
	keys []string
	vals map[string]json.RawMessage
}

func newOrderedObject() *orderedObject {
	return &orderedObject{vals: map[string]json.RawMessage{}}
}

func parseOrderedObject(raw []byte) *orderedObject {
	o := newOrderedObject()
	d := json.NewDecoder(bytes.NewReader(raw))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return o
	}
	for d.More() {
		t, err := d.Token()
		if err != nil {
			return o
		}
		k, _ := t.(string)
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return o
		}
		if _, dup := o.vals[k]; !dup {
			o.keys = append(o.keys, k)
		}
		o.vals[k] = v
	}
	return o
}

func (o *orderedObject) sharesKey(other *orderedObject) bool {
	for _, k := range other.keys {
		if _, ok := o.vals[k]; ok {
			return true
		}
	}
	return false
}

func (o *orderedObject) merge(other *orderedObject, ruleID string, ruleIDs map[string]string) {
	for _, k := range other.keys {
		if _, ok := o.vals[k]; ok {
			continue
		}
		o.keys = append(o.keys, k)
		o.vals[k] = other.vals[k]
		ruleIDs[k] = ruleID
	}
}

func (o *orderedObject) bytes() []byte {
	b := []byte{'{'}
	for i, k := range o.keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = append(b, o.vals[k]...)
	}
	return append(b, '}')
}
