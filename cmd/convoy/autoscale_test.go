package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/convoy-dev/convoy/internal/hubtest"
)

// checkAutoscale runs on the fleet of `convoy up`, whose profile's pool autoscales between 2
// and 3 nodes: a pod that finds no room on cluster's two nodes makes its runtime add a third
// real node, where the pod runs; once the pods are gone the third node, idle, is drained and
// removed. A fixed count for the autoscaled pool is refused, with what to do instead.
func checkAutoscale(t *testing.T, env []string, kubectl, kubeconfig, cluster, dataDir string) {
	t.Helper()
	output := func(name string, args ...string) (string, error) {
		out, err := exec.Command(name, args...).CombinedOutput()
		return string(out), err
	}
	if out, err := convoyOutput(env, "cluster", "scale", cluster, "--nodes", "3"); err == nil || !strings.Contains(out, "autoscales between 2 and 3 nodes; move its bounds with --min and --max") {
		t.Errorf("convoy cluster scale %s --nodes 3 on an autoscaled pool: err=%v\n%s", cluster, err, out)
	}

	manifest := filepath.Join(hubtest.RepoRoot(t), "examples", "web", "burst.yaml")
	start := time.Now()
	run(t, nil, kubectl, "--kubeconfig", kubeconfig, "apply", "-f", manifest)
	third := cluster + "-default-2"
	eventually(t, "a third real node on "+cluster+" running the pod that waited", 3*time.Minute, func() (bool, error) {
		out, err := output(kubectl, "--kubeconfig", kubeconfig, "-n", "burst", "get", "pods", "-o",
			`jsonpath={range .items[*]}{.spec.nodeName}={.status.phase}{" "}{end}`)
		return err == nil && strings.Contains(out, third+"=Running") && strings.Count(out, "=Running") == 3, fmt.Errorf("%s %v", out, err)
	})
	t.Logf("%s: a third real node ran the pending pod %s after the pods were applied", cluster, time.Since(start).Round(time.Second))
	nodes := run(t, nil, kubectl, "--kubeconfig", kubeconfig, "get", "nodes", "-L", "convoy.dev/node-kind")
	if strings.Count(nodes, " Ready ") != 3 || strings.Count(nodes, " real") != 3 {
		t.Errorf("%s's nodes after the scale-out:\n%s", cluster, nodes)
	}

	start = time.Now()
	run(t, nil, kubectl, "--kubeconfig", kubeconfig, "delete", "namespace", "burst", "--wait=false")
	eventually(t, "the idle third node of "+cluster+" drained and removed", 3*time.Minute, func() (bool, error) {
		out, err := output(kubectl, "--kubeconfig", kubeconfig, "get", "nodes", "-o", `jsonpath={.items[*].metadata.name}`)
		return err == nil && !strings.Contains(out, third) && len(strings.Fields(out)) == 2, fmt.Errorf("%s %v", out, err)
	})
	t.Logf("%s: the idle third node was removed %s after its pods were deleted", cluster, time.Since(start).Round(time.Second))
	// The runtime logged both decisions, and the node's removal from the host once its
	// processes and network namespace are gone (after the Node object).
	eventually(t, cluster+"'s runtime log of the scale-out, the scale-in and the node's removal", time.Minute, func() (bool, error) {
		raw, err := os.ReadFile(filepath.Join(dataDir, "clusters", cluster, "logs", "runtime.log"))
		if err != nil {
			return false, err
		}
		for _, want := range []string{`msg="autoscaling a node pool" cluster=` + cluster + ` pool=default from=2 to=3`, `msg="autoscaling a node pool" cluster=` + cluster + ` pool=default from=3 to=2`, `msg="node removed" cluster=` + cluster + ` node=` + third} {
			if !strings.Contains(string(raw), want) {
				return false, fmt.Errorf("no %s", want)
			}
		}
		return true, nil
	})
	// The hub sees the cluster whole again, at the pool's two nodes.
	eventually(t, cluster+" Ready with its 2 nodes in convoy get clusters", 2*time.Minute, func() (bool, error) {
		out, err := convoyOutput(env, "get", "clusters")
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, cluster+" ") {
				return strings.Contains(line, " Ready ") && strings.Contains(line, " 2/2 "), fmt.Errorf("%s", line)
			}
		}
		return false, fmt.Errorf("%s %v", out, err)
	})
}
