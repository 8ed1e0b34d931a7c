package bench

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/manifest"
	"github.com/convoy-dev/convoy/internal/scheduler"
)

// BenchmarkScheduler times the pure scheduler: 100 Placements over 1,000 clusters, each
// decided and its 100 replicas divided.
func BenchmarkScheduler(b *testing.B) {
	const nClusters, nPlacements = 1000, 100
	regions := []string{"us-east", "us-west", "eu-west", "eu-north", "ap-south", "ap-east", "sa-east", "af-south"}
	clusters := make([]scheduler.Cluster, nClusters)
	for i := range clusters {
		r := regions[i%len(regions)]
		clusters[i] = scheduler.Cluster{Name: fmt.Sprintf("c%04d", i), Region: r, Zones: []string{"a", "b", "c"}[i%3 : i%3+1],
			Environment: []string{"prod", "staging"}[i%2], Healthy: i%50 != 0,
			Labels: map[string]string{v1alpha1.LabelRegion: r, "tier": fmt.Sprint(i % 4)},
			Free:   &scheduler.Resources{MilliCPU: int64(1000 + i%7*500), Memory: 8 << 30, Pods: 110}}
	}
	placements := make([]v1alpha1.PlacementSpec, nPlacements)
	for i := range placements {
		p := v1alpha1.PlacementSpec{Replicas: &v1alpha1.ReplicaScheduling{Type: v1alpha1.Divided,
			Weights: []v1alpha1.ClusterWeight{{Clusters: v1alpha1.ClusterAffinity{Regions: []string{"us-east"}}, Weight: 3}}}}
		switch i % 4 {
		case 0:
			p.Clusters.LabelSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": fmt.Sprint(i % 3)}}
		case 1:
			p.Clusters.Environments = []string{"prod"}
			p.NumberOfClusters = ptr.To[int32](50)
		case 2:
			p.Spread = []v1alpha1.SpreadConstraint{{Topology: "region", MaxClustersPerGroup: ptr.To[int32](2), MinGroups: ptr.To[int32](4)}}
		}
		placements[i] = p
	}
	decide := func() (chosen int) {
		for _, p := range placements {
			d := scheduler.Schedule(clusters, p, nil)
			w := make([]int64, len(d.Clusters))
			for i, c := range d.Clusters {
				w[i] = c.Weight
			}
			scheduler.Divide(100, w, 0)
			chosen += len(d.Clusters)
		}
		return chosen
	}
	var times []time.Duration
	var chosen int
	for range 5 {
		start := time.Now()
		chosen = decide()
		times = append(times, time.Since(start))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	fmt.Printf("\nScheduler benchmark (pure decisions, one goroutine)\nmachine: %s\n", Machine())
	fmt.Printf("%d Placements x %d clusters, decided and divided: median %s (runs %v), %d clusters chosen in all, %s per Placement\n",
		nPlacements, nClusters, times[2].Round(time.Millisecond), times, chosen, (times[2] / nPlacements).Round(time.Microsecond))
	b.ReportMetric(times[2].Seconds()*1000, "ms-decide-1000x100")
}

// BenchmarkPropagation times a template change on a real hub until every chosen cluster's
// Work carries it. The clusters are imported ones with nothing behind them: this measures the
// hub's side (select, schedule, render, write), not the agents'.
func BenchmarkPropagation(b *testing.B) {
	h := hubtest.Start(b)
	ctx := context.Background()
	cfg := rest.CopyConfig(h.Config)
	cfg.QPS, cfg.Burst = 1000, 1000
	c, err := client.New(cfg, client.Options{Scheme: hubtest.Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{10, 100, 1000} {
		ns := fmt.Sprintf("app%d", n)
		have := 0
		var list v1alpha1.ClusterList
		if err := c.List(ctx, &list); err != nil {
			b.Fatal(err)
		}
		have = len(list.Items)
		for i := have; i < n; i++ {
			name := fmt.Sprintf("m%04d", i)
			secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "convoy-system", Name: name + "-kubeconfig"},
				StringData: map[string]string{"kubeconfig": "apiVersion: v1\nkind: Config\nclusters: []\n"}}
			if err := c.Create(ctx, secret); err != nil {
				b.Fatal(err)
			}
			if err := c.Create(ctx, &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.ClusterSpec{
				Provider: v1alpha1.ProviderImport, Region: fmt.Sprintf("r%d", i%5), KubeconfigSecretRef: &v1alpha1.SecretReference{Name: secret.Name}}}); err != nil {
				b.Fatal(err)
			}
		}
		// Every cluster's namespace must exist before its Work can.
		waitFor(b, fmt.Sprintf("%d cluster namespaces", n), 10*time.Minute, func() bool {
			var nss corev1.NamespaceList
			if err := c.List(ctx, &nss); err != nil {
				return false
			}
			count := 0
			for _, x := range nss.Items {
				if strings.HasPrefix(x.Name, "convoy-cluster-") {
					count++
				}
			}
			return count >= n
		})
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			b.Fatal(err)
		}
		labels := map[string]string{"app": "web"}
		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(3 * n)), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "web", Image: "nginx:1"}}}}}}
		if err := c.Create(ctx, dep); err != nil {
			b.Fatal(err)
		}
		if err := c.Create(ctx, &v1alpha1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: v1alpha1.PlacementSpec{
			Resources: []v1alpha1.ResourceSelector{{Group: "apps", Kind: "Deployment", Name: "web"}},
			Replicas:  &v1alpha1.ReplicaScheduling{Type: v1alpha1.Divided}}}); err != nil {
			b.Fatal(err)
		}
		first := time.Now()
		waitFor(b, "the first Works", 10*time.Minute, func() bool { return worksWith(b, c, ns, n, "nginx:1") })
		firstTook := time.Since(first)

		// The measured change: a new image.
		var times []time.Duration
		for round := 2; round <= 4; round++ {
			image := fmt.Sprintf("nginx:%d", round)
			start := time.Now()
			// The hub writes its summary annotation on the template, so read it again on a conflict.
			if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				if err := c.Get(ctx, client.ObjectKeyFromObject(dep), dep); err != nil {
					return err
				}
				dep.Spec.Template.Spec.Containers[0].Image = image
				return c.Update(ctx, dep)
			}); err != nil {
				b.Fatal(err)
			}
			waitFor(b, "Works with "+image, 10*time.Minute, func() bool { return worksWith(b, c, ns, n, image) })
			times = append(times, time.Since(start))
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		fmt.Printf("\nPropagation benchmark, %d clusters (real hub; imported clusters with no member behind them)\nmachine: %s\n", n, Machine())
		fmt.Printf("Placement created to all %d Works written:      %s\n", n, firstTook.Round(time.Millisecond))
		fmt.Printf("template change to all %d Works rewritten:       median %s (runs %v)\n", n, times[1].Round(time.Millisecond), times)
		b.ReportMetric(times[1].Seconds()*1000, fmt.Sprintf("ms-change-to-works-%d", n))
	}
}

// worksWith reports whether n Works of the namespace's Placement send the image.
func worksWith(b *testing.B, c client.Client, ns string, n int, image string) bool {
	var list v1alpha1.WorkList
	if err := c.List(context.Background(), &list, client.MatchingLabels{v1alpha1.LabelPlacementNamespace: ns}); err != nil {
		return false
	}
	count := 0
	for _, w := range list.Items {
		for _, o := range manifest.Decode(w.Spec.Manifests) {
			if o.Err != nil || o.ID.Kind != "Deployment" {
				continue
			}
			cs, _, _ := unstructured.NestedSlice(o.Obj.Object, "spec", "template", "spec", "containers")
			if len(cs) > 0 && cs[0].(map[string]any)["image"] == image {
				count++
			}
		}
	}
	return count == n
}

func waitFor(b *testing.B, what string, timeout time.Duration, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
