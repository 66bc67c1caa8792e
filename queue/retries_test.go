package queue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// retryEvent is a small event named by tag, as an SDK would send it (the tag is its metadata).
func retryEvent(tag string) []byte {
	return []byte(`{"eventName":"e","time":1700000000000,"metadata":{"tag":"` + tag + `"}}`)
}

func retryEvents(tags string) [][]byte {
	var out [][]byte
	for _, t := range strings.Fields(tags) {
		out = append(out, retryEvent(t))
	}
	return out
}

func retryTags(events [][]byte) string {
	var tags []string
	for _, ev := range events {
		s := string(ev)
		i := strings.Index(s, `"tag":"`) + len(`"tag":"`)
		tags = append(tags, s[i:i+strings.IndexByte(s[i:], '"')])
	}
	return strings.Join(tags, " ")
}

// TestRetryMemory sends the batches of one SDK session in order, each stored or not, and checks what
// each batch keeps.
func TestRetryMemory(t *testing.T) {
	type batch struct {
		events string
		failed bool   // the publish fails: nothing of it is stored
		kept   string // the events left to store
	}
	tests := []struct {
		name    string
		batches []batch
	}{
		{"a batch retried as it was", []batch{
			{events: "a b c", kept: "a b c"},
			{events: "a b c", kept: ""},
		}},
		{"a retry after newer events (statsig-node-core)", []batch{
			{events: "a b c", kept: "a b c"},
			{events: "x y a b c", kept: "x y"},
		}},
		{"two retried batches merged", []batch{
			{events: "a b", kept: "a b"},
			{events: "c d", kept: "c d"},
			{events: "x a b c d", kept: "x"},
		}},
		{"a retry cut at the batch size", []batch{
			{events: "a b c d", kept: "a b c d"},
			{events: "x y a b", kept: "x y"},
			{events: "c d z", kept: "z"},
		}},
		{"a retry cut into three", []batch{
			{events: "a b c d e", kept: "a b c d e"},
			{events: "x a", kept: "x"},
			{events: "b c", kept: ""},
			{events: "d e y", kept: "y"},
		}},
		{"the end of a batch at the start of another (sent before the batch with the cut)", []batch{
			{events: "a b c d", kept: "a b c d"},
			{events: "c d x", kept: "x"},
			{events: "y a b", kept: "y"},
		}},
		{"an end of one event, or of equal events, is not enough", []batch{
			{events: "a e e", kept: "a e e"},
			{events: "e e x", kept: "e e x"},
			{events: "e y", kept: "e y"},
		}},
		{"the rest of a cut retry, after another batch", []batch{
			{events: "a b c d", kept: "a b c d"},
			{events: "x a b", kept: "x"},
			{events: "p q", kept: "p q"},
			{events: "c d", kept: ""}, // batches sent concurrently may arrive in any order
		}},
		{"a batch that failed is not remembered", []batch{
			{events: "a b c", failed: true, kept: "a b c"},
			{events: "a b c", kept: "a b c"},
			{events: "a b c", kept: ""},
		}},
		{"an event equal to the last of the previous batch (same millisecond) is kept", []batch{
			{events: "p q e", kept: "p q e"},
			{events: "e s t", kept: "e s t"},
		}},
		{"a middle part of a batch is not a retry", []batch{
			{events: "a b c d", kept: "a b c d"},
			{events: "y b c", kept: "y b c"},
		}},
		{"repeats within one batch are kept", []batch{
			{events: "a a b a", kept: "a a b a"},
		}},
		{"what a batch stored anew is remembered apart from what it repeated", []batch{
			{events: "a b", kept: "a b"},
			{events: "x a b y", kept: "x y"},
			{events: "q x", kept: "q"},
			{events: "y", kept: ""},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newRetryMemory(time.Minute, 1_000_000)
			for i, b := range tc.batches {
				kept, c, err := m.claim(context.Background(), time.Minute, "secret-k", "session-1", retryEvents(b.events))
				if err != nil {
					t.Fatal(err)
				}
				c.finish(!b.failed)
				if got := retryTags(kept); got != b.kept {
					t.Errorf("batch %d [%s]: kept [%s], want [%s]", i, b.events, got, b.kept)
				}
			}
		})
	}
}

func TestRetryMemoryKeepsSessionsApart(t *testing.T) {
	m := newRetryMemory(time.Minute, 1_000_000)
	send := func(key, session, events string) string {
		kept, c, err := m.claim(context.Background(), time.Minute, key, session, retryEvents(events))
		if err != nil {
			t.Fatal(err)
		}
		c.finish(true)
		return retryTags(kept)
	}
	send("secret-k", "s1", "a b")
	if got := send("secret-k", "s2", "a b"); got != "a b" {
		t.Errorf("another session of the key kept [%s], want all", got)
	}
	if got := send("secret-other", "s1", "a b"); got != "a b" {
		t.Errorf("the same session id under another key kept [%s], want all", got)
	}
	if got := send("secret-k", "s1", "a b"); got != "" {
		t.Errorf("the first session's retry kept [%s], want none", got)
	}
}

func TestRetryMemoryForgetsAfterTheWindow(t *testing.T) {
	now := time.Unix(1700000000, 0)
	m := newRetryMemory(time.Minute, 1_000_000)
	m.now = func() time.Time { return now }
	claim := func(events string) string {
		kept, c, err := m.claim(context.Background(), time.Minute, "secret-k", "s", retryEvents(events))
		if err != nil {
			t.Fatal(err)
		}
		c.finish(true)
		return retryTags(kept)
	}
	claim("a b")
	now = now.Add(30 * time.Second)
	claim("c d")
	now = now.Add(31 * time.Second) // a b are 61 s old, c d 31 s
	if got := claim("x a b c d"); got != "x a b" {
		t.Errorf("kept [%s], want [x a b]: c d are within the window, a b not", got)
	}
	now = now.Add(61 * time.Second)
	if got := claim("x a b c d"); got != "x a b c d" {
		t.Errorf("after the window kept [%s], want all", got)
	}
	if n := m.events(); n != 5 {
		t.Errorf("remembered %d events, want 5: only the last batch's", n)
	}
}

// A retry that arrives while its original is still being published waits for the original's
// outcome: stored, the retry keeps nothing; failed, the retry keeps everything.
func TestRetryMemoryWaitsForABatchInFlight(t *testing.T) {
	for _, stored := range []bool{true, false} {
		t.Run(fmt.Sprint("stored=", stored), func(t *testing.T) {
			m := newRetryMemory(time.Minute, 1_000_000)
			waiting := make(chan struct{}, 1)
			m.onWait = func() { waiting <- struct{}{} }
			_, first, err := m.claim(context.Background(), time.Minute, "secret-k", "s", retryEvents("a b"))
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				kept string
				err  error
			}
			done := make(chan result, 1)
			go func() {
				kept, c, err := m.claim(context.Background(), time.Minute, "secret-k", "s", retryEvents("x a b"))
				c.finish(err == nil)
				done <- result{retryTags(kept), err}
			}()
			select {
			case <-waiting:
			case r := <-done:
				t.Fatalf("the retry did not wait for the batch in flight: kept [%s], %v", r.kept, r.err)
			case <-time.After(10 * time.Second):
				t.Fatal("the retry neither waited nor finished")
			}
			first.finish(stored)
			r := <-done
			want := "x"
			if !stored {
				want = "x a b"
			}
			if r.err != nil || r.kept != want {
				t.Errorf("retry kept [%s] (%v), want [%s]", r.kept, r.err, want)
			}
		})
	}
}

// The wait for a batch in flight ends with the request, or after the publish timeout.
func TestRetryMemoryWaitIsBounded(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		cancel  bool
		want    error
	}{
		{"the client went away", time.Minute, true, context.Canceled},
		{"the timeout passed", time.Millisecond, false, context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newRetryMemory(time.Minute, 1_000_000)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				m.onWait = cancel
			}
			_, first, err := m.claim(context.Background(), time.Minute, "secret-k", "s", retryEvents("a"))
			if err != nil {
				t.Fatal(err)
			}
			defer first.finish(true) // never before the second claim gives up
			if _, _, err := m.claim(ctx, tc.timeout, "secret-k", "s", retryEvents("a")); !errors.Is(err, tc.want) {
				t.Fatalf("claim = %v, want %v", err, tc.want)
			}
		})
	}
}

// sessionsInOneShard returns n session ids of key that share a shard of m.
func sessionsInOneShard(m *retryMemory, key string, n int) []string {
	byShard := map[uint64][]string{}
	for i := 0; ; i++ {
		id := fmt.Sprint("session-", i)
		s := m.sessionKey(key, id) % retryShards
		byShard[s] = append(byShard[s], id)
		if len(byShard[s]) == n {
			return byShard[s]
		}
	}
}

func TestRetryMemoryStaysWithinItsBudget(t *testing.T) {
	m := newRetryMemory(time.Minute, 4*retryShards) // 4 events per shard
	sessions := sessionsInOneShard(m, "secret-k", 2)
	send := func(session, events string) string {
		kept, c, err := m.claim(context.Background(), time.Minute, "secret-k", session, retryEvents(events))
		if err != nil {
			t.Fatal(err)
		}
		c.finish(true)
		return retryTags(kept)
	}
	send(sessions[0], "a b c")
	send(sessions[1], "d e") // 5 > 4: the least recently used session goes
	if got := send(sessions[0], "a b c"); got != "a b c" {
		t.Errorf("evicted session kept [%s], want all", got)
	}
	// sessions[0] is back (a b c) and so the newest; sessions[1] was evicted for it.
	if got := send(sessions[1], "d e"); got != "d e" {
		t.Errorf("session evicted by the other kept [%s], want all", got)
	}
	// One session over the budget alone loses its oldest runs, never the batch in hand.
	s := sessions[0]
	send(s, "p q")
	send(s, "r s t u v")
	if got := send(s, "r s t u v"); got != "" {
		t.Errorf("the latest batch was forgotten: kept [%s]", got)
	}
	if got := send(s, "p q"); got != "p q" {
		t.Errorf("an old batch over the budget kept [%s], want all", got)
	}
	for i := range m.shards {
		if sh := &m.shards[i]; sh.events > sh.maxEvents && sh.sessions.Len() > 1 {
			t.Errorf("shard %d holds %d events over a budget of %d", i, sh.events, sh.maxEvents)
		}
	}
}

// rebatchingSDK models statsig-node-core's event queue: events are cut into batches of a fixed
// size; a batch that fails goes back to the queue, and the next flush puts the events logged since
// before it and cuts everything again (full batches are sent as they were). Some replies are lost
// after the batch was stored, some publishes fail. It returns how often each event was stored, and
// a trace of the batches.
func rebatchingSDK(t *testing.T, seed uint64, concurrent bool) (stored []int, trace []string) {
	rng := rand.New(rand.NewPCG(seed, 7))
	m := newRetryMemory(time.Hour, 1_000_000)
	size := 1 + rng.IntN(6)
	var pending [][]byte // logged, not yet batched
	var queue [][][]byte // batches waiting to be sent
	log := func(n int) {
		for range n {
			pending = append(pending, retryEvent(fmt.Sprint(len(stored))))
			stored = append(stored, 0)
		}
	}
	reconcile := func() {
		var full [][][]byte
		for _, b := range queue {
			if len(b) >= size {
				full = append(full, b)
			} else {
				pending = append(pending, b...)
			}
		}
		queue = full
		for len(pending) > 0 {
			n := min(size, len(pending))
			queue = append(queue, slices.Clone(pending[:n]))
			pending = pending[n:]
		}
	}
	trace = append(trace, fmt.Sprint("batch size ", size))
	for round := 0; round < 30 || len(queue) > 0 || len(pending) > 0; round++ {
		if round < 30 {
			log(rng.IntN(2 * size))
		}
		reconcile()
		if concurrent { // the batches of a flush are sent at once and arrive in any order
			rng.Shuffle(len(queue), func(i, j int) { queue[i], queue[j] = queue[j], queue[i] })
		}
		var requeue [][][]byte
		for _, b := range queue {
			kept, c, err := m.claim(context.Background(), time.Minute, "secret-k", "s", b)
			if err != nil {
				t.Fatal(err)
			}
			outcome := "ok"
			switch r := rng.IntN(10); {
			case round < 30 && r < 2: // the proxy failed: nothing stored, the SDK retries
				c.finish(false)
				outcome = "failed"
				requeue = append(requeue, b)
			case round < 30 && r < 4: // stored, but the reply was lost: the SDK retries
				c.finish(true)
				outcome = "reply lost"
				requeue = append(requeue, b)
			default:
				c.finish(true)
			}
			if outcome != "failed" {
				for _, ev := range kept {
					n, _ := strconv.Atoi(retryTags([][]byte{ev}))
					stored[n]++
				}
			}
			trace = append(trace, fmt.Sprintf("[%s] kept [%s] %s", retryTags(b), retryTags(kept), outcome))
		}
		queue = requeue
	}
	return stored, trace
}

// Sent one after another, every batch and every retry is recognised: each event is stored once.
func TestRetryMemoryAgainstARebatchingSDK(t *testing.T) {
	for seed := uint64(1); seed <= 300; seed++ {
		stored, trace := rebatchingSDK(t, seed, false)
		for i, c := range stored {
			if c != 1 {
				t.Fatalf("seed %d: event %d stored %d times\n%s", seed, i, c, strings.Join(trace, "\n"))
			}
		}
	}
}

// Sent concurrently, the rest of a cut retry may arrive before the batch with the cut. When that rest
// is a single event it is stored again (see retrySession.match); nothing is ever lost.
func TestRetryMemoryAgainstAConcurrentRebatchingSDK(t *testing.T) {
	events, dups := 0, 0
	for seed := uint64(1); seed <= 300; seed++ {
		stored, trace := rebatchingSDK(t, seed, true)
		for i, c := range stored {
			if c == 0 || c > 2 {
				t.Fatalf("seed %d: event %d stored %d times\n%s", seed, i, c, strings.Join(trace, "\n"))
			}
			events++
			dups += c - 1
		}
	}
	t.Logf("%d of %d events stored twice", dups, events)
}

func BenchmarkRetryMemoryClaim(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint(n, "events"), func(b *testing.B) {
			// Two sessions, each sending 150 different batches in turn: more than a session keeps
			// runs of, so no batch matches, as in steady traffic without retries.
			m := newRetryMemory(time.Minute, 2_000_000)
			batches := make([][][]byte, 2*(maxRunsPerSession+22))
			for i := range batches {
				for j := range n {
					batches[i] = append(batches[i], []byte(fmt.Sprintf(`{"eventName":"statsig::gate_exposure","user":{"userID":"user-%d"},"time":%d,"metadata":{"gate":"a_gate","gateValue":"true","ruleID":"rule"}}`, j, 1700000000000+i*n+j)))
				}
			}
			sessions := []string{"session-a", "session-b"}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_, c, _ := m.claim(context.Background(), time.Minute, "secret-k", sessions[i%2], batches[i%len(batches)])
				c.finish(true)
			}
		})
	}
}
