package delivery

import (
	"context"
	"time"
)

// A burst of reports is a propagation under way: agents' reports arriving less than quietGap
// apart. The Persister and the Writer hold their stores while one lasts, for maxDefer from its
// start at most: what they store is a view, and the Placement's status writes, which are what
// shows the propagation, need the API server's CPU then (at 1,000 clusters their stores took a
// third of it during a propagation).
const (
	quietGap = 500 * time.Millisecond
	maxDefer = 5 * time.Second
)

// burst is the current (or last) burst of reports. Its zero value is no burst.
type burst struct {
	start, last time.Time
}

// report counts a report that arrived at now.
func (b *burst) report(now time.Time) {
	if b.last.IsZero() || now.Sub(b.last) >= quietGap {
		b.start = now
	}
	b.last = now
}

// wait is how long stores should still wait at now: until quietGap after the last report, and
// no longer than maxDefer after the burst's start; zero when they need not.
func (b burst) wait(now time.Time) time.Duration {
	if b.last.IsZero() {
		return 0
	}
	return max(0, min(b.last.Add(quietGap).Sub(now), b.start.Add(maxDefer).Sub(now)))
}

// awaitQuiet returns once no burst of reports holds the stores (see burst), or false when ctx
// ends first.
func (s *Server) awaitQuiet(ctx context.Context) bool {
	for {
		s.mu.RLock()
		d := s.burst.wait(time.Now())
		s.mu.RUnlock()
		if d <= 0 {
			return ctx.Err() == nil
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}
