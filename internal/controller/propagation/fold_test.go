package propagation

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/plan"
)

// TestFoldFor: which changes of a Placement's status wait for more reports, and for how long.
func TestFoldFor(t *testing.T) {
	stored := v1alpha1.PlacementStatus{ObservedGeneration: 2, ScheduledClusters: 2, Clusters: []v1alpha1.ClusterPlacementStatus{
		{Cluster: "east", Applied: true, Available: true, Healthy: true}, {Cluster: "west", Applied: true, Available: true, Healthy: true}}}
	// The template changed: one cluster reported on the new content, the other not yet.
	rows := func(st v1alpha1.PlacementStatus) v1alpha1.PlacementStatus {
		st = *st.DeepCopy()
		st.Clusters[1].Applied, st.Clusters[1].Available = false, false
		return st
	}
	key := client.ObjectKey{Namespace: "shop", Name: "web"}
	cases := []struct {
		name string
		out  func() plan.Output
		// since, when set, is how long ago the first change was held back.
		since time.Duration
		held  bool
	}{
		{name: "only rows, a cluster still to report", out: func() plan.Output {
			return plan.Output{Status: rows(stored), Awaiting: 1}
		}, held: true},
		{name: "the same, half a second after the first change held back", since: 500 * time.Millisecond, out: func() plan.Output {
			return plan.Output{Status: rows(stored), Awaiting: 1}
		}, held: true},
		{name: "the same, a second after the first change held back", since: statusInterval, out: func() plan.Output {
			return plan.Output{Status: rows(stored), Awaiting: 1}
		}},
		{name: "every cluster reported", out: func() plan.Output {
			return plan.Output{Status: rows(stored)}
		}},
		{name: "nothing changes", out: func() plan.Output {
			return plan.Output{Status: *stored.DeepCopy(), Awaiting: 1}
		}},
		{name: "with an event", out: func() plan.Output {
			return plan.Output{Status: rows(stored), Awaiting: 1, Events: []plan.Event{{Type: "Normal", Reason: "FailedOver"}}}
		}},
		{name: "the rollout's state changes", out: func() plan.Output {
			st := rows(stored)
			st.Rollout = &v1alpha1.RolloutStatus{Phase: v1alpha1.RolloutProgressing}
			return plan.Output{Status: st, Awaiting: 1}
		}},
		{name: "a cluster fails over", out: func() plan.Output {
			st := rows(stored)
			st.FailedOver = []v1alpha1.FailedOverCluster{{Cluster: "west", Since: metav1.Now()}}
			return plan.Output{Status: st, Awaiting: 1}
		}},
		{name: "the counting conditions change with the rows", out: func() plan.Output {
			st := rows(stored)
			st.Conditions = []metav1.Condition{{Type: v1alpha1.PlacementAvailable, Status: metav1.ConditionFalse, Reason: "Progressing", Message: "available in 1/2 clusters"}}
			return plan.Output{Status: st, Awaiting: 1}
		}, held: true},
		{name: "another condition changes", out: func() plan.Output {
			st := rows(stored)
			st.Conditions = []metav1.Condition{{Type: v1alpha1.PlacementScheduled, Status: metav1.ConditionFalse, Reason: "NoClusters"}}
			return plan.Output{Status: st, Awaiting: 1}
		}},
		{name: "a cluster is chosen", out: func() plan.Output {
			st := rows(stored)
			st.Clusters = append(st.Clusters, v1alpha1.ClusterPlacementStatus{Cluster: "south", Healthy: true})
			st.ScheduledClusters = 3
			return plan.Output{Status: st, Awaiting: 2}
		}},
		{name: "a cluster is no longer healthy", out: func() plan.Output {
			st := rows(stored)
			st.Clusters[1].Healthy = false
			return plan.Output{Status: st, Awaiting: 1}
		}},
		{name: "a cluster reports an error", out: func() plan.Output {
			st := rows(stored)
			st.Clusters[1].Error = "Deployment web: invalid"
			return plan.Output{Status: st, Awaiting: 1}
		}},
		{name: "a new generation is observed", out: func() plan.Output {
			st := rows(stored)
			st.ObservedGeneration = 3
			return plan.Output{Status: st, Awaiting: 1}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &Reconciler{}
			p := &v1alpha1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Generation: 2}, Status: *stored.DeepCopy()}
			if tc.since > 0 {
				r.folds.Store(key, fold{since: time.Now().Add(-tc.since), resourceVersion: p.ResourceVersion})
			}
			wait := r.foldFor(key, p, tc.out(), 0)
			_, kept := r.folds.Load(key)
			switch {
			case tc.held && (wait <= 0 || wait > statusInterval-tc.since):
				t.Fatalf("waits %v, want up to %v", wait, statusInterval-tc.since)
			case tc.held && !kept:
				t.Fatal("held back, and not remembered")
			case !tc.held && wait > 0:
				t.Fatalf("waits %v, want a write now", wait)
			case !tc.held && kept:
				t.Fatal("written now, and still remembered as held back")
			}
		})
	}
}
