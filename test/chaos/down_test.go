//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// TestHubDownAMinute stops the hub (SIGKILL) for 60 seconds under 100 simulated clusters
// that run a placed Deployment. Nothing may be deleted on any member while it is away; when
// it is back every agent reconnects, and the test reports how long that took.
func TestHubDownAMinute(t *testing.T) {
	const n = 100
	down := 60 * time.Second
	if os.Getenv("CONVOY_CHAOS_SHORT") != "" {
		down = 10 * time.Second
	}
	ctx := context.Background()
	h := startHubProcess(t)
	log := &logCounter{}
	fleet := h.fleetWithLog(t, slog.New(log))
	names := registerFleet(t, ctx, h, fleet, "down", n)
	c := h.Client

	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}))
	must(t, c.Create(ctx, webDeployment("shop", "web:1", 2)))
	must(t, c.Create(ctx, &v1alpha1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: v1alpha1.PlacementSpec{
		Resources: []v1alpha1.ResourceSelector{{Group: "apps", Kind: "Deployment", Name: "web"}},
		Clusters:  v1alpha1.ClusterAffinity{LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"fleet": "down"}}},
		Replicas:  &v1alpha1.ReplicaScheduling{Type: v1alpha1.Duplicated},
	}}))
	eventually(t, "the Deployment available on every member", 3*time.Minute, func() (bool, error) {
		for _, name := range names {
			if image, ok := memberImage(fleet.Get(name).Member, "shop"); image != "web:1" || !ok {
				return false, fmt.Errorf("%s runs %q (available %v)", name, image, ok)
			}
		}
		return true, nil
	})

	// The hub is killed and stays away for the outage's length: the scenario. What happens on
	// the members meanwhile is checked from their records afterwards (every deletion is
	// recorded); the barrier here is that every agent has noticed the outage.
	noticed := log.count("heartbeat failed")
	h.Kill()
	killed := time.Now()
	t.Logf("hub killed; it stays down for %s", down)
	eventually(t, "every agent noticing the outage", down, func() (bool, error) {
		n := 0
		for _, name := range names {
			if log.count("heartbeat failed")[name] > noticed[name] {
				n++
			}
		}
		return n == len(names), fmt.Errorf("%d of %d agents noticed", n, len(names))
	})
	time.Sleep(time.Until(killed.Add(down)))
	back := time.Now()
	h.Start()
	t.Logf("hub ready again %s after the start", time.Since(back).Round(time.Millisecond))

	// Reconnected: the agent's heartbeat (its delivery stream) is back after the hub came back.
	reconnected := map[string]time.Duration{}
	eventually(t, "every agent heartbeating again", 3*time.Minute, func() (bool, error) {
		for name, at := range log.last("heartbeat back") {
			if at.After(back) {
				if _, ok := reconnected[name]; !ok {
					reconnected[name] = at.Sub(back)
				}
			}
		}
		return len(reconnected) >= n, fmt.Errorf("%d of %d agents heartbeat again", len(reconnected), n)
	})
	times := make([]time.Duration, 0, n)
	for _, d := range reconnected {
		times = append(times, d)
	}
	slices.Sort(times)
	msg := fmt.Sprintf("after %s down, %d agents reconnected: p50 %s, p90 %s, max %s after the hub process started",
		down, n, times[n/2].Round(time.Millisecond), times[n*9/10].Round(time.Millisecond), times[n-1].Round(time.Millisecond))
	t.Log(msg)
	fmt.Println("chaos:", msg)

	eventually(t, "every cluster Ready and the Placement Available", 3*time.Minute, func() (bool, error) {
		var list v1alpha1.ClusterList
		if err := c.List(ctx, &list, client.MatchingLabels{"fleet": "down"}); err != nil {
			return false, err
		}
		for _, cl := range list.Items {
			if cl.Status.Phase != v1alpha1.ClusterReady {
				return false, fmt.Errorf("%s is %s", cl.Name, cl.Status.Phase)
			}
		}
		p := &v1alpha1.Placement{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, p); err != nil {
			return false, err
		}
		return meta.IsStatusConditionTrue(p.Status.Conditions, v1alpha1.PlacementAvailable), fmt.Errorf("placement %v", p.Status.Conditions)
	})
	for _, name := range names {
		if del := fleet.Get(name).Member.Deleted(); len(del) > 0 {
			t.Errorf("%s deleted %v", name, del)
		}
	}
}
