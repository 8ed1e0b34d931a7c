package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/kubeproc"
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

	// convoy top, from the same store: m1's node, its running pods and their CPU and memory;
	// CoreDNS as a workload of m1.
	top := func(args ...string) string {
		cmd := exec.Command(convoyBin, append([]string{"top"}, args...)...)
		cmd.Env = append(os.Environ(), f.env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("convoy top %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	eventually(t, "m1 in convoy top clusters", time.Minute, func() (bool, error) {
		out := top("clusters")
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) == 6 && f[0] == "m1" {
				return f[1] == "eu-west" && f[2] == "1" && f[3] != "0" && strings.HasSuffix(f[4], "m") && strings.HasSuffix(f[5], "Mi"), fmt.Errorf("the row of m1: %q", l)
			}
		}
		return false, fmt.Errorf("no m1:\n%s", out)
	})
	eventually(t, "CoreDNS in convoy top workloads", time.Minute, func() (bool, error) {
		out := top("workloads", "-n", "kube-system", "--cluster", "m1")
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) == 5 && f[0] == "Deployment/coredns" {
				return f[1] == "m1" && strings.HasSuffix(f[2], "/"+strings.Split(f[2], "/")[0]) && f[3] != "-" && f[4] != "-", fmt.Errorf("the row of CoreDNS: %q", l)
			}
		}
		return false, fmt.Errorf("no CoreDNS:\n%s", out)
	})
	if out := f.convoyFails(t, "top", "workloads", "-n", "Bad_NS"); !strings.Contains(out, "not a namespace name") {
		t.Errorf("convoy top workloads -n Bad_NS:\n%s", out)
	}

	// The store down for 60 s (stopped, as a hung process is): the hub's /status says so and
	// queries fail with a message that says where to look; m1's collector keeps what it
	// scrapes meanwhile and sends it when the store is back, so that the minute holds every
	// scrape of m1's API server (one each 15 s).
	var storePID int
	for _, c := range f.Status().Children {
		if c.Name == kubeproc.VictoriaMetrics {
			storePID = c.PID
		}
	}
	if storePID == 0 {
		t.Fatalf("no metrics store among the hub's children: %+v", f.Status().Children)
	}
	if err := syscall.Kill(storePID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := syscall.Kill(storePID, syscall.SIGCONT); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(resume)
	eventually(t, "the hub's /status saying the store is down", 30*time.Second, func() (bool, error) {
		st := f.Status().MetricsStore
		return st != nil && !st.Up && st.Error != "", fmt.Errorf("%+v", st)
	})
	if out := f.convoyFails(t, "metrics", "query", "up"); !strings.Contains(out, "shows whether its metrics store runs") {
		t.Errorf("a query while the store is down:\n%s", out)
	}
	time.Sleep(time.Until(stopped.Add(60 * time.Second))) // the outage itself, not a wait for an outcome
	resume()
	eventually(t, "the hub's /status saying the store is back", 30*time.Second, func() (bool, error) {
		st := f.Status().MetricsStore
		return st != nil && st.Up, fmt.Errorf("%+v", st)
	})
	window := fmt.Sprintf(`count_over_time(up{cluster="m1", job="apiserver"}[60s] @ %d)`, stopped.Add(60*time.Second).Unix())
	eventually(t, "every scrape of the outage in the store", 2*time.Minute, func() (bool, error) {
		out := query(window)
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) >= 3 && strings.Contains(l, "m1") {
				n, err := strconv.Atoi(f[len(f)-2])
				return err == nil && n >= 4, fmt.Errorf("%d scrapes of the outage's minute in the store (want 4):\n%s", n, out)
			}
		}
		return false, fmt.Errorf("nothing of the outage in the store:\n%s", out)
	})
}
