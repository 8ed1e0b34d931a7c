//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/manifest"
	"github.com/convoy-dev/convoy/internal/sim"
)

var deployments = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}

// webDeployment is the template the tests place.
func webDeployment(ns, image string, replicas int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: image}}},
			},
		},
	}
}

// memberImage is the image of the web Deployment on a simulated member, and whether the
// member reports it available.
func memberImage(m *sim.Member, ns string) (string, bool) {
	d := m.Cached(deployments, ns, "web")
	if d == nil {
		return "", false
	}
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if len(cs) == 0 {
		return "", false
	}
	image, _ := cs[0].(map[string]any)["image"].(string)
	health, _ := manifest.Assess(d)
	return image, health == v1alpha1.HealthHealthy
}

func registerFleet(t *testing.T, ctx context.Context, h *hubProcess, fleet *sim.Fleet, prefix string, n int) []string {
	t.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%02d", prefix, i)
		token, err := sim.Register(ctx, h.Client, names[i], map[string]string{"fleet": prefix}, time.Hour)
		must(t, err)
		_, err = fleet.Start(ctx, names[i], token)
		must(t, err)
	}
	eventually(t, "every simulated cluster Ready", 3*time.Minute, func() (bool, error) {
		return readyCount(ctx, h.Client, prefix, n)
	})
	return names
}

// TestHubKilledDuringRollout kills the hub with SIGKILL at a random moment of each of ten
// rollouts over six simulated clusters, and starts it again. After every restart the fleet
// converges on the newest template, every write the API acknowledged is there, and nothing
// was deleted on any member.
func TestHubKilledDuringRollout(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CONVOY_CHAOS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (CONVOY_CHAOS_SEED=%d repeats this run)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	ctx := context.Background()
	h := startHubProcess(t)
	fleet := h.fleet(t)
	names := registerFleet(t, ctx, h, fleet, "kill", 6)
	c := h.Client

	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}))
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "acks"}}))
	must(t, c.Create(ctx, webDeployment("shop", "web:0", 2)))
	must(t, c.Create(ctx, &v1alpha1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: v1alpha1.PlacementSpec{
		Resources: []v1alpha1.ResourceSelector{{Group: "apps", Kind: "Deployment", Name: "web"}},
		Clusters:  v1alpha1.ClusterAffinity{LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"fleet": "kill"}}},
		Replicas:  &v1alpha1.ReplicaScheduling{Type: v1alpha1.Duplicated},
		Rollout: &v1alpha1.RolloutStrategy{Waves: []v1alpha1.RolloutWave{
			{Name: "canary", Clusters: v1alpha1.WaveClusters{Names: names[:1]}, SoakSeconds: 1},
			{Name: "half", Clusters: v1alpha1.WaveClusters{Names: names[1:3]}, SoakSeconds: 1},
		}},
	}}))
	converged := func(image string) {
		t.Helper()
		eventually(t, "every member runs "+image, 3*time.Minute, func() (bool, error) {
			p := &v1alpha1.Placement{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, p); err != nil {
				return false, err
			}
			for _, n := range names {
				got, ok := memberImage(fleet.Get(n).Member, "shop")
				if got != image || !ok {
					return false, fmt.Errorf("%s runs %q (available %v); rollout %+v; conditions %+v", n, got, ok, p.Status.Rollout, p.Status.Conditions)
				}
			}
			if !meta.IsStatusConditionTrue(p.Status.Conditions, v1alpha1.PlacementAvailable) {
				return false, fmt.Errorf("placement not Available: %v", p.Status.Conditions)
			}
			return true, nil
		})
	}
	converged("web:0")

	for i := 1; i <= 10; i++ {
		image := fmt.Sprintf("web:%d", i)
		must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			d := &appsv1.Deployment{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, d); err != nil {
				return err
			}
			d.Spec.Template.Spec.Containers[0].Image = image
			return c.Update(ctx, d)
		}))
		// A write the API acknowledges just before the kill must survive it.
		must(t, c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "acks", Name: fmt.Sprintf("ack-%d", i)}, Data: map[string]string{"image": image}}))
		wait := time.Duration(rng.Int64N(int64(4 * time.Second)))
		time.Sleep(wait)
		h.Kill()
		t.Logf("round %d: killed the hub %s into the rollout of %s", i, wait.Round(time.Millisecond), image)
		h.Start()

		d := &appsv1.Deployment{}
		must(t, c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, d))
		if got := d.Spec.Template.Spec.Containers[0].Image; got != image {
			t.Fatalf("round %d: the template says %q after the restart; the acknowledged %q is lost", i, got, image)
		}
		for j := 1; j <= i; j++ {
			cm := &corev1.ConfigMap{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: "acks", Name: fmt.Sprintf("ack-%d", j)}, cm); err != nil {
				t.Fatalf("round %d: acknowledged ConfigMap ack-%d is lost: %v", i, j, err)
			}
		}
		converged(image)
		for _, n := range names {
			if del := fleet.Get(n).Member.Deleted(); len(del) > 0 {
				t.Fatalf("round %d: %s had resources deleted: %v", i, n, del)
			}
		}
	}
}
