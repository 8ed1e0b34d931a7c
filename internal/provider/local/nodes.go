package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/provider"
)

// fieldManager is the local provider's server-side apply identity on member clusters.
const fieldManager = "convoy-local-provider"

// drainTimeout bounds how long one node may take to drain before scaling reports an error.
const drainTimeout = 2 * time.Minute

// nodeShape is everything the provider decides about one node.
type nodeShape struct {
	name string
	pool string
	// real nodes are kubelets of the runtime's (realNodes); the others are kwok's.
	real        bool
	maxPods     int32
	labels      map[string]string
	taints      []corev1.Taint
	allocatable corev1.ResourceList
	version     string
}

// desiredNodes turns a Cluster's node pools into the nodes it should have. Nodes are named
// CLUSTER-POOL-INDEX; a pool without a zone spreads its nodes over spec.zones in turn.
func desiredNodes(c *v1alpha1.Cluster) []nodeShape {
	var out []nodeShape
	for _, pool := range c.Spec.NodePools {
		res := corev1.ResourceList{
			corev1.ResourceCPU:    orQuantity(pool.CPU, "4"),
			corev1.ResourceMemory: orQuantity(pool.Memory, "16Gi"),
			corev1.ResourcePods:   *resource.NewQuantity(int64(orInt(pool.Pods, 110)), resource.DecimalSI),
		}
		for i := range int(pool.Count) {
			name := nodeName(c.Name, pool.Name, i)
			labels := map[string]string{}
			maps.Copy(labels, pool.Labels)
			real := pool.Kind == v1alpha1.NodeReal
			kind, nodeKind := "kwok", "simulated"
			if real {
				kind, nodeKind = "convoy-real", "real"
			}
			maps.Copy(labels, map[string]string{
				"kubernetes.io/hostname":           name,
				"kubernetes.io/os":                 "linux",
				"kubernetes.io/arch":               "amd64",
				"node.kubernetes.io/instance-type": kind,
				"type":                             kind,
				provider.LabelPool:                 pool.Name,
				provider.LabelNodeKind:             nodeKind,
			})
			zone := pool.Zone
			if zone == "" && len(c.Spec.Zones) > 0 {
				zone = c.Spec.Zones[i%len(c.Spec.Zones)]
			}
			if zone != "" {
				labels[corev1.LabelTopologyZone] = zone
			}
			if c.Spec.Region != "" {
				labels[corev1.LabelTopologyRegion] = c.Spec.Region
			}
			out = append(out, nodeShape{name: name, pool: pool.Name, real: real, maxPods: orInt(pool.Pods, 110),
				labels: labels, taints: pool.Taints, allocatable: res, version: versionOf(c)})
		}
	}
	return out
}

// nodeName is CLUSTER-POOL-INDEX, with the cluster part shortened so that the name fits the
// 63 characters of the kubernetes.io/hostname label.
func nodeName(cluster, pool string, i int) string {
	suffix := "-" + pool + "-" + strconv.Itoa(i)
	if room := 63 - len(suffix); len(cluster) > room {
		cluster = strings.TrimRight(cluster[:room], "-")
	}
	return cluster + suffix
}

func orQuantity(q *resource.Quantity, def string) resource.Quantity {
	if q == nil {
		return resource.MustParse(def)
	}
	return *q
}

func orInt(v, def int32) int32 {
	if v == 0 {
		return def
	}
	return v
}

// realNodeHost runs a cluster's real nodes (the runtime's realNodes).
type realNodeHost interface {
	// ensure makes a real node run and join its cluster, if it does not yet.
	ensure(ctx context.Context, w nodeShape) error
	// remove takes a real node away from the host, once it is drained and deleted.
	remove(ctx context.Context, name string) error
	// started names the real nodes running on the host, joined or not.
	started() []string
	// network gives the running real nodes their pod ranges and routes, from the Nodes, and
	// says whether one still waits for its range.
	network(nodes []corev1.Node) (waiting bool, err error)
	// kubeProxyVersion is the version of the kube-proxy a running node runs, or "".
	kubeProxyVersion(name string) string
}

// syncNodes makes the cluster's nodes match c's node pools: it starts missing real nodes
// (whose kubelets register them) and applies missing or changed kwok nodes, then drains and
// deletes surplus ones, highest index first, and gives real nodes their part of the pod
// network. The runtime runs it, so that nodes join as soon as the API server is ready, as
// kubelets would, hub or no hub. It reports whether it changed anything: kwok initialises a
// new node's status from what it read, which can be older than the provider's capacity, and a
// kubelet registers a while after it starts, so a changed set is checked again.
func syncNodes(ctx context.Context, cs kubernetes.Interface, c *v1alpha1.Cluster, real realNodeHost, log *slog.Logger) (changed bool, err error) {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: provider.LabelPool})
	if err != nil {
		return false, fmt.Errorf("list nodes: %w", err)
	}
	have := map[string]*corev1.Node{}
	for i := range nodes.Items {
		have[nodes.Items[i].Name] = &nodes.Items[i]
	}
	want := desiredNodes(c)
	wanted := map[string]bool{}
	var errs []error
	// Real nodes come up side by side: each takes a second or more.
	ensured := map[string]error{}
	if real != nil {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, w := range want {
			if w.real {
				wg.Go(func() {
					err := real.ensure(ctx, w)
					mu.Lock()
					ensured[w.name] = err
					mu.Unlock()
				})
			}
		}
		wg.Wait()
	}
	for _, w := range want {
		wanted[w.name] = true
		if w.real {
			if real == nil {
				return changed, fmt.Errorf("node %s: this runtime cannot run real nodes", w.name)
			}
			if err := ensured[w.name]; err != nil {
				// One node that cannot start keeps none of the others from starting.
				errs = append(errs, err)
				continue
			}
			if v := real.kubeProxyVersion(w.name); v != "" {
				w.labels = maps.Clone(w.labels)
				w.labels[v1alpha1.LabelKubeProxyVersion] = v
			}
			n, ok := have[w.name]
			if !ok {
				changed = true // its kubelet registers it in a moment
				continue
			}
			if !matches(n, w) {
				changed = true
				if err := applyRealNode(ctx, cs, w); err != nil {
					return changed, errors.Join(append(errs, err)...)
				}
			}
			continue
		}
		if n, ok := have[w.name]; ok && matches(n, w) {
			continue
		}
		changed = true
		if err := applyNode(ctx, cs, w); err != nil {
			return changed, errors.Join(append(errs, err)...)
		}
	}
	var surplus []string
	for name := range have {
		if !wanted[name] {
			surplus = append(surplus, name)
		}
	}
	if real != nil {
		// A node started ahead (startEarly) for a pool that shrank before it joined has no
		// Node to drain: it only leaves the host.
		for _, name := range real.started() {
			if _, registered := have[name]; !registered && !wanted[name] {
				changed = true
				if err := real.remove(ctx, name); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	slices.SortFunc(surplus, func(a, b string) int { return strings.Compare(b, a) })
	for _, name := range surplus {
		changed = true
		if err := drainAndDelete(ctx, cs, name); err != nil {
			return changed, errors.Join(append(errs, err)...)
		}
		if real != nil && have[name].Annotations[kwokNodeAnnotation] == "" {
			if err := real.remove(ctx, name); err != nil {
				return changed, errors.Join(append(errs, err)...)
			}
		}
		log.Info("node removed", "node", name)
	}
	if real != nil {
		waiting, err := real.network(nodes.Items)
		errs = append(errs, err)
		changed = changed || waiting // look again once the controller-manager allocated it
	}
	return changed, errors.Join(errs...)
}

// matches reports whether node n already has shape w: for a real node, its labels (its
// kubelet registered its taints, and reports the rest, its version included).
func matches(n *corev1.Node, w nodeShape) bool {
	for k, v := range w.labels {
		if n.Labels[k] != v {
			return false
		}
	}
	if w.real {
		return true
	}
	if len(n.Spec.Taints) != len(w.taints) {
		return false
	}
	for i := range w.taints {
		if !n.Spec.Taints[i].MatchTaint(&w.taints[i]) || n.Spec.Taints[i].Value != w.taints[i].Value {
			return false
		}
	}
	if n.Status.NodeInfo.KubeletVersion != w.version {
		return false
	}
	for name, q := range w.allocatable {
		if got, ok := n.Status.Allocatable[name]; !ok || got.Cmp(q) != 0 {
			return false
		}
	}
	return true
}

// applyNode creates or updates one node with server-side apply: labels, kwok's annotation
// and taints on the object, then capacity on its status. Labels the provider set before but
// no longer wants are removed by apply's field ownership.
func applyNode(ctx context.Context, cs kubernetes.Interface, w nodeShape) error {
	spec := corev1ac.NodeSpec()
	for _, t := range w.taints {
		spec.WithTaints(corev1ac.Taint().WithKey(t.Key).WithValue(t.Value).WithEffect(t.Effect))
	}
	node := corev1ac.Node(w.name).
		WithLabels(w.labels).
		WithAnnotations(map[string]string{kwokNodeAnnotation: "fake", "node.alpha.kubernetes.io/ttl": "0"}).
		WithSpec(spec)
	opts := metav1.ApplyOptions{FieldManager: fieldManager, Force: true}
	if _, err := cs.CoreV1().Nodes().Apply(ctx, node, opts); err != nil {
		return fmt.Errorf("apply node %s: %w", w.name, err)
	}
	status := corev1ac.Node(w.name).WithStatus(corev1ac.NodeStatus().
		WithCapacity(w.allocatable).
		WithAllocatable(w.allocatable).
		WithNodeInfo(corev1ac.NodeSystemInfo().WithKubeletVersion(w.version)))
	if _, err := cs.CoreV1().Nodes().ApplyStatus(ctx, status, opts); err != nil {
		return fmt.Errorf("apply status of node %s: %w", w.name, err)
	}
	return nil
}

// applyRealNode sets a real node's labels as its pool says, after its kubelet registered it
// (a kubelet sets them only when it registers). Its taints are the kubelet's to register and
// the node controller's to change.
func applyRealNode(ctx context.Context, cs kubernetes.Interface, w nodeShape) error {
	node := corev1ac.Node(w.name).WithLabels(w.labels)
	if _, err := cs.CoreV1().Nodes().Apply(ctx, node, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return fmt.Errorf("apply node %s: %w", w.name, err)
	}
	return nil
}

// drainAndDelete cordons a node, evicts its pods through the Eviction API (so that
// PodDisruptionBudgets hold), waits until they are gone, then deletes the node.
func drainAndDelete(ctx context.Context, cs kubernetes.Interface, name string) error {
	cordon := []byte(`{"spec":{"unschedulable":true}}`)
	if _, err := cs.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, cordon, metav1.PatchOptions{FieldManager: fieldManager}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("cordon node %s: %w", name, err)
	}
	deadline := time.Now().Add(drainTimeout)
	for {
		left, blocked, err := evictPods(ctx, cs, name, false)
		if err != nil {
			return err
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			if blocked == nil {
				blocked = fmt.Errorf("%d pods still terminating", left)
			}
			return fmt.Errorf("drain node %s: not done after %s: %w", name, drainTimeout, blocked)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err := cs.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete node %s: %w", name, err)
	}
	return nil
}

// evictPods is one pass of a drain: it asks the Eviction API to evict the pods on the node that
// podsToEvict picks. It returns how many pods the drain still waits for, terminating ones
// included, and why evictions were refused or not asked for: an eviction is only ever asked
// for again, never forced past a PodDisruptionBudget. keepBare is podsToEvict's.
func evictPods(ctx context.Context, cs kubernetes.Interface, node string, keepBare bool) (left int, blocked error, err error) {
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return 0, nil, fmt.Errorf("list pods on node %s: %w", node, err)
	}
	evict, left, bare := podsToEvict(pods.Items, keepBare)
	refused := []error{bare}
	for _, pod := range evict {
		ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name}}
		switch err := cs.CoreV1().Pods(pod.Namespace).EvictV1(ctx, ev); {
		case err == nil || apierrors.IsNotFound(err):
		case apierrors.IsTooManyRequests(err):
			refused = append(refused, budgetRefusal(ctx, cs, pod, err))
		default:
			refused = append(refused, fmt.Errorf("evict pod %s/%s: %w", pod.Namespace, pod.Name, err))
		}
	}
	return left, errors.Join(refused...), nil
}

// podsToEvict decides one pass of a drain over the pods on a node: which to evict, and how many
// the drain waits for (those, the terminating ones, and any it keeps). A drain leaves alone a
// DaemonSet's pod, which would come back, a mirror pod, which its kubelet owns, and a finished
// one. With keepBare (an upgrade's drain), a pod that no controller owns would be evicted for
// good: like kubectl drain without --force, the pass then evicts nothing, and bare names those
// pods. The node goes away after a scale-down's drain, which therefore evicts them.
func podsToEvict(pods []corev1.Pod, keepBare bool) (evict []*corev1.Pod, left int, bare error) {
	var kept []error
	for i := range pods {
		pod := &pods[i]
		if belongsToNode(pod) || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		left++
		switch {
		case pod.DeletionTimestamp != nil:
		case keepBare && metav1.GetControllerOf(pod) == nil:
			kept = append(kept, fmt.Errorf("pod %s/%s has no controller and would not come back; delete it or move it, then the upgrade goes on", pod.Namespace, pod.Name))
		default:
			evict = append(evict, pod)
		}
	}
	if len(kept) > 0 {
		return nil, left, errors.Join(kept...)
	}
	return evict, left, nil
}

// budgetRefusal explains an eviction refused with 429, naming the PodDisruptionBudgets of the
// pod's namespace that select it.
func budgetRefusal(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, refusal error) error {
	pdbs, err := cs.PolicyV1().PodDisruptionBudgets(pod.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("evict pod %s/%s: %w", pod.Namespace, pod.Name, refusal)
	}
	var names []string
	for _, pdb := range pdbs.Items {
		// In policy/v1 a null selector selects no pod and an empty one every pod.
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err == nil && sel.Matches(labels.Set(pod.Labels)) {
			names = append(names, fmt.Sprintf("%s/%s (%d disruptions allowed)", pdb.Namespace, pdb.Name, pdb.Status.DisruptionsAllowed))
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("evict pod %s/%s: %w", pod.Namespace, pod.Name, refusal)
	}
	return fmt.Errorf("pod %s/%s may not be evicted now: PodDisruptionBudget %s; give its workload more ready replicas, or relax or delete the budget",
		pod.Namespace, pod.Name, strings.Join(names, ", "))
}

// belongsToNode says whether a pod is its node's own, a DaemonSet's or a static pod's mirror: a
// drain leaves it, and it leaves its node idle.
func belongsToNode(pod *corev1.Pod) bool {
	if _, mirror := pod.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return true
	}
	for _, o := range pod.OwnerReferences {
		if o.Kind == "DaemonSet" {
			return true
		}
	}
	return false
}
