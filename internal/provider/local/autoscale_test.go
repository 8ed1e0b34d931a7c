package local_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
)

// TestSimulatedPoolAutoscales runs a cluster whose simulated pool autoscales between 1 and 2
// nodes: two pods that will not share a node make the runtime add the second node, which runs
// the one that waited, and keeps the count it chose in autoscale.json; once the pods are gone the
// second node, idle for the pool's idle time, is drained and removed.
func TestSimulatedPoolAutoscales(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newProvider(t)
	c := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "elastic"}, Spec: v1alpha1.ClusterSpec{
		Provider: v1alpha1.ProviderLocal, Region: "r", Zones: []string{"a"},
		NodePools: []v1alpha1.NodePool{{Name: "default", Count: 1, Autoscale: &v1alpha1.NodePoolAutoscale{Min: 1, Max: 2, IdleSeconds: ptr.To[int32](10)}}},
	}}
	must(t, p.Create(ctx, c))
	t.Cleanup(func() { _ = p.Delete(context.Background(), c.Name) })
	hubtest.Eventually(t, "one node Ready", 2*time.Minute, func() (bool, error) {
		st, err := p.Status(ctx, c)
		return err == nil && st.Nodes.Ready == 1, fmt.Errorf("%+v %v", st.Nodes, err)
	})
	cs := member(t, p, c)
	for i := range 2 {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("spread-%d", i), Labels: map[string]string{"app": "spread"}},
			Spec: corev1.PodSpec{
				Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
					LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "spread"}}, TopologyKey: corev1.LabelHostname}}}},
				Tolerations: []corev1.Toleration{{Key: "kwok.x-k8s.io/node", Operator: corev1.TolerationOpExists}},
				Containers:  []corev1.Container{{Name: "c", Image: "registry.convoy.local/none:1"}},
			}}
		hubtest.Eventually(t, "pod "+pod.Name+" created (once the default ServiceAccount is)", time.Minute, func() (bool, error) {
			_, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
			return err == nil, err
		})
	}
	hubtest.Eventually(t, "a second node, running the pod that waited", 2*time.Minute, func() (bool, error) {
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=spread"})
		if err != nil {
			return false, err
		}
		on := map[string]bool{}
		for _, pod := range pods.Items {
			if pod.Status.Phase == corev1.PodRunning {
				on[pod.Spec.NodeName] = true
			}
		}
		st, err := p.Status(ctx, c)
		return err == nil && len(on) == 2 && st.Pools["default"] == 2 && st.Nodes.Ready == 2, fmt.Errorf("running on %v; %+v %v", on, st.Nodes, err)
	})
	raw, err := os.ReadFile(filepath.Join(p.Root, c.Name, "autoscale.json"))
	must(t, err)
	if !strings.Contains(string(raw), `"default": 2`) {
		t.Errorf("autoscale.json keeps %s, want the pool at 2", raw)
	}

	for i := range 2 {
		must(t, cs.CoreV1().Pods("default").Delete(ctx, fmt.Sprintf("spread-%d", i), metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}))
	}
	hubtest.Eventually(t, "the idle second node removed", 2*time.Minute, func() (bool, error) {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		st, err := p.Status(ctx, c)
		return err == nil && len(nodes.Items) == 1 && nodes.Items[0].Name == "elastic-default-0" && st.Pools["default"] == 1, fmt.Errorf("%d nodes; %+v %v", len(nodes.Items), st.Pools, err)
	})
}
