package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	resourcehelper "k8s.io/component-helpers/resource"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/autoscale"
	"github.com/convoy-dev/convoy/internal/provider"
)

// defaultIdle is how long an autoscaled pool's last node runs nothing but DaemonSet pods
// before it goes, when the pool does not say.
const defaultIdle = 2 * time.Minute

// autoscaleEvery is how often the runtime looks at an autoscaled cluster's pending pods and
// idle nodes: nothing signals the runtime when a pod finds no room.
const autoscaleEvery = 5 * time.Second

// scaler keeps the counts the runtime chose for its autoscaled pools (in autoscale.json, so
// that a restarted runtime keeps them) and since when each node has been idle (in memory: a
// restart only makes a node wait its idle time again).
type scaler struct {
	mu     sync.Mutex
	counts map[string]int32
	idle   map[string]time.Time
}

func (d dir) autoscale() string { return filepath.Join(string(d), "autoscale.json") }

// autoscaled says whether the cluster has an autoscaled pool.
func autoscaled(c *v1alpha1.Cluster) bool {
	for _, p := range c.Spec.NodePools {
		if p.Autoscale != nil {
			return true
		}
	}
	return false
}

// apply gives c's autoscaled pools the counts the runtime chose (a pool it has not looked at
// yet keeps its spec's count, inside its bounds).
func (s *scaler) apply(c *v1alpha1.Cluster) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range c.Spec.NodePools {
		if a := p.Autoscale; a != nil {
			n, ok := s.counts[p.Name]
			if !ok {
				n = p.Count
			}
			c.Spec.NodePools[i].Count = min(max(n, a.Min), a.Max)
		}
	}
}

// load reads the counts a runtime before this one chose.
func (s *scaler) load(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts = map[string]int32{}
	if err := readJSON(path, &s.counts); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// autoscalePools decides each autoscaled pool's count from the member's pending pods and
// idle nodes (autoscale.Decide), keeps the new counts, and says whether one moved.
func (r *Runtime) autoscalePools(ctx context.Context, cs kubernetes.Interface, now time.Time) (bool, error) {
	r.mu.Lock()
	c := r.cfg.cluster()
	// Nodes come and go in an upgrade: the autoscaler waits until it is done.
	upgrading := r.nodesUpgrading != "" || r.cpVersion != r.cfg.KubernetesVersion
	r.mu.Unlock()
	if !autoscaled(c) {
		return false, nil
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, err
	}
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, err
	}
	busy := map[string]bool{}
	var pending []autoscale.Pending
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if p.Spec.NodeName != "" {
			if !belongsToNode(&p) {
				busy[p.Spec.NodeName] = true
			}
			continue
		}
		if belongsToNode(&p) {
			continue // it waits for its own node, not for room
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable {
				if tied, err := tiedToNode(ctx, cs, &p); err != nil || tied {
					continue // a new node does not help a pod whose volume lives on another
				}
				pending = append(pending, autoscale.Pending{Name: p.Namespace + "/" + p.Name, Requests: resourcehelper.PodRequests(&p, resourcehelper.PodResourcesOptions{}),
					NodeSelector: p.Spec.NodeSelector, Affinity: p.Spec.Affinity, Tolerations: p.Spec.Tolerations})
			}
		}
	}
	r.scale.mu.Lock()
	defer r.scale.mu.Unlock()
	if r.scale.idle == nil {
		r.scale.idle = map[string]time.Time{}
	}
	present := map[string]bool{}
	for _, n := range nodes.Items {
		present[n.Name] = true
	}
	for name := range r.scale.idle {
		if !present[name] { // gone: a node of that name that comes back starts its idle time anew
			delete(r.scale.idle, name)
		}
	}
	moved := false
	for i, pool := range c.Spec.NodePools {
		a := pool.Autoscale
		if a == nil {
			continue
		}
		count, ok := r.scale.counts[pool.Name]
		if !ok {
			count = pool.Count
		}
		in := autoscale.Pool{Name: pool.Name, Min: a.Min, Max: a.Max, Count: count, Idle: defaultIdle, Hold: upgrading}
		if a.IdleSeconds != nil {
			in.Idle = time.Duration(*a.IdleSeconds) * time.Second
		}
		// The next node's shape: the pool one node larger, and its last node.
		grown := c.DeepCopy()
		grown.Spec.NodePools[i].Count = count + 1
		next := nodeName(c.Name, pool.Name, int(count))
		for _, w := range desiredNodes(grown) {
			if w.name == next {
				in.Allocatable, in.NodeName, in.Labels, in.Taints = w.allocatable, w.name, w.labels, w.taints
			}
		}
		var members []autoscale.Node
		for _, n := range nodes.Items {
			if n.Labels[provider.LabelPool] != pool.Name {
				continue
			}
			i, err := strconv.Atoi(n.Name[strings.LastIndex(n.Name, "-")+1:])
			if err != nil {
				continue
			}
			ready, since := nodeReady(&n)
			node := autoscale.Node{Index: i, Ready: ready, ReadySince: since}
			if node.Ready && len(n.Status.Allocatable) > 0 {
				// What a node of the pool offers is what one reports: a real node's kubelet
				// offers this machine's, not the pool's declared shape.
				in.Allocatable = n.Status.Allocatable
			}
			switch since, seen := r.scale.idle[n.Name]; {
			case busy[n.Name]:
				delete(r.scale.idle, n.Name)
			case seen:
				node.IdleSince = since
			default:
				r.scale.idle[n.Name], node.IdleSince = now, now
			}
			members = append(members, node)
		}
		d := autoscale.Decide(in, members, pending, now)
		if d.Count != count {
			r.log.Info("autoscaling a node pool", "pool", pool.Name, "from", count, "to", d.Count, "why", d.Reason)
			moved = true
		}
		if d.For != "" { // one new node for a pod, not one in every pool it fits
			pending = slices.DeleteFunc(pending, func(p autoscale.Pending) bool { return p.Name == d.For })
		}
		r.scale.counts[pool.Name] = d.Count
	}
	if moved {
		if err := writeJSON(r.dir.autoscale(), r.scale.counts); err != nil {
			return moved, fmt.Errorf("keep the autoscaled counts: %w", err)
		}
	}
	return moved, nil
}

// tiedToNode says whether a pod mounts a claim bound to a volume that only some nodes reach
// (the storage provisioner's volumes live on one node): a new node would not run it.
func tiedToNode(ctx context.Context, cs kubernetes.Interface, p *corev1.Pod) (bool, error) {
	for _, v := range p.Spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		pvc, err := cs.CoreV1().PersistentVolumeClaims(p.Namespace).Get(ctx, v.PersistentVolumeClaim.ClaimName, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("get claim %s/%s: %w", p.Namespace, v.PersistentVolumeClaim.ClaimName, err)
		}
		if pvc.Spec.VolumeName == "" {
			continue // bound where the pod is scheduled
		}
		pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("get volume %s: %w", pvc.Spec.VolumeName, err)
		}
		if pv.Spec.NodeAffinity != nil && pv.Spec.NodeAffinity.Required != nil {
			return true, nil
		}
	}
	return false, nil
}

// nodeReady says whether a node takes pods: schedulable, its kubelet Ready, and without a
// taint that keeps pods off a node that is not (yet); and since when it has been Ready.
func nodeReady(n *corev1.Node) (bool, time.Time) {
	if n.Spec.Unschedulable {
		return false, time.Time{}
	}
	for _, t := range n.Spec.Taints {
		switch t.Key {
		case corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable, "node.cloudprovider.kubernetes.io/uninitialized":
			return false, time.Time{}
		}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue, c.LastTransitionTime.Time
		}
	}
	return false, time.Time{}
}
