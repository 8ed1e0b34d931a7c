package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// Client is an agent's end of its stream. It keeps the latest report of each Work and the
// latest inventory, sends changes as they come, everything again on each new stream, and an empty message every
// interval the hub asks for. While the hub is away the reports wait in memory; nothing is
// lost but intermediate states.
type Client struct {
	// Cluster is the agent's cluster, Version the agent's version.
	Cluster, Version string
	// Token returns the agent's current ServiceAccount token.
	Token func() string
	// CA is the hub's certificate authority (PEM).
	CA []byte
	// Log receives the stream's comings and goings.
	Log *slog.Logger
	// OnRefused, if set, is called when the hub refuses the agent's identity (revoked).
	OnRefused func(error)
	// GetWorks asks the hub to send the cluster's Works on the stream (see WatchWorks). Set
	// it before Run.
	GetWorks bool

	works *clientWorks

	mu      sync.Mutex
	reports map[string]v1alpha1.WorkReport // by Work name
	pending map[string]bool                // Works whose report the hub has not been sent
	// inventory is the cluster's latest inventory, and inventoryPending says the hub has not
	// been sent it.
	inventory        *v1alpha1.Inventory
	inventoryPending bool
	kick             chan struct{}
	up               bool
	everUp           bool
	// hubInventory says the hub of the last stream stores the inventory it is sent.
	hubInventory bool

	// conn is the connection to connAddr that a join made or the stream uses: a join and
	// the stream after it share one connection (one TLS handshake for both).
	cmu      sync.Mutex
	conn     *grpc.ClientConn
	connAddr string
}

// NewClient makes a Client; Run connects it.
func NewClient(cluster, version string, ca []byte, token func() string, log *slog.Logger) *Client {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{Cluster: cluster, Version: version, CA: ca, Token: token, Log: log,
		reports: map[string]v1alpha1.WorkReport{}, pending: map[string]bool{}, kick: make(chan struct{}, 1), works: newClientWorks()}
}

// Report records a Work's status and sends it when it can.
func (c *Client) Report(work, uid string, st v1alpha1.WorkStatus) {
	c.mu.Lock()
	c.reports[work] = v1alpha1.WorkReport{Work: work, UID: uid, Status: st}
	c.pending[work] = true
	c.mu.Unlock()
	c.poke()
}

// SetInventory records the cluster's inventory and sends it when it can; a new stream sends
// the latest with its hello.
func (c *Client) SetInventory(inv v1alpha1.Inventory) {
	c.mu.Lock()
	c.inventory, c.inventoryPending = inv.DeepCopy(), true
	c.mu.Unlock()
	c.poke()
}

// Last is the Work's status as last reported, if the report is of this uid.
func (c *Client) Last(work, uid string) (v1alpha1.WorkStatus, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.reports[work]
	if !ok || r.UID != uid || r.Gone {
		return v1alpha1.WorkStatus{}, false
	}
	return *r.Status.DeepCopy(), true
}

// Forget drops a Work that is gone, and tells the hub.
func (c *Client) Forget(work string) {
	c.mu.Lock()
	r, ok := c.reports[work]
	if ok {
		c.reports[work] = v1alpha1.WorkReport{Work: work, UID: r.UID, Gone: true}
		c.pending[work] = true
	}
	c.mu.Unlock()
	if ok {
		c.poke()
	}
}

// Up says whether a stream is open now.
func (c *Client) Up() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up
}

func (c *Client) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Run keeps a stream open to addr (HOST:PORT) until ctx ends, reconnecting with jittered
// backoff up to maxBackoff.
func (c *Client) Run(ctx context.Context, addr, serverName string) {
	conn, err := c.connFor(addr, serverName)
	if err != nil {
		c.Log.Error("cannot set up the delivery stream", "addr", addr, "err", err)
		return
	}
	defer c.release(conn)
	fails := 0
	var down time.Time
	for ctx.Err() == nil {
		opened, err := c.stream(ctx, conn, func() {
			// The same words as the Lease's heartbeat, for whoever watches the agent's log.
			if fails > 0 {
				c.Log.Info("heartbeat back", "after", time.Since(down).Round(time.Millisecond))
			}
			fails = 0
		})
		if ctx.Err() != nil {
			return
		}
		if opened || fails == 0 {
			down = time.Now()
			fails = 0
			c.Log.Warn("heartbeat failed; the delivery stream to the hub is lost or refused; retrying with backoff", "addr", addr, "err", err)
		}
		fails++
		t := time.NewTimer(Backoff(250*time.Millisecond, fails)) // 0.5 s after the first failure
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// connFor returns the Client's connection to addr, made if there is none (or it is to
// another address, which it replaces).
func (c *Client) connFor(addr, serverName string) (*grpc.ClientConn, error) {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	if c.conn != nil && c.connAddr == addr {
		return c.conn, nil
	}
	conn, err := c.dial(addr, serverName)
	if err != nil {
		return nil, err
	}
	if c.conn != nil {
		c.conn.Close()
	}
	c.conn, c.connAddr = conn, addr
	return conn, nil
}

// Close closes the Client's connection, if a join made one that no stream took.
func (c *Client) Close() {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.connAddr = nil, ""
	}
}

// release closes conn, the stream's, once the stream is done with it.
func (c *Client) release(conn *grpc.ClientConn) {
	c.cmu.Lock()
	if c.conn == conn {
		c.conn, c.connAddr = nil, ""
	}
	c.cmu.Unlock()
	conn.Close()
}

// ErrNoJoin says the hub at the address serves no joins (v1alpha1.DeliveryJoin), or cannot
// be reached there (an older hub, a member whose network forwards only the API server): the
// agent asks the hub's API server instead.
var ErrNoJoin = errors.New("the hub serves no joins on its delivery port")

// Join asks the hub at addr for a token of the cluster's agent, presenting token (a bootstrap
// token, or the current one to renew it), valid for ttl at most. It uses the Client's
// connection to addr, and makes it if there is none, for the stream (Run) to use; a connection
// to another address stays as it is, and the join uses one of its own. A refusal wraps
// ErrRefused, and a hub that serves no joins, or cannot be reached, ErrNoJoin.
func (c *Client) Join(ctx context.Context, addr, serverName, token string, ttl time.Duration) (v1alpha1.JoinResponse, error) {
	c.cmu.Lock()
	conn, own := c.conn, false
	switch {
	case conn == nil:
		if conn, _ = c.dial(addr, serverName); conn != nil {
			c.conn, c.connAddr = conn, addr
		}
	case c.connAddr != addr:
		conn, _ = c.dial(addr, serverName)
		own = true
	}
	c.cmu.Unlock()
	if conn == nil {
		return v1alpha1.JoinResponse{}, fmt.Errorf("%w: cannot set up a connection to %s", ErrNoJoin, addr)
	}
	if own {
		defer conn.Close()
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var resp v1alpha1.JoinResponse
	err := conn.Invoke(ctx, joinMethod, &v1alpha1.JoinRequest{Cluster: c.Cluster, ExpirationSeconds: int64(ttl / time.Second)}, &resp,
		grpc.PerRPCCredentials(bearer(func() string { return token })))
	if st, ok := status.FromError(err); ok && err != nil && (st.Code() == codes.Unimplemented || st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded) {
		return v1alpha1.JoinResponse{}, fmt.Errorf("%w: %s", ErrNoJoin, st.Message())
	}
	if err != nil {
		return v1alpha1.JoinResponse{}, refusal(err)
	}
	if resp.Token == "" {
		return v1alpha1.JoinResponse{}, errors.New("the hub's join answer has no token")
	}
	return resp, nil
}

func (c *Client) dial(addr, serverName string) (*grpc.ClientConn, error) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CA)
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12})),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(codec{}), grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		// gRPC's own reconnection backs off up to 120 s by default: after a hub outage of a
		// minute an agent would wait that long for its connection. Capped so that with its 20%
		// jitter it stays within maxBackoff, and with the stream waiting for the connection
		// (WaitForReady) rather than failing beside it, every agent is back within maxBackoff
		// of the hub's return.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxBackoff * 5 / 6},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithReadBufferSize(connBuffer), grpc.WithWriteBufferSize(connBuffer),
		// Fixed windows, as the hub's (server.go): no bandwidth-estimating ping to the hub
		// for each message it sends.
		grpc.WithInitialWindowSize(flowWindow), grpc.WithInitialConnWindowSize(flowWindow),
	)
}

// maxBackoff caps the wait between attempts to reach the hub, on the stream and on the
// agent's other hub connections: once the hub is back, every agent is back within it.
// Attempts at a hub that is down cost it nothing.
const maxBackoff = 10 * time.Second

// Backoff is the wait after the n-th failure in a row to reach the hub: it doubles from base up
// to 10 s, with half of it random, so that many agents coming back after a hub outage spread
// out. The agent's connections to the hub all use it.
func Backoff(base time.Duration, n int) time.Duration {
	d := min(base, maxBackoff)
	for range n {
		d *= 2
		if d >= maxBackoff {
			d = maxBackoff
			break
		}
	}
	return d/2 + rand.N(d/2+1)
}

// ErrRefused wraps the hub's refusal of the agent's identity.
var ErrRefused = errors.New("the hub refused the agent's stream")

// stream runs one stream until it fails; opened says whether the hub accepted it.
func (c *Client) stream(ctx context.Context, conn *grpc.ClientConn, accepted func()) (opened bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The stream waits for the connection, which gRPC re-establishes as soon as its backoff
	// allows: failing at once instead would add Run's own backoff to gRPC's.
	s, err := conn.NewStream(ctx, &streamDesc, syncMethod, grpc.PerRPCCredentials(bearer(c.Token)), grpc.WaitForReady(true))
	if err != nil {
		return false, err
	}
	// Everything the agent has reported follows the hello: a new stream may reach a hub that
	// knows nothing yet, or holds reports of an earlier run of this agent.
	c.mu.Lock()
	hello := v1alpha1.AgentMessage{Hello: &v1alpha1.DeliveryHello{Cluster: c.Cluster, Version: c.Version, WatchWorks: c.GetWorks}, Inventory: c.inventory.DeepCopy()}
	c.inventoryPending = false
	var all []v1alpha1.WorkReport
	for w, r := range c.reports {
		if !r.Gone {
			hello.Hello.Works = append(hello.Hello.Works, w)
			all = append(all, r)
		} else {
			delete(c.reports, w)
		}
	}
	clear(c.pending)
	c.mu.Unlock()
	if err := s.SendMsg(&hello); err != nil {
		return false, err
	}
	var first v1alpha1.HubMessage
	if err := s.RecvMsg(&first); err != nil {
		err = refusal(err)
		if errors.Is(err, ErrRefused) && c.OnRefused != nil {
			c.OnRefused(err)
		}
		return false, err
	}

	interval, perr := time.ParseDuration(first.HeartbeatInterval)
	if perr != nil || interval < v1alpha1.MinHeartbeatInterval {
		interval = v1alpha1.DefaultHeartbeatInterval
	}
	c.mu.Lock()
	c.hubInventory = first.Inventory
	c.mu.Unlock()
	worksStream := c.works.streamOpened(first.SendsWorks)
	c.works.take(worksStream, &first)
	c.setUp(true)
	defer c.setUp(false)
	accepted()
	for len(all) > 0 {
		n := min(len(all), reportsPerMessage)
		if err := s.SendMsg(&v1alpha1.AgentMessage{Reports: all[:n]}); err != nil {
			return true, err
		}
		all = all[n:]
	}

	// The hub sends the cluster's Works, if asked, and a new interval; a receive error ends
	// the stream.
	recvErr := make(chan error, 1)
	intervals := make(chan time.Duration, 1)
	go func() {
		for {
			var m v1alpha1.HubMessage
			if err := s.RecvMsg(&m); err != nil {
				recvErr <- err
				return
			}
			c.works.take(worksStream, &m)
			if d, err := time.ParseDuration(m.HeartbeatInterval); err == nil && d >= v1alpha1.MinHeartbeatInterval {
				select {
				case intervals <- d:
				default:
				}
			}
		}
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case err := <-recvErr:
			if err = refusal(err); errors.Is(err, ErrRefused) && c.OnRefused != nil {
				c.OnRefused(err)
			}
			return true, err
		case d := <-intervals:
			tick.Reset(d)
		case <-tick.C:
			if err := s.SendMsg(&v1alpha1.AgentMessage{}); err != nil {
				return true, err
			}
		case <-c.kick:
			m := c.takePending()
			for first := true; first || len(m.Reports) > 0; first = false {
				n := min(len(m.Reports), reportsPerMessage)
				msg := v1alpha1.AgentMessage{Reports: m.Reports[:n]}
				if first {
					msg.Inventory = m.Inventory
				}
				if err := s.SendMsg(&msg); err != nil {
					return true, err
				}
				m.Reports = m.Reports[n:]
			}
			tick.Reset(interval) // the report was a heartbeat too
		}
	}
}

// HubStoresInventory says whether the hub of the last stream that opened stores the inventory
// sent on it (an older hub ignores it, and the agent must write it itself).
func (c *Client) HubStoresInventory() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hubInventory
}

// EverUp says whether a stream has been open since the Client started.
func (c *Client) EverUp() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.everUp
}

func (c *Client) setUp(up bool) {
	c.mu.Lock()
	c.up = up
	c.everUp = c.everUp || up
	c.mu.Unlock()
}

// takePending returns the reports and inventory not sent yet.
func (c *Client) takePending() v1alpha1.AgentMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	var m v1alpha1.AgentMessage
	if c.inventoryPending {
		m.Inventory, c.inventoryPending = c.inventory.DeepCopy(), false
	}
	for w := range c.pending {
		r := c.reports[w]
		m.Reports = append(m.Reports, r)
		if r.Gone {
			delete(c.reports, w)
		}
	}
	clear(c.pending)
	return m
}

// bearer sends the agent's current token with each stream.
type bearer func() string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b()}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }

// Probe opens one stream to addr as cluster's agent with token, and says whether the hub
// accepts it: nil, or an error wrapping ErrRefused with the hub's reason.
func Probe(ctx context.Context, addr, serverName string, ca []byte, cluster, token string) error {
	c := NewClient(cluster, "probe", ca, func() string { return token }, nil)
	conn, err := c.dial(addr, serverName)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := conn.NewStream(ctx, &streamDesc, syncMethod, grpc.PerRPCCredentials(bearer(c.Token)))
	if err != nil {
		return err
	}
	if err := s.SendMsg(&v1alpha1.AgentMessage{Hello: &v1alpha1.DeliveryHello{Cluster: cluster, Version: "probe", Probe: true}}); err != nil {
		return err
	}
	var first v1alpha1.HubMessage
	return refusal(s.RecvMsg(&first))
}

// refusal wraps the hub's refusal of an identity in ErrRefused.
func refusal(err error) error {
	if st, ok := status.FromError(err); ok && err != nil && (st.Code() == codes.Unauthenticated || st.Code() == codes.PermissionDenied) {
		return fmt.Errorf("%w: %s", ErrRefused, st.Message())
	}
	return err
}
