package local

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/convoy-dev/convoy/internal/provider"
)

func TestStepOf(t *testing.T) {
	restarted := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	node := func(kubelet string, cordonedFor string, ready bool, heartbeat time.Time) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}}
		if cordonedFor != "" {
			n.Annotations = map[string]string{annotationUpgradeCordoned: cordonedFor}
			n.Spec.Unschedulable = true
		}
		n.Status.NodeInfo.KubeletVersion = kubelet
		status := corev1.ConditionFalse
		if ready {
			status = corev1.ConditionTrue
		}
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status, LastHeartbeatTime: metav1.NewTime(heartbeat)}}
		return n
	}
	after, before := restarted.Add(3*time.Second), restarted.Add(-time.Minute)
	for _, tc := range []struct {
		name    string
		node    *corev1.Node
		running string
		want    nodeStep
	}{
		{"on the version", node("v1.37.2", "", true, before), "v1.37.2", nodeDone},
		{"not joined yet", node("v1.36.3", "", true, before), "", nodeStarting},
		{"runs the old version", node("v1.36.3", "", true, before), "v1.36.3", nodeDrain},
		{"cordoned for the upgrade, still old", node("v1.36.3", "v1.37.2", true, before), "v1.36.3", nodeDrain},
		// Its API object still shows the kubelet before the restart.
		{"restarted, old version reported", node("v1.36.3", "v1.37.2", true, before), "v1.37.2", nodeWait},
		{"restarted, Ready only before the restart", node("v1.37.2", "v1.37.2", true, before), "v1.37.2", nodeWait},
		{"restarted, NotReady", node("v1.37.2", "v1.37.2", false, after), "v1.37.2", nodeWait},
		{"restarted and Ready", node("v1.37.2", "v1.37.2", true, after), "v1.37.2", nodeUncordon},
		// A node someone else cordoned is never uncordoned, and not waited on once it reports.
		{"cordoned by a user, on the version", func() *corev1.Node {
			n := node("v1.37.2", "", false, before)
			n.Spec.Unschedulable = true
			return n
		}(), "v1.37.2", nodeDone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := stepOf(tc.node, tc.running, restarted, "v1.37.2", "v1.37.2"); got != tc.want {
				t.Errorf("stepOf = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestCheckSkew(t *testing.T) {
	for _, tc := range []struct {
		name     string
		from     []string
		to       string
		kubelets map[string]string
		want     string // in the error; "" for none
	}{
		{"one minor up", []string{"v1.36.3"}, "v1.37.2", map[string]string{"a": "v1.36.3"}, ""},
		{"a patch", []string{"v1.37.1"}, "v1.37.2", map[string]string{"a": "v1.37.1"}, ""},
		{"two minors at once", []string{"v1.35.0"}, "v1.37.2", nil, "upgrade to v1.36 first"},
		{"mid-upgrade, the control plane behind its config", []string{"v1.37.2", "v1.36.3"}, "v1.38.0", nil, "upgrade to v1.37 first"},
		{"back a minor", []string{"v1.37.2"}, "v1.36.3", nil, "Kubernetes has no downgrades"},
		{"back a patch", []string{"v1.37.3"}, "v1.37.2", nil, "Kubernetes has no downgrades: it cannot go back to v1.37.2; pick v1.37.3 or newer"},
		// The API server may have restarted on what it was asked to run already.
		{"back below what it was asked to run", []string{"v1.37.3", "v1.37.2"}, "v1.37.2", nil, "Kubernetes has no downgrades"},
		{"back a major", []string{"v2.0.0"}, "v1.37.2", nil, "Kubernetes has no downgrades"},
		{"the same version", []string{"v1.37.2"}, "v1.37.2", nil, ""},
		{"below a kubelet", []string{"v1.36.3"}, "v1.36.3", map[string]string{"a": "v1.37.0"}, "node a runs kubelet v1.37.0"},
		{"kubelets too far behind", []string{"v1.37.2"}, "v1.38.0", map[string]string{"a": "v1.37.2", "b": "v1.34.1"}, "node b runs kubelet v1.34.1"},
		{"kubelets at the limit", []string{"v1.37.2"}, "v1.38.0", map[string]string{"b": "v1.35.1"}, ""},
		{"a node that has not reported", []string{"v1.37.2"}, "v1.38.0", map[string]string{"b": ""}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkSkew(tc.from, tc.to, tc.kubelets)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("checkSkew = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("checkSkew = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// fakeUpgrader is a nodeUpgrader of nodes that run what versions says.
type fakeUpgrader struct {
	versions map[string]string
	since    time.Time
	upgraded []string
}

func (f *fakeUpgrader) runs(name string) (string, time.Time) { return f.versions[name], f.since }
func (f *fakeUpgrader) kubeletLog(string) string {
	return "I1205 started\nE1205 failed to run Kubelet: no such cgroup\n"
}
func (f *fakeUpgrader) upgrade(_ context.Context, name, version string) error {
	f.upgraded = append(f.upgraded, name)
	f.versions[name] = version
	return nil
}

// The nodes move in name order, one at a time: a node that is done is passed over, one that a
// user cordoned is drained and upgraded but never taken for the upgrade's, one that the upgrade
// cordoned is uncordoned once it is Ready on the version, even by a runtime started since, and
// one that does not come back in time blocks the upgrade with its kubelet's last words.
func TestUpgradeNodes(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	realNode := func(name, kubelet string, modify func(*corev1.Node)) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{provider.LabelNodeKind: "real"}}}
		n.Status.NodeInfo.KubeletVersion = kubelet
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.NewTime(now)}}
		if modify != nil {
			modify(n)
		}
		return n
	}
	userCordoned := func(n *corev1.Node) { n.Spec.Unschedulable = true }
	ours := func(n *corev1.Node) {
		n.Spec.Unschedulable = true
		n.Annotations = map[string]string{annotationUpgradeCordoned: "v1.37.2"}
	}

	cs := fake.NewClientset(realNode("c-real-0", "v1.37.2", nil), realNode("c-real-1", "v1.36.3", userCordoned), realNode("c-real-2", "v1.36.3", nil))
	host := &fakeUpgrader{versions: map[string]string{"c-real-0": "v1.37.2", "c-real-1": "v1.36.3", "c-real-2": "v1.36.3"}, since: now.Add(-time.Hour)}
	st, err := upgradeNodes(ctx, cs, host, "v1.37.2", "v1.37.2", now, map[string]time.Time{}, nil)
	if err != nil || st.upgrading != "upgrading node c-real-1 (2 of 3): restarted on v1.37.2" || st.blocked != "" {
		t.Fatalf("first pass: %+v, %v", st, err)
	}
	if !slices.Equal(host.upgraded, []string{"c-real-1"}) {
		t.Errorf("upgraded %v, want c-real-1 alone", host.upgraded)
	}
	n, _ := cs.CoreV1().Nodes().Get(ctx, "c-real-1", metav1.GetOptions{})
	if !n.Spec.Unschedulable || n.Annotations[annotationUpgradeCordoned] != "" {
		t.Errorf("the node a user cordoned: unschedulable %v, annotations %v; want it cordoned, not as the upgrade's", n.Spec.Unschedulable, n.Annotations)
	}

	// Its kubelet has not reported the version yet: the others wait, and after nodeComeBack
	// the upgrade is blocked.
	host.since = now.Add(-nodeComeBack - time.Second)
	st, err = upgradeNodes(ctx, cs, host, "v1.37.2", "v1.37.2", now, map[string]time.Time{}, nil)
	if err != nil || !strings.HasPrefix(st.upgrading, "upgrading node c-real-1 (2 of 3): waiting") ||
		st.blocked != "node c-real-1 did not come back Ready on v1.37.2 within 5m0s: its kubelet logs: I1205 started | E1205 failed to run Kubelet: no such cgroup" {
		t.Fatalf("a node that does not come back: %+v, %v", st, err)
	}
	if len(host.upgraded) != 1 {
		t.Errorf("upgraded %v while a node had not come back", host.upgraded)
	}

	// A runtime started since finds the node it cordoned Ready on the version: it uncordons it.
	cs = fake.NewClientset(realNode("c-real-0", "v1.37.2", ours))
	host = &fakeUpgrader{versions: map[string]string{"c-real-0": "v1.37.2"}, since: now.Add(-time.Minute)}
	if st, err := upgradeNodes(ctx, cs, host, "v1.37.2", "v1.37.2", now, map[string]time.Time{}, nil); err != nil || st != (upgradeState{}) {
		t.Fatalf("resumed pass: %+v, %v", st, err)
	}
	n, _ = cs.CoreV1().Nodes().Get(ctx, "c-real-0", metav1.GetOptions{})
	if n.Spec.Unschedulable || n.Annotations[annotationUpgradeCordoned] != "" {
		t.Errorf("the upgraded node: unschedulable %v, annotations %v; want it uncordoned", n.Spec.Unschedulable, n.Annotations)
	}
}

// A node that does not join holds the upgrade for nodeComeBack from when the upgrade first found
// it so, then blocks it with why the sync failed; found joined, it is waited for afresh.
func TestUpgradeNodesWaitsForANodeToJoin(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "c-real-0", Labels: map[string]string{provider.LabelNodeKind: "real"}}}
	n.Status.NodeInfo.KubeletVersion = "v1.36.3"
	cs := fake.NewClientset(n)
	host := &fakeUpgrader{versions: map[string]string{}}
	joinWait := map[string]time.Time{}
	syncErr := errors.New("node c-real-0: containerd did not start")

	pass := func(at time.Time) upgradeState {
		t.Helper()
		st, err := upgradeNodes(ctx, cs, host, "v1.37.2", "v1.37.2", at, joinWait, syncErr)
		if err != nil || st.upgrading != "upgrading node c-real-0 (1 of 1): waiting for it to join" {
			t.Fatalf("pass at %s: %+v, %v", at, st, err)
		}
		return st
	}
	if st := pass(now); st.blocked != "" {
		t.Errorf("first pass blocked: %q", st.blocked)
	}
	if st := pass(now.Add(nodeComeBack)); st.blocked != "" {
		t.Errorf("blocked at the limit: %q", st.blocked)
	}
	if st := pass(now.Add(nodeComeBack + time.Second)); st.blocked != "node c-real-0 has not joined within 5m0s, and the upgrade to v1.37.2 waits for it: "+
		"node c-real-0: containerd did not start; fix that, or take the node out of its pool" {
		t.Errorf("past the limit: blocked %q", st.blocked)
	}

	// It joins, on its old version, and later drops out again.
	host.versions["c-real-0"] = "v1.36.3"
	if _, err := upgradeNodes(ctx, cs, host, "v1.37.2", "v1.37.2", now.Add(time.Hour), joinWait, nil); err != nil {
		t.Fatal(err)
	}
	if len(joinWait) != 0 {
		t.Errorf("joinWait = %v after the node joined, want it empty", joinWait)
	}
	delete(host.versions, "c-real-0")
	if st := pass(now.Add(2 * time.Hour)); st.blocked != "" {
		t.Errorf("a node that dropped out again is blocked at once: %q", st.blocked)
	}
}

// A pod that no controller owns holds the upgrade's drain, named in blocked, and none of the
// node's pods is evicted meanwhile.
func TestUpgradeNodesKeepsABarePod(t *testing.T) {
	ctx := context.Background()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "c-real-0", Labels: map[string]string{provider.LabelNodeKind: "real"}}}
	n.Status.NodeInfo.KubeletVersion = "v1.36.3"
	onNode := func(name string, owners ...metav1.OwnerReference) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, OwnerReferences: owners}}
		p.Spec.NodeName, p.Status.Phase = n.Name, corev1.PodRunning
		return p
	}
	cs := fake.NewClientset(n, onNode("bare"), onNode("web", metav1.OwnerReference{Kind: "ReplicaSet", Name: "web", Controller: new(true)}))
	host := &fakeUpgrader{versions: map[string]string{"c-real-0": "v1.36.3"}}
	st, err := upgradeNodes(ctx, cs, host, "v1.37.2", "v1.37.2", time.Now(), map[string]time.Time{}, nil)
	if err != nil || !strings.Contains(st.blocked, "pod ns/bare has no controller and would not come back; delete it or move it, then the upgrade goes on") {
		t.Fatalf("pass: %+v, %v", st, err)
	}
	if len(host.upgraded) != 0 {
		t.Errorf("upgraded %v with a pod still on the node", host.upgraded)
	}
	for _, a := range cs.Actions() {
		if a.GetSubresource() == "eviction" {
			t.Errorf("evicted %v while a bare pod holds the drain", a)
		}
	}
}
