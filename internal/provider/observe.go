package provider

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// LabelPool names the node pool a node belongs to.
const LabelPool = "convoy.dev/pool"

// LabelNodeKind says whether a node of a local cluster is "real" or "simulated" (kwok), for
// what must run on real nodes only (the cluster's DNS, its storage provisioner).
const LabelNodeKind = "convoy.dev/node-kind"

// Observe fills st from a cluster's API server: whether it is ready, its version, and its
// nodes (total, Ready, per pool, allocatable of the Ready ones). It only reads.
func Observe(ctx context.Context, cs kubernetes.Interface, st *Status) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st.APIReady = false
	body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("API server not ready: %w", err)
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		return fmt.Errorf("read version: %w", err)
	}
	st.Version = v.GitVersion
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	// Ready only once the nodes are known: a cluster whose node list failed would otherwise
	// look like one with no nodes, and be scaled (fail static).
	st.APIReady = string(body) == "ok"
	st.Nodes.Total = int32(len(nodes.Items))
	st.Nodes.Ready = 0
	st.Pools = map[string]int32{}
	alloc := corev1.ResourceList{}
	for i := range nodes.Items {
		n := &nodes.Items[i]
		if pool, ok := n.Labels[LabelPool]; ok {
			st.Pools[pool]++
		}
		if !NodeReady(n) {
			continue
		}
		st.Nodes.Ready++
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods} {
			if q, ok := n.Status.Allocatable[name]; ok {
				sum := alloc[name]
				sum.Add(q)
				alloc[name] = sum
			}
		}
	}
	for name, q := range alloc {
		alloc[name] = resource.MustParse(q.String()) // canonical form, for stable status patches
	}
	st.Allocatable = alloc
	return nil
}

// NodeReady reports whether a node's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
