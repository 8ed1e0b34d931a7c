// Package providertest is the conformance suite of the provider contract. Every provider's
// tests call Run with a harness; the suite drives the provider the way the Cluster controller
// does and checks what the contract in package provider promises. Only tests import it.
package providertest

import (
	"context"
	"errors"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/provider"
)

// Harness adapts one provider to the suite.
type Harness struct {
	// Provider under test.
	Provider provider.Provider
	// Cluster returns a Cluster the provider can create, with the given number of nodes in a
	// pool called "default" (read-only providers ignore nodes), after doing whatever the
	// provider needs beforehand (for import: storing the kubeconfig Secret).
	Cluster func(t *testing.T, name string, nodes int32) *v1alpha1.Cluster
	// Invalid returns a Cluster that Validate must refuse.
	Invalid func(t *testing.T) *v1alpha1.Cluster
	// Version is the Kubernetes version the created cluster must report.
	Version string
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	ctx := context.Background()
	p := h.Provider

	t.Run("Validate refuses a bad spec with a reason", func(t *testing.T) {
		err := p.Validate(ctx, h.Invalid(t))
		if err == nil || err.Error() == "" {
			t.Fatalf("Validate accepted an invalid cluster (err %v)", err)
		}
	})

	t.Run("Status of a cluster that does not exist", func(t *testing.T) {
		c := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "never-made"}, Spec: v1alpha1.ClusterSpec{Provider: p.Name()}}
		st, err := p.Status(ctx, c)
		if err != nil || st.Exists {
			t.Fatalf("Status = %+v, %v; want Exists false and no error", st, err)
		}
	})

	c := h.Cluster(t, "conformance", 2)
	t.Cleanup(func() { _ = p.Delete(context.Background(), c.Name) })

	t.Run("Create, then Status reaches a ready API server", func(t *testing.T) {
		if err := p.Validate(ctx, c); err != nil {
			t.Fatalf("Validate: %v", err)
		}
		if err := p.Create(ctx, c); err != nil {
			t.Fatalf("Create: %v", err)
		}
		st := waitStatus(t, p, c, "API ready", func(st provider.Status) bool { return st.APIReady })
		if !st.Exists || !st.Running || st.Endpoint == "" || st.Version != h.Version {
			t.Errorf("Status = %+v; want it to exist and run, with an endpoint and version %s", st, h.Version)
		}
	})

	t.Run("Create again changes nothing", func(t *testing.T) {
		before, _ := p.Status(ctx, c)
		if err := p.Create(ctx, c); err != nil {
			t.Fatalf("second Create: %v", err)
		}
		after, err := p.Status(ctx, c)
		if err != nil || !after.APIReady || after.Endpoint != before.Endpoint {
			t.Errorf("after a second Create: %+v, %v (before: endpoint %s)", after, err, before.Endpoint)
		}
	})

	t.Run("Kubeconfig reaches the cluster", func(t *testing.T) {
		raw, err := p.Kubeconfig(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := clientcmd.RESTConfigFromKubeConfig(raw)
		if err != nil {
			t.Fatal(err)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
			t.Fatalf("the kubeconfig does not reach the cluster: %v", err)
		}
	})

	t.Run("ScalePools adds and drains nodes", func(t *testing.T) {
		if p.ReadOnly() {
			if err := p.ScalePools(ctx, c); !errors.Is(err, provider.ErrReadOnly) {
				t.Fatalf("read-only ScalePools = %v, want ErrReadOnly", err)
			}
			return
		}
		for _, n := range []int32{2, 4, 1} {
			c.Spec.NodePools[0].Count = n
			if err := p.ScalePools(ctx, c); err != nil {
				t.Fatalf("scale to %d: %v", n, err)
			}
			waitStatus(t, p, c, "nodes Ready", func(st provider.Status) bool {
				return st.Nodes.Total == n && st.Nodes.Ready == n && st.Pools["default"] == n
			})
		}
	})

	t.Run("Upgrade to the running version changes nothing", func(t *testing.T) {
		err := p.Upgrade(ctx, c)
		if p.ReadOnly() {
			if !errors.Is(err, provider.ErrReadOnly) {
				t.Fatalf("read-only Upgrade = %v, want ErrReadOnly", err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if st, err := p.Status(ctx, c); err != nil || !st.APIReady || st.Version != h.Version {
			t.Errorf("after a no-op Upgrade: %+v, %v", st, err)
		}
	})

	t.Run("Delete removes the cluster and may be repeated", func(t *testing.T) {
		if err := p.Delete(ctx, c.Name); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if err := p.Delete(ctx, c.Name); err != nil {
			t.Fatalf("second Delete: %v", err)
		}
		if p.ReadOnly() {
			return // forgetting is all a read-only provider does
		}
		if st, err := p.Status(ctx, c); err != nil || st.Exists {
			t.Fatalf("after Delete: Status = %+v, %v; want Exists false", st, err)
		}
		if _, err := p.Kubeconfig(ctx, c); !errors.Is(err, provider.ErrNotFound) {
			t.Fatalf("after Delete: Kubeconfig error = %v, want ErrNotFound", err)
		}
	})
}

func waitStatus(t *testing.T, p provider.Provider, c *v1alpha1.Cluster, what string, ok func(provider.Status) bool) provider.Status {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var st provider.Status
	var err error
	for time.Now().Before(deadline) {
		st, err = p.Status(context.Background(), c)
		if err == nil && ok(st) {
			return st
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s: last status %+v, err %v", what, st, err)
	return st
}
