package evalcore

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigedge/sigedge/evalcore/internal/sha256x"
)

// maxNesting is SC's limit on nested evaluations (gates, delegates).
const maxNesting = 300

// errRecursion is the error of an evaluation stopped by maxDepth (where SC
// itself would overflow its stack). It is ErrNestingLimit to callers.
var errRecursion = fmt.Errorf("%w (recursion)", ErrNestingLimit)

// maxDepth bounds the actual recursion, which SC's count does not always
// (see evaluateSpec); SC's own limit is reached first in every evaluation it
// survives.
const maxDepth = 4 * maxNesting

// ErrNestingLimit is the error of an evaluation that nests more than 300 deep
// (e.g. a gate that references itself).
var ErrNestingLimit = errors.New("evalcore: StackOverflowError: maximum nesting depth (300) exceeded")

// CountryLookup maps an IPv4 address number to an ISO country code.
// *countrylookup.CountryLookup from github.com/statsig-io/ip3country-go satisfies it.
type CountryLookup interface {
	LookupNumericIp(ip uint64) (string, bool)
}

// IDLists answers ID-list membership: whether list contains key, where key is
// IDListKey(unit id). An unknown list contains nothing. Implementations must be
// safe for concurrent use and fast (evaluation calls it inline). *IDListStore
// is one.
type IDLists interface {
	Contains(list, key string) bool
}

// UserAgent is the parsed form of a user agent string.
type UserAgent struct {
	OSName, OSVersion, BrowserName, BrowserVersion string
}

// EvaluatorOptions configures an Evaluator. The zero value works: no
// environment, no country lookup, no ID lists, the real clock.
type EvaluatorOptions struct {
	// Environment is the instance environment (e.g. {"tier": "staging"}), used
	// for environment_field conditions when the user has no statsigEnvironment
	// entry. When empty, the rule set's default_environment is used as the tier.
	Environment map[string]string
	// Countries resolves ip_based "country" conditions; nil means no lookup.
	Countries CountryLookup
	// IDLists resolves in_segment_list conditions; nil means every list is empty.
	IDLists IDLists
	// Now is the clock for current_time conditions; nil means time.Now.
	Now func() time.Time
	// ParseUserAgent parses user agents for ua_based conditions; nil uses the
	// package's first-party parser (SC's).
	ParseUserAgent func(ua string) UserAgent
}

// Evaluator evaluates one RuleSet. It is safe for concurrent use.
type Evaluator struct {
	rs        *RuleSet
	opts      EvaluatorOptions
	defaultUA bool              // the package's parser: its results may be cached per user
	env       map[string]*value // instance environment, parsed
	envRaw    map[string]string
	buckets   []value // user_bucket values 0..999
	pool      sync.Pool
	exps      internTable  // shared, read-only exposure lists of results
	gcirSize  atomic.Int64 // length of the last initialize response, a size hint
}

// NewEvaluator builds an Evaluator for rs.
func NewEvaluator(rs *RuleSet, opts EvaluatorOptions) *Evaluator {
	e := &Evaluator{rs: rs, opts: opts}
	if opts.ParseUserAgent == nil {
		e.opts.ParseUserAgent = defaultUserAgentParser
		e.defaultUA = true
	}
	switch {
	case len(opts.Environment) > 0:
		e.envRaw = opts.Environment
	case rs.hasDefaultEnv:
		e.envRaw = map[string]string{"tier": rs.defaultEnv}
	}
	if e.envRaw != nil {
		e.env = make(map[string]*value, len(e.envRaw))
		for k, v := range e.envRaw {
			nv := newStringValue(v)
			e.env[k] = &nv
		}
	}
	e.buckets = make([]value, 1000)
	for i := range e.buckets {
		e.buckets[i] = newNumberValue(float64(i))
	}
	e.exps.init(len(rs.gates))
	e.pool.New = func() any {
		return &evalCtx{
			memo:  make([]memoEntry, len(rs.gateRefs)),
			hmemo: make([]hashMemo, rs.numPrefixes),
		}
	}
	return e
}

// RuleSet returns the rule set the evaluator evaluates.
func (e *Evaluator) RuleSet() *RuleSet { return e.rs }

func (e *Evaluator) now() int64 {
	if e.opts.Now != nil {
		return e.opts.Now().UnixMilli()
	}
	return time.Now().UnixMilli()
}

// memoEntry is one nested-gate memo slot, valid when epoch is the context's.
type memoEntry struct {
	epoch      uint32
	value      bool
	hasRule    bool
	ruleID     string
	start, end int32 // the gate's exposures in evalCtx.memoExp
}

// hashMemo is one hash memo slot: the hash of prefix "." unit for the
// context's epoch. Experiments hash the same salt and unit once per group
// rule, and initialize responses reach the same rules many times.
type hashMemo struct {
	epoch uint32
	unit  string
	h     uint64
}

// state mirrors SC's EvaluatorResult: one mutable result shared by nested
// evaluations (which is what makes SC's state-leak corner cases reproducible).
type state struct {
	boolValue          bool
	unsupported        bool
	isExperimentGroup  bool
	isExperimentActive bool
	isInLayer          bool
	hasName            bool
	hasIDType          bool
	hasJSON            bool
	hasRule            bool
	hasGroup           bool
	hasExplicit        bool
	hasDelegate        bool
	hasUndelegated     bool
	hasVersion         bool
	hasSampling        bool
	analytical         bool
	hasOverrideName    bool
	forwardAll         optBool
	name               string
	idType             string
	json               []byte
	ruleID             string
	groupName          string
	explicit           []string
	delegate           string
	version            uint32
	samplingRate       uint64
	overrideName       string
	// ruleSuffix is SC's rule_id_suffix (":explore", set by a bandit and
	// never cleared): reported rule ids carry it, exposures do not. A layer
	// that delegated to a bandit in the new layer evaluation thus reports
	// "<layer rule>:explore". suffixFull is suffixBase+ruleSuffix, built once.
	ruleSuffix, suffixBase, suffixFull string
	exps                               []SecondaryExposure
	undelegated                        []SecondaryExposure
	paramRuleIDs                       map[string]string
	err                                error
}

// reportedRuleID is the rule id a result reports: the rule id and SC's
// rule-id suffix.
func (st *state) reportedRuleID() string {
	switch {
	case st.ruleSuffix == "":
		return st.ruleID
	case st.ruleID == st.suffixBase:
		return st.suffixFull
	}
	return st.ruleID + st.ruleSuffix
}

// evalCtx is SC's EvaluatorContext: one top-level evaluation (or a whole
// GCIR). Contexts are pooled; per-evaluation memos are invalidated by bumping
// epoch rather than cleared.
type evalCtx struct {
	e      *Evaluator
	rs     *RuleSet
	u      *User
	now    int64
	hasNow bool
	appID  *value
	gcir   bool
	nested int
	depth  int // evaluateSpec calls in progress (SC's nested count can restart)
	epoch  uint32
	memo   []memoEntry // by RuleSet.gateRefs index
	hmemo  []hashMemo  // by hash prefix id
	st     state

	memoExp        []SecondaryExposure
	expBuf, undBuf []SecondaryExposure
	free           [][]SecondaryExposure

	uaDone      bool
	ua          *uaParts
	countryDone bool
	country     value
	hasCountry  bool
	appIDVal    value
	scratch     value
}

func (e *Evaluator) getCtx(u *User) *evalCtx {
	c := e.pool.Get().(*evalCtx)
	c.e, c.rs, c.u = e, e.rs, u
	c.hasNow = false
	c.depth = 0
	c.gcir = false
	c.appID = nil
	if e.rs.hasAppID {
		c.appID = &e.rs.appIDValue
	}
	c.epoch++
	if c.epoch == 0 {
		// Wrapped: stale slots could look current.
		clear(c.memo)
		clear(c.hmemo)
		c.epoch = 1
	}
	c.resetResult()
	return c
}

func (e *Evaluator) putCtx(c *evalCtx) {
	c.saveBuffers()
	c.memoExp = c.memoExp[:0]
	c.uaDone, c.countryDone, c.hasCountry = false, false, false
	c.ua = nil
	c.u = nil
	// c.st is reset by the next getCtx; what it still references belongs to
	// this evaluator's rule set, except the parameter map of a new-style layer.
	c.st.paramRuleIDs = nil
	e.pool.Put(c)
}

// nowMs is the evaluation's clock, read once per context and only when a
// condition or override needs it.
func (c *evalCtx) nowMs() int64 {
	if !c.hasNow {
		c.now, c.hasNow = c.e.now(), true
	}
	return c.now
}

// resetResult is SC's reset_result: a fresh result and nesting count (the
// nested-gate memo is kept).
func (c *evalCtx) resetResult() {
	c.saveBuffers()
	c.nested = 0
	c.st = state{exps: c.expBuf[:0], undelegated: c.undBuf[:0]}
}

// resetMid is reset_result in the middle of an evaluation (config mapping):
// outer nested-gate evaluations may hold their stashed exposure lists in the
// buffers resetResult hands out, so the current lists are emptied in place
// instead; that drops what SC's reset drops (the lists in the result) and
// leaves the stashes alone.
func (c *evalCtx) resetMid() {
	exps, und := c.st.exps[:0], c.st.undelegated[:0]
	c.nested = 0
	c.st = state{exps: exps, undelegated: und}
}

// saveBuffers keeps grown slices for reuse.
func (c *evalCtx) saveBuffers() {
	if cap(c.st.exps) > cap(c.expBuf) {
		c.expBuf = c.st.exps[:0]
	}
	if cap(c.st.undelegated) > cap(c.undBuf) {
		c.undBuf = c.st.undelegated[:0]
	}
}

type specType uint8

const (
	typeGate specType = iota
	typeDynamicConfig
	typeExperiment
	typeLayer
)

func (c *evalCtx) lookup(name string, t specType) *spec {
	switch t {
	case typeGate:
		return c.rs.gates[name]
	case typeDynamicConfig, typeExperiment:
		return c.rs.configs[name]
	default:
		return c.rs.layers[name]
	}
}

// evaluate is SC's Evaluator::evaluate. It reports whether the spec was recognized.
func (c *evalCtx) evaluate(name string, t specType) bool {
	return c.evaluateSpec(name, t, c.lookup(name, t))
}

// evaluateSpec is evaluate with the spec already looked up (sp is what
// lookup(name, t) returns).
func (c *evalCtx) evaluateSpec(name string, t specType, sp *spec) bool {
	// SC's nesting count restarts at every config-mapping reset, so a spec
	// that reaches itself through a mapped spec recurses without end (SC
	// overflows its stack). The real depth is bounded here instead.
	if c.depth >= maxDepth {
		c.st.err = errRecursion
		return true
	}
	c.depth++
	rec := c.evaluateSpecAt(name, t, sp)
	c.depth--
	return rec
}

func (c *evalCtx) evaluateSpecAt(name string, t specType, sp *spec) bool {
	if c.rs.hasMapping && c.tryConfigMapping(name, t, sp) {
		return true
	}
	if c.st.err != nil {
		return true
	}
	if t == typeExperiment && c.rs.cmabs != nil {
		if cm := c.rs.cmabs[name]; cm != nil {
			c.evaluateCMAB(name, cm)
			return true
		}
	}
	if sp == nil {
		return false
	}
	st := &c.st
	if !st.hasName {
		st.name, st.hasName = name, true
	}
	if !st.hasIDType {
		st.idType, st.hasIDType = sp.idType, true
	}
	if !st.hasVersion && sp.hasVersion {
		st.version, st.hasVersion = sp.version, true
	}
	if sp.isActive.set() {
		st.isExperimentActive = sp.isActive.val()
	}
	if sp.hasSharedParams.set() {
		st.isInLayer = sp.hasSharedParams.val()
	}
	if sp.hasExplicit {
		st.explicit, st.hasExplicit = sp.explicitParams, true
	}
	if t == typeLayer && sp.useNewLayerEval {
		c.newLayerEval(sp)
		return true
	}
	for _, r := range sp.rules {
		c.evaluateRule(r)
		if st.err != nil || st.unsupported {
			return true
		}
		if !st.boolValue {
			continue
		}
		if c.evaluateDelegate(r) {
			if st.err == nil {
				c.finalize(sp, r)
			}
			return true
		}
		if st.err != nil {
			return true
		}
		if c.passPercentage(r, sp.salt) {
			st.boolValue = !r.returnIsFalse
			st.json, st.hasJSON = r.returnValue, true
		} else {
			st.boolValue = sp.defaultIsTrue
			st.json, st.hasJSON = sp.defaultValue, true
		}
		st.ruleID, st.hasRule = r.id, true
		st.groupName, st.hasGroup = r.groupName, r.hasGroup
		st.isExperimentGroup = r.isExperimentGroup.val()
		st.isExperimentActive = sp.isActive.val()
		c.finalize(sp, r)
		return true
	}
	st.boolValue = sp.defaultIsTrue
	st.json, st.hasJSON = sp.defaultValue, true
	if sp.enabled {
		st.ruleID = "default"
	} else {
		st.ruleID = "disabled"
	}
	st.hasRule = true
	c.finalize(sp, nil)
	return true
}

// finalize is SC's finalize_evaluation.
func (c *evalCtx) finalize(sp *spec, r *rule) {
	st := &c.st
	if r != nil && r.hasSamplingRate {
		st.samplingRate, st.hasSampling = r.samplingRate, true
	} else {
		st.hasSampling = false
	}
	st.forwardAll = sp.forwardAll
	if c.nested > 0 {
		c.nested--
		return
	}
	if len(st.exps) == 0 || st.hasUndelegated {
		return
	}
	st.undelegated = append(st.undelegated[:0], st.exps...)
	st.hasUndelegated = true
}

// prepNested is SC's prep_for_nested_evaluation.
func (c *evalCtx) prepNested() bool {
	c.nested++
	c.st.boolValue = false
	c.st.json, c.st.hasJSON = nil, false
	if c.nested > maxNesting {
		c.st.err = ErrNestingLimit
		return false
	}
	return true
}

func (c *evalCtx) evaluateRule(r *rule) {
	all := true
	for _, cond := range r.conds {
		if cond == nil {
			c.st.unsupported = true
			return
		}
		c.evaluateCondition(cond)
		if c.st.err != nil {
			return
		}
		if !c.st.boolValue {
			all = false
		}
	}
	c.st.boolValue = all
}

func (c *evalCtx) evaluateNestedGate(cond *condition) {
	name := cond.gateName
	st := &c.st
	var m *memoEntry
	if cond.gateRef >= 0 {
		m = &c.memo[cond.gateRef]
	}
	if m != nil && m.epoch == c.epoch {
		st.boolValue = m.value
		st.ruleID, st.hasRule = m.ruleID, m.hasRule
		st.exps = append(st.exps, c.memoExp[m.start:m.end]...)
	} else {
		if !c.prepNested() {
			return
		}
		var sp *spec
		if cond.gateRef >= 0 {
			sp = c.rs.gateRefSpecs[cond.gateRef]
		} else {
			sp = c.rs.gates[name]
		}
		// SC stashes the outer exposures and evaluates the gate into a fresh list.
		stash := st.exps
		st.exps = c.takeBuf()
		c.evaluateSpec(name, typeGate, sp)
		nested := st.exps
		if st.err != nil {
			return
		}
		if st.unsupported {
			// SC returns before restoring the stash: only the nested list survives.
			return
		}
		if m != nil {
			ms := len(c.memoExp)
			c.memoExp = append(c.memoExp, nested...)
			*m = memoEntry{epoch: c.epoch, value: st.boolValue, ruleID: st.ruleID, hasRule: st.hasRule, start: int32(ms), end: int32(len(c.memoExp))}
		}
		st.exps = append(stash, nested...)
		c.releaseBuf(nested)
	}
	if !cond.isSegment && st.hasRule {
		if !st.hasSampling {
			st.analytical = true
		}
		st.exps = append(st.exps, SecondaryExposure{Gate: name, GateValue: st.boolValue, RuleID: st.ruleID})
	}
	if cond.typ == condFailGate {
		st.boolValue = !st.boolValue
	}
}

// takeBuf returns an empty exposure list for a nested evaluation, reusing
// released buffers so steady-state evaluation does not allocate.
func (c *evalCtx) takeBuf() []SecondaryExposure {
	if n := len(c.free); n > 0 {
		b := c.free[n-1]
		c.free = c.free[:n-1]
		return b[:0]
	}
	return nil
}

func (c *evalCtx) releaseBuf(b []SecondaryExposure) {
	if cap(b) > 0 {
		c.free = append(c.free, b[:0])
	}
}

// evaluateDelegate is SC's evaluate_config_delegate.
func (c *evalCtx) evaluateDelegate(r *rule) bool {
	if !r.hasDelegate {
		return false
	}
	dsp := r.delegateSpec
	if dsp == nil {
		return false
	}
	st := &c.st
	st.undelegated = append(st.undelegated[:0], st.exps...)
	st.hasUndelegated = true
	if !c.prepNested() {
		return true
	}
	if !c.evaluateSpec(r.configDelegate, typeExperiment, dsp) {
		st.undelegated, st.hasUndelegated = st.undelegated[:0], false
		return false
	}
	st.explicit, st.hasExplicit = dsp.explicitParams, dsp.hasExplicit
	st.delegate, st.hasDelegate = r.configDelegate, true
	return true
}

func (c *evalCtx) passPercentage(r *rule, specSalt string) bool {
	if r.passPercentage == 100 {
		return true
	}
	if r.passPercentage == 0 {
		return false
	}
	unit := c.u.unitString(&r.unit)
	var h uint64
	if r.passPrefixID >= 0 {
		// A spec's own rule: specSalt is the salt its prefix was built with.
		h = c.hashPrefix(r.passPrefixID, &r.passPrefix, unit)
	} else {
		ruleSalt := r.id
		if r.hasSalt {
			ruleSalt = r.salt
		}
		h = h64Parts(specSalt, ruleSalt, unit)
	}
	return float64(h%10000) < r.passPercentage*100.0
}

// hashPrefix is h64(prefix + "." + unit), memoised per context by prefix id.
func (c *evalCtx) hashPrefix(id int32, prefix *sha256x.Prefix, unit string) uint64 {
	m := &c.hmemo[id]
	if m.epoch == c.epoch && m.unit == unit {
		return m.h
	}
	h := prefix.Sum64(unit)
	*m = hashMemo{epoch: c.epoch, unit: unit, h: h}
	return h
}

func (c *evalCtx) tryConfigMapping(name string, t specType, sp *spec) bool {
	list, ok := c.rs.overrides[name]
	if !ok {
		return false
	}
	salt := ""
	if sp != nil {
		salt = sp.salt
	}
	for _, m := range list {
		for _, mr := range m.rules {
			if mr.startTime > c.nowMs() {
				continue
			}
			r := c.rs.overrideRules[mr.ruleName]
			if r == nil {
				continue
			}
			c.evaluateRule(r)
			if c.st.err != nil {
				c.st.err = nil
				c.resetMid()
				continue
			}
			if !c.st.boolValue || c.st.unsupported {
				c.resetMid()
				continue
			}
			c.resetMid()
			if c.passPercentage(r, salt) {
				c.st.overrideName, c.st.hasOverrideName = m.newConfigName, true
				if c.evaluate(m.newConfigName, t) && c.st.err == nil {
					return true
				}
				c.resetMid()
				break
			}
		}
	}
	return false
}
