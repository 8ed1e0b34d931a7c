package bench

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/provider/local"
	"github.com/convoy-dev/convoy/internal/version"
)

// BenchmarkFleetUpgrade measures a fleet upgrade as the README runs it: `convoy up`'s three
// clusters of two real nodes, built from the profile fleet on the previous Kubernetes version,
// with the demo app behind the edge pool; then `convoy profile upgrade fleet` to the current
// version while one client sends requests through the edge, one after another. It prints the
// whole fleet's time, each node's (from the command's first line about it to its first line
// about the next step), the requests that failed (the target is none) and their latency, and
// what building the second version cost when `make tools` built it. Then it measures the
// autoscaler on us-west: how long a pod that finds no room waits for a new real node, and how
// long an idle node takes to go.
func BenchmarkFleetUpgrade(b *testing.B) {
	hubtest.RealNodes(b, local.MissingForRealNodes)
	root := hubtest.RepoRoot(b)
	convoy := filepath.Join(root, "bin", "convoy")
	dataDir := filepath.Join(b.TempDir(), "convoy")
	env := append(os.Environ(), "CONVOY_BIN_DIR="+hubtest.BinDir(b), "CONVOY_DATA_DIR="+dataDir)
	run := func(name string, args ...string) string {
		cmd := exec.Command(name, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	b.Cleanup(func() {
		cmd := exec.Command(convoy, "down", "--purge")
		cmd.Env = env
		_ = cmd.Run()
	})
	run(convoy, "up", "--edge-addresses", "127.74.0.0/24", "--kubernetes-version", version.KubernetesPrevious)
	run(convoy, "image", "build", "./examples/web", "--dir", root, "--name", "registry.convoy.local/examples/web:1")
	run(convoy, "apply", "-f", filepath.Join(root, "examples/web/web.yaml"))
	run(convoy, "apply", "-f", filepath.Join(root, "examples/web/placement.yaml"))
	run(filepath.Join(hubtest.BinDir(b), "kubectl"), "--kubeconfig", filepath.Join(dataDir, "kubeconfig"), "apply", "-f", filepath.Join(root, "examples/web/route.yaml"))
	const url = "http://127.74.0.1:8080/"
	seen := map[string]bool{}
	hubtest.Eventually(b, "the edge answering from all three clusters", 3*time.Minute, func() (bool, error) {
		body, err := hubtest.DemoPage(http.DefaultClient, url)
		if err == nil {
			if m := regexp.MustCompile(`^web: cluster ([a-z-]+),`).FindStringSubmatch(body); m != nil {
				seen[m[1]] = true
			}
		}
		return len(seen) == 3, fmt.Errorf("%v; seen %v", err, seen)
	})

	load := hubtest.StartLoad(url)
	cmd := exec.Command(convoy, "profile", "upgrade", "fleet", version.Kubernetes, "--timeout", "30m")
	cmd.Env = env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	type line struct {
		at   time.Duration
		text string
	}
	var lines []line
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		lines = append(lines, line{time.Since(start), sc.Text()})
	}
	err = cmd.Wait()
	took := time.Since(start)
	r := load.Stop()
	var transcript strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&transcript, "%6.1fs %s\n", l.at.Seconds(), l.text)
	}
	if err != nil {
		b.Fatalf("convoy profile upgrade fleet %s: %v\n%s", version.Kubernetes, err, transcript.String())
	}

	// Each node's time: from the first line that names it to the first line of the cluster's
	// that does not.
	node := regexp.MustCompile(`^  ([a-z-]+): upgrading node (\S+) `)
	var perNode []time.Duration
	began, current := map[string]time.Duration{}, map[string]string{} // by node; by cluster
	for _, l := range lines {
		cluster, name := "", ""
		if m := node.FindStringSubmatch(l.text); m != nil {
			cluster, name = m[1], m[2]
		} else if c, _, ok := strings.Cut(strings.TrimSpace(l.text), ":"); ok && strings.HasPrefix(l.text, "  ") {
			cluster = c
		}
		if cluster == "" {
			continue
		}
		if prev := current[cluster]; prev != "" && prev != name {
			perNode = append(perNode, l.at-began[prev])
			current[cluster] = ""
		}
		if name != "" && current[cluster] == "" {
			current[cluster], began[name] = name, l.at
		}
	}
	slices.Sort(perNode)
	fmt.Printf("\nFleet upgrade benchmark: `convoy up`'s fleet of 3 clusters of 2 real nodes, the demo app behind the edge pool\nmachine: %s\n", Machine())
	fmt.Printf("convoy profile upgrade fleet %s -> %s: %s for the fleet (cluster by cluster: control plane, then each node cordoned, drained, restarted, uncordoned)\n",
		version.KubernetesPrevious, version.Kubernetes, took.Round(100*time.Millisecond))
	if len(perNode) > 0 {
		fmt.Printf("per node (%d): median %s, max %s\n", len(perNode), Median(perNode).Round(100*time.Millisecond), perNode[len(perNode)-1].Round(100*time.Millisecond))
	}
	fmt.Printf("requests through the edge during the upgrade, one client, one after another: %d, failed %d (target 0); latency p50 %s, p99 %s, max %s\n",
		r.Requests, len(r.Failures), r.P50, r.P99, r.Max)
	for _, f := range r.Failures[:min(len(r.Failures), 5)] {
		fmt.Printf("  failed: %s\n", f)
	}
	if raw, err := os.ReadFile(filepath.Join(hubtest.BinDir(b), ".versions", "kubernetes", version.KubernetesPrevious, "build-seconds")); err == nil {
		fmt.Printf("building %s (make tools: 5 programs, one multi-call binary, the Go cache warm from %s): %ss when bin/ was made\n",
			version.KubernetesPrevious, version.Kubernetes, strings.TrimSpace(string(raw)))
	}
	b.ReportMetric(took.Seconds(), "s-fleet-upgrade")
	b.ReportMetric(float64(len(r.Failures)), "failed-requests")

	// Capacity: the fleet's pool autoscales from 2 to 3 real nodes. Three pods that will not
	// share a node go to us-west; the one that waits makes its runtime add a node.
	kubectl := filepath.Join(hubtest.BinDir(b), "kubectl")
	kubeconfig := filepath.Join(b.TempDir(), "us-west.kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(run(convoy, "cluster", "kubeconfig", "us-west")), 0o600); err != nil {
		b.Fatal(err)
	}
	start = time.Now()
	run(kubectl, "--kubeconfig", kubeconfig, "apply", "-f", filepath.Join(root, "examples", "web", "burst.yaml"))
	hubtest.Eventually(b, "the pod that waited running on a third real node", 5*time.Minute, func() (bool, error) {
		out, err := exec.Command(kubectl, "--kubeconfig", kubeconfig, "-n", "burst", "get", "pods", "-o", `jsonpath={range .items[*]}{.spec.nodeName}={.status.phase}{" "}{end}`).Output()
		return err == nil && strings.Contains(string(out), "us-west-default-2=Running"), fmt.Errorf("%s %v", out, err)
	})
	out := time.Since(start)
	start = time.Now()
	run(kubectl, "--kubeconfig", kubeconfig, "delete", "namespace", "burst", "--wait=false")
	hubtest.Eventually(b, "the idle third node removed", 5*time.Minute, func() (bool, error) {
		raw, err := exec.Command(kubectl, "--kubeconfig", kubeconfig, "get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").Output()
		return err == nil && !strings.Contains(string(raw), "us-west-default-2"), fmt.Errorf("%s %v", raw, err)
	})
	in := time.Since(start)
	fmt.Printf("autoscaling (pool of 2 to 3 real nodes, idle time 30s): a pod that found no room ran on a new real node %s after it was applied; the node, idle, was drained and removed %s after the pods were deleted\n",
		out.Round(100*time.Millisecond), in.Round(100*time.Millisecond))
	b.ReportMetric(out.Seconds(), "s-scale-out")
	b.ReportMetric(in.Seconds(), "s-scale-in")
}
