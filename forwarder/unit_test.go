package forwarder

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseBody(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		wantEvents string
		wantCount  int
		wantMeta   string
		wantExtra  string
		wantErr    string
	}{
		{"go sdk", `{"events":[{"eventName":"a"},{"eventName":"b"}],"statsigMetadata":{"sdkType":"go-sdk","sessionID":"s"}}`,
			`{"eventName":"a"},{"eventName":"b"}`, 2, `{"sdkType":"go-sdk","sessionID":"s"}`, "", ""},
		{"metadata first, whitespace", " {\n \"statsigMetadata\" : {\"a\":1} ,\n \"events\" : [ 1 , \"x]\" , [ ] ] } ",
			`1 , "x]" , [ ]`, 3, `{"a":1}`, "", ""},
		{"no metadata", `{"events":[{}]}`, `{}`, 1, "", "", ""},
		{"null metadata", `{"events":[{}],"statsigMetadata":null}`, `{}`, 1, "", "", ""},
		{"empty events", `{"events":[],"statsigMetadata":{}}`, ``, 0, `{}`, "", ""},
		{"empty events with spaces", `{"events":[  ]}`, ``, 0, "", "", ""},
		{"strings with braces and escapes", `{"events":[{"n":"}\"]{"},{"n":"\\"}],"x":{"events":[9]}}`,
			`{"n":"}\"]{"},{"n":"\\"}`, 2, "", `"x":{"events":[9]}`, ""},
		{"escaped key", `{"ev\u0065nts":[true]}`, `true`, 1, "", "", ""},
		{"other fields kept", `{"foo":[1,2],"events":[null],"bar":"baz"}`, `null`, 1, "", `"foo":[1,2],"bar":"baz"`, ""},
		{"numbers", `{"events":[1.5e3,-2,0]}`, `1.5e3,-2,0`, 3, "", "", ""},
		{"not json", `{"events":[`, "", 0, "", "", "not valid JSON"},
		{"not object", `[1,2]`, "", 0, "", "", "not a JSON object"},
		{"events not array", `{"events":{"a":1}}`, "", 0, "", "", "not an array"},
		{"no events", `{"statsigMetadata":{}}`, "", 0, "", "", `no "events"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseBody([]byte(tc.body))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(p.events) != tc.wantEvents || p.count != tc.wantCount || string(p.meta) != tc.wantMeta || string(p.extra) != tc.wantExtra {
				t.Errorf("got events=%q count=%d meta=%q extra=%q, want %q %d %q %q",
					p.events, p.count, p.meta, p.extra, tc.wantEvents, tc.wantCount, tc.wantMeta, tc.wantExtra)
			}
		})
	}
}

func TestClientTime(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	tests := []struct {
		name string
		msgs []*message
		want time.Time
	}{
		{"no SDK time: the forwarder's clock", []*message{{}}, now},
		{"SDK clock 3 s ahead of the proxy's stays 3 s ahead", []*message{{clockOffset: 3 * time.Second, hasOffset: true}}, now.Add(3 * time.Second)},
		{"SDK clock behind", []*message{{clockOffset: -90 * time.Second, hasOffset: true}}, now.Add(-90 * time.Second)},
	}
	for _, tc := range tests {
		if got := clientTime(&batch{msgs: tc.msgs}, now); !got.Equal(tc.want) {
			t.Errorf("%s: clientTime = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func msgFor(key, meta string, count, size int) *message {
	events := bytes.Repeat([]byte("1,"), count)
	events = events[:len(events)-1]
	if size > len(events) {
		events = append(events, bytes.Repeat([]byte(" "), size-len(events))...)
	}
	var m []byte
	if meta != "" {
		m = []byte(meta)
	}
	return &message{key: key, endpoint: endpointLogEvent, sdkType: "go-sdk", sdkVersion: "1", events: events, count: count, meta: m, size: len(events)}
}

func TestBatcher(t *testing.T) {
	now := time.Unix(1000, 0)
	type step struct {
		m         *message
		wantReady []int // event counts of the batches handed out by this add
	}
	tests := []struct {
		name      string
		maxEvents int
		maxBytes  int
		steps     []step
		wantOpen  int
	}{
		{"fills and flushes at max events", 5, 1 << 20, []step{
			{msgFor("k1", `{"s":1}`, 2, 0), nil},
			{msgFor("k1", `{"s":1}`, 3, 0), []int{5}},
			{msgFor("k1", `{"s":1}`, 1, 0), nil},
		}, 1},
		{"a message that does not fit sends the open batch first", 5, 1 << 20, []step{
			{msgFor("k1", `{"s":1}`, 3, 0), nil},
			{msgFor("k1", `{"s":1}`, 3, 0), []int{3}},
		}, 1},
		{"an oversized message goes alone", 5, 1 << 20, []step{
			{msgFor("k1", `{"s":1}`, 2, 0), nil},
			{msgFor("k1", `{"s":1}`, 9, 0), []int{2, 9}},
		}, 0},
		{"keys never mix", 5, 1 << 20, []step{
			{msgFor("k1", `{"s":1}`, 3, 0), nil},
			{msgFor("k2", `{"s":1}`, 3, 0), nil},
			{msgFor("k1", `{"s":1}`, 2, 0), []int{5}},
		}, 1},
		{"statsigMetadata of another SDK instance is another batch", 5, 1 << 20, []step{
			{msgFor("k1", `{"s":1}`, 3, 0), nil},
			{msgFor("k1", `{"s":2}`, 3, 0), nil},
			{msgFor("k1", ``, 3, 0), nil},
		}, 3},
		{"max bytes", 1000, 100, []step{
			{msgFor("k1", ``, 1, 60), nil},
			{msgFor("k1", ``, 1, 60), []int{1}},
			{msgFor("k1", ``, 1, 40), []int{2}},
		}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bt := newBatcher(tc.maxEvents, tc.maxBytes, time.Minute)
			for i, s := range tc.steps {
				var got []int
				for _, b := range bt.add(s.m, now) {
					got = append(got, b.events)
					for _, m := range b.msgs {
						if m.key != b.key || string(m.meta) != string(b.meta) {
							t.Errorf("step %d: batch of %s/%s holds a message of %s/%s", i, b.key, b.meta, m.key, m.meta)
						}
					}
				}
				if len(got) != len(s.wantReady) {
					t.Fatalf("step %d: ready %v, want %v", i, got, s.wantReady)
				}
				for j := range got {
					if got[j] != s.wantReady[j] {
						t.Fatalf("step %d: ready %v, want %v", i, got, s.wantReady)
					}
				}
			}
			if bt.open() != tc.wantOpen {
				t.Errorf("open batches = %d, want %d", bt.open(), tc.wantOpen)
			}
		})
	}
}

func TestBatcherDueAndFlushAll(t *testing.T) {
	bt := newBatcher(100, 1<<20, time.Minute)
	t0 := time.Unix(1000, 0)
	bt.add(msgFor("k1", "", 1, 0), t0)
	bt.add(msgFor("k2", "", 1, 0), t0.Add(30*time.Second))
	if got := bt.due(t0.Add(59 * time.Second)); len(got) != 0 {
		t.Fatalf("due before the interval: %d batches", len(got))
	}
	got := bt.due(t0.Add(60 * time.Second))
	if len(got) != 1 || got[0].key != "k1" {
		t.Fatalf("due at the interval: %v", got)
	}
	if got := bt.flushAll(); len(got) != 1 || got[0].key != "k2" {
		t.Fatalf("flushAll: %v", got)
	}
	if bt.open() != 0 {
		t.Fatal("batches left open")
	}
}

func TestBatcherFlushLargest(t *testing.T) {
	bt := newBatcher(1000, 1<<20, time.Minute)
	now := time.Unix(1000, 0)
	for _, m := range []*message{
		msgFor("big", "", 1, 6000), msgFor("mid", "", 1, 3000),
		msgFor("small1", "", 1, 500), msgFor("small2", "", 1, 500), msgFor("small3", "", 1, 500),
	} {
		bt.add(m, now)
	}
	got := bt.flushLargest()
	if len(got) != 1 || got[0].key != "big" {
		t.Fatalf("flushLargest took %d batches (first %s), want just the largest", len(got), got[0].key)
	}
	// "mid" alone is more than a quarter of what is left open.
	if got := bt.flushLargest(); len(got) != 1 || got[0].key != "mid" {
		t.Fatalf("second flushLargest: %d batches", len(got))
	}
	if got := bt.flushLargest(); len(got) != 1 {
		t.Fatalf("third flushLargest: %d batches, want 1 of the equal small ones", len(got))
	}
	if bt.open() != 2 {
		t.Errorf("%d batches open, want 2", bt.open())
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		status int
		want   outcome
	}{
		{200, outAccepted}, {202, outAccepted}, {204, outAccepted},
		{0, outRetry}, {500, outRetry}, {502, outRetry}, {503, outRetry}, {504, outRetry}, {408, outRetry}, {301, outRetry},
		{429, outThrottled},
		{401, outKeyRefused}, {403, outKeyRefused},
		{400, outRejected}, {404, outRejected}, {413, outRejected}, {422, outRejected},
	}
	for _, tc := range tests {
		if got := classify(tc.status); got != tc.want {
			t.Errorf("classify(%d) = %s, want %s", tc.status, got, tc.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	lo, hi := 100*time.Millisecond, 2*time.Second
	tests := []struct {
		attempt  int
		min, max time.Duration
	}{
		{1, lo, lo},
		{2, lo, 200 * time.Millisecond},
		{3, 200 * time.Millisecond, 400 * time.Millisecond},
		{5, 800 * time.Millisecond, 1600 * time.Millisecond},
		{6, time.Second, hi},
		{60, time.Second, hi},
	}
	for _, tc := range tests {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := backoff(tc.attempt, lo, hi)
			if d < tc.min || d > tc.max {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", tc.attempt, d, tc.min, tc.max)
			}
			seen[d] = true
		}
		if tc.min != tc.max && len(seen) < 2 {
			t.Errorf("backoff(%d) has no jitter", tc.attempt)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"3", 3 * time.Second}, {"-1", 0}, {"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	}
	for _, tc := range tests {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestEncodeBody(t *testing.T) {
	msgs := []*message{
		{events: []byte(`{"id":1},{"id":2}`), count: 2},
		{events: nil, count: 0},
		{events: []byte(`{"id":3}`), count: 1},
	}
	tests := []struct {
		name     string
		endpoint string
		meta     string
		want     string
	}{
		{"log_event gzipped", endpointLogEvent, `{"sdkType":"go-sdk"}`, `{"events":[{"id":1},{"id":2},{"id":3}],"statsigMetadata":{"sdkType":"go-sdk"}}`},
		{"rgstr plain", endpointRgstr, `{"sdkType":"js-client"}`, `{"events":[{"id":1},{"id":2},{"id":3}],"statsigMetadata":{"sdkType":"js-client"}}`},
		{"no metadata", endpointLogEvent, ``, `{"events":[{"id":1},{"id":2},{"id":3}]}`},
	}
	extra := &batch{endpoint: endpointRgstr, msgs: msgs, meta: []byte(`{}`), extra: []byte(`"x":1,"y":[2]`)}
	if got, want := string(encodeBody(extra)), `{"events":[{"id":1},{"id":2},{"id":3}],"statsigMetadata":{},"x":1,"y":[2]}`; got != want {
		t.Errorf("body with other fields = %s, want %s", got, want)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &batch{endpoint: tc.endpoint, msgs: msgs}
			if tc.meta != "" {
				b.meta = []byte(tc.meta)
			}
			data := encodeBody(b)
			if tc.endpoint == endpointLogEvent {
				zr, err := gzip.NewReader(bytes.NewReader(data))
				if err != nil {
					t.Fatal(err)
				}
				if data, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
			}
			if string(data) != tc.want {
				t.Errorf("body = %s, want %s", data, tc.want)
			}
			if !json.Valid(data) {
				t.Error("body is not valid JSON")
			}
		})
	}
}

func TestSendQueueOrder(t *testing.T) {
	q := newSendQueue()
	now := time.Now()
	later := &batch{key: "later", notBefore: now.Add(40 * time.Millisecond)}
	q.push(later)
	first := &batch{key: "first"}
	second := &batch{key: "second"}
	q.push(first)
	q.push(second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, want := range []string{"first", "second", "later"} {
		b, err := q.pop(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if b.key != want {
			t.Fatalf("popped %s, want %s", b.key, want)
		}
	}
	if time.Since(now) < 40*time.Millisecond {
		t.Error("a batch was popped before its notBefore")
	}
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := q.pop(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("pop on an empty queue: %v", err)
	}
}

func TestSendQueueWakesEnoughWorkers(t *testing.T) {
	q := newSendQueue()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	const workers, items = 4, 50
	got := make(chan string, items)
	for range workers {
		go func() {
			for {
				b, err := q.pop(ctx)
				if err != nil {
					return
				}
				got <- b.key
			}
		}()
	}
	for i := range items {
		q.push(&batch{key: string(rune('a' + i%26))})
	}
	for i := range items {
		select {
		case <-got:
		case <-ctx.Done():
			t.Fatalf("only %d of %d batches popped", i, items)
		}
	}
}

func TestDeadLetterSubject(t *testing.T) {
	cfg := testConfigStream()
	tests := []struct{ in, want string }{
		{"sigedge.events.abc123", "sigedge.events_dead.abc123"},
		{"other.subject", "sigedge.events_dead.unknown"},
	}
	for _, tc := range tests {
		if got := deadLetterSubject(cfg, tc.in); got != tc.want {
			t.Errorf("deadLetterSubject(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
