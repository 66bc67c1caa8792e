package forwarder

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/sony/gobreaker"

	"github.com/sigedge/sigedge/internal/config"
)

// breaker is the circuit breaker around Statsig's event API (sony/gobreaker), plus a way for
// workers to wait while it is open instead of spinning on ErrOpenState.
type breaker struct {
	cb          *gobreaker.TwoStepCircuitBreaker
	openTimeout time.Duration

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every state change
	openedAt time.Time
}

// Breaker states as exported by the sigedge_forwarder_breaker_state gauge.
const (
	breakerClosed   = 0
	breakerHalfOpen = 1
	breakerOpen     = 2
)

func newBreaker(cfg config.Breaker, logger *slog.Logger, onChange func(from, to gobreaker.State)) *breaker {
	b := &breaker{openTimeout: cfg.OpenTimeout, changed: make(chan struct{})}
	b.cb = gobreaker.NewTwoStepCircuitBreaker(gobreaker.Settings{
		Name:        "statsig-events",
		MaxRequests: uint32(cfg.HalfOpenRequests),
		Timeout:     cfg.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= uint32(cfg.ConsecutiveFailures)
		},
		// Called with gobreaker's lock held: only our own state is touched here.
		OnStateChange: func(_ string, from, to gobreaker.State) {
			b.mu.Lock()
			close(b.changed)
			b.changed = make(chan struct{})
			if to == gobreaker.StateOpen {
				b.openedAt = time.Now()
			}
			b.mu.Unlock()
			switch to {
			case gobreaker.StateOpen:
				logger.Warn("circuit breaker open: Statsig's event API is failing; nothing is sent or acked until a probe succeeds",
					"from", from.String(), "probe_in", cfg.OpenTimeout.String())
			case gobreaker.StateHalfOpen:
				logger.Info("circuit breaker half-open: probing Statsig", "probes", cfg.HalfOpenRequests)
			case gobreaker.StateClosed:
				logger.Info("circuit breaker closed: Statsig accepts events again; the backlog drains at forwarder.replay_rate")
			}
			if onChange != nil {
				onChange(from, to)
			}
		},
	})
	return b
}

// state is the breaker state as a gauge value.
func (b *breaker) state() float64 {
	switch b.cb.State() {
	case gobreaker.StateOpen:
		return breakerOpen
	case gobreaker.StateHalfOpen:
		return breakerHalfOpen
	}
	return breakerClosed
}

// isOpen reports whether nothing may be sent now.
func (b *breaker) isOpen() bool { return b.cb.State() == gobreaker.StateOpen }

// allow asks for permission to send one request; done records its outcome.
func (b *breaker) allow() (done func(success bool), err error) { return b.cb.Allow() }

// waitClosed returns once the breaker is not open (closed, or half-open and probing), or ctx ends.
func (b *breaker) waitClosed(ctx context.Context) error {
	for {
		b.mu.Lock()
		ch, opened := b.changed, b.openedAt
		b.mu.Unlock()
		if b.cb.State() != gobreaker.StateOpen { // State moves open → half-open once the timeout passed
			return nil
		}
		wait := time.Until(opened.Add(b.openTimeout)) + time.Millisecond
		if err := sleepOrChange(ctx, ch, max(wait, time.Millisecond)); err != nil {
			return err
		}
	}
}

// waitChange returns after the next state change, after d, or when ctx ends (a half-open breaker
// refused a request because its probes are still out).
func (b *breaker) waitChange(ctx context.Context, d time.Duration) error {
	b.mu.Lock()
	ch := b.changed
	b.mu.Unlock()
	return sleepOrChange(ctx, ch, d)
}

func sleepOrChange(ctx context.Context, ch <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-ch:
	case <-t.C:
	}
	return nil
}
