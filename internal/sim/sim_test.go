package sim_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/sim"
)

var deployments = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}

var eventually = hubtest.Eventually

// TestSimulatedFleet runs three simulated clusters against a real hub: they join, become
// Ready, take a Divided Deployment and report it available; a stopped agent makes its cluster
// Unreachable and moves its share away without anything being deleted on its member.
func TestSimulatedFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub")
	}
	h := hubtest.Start(t)
	ctx := context.Background()
	c := h.Client
	settingsWatches := func() float64 {
		t.Helper()
		return watchesOfOneConfigMap(t, h)
	}
	watchesBefore := settingsWatches()
	fleet := sim.NewFleet(sim.Options{HubURL: h.Config.Host, HubCA: h.Config.CAData, StateDir: t.TempDir(),
		AvailableAfter: 200 * time.Millisecond, Version: "test", Log: hubtest.Logger(t)})
	t.Cleanup(fleet.StopAll)

	names := []string{"sim-a", "sim-b", "sim-c"}
	for _, n := range names {
		token, err := sim.Register(ctx, c, n, map[string]string{"fleet": "sim"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fleet.Start(ctx, n, token); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range names {
		eventually(t, n+" Ready", time.Minute, func() (bool, error) {
			cl := &v1alpha1.Cluster{}
			err := c.Get(ctx, client.ObjectKey{Name: n}, cl)
			return err == nil && cl.Status.Phase == v1alpha1.ClusterReady, fmt.Errorf("phase %q, conditions %+v", cl.Status.Phase, cl.Status.Conditions)
		})
	}

	// A steady cluster's heartbeats cost no writes to its Cluster: three heartbeats of sim-a
	// on its delivery stream leave the Cluster as it was.
	steady := &v1alpha1.Cluster{}
	hubtest.Must(t, c.Get(ctx, client.ObjectKey{Name: "sim-a"}, steady))
	heard := map[time.Time]bool{}
	heartbeats := func(n int) {
		t.Helper()
		clear(heard)
		eventually(t, fmt.Sprintf("%d heartbeats of sim-a", n), time.Minute, func() (bool, error) {
			last, ok := h.LastHeard("sim-a")
			if ok {
				heard[last] = true
			}
			return len(heard) > n, fmt.Errorf("heard %d", len(heard))
		})
	}
	heartbeats(3)
	// An agent whose stream is open holds no watch of its settings at the hub's API server
	// (nor, then, a connection): the stream says what they said.
	eventually(t, "the agents' watches of their settings closed", time.Minute, func() (bool, error) {
		n := settingsWatches()
		return n == watchesBefore, fmt.Errorf("%v watches of one ConfigMap, %v before the agents started", n, watchesBefore)
	})
	// Nor do they renew its Lease (if one was made while its stream was opening): the stream
	// carries them.
	lease := func() string {
		l := &coordinationv1.Lease{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: v1alpha1.ClusterNamespace("sim-a"), Name: v1alpha1.AgentLease}, l); !apierrors.IsNotFound(err) {
			hubtest.Must(t, err)
		}
		return l.ResourceVersion
	}
	leaseBefore := lease()
	heartbeats(3)
	if got := lease(); got != leaseBefore {
		t.Errorf("sim-a's Lease was renewed (resourceVersion %s, then %s) while its agent heartbeats on its stream", leaseBefore, got)
	}
	after := &v1alpha1.Cluster{}
	hubtest.Must(t, c.Get(ctx, client.ObjectKey{Name: "sim-a"}, after))
	if after.ResourceVersion != steady.ResourceVersion {
		t.Errorf("heartbeats of a steady cluster changed its Cluster: %+v\nthen %+v", steady.Status, after.Status)
	}

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	six := int32(6)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &six,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}},
			},
		},
	}
	if err := c.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	p := &v1alpha1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: v1alpha1.PlacementSpec{
		Resources: []v1alpha1.ResourceSelector{{Group: "apps", Kind: "Deployment", Name: "web"}},
		Clusters:  v1alpha1.ClusterAffinity{LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"fleet": "sim"}}},
		Replicas:  &v1alpha1.ReplicaScheduling{Type: v1alpha1.Divided},
		Failover:  &v1alpha1.FailoverPolicy{GraceSeconds: ptr(int32(1)), StableSeconds: ptr(int32(5))},
	}}
	if err := c.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	available := func() (bool, error) {
		got := &v1alpha1.Placement{}
		err := c.Get(ctx, client.ObjectKeyFromObject(p), got)
		return err == nil && meta.IsStatusConditionTrue(got.Status.Conditions, v1alpha1.PlacementAvailable), fmt.Errorf("status %+v", got.Status)
	}
	eventually(t, "the Placement available", time.Minute, available)
	for _, n := range names {
		obj := fleet.Get(n).Member.Cached(deployments, "shop", "web")
		if obj == nil {
			t.Fatalf("%s: the Deployment is not on the member", n)
		}
		if r, _, _ := unstructuredInt(obj.Object, "spec", "replicas"); r != 2 {
			t.Errorf("%s: %d replicas, want 2", n, r)
		}
	}

	// sim-c's agent stops: the cluster becomes Unreachable, its share moves to the others,
	// and its Work is left exactly as it was, so that its agent finds nothing to delete when
	// it is back.
	workOf := func(cluster string) *v1alpha1.Work {
		w := &v1alpha1.Work{}
		hubtest.Must(t, c.Get(ctx, client.ObjectKey{Namespace: v1alpha1.ClusterNamespace(cluster), Name: "shop.web"}, w))
		return w
	}
	lostWork := workOf("sim-c")
	fleet.Get("sim-c").Stop()
	eventually(t, "sim-c Unreachable", time.Minute, func() (bool, error) {
		cl := &v1alpha1.Cluster{}
		err := c.Get(ctx, client.ObjectKey{Name: "sim-c"}, cl)
		return err == nil && cl.Status.Phase == v1alpha1.ClusterUnreachable, fmt.Errorf("phase %q", cl.Status.Phase)
	})
	eventually(t, "3/3 on the others", time.Minute, func() (bool, error) {
		a := fleet.Get("sim-a").Member.Cached(deployments, "shop", "web")
		b := fleet.Get("sim-b").Member.Cached(deployments, "shop", "web")
		ra, _, _ := unstructuredInt(a.Object, "spec", "replicas")
		rb, _, _ := unstructuredInt(b.Object, "spec", "replicas")
		return ra == 3 && rb == 3, fmt.Errorf("%d and %d", ra, rb)
	})
	if w := workOf("sim-c"); w.Generation != lostWork.Generation || !w.DeletionTimestamp.IsZero() {
		t.Errorf("the lost cluster's Work changed while it was lost: generation %d -> %d, deleted %v", lostWork.Generation, w.Generation, w.DeletionTimestamp)
	}
	// It comes back (with the identity it kept), becomes Ready and takes its share again.
	if _, err := fleet.Start(ctx, "sim-c", ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, "2/2/2 again", 2*time.Minute, func() (bool, error) {
		var got []int64
		for _, n := range names {
			r, _, _ := unstructuredInt(fleet.Get(n).Member.Cached(deployments, "shop", "web").Object, "spec", "replicas")
			got = append(got, r)
		}
		return got[0] == 2 && got[1] == 2 && got[2] == 2, fmt.Errorf("%v", got)
	})
	for _, n := range names {
		if del := fleet.Get(n).Member.Deleted(); len(del) > 0 {
			t.Errorf("%s lost %v", n, del)
		}
	}

	// The hub restarts without a delivery stream: the agents, which no longer watched their
	// settings, read them again once their stream has been down a while, and heartbeat on
	// their Leases; their clusters stay Ready.
	h.Options.DeliveryPort = -1
	h.Restart()
	c = h.Client
	for _, n := range names {
		renewed := map[string]bool{}
		eventually(t, n+"'s Lease renewed twice, and Ready", time.Minute, func() (bool, error) {
			l := &coordinationv1.Lease{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: v1alpha1.ClusterNamespace(n), Name: v1alpha1.AgentLease}, l); err != nil {
				return false, err
			}
			renewed[l.ResourceVersion] = true
			cl := &v1alpha1.Cluster{}
			hubtest.Must(t, c.Get(ctx, client.ObjectKey{Name: n}, cl))
			return len(renewed) > 2 && cl.Status.Phase == v1alpha1.ClusterReady, fmt.Errorf("%d versions of the Lease, phase %q", len(renewed), cl.Status.Phase)
		})
	}
	// Without a stream they watch their settings again (which also shows that the count
	// above is of their watches).
	eventually(t, "the agents' watches of their settings", time.Minute, func() (bool, error) {
		n := settingsWatches()
		return n == watchesBefore+float64(len(names)), fmt.Errorf("%v watches of one ConfigMap, %v before the agents started", n, watchesBefore)
	})
}

// watchesOfOneConfigMap is how many watches of a single ConfigMap (by name) the hub's API
// server serves now, from its metrics: the agents watch their settings so.
func watchesOfOneConfigMap(t *testing.T, h *hubtest.Hub) float64 {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(h.Config)
	raw, err := cs.RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	hubtest.Must(t, err)
	var n float64
	for line := range strings.Lines(string(raw)) {
		if strings.HasPrefix(line, "apiserver_longrunning_requests{") && strings.Contains(line, `resource="configmaps"`) &&
			strings.Contains(line, `scope="resource"`) && strings.Contains(line, `verb="WATCH"`) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			hubtest.Must(t, err)
			n += v
		}
	}
	return n
}

func unstructuredInt(obj map[string]any, path ...string) (int64, bool, error) {
	return unstructured.NestedInt64(obj, path...)
}
func ptr[T any](v T) *T { return &v }
