package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestDecodeBatch(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr error
		events  []string // raw events kept, in order
		dropped map[string]int
		meta    string
		fields  []string
	}{
		{name: "go-sdk shape",
			body:   `{"events":[{"eventName":"a","user":{"userID":"u"},"value":"","metadata":{"k":"v"},"time":1}],"statsigMetadata":{"sdkType":"go-sdk","sdkVersion":"1.35.1"}}`,
			events: []string{`{"eventName":"a","user":{"userID":"u"},"value":"","metadata":{"k":"v"},"time":1}`},
			meta:   `{"sdkType":"go-sdk","sdkVersion":"1.35.1"}`},
		{name: "whitespace and order kept byte for byte",
			body:   " {\n \"statsigMetadata\" : {} ,\n \"events\" : [ {\"value\" : 1.5e3 , \"eventName\":\"x\"} ,\t{\"eventName\":\"y\\u00e9\"} ] }\n",
			events: []string{`{"value" : 1.5e3 , "eventName":"x"}`, `{"eventName":"y\u00e9"}`},
			meta:   `{}`},
		{name: "empty events", body: `{"events":[]}`},
		{name: "other top-level fields kept",
			body:   `{"events":[{"eventName":"a"}],"clientTime":"123","x":[1,2]}`,
			events: []string{`{"eventName":"a"}`}, fields: []string{`"clientTime":"123"`, `"x":[1,2]`}},
		{name: "malformed events dropped, good ones kept",
			body:    `{"events":[1,{"eventName":"ok"},"s",null,[],{},{"eventName":5},{"eventName":""},{"eventName":null},{"eventName":"ok2","eventName":{}},{"eventName":{},"eventName":"ok3"}]}`,
			events:  []string{`{"eventName":"ok"}`, `{"eventName":{},"eventName":"ok3"}`},
			dropped: map[string]int{"event_not_object": 4, "missing_event_name": 1, "invalid_event_name": 4}},
		{name: "escaped key names", body: `{"ev\u0065nts":[{"event\u004eame":"a"}]}`, events: []string{`{"event\u004eame":"a"}`}},
		{name: "last events member wins", body: `{"events":[{"eventName":"old"}],"events":[{"eventName":"new"}]}`, events: []string{`{"eventName":"new"}`}},
		{name: "invalid UTF-8 passes as encoding/json does", body: "{\"events\":[{\"eventName\":\"\xff\"}]}", events: []string{"{\"eventName\":\"\xff\"}"}},
		{name: "empty body", body: "", wantErr: ErrInvalidJSON},
		{name: "blank body", body: " \n", wantErr: ErrInvalidJSON},
		{name: "not JSON", body: `events=1`, wantErr: ErrInvalidJSON},
		{name: "truncated", body: `{"events":[{"eventName":"a"}`, wantErr: ErrInvalidJSON},
		{name: "truncated after a key", body: `{"events":`, wantErr: ErrInvalidJSON},
		{name: "truncated after an event's key", body: `{"events":[{"eventName":`, wantErr: ErrInvalidJSON},
		{name: "truncated in a string", body: `{"events":[{"eventName":"abc`, wantErr: ErrInvalidJSON},
		{name: "truncated in an escape", body: `{"events":[{"eventName":"a\u00`, wantErr: ErrInvalidJSON},
		{name: "trailing garbage", body: `{"events":[]} x`, wantErr: ErrInvalidJSON},
		{name: "two values", body: `{"events":[]}{}`, wantErr: ErrInvalidJSON},
		{name: "bad escape", body: `{"events":[{"eventName":"a\x"}]}`, wantErr: ErrInvalidJSON},
		{name: "control char in string", body: "{\"events\":[{\"eventName\":\"a\tb\"}]}", wantErr: ErrInvalidJSON},
		{name: "leading zero", body: `{"events":[{"eventName":"a","v":01}]}`, wantErr: ErrInvalidJSON},
		{name: "bad literal", body: `{"events":[{"eventName":"a","v":tru}]}`, wantErr: ErrInvalidJSON},
		{name: "trailing comma", body: `{"events":[{"eventName":"a"},]}`, wantErr: ErrInvalidJSON},
		{name: "too deep", body: `{"events":[{"eventName":"a","v":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `}]}`, wantErr: ErrInvalidJSON},
		{name: "one object too deep", body: `{"events":[{"eventName":"a","v":` + strings.Repeat(`{"a":`, maxDepth-2) + `1` + strings.Repeat("}", maxDepth-2) + `}]}`, wantErr: ErrInvalidJSON},
		// The body, "events" and the event are 3 of encoding/json's 10000 levels.
		{name: "as deep as encoding/json goes", body: `{"events":[{"eventName":"a","v":` + strings.Repeat(`{"a":[`, (maxDepth-3)/2) + `1` + strings.Repeat("]}", (maxDepth-3)/2) + `}]}`,
			events: []string{`{"eventName":"a","v":` + strings.Repeat(`{"a":[`, (maxDepth-3)/2) + `1` + strings.Repeat("]}", (maxDepth-3)/2) + `}`}},
		{name: "top-level array", body: `[{"eventName":"a"}]`, wantErr: ErrInvalidBatch},
		{name: "top-level null", body: `null`, wantErr: ErrInvalidBatch},
		{name: "no events", body: `{"statsigMetadata":{}}`, wantErr: ErrInvalidBatch},
		{name: "events not an array", body: `{"events":{"eventName":"a"}}`, wantErr: ErrInvalidBatch},
		{name: "events null", body: `{"events":null}`, wantErr: ErrInvalidBatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := DecodeBatch([]byte(tc.body))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range b.Events {
				got = append(got, string(e))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.events) {
				t.Errorf("events = %q, want %q", got, tc.events)
			}
			if d := b.Dropped.Map(); fmt.Sprint(d) != fmt.Sprint(orEmpty(tc.dropped)) {
				t.Errorf("dropped = %v, want %v", d, tc.dropped)
			}
			if b.Total != len(b.Events)+b.Dropped.Total() {
				t.Errorf("total %d != kept %d + dropped %d", b.Total, len(b.Events), b.Dropped.Total())
			}
			if string(b.Metadata) != tc.meta {
				t.Errorf("metadata = %q, want %q", b.Metadata, tc.meta)
			}
			var fields []string
			for _, f := range b.Fields {
				fields = append(fields, string(f))
			}
			if fmt.Sprint(fields) != fmt.Sprint(tc.fields) {
				t.Errorf("fields = %q, want %q", fields, tc.fields)
			}
		})
	}
}

func orEmpty(m map[string]int) map[string]int {
	if m == nil {
		return map[string]int{}
	}
	return m
}

func TestBatchSDKInfo(t *testing.T) {
	tests := []struct {
		name, metadata string
	}{
		{"strings", `{"sdkType":"statsig-node","sdkVersion":"6.5.2","sessionID":"s"}`},
		{"not strings", `{"sdkType":5,"sdkVersion":{"v":"1"}}`},
		{"missing", `{"sessionID":"s"}`},
		{"null", `null`},
		{"escapes", `{"sdkType":"go\u002dsdk","sdkV\u0065rsion":"1.0\n"}`},
		{"last duplicate wins", `{"sdkType":"a","sdkType":"b","sdkVersion":"1","sdkVersion":2}`},
		{"keys match ignoring case", `{"SDKTYPE":"a","sdkversion":"1"}`},
		{"keys fold like Unicode", "{\"\u017fdkType\":\"long s\",\"\xc5\xbfdkVersion\":\"2\"}"},
		{"non-ASCII", "{\"sdkType\":\"sdk-Ã©\",\"sdkVersion\":\"ÿ\"}"},
		{"whitespace", " { \"sdkType\" : \"x\" , \"sdkVersion\" : \"y\" } "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := DecodeBatch([]byte(`{"events":[],"statsigMetadata":` + tc.metadata + `}`))
			if err != nil {
				t.Fatal(err)
			}
			// The oracle: what encoding/json decodes.
			var m struct {
				SDKType    any `json:"sdkType"`
				SDKVersion any `json:"sdkVersion"`
			}
			_ = json.Unmarshal(b.Metadata, &m)
			wantType, _ := m.SDKType.(string)
			wantVersion, _ := m.SDKVersion.(string)
			if typ, ver := b.SDKInfo(); typ != wantType || ver != wantVersion {
				t.Fatalf("SDKInfo = %q %q, encoding/json %q %q", typ, ver, wantType, wantVersion)
			}
		})
	}
	if typ, ver := (&Batch{Metadata: []byte(`{"sdkType":"statsig-node","sdkVersion":"6.5.2"}`)}).SDKInfo(); typ != "statsig-node" || ver != "6.5.2" {
		t.Fatalf("SDKInfo = %q %q", typ, ver)
	}
}

// refDecode is DecodeBatch written with encoding/json: the oracle of the fuzz target.
func refDecode(data []byte) (events [][]byte, dropped DropCounts, err error) {
	if !json.Valid(data) {
		return nil, dropped, ErrInvalidJSON
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	var top map[string]json.RawMessage
	if trimmed[0] != '{' || json.Unmarshal(data, &top) != nil {
		return nil, dropped, ErrInvalidBatch
	}
	raw, ok := top["events"]
	if !ok || raw[0] != '[' {
		return nil, dropped, ErrInvalidBatch
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, dropped, ErrInvalidBatch
	}
	for _, e := range list {
		var obj map[string]json.RawMessage
		if e[0] != '{' || json.Unmarshal(e, &obj) != nil {
			dropped[DropNotObject]++
			continue
		}
		name, ok := obj["eventName"]
		if !ok {
			dropped[DropMissingName]++
			continue
		}
		var s string
		if name[0] != '"' || json.Unmarshal(name, &s) != nil || s == "" {
			dropped[DropInvalidName]++
			continue
		}
		events = append(events, e)
	}
	return events, dropped, nil
}

// FuzzDecodeBatch checks DecodeBatch against encoding/json on any input: the same verdict (invalid
// JSON, not a batch, or a batch), the same kept events byte for byte, the same drop counts. Run it
// with: go test ./queue -run '^$' -fuzz FuzzDecodeBatch -fuzztime 5m
func FuzzDecodeBatch(f *testing.F) {
	for _, s := range []string{
		`{"events":[{"eventName":"a","user":{"userID":"u","customIDs":{"c":"1"}},"value":null,"metadata":{"k":"v"},"time":1}],"statsigMetadata":{}}`,
		`{"events":[1,{"eventName":"ok"},"s",null,[],{},{"eventName":5},{"eventName":""}]}`,
		`{"ev\u0065nts":[{"event\u004eame":"a"}]}`,
		`{"events":[{"eventName":"a"}],"events":{}}`,
		`{"events":[{"eventName":"\ud800"}]}`,
		`{"events":[{"eventName":"a","n":-0.5e-7,"t":true,"f":false}]}`,
		`[1]`, `"x"`, `{}`, ``, `{"events":[`, `{"events":`, `{"a":"\u12`, "{\"events\":[{\"eventName\":\"\xff\"}]}",
		`{"events":[],"statsigMetadata":{"sdkType":"go\u002dsdk","sdkVersion":1,"sdkVersion":"2"}}`,
		`{"events":[],"statsigMetadata":{"SDKtype":"a","sdkTYpe":"b"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		compareMasked(t, data)
		b, err := DecodeBatch(data)
		wantEvents, wantDropped, wantErr := refDecode(data)
		if wantErr != nil {
			if !errors.Is(err, wantErr) {
				t.Fatalf("DecodeBatch(%q) err = %v, encoding/json says %v", data, err, wantErr)
			}
			return
		}
		if err != nil {
			t.Fatalf("DecodeBatch(%q) = %v, encoding/json accepts it", data, err)
		}
		if len(b.Events) != len(wantEvents) {
			t.Fatalf("DecodeBatch(%q) kept %d events, encoding/json %d", data, len(b.Events), len(wantEvents))
		}
		for i := range wantEvents {
			if !bytes.Equal(b.Events[i], wantEvents[i]) {
				t.Fatalf("event %d = %q, encoding/json %q", i, b.Events[i], wantEvents[i])
			}
		}
		if b.Dropped != wantDropped {
			t.Fatalf("DecodeBatch(%q) dropped %v, encoding/json %v", data, b.Dropped, wantDropped)
		}
		var m struct {
			SDKType    any `json:"sdkType"`
			SDKVersion any `json:"sdkVersion"`
		}
		if len(b.Metadata) > 0 && b.Metadata[0] == '{' {
			_ = json.Unmarshal(b.Metadata, &m)
		}
		wantType, _ := m.SDKType.(string)
		wantVersion, _ := m.SDKVersion.(string)
		if typ, ver := b.SDKInfo(); typ != wantType || ver != wantVersion {
			t.Fatalf("SDKInfo of %q = %q %q, encoding/json %q %q", b.Metadata, typ, ver, wantType, wantVersion)
		}
		// A rebuilt body must be valid JSON too: it is what the forwarder reads after a split.
		parts, _, err := buildBodies(b.Events, b.Metadata, b.Fields, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range parts {
			if !json.Valid(p.body) {
				t.Fatalf("rebuilt body is not JSON: %q", p.body)
			}
		}
	})
}

func BenchmarkDecodeBatch(b *testing.B) {
	for _, n := range []int{100, 1000} {
		body := sampleBatch(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeBatch(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// sampleEvent is a realistic gate exposure (about 500 bytes), as go-sdk sends it.
func sampleEvent(i int) string {
	return fmt.Sprintf(`{"eventName":"statsig::gate_exposure","user":{"userID":"user-%d","email":"u%d@example.com","customIDs":{"companyID":"c%d"},"custom":{"plan":"pro"}},"value":"","metadata":{"gate":"new_checkout","gateValue":"true","ruleID":"6Nq0mUKkBLkAGVIfMCbNNr","reason":"Network","configSyncTime":"1767225600000","initTime":"1767225600000","serverTime":"1767225612345"},"secondaryExposures":[{"gate":"employees","gateValue":"false","ruleID":"default"}],"time":%d,"statsigMetadata":null}`, i, i, i%50, 1767225612345+int64(i))
}

func sampleBatch(n int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"events":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(sampleEvent(i))
	}
	sb.WriteString(`],"statsigMetadata":{"sdkType":"go-sdk","sdkVersion":"1.35.1","languageVersion":"go1.26","sessionID":"8d6f1c9e"}}`)
	return []byte(sb.String())
}

// TestBatchDecodeReusesItsMemory decodes bodies of every kind one after another into one Batch,
// failures in between: each result must be what a fresh DecodeBatch gives, and once the Batch has
// grown, decoding allocates nothing.
func TestBatchDecodeReusesItsMemory(t *testing.T) {
	bodies := [][]byte{
		sampleBatch(100),
		[]byte(`{"events":[{"eventName":"a"},1],"x":true,"statsigMetadata":{"sdkType":"t"}}`),
		[]byte(`{"events":[{"eventName":"a"}`), // broken
		sampleBatch(3),
		[]byte(`{"events":[]}`),
		[]byte(`{"other":1,"events":[{"eventName":"b"}],"more":[2]}`),
	}
	var b Batch
	for round := range 2 {
		for k, body := range bodies {
			want, wantErr := DecodeBatch(body)
			err := b.Decode(body)
			if fmt.Sprint(err) != fmt.Sprint(wantErr) {
				t.Fatalf("round %d body %d: error %v, fresh %v", round, k, err, wantErr)
			}
			if err != nil {
				continue
			}
			same := slices.EqualFunc(b.Events, want.Events, bytes.Equal) &&
				slices.EqualFunc(b.Fields, want.Fields, bytes.Equal) &&
				bytes.Equal(b.Body, want.Body) && bytes.Equal(b.EventsRaw, want.EventsRaw) &&
				bytes.Equal(b.Metadata, want.Metadata) && b.Total == want.Total && b.Dropped == want.Dropped
			if !same {
				t.Fatalf("round %d body %d: reused batch %+v, fresh %+v", round, k, b, *want)
			}
		}
	}
	big := sampleBatch(100)
	if allocs := testing.AllocsPerRun(20, func() { _ = b.Decode(big) }); allocs != 0 {
		t.Errorf("Decode into a grown batch allocates %.0f times, want 0", allocs)
	}
}
