// Package health judges a member cluster's health from what its agent sends the hub: the
// heartbeat (a message on its delivery stream, or the Lease "agent" in convoy-cluster-NAME for
// an agent without one; see Streamed) and the last inventory. It is pure: the
// Lease, the inventory, the grace period and the time go in, a verdict and when it changes by
// itself come out. The Cluster controller calls it and writes the Ready and Unreachable
// conditions.
package health

import (
	"fmt"
	"math"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// DefaultUnreachableAfter is how long the hub waits for a heartbeat before it calls a cluster
// Unreachable, unless told otherwise.
const DefaultUnreachableAfter = 6 * time.Second

// ReconnectGrace is how much longer the hub waits, after it starts, for the heartbeat of a
// cluster it last heard from before: an agent retries at least this often (its backoff cap).
const ReconnectGrace = 10 * time.Second

// ReasonHeartbeating is the reason of a False Unreachable condition: the agent heartbeats.
const ReasonHeartbeating = "Heartbeating"

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
// cluster was Unreachable already. heard says the verdict stored before (the Unreachable
// condition, False because the agent heartbeats) vouches for a heartbeat the Lease does not
// show: an agent on its delivery stream renews no Lease, and its stream's messages are known
// only to the hub that received them. It is pure.
func AfterRestart(lease *coordinationv1.Lease, heard, unreachable bool, since time.Time, grace time.Duration) (*coordinationv1.Lease, time.Duration) {
	if unreachable {
		return lease, grace
	}
	if lease == nil || lease.Spec.RenewTime == nil {
		if !heard {
			return lease, grace
		}
		out := &coordinationv1.Lease{}
		if lease != nil {
			out = lease.DeepCopy()
		}
		out.Spec.RenewTime = &metav1.MicroTime{Time: since}
		return out, grace + ReconnectGrace
	}
	if !lease.Spec.RenewTime.Time.Before(since) {
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
	v := Verdict{RecheckAfter: grace - age + 100*time.Millisecond, UnreachableReason: ReasonHeartbeating}
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

// Assess is the verdict on a cluster as the hub sees it: its agent's Lease (nil if none), its
// last inventory, whether the verdict before said it heartbeats (wasHeard) or that it was
// Unreachable already, when this hub began to receive
// heartbeats (since), the hub's grace (unreachableAfter; zero is the default) and the time.
// The grace is never shorter than the Lease's own duration: in a large fleet agents heartbeat
// less often (v1alpha1.FleetHeartbeatInterval) and say so there.
func Assess(lease *coordinationv1.Lease, inv *v1alpha1.Inventory, wasHeard, wasUnreachable bool, since time.Time, unreachableAfter time.Duration, now time.Time) Verdict {
	grace := unreachableAfter
	if grace == 0 {
		grace = DefaultUnreachableAfter
	}
	lease, grace = AfterRestart(lease, wasHeard, wasUnreachable, since, grace)
	if lease != nil && lease.Spec.LeaseDurationSeconds != nil {
		grace = max(grace, time.Duration(*lease.Spec.LeaseDurationSeconds)*time.Second)
	}
	return Judge(lease, inv, grace, now)
}

// Streamed combines an agent's stored Lease (nil if none) with the last message of its
// delivery stream (ok false when the hub has heard none since it started), sent every
// interval: the later of the two is the heartbeat, as a Lease that lasts three intervals, as an
// agent's own Lease does. It is pure.
func Streamed(lease *coordinationv1.Lease, last time.Time, interval time.Duration, ok bool) *coordinationv1.Lease {
	if !FromStream(lease, last, ok) {
		return lease
	}
	out := &coordinationv1.Lease{}
	if lease != nil {
		out = lease.DeepCopy()
	}
	renew := metav1.NewMicroTime(last)
	duration := int32(math.Ceil(3 * interval.Seconds()))
	out.Spec.RenewTime, out.Spec.LeaseDurationSeconds = &renew, &duration
	return out
}

// FromStream says whether Streamed takes the stream's last message as the heartbeat: the hub
// heard one (ok) later than the Lease was renewed, or there is no Lease. Only then may a
// watcher of the stream's lapses stand in for a look when the heartbeat would expire. It is
// pure.
func FromStream(lease *coordinationv1.Lease, last time.Time, ok bool) bool {
	return ok && (lease == nil || lease.Spec.RenewTime == nil || lease.Spec.RenewTime.Time.Before(last))
}
