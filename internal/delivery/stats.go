package delivery

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc/stats"
)

// Stats is what the streams cost the hub so far, for `convoy hub`'s /status and the scale
// benchmark: messages, and their bytes on the wire (the JSON and gRPC's framing of it; TLS
// and HTTP/2 add a little more).
type Stats struct {
	// Connected is how many clusters have a stream open now.
	Connected int `json:"connected"`
	// Opened is how many streams were opened since the hub started (probes included), and
	// Joined how many joins (and token renewals) the hub answered itself (Enrollment).
	Opened      int64 `json:"opened"`
	Joined      int64 `json:"joined"`
	BytesIn     int64 `json:"bytesIn"`
	BytesOut    int64 `json:"bytesOut"`
	MessagesIn  int64 `json:"messagesIn"`
	MessagesOut int64 `json:"messagesOut"`
	// Handed is how many Work contents were handed to the streams ahead of their write
	// (Server.Hand), Stored how many of those the Writer stored, Dropped how many it dropped
	// for a conflict, and Pending how many Works have handed content not stored yet.
	Handed  int64 `json:"handed"`
	Stored  int64 `json:"stored"`
	Dropped int64 `json:"dropped"`
	Pending int   `json:"pending"`
}

// counters are the Server's running totals, kept by gRPC's stats hooks.
type counters struct {
	opened, joined, bytesIn, bytesOut, messagesIn, messagesOut atomic.Int64
	handed, stored, dropped                                    atomic.Int64
}

var _ stats.Handler = (*counters)(nil)

func (c *counters) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (c *counters) HandleRPC(_ context.Context, s stats.RPCStats) {
	switch p := s.(type) {
	case *stats.InPayload:
		c.messagesIn.Add(1)
		c.bytesIn.Add(int64(p.WireLength))
	case *stats.OutPayload:
		c.messagesOut.Add(1)
		c.bytesOut.Add(int64(p.WireLength))
	}
}

func (c *counters) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (c *counters) HandleConn(context.Context, stats.ConnStats) {}

// Stats returns the streams' totals since the hub started.
func (s *Server) Stats() Stats {
	st := Stats{
		Opened:      s.count.opened.Load(),
		Joined:      s.count.joined.Load(),
		BytesIn:     s.count.bytesIn.Load(),
		BytesOut:    s.count.bytesOut.Load(),
		MessagesIn:  s.count.messagesIn.Load(),
		MessagesOut: s.count.messagesOut.Load(),
		Handed:      s.count.handed.Load(),
		Stored:      s.count.stored.Load(),
		Dropped:     s.count.dropped.Load(),
		Pending:     s.Pending(),
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, c := range s.clusters {
		if c.streams > 0 {
			st.Connected++
		}
	}
	return st
}
