package logutil

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	type call struct {
		at         time.Duration // since the start of the test clock
		reason     string
		ok         bool
		suppressed int
	}
	tests := []struct {
		name  string
		every time.Duration
		calls []call
	}{
		{"first line passes", 10 * time.Second, []call{
			{0, "a", true, 0},
		}},
		{"repeats within the period are counted", 10 * time.Second, []call{
			{0, "a", true, 0},
			{time.Second, "a", false, 0},
			{9 * time.Second, "a", false, 0},
			{10 * time.Second, "a", true, 2},
			{11 * time.Second, "a", false, 0},
			{25 * time.Second, "a", true, 1},
		}},
		{"reasons are independent", 10 * time.Second, []call{
			{0, "a", true, 0},
			{time.Second, "b", true, 0},
			{2 * time.Second, "a", false, 0},
			{3 * time.Second, "b", false, 0},
			{3 * time.Second, "b", false, 0},
			{12 * time.Second, "b", true, 2},
			{12 * time.Second, "a", true, 1},
		}},
		{"zero period lets everything through", 0, []call{
			{0, "a", true, 0},
			{0, "a", true, 0},
			{0, "a", true, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A clock far from the zero time, as time.Now is: the first line must pass.
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			var now time.Time
			l := &Limiter{Every: tt.every, now: func() time.Time { return now }}
			for i, c := range tt.calls {
				now = start.Add(c.at)
				ok, n := l.Allow(c.reason)
				if ok != c.ok || n != c.suppressed {
					t.Fatalf("call %d (%s at %s): Allow = %v, %d; want %v, %d", i, c.reason, c.at, ok, n, c.ok, c.suppressed)
				}
			}
		})
	}
}
