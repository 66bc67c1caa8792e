package forwarder

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// sendQueue holds batches waiting to be sent, ordered by the time they may be sent (retries wait
// for their backoff), FIFO among equals. Workers block in pop until a batch is due.
type sendQueue struct {
	mu    sync.Mutex
	h     batchHeap
	order uint64
	// wake holds one token when a waiting worker should look again; a worker that takes a batch
	// passes the token on while more remain, so one push wakes one worker and a burst wakes enough.
	wake chan struct{}
}

func newSendQueue() *sendQueue { return &sendQueue{wake: make(chan struct{}, 1)} }

func (q *sendQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// push adds b, to be sent from b.notBefore on.
func (q *sendQueue) push(b *batch) {
	q.mu.Lock()
	q.order++
	b.order = q.order
	heap.Push(&q.h, b)
	q.mu.Unlock()
	q.signal()
}

// pop waits until a batch is due and returns it, or returns ctx's error.
func (q *sendQueue) pop(ctx context.Context) (*batch, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err // even with batches due: a stopped worker must not keep taking them
		}
		q.mu.Lock()
		var wait time.Duration = -1
		if len(q.h) > 0 {
			if d := time.Until(q.h[0].notBefore); d > 0 {
				wait = d
			} else {
				b := heap.Pop(&q.h).(*batch)
				more := len(q.h) > 0
				q.mu.Unlock()
				if more {
					q.signal()
				}
				return b, nil
			}
		}
		q.mu.Unlock()
		var timerC <-chan time.Time
		if wait >= 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			timerC = timer.C
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-q.wake:
		case <-timerC:
		}
	}
}

// drain removes and returns every batch (shutdown).
func (q *sendQueue) drain() []*batch {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]*batch, len(q.h))
	copy(out, q.h)
	q.h = q.h[:0]
	return out
}

// len reports the number of waiting batches.
func (q *sendQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.h)
}

type batchHeap []*batch

func (h batchHeap) Len() int { return len(h) }
func (h batchHeap) Less(i, j int) bool {
	if !h[i].notBefore.Equal(h[j].notBefore) {
		return h[i].notBefore.Before(h[j].notBefore)
	}
	return h[i].order < h[j].order
}
func (h batchHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *batchHeap) Push(x any) {
	b := x.(*batch)
	b.index = len(*h)
	*h = append(*h, b)
}
func (h *batchHeap) Pop() any {
	old := *h
	n := len(old)
	b := old[n-1]
	old[n-1] = nil
	b.index = -1
	*h = old[:n-1]
	return b
}
