package main_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/provider/local"
)

// TestFailoverAcrossLocalClusters kills one cluster's API server (with its runtime frozen, so
// that nothing restarts it), expects its Divided replicas to become Available on the other two
// within the grace plus a few seconds, with nothing deleted on it, and expects the replicas to
// come back once it has been restarted and stable. The clusters have real nodes and the
// replicas are real pods of the demo app.
func TestFailoverAcrossLocalClusters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub and three local clusters")
	}
	f, members, kubectl := startShopFleet(t, true)
	hub := f.Client()
	ctx := context.Background()
	regions := []string{"us-east", "us-west", "eu-west"}
	kubectl("apply", "-f", "testdata/shop/")
	kubectl("-n", "shop", "set", "image", "deployment/web", "web="+webImage)
	placement := filepath.Join(t.TempDir(), "placement.yaml")
	if err := os.WriteFile(placement, []byte(`apiVersion: convoy.dev/v1alpha1
kind: Placement
metadata: {name: web, namespace: shop}
spec:
  resources: [{group: apps, kind: Deployment, name: web}]
  clusters: {labelSelector: {matchLabels: {fleet: shop}}}
  replicas: {type: Divided}
  failover: {graceSeconds: 5, stableSeconds: 15}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	f.convoy(t, "apply", "-f", placement)
	for _, r := range regions {
		eventually(t, "web 2/2 in "+r, 3*time.Minute, func() (bool, error) {
			n, avail, _ := deploymentOn(t, members[r], "shop", "web")
			return n == 2 && avail == 2, fmt.Errorf("replicas %d, available %d", n, avail)
		})
	}

	// Lose us-west: freeze its runtime so nothing restarts its API server, then kill that.
	rs, err := local.ReadRuntimeStatus(filepath.Join(f.DataDir, "clusters", "us-west"))
	if err != nil {
		t.Fatal(err)
	}
	runtimePID := rs.PID
	apiserver, _ := rs.Component(kubeproc.KubeAPIServer)
	if err := syscall.Kill(runtimePID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(runtimePID, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	if err := syscall.Kill(apiserver.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	lost := time.Now()
	for _, r := range []string{"us-east", "eu-west"} {
		eventually(t, "web 3/3 in "+r, time.Minute, func() (bool, error) {
			n, avail, _ := deploymentOn(t, members[r], "shop", "web")
			return n == 3 && avail == 3, fmt.Errorf("replicas %d, available %d", n, avail)
		})
	}
	took := time.Since(lost)
	t.Logf("us-west's replicas were Available elsewhere %s after its API server was killed (grace 5s)", took.Round(100*time.Millisecond))
	if took > 30*time.Second {
		t.Errorf("failover took %s; the grace is 5s and detection a few seconds", took)
	}
	p := &v1alpha1.Placement{}
	if err := hub.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, p); err != nil {
		t.Fatal(err)
	}
	cond := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.PlacementFailedOver)
	if cond == nil || cond.Status != "True" || !strings.Contains(cond.Message, "us-west") {
		t.Errorf("FailedOver condition: %+v", cond)
	}
	if events := kubectl("get", "events", "-n", "shop", "--field-selector", "reason=FailedOver", "-o", "name"); strings.TrimSpace(events) == "" {
		t.Error("no FailedOver event")
	}
	// Its Work is left as it was: when it comes back, nothing has been taken from it.
	w := &v1alpha1.Work{}
	if err := hub.Get(ctx, client.ObjectKey{Namespace: v1alpha1.ClusterNamespace("us-west"), Name: "shop.web"}, w); err != nil {
		t.Fatalf("us-west's Work: %v", err)
	}

	// Restart it: the runtime notices its dead API server and starts it again.
	resume()
	waitClusterReady(t, hub, "us-west")
	back := time.Now()
	if n, _, _ := deploymentOn(t, members["us-west"], "shop", "web"); n != 2 {
		t.Errorf("us-west after its return runs %d replicas of web, want its 2 untouched", n)
	}
	// Once stable (15 s), the share comes back: 2/2/2 again, and no flapping on the way.
	for _, r := range []string{"us-east", "eu-west"} {
		eventually(t, "web back to 2 in "+r, time.Minute, func() (bool, error) {
			n, avail, _ := deploymentOn(t, members[r], "shop", "web")
			return n == 2 && avail == 2, fmt.Errorf("replicas %d, available %d", n, avail)
		})
	}
	if d := time.Since(back); d < 14*time.Second {
		t.Errorf("replicas went back after %s, before the stable period of 15s", d)
	}
	if n, avail, _ := deploymentOn(t, members["us-west"], "shop", "web"); n != 2 || avail != 2 {
		t.Errorf("us-west: replicas %d, available %d, want 2/2", n, avail)
	}
}
