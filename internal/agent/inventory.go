package agent

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/delivery"
)

const (
	// inventoryEvery is how often the agent looks at its cluster; it reports only changes.
	inventoryEvery = 2 * time.Second
	// inventoryRefresh re-sends an unchanged inventory after this long, so the hub knows it
	// is current.
	inventoryRefresh = 5 * time.Minute
)

// inventory reports the member to the hub when what it reports changes, looking at most
// every two seconds: on the delivery stream, or by writing it into the Cluster's status.
func (a *Agent) inventory(ctx context.Context) {
	// The first one, taken before the stream started, is with the stream's client already,
	// if there is one; without, it is written on the first pass.
	first, sent := a.inv.Load(), time.Now()
	var last *v1alpha1.Inventory
	if a.stream.Load() != nil {
		last = first
	}
	var wrote bool // the last one was written, not only sent on the stream
	fails := 0
	for {
		var inv v1alpha1.Inventory
		if first != nil {
			inv, first = *first, nil
		} else {
			inv = a.observe(ctx)
		}
		if ctx.Err() != nil {
			return
		}
		c, write := a.inventoryRoute()
		if last == nil || !sameInventory(*last, inv) || time.Since(sent) > inventoryRefresh || write && !wrote {
			if c != nil {
				c.SetInventory(inv)
			}
			var err error
			if write {
				err = a.report(ctx, inv)
			}
			if err != nil {
				fails++
				if fails == 1 {
					a.log.Warn("cannot report inventory; retrying", "err", err)
				}
				if !sleep(ctx, delivery.Backoff(inventoryEvery, fails)) {
					return
				}
				continue
			}
			fails = 0
			last, sent, wrote = &inv, time.Now(), write
			a.inv.Store(&inv)
		}
		if !sleep(ctx, inventoryEvery) {
			return
		}
	}
}

// inventoryRoute says where the inventory goes: to the delivery stream's client (nil if there
// is none), and whether the agent also writes it itself. On a stream whose hub stores it, the
// hub writes it with its verdict; the agent writes it when the hub offers no stream, when its
// stream has not opened within leasePatience (as the heartbeat goes back to the Lease then),
// and when its hub does not store it (an older hub). Once it writes, the loop writes the
// current inventory again even if unchanged.
func (a *Agent) inventoryRoute() (c *delivery.Client, write bool) {
	s := a.stream.Load()
	switch {
	case s == nil:
		return nil, true
	case s.client.EverUp():
		return s.client, !s.client.HubStoresInventory()
	default:
		return s.client, !a.awaitingStream()
	}
}

// observe takes the member's inventory now, with the version of the metrics collector the
// agent runs, if it runs one.
func (a *Agent) observe(ctx context.Context) v1alpha1.Inventory {
	inv := a.opts.Member.Observe(ctx)
	inv.AgentVersion, inv.ReportedAt = a.opts.Version, metav1.Now()
	if v := a.collectorVersion.Load(); v != nil {
		inv.Addons = maps.Clone(inv.Addons)
		if inv.Addons == nil {
			inv.Addons = map[string]string{}
		}
		inv.Addons[string(v1alpha1.AddonMetrics)] = *v
	}
	return inv
}

// observeKube builds a real member's inventory from listers of its nodes and pods and a
// readiness check: its API health and version, its nodes (by readiness and kubelet version),
// zones, and capacity.
func observeKube(ctx context.Context, cs kubernetes.Interface, nodeLister corelisters.NodeLister, podLister corelisters.PodLister) v1alpha1.Inventory {
	var inv v1alpha1.Inventory
	if nodeLister == nil || podLister == nil {
		return inv // ctx ended before the first list
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(cctx)
	cancel()
	inv.APIHealthy = err == nil && string(body) == "ok"
	if v, err := cs.Discovery().ServerVersion(); err == nil {
		inv.KubernetesVersion = v.GitVersion
	}
	ns, _ := nodeLister.List(labels.Everything())
	inv.KubeletVersions = kubeletVersions(ns)
	alloc := corev1.ResourceList{}
	zones := map[string]bool{}
	for _, n := range ns {
		inv.Nodes.Total++
		if !nodeReady(n) {
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
	ps, _ := podLister.List(labels.Everything())
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

// sameInventory compares two inventories but for when they were taken: every other field,
// the add-ons, feature gates and namespaces too.
func sameInventory(a, b v1alpha1.Inventory) bool {
	a.ReportedAt, b.ReportedAt = metav1.Time{}, metav1.Time{}
	return equality.Semantic.DeepEqual(a, b)
}

// report writes the inventory into the Cluster's status (the only Cluster field the agent
// may write; with a delivery stream the hub writes it instead).
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
