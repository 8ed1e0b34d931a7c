package main_test

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/convoy-dev/convoy/internal/hubtest"
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

	load := hubtest.StartLoad(edgeURL)
	start := time.Now()
	out = run(t, env, convoyBin, "profile", "upgrade", "fleet", version.Kubernetes, "--timeout", "20m")
	took := time.Since(start)
	r := load.Stop()
	t.Logf("fleet upgraded from %s to %s in %s; %d requests through the edge, %d failed, p99 %s", version.KubernetesPrevious, version.Kubernetes, took.Round(time.Second), r.Requests, len(r.Failures), r.P99)
	if len(r.Failures) > 0 {
		t.Errorf("%d of %d requests through the edge failed during the upgrade; first: %v", len(r.Failures), r.Requests, r.Failures[:min(5, len(r.Failures))])
	}
	if !strings.Contains(out, "every cluster of fleet conforms to revision 2") {
		t.Errorf("convoy profile upgrade fleet did not finish:\n%s", out)
	}
	// Cluster by cluster: none starts moving before the one before it conforms.
	lines := strings.Split(out, "\n")
	at := func(match func(string) bool) int { return slices.IndexFunc(lines, match) }
	for i := 1; i < len(clusters); i++ {
		prev, next := clusters[i-1], clusters[i]
		done := at(func(l string) bool {
			return l == "  "+prev+": conformant at revision 2 (Kubernetes "+version.Kubernetes+")"
		})
		began := at(func(l string) bool {
			return strings.HasPrefix(l, "  "+next+": ") && !strings.Contains(l, "conformant at revision 1")
		})
		if done < 0 || began < 0 || began < done {
			t.Errorf("the update run did not go cluster by cluster: %s moved (line %d) before %s conformed (line %d):\n%s", next, began, prev, done, out)
		}
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
