package evalcore

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// The user and rule-set parsers split objects and decode scalars with fast
// paths; these check them against encoding/json, which they replace.

func stdDecodeObject(raw []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	err := json.Unmarshal(raw, &m)
	return m, err
}

func stdDecodeAny(raw []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

var jsonSeeds = []string{
	`{"userID":"a","custom":{"level":9,"x":[1,{"a":null}]},"email":"a@b.c"}`,
	`{"a":1,"a":2}`, ` { "k" : "v" , "n" : -0.5e+3 } `, `{"\u00e9":"\ud83d\ude00","e\"q":"\\"}`,
	"{\"bad\":\"\xff\xfe\"}", "{\"k\xff\":1}", `{"a":"b" "c"}`, `{}`, `{"a":}`, `{"a":[1,2,]}`, `[]`, `"x"`,
	`"abc"`, `"a\nb"`, `"é"`, `-0`, `01`, `1.`, `1e`, `1E+2`, `true`, `tru`, `null`, `"a" "b"`, ` 12 `, `{"a":{"b":{"c":"}"}}}`,
	"\"\t\"", `"\u2028"`,
}

func FuzzJSONFastPaths(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if firstByte(raw) == '{' {
			got, err := decodeObject(raw)
			want, werr := stdDecodeObject(raw)
			if (err == nil) != (werr == nil) {
				t.Fatalf("decodeObject(%q): err %v, encoding/json err %v", raw, err, werr)
			}
			if err == nil && !reflect.DeepEqual(normRaw(got), normRaw(want)) {
				t.Fatalf("decodeObject(%q) = %q, want %q", raw, got, want)
			}
		}
		if json.Valid(raw) {
			got, err := decodeAny(raw)
			want, werr := stdDecodeAny(raw)
			if (err == nil) != (werr == nil) || !reflect.DeepEqual(got, want) {
				t.Fatalf("decodeAny(%q) = %#v, %v; want %#v, %v", raw, got, err, want, werr)
			}
			var buf bytes.Buffer
			_ = json.Compact(&buf, raw)
			if c := compactJSON(raw); !bytes.Equal(c, buf.Bytes()) {
				t.Fatalf("compactJSON(%q) = %q, want %q", raw, c, buf.Bytes())
			}
		}
		s, ok := jsonString(raw)
		var ws string
		wok := firstByte(raw) == '"' && json.Unmarshal(raw, &ws) == nil
		if ok != wok || s != ws {
			t.Fatalf("jsonString(%q) = %q, %v; want %q, %v", raw, s, ok, ws, wok)
		}
	})
}

// normRaw maps nil and empty member maps alike (encoding/json allocates one
// for "{}" as decodeObject does; this only guards the comparison).
func normRaw(m map[string]json.RawMessage) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

// TestDecodeObjectAliasing: members alias the input but cannot be appended
// into it.
func TestDecodeObjectAliasing(t *testing.T) {
	raw := []byte(`{"a":"x","b":"y"}`)
	m, err := decodeObject(raw)
	if err != nil {
		t.Fatal(err)
	}
	_ = append(m["a"], 'Z')
	if string(raw) != `{"a":"x","b":"y"}` {
		t.Fatalf("append wrote into the input: %s", raw)
	}
}
