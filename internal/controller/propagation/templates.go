package propagation

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// skipped are resources a selector without a kind never picks: the hub makes or keeps them
// for itself, or they only make sense where they were created.
var skipped = map[schema.GroupResource]bool{
	{Group: "", Resource: "events"}:                              true,
	{Group: "events.k8s.io", Resource: "events"}:                 true,
	{Group: "", Resource: "endpoints"}:                           true,
	{Group: "discovery.k8s.io", Resource: "endpointslices"}:      true,
	{Group: "coordination.k8s.io", Resource: "leases"}:           true,
	{Group: "apps", Resource: "controllerrevisions"}:             true,
	{Group: "apps", Resource: "replicasets"}:                     true,
	{Group: "", Resource: "pods"}:                                true,
	{Group: "", Resource: "podtemplates"}:                        true,
	{Group: "storage.k8s.io", Resource: "csistoragecapacities"}:  true,
	{Group: v1alpha1.GroupVersion.Group, Resource: "works"}:      true,
	{Group: v1alpha1.GroupVersion.Group, Resource: "placements"}: true,
}

// Templates reads the hub's objects that Placements select. It keeps one informer per kind
// in use, started the first time a Placement asks for that kind, and calls onChange with the
// namespace of every object that changes, so that the Placements there look again.
type Templates struct {
	dyn      dynamic.Interface
	mapper   meta.RESTMapper
	disco    discovery.DiscoveryInterface
	factory  dynamicinformer.DynamicSharedInformerFactory
	onChange func(namespace string)

	mu        sync.Mutex
	ctx       context.Context
	informers map[schema.GroupVersionResource]toolscache.SharedIndexInformer
	all       []schema.GroupVersionResource // what a selector without a kind looks at
	allAt     time.Time
}

// NewTemplates makes a template reader; Start must run before it is used.
func NewTemplates(dyn dynamic.Interface, mapper meta.RESTMapper, disco discovery.DiscoveryInterface, onChange func(namespace string)) *Templates {
	return &Templates{
		dyn: dyn, mapper: mapper, disco: disco, onChange: onChange,
		factory:   dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0),
		informers: map[schema.GroupVersionResource]toolscache.SharedIndexInformer{},
	}
}

// Start lets informers run until ctx ends. It implements manager.Runnable.
func (t *Templates) Start(ctx context.Context) error {
	t.mu.Lock()
	t.ctx = ctx
	t.mu.Unlock()
	<-ctx.Done()
	t.factory.Shutdown()
	return nil
}

// Resources says which resources a selector may match: its kind's, or, without a kind, every
// namespaced kind the hub serves that can hold a template.
func (t *Templates) Resources(sel v1alpha1.ResourceSelector) ([]schema.GroupVersionResource, error) {
	if sel.Kind == "" {
		return t.allResources()
	}
	m, err := t.mapper.RESTMapping(schema.GroupKind{Group: sel.Group, Kind: sel.Kind})
	if err != nil {
		if meta.IsNoMatchError(err) {
			return nil, fmt.Errorf("the hub does not serve kind %q in group %q; install its CRD on the hub first", sel.Kind, sel.Group)
		}
		return nil, fmt.Errorf("find kind %s: %w", sel.Kind, err)
	}
	if m.Scope.Name() != meta.RESTScopeNameNamespace {
		return nil, fmt.Errorf("kind %s is cluster-scoped; a Placement selects objects of its own namespace", sel.Kind)
	}
	return []schema.GroupVersionResource{m.Resource}, nil
}

func (t *Templates) allResources() ([]schema.GroupVersionResource, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.all != nil && time.Since(t.allAt) < 30*time.Second {
		return t.all, nil
	}
	lists, err := t.disco.ServerPreferredNamespacedResources()
	if err != nil && len(lists) == 0 {
		return nil, fmt.Errorf("discover the hub's resources: %w", err)
	}
	var out []schema.GroupVersionResource
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || skipped[schema.GroupResource{Group: gv.Group, Resource: r.Name}] ||
				!slices.Contains(r.Verbs, "list") || !slices.Contains(r.Verbs, "watch") {
				continue
			}
			out = append(out, gv.WithResource(r.Name))
		}
	}
	slices.SortFunc(out, func(a, b schema.GroupVersionResource) int {
		if a.String() < b.String() {
			return -1
		}
		return 1
	})
	t.all, t.allAt = out, time.Now()
	return out, nil
}

// List returns the objects of one resource in a namespace ("" for cluster-scoped ones), from
// the informer's cache, starting the informer and waiting for it the first time.
func (t *Templates) List(ctx context.Context, gvr schema.GroupVersionResource, namespace string) ([]*unstructured.Unstructured, error) {
	inf, err := t.informer(gvr)
	if err != nil {
		return nil, err
	}
	if !inf.HasSynced() {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if !toolscache.WaitForCacheSync(wctx.Done(), inf.HasSynced) {
			return nil, fmt.Errorf("list %s: the hub did not answer in time", gvr.Resource)
		}
	}
	var objs []any
	if namespace == "" {
		objs = inf.GetStore().List()
	} else {
		objs, err = inf.GetIndexer().ByIndex(toolscache.NamespaceIndex, namespace)
		if err != nil {
			return nil, err
		}
	}
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, o := range objs {
		if u, ok := o.(*unstructured.Unstructured); ok {
			out = append(out, u)
		}
	}
	slices.SortFunc(out, func(a, b *unstructured.Unstructured) int {
		if a.GetName() < b.GetName() {
			return -1
		}
		if a.GetName() > b.GetName() {
			return 1
		}
		return 0
	})
	return out, nil
}

// Get returns one object from the cache, or nil.
func (t *Templates) Get(ctx context.Context, gvr schema.GroupVersionResource, namespace, name string) (*unstructured.Unstructured, error) {
	list, err := t.List(ctx, gvr, namespace)
	if err != nil {
		return nil, err
	}
	for _, u := range list {
		if u.GetName() == name {
			return u, nil
		}
	}
	return nil, nil
}

func (t *Templates) informer(gvr schema.GroupVersionResource) (toolscache.SharedIndexInformer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if inf, ok := t.informers[gvr]; ok {
		return inf, nil
	}
	if t.ctx == nil {
		return nil, fmt.Errorf("templates are not started yet")
	}
	inf := t.factory.ForResource(gvr).Informer()
	changed := func(o any) {
		if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
			o = d.Obj
		}
		if m, err := meta.Accessor(o); err == nil {
			t.onChange(m.GetNamespace())
		}
	}
	_, _ = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: changed,
		UpdateFunc: func(oldObj, newObj any) {
			o, _ := oldObj.(*unstructured.Unstructured)
			n, _ := newObj.(*unstructured.Unstructured)
			if o != nil && n != nil && (o.GetResourceVersion() == n.GetResourceVersion() || onlySummary(o, n)) {
				return
			}
			changed(newObj)
		},
		DeleteFunc: changed,
	})
	t.factory.Start(t.ctx.Done())
	t.informers[gvr] = inf
	return inf, nil
}

// onlySummary says whether two versions of a template differ only in the summary annotation a
// Placement writes on it. That is no change to any Placement: two Placements that select the
// same template would otherwise wake each other with their summaries, without end.
func onlySummary(a, b *unstructured.Unstructured) bool {
	strip := func(u *unstructured.Unstructured) map[string]any {
		c := u.DeepCopy()
		ann := c.GetAnnotations()
		delete(ann, v1alpha1.AnnotationSummary)
		c.SetAnnotations(ann)
		c.SetResourceVersion("")
		c.SetManagedFields(nil)
		return c.Object
	}
	return equality.Semantic.DeepEqual(strip(a), strip(b))
}
