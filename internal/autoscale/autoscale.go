// Package autoscale decides how many nodes an autoscaled node pool should have, as
// cluster-autoscaler does for a node group: one more when a pod waits for room that a new node
// of the pool would give, one fewer when the pool's last node has run nothing but DaemonSet
// pods for the pool's idle time. It is pure: the pool, its nodes and the pending pods, as the
// caller observed them, and the time go in; a count and the reason come out. The local
// provider's runtime is its only caller; it persists the count and drains a node before it
// goes (highest index first, as every scale-in does).
package autoscale

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
)

// Settle is how long every node of a pool must have been Ready before a pending pod adds a
// node: the scheduler tries the pods that waited again once a node is Ready, and a pod it
// has not placed by then found no room.
const Settle = 10 * time.Second

// Pool is an autoscaled node pool and what a node of it offers.
type Pool struct {
	Name            string
	Min, Max, Count int32
	// Idle is how long the pool's last node must run nothing but DaemonSet pods before it
	// goes.
	Idle time.Duration
	// Hold stops every change while the cluster's nodes are being upgraded.
	Hold bool
	// Allocatable is what one node of the pool offers; NodeName, Labels and Taints are the
	// next node's.
	Allocatable corev1.ResourceList
	NodeName    string
	Labels      map[string]string
	Taints      []corev1.Taint
}

// Node is one node of the pool.
type Node struct {
	// Index is the node's place in the pool (its name's last part): the highest goes first.
	Index int
	// Ready is a schedulable node whose kubelet says Ready, without a taint that keeps pods
	// off a node that is not; ReadySince is when it last became Ready.
	Ready      bool
	ReadySince time.Time
	// IdleSince is when the node last ran a pod other than a DaemonSet's or a mirror pod;
	// zero while it runs one.
	IdleSince time.Time
}

// Pending is a pod the scheduler found no room for.
type Pending struct {
	Name         string
	Requests     corev1.ResourceList
	NodeSelector map[string]string
	// Affinity's required node affinity must match the next node (DaemonSet pods name a node
	// there, so theirs never does).
	Affinity    *corev1.Affinity
	Tolerations []corev1.Toleration
}

// Decision is the pool's count, and why it moved (empty when it did not).
type Decision struct {
	Count  int32
	Reason string
	// For is the pending pod a new node is for, so that another pool does not grow for it too.
	For string
	// RecheckAfter is when an idle node's time is up, if one is waiting for it; 0 otherwise.
	RecheckAfter time.Duration
}

// Decide is the pool's count now. A pool that is not at its count yet (a node still to join,
// or one still draining), or a node that is not Ready, holds every change: the pending pods
// may fit on the node that is coming once it is Ready.
func Decide(p Pool, nodes []Node, pending []Pending, now time.Time) Decision {
	d := Decision{Count: min(max(p.Count, p.Min), p.Max)}
	if d.Count != p.Count {
		d.Reason = fmt.Sprintf("pool %s has %d nodes, outside its bounds %d to %d", p.Name, p.Count, p.Min, p.Max)
		return d
	}
	if p.Hold || len(nodes) != int(d.Count) {
		return d
	}
	var settled time.Time // when the last node became Ready
	for _, n := range nodes {
		if !n.Ready {
			return d
		}
		if n.ReadySince.After(settled) {
			settled = n.ReadySince
		}
	}
	for _, pod := range pending {
		if fits(p, pod) {
			if left := settled.Add(Settle).Sub(now); left > 0 {
				d.RecheckAfter = left // the scheduler may yet place it on a node that just came
				return d
			}
			if d.Count < p.Max {
				d.Count++
				d.For = pod.Name
				d.Reason = fmt.Sprintf("pod %s waits for room a new node of pool %s gives", pod.Name, p.Name)
			}
			return d // a pod that fits the pool keeps its nodes, at max too
		}
	}
	if d.Count <= p.Min || len(nodes) == 0 {
		return d
	}
	last := nodes[0]
	for _, n := range nodes[1:] {
		if n.Index > last.Index {
			last = n
		}
	}
	if last.IdleSince.IsZero() {
		return d
	}
	if left := last.IdleSince.Add(p.Idle).Sub(now); left > 0 {
		d.RecheckAfter = left
		return d
	}
	d.Count--
	d.Reason = fmt.Sprintf("the last node of pool %s has run no pod but DaemonSets' for %s", p.Name, p.Idle)
	return d
}

// fits says whether the pod would run on an empty new node of the pool: its node selector and
// required node affinity match the next node's name and labels, it tolerates the node's
// NoSchedule and NoExecute taints, and its requests fit what the node offers. (Inter-pod
// affinity is left out: an empty node breaks no anti-affinity.)
func fits(p Pool, pod Pending) bool {
	for k, v := range pod.NodeSelector {
		if p.Labels[k] != v {
			return false
		}
	}
	next := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: p.NodeName, Labels: p.Labels}}
	if ok, err := nodeaffinity.GetRequiredNodeAffinity(&corev1.Pod{Spec: corev1.PodSpec{Affinity: pod.Affinity}}).Match(next); err != nil || !ok {
		return false
	}
	for _, t := range p.Taints {
		if t.Effect == corev1.TaintEffectPreferNoSchedule {
			continue
		}
		tolerated := false
		for _, tol := range pod.Tolerations {
			if tolerates(tol, t) {
				tolerated = true
				break
			}
		}
		if !tolerated {
			return false
		}
	}
	for name, want := range pod.Requests {
		have, ok := p.Allocatable[name]
		if !ok {
			have = resource.Quantity{}
		}
		if want.Cmp(have) > 0 {
			return false
		}
	}
	return true
}

// tolerates says whether a toleration matches a taint, by the rules the scheduler applies
// (the comparison operators aside).
func tolerates(tol corev1.Toleration, t corev1.Taint) bool {
	if tol.Effect != "" && tol.Effect != t.Effect {
		return false
	}
	if tol.Key == "" {
		return tol.Operator == corev1.TolerationOpExists
	}
	if tol.Key != t.Key {
		return false
	}
	return tol.Operator == corev1.TolerationOpExists || tol.Value == t.Value
}
