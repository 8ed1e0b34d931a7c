package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/version"
)

const benchNodes = 3

// BenchmarkLocalCluster measures how long a local cluster with three nodes takes from the
// Cluster object's creation to phase Ready (API server ready and every node Ready), alone and
// three at once, and the resident memory of one cluster's processes. In the same run it does
// the same work with kwokctl (--runtime binary, the same bin/ binaries, Debian's etcd) and
// prints the ratio.
func BenchmarkLocalCluster(b *testing.B) {
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		b.Fatal("the kwokctl reference needs etcd: apt-get install etcd-server")
	}
	bin := hubtest.BinDir(b)
	kwokctl, err := (kubeproc.Binaries{Dir: bin}).Path("kwokctl")
	if err != nil {
		b.Fatal(err)
	}
	h := hubtest.Start(b, func(o *hub.Options) { o.SkipTemplates = false })
	layout := hub.Layout{Dir: h.Options.DataDir}

	// The hub makes a datastore template per Kubernetes version in the background after it
	// starts; the steady state is a hub that has one.
	template := filepath.Join(layout.Templates(), version.Kubernetes, "state.db")
	for i := 0; ; i++ {
		if _, err := os.Stat(template); err == nil {
			break
		}
		if i > 1200 {
			b.Fatal("the hub made no datastore template within 2 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// One cluster at a time, alternating with kwokctl doing the same work, so that both see
	// the same machine.
	const runs = 7
	var single, ref []time.Duration
	for i := range runs {
		name := fmt.Sprintf("one-%d", i)
		single = append(single, createAndWait(b, h.Client, []string{name})[0])
		deleteClusters(b, h.Client, []string{name})
		ref = append(ref, kwokctlCluster(b, kwokctl, bin, etcd, fmt.Sprintf("ref-%d", i)))
	}

	// Without a template: the first clusters of a brand-new hub start like this.
	off := layout.Templates() + ".off"
	if err := os.Rename(layout.Templates(), off); err != nil {
		b.Fatal(err)
	}
	var cold []time.Duration
	for i := range 3 {
		name := fmt.Sprintf("cold-%d", i)
		cold = append(cold, createAndWait(b, h.Client, []string{name})[0])
		deleteClusters(b, h.Client, []string{name})
	}
	if err := os.Rename(off, layout.Templates()); err != nil {
		b.Fatal(err)
	}

	var together []time.Duration
	var rss []int64
	for i := range 2 {
		names := []string{fmt.Sprintf("a-%d", i), fmt.Sprintf("b-%d", i), fmt.Sprintf("c-%d", i)}
		took := createAndWait(b, h.Client, names)
		together = append(together, slicesMax(took))
		if i == 0 {
			time.Sleep(10 * time.Second) // let the clusters settle before measuring memory
			for _, n := range names {
				rss = append(rss, clusterRSS(b, layout.Clusters(), n))
			}
		}
		deleteClusters(b, h.Client, names)
	}

	fmt.Printf("\nLocal cluster benchmark (Kubernetes %s, %d kwok nodes per cluster)\n", version.Kubernetes, benchNodes)
	fmt.Printf("machine: %s\n", Machine())
	fmt.Printf("one cluster, Cluster created to Ready:        median %s  (runs: %v)\n", Median(single).Round(10*time.Millisecond), round(single))
	fmt.Printf("one cluster, no datastore template yet:       median %s  (runs: %v)\n", Median(cold).Round(10*time.Millisecond), round(cold))
	fmt.Printf("three clusters at once, created to all Ready: median %s  (runs: %v)\n", Median(together).Round(10*time.Millisecond), round(together))
	fmt.Printf("kwokctl create cluster + scale node 3 Ready:  median %s  (runs: %v)\n", Median(ref).Round(10*time.Millisecond), round(ref))
	ratio := Median(single).Seconds() / Median(ref).Seconds()
	fmt.Printf("ratio convoy / kwokctl (one cluster):         %.2f  (target <= 1.0)\n", ratio)
	var total int64
	for _, r := range rss {
		total += r
	}
	fmt.Printf("resident memory per cluster (runtime + kine + apiserver + controller-manager + scheduler + kwok): %s  (each: %v)\n",
		MiB(total/int64(len(rss))), mibs(rss))

	b.ReportMetric(Median(single).Seconds(), "s-ready-one")
	b.ReportMetric(Median(cold).Seconds(), "s-ready-one-cold")
	b.ReportMetric(Median(together).Seconds(), "s-ready-three")
	b.ReportMetric(Median(ref).Seconds(), "s-kwokctl")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(float64(total/int64(len(rss)))/(1<<20), "MiB-per-cluster")
}

// createAndWait creates local clusters at once and returns how long each took to be Ready.
func createAndWait(b *testing.B, c client.Client, names []string) []time.Duration {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	for _, n := range names {
		cl := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: n}, Spec: v1alpha1.ClusterSpec{
			Provider: v1alpha1.ProviderLocal, Zones: []string{"a", "b", "c"},
			NodePools: []v1alpha1.NodePool{{Name: "default", Count: benchNodes}},
		}}
		if err := c.Create(ctx, cl); err != nil {
			b.Fatal(err)
		}
	}
	took := make([]time.Duration, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Go(func() {
			for time.Since(start) < 3*time.Minute {
				cl := &v1alpha1.Cluster{}
				if err := c.Get(ctx, client.ObjectKey{Name: n}, cl); err == nil && cl.Status.Phase == v1alpha1.ClusterReady {
					took[i] = time.Since(start)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	for i, t := range took {
		if t == 0 {
			b.Fatalf("cluster %s not Ready within 3 minutes", names[i])
		}
	}
	return took
}

func deleteClusters(b *testing.B, c client.Client, names []string) {
	b.Helper()
	ctx := context.Background()
	for _, n := range names {
		if err := c.Delete(ctx, &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: n}}); err != nil {
			b.Fatal(err)
		}
	}
	for _, n := range names {
		for i := 0; ; i++ {
			if err := c.Get(ctx, client.ObjectKey{Name: n}, &v1alpha1.Cluster{}); apierrors.IsNotFound(err) {
				break
			}
			if i > 1200 {
				b.Fatalf("cluster %s not deleted within a minute", n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// clusterRSS sums the resident memory of a local cluster's runtime and components.
func clusterRSS(b *testing.B, root, name string) int64 {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join(root, name, "status.json"))
	if err != nil {
		b.Fatal(err)
	}
	var st struct {
		PID        int `json:"pid"`
		Components []struct {
			PID int `json:"pid"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		b.Fatal(err)
	}
	total, _ := RSS(st.PID)
	for _, c := range st.Components {
		r, _ := RSS(c.PID)
		total += r
	}
	return total
}

// kwokctlCluster times `kwokctl create cluster` plus `kwokctl scale node --replicas 3` until
// three nodes are Ready, then deletes the cluster.
func kwokctlCluster(b *testing.B, kwokctl, bin, etcd, name string) time.Duration {
	b.Helper()
	workdir := b.TempDir()
	env := append(os.Environ(), "KWOK_WORKDIR="+workdir)
	runKwokctl := func(args ...string) {
		cmd := exec.Command(kwokctl, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("kwokctl %v: %v\n%s", args, err, out)
		}
	}
	defer runKwokctl("delete", "cluster", "--name", name)
	start := time.Now()
	runKwokctl("create", "cluster", "--name", name, "--runtime", "binary",
		"--kube-apiserver-binary", filepath.Join(bin, "kube-apiserver"),
		"--kube-controller-manager-binary", filepath.Join(bin, "kube-controller-manager"),
		"--kube-scheduler-binary", filepath.Join(bin, "kube-scheduler"),
		"--kwok-controller-binary", filepath.Join(bin, "kwok"),
		"--etcd-binary", etcd)
	runKwokctl("scale", "node", "--name", name, "--replicas", strconv.Itoa(benchNodes))
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(workdir, "clusters", name, "kubeconfig.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	for time.Since(start) < 3*time.Minute {
		nodes, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
		if err == nil {
			ready := 0
			for _, n := range nodes.Items {
				for _, c := range n.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
						ready++
					}
				}
			}
			if ready == benchNodes {
				return time.Since(start)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatal("kwokctl cluster not Ready within 3 minutes")
	return 0
}

func slicesMax(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

func mibs(bs []int64) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = MiB(b)
	}
	return out
}
