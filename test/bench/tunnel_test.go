package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/identity"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// BenchmarkTunnels measures what the agents' tunnels cost the hub: the resident memory of the
// hub process and of its API server (which carries each tunnel's WebSocket to the hub's
// aggregated API) with 100 tunnels open, against none. The tunnels are real agent identities'
// (100 agent-only Clusters, a token for each one's agent ServiceAccount), opened from this
// process; their members are never dialed.
func BenchmarkTunnels(b *testing.B) {
	const n = 100
	h := hubtest.StartProcess(b, hubtest.ProcessOptions{Args: []string{"--log-level", "warn"}})
	defer h.Stop()
	ctx := context.Background()
	c, cs, cfg := h.Client(), h.Clientset(), h.Config()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("t%03d", i)
		if err := c.Create(ctx, &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: names[i]}, Spec: v1alpha1.ClusterSpec{Provider: v1alpha1.ProviderImport}}); err != nil {
			b.Fatal(err)
		}
	}
	tokens := make([]string, n)
	for i, name := range names {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			cl := &v1alpha1.Cluster{}
			err := c.Get(ctx, client.ObjectKey{Name: name}, cl)
			if err == nil {
				var tr *authenticationv1.TokenRequest
				tr, err = cs.CoreV1().ServiceAccounts(v1alpha1.ClusterNamespace(name)).CreateToken(ctx, v1alpha1.AgentServiceAccount(v1alpha1.AgentGeneration(cl)),
					&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
				if err == nil {
					tokens[i] = tr.Status.Token
					break
				}
			}
			if time.Now().After(deadline) {
				b.Fatalf("no agent token for %s: %v", name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	pids := map[string]int{"convoy hub": h.PID()}
	for _, ch := range h.Status().Children {
		pids[ch.Name] = ch.PID
	}
	const settle = 15 * time.Second
	time.Sleep(settle)
	before := map[string]int64{}
	for name, pid := range pids {
		before[name], _ = RSS(pid)
	}

	tctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	for i, name := range names {
		t := &identity.Tunnel{URL: strings.TrimSuffix(cfg.Host, "/") + v1alpha1.TunnelPath(name), HubCA: cfg.CAData,
			Token: func() string { return tokens[i] }, Member: &rest.Config{Host: "https://127.0.0.1:1"},
			Backoff: func(int) time.Duration { return time.Second }, Log: slog.New(slog.DiscardHandler)}
		wg.Go(func() { t.Run(tctx) })
	}
	// A tunnel is open when the proxy's answer for its cluster is no longer 503 (no tunnel) but
	// the agent's own (its member does not answer).
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		b.Fatal(err)
	}
	hc := &http.Client{Transport: rt, Timeout: 10 * time.Second}
	start := time.Now()
	for _, name := range names {
		for {
			resp, err := hc.Get(strings.TrimSuffix(cfg.Host, "/") + v1alpha1.ClusterProxyPath(name) + "/version")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable {
					break
				}
			}
			if time.Since(start) > 3*time.Minute {
				b.Fatalf("the tunnel of %s did not open: %v", name, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	opened := time.Since(start)
	time.Sleep(settle)

	fmt.Printf("\nTunnels benchmark (%d agent tunnels, opened from one process; Kubernetes API server in between)\n", n)
	fmt.Printf("machine: %s\n", Machine())
	fmt.Printf("all %d open after:                 %s\n", n, opened.Round(10*time.Millisecond))
	for _, name := range []string{"convoy hub", kubeproc.KubeAPIServer} {
		after, _ := RSS(pids[name])
		fmt.Printf("  %-16s rss %9s with none, %9s with %d: %6.1f KiB per tunnel\n", name, MiB(before[name]), MiB(after), n, float64(after-before[name])/1024/n)
		b.ReportMetric(float64(after-before[name])/1024/n, "KiB-per-tunnel-"+strings.ReplaceAll(name, " ", "-"))
	}
}
