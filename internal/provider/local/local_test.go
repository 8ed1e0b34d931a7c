package local_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/provider/local"
	"github.com/convoy-dev/convoy/internal/provider/providertest"
	"github.com/convoy-dev/convoy/internal/version"
)

func newProvider(t *testing.T) *local.Provider {
	t.Helper()
	root := t.TempDir()
	p := &local.Provider{Root: root, BinDir: hubtest.BinDir(t), Convoy: hubtest.ConvoyBinary(t), Log: hubtest.Logger(t)}
	t.Cleanup(func() {
		if _, err := local.StopAll(root, p.Log); err != nil {
			t.Error(err)
		}
	})
	return p
}

func TestConformance(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	providertest.Run(t, providertest.Harness{
		Provider: p,
		Version:  version.Kubernetes,
		Cluster: func(t *testing.T, name string, nodes int32) *v1alpha1.Cluster {
			return &v1alpha1.Cluster{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: v1alpha1.ClusterSpec{Provider: v1alpha1.ProviderLocal, Region: "r", Zones: []string{"a", "b"},
					NodePools: []v1alpha1.NodePool{{Name: "default", Count: nodes}}},
			}
		},
		Invalid: func(t *testing.T) *v1alpha1.Cluster {
			return &v1alpha1.Cluster{
				ObjectMeta: metav1.ObjectMeta{Name: "old"},
				Spec:       v1alpha1.ClusterSpec{Provider: v1alpha1.ProviderLocal, KubernetesVersion: "v1.20.0"},
			}
		},
	})
	// Delete left nothing behind.
	if entries, _ := os.ReadDir(p.Root); len(entries) != 0 {
		t.Errorf("files left after Delete: %v", entries)
	}
}

func TestAvailableVersions(t *testing.T) {
	t.Parallel()
	bin := hubtest.BinDir(t)
	if got := local.AvailableVersions(bin); len(got) != 1 || got[0] != version.Kubernetes {
		t.Errorf("AvailableVersions(bin) = %v, want [%s]", got, version.Kubernetes)
	}
	// Another version counts once every control-plane binary for it is in bin/kubernetes/VERSION.
	dir := t.TempDir()
	for _, name := range []string{"kine", "kwok", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		os.Symlink(filepath.Join(bin, name), filepath.Join(dir, name))
	}
	other := filepath.Join(dir, "kubernetes", "v1.36.3")
	os.MkdirAll(other, 0o755)
	os.Symlink(filepath.Join(bin, "kube-apiserver"), filepath.Join(other, "kube-apiserver"))
	if got := local.AvailableVersions(dir); len(got) != 1 {
		t.Errorf("with only kube-apiserver for v1.36.3: %v", got)
	}
	for _, name := range []string{"kube-controller-manager", "kube-scheduler"} {
		os.Symlink(filepath.Join(bin, name), filepath.Join(other, name))
	}
	if got := local.AvailableVersions(dir); strings.Join(got, ",") != "v1.36.3,"+version.Kubernetes {
		t.Errorf("with all of v1.36.3: %v", got)
	}
	p := &local.Provider{BinDir: dir}
	err := p.Validate(context.Background(), &v1alpha1.Cluster{Spec: v1alpha1.ClusterSpec{KubernetesVersion: "v1.35.0"}})
	if err == nil || !strings.Contains(err.Error(), "available: v1.36.3, "+version.Kubernetes) {
		t.Errorf("Validate of an unknown version: %v", err)
	}
}
