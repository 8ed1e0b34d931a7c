package local

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/kubernetes"

	"github.com/convoy-dev/convoy/internal/provider"
)

// A cluster's upgrade moves its control plane first (Runtime.reload), then its real nodes, one
// at a time (upgradeNodes); kwok's simulated nodes report the control plane's version as soon as
// it runs it (syncNodes). Each pass of the runtime's node loop takes the next step from what the
// API server and the host say, so that a runtime or hub that restarts goes on where it was.

const (
	// annotationUpgradeCordoned is on a node that an upgrade cordoned, with the version it
	// moves the node to: a runtime started since uncordons the node after, and a node that
	// someone else cordoned, which lacks it, stays cordoned.
	annotationUpgradeCordoned = "convoy.dev/upgrade-cordoned"
	// nodeComeBack is how long a node restarted on a new version has to be Ready on it before
	// the upgrade reports it blocked.
	nodeComeBack = 5 * time.Minute
)

// nodeUpgrader runs real nodes on a version (the runtime's realNodes).
type nodeUpgrader interface {
	// runs says which Kubernetes version's kubelet and kube-proxy the node runs, and since when
	// its kubelet runs; "" when it has not joined.
	runs(name string) (version string, since time.Time)
	// upgrade restarts the node's kubelet and kube-proxy on the version's binaries.
	upgrade(ctx context.Context, name, version string) error
	// kubeletLog is the end of the node's kubelet log.
	kubeletLog(name string) string
}

// upgradeState is what an upgrade of the nodes is doing ("" once they run the version), and
// why it cannot go on without help ("" unless it cannot).
type upgradeState struct{ upgrading, blocked string }

// nodeStep is what the upgrade does next with one real node.
type nodeStep int

const (
	nodeDone     nodeStep = iota // it runs the version (and stays cordoned if someone else cordoned it)
	nodeStarting                 // it has not joined: the node loop starts it on the control plane's version
	nodeDrain                    // cordon and drain it, then restart its kubelet and kube-proxy on the version
	nodeWait                     // it was restarted on the version: wait until it is Ready and reports it
	nodeUncordon                 // the upgrade cordoned it and is done with it
)

// stepOf decides the next step for node n, whose kubelet runs the version running since since.
// want is the version the cluster moves to, and wantKubelet what its kubelet reports.
func stepOf(n *corev1.Node, running string, since time.Time, want, wantKubelet string) nodeStep {
	cordoned := n.Annotations[annotationUpgradeCordoned] != ""
	switch {
	case running == "":
		return nodeStarting
	case running != want:
		return nodeDrain
	case n.Status.NodeInfo.KubeletVersion != wantKubelet, cordoned && !readySince(n, since):
		return nodeWait
	case cordoned:
		return nodeUncordon
	}
	return nodeDone
}

// readySince reports whether the node's Ready condition is True in a status posted after
// since: the condition a kubelet posted before its restart says nothing of the new one.
func readySince(n *corev1.Node, since time.Time) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			// The API keeps whole seconds.
			return c.Status == corev1.ConditionTrue && !c.LastHeartbeatTime.Time.Before(since.Truncate(time.Second))
		}
	}
	return false
}

// upgradeNodes takes the next step of moving the cluster's real nodes to want, which the
// control plane runs already: one node at a time, in name order, it cordons the node, drains it
// through the Eviction API, restarts its kubelet and kube-proxy on want's binaries, waits until
// it is Ready and reports wantKubelet, and uncordons it. It never forces an eviction: one that a
// PodDisruptionBudget refuses is asked for again at the next pass, and reported as blocked.
//
// joinWait, which the caller keeps across passes, is when each node that has not joined was
// first found so: such a node has no kubelet to say since when it is waited for. syncErr is why
// the last syncNodes failed, if it did, which is why a node does not join.
func upgradeNodes(ctx context.Context, cs kubernetes.Interface, host nodeUpgrader, want, wantKubelet string, now time.Time, joinWait map[string]time.Time, syncErr error) (upgradeState, error) {
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: provider.LabelNodeKind + "=real"})
	if err != nil {
		return upgradeState{upgrading: "upgrading the nodes to " + want}, fmt.Errorf("list nodes: %w", err)
	}
	nodes := list.Items
	slices.SortFunc(nodes, func(a, b corev1.Node) int { return strings.Compare(a.Name, b.Name) })
	// A node that joined, or left, is waited for afresh if it is found not joined again.
	notJoined := map[string]bool{}
	for _, n := range nodes {
		if v, _ := host.runs(n.Name); v == "" {
			notJoined[n.Name] = true
		}
	}
	maps.DeleteFunc(joinWait, func(name string, _ time.Time) bool { return !notJoined[name] })
	for i := range nodes {
		n := &nodes[i]
		running, since := host.runs(n.Name)
		doing := fmt.Sprintf("upgrading node %s (%d of %d)", n.Name, i+1, len(nodes))
		switch stepOf(n, running, since, want, wantKubelet) {
		case nodeDone:
			continue
		case nodeStarting:
			st := upgradeState{upgrading: doing + ": waiting for it to join"}
			if _, ok := joinWait[n.Name]; !ok {
				joinWait[n.Name] = now
			}
			if now.Sub(joinWait[n.Name]) > nodeComeBack {
				why := "its kubelet has not started"
				if syncErr != nil {
					why = syncErr.Error()
				}
				st.blocked = fmt.Sprintf("node %s has not joined within %s, and the upgrade to %s waits for it: %s; fix that, or take the node out of its pool",
					n.Name, nodeComeBack, want, why)
			}
			return st, nil
		case nodeUncordon:
			if err := patchNode(ctx, cs, n, nil, nil); err != nil {
				return upgradeState{upgrading: doing + ": uncordoning"}, unlessConflict(err)
			}
			continue
		case nodeWait:
			st := upgradeState{upgrading: fmt.Sprintf("%s: waiting for it to be Ready on %s", doing, want)}
			if now.Sub(since) > nodeComeBack {
				st.blocked = fmt.Sprintf("node %s did not come back Ready on %s within %s: %s",
					n.Name, want, nodeComeBack, notReadyReason(n, wantKubelet, host.kubeletLog(n.Name)))
			}
			return st, nil
		case nodeDrain:
			return drainAndUpgrade(ctx, cs, host, n, want, doing)
		}
	}
	return upgradeState{}, nil
}

// drainAndUpgrade cordons node n, evicts its pods, and once they are gone restarts its kubelet
// and kube-proxy on want; doing says which node of how many it is.
func drainAndUpgrade(ctx context.Context, cs kubernetes.Interface, host nodeUpgrader, n *corev1.Node, want, doing string) (upgradeState, error) {
	// A node that someone else cordoned stays theirs: it is drained, not annotated, and stays
	// cordoned after.
	if !n.Spec.Unschedulable {
		if err := patchNode(ctx, cs, n, &want, new(true)); err != nil {
			return upgradeState{upgrading: doing + ": cordoning"}, unlessConflict(err)
		}
	}
	// A pod no controller owns would not come back elsewhere: the upgrade waits for its owner.
	left, refused, err := evictPods(ctx, cs, n.Name, true)
	if err != nil {
		return upgradeState{upgrading: doing + ": draining"}, err
	}
	if left > 0 {
		st := upgradeState{upgrading: fmt.Sprintf("%s: draining, %d pods left", doing, left)}
		if refused != nil {
			st.blocked = fmt.Sprintf("node %s cannot be drained for the upgrade to %s (evictions are asked for again every few seconds, never forced): %v",
				n.Name, want, refused)
		}
		return st, nil
	}
	if err := host.upgrade(ctx, n.Name, want); err != nil {
		return upgradeState{upgrading: doing + ": restarting its kubelet and kube-proxy"}, err
	}
	return upgradeState{upgrading: fmt.Sprintf("%s: restarted on %s", doing, want)}, nil
}

// patchNode sets or, given nils, removes a node's annotationUpgradeCordoned and unschedulable,
// if the node is still as read (else a conflict): a node cordoned meanwhile by someone else is
// not taken for the upgrade's.
func patchNode(ctx context.Context, cs kubernetes.Interface, n *corev1.Node, cordonedFor *string, unschedulable *bool) error {
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": n.ResourceVersion, "annotations": map[string]any{annotationUpgradeCordoned: cordonedFor}},
		"spec":     map[string]any{"unschedulable": unschedulable},
	})
	if err != nil {
		return err
	}
	if _, err := cs.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager}); err != nil {
		return fmt.Errorf("cordon or uncordon node %s for the upgrade: %w", n.Name, err)
	}
	return nil
}

// unlessConflict is err, but nil for a conflict: the object changed since it was read, and
// the next pass looks again.
func unlessConflict(err error) error {
	if apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// notReadyReason says why a restarted node is not Ready on its new version: its Ready
// condition's message once its new kubelet reports, else the end of the kubelet's log.
func notReadyReason(n *corev1.Node, wantKubelet, kubeletLog string) string {
	if n.Status.NodeInfo.KubeletVersion == wantKubelet {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue && c.Message != "" {
				return "Ready is " + string(c.Status) + ": " + c.Message
			}
		}
	}
	if tail := lastLines(kubeletLog, 3); tail != "" {
		return "its kubelet logs: " + strings.ReplaceAll(tail, "\n", " | ")
	}
	return fmt.Sprintf("its kubelet reports %q and has logged nothing", n.Status.NodeInfo.KubeletVersion)
}

// maxKubeletSkew is how many minor versions a kubelet may be older than its API server (the
// Kubernetes version skew policy); it may never be newer.
const maxKubeletSkew = 3

// checkSkew explains why the control plane may not move from the versions in from (what it
// runs, and what it was last asked to run) to to, with nodes whose kubelets report the versions
// in kubelets (by node), or returns nil. The control plane never moves back, not even a patch
// (an API server may have written what an older one cannot read), and moves one minor version
// at a time, never below a kubelet or more than maxKubeletSkew minor versions above one: its
// kube-controller-manager and kube-scheduler, which restart after the API server, and its nodes,
// which move after it, stay within the skew policy throughout.
func checkSkew(from []string, to string, kubelets map[string]string) error {
	target, err := utilversion.ParseGeneric(to)
	if err != nil {
		return fmt.Errorf("version %q: %w", to, err)
	}
	minor := func(v *utilversion.Version) string { return fmt.Sprintf("v%d.%d", v.Major(), v.Minor()) }
	for _, f := range from {
		v, err := utilversion.ParseGeneric(f)
		if err != nil {
			continue
		}
		switch {
		case target.LessThan(v):
			return fmt.Errorf("the control plane runs or is moving to %s, and Kubernetes has no downgrades: it cannot go back to %s; pick %s or newer", f, to, f)
		case v.Major() == target.Major() && target.Minor() > v.Minor()+1:
			return fmt.Errorf("the control plane runs %s and moves one minor version at a time: upgrade to v%d.%d first, then to %s", f, v.Major(), v.Minor()+1, to)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(kubelets)) {
		v, err := utilversion.ParseGeneric(kubelets[name])
		if err != nil || v.Major() != target.Major() {
			continue
		}
		switch {
		case v.Minor() > target.Minor():
			return fmt.Errorf("node %s runs kubelet %s, and a kubelet may not be newer than its API server; pick %s.x or newer", name, kubelets[name], minor(v))
		case target.Minor() > v.Minor()+maxKubeletSkew:
			return fmt.Errorf("node %s runs kubelet %s, and a kubelet may be at most %d minor versions older than its API server: let the nodes' upgrade finish (see the cluster's status) before moving on to %s",
				name, kubelets[name], maxKubeletSkew, to)
		}
	}
	return nil
}
