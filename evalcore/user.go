package evalcore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
)

// User is a parsed StatsigUser. It is immutable after ParseUser and safe to
// share between goroutines and evaluations.
type User struct {
	userID, email, ip, userAgent, country, locale, appVersion *value

	custom    map[string]*value
	private   map[string]*value
	customIDs map[string]*value
	env       map[string]string // statsigEnvironment; nil when absent

	customIDKeys []string // sorted, for stable output
	customRaw    []rawField
	hasCustom    bool
	paHash       string
	hasPAHash    bool

	// uaCache is the default parser's result for this user, filled by the
	// first evaluation that needs it (same result whoever stores it).
	uaCache atomic.Pointer[uaParts]
}

type rawField struct {
	key string
	raw []byte
}

// UserID returns the user's userID string view ("" when absent).
func (u *User) UserID() string {
	if u.userID != nil {
		return u.userID.str
	}
	return ""
}

// CustomID returns a customIDs entry's string view.
func (u *User) CustomID(key string) (string, bool) {
	if v := u.customIDs[key]; v != nil && v.hasStr {
		return v.str, true
	}
	return "", false
}

// maxUserBytes bounds the size of a user object ParseUser accepts.
const maxUserBytes = 1 << 20

// ParseUser parses a StatsigUser JSON object (userID, email, ip, userAgent,
// country, locale, appVersion, custom, privateAttributes, customIDs,
// statsigEnvironment). Odd types are tolerated the way the reference SDK does
// where it can: numbers are accepted for userID, customIDs and the string
// fields; custom, privateAttributes, customIDs and statsigEnvironment that
// are not objects read as the reference's JavaScript binding reads them (see
// memberView: a string or an array as an object keyed by index, a number or a
// boolean as an empty object); values of other unexpected types are ignored;
// null means absent.
// Like the reference, a user with neither userID nor customIDs gets userID "".
// Of duplicate keys the last counts, as with encoding/json.
func ParseUser(raw []byte) (*User, error) {
	if len(raw) > maxUserBytes {
		return nil, fmt.Errorf("evalcore: user object larger than %d bytes", maxUserBytes)
	}
	if err := checkUserObject(raw); err != nil {
		return nil, fmt.Errorf("evalcore: user is not a JSON object: %w", err)
	}
	// One walk over the top level keeps the last value of each known key;
	// the object is valid JSON from here on.
	var top [numUserKeys][]byte
	for m := newUserMembers(raw); m.next(); {
		if k := userKeyIndex(m.key); k >= 0 {
			top[k] = m.val
		}
	}
	u := &User{}

	// The scalar fields share one allocation.
	n := 0
	for k := ukUserID; k <= ukAppVersion; k++ {
		if r := top[k]; r != nil && isUserScalar(r) {
			n++
		}
	}
	scalars := make([]value, 0, n)
	for k, dst := range [...]**value{&u.userID, &u.email, &u.ip, &u.userAgent, &u.country, &u.locale, &u.appVersion} {
		if r := top[ukUserID+k]; r != nil {
			if v, ok := userScalar(r); ok {
				scalars = append(scalars, v)
				*dst = &scalars[len(scalars)-1]
			}
		}
	}

	budget := maxExpandedEntries
	r, elems, indexed, err := memberView(top[ukCustomIDs], false, &budget)
	if err != nil {
		return nil, fmt.Errorf("evalcore: user customIDs: %w", err)
	}
	switch {
	case indexed:
		u.customIDs, u.customIDKeys = indexedCustomIDs(elems)
	case r != nil:
		cnt := countMembers(r)
		u.customIDs = make(map[string]*value, cnt)
		vals := make([]value, 0, cnt)
		for m := newUserMembers(r); m.next(); {
			k, err := memberKey(m.key)
			if err != nil {
				return nil, fmt.Errorf("evalcore: user customIDs: %w", err)
			}
			v, ok := userScalar(m.val)
			if !ok {
				delete(u.customIDs, k) // a later value of another type hides an earlier ID
				continue
			}
			vals = append(vals, v)
			u.customIDs[k] = &vals[len(vals)-1]
		}
		u.customIDKeys = sortedKeys(u.customIDs)
	}
	if u.userID == nil && u.customIDs == nil {
		// Reference behaviour for an unidentifiable user.
		nv := newStringValue("")
		u.userID = &nv
	}

	r, elems, indexed, err = memberView(top[ukCustom], true, &budget)
	switch {
	case err != nil:
	case indexed:
		u.custom, u.customRaw = indexedAttributes(elems, true)
		u.hasCustom = true
	case r != nil:
		u.custom, u.customRaw, err = parseAttributes(r, true)
		u.hasCustom = true
	}
	if err != nil {
		return nil, fmt.Errorf("evalcore: user custom: %w", err)
	}
	r, elems, indexed, err = memberView(top[ukPrivate], false, &budget)
	switch {
	case err != nil:
	case indexed:
		u.private, _ = indexedAttributes(elems, false)
	case r != nil:
		u.private, _, err = parseAttributes(r, false)
	}
	if err != nil {
		return nil, fmt.Errorf("evalcore: user privateAttributes: %w", err)
	}
	if len(u.private) > 0 {
		// pa_hash: wrapping sum of djb2("key:value").
		var sum uint32
		for k, v := range u.private {
			s := ""
			if v.hasStr {
				s = v.str
			}
			sum += djb2Add(djb2Add(djb2Add(0, k), ":"), s)
		}
		u.paHash, u.hasPAHash = strconv.FormatUint(uint64(sum), 10), true
	}
	r, elems, indexed, err = memberView(top[ukEnv], false, &budget)
	if err != nil {
		return nil, fmt.Errorf("evalcore: user statsigEnvironment: %w", err)
	}
	switch {
	case indexed:
		u.env = indexedEnv(elems)
	case r != nil:
		u.env = make(map[string]string, countMembers(r))
		for m := newUserMembers(r); m.next(); {
			k, err := memberKey(m.key)
			if err != nil {
				return nil, fmt.Errorf("evalcore: user statsigEnvironment: %w", err)
			}
			if s, ok := jsonString(m.val); ok {
				u.env[k] = s
			} else {
				delete(u.env, k)
			}
		}
	}
	return u, nil
}

// The top-level keys ParseUser reads, in the order of User's scalar fields.
const (
	ukUserID = iota
	ukEmail
	ukIP
	ukUserAgent
	ukCountry
	ukLocale
	ukAppVersion
	ukCustomIDs
	ukCustom
	ukPrivate
	ukEnv
	numUserKeys
)

// userKeyIndex maps a key literal to its uk constant, -1 for other keys.
func userKeyIndex(lit []byte) int {
	body := lit[1 : len(lit)-1]
	if bytes.IndexByte(body, '\\') >= 0 {
		k, err := memberKey(lit)
		if err != nil {
			return -1
		}
		body = []byte(k)
	}
	switch string(body) {
	case "userID":
		return ukUserID
	case "email":
		return ukEmail
	case "ip":
		return ukIP
	case "userAgent":
		return ukUserAgent
	case "country":
		return ukCountry
	case "locale":
		return ukLocale
	case "appVersion":
		return ukAppVersion
	case "customIDs":
		return ukCustomIDs
	case "custom":
		return ukCustom
	case "privateAttributes":
		return ukPrivate
	case "statsigEnvironment":
		return ukEnv
	}
	return -1
}

// isUserScalar reports whether userScalar accepts raw, without building it.
func isUserScalar(raw []byte) bool {
	c := raw[0]
	return c == '"' || c == '-' || c >= '0' && c <= '9'
}

// parseAttributes reads custom or privateAttributes, a member of the
// validated user object: the values by key and, when withRaw, the members'
// compact JSON in key order (for logging the user).
func parseAttributes(raw []byte, withRaw bool) (map[string]*value, []rawField, error) {
	if withRaw {
		// One copy of the object, which the compact members then alias,
		// instead of one copy per member.
		raw = bytes.Clone(raw)
	}
	fields := make([]rawField, 0, countMembers(raw))
	for m := newUserMembers(raw); m.next(); {
		k, err := memberKey(m.key)
		if err != nil {
			return nil, nil, err
		}
		fields = append(fields, rawField{key: k, raw: m.val})
	}
	// Sorted by key, stably, so that of duplicate keys the last is the one kept.
	slices.SortStableFunc(fields, func(a, b rawField) int { return strings.Compare(a.key, b.key) })
	kept := fields[:0]
	for i, f := range fields {
		if i+1 < len(fields) && fields[i+1].key == f.key {
			continue
		}
		kept = append(kept, f)
	}
	out := make(map[string]*value, len(kept))
	vals := make([]value, len(kept))
	for i := range kept {
		v, err := attributeValue(kept[i].raw)
		if err != nil {
			return nil, nil, err
		}
		vals[i] = v
		out[kept[i].key] = &vals[i]
		if withRaw && !isCompact(kept[i].raw) {
			kept[i].raw = compactJSON(kept[i].raw)
		}
	}
	return out, kept, nil
}

// indexedAttributes is parseAttributes for the entries of a string or an
// array read as an object (memberView).
func indexedAttributes(elems []*indexedElem, withRaw bool) (map[string]*value, []rawField) {
	keys := newIndexKeys(len(elems))
	out := make(map[string]*value, len(elems))
	for i := range elems {
		out[keys.at(i)] = &elems[i].v
	}
	if !withRaw {
		return out, nil
	}
	fields := make([]rawField, 0, len(elems))
	for i := range lexIndices(len(elems)) {
		fields = append(fields, rawField{key: keys.at(i), raw: elems[i].raw})
	}
	return out, fields
}

// indexedCustomIDs is customIDs and their sorted keys from the entries of a
// string or an array read as an object: the strings and numbers.
func indexedCustomIDs(elems []*indexedElem) (map[string]*value, []string) {
	isID := func(v *value) bool { return v.kind == kindString || v.kind == kindNumber } // userScalar's
	n := 0
	for i := range elems {
		if isID(&elems[i].v) {
			n++
		}
	}
	keys := newIndexKeys(len(elems))
	ids := make(map[string]*value, n)
	sorted := make([]string, 0, n)
	for i := range lexIndices(len(elems)) {
		if v := &elems[i].v; isID(v) {
			k := keys.at(i)
			ids[k] = v
			sorted = append(sorted, k)
		}
	}
	return ids, sorted
}

// indexedEnv is statsigEnvironment from the entries of a string or an array
// read as an object: the strings.
func indexedEnv(elems []*indexedElem) map[string]string {
	keys := newIndexKeys(len(elems))
	env := make(map[string]string, len(elems))
	for i := range elems {
		if v := &elems[i].v; v.kind == kindString {
			env[keys.at(i)] = v.str
		}
	}
	return env
}

// dynamicFromJSON builds the views of a decoded JSON value (SC DynamicValue).
func dynamicFromJSON(v any) value {
	switch x := v.(type) {
	case nil:
		return value{kind: kindNull}
	case bool:
		return newBoolValue(x)
	case json.Number:
		return newNumberValue(numberFloat(x))
	case string:
		return newStringValue(x)
	case []any:
		nv := value{kind: kindArray, arr: make([]value, len(x))}
		for i, el := range x {
			nv.arr[i] = dynamicFromJSON(el)
		}
		nv.str = string(appendJSONValue(nil, v, appendRyu))
		nv.lower = lowerString(nv.str)
		nv.hasStr = true
		return nv
	case map[string]any:
		nv := value{kind: kindObject, obj: make(map[string]*value, len(x))}
		for k, el := range x {
			ev := dynamicFromJSON(el)
			nv.obj[k] = &ev
		}
		return nv
	}
	return value{kind: kindNull}
}

// appendRyu prints a number as serde_json does: integers (as the binding passes them) without
// a fraction, other floats in ryu's shortest form ("1.5", "1e21", "1.0e-7" style).
func appendRyu(dst []byte, f float64) []byte {
	// The JavaScript binding hands SC whole numbers in the int32/uint32 range as integers and
	// every other number as an f64, which serde_json prints with a fraction or exponent.
	if f == math.Trunc(f) && f >= math.MinInt32 && f <= math.MaxUint32 {
		return strconv.AppendInt(dst, int64(f), 10)
	}
	e := strconv.FormatFloat(f, 'e', -1, 64)
	neg := e[0] == '-'
	if neg {
		e = e[1:]
		dst = append(dst, '-')
	}
	mant, expStr, _ := bytesCut(e, 'e')
	digits := bytes.Replace([]byte(mant), []byte("."), nil, 1)
	exp, _ := strconv.Atoi(expStr)
	length := len(digits)
	k := exp - length + 1 // value = digits × 10^k
	kk := length + k
	switch {
	case 0 <= k && kk <= 16:
		dst = append(dst, digits...)
		for i := 0; i < k; i++ {
			dst = append(dst, '0')
		}
		dst = append(dst, '.', '0')
	case 0 < kk && kk <= 16:
		dst = append(dst, digits[:kk]...)
		dst = append(dst, '.')
		dst = append(dst, digits[kk:]...)
	case -5 < kk && kk <= 0:
		dst = append(dst, '0', '.')
		for i := 0; i < -kk; i++ {
			dst = append(dst, '0')
		}
		dst = append(dst, digits...)
	case length == 1:
		dst = append(dst, digits[0], 'e')
		dst = strconv.AppendInt(dst, int64(kk-1), 10)
	default:
		dst = append(dst, digits[0], '.')
		dst = append(dst, digits[1:]...)
		dst = append(dst, 'e')
		dst = strconv.AppendInt(dst, int64(kk-1), 10)
	}
	return dst
}

func bytesCut(s string, sep byte) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// unitID resolves UNIT_ID(user, idType): userID for "userid" (any case),
// else customIDs[idType], then customIDs[lower(idType)].
func (u *User) unitID(r *unitRef) *value {
	if r.isUserID {
		return u.userID
	}
	if u.customIDs == nil {
		return nil
	}
	if v, ok := u.customIDs[r.idType]; ok || r.same {
		return v
	}
	return u.customIDs[r.lower]
}

// unitString is unitID's string view ("" when absent), the hash input.
func (u *User) unitString(r *unitRef) string {
	if v := u.unitID(r); v != nil && v.hasStr {
		return v.str
	}
	return ""
}

// topField returns a top-level user field.
func (u *User) topField(f userField) *value {
	switch f {
	case fieldUserID:
		return u.userID
	case fieldEmail:
		return u.email
	case fieldIP:
		return u.ip
	case fieldCountry:
		return u.country
	case fieldLocale:
		return u.locale
	case fieldAppVersion:
		return u.appVersion
	case fieldUserAgent:
		return u.userAgent
	}
	return nil
}

// userValue is SC's get_user_value for a condition field: the top-level
// field (when a non-empty string), custom[field], custom[lower],
// privateAttributes likewise, then the aliases user_id, app_version and
// user_agent.
func (u *User) userValue(f *fieldRef) *value {
	if f.top != fieldNone {
		if top := u.topField(f.top); top != nil && top.hasStr && top.str != "" {
			return top
		}
	}
	if u.custom != nil {
		if v, ok := u.custom[f.name]; ok {
			return v
		}
		if !f.same {
			if v, ok := u.custom[f.lower]; ok {
				return v
			}
		}
	}
	if u.private != nil {
		if v, ok := u.private[f.name]; ok {
			return v
		}
		if !f.same {
			if v, ok := u.private[f.lower]; ok {
				return v
			}
		}
	}
	if f.fallback != fieldNone {
		return u.topField(f.fallback)
	}
	return nil
}

// Field references evaluation reads besides conditions' own (what
// newFieldRef would build for "userAgent" and "ip").
var (
	userAgentField = fieldRef{name: "userAgent", lower: "useragent", top: fieldUserAgent}
	ipField        = fieldRef{name: "ip", lower: "ip", same: true, top: fieldIP}
)

// appendLoggable writes the user as SC logs it: no privateAttributes; the
// user's statsigEnvironment, else env (the evaluator's environment).
func (u *User) appendLoggable(dst []byte, env map[string]string) []byte {
	dst = append(dst, '{')
	first := true
	field := func(k string) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
	}
	for _, f := range []struct {
		k string
		v *value
	}{{"userID", u.userID}, {"email", u.email}, {"ip", u.ip}, {"userAgent", u.userAgent},
		{"country", u.country}, {"locale", u.locale}, {"appVersion", u.appVersion}} {
		if f.v == nil {
			continue
		}
		field(f.k)
		dst = appendScalar(dst, f.v)
	}
	if u.customIDs != nil {
		field("customIDs")
		dst = append(dst, '{')
		for i, k := range u.customIDKeys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, k)
			dst = append(dst, ':')
			dst = appendScalar(dst, u.customIDs[k])
		}
		dst = append(dst, '}')
	}
	if u.hasCustom { // an empty custom object too, as SC logs it
		field("custom")
		dst = append(dst, '{')
		for i, f := range u.customRaw {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, f.key)
			dst = append(dst, ':')
			dst = append(dst, f.raw...)
		}
		dst = append(dst, '}')
	}
	e := u.env
	if e == nil {
		e = env
	}
	if e != nil {
		field("statsigEnvironment")
		dst = appendStringMap(dst, e)
	}
	return append(dst, '}')
}

func appendScalar(dst []byte, v *value) []byte {
	if v.kind == kindNumber {
		return append(dst, formatRustFloat(v.num)...)
	}
	return appendJSONString(dst, v.str)
}

func appendStringMap(dst []byte, m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		dst = appendJSONString(dst, m[k])
	}
	return append(dst, '}')
}
