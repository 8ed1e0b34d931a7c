//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// badInput is one generated invalid object and a part of the message it must be refused with.
type badInput struct {
	what string
	obj  client.Object
	want string
}

func letters(rng *rand.Rand, alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

func badClusters(rng *rand.Rand, n int) []badInput {
	var out []badInput
	for i := range n {
		name := fmt.Sprintf("bad-%d", i)
		c := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.ClusterSpec{Provider: v1alpha1.ProviderLocal}}
		pool := func(count int32) []v1alpha1.NodePool { return []v1alpha1.NodePool{{Name: "p", Count: count}} }
		var what, want string
		switch i % 12 {
		case 0:
			c.Spec.Provider = v1alpha1.ProviderName([]string{"gke", "eks", "Local", "kind", letters(rng, "abcxyz", 1+rng.IntN(8))}[rng.IntN(5)])
			what, want = "unknown provider "+string(c.Spec.Provider), "spec.provider"
		case 1:
			c.Name = []string{strings.ToUpper(name), name + "." + letters(rng, "abc", 3), strings.Repeat("a", 41+rng.IntN(20)), name + "_x"}[rng.IntN(4)]
			what, want = "bad name "+c.Name, "name"
		case 2:
			c.Spec.NodePools = pool(-1 - rng.Int32N(1000))
			what, want = "negative node count", "greater than or equal to 0"
		case 3:
			c.Spec.NodePools = pool(501 + rng.Int32N(10000))
			what, want = "too many nodes in a pool", "less than or equal to 500"
		case 4:
			c.Spec.KubernetesVersion = []string{"1.37", "v1", "latest", "v1.2.3-rc.1", "v" + letters(rng, "0123456789.", 1+rng.IntN(6))}[rng.IntN(5)]
			what, want = "bad version "+c.Spec.KubernetesVersion, "spec.kubernetesVersion"
		case 5:
			c.Spec.Region = []string{"US-East", "us_east", strings.Repeat("r", 64+rng.IntN(10)), "-east"}[rng.IntN(4)]
			what, want = "bad region "+c.Spec.Region, "spec.region"
		case 6:
			c.Spec.Zones = []string{[]string{"Zone-A", "a b", strings.Repeat("z", 64)}[rng.IntN(3)]}
			what, want = "bad zone", "spec.zones"
		case 7:
			c.Spec.Taints = []corev1.Taint{{Key: "k", Effect: corev1.TaintEffect([]string{"PreferNoSchedule", "Evict", letters(rng, "abc", 5)}[rng.IntN(3)])}}
			what, want = "bad taint effect", "NoSchedule or NoExecute"
		case 8:
			c.Spec.Provider, c.Spec.NodePools = v1alpha1.ProviderImport, pool(1+rng.Int32N(5))
			what, want = "imported cluster with pools", "remove spec.nodePools"
		case 9:
			c.Spec.KubeconfigSecretRef = &v1alpha1.SecretReference{Name: "k"}
			what, want = "local cluster with a kubeconfig", "only for provider import"
		case 10:
			c.Spec.KubernetesVersion = fmt.Sprintf("v1.%d.%d", 90+rng.IntN(9), rng.IntN(9))
			what, want = "unavailable version "+c.Spec.KubernetesVersion, "is not available on this hub"
		case 11:
			c.Spec.NodePools = []v1alpha1.NodePool{{Name: "a", Count: 400}, {Name: "b", Count: 400}, {Name: "c", Count: 201 + rng.Int32N(199)}}
			what, want = "more than 1000 nodes", "at most 1000 nodes"
		}
		out = append(out, badInput{what: "Cluster: " + what, obj: c, want: want})
	}
	return out
}

func badPlacements(rng *rand.Rand, n int) []badInput {
	var out []badInput
	for i := range n {
		p := &v1alpha1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("bad-%d", i)}, Spec: v1alpha1.PlacementSpec{
			Resources: []v1alpha1.ResourceSelector{{Group: "apps", Kind: "Deployment"}}}}
		wave := func(name string, names ...string) v1alpha1.RolloutWave {
			return v1alpha1.RolloutWave{Name: name, Clusters: v1alpha1.WaveClusters{Names: names}}
		}
		var what, want string
		switch i % 15 {
		case 0:
			p.Spec.Replicas = &v1alpha1.ReplicaScheduling{Type: v1alpha1.Divided, Weights: []v1alpha1.ClusterWeight{{Weight: -rng.Int32N(100)}}}
			what, want = "weight below 1", "greater than or equal to 1"
		case 1:
			p.Spec.Replicas = &v1alpha1.ReplicaScheduling{Type: v1alpha1.Divided, MinReplicasPerCluster: ptr.To(-1 - rng.Int32N(100))}
			what, want = "negative minimum", "greater than or equal to 0"
		case 2:
			p.Spec.Replicas = &v1alpha1.ReplicaScheduling{Type: v1alpha1.Duplicated, Weights: []v1alpha1.ClusterWeight{{Weight: 1 + rng.Int32N(9)}}}
			what, want = "weights when duplicating", "apply only to type Divided"
		case 3:
			p.Spec.Resources = nil
			what, want = "no resources", "spec.resources"
		case 4:
			p.Spec.Resources = []v1alpha1.ResourceSelector{{}}
			what, want = "a selector for everything", "cannot select everything by accident"
		case 5:
			p.Spec.NumberOfClusters = ptr.To(-rng.Int32N(10))
			what, want = "fewer than one cluster", "greater than or equal to 1"
		case 6:
			p.Spec.Overrides = []v1alpha1.Override{{}}
			what, want = "an override that changes nothing", "an override must change something"
		case 7:
			op := []string{"move", "copy", "test", letters(rng, "xyz", 4)}[rng.IntN(4)]
			p.Spec.Overrides = []v1alpha1.Override{{JSONPatches: []v1alpha1.JSONPatch{{Op: op, Path: "/a"}}}}
			what, want = "a JSON patch op "+op, "Unsupported value"
		case 8:
			p.Name = strings.Repeat("p", 64+rng.IntN(100))
			what, want = "a long name", "at most 63 characters"
		case 9:
			p.Spec.Rollout = &v1alpha1.RolloutStrategy{Waves: []v1alpha1.RolloutWave{{Name: "canary"}}}
			what, want = "an empty wave", "an empty wave selects nothing"
		case 10:
			shared := letters(rng, "abcdef", 6)
			p.Spec.Rollout = &v1alpha1.RolloutStrategy{Waves: []v1alpha1.RolloutWave{wave("one", "x", shared), wave("two", shared, "y")}}
			what, want = "overlapping waves", "waves overlap"
		case 11:
			w := wave("canary", "a")
			w.SoakSeconds = -1 - rng.Int32N(1000)
			p.Spec.Rollout = &v1alpha1.RolloutStrategy{Waves: []v1alpha1.RolloutWave{w}}
			what, want = "a negative soak", "soakSeconds"
		case 12:
			p.Spec.Resources = []v1alpha1.ResourceSelector{{Group: "apps", Kind: []string{"deployment", "Deploy-ment", "9Pods"}[rng.IntN(3)]}}
			what, want = "a kind that is not a kind", "spec.resources[0].kind"
		case 13:
			w := wave("canary", "a")
			w.Metric = &v1alpha1.MetricGate{Query: "up", Max: []string{"five", "5%", "0.05.1", ""}[rng.IntN(4)]}
			p.Spec.Rollout = &v1alpha1.RolloutStrategy{Waves: []v1alpha1.RolloutWave{w}}
			what, want = "a metric gate's maximum "+strconv.Quote(w.Metric.Max), "max must be a decimal number"
		case 14:
			w := wave("canary", "a")
			w.Metric = &v1alpha1.MetricGate{Max: "1", DelaySeconds: -1 - rng.Int32N(100)}
			p.Spec.Rollout = &v1alpha1.RolloutStrategy{Waves: []v1alpha1.RolloutWave{w}}
			what, want = "a metric gate without a query, and a negative delay", "spec.rollout.waves[0].metric.query"
		}
		out = append(out, badInput{what: "Placement: " + what, obj: p, want: want})
	}
	return out
}

func badWorks(rng *rand.Rand, ns string, n int) []badInput {
	var out []badInput
	for i := range n {
		w := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("bad-%d", i)}}
		var what, want string
		switch i % 4 {
		case 0:
			w.Spec.DeletionPolicy = v1alpha1.DeletionPolicy([]string{"Keep", "delete", letters(rng, "abc", 6)}[rng.IntN(3)])
			what, want = "deletion policy "+string(w.Spec.DeletionPolicy), "spec.deletionPolicy"
		case 1:
			w.Spec.DriftPolicy = v1alpha1.DriftPolicy([]string{"Ignore", "correct", letters(rng, "abc", 6)}[rng.IntN(3)])
			what, want = "drift policy "+string(w.Spec.DriftPolicy), "spec.driftPolicy"
		case 2:
			w.Name = []string{"Bad-Name", "bad_name", "-bad"}[rng.IntN(3)] + strconv.Itoa(i)
			what, want = "bad name "+w.Name, "metadata.name"
		case 3:
			for range 1001 + rng.IntN(20) {
				w.Spec.Manifests = append(w.Spec.Manifests, runtime.RawExtension{Raw: []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}`)})
			}
			what, want = "more than 1000 manifests", "spec.manifests"
		}
		out = append(out, badInput{what: "Work: " + what, obj: w, want: want})
	}
	return out
}

// brokenManifests are manifests the API accepts (they are objects) that no cluster can
// apply: the agent must report each as failed and carry on.
func brokenManifests(rng *rand.Rand, n int) [][]byte {
	var out [][]byte
	for i := range n {
		var m string
		switch i % 6 {
		case 0:
			m = `{}`
		case 1:
			m = fmt.Sprintf(`{"kind":%q}`, letters(rng, "ABCxyz", 5))
		case 2:
			m = `{"apiVersion":"v1","kind":"ConfigMap"}`
		case 3:
			m = fmt.Sprintf(`{"apiVersion":"nope.example/v%d","kind":"Thing","metadata":{"name":"a"}}`, rng.IntN(9))
		case 4:
			m = fmt.Sprintf(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":%q},"spec":{"replicas":"many"}}`, letters(rng, "abc", 4))
		case 5:
			deep := `{"x":1}`
			for range 50 + rng.IntN(50) {
				deep = `{"a":` + deep + `}`
			}
			m = `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"deep"},"data":` + deep + `}`
		}
		out = append(out, []byte(m))
	}
	return out
}

// TestInvalidInputInBulk sends hundreds of generated invalid Clusters, Placements and Works
// to the hub. Each is refused with a message that names what is wrong, nothing of them is
// stored, and Works the API accepts but no cluster can apply are reported failed by the
// agent, which carries on. The hub and the agents keep working throughout.
func TestInvalidInputInBulk(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CONVOY_CHAOS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (CONVOY_CHAOS_SEED=%d repeats this run)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	ctx := context.Background()
	h := startHubProcess(t)
	fleet := h.fleet(t)
	names := registerFleet(t, ctx, h, fleet, "bulk", 2)
	c := h.Client
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}))

	ns := v1alpha1.ClusterNamespace(names[0])
	inputs := append(append(badClusters(rng, 156), badPlacements(rng, 156)...), badWorks(rng, ns, 100)...)
	for _, in := range inputs {
		err := c.Create(ctx, in.obj)
		switch {
		case err == nil:
			t.Errorf("%s: accepted", in.what)
		case !apierrors.IsInvalid(err) && !apierrors.IsForbidden(err) && !apierrors.IsBadRequest(err):
			t.Errorf("%s: refused as %v, not as invalid input", in.what, apierrors.ReasonForError(err))
		case !strings.Contains(err.Error(), in.want):
			t.Errorf("%s: message %q does not say %q", in.what, err.Error(), in.want)
		}
	}
	t.Logf("%d invalid objects refused", len(inputs))
	var clusters v1alpha1.ClusterList
	must(t, c.List(ctx, &clusters))
	var placements v1alpha1.PlacementList
	must(t, c.List(ctx, &placements))
	var works v1alpha1.WorkList
	must(t, c.List(ctx, &works, client.InNamespace(ns)))
	if len(clusters.Items) != len(names) || len(placements.Items) != 0 || len(works.Items) != 0 {
		t.Errorf("refused objects were stored: %d clusters, %d placements, %d works", len(clusters.Items), len(placements.Items), len(works.Items))
	}

	// Works the API takes but nobody can apply: each resource is reported failed.
	broken := brokenManifests(rng, 60)
	for i := 0; i < len(broken); i += 6 {
		w := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("broken-%d", i/6)}}
		for _, m := range broken[i:min(i+6, len(broken))] {
			w.Spec.Manifests = append(w.Spec.Manifests, runtime.RawExtension{Raw: m})
		}
		must(t, c.Create(ctx, w))
	}
	eventually(t, "every broken Work reported", time.Minute, func() (bool, error) {
		var list v1alpha1.WorkList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return false, err
		}
		for _, w := range list.Items {
			if w.Status.ObservedGeneration != w.Generation || w.Status.Summary.Failed == 0 {
				return false, fmt.Errorf("%s: %+v", w.Name, w.Status.Summary)
			}
			if meta.IsStatusConditionTrue(w.Status.Conditions, v1alpha1.WorkApplied) {
				return false, fmt.Errorf("%s says Applied", w.Name)
			}
		}
		return len(list.Items) == len(broken)/6, fmt.Errorf("%d Works", len(list.Items))
	})

	// Both still work: the hub answers and is ready, the agents heartbeat and apply.
	resp, err := http.Get("http://" + h.Health + "/readyz")
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("hub not ready after the bad input: %s", resp.Status)
	}
	good := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "good"}, Spec: v1alpha1.WorkSpec{Manifests: []runtime.RawExtension{
		{Raw: []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"namespace":"default","name":"still-works"},"data":{"a":"b"}}`)}}}}
	must(t, c.Create(ctx, good))
	configmaps := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	eventually(t, "a good Work applied after the bad ones", time.Minute, func() (bool, error) {
		return fleet.Get(names[0]).Member.Cached(configmaps, "default", "still-works") != nil, nil
	})
	for _, n := range names {
		cl := &v1alpha1.Cluster{}
		must(t, c.Get(ctx, client.ObjectKey{Name: n}, cl))
		if cl.Status.Phase != v1alpha1.ClusterReady {
			t.Errorf("%s is %s after the bad input", n, cl.Status.Phase)
		}
	}
}
