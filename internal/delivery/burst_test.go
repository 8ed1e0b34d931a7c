package delivery

import (
	"testing"
	"time"
)

// TestBurst: stores wait while reports keep coming, until quietGap after the last one, and
// never longer than maxDefer after the burst began.
func TestBurst(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	type step struct {
		reports []int // milliseconds after t0 at which reports arrive, before asking
		at      int   // when the wait is asked
		want    time.Duration
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"no report, no wait", []step{{nil, 0, 0}}},
		{"one report", []step{{[]int{0}, 100, 400 * time.Millisecond}, {nil, 500, 0}, {nil, 900, 0}}},
		{"a burst waits from its last report", []step{{[]int{0, 200, 400, 600}, 700, 400 * time.Millisecond}, {nil, 1100, 0}}},
		{"a long burst waits maxDefer at most", []step{
			{[]int{0, 400, 800, 1200, 1600, 2000, 2400, 2800, 3200, 3600, 4000, 4400, 4800}, 4900, 100 * time.Millisecond},
			{[]int{5000}, 5000, 0},
			{[]int{5400}, 5500, 0},
		}},
		{"a report after a quiet gap starts a new burst", []step{
			{[]int{0}, 600, 0},
			{[]int{1000}, 1000, 500 * time.Millisecond},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b burst
			for i, s := range tc.steps {
				for _, r := range s.reports {
					b.report(ms(r))
				}
				if got := b.wait(ms(s.at)); got != s.want {
					t.Errorf("step %d, at %d ms: wait %v, want %v", i, s.at, got, s.want)
				}
			}
		})
	}
}
