package propagation_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/manifest"
)

// These tests run a real hub with imported Clusters that have no member behind them: they
// check what the propagation controller writes, and play the agents' part by writing Work
// status by hand.

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func eventually(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s (last error: %v)", what, last)
}

func addCluster(t *testing.T, c client.Client, name, region string, extra map[string]string) {
	t.Helper()
	ctx := context.Background()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "convoy-system", Name: name + "-kubeconfig"},
		StringData: map[string]string{"kubeconfig": "apiVersion: v1\nkind: Config\nclusters: []\n"}}
	if err := c.Create(ctx, secret); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	cl := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: extra}, Spec: v1alpha1.ClusterSpec{
		Provider: v1alpha1.ProviderImport, Region: region, Environment: "prod",
		KubeconfigSecretRef: &v1alpha1.SecretReference{Name: secret.Name}}}
	must(t, c.Create(ctx, cl))
	eventually(t, "namespace of "+name, func() (bool, error) {
		err := c.Get(ctx, client.ObjectKey{Name: v1alpha1.ClusterNamespace(name)}, &corev1.Namespace{})
		return err == nil, err
	})
}

func work(t *testing.T, c client.Client, cluster string) *v1alpha1.Work {
	t.Helper()
	w := &v1alpha1.Work{}
	err := c.Get(context.Background(), client.ObjectKey{Namespace: v1alpha1.ClusterNamespace(cluster), Name: "shop.web"}, w)
	if apierrors.IsNotFound(err) {
		return nil
	}
	must(t, err)
	return w
}

// sent returns the manifest of one kind in a cluster's Work.
func sent(t *testing.T, c client.Client, cluster, kind string) *unstructured.Unstructured {
	t.Helper()
	w := work(t, c, cluster)
	if w == nil {
		return nil
	}
	for _, o := range manifest.Decode(w.Spec.Manifests) {
		if o.Err == nil && o.ID.Kind == kind {
			return o.Obj
		}
	}
	return nil
}

func replicasSent(t *testing.T, c client.Client, cluster string) int64 {
	d := sent(t, c, cluster, "Deployment")
	if d == nil {
		return -1
	}
	n, _, _ := unstructured.NestedInt64(d.Object, "spec", "replicas")
	return n
}

// reconciled is a barrier: it changes the Placement's spec in a way that changes no decision
// (the failover stable period, with no cluster lost) and waits until its status says it has
// been reconciled at that generation. Whatever the controller decides from the state before
// the call, it has decided by then.
func reconciled(t *testing.T, c client.Client, key client.ObjectKey) {
	t.Helper()
	var gen int64
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p := &v1alpha1.Placement{}
		if err := c.Get(context.Background(), key, p); err != nil {
			return err
		}
		if p.Spec.Failover == nil {
			p.Spec.Failover = &v1alpha1.FailoverPolicy{}
		}
		stable := int32(30)
		if p.Spec.Failover.StableSeconds != nil {
			stable = *p.Spec.Failover.StableSeconds
		}
		p.Spec.Failover.StableSeconds = ptr.To(stable + 1)
		err := c.Update(context.Background(), p)
		gen = p.Generation
		return err
	}))
	eventually(t, fmt.Sprintf("%s reconciled at generation %d", key, gen), func() (bool, error) {
		p := &v1alpha1.Placement{}
		err := c.Get(context.Background(), key, p)
		return err == nil && p.Status.ObservedGeneration >= gen, err
	})
}

// report plays the agent: every resource of the cluster's Work applied and healthy, with the
// Deployment's replicas available.
func report(t *testing.T, c client.Client, cluster string) {
	t.Helper()
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		w := work(t, c, cluster)
		w.Status.ObservedGeneration = w.Generation
		w.Status.Resources = nil
		for _, o := range manifest.Decode(w.Spec.Manifests) {
			st := v1alpha1.ResourceStatus{ResourceIdentifier: o.ID, State: v1alpha1.ResourceApplied, Health: v1alpha1.HealthHealthy, Hash: o.Hash}
			if o.ID.Kind == "Deployment" {
				n, _, _ := unstructured.NestedInt64(o.Obj.Object, "spec", "replicas")
				st.Replicas, st.AvailableReplicas = ptr.To(int32(n)), ptr.To(int32(n))
			}
			w.Status.Resources = append(w.Status.Resources, st)
		}
		meta.SetStatusCondition(&w.Status.Conditions, metav1.Condition{Type: v1alpha1.WorkApplied, Status: metav1.ConditionTrue, Reason: "Applied"})
		meta.SetStatusCondition(&w.Status.Conditions, metav1.Condition{Type: v1alpha1.WorkAvailable, Status: metav1.ConditionTrue, Reason: "Available"})
		return c.Status().Update(context.Background(), w)
	}))
}

func TestPropagation(t *testing.T) {
	h := hubtest.Start(t)
	c := h.Client
	ctx := context.Background()
	for _, cl := range []struct{ name, region string }{{"us-east", "us-east"}, {"us-west", "us-west"}, {"eu-west", "eu-west"}} {
		addCluster(t, c, cl.name, cl.region, map[string]string{"app": "shop"})
	}
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}))
	must(t, c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-conf"}, Data: map[string]string{"color": "blue"}}))
	must(t, c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "unrelated"}}))
	labels := map[string]string{"app": "web"}
	must(t, c.Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](6), Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27", EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "web-conf"}}}}}},
		}}}}))

	p := &v1alpha1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: v1alpha1.PlacementSpec{
		Resources: []v1alpha1.ResourceSelector{{Group: "apps", Kind: "Deployment", Name: "web"}},
		Clusters:  v1alpha1.ClusterAffinity{LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "shop"}}},
		Replicas:  &v1alpha1.ReplicaScheduling{Type: v1alpha1.Divided},
		Overrides: []v1alpha1.Override{{Clusters: v1alpha1.ClusterAffinity{Regions: []string{"eu-west"}},
			Images: []v1alpha1.ImageOverride{{Image: "nginx:1.28"}}}},
	}}
	must(t, c.Create(ctx, p))

	// 6 replicas, divided equally: 2/2/2, with the ConfigMap it needs and its namespace.
	eventually(t, "2/2/2", func() (bool, error) {
		got := &v1alpha1.Placement{}
		_ = c.Get(ctx, client.ObjectKeyFromObject(p), got)
		return replicasSent(t, c, "us-east") == 2 && replicasSent(t, c, "us-west") == 2 && replicasSent(t, c, "eu-west") == 2, fmt.Errorf("placement status: %+v", got.Status)
	})
	for _, cl := range []string{"us-east", "us-west", "eu-west"} {
		if sent(t, c, cl, "ConfigMap") == nil || sent(t, c, cl, "Namespace") == nil {
			t.Errorf("%s: the ConfigMap the Deployment uses, or the namespace, was not sent", cl)
		}
		if n := len(work(t, c, cl).Spec.Manifests); n != 3 {
			t.Errorf("%s: %d manifests, want 3 (namespace, ConfigMap, Deployment)", cl, n)
		}
	}
	image := func(cluster string) string {
		cs, _, _ := unstructured.NestedSlice(sent(t, c, cluster, "Deployment").Object, "spec", "template", "spec", "containers")
		return cs[0].(map[string]any)["image"].(string)
	}
	if image("eu-west") != "nginx:1.28" || image("us-east") != "nginx:1.27" {
		t.Errorf("images: eu-west %s, us-east %s", image("eu-west"), image("us-east"))
	}

	// Status comes from the Works.
	for _, cl := range []string{"us-east", "us-west", "eu-west"} {
		report(t, c, cl)
	}
	eventually(t, "Placement available", func() (bool, error) {
		got := &v1alpha1.Placement{}
		err := c.Get(ctx, client.ObjectKeyFromObject(p), got)
		return err == nil && meta.IsStatusConditionTrue(got.Status.Conditions, v1alpha1.PlacementAvailable) && len(got.Status.Clusters) == 3, err
	})
	eventually(t, "the summary on the Deployment", func() (bool, error) {
		d := &appsv1.Deployment{}
		err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, d)
		return err == nil && d.Annotations[v1alpha1.AnnotationSummary] == "available 6/6 replicas in 3 clusters", err
	})
	gens := map[string]int64{}
	for _, cl := range []string{"us-east", "us-west", "eu-west"} {
		gens[cl] = work(t, c, cl).Generation
	}

	// A fourth cluster joins: it gets its share, and the others keep theirs until it is available.
	addCluster(t, c, "ap-south", "ap-south", map[string]string{"app": "shop"})
	eventually(t, "the new cluster's share", func() (bool, error) { return replicasSent(t, c, "ap-south") == 2, nil })
	reconciled(t, c, client.ObjectKeyFromObject(p))
	for _, cl := range []string{"us-east", "us-west", "eu-west"} {
		if n := replicasSent(t, c, cl); n != 2 {
			t.Errorf("%s gave up replicas before the new cluster had its own: %d", cl, n)
		}
	}
	report(t, c, "ap-south")
	eventually(t, "2/2/1/1 after the new cluster is available", func() (bool, error) {
		return replicasSent(t, c, "ap-south")+replicasSent(t, c, "us-east")+replicasSent(t, c, "us-west")+replicasSent(t, c, "eu-west") == 6, nil
	})

	// A template change rewrites only what changed: the ConfigMap's content reaches every
	// cluster; a change to an unrelated ConfigMap rewrites nothing.
	for _, cl := range []string{"us-east", "us-west", "eu-west", "ap-south"} {
		gens[cl] = work(t, c, cl).Generation
	}
	cm := &corev1.ConfigMap{}
	must(t, c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "unrelated"}, cm))
	cm.Data = map[string]string{"x": "y"}
	must(t, c.Update(ctx, cm))
	reconciled(t, c, client.ObjectKeyFromObject(p))
	for cl, g := range gens {
		if w := work(t, c, cl); w.Generation != g {
			t.Errorf("%s: an unrelated change rewrote the Work (generation %d -> %d)", cl, g, w.Generation)
		}
	}

	// Removing a cluster's label removes its Work (the agent deletes the resources).
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cl := &v1alpha1.Cluster{}
		if err := c.Get(ctx, client.ObjectKey{Name: "us-west"}, cl); err != nil {
			return err
		}
		delete(cl.Labels, "app")
		return c.Update(ctx, cl)
	}))
	eventually(t, "us-west's Work gone", func() (bool, error) { return work(t, c, "us-west") == nil, nil })

	// Selectors that match nothing leave the Works alone and say so.
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got := &v1alpha1.Placement{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(p), got); err != nil {
			return err
		}
		got.Spec.Resources[0].Name = "nothing-by-this-name"
		return c.Update(ctx, got)
	}))
	eventually(t, "the no-match condition", func() (bool, error) {
		got := &v1alpha1.Placement{}
		err := c.Get(ctx, client.ObjectKeyFromObject(p), got)
		cond := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.PlacementResourcesSelected)
		return err == nil && cond != nil && cond.Reason == "NoMatchingResources" && got.Status.ObservedGeneration == got.Generation, err
	})
	if work(t, c, "us-east") == nil || sent(t, c, "us-east", "Deployment") == nil {
		t.Error("a selector that matches nothing removed what was placed")
	}

	// An override that cannot apply fails that cluster and keeps what it had.
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got := &v1alpha1.Placement{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(p), got); err != nil {
			return err
		}
		got.Spec.Resources[0].Name = "web"
		got.Spec.Overrides = append(got.Spec.Overrides, v1alpha1.Override{Clusters: v1alpha1.ClusterAffinity{Names: []string{"eu-west"}},
			JSONPatches: []v1alpha1.JSONPatch{{Op: "remove", Path: "/spec/nonexistent"}}})
		return c.Update(ctx, got)
	}))
	eventually(t, "the override's error on eu-west", func() (bool, error) {
		got := &v1alpha1.Placement{}
		err := c.Get(ctx, client.ObjectKeyFromObject(p), got)
		for _, s := range got.Status.Clusters {
			if s.Cluster == "eu-west" && strings.Contains(s.Error, "jsonPatches on Deployment web") {
				return true, nil
			}
		}
		return false, fmt.Errorf("%+v %v", got.Status.Clusters, err)
	})
	if sent(t, c, "eu-west", "Deployment") == nil {
		t.Error("a failing override removed the Deployment from eu-west")
	}

	// Deleting the Placement deletes its Works.
	must(t, c.Delete(ctx, p))
	eventually(t, "every Work gone", func() (bool, error) {
		var list v1alpha1.WorkList
		err := c.List(ctx, &list, client.MatchingLabels{v1alpha1.LabelPlacement: "web"})
		return err == nil && len(list.Items) == 0, err
	})
}

// TestPlacementBadInput checks that the API refuses invalid Placements with a message that
// says what to fix, stores nothing, and that a valid Placement matching no cluster is explained.
func TestPlacementBadInput(t *testing.T) {
	h := hubtest.Start(t)
	c := h.Client
	ctx := context.Background()
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}))
	base := func() *v1alpha1.Placement {
		return &v1alpha1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "bad"}, Spec: v1alpha1.PlacementSpec{
			Resources: []v1alpha1.ResourceSelector{{Group: "apps", Kind: "Deployment"}}}}
	}
	cases := []struct {
		name   string
		change func(*v1alpha1.Placement)
		want   string
	}{
		{"weight 0", func(p *v1alpha1.Placement) {
			p.Spec.Replicas = &v1alpha1.ReplicaScheduling{Type: v1alpha1.Divided, Weights: []v1alpha1.ClusterWeight{{Weight: 0}}}
		}, "should be greater than or equal to 1"},
		{"negative weight", func(p *v1alpha1.Placement) {
			p.Spec.Replicas = &v1alpha1.ReplicaScheduling{Type: v1alpha1.Divided, Weights: []v1alpha1.ClusterWeight{{Weight: -3}}}
		}, "should be greater than or equal to 1"},
		{"negative minimum", func(p *v1alpha1.Placement) {
			p.Spec.Replicas = &v1alpha1.ReplicaScheduling{Type: v1alpha1.Divided, MinReplicasPerCluster: ptr.To[int32](-1)}
		}, "should be greater than or equal to 0"},
		{"weights when duplicating", func(p *v1alpha1.Placement) {
			p.Spec.Replicas = &v1alpha1.ReplicaScheduling{Type: v1alpha1.Duplicated, Weights: []v1alpha1.ClusterWeight{{Weight: 2}}}
		}, "apply only to type Divided"},
		{"no resources", func(p *v1alpha1.Placement) { p.Spec.Resources = nil }, "spec.resources"},
		{"a selector for everything", func(p *v1alpha1.Placement) { p.Spec.Resources = []v1alpha1.ResourceSelector{{}} }, "cannot select everything by accident"},
		{"zero clusters wanted", func(p *v1alpha1.Placement) { p.Spec.NumberOfClusters = ptr.To[int32](0) }, "should be greater than or equal to 1"},
		{"an override that changes nothing", func(p *v1alpha1.Placement) { p.Spec.Overrides = []v1alpha1.Override{{}} }, "an override must change something"},
		{"a bad JSON patch op", func(p *v1alpha1.Placement) {
			p.Spec.Overrides = []v1alpha1.Override{{JSONPatches: []v1alpha1.JSONPatch{{Op: "move", Path: "/a"}}}}
		}, "Unsupported value: \"move\""},
		{"a long name", func(p *v1alpha1.Placement) { p.Name = strings.Repeat("p", 64) }, "at most 63 characters"},
		{"an empty wave", func(p *v1alpha1.Placement) {
			p.Spec.Rollout = &v1alpha1.RolloutStrategy{Waves: []v1alpha1.RolloutWave{{Name: "canary"}}}
		}, "an empty wave selects nothing"},
		{"overlapping waves", func(p *v1alpha1.Placement) {
			p.Spec.Rollout = &v1alpha1.RolloutStrategy{Waves: []v1alpha1.RolloutWave{
				{Name: "canary", Clusters: v1alpha1.WaveClusters{Names: []string{"a", "b"}}},
				{Name: "rest", Clusters: v1alpha1.WaveClusters{Names: []string{"b", "c"}}}}}
		}, "waves overlap"},
		{"a negative soak", func(p *v1alpha1.Placement) {
			p.Spec.Rollout = &v1alpha1.RolloutStrategy{Waves: []v1alpha1.RolloutWave{{Name: "canary", SoakSeconds: -5, Clusters: v1alpha1.WaveClusters{Names: []string{"a"}}}}}
		}, "soakSeconds in body should be greater than or equal to 0"},
		{"two waves of one name", func(p *v1alpha1.Placement) {
			p.Spec.Rollout = &v1alpha1.RolloutStrategy{Waves: []v1alpha1.RolloutWave{
				{Name: "w", Clusters: v1alpha1.WaveClusters{Names: []string{"a"}}}, {Name: "w", Clusters: v1alpha1.WaveClusters{Names: []string{"b"}}}}}
		}, "wave names must be unique"},
		{"no waves", func(p *v1alpha1.Placement) { p.Spec.Rollout = &v1alpha1.RolloutStrategy{} }, "spec.rollout.waves"},
	}
	for _, tc := range cases {
		p := base()
		tc.change(p)
		err := c.Create(ctx, p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	var list v1alpha1.PlacementList
	must(t, c.List(ctx, &list))
	if len(list.Items) != 0 {
		t.Errorf("refused Placements were stored: %d", len(list.Items))
	}

	// Valid, but no cluster matches: a condition says so.
	p := base()
	p.Spec.Clusters.Regions = []string{"mars"}
	must(t, c.Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "c", Image: "x"}}}}}}))
	must(t, c.Create(ctx, p))
	eventually(t, "the no-cluster condition", func() (bool, error) {
		got := &v1alpha1.Placement{}
		err := c.Get(ctx, client.ObjectKeyFromObject(p), got)
		cond := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.PlacementScheduled)
		return err == nil && cond != nil && cond.Reason == "NoMatchingClusters" && strings.Contains(cond.Message, "the hub has no clusters"), fmt.Errorf("%v", got.Status.Conditions)
	})
}

// TestCustomResourceBringsItsCRD selects a custom resource and expects its CRD (without the
// hub's status) and its namespace to go along.
func TestCustomResourceBringsItsCRD(t *testing.T) {
	h := hubtest.Start(t)
	c := h.Client
	ctx := context.Background()
	addCluster(t, c, "one", "us-east", nil)
	crd := &unstructured.Unstructured{}
	must(t, crd.UnmarshalJSON([]byte(`{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
		"metadata":{"name":"caches.shop.example.com"},
		"spec":{"group":"shop.example.com","scope":"Namespaced","names":{"plural":"caches","singular":"cache","kind":"Cache"},
		"versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}]}}`)))
	must(t, c.Create(ctx, crd))
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}))
	cr := &unstructured.Unstructured{}
	must(t, cr.UnmarshalJSON([]byte(`{"apiVersion":"shop.example.com/v1","kind":"Cache","metadata":{"name":"web","namespace":"shop"},"spec":{"size":"1Gi"}}`)))
	eventually(t, "the custom resource stored", func() (bool, error) { err := c.Create(ctx, cr); return err == nil, err })
	must(t, c.Create(ctx, &v1alpha1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: v1alpha1.PlacementSpec{
		Resources: []v1alpha1.ResourceSelector{{Group: "shop.example.com", Kind: "Cache"}}}}))
	eventually(t, "the Cache and its CRD in the Work", func() (bool, error) {
		return sent(t, c, "one", "Cache") != nil && sent(t, c, "one", "CustomResourceDefinition") != nil && sent(t, c, "one", "Namespace") != nil, nil
	})
	if s := sent(t, c, "one", "CustomResourceDefinition"); s.GetName() != "caches.shop.example.com" || s.Object["status"] != nil {
		t.Errorf("CRD sent: %s, status %v", s.GetName(), s.Object["status"])
	}
}

// TestRolloutSurvivesHubRestart stops a rollout at an approval, restarts the hub and expects it
// to wait at the same wave, with the later wave's cluster still on the old revision.
func TestRolloutSurvivesHubRestart(t *testing.T) {
	h := hubtest.Start(t)
	c := h.Client
	ctx := context.Background()
	addCluster(t, c, "one", "us-east", nil)
	addCluster(t, c, "two", "us-west", nil)
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}))
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "settings"}, Data: map[string]string{"color": "blue"}}
	must(t, c.Create(ctx, cm))
	// The imported clusters have no agent, so they count as lost: each wave's budget of one
	// lost cluster lets it pass, which is also what this checks.
	p := &v1alpha1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: v1alpha1.PlacementSpec{
		Resources: []v1alpha1.ResourceSelector{{Kind: "ConfigMap", Name: "settings"}},
		Failover:  &v1alpha1.FailoverPolicy{Disabled: true},
		Rollout: &v1alpha1.RolloutStrategy{Waves: []v1alpha1.RolloutWave{
			{Name: "canary", MaxUnavailable: 1, Clusters: v1alpha1.WaveClusters{Names: []string{"one"}}},
			{Name: "second", MaxUnavailable: 1, RequireApproval: true, Clusters: v1alpha1.WaveClusters{Names: []string{"two"}}}}}}}
	must(t, c.Create(ctx, p))
	color := func(cluster string) string {
		u := sent(t, c, cluster, "ConfigMap")
		if u == nil {
			return ""
		}
		v, _, _ := unstructured.NestedString(u.Object, "data", "color")
		return v
	}
	rollout := func() *v1alpha1.RolloutStatus {
		got := &v1alpha1.Placement{}
		must(t, c.Get(ctx, client.ObjectKeyFromObject(p), got))
		return got.Status.Rollout
	}
	eventually(t, "the first revision everywhere", func() (bool, error) {
		rs := rollout()
		return color("one") == "blue" && color("two") == "blue" && rs != nil && rs.Phase == v1alpha1.RolloutComplete, fmt.Errorf("%+v", rs)
	})
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		must(t, c.Get(ctx, client.ObjectKeyFromObject(cm), cm))
		cm.Data["color"] = "green"
		return c.Update(ctx, cm)
	}))
	eventually(t, "the canary on the new revision, the second wave waiting", func() (bool, error) {
		rs := rollout()
		return color("one") == "green" && rs.Phase == v1alpha1.RolloutWaitingForApproval && rs.Wave == 1, fmt.Errorf("%+v", rs)
	})
	if color("two") != "blue" {
		t.Fatalf("the second wave got the change before its approval")
	}

	h.Restart()
	c = h.Client
	reconciled(t, c, client.ObjectKeyFromObject(p)) // the restarted hub has decided again
	if rs := rollout(); rs.Phase != v1alpha1.RolloutWaitingForApproval || rs.Wave != 1 || rs.WaveName != "second" {
		t.Errorf("after a restart the rollout is at %+v, want waiting for approval of wave 1", rs)
	}
	if color("two") != "blue" || color("one") != "green" {
		t.Errorf("after a restart: one %s, two %s", color("one"), color("two"))
	}

	// Approval lets it finish.
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got := &v1alpha1.Placement{}
		must(t, c.Get(ctx, client.ObjectKeyFromObject(p), got))
		got.Annotations = map[string]string{v1alpha1.AnnotationRolloutApprove: got.Status.Rollout.Target + "/1"}
		return c.Update(ctx, got)
	}))
	eventually(t, "the rollout complete", func() (bool, error) {
		rs := rollout()
		return color("two") == "green" && rs.Phase == v1alpha1.RolloutComplete, fmt.Errorf("%+v", rs)
	})
}
