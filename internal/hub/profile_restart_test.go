package hub_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/version"
)

// TestUpdateRunGoesOnAfterAHubRestart moves two local clusters of one profile to the next
// Kubernetes version in two waves, the first (r1) soaking for an hour, and restarts the hub
// during the soak: the run's state is the profile's status, so the hub that comes back keeps
// the run soaking on the same wave since the same moment, with r2 not started and r1 not moved
// again; once the soak is shortened, it finishes the run.
func TestUpdateRunGoesOnAfterAHubRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts local clusters")
	}
	t.Parallel()
	h := hubtest.Start(t)
	ctx := context.Background()
	p := &v1alpha1.ClusterProfile{
		ObjectMeta: metav1.ObjectMeta{Name: "prod"},
		Spec: v1alpha1.ClusterProfileSpec{
			KubernetesVersion: version.KubernetesPrevious,
			NodePools:         []v1alpha1.NodePool{{Name: "default", Count: 1}},
			Update: v1alpha1.ProfileUpdate{Waves: []v1alpha1.RolloutWave{
				{Name: "first", Clusters: v1alpha1.WaveClusters{Names: []string{"r1"}}, SoakSeconds: 3600},
				{Name: "second", Clusters: v1alpha1.WaveClusters{Names: []string{"r2"}}},
			}},
		},
	}
	must(t, h.Client.Create(ctx, p))
	for _, name := range []string{"r1", "r2"} {
		must(t, h.Client.Create(ctx, cluster(name, v1alpha1.ClusterSpec{Provider: v1alpha1.ProviderLocal, Profile: &v1alpha1.ProfileRef{Name: "prod"}})))
	}
	on := func(revision int64, v string) func(c *v1alpha1.Cluster) error {
		return func(c *v1alpha1.Cluster) error {
			s, inv := c.Status.Profile, c.Status.Inventory
			if s == nil || inv == nil || s.Revision != revision || !s.Conformant || inv.KubernetesVersion != v {
				return fmt.Errorf("profile state %+v, inventory %+v", s, inv)
			}
			return nil
		}
	}
	for _, name := range []string{"r1", "r2"} {
		eventuallyClusterWithin(t, h, name, 3*time.Minute, on(1, version.KubernetesPrevious))
	}

	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		must(t, h.Client.Get(ctx, client.ObjectKey{Name: "prod"}, p))
		p.Spec.KubernetesVersion = version.Kubernetes
		return h.Client.Update(ctx, p)
	}))
	var soaking *v1alpha1.RolloutStatus
	hubtest.Eventually(t, "the run soaking on wave first, r1 done", 3*time.Minute, func() (bool, error) {
		if err := h.Client.Get(ctx, client.ObjectKey{Name: "prod"}, p); err != nil {
			return false, err
		}
		soaking = p.Status.Run
		return soaking != nil && soaking.Target == "2" && soaking.WaveName == "first" && soaking.SoakStarted != nil, fmt.Errorf("run %+v", soaking)
	})
	eventuallyClusterWithin(t, h, "r1", time.Minute, on(2, version.Kubernetes))

	h.Restart()
	// The hub that came back has stepped the run once it has seen a change of the strategy
	// (a longer soak: no new revision): the same soak of the same wave, r2 held.
	setSoak := func(seconds int32) int64 {
		must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			must(t, h.Client.Get(ctx, client.ObjectKey{Name: "prod"}, p))
			p.Spec.Update.Waves[0].SoakSeconds = seconds
			return h.Client.Update(ctx, p)
		}))
		return p.Generation
	}
	gen := setSoak(3601)
	hubtest.Eventually(t, "the restarted hub's controller at the new generation", time.Minute, func() (bool, error) {
		must(t, h.Client.Get(ctx, client.ObjectKey{Name: "prod"}, p))
		return p.Status.ObservedGeneration >= gen, fmt.Errorf("observed generation %d, want %d", p.Status.ObservedGeneration, gen)
	})
	if r := p.Status.Run; r == nil || r.WaveName != "first" || r.SoakStarted == nil || !r.SoakStarted.Equal(soaking.SoakStarted) {
		t.Fatalf("after the restart the run is %+v, want it soaking on wave first since %v", r, soaking.SoakStarted)
	}
	for _, tg := range p.Status.Targets {
		if tg.Cluster == "r2" && tg.Revision != 1 {
			t.Errorf("r2 is targeted at revision %d during the first wave's soak", tg.Revision)
		}
	}
	r1 := &v1alpha1.Cluster{}
	must(t, h.Client.Get(ctx, client.ObjectKey{Name: "r1"}, r1))
	if inv := r1.Status.Inventory; inv == nil || inv.KubernetesVersion != version.Kubernetes {
		t.Errorf("r1 after the restart: %+v", inv)
	}
	setSoak(1) // the soak is over: the run goes on to r2
	hubtest.Eventually(t, "the run complete after the restart", 3*time.Minute, func() (bool, error) {
		if err := h.Client.Get(ctx, client.ObjectKey{Name: "prod"}, p); err != nil {
			return false, err
		}
		r := p.Status.Run
		return r != nil && r.Phase == v1alpha1.RolloutComplete && r.Target == "2", fmt.Errorf("run %+v", r)
	})
	if got := p; got.Status.Conformant != 2 || got.Status.Clusters != 2 {
		t.Errorf("profile status counts %d of %d clusters conformant, want 2 of 2", got.Status.Conformant, got.Status.Clusters)
	}
	for _, name := range []string{"r1", "r2"} {
		eventuallyClusterWithin(t, h, name, time.Minute, on(2, version.Kubernetes))
	}
}
