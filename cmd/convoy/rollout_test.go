package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// TestRolloutAcrossLocalClusters rolls a good change out in three waves and checks the order and
// the soak times, then a change that never becomes Available (kwok runs any image, so the bad
// release asks for a node that does not exist), which must stop after the canary wave and pause
// itself, and `convoy rollout undo`, which must bring the previous revision back everywhere.
func TestRolloutAcrossLocalClusters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub and three local clusters")
	}
	f, members, kubectl := startShopFleet(t, false)
	hub := f.Client()
	ctx := context.Background()
	kubectl("apply", "-f", "testdata/shop/")
	placement := filepath.Join(t.TempDir(), "placement.yaml")
	if err := os.WriteFile(placement, []byte(`apiVersion: convoy.dev/v1alpha1
kind: Placement
metadata: {name: web, namespace: shop}
spec:
  resources: [{group: apps, kind: Deployment, name: web}]
  clusters: {labelSelector: {matchLabels: {fleet: shop}}}
  replicas: {type: Divided}
  rollout:
    progressDeadlineSeconds: 20
    waves:
    - {name: canary, clusters: {names: [us-east]}, soakSeconds: 5}
    - {name: west, clusters: {regions: [us-west]}, soakSeconds: 5}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	f.convoy(t, "apply", "-f", placement)
	regions := []string{"us-east", "us-west", "eu-west"}
	for _, r := range regions {
		eventually(t, "web 2/2 in "+r, 3*time.Minute, func() (bool, error) {
			n, avail, _ := deploymentOn(t, members[r], "shop", "web")
			return n == 2 && avail == 2, fmt.Errorf("replicas %d, available %d", n, avail)
		})
	}
	rolloutPhase := func() string {
		p := &v1alpha1.Placement{}
		if err := hub.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, p); err != nil || p.Status.Rollout == nil {
			return ""
		}
		return string(p.Status.Rollout.Phase)
	}
	eventually(t, "the first revision recorded as complete", time.Minute, func() (bool, error) { return rolloutPhase() == "Complete", nil })

	// A good change goes canary, then west, then the rest, each after the previous wave's soak.
	kubectl("set", "image", "deployment/web", "web=nginx:1.28", "-n", "shop")
	seen := map[string]time.Time{}
	available := map[string]time.Time{}
	deadline := time.Now().Add(3 * time.Minute)
	for len(available) < 3 && time.Now().Before(deadline) {
		for _, r := range regions {
			n, avail, image := deploymentOn(t, members[r], "shop", "web")
			if image == "nginx:1.28" && seen[r].IsZero() {
				seen[r] = time.Now()
			}
			if image == "nginx:1.28" && n == avail && n > 0 && available[r].IsZero() {
				available[r] = time.Now()
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(available) < 3 {
		t.Fatalf("the good rollout did not reach every cluster: seen %v, available %v\n%s", seen, available, f.convoy(t, "rollout", "status", "shop/web"))
	}
	if !seen["us-east"].Before(seen["us-west"]) || !seen["us-west"].Before(seen["eu-west"]) {
		t.Errorf("waves out of order: %v", seen)
	}
	eventually(t, "the good rollout complete", time.Minute, func() (bool, error) { return rolloutPhase() == "Complete", nil })
	// The soak is timed by the hub, from the moment a wave passed its gate to the moment it is
	// done; the Events it recorded carry both (what the test sees on the members lags a little).
	// Each Event is stamped when it is recorded, after the decision it tells of, and the two
	// lags differ (by 33 ms in one run on a loaded machine): a wave that did not soak would
	// show well under a second.
	eventTimes := rolloutEvents(t, kubectl)
	for _, wave := range []string{"canary", "west"} {
		passed, done := eventTimes["wave "+wave+" passed its health gate"], eventTimes["wave "+wave+" done"]
		if passed.IsZero() || done.IsZero() {
			t.Errorf("no Events for wave %s: %v", wave, eventTimes)
		} else if d := done.Sub(passed); d < 4500*time.Millisecond {
			t.Errorf("wave %s soaked %s; it soaks 5s", wave, d)
		}
	}

	// A bad change: its Pods can never be scheduled. The canary takes it, the rollout pauses
	// itself at the deadline, and the other clusters never see it.
	kubectl("patch", "deployment", "web", "-n", "shop", "--type", "merge", "-p",
		`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:broken"}],"nodeSelector":{"convoy.dev/no-such-node":"true"}}}}}`)
	eventually(t, "the canary running the bad release", time.Minute, func() (bool, error) {
		_, _, image := deploymentOn(t, members["us-east"], "shop", "web")
		return image == "nginx:broken", nil
	})
	eventually(t, "the rollout paused by itself", time.Minute, func() (bool, error) { return rolloutPhase() == "Paused", nil })
	status := f.convoy(t, "rollout", "status", "shop/web")
	if !strings.Contains(status, "not Available within 20s") {
		t.Errorf("rollout status does not say why it paused:\n%s", status)
	}
	for _, r := range []string{"us-west", "eu-west"} {
		if _, _, image := deploymentOn(t, members[r], "shop", "web"); image != "nginx:1.28" {
			t.Errorf("%s runs %s; the bad release went past the canary", r, image)
		}
	}

	// Undo: the previous revision goes back to the hub and rolls out, in waves, everywhere.
	out := f.convoy(t, "rollout", "undo", "shop/web")
	if !strings.Contains(out, "put back on the hub") {
		t.Errorf("undo: %s", out)
	}
	for _, r := range regions {
		eventually(t, "nginx:1.28 available again in "+r, 2*time.Minute, func() (bool, error) {
			n, avail, image := deploymentOn(t, members[r], "shop", "web")
			return image == "nginx:1.28" && n == 2 && avail == 2, fmt.Errorf("%s %d/%d", image, avail, n)
		})
	}
	if img := kubectl("get", "deployment", "web", "-n", "shop", "-o", "jsonpath={.spec.template.spec.containers[0].image}"); img != "nginx:1.28" {
		t.Errorf("the hub's template after undo: %s", img)
	}
	eventually(t, "the undo complete", time.Minute, func() (bool, error) { return rolloutPhase() == "Complete", nil })

	// A wave's own gate: a condition on one of the resources must hold too. This one never
	// does, so a healthy canary still does not let the rollout go on.
	kubectl("patch", "placement", "web", "-n", "shop", "--type", "json", "-p",
		`[{"op":"add","path":"/spec/rollout/waves/0/gate","value":{"group":"apps","kind":"Deployment","name":"web","type":"ReplicaFailure"}}]`)
	kubectl("set", "image", "deployment/web", "web=nginx:1.29", "-n", "shop")
	eventually(t, "the canary Available on nginx:1.29", time.Minute, func() (bool, error) {
		n, avail, image := deploymentOn(t, members["us-east"], "shop", "web")
		return image == "nginx:1.29" && n == avail, nil
	})
	eventually(t, "the gated rollout paused", time.Minute, func() (bool, error) { return rolloutPhase() == "Paused", nil })
	if status := f.convoy(t, "rollout", "status", "shop/web"); !strings.Contains(status, "with Deployment web ReplicaFailure=True") {
		t.Errorf("rollout status does not name the gate:\n%s", status)
	}
	if _, _, image := deploymentOn(t, members["us-west"], "shop", "web"); image != "nginx:1.28" {
		t.Errorf("us-west runs %s past a gate that does not hold", image)
	}
}

// rolloutEvents returns the time of the first Rollout Event of each message on shop/web.
func rolloutEvents(t *testing.T, kubectl func(args ...string) string) map[string]time.Time {
	t.Helper()
	var list struct {
		Items []struct {
			Reason    string    `json:"reason"`
			Note      string    `json:"note"`
			EventTime time.Time `json:"eventTime"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(kubectl("get", "events.events.k8s.io", "-n", "shop", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	out := map[string]time.Time{}
	for _, e := range list.Items {
		if e.Reason != "Rollout" {
			continue
		}
		if old, ok := out[e.Note]; !ok || e.EventTime.Before(old) {
			out[e.Note] = e.EventTime
		}
	}
	return out
}
