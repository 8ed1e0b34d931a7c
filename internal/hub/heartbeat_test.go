package hub_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/hubtest"
)

// TestHeartbeatIntervalFollowsFleetSize: every agent is told the interval for the fleet's
// current size, the first clusters' agents too, as the fleet grows past the heartbeat budget
// and shrinks back under it.
func TestHeartbeatIntervalFollowsFleetSize(t *testing.T) {
	t.Parallel()
	const base, rate = 2 * time.Second, 1.0 // a budget of one heartbeat a second
	h := hubtest.Start(t, func(o *hub.Options) { o.HeartbeatInterval, o.MaxHeartbeatRate = base, rate })
	ctx := context.Background()
	told := func(cluster string) string {
		cm := &corev1.ConfigMap{}
		if err := h.Client.Get(ctx, client.ObjectKey{Namespace: v1alpha1.ClusterNamespace(cluster), Name: v1alpha1.AgentConfigMap}, cm); err != nil {
			return err.Error()
		}
		return cm.Data["heartbeatInterval"]
	}
	everyoneTold := func(clusters []string) {
		t.Helper()
		want := v1alpha1.FleetHeartbeatInterval(base, rate, len(clusters)).String()
		waitFor(t, fmt.Sprintf("every agent of %d clusters told %s", len(clusters), want), func() (bool, error) {
			for _, c := range clusters {
				if got := told(c); got != want {
					return false, fmt.Errorf("%s is told %s", c, got)
				}
			}
			return true, nil
		})
	}
	var clusters []string
	for i := range 4 {
		name := fmt.Sprintf("member-%d", i)
		if err := h.Client.Create(ctx, &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.ClusterSpec{Provider: v1alpha1.ProviderImport}}); err != nil {
			t.Fatal(err)
		}
		clusters = append(clusters, name)
		everyoneTold(clusters)
	}
	if v1alpha1.FleetHeartbeatInterval(base, rate, 4) == base {
		t.Fatal("the test's fleet never exceeds its heartbeat budget; it would prove nothing")
	}
	for len(clusters) > 1 {
		last := clusters[len(clusters)-1]
		if err := h.Client.Delete(ctx, &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: last}}); err != nil {
			t.Fatal(err)
		}
		clusters = clusters[:len(clusters)-1]
		everyoneTold(clusters)
	}
}
