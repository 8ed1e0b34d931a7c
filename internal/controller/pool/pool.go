// Package pool is the edge's pool supervisor: it runs the HAProxy instances (internal/edgepool)
// of every EdgePool at the hub and reports each one in the EdgePool's status. The hub runs one
// in its process (supervisor "hub"); `convoy edge` runs one on an edge host, under the host's
// name. Each writes only its own entries of status.instances.
//
// It fails static: an EdgePool it cannot read, or a hub it cannot reach, leaves its instances
// serving what they served. Only an EdgePool's deletion (its Gateway deleted) stops them.
// The hub and the edge command import it.
package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/edge"
	"github.com/convoy-dev/convoy/internal/edgepool"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// Supervisor runs the instances of every EdgePool in SystemNamespace.
type Supervisor struct {
	// Client reads EdgePools and writes their status.
	Client client.Client
	// Name is the supervisor's name in status: v1alpha1.EdgeSupervisorHub, or the edge host's.
	Name string
	// Dir holds the instances: DIR/POOL/INDEX.
	Dir string
	// Instances is how many HAProxy instances each pool gets here; zero means 1.
	Instances int
	// Binary is haproxy; empty means the one on PATH.
	Binary string
	// CheckInterval is the health checks' interval; zero means 1 s.
	CheckInterval time.Duration
	// Outlive leaves the instances running when the supervisor stops (a hub that stops or
	// crashes), and has the next supervisor on Dir take them over: the pools are served while
	// their supervisor is away. edgepool.StopAll stops them.
	Outlive bool
	// MetricsHost is the address the instances' exporters bind, each on a free port; empty
	// means 127.0.0.1.
	MetricsHost string
	Log         *slog.Logger

	reader client.Reader // the API server itself: the cache stops with the manager

	mu     sync.Mutex
	pools  map[string]*running   // by EdgePool name
	addrs  map[string]netip.Addr // each pool's address here, by EdgePool name
	closed bool                  // the manager stopped: no more instances start
}

// running is one pool's instances here. Its mutex is held by the pool's Reconcile (one at a
// time per pool) and by whatever stops the pool.
type running struct {
	mu        sync.Mutex
	addr      netip.Addr
	instances []*instance
}

type instance struct {
	name    string
	metrics string
	inst    *edgepool.Instance // nil while it does not run
	status  v1alpha1.EdgeInstance
}

// SetupWithManager registers the supervisor as the EdgePools' controller, and as a runnable
// that stops every instance when the manager stops.
func (s *Supervisor) SetupWithManager(mgr ctrl.Manager) error {
	if s.Instances == 0 {
		s.Instances = 1
	}
	if s.MetricsHost == "" {
		s.MetricsHost = "127.0.0.1"
	}
	s.pools, s.addrs = map[string]*running{}, map[string]netip.Addr{}
	s.reader = mgr.GetAPIReader()
	if err := mgr.Add(s); err != nil {
		return err
	}
	inSystem := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetNamespace() == v1alpha1.SystemNamespace })
	return ctrl.NewControllerManagedBy(mgr).Named("edgepool-"+s.Name).
		For(&v1alpha1.EdgePool{}, builder.WithPredicates(inSystem, predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Complete(s)
}

// Start stops the instances an earlier supervisor left of pools that are gone, then waits for
// the manager to stop. Then it stops every instance and takes them out of their pools'
// status, so that no stopped instance counts as serving; or, to Outlive, leaves them running.
func (s *Supervisor) Start(ctx context.Context) error {
	s.reapGone(ctx)
	<-ctx.Done()
	s.mu.Lock()
	s.closed = true
	pools := s.pools
	s.mu.Unlock()
	if s.Outlive {
		for _, r := range pools {
			r.mu.Lock()
			for _, in := range r.instances {
				if in.inst != nil {
					in.inst.Detach()
					in.inst = nil
				}
			}
			r.mu.Unlock()
		}
		return nil
	}
	wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for name, r := range pools {
		r.mu.Lock()
		s.stop(r)
		r.mu.Unlock()
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur := &v1alpha1.EdgePool{}
			if err := s.reader.Get(wctx, client.ObjectKey{Namespace: v1alpha1.SystemNamespace, Name: name}, cur); err != nil {
				return client.IgnoreNotFound(err)
			}
			patch := client.MergeFromWithOptions(cur.DeepCopy(), client.MergeFromWithOptimisticLock{})
			n := len(cur.Status.Instances)
			cur.Status.Instances = slices.DeleteFunc(cur.Status.Instances, func(in v1alpha1.EdgeInstance) bool { return in.Supervisor == s.Name })
			if len(cur.Status.Instances) == n {
				return nil
			}
			return s.Client.Status().Patch(wctx, cur, patch)
		})
		if err != nil {
			s.Log.Warn("cannot take this supervisor's instances out of the pool's status", "pool", name, "err", err)
		}
	}
	return nil
}

// Reconcile makes this host's instances of one pool serve its spec, and reports them.
func (s *Supervisor) Reconcile(ctx context.Context, req reconcile.Request) (ctrl.Result, error) {
	var p v1alpha1.EdgePool
	if err := s.Client.Get(ctx, req.NamespacedName, &p); err != nil {
		if apierrors.IsNotFound(err) {
			s.remove(req.Name) // deleted: its Gateway is gone
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err // fail static
	}
	r := s.pool(req.Name)
	if r == nil {
		return ctrl.Result{}, nil // stopping
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pool, addr, err := edge.FromSpec(p.Spec)
	if err == nil {
		err = s.claim(req.Name, addr)
	}
	if err != nil {
		s.report(r, p.Generation, v1alpha1.EdgeRefused, err.Error())
		return ctrl.Result{RequeueAfter: 10 * time.Second}, s.writeStatus(ctx, &p, r)
	}
	if r.addr.IsValid() && r.addr != addr {
		// A new address: the instances start again on it.
		s.stop(r)
	}
	r.addr = addr
	var failed error // a failed or refused instance tries again later: a port may come free
	for i, in := range r.instances {
		res, err := s.apply(ctx, req.Name, i, in, pool, addr)
		was := in.status
		switch {
		case errors.Is(err, edgepool.ErrRefused):
			in.status.Phase, in.status.Message = v1alpha1.EdgeRefused, err.Error()
			failed = err
		case err != nil:
			in.status.Phase, in.status.Message = v1alpha1.EdgeFailed, err.Error()
			failed = err
		default:
			in.status.Phase, in.status.Message = v1alpha1.EdgeServing, ""
			if res.Reloaded {
				in.status.Reloads++
			} else if res.Commands > 0 {
				in.status.RuntimeChanges++
			}
		}
		if err == nil && in.inst != nil {
			// Serving means running: one that crashes is restarted, and says so meanwhile.
			if st := in.inst.Process().Status(); !st.Running {
				in.status.Phase = v1alpha1.EdgeFailed
				in.status.Message = fmt.Sprintf("HAProxy is not running (restarted %d times; it last ended: %s)", st.Restarts, st.LastExit)
			}
		}
		in.status.ObservedGeneration = p.Generation
		if was.Phase != in.status.Phase || was.Message != in.status.Message || was.ObservedGeneration != p.Generation || res != (edgepool.Result{}) {
			in.status.LastChange = metav1.NewTime(time.Now().Truncate(time.Second)) // as the API stores it
		}
		if err != nil {
			// The peers after it would fail alike; they keep serving what they served.
			for _, peer := range r.instances[i+1:] {
				peer.status.ObservedGeneration, peer.status.Phase, peer.status.Message = p.Generation, in.status.Phase, "not updated: "+in.name+" was refused or failed first"
			}
			break
		}
	}
	now := time.Now().Truncate(time.Second) // as the API stores it
	for _, in := range r.instances {
		if now.Sub(in.status.Heartbeat.Time) >= v1alpha1.EdgeHeartbeatInterval*2/3 {
			in.status.Heartbeat = metav1.NewTime(now)
		}
	}
	if err := s.writeStatus(ctx, &p, r); err != nil {
		return ctrl.Result{}, err
	}
	if failed != nil {
		s.Log.Warn("edge pool instance failed or refused its configuration", "pool", req.Name, "err", failed)
		return ctrl.Result{RequeueAfter: 10 * time.Second}, nil
	}
	// Again in a while: the heartbeat, and an instance that stopped running.
	return ctrl.Result{RequeueAfter: v1alpha1.EdgeHeartbeatInterval}, nil
}

// claim takes addr for the pool name on this host, unless another pool here has it: two pools
// bound to one address would share their traffic.
func (s *Supervisor) claim(name string, addr netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for other, a := range s.addrs {
		if other != name && a == addr {
			return fmt.Errorf("address %s is bound here by pool %s; the hub gives each pool its own", addr, other)
		}
	}
	s.addrs[name] = addr
	return nil
}

// reapGone stops what an earlier supervisor left in Dir of pools the hub no longer has. Only
// an answer from the hub that lists the EdgePools counts; an error leaves everything be.
func (s *Supervisor) reapGone(ctx context.Context) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil || len(entries) == 0 {
		return
	}
	var pools v1alpha1.EdgePoolList
	for {
		if err = s.reader.List(ctx, &pools, client.InNamespace(v1alpha1.SystemNamespace)); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
	for _, e := range entries {
		if !e.IsDir() || slices.ContainsFunc(pools.Items, func(p v1alpha1.EdgePool) bool { return p.Name == e.Name() }) {
			continue
		}
		if err := edgepool.StopPool(filepath.Join(s.Dir, e.Name()), s.Log); err != nil {
			s.Log.Warn("stop the instances of a deleted edge pool", "pool", e.Name(), "err", err)
			continue
		}
		_ = os.RemoveAll(filepath.Join(s.Dir, e.Name()))
		s.Log.Info("stopped what an earlier run left of a deleted edge pool", "pool", e.Name())
	}
}

// pool is the running pool of an EdgePool, made with its instances when new; nil once the
// supervisor stops.
func (s *Supervisor) pool(name string) *running {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	r := s.pools[name]
	if r == nil {
		r = &running{}
		for i := range s.Instances {
			n := s.Name + "/" + strconv.Itoa(i)
			r.instances = append(r.instances, &instance{name: n, status: v1alpha1.EdgeInstance{Name: n, Supervisor: s.Name}})
		}
		s.pools[name] = r
	}
	return r
}

// apply starts the i-th instance on the pool, or updates it.
func (s *Supervisor) apply(ctx context.Context, poolName string, i int, in *instance, p edge.Pool, addr netip.Addr) (edgepool.Result, error) {
	if in.inst != nil {
		select {
		case <-in.inst.Process().Exited():
			// Its supervision ended (it was stopped): start it afresh.
			in.inst = nil
		default:
			return in.inst.Update(ctx, p)
		}
	}
	if in.metrics == "" {
		port, err := kubeproc.FreePort()
		if err != nil {
			return edgepool.Result{}, err
		}
		in.metrics = net.JoinHostPort(s.MetricsHost, strconv.Itoa(port))
		in.status.Metrics = "http://" + in.metrics + "/metrics"
	}
	inst, err := edgepool.Start(ctx, edgepool.Config{
		Name: poolName + "-" + s.Name + "-" + strconv.Itoa(i), Dir: filepath.Join(s.Dir, poolName, strconv.Itoa(i)), Binary: s.Binary,
		Detach: s.Outlive, Bind: addr.String(), Metrics: in.metrics, CheckInterval: s.CheckInterval,
	}, p, s.Log)
	if err != nil {
		return edgepool.Result{}, err
	}
	in.inst = inst
	return edgepool.Result{Reloaded: true}, nil
}

// report gives every instance of a pool the same verdict.
func (s *Supervisor) report(r *running, gen int64, phase v1alpha1.EdgeInstancePhase, msg string) {
	for _, in := range r.instances {
		if in.status.ObservedGeneration != gen || in.status.Phase != phase || in.status.Message != msg {
			in.status.LastChange = metav1.NewTime(time.Now().Truncate(time.Second))
		}
		in.status.ObservedGeneration, in.status.Phase, in.status.Message = gen, phase, msg
	}
}

// writeStatus writes this supervisor's entries of the pool's status, leaving the others'.
func (s *Supervisor) writeStatus(ctx context.Context, p *v1alpha1.EdgePool, r *running) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := &v1alpha1.EdgePool{}
		if err := s.Client.Get(ctx, client.ObjectKeyFromObject(p), cur); err != nil {
			return client.IgnoreNotFound(err)
		}
		want := slices.DeleteFunc(slices.Clone(cur.Status.Instances), func(in v1alpha1.EdgeInstance) bool { return in.Supervisor == s.Name })
		for _, in := range r.instances {
			want = append(want, in.status)
		}
		slices.SortFunc(want, func(a, b v1alpha1.EdgeInstance) int { return strings.Compare(a.Name, b.Name) })
		if equality.Semantic.DeepEqual(cur.Status.Instances, want) {
			return nil
		}
		// A patch of the instances alone: the spec may hold thousands of servers.
		patch := client.MergeFromWithOptions(cur.DeepCopy(), client.MergeFromWithOptimisticLock{})
		cur.Status.Instances = want
		return s.Client.Status().Patch(ctx, cur, patch)
	})
}

// remove stops a deleted pool's instances and removes their files.
func (s *Supervisor) remove(name string) {
	s.mu.Lock()
	r := s.pools[name]
	delete(s.pools, name)
	delete(s.addrs, name)
	s.mu.Unlock()
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s.stop(r)
	if err := os.RemoveAll(filepath.Join(s.Dir, name)); err != nil {
		s.Log.Warn("remove an edge pool's files", "pool", name, "err", err)
	}
	s.Log.Info("edge pool stopped: its Gateway was deleted", "pool", name)
}

func (s *Supervisor) stop(r *running) {
	for _, in := range r.instances {
		if in.inst != nil {
			in.inst.Stop(context.Background())
			in.inst = nil
		}
	}
}

var _ reconcile.Reconciler = (*Supervisor)(nil)
