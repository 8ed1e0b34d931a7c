package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/provider/local"
)

// TestMetricsQueryCLI runs `convoy metrics query` as a user would, against a hub process:
// the table shows the hub's API server scraped by the store, an invalid query fails with the
// store's own message, and a cluster's metrics reach the store from its agent's collector:
// its API server's, its kubelet's, and its workload state from the agent's exporter.
func TestMetricsQueryCLI(t *testing.T) {
	t.Parallel()
	f := startFleetHub(t)
	eventually(t, "the hub's API server in the metrics store", 90*time.Second, func() (bool, error) {
		cmd := exec.Command(convoyBin, "metrics", "query", `up{job="hub-apiserver"}`)
		cmd.Env = append(os.Environ(), f.env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return false, fmt.Errorf("%v: %s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return len(lines) == 2 && strings.HasPrefix(lines[0], "NAME") && strings.Contains(lines[1], "hub-apiserver"),
			fmt.Errorf("the table:\n%s", out)
	})
	out := f.convoyFails(t, "metrics", "query", "sum(rate(")
	if !strings.Contains(out, "the metrics store refused the query") {
		t.Errorf("an invalid query:\n%s", out)
	}
	out = f.convoyFails(t, "metrics", "query", " ")
	if !strings.Contains(out, "the query is empty") {
		t.Errorf("an empty query:\n%s", out)
	}

	// A cluster with a real node: its agent's collector scrapes the member's API server and
	// the node's kubelet (resource metrics and cAdvisor), and the hub labels the samples with
	// the cluster and its region; the node's zone comes from the node.
	hubtest.RealNodes(t, local.MissingForRealNodes)
	f.convoy(t, "cluster", "create", "m1", "--nodes", "1", "--node-kind", "real", "--region", "eu-west")
	query := func(q string) string {
		cmd := exec.Command(convoyBin, "metrics", "query", q)
		cmd.Env = append(os.Environ(), f.env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("convoy metrics query %s: %v\n%s", q, err, out)
		}
		return string(out)
	}
	eventually(t, "m1's API server and kubelet scraped", 2*time.Minute, func() (bool, error) {
		out := query(`up{cluster="m1"}`)
		ok := true
		for _, job := range []string{"apiserver", "kubelet", "cadvisor", "kube-state-metrics"} {
			line := ""
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, " "+job+" ") {
					line = l
				}
			}
			ok = ok && line != "" && strings.Contains(line, "eu-west") && strings.Contains(line, " 1 ")
		}
		return ok, fmt.Errorf("up{cluster=\"m1\"}:\n%s", out)
	})
	eventually(t, "m1's containers' CPU", time.Minute, func() (bool, error) {
		out := query(`sum by (cluster, region, zone) (container_cpu_usage_seconds_total{cluster="m1", job="kubelet"})`)
		return strings.Contains(out, "m1") && strings.Contains(out, "eu-west"), fmt.Errorf("container CPU:\n%s", out)
	})
	// The agent's workload-state exporter, under kube-state-metrics' names: CoreDNS available,
	// and the real node ready.
	eventually(t, "m1's workload state", time.Minute, func() (bool, error) {
		out := query(`kube_deployment_status_replicas_available{cluster="m1", namespace="kube-system", deployment="coredns"} >= 1`)
		nodes := query(`kube_node_status_condition{cluster="m1", condition="Ready", status="true"} == 1`)
		return strings.Contains(out, "coredns") && strings.Contains(nodes, "m1"), fmt.Errorf("CoreDNS available:\n%s\nnodes ready:\n%s", out, nodes)
	})
}
