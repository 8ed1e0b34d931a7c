package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/image"
	"github.com/convoy-dev/convoy/internal/provider/local"
	"github.com/convoy-dev/convoy/internal/registry"
)

// BenchmarkRealNodes measures local clusters of real nodes: a cluster of two created to Ready
// (nodes Ready and CoreDNS Available), a pod from create to Running, a 10-replica Deployment
// to all Ready, the resident memory of one node (kubelet, containerd, kube-proxy and shims),
// and the demo image pushed to the fleet registry and pulled on six nodes.
func BenchmarkRealNodes(b *testing.B) {
	hubtest.RealNodes(b, local.MissingForRealNodes)
	h := hubtest.Start(b, func(o *hub.Options) { o.SkipTemplates = false })
	ctx := context.Background()
	layout := hub.Layout{Dir: h.Options.DataDir}
	waitTemplate(b, layout)
	web := buildWeb(b)
	if _, err := registry.EnsureFromBinary(ctx, h.RegistryAddr(), "examples/web:1", web, image.Build{Base: true}); err != nil {
		b.Fatal(err)
	}
	webImage := registry.Host + "/examples/web:1"

	realCluster := func(name string) *v1alpha1.Cluster {
		return &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.ClusterSpec{
			Provider: v1alpha1.ProviderLocal, Zones: []string{"a", "b"},
			NodePools: []v1alpha1.NodePool{{Name: "real", Kind: v1alpha1.NodeReal, Count: 2}}}}
	}
	member := func(name string) kubernetes.Interface {
		cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(layout.Clusters(), name, "kubeconfig"))
		if err != nil {
			b.Fatal(err)
		}
		cfg.QPS, cfg.Burst = 200, 200
		return kubernetes.NewForConfigOrDie(cfg)
	}
	// waitUp waits until the hub says a cluster is Ready and Provisioned (both nodes Ready, as
	// the hub observes them) and its CoreDNS is Available. (`convoy cluster create` also waits
	// for the agent's next inventory, which it sends at most every 2 s.)
	waitUp := func(name string) {
		waitFor(b, name+" Ready with both nodes Ready", 3*time.Minute, func() bool {
			cl := &v1alpha1.Cluster{}
			if err := h.Client.Get(ctx, client.ObjectKey{Name: name}, cl); err != nil || cl.Status.Phase != v1alpha1.ClusterReady {
				return false
			}
			p := meta.FindStatusCondition(cl.Status.Conditions, v1alpha1.ClusterProvisioned)
			return p != nil && p.Status == metav1.ConditionTrue && p.ObservedGeneration == cl.Generation
		})
		cs := member(name)
		waitFor(b, "CoreDNS available on "+name, 3*time.Minute, func() bool {
			d, err := cs.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
			return err == nil && d.Status.AvailableReplicas == 2
		})
	}
	// Created to Ready with CoreDNS Available, one cluster at a time.
	const runs = 5
	var ready []time.Duration
	for i := range runs {
		name := fmt.Sprintf("rn-%d", i)
		start := time.Now()
		if err := h.Client.Create(ctx, realCluster(name)); err != nil {
			b.Fatal(err)
		}
		waitUp(name)
		ready = append(ready, time.Since(start))
		if i < runs-1 {
			deleteClusters(b, h.Client, []string{name})
		}
	}
	kept := fmt.Sprintf("rn-%d", runs-1)
	cs := member(kept)

	// A pod from create to Running, one at a time, its image already on the node.
	pod := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers:                    []corev1.Container{{Name: "web", Image: webImage}}}}
	}
	running := func(name string) func() bool {
		return func() bool {
			p, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
			return err == nil && p.Status.Phase == corev1.PodRunning
		}
	}
	for _, n := range []string{kept + "-real-0", kept + "-real-1"} { // pull the image on both nodes
		p := pod("pull-" + n)
		p.Spec.NodeName = n
		if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		waitFor(b, "the image pulled on "+n, 2*time.Minute, running(p.Name))
	}
	const pods = 20
	var podTimes []time.Duration
	for i := range pods {
		name := fmt.Sprintf("p-%d", i)
		start := time.Now()
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod(name), metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		for !running(name)() {
			time.Sleep(20 * time.Millisecond)
			if time.Since(start) > 2*time.Minute {
				b.Fatalf("pod %s not Running within 2 minutes", name)
			}
		}
		podTimes = append(podTimes, time.Since(start))
	}
	// Resident memory of one node, with 11 pods on the cluster.
	rss := nodeRSS(b, filepath.Join(layout.Clusters(), kept), kept+"-real-0")
	_ = cs.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})

	// A 10-replica Deployment from create to all Ready.
	labels := map[string]string{"app": "ten"}
	start := time.Now()
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "ten"}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](10), Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{Name: "web", Image: webImage,
				ReadinessProbe: &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstrPort(8080)}}}}}}}}},
		metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	waitFor(b, "10 replicas Ready", 3*time.Minute, func() bool {
		d, err := cs.AppsV1().Deployments("default").Get(ctx, "ten", metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas == 10
	})
	ten := time.Since(start)

	// The demo image pushed under a new name (every blob uploaded), then pulled on six nodes
	// of three clusters at once (a DaemonSet in each), create to all Running.
	for _, n := range []string{"rn-x", "rn-y"} {
		if err := h.Client.Create(ctx, realCluster(n)); err != nil {
			b.Fatal(err)
		}
	}
	for _, n := range []string{"rn-x", "rn-y"} {
		waitUp(n)
	}
	img, err := image.FromBinary(web, image.Build{Base: true})
	if err != nil {
		b.Fatal(err)
	}
	size := int64(0)
	if layers, err := img.Layers(); err == nil {
		for _, l := range layers {
			s, _ := l.Size()
			size += s
		}
	}
	start = time.Now()
	if _, err := registry.Push(ctx, h.RegistryAddr(), registry.Host+"/bench/web:fresh", img); err != nil {
		b.Fatal(err)
	}
	push := time.Since(start)
	start = time.Now()
	six := []string{kept, "rn-x", "rn-y"}
	for _, n := range six {
		ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "pull"}, Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "pull"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "pull"}}, Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "web", Image: registry.Host + "/bench/web:fresh"}}}}}}
		if _, err := member(n).AppsV1().DaemonSets("default").Create(ctx, ds, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	for _, n := range six {
		m := member(n)
		waitFor(b, "the fresh image running on both nodes of "+n, 3*time.Minute, func() bool {
			pods, err := m.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=pull"})
			if err != nil || len(pods.Items) != 2 {
				return false
			}
			for _, p := range pods.Items {
				if p.Status.Phase != corev1.PodRunning {
					return false
				}
			}
			return true
		})
	}
	pull := time.Since(start)

	sorted := append([]time.Duration(nil), podTimes...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	p50, p99 := sorted[len(sorted)/2], sorted[len(sorted)-1]
	fmt.Printf("\nReal nodes benchmark (Kubernetes local clusters of 2 real nodes: containerd, kubelet, kube-proxy each)\nmachine: %s\n", Machine())
	fmt.Printf("cluster created to Ready (nodes Ready, CoreDNS Available): median %s  (runs: %v; target <= 10s)\n", Median(ready).Round(100*time.Millisecond), round(ready))
	fmt.Printf("pod create to Running, image present (%d pods, one at a time): p50 %s  p99 %s\n", pods, p50.Round(10*time.Millisecond), p99.Round(10*time.Millisecond))
	fmt.Printf("10-replica Deployment, create to all Ready: %s\n", ten.Round(100*time.Millisecond))
	fmt.Printf("resident memory of one real node (kubelet + containerd + kube-proxy + shims; %d pods on its cluster, CoreDNS and local-path included): %s\n", pods+2+3, MiB(rss))
	fmt.Printf("demo image (%s compressed): push to the fleet registry %s; pull and run on 6 nodes of 3 clusters %s\n",
		MiB(size), push.Round(10*time.Millisecond), pull.Round(100*time.Millisecond))
	b.ReportMetric(Median(ready).Seconds(), "s-ready-2-real")
	b.ReportMetric(p50.Seconds(), "s-pod-p50")
	b.ReportMetric(p99.Seconds(), "s-pod-p99")
	b.ReportMetric(ten.Seconds(), "s-deploy-10")
	b.ReportMetric(float64(rss)/(1<<20), "MiB-per-node")
	b.ReportMetric(push.Seconds(), "s-push")
	b.ReportMetric(pull.Seconds(), "s-pull-6")
}

// buildWeb builds the demo app (examples/web) statically and returns the binary.
func buildWeb(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "web")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./examples/web")
	cmd.Dir = hubtest.RepoRoot(b)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build examples/web: %v\n%s", err, out)
	}
	return bin
}

// waitTemplate waits until the hub has made the datastore template for new local clusters.
func waitTemplate(b *testing.B, layout hub.Layout) {
	b.Helper()
	entries := func() bool {
		matches, _ := filepath.Glob(filepath.Join(layout.Templates(), "*", "state.db"))
		return len(matches) > 0
	}
	waitFor(b, "the datastore template", 2*time.Minute, entries)
}

// nodeRSS is the resident memory of a real node's own processes: its kubelet, containerd and
// kube-proxy (from the runtime's status) and the containerd shims of its pods (whose command
// line names the node's containerd socket).
func nodeRSS(b *testing.B, clusterDir, nodeName string) int64 {
	b.Helper()
	rs, err := local.ReadRuntimeStatus(clusterDir)
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, c := range rs.Components {
		if strings.HasSuffix(c.Name, "-"+nodeName) && c.Running {
			r, _ := RSS(c.PID)
			total += r
		}
	}
	socket := ""
	if raw, err := os.ReadFile(filepath.Join(clusterDir, "nodes", nodeName, "containerd.toml")); err == nil {
		for line := range strings.SplitSeq(string(raw), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "address = "); ok && strings.HasSuffix(v, `containerd.sock"`) {
				socket = strings.Trim(v, `"`)
			}
		}
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || socket == "" || !strings.Contains(string(raw), "containerd-shim") || !strings.Contains(string(raw), socket) {
			continue
		}
		var pid int
		fmt.Sscan(e.Name(), &pid)
		r, _ := RSS(pid)
		total += r
	}
	return total
}

func intstrPort(p int32) intstr.IntOrString { return intstr.FromInt32(p) }
