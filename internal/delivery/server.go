package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// Identity is who a token belongs to: a cluster's agent ServiceAccount.
type Identity struct {
	Cluster        string
	ServiceAccount string
	UID            string
}

// Authenticator checks an agent's bearer token and says whose it is.
type Authenticator interface {
	// Authenticate returns the identity of token, or an error that says why it is refused.
	Authenticate(ctx context.Context, token string) (Identity, error)
	// Current says whether id is still its cluster's agent identity (the cluster exists and
	// has not revoked it); it answers from memory, since it is asked while streams last.
	Current(ctx context.Context, id Identity) error
}

// Server serves the agents' streams and holds what they said: when each cluster was last heard
// from and the latest report of each of its Works. Its zero value is not usable: set the
// fields, then call Serve.
type Server struct {
	Auth Authenticator
	// Enroll, if set, answers the agents' joins and token renewals (v1alpha1.DeliveryJoin);
	// without it the method is not served, and agents ask the API server.
	Enroll *Enrollment
	// HeartbeatInterval is how often agents must send; zero means
	// v1alpha1.DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// Seen, if set, is called when a cluster's stream opens or its inventory changes (its
	// verdict may change, and the inventory is the Cluster controller's to store), with the
	// stream's context; and, with Serve's, when a cluster whose agent the Server heard misses
	// a heartbeat, or is heard again after it missed one (see Watched).
	Seen func(ctx context.Context, cluster string)
	// Reported, if set, is called (outside any lock) with each Work whose report changed,
	// with the stream's context; reach says whether the report, new or old, has a Service's
	// reach.
	Reported func(ctx context.Context, cluster, work string, reach bool)
	// Works, if set, reads the clusters' Works for the agents that ask to get them on the
	// stream (see WorkChanged).
	Works WorkLister
	// Since is when the hub started; zero means every cluster's stored Work status is taken
	// as confirmed (see Unconfirmed).
	Since time.Time
	Log   *slog.Logger

	mu       sync.RWMutex
	clusters map[string]*clusterState
	dirty    map[workKey]bool
	wake     chan struct{}
	// serving is Serve's context: a call to Seen made on a stream's behalf that must not end
	// with the stream (see touch).
	serving context.Context
	burst   burst // of reports that changed something: stores wait for its end
	grpc    *grpc.Server
	count   counters

	// pmu guards pending: content handed for Works and not yet seen stored (pending.go);
	// refused and reset; and handSeq, which
	// with epoch (when the Server started) names each handed content.
	pmu     sync.Mutex
	pending map[workKey]*pendingWork
	refused map[workKey]string // the content (contentKey) the API refused
	reset   map[workKey]bool   // the agent takes these again whatever their generation
	handSeq int64
	epoch   int64
	toWrite chan struct{} // wakes the Writer
}

type workKey struct{ cluster, work string }

type clusterState struct {
	last time.Time // the last message
	// lapsed says the agent missed a heartbeat and Seen was told (see Watched); a message
	// clears it, and tells Seen again.
	lapsed    bool
	streams   int
	gen       int // the newest stream's number
	reports   map[string]*v1alpha1.WorkReport
	inventory *v1alpha1.Inventory // the newest stream's latest
	// awaiting are the Works whose reports the newest stream's hello announced and that have
	// not come yet, until synced: every announced report has come once since the hub started.
	awaiting  map[string]bool
	synced    bool
	forgotten bool // the Cluster is gone: drop it when its last stream ends
	// feeds are the open streams that get the cluster's Works.
	feeds map[*feed]bool
}

// recheck is how often a stream's identity is checked again (a revocation cuts it).
const recheck = 2 * time.Second

func (s *Server) init() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clusters == nil {
		s.clusters = map[string]*clusterState{}
		s.dirty = map[workKey]bool{}
		s.wake = make(chan struct{}, 1)
		s.toWrite = make(chan struct{}, 1)
		s.epoch = time.Now().UnixNano()
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
}

func (s *Server) interval() time.Duration {
	if s.HeartbeatInterval > 0 {
		return s.HeartbeatInterval
	}
	return v1alpha1.DefaultHeartbeatInterval
}

// Serve serves streams on l with cert until ctx ends; then it ends every stream.
func (s *Server) Serve(ctx context.Context, l net.Listener, cert tls.Certificate) error {
	s.init()
	s.grpc = grpc.NewServer(
		grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})),
		grpc.ForceServerCodec(codec{}),
		grpc.StatsHandler(&s.count),
		grpc.MaxRecvMsgSize(maxMessage),
		// A thousand agents' connections: small buffers, since messages are small.
		grpc.ReadBufferSize(connBuffer), grpc.WriteBufferSize(connBuffer),
		// Fixed flow-control windows, which turns off gRPC's bandwidth estimation: it pings the
		// agent after the first data it receives following each answered ping, so every
		// heartbeat cost the hub a ping out and its answer in. A Work's full set (1 MB
		// messages) still flows without waiting for window updates.
		grpc.InitialWindowSize(flowWindow), grpc.InitialConnWindowSize(flowWindow),
		// Agents ping through their messages; transport pings only find dead peers sooner.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	var methods []grpc.MethodDesc
	if s.Enroll != nil {
		methods = append(methods, s.joinDesc())
	}
	s.grpc.RegisterService(&grpc.ServiceDesc{
		ServiceName: v1alpha1.DeliveryService,
		HandlerType: (*any)(nil),
		Methods:     methods,
		Streams: []grpc.StreamDesc{{
			StreamName: v1alpha1.DeliverySync, ClientStreams: true, ServerStreams: true,
			Handler: func(_ any, stream grpc.ServerStream) error { return s.sync(stream) },
		}},
	}, s)
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			s.grpc.Stop()
		case <-stopped:
		}
	}()
	go s.watchLapses(ctx, stopped)
	s.mu.Lock()
	s.serving = ctx
	s.mu.Unlock()
	err := s.grpc.Serve(l)
	close(stopped)
	if ctx.Err() != nil || errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// sync serves one agent's stream.
func (s *Server) sync(stream grpc.ServerStream) error {
	ctx := stream.Context()
	token := bearerOf(ctx)
	if token == "" {
		return status.Error(codes.Unauthenticated, "no bearer token: the agent authenticates with its ServiceAccount token")
	}
	id, err := s.Auth.Authenticate(ctx, token)
	switch {
	case errors.Is(err, ErrNotAgent):
		return status.Errorf(codes.Unauthenticated, "token refused: %v", err)
	case err != nil:
		return status.Errorf(codes.Unavailable, "cannot check the agent's token yet: %v", err)
	}
	s.count.opened.Add(1)
	var hello v1alpha1.AgentMessage
	if err := stream.RecvMsg(&hello); err != nil {
		return err
	}
	if hello.Hello == nil || hello.Hello.Cluster == "" {
		return status.Error(codes.InvalidArgument, "the first message must say hello with the cluster's name")
	}
	if hello.Hello.Cluster != id.Cluster {
		return status.Errorf(codes.PermissionDenied, "this identity (%s) is cluster %q's agent, not cluster %q's", id.ServiceAccount, id.Cluster, hello.Hello.Cluster)
	}
	if err := s.Auth.Current(ctx, id); err != nil {
		return currentError(err)
	}
	if hello.Hello.Probe {
		// Only asking whether the hub takes this identity: no heartbeat, nothing replaced.
		return stream.SendMsg(&v1alpha1.HubMessage{HeartbeatInterval: s.interval().String(), Inventory: true})
	}
	var works *feed
	if hello.Hello.WatchWorks && s.Works != nil {
		works = newFeed()
	}
	gen, dropped := s.open(id.Cluster, hello.Hello.Works, works)
	defer s.close(id.Cluster, works)
	s.setInventory(id.Cluster, gen, hello.Inventory)
	s.notify(ctx, id.Cluster, dropped)
	log := s.Log.With("cluster", id.Cluster)
	log.Debug("agent stream opened", "version", hello.Hello.Version)
	if s.Seen != nil {
		s.Seen(ctx, id.Cluster)
	}
	if err := stream.SendMsg(&v1alpha1.HubMessage{HeartbeatInterval: s.interval().String(), Inventory: true, SendsWorks: works != nil}); err != nil {
		return err
	}
	s.fold(ctx, id.Cluster, gen, hello.Reports)
	if works != nil {
		// From here on only sendWorks sends on the stream; the stream ends when it fails.
		sctx, cancel := context.WithCancel(ctx)
		sent := make(chan error, 1)
		go func() { sent <- s.sendWorks(sctx, stream, id.Cluster, works) }()
		defer func() {
			cancel()
			// A send blocked on a peer that stopped reading ends with the stream, which ends
			// once this handler returns: do not wait for it for ever.
			select {
			case <-sent:
			case <-time.After(5 * time.Second):
			}
		}()
		recvErr := make(chan error, 1)
		go func() { recvErr <- s.receive(ctx, stream, id, gen, log) }()
		select {
		case err := <-recvErr:
			return err
		case err := <-sent:
			if err == nil {
				err = ctx.Err()
			}
			return err
		}
	}
	return s.receive(ctx, stream, id, gen, log)
}

// receive takes the agent's messages after its hello until the stream fails or its identity
// is no longer current.
func (s *Server) receive(ctx context.Context, stream grpc.ServerStream, id Identity, gen int, log *slog.Logger) error {
	checked := time.Now()
	for {
		var m v1alpha1.AgentMessage
		if err := stream.RecvMsg(&m); err != nil {
			return err
		}
		if now := time.Now(); now.Sub(checked) >= recheck {
			if err := s.Auth.Current(ctx, id); err != nil {
				log.Info("agent stream cut: its identity is no longer current", "err", err)
				return currentError(err)
			}
			checked = now
		}
		s.touch(id.Cluster)
		if s.setInventory(id.Cluster, gen, m.Inventory) && s.Seen != nil {
			s.Seen(ctx, id.Cluster)
		}
		s.fold(ctx, id.Cluster, gen, m.Reports)
	}
}

// setInventory keeps the inventory that the newest stream of cluster sent, and says whether
// it took it. An agent sends its inventory only when it changed, or to refresh it (every few
// minutes), so each one is worth a look by the Cluster controller.
func (s *Server) setInventory(cluster string, gen int, inv *v1alpha1.Inventory) bool {
	if inv == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clusters[cluster]
	if c == nil || c.gen != gen {
		return false
	}
	c.inventory = inv
	return true
}

// Inventory is the latest inventory that the newest stream of cluster's agent sent, while a
// stream of it is open (an agent that does not send it there writes it itself).
func (s *Server) Inventory(cluster string) (v1alpha1.Inventory, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.clusters[cluster]
	if c == nil || c.inventory == nil || c.streams == 0 {
		return v1alpha1.Inventory{}, false
	}
	return *c.inventory.DeepCopy(), true
}

// currentError is the stream's answer to an identity that Current refused: PermissionDenied
// when it was revoked, Unavailable (try again) when the hub could not tell yet.
func currentError(err error) error {
	if errors.Is(err, ErrRevoked) {
		return status.Errorf(codes.PermissionDenied, "%v", err)
	}
	return status.Errorf(codes.Unavailable, "cannot check the agent's identity yet: %v", err)
}

// open counts a new stream of cluster, whose agent holds reports of works (and sends them
// next): the reports of its other Works are dropped, and returned. Only the newest stream of a
// cluster (gen) is folded: an older one may still be draining what it had read.
func (s *Server) open(cluster string, works []string, f *feed) (gen int, dropped []change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clusters[cluster]
	if c == nil {
		c = &clusterState{reports: map[string]*v1alpha1.WorkReport{}}
		s.clusters[cluster] = c
	}
	c.streams++
	c.gen++
	if f != nil {
		f.gen = c.gen
		if c.feeds == nil {
			c.feeds = map[*feed]bool{}
		}
		c.feeds[f] = true
	}
	c.last = time.Now()
	c.lapsed = false // the stream's opening is told to Seen
	c.forgotten = false
	c.inventory = nil // the new stream's hello brings the agent's latest, if it has one
	if !c.synced {
		c.awaiting = make(map[string]bool, len(works))
		for _, w := range works {
			c.awaiting[w] = true
		}
		c.synced = len(works) == 0
	}
	keep := make(map[string]bool, len(works))
	for _, w := range works {
		keep[w] = true
	}
	for w, r := range c.reports {
		if !keep[w] {
			dropped = append(dropped, change{w, hasReach(r)})
			delete(c.reports, w)
			delete(s.dirty, workKey{cluster, w})
		}
	}
	return c.gen, dropped
}

func (s *Server) close(cluster string, f *feed) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.clusters[cluster]; c != nil {
		delete(c.feeds, f)
		c.streams--
		if c.streams == 0 && c.forgotten {
			delete(s.clusters, cluster)
		}
	}
}

// touch notes a message from cluster's agent, and tells Seen when it comes after a heartbeat
// the agent missed, with Serve's context: were that call lost with the stream, the Cluster would
// stay Unreachable until the next lapse.
func (s *Server) touch(cluster string) {
	s.mu.Lock()
	again := false
	if c := s.clusters[cluster]; c != nil {
		c.last = time.Now()
		again, c.lapsed = c.lapsed, false
	}
	ctx := s.serving
	s.mu.Unlock()
	if again && s.Seen != nil {
		if ctx == nil {
			ctx = context.Background() // not serving: a test's Server
		}
		s.Seen(ctx, cluster)
	}
}

// lapseAfter is how long after an agent's last message the Server calls it a missed
// heartbeat: one interval and a half, so that a message late by less than half an interval is
// not one. The verdict it may change (internal/health) allows three intervals at least.
func (s *Server) lapseAfter() time.Duration { return s.interval() * 3 / 2 }

// watchLapses tells Seen, every half interval, of the clusters whose agents missed a
// heartbeat since the last look, until ctx ends or stopped closes.
func (s *Server) watchLapses(ctx context.Context, stopped <-chan struct{}) {
	t := time.NewTicker(s.interval() / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-stopped:
			return
		case now := <-t.C:
			for _, cluster := range s.lapses(now) {
				if s.Seen != nil {
					s.Seen(ctx, cluster)
				}
			}
		}
	}
}

// lapses marks, and returns, the clusters whose agents the Server heard from and that have
// sent nothing for lapseAfter at now, unless they were marked already.
func (s *Server) lapses(now time.Time) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name, c := range s.clusters {
		if !c.lapsed && !c.last.IsZero() && now.Sub(c.last) > s.lapseAfter() {
			c.lapsed = true
			out = append(out, name)
		}
	}
	return out
}

// fold takes reports into memory and says who needs to know.
func (s *Server) fold(ctx context.Context, cluster string, gen int, reports []v1alpha1.WorkReport) {
	if len(reports) == 0 {
		return
	}
	var changed []change
	s.mu.Lock()
	c := s.clusters[cluster]
	if c == nil || c.gen != gen {
		s.mu.Unlock()
		return // a newer stream of the cluster has opened
	}
	for i := range reports {
		r := &reports[i]
		if !c.synced {
			delete(c.awaiting, r.Work)
			c.synced = len(c.awaiting) == 0
		}
		old := c.reports[r.Work]
		switch {
		case r.Gone:
			if old == nil || old.UID != r.UID {
				continue
			}
			delete(c.reports, r.Work)
			delete(s.dirty, workKey{cluster, r.Work})
			continue
		case old != nil && old.UID == r.UID && equality.Semantic.DeepEqual(old.Status, r.Status):
			continue
		}
		c.reports[r.Work] = r
		s.dirty[workKey{cluster, r.Work}] = true
		changed = append(changed, change{r.Work, hasReach(old) || hasReach(r)})
	}
	if len(changed) > 0 {
		s.burst.report(time.Now())
	}
	s.mu.Unlock()
	if len(changed) == 0 {
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	s.notify(ctx, cluster, changed)
}

// confirmWindow is how long after the hub starts a cluster's stored Work status counts as
// unconfirmed until its agent's stream has brought its reports again: agents reconnect within
// 10 s of a hub's start (their backoff cap) and send their reports at once. An agent without a
// stream never confirms; its stored status counts once the window has passed.
const confirmWindow = 30 * time.Second

// Started is when the hub started (Since).
func (s *Server) Started() time.Time { return s.Since }

// Unconfirmed says whether what is stored of cluster's Works' status may be behind what its
// agent reported to an earlier run of the hub (stored at the Persister's pace): the hub started
// less than confirmWindow ago and the cluster's stream has not brought every report its agent
// holds yet. A rollout neither pauses nor passes a wave on such a status (rollout.Cluster's
// Unknown).
func (s *Server) Unconfirmed(cluster string) bool {
	if s.Since.IsZero() || time.Since(s.Since) >= confirmWindow {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.clusters[cluster]
	return c == nil || !c.synced
}

// change is a Work whose report changed, and whether the report, new or old, has a reach.
type change struct {
	work  string
	reach bool
}

// notify tells Reported of changed reports; the caller holds no lock.
func (s *Server) notify(ctx context.Context, cluster string, changed []change) {
	if s.Reported != nil {
		for _, ch := range changed {
			s.Reported(ctx, cluster, ch.work, ch.reach)
		}
	}
}

// hasReach says whether a report tells a Service's reach (the edge's backends).
func hasReach(r *v1alpha1.WorkReport) bool {
	if r == nil {
		return false
	}
	for _, res := range r.Status.Resources {
		if res.Reach != nil {
			return true
		}
	}
	return false
}

// LastSeen is when this hub last heard from the cluster's agent on a stream, and how often it
// asks the agent to send; ok is false when it has not heard from it since it started.
func (s *Server) LastSeen(cluster string) (last time.Time, interval time.Duration, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.clusters[cluster]
	if c == nil || c.last.IsZero() {
		return time.Time{}, 0, false
	}
	return c.last, s.interval(), true
}

// Watched says whether the Server will tell Seen when the cluster's agent misses its next
// heartbeat: it heard from it, and it has not missed one since. Until then the agent's verdict
// cannot change by itself, and needs no look at the time its heartbeat would expire.
func (s *Server) Watched(cluster string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.clusters[cluster]
	return c != nil && !c.last.IsZero() && !c.lapsed
}

// Overlay returns w with the content handed for it (View) and the status its agent reported
// last, unless that is of another Work
// (uid) or an older generation than what w holds: a shallow copy, whose status shares memory
// with the report and must not be changed; w itself when there is no such report.
func (s *Server) Overlay(w *v1alpha1.Work) *v1alpha1.Work {
	cluster, ok := strings.CutPrefix(w.Namespace, v1alpha1.ClusterNamespacePrefix)
	if !ok {
		return w
	}
	w = s.View(w)
	s.mu.RLock()
	var r *v1alpha1.WorkReport
	streaming := false
	if c := s.clusters[cluster]; c != nil {
		r = c.reports[w.Name]
		streaming = c.streams > 0
		// Without a stream the agent may write the status itself now: a report that is
		// stored already says nothing the stored status does not.
		if c.streams == 0 && !s.dirty[workKey{cluster, w.Name}] {
			r = nil
		}
	}
	s.mu.RUnlock()
	// A report of an older generation than the stored status is behind it (the agent wrote
	// the stored one itself, having no stream then).
	// While the agent's stream is open its report is its latest word, whatever its
	// generation: the agent sends all of them again when a stream opens, and may have gone
	// back to an older generation (a reset of content handed ahead of its write). Without a
	// stream, a stored status ahead of the Work itself is of such content, and does not
	// count either.
	if r == nil || r.UID != string(w.UID) ||
		(!streaming && r.Status.ObservedGeneration < w.Status.ObservedGeneration && w.Status.ObservedGeneration <= w.Generation) {
		return w
	}
	out := *w
	out.Status = r.Status
	return &out
}

// Forget drops the report of a Work that is gone from the hub, if it is of that Work (uid): a
// Work made again under the same name keeps the report of the new one.
func (s *Server) Forget(cluster, work, uid string) {
	s.pmu.Lock()
	if p := s.pending[workKey{cluster, work}]; p != nil && string(p.uid) == uid {
		delete(s.pending, workKey{cluster, work})
	}
	delete(s.refused, workKey{cluster, work})
	delete(s.reset, workKey{cluster, work})
	s.pmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clusters[cluster]
	if c == nil || c.reports[work] == nil || c.reports[work].UID != uid {
		return
	}
	delete(c.reports, work)
	delete(s.dirty, workKey{cluster, work})
}

// ForgetCluster drops all that the Server holds of a cluster that is gone (once its last
// stream ends, if one is open: the identity check ends it).
func (s *Server) ForgetCluster(cluster string) {
	ofCluster := func(k workKey) bool { return k.cluster == cluster }
	s.pmu.Lock()
	maps.DeleteFunc(s.reset, func(k workKey, _ bool) bool { return ofCluster(k) })
	maps.DeleteFunc(s.refused, func(k workKey, _ string) bool { return ofCluster(k) })
	maps.DeleteFunc(s.pending, func(k workKey, _ *pendingWork) bool { return ofCluster(k) })
	s.pmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.clusters[cluster]; c != nil {
		if c.streams == 0 {
			delete(s.clusters, cluster)
		} else {
			c.forgotten = true
			clear(c.reports)
		}
	}
	for k := range s.dirty {
		if k.cluster == cluster {
			delete(s.dirty, k)
		}
	}
}

// takeDirty returns the reports not stored yet (and forgets that they are not), or waits for
// one until ctx ends.
func (s *Server) takeDirty(ctx context.Context) []v1alpha1.WorkReport {
	for {
		s.mu.Lock()
		if len(s.dirty) > 0 {
			out := make([]v1alpha1.WorkReport, 0, len(s.dirty))
			for k := range s.dirty {
				if c := s.clusters[k.cluster]; c != nil && c.reports[k.work] != nil {
					r := *c.reports[k.work]
					r.Work = v1alpha1.ClusterNamespace(k.cluster) + "/" + k.work
					out = append(out, r)
				}
			}
			clear(s.dirty)
			s.mu.Unlock()
			return out
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		}
		// Let a burst of reports (a propagation) pass first: storing them is not urgent,
		// and the latest of each is all that is stored.
		t := time.NewTimer(persistDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// persistDelay is how long the Persister lets reports gather before it stores them.
const persistDelay = time.Second

// markDirty puts a report back for a later write (its write failed).
func (s *Server) markDirty(namespace, work string) {
	cluster, ok := strings.CutPrefix(namespace, v1alpha1.ClusterNamespacePrefix)
	if !ok {
		return
	}
	s.mu.Lock()
	s.dirty[workKey{cluster, work}] = true
	s.mu.Unlock()
}

// String describes the Server for logs.
func (s *Server) String() string {
	return fmt.Sprintf("delivery: %d agents connected", s.Stats().Connected)
}
