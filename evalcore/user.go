package evalcore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
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
// fields; values of other unexpected types are ignored; null means absent.
// Like the reference, a user with neither userID nor customIDs gets userID "".
func ParseUser(raw []byte) (*User, error) {
	if len(raw) > maxUserBytes {
		return nil, fmt.Errorf("evalcore: user object larger than %d bytes", maxUserBytes)
	}
	top, err := decodeObject(raw)
	if err != nil {
		return nil, fmt.Errorf("evalcore: user is not a JSON object: %w", err)
	}
	u := &User{}
	scalar := func(key string) *value {
		r, ok := top[key]
		if !ok {
			return nil
		}
		v, err := decodeAny(r)
		if err != nil {
			return nil
		}
		switch x := v.(type) {
		case string:
			nv := newStringValue(x)
			return &nv
		case json.Number:
			nv := newNumberValue(numberFloat(x))
			return &nv
		}
		return nil
	}
	u.userID = scalar("userID")
	u.email = scalar("email")
	u.ip = scalar("ip")
	u.userAgent = scalar("userAgent")
	u.country = scalar("country")
	u.locale = scalar("locale")
	u.appVersion = scalar("appVersion")

	if r, ok := top["customIDs"]; ok && firstByte(r) == '{' {
		m, err := splitObject(r, true)
		if err != nil {
			return nil, fmt.Errorf("evalcore: user customIDs: %w", err)
		}
		u.customIDs = make(map[string]*value, len(m))
		for k, vr := range m {
			v, err := decodeAny(vr)
			if err != nil {
				continue
			}
			switch x := v.(type) {
			case string:
				nv := newStringValue(x)
				u.customIDs[k] = &nv
			case json.Number:
				nv := newNumberValue(numberFloat(x))
				u.customIDs[k] = &nv
			}
		}
		u.customIDKeys = sortedKeys(u.customIDs)
	}
	if u.userID == nil && u.customIDs == nil {
		// Reference behaviour for an unidentifiable user.
		nv := newStringValue("")
		u.userID = &nv
	}

	if r, ok := top["custom"]; ok && firstByte(r) == '{' {
		u.custom, u.customRaw, err = parseAttributes(r)
		if err != nil {
			return nil, fmt.Errorf("evalcore: user custom: %w", err)
		}
		u.hasCustom = true
	}
	if r, ok := top["privateAttributes"]; ok && firstByte(r) == '{' {
		u.private, _, err = parseAttributes(r)
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
				sum += djb2(k + ":" + s)
			}
			u.paHash, u.hasPAHash = strconv.FormatUint(uint64(sum), 10), true
		}
	}
	if r, ok := top["statsigEnvironment"]; ok && firstByte(r) == '{' {
		m, err := splitObject(r, true)
		if err != nil {
			return nil, fmt.Errorf("evalcore: user statsigEnvironment: %w", err)
		}
		u.env = make(map[string]string, len(m))
		for k, vr := range m {
			if s, ok := jsonString(vr); ok {
				u.env[k] = s
			}
		}
	}
	return u, nil
}

// parseAttributes reads custom or privateAttributes, a member of the
// validated user object.
func parseAttributes(raw []byte) (map[string]*value, []rawField, error) {
	m, err := splitObject(raw, true)
	if err != nil {
		return nil, nil, err
	}
	out := make(map[string]*value, len(m))
	fields := make([]rawField, 0, len(m))
	for _, k := range sortedKeys(m) {
		vr := m[k]
		v, err := decodeAny(vr)
		if err != nil {
			return nil, nil, err
		}
		dv := dynamicFromJSON(v)
		out[k] = &dv
		fields = append(fields, rawField{key: k, raw: compactJSON(vr)})
	}
	return out, fields, nil
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
		nv.str = string(appendRustJSON(nil, v))
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

// appendRustJSON writes a decoded JSON value as serde_json's compact text of a
// user value (numbers are f64s from the JavaScript binding).
func appendRustJSON(dst []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...)
	case bool:
		return strconv.AppendBool(dst, x)
	case json.Number:
		return appendRyu(dst, numberFloat(x))
	case string:
		return appendJSONString(dst, x)
	case []any:
		dst = append(dst, '[')
		for i, el := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendRustJSON(dst, el)
		}
		return append(dst, ']')
	case map[string]any:
		dst = append(dst, '{')
		for i, k := range sortedKeys(x) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, k)
			dst = append(dst, ':')
			dst = appendRustJSON(dst, x[k])
		}
		return append(dst, '}')
	}
	return dst
}

// appendRyu prints a number as serde_json does: integers (that fit i64) without
// a fraction, other floats in ryu's shortest form ("1.5", "1e21", "1.0e-7" style).
func appendRyu(dst []byte, f float64) []byte {
	if f == float64(int64(f)) && f > -9.2e18 && f < 9.2e18 {
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
	if u.hasCustom && len(u.customRaw) > 0 {
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
