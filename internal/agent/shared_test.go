package agent_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/sim"
)

// TestSharedObjects runs real agents (on simulated members) against a real hub and deletes
// one of several Placements or Works that list the same member objects. Nothing that a
// remaining one lists may be deleted, not even for a moment: the simulated member records
// every deletion (a Namespace takes everything in it along, a CRD every object of its kind, as
// on a real API server), and the checks run once the deleted Work is gone from the hub, which
// is when its agent has finished deleting.
func TestSharedObjects(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub")
	}
	f := startFleet(t, "m1", "m2")
	// They joined on the hub's delivery port, not through its API server.
	if st := f.hub.Status().Delivery; st == nil || st.Joined < int64(len(f.names)) {
		t.Errorf("the hub answered joins on its delivery port: %+v; want one for each of the %d agents", st, len(f.names))
	}

	t.Run("group", func(t *testing.T) {
		t.Run("two Placements share a namespace and a ConfigMap, backend deleted first", func(t *testing.T) {
			t.Parallel()
			twoPlacements(t, f, "shop1", "backend", "frontend")
		})
		t.Run("two Placements share a namespace and a ConfigMap, frontend deleted first", func(t *testing.T) {
			t.Parallel()
			twoPlacements(t, f, "shop2", "frontend", "backend")
		})
		t.Run("a Placement deleted while another selects the same template", func(t *testing.T) {
			t.Parallel()
			sameTemplate(t, f, "shop3")
		})
		t.Run("three Works share a CRD", func(t *testing.T) {
			t.Parallel()
			sharedCRD(t, f, "m1", "gadgets")
		})
	})
	// An agent restart stops the agent; the others would see their member pause.
	t.Run("a Placement deleted while the agent is down", func(t *testing.T) {
		afterRestart(t, f, "shop4")
	})
	// All of that came to the agents on their delivery streams, also after the restart: the
	// hub's API server never served a watch of one cluster's Works.
	switch ns, all := workWatches(t, f.hub); {
	case all == 0:
		t.Error("the hub's API server counts no watch of Works, not even its own controllers'")
	case ns != 0:
		t.Errorf("the hub's API server served %v watches of Works in a namespace; the agents get their Works on the stream", ns)
	}
}

type fleet struct {
	hub   *hubtest.Hub
	c     client.Client
	sim   *sim.Fleet
	names []string
}

func startFleet(t *testing.T, names ...string) *fleet {
	h := hubtest.Start(t)
	ctx := context.Background()
	// The agents are told the hub's delivery port, as local clusters' agents are: they join
	// there, not through the API server (TestSharedObjects checks that).
	_, port, _ := net.SplitHostPort(h.DeliveryAddr())
	f := &fleet{hub: h, c: h.Client, names: names, sim: sim.NewFleet(sim.Options{HubURL: h.Config.Host, HubCA: h.Config.CAData, DeliveryPort: port,
		StateDir: t.TempDir(), AvailableAfter: 100 * time.Millisecond, Version: "test", Log: hubtest.Logger(t)})}
	t.Cleanup(f.sim.StopAll)
	for _, n := range names {
		token, err := sim.Register(ctx, f.c, n, map[string]string{"fleet": "shared"}, time.Hour)
		hubtest.Must(t, err)
		_, err = f.sim.Start(ctx, n, token)
		hubtest.Must(t, err)
	}
	for _, n := range names {
		hubtest.Eventually(t, n+" Ready", time.Minute, func() (bool, error) {
			cl := &v1alpha1.Cluster{}
			err := f.c.Get(ctx, client.ObjectKey{Name: n}, cl)
			return err == nil && cl.Status.Phase == v1alpha1.ClusterReady, fmt.Errorf("phase %q", cl.Status.Phase)
		})
	}
	return f
}

var (
	deployments = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	configMaps  = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	namespaces  = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
)

// app makes the namespace, a ConfigMap "settings" and one Deployment per name that reads it,
// on the hub.
func app(t *testing.T, f *fleet, ns string, names ...string) {
	ctx := context.Background()
	hubtest.Must(t, f.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	hubtest.Must(t, f.c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings"}, Data: map[string]string{"color": "blue"}}))
	for _, n := range names {
		hubtest.Must(t, f.c.Create(ctx, deployment(ns, n)))
	}
}

func deployment(ns, name string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: "nginx:1.27",
					EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}}}}},
			},
		},
	}
}

// place makes a Placement of one Deployment (and, as by default, what it depends on) on every
// cluster of the fleet.
func place(t *testing.T, f *fleet, ns, name, deploymentName string, overrides ...v1alpha1.Override) {
	p := &v1alpha1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1alpha1.PlacementSpec{
		Resources: []v1alpha1.ResourceSelector{{Group: "apps", Kind: "Deployment", Name: deploymentName}},
		Clusters:  v1alpha1.ClusterAffinity{LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"fleet": "shared"}}},
		Overrides: overrides,
	}}
	hubtest.Must(t, f.c.Create(context.Background(), p))
}

func placementCondition(t *testing.T, f *fleet, ns, name, typ string) *metav1.Condition {
	p := &v1alpha1.Placement{}
	if err := f.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, p); err != nil || p.Status.ObservedGeneration != p.Generation {
		return nil
	}
	return meta.FindStatusCondition(p.Status.Conditions, typ)
}

func waitAvailable(t *testing.T, f *fleet, ns string, names ...string) {
	for _, n := range names {
		hubtest.Eventually(t, ns+"/"+n+" available", time.Minute, func() (bool, error) {
			c := placementCondition(t, f, ns, n, v1alpha1.PlacementAvailable)
			return c != nil && c.Status == metav1.ConditionTrue, fmt.Errorf("%+v", c)
		})
	}
}

// deletePlacement deletes a Placement and returns once every agent has finished with its
// Works (their finalizers hold them until the member side is done).
func deletePlacement(t *testing.T, f *fleet, ns, name string) {
	ctx := context.Background()
	hubtest.Must(t, f.c.Delete(ctx, &v1alpha1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}))
	waitWorksGone(t, f, ns, name)
}

func waitWorksGone(t *testing.T, f *fleet, ns, name string) {
	ctx := context.Background()
	hubtest.Eventually(t, "the Works of "+ns+"/"+name+" finalized", time.Minute, func() (bool, error) {
		var works v1alpha1.WorkList
		if err := f.c.List(ctx, &works, client.MatchingLabels{v1alpha1.LabelPlacementNamespace: ns, v1alpha1.LabelPlacement: name}); err != nil {
			return false, err
		}
		err := f.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &v1alpha1.Placement{})
		return len(works.Items) == 0 && apierrors.IsNotFound(err), fmt.Errorf("%d Works left, placement: %v", len(works.Items), err)
	})
}

// deleted lists what a member deleted so far that is one of want ("Kind namespace/name").
func deleted(f *fleet, cluster string, want ...string) []string {
	var out []string
	for _, d := range f.sim.Get(cluster).Member.Deleted() {
		if slices.Contains(want, d) {
			out = append(out, d)
		}
	}
	return out
}

func twoPlacements(t *testing.T, f *fleet, ns, first, second string) {
	app(t, f, ns, first, second)
	// The Placement deleted first is the last to apply the shared objects.
	place(t, f, ns, second, second)
	waitAvailable(t, f, ns, second)
	place(t, f, ns, first, first)
	waitAvailable(t, f, ns, first)

	shared := []string{"Namespace /" + ns, "ConfigMap " + ns + "/settings"}
	deletePlacement(t, f, ns, first)
	for _, m := range f.names {
		if got := deleted(f, m, append(shared, "Deployment "+ns+"/"+second)...); len(got) > 0 {
			t.Errorf("%s: deleting Placement %s deleted what Placement %s still lists: %v", m, first, second, got)
		}
		if got := deleted(f, m, "Deployment "+ns+"/"+first); len(got) != 1 {
			t.Errorf("%s: the Deployment only Placement %s listed was not deleted (deleted: %v)", m, first, f.sim.Get(m).Member.Deleted())
		}
		if f.sim.Get(m).Member.Cached(configMaps, ns, "settings") == nil {
			t.Errorf("%s: the shared ConfigMap is gone", m)
		}
	}

	// The last owner takes the shared objects with it.
	deletePlacement(t, f, ns, second)
	for _, m := range f.names {
		if got := deleted(f, m, shared...); len(got) != 2 {
			t.Errorf("%s: deleting the last Placement left shared objects behind: deleted only %v", m, got)
		}
		if f.sim.Get(m).Member.Cached(namespaces, "", ns) != nil {
			t.Errorf("%s: namespace %s is still there", m, ns)
		}
	}
}

func sameTemplate(t *testing.T, f *fleet, ns string) {
	app(t, f, ns, "web")
	ctx := context.Background()
	// Both select the same Deployment; b changes it, so the two Works send different content.
	// Work "NS.a" comes first by name and applies it; b reports the conflict.
	place(t, f, ns, "a", "web")
	waitAvailable(t, f, ns, "a")
	place(t, f, ns, "b", "web", v1alpha1.Override{Resource: &v1alpha1.ResourceSelector{Group: "apps", Kind: "Deployment", Name: "web"},
		Annotations: map[string]string{"owner": "b"}})
	hubtest.Eventually(t, "b reports the conflict", time.Minute, func() (bool, error) {
		c := placementCondition(t, f, ns, "b", v1alpha1.PlacementApplied)
		return c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, "Work "+ns+".a lists this object too"), fmt.Errorf("%+v", c)
	})
	for _, m := range f.names {
		if got := f.sim.Get(m).Member.Cached(deployments, ns, "web").GetAnnotations()["owner"]; got != "" {
			t.Errorf("%s: the Work that came second applied its content anyway (owner=%s)", m, got)
		}
	}

	deletePlacement(t, f, ns, "a")
	// b's content takes over; the Deployment never left.
	for _, m := range f.names {
		hubtest.Eventually(t, m+": b's content applied", time.Minute, func() (bool, error) {
			d := f.sim.Get(m).Member.Cached(deployments, ns, "web")
			return d != nil && d.GetAnnotations()["owner"] == "b", nil
		})
		if got := deleted(f, m, "Namespace /"+ns, "ConfigMap "+ns+"/settings", "Deployment "+ns+"/web"); len(got) > 0 {
			t.Errorf("%s: deleting Placement a deleted what b still selects: %v", m, got)
		}
	}
	waitAvailable(t, f, ns, "b")
	hubtest.Must(t, f.c.Delete(ctx, &v1alpha1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "b"}}))
	waitWorksGone(t, f, ns, "b")
	for _, m := range f.names {
		if got := deleted(f, m, "Deployment "+ns+"/web"); len(got) != 1 {
			t.Errorf("%s: the last Placement's Deployment stayed", m)
		}
	}
}

func afterRestart(t *testing.T, f *fleet, ns string) {
	app(t, f, ns, "backend", "frontend")
	place(t, f, ns, "frontend", "frontend")
	waitAvailable(t, f, ns, "frontend")
	place(t, f, ns, "backend", "backend") // the last to apply the shared objects
	waitAvailable(t, f, ns, "backend")

	// m1's agent is down while backend goes: its Work waits for it, held by its finalizer.
	f.sim.Get("m1").Stop()
	ctx := context.Background()
	hubtest.Must(t, f.c.Delete(ctx, &v1alpha1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "backend"}}))
	hubtest.Eventually(t, "backend's Work on m1 marked for deletion", time.Minute, func() (bool, error) {
		w := &v1alpha1.Work{}
		err := f.c.Get(ctx, client.ObjectKey{Namespace: v1alpha1.ClusterNamespace("m1"), Name: ns + ".backend"}, w)
		return err == nil && !w.DeletionTimestamp.IsZero(), err
	})
	// A new agent process: it knows nothing but what the hub's Works say.
	_, err := f.sim.Start(ctx, "m1", "")
	hubtest.Must(t, err)
	waitWorksGone(t, f, ns, "backend")
	for _, m := range f.names {
		if got := deleted(f, m, "Namespace /"+ns, "ConfigMap "+ns+"/settings", "Deployment "+ns+"/frontend"); len(got) > 0 {
			t.Errorf("%s: deleting backend deleted what frontend still lists: %v", m, got)
		}
		if got := deleted(f, m, "Deployment "+ns+"/backend"); len(got) != 1 {
			t.Errorf("%s: backend's Deployment was not deleted: %v", m, f.sim.Get(m).Member.Deleted())
		}
	}
}

// sharedCRD gives one cluster Works that list a CRD and objects of its kind, and deletes them
// one by one: a CRD leaves only with a Work that lists it, when no other Work lists it or an
// object of its kind, and while the member has no object of its kind that no Work lists.
func sharedCRD(t *testing.T, f *fleet, cluster, plural string) {
	group := plural + ".example.com"
	kind := strings.ToUpper(plural[:1]) + plural[1:len(plural)-1]
	crdName := plural + "." + group
	crd := fmt.Sprintf(`{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":%q},
		"spec":{"group":%q,"scope":"Namespaced","names":{"plural":%q,"kind":%q},
		"versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}]}}`,
		crdName, group, plural, kind)
	ns := `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"` + plural + `"}}`
	obj := func(name string) string {
		return fmt.Sprintf(`{"apiVersion":"%s/v1","kind":%q,"metadata":{"namespace":%q,"name":%q},"spec":{"size":1}}`, group, kind, plural, name)
	}
	member := f.sim.Get(cluster).Member
	crdGone := func() []string { return deleted(f, cluster, "CustomResourceDefinition /"+crdName) }

	w1 := makeWork(t, f, cluster, plural+"-1", ns, crd, obj("a"))
	w2 := makeWork(t, f, cluster, plural+"-2", ns, crd, obj("b"))
	w3 := makeWork(t, f, cluster, plural+"-3", ns, obj("c")) // lists objects of the kind only
	for _, w := range []string{w1, w2, w3} {
		waitApplied(t, f, cluster, w)
	}

	deleteWork(t, f, cluster, w1)
	if got := crdGone(); len(got) > 0 {
		t.Fatalf("the CRD went with the first of three Works")
	}
	if got := deleted(f, cluster, kind+" "+plural+"/a"); len(got) != 1 {
		t.Errorf("the first Work's own object stayed")
	}
	deleteWork(t, f, cluster, w2)
	if got := crdGone(); len(got) > 0 {
		t.Fatalf("the CRD went while a third Work still lists an object of its kind")
	}
	deleteWork(t, f, cluster, w3) // it never listed the CRD: the CRD is not its to delete
	if got := crdGone(); len(got) > 0 {
		t.Fatalf("the CRD went with a Work that did not list it")
	}

	// A Work that lists the CRD goes while the member has an object of the kind that no
	// Work lists (someone made it on the member): the CRD stays, or that object would go.
	w4 := makeWork(t, f, cluster, plural+"-4", crd)
	waitApplied(t, f, cluster, w4)
	gvr := schema.GroupVersionResource{Group: group, Version: "v1", Resource: plural}
	handmade := &unstructured.Unstructured{}
	hubtest.Must(t, handmade.UnmarshalJSON([]byte(obj("handmade"))))
	_, err := member.Apply(context.Background(), gvr, plural, handmade, false, false)
	hubtest.Must(t, err)
	deleteWork(t, f, cluster, w4)
	if got := crdGone(); len(got) > 0 {
		t.Fatalf("the CRD went while the member had an object of its kind that no Work lists")
	}

	// Once nothing uses it, the last Work that lists it takes it along.
	hubtest.Must(t, member.Delete(context.Background(), gvr, plural, "handmade"))
	w5 := makeWork(t, f, cluster, plural+"-5", crd)
	waitApplied(t, f, cluster, w5)
	deleteWork(t, f, cluster, w5)
	if got := crdGone(); len(got) != 1 {
		t.Errorf("the CRD stayed after the last Work that lists it went, with nothing of its kind left")
	}

	// Two Works that list the CRD, one of them with an object of its kind (as Placements that
	// send custom resources do, with the CRD as a dependency), go at once: their cluster left
	// both Placements. Whichever goes last takes the CRD along, once the object is gone.
	w6 := makeWork(t, f, cluster, plural+"-6", crd)
	w7 := makeWork(t, f, cluster, plural+"-7", ns, crd, obj("d"))
	waitApplied(t, f, cluster, w6)
	waitApplied(t, f, cluster, w7)
	ctx := context.Background()
	for _, w := range []string{w6, w7} {
		hubtest.Must(t, f.c.Delete(ctx, &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace(cluster), Name: w}}))
	}
	for _, w := range []string{w6, w7} {
		hubtest.Eventually(t, "Work "+w+" finalized", time.Minute, func() (bool, error) {
			err := f.c.Get(ctx, client.ObjectKey{Namespace: v1alpha1.ClusterNamespace(cluster), Name: w}, &v1alpha1.Work{})
			return apierrors.IsNotFound(err), err
		})
	}
	if got := crdGone(); len(got) != 2 {
		t.Errorf("the CRD stayed when the Work that lists it went together with the last Work that lists an object of its kind")
	}
}

func makeWork(t *testing.T, f *fleet, cluster, name string, manifests ...string) string {
	w := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace(cluster), Name: name}}
	for _, m := range manifests {
		w.Spec.Manifests = append(w.Spec.Manifests, runtime.RawExtension{Raw: []byte(m)})
	}
	hubtest.Must(t, f.c.Create(context.Background(), w))
	return name
}

func waitApplied(t *testing.T, f *fleet, cluster, name string) {
	hubtest.Eventually(t, "Work "+name+" applied", time.Minute, func() (bool, error) {
		w := &v1alpha1.Work{}
		err := f.c.Get(context.Background(), client.ObjectKey{Namespace: v1alpha1.ClusterNamespace(cluster), Name: name}, w)
		return err == nil && w.Status.ObservedGeneration == w.Generation && meta.IsStatusConditionTrue(w.Status.Conditions, v1alpha1.WorkApplied),
			fmt.Errorf("%+v", w.Status)
	})
}

func deleteWork(t *testing.T, f *fleet, cluster, name string) {
	ctx := context.Background()
	key := client.ObjectKey{Namespace: v1alpha1.ClusterNamespace(cluster), Name: name}
	hubtest.Must(t, f.c.Delete(ctx, &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}))
	hubtest.Eventually(t, "Work "+name+" finalized", time.Minute, func() (bool, error) {
		err := f.c.Get(ctx, key, &v1alpha1.Work{})
		return apierrors.IsNotFound(err), err
	})
}
