// Package clusterphase derives a Cluster's phase from its conditions, as one pure function.
// The Cluster controller, the only writer of the conditions and the phase, calls it whenever it
// writes the status.
package clusterphase

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// Of is the phase of c:
//
//   - Deleting while it is being deleted;
//   - Pending while no provider takes it, Failed when its spec is invalid or its provider
//     reports a failure;
//   - Unreachable when its agent has stopped heartbeating;
//   - Ready when its agent heartbeats and reports a healthy API server;
//   - otherwise Updating if it was Ready before, else Provisioning while the provider works,
//     and Joining once the provider is done but the agent has not reported yet.
func Of(c *v1alpha1.Cluster) v1alpha1.ClusterPhase {
	conds := c.Status.Conditions
	cond := func(t string) *metav1.Condition { return meta.FindStatusCondition(conds, t) }
	if !c.DeletionTimestamp.IsZero() {
		return v1alpha1.ClusterDeleting
	}
	if a := cond(v1alpha1.ClusterAccepted); a != nil && a.Status == metav1.ConditionFalse {
		if a.Reason == "InvalidSpec" {
			return v1alpha1.ClusterFailed
		}
		return v1alpha1.ClusterPending
	}
	if p := cond(v1alpha1.ClusterProvisioned); p != nil && p.Status == metav1.ConditionFalse && p.Reason == "Failed" {
		return v1alpha1.ClusterFailed
	}
	if meta.IsStatusConditionTrue(conds, v1alpha1.ClusterUnreachableCondition) {
		return v1alpha1.ClusterUnreachable
	}
	if meta.IsStatusConditionTrue(conds, v1alpha1.ClusterReadyCondition) {
		return v1alpha1.ClusterReady
	}
	switch c.Status.Phase {
	case v1alpha1.ClusterReady, v1alpha1.ClusterUpdating, v1alpha1.ClusterUnreachable:
		return v1alpha1.ClusterUpdating
	}
	if meta.IsStatusConditionTrue(conds, v1alpha1.ClusterProvisioned) {
		return v1alpha1.ClusterJoining
	}
	return v1alpha1.ClusterProvisioning
}
