package agent

import (
	"context"
	"net"
	"net/url"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/delivery"
)

// stream is the agent's delivery stream, when the hub offers one (its agent-config names a
// port): the agent then heartbeats and reports its Works' status on it instead of renewing its
// Lease and writing the Works' status (internal/delivery).
type stream struct {
	client *delivery.Client
	port   string
	cancel context.CancelFunc
	since  time.Time
}

// streamPatience is how long the agent waits for its first stream before it heartbeats on its
// Lease instead.
const streamPatience = 10 * time.Second

// awaitingStream says whether the agent has a stream starting that has not opened yet, and is
// still worth waiting for.
func (a *Agent) awaitingStream() bool {
	s := a.stream.Load()
	return s != nil && !s.client.EverUp() && time.Since(s.since) < streamPatience
}

// deliveryPort is the port of the hub's delivery stream that the agent's settings give, if any.
func (a *Agent) deliveryPort(ctx context.Context) string {
	cm := &corev1.ConfigMap{}
	if err := a.hubCache.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: v1alpha1.AgentConfigMap}, cm); err != nil {
		return ""
	}
	return cm.Data[v1alpha1.AgentConfigDeliveryPort]
}

// streaming returns the delivery stream's client once a stream has opened, or nil while the
// agent uses the Lease and writes status itself: an agent that cannot reach the stream's port
// (a member whose network forwards only the API server's) keeps working the old way. Once a
// stream has opened the agent stays with it, as it stays with the hub: fail static.
func (a *Agent) streaming() *delivery.Client {
	if s := a.stream.Load(); s != nil && s.client.EverUp() {
		return s.client
	}
	return nil
}

// followDelivery starts the delivery stream once the agent's settings name a port, and moves
// it when the port changes. The reports already made stay with the new stream's client.
func (a *Agent) followDelivery(ctx context.Context) {
	for sleep(ctx, a.heartbeatInterval(ctx)) {
		a.switchDelivery(ctx, a.deliveryPort(ctx))
	}
	if s := a.stream.Load(); s != nil {
		s.cancel()
	}
}

func (a *Agent) switchDelivery(ctx context.Context, port string) {
	cur := a.stream.Load()
	if port == "" || (cur != nil && cur.port == port) {
		return // a hub that stops offering the stream keeps the agent on it: it fails static
	}
	u, err := url.Parse(a.opts.HubURL)
	if err != nil {
		return
	}
	var c *delivery.Client
	if cur != nil {
		cur.cancel()
		c = cur.client
	} else {
		c = delivery.NewClient(a.opts.Cluster, a.opts.Version, a.opts.HubCA, a.id.token, a.log.With("component", "delivery"))
	}
	sctx, cancel := context.WithCancel(ctx)
	a.stream.Store(&stream{client: c, port: port, cancel: cancel, since: time.Now()})
	a.log.Info("using the hub's delivery stream for heartbeats and status", "port", port)
	go c.Run(sctx, net.JoinHostPort(u.Hostname(), port), u.Hostname())
}
