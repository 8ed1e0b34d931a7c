package importer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/provider/importer"
	"github.com/convoy-dev/convoy/internal/provider/local"
	"github.com/convoy-dev/convoy/internal/provider/providertest"
	"github.com/convoy-dev/convoy/internal/version"
)

// TestConformance imports a real cluster, made by the local provider, into a real hub.
func TestConformance(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()

	// The cluster to import.
	root := t.TempDir()
	lp := &local.Provider{Root: root, BinDir: hubtest.BinDir(t), Convoy: hubtest.ConvoyBinary(t), Log: hubtest.Logger(t)}
	t.Cleanup(func() { _ = lp.Delete(context.Background(), "target") })
	target := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "target"},
		Spec: v1alpha1.ClusterSpec{Provider: v1alpha1.ProviderLocal, NodePools: []v1alpha1.NodePool{{Name: "default", Count: 2}}}}
	if err := lp.Create(ctx, target); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, _ := lp.Status(ctx, target)
		if st.APIReady {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster to import never got ready: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := lp.ScalePools(ctx, target); err != nil {
		t.Fatal(err)
	}
	twoReady := func() (bool, error) {
		st, err := lp.Status(ctx, target)
		return err == nil && st.APIReady && st.Nodes.Ready == 2, fmt.Errorf("%+v, %v", st.Nodes, err)
	}
	hubtest.Eventually(t, "the cluster to import with its 2 nodes Ready", 2*time.Minute, twoReady)
	kubeconfig, err := lp.Kubeconfig(ctx, target)
	if err != nil {
		t.Fatal(err)
	}

	providertest.Run(t, providertest.Harness{
		Provider: &importer.Provider{Client: h.Client, Namespace: "convoy-system"},
		Version:  version.Kubernetes,
		Cluster: func(t *testing.T, name string, _ int32) *v1alpha1.Cluster {
			secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "convoy-system", Name: name + "-kubeconfig"},
				Data: map[string][]byte{v1alpha1.KubeconfigSecretKey: kubeconfig}}
			if err := h.Client.Create(ctx, secret); err != nil {
				t.Fatal(err)
			}
			return &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.ClusterSpec{
				Provider: v1alpha1.ProviderImport, KubeconfigSecretRef: &v1alpha1.SecretReference{Name: secret.Name},
				NodePools: []v1alpha1.NodePool{{Name: "default", Count: 2}},
			}}
		},
		Invalid: func(t *testing.T) *v1alpha1.Cluster {
			return &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "nosecret"}, Spec: v1alpha1.ClusterSpec{
				Provider: v1alpha1.ProviderImport, KubeconfigSecretRef: &v1alpha1.SecretReference{Name: "missing"},
			}}
		},
	})

	// Importing is read-only: the imported cluster still runs, with its nodes (kwok's, which
	// a loaded machine may report late).
	hubtest.Eventually(t, "the imported cluster unchanged, its 2 nodes Ready", time.Minute, twoReady)
}
