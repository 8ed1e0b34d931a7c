package clusterphase

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

func TestOf(t *testing.T) {
	cond := func(typ string, ok bool, reason string) metav1.Condition {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		return metav1.Condition{Type: typ, Status: s, Reason: reason}
	}
	accepted := cond(v1alpha1.ClusterAccepted, true, "ProviderAccepted")
	provisioned := cond(v1alpha1.ClusterProvisioned, true, "Provisioned")
	converging := cond(v1alpha1.ClusterProvisioned, false, "Converging")
	ready := cond(v1alpha1.ClusterReadyCondition, true, "AgentReady")
	notJoined := cond(v1alpha1.ClusterReadyCondition, false, "AgentNotJoined")
	gone := cond(v1alpha1.ClusterUnreachableCondition, true, "HeartbeatExpired")
	cases := []struct {
		name     string
		was      v1alpha1.ClusterPhase
		deleting bool
		conds    []metav1.Condition
		want     v1alpha1.ClusterPhase
	}{
		{"new", "", false, nil, v1alpha1.ClusterProvisioning},
		{"no provider", "", false, []metav1.Condition{cond(v1alpha1.ClusterAccepted, false, "ProviderNotAvailable")}, v1alpha1.ClusterPending},
		{"invalid spec", "", false, []metav1.Condition{cond(v1alpha1.ClusterAccepted, false, "InvalidSpec")}, v1alpha1.ClusterFailed},
		{"provider failure", "", false, []metav1.Condition{accepted, cond(v1alpha1.ClusterProvisioned, false, "Failed")}, v1alpha1.ClusterFailed},
		{"provisioning", "", false, []metav1.Condition{accepted, converging, notJoined}, v1alpha1.ClusterProvisioning},
		{"waiting for the agent", v1alpha1.ClusterProvisioning, false, []metav1.Condition{accepted, provisioned, notJoined}, v1alpha1.ClusterJoining},
		{"ready", v1alpha1.ClusterJoining, false, []metav1.Condition{accepted, provisioned, ready}, v1alpha1.ClusterReady},
		{"ready while scaling", v1alpha1.ClusterReady, false, []metav1.Condition{accepted, converging, ready}, v1alpha1.ClusterReady},
		{"unreachable", v1alpha1.ClusterReady, false, []metav1.Condition{accepted, provisioned, cond(v1alpha1.ClusterReadyCondition, false, "Unreachable"), gone}, v1alpha1.ClusterUnreachable},
		{"not ready after ready", v1alpha1.ClusterReady, false, []metav1.Condition{accepted, provisioned, cond(v1alpha1.ClusterReadyCondition, false, "APIUnhealthy")}, v1alpha1.ClusterUpdating},
		{"deleting", v1alpha1.ClusterReady, true, []metav1.Condition{accepted, provisioned, ready}, v1alpha1.ClusterDeleting},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &v1alpha1.Cluster{Status: v1alpha1.ClusterStatus{Phase: tc.was, Conditions: tc.conds}}
			if tc.deleting {
				now := metav1.NewTime(time.Now())
				c.DeletionTimestamp = &now
			}
			if got := Of(c); got != tc.want {
				t.Errorf("Of = %s, want %s", got, tc.want)
			}
		})
	}
}
