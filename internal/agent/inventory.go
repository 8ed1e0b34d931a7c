package agent

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

const (
	// inventoryEvery is how often the agent looks at its cluster; it reports only changes.
	inventoryEvery = 2 * time.Second
	// inventoryRefresh re-sends an unchanged inventory after this long, so the hub knows it
	// is current.
	inventoryRefresh = 5 * time.Minute
)

// inventory watches the member's nodes and pods and reports the cluster to the hub when what
// it reports changes, at most every two seconds.
func (a *Agent) inventory(ctx context.Context) {
	factory := informers.NewSharedInformerFactory(a.memberCS, 0)
	nodes := factory.Core().V1().Nodes()
	pods := factory.Core().V1().Pods()
	// Only what the inventory needs of a pod stays in memory.
	_ = pods.Informer().SetTransform(func(o any) (any, error) {
		p, ok := o.(*corev1.Pod)
		if !ok {
			return o, nil
		}
		slim := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion}}
		slim.Spec.NodeName = p.Spec.NodeName
		slim.Status.Phase = p.Status.Phase
		for _, c := range p.Spec.Containers {
			slim.Spec.Containers = append(slim.Spec.Containers, corev1.Container{Resources: corev1.ResourceRequirements{Requests: c.Resources.Requests}})
		}
		for _, c := range p.Spec.InitContainers {
			slim.Spec.InitContainers = append(slim.Spec.InitContainers, corev1.Container{Resources: corev1.ResourceRequirements{Requests: c.Resources.Requests}})
		}
		return slim, nil
	})
	_ = nodes.Informer()
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	factory.WaitForCacheSync(ctx.Done())

	var last *v1alpha1.Inventory
	var sent time.Time
	fails := 0
	for {
		inv := a.observe(ctx, nodes.Lister().List, pods.Lister().List)
		if last == nil || !sameInventory(*last, inv) || time.Since(sent) > inventoryRefresh {
			if err := a.report(ctx, inv); err != nil {
				fails++
				if fails == 1 {
					a.log.Warn("cannot report inventory; retrying", "err", err)
				}
				if !sleep(ctx, backoff(inventoryEvery, fails)) {
					return
				}
				continue
			}
			fails = 0
			last, sent = &inv, time.Now()
		}
		if !sleep(ctx, inventoryEvery) {
			return
		}
	}
}

// observe builds the inventory from the informers' caches and a readiness check.
func (a *Agent) observe(ctx context.Context, listNodes func(labels.Selector) ([]*corev1.Node, error), listPods func(labels.Selector) ([]*corev1.Pod, error)) v1alpha1.Inventory {
	inv := v1alpha1.Inventory{AgentVersion: a.opts.Version, ReportedAt: metav1.Now()}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	body, err := a.memberCS.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(cctx)
	cancel()
	inv.APIHealthy = err == nil && string(body) == "ok"
	if v, err := a.memberCS.Discovery().ServerVersion(); err == nil {
		inv.KubernetesVersion = v.GitVersion
	}
	ns, _ := listNodes(labels.Everything())
	alloc := corev1.ResourceList{}
	zones := map[string]bool{}
	for _, n := range ns {
		inv.Nodes.Total++
		ready := false
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if !ready {
			continue
		}
		inv.Nodes.Ready++
		if z := n.Labels[corev1.LabelTopologyZone]; z != "" {
			zones[z] = true
		}
		addResources(alloc, n.Status.Allocatable)
	}
	for z := range zones {
		inv.Zones = append(inv.Zones, z)
	}
	slices.Sort(inv.Zones)
	requested := corev1.ResourceList{}
	ps, _ := listPods(labels.Everything())
	var running int64
	for _, p := range ps {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		running++
		addResources(requested, podRequests(p))
	}
	requested[corev1.ResourcePods] = *resource.NewQuantity(running, resource.DecimalSI)
	inv.Allocatable, inv.Requested = canonical(alloc), canonical(requested)
	return inv
}

// podRequests is what a pod asks for: the sum over its containers, or its largest init
// container if that is more.
func podRequests(p *corev1.Pod) corev1.ResourceList {
	sum := corev1.ResourceList{}
	for _, c := range p.Spec.Containers {
		addResources(sum, c.Resources.Requests)
	}
	for _, c := range p.Spec.InitContainers {
		for name, q := range c.Resources.Requests {
			if cur, ok := sum[name]; !ok || q.Cmp(cur) > 0 {
				sum[name] = q.DeepCopy()
			}
		}
	}
	return sum
}

func addResources(into, add corev1.ResourceList) {
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods} {
		if q, ok := add[name]; ok {
			sum := into[name]
			sum.Add(q)
			into[name] = sum
		}
	}
}

func canonical(l corev1.ResourceList) corev1.ResourceList {
	out := corev1.ResourceList{}
	for name, q := range l {
		out[name] = resource.MustParse(q.String())
	}
	return out
}

// sameInventory compares two inventories but for when they were taken.
func sameInventory(a, b v1alpha1.Inventory) bool {
	a.ReportedAt, b.ReportedAt = metav1.Time{}, metav1.Time{}
	return equality.Semantic.DeepEqual(a, b)
}

// report writes the inventory into the Cluster's status (the only Cluster field the agent
// may write).
func (a *Agent) report(ctx context.Context, inv v1alpha1.Inventory) error {
	body, err := json.Marshal(map[string]any{"status": map[string]any{"inventory": inv}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c := &v1alpha1.Cluster{}
	c.Name = a.opts.Cluster
	return a.hub.Status().Patch(ctx, c, client.RawPatch(types.MergePatchType, body))
}
