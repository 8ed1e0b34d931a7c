package agent_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/sim"
)

// TestWorks runs the agent's handling of one Work, case by case, each on a simulated cluster of
// its own against one real hub: the order it applies in, drift corrected or reported,
// tombstones for what a Work drops, and what deleting a Work does with each deletion policy.
// The simulated member records every apply and deletion in order.
func TestWorks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub")
	}
	f := startFleet(t)
	cm := func(ns, name, color string) string {
		return fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"namespace":%q,"name":%q},"data":{"color":%q}}`, ns, name, color)
	}
	ns := func(name string) string {
		return `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"` + name + `"}}`
	}
	dep := func(ns, name string) string {
		return fmt.Sprintf(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"namespace":%q,"name":%q},"spec":{"replicas":1,"selector":{"matchLabels":{"app":%[2]q}},"template":{"metadata":{"labels":{"app":%[2]q}},"spec":{"containers":[{"name":"c","image":"nginx"}]}}}}`, ns, name)
	}
	crd := `{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"widgets.example.com"},
		"spec":{"group":"example.com","scope":"Namespaced","names":{"plural":"widgets","kind":"Widget"},
		"versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}]}}`
	widget := `{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"namespace":"app","name":"w"},"spec":{"size":1}}`

	type step func(t *testing.T, c *workCase)
	cases := []struct {
		name  string
		steps []step
	}{{
		name: "apply order: namespaces and CRDs first, then configuration, workloads, custom resources",
		steps: []step{
			func(t *testing.T, c *workCase) {
				c.create(t, v1alpha1.DeletionDelete, widget, dep("app", "web"), cm("app", "settings", "blue"), crd, ns("app"))
				c.waitApplied(t)
				want := []string{"Namespace /app", "CustomResourceDefinition /widgets.example.com", "ConfigMap app/settings", "Deployment app/web", "Widget app/w"}
				if got := c.member.Applied(); len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
					t.Errorf("applied %v, want %v", got, want)
				}
			},
		},
	}, {
		name: "drift is corrected by default",
		steps: []step{
			func(t *testing.T, c *workCase) {
				c.create(t, v1alpha1.DeletionDelete, ns("app"), cm("app", "settings", "blue"))
				c.waitApplied(t)
				c.edit(t, "app", "settings", "red")
				hubtest.Eventually(t, "the edit undone", time.Minute, func() (bool, error) {
					return c.color("app", "settings") == "blue", nil
				})
			},
		},
	}, {
		name: "drift is only reported with driftPolicy ReportOnly",
		steps: []step{
			func(t *testing.T, c *workCase) {
				c.create(t, v1alpha1.DeletionDelete, ns("app"), cm("app", "settings", "blue"))
				c.update(t, func(w *v1alpha1.Work) { w.Spec.DriftPolicy = v1alpha1.DriftReportOnly })
				c.waitApplied(t)
				c.edit(t, "app", "settings", "red")
				hubtest.Eventually(t, "the drift reported", time.Minute, func() (bool, error) {
					w := c.work(t)
					return w != nil && meta.IsStatusConditionTrue(w.Status.Conditions, v1alpha1.WorkDrifted) && w.Status.Summary.Drifted == 1, fmt.Errorf("%+v", w.Status)
				})
				if got := c.color("app", "settings"); got != "red" {
					t.Errorf("report-only drift was undone: color %q", got)
				}
			},
		},
	}, {
		name: "what a Work drops stays listed as Deleting until the member has deleted it",
		steps: []step{
			func(t *testing.T, c *workCase) {
				c.create(t, v1alpha1.DeletionDelete, ns("app"), cm("app", "keep", "blue"), cm("app", "drop", "blue"))
				c.waitApplied(t)
				c.member.HoldDeletes()
				c.update(t, func(w *v1alpha1.Work) { w.Spec.Manifests = w.Spec.Manifests[:2] })
				hubtest.Eventually(t, "the dropped ConfigMap listed as Deleting", time.Minute, func() (bool, error) {
					r := c.resource(t, "ConfigMap", "drop")
					return r != nil && r.State == v1alpha1.ResourceDeleting, fmt.Errorf("%+v", r)
				})
				c.member.ReleaseDeletes(context.Background())
				hubtest.Eventually(t, "the tombstone gone", time.Minute, func() (bool, error) {
					w := c.work(t)
					return w.Status.ObservedGeneration == w.Generation && c.resource(t, "ConfigMap", "drop") == nil && w.Status.Summary.Total == 2, nil
				})
				if got := c.member.Deleted(); !slices.Equal(got, []string{"ConfigMap app/drop"}) {
					t.Errorf("deleted %v, want only the dropped ConfigMap", got)
				}
			},
		},
	}, {
		name: "a deleted Work takes its resources along, workloads first, the namespace last",
		steps: []step{
			func(t *testing.T, c *workCase) {
				c.create(t, v1alpha1.DeletionDelete, ns("app"), cm("app", "settings", "blue"), dep("app", "web"))
				c.waitApplied(t)
				c.member.HoldDeletes() // so that the order shows: each waits to be released
				c.delete(t)
				hubtest.Eventually(t, "the workload and its configuration deleting, the namespace not yet", time.Minute, func() (bool, error) {
					return c.deleting("app", "web") && c.deleting("app", "settings") && !c.deleting("", "app"), nil
				})
				c.member.ReleaseDeletes(context.Background())
				c.waitGone(t)
				want := []string{"Deployment app/web", "ConfigMap app/settings", "Namespace /app"}
				if got := c.member.Deleted(); !slices.Equal(got, want) {
					t.Errorf("deleted %v, want %v", got, want)
				}
			},
		},
	}, {
		name: "a deleted Work with deletionPolicy Orphan leaves its resources",
		steps: []step{
			func(t *testing.T, c *workCase) {
				c.create(t, v1alpha1.DeletionOrphan, ns("app"), cm("app", "settings", "blue"))
				c.waitApplied(t)
				c.delete(t)
				c.waitGone(t)
				if got := c.member.Deleted(); len(got) > 0 {
					t.Errorf("an orphaning Work deleted %v", got)
				}
			},
		},
	}}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := f.newCase(t, fmt.Sprintf("works-%d", i))
			for _, s := range tc.steps {
				s(t, c)
			}
		})
	}
}

// workCase is one simulated cluster and its one Work, "web".
type workCase struct {
	f       *fleet
	cluster string
	member  *sim.Member
}

// newCase registers a simulated cluster and waits until it is Ready.
func (f *fleet) newCase(t *testing.T, cluster string) *workCase {
	ctx := context.Background()
	token, err := sim.Register(ctx, f.c, cluster, nil, time.Hour)
	hubtest.Must(t, err)
	sc, err := f.sim.Start(ctx, cluster, token)
	hubtest.Must(t, err)
	hubtest.Eventually(t, cluster+" Ready", time.Minute, func() (bool, error) {
		cl := &v1alpha1.Cluster{}
		err := f.c.Get(ctx, client.ObjectKey{Name: cluster}, cl)
		return err == nil && cl.Status.Phase == v1alpha1.ClusterReady, err
	})
	return &workCase{f: f, cluster: cluster, member: sc.Member}
}

func (c *workCase) key() client.ObjectKey {
	return client.ObjectKey{Namespace: v1alpha1.ClusterNamespace(c.cluster), Name: "web"}
}

func (c *workCase) create(t *testing.T, policy v1alpha1.DeletionPolicy, manifests ...string) {
	w := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: c.key().Namespace, Name: c.key().Name}, Spec: v1alpha1.WorkSpec{DeletionPolicy: policy}}
	for _, m := range manifests {
		w.Spec.Manifests = append(w.Spec.Manifests, runtime.RawExtension{Raw: []byte(m)})
	}
	hubtest.Must(t, c.f.c.Create(context.Background(), w))
}

func (c *workCase) update(t *testing.T, change func(*v1alpha1.Work)) {
	hubtest.Must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		w := &v1alpha1.Work{}
		if err := c.f.c.Get(context.Background(), c.key(), w); err != nil {
			return err
		}
		change(w)
		return c.f.c.Update(context.Background(), w)
	}))
}

func (c *workCase) delete(t *testing.T) {
	hubtest.Must(t, c.f.c.Delete(context.Background(), &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: c.key().Namespace, Name: c.key().Name}}))
}

func (c *workCase) work(t *testing.T) *v1alpha1.Work {
	w := &v1alpha1.Work{}
	if err := c.f.c.Get(context.Background(), c.key(), w); err != nil {
		return nil
	}
	return w
}

func (c *workCase) resource(t *testing.T, kind, name string) *v1alpha1.ResourceStatus {
	w := c.work(t)
	if w == nil {
		return nil
	}
	for i, r := range w.Status.Resources {
		if r.Kind == kind && r.Name == name {
			return &w.Status.Resources[i]
		}
	}
	return nil
}

func (c *workCase) waitApplied(t *testing.T) {
	waitApplied(t, c.f, c.cluster, "web")
}

func (c *workCase) waitGone(t *testing.T) {
	hubtest.Eventually(t, "the Work finalized", time.Minute, func() (bool, error) { return c.work(t) == nil, nil })
}

// edit changes a ConfigMap on the member behind the agent's back.
func (c *workCase) edit(t *testing.T, ns, name, color string) {
	u := c.member.Cached(configMaps, ns, name)
	if u == nil {
		t.Fatalf("no ConfigMap %s/%s on the member", ns, name)
	}
	hubtest.Must(t, unstructured.SetNestedField(u.Object, color, "data", "color"))
	_, err := c.member.Apply(context.Background(), configMaps, ns, u, true, false)
	hubtest.Must(t, err)
}

func (c *workCase) color(ns, name string) string {
	u := c.member.Cached(configMaps, ns, name)
	if u == nil {
		return ""
	}
	v, _, _ := unstructured.NestedString(u.Object, "data", "color")
	return v
}

// deleting says whether the member holds an object (by name, any kind) marked for deletion.
func (c *workCase) deleting(ns, name string) bool {
	for _, gvr := range []struct{ g, r string }{{"", "configmaps"}, {"apps", "deployments"}, {"", "namespaces"}} {
		if u := c.member.Cached(gvrOf(gvr.g, gvr.r), ns, name); u != nil && u.GetDeletionTimestamp() != nil {
			return true
		}
	}
	return false
}

func gvrOf(group, resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: group, Version: "v1", Resource: resource}
}

// workWatches counts the watches of Works that the hub's API server has served, ended (a
// request counted) or still open, in one namespace (the agents') and in all of them (the hub's
// own controllers).
func workWatches(t *testing.T, h *hubtest.Hub) (namespace, cluster float64) {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(h.Config)
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	hubtest.Must(t, err)
	for line := range strings.Lines(string(raw)) {
		if !strings.HasPrefix(line, "apiserver_request_total{") && !strings.HasPrefix(line, "apiserver_longrunning_requests{") {
			continue
		}
		labels, value, ok := strings.Cut(strings.TrimSpace(line), "} ")
		if !ok || !strings.Contains(labels, `resource="works"`) || !strings.Contains(labels, `verb="WATCH"`) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		hubtest.Must(t, err)
		switch {
		case strings.Contains(labels, `scope="namespace"`):
			namespace += v
		case strings.Contains(labels, `scope="cluster"`):
			cluster += v
		}
	}
	return namespace, cluster
}
