package local

import (
	"context"
	"errors"
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
	started []string
}

func (h *failingHost) ensure(_ context.Context, w nodeShape) error {
	if h.fail[w.name] {
		return errors.New("node " + w.name + ": containerd did not start")
	}
	h.mu.Lock()
	h.started = append(h.started, w.name)
	h.mu.Unlock()
	return nil
}
func (h *failingHost) remove(context.Context, string) error            { return nil }
func (h *failingHost) network([]corev1.Node) (waiting bool, err error) { return false, nil }

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
	slices.Sort(host.started)
	if want := []string{"c-real-1", "c-real-2"}; !slices.Equal(host.started, want) {
		t.Errorf("started %v, want %v", host.started, want)
	}
}
