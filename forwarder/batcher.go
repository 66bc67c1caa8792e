package forwarder

import (
	"bytes"
	"cmp"
	"slices"
	"sync"
	"time"
)

// batch is what one POST to Statsig carries: messages of one SDK key, one endpoint and one SDK
// instance (the same SDK type, version and statsigMetadata), so the request says exactly what each
// SDK would have said itself.
type batch struct {
	key, keyHash, endpoint string
	sdkType, sdkVersion    string
	meta, extra            []byte
	msgs                   []*message
	events                 int // events in msgs
	bytes                  int // bytes of the events in msgs (uncompressed)
	created                time.Time

	// Sending state, owned by whichever worker holds the batch.
	attempt   int
	notBefore time.Time
	body      []byte // the encoded request body, kept for retries
	order     uint64 // FIFO among batches due at the same time
	index     int    // position in the send queue's heap
}

// groupKey is the identity of a batch: messages with equal group keys may share a request.
func groupKey(m *message) string {
	var b bytes.Buffer
	b.Grow(len(m.key) + len(m.endpoint) + len(m.sdkType) + len(m.sdkVersion) + len(m.meta) + len(m.extra) + 5)
	for _, s := range []string{m.key, m.endpoint, m.sdkType, m.sdkVersion} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	b.Write(m.meta)
	b.WriteByte(0)
	b.Write(m.extra)
	return b.String()
}

// batcher groups messages into open batches and hands them out when they are full or due.
// It is safe for concurrent use.
type batcher struct {
	maxEvents int
	maxBytes  int
	interval  time.Duration

	mu     sync.Mutex
	groups map[string]*batch
}

func newBatcher(maxEvents, maxBytes int, interval time.Duration) *batcher {
	return &batcher{maxEvents: maxEvents, maxBytes: maxBytes, interval: interval, groups: map[string]*batch{}}
}

// add puts m into its group's open batch and returns the batches that are ready to send: the open
// batch m would have overflowed, and the batch m filled.
func (bt *batcher) add(m *message, now time.Time) []*batch {
	k := groupKey(m)
	bt.mu.Lock()
	defer bt.mu.Unlock()
	var out []*batch
	b := bt.groups[k]
	if b != nil && (b.events+m.count > bt.maxEvents || b.bytes+len(m.events) > bt.maxBytes) {
		// m does not fit: send what is there and start again, so no request exceeds the limits
		// (unless one message alone does).
		out = append(out, b)
		b = nil
	}
	if b == nil {
		b = &batch{key: m.key, keyHash: m.keyHash, endpoint: m.endpoint, sdkType: m.sdkType,
			sdkVersion: m.sdkVersion, meta: m.meta, extra: m.extra, created: now}
		bt.groups[k] = b
	}
	b.msgs = append(b.msgs, m)
	b.events += m.count
	b.bytes += len(m.events)
	if b.events >= bt.maxEvents || b.bytes >= bt.maxBytes {
		out = append(out, b)
		delete(bt.groups, k)
	}
	return out
}

// due returns the open batches that have waited flush_interval.
func (bt *batcher) due(now time.Time) []*batch {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	var out []*batch
	for k, b := range bt.groups {
		if now.Sub(b.created) >= bt.interval {
			out = append(out, b)
			delete(bt.groups, k)
		}
	}
	return out
}

// flushAll returns every open batch (shutdown, or memory pressure).
func (bt *batcher) flushAll() []*batch {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	out := make([]*batch, 0, len(bt.groups))
	for k, b := range bt.groups {
		out = append(out, b)
		delete(bt.groups, k)
	}
	return out
}

// flushLargest returns the largest open batches, together holding at least a quarter of the bytes
// of all open batches (memory pressure: enough to make room without sending everything half-full).
func (bt *batcher) flushLargest() []*batch {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	all := make([]*batch, 0, len(bt.groups))
	total := 0
	for _, b := range bt.groups {
		all = append(all, b)
		total += b.bytes + len(b.msgs)*msgOverhead
	}
	slices.SortFunc(all, func(a, b *batch) int { return cmp.Compare(b.bytes, a.bytes) })
	var out []*batch
	taken := 0
	for _, b := range all {
		if len(out) > 0 && taken*4 >= total {
			break
		}
		out = append(out, b)
		taken += b.bytes + len(b.msgs)*msgOverhead
		delete(bt.groups, groupKey(b.msgs[0]))
	}
	return out
}

// open reports the number of open batches.
func (bt *batcher) open() int {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	return len(bt.groups)
}
