package evalcore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// ParseUser was rewritten for speed (one walk, no intermediate maps). The
// previous implementation, kept here as the oracle, is the one the reference
// SDK was differential-tested against; the new one must build the same User
// from every input. (Since then the oracle reads custom, privateAttributes,
// customIDs and statsigEnvironment that are not objects as the reference
// does, by objectViewBefore, written apart from ParseUser's objectView.)

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
	expanded := 0 // the entries of strings and arrays read as objects
	r, ok, n := objectViewBefore(top["customIDs"])
	if expanded += n; expanded > maxExpandedEntries {
		return nil, fmt.Errorf("evalcore: user customIDs: %w", ErrUserTooManyEntries)
	}
	if ok {
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
	r, ok, n = objectViewBefore(top["custom"])
	if expanded += n; expanded > maxExpandedEntries {
		return nil, fmt.Errorf("evalcore: user custom: %w", ErrUserTooManyEntries)
	}
	if ok {
		u.custom, u.customRaw, err = parseAttributesBefore(r)
		if err != nil {
			return nil, fmt.Errorf("evalcore: user custom: %w", err)
		}
		u.hasCustom = true
	}
	r, ok, n = objectViewBefore(top["privateAttributes"])
	if expanded += n; expanded > maxExpandedEntries {
		return nil, fmt.Errorf("evalcore: user privateAttributes: %w", ErrUserTooManyEntries)
	}
	if ok {
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
	r, ok, n = objectViewBefore(top["statsigEnvironment"])
	if expanded += n; expanded > maxExpandedEntries {
		return nil, fmt.Errorf("evalcore: user statsigEnvironment: %w", ErrUserTooManyEntries)
	}
	if ok {
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

// objectViewBefore is the object the reference's JavaScript binding reads
// for a member r where it expects one, as JSON text: a string's UTF-16 code
// units (surrogates as U+FFFD) and an array's elements, keyed by index; {}
// for a number or a boolean. ok is false for null and an absent member; n is
// the number of a string's or an array's entries.
func objectViewBefore(r json.RawMessage) (_ json.RawMessage, ok bool, n int) {
	if r == nil {
		return nil, false, 0
	}
	d := json.NewDecoder(bytes.NewReader(r))
	d.UseNumber() // (1e999 is a number too)
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, false, 0
	}
	var elems []json.RawMessage
	switch x := v.(type) {
	case nil:
		return nil, false, 0
	case map[string]any:
		return r, true, 0
	case string:
		for _, u := range utf16.Encode([]rune(x)) {
			c := rune(u)
			if utf16.IsSurrogate(c) {
				c = utf8.RuneError
			}
			elems = append(elems, appendJSONString(nil, string(c)))
		}
	case []any:
		if err := json.Unmarshal(r, &elems); err != nil {
			return nil, false, 0
		}
	default:
		return json.RawMessage(`{}`), true, 0
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range elems {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%s", strconv.Itoa(i), e)
	}
	b.WriteByte('}')
	return b.Bytes(), true, len(elems)
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
	// fields that are not objects, as the reference's JavaScript binding reads them
	`{"custom":"x\u00e9\ud83d\ude00\ud83d!","privateAttributes":"ab","customIDs":"c\"d","statsigEnvironment":"staging"}`,
	`{"custom":"","privateAttributes":"","customIDs":"","statsigEnvironment":""}`,
	`{"custom":[ "x" , 1.50 , [ 1 ] , { "a" : null } , null , true ],"privateAttributes":["s",2],"customIDs":[ "a" , 5 , null , [1] ],"statsigEnvironment":["s",1,null]}`,
	`{"custom":[],"privateAttributes":[],"customIDs":[],"statsigEnvironment":[]}`,
	`{"custom":5,"privateAttributes":true,"customIDs":-1.5e3,"statsigEnvironment":false}`,
	`{"custom":{"a":1},"custom":"zy","customIDs":["x"],"customIDs":{"k":"v"}}`,
	"{\"custom\":\"bad\xff\",\"customIDs\":[\"\xfe\"]}",
	`{"custom":"0123456789abc"}`,
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

func TestLexIndices(t *testing.T) {
	for _, n := range []int{0, 1, 2, 9, 10, 11, 99, 100, 101, 109, 110, 999, 1000, 1001, 12345} {
		keys := newIndexKeys(n)
		want := make([]string, n)
		for i := range want {
			want[i] = strconv.Itoa(i)
			if got := keys.at(i); got != want[i] {
				t.Fatalf("n %d: key %d is %q", n, i, got)
			}
		}
		slices.Sort(want)
		var got []string
		for i := range lexIndices(n) {
			got = append(got, strconv.Itoa(i))
		}
		if n == 0 && got == nil {
			got = []string{}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("n %d: order %q, want %q", n, got, want)
		}
	}
}

// Strings and arrays long enough for keys of several digits (the logged order
// of the keys is not their index order), with repeated and colliding entries.
func TestParseUserIndexedSameAsBefore(t *testing.T) {
	var sb strings.Builder
	for r := rune(0); r < 128; r++ {
		sb.WriteRune(r)
	}
	sb.WriteString("é\u2028\u2029\U0001F600ΣİéA\U0001F600\ufffd")
	str, _ := json.Marshal(strings.Repeat(sb.String(), 3))
	elems := []string{`1`, `1.0`, `-0`, `1e999`, `"1"`, `"a"`, `"a\u0062"`, `"ab"`, `"é"`, `true`, `false`, `null`,
		`[]`, `[ 1 , "x" ]`, `{}`, `{ "k" : [ null ] }`, `"2024-01-02T03:04:05Z"`, `12345678901234567890`, `"` + strings.Repeat("z", 40) + `"`}
	var ab strings.Builder
	ab.WriteString("[ ")
	for i := range 400 {
		if i > 0 {
			ab.WriteString(" ,\n")
		}
		ab.WriteString(elems[(i*7+i/19)%len(elems)])
	}
	ab.WriteString(" ]")
	for _, field := range []string{"custom", "privateAttributes", "customIDs", "statsigEnvironment"} {
		for _, v := range []string{string(str), ab.String()} {
			checkParseUserSameAsBefore(t, []byte(`{"`+field+`":`+v+`}`))
		}
	}
}

// The entries of strings and arrays read as objects are bounded in all. (The
// oracle, slow at this size, checks two of the users.)
func TestParseUserTooManyEntries(t *testing.T) {
	str := func(n int) string { return `"` + strings.Repeat("x", n) + `"` }
	arr := func(n int) string { return "[" + strings.Repeat("1,", n-1) + "1]" }
	for _, c := range []struct {
		raw             string
		tooMany, oracle bool
	}{
		{`{"custom":` + str(maxExpandedEntries) + `}`, false, false},
		{`{"custom":` + str(maxExpandedEntries+1) + `}`, true, false},
		{`{"customIDs":` + arr(maxExpandedEntries+1) + `}`, true, false},
		{`{"custom":` + str(maxExpandedEntries-2) + `,"statsigEnvironment":"\ud83d\ude00"}`, false, true},
		{`{"custom":` + str(maxExpandedEntries-1) + `,"statsigEnvironment":"\ud83d\ude00"}`, true, true},
		{`{"customIDs":` + arr(maxExpandedEntries/2) + `,"privateAttributes":` + arr(maxExpandedEntries/2+1) + `}`, true, false},
		// only the last of duplicate members counts
		{`{"custom":` + str(maxExpandedEntries) + `,"custom":"y","privateAttributes":` + str(maxExpandedEntries-1) + `}`, false, false},
	} {
		_, err := ParseUser([]byte(c.raw))
		if errors.Is(err, ErrUserTooManyEntries) != c.tooMany {
			t.Errorf("ParseUser(%.60q...): %v, want too many %v", c.raw, err, c.tooMany)
		}
		if c.oracle && !testing.Short() {
			checkParseUserSameAsBefore(t, []byte(c.raw))
		}
	}
}
