package main_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/manifest"
	"github.com/convoy-dev/convoy/internal/provider/local"
)

// deploymentOn returns a member's Deployment replicas, available replicas and first image;
// replicas is -1 when it is not there.
func deploymentOn(t *testing.T, cs kubernetes.Interface, ns, name string) (replicas, available int32, image string) {
	t.Helper()
	d, err := cs.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return -1, 0, ""
	}
	if err != nil {
		return -2, 0, err.Error()
	}
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	return replicas, d.Status.AvailableReplicas, d.Spec.Template.Spec.Containers[0].Image
}

// TestPlacementAcrossLocalClusters is issue 5's end-to-end test: plain manifests applied to the
// hub with kubectl, a Helm chart installed into the hub with the Helm CLI, and Placements that
// send them to three local clusters, then four, then fewer.
func TestPlacementAcrossLocalClusters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub and four local clusters")
	}
	f, members, kubectl := startShopFleet(t, false)
	hubKubeconfig := filepath.Join(f.DataDir, "kubeconfig")
	bin := hubtest.BinDir(t)
	hub := f.Client()
	ctx := context.Background()
	regions := []string{"us-east", "us-west", "eu-west"}

	// Plain manifests, unchanged, with kubectl; the Placements with convoy apply.
	kubectl("apply", "-f", "testdata/shop/")
	f.convoy(t, "apply", "-f", "testdata/shop-placement.yaml")

	// 6 replicas divided by equal weight: 2/2/2, available, and the image override only in eu-west.
	for _, r := range regions {
		eventually(t, "web 2/2 available in "+r, 3*time.Minute, func() (bool, error) {
			n, avail, _ := deploymentOn(t, members[r], "shop", "web")
			return n == 2 && avail == 2, fmt.Errorf("replicas %d, available %d", n, avail)
		})
		_, _, image := deploymentOn(t, members[r], "shop", "web")
		if want := map[bool]string{true: "nginx:1.28", false: "nginx:1.27"}[r == "eu-west"]; image != want {
			t.Errorf("%s runs %s, want %s", r, image, want)
		}
		if _, err := members[r].CoreV1().ConfigMaps("shop").Get(ctx, "web-config", metav1.GetOptions{}); err != nil {
			t.Errorf("%s: the ConfigMap web uses was not sent: %v", r, err)
		}
	}
	eventually(t, "the hub's summary of web", time.Minute, func() (bool, error) {
		out := kubectl("get", "deployment", "web", "-n", "shop", "-o", "jsonpath={.metadata.annotations.convoy\\.dev/summary}")
		return out == "available 6/6 replicas in 3 clusters", fmt.Errorf("summary %q", out)
	})
	status := f.convoy(t, "status", "shop/web")
	for _, want := range []string{"CLUSTER", "eu-west", "us-east", "us-west", "Available"} {
		if !strings.Contains(status, want) {
			t.Errorf("convoy status lacks %q:\n%s", want, status)
		}
	}
	// The hub keeps templates only: nothing runs there.
	if pods := kubectl("get", "pods", "-n", "shop", "-o", "name"); strings.TrimSpace(pods) != "" {
		t.Errorf("pods on the hub: %s", pods)
	}

	// A fourth matching cluster takes its share; the others give theirs up once it is
	// available: 2 (ap-south), 2 (eu-west), 1, 1.
	f.convoy(t, "cluster", "create", "ap-south", "--nodes", "2", "--region", "ap-south", "--zones", "a", "--env", "prod")
	members["ap-south"], _ = f.member(t, "ap-south")
	kubectl("label", "cluster", "ap-south", "fleet=shop")
	want := map[string]int32{"ap-south": 2, "eu-west": 2, "us-east": 1, "us-west": 1}
	for r, n := range want {
		eventually(t, fmt.Sprintf("web %d/%d in %s", n, n, r), 3*time.Minute, func() (bool, error) {
			got, avail, _ := deploymentOn(t, members[r], "shop", "web")
			return got == n && avail == n, fmt.Errorf("replicas %d, available %d", got, avail)
		})
	}

	// A Helm chart installed into the hub reaches every fleet=shop cluster.
	run(t, nil, filepath.Join(bin, "helm"), "install", "cache", "testdata/charts/cache", "--namespace", "shop", "--kubeconfig", hubKubeconfig)
	for r, cs := range members {
		eventually(t, "the cache chart in "+r, 3*time.Minute, func() (bool, error) {
			n, avail, _ := deploymentOn(t, cs, "shop", "cache")
			if n != 1 || avail != 1 {
				return false, fmt.Errorf("cache replicas %d, available %d", n, avail)
			}
			if _, err := cs.CoreV1().Services("shop").Get(ctx, "cache", metav1.GetOptions{}); err != nil {
				return false, err
			}
			_, err := cs.CoreV1().ConfigMaps("shop").Get(ctx, "cache-config", metav1.GetOptions{})
			return err == nil, err
		})
	}

	// Removing a cluster's label removes the apps there, and only there.
	kubectl("label", "cluster", "us-west", "fleet-")
	eventually(t, "web and cache gone from us-west", 2*time.Minute, func() (bool, error) {
		web, _, _ := deploymentOn(t, members["us-west"], "shop", "web")
		cache, _, _ := deploymentOn(t, members["us-west"], "shop", "cache")
		return web == -1 && cache == -1, fmt.Errorf("web %d, cache %d", web, cache)
	})
	eventually(t, "us-west's share back with the others", 2*time.Minute, func() (bool, error) {
		var total int32
		for _, r := range []string{"ap-south", "eu-west", "us-east"} {
			n, avail, _ := deploymentOn(t, members[r], "shop", "web")
			if n != avail {
				return false, nil
			}
			total += n
		}
		return total == 6, fmt.Errorf("total %d", total)
	})

	// A selector that stops matching anything (here, a typo in an edit) removes nothing: the
	// Placement says so, and what was placed stays until an explicit change.
	cacheWork := func() *v1alpha1.Work {
		w := &v1alpha1.Work{}
		if err := hub.Get(ctx, client.ObjectKey{Namespace: v1alpha1.ClusterNamespace("us-east"), Name: "shop.cache"}, w); err != nil {
			t.Fatalf("cache's Work for us-east: %v", err)
		}
		return w
	}
	// The agents get a Work's new content before the hub stores it (the chart's templates
	// came one by one): the barrier is the stored Work holding all of the chart, after which
	// nothing more is on its way to the store.
	var before *v1alpha1.Work
	eventually(t, "cache's Work stored with the whole chart", time.Minute, func() (bool, error) {
		before = cacheWork()
		var kinds []string
		for _, o := range manifest.Decode(before.Spec.Manifests) {
			kinds = append(kinds, o.ID.Kind+"/"+o.ID.Name)
		}
		slices.Sort(kinds)
		return slices.Equal(kinds, []string{"ConfigMap/cache-config", "Deployment/cache", "Namespace/shop", "Service/cache"}), fmt.Errorf("stored: %v", kinds)
	})
	kubectl("patch", "placement", "cache", "-n", "shop", "--type", "json", "-p",
		`[{"op":"replace","path":"/spec/resources/0/labelSelector/matchLabels/app.kubernetes.io~1instance","value":"cahce"}]`)
	p := &v1alpha1.Placement{}
	// The status at the new generation is the barrier: the decision on it is made.
	eventually(t, "cache's Placement to say it matches nothing", time.Minute, func() (bool, error) {
		err := hub.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "cache"}, p)
		return err == nil && p.Status.ObservedGeneration == p.Generation && strings.Contains(fmt.Sprint(p.Status.Conditions), "NoMatchingResources"), err
	})
	if after := cacheWork(); after.Generation != before.Generation || !after.DeletionTimestamp.IsZero() {
		t.Errorf("cache's Work changed when its selector stopped matching: generation %d -> %d, deleted %v", before.Generation, after.Generation, after.DeletionTimestamp)
	}
	if n, _, _ := deploymentOn(t, members["us-east"], "shop", "cache"); n != 1 {
		t.Errorf("cache left us-east when its selector stopped matching (replicas %d)", n)
	}

	// Deleting the Placement is an explicit change: the members lose the release. They keep
	// what the web Placement still sends into the same namespace, the namespace first: the
	// cache Placement applied it last, and deleting it must not take web along, not even for
	// a moment.
	watches := map[string]func() []string{}
	for _, r := range []string{"us-east", "eu-west", "ap-south"} {
		watches[r] = deletions(t, members[r], "shop")
	}
	kubectl("delete", "placement", "cache", "-n", "shop")
	eventually(t, "cache's Works finalized by the agents", 2*time.Minute, func() (bool, error) {
		var list v1alpha1.WorkList
		err := hub.List(ctx, &list, client.MatchingLabels{v1alpha1.LabelPlacementNamespace: "shop", v1alpha1.LabelPlacement: "cache"})
		return err == nil && len(list.Items) == 0, err
	})
	for r, seen := range watches {
		if n, _, _ := deploymentOn(t, members[r], "shop", "cache"); n != -1 {
			t.Errorf("cache is still on %s", r)
		}
		for _, d := range seen() {
			if d != "Deployment cache" {
				t.Errorf("%s: deleting the cache Placement deleted %s, which the web Placement still sends", r, d)
			}
		}
		if n, avail, _ := deploymentOn(t, members[r], "shop", "web"); n < 1 || avail != n {
			t.Errorf("%s: web after the cache Placement went: replicas %d, available %d", r, n, avail)
		}
	}
	run(t, nil, filepath.Join(bin, "helm"), "uninstall", "cache", "--namespace", "shop", "--kubeconfig", hubKubeconfig)

	// With preserveResourcesOnDeletion, a cluster that stops matching keeps what it had.
	kubectl("patch", "placement", "web", "-n", "shop", "--type", "merge", "-p", `{"spec":{"preserveResourcesOnDeletion":true}}`)
	kubectl("label", "cluster", "ap-south", "fleet-")
	eventually(t, "ap-south's Work gone", 2*time.Minute, func() (bool, error) {
		w := &v1alpha1.Work{}
		err := hub.Get(ctx, client.ObjectKey{Namespace: v1alpha1.ClusterNamespace("ap-south"), Name: "shop.web"}, w)
		return apierrors.IsNotFound(err), err
	})
	if n, _, _ := deploymentOn(t, members["ap-south"], "shop", "web"); n < 1 {
		t.Errorf("web left ap-south although the Placement preserves resources (replicas %d)", n)
	}
}

// deletions watches a member, from now on, for the deletion of a namespace and of the
// Deployments in it, and returns what it has seen so far ("Namespace shop", "Deployment web"):
// a deletion begun (a deletionTimestamp) counts as much as one done.
func deletions(t *testing.T, cs kubernetes.Interface, ns string) func() []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var mu sync.Mutex
	var seen []string
	follow := func(kind string, w watch.Interface) {
		go func() {
			defer w.Stop()
			for ev := range w.ResultChan() {
				obj, ok := ev.Object.(metav1.Object)
				if !ok {
					continue
				}
				if ev.Type == watch.Deleted || obj.GetDeletionTimestamp() != nil {
					mu.Lock()
					if !slices.Contains(seen, kind+" "+obj.GetName()) {
						seen = append(seen, kind+" "+obj.GetName())
					}
					mu.Unlock()
				}
			}
		}()
	}
	nsw, err := cs.CoreV1().Namespaces().Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + ns})
	if err != nil {
		t.Fatal(err)
	}
	follow("Namespace", nsw)
	dw, err := cs.AppsV1().Deployments(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	follow("Deployment", dw)
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

func waitClusterReady(t *testing.T, c client.Client, name string) {
	t.Helper()
	eventually(t, name+" Ready", 3*time.Minute, func() (bool, error) {
		cl := &v1alpha1.Cluster{}
		err := c.Get(context.Background(), client.ObjectKey{Name: name}, cl)
		return err == nil && cl.Status.Phase == v1alpha1.ClusterReady, err
	})
}

// startShopFleet starts a hub with three local clusters, us-east, us-west and eu-west (two
// nodes each, env prod), labelled fleet=shop, and returns clients of the members and a kubectl
// that talks to the hub.
// webImage is the demo app's image, which startShopFleet builds into the hub's registry for
// fleets of real nodes.
const webImage = "registry.convoy.local/examples/web:1"

// startShopFleet starts a hub with us-east, us-west and eu-west (two nodes each, real or
// simulated), labelled fleet=shop.
func startShopFleet(t *testing.T, real bool) (*fleetHub, map[string]kubernetes.Interface, func(args ...string) string) {
	t.Helper()
	kind := "simulated"
	if real {
		hubtest.RealNodes(t, local.MissingForRealNodes)
		kind = "real"
	}
	f := startFleetHub(t)
	if real {
		f.convoy(t, "image", "build", "./examples/web", "--dir", hubtest.RepoRoot(t), "--data-dir", f.DataDir, "--name", webImage)
	}
	hubKubeconfig := filepath.Join(f.DataDir, "kubeconfig")
	kubectl := func(args ...string) string {
		return run(t, nil, filepath.Join(hubtest.BinDir(t), "kubectl"), append([]string{"--kubeconfig", hubKubeconfig}, args...)...)
	}
	hub := f.Client()
	regions := []string{"us-east", "us-west", "eu-west"}
	for _, r := range regions {
		f.convoy(t, "cluster", "create", r, "--nodes", "2", "--node-kind", kind, "--region", r, "--zones", "a,b", "--env", "prod", "--wait=false")
	}
	members := map[string]kubernetes.Interface{}
	for _, r := range regions {
		waitClusterReady(t, hub, r)
		members[r], _ = f.member(t, r)
		kubectl("label", "cluster", r, "fleet=shop")
	}
	return f, members, kubectl
}
