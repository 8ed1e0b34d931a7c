package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// Member is the cluster side of an agent: where it applies Works and what its inventory
// describes. NewKubeMember is a real cluster reached through its API server; the sim package
// has an in-memory one, so that one process can run many agents against a real hub.
//
// Every object the agent applies carries the label convoy.dev/managed-by=convoy-agent and the
// annotation convoy.dev/work naming its Work; a Member watches only such objects.
type Member interface {
	// Mapping resolves a kind at a version to its resource, and says whether it is namespaced.
	// A kind the member does not serve is an error wrapping ErrKindUnknown.
	Mapping(gk schema.GroupKind, version string) (gvr schema.GroupVersionResource, namespaced bool, err error)
	// Watch starts, once per resource, to watch the agent's objects of gvr until ctx ends, and
	// calls h for every change and deletion after the first list.
	Watch(ctx context.Context, gvr schema.GroupVersionResource, h WatchHandler)
	// Cached returns an object as the watch of its resource last saw it, or nil when it has no
	// such object. The first call after Watch waits for the watch's first list.
	Cached(gvr schema.GroupVersionResource, namespace, name string) *unstructured.Unstructured
	// Get reads an object from the member itself; a missing one is an error for which
	// apierrors.IsNotFound holds.
	Get(ctx context.Context, gvr schema.GroupVersionResource, namespace, name string) (*unstructured.Unstructured, error)
	// Apply server-side applies obj with the agent's field manager and returns the object as
	// stored. force takes fields over from other field managers; without it such a conflict
	// is an error for which apierrors.IsConflict holds. dryRun changes nothing.
	Apply(ctx context.Context, gvr schema.GroupVersionResource, namespace string, obj *unstructured.Unstructured, force, dryRun bool) (*unstructured.Unstructured, error)
	// Census counts the member's objects of gvr, in every namespace, whoever made them.
	Census(ctx context.Context, gvr schema.GroupVersionResource) (Census, error)
	// Delete deletes an object; its dependents go in the background.
	Delete(ctx context.Context, gvr schema.GroupVersionResource, namespace, name string) error
	// Observe describes the cluster for the inventory: API health, version, nodes, zones,
	// allocatable and requested capacity, and what a cluster profile checks (kubelet versions,
	// add-on versions, enabled feature gates, namespaces, the objects a profile made and their
	// digests) as far as it knows them. The agent fills in its own version, its metrics
	// collector's, and the time.
	Observe(ctx context.Context) v1alpha1.Inventory
	// Reach says how a Service (as the member stores it) is reached from outside the member,
	// or nil when it has no NodePort. The first call starts watches of the member's nodes and
	// EndpointSlices, which last until ctx ends.
	Reach(ctx context.Context, svc *unstructured.Unstructured) *v1alpha1.ServiceReach
	// OnReachChange sets what is called, once Reach has started its watches, when what it says
	// of a Service may have changed: with the Service's namespace and name when its endpoints
	// change, with empty ones when a node's readiness or address does.
	OnReachChange(changed func(namespace, name string))
}

// WatchHandler receives a Member's events about the agent's objects.
type WatchHandler struct {
	Updated func(old, new *unstructured.Unstructured)
	Deleted func(obj *unstructured.Unstructured)
}

// Census counts a member's objects of one resource: those being deleted, and the others.
type Census struct {
	Live, Deleting int
}

// ErrKindUnknown is wrapped by Member.Mapping for a kind the member does not serve.
var ErrKindUnknown = errors.New("kind not served")

// kubeMember is a real cluster, through its API server.
type kubeMember struct {
	cfg       *rest.Config // the agent's access to the member, which the tunnel's proxy uses
	cs        kubernetes.Interface
	dyn       dynamic.Interface
	mapper    *restmapper.DeferredDiscoveryRESTMapper
	informers dynamicinformer.DynamicSharedInformerFactory

	mu      sync.Mutex
	watched map[schema.GroupVersionResource]toolscache.SharedIndexInformer

	// core watches the member's nodes, pods and EndpointSlices for Observe and Reach, each
	// started by the first call that needs it; both read the one node watch.
	core          informers.SharedInformerFactory
	coreStop      sync.Once
	inventoryOnce sync.Once
	nodes         corelisters.NodeLister
	pods          corelisters.PodLister
	// profile watches, for Observe too, what a cluster profile checks (profile.go), and
	// gates keeps the API server's enabled feature gates (featuregates.go).
	profile *profileWatch
	gates   featureGates

	reachOnce    sync.Once
	reachSlices  discoverylisters.EndpointSliceLister
	reachChanged func(namespace, name string)
}

var _ Member = (*kubeMember)(nil)

// NewKubeMember is the member cluster that cfg reaches.
func NewKubeMember(cfg *rest.Config) (Member, error) {
	// client-go's default of 5 requests a second would pace a burst of Works to a few a second.
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 50, 100
	}
	m := &kubeMember{cfg: cfg, watched: map[schema.GroupVersionResource]toolscache.SharedIndexInformer{}}
	var err error
	if m.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("member client: %w", err)
	}
	m.core = informers.NewSharedInformerFactory(m.cs, 0)
	if m.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("member client: %w", err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("member discovery: %w", err)
	}
	m.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco))
	// The agent watches only what it applied.
	m.informers = dynamicinformer.NewFilteredDynamicSharedInformerFactory(m.dyn, 10*time.Minute, metav1.NamespaceAll, func(o *metav1.ListOptions) {
		o.LabelSelector = v1alpha1.LabelManagedBy + "=" + v1alpha1.ManagedByAgent
	})
	return m, nil
}

// Mapping refreshes discovery once when the kind is unknown (a CRD applied a moment ago).
func (m *kubeMember) Mapping(gk schema.GroupKind, version string) (schema.GroupVersionResource, bool, error) {
	rm, err := m.mapper.RESTMapping(gk, version)
	if meta.IsNoMatchError(err) {
		m.mapper.Reset()
		rm, err = m.mapper.RESTMapping(gk, version)
	}
	if meta.IsNoMatchError(err) {
		return schema.GroupVersionResource{}, false, fmt.Errorf("%w: the member does not serve %s %s/%s; if its CRD is in a Work it may not be established yet", ErrKindUnknown, gk.Kind, gk.Group, version)
	}
	if err != nil {
		return schema.GroupVersionResource{}, false, fmt.Errorf("discover %s: %w", gk.Kind, err)
	}
	return rm.Resource, rm.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

func (m *kubeMember) Watch(ctx context.Context, gvr schema.GroupVersionResource, h WatchHandler) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.watched[gvr]; ok {
		return
	}
	inf := m.informers.ForResource(gvr).Informer()
	_, _ = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, newObj any) {
			oldU, ok1 := oldObj.(*unstructured.Unstructured)
			newU, ok2 := newObj.(*unstructured.Unstructured)
			if ok1 && ok2 && h.Updated != nil {
				h.Updated(oldU, newU)
			}
		},
		DeleteFunc: func(o any) {
			if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if u, ok := o.(*unstructured.Unstructured); ok && h.Deleted != nil {
				h.Deleted(u)
			}
		},
	})
	if len(m.watched) == 0 {
		go func() { <-ctx.Done(); m.informers.Shutdown() }()
	}
	m.informers.Start(ctx.Done())
	m.watched[gvr] = inf
}

// Cached waits for a new watch's first list, so that a restarted agent sees what it applied
// before and does not apply it all again.
func (m *kubeMember) Cached(gvr schema.GroupVersionResource, ns, name string) *unstructured.Unstructured {
	m.mu.Lock()
	inf := m.watched[gvr]
	m.mu.Unlock()
	if inf == nil {
		return nil
	}
	if !inf.HasSynced() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		toolscache.WaitForCacheSync(ctx.Done(), inf.HasSynced)
		cancel()
		if !inf.HasSynced() {
			return nil
		}
	}
	key := name
	if ns != "" {
		key = ns + "/" + name
	}
	o, ok, err := inf.GetStore().GetByKey(key)
	if err != nil || !ok {
		return nil
	}
	u, _ := o.(*unstructured.Unstructured)
	return u
}

func (m *kubeMember) Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (*unstructured.Unstructured, error) {
	return m.dyn.Resource(gvr).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
}

func (m *kubeMember) Apply(ctx context.Context, gvr schema.GroupVersionResource, ns string, obj *unstructured.Unstructured, force, dryRun bool) (*unstructured.Unstructured, error) {
	opts := metav1.ApplyOptions{FieldManager: v1alpha1.AgentFieldManager, Force: force}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return m.dyn.Resource(gvr).Namespace(ns).Apply(ctx, obj.GetName(), obj, opts)
}

func (m *kubeMember) Census(ctx context.Context, gvr schema.GroupVersionResource) (Census, error) {
	var c Census
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := m.dyn.Resource(gvr).List(ctx, opts)
		if err != nil {
			return Census{}, err
		}
		for _, o := range list.Items {
			if o.GetDeletionTimestamp() != nil {
				c.Deleting++
			} else {
				c.Live++
			}
		}
		if opts.Continue = list.GetContinue(); opts.Continue == "" {
			return c, nil
		}
	}
}

func (m *kubeMember) Delete(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) error {
	policy := metav1.DeletePropagationBackground
	err := m.dyn.Resource(gvr).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &policy})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// clientset lets an agent run as a Deployment keep its identity in a member Secret.
func (m *kubeMember) clientset() kubernetes.Interface { return m.cs }

func (m *kubeMember) restConfig() *rest.Config { return m.cfg }

// Observe builds the inventory from watches of the member's nodes and pods, of its add-ons,
// namespaces and the objects a profile made, started on the first call, a readiness check, and
// the API server's metrics (at most once a minute).
func (m *kubeMember) Observe(ctx context.Context) v1alpha1.Inventory {
	m.inventoryOnce.Do(func() {
		nodes := m.core.Core().V1().Nodes()
		pods := m.core.Core().V1().Pods()
		// Only what the inventory needs of a pod stays in memory.
		_ = pods.Informer().SetTransform(slimPod)
		_ = nodes.Informer()
		profile := newProfileWatch(ctx, m.cs)
		m.startCore(ctx)
		profile.waitSynced(ctx)
		m.nodes, m.pods, m.profile = nodes.Lister(), pods.Lister(), profile
	})
	inv := observeKube(ctx, m.cs, m.nodes, m.pods)
	if m.nodes == nil || ctx.Err() != nil {
		return inv
	}
	nodes, _ := m.nodes.List(labels.Everything())
	inv.Addons = m.profile.addons(nodes)
	inv.Namespaces = m.profile.namespaceNames()
	inv.ProfileObjects = m.profile.profileObjects()
	inv.EnabledFeatureGates = m.gates.get(ctx, m.cs)
	return inv
}

// OnReachChange must be called before the first Reach.
func (m *kubeMember) OnReachChange(changed func(namespace, name string)) { m.reachChanged = changed }

// Reach reads the Service's NodePorts and, from watches of the member's nodes and
// EndpointSlices, the Ready nodes and the ready endpoints on each.
func (m *kubeMember) Reach(ctx context.Context, svc *unstructured.Unstructured) *v1alpha1.ServiceReach {
	s := &corev1.Service{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(svc.Object, s); err != nil {
		return nil
	}
	var ports []v1alpha1.ReachPort
	for _, p := range s.Spec.Ports {
		if p.NodePort != 0 {
			ports = append(ports, v1alpha1.ReachPort{Name: p.Name, Port: p.Port, NodePort: p.NodePort})
		}
	}
	if len(ports) == 0 {
		return nil
	}
	m.reachOnce.Do(func() { m.startReach(ctx) })
	eps, err := m.reachSlices.EndpointSlices(s.Namespace).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: s.Name}))
	if err != nil {
		return nil
	}
	nodes, err := m.core.Core().V1().Nodes().Lister().List(labels.Everything())
	if err != nil {
		return nil
	}
	return reachOf(s, ports, eps, nodes)
}

// startCore starts the watches added to m.core since it last started, until ctx ends, and
// waits for their first lists.
func (m *kubeMember) startCore(ctx context.Context) {
	m.core.Start(ctx.Done())
	m.coreStop.Do(func() { go func() { <-ctx.Done(); m.core.Shutdown() }() })
	m.core.WaitForCacheSync(ctx.Done())
}

// startReach starts the watches Reach reads, and calls reachChanged on their changes.
func (m *kubeMember) startReach(ctx context.Context) {
	nodes := m.core.Core().V1().Nodes()
	eps := m.core.Discovery().V1().EndpointSlices()
	changed := m.reachChanged
	if changed == nil {
		changed = func(string, string) {}
	}
	_, _ = eps.Informer().AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { sliceChanged(o, changed) },
		UpdateFunc: func(_, o any) { sliceChanged(o, changed) },
		DeleteFunc: func(o any) { sliceChanged(o, changed) },
	})
	_, _ = nodes.Informer().AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		UpdateFunc: func(a, b any) {
			an, aok := a.(*corev1.Node)
			bn, bok := b.(*corev1.Node)
			if !aok || !bok || nodeReady(an) != nodeReady(bn) || nodeAddress(an) != nodeAddress(bn) {
				changed("", "")
			}
		},
		DeleteFunc: func(any) { changed("", "") },
	})
	m.startCore(ctx)
	m.reachSlices = eps.Lister()
}

func sliceChanged(o any, changed func(namespace, name string)) {
	if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	if es, ok := o.(*discoveryv1.EndpointSlice); ok && es.Labels[discoveryv1.LabelServiceName] != "" {
		changed(es.Namespace, es.Labels[discoveryv1.LabelServiceName])
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// nodeAddress is a node's InternalIP, or "".
func nodeAddress(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

// reachOf is a Service's reach from its EndpointSlices and the member's nodes: the Ready nodes
// with an address, sorted by it, each with the ready endpoints it runs (an endpoint in two
// slices counts once).
func reachOf(s *corev1.Service, ports []v1alpha1.ReachPort, eps []*discoveryv1.EndpointSlice, nodes []*corev1.Node) *v1alpha1.ServiceReach {
	r := &v1alpha1.ServiceReach{Ports: ports, Local: s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal}
	seen := map[string]bool{}
	perNode := map[string]int32{}
	for _, es := range eps {
		for _, e := range es.Endpoints {
			if (e.Conditions.Ready != nil && !*e.Conditions.Ready) || len(e.Addresses) == 0 || seen[e.Addresses[0]] {
				continue
			}
			seen[e.Addresses[0]] = true
			r.Endpoints++
			if e.NodeName != nil {
				perNode[*e.NodeName]++
			}
		}
	}
	for _, n := range nodes {
		if addr := nodeAddress(n); addr != "" && nodeReady(n) {
			r.Nodes = append(r.Nodes, v1alpha1.ReachNode{Address: addr, Endpoints: perNode[n.Name]})
		}
	}
	sort.Slice(r.Nodes, func(i, j int) bool { return r.Nodes[i].Address < r.Nodes[j].Address })
	return r
}

func slimPod(o any) (any, error) {
	p, ok := o.(*corev1.Pod)
	if !ok {
		return o, nil
	}
	slim := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion}}
	slim.Spec.NodeName = p.Spec.NodeName
	slim.Status.Phase = p.Status.Phase
	for _, c := range p.Spec.Containers {
		slim.Spec.Containers = append(slim.Spec.Containers, corev1.Container{Resources: corev1.ResourceRequirements{Requests: c.Resources.Requests}})
	}
	for _, c := range p.Spec.InitContainers {
		slim.Spec.InitContainers = append(slim.Spec.InitContainers, corev1.Container{Resources: corev1.ResourceRequirements{Requests: c.Resources.Requests}})
	}
	return slim, nil
}
