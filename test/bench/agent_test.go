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

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/join"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/provider/local"
)

// BenchmarkAgent measures a member cluster's agent: its resident memory and CPU while idle,
// how long a Work takes from its creation on the hub until the agent reports it applied, and
// how long the hub takes to call a cluster Unreachable after its agent is killed.
func BenchmarkAgent(b *testing.B) {
	h := hubtest.Start(b)
	ctx := context.Background()
	cl := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "bench"}, Spec: v1alpha1.ClusterSpec{
		Provider: v1alpha1.ProviderLocal, NodePools: []v1alpha1.NodePool{{Name: "default", Count: 3}}}}
	if err := h.Client.Create(ctx, cl); err != nil {
		b.Fatal(err)
	}
	waitPhase(b, h.Client, "bench", v1alpha1.ClusterReady, 3*time.Minute)
	clusterDir := filepath.Join(hub.Layout{Dir: h.Options.DataDir}.Clusters(), "bench")

	// Work to applied, one Work at a time. The measuring client must not pace itself: with
	// client-go's default of 5 requests a second, its own polling would be the latency.
	fastCfg := rest.CopyConfig(h.Config)
	fastCfg.QPS, fastCfg.Burst = 1000, 1000
	fast, err := client.New(fastCfg, client.Options{Scheme: hubtest.Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	const works = 60
	var latencies []time.Duration
	ns := v1alpha1.ClusterNamespace("bench")
	for i := range works {
		w := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("w%d", i)}, Spec: v1alpha1.WorkSpec{
			Manifests: []runtime.RawExtension{{Raw: fmt.Appendf(nil, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c%d","namespace":"default"},"data":{"i":"%d"}}`, i, i)}},
		}}
		start := time.Now()
		if err := fast.Create(ctx, w); err != nil {
			b.Fatal(err)
		}
		for {
			got := &v1alpha1.Work{}
			if err := fast.Get(ctx, client.ObjectKeyFromObject(w), got); err == nil &&
				got.Status.ObservedGeneration == got.Generation && meta.IsStatusConditionTrue(got.Status.Conditions, v1alpha1.WorkApplied) {
				latencies = append(latencies, time.Since(start))
				break
			}
			if time.Since(start) > time.Minute {
				b.Fatalf("work %s not applied within a minute", w.Name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	p50, p99 := latencies[len(latencies)/2], latencies[len(latencies)*99/100]

	// Idle cost of the agent, with its cluster and those Works in place.
	agentPID := componentPID(b, clusterDir, "convoy-agent")
	const settle, window = 15 * time.Second, 30 * time.Second
	time.Sleep(settle)
	cpu0, _ := CPUTime(agentPID)
	time.Sleep(window)
	cpu1, _ := CPUTime(agentPID)
	rss, _ := RSS(agentPID)

	// Cluster access through the hub: the same GET straight to the member's API server, and
	// through the hub's API server, its proxy and the agent's tunnel.
	memberCfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(clusterDir, "kubeconfig"))
	if err != nil {
		b.Fatal(err)
	}
	viaHub := rest.CopyConfig(h.Config)
	viaHub.Host = strings.TrimSuffix(viaHub.Host, "/") + v1alpha1.ClusterProxyPath("bench")
	const gets = 300
	direct := getLatencies(b, memberCfg, gets)
	through := getLatencies(b, viaHub, gets)

	// A killed agent: the local cluster's runtime restarts its agent at once, so this runs a
	// second agent as its own process, for the same member imported as another cluster.
	unreachable := killedAgent(b, h, clusterDir)

	fmt.Printf("\nAgent benchmark (one local cluster, 3 kwok nodes, %d Works in place)\n", works)
	fmt.Printf("machine: %s\n", Machine())
	fmt.Printf("agent resident memory (idle):           %s\n", MiB(rss))
	fmt.Printf("agent CPU (idle, over %s):              %.1f millicores\n", window, millicores(cpu1-cpu0, window))
	fmt.Printf("Work created on the hub to Applied:     p50 %s, p99 %s (%d Works, one at a time)\n", p50.Round(time.Millisecond), p99.Round(time.Millisecond), works)
	fmt.Printf("agent killed to cluster Unreachable:    %s (heartbeat every 2s, grace 6s)\n", unreachable.Round(100*time.Millisecond))
	fmt.Printf("GET of a ConfigMap, straight to member: p50 %s, p99 %s (%d, one at a time)\n", direct[len(direct)/2], direct[len(direct)*99/100], gets)
	fmt.Printf("the same through the hub and tunnel:    p50 %s, p99 %s (%d, one at a time)\n", through[len(through)/2], through[len(through)*99/100], gets)
	b.ReportMetric(float64(rss)/(1<<20), "MiB-agent-rss")
	b.ReportMetric(millicores(cpu1-cpu0, window), "mcores-agent-idle")
	b.ReportMetric(p50.Seconds()*1000, "ms-work-p50")
	b.ReportMetric(p99.Seconds()*1000, "ms-work-p99")
	b.ReportMetric(unreachable.Seconds(), "s-unreachable")
	b.ReportMetric(float64(through[len(through)/2].Microseconds())/1000, "ms-via-hub-p50")
	b.ReportMetric(float64(through[len(through)*99/100].Microseconds())/1000, "ms-via-hub-p99")
}

// getLatencies GETs the ConfigMap default/c0 n times, one at a time, with cfg (after a first
// GET that succeeds: the agent's tunnel may still be opening), and returns the durations,
// sorted and rounded to 10 µs.
func getLatencies(b *testing.B, cfg *rest.Config, n int) []time.Duration {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 10000, 10000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "c0", metav1.GetOptions{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("GET through %s: %v", cfg.Host, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	ds := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "c0", metav1.GetOptions{}); err != nil {
			b.Fatalf("GET through %s: %v", cfg.Host, err)
		}
		ds = append(ds, time.Since(start).Round(10*time.Microsecond))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds
}

func waitPhase(b *testing.B, c client.Client, name string, phase v1alpha1.ClusterPhase, timeout time.Duration) time.Duration {
	b.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		cl := &v1alpha1.Cluster{}
		if err := c.Get(context.Background(), client.ObjectKey{Name: name}, cl); err == nil && cl.Status.Phase == phase {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatalf("cluster %s not %s within %s", name, phase, timeout)
	return 0
}

func componentPID(b *testing.B, clusterDir, name string) int {
	b.Helper()
	rs, err := local.ReadRuntimeStatus(clusterDir)
	if err != nil {
		b.Fatal(err)
	}
	if c, ok := rs.Component(name); ok && c.Running {
		return c.PID
	}
	b.Fatalf("no running %s in %s", name, clusterDir)
	return 0
}

// killedAgent imports the member again as "ext", runs an agent for it as a process, waits
// until ext is Ready, kills the agent with SIGKILL and returns how long until ext is
// Unreachable.
func killedAgent(b *testing.B, h *hubtest.Hub, clusterDir string) time.Duration {
	b.Helper()
	ctx := context.Background()
	kubeconfig := filepath.Join(clusterDir, "kubeconfig")
	raw, err := os.ReadFile(kubeconfig)
	if err != nil {
		b.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "convoy-system", Name: "ext-kubeconfig"}, Data: map[string][]byte{v1alpha1.KubeconfigSecretKey: raw}}
	if err := h.Client.Create(ctx, secret); err != nil {
		b.Fatal(err)
	}
	ext := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "ext"}, Spec: v1alpha1.ClusterSpec{
		Provider: v1alpha1.ProviderImport, KubeconfigSecretRef: &v1alpha1.SecretReference{Name: secret.Name}}}
	if err := h.Client.Create(ctx, ext); err != nil {
		b.Fatal(err)
	}
	waitPhase(b, h.Client, "ext", v1alpha1.ClusterJoining, time.Minute)
	token, err := join.Issue(ctx, h.Client, "ext", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	state := b.TempDir()
	agent := exec.Command(hubtest.ConvoyBinary(b), "agent", "--cluster", "ext", "--hub-url", h.APIServerURL(),
		"--hub-ca-file", kubeproc.CACertPath(hub.Layout{Dir: h.Options.DataDir}.PKI()),
		"--bootstrap-token", token.Value, "--state-dir", state, "--kubeconfig", kubeconfig)
	if err := agent.Start(); err != nil {
		b.Fatal(err)
	}
	defer agent.Wait()
	waitPhase(b, h.Client, "ext", v1alpha1.ClusterReady, time.Minute)
	time.Sleep(3 * time.Second)
	if err := agent.Process.Kill(); err != nil {
		b.Fatal(err)
	}
	return waitPhase(b, h.Client, "ext", v1alpha1.ClusterUnreachable, time.Minute)
}
