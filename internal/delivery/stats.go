package delivery

import (
	"net"
	"sync/atomic"
)

// Stats is what the streams cost the hub so far, for `convoy hub`'s /status and the scale
// benchmark: bytes are counted on the wire (TLS records, HTTP/2 frames and the JSON messages
// inside), messages as the stream's own.
type Stats struct {
	// Connected is how many clusters have a stream open now.
	Connected int `json:"connected"`
	// Opened is how many streams were opened since the hub started (probes included).
	Opened      int64 `json:"opened"`
	BytesIn     int64 `json:"bytesIn"`
	BytesOut    int64 `json:"bytesOut"`
	MessagesIn  int64 `json:"messagesIn"`
	MessagesOut int64 `json:"messagesOut"`
}

// counters are the Server's running totals.
type counters struct {
	opened, bytesIn, bytesOut, messagesIn, messagesOut atomic.Int64
}

// Stats returns the streams' totals since the hub started.
func (s *Server) Stats() Stats {
	st := Stats{
		Opened:      s.count.opened.Load(),
		BytesIn:     s.count.bytesIn.Load(),
		BytesOut:    s.count.bytesOut.Load(),
		MessagesIn:  s.count.messagesIn.Load(),
		MessagesOut: s.count.messagesOut.Load(),
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

// countingListener counts the bytes of every connection it accepts.
type countingListener struct {
	net.Listener
	c *counters
}

func (l countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: conn, c: l.c}, nil
}

type countingConn struct {
	net.Conn
	c *counters
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.c.bytesIn.Add(int64(n))
	return n, err
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.c.bytesOut.Add(int64(n))
	return n, err
}
