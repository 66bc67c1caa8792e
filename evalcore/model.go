package evalcore

import (
	"regexp"

	"github.com/sigedge/sigedge/evalcore/internal/sha256x"
)

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
	refIdx          int32 // index in RuleSet.gateRefs for gates (-1 otherwise)
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
	name           string
	id             string
	salt           string
	hasSalt        bool
	passPercentage float64
	returnValue    []byte       // compact JSON
	returnIsFalse  bool         // returnValue is the JSON boolean false
	conds          []*condition // a nil entry is a key missing from condition_map
	unit           unitRef
	// passPrefix is "specSalt.ruleSalt", the fixed part of the pass-percentage
	// hash input, with its id in the per-context hash memo (-1: not memoised,
	// e.g. override rules, whose spec salt is only known at evaluation).
	passPrefix        sha256x.Prefix
	passPrefixID      int32
	groupName         string
	hasGroup          bool
	configDelegate    string
	hasDelegate       bool
	delegateSpec      *spec // configs[configDelegate], resolved at compile time
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
	typ      condType
	op       opType
	hasOp    bool
	target   target
	field    fieldRef
	hasField bool
	unit     unitRef
	salt     string         // additionalValues.salt, "" when absent
	saltHash sha256x.Prefix // user_bucket: salt prepared for hashing
	saltID   int32          // user_bucket: id of salt in the per-context hash memo
	uaIndex  int8           // ua_based: which parsed part the field names (-1: none)
	// pass_gate / fail_gate: the gate name ("" when the target is not a
	// string), its index in RuleSet.gateRefs (-1 for ""), and whether it is
	// a segment (segments leave no secondary exposure).
	gateName  string
	gateRef   int32
	isSegment bool
}

// fieldRef is a condition field resolved at compile time, so evaluation does
// not switch on strings: top is the top-level user field its lower-cased name
// selects, fallback the field an alias (user_id, ...) falls back to.
type fieldRef struct {
	name, lower string
	same        bool // name == lower: one custom-map lookup is enough
	top         userField
	fallback    userField
}

// unitRef is an idType resolved at compile time.
type unitRef struct {
	idType, lower string
	isUserID      bool
	same          bool
}

// userField names a top-level StatsigUser string field.
type userField uint8

const (
	fieldNone userField = iota
	fieldUserID
	fieldEmail
	fieldIP
	fieldCountry
	fieldLocale
	fieldAppVersion
	fieldUserAgent
)

func newFieldRef(name string) fieldRef {
	f := fieldRef{name: name, lower: lowerString(name)}
	f.same = f.name == f.lower
	switch f.lower {
	case "userid":
		f.top = fieldUserID
	case "email":
		f.top = fieldEmail
	case "ip":
		f.top = fieldIP
	case "country":
		f.top = fieldCountry
	case "locale":
		f.top = fieldLocale
	case "appversion":
		f.top = fieldAppVersion
	case "useragent":
		f.top = fieldUserAgent
	case "user_id":
		f.fallback = fieldUserID
	case "app_version":
		f.fallback = fieldAppVersion
	case "user_agent":
		f.fallback = fieldUserAgent
	}
	return f
}

func newUnitRef(idType string) unitRef {
	u := unitRef{idType: idType, lower: lowerString(idType)}
	u.isUserID = u.lower == "userid"
	u.same = u.idType == u.lower
	return u
}

// uaIndex maps a lower-cased ua_based field to the parsed part it reads.
func uaIndex(lower string) int8 {
	switch lower {
	case "os_name", "osname":
		return 0
	case "os_version", "osversion":
		return 1
	case "browser_name", "browsername":
		return 2
	case "browser_version", "browserversion":
		return 3
	}
	return -1
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
	// buckets, for user_bucket any/none with an array or object target: bit i
	// is set when the target holds the key "i" (a bucket's string view), so
	// the check is a bit test instead of a map lookup on a formatted number.
	buckets *[16]uint64
}

// smallSet is the size up to which an any/none lookup scans lowers instead
// of hashing into set: comparing a few short strings is cheaper.
const smallSet = 8

// matcher is a compiled str_matches pattern.
type matcher interface {
	MatchString(s string) bool
}

var _ matcher = (*regexp.Regexp)(nil)
