package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// failingHost is a realNodeHost whose nodes named in fail cannot start.
type failingHost struct {
	fail    map[string]bool
	mu      sync.Mutex
	ensured []string
	running []string // what started reports
	removed []string
}

func (h *failingHost) ensure(_ context.Context, w nodeShape) error {
	if h.fail[w.name] {
		return errors.New("node " + w.name + ": containerd did not start")
	}
	h.mu.Lock()
	h.ensured = append(h.ensured, w.name)
	h.mu.Unlock()
	return nil
}
func (h *failingHost) remove(_ context.Context, name string) error {
	h.mu.Lock()
	h.removed = append(h.removed, name)
	h.mu.Unlock()
	return nil
}
func (h *failingHost) started() []string                               { return h.running }
func (h *failingHost) network([]corev1.Node) (waiting bool, err error) { return false, nil }
func (h *failingHost) kubeProxyVersion(string) string                  { return "" }

// A real node that cannot start does not keep the others of its cluster from starting; the
// error names it, so that the runtime reports it and tries again.
func TestSyncNodesStartsTheOthersWhenOneFails(t *testing.T) {
	c := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: v1alpha1.ClusterSpec{
		NodePools: []v1alpha1.NodePool{{Name: "real", Kind: v1alpha1.NodeReal, Count: 3}}}}
	host := &failingHost{fail: map[string]bool{"c-real-0": true}}
	changed, err := syncNodes(context.Background(), fake.NewClientset(), c, host, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "c-real-0") {
		t.Fatalf("error = %v, want one naming c-real-0", err)
	}
	if !changed {
		t.Error("changed = false, want true: the started nodes register in a moment")
	}
	slices.Sort(host.ensured)
	if want := []string{"c-real-1", "c-real-2"}; !slices.Equal(host.ensured, want) {
		t.Errorf("started %v, want %v", host.ensured, want)
	}
}

// A node started ahead for a pool that shrank before its kubelet registered it leaves the host,
// though no Node of it exists to drain.
func TestSyncNodesRemovesANodeStartedAheadThatIsNoLongerWanted(t *testing.T) {
	c := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: v1alpha1.ClusterSpec{
		NodePools: []v1alpha1.NodePool{{Name: "real", Kind: v1alpha1.NodeReal, Count: 1}}}}
	host := &failingHost{running: []string{"c-real-0", "c-real-1"}}
	if _, err := syncNodes(context.Background(), fake.NewClientset(), c, host, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	if want := []string{"c-real-1"}; !slices.Equal(host.removed, want) {
		t.Errorf("removed %v, want %v", host.removed, want)
	}
}

// An upgrade's drain evicts nothing while a pod that no controller owns is on the node, and names
// it; a scale-down's drain, after which the node goes away, evicts it with the others.
func TestEvictDecision(t *testing.T) {
	pod := func(name string, modify func(*corev1.Pod)) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, OwnerReferences: []metav1.OwnerReference{
			{Kind: "ReplicaSet", Name: "rs", Controller: new(true)}}}}
		p.Status.Phase = corev1.PodRunning
		if modify != nil {
			modify(&p)
		}
		return p
	}
	bare := func(p *corev1.Pod) { p.OwnerReferences = nil }
	daemon := func(p *corev1.Pod) { p.OwnerReferences[0].Kind = "DaemonSet" }
	mirror := func(p *corev1.Pod) {
		p.OwnerReferences = nil
		p.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "x"}
	}
	finished := func(p *corev1.Pod) { p.OwnerReferences, p.Status.Phase = nil, corev1.PodSucceeded }
	terminating := func(p *corev1.Pod) { p.OwnerReferences, p.DeletionTimestamp = nil, new(metav1.Now()) }
	ownedNotControlled := func(p *corev1.Pod) { p.OwnerReferences[0].Controller = nil }

	for _, tc := range []struct {
		name      string
		pods      []corev1.Pod
		keepBare  bool
		wantEvict []string
		wantLeft  int
		wantBare  string // the error; "" for none
	}{
		{"controlled pods", []corev1.Pod{pod("a", nil), pod("b", nil)}, true, []string{"a", "b"}, 2, ""},
		{"left alone", []corev1.Pod{pod("d", daemon), pod("m", mirror), pod("f", finished)}, true, nil, 0, ""},
		{"terminating, waited for", []corev1.Pod{pod("t", terminating), pod("a", nil)}, true, []string{"a"}, 2, ""},
		{"upgrade, a bare pod", []corev1.Pod{pod("a", nil), pod("x", bare), pod("y", ownedNotControlled)}, true, nil, 3,
			"pod ns/x has no controller and would not come back; delete it or move it, then the upgrade goes on\n" +
				"pod ns/y has no controller and would not come back; delete it or move it, then the upgrade goes on"},
		{"scale-down, a bare pod", []corev1.Pod{pod("a", nil), pod("x", bare)}, false, []string{"a", "x"}, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evict, left, bareErr := podsToEvict(tc.pods, tc.keepBare)
			var names []string
			for _, p := range evict {
				names = append(names, p.Name)
			}
			if !slices.Equal(names, tc.wantEvict) || left != tc.wantLeft {
				t.Errorf("evict %v, left %d; want %v, %d", names, left, tc.wantEvict, tc.wantLeft)
			}
			if got := fmt.Sprint(bareErr); (bareErr != nil || tc.wantBare != "") && got != tc.wantBare {
				t.Errorf("bare = %q, want %q", got, tc.wantBare)
			}
		})
	}
}
