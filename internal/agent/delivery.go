package agent

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/delivery"
)

// stream is the agent's delivery stream, when the hub offers one (its agent-config names a
// port): once it has opened, the agent heartbeats and reports its Works' status on it instead
// of renewing its Lease and writing the Works' status, and gets its Works on it instead of
// watching them through the hub's API (worksource.go, internal/delivery).
type stream struct {
	client *delivery.Client
	port   string
	cancel context.CancelFunc
	done   chan struct{} // closed when the client's Run has returned
	since  time.Time
}

// streamPatience is how long the agent keeps its Works' status for a stream that has not
// opened yet, before it writes it itself as well.
const streamPatience = 10 * time.Second

// leasePatience is how long the agent's heartbeat waits for a stream that is opening before it
// renews the Lease instead: less than the hub's default grace (6 s) less one interval, so that a
// restarted agent whose stream is slow to open is not taken for lost; and a registering agent
// whose stream opens at once writes no Lease at all.
const leasePatience = 3 * time.Second

// awaitingStream says whether the agent's stream is opening and still worth waiting for.
func (a *Agent) awaitingStream() bool {
	s := a.stream.Load()
	return s != nil && !s.client.EverUp() && time.Since(s.since) < leasePatience
}

// agentSettings are what the hub's agent-config gives the agent.
type agentSettings struct {
	interval time.Duration // heartbeatInterval; 0 if it gives none that is valid
	port     string        // the delivery stream's port; "" for none
}

// readSettings reads the agent's settings from its cache of the agent-config (which watches it
// from then on, until unwatchSettings) and remembers them; false when they cannot be read
// within a few seconds (the hub is away): the last ones stay.
func (a *Agent) readSettings(ctx context.Context) (agentSettings, bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cm := &corev1.ConfigMap{}
	a.settingsWatched.Store(true) // the cache watches it from now on, even if it answers late
	if err := a.hubCache.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: v1alpha1.AgentConfigMap}, cm); err != nil {
		return agentSettings{}, false
	}
	return a.takeSettings(cm.Data), true
}

// takeSettings remembers the settings of the agent-config's data, and returns them.
func (a *Agent) takeSettings(data map[string]string) agentSettings {
	var st agentSettings
	if d, err := time.ParseDuration(data["heartbeatInterval"]); err == nil && d >= v1alpha1.MinHeartbeatInterval {
		st.interval = d
	}
	st.port = data[v1alpha1.AgentConfigDeliveryPort]
	a.settings.Store(&st)
	return st
}

// settingsPatience is how long the agent's open stream may be down before the agent reads its
// settings through the hub's API again (and watches them until a stream is open again): longer
// than a blip of the stream, short enough that an agent whose hub stopped offering the stream
// (or moved it) renews its Lease well within the grace a restarted hub gives it (10 s more
// than --unreachable-after).
const settingsPatience = 5 * time.Second

// unwatchSettings stops watching the agent-config once the agent's stream is open: the stream
// says what the settings said (the heartbeat interval; its port is the one in use), so an idle
// agent holds no request at the hub's API server, and its connection there closes when idle
// (client-go's transport closes idle connections after 90 s). A stream down for
// settingsPatience reads the settings again (readSettings), which watches them again.
func (a *Agent) unwatchSettings(ctx context.Context) {
	if !a.settingsWatched.CompareAndSwap(true, false) {
		return
	}
	if err := a.hubCache.RemoveInformer(ctx, &corev1.ConfigMap{}); err != nil {
		a.settingsWatched.Store(true)
	}
}

// streaming returns the delivery stream's client once a stream has opened, or nil while the
// agent renews its Lease: an agent that cannot reach the stream's port (a member whose network
// forwards only the API server's) keeps working the old way. Once a stream has opened, the
// agent stays with it while the hub offers it, as it stays with the hub: fail static.
func (a *Agent) streaming() *delivery.Client {
	if s := a.stream.Load(); s != nil && s.client.EverUp() {
		return s.client
	}
	return nil
}

// reporter says where a Work's status goes: to the stream's client (nil if there is none),
// and whether the agent also writes it itself (no stream opened within streamPatience).
func (a *Agent) reporter() (c *delivery.Client, write bool) {
	s := a.stream.Load()
	switch {
	case s == nil:
		return nil, true
	case s.client.EverUp():
		return s.client, false
	default:
		return s.client, time.Since(s.since) >= streamPatience
	}
}

// followDelivery starts the delivery stream once the agent's settings name a port, moves it
// when the port changes, and stops it when the hub no longer offers one. While the stream is
// open it does not read the settings (unwatchSettings); it reads them again once the stream
// has been down for settingsPatience.
func (a *Agent) followDelivery(ctx context.Context) {
	var lastUp time.Time
	for sleep(ctx, a.heartbeatInterval()) {
		if s := a.stream.Load(); s != nil && s.client.Up() {
			lastUp = time.Now()
			a.unwatchSettings(ctx)
			continue
		}
		if !lastUp.IsZero() && time.Since(lastUp) < settingsPatience {
			continue
		}
		if st, ok := a.readSettings(ctx); ok {
			a.switchDelivery(ctx, st.port)
		}
	}
	if s := a.stream.Load(); s != nil {
		s.cancel()
		<-s.done
	}
}

// switchDelivery makes the agent's stream the one at port ("" for none). The reports made so
// far stay with the new stream's client.
func (a *Agent) switchDelivery(ctx context.Context, port string) {
	cur := a.stream.Load()
	if cur == nil && port == "" || cur != nil && cur.port == port {
		return
	}
	var c *delivery.Client
	if cur != nil {
		cur.cancel()
		<-cur.done // one stream at a time sends this client's reports
		c = cur.client
	}
	if port == "" {
		// The hub stopped offering the stream (convoy hub --delivery-port -1): back to the
		// Lease and writing status, which the hub expects now.
		a.stream.Store(nil)
		c.EndWatches() // the Works informer watches the API again
		a.log.Info("the hub no longer offers a delivery stream; heartbeating on the Lease")
		a.requeueWorks() // their status is written now, and may be behind
		return
	}
	u, err := url.Parse(a.opts.HubURL)
	if err != nil {
		return
	}
	if c == nil {
		c = a.dc
		if a.dcTaken.Swap(true) {
			c = a.newDeliveryClient(ctx)
		}
		if inv := a.inv.Load(); inv != nil {
			c.SetInventory(*inv)
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	s := &stream{client: c, port: port, cancel: cancel, done: make(chan struct{}), since: time.Now()}
	a.stream.Store(s)
	addr := net.JoinHostPort(u.Hostname(), port)
	if a.opts.DeliveryAddr != "" {
		addr = a.opts.DeliveryAddr
	}
	a.log.Info("using the hub's delivery stream for heartbeats and status", "addr", addr)
	go func() {
		defer close(s.done)
		c.Run(sctx, addr, u.Hostname())
	}()
	// A stream that does not open in time: the agent writes its Works' status itself from
	// then on, and looks at every Work again to write what it only reported so far.
	time.AfterFunc(streamPatience, func() {
		if a.stream.Load() == s && !c.EverUp() && sctx.Err() == nil {
			a.log.Warn("the hub's delivery stream has not opened; writing the Works' status directly", "port", port)
			a.requeueWorks()
		}
	})
}

// checkIdentity asks the hub's API whether the agent's token still works, after the stream
// was refused: a refusal there (401) marks the identity revoked (identity.wrap), as any other
// request's would; the stream's word alone does not, since the hub may only have been unable
// to tell. At most one check every 10 s.
func (a *Agent) checkIdentity(ctx context.Context) {
	now := time.Now().UnixNano()
	last := a.lastCheck.Load()
	if now-last < int64(10*time.Second) || !a.lastCheck.CompareAndSwap(last, now) {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = a.hub.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: v1alpha1.AgentConfigMap}, &corev1.ConfigMap{})
	}()
}

// requeueWorks has the Work controller look at every Work again.
func (a *Agent) requeueWorks() {
	if f := a.requeue.Load(); f != nil {
		(*f)()
	}
}

// join asks the hub process for the agent's token (identity.join), on its delivery port:
// DeliveryAddr, or HubURL's host at the port of the agent's settings, or before it has any,
// at DeliveryPort. delivery.ErrNoJoin when none is known: the agent asks the API server.
func (a *Agent) join(ctx context.Context, bearer string) (v1alpha1.JoinResponse, error) {
	u, err := url.Parse(a.opts.HubURL)
	if err != nil {
		return v1alpha1.JoinResponse{}, fmt.Errorf("%w: %v", delivery.ErrNoJoin, err)
	}
	port := a.opts.DeliveryPort
	if st := a.settings.Load(); st != nil {
		port = st.port
	}
	addr := a.opts.DeliveryAddr
	switch {
	case port == "" && (addr == "" || a.settings.Load() != nil):
		// No port known, or the hub's settings say it offers no stream.
		return v1alpha1.JoinResponse{}, delivery.ErrNoJoin
	case addr == "":
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	// The stream's client, whose connection is open, or the one the first stream will take.
	c := a.dc
	if s := a.stream.Load(); s != nil {
		c = s.client
	}
	return c.Join(ctx, addr, u.Hostname(), bearer, tokenTTL)
}

// newDeliveryClient makes a delivery stream's client.
func (a *Agent) newDeliveryClient(ctx context.Context) *delivery.Client {
	c := delivery.NewClient(a.opts.Cluster, a.opts.Version, a.opts.HubCA, a.id.token, a.log.With("component", "delivery"))
	c.OnRefused = func(error) { a.checkIdentity(ctx) }
	c.GetWorks = true
	return c
}
