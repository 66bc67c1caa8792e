// Package logutil holds logging helpers shared by the proxy and the queue.
package logutil

import (
	"sync"
	"time"
)

// Limiter lets one log line per reason through per period and counts the rest, so that an outage
// or a misbehaving client produces a readable log rather than one line per request. The zero value
// with Every set is ready to use; a Limiter is safe for concurrent use.
type Limiter struct {
	// Every is the minimum time between two lines for the same reason.
	Every time.Duration

	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
	now        func() time.Time // nil means time.Now; tests set it
}

// Allow reports whether a line for reason may be logged now and, if so, how many lines for that
// reason were suppressed since the last one let through.
func (l *Limiter) Allow(reason string) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last, l.suppressed = map[string]time.Time{}, map[string]int{}
	}
	now := time.Now()
	if l.now != nil {
		now = l.now()
	}
	if now.Sub(l.last[reason]) < l.Every {
		l.suppressed[reason]++
		return false, 0
	}
	n := l.suppressed[reason]
	l.last[reason], l.suppressed[reason] = now, 0
	return true, n
}
