package evalcore

import "regexp"

// section says which map of the rule set a spec lives in.
type section uint8

const (
	sectionGate section = iota
	sectionConfig
	sectionLayer
)

// optBool is a JSON boolean that may be absent (or null).
type optBool uint8

const (
	optUnset optBool = iota
	optFalse
	optTrue
)

func (o optBool) set() bool { return o != optUnset }
func (o optBool) val() bool { return o == optTrue }

// spec is one compiled gate, dynamic config, experiment or layer.
type spec struct {
	name            string
	section         section
	typ             string
	entity          string
	salt            string
	enabled         bool
	defaultValue    []byte // compact JSON
	defaultIsTrue   bool   // defaultValue is the JSON boolean true
	rules           []*rule
	idType          string
	isDeviceBased   bool
	isActive        optBool
	hasSharedParams optBool
	explicitParams  []string
	hasExplicit     bool
	targetAppIDs    []string
	hasTargetApps   bool
	version         uint32
	hasVersion      bool
	forwardAll      optBool
	useNewLayerEval bool
}

// rule is one compiled rule of a spec (or of override_rules).
type rule struct {
	name              string
	id                string
	salt              string
	hasSalt           bool
	passPercentage    float64
	returnValue       []byte       // compact JSON
	returnIsFalse     bool         // returnValue is the JSON boolean false
	conds             []*condition // a nil entry is a key missing from condition_map
	idType            string
	idTypeLower       string
	groupName         string
	hasGroup          bool
	configDelegate    string
	hasDelegate       bool
	isExperimentGroup optBool
	samplingRate      uint64
	hasSamplingRate   bool
}

type condType uint8

const (
	condUnknown condType = iota
	condPublic
	condPassGate
	condFailGate
	condUserField
	condIPBased
	condUABased
	condEnvironment
	condCurrentTime
	condUserBucket
	condUnitID
	condTargetApp
	condExperimentGroup
)

var condTypes = map[string]condType{
	"public": condPublic, "pass_gate": condPassGate, "fail_gate": condFailGate,
	"user_field": condUserField, "ip_based": condIPBased, "ua_based": condUABased,
	"environment_field": condEnvironment, "current_time": condCurrentTime,
	"user_bucket": condUserBucket, "unit_id": condUnitID, "target_app": condTargetApp,
	"experiment_group": condExperimentGroup,
}

type opType uint8

const (
	opUnknown opType = iota
	opGT
	opGTE
	opLT
	opLTE
	opVersionGT
	opVersionGTE
	opVersionLT
	opVersionLTE
	opVersionEQ
	opVersionNEQ
	opAny
	opNone
	opAnyCS
	opNoneCS
	opStartsWith
	opEndsWith
	opContainsAny
	opContainsNone
	opMatches
	opBefore
	opAfter
	opOn
	opEQ
	opNEQ
	opInList
	opNotInList
	opArrayAny
	opArrayNone
	opArrayAll
	opNotArrayAll
)

var opTypes = map[string]opType{
	"gt": opGT, "gte": opGTE, "lt": opLT, "lte": opLTE,
	"version_gt": opVersionGT, "version_gte": opVersionGTE, "version_lt": opVersionLT,
	"version_lte": opVersionLTE, "version_eq": opVersionEQ, "version_neq": opVersionNEQ,
	"any": opAny, "none": opNone, "any_case_sensitive": opAnyCS, "none_case_sensitive": opNoneCS,
	"str_starts_with_any": opStartsWith, "str_ends_with_any": opEndsWith,
	"str_contains_any": opContainsAny, "str_contains_none": opContainsNone,
	"str_matches": opMatches, "before": opBefore, "after": opAfter, "on": opOn,
	"eq": opEQ, "neq": opNEQ, "in_segment_list": opInList, "not_in_segment_list": opNotInList,
	"array_contains_any": opArrayAny, "array_contains_none": opArrayNone,
	"array_contains_all": opArrayAll, "not_array_contains_all": opNotArrayAll,
}

// condition is one compiled condition.
type condition struct {
	typ        condType
	op         opType
	hasOp      bool
	target     target
	field      string
	fieldLower string
	hasField   bool
	idType     string
	idTypeLow  string
	salt       string // additionalValues.salt, "" when absent
}

// targetKind is the JSON type of a target value.
type targetKind uint8

const (
	targetNull targetKind = iota
	targetBool
	targetNumber
	targetString
	targetArray
	targetObject
)

// arrayEntry is one element of a target array, keyed by its lower-cased string.
type arrayEntry struct {
	index int
	str   string
}

// target is a pre-processed right-hand value (SC's MemoizedEvaluatorValue).
type target struct {
	kind   targetKind
	b      bool
	num    float64
	hasNum bool
	str    string
	hasStr bool
	ts     int64
	hasTS  bool
	re     matcher
	// array targets: lower-cased element → entry (later duplicates win), and
	// the entries in the map's iteration-independent order for scans.
	set     map[string]arrayEntry
	entries []arrayEntry // collapsed entries, each with its lower-cased key in lowers
	lowers  []string
	// object targets: key → value string.
	obj map[string]string
}

// matcher is a compiled str_matches pattern.
type matcher interface {
	MatchString(s string) bool
}

var _ matcher = (*regexp.Regexp)(nil)
