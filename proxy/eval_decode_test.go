package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/sigedge/sigedge/evalcore"
)

// evalRequestSeeds are request bodies in the shapes clients send and in every shape the fast
// decoder hands back to encoding/json.
var evalRequestSeeds = []string{
	`{"user":{"userID":"u1","country":"US"},"gateName":"new_checkout"}`,
	` { "user" : { "userID" : "u1" } , "gateNames" : [ "a" , "b" ] , "disableExposureLogging" : true } `,
	`{"user":null,"configName":"c","statsigMetadata":{"exposureLoggingDisabled":true,"other":[1,{"x":"}"}]}}`,
	`{"layerNames":[],"hash":"djb2","sinceTime":1767225600000}`,
	`{"hash":null,"sinceTime":"123","gateName":null,"gateNames":null}`,
	`{"gateName":"a","gateName":"b","user":{"userID":"x"},"user":{"userID":"y"}}`,
	`{"disableExposureLogging":true,"disableExposureLogging":null}`,
	`{"statsigMetadata":{"exposureLoggingDisabled":true},"statsigMetadata":{},"statsigMetadata":null}`,
	`{"unknown":{"deep":[1,2,{"gateName":"not me"}]},"n":-1.5e3,"t":true,"f":false,"z":null,"gateName":"g"}`,
	`{"gateName":"esc\"aped \u00e9 \ud83d\ude00 \n"}`,
	"{\"gateName\":\"bad\xff utf8\"}",
	// Left to encoding/json:
	`{"GATENAME":"case-insensitive match"}`, `{"gatename":"x","gateName":"y"}`, `{"gate\u004eame":"escaped key"}`,
	`{"haſh":"unicode fold"}`, `{"statsigMetadata":{"EXPOSURELOGGINGDISABLED":true}}`,
	`{"gateName":5}`, `{"gateNames":"a"}`, `{"gateNames":["a",null]}`, `{"gateNames":[1]}`, `{"gateNames":{}}`,
	`{"disableExposureLogging":"yes"}`, `{"disableExposureLogging":1}`, `{"statsigMetadata":[]}`,
	`{"statsigMetadata":{"exposureLoggingDisabled":"true"}}`, `{"hash":5}`, `{"hash":[]}`,
	`null`, `[]`, `"x"`, `5`, `{`, `{"gateName":`, `{"gateName":"a"} trailing`, `{"a":1,}`, `{} {}`,
	"{\"gateName\":\"a\"}\u00a0", "\u00a0{}", ``, ` `, `{}`,
}

func decodeWithEncodingJSON(data []byte) (evalRequest, error) {
	var req evalRequest
	err := json.Unmarshal(data, &req)
	return req, err
}

func checkDecodeLikeEncodingJSON(t *testing.T, data []byte) {
	t.Helper()
	var got evalRequest
	err := decodeEvalRequest(data, &got)
	want, werr := decodeWithEncodingJSON(data)
	if fmt.Sprint(err) != fmt.Sprint(werr) {
		t.Fatalf("decode(%q): err %v, encoding/json %v", data, err, werr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("decode(%q):\n got %+v\nwant %+v", data, got, want)
	}
}

func TestDecodeEvalRequestLikeEncodingJSON(t *testing.T) {
	for _, s := range evalRequestSeeds {
		t.Run("", func(t *testing.T) { checkDecodeLikeEncodingJSON(t, []byte(s)) })
	}
}

func FuzzDecodeEvalRequest(f *testing.F) {
	for _, s := range evalRequestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecodeLikeEncodingJSON(t, data)
		// Whatever the body, the whole request path answers or refuses; it never panics.
		s := &evalService{maxUser: 1 << 10}
		if req, u, aerr := s.decode(data); aerr == nil && (req == nil || u == nil) {
			t.Fatalf("decode(%q) accepted without a request or user", data)
		}
	})
}

// jsonValidFast is the scanner's verdict on a whole document.
func jsonValidFast(data []byte) bool {
	s := jsonScan{t: data}
	end, ok := s.skipValue(s.skipSpace(0))
	return ok && s.skipSpace(end) == len(data)
}

var jsonValiditySeeds = []string{
	`{}`, `[]`, `""`, `0`, `-0`, `-0.5e-3`, `1E+2`, `123`, `true`, `false`, `null`, ` [ 1 , "a" , { } ] `,
	`{"a":{"b":[1,{"c":null}]},"d":"\"\\\/\b\f\n\r\t\u00e9\uD83D"}`, "\"\xff\xfe\"", "\"\u2028\"",
	`01`, `-`, `1.`, `.5`, `+1`, `1e`, `1e+`, `--1`, `0x1`, `1.e3`, `Infinity`, `NaN`,
	`[1,]`, `[,1]`, `[1 2]`, `{"a" 1}`, `{"a":1 "b":2}`, `{"a":1,}`, `{,}`, `{1:2}`, `{"a"}`, `{"a":}`,
	`tru`, `nul`, `falsey`, `[`, `]`, `{`, `"`, `"\"`, `"\x"`, `"\u12"`, `"\u12g4"`, "\"a\tb\"", "\"\x00\"",
	`1 2`, `{} {}`, "{}\u00a0", "\u00a0{}", ``, ` `, `[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]`,
}

func checkScanAgreesWithValid(t *testing.T, data []byte) {
	got, want := jsonValidFast(data), json.Valid(data)
	if got && !want {
		t.Fatalf("the scanner accepts %q, which encoding/json refuses", data)
	}
	if want && !got && bytes.Count(data, []byte("["))+bytes.Count(data, []byte("{")) <= maxScanDepth {
		t.Fatalf("the scanner refuses %q, which encoding/json accepts", data)
	}
}

func TestJSONScanAgreesWithValid(t *testing.T) {
	for _, s := range append(jsonValiditySeeds, evalRequestSeeds...) {
		checkScanAgreesWithValid(t, []byte(s))
	}
	deep := strings.Repeat("[", maxScanDepth+1) + strings.Repeat("]", maxScanDepth+1)
	if jsonValidFast([]byte(deep)) {
		t.Fatal("nesting beyond maxScanDepth is not left to encoding/json")
	}
}

func FuzzJSONScan(f *testing.F) {
	for _, s := range append(jsonValiditySeeds, evalRequestSeeds...) {
		f.Add([]byte(s))
	}
	f.Fuzz(checkScanAgreesWithValid)
}

// TestFastDecodeCoversTheUsualShapes: the shapes clients send must not fall back to
// encoding/json (which would still be right, only slower).
func TestFastDecodeCoversTheUsualShapes(t *testing.T) {
	for _, s := range evalRequestSeeds[:11] {
		var req evalRequest
		if !fastDecodeEvalRequest([]byte(s), &req) {
			t.Errorf("%s: left to encoding/json", s)
		}
	}
	for _, s := range []string{`{"GATENAME":"x"}`, `{"gateName":5}`, `{"gate\u004eame":"x"}`, `null`, `{`} {
		var req evalRequest
		if fastDecodeEvalRequest([]byte(s), &req) {
			t.Errorf("%s: decoded by the fast path, which cannot match encoding/json on it", s)
		}
	}
}

// decodeBefore is the request decoding the fast path replaced: encoding/json for the envelope,
// then the user as decode still treats it.
func decodeBefore(s *evalService, data []byte) (*evalRequest, *evalcore.User, *apiError) {
	var req evalRequest
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil, badRequest("empty body: send a JSON object such as {\"user\":{\"userID\":\"u1\"},\"gateName\":\"my_gate\"}")
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, nil, badRequest("body is not a valid request: %v", err)
	}
	raw := bytes.TrimSpace(req.User)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		raw = []byte("{}")
	}
	if raw[0] != '{' {
		return nil, nil, badRequest("user must be a JSON object")
	}
	if int64(len(raw)) > s.maxUser {
		return nil, nil, &apiError{http.StatusRequestEntityTooLarge, fmt.Sprintf("user object larger than %d bytes (limits.max_user_bytes)", s.maxUser)}
	}
	u, err := evalcore.ParseUser(raw)
	if err != nil {
		return nil, nil, badRequest("invalid user: %v", err)
	}
	req.User = raw
	return &req, u, nil
}

// TestDecodeAnswersAsBefore: bad JSON, wrong types and oversized users get the same status and
// reason as before the fast path, and good requests the same names and user.
func TestDecodeAnswersAsBefore(t *testing.T) {
	s := &evalService{maxUser: 64}
	bodies := append([]string{
		`{"user":{"userID":"` + strings.Repeat("x", 100) + `"},"gateName":"a"}`,
		`{"user":"u1","gateName":"a"}`, `{"user":[],"gateName":"a"}`, `{"user":5}`,
		`{"user":{"userID":"u1","custom":{"a":[1,2]}}}`, `{"user":{"userID":7},"gateNames":["a","","b"]}`,
	}, evalRequestSeeds...)
	for _, body := range bodies {
		t.Run("", func(t *testing.T) {
			req, u, aerr := s.decode([]byte(body))
			wreq, wu, werr := decodeBefore(s, []byte(body))
			if (aerr == nil) != (werr == nil) {
				t.Fatalf("%s: error %v, before %v", body, aerr, werr)
			}
			if aerr != nil {
				if *aerr != *werr {
					t.Fatalf("%s: %d %q, before %d %q", body, aerr.status, aerr.reason, werr.status, werr.reason)
				}
				return
			}
			for _, k := range []evalKind{kindGate, kindConfig, kindLayer} {
				n, batch, nerr := req.names(k)
				wn, wbatch, wnerr := wreq.names(k)
				if !reflect.DeepEqual(n, wn) || batch != wbatch || fmt.Sprint(nerr) != fmt.Sprint(wnerr) {
					t.Fatalf("%s: %s names %q %v %v, before %q %v %v", body, k, n, batch, nerr, wn, wbatch, wnerr)
				}
			}
			if unitHash(u) != unitHash(wu) || u.UserID() != wu.UserID() {
				t.Fatalf("%s: a different user than before", body)
			}
		})
	}
}

func TestUnitHash(t *testing.T) {
	hash := func(raw string) uint64 {
		t.Helper()
		u, err := evalcore.ParseUser([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		return unitHash(u)
	}
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"other attributes do not count", `{"userID":"u1","email":"a@b.c"}`, `{"userID":"u1","country":"US"}`, true},
		{"number and string IDs are one user", `{"userID":7}`, `{"userID":"7"}`, true},
		{"customIDs in any order", `{"customIDs":{"a":"1","b":"2"}}`, `{"customIDs":{"b":"2","a":"1"}}`, true},
		{"different userIDs", `{"userID":"u1"}`, `{"userID":"u2"}`, false},
		{"a customID added", `{"userID":"u1"}`, `{"userID":"u1","customIDs":{"c":"1"}}`, false},
		{"a customID's value", `{"customIDs":{"c":"1"}}`, `{"customIDs":{"c":"2"}}`, false},
		{"ID boundaries", `{"userID":"ab","customIDs":{"c":"d"}}`, `{"userID":"a","customIDs":{"bc":"d"}}`, false},
		{"a customID named userID is not the userID", `{"userID":"x"}`, `{"userID":"","customIDs":{"userID":"x"}}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := hash(tc.a) == hash(tc.b); got != tc.same {
				t.Fatalf("same hash %v, want %v", got, tc.same)
			}
		})
	}
}

// objectKeysBefore is the json.Decoder-based objectKeys the scanner replaced.
func objectKeysBefore(raw []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	var keys []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return keys
		}
		k, _ := t.(string)
		keys = append(keys, k)
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return keys
		}
	}
	return keys
}

func FuzzObjectKeys(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"b":{"c":[1,"}"]},"a":null}`, ` {"\u00e9\"":"x"} `, `[]`, `{"a":`, `5`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			objectKeys(raw) // a layer's value is always valid; this must only not panic
			return
		}
		if got, want := objectKeys(raw), objectKeysBefore(raw); !reflect.DeepEqual(got, want) {
			t.Fatalf("objectKeys(%q) = %q, want %q", raw, got, want)
		}
	})
}

func TestAppendJSONStringAsBefore(t *testing.T) {
	for _, s := range []string{"plain", `q"b\`, "ctl\x00\x1f\n\t", "é😀", "bad\xff", "\u2028\u2029"} {
		// Before: encoding/json with HTML escaping; now none, and the same text otherwise.
		want, _ := json.Marshal(s)
		got := evalcore.AppendJSONString(nil, s)
		if !bytes.Equal(got, want) {
			t.Errorf("%q: %s, encoding/json %s", s, got, want)
		}
		var back string
		if err := json.Unmarshal(got, &back); err != nil || back != strings.ToValidUTF8(s, "\uFFFD") {
			t.Errorf("%q does not read back: %q %v", s, back, err)
		}
	}
	if got := string(evalcore.AppendJSONString(nil, "<a&b>")); got != `"<a&b>"` {
		t.Errorf("HTML characters escaped: %s", got)
	}
}
