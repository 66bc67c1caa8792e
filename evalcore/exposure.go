package evalcore

import (
	"slices"
	"strconv"
)

// Exposure event names.
const (
	GateExposureEvent   = "statsig::gate_exposure"
	ConfigExposureEvent = "statsig::config_exposure"
	LayerExposureEvent  = "statsig::layer_exposure"
)

// ExposureOptions carries what an exposure event needs besides the result.
type ExposureOptions struct {
	// Source prefixes the reason ("Network:Recognized"); "" means "Network".
	Source string
	// Time is the event time in ms since epoch; 0 means the evaluator's clock.
	Time int64
	// ReceivedAt is when the rule set was received (ms); 0 leaves it out.
	ReceivedAt int64
	// Manual marks a manual exposure (metadata isManualExposure: "true").
	Manual bool
}

// AppendGateExposure appends one statsig::gate_exposure event (a JSON object) for r.
func (e *Evaluator) AppendGateExposure(dst []byte, u *User, r *GateResult, opts ExposureOptions) []byte {
	dst = e.eventStart(dst, GateExposureEvent)
	dst = append(dst, `"gate":`...)
	dst = appendJSONString(dst, r.Name)
	dst = append(dst, `,"gateValue":`...)
	dst = appendBoolString(dst, r.Value)
	dst = append(dst, `,"ruleID":`...)
	dst = appendJSONString(dst, r.RuleID)
	dst = e.commonMetadata(dst, &r.Evaluation, opts)
	return e.eventEnd(dst, u, r.SecondaryExposures, opts)
}

// AppendConfigExposure appends one statsig::config_exposure event for a
// dynamic config or experiment result (rulePassed only for dynamic configs, as SC).
func (e *Evaluator) AppendConfigExposure(dst []byte, u *User, r *ConfigResult, opts ExposureOptions) []byte {
	dst = e.eventStart(dst, ConfigExposureEvent)
	dst = append(dst, `"config":`...)
	dst = appendJSONString(dst, r.Name)
	dst = append(dst, `,"ruleID":`...)
	dst = appendJSONString(dst, r.RuleID)
	if !r.Experiment {
		dst = append(dst, `,"rulePassed":`...)
		dst = appendBoolString(dst, r.RulePassed)
	}
	dst = e.commonMetadata(dst, &r.Evaluation, opts)
	return e.eventEnd(dst, u, r.SecondaryExposures, opts)
}

// AppendLayerExposure appends one statsig::layer_exposure event for a layer
// parameter. Callers log it only when the parameter exists (and, like SC,
// has the type the caller asked for).
func (e *Evaluator) AppendLayerExposure(dst []byte, u *User, r *LayerResult, param string, opts ExposureOptions) []byte {
	explicit := slices.Contains(r.ExplicitParameters, param)
	ruleID := r.RuleID
	if id, ok := r.ParameterRuleIDs[param]; ok {
		ruleID = id
	}
	dst = e.eventStart(dst, LayerExposureEvent)
	dst = append(dst, `"config":`...)
	dst = appendJSONString(dst, r.Name)
	dst = append(dst, `,"ruleID":`...)
	dst = appendJSONString(dst, ruleID)
	dst = append(dst, `,"allocatedExperiment":`...)
	if explicit {
		dst = appendJSONString(dst, r.AllocatedExperiment)
	} else {
		dst = append(dst, `""`...)
	}
	dst = append(dst, `,"parameterName":`...)
	dst = appendJSONString(dst, param)
	dst = append(dst, `,"isExplicitParameter":`...)
	dst = appendBoolString(dst, explicit)
	dst = e.commonMetadata(dst, &r.Evaluation, opts)
	exps := r.UndelegatedSecondaryExposures
	if explicit {
		exps = r.SecondaryExposures
	}
	return e.eventEnd(dst, u, exps, opts)
}

func (e *Evaluator) eventStart(dst []byte, name string) []byte {
	dst = append(dst, `{"eventName":`...)
	dst = appendJSONString(dst, name)
	return append(dst, `,"value":null,"metadata":{`...)
}

func (e *Evaluator) commonMetadata(dst []byte, ev *Evaluation, opts ExposureOptions) []byte {
	src := opts.Source
	if src == "" {
		src = "Network"
	}
	dst = append(dst, `,"reason":`...)
	if ev.Reason == ReasonError && ev.Err != nil {
		dst = appendJSONString(dst, "Error:"+ev.Err.Error())
	} else {
		dst = appendJSONString(dst, src+":"+string(ev.Reason))
	}
	dst = append(dst, `,"lcut":"`...)
	dst = strconv.AppendInt(dst, e.rs.time, 10)
	dst = append(dst, '"')
	if opts.ReceivedAt != 0 {
		dst = append(dst, `,"receivedAt":"`...)
		dst = strconv.AppendInt(dst, opts.ReceivedAt, 10)
		dst = append(dst, '"')
	}
	if ev.HasVersion {
		dst = append(dst, `,"configVersion":"`...)
		dst = strconv.AppendUint(dst, uint64(ev.Version), 10)
		dst = append(dst, '"')
	}
	if ev.OverrideConfigName != "" {
		dst = append(dst, `,"overrideConfigName":`...)
		dst = appendJSONString(dst, ev.OverrideConfigName)
	}
	if opts.Manual {
		dst = append(dst, `,"isManualExposure":"true"`...)
	}
	return dst
}

func (e *Evaluator) eventEnd(dst []byte, u *User, exps []SecondaryExposure, opts ExposureOptions) []byte {
	dst = append(dst, `},"user":`...)
	dst = u.appendLoggable(dst, e.envRaw)
	t := opts.Time
	if t == 0 {
		t = e.now()
	}
	dst = append(dst, `,"time":`...)
	dst = strconv.AppendInt(dst, t, 10)
	dst = append(dst, `,"secondaryExposures":[`...)
	for i, x := range exps {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"gate":`...)
		dst = appendJSONString(dst, x.Gate)
		dst = append(dst, `,"gateValue":`...)
		dst = appendBoolString(dst, x.GateValue)
		dst = append(dst, `,"ruleID":`...)
		dst = appendJSONString(dst, x.RuleID)
		dst = append(dst, '}')
	}
	return append(dst, ']', '}')
}

func appendBoolString(dst []byte, b bool) []byte {
	if b {
		return append(dst, `"true"`...)
	}
	return append(dst, `"false"`...)
}
