package queue

import (
	"context"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Retried events.
//
// An SDK that does not hear success for a batch sends its events again. The Go SDK and statsig-node
// send the same batch, which its id (Nats-Msg-Id) recognises. statsig-node-core does not: it puts
// the failed batch back in its queue, and its next flush sends those events after the ones logged
// since, cut again into batches of its batch size. That retry is another events array with another
// id, so every event of it would be stored a second time whenever a reply was lost after the batch
// was stored (a timeout, a dropped connection, a proxy that died before answering).
//
// retryMemory remembers, per SDK session (the SDK key and statsigMetadata.sessionID: one per SDK
// instance), the sequences of events ("runs") that the session's recent batches stored, as 64-bit
// hashes of each event's bytes. A later batch of the session repeats a run when it holds the whole
// run, in order (the retried batch, perhaps after newer events), or, where the SDK cut its retry at
// its batch size, the start of the run at its end or the rest of the run at its start (see match).
// Those events are left out of the new batch: they are stored already. What a batch repeated
// becomes a run of its own, so that a retry of a retry is recognised as well.
//
// Every event carries the SDK's timestamp in milliseconds, so a byte-identical sequence is a retry
// unless the application logged the same events (users, values, metadata) again within the same
// millisecond and a batch boundary fell between them. Events within one batch are never compared
// with each other. Batches an SDK sends at once arrive in any order; the rest of a cut run that
// arrives before the batch with the cut is recognised only from two events on (one event alone may
// be the application's), so such a single event is stored twice.
//
// The runs of a batch still being published count once it is stored: a retry that overtakes its
// original (the SDK timed out while JetStream was slow) waits for the original's outcome.
//
// The memory is per process. A retry that reaches another proxy replica is stored again, which is
// why the chart pins an app server to one replica (Service sessionAffinity: ClientIP).
type retryMemory struct {
	seed   maphash.Seed
	window time.Duration
	now    func() time.Time // time.Now, but for tests
	onWait func()           // tests: called when a batch starts waiting for one in flight
	shards [retryShards]retryShard
}

const (
	// retryShards splits the memory so that concurrent batches of different sessions rarely share a lock.
	retryShards = 16
	// maxRunsPerSession bounds the runs a session keeps, and so the work of matching a batch: a
	// retry repeats one of the last few batches (statsig-node-core keeps at most 100 pending).
	maxRunsPerSession = 128
	// maxRetryWaits bounds how often a batch waits for a matching batch still being published.
	maxRetryWaits = 4
)

type retryShard struct {
	mu        sync.Mutex
	sessions  *simplelru.LRU[uint64, *retrySession]
	events    int // hashes held by the runs of this shard
	maxEvents int
}

// retrySession holds one SDK session's runs.
type retrySession struct {
	runs   []*retryRun // oldest first
	edges  map[uint64]retryEdges
	events int
}

// retryEdges are the newest runs that start and end with an event, and how many runs do.
type retryEdges struct {
	first, last   *retryRun
	firsts, lasts int
}

// retryRun is a sequence of events one batch stored (or is storing).
type retryRun struct {
	hashes []uint64
	at     time.Time
	done   chan struct{} // closed when the batch that holds the run has finished publishing (nil: stored when made)
	// The fields below are guarded by the shard's lock.
	stored  bool // the run's events are in the stream
	removed bool // no longer in its session (failed, expired or evicted)
	// rest > 0: a batch ended with hashes[:rest]; a batch that starts with hashes[rest:] is the rest
	// of that cut retry.
	rest int
}

// retryClaim is what a batch found in the memory, and records its outcome (finish).
type retryClaim struct {
	shard *retryShard
	s     *retrySession
	runs  []*retryRun // the batch's new runs, pending until finish
}

func newRetryMemory(window time.Duration, maxEvents int) *retryMemory {
	m := &retryMemory{seed: maphash.MakeSeed(), window: window, now: time.Now}
	per := max(1, maxEvents/retryShards)
	for i := range m.shards {
		sh := &m.shards[i]
		sh.maxEvents = per
		// The LRU orders sessions for eviction; the event budget, not its size, is the real bound.
		sh.sessions, _ = simplelru.NewLRU[uint64, *retrySession](per, func(_ uint64, s *retrySession) {
			sh.events -= s.events
			for _, r := range s.runs {
				r.removed = true
			}
		})
	}
	return m
}

// claim returns the events of a batch of the given SDK session that no earlier stored batch of the
// session holds, and registers them as pending. The caller must call finish on the claim with the
// publish's outcome. It fails only when ctx ends, or timeout passes, while it waits for a matching
// batch in flight.
func (m *retryMemory) claim(ctx context.Context, timeout time.Duration, sdkKey, sessionID string, events [][]byte) (kept [][]byte, c *retryClaim, err error) {
	hashes := make([]uint64, len(events))
	for i, ev := range events {
		hashes[i] = maphash.Bytes(m.seed, ev)
	}
	id := m.sessionKey(sdkKey, sessionID)
	sh := &m.shards[id%retryShards]

	waitCtx := ctx // bounded by timeout once a wait begins
	for waits := 0; ; waits++ {
		sh.mu.Lock()
		now := m.now()
		s := sh.session(id, now.Add(-m.window))
		spans, pending := s.match(hashes, waits < maxRetryWaits)
		if pending != nil {
			sh.mu.Unlock()
			if m.onWait != nil {
				m.onWait()
			}
			if waitCtx == ctx {
				var cancel context.CancelFunc
				waitCtx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			select {
			case <-pending.done:
				continue
			case <-waitCtx.Done():
				return nil, nil, waitCtx.Err()
			}
		}
		c = &retryClaim{shard: sh, s: s}
		kept = events
		if len(spans) > 0 {
			kept = make([][]byte, 0, len(events))
		}
		// The batch's events become runs: each stretch of new events (pending until finish), and
		// each repeated span (stored already, whatever becomes of this batch). A retry of this
		// batch repeats them, whatever it was made of.
		newRun := func(lo, hi int) {
			r := &retryRun{hashes: hashes[lo:hi:hi], at: now, done: make(chan struct{})}
			sh.add(s, r)
			c.runs = append(c.runs, r)
		}
		lo := 0
		for _, sp := range spans {
			if lo < sp.lo {
				kept = append(kept, events[lo:sp.lo]...)
				newRun(lo, sp.lo)
			}
			sh.add(s, &retryRun{hashes: hashes[sp.lo:sp.hi:sp.hi], at: now, stored: true})
			lo = sp.hi
		}
		if lo < len(hashes) {
			if len(spans) > 0 {
				kept = append(kept, events[lo:]...)
			}
			newRun(lo, len(hashes))
		}
		sh.trim(id, s)
		sh.mu.Unlock()
		return kept, c, nil
	}
}

// sessionKey identifies an SDK session: its key and session id.
func (m *retryMemory) sessionKey(sdkKey, sessionID string) uint64 {
	var h maphash.Hash
	h.SetSeed(m.seed)
	h.WriteString(sdkKey)
	h.WriteByte(0)
	h.WriteString(sessionID)
	return h.Sum64()
}

// finish records the outcome of the claimed batch's publish: stored, its new events are matched from
// now on; not stored, they are forgotten, so that the SDK's retry is stored.
func (c *retryClaim) finish(stored bool) {
	if c == nil {
		return
	}
	sh := c.shard
	sh.mu.Lock()
	for _, r := range c.runs {
		if stored {
			r.stored = true
		} else {
			sh.remove(c.s, r)
		}
		close(r.done)
	}
	sh.mu.Unlock()
}

// session returns the session id, created if new, with its runs older than expired forgotten.
func (sh *retryShard) session(id uint64, expired time.Time) *retrySession {
	s, ok := sh.sessions.Get(id)
	if !ok {
		s = &retrySession{edges: map[uint64]retryEdges{}}
		sh.sessions.Add(id, s)
		return s
	}
	for len(s.runs) > 0 && s.runs[0].stored && s.runs[0].at.Before(expired) {
		sh.remove(s, s.runs[0])
	}
	return s
}

func (sh *retryShard) add(s *retrySession, r *retryRun) {
	s.runs = append(s.runs, r)
	first, last := r.hashes[0], r.hashes[len(r.hashes)-1]
	e := s.edges[first]
	e.first = r
	e.firsts++
	s.edges[first] = e
	e = s.edges[last]
	e.last = r
	e.lasts++
	s.edges[last] = e
	s.events += len(r.hashes)
	sh.events += len(r.hashes)
}

func (sh *retryShard) remove(s *retrySession, r *retryRun) {
	if r.removed {
		return
	}
	r.removed = true
	if i := slices.Index(s.runs, r); i >= 0 {
		s.runs = slices.Delete(s.runs, i, i+1)
	}
	first, last := r.hashes[0], r.hashes[len(r.hashes)-1]
	e := s.edges[first]
	e.firsts--
	if e.first == r {
		// Another run may start with the same event (a retry's repeat of a run): the newest takes over.
		e.first = nil
		for k := len(s.runs) - 1; k >= 0 && e.firsts > 0; k-- {
			if s.runs[k].hashes[0] == first {
				e.first = s.runs[k]
				break
			}
		}
	}
	s.setEdges(first, e)
	e = s.edges[last]
	e.lasts--
	if e.last == r {
		e.last = nil
		for k := len(s.runs) - 1; k >= 0 && e.lasts > 0; k-- {
			if h := s.runs[k].hashes; h[len(h)-1] == last {
				e.last = s.runs[k]
				break
			}
		}
	}
	s.setEdges(last, e)
	s.events -= len(r.hashes)
	sh.events -= len(r.hashes)
}

func (s *retrySession) setEdges(h uint64, e retryEdges) {
	if e.firsts == 0 && e.lasts == 0 {
		delete(s.edges, h)
	} else {
		s.edges[h] = e
	}
}

// trim keeps the shard within its budget: least recently used sessions go first, then the oldest
// runs of session id (which is in use, and may alone exceed the budget).
func (sh *retryShard) trim(id uint64, s *retrySession) {
	for len(s.runs) > maxRunsPerSession {
		sh.remove(s, s.runs[0])
	}
	for sh.events > sh.maxEvents {
		if oldest, _, ok := sh.sessions.GetOldest(); ok && oldest != id {
			sh.sessions.RemoveOldest()
			continue
		}
		if len(s.runs) <= 1 {
			return // the batch in hand stays remembered, even alone over the budget
		}
		sh.remove(s, s.runs[0])
	}
	if len(s.runs) == 0 {
		sh.sessions.Remove(id)
	}
}

// span is the events [lo, hi) of a batch.
type span struct{ lo, hi int }

// match finds the events of batch h that repeat stored runs of the session: spans, in order and
// without overlaps. It records where h cuts a run. With wait, it returns instead a run in flight
// that h would repeat, for the caller to wait for (past the waits such a run counts as not stored:
// a duplicate is the lesser harm).
//
// h repeats run r where it holds
//   - all of r;
//   - at its end, a start of r: the SDK cut its retry there, and sends the rest next;
//   - at its start, the rest of r after such a cut;
//   - at its start, an end of r of two or more events, not all the same, before the batch with the
//     cut arrived (an SDK sends its batches concurrently). A single event is not enough there: the
//     application may log one event twice within a millisecond, across a batch boundary.
func (s *retrySession) match(h []uint64, wait bool) (spans []span, pending *retryRun) {
	n := len(h)
	type cut struct {
		r    *retryRun
		rest int
	}
	var cuts []cut // applied once h is settled, not when it waits
	found := func(r *retryRun, lo, hi int) bool {
		if !r.stored {
			if wait && pending == nil {
				pending = r
			}
			return false
		}
		spans = append(spans, span{lo, hi})
		return true
	}
	for _, r := range s.runs {
		if r.rest == 0 {
			continue
		}
		rest := r.hashes[r.rest:]
		if l := min(len(rest), n); l > 0 && slices.Equal(h[:l], rest[:l]) && found(r, 0, l) {
			if end := r.rest + l; end < len(r.hashes) {
				cuts = append(cuts, cut{r, end})
			} else {
				cuts = append(cuts, cut{r, 0})
			}
		}
	}
	for i := 0; i < n; i++ {
		e, ok := s.edges[h[i]]
		if !ok {
			continue
		}
		if r := e.last; r != nil && i > 0 && i+1 < len(r.hashes) && slices.Equal(h[:i+1], r.hashes[len(r.hashes)-i-1:]) && !allSame(h[:i+1]) {
			found(r, 0, i+1)
		}
		r := e.first
		if r == nil {
			continue
		}
		l := min(len(r.hashes), n-i)
		if !slices.Equal(h[i:i+l], r.hashes[:l]) || !found(r, i, i+l) {
			continue
		}
		if l < len(r.hashes) {
			cuts = append(cuts, cut{r, l}) // h ends with the start of r
		}
		i += l - 1
	}
	if pending != nil {
		return nil, pending
	}
	for _, c := range cuts {
		c.r.rest = c.rest
	}
	if len(spans) > 1 {
		slices.SortFunc(spans, func(a, b span) int { return a.lo - b.lo })
		merged := spans[:1]
		for _, sp := range spans[1:] {
			if last := &merged[len(merged)-1]; sp.lo <= last.hi {
				last.hi = max(last.hi, sp.hi)
			} else {
				merged = append(merged, sp)
			}
		}
		spans = merged
	}
	return spans, nil
}

func allSame(h []uint64) bool {
	for _, x := range h[1:] {
		if x != h[0] {
			return false
		}
	}
	return true
}

// events reports the hashes held across all sessions (a gauge).
func (m *retryMemory) events() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += sh.events
		sh.mu.Unlock()
	}
	return n
}
