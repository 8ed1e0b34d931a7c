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

// storeGate holds a store (the Persister, the Writer) while bursts of reports last. A store
// held for maxDefer runs for maxDefer after that whatever the bursts do, so that reports that
// never pause for quietGap slow the stores and never stop them.
type storeGate struct {
	s         *Server
	freeUntil time.Time
}

// wait returns once the store may go on, or false when ctx ends first.
func (g *storeGate) wait(ctx context.Context) bool {
	if time.Now().Before(g.freeUntil) {
		return ctx.Err() == nil
	}
	until := time.Now().Add(maxDefer)
	for {
		g.s.mu.RLock()
		now := time.Now()
		d := g.s.burst.wait(now)
		g.s.mu.RUnlock()
		if d <= 0 {
			return ctx.Err() == nil
		}
		if !now.Before(until) {
			g.freeUntil = now.Add(maxDefer)
			return ctx.Err() == nil
		}
		t := time.NewTimer(min(d, until.Sub(now)))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// holds says whether a burst holds the store now (wait would wait).
func (g *storeGate) holds() bool {
	if time.Now().Before(g.freeUntil) {
		return false
	}
	g.s.mu.RLock()
	defer g.s.mu.RUnlock()
	return g.s.burst.wait(time.Now()) > 0
}
