package sim

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/agent"
)

// Member is an in-memory member cluster. It stores what the agent applies and plays the
// member's controllers: after AvailableAfter, a workload reports all its replicas available
// (a Deployment, StatefulSet, DaemonSet, Job, Pod, PVC or LoadBalancer Service). A workload
// whose pods select a node label that the simulated nodes lack never becomes available, as on
// a real cluster. It serves the built-in kinds Works usually carry, and the kinds of the
// CustomResourceDefinitions applied to it.
type Member struct {
	name           string
	availableAfter time.Duration
	zones          []string
	nodes          int32

	mu       sync.Mutex
	objects  map[schema.GroupVersionResource]map[string]*unstructured.Unstructured // ns/name
	handlers map[schema.GroupVersionResource]agent.WatchHandler
	crds     map[schema.GroupKind]kindInfo
	rv       int64
	deleted  []string // kind ns/name of every object deleted, in order
	applied  []string // kind ns/name of every apply (not dry runs), in order
	holding  bool     // deletions wait for ReleaseDeletes, as a finalizer would make them
	held     []heldDelete
	down     atomic.Bool
	applies  atomic.Int64
	closed   chan struct{}
}

var _ agent.Member = (*Member)(nil)

type kindInfo struct {
	resource   string
	namespaced bool
}

// builtin are the kinds every simulated member serves.
var builtin = map[schema.GroupKind]kindInfo{
	{Kind: "Namespace"}:                                               {"namespaces", false},
	{Kind: "ConfigMap"}:                                               {"configmaps", true},
	{Kind: "Secret"}:                                                  {"secrets", true},
	{Kind: "ServiceAccount"}:                                          {"serviceaccounts", true},
	{Kind: "Service"}:                                                 {"services", true},
	{Kind: "Pod"}:                                                     {"pods", true},
	{Kind: "PersistentVolumeClaim"}:                                   {"persistentvolumeclaims", true},
	{Group: "apps", Kind: "Deployment"}:                               {"deployments", true},
	{Group: "apps", Kind: "StatefulSet"}:                              {"statefulsets", true},
	{Group: "apps", Kind: "DaemonSet"}:                                {"daemonsets", true},
	{Group: "batch", Kind: "Job"}:                                     {"jobs", true},
	{Group: "rbac.authorization.k8s.io", Kind: "Role"}:                {"roles", true},
	{Group: "rbac.authorization.k8s.io", Kind: "RoleBinding"}:         {"rolebindings", true},
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole"}:         {"clusterroles", false},
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRoleBinding"}:  {"clusterrolebindings", false},
	{Group: "networking.k8s.io", Kind: "Ingress"}:                     {"ingresses", true},
	{Group: "policy", Kind: "PodDisruptionBudget"}:                    {"poddisruptionbudgets", true},
	{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}: {"customresourcedefinitions", false},
}

// NewMember is an empty simulated cluster with three Ready nodes spread over zones a, b, c.
func NewMember(name string, availableAfter time.Duration) *Member {
	return &Member{
		name: name, availableAfter: availableAfter, zones: []string{"a", "b", "c"}, nodes: 3,
		objects:  map[schema.GroupVersionResource]map[string]*unstructured.Unstructured{},
		handlers: map[schema.GroupVersionResource]agent.WatchHandler{},
		crds:     map[schema.GroupKind]kindInfo{},
		closed:   make(chan struct{}),
	}
}

// SetAPIDown makes the member report an unhealthy API server (true) or a healthy one again.
func (m *Member) SetAPIDown(down bool) { m.down.Store(down) }

// Deleted lists every object deleted from the member so far, as "Kind namespace/name".
func (m *Member) Deleted() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.deleted...)
}

// Applied lists every apply (not dry runs) the member has taken, as "Kind namespace/name", in
// order.
func (m *Member) Applied() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.applied...)
}

// HoldDeletes makes the member hold every object deleted from now on, as a finalizer would:
// it stays, with a deletionTimestamp, until ReleaseDeletes.
func (m *Member) HoldDeletes() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.holding = true
}

type heldDelete struct {
	gvr      schema.GroupVersionResource
	ns, name string
}

// ReleaseDeletes finishes the deletions the member held, in the order they were asked for,
// and holds no more.
func (m *Member) ReleaseDeletes(ctx context.Context) {
	m.mu.Lock()
	m.holding = false
	release := m.held
	m.held = nil
	m.mu.Unlock()
	for _, h := range release {
		_ = m.Delete(ctx, h.gvr, h.ns, h.name)
	}
}

// Applies counts the applies (not dry runs) the member has taken.
func (m *Member) Applies() int64 { return m.applies.Load() }

// Count is how many objects of a resource the member holds.
func (m *Member) Count(gvr schema.GroupVersionResource) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.objects[unversioned(gvr)])
}

func key(ns, name string) string { return ns + "/" + name }

// Mapping serves the built-in kinds and those of applied CRDs.
func (m *Member) Mapping(gk schema.GroupKind, version string) (schema.GroupVersionResource, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	info, ok := builtin[gk]
	if !ok {
		info, ok = m.crds[gk]
	}
	if !ok {
		return schema.GroupVersionResource{}, false, fmt.Errorf("%w: the simulated member does not serve %s %s/%s", agent.ErrKindUnknown, gk.Kind, gk.Group, version)
	}
	return schema.GroupVersionResource{Group: gk.Group, Version: version, Resource: info.resource}, info.namespaced, nil
}

// Watch records the handler; the member calls it for every later change of the resource.
func (m *Member) Watch(_ context.Context, gvr schema.GroupVersionResource, h agent.WatchHandler) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.handlers[unversioned(gvr)]; !ok {
		m.handlers[unversioned(gvr)] = h
	}
}

// unversioned keys storage by group and resource: one object, whatever version it is read at.
func unversioned(gvr schema.GroupVersionResource) schema.GroupVersionResource {
	gvr.Version = ""
	return gvr
}

func (m *Member) Cached(gvr schema.GroupVersionResource, ns, name string) *unstructured.Unstructured {
	m.mu.Lock()
	defer m.mu.Unlock()
	if o := m.objects[unversioned(gvr)][key(ns, name)]; o != nil {
		return o.DeepCopy()
	}
	return nil
}

func (m *Member) Get(_ context.Context, gvr schema.GroupVersionResource, ns, name string) (*unstructured.Unstructured, error) {
	if o := m.Cached(gvr, ns, name); o != nil {
		return o, nil
	}
	return nil, apierrors.NewNotFound(gvr.GroupResource(), name)
}

// Apply stores obj. Spec changes move the generation on, and the simulated controller
// reports the new generation available after the member's delay.
func (m *Member) Apply(_ context.Context, gvr schema.GroupVersionResource, ns string, obj *unstructured.Unstructured, _, dryRun bool) (*unstructured.Unstructured, error) {
	m.mu.Lock()
	gvr0 := unversioned(gvr)
	k := key(ns, obj.GetName())
	old := m.objects[gvr0][k]
	next := obj.DeepCopy()
	unstructured.RemoveNestedField(next.Object, "status")
	gen := int64(1)
	if old != nil {
		next.SetUID(old.GetUID())
		next.SetCreationTimestamp(old.GetCreationTimestamp())
		gen = old.GetGeneration()
		if specOf(old) != specOf(next) {
			gen++
		}
		if st, ok := old.Object["status"]; ok {
			next.Object["status"] = st
		}
	} else {
		next.SetUID(types.UID(fmt.Sprintf("%s-%s-%d", m.name, obj.GetName(), m.rv+1)))
		next.SetCreationTimestamp(metav1.Now())
	}
	next.SetGeneration(gen)
	if dryRun {
		next.SetResourceVersion(strconv.FormatInt(m.rv, 10))
		m.mu.Unlock()
		return next, nil
	}
	m.rv++
	next.SetResourceVersion(strconv.FormatInt(m.rv, 10))
	m.applied = append(m.applied, strings.TrimSpace(obj.GetKind()+" "+k))
	if m.objects[gvr0] == nil {
		m.objects[gvr0] = map[string]*unstructured.Unstructured{}
	}
	m.objects[gvr0][k] = next
	if gvr0.Resource == "customresourcedefinitions" {
		m.learnCRD(next)
	}
	h := m.handlers[gvr0]
	changed := old == nil || old.GetGeneration() != gen
	m.mu.Unlock()
	m.applies.Add(1)
	if old != nil && h.Updated != nil {
		h.Updated(old.DeepCopy(), next.DeepCopy())
	}
	if changed {
		m.scheduleStatus(gvr0, ns, obj.GetName(), gen)
	}
	return next.DeepCopy(), nil
}

func specOf(u *unstructured.Unstructured) string {
	c := u.DeepCopy().Object
	delete(c, "status")
	delete(c, "metadata")
	b, _ := (&unstructured.Unstructured{Object: c}).MarshalJSON()
	return string(b)
}

// learnCRD makes the kinds of a CRD servable.
func (m *Member) learnCRD(crd *unstructured.Unstructured) {
	group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
	kind, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "kind")
	plural, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "plural")
	scope, _, _ := unstructured.NestedString(crd.Object, "spec", "scope")
	if kind != "" && plural != "" {
		m.crds[schema.GroupKind{Group: group, Kind: kind}] = kindInfo{resource: plural, namespaced: scope != "Cluster"}
	}
}

// scheduleStatus plays the member's controller: after the delay, the object's status says
// generation gen is done, unless a newer generation replaced it meanwhile.
func (m *Member) scheduleStatus(gvr schema.GroupVersionResource, ns, name string, gen int64) {
	time.AfterFunc(m.availableAfter, func() {
		select {
		case <-m.closed:
			return
		default:
		}
		m.mu.Lock()
		cur := m.objects[gvr][key(ns, name)]
		if cur == nil || cur.GetGeneration() != gen {
			m.mu.Unlock()
			return
		}
		old := cur.DeepCopy()
		status := m.statusFor(cur)
		if status == nil || equality.Semantic.DeepEqual(status, cur.Object["status"]) {
			m.mu.Unlock()
			return
		}
		cur.Object["status"] = status
		m.rv++
		cur.SetResourceVersion(strconv.FormatInt(m.rv, 10))
		next := cur.DeepCopy()
		h := m.handlers[gvr]
		m.mu.Unlock()
		if h.Updated != nil {
			h.Updated(old, next)
		}
	})
}

// statusFor is what the member's controllers would report for u once they are done.
func (m *Member) statusFor(u *unstructured.Unstructured) map[string]any {
	gen := u.GetGeneration()
	want, found, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
	if !found {
		want = 1
	}
	available := want
	if !m.schedulable(u) {
		available = 0
	}
	cond := func(typ string, ok bool) map[string]any {
		s := "True"
		if !ok {
			s = "False"
		}
		return map[string]any{"type": typ, "status": s, "reason": "Simulated", "lastTransitionTime": time.Now().UTC().Format(time.RFC3339)}
	}
	group := u.GroupVersionKind().Group
	switch kind := u.GetKind(); {
	case group == "apps" && kind == "Deployment":
		return map[string]any{"observedGeneration": gen, "replicas": want, "updatedReplicas": available, "readyReplicas": available,
			"availableReplicas": available, "conditions": []any{cond("Available", available == want), cond("Progressing", true)}}
	case group == "apps" && kind == "StatefulSet":
		rev := fmt.Sprintf("%s-%d", u.GetName(), gen)
		return map[string]any{"observedGeneration": gen, "replicas": want, "readyReplicas": available, "availableReplicas": available,
			"currentReplicas": available, "updatedReplicas": available, "currentRevision": rev, "updateRevision": rev}
	case group == "apps" && kind == "DaemonSet":
		n := int64(m.nodes)
		if !m.schedulable(u) {
			n = 0
		}
		return map[string]any{"observedGeneration": gen, "desiredNumberScheduled": int64(m.nodes), "currentNumberScheduled": n,
			"updatedNumberScheduled": n, "numberAvailable": n, "numberReady": n}
	case group == "batch" && kind == "Job":
		if available == 0 {
			return map[string]any{"active": int64(0)}
		}
		return map[string]any{"succeeded": int64(1), "conditions": []any{cond("Complete", true)}}
	case group == "" && kind == "Pod":
		if available == 0 {
			return map[string]any{"phase": "Pending"}
		}
		return map[string]any{"phase": "Running", "conditions": []any{cond("Ready", true)}}
	case group == "" && kind == "PersistentVolumeClaim":
		return map[string]any{"phase": "Bound"}
	case group == "" && kind == "Service":
		if t, _, _ := unstructured.NestedString(u.Object, "spec", "type"); t == "LoadBalancer" {
			return map[string]any{"loadBalancer": map[string]any{"ingress": []any{map[string]any{"ip": "127.0.0.1"}}}}
		}
	}
	return nil
}

// schedulable reports whether the pods of a workload fit the simulated nodes: their node
// selector asks only for labels the nodes have.
func (m *Member) schedulable(u *unstructured.Unstructured) bool {
	sel, _, _ := unstructured.NestedStringMap(u.Object, "spec", "template", "spec", "nodeSelector")
	if u.GetKind() == "Pod" {
		sel, _, _ = unstructured.NestedStringMap(u.Object, "spec", "nodeSelector")
	}
	for k, v := range sel {
		switch {
		case k == corev1.LabelOSStable && v == "linux":
		case k == corev1.LabelTopologyZone && contains(m.zones, v):
		default:
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (m *Member) Delete(_ context.Context, gvr schema.GroupVersionResource, ns, name string) error {
	type gone struct {
		obj *unstructured.Unstructured
		h   agent.WatchHandler
	}
	m.mu.Lock()
	gvr0 := unversioned(gvr)
	old := m.objects[gvr0][key(ns, name)]
	if old == nil {
		m.mu.Unlock()
		return nil
	}
	if m.holding {
		if old.GetDeletionTimestamp() == nil {
			m.held = append(m.held, heldDelete{gvr0, ns, name})
			prev := old.DeepCopy()
			now := metav1.Now()
			old.SetDeletionTimestamp(&now)
			m.rv++
			old.SetResourceVersion(strconv.FormatInt(m.rv, 10))
			h, next := m.handlers[gvr0], old.DeepCopy()
			m.mu.Unlock()
			if h.Updated != nil {
				h.Updated(prev, next)
			}
			return nil
		}
		m.mu.Unlock()
		return nil
	}
	removed := []gone{{old, m.handlers[gvr0]}}
	m.remove(gvr0, ns, name)
	// As a real API server does: a namespace takes everything in it along, a CRD every object
	// of its kind.
	for g, objs := range m.objects {
		for _, o := range objs {
			inNamespace := gvr0.Resource == "namespaces" && o.GetNamespace() == name
			ofKind := gvr0.Resource == "customresourcedefinitions" && g.Group+"/"+g.Resource == crdResource(old)
			if inNamespace || ofKind {
				removed = append(removed, gone{o, m.handlers[g]})
				m.remove(g, o.GetNamespace(), o.GetName())
			}
		}
	}
	if gvr0.Resource == "customresourcedefinitions" {
		for gk := range m.crds {
			if gk.Group+"/"+m.crds[gk].resource == crdResource(old) {
				delete(m.crds, gk)
			}
		}
	}
	m.mu.Unlock()
	for _, r := range removed {
		if r.h.Deleted != nil {
			r.h.Deleted(r.obj)
		}
	}
	return nil
}

// remove takes one object out and records its deletion; m.mu is held.
func (m *Member) remove(gvr schema.GroupVersionResource, ns, name string) {
	o := m.objects[gvr][key(ns, name)]
	delete(m.objects[gvr], key(ns, name))
	m.deleted = append(m.deleted, strings.TrimSpace(o.GetKind()+" "+key(ns, name)))
}

// crdResource is "group/plural" of the objects a CRD serves.
func crdResource(crd *unstructured.Unstructured) string {
	group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
	plural, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "plural")
	return group + "/" + plural
}

// Census counts the member's objects of gvr.
func (m *Member) Census(_ context.Context, gvr schema.GroupVersionResource) (agent.Census, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var c agent.Census
	for _, o := range m.objects[unversioned(gvr)] {
		if o.GetDeletionTimestamp() != nil {
			c.Deleting++
		} else {
			c.Live++
		}
	}
	return c, nil
}

// Observe reports three Ready nodes of 8 cpu, 32 GiB and 110 pods each, and the replicas the
// member runs as requested pods.
func (m *Member) Observe(context.Context) v1alpha1.Inventory {
	m.mu.Lock()
	var pods int64
	for gvr, objs := range m.objects {
		if gvr.Resource != "deployments" && gvr.Resource != "statefulsets" {
			continue
		}
		for _, o := range objs {
			r, _, _ := unstructured.NestedInt64(o.Object, "status", "availableReplicas")
			pods += r
		}
	}
	m.mu.Unlock()
	n := int64(m.nodes)
	return v1alpha1.Inventory{
		KubernetesVersion: "v1.37.2-sim",
		APIHealthy:        !m.down.Load(),
		Nodes:             v1alpha1.NodeCounts{Total: m.nodes, Ready: m.nodes},
		Zones:             append([]string(nil), m.zones...),
		Allocatable: corev1.ResourceList{
			corev1.ResourceCPU:    *resource.NewQuantity(8*n, resource.DecimalSI),
			corev1.ResourceMemory: *resource.NewQuantity(32*n<<30, resource.BinarySI),
			corev1.ResourcePods:   *resource.NewQuantity(110*n, resource.DecimalSI),
		},
		Requested: corev1.ResourceList{corev1.ResourcePods: *resource.NewQuantity(pods, resource.DecimalSI)},
	}
}

// close stops the simulated controllers.
func (m *Member) close() {
	select {
	case <-m.closed:
	default:
		close(m.closed)
	}
}

// Reach is nil: a simulated member's Services have no nodes to be reached at.
func (m *Member) Reach(context.Context, *unstructured.Unstructured) *v1alpha1.ServiceReach {
	return nil
}

// OnReachChange does nothing: nothing changes what Reach says.
func (m *Member) OnReachChange(func(namespace, name string)) {}
