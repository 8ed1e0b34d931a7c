// Package health holds the hub's cluster-health controller. It judges each Cluster by its
// agent's heartbeat (the Lease "agent" in convoy-cluster-NAME) and the agent's last
// inventory, and sets the Cluster's Ready and Unreachable conditions. It never touches the
// member. Only the hub's composition root imports it.
package health

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/clusterphase"
)

// DefaultUnreachableAfter is how long the hub waits for a heartbeat before it calls a cluster
// Unreachable, unless told otherwise.
const DefaultUnreachableAfter = 6 * time.Second

// ReconnectGrace is how much longer the hub waits, after it starts, for the heartbeat of a
// cluster it last heard from before: an agent retries at least this often (its backoff cap).
const ReconnectGrace = 10 * time.Second

// Reconciler sets the Ready and Unreachable conditions of Clusters.
type Reconciler struct {
	Client client.Client
	// UnreachableAfter is the grace period after the last heartbeat.
	UnreachableAfter time.Duration
	// Clock is the time source; tests may replace it.
	Clock clock.PassiveClock
	// Since is when this hub began to receive heartbeats. While it was down none could
	// arrive, so its start counts as a heartbeat of every cluster that was not already
	// Unreachable: a hub restart must not make the fleet look lost (and fail it all over).
	Since time.Time
}

// SetupWithManager registers the reconciler; every heartbeat wakes its Cluster.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Cluster{}).
		Named("cluster-health").
		Watches(&coordinationv1.Lease{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []ctrl.Request {
			if name := o.GetLabels()[v1alpha1.LabelCluster]; name != "" && o.GetName() == v1alpha1.AgentLease {
				return []ctrl.Request{{NamespacedName: client.ObjectKey{Name: name}}}
			}
			return nil
		})).
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Complete(r)
}

// Verdict is what the heartbeat and the inventory say about a cluster.
type Verdict struct {
	Ready             bool
	ReadyReason       string
	Message           string
	Unreachable       bool
	UnreachableReason string
	// RecheckAfter is when the verdict changes by itself if no heartbeat comes.
	RecheckAfter time.Duration
}

// AfterRestart adjusts a Lease and the grace for a hub that started at since: a heartbeat
// from before then is taken as one at since, with ReconnectGrace more to wait, unless the
// cluster was Unreachable already. It is pure.
func AfterRestart(lease *coordinationv1.Lease, unreachable bool, since time.Time, grace time.Duration) (*coordinationv1.Lease, time.Duration) {
	if lease == nil || lease.Spec.RenewTime == nil || unreachable || !lease.Spec.RenewTime.Time.Before(since) {
		return lease, grace
	}
	lease = lease.DeepCopy()
	lease.Spec.RenewTime = &metav1.MicroTime{Time: since}
	return lease, grace + ReconnectGrace
}

// Judge decides a cluster's health from its agent's Lease (nil if the agent never joined),
// its last inventory, the grace period and the time. It is pure.
func Judge(lease *coordinationv1.Lease, inv *v1alpha1.Inventory, grace time.Duration, now time.Time) Verdict {
	if lease == nil || lease.Spec.RenewTime == nil {
		return Verdict{ReadyReason: "AgentNotJoined", Message: "waiting for the cluster's agent to join (convoy cluster join)", UnreachableReason: "AgentNotJoined"}
	}
	age := now.Sub(lease.Spec.RenewTime.Time)
	if age > grace {
		// The message names the last heartbeat, not its age, so that it stays the same (and
		// costs no status write) while the cluster stays unreachable.
		msg := fmt.Sprintf("no heartbeat from the agent since %s (grace %s)", lease.Spec.RenewTime.UTC().Format(time.RFC3339Nano), grace)
		return Verdict{ReadyReason: "Unreachable", Message: msg, Unreachable: true, UnreachableReason: "HeartbeatExpired"}
	}
	v := Verdict{RecheckAfter: grace - age + 100*time.Millisecond, UnreachableReason: "Heartbeating"}
	switch {
	case inv == nil:
		v.ReadyReason, v.Message = "WaitingForInventory", "the agent heartbeats but has not reported its cluster yet"
	case !inv.APIHealthy:
		v.ReadyReason, v.Message = "APIUnhealthy", "the agent reports that its cluster's API server is not ready"
	default:
		v.Ready, v.ReadyReason = true, "AgentReady"
		v.Message = "the agent heartbeats and reports a healthy API server"
	}
	return v
}

// Reconcile sets one Cluster's Ready and Unreachable conditions from its agent.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	c := &v1alpha1.Cluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, c); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !c.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	var lease *coordinationv1.Lease
	l := &coordinationv1.Lease{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: v1alpha1.ClusterNamespace(c.Name), Name: v1alpha1.AgentLease}, l)
	switch {
	case err == nil:
		lease = l
	case !apierrors.IsNotFound(err):
		return ctrl.Result{}, err
	}
	grace := r.UnreachableAfter
	if grace == 0 {
		grace = DefaultUnreachableAfter
	}
	lease, grace = AfterRestart(lease, meta.IsStatusConditionTrue(c.Status.Conditions, v1alpha1.ClusterUnreachableCondition), r.Since, grace)
	// In a large fleet agents heartbeat less often (v1alpha1.FleetHeartbeatInterval), and
	// say so in their Lease's duration: the grace is never shorter than that.
	if lease != nil && lease.Spec.LeaseDurationSeconds != nil {
		grace = max(grace, time.Duration(*lease.Spec.LeaseDurationSeconds)*time.Second)
	}
	v := Judge(lease, c.Status.Inventory, grace, r.Clock.Now())

	before := c.DeepCopy()
	set := func(typ string, ok bool, reason, msg string) {
		status := metav1.ConditionFalse
		if ok {
			status = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: c.Generation})
	}
	set(v1alpha1.ClusterReadyCondition, v.Ready, v.ReadyReason, v.Message)
	unreachableMsg := "the agent heartbeats"
	if v.Unreachable {
		unreachableMsg = v.Message
	} else if lease == nil {
		unreachableMsg = "the agent has not joined yet"
	}
	set(v1alpha1.ClusterUnreachableCondition, v.Unreachable, v.UnreachableReason, unreachableMsg)
	c.Status.Phase = clusterphase.Of(c)
	if conditionsChanged(before, c) {
		if err := r.Client.Status().Patch(ctx, c, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
			if apierrors.IsConflict(err) {
				return ctrl.Result{Requeue: true}, nil // another controller wrote first; look again
			}
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}
	return ctrl.Result{RequeueAfter: v.RecheckAfter}, nil
}

// conditionsChanged reports whether the conditions this controller owns, or the phase,
// changed; the messages hold no times that move, so a steady cluster costs no status write per
// heartbeat.
func conditionsChanged(before, after *v1alpha1.Cluster) bool {
	if before.Status.Phase != after.Status.Phase {
		return true
	}
	for _, typ := range []string{v1alpha1.ClusterReadyCondition, v1alpha1.ClusterUnreachableCondition} {
		b, a := meta.FindStatusCondition(before.Status.Conditions, typ), meta.FindStatusCondition(after.Status.Conditions, typ)
		if b == nil || a == nil || b.Status != a.Status || b.Reason != a.Reason || b.ObservedGeneration != a.ObservedGeneration {
			return true
		}
		if b.Message != a.Message {
			return true
		}
	}
	return false
}
