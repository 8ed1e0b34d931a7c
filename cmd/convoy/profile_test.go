package main_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/convoy-dev/convoy/internal/version"
)

// checkFleetUpgrade moves `convoy up`'s fleet, built from the profile fleet on the previous
// Kubernetes version, to the current one, as the README does, while a steady load goes through
// the edge pool; and shows a hand edit of an add-on in `convoy cluster diff`, then put back.
func checkFleetUpgrade(t *testing.T, env []string, kubectl string, kubeconfigs map[string]string, clusters []string, edgeURL string) {
	t.Helper()
	out := run(t, env, convoyBin, "get", "clusters")
	if strings.Count(out, "fleet@1") != 3 || strings.Count(out, " yes ") != 3 || strings.Count(out, version.KubernetesPrevious) != 3 {
		t.Errorf("convoy get clusters does not show three clusters conformant to fleet@1 on %s:\n%s", version.KubernetesPrevious, out)
	}

	// An add-on edited by hand shows as drift, and the cluster's runtime puts it back.
	run(t, nil, kubectl, "--kubeconfig", kubeconfigs["us-east"], "-n", "kube-system", "set", "image", "deployment/coredns", "coredns=registry.convoy.local/coredns/coredns:v0.0.1")
	eventually(t, "the edited CoreDNS in convoy cluster diff us-east", time.Minute, func() (bool, error) {
		out, _ := convoyOutput(env, "cluster", "diff", "us-east")
		return strings.Contains(out, "addons[coredns].version") && strings.Contains(out, "v0.0.1"), fmt.Errorf("%s", out)
	})
	eventually(t, "us-east's CoreDNS put back", 2*time.Minute, func() (bool, error) {
		out, _ := convoyOutput(env, "cluster", "diff", "us-east")
		return strings.Contains(out, "matches revision 1 of profile fleet"), fmt.Errorf("%s", out)
	})

	// A skip-level upgrade is refused, with the reason.
	if out, err := convoyOutput(env, "profile", "upgrade", "fleet", "v1.39.0"); err == nil || !strings.Contains(out, "one minor version at a time") {
		t.Errorf("convoy profile upgrade fleet v1.39.0: err=%v\n%s", err, out)
	}

	load := startLoad(edgeURL)
	start := time.Now()
	out = run(t, env, convoyBin, "profile", "upgrade", "fleet", version.Kubernetes, "--timeout", "20m")
	took := time.Since(start)
	requests, failed, p99, failures := load.stop()
	t.Logf("fleet upgraded from %s to %s in %s; %d requests through the edge, %d failed, p99 %s", version.KubernetesPrevious, version.Kubernetes, took.Round(time.Second), requests, failed, p99)
	if failed > 0 {
		t.Errorf("%d of %d requests through the edge failed during the upgrade; first: %v", failed, requests, failures)
	}
	if !strings.Contains(out, "every cluster of fleet conforms to revision 2") {
		t.Errorf("convoy profile upgrade fleet did not finish:\n%s", out)
	}
	// Cluster by cluster: none starts before the one before it conforms.
	var order []int
	for _, c := range clusters {
		order = append(order, strings.Index(out, "  "+c+": conformant at revision 2"))
	}
	if slices.Contains(order, -1) || !slices.IsSorted(order) {
		t.Errorf("the update run did not go cluster by cluster (%v; positions %v):\n%s", clusters, order, out)
	}
	for _, c := range clusters {
		nodes := run(t, nil, kubectl, "--kubeconfig", kubeconfigs[c], "get", "nodes", "-o", "jsonpath={range .items[*]}{.status.nodeInfo.kubeletVersion} {.spec.unschedulable}{\"\\n\"}{end}")
		if strings.Count(nodes, version.Kubernetes+" \n") != 2 {
			t.Errorf("%s's nodes after the upgrade (want 2 schedulable on %s):\n%s", c, version.Kubernetes, nodes)
		}
	}
	out = run(t, env, convoyBin, "get", "clusters")
	if strings.Count(out, "fleet@2") != 3 || strings.Count(out, " yes ") != 3 || strings.Count(out, version.Kubernetes) != 3 {
		t.Errorf("convoy get clusters after the upgrade:\n%s", out)
	}
}

// convoyOutput runs convoy and returns what it printed, failing nothing.
func convoyOutput(env []string, args ...string) (string, error) {
	cmd := exec.Command(convoyBin, args...)
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// load sends requests through the edge one after another, and counts them.
type load struct {
	cancel   context.CancelFunc
	done     chan struct{}
	mu       sync.Mutex
	latency  []time.Duration
	failures []string
}

func startLoad(url string) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel, done: make(chan struct{})}
	client := &http.Client{Timeout: 5 * time.Second}
	go func() {
		defer close(l.done)
		for ctx.Err() == nil {
			t0 := time.Now()
			resp, err := client.Get(url)
			d := time.Since(t0)
			failure := ""
			switch {
			case err != nil:
				failure = err.Error()
			default:
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(raw), "web: cluster ") {
					failure = fmt.Sprintf("%d %q", resp.StatusCode, raw)
				}
			}
			l.mu.Lock()
			l.latency = append(l.latency, d)
			if failure != "" {
				l.failures = append(l.failures, time.Now().Format(time.TimeOnly)+" "+failure)
			}
			l.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return l
}

func (l *load) stop() (requests, failed int, p99 time.Duration, failures []string) {
	l.cancel()
	<-l.done
	slices.Sort(l.latency)
	if n := len(l.latency); n > 0 {
		p99 = l.latency[min(n-1, n*99/100)]
	}
	return len(l.latency), len(l.failures), p99, l.failures[:min(len(l.failures), 5)]
}
