package evalcore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// ParseUser was rewritten for speed (one walk, no intermediate maps). The
// previous implementation, kept here as the oracle, is the one the reference
// SDK was differential-tested against; the new one must build the same User
// from every input.

func parseUserBefore(raw []byte) (*User, error) {
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
		nv := newStringValue("")
		u.userID = &nv
	}
	if r, ok := top["custom"]; ok && firstByte(r) == '{' {
		u.custom, u.customRaw, err = parseAttributesBefore(r)
		if err != nil {
			return nil, fmt.Errorf("evalcore: user custom: %w", err)
		}
		u.hasCustom = true
	}
	if r, ok := top["privateAttributes"]; ok && firstByte(r) == '{' {
		u.private, _, err = parseAttributesBefore(r)
		if err != nil {
			return nil, fmt.Errorf("evalcore: user privateAttributes: %w", err)
		}
		if len(u.private) > 0 {
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

func parseAttributesBefore(raw []byte) (map[string]*value, []rawField, error) {
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

// userDiff describes the first difference between two parsed users ("" when none).
func userDiff(a, b *User) string {
	for _, f := range []struct {
		name string
		x, y *value
	}{{"userID", a.userID, b.userID}, {"email", a.email, b.email}, {"ip", a.ip, b.ip},
		{"userAgent", a.userAgent, b.userAgent}, {"country", a.country, b.country},
		{"locale", a.locale, b.locale}, {"appVersion", a.appVersion, b.appVersion}} {
		if d := valueDiff(f.x, f.y); d != "" {
			return f.name + ": " + d
		}
	}
	for _, m := range []struct {
		name string
		x, y map[string]*value
	}{{"custom", a.custom, b.custom}, {"private", a.private, b.private}, {"customIDs", a.customIDs, b.customIDs}} {
		if d := valueMapDiff(m.x, m.y); d != "" {
			return m.name + ": " + d
		}
	}
	switch {
	case (a.env == nil) != (b.env == nil) || !maps.Equal(a.env, b.env):
		return fmt.Sprintf("env %v vs %v", a.env, b.env)
	case !slices.Equal(a.customIDKeys, b.customIDKeys):
		return fmt.Sprintf("customIDKeys %q vs %q", a.customIDKeys, b.customIDKeys)
	case (a.customRaw == nil) != (b.customRaw == nil) || len(a.customRaw) != len(b.customRaw):
		return fmt.Sprintf("customRaw %v vs %v", a.customRaw, b.customRaw)
	case a.hasCustom != b.hasCustom || a.paHash != b.paHash || a.hasPAHash != b.hasPAHash:
		return fmt.Sprintf("flags %v %q %v vs %v %q %v", a.hasCustom, a.paHash, a.hasPAHash, b.hasCustom, b.paHash, b.hasPAHash)
	}
	for i := range a.customRaw {
		if a.customRaw[i].key != b.customRaw[i].key || !bytes.Equal(a.customRaw[i].raw, b.customRaw[i].raw) {
			return fmt.Sprintf("customRaw[%d] %q=%s vs %q=%s", i, a.customRaw[i].key, a.customRaw[i].raw, b.customRaw[i].key, b.customRaw[i].raw)
		}
	}
	return ""
}

func valueMapDiff(x, y map[string]*value) string {
	if (x == nil) != (y == nil) || len(x) != len(y) {
		return fmt.Sprintf("%d entries (nil %v) vs %d (nil %v)", len(x), x == nil, len(y), y == nil)
	}
	for k, v := range x {
		w, ok := y[k]
		if !ok {
			return fmt.Sprintf("key %q missing", k)
		}
		if d := valueDiff(v, w); d != "" {
			return fmt.Sprintf("[%q] %s", k, d)
		}
	}
	return ""
}

// valueDiff compares every view; floats by bits, so NaN views compare too.
func valueDiff(x, y *value) string {
	if x == nil || y == nil {
		if x != y {
			return fmt.Sprintf("nil %v vs %v", x == nil, y == nil)
		}
		return ""
	}
	if x.kind != y.kind || x.str != y.str || x.lower != y.lower || math.Float64bits(x.num) != math.Float64bits(y.num) ||
		x.i != y.i || x.ts != y.ts || x.b != y.b || x.hasStr != y.hasStr || x.hasNum != y.hasNum || x.hasInt != y.hasInt ||
		x.hasTS != y.hasTS || (x.arr == nil) != (y.arr == nil) || len(x.arr) != len(y.arr) {
		return fmt.Sprintf("%+v vs %+v", *x, *y)
	}
	for i := range x.arr {
		if d := valueDiff(&x.arr[i], &y.arr[i]); d != "" {
			return fmt.Sprintf("[%d] %s", i, d)
		}
	}
	return valueMapDiff(x.obj, y.obj)
}

var parseUserSeeds = []string{
	`{"userID":"u1","country":"US"}`,
	`{"userID":"u123","email":"A.B@Example.com","ip":"1.2.3.4","userAgent":"Mozilla/5.0 Chrome/120.0","country":"us","locale":"en_US","appVersion":"1.2.3"}`,
	`{"userID":12.50,"email":7,"ip":true,"country":null,"locale":[],"appVersion":{},"userAgent":-0}`,
	`{"userID":"a","userID":5,"userID":null}`,
	`{"userID":null,"customIDs":{}}`,
	`{"customIDs":{"a":"1","b":2,"c":true,"d":null,"e":[1],"a":false,"b":"3","f":"x","f":{}}}`,
	`{"customIDs":[],"custom":"x","privateAttributes":5,"statsigEnvironment":null}`,
	`{"customIDs":{"stableID":"s"},"customIDs":null}`,
	`{"custom":{"b":1,"a":"x","c":[1,"2",{"z":null,"y":[]}],"d":{"k":"v"},"e":true,"f":null,"g":1e999,"h":"2024-01-02T03:04:05Z","a":"y"}}`,
	`{"custom":{ "spaced" : [ 1 , 2 ] , "obj" : { "a" : "b c" } , "n" : -1.50e+2 }}`,
	`{"custom":{},"privateAttributes":{}}`,
	`{"custom":{"k":"v"},"custom":{"other":1}}`,
	`{"privateAttributes":{"secret":"x","n":5,"arr":[1,2],"o":{"a":1},"nul":null,"é":"ü","secret":"y"}}`,
	`{"statsigEnvironment":{"tier":"production","tier":5,"x":"a","y":"b","y":null}}`,
	`{"user\u0049D":"escaped key","c\u006fustom":{"\u0041":"1"},"customIDs":{"\u00e9":"v"}}`,
	`{"userID":"esc\"aped\\ \u00e9 \ud83d\ude00","email":"a\nb"}`,
	"{\"userID\":\"bad\xff\xfe utf8\",\"k\xff\":1,\"custom\":{\"\xff\":\"\xfe\"}}",
	`{"userID":"NaN","email":"inf","ip":"-Infinity","country":"1e5","locale":"0x10","appVersion":"9223372036854775808"}`,
	`{"userID":"2024-01-02 03:04:05","email":"2024-01-02T03:04:05.123+01:00"}`,
	` { "userID" : "spaces" } `,
	`{}`, `[]`, `null`, `"x"`, `{"a":}`, `{"userID":"u"`, `{"userID":"u"} x`, ``, `   `,
	`{"custom":{"deep":[[[[[[[[[[[["x"]]]]]]]]]]]]}}`,
	`{"USERID":"case differs","userid":"x"}`,
}

func checkParseUserSameAsBefore(t *testing.T, raw []byte) {
	t.Helper()
	got, err := ParseUser(raw)
	want, werr := parseUserBefore(raw)
	if (err == nil) != (werr == nil) || (err != nil && err.Error() != werr.Error()) {
		t.Fatalf("ParseUser(%q): err %v, before %v", raw, err, werr)
	}
	if err != nil {
		return
	}
	if d := userDiff(got, want); d != "" {
		t.Fatalf("ParseUser(%q) differs from before: %s", raw, d)
	}
	// What is logged of the user and its unit IDs follow from the fields; check
	// them anyway, as these are what leaves the process.
	if g, w := got.appendLoggable(nil, nil), want.appendLoggable(nil, nil); !bytes.Equal(g, w) {
		t.Fatalf("ParseUser(%q) logs %s, before %s", raw, g, w)
	}
}

func TestParseUserSameAsBefore(t *testing.T) {
	for _, s := range parseUserSeeds {
		t.Run("", func(t *testing.T) { checkParseUserSameAsBefore(t, []byte(s)) })
	}
	// A large user, and one just over the size limit.
	var b strings.Builder
	b.WriteString(`{"userID":"big","custom":{`)
	for i := range 2000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":[%d,"v%d",{"n":%d}]`, i, i, i, i)
	}
	b.WriteString(`}}`)
	checkParseUserSameAsBefore(t, []byte(b.String()))
	huge := []byte(`{"userID":"` + strings.Repeat("x", maxUserBytes) + `"}`)
	if _, err := ParseUser(huge); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("a user over the limit: err %v", err)
	}
}

func FuzzParseUserSameAsBefore(f *testing.F) {
	for _, s := range parseUserSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkParseUserSameAsBefore)
}

// TestParseUserDoesNotAliasInput: a caller may reuse its buffer once ParseUser returned.
func TestParseUserDoesNotAliasInput(t *testing.T) {
	raw := []byte(`{"userID":"u1","custom":{"plan":"pro","tags":["a"]},"customIDs":{"c":"1"}}`)
	u, err := ParseUser(raw)
	if err != nil {
		t.Fatal(err)
	}
	before := string(u.appendLoggable(nil, nil))
	for i := range raw {
		raw[i] = 'X'
	}
	if after := string(u.appendLoggable(nil, nil)); after != before {
		t.Fatalf("the user changed with its input: %s, was %s", after, before)
	}
}
