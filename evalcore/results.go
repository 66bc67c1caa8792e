package evalcore

import "encoding/json"

// Reason says how an evaluation was answered.
type Reason string

// Evaluation reasons (SC's EvaluationDetails reason after the source prefix).
const (
	ReasonRecognized   Reason = "Recognized"
	ReasonUnrecognized Reason = "Unrecognized"
	ReasonUnsupported  Reason = "Unsupported"
	ReasonError        Reason = "Error"
)

// SecondaryExposure is one nested gate an evaluation went through.
type SecondaryExposure struct {
	Gate      string
	GateValue bool
	RuleID    string
}

// Evaluation holds what every kind of result carries.
type Evaluation struct {
	Name   string
	RuleID string
	// IDType is the unit type the result reports (the top-level spec's idType).
	IDType string
	// GroupName is the experiment group ("" when none).
	GroupName string
	// SecondaryExposures are the nested gates, in evaluation order, repeats
	// kept (as SC logs them). The list may be shared with other results of
	// the same Evaluator (that is how results avoid allocating): read-only.
	// Its capacity equals its length, so appending to it makes a copy.
	SecondaryExposures []SecondaryExposure
	// UndelegatedSecondaryExposures are the exposures before delegation (layers),
	// or all exposures for non-delegated results. Shared and read-only, like
	// SecondaryExposures.
	UndelegatedSecondaryExposures []SecondaryExposure
	Reason                        Reason
	// Err is set when Reason is ReasonError (e.g. the nesting limit).
	Err error

	Version                uint32
	HasVersion             bool
	SamplingRate           uint64
	HasSamplingRate        bool
	ForwardAllExposures    bool
	HasSeenAnalyticalGates bool
	// OverrideConfigName is set when config mapping redirected the evaluation.
	OverrideConfigName string
}

// GateResult is the result of a feature gate check.
type GateResult struct {
	Evaluation
	Value bool
}

// ConfigResult is the result of a dynamic config or experiment.
type ConfigResult struct {
	Evaluation
	// Value is the config's JSON object. It may share memory with the RuleSet:
	// callers must not modify it.
	Value json.RawMessage
	// RulePassed reports whether a rule passed its pass percentage.
	RulePassed bool
	// Experiment is true when the result was read as an experiment.
	Experiment         bool
	Entity             string
	IsExperimentActive bool
	IsUserInExperiment bool
	IsInLayer          bool
	IsDeviceBased      bool
	ExplicitParameters []string
	HasExplicit        bool
}

// LayerResult is the result of a layer.
type LayerResult struct {
	Evaluation
	// Value is the layer's full parameter object (shared memory, read-only).
	Value json.RawMessage
	// AllocatedExperiment is the experiment the layer delegated to ("" when none).
	AllocatedExperiment string
	ExplicitParameters  []string
	IsExperimentActive  bool
	IsUserInExperiment  bool
	IsDeviceBased       bool
	// ParameterRuleIDs maps parameter → rule id (useNewLayerEval layers only).
	ParameterRuleIDs map[string]string
}

var emptyObject = json.RawMessage("{}")
