// Package cluster holds the hub's Cluster reconciler. It drives each Cluster's provider toward
// the spec (create, scale, upgrade, delete), keeps the topology labels in step with the spec,
// publishes the member's kubeconfig as a Secret, judges the cluster's health from its agent's
// heartbeat and inventory (internal/health), and writes the status. Only the hub's composition
// root imports it.
//
// Each field of a Cluster's status has one writer. This reconciler writes the conditions
// (Accepted, Provisioned, Ready, Unreachable, ProfileConformant), the phase derived from them
// (internal/clusterphase), observedGeneration, endpoint and status.profile, in one patch at the
// end of each reconcile.
//
// A cluster that names a ClusterProfile is built from the revision its profile's update run
// holds it to (internal/controller/profile writes that target): its version and node pools
// come from the revision (internal/profile.Effective), and its conformance is judged from its
// agent's inventory (internal/profile.Diff). status.inventory, the only source of facts about the member (version, nodes,
// capacity), comes from the cluster's agent: on its delivery stream, from which this reconciler
// writes it in the same patch (the Streams field), or, when the agent has no stream whose hub
// stores it, written by the agent itself; never both at once.
package cluster

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/clusterphase"
	"github.com/convoy-dev/convoy/internal/health"
	"github.com/convoy-dev/convoy/internal/join"
	"github.com/convoy-dev/convoy/internal/provider"
)

const (
	// Finalizer keeps a Cluster until its provider has removed it.
	Finalizer = "convoy.dev/cluster"
)

// Reconciler reconciles Cluster objects.
type Reconciler struct {
	Client    client.Client
	Providers map[v1alpha1.ProviderName]provider.Provider
	// Recorder, when set, records an Event for each lifecycle step and health change.
	Recorder events.EventRecorder
	// Resync is how often a Ready cluster is observed again. Zero means 10s.
	Resync time.Duration
	// Changes, when set, names clusters whose provider saw something change (a process
	// crashed), so that they are reconciled at once.
	Changes <-chan event.TypedGenericEvent[*v1alpha1.Cluster]
	// Heard, when set, names clusters whose agent's delivery stream opened or sent an
	// inventory, or whose agent missed a heartbeat on it or was heard again after one: their
	// verdict or inventory may change, so they are reconciled at once, without asking the
	// provider (Changes does).
	Heard <-chan event.TypedGenericEvent[*v1alpha1.Cluster]
	// Reader, when set, reads from the API server itself what the cache may not hold yet: a
	// profile's revision stored a moment ago.
	Reader client.Reader
	// Shipped are the versions of the add-ons this hub ships, by add-on name: what a profile's
	// add-on without a version means.
	Shipped map[string]string
	// UnreachableAfter is the grace after an agent's last heartbeat; zero is the default.
	UnreachableAfter time.Duration
	// Clock is the time source of health verdicts; nil is the real clock.
	Clock clock.PassiveClock
	// Since is when this hub began to receive heartbeats: while it was down none could
	// arrive, so its start counts as a heartbeat of every cluster that was not Unreachable
	// already (health.AfterRestart).
	Since time.Time
	// Streams, when set, says when each cluster's agent last sent a message on its delivery
	// stream (internal/delivery); an agent that has one heartbeats there, not on its Lease.
	// It also has the inventory the agent sent there, while the stream is open: the reconciler
	// writes that into the status with its verdict (one write instead of the agent's and the
	// hub's); an agent that does not send it there writes it itself.
	Streams interface {
		LastSeen(cluster string) (last time.Time, interval time.Duration, ok bool)
		// Watched says that the cluster is woken (Heard) as soon as its agent misses a
		// heartbeat on its stream, so that its verdict needs no look before then.
		Watched(cluster string) bool
		Inventory(cluster string) (v1alpha1.Inventory, bool)
	}

	mu     sync.Mutex
	passes map[string]pass // by cluster: the last provider step (see providerDue)
	// lastConverging is, by cluster, the target (version and node pools) of the scale or
	// upgrade the last Converging Event was for.
	lastConverging map[string]string
}

// SetupWithManager registers the reconciler with mgr. Its own status writes do not wake it
// (but for its writes of an inventory from the stream, once each, to no effect): only changes
// to the spec and metadata, the agent's inventory, a heartbeat that changes the verdict, a
// bootstrap token, or the provider.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Cluster{}, builder.WithPredicates(notOwnStatus)).
		Named("cluster").
		Watches(&coordinationv1.Lease{}, r.heartbeats()).
		// Creating, draining and stopping clusters take seconds; one slow cluster must not
		// hold up the others. And a thousand agents that join at once need a status write
		// each: with 4 workers those writes queued (the registration's p99 at 1,000 clusters
		// went from 12.6 to 10.7 s with 16, docs/SCALE.md).
		WithOptions(controller.Options{MaxConcurrentReconciles: 16})
	if r.Changes != nil {
		// What the provider saw change (a crashed process) is its to look at again, at once.
		changes := make(chan event.TypedGenericEvent[*v1alpha1.Cluster])
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			for {
				select {
				case e := <-r.Changes:
					r.forceProvider(e.Object.GetName())
					select {
					case changes <- e:
					case <-ctx.Done():
						return nil
					}
				case <-ctx.Done():
					return nil
				}
			}
		})); err != nil {
			return err
		}
		b = b.WatchesRawSource(source.Channel(changes, &handler.TypedEnqueueRequestForObject[*v1alpha1.Cluster]{}))
	}
	if r.Heard != nil {
		b = b.WatchesRawSource(source.Channel(r.Heard, &handler.TypedEnqueueRequestForObject[*v1alpha1.Cluster]{}))
	}
	// A profile's new revision, or its run's new target for a cluster, is the cluster's to
	// build.
	b = b.Watches(&v1alpha1.ClusterProfile{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []ctrl.Request {
		var list v1alpha1.ClusterList
		if err := r.Client.List(ctx, &list); err != nil {
			return nil
		}
		var out []ctrl.Request
		for _, c := range list.Items {
			if c.Spec.Profile != nil && c.Spec.Profile.Name == o.GetName() {
				r.forceProvider(c.Name)
				out = append(out, ctrl.Request{NamespacedName: client.ObjectKey{Name: c.Name}})
			}
		}
		return out
	}), builder.WithPredicates(predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*v1alpha1.ClusterProfile)
		n, ok2 := e.ObjectNew.(*v1alpha1.ClusterProfile)
		return !ok1 || !ok2 || o.Status.Revision != n.Status.Revision || !equality.Semantic.DeepEqual(o.Status.Targets, n.Status.Targets)
	}}))
	// A new bootstrap token (convoy cluster join) is handed to an agent the provider runs.
	b = b.Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []ctrl.Request {
		if o.GetNamespace() == metav1.NamespaceSystem && o.GetLabels()[v1alpha1.LabelCluster] != "" {
			name := o.GetLabels()[v1alpha1.LabelCluster]
			r.forceProvider(name)
			return []ctrl.Request{{NamespacedName: client.ObjectKey{Name: name}}}
		}
		return nil
	}))
	return b.Complete(r)
}

// heartbeats wakes a Cluster for its agent's Lease when that can change the verdict: a new
// Lease, a new duration (it sets the grace), or any renewal while the cluster is not known to
// heartbeat (Unreachable, or never joined). A renewal of a cluster that heartbeats changes
// nothing until the instant the Lease would expire, and the reconciler asks to look again then
// by itself; so a steady fleet's heartbeats cost the hub no reconciles.
func (r *Reconciler) heartbeats() handler.EventHandler {
	enqueue := func(o client.Object, q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
		if name := o.GetLabels()[v1alpha1.LabelCluster]; name != "" && o.GetName() == v1alpha1.AgentLease {
			q.Add(ctrl.Request{NamespacedName: client.ObjectKey{Name: name}})
		}
	}
	return handler.Funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
			enqueue(e.Object, q)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
			o, ok1 := e.ObjectOld.(*coordinationv1.Lease)
			n, ok2 := e.ObjectNew.(*coordinationv1.Lease)
			if ok1 && ok2 && equality.Semantic.DeepEqual(o.Spec.LeaseDurationSeconds, n.Spec.LeaseDurationSeconds) {
				c := &v1alpha1.Cluster{}
				if err := r.Client.Get(ctx, client.ObjectKey{Name: n.Labels[v1alpha1.LabelCluster]}, c); err == nil && heartbeating(c) {
					return
				}
			}
			enqueue(e.ObjectNew, q)
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
			enqueue(e.Object, q)
		},
	}
}

// heartbeating says whether the Cluster's status says its agent heartbeats.
func heartbeating(c *v1alpha1.Cluster) bool {
	u := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ClusterUnreachableCondition)
	return u != nil && u.Status == metav1.ConditionFalse && u.Reason == health.ReasonHeartbeating
}

// notOwnStatus passes every event but an update that changes only what this reconciler
// writes itself: the conditions, the phase, observedGeneration and the endpoint. One of its own
// writes passes: a cluster turning Unreachable (or back), so that a heartbeat that arrived while
// the heartbeat handler still read the old verdict from its cache is not lost.
var notOwnStatus = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*v1alpha1.Cluster)
	n, ok2 := e.ObjectNew.(*v1alpha1.Cluster)
	if !ok1 || !ok2 {
		return true
	}
	unreachable := func(c *v1alpha1.Cluster) bool {
		return meta.IsStatusConditionTrue(c.Status.Conditions, v1alpha1.ClusterUnreachableCondition)
	}
	return o.Generation != n.Generation || !equality.Semantic.DeepEqual(o.Status.Inventory, n.Status.Inventory) ||
		unreachable(o) != unreachable(n) ||
		!maps.Equal(o.Labels, n.Labels) || !maps.Equal(o.Annotations, n.Annotations) ||
		!slices.Equal(o.Finalizers, n.Finalizers) || !o.DeletionTimestamp.Equal(n.DeletionTimestamp)
}}

// Reconcile brings one Cluster toward its spec and writes its status. It is idempotent and
// safe to rerun after a crash at any point: each step asks the provider, which observes before
// it acts.
//
// The provider is asked only when that is due (see providerDue): most reconciles of a steady
// cluster come from its heartbeats and its agent's reports, and judging those must not wait for
// a slow or unreachable member, nor back off with it. A provider that fails is recorded in the
// Provisioned condition and asked again with a backoff of its own, which never postpones the
// next health verdict.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	c := &v1alpha1.Cluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, c); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	p := r.Providers[c.Spec.Provider]

	if !c.DeletionTimestamp.IsZero() {
		err := r.delete(ctx, c, p)
		if err == nil {
			r.forget(c.Name)
		}
		return ctrl.Result{}, err
	}
	if err := r.ensureMetadata(ctx, c); err != nil {
		return ctrl.Result{}, err
	}
	// A cluster built from a profile gets its version and node pools from the revision it is
	// held to, in memory, before anything reads the spec.
	h, perr := r.holdToProfile(ctx, c)

	before := c.DeepCopy()
	// The verdict on the agent's heartbeat and report comes first: it depends on nothing the
	// provider says. A change of verdict is written at once, before the provider's step, which
	// may take seconds on a member in trouble.
	recheck, err := r.judge(ctx, c, before)
	if err != nil {
		return ctrl.Result{}, err
	}
	due, next := r.providerDue(c)
	// An agent-only cluster's provider step reads only what its agent reported (the
	// inventory just judged): it cannot be slow, so its outcome goes in the same write.
	if due && verdictChanged(before, c) && !c.AgentOnly() {
		if err := r.patchStatus(ctx, c, before); err != nil {
			r.forceProvider(c.Name) // still due at the retry
			return ctrl.Result{}, err
		}
		before = c.DeepCopy()
	}
	var lerr error
	switch {
	case perr != nil:
		// Nothing is built or changed without the revision the cluster is held to.
		r.profileProblem(c, perr)
		next = r.resync()
	case due:
		next, lerr = r.lifecycle(ctx, c, p, before)
	}
	r.judgeProfile(c, h)
	if err := r.patchStatus(ctx, c, before); err != nil {
		if due {
			r.forceProvider(c.Name) // its outcome is not written: ask again at the retry
		}
		return ctrl.Result{}, err
	}
	if due {
		// Recorded once its outcome is written, so that a failed write asks the provider again.
		if failures := r.observed(c, lerr == nil); lerr != nil {
			next = backoff(failures)
			log.FromContext(ctx).Error(lerr, "provider step failed; retrying", "cluster", c.Name, "in", next)
			if failures == 1 {
				r.event(c, corev1.EventTypeWarning, "ProviderStepFailed", "Provision", "%v; retrying with backoff", lerr)
			}
		}
	}
	if recheck > 0 && recheck < next {
		next = recheck
	}
	return ctrl.Result{RequeueAfter: next}, nil
}

// verdictChanged says whether the Ready or Unreachable condition changed.
func verdictChanged(before, after *v1alpha1.Cluster) bool {
	for _, typ := range []string{v1alpha1.ClusterReadyCondition, v1alpha1.ClusterUnreachableCondition} {
		b, a := meta.FindStatusCondition(before.Status.Conditions, typ), meta.FindStatusCondition(after.Status.Conditions, typ)
		if (b == nil) != (a == nil) || (a != nil && (a.Status != b.Status || a.Reason != b.Reason)) {
			return true
		}
	}
	return false
}

// lifecycle asks the provider to validate, create, observe and converge the cluster, publishes
// its kubeconfig, and sets the Accepted and Provisioned conditions. It returns when to look
// again, and the provider's failure if there is one (already in the conditions).
func (r *Reconciler) lifecycle(ctx context.Context, c *v1alpha1.Cluster, p provider.Provider, before *v1alpha1.Cluster) (time.Duration, error) {
	if p == nil {
		r.setCondition(c, v1alpha1.ClusterAccepted, false, "ProviderNotAvailable",
			fmt.Sprintf("this hub has no %q provider", c.Spec.Provider))
		return r.resync(), nil
	}
	if verr := p.Validate(ctx, c); verr != nil {
		r.setCondition(c, v1alpha1.ClusterAccepted, false, "InvalidSpec", verr.Error())
		return r.resync(), nil
	}
	r.setCondition(c, v1alpha1.ClusterAccepted, true, "ProviderAccepted", fmt.Sprintf("the %s provider manages this cluster", p.Name()))

	if host, ok := p.(provider.AgentHost); ok {
		if err := r.deliverBootstrapToken(ctx, c, host); err != nil {
			return 0, err
		}
	}
	if cerr := p.Create(ctx, c); cerr != nil {
		r.setCondition(c, v1alpha1.ClusterProvisioned, false, "Failed", "create: "+cerr.Error())
		return 0, cerr
	}

	st, oerr := p.Status(ctx, c)
	if oerr != nil {
		log.FromContext(ctx).V(1).Info("cannot observe cluster yet", "err", oerr)
	}
	acting := ""
	if st.APIReady && !p.ReadOnly() {
		var err error
		acting, err = r.converge(ctx, c, p, st)
		if err != nil {
			r.setCondition(c, v1alpha1.ClusterProvisioned, false, "ConvergeFailed", err.Error())
			return 0, err
		}
		if acting != "" {
			if st2, err := p.Status(ctx, c); err == nil {
				st = st2
			}
		}
	}
	if err := r.publishKubeconfig(ctx, c, p); err != nil {
		log.FromContext(ctx).V(1).Info("cannot publish kubeconfig yet", "err", err)
	}
	if !r.report(c, p, st, acting, before) && !c.AgentOnly() {
		// Provisioning moves in steps of a second or less; look again soon. (A cluster known
		// only through its agent changes by its agent's reports, which come as events.)
		return 100 * time.Millisecond, nil
	}
	if c.AgentOnly() {
		return agentOnlyResync, nil
	}
	return r.resync(), nil
}

// agentOnlyResync is how often a cluster known only through its agent is looked at when
// nothing wakes it. Everything its provider step reads comes from its agent, whose reports,
// heartbeats and missed heartbeats wake the reconciler; this look is only a safety net.
const agentOnlyResync = 5 * time.Minute

// pass is what the reconciler remembers of its last provider step for one cluster. It only
// schedules the provider's work; no decision depends on it, and a restarted hub starts with
// every cluster due.
type pass struct {
	at         time.Time
	generation int64
	failures   int
	force      bool
}

// providerDue says whether to ask the provider now, and if not, how long until it is due: when
// it has not been asked since the hub started, the spec changed since, the provider reported a
// change (a crashed process) or a new bootstrap token came, the cluster is not provisioned (it
// moves in steps of a second or less), it failed last time and its backoff has passed, or the
// resync period has. A cluster known only through its agent is due at every look.
func (r *Reconciler) providerDue(c *v1alpha1.Cluster) (bool, time.Duration) {
	if c.AgentOnly() {
		// Its provider step reads only the inventory just judged: it costs nothing, and it
		// is due whenever the cluster is looked at.
		return true, 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	last, ok := r.passes[c.Name]
	if last.force {
		// Taken now: a request to force that comes during this pass forces the next one.
		last.force = false
		r.passes[c.Name] = last
		return true, 0
	}
	if !ok || last.generation != c.Generation {
		return true, 0
	}
	interval := r.resync()
	switch {
	case last.failures > 0:
		interval = backoff(last.failures)
	case !meta.IsStatusConditionTrue(c.Status.Conditions, v1alpha1.ClusterProvisioned):
		interval = 0
	}
	wait := interval - r.now().Sub(last.at)
	return wait <= 0, max(wait, 0)
}

// observed records a provider step and returns how many have failed in a row.
func (r *Reconciler) observed(c *v1alpha1.Cluster, ok bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.passes == nil {
		r.passes = map[string]pass{}
	}
	prev := r.passes[c.Name]
	p := pass{at: r.now(), generation: c.Generation, force: prev.force}
	if !ok {
		p.failures = prev.failures + 1
	}
	r.passes[c.Name] = p
	return p.failures
}

// forceProvider makes the next reconcile of a cluster ask its provider.
func (r *Reconciler) forceProvider(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.passes[name]; ok {
		p.force = true
		r.passes[name] = p
	}
}

func (r *Reconciler) forget(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.passes, name)
	delete(r.lastConverging, name)
}

// converging says whether a scale or upgrade (by its target) is new for a cluster, and
// remembers it. The target, not the description, is the key: a description names the node
// count it began from, which moves as nodes register, and a pass that reads the cluster from a
// cache not yet holding the last status write sees the same scale begin again.
func (r *Reconciler) converging(name, target string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastConverging == nil {
		r.lastConverging = map[string]string{}
	}
	if r.lastConverging[name] == target {
		return false
	}
	r.lastConverging[name] = target
	return true
}

// converged forgets the target of a cluster's last convergence, once it is reached.
func (r *Reconciler) converged(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.lastConverging, name)
}

// backoff is the wait after the n-th provider failure in a row: 0.5 s doubling to a minute.
func backoff(n int) time.Duration {
	d := 500 * time.Millisecond
	for i := 1; i < n && d < time.Minute; i++ {
		d *= 2
	}
	return min(d, time.Minute)
}

// judge takes the inventory the agent sent on its delivery stream, if it has one, then sets
// the Ready and Unreachable conditions from the agent's heartbeat (the stream's last message,
// or its Lease) and inventory, records
// an Event when the cluster becomes Unreachable or Reachable again, and says when the verdict
// changes by itself (the instant the Lease would expire).
func (r *Reconciler) judge(ctx context.Context, c, before *v1alpha1.Cluster) (time.Duration, error) {
	r.streamedInventory(c)
	var lease *coordinationv1.Lease
	l := &coordinationv1.Lease{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: v1alpha1.ClusterNamespace(c.Name), Name: v1alpha1.AgentLease}, l)
	switch {
	case err == nil:
		lease = l
	case !apierrors.IsNotFound(err):
		return 0, fmt.Errorf("read the agent's lease: %w", err)
	}
	watched := false
	if r.Streams != nil {
		// Watched is read first: a lapse after it wakes this cluster again.
		watched = r.Streams.Watched(c.Name)
		last, interval, ok := r.Streams.LastSeen(c.Name)
		watched = watched && health.FromStream(lease, last, ok)
		lease = health.Streamed(lease, last, interval, ok)
	}
	wasUnreachable := meta.IsStatusConditionTrue(before.Status.Conditions, v1alpha1.ClusterUnreachableCondition)
	v := health.Assess(lease, c.Status.Inventory, heartbeating(before), wasUnreachable, r.Since, r.UnreachableAfter, r.now())
	if watched && !v.Unreachable {
		// The delivery server wakes the cluster when its agent misses a heartbeat: a thousand
		// heartbeating clusters cost no look each every few seconds.
		v.RecheckAfter = 0
	}
	r.setCondition(c, v1alpha1.ClusterReadyCondition, v.Ready, v.ReadyReason, v.Message)
	msg := "the agent heartbeats"
	switch {
	case v.Unreachable:
		msg = v.Message
	case v.UnreachableReason != health.ReasonHeartbeating:
		msg = "the agent has not joined yet"
	}
	r.setCondition(c, v1alpha1.ClusterUnreachableCondition, v.Unreachable, v.UnreachableReason, msg)
	switch {
	case v.Unreachable && !wasUnreachable:
		r.event(c, corev1.EventTypeWarning, "Unreachable", "Heartbeat", "%s", v.Message)
	case !v.Unreachable && wasUnreachable:
		r.event(c, corev1.EventTypeNormal, "Reachable", "Heartbeat", "the agent heartbeats again")
	}
	return v.RecheckAfter, nil
}

// streamedInventory puts into c's status the inventory its agent sent on its delivery stream,
// when it differs from the stored one or was taken later (a refresh), unless the stored one
// was taken later still.
func (r *Reconciler) streamedInventory(c *v1alpha1.Cluster) {
	if r.Streams == nil {
		return
	}
	inv, ok := r.Streams.Inventory(c.Name)
	if !ok {
		return
	}
	if stored := c.Status.Inventory; stored != nil {
		if inv.ReportedAt.Before(&stored.ReportedAt) {
			return // the agent wrote a later one itself
		}
		if !inv.ReportedAt.After(stored.ReportedAt.Time) && equality.Semantic.DeepEqual(inv, *stored) {
			return // the same, taken at the same time
		}
	}
	c.Status.Inventory = &inv
}

func (r *Reconciler) now() time.Time {
	if r.Clock == nil {
		return time.Now()
	}
	return r.Clock.Now()
}

// patchStatus writes what this reconciler owns of the status, with the phase derived from the
// conditions, when it changed, and the inventory that came on the agent's stream. It patches
// only the fields it changed, and it is their only writer (the inventory's while the stream is
// open: the agent writes it only without one), so it needs no lock.
func (r *Reconciler) patchStatus(ctx context.Context, c, before *v1alpha1.Cluster) error {
	c.Status.ObservedGeneration = c.Generation
	c.Status.Phase = clusterphase.Of(c)
	if equality.Semantic.DeepEqual(before.Status, c.Status) {
		return nil
	}
	// The answer to the patch is the stored object: a cluster built from a profile keeps the
	// spec its revision gave it in memory (holdToProfile) for the rest of the reconcile.
	spec := c.Spec.DeepCopy()
	err := r.Client.Status().Patch(ctx, c, client.MergeFrom(before))
	c.Spec = *spec
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("patch cluster status: %w", err)
	}
	return nil
}

// deliverBootstrapToken hands the cluster's newest valid bootstrap token to the agent the
// provider runs itself. A cluster whose agent never joined gets one made for it; a revoked
// one only gets what `convoy cluster join` issues.
func (r *Reconciler) deliverBootstrapToken(ctx context.Context, c *v1alpha1.Cluster, host provider.AgentHost) error {
	tokens, err := join.Valid(ctx, r.Client, c.Name)
	if err != nil {
		return fmt.Errorf("list bootstrap tokens: %w", err)
	}
	if len(tokens) == 0 {
		if host.AgentJoined(c) {
			return nil
		}
		t, err := join.Issue(ctx, r.Client, c.Name, join.DefaultTTL)
		if err != nil {
			return err
		}
		tokens = append(tokens, t)
	}
	return host.DeliverBootstrapToken(c, tokens[0].Value)
}

func (r *Reconciler) resync() time.Duration {
	if r.Resync == 0 {
		return 10 * time.Second
	}
	return r.Resync
}

// converge upgrades or scales the cluster when it differs from the spec, and says what it did.
func (r *Reconciler) converge(ctx context.Context, c *v1alpha1.Cluster, p provider.Provider, st provider.Status) (string, error) {
	if want := c.Spec.KubernetesVersion; want != "" && st.Version != "" && st.Version != want {
		if err := p.Upgrade(ctx, c); err != nil {
			return "", fmt.Errorf("upgrade to %s: %w", want, err)
		}
		return fmt.Sprintf("upgrading the control plane from %s to %s", st.Version, want), nil
	}
	if st.Upgrading != "" && st.Blocked == "" {
		// The control plane is on the version; its nodes follow, one at a time.
		if err := p.Upgrade(ctx, c); err != nil {
			return "", fmt.Errorf("upgrade to %s: %w", c.Spec.KubernetesVersion, err)
		}
		return st.Upgrading, nil
	}
	if !poolsMatch(c, st) {
		from := st.Nodes.Total
		if err := p.ScalePools(ctx, c); err != nil {
			return "", fmt.Errorf("scale node pools: %w", err)
		}
		return fmt.Sprintf("scaling the node pools from %d to %d nodes", from, wantedNodes(c, st)), nil
	}
	return "", nil
}

// poolsMatch says whether the provider's nodes are the spec's: each pool at its count, or, for
// one that autoscales, inside its bounds (the provider chooses where), and no other pool.
func poolsMatch(c *v1alpha1.Cluster, st provider.Status) bool {
	want := map[string]int32{}
	for _, p := range c.Spec.NodePools {
		count := p.Count
		if a := p.Autoscale; a != nil {
			if have := st.Pools[p.Name]; have < a.Min || have > a.Max {
				return false
			}
			count = st.Pools[p.Name]
		}
		if count > 0 {
			want[p.Name] = count
		}
	}
	return maps.Equal(want, st.Pools)
}

// convergeTarget names what a cluster converges to: its version and node pools.
func convergeTarget(c *v1alpha1.Cluster) string {
	pools := make([]string, 0, len(c.Spec.NodePools))
	for _, p := range c.Spec.NodePools {
		pools = append(pools, fmt.Sprintf("%s:%s=%d", p.Name, p.Kind, p.Count))
	}
	return c.Spec.KubernetesVersion + " " + strings.Join(pools, ",")
}

// desiredNodes is how many nodes the spec's pools start with: an autoscaled pool counts its
// count held inside its bounds, whatever its provider has chosen since (wantedNodes).
func desiredNodes(c *v1alpha1.Cluster) int32 {
	var n int32
	for _, p := range c.Spec.NodePools {
		n += p.Count
		if a := p.Autoscale; a != nil {
			n += min(max(p.Count, a.Min), a.Max) - p.Count
		}
	}
	return n
}

// wantedNodes is how many nodes the cluster should have now: each pool's count, or for a pool
// that autoscales, the count its provider chose (the nodes it has), held inside its bounds.
func wantedNodes(c *v1alpha1.Cluster, st provider.Status) int32 {
	var n int32
	for _, p := range c.Spec.NodePools {
		if a := p.Autoscale; a != nil {
			n += min(max(st.Pools[p.Name], a.Min), a.Max)
			continue
		}
		n += p.Count
	}
	return n
}

// report turns the provider's observation into the endpoint and the Provisioned condition,
// records an Event when that condition moves to another reason (a scale that runs for several
// passes is one Event, named for where it began), and says whether the cluster
// is provisioned. What the member runs (version, nodes, capacity) is its agent's to report.
func (r *Reconciler) report(c *v1alpha1.Cluster, p provider.Provider, st provider.Status, acting string, before *v1alpha1.Cluster) bool {
	if st.Endpoint != "" {
		c.Status.Endpoint = st.Endpoint
	}
	defer func() {
		was := meta.FindStatusCondition(before.Status.Conditions, v1alpha1.ClusterProvisioned)
		now := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ClusterProvisioned)
		if now == nil || (was != nil && was.Status == now.Status && was.Reason == now.Reason) {
			return
		}
		switch {
		case now.Status == metav1.ConditionTrue:
			r.event(c, corev1.EventTypeNormal, "Provisioned", "Provision", "%s", now.Message)
			r.converged(c.Name) // a later convergence to the same target is news again
		case now.Reason == "Converging":
			// A scale or upgrade may pass through other reasons while it runs (the API server
			// restarting, nodes not Ready yet) and come back: it is one Event all the same.
			if r.converging(c.Name, convergeTarget(c)) {
				r.event(c, corev1.EventTypeNormal, "Converging", "Converge", "%s", now.Message)
			}
		case now.Reason == "Failed" || now.Reason == "ControlPlaneStopped" || now.Reason == v1alpha1.ReasonUpgradeBlocked:
			r.event(c, corev1.EventTypeWarning, now.Reason, "Provision", "%s", now.Message)
		}
	}()

	want := wantedNodes(c, st)
	done := false
	switch {
	case st.Failure != "":
		r.setCondition(c, v1alpha1.ClusterProvisioned, false, "Failed", st.Failure)
	case st.Blocked != "":
		// Not forced: the update run pauses with what blocks it named.
		r.setCondition(c, v1alpha1.ClusterProvisioned, false, v1alpha1.ReasonUpgradeBlocked, st.Blocked)
	case !st.Exists:
		msg := "the provider is creating the cluster"
		if st.Progress != "" {
			msg = st.Progress
		}
		r.setCondition(c, v1alpha1.ClusterProvisioned, false, "Provisioning", msg)
	case !st.Running:
		r.setCondition(c, v1alpha1.ClusterProvisioned, false, "ControlPlaneStopped", "the control plane is not running: "+st.Progress)
	case !st.APIReady:
		msg := "the API server is not ready"
		if st.Progress != "" {
			msg += ": " + st.Progress
		}
		r.setCondition(c, v1alpha1.ClusterProvisioned, false, "APIServerNotReady", msg)
	case acting != "":
		r.setCondition(c, v1alpha1.ClusterProvisioned, false, "Converging", acting)
	case !p.ReadOnly() && (st.Nodes.Ready < want || st.Nodes.Total != want):
		r.setCondition(c, v1alpha1.ClusterProvisioned, false, "NodesNotReady", fmt.Sprintf("%d of %d nodes are Ready", st.Nodes.Ready, want))
	default:
		done = true
		msg := "the cluster's API server answers"
		if !p.ReadOnly() {
			msg = fmt.Sprintf("the API server is ready and %d of %d nodes are Ready", st.Nodes.Ready, st.Nodes.Total)
		}
		r.setCondition(c, v1alpha1.ClusterProvisioned, true, "Provisioned", msg)
	}
	return done
}

// delete removes the cluster through its provider, then lets the object go.
func (r *Reconciler) delete(ctx context.Context, c *v1alpha1.Cluster, p provider.Provider) error {
	if !controllerutil.ContainsFinalizer(c, Finalizer) {
		return nil
	}
	if c.Status.Phase != v1alpha1.ClusterDeleting {
		before := c.DeepCopy()
		r.setCondition(c, v1alpha1.ClusterProvisioned, false, "Deleting", "the provider is removing the cluster")
		if err := r.patchStatus(ctx, c, before); err != nil {
			return err
		}
	}
	// The cluster leaves the fleet: its Works let go of the member's resources (they are left
	// in place), so that the cluster's hub namespace can go.
	if err := r.releaseWorks(ctx, c.Name); err != nil {
		return err
	}
	if p != nil {
		if err := p.Delete(ctx, c.Name); err != nil {
			r.event(c, corev1.EventTypeWarning, "DeleteFailed", "Delete", "%v", err)
			return fmt.Errorf("delete cluster %s: %w", c.Name, err)
		}
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.SystemNamespace, Name: v1alpha1.KubeconfigSecretName(c.Name)}}
	if err := r.Client.Delete(ctx, secret); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete kubeconfig secret: %w", err)
	}
	before := c.DeepCopy()
	controllerutil.RemoveFinalizer(c, Finalizer)
	if err := r.Client.Patch(ctx, c, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("remove finalizer: %w", err)
	}
	return nil
}

// releaseWorks removes the agent's finalizer from the cluster's Works.
func (r *Reconciler) releaseWorks(ctx context.Context, cluster string) error {
	var works v1alpha1.WorkList
	if err := r.Client.List(ctx, &works, client.InNamespace(v1alpha1.ClusterNamespace(cluster))); err != nil {
		return fmt.Errorf("list works: %w", err)
	}
	for i := range works.Items {
		w := &works.Items[i]
		if !controllerutil.ContainsFinalizer(w, v1alpha1.AgentFinalizer) {
			continue
		}
		before := w.DeepCopy()
		controllerutil.RemoveFinalizer(w, v1alpha1.AgentFinalizer)
		if err := r.Client.Patch(ctx, w, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("release work %s: %w", w.Name, err)
		}
	}
	return nil
}

// ensureMetadata adds the finalizer and mirrors the topology into labels.
func (r *Reconciler) ensureMetadata(ctx context.Context, c *v1alpha1.Cluster) error {
	labels, changed := TopologyLabels(c.Labels, c.Spec)
	if !changed && controllerutil.ContainsFinalizer(c, Finalizer) {
		return nil
	}
	before := c.DeepCopy()
	c.Labels = labels
	controllerutil.AddFinalizer(c, Finalizer)
	if err := r.Client.Patch(ctx, c, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("patch cluster metadata: %w", err)
	}
	return nil
}

// publishKubeconfig keeps the member's admin kubeconfig in a Secret in convoy-system, owned by
// the Cluster, so that `convoy cluster kubeconfig` can hand it out.
func (r *Reconciler) publishKubeconfig(ctx context.Context, c *v1alpha1.Cluster, p provider.Provider) error {
	raw, err := p.Kubeconfig(ctx, c)
	if err != nil {
		return err
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.SystemNamespace, Name: v1alpha1.KubeconfigSecretName(c.Name)}}
	_, err = controllerutil.CreateOrPatch(ctx, r.Client, secret, func() error {
		secret.Labels = map[string]string{"convoy.dev/cluster": c.Name}
		secret.Type = corev1.SecretTypeOpaque
		secret.Data = map[string][]byte{v1alpha1.KubeconfigSecretKey: raw}
		return controllerutil.SetOwnerReference(c, secret, r.Client.Scheme())
	})
	return err
}

func (r *Reconciler) setCondition(c *v1alpha1.Cluster, typ string, ok bool, reason, msg string) {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: c.Generation,
	})
}

func (r *Reconciler) event(c *v1alpha1.Cluster, typ, reason, action, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(c, nil, typ, reason, action, note, args...)
	}
}

// TopologyLabels returns labels with the convoy.dev provider, region and environment labels
// set from spec (and removed where spec leaves them empty), and whether that changed anything.
func TopologyLabels(labels map[string]string, spec v1alpha1.ClusterSpec) (map[string]string, bool) {
	out := maps.Clone(labels)
	if out == nil {
		out = map[string]string{}
	}
	set := func(key, value string) {
		if value == "" {
			delete(out, key)
		} else {
			out[key] = value
		}
	}
	set(v1alpha1.LabelProvider, string(spec.Provider))
	set(v1alpha1.LabelRegion, spec.Region)
	set(v1alpha1.LabelEnvironment, spec.Environment)
	return out, !maps.Equal(labels, out)
}
