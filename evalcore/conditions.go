package evalcore

import (
	"errors"
	"math"
	"math/big"
	"strings"
	"unicode"
)

func (c *evalCtx) evaluateCondition(cond *condition) {
	st := &c.st
	var v *value
	switch cond.typ {
	case condPublic:
		st.boolValue = true
		return
	case condPassGate, condFailGate:
		c.evaluateNestedGate(cond)
		return
	case condExperimentGroup:
		v = c.experimentGroup(cond)
		if st.err != nil {
			return
		}
	case condUABased:
		if cond.hasField {
			if v = c.u.userValue(&cond.field); v == nil && cond.uaIndex >= 0 {
				v = c.userAgentValue(cond.uaIndex)
			}
		}
	case condIPBased:
		if cond.hasField {
			if v = c.u.userValue(&cond.field); v == nil && cond.field.name == "country" {
				v = c.countryValue()
			}
		}
	case condUserField:
		if cond.hasField {
			v = c.u.userValue(&cond.field)
		}
	case condEnvironment:
		if cond.hasField {
			v = c.environmentValue(&cond.field)
		}
	case condCurrentTime:
		// SC's timestamp value: only an integer view (its JSON is null).
		c.scratch = value{kind: kindNull, i: c.nowMs(), hasInt: true}
		v = &c.scratch
	case condUserBucket:
		unit := c.u.unitString(&cond.unit)
		b := c.hashPrefix(cond.saltID, &cond.saltHash, unit) % 1000
		if bits := cond.target.buckets; bits != nil {
			// any / none on a bucket set (compareStringsInArray's result).
			st.boolValue = (bits[b/64]>>(b%64)&1 == 1) != (cond.op == opNone)
			return
		}
		v = &c.e.buckets[b]
	case condTargetApp:
		v = c.appID
	case condUnitID:
		v = c.u.unitID(&cond.unit)
	default:
		st.unsupported = true
		return
	}
	if !cond.hasOp {
		st.unsupported = true
		return
	}
	t := &cond.target
	switch cond.op {
	case opGT, opGTE, opLT, opLTE:
		st.boolValue = compareNumbers(v, t, cond.op)
	case opVersionGT, opVersionGTE, opVersionLT, opVersionLTE, opVersionEQ, opVersionNEQ:
		st.boolValue = compareVersions(v, t, cond.op)
	case opAny, opNone, opStartsWith, opEndsWith, opContainsAny, opContainsNone:
		st.boolValue = compareStringsInArray(v, t, cond.op, true)
	case opAnyCS, opNoneCS:
		st.boolValue = compareStringsInArray(v, t, cond.op, false)
	case opMatches:
		st.boolValue = v != nil && v.hasStr && t.re != nil && t.re.MatchString(v.str)
	case opBefore, opAfter, opOn:
		st.boolValue = compareTime(v, t, cond.op)
	case opEQ:
		st.boolValue = equalsTarget(v, t)
	case opNEQ:
		st.boolValue = !equalsTarget(v, t)
	case opInList, opNotInList:
		in := c.inIDList(v, t)
		st.boolValue = in
		if cond.op == opNotInList {
			st.boolValue = !in
		}
	case opArrayAny, opArrayNone, opArrayAll, opNotArrayAll:
		st.boolValue = compareArrays(v, t, cond.op)
	default:
		st.unsupported = true
	}
}

// experimentGroup is the left value of an experiment_group condition: the
// group name of a full, separate get_experiment evaluation. It is unsupported
// in client initialize responses (SC has no Statsig instance there).
func (c *evalCtx) experimentGroup(cond *condition) *value {
	if !cond.hasField {
		return nil
	}
	if c.gcir {
		c.st.unsupported = true
		return nil
	}
	sub := c.e.getCtx(c.u)
	sub.now, sub.hasNow = c.nowMs(), true
	// SC runs a separate, complete evaluation here: its own nesting count,
	// and an error there only means "no group". An experiment that reaches
	// itself this way recurses without end (SC overflows its stack); the
	// depth carried over stops that, and that error does go up.
	sub.depth = c.depth + 1
	sub.evaluate(cond.field.name, typeExperiment)
	group, ok := sub.st.groupName, sub.st.hasGroup
	err := sub.st.err
	c.e.putCtx(sub)
	if errors.Is(err, errRecursion) {
		c.st.err = err
		return nil
	}
	if err != nil || !ok {
		return nil
	}
	c.scratch = newStringValue(group)
	return &c.scratch
}

func (c *evalCtx) environmentValue(f *fieldRef) *value {
	if c.u.env != nil {
		if s, ok := c.u.env[f.name]; ok {
			c.scratch = newStringValue(s)
			return &c.scratch
		}
	}
	if c.e.env != nil {
		if v, ok := c.e.env[f.name]; ok {
			return v
		}
		if v, ok := c.e.env[f.lower]; ok {
			return v
		}
	}
	return nil
}

// maxUserAgentLength is SC's limit: longer user agents are not parsed.
const maxUserAgentLength = 1000

// uaParts is a parsed user agent's four views (ok false: nothing to parse).
type uaParts struct {
	ok    bool
	parts [4]value
}

// userAgentValue is part idx of the user's parsed user agent. The default
// parser is deterministic, so its result is kept on the user for every later
// evaluation; a caller's parser is asked once per context.
func (c *evalCtx) userAgentValue(idx int8) *value {
	if !c.uaDone {
		c.uaDone = true
		if c.e.defaultUA {
			if p := c.u.uaCache.Load(); p != nil {
				c.ua = p
			} else {
				c.ua = c.parseUserAgent()
				c.u.uaCache.Store(c.ua)
			}
		} else {
			c.ua = c.parseUserAgent()
		}
	}
	if !c.ua.ok {
		return nil
	}
	return &c.ua.parts[idx]
}

func (c *evalCtx) parseUserAgent() *uaParts {
	ua := c.u.userValue(&userAgentField)
	if ua == nil || !ua.hasStr || len(ua.str) > maxUserAgentLength || c.e.opts.ParseUserAgent == nil {
		return &uaParts{}
	}
	r := c.e.opts.ParseUserAgent(ua.str)
	return &uaParts{ok: true, parts: [4]value{newStringValue(r.OSName), newStringValue(r.OSVersion),
		newStringValue(r.BrowserName), newStringValue(r.BrowserVersion)}}
}

func (c *evalCtx) countryValue() *value {
	if !c.countryDone {
		c.countryDone = true
		ip := c.u.userValue(&ipField)
		if ip != nil && ip.hasStr && c.e.opts.Countries != nil {
			if cc, ok := lookupCountry(c.e.opts.Countries, ip.str); ok {
				c.country, c.hasCountry = newStringValue(cc), true
			}
		}
	}
	if !c.hasCountry {
		return nil
	}
	return &c.country
}

func (c *evalCtx) inIDList(v *value, t *target) bool {
	if !t.hasStr || v == nil || !v.hasStr || c.e.opts.IDLists == nil {
		return false
	}
	return c.e.opts.IDLists.Contains(t.str, IDListKey(v.str))
}

func compareNumbers(v *value, t *target, op opType) bool {
	if v == nil || !v.hasNum || !t.hasNum {
		return false
	}
	l, r := v.num, t.num
	switch op {
	case opGT:
		return l > r
	case opGTE:
		return l >= r
	case opLT:
		return l < r
	case opLTE:
		return l <= r
	}
	return false
}

func compareStringsInArray(v *value, t *target, op opType, ignoreCase bool) bool {
	s, ls := "", ""
	if v != nil && v.hasStr {
		s, ls = v.str, v.lower
	}
	negate := op == opNone || op == opNoneCS || op == opContainsNone
	res := false
	switch {
	case t.kind == targetObject && ignoreCase && (op == opAny || op == opNone):
		_, res = t.obj[ls]
	case t.kind != targetArray:
		res = false
	case ignoreCase && (op == opAny || op == opNone):
		if len(t.lowers) <= smallSet {
			for _, k := range t.lowers {
				if k == ls {
					res = true
					break
				}
			}
		} else {
			_, res = t.set[ls]
		}
	default:
		left := s
		if ignoreCase {
			left = ls
		}
		for i, e := range t.entries {
			right := e.str
			if ignoreCase {
				right = t.lowers[i]
			}
			switch op {
			case opAny, opNone, opAnyCS, opNoneCS:
				res = left == right
			case opStartsWith:
				res = strings.HasPrefix(left, right)
			case opEndsWith:
				res = strings.HasSuffix(left, right)
			case opContainsAny, opContainsNone:
				res = strings.Contains(left, right)
			}
			if res {
				break
			}
		}
	}
	if negate {
		return !res
	}
	return res
}

func compareTime(v *value, t *target, op opType) bool {
	if v == nil {
		return false
	}
	var left int64
	switch {
	case v.hasTS:
		left = v.ts
	case v.hasInt:
		left = v.i
	default:
		return false
	}
	if left > -10_000_000_000 && left < 10_000_000_000 {
		left *= 1000 // seconds
	}
	var right int64
	switch {
	case t.hasTS:
		right = t.ts
	case t.hasNum:
		right = f64ToI64(t.num)
	default:
		return false
	}
	switch op {
	case opBefore:
		return left < right
	case opAfter:
		return left > right
	case opOn:
		return left/86_400_000 == right/86_400_000
	}
	return false
}

// f64ToI64 is Rust's saturating `as i64`.
func f64ToI64(f float64) int64 {
	switch {
	case math.IsNaN(f):
		return 0
	case f >= 9.223372036854775807e18:
		return math.MaxInt64
	case f <= -9.223372036854775808e18:
		return math.MinInt64
	}
	return int64(f)
}

func equalsTarget(v *value, t *target) bool {
	switch t.kind {
	case targetNull:
		return v == nil || v.kind == kindNull
	case targetBool:
		return v != nil && v.kind == kindBool && v.b == t.b
	case targetNumber:
		return v != nil && v.hasNum && v.num == t.num
	case targetString:
		return v != nil && v.hasStr && v.str == t.str
	case targetArray:
		if v == nil || v.kind != kindArray || len(v.arr) != len(t.entries) {
			return false
		}
		for _, e := range t.entries {
			if e.index >= len(v.arr) {
				return false
			}
			el := &v.arr[e.index]
			if !el.hasStr || el.str != e.str {
				return false
			}
		}
		return true
	case targetObject:
		if v == nil || v.kind != kindObject || len(v.obj) != len(t.obj) {
			return false
		}
		for k, s := range t.obj {
			el, ok := v.obj[k]
			if !ok || !el.hasStr || el.str != s {
				return false
			}
		}
		return true
	}
	return false
}

func compareArrays(v *value, t *target, op opType) bool {
	if t.kind != targetArray || v == nil || v.kind != kindArray {
		return false
	}
	has := func(item string) bool {
		for i := range v.arr {
			s := ""
			if v.arr[i].hasStr {
				s = v.arr[i].str
			}
			if s == item {
				return true
			}
		}
		return false
	}
	for _, e := range t.entries {
		switch op {
		case opArrayAll:
			if !has(e.str) {
				return false
			}
		case opArrayAny:
			if has(e.str) {
				return true
			}
		case opArrayNone:
			if has(e.str) {
				return false
			}
		case opNotArrayAll:
			if !has(e.str) {
				return true
			}
		}
	}
	return !(op == opArrayAny || op == opNotArrayAll)
}

// compareVersions implements SC's version operators: the text before the
// first '-', split on '.', compared part by part as trimmed i128 integers
// (a missing part is 0); a part that does not parse, once reached, makes the
// operator false.
func compareVersions(v *value, t *target, op opType) bool {
	if v == nil || !v.hasStr || !t.hasStr {
		return false
	}
	l, r := v.str, t.str
	if i := strings.IndexByte(l, '-'); i >= 0 {
		l = l[:i]
	}
	if i := strings.IndexByte(r, '-'); i >= 0 {
		r = r[:i]
	}
	cmp := 0
	for {
		lp, lok := nextPart(&l)
		rp, rok := nextPart(&r)
		if !lok && !rok {
			break
		}
		ln, lvalid := parseI128(lp, lok)
		rn, rvalid := parseI128(rp, rok)
		if !lvalid || !rvalid {
			return false
		}
		if c := cmpI128(ln, rn); c != 0 {
			cmp = c
			break
		}
	}
	switch op {
	case opVersionGT:
		return cmp > 0
	case opVersionGTE:
		return cmp >= 0
	case opVersionLT:
		return cmp < 0
	case opVersionLTE:
		return cmp <= 0
	case opVersionEQ:
		return cmp == 0
	case opVersionNEQ:
		return cmp != 0
	}
	return false
}

// nextPart pops the next '.'-separated part; ok is false when none is left.
// *s is set to "\x00" after the last part to mark exhaustion.
func nextPart(s *string) (string, bool) {
	if *s == "\x00" {
		return "", false
	}
	if i := strings.IndexByte(*s, '.'); i >= 0 {
		p := (*s)[:i]
		*s = (*s)[i+1:]
		return p, true
	}
	p := *s
	*s = "\x00"
	return p, true
}

// i128 is a parsed version part: small values in n, huge ones in big.
type i128 struct {
	n   int64
	big *big.Int
}

var i128Max, _ = new(big.Int).SetString("170141183460469231731687303715884105727", 10)

func parseI128(s string, present bool) (i128, bool) {
	if !present {
		return i128{}, true
	}
	s = strings.TrimFunc(s, unicode.IsSpace)
	body := s
	if body != "" && (body[0] == '+' || body[0] == '-') {
		body = body[1:]
	}
	if body == "" {
		return i128{}, false
	}
	for i := 0; i < len(body); i++ {
		if body[i] < '0' || body[i] > '9' {
			return i128{}, false
		}
	}
	if len(body) <= 18 {
		var n int64
		for i := 0; i < len(body); i++ {
			n = n*10 + int64(body[i]-'0')
		}
		if s[0] == '-' {
			n = -n
		}
		return i128{n: n}, true
	}
	b, ok := new(big.Int).SetString(strings.TrimPrefix(s, "+"), 10)
	if !ok || b.CmpAbs(i128Max) > 0 {
		// i128::MIN's magnitude is one more than MAX; accept it.
		if ok && b.Sign() < 0 && new(big.Int).Add(b, big.NewInt(1)).CmpAbs(i128Max) == 0 {
			return i128{big: b}, true
		}
		return i128{}, false
	}
	return i128{big: b}, true
}

func cmpI128(a, b i128) int {
	if a.big == nil && b.big == nil {
		switch {
		case a.n < b.n:
			return -1
		case a.n > b.n:
			return 1
		}
		return 0
	}
	ab, bb := a.big, b.big
	if ab == nil {
		ab = big.NewInt(a.n)
	}
	if bb == nil {
		bb = big.NewInt(b.n)
	}
	return ab.Cmp(bb)
}
