package local_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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
	// bin may hold the previous version too (make tools builds it, for upgrades).
	if got := local.AvailableVersions(bin); !slices.Contains(got, version.Kubernetes) {
		t.Errorf("AvailableVersions(bin) = %v, want %s among them", got, version.Kubernetes)
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

// TestUpgradeRollsTheControlPlane checks the mechanics of Upgrade: the API server,
// controller-manager and scheduler restart on the new version's binaries, one at a time,
// while kine and kwok, and with them the data and nodes, stay up; then the simulated node
// reports the new version, and the status says the upgrade is over. The "new version"
// directory holds the default version's binaries under another name; what is checked is which
// binaries run, not what version they report.
func TestUpgradeRollsTheControlPlane(t *testing.T) {
	t.Parallel()
	real := hubtest.BinDir(t)
	bin := t.TempDir()
	for _, name := range []string{"kine", "kwok", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		must(t, os.Symlink(filepath.Join(real, name), filepath.Join(bin, name)))
	}
	next := filepath.Join(bin, "kubernetes", "v1.38.0")
	must(t, os.MkdirAll(next, 0o755))
	for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		must(t, os.Symlink(filepath.Join(real, name), filepath.Join(next, name)))
	}
	root := t.TempDir()
	p := &local.Provider{Root: root, BinDir: bin, Convoy: hubtest.ConvoyBinary(t), Log: hubtest.Logger(t)}
	t.Cleanup(func() { _ = p.Delete(context.Background(), "up") })
	ctx := context.Background()
	c := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "up"}, Spec: v1alpha1.ClusterSpec{
		Provider: v1alpha1.ProviderLocal, NodePools: []v1alpha1.NodePool{{Name: "default", Count: 1}}}}
	must(t, p.Create(ctx, c))
	waitReady(t, p, c, 1)
	must(t, p.ScalePools(ctx, c))
	waitReady(t, p, c, 1)
	before := components(t, root, "up")

	c.Spec.KubernetesVersion = "v1.38.0"
	must(t, p.Upgrade(ctx, c))
	if st, err := p.Status(ctx, c); err != nil || !strings.Contains(st.Upgrading, "upgrading the control plane") {
		t.Errorf("right after Upgrade, Status says %q, %v; want it upgrading the control plane", st.Upgrading, err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		now := components(t, root, "up")
		if strings.HasPrefix(argv0(now["kube-scheduler"]), next) && now["kube-scheduler"] != before["kube-scheduler"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the control plane did not move to %s: %v", next, now)
		}
		time.Sleep(200 * time.Millisecond)
	}
	now := components(t, root, "up")
	for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		if now[name] == before[name] || !strings.HasPrefix(argv0(now[name]), next) {
			t.Errorf("%s was not restarted on the new binaries (pid %d, %s)", name, now[name], argv0(now[name]))
		}
	}
	for _, name := range []string{"kine", "kwok"} {
		if now[name] != before[name] {
			t.Errorf("%s restarted during the upgrade (pid %d -> %d)", name, before[name], now[name])
		}
	}
	waitReady(t, p, c, 1)
	hubtest.Eventually(t, "the simulated node on v1.38.0 and the upgrade over", time.Minute, func() (bool, error) {
		st, err := p.Status(ctx, c)
		if err != nil || st.Upgrading != "" || st.Blocked != "" {
			return false, fmt.Errorf("%+v %v", st, err)
		}
		m := member(t, p, c)
		nodes, err := m.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil || len(nodes.Items) != 1 {
			return false, fmt.Errorf("%v %v", nodes, err)
		}
		v := nodes.Items[0].Status.NodeInfo.KubeletVersion
		return v == "v1.38.0", fmt.Errorf("kubelet version %s", v)
	})
	// A second Upgrade to the same version changes nothing.
	must(t, p.Upgrade(ctx, c))
	if again := components(t, root, "up"); again["kube-apiserver"] != now["kube-apiserver"] {
		t.Errorf("a repeated Upgrade restarted the API server")
	}
}

func waitReady(t *testing.T, p *local.Provider, c *v1alpha1.Cluster, nodes int32) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := p.Status(context.Background(), c)
		if err == nil && st.APIReady && st.Nodes.Ready == nodes {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not ready: %+v, %v", st, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// components reads the running components' pids from the runtime's status file.
func components(t *testing.T, root, name string) map[string]int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, name, "status.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Components []struct {
			Name    string `json:"name"`
			PID     int    `json:"pid"`
			Running bool   `json:"running"`
		} `json:"components"`
	}
	must(t, json.Unmarshal(raw, &st))
	out := map[string]int{}
	for _, c := range st.Components {
		if c.Running {
			out[c.Name] = c.PID
		}
	}
	return out
}

func argv0(pid int) string {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	a, _, _ := strings.Cut(string(raw), "\x00")
	return a
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestDatastoreTemplate makes a template and starts a cluster from it.
func TestDatastoreTemplate(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	p.Templates = t.TempDir()
	ctx := context.Background()
	must(t, local.EnsureTemplate(ctx, p.Templates, p.BinDir, version.Kubernetes, p.Log))
	tmpl := filepath.Join(p.Templates, version.Kubernetes, "state.db")
	info, err := os.Stat(tmpl)
	if err != nil || info.Size() == 0 {
		t.Fatalf("no template database: %v", err)
	}
	must(t, local.EnsureTemplate(ctx, p.Templates, p.BinDir, version.Kubernetes, p.Log)) // a second call keeps it
	if again, _ := os.Stat(tmpl); !again.ModTime().Equal(info.ModTime()) {
		t.Error("a second EnsureTemplate made the template again")
	}

	c := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "seeded"}, Spec: v1alpha1.ClusterSpec{
		Provider: v1alpha1.ProviderLocal, NodePools: []v1alpha1.NodePool{{Name: "default", Count: 2}}}}
	t.Cleanup(func() { _ = p.Delete(context.Background(), c.Name) })
	must(t, p.Create(ctx, c))
	if _, err := os.Stat(filepath.Join(p.Root, "seeded", "db", "state.db")); err != nil {
		t.Fatalf("the new cluster's datastore was not seeded: %v", err)
	}
	waitReady(t, p, c, 2)
	if entries, _ := filepath.Glob(filepath.Join(p.Templates, ".making-*")); len(entries) != 0 {
		t.Errorf("scratch directories left: %v", entries)
	}
}
