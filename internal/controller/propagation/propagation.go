// Package propagation is the hub's Placement controller. For each Placement it selects the
// templates of its namespace (and what they depend on), asks the pure scheduler which clusters
// they go to and how replicas are shared, renders each cluster's manifests (internal/render)
// and writes one Work per cluster into that cluster's namespace, only when its content
// changed. It reports per-cluster status on the Placement and a summary on each template.
// Only internal/hub imports it.
//
// It fails static: when selectors match nothing, or the decision cannot be made, the Works
// stay as they were and a condition says why. A cluster loses its Work only when the decision
// leaves it out; the agent then deletes the resources (or keeps them, with
// preserveResourcesOnDeletion).
package propagation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/manifest"
	"github.com/convoy-dev/convoy/internal/render"
	"github.com/convoy-dev/convoy/internal/scheduler"
)

// Reconciler reconciles Placements.
type Reconciler struct {
	Client    client.Client
	Templates *Templates
	Recorder  events.EventRecorder
	// Clock is the time source for failover; nil means the real clock.
	Clock clock.PassiveClock

	changed chan event.TypedGenericEvent[*v1alpha1.Placement]

	// written remembers, per Work, what this hub last wrote into it and when: a reconcile
	// soon after may read the Work as it was before from the cache, and must not write the
	// same content again.
	writtenMu sync.Mutex
	written   map[client.ObjectKey]writtenWork
	// pruned is when expired entries of written were last dropped: at most once per
	// writtenFresh, so that a change to a thousand Works does not scan the map a thousand times.
	pruned time.Time
}

type writtenWork struct {
	content string
	at      time.Time
}

// writtenFresh is how long the reconciler trusts its memory of a write over the cache.
const writtenFresh = 10 * time.Second

// workContent identifies what a Work write sets.
func workContent(manifests []runtime.RawExtension, policy v1alpha1.DeletionPolicy, revision string) string {
	h := sha256.New()
	for _, m := range manifests {
		h.Write(m.Raw)
		h.Write([]byte{0})
	}
	fmt.Fprintf(h, "%s\x00%s", policy, revision)
	return hex.EncodeToString(h.Sum(nil))
}

func (r *Reconciler) wroteRecently(key client.ObjectKey, content string) bool {
	r.writtenMu.Lock()
	defer r.writtenMu.Unlock()
	w, ok := r.written[key]
	return ok && w.content == content && time.Since(w.at) < writtenFresh
}

func (r *Reconciler) remember(key client.ObjectKey, content string) {
	r.writtenMu.Lock()
	defer r.writtenMu.Unlock()
	if r.written == nil {
		r.written = map[client.ObjectKey]writtenWork{}
	}
	now := time.Now()
	if now.Sub(r.pruned) > writtenFresh {
		for k, w := range r.written {
			if now.Sub(w.at) > writtenFresh {
				delete(r.written, k)
			}
		}
		r.pruned = now
	}
	r.written[key] = writtenWork{content: content, at: now}
}

// New makes the reconciler; its Templates call back into it when templates change.
func New(c client.Client, recorder events.EventRecorder) *Reconciler {
	return &Reconciler{Client: c, Recorder: recorder, changed: make(chan event.TypedGenericEvent[*v1alpha1.Placement], 1024)}
}

// TemplatesChanged wakes every Placement of a namespace. Templates calls it.
func (r *Reconciler) TemplatesChanged(namespace string) {
	var list v1alpha1.PlacementList
	if err := r.Client.List(context.Background(), &list, client.InNamespace(namespace)); err != nil {
		return
	}
	for i := range list.Items {
		select {
		case r.changed <- event.TypedGenericEvent[*v1alpha1.Placement]{Object: &list.Items[i]}:
		default: // the queue is full of wake-ups already; a resync will come
		}
	}
}

// SetupWithManager registers the controller: Placements, their Works, every Cluster, and the
// templates (through Templates).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	allPlacements := coalesced(func(ctx context.Context, _ client.Object) []ctrl.Request {
		var list v1alpha1.PlacementList
		if err := r.Client.List(ctx, &list); err != nil {
			return nil
		}
		reqs := make([]ctrl.Request, len(list.Items))
		for i, p := range list.Items {
			reqs[i] = ctrl.Request{NamespacedName: client.ObjectKeyFromObject(&p)}
		}
		return reqs
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Placement{}).
		Named("propagation").
		Watches(&v1alpha1.Cluster{}, allPlacements).
		Watches(&v1alpha1.Work{}, coalesced(func(_ context.Context, o client.Object) []ctrl.Request {
			ns, name := o.GetLabels()[v1alpha1.LabelPlacementNamespace], o.GetLabels()[v1alpha1.LabelPlacement]
			if ns == "" || name == "" {
				return nil
			}
			return []ctrl.Request{{NamespacedName: client.ObjectKey{Namespace: ns, Name: name}}}
		})).
		WatchesRawSource(source.Channel(r.changed, &handler.TypedEnqueueRequestForObject[*v1alpha1.Placement]{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Complete(r)
}

// coalesceWindow gathers the events of many Works and Clusters into one reconcile of their
// Placement: with a thousand clusters reporting within a second or two, reconciling the
// Placement (which looks at all its clusters) for each report would do the same work a
// thousand times.
const coalesceWindow = 250 * time.Millisecond

// coalesced enqueues the Placements that f names, coalesceWindow after the event; the
// queue keeps one entry per Placement, so the events in that window make one reconcile.
func coalesced(f func(context.Context, client.Object) []ctrl.Request) handler.EventHandler {
	add := func(ctx context.Context, o client.Object, q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
		for _, req := range f(ctx, o) {
			q.AddAfter(req, coalesceWindow)
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
			add(ctx, e.Object, q)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
			add(ctx, e.ObjectNew, q)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
			add(ctx, e.Object, q)
		},
	}
}

func (r *Reconciler) now() time.Time {
	if r.Clock == nil {
		return time.Now()
	}
	return r.Clock.Now()
}

func failoverReason(fs []v1alpha1.FailedOverCluster, name string) string {
	for _, f := range fs {
		if f.Cluster == name {
			return f.Reason
		}
	}
	return ""
}

// WorkName is the name of a Placement's Work in each cluster's namespace. Namespace names
// have no dots, so it cannot collide.
func WorkName(p *v1alpha1.Placement) string { return p.Namespace + "." + p.Name }

// template is one selected hub object and what the Placement does with it.
type template struct {
	obj   *unstructured.Unstructured
	id    v1alpha1.ResourceIdentifier
	key   string
	clean *unstructured.Unstructured
	// shares are the replicas per chosen cluster, for Divided workloads; nil otherwise.
	shares map[string]int32
	// summary is set on templates the Placement selected itself (not dependencies).
	direct bool
}

// Reconcile brings one Placement's Works in line with its templates and the fleet.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	p := &v1alpha1.Placement{}
	if err := r.Client.Get(ctx, req.NamespacedName, p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !p.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, p)
	}
	if !controllerutil.ContainsFinalizer(p, v1alpha1.PlacementFinalizer) {
		before := p.DeepCopy()
		controllerutil.AddFinalizer(p, v1alpha1.PlacementFinalizer)
		if err := r.Client.Patch(ctx, p, client.MergeFrom(before)); err != nil {
			return ctrl.Result{}, fmt.Errorf("add finalizer: %w", err)
		}
	}
	before := p.DeepCopy()
	p.Status.ObservedGeneration = p.Generation

	works, err := r.works(ctx, p)
	if err != nil {
		return ctrl.Result{}, err
	}
	templates, selectErr := r.selectTemplates(ctx, p)
	clusters, byName, err := r.snapshot(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	var previous []string
	for _, c := range p.Status.Clusters {
		previous = append(previous, c.Cluster)
	}
	decision := scheduler.Schedule(clusters, p.Spec, previous)

	// Fail static: without templates or a decision, leave every Work as it is.
	switch {
	case selectErr != nil:
		setCondition(p, v1alpha1.PlacementResourcesSelected, false, "SelectionFailed", selectErr.Error()+"; what was placed before stays as it is")
	case len(templates) == 0:
		setCondition(p, v1alpha1.PlacementResourcesSelected, false, "NoMatchingResources",
			fmt.Sprintf("the resource selectors match nothing in namespace %s; what was placed before stays as it is", p.Namespace))
	default:
		setCondition(p, v1alpha1.PlacementResourcesSelected, true, "Selected", fmt.Sprintf("%d resource(s) selected", len(templates)))
	}
	schedMsg := decision.Message
	if !decision.OK {
		schedMsg += "; what was placed before stays as it is"
	}
	setCondition(p, v1alpha1.PlacementScheduled, decision.OK, decision.Reason, schedMsg)

	// Failover: lost clusters' Divided shares move to the healthy ones, and come back once
	// the cluster is stable again. The decision lives in the status, not in memory.
	requeue := time.Minute
	failedOver := map[string]bool{}
	if decision.OK {
		fo := scheduler.Failover(decision.Clusters, byName, p.Spec.Failover, p.Status.FailedOver, r.now())
		p.Status.FailedOver = fo.FailedOver
		for _, f := range fo.FailedOver {
			failedOver[f.Cluster] = true
		}
		for _, name := range fo.Added {
			r.Recorder.Eventf(p, nil, corev1.EventTypeWarning, "FailedOver", "Failover", "cluster %s is lost: %s; its Divided replicas move to the healthy clusters, and nothing is deleted on it", name, failoverReason(fo.FailedOver, name))
		}
		for _, name := range fo.Returned {
			r.Recorder.Eventf(p, nil, corev1.EventTypeNormal, "FailedBack", "Failover", "cluster %s has been Ready long enough; its share is rebalanced back to it", name)
		}
		switch {
		case len(fo.FailedOver) > 0:
			var parts []string
			for _, f := range fo.FailedOver {
				parts = append(parts, f.Cluster+" ("+f.Reason+")")
			}
			msg := "Divided replicas moved away from " + strings.Join(parts, "; ")
			if fo.Held != "" {
				msg += "; " + fo.Held
			}
			setCondition(p, v1alpha1.PlacementFailedOver, true, "ClustersLost", msg)
		case fo.Held != "":
			setCondition(p, v1alpha1.PlacementFailedOver, false, "NowhereToGo", fo.Held)
		default:
			setCondition(p, v1alpha1.PlacementFailedOver, false, "AllClustersHealthy", "no cluster's share is failed over")
		}
		if fo.RecheckAfter > 0 && fo.RecheckAfter < requeue {
			requeue = fo.RecheckAfter + 100*time.Millisecond
		}
	}

	renderErrs := map[string]string{}
	if selectErr == nil && len(templates) > 0 && decision.OK {
		var pl *plan
		if p.Spec.Rollout != nil {
			var recheck time.Duration
			if pl, recheck, err = r.planRollout(ctx, p, templates, decision, byName, works); err != nil {
				return ctrl.Result{}, err
			}
			if recheck > 0 && recheck < requeue {
				requeue = recheck + 100*time.Millisecond
			}
		} else {
			p.Status.Rollout = nil
			meta.RemoveStatusCondition(&p.Status.Conditions, "RolloutProgressing")
		}
		if err := r.propagate(ctx, p, templates, pl, decision, byName, works, failedOver, renderErrs); err != nil {
			return ctrl.Result{}, err
		}
		if works, err = r.works(ctx, p); err != nil {
			return ctrl.Result{}, err
		}
	}
	r.setStatus(p, decision, templates, works, renderErrs)
	if !equality.Semantic.DeepEqual(before.Status, p.Status) {
		if err := r.Client.Status().Patch(ctx, p, client.MergeFrom(before)); err != nil {
			return ctrl.Result{}, fmt.Errorf("update status: %w", err)
		}
	}
	if err := r.summarize(ctx, templates, works); err != nil {
		return ctrl.Result{}, err
	}
	// Capacity changes and health do not always come with an event worth a wake-up; failover
	// timings wake it when they expire.
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// works returns the Placement's Works by cluster. They are the cache's own objects, not
// copies: whoever changes one must DeepCopy it first.
func (r *Reconciler) works(ctx context.Context, p *v1alpha1.Placement) (map[string]*v1alpha1.Work, error) {
	var list v1alpha1.WorkList
	if err := r.Client.List(ctx, &list, client.UnsafeDisableDeepCopy, client.MatchingLabels{v1alpha1.LabelPlacementNamespace: p.Namespace, v1alpha1.LabelPlacement: p.Name}); err != nil {
		return nil, fmt.Errorf("list works: %w", err)
	}
	out := map[string]*v1alpha1.Work{}
	for i := range list.Items {
		w := &list.Items[i]
		if c := w.Labels[v1alpha1.LabelCluster]; c != "" && w.Name == WorkName(p) {
			out[c] = w
		}
	}
	return out, nil
}

// snapshot turns the Clusters into what the scheduler knows.
func (r *Reconciler) snapshot(ctx context.Context) ([]scheduler.Cluster, map[string]scheduler.Cluster, error) {
	// Read-only use: the cache's own objects, not a copy of a thousand Clusters per reconcile.
	var list v1alpha1.ClusterList
	if err := r.Client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, nil, fmt.Errorf("list clusters: %w", err)
	}
	out := make([]scheduler.Cluster, 0, len(list.Items))
	byName := map[string]scheduler.Cluster{}
	for _, c := range list.Items {
		sc := scheduler.Cluster{
			Name: c.Name, Labels: c.Labels, Region: c.Spec.Region, Zones: c.Spec.Zones,
			Environment: c.Spec.Environment, Taints: c.Spec.Taints,
			Healthy:  c.Status.Phase == v1alpha1.ClusterReady,
			Since:    c.CreationTimestamp.Time,
			Deleting: !c.DeletionTimestamp.IsZero(),
		}
		if ready := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ClusterReadyCondition); ready != nil {
			sc.Since = ready.LastTransitionTime.Time
		}
		if inv := c.Status.Inventory; inv != nil && inv.Allocatable != nil {
			free := func(name corev1.ResourceName) resource.Quantity {
				q := inv.Allocatable[name].DeepCopy()
				q.Sub(inv.Requested[name])
				return q
			}
			cpu, mem, pods := free(corev1.ResourceCPU), free(corev1.ResourceMemory), free(corev1.ResourcePods)
			sc.Free = &scheduler.Resources{MilliCPU: cpu.MilliValue(), Memory: mem.Value(), Pods: pods.Value()}
		}
		out = append(out, sc)
		byName[c.Name] = sc
	}
	return out, byName, nil
}

// autoCreated are objects the hub's API server or controllers put in every namespace, or that
// belong to a tool rather than to the application.
func autoCreated(u *unstructured.Unstructured) bool {
	gvk := u.GroupVersionKind()
	if gvk.Group != "" {
		return false
	}
	switch gvk.Kind {
	case "ConfigMap":
		return u.GetName() == "kube-root-ca.crt"
	case "ServiceAccount":
		return u.GetName() == "default"
	case "Secret":
		t, _, _ := unstructured.NestedString(u.Object, "type")
		return t == string(corev1.SecretTypeServiceAccountToken) || strings.HasPrefix(t, "helm.sh/")
	}
	return false
}

// selectTemplates finds what the Placement selects in its namespace, then what that depends
// on, sorted by key.
func (r *Reconciler) selectTemplates(ctx context.Context, p *v1alpha1.Placement) ([]*template, error) {
	byKey := map[string]*template{}
	add := func(u *unstructured.Unstructured, direct bool) {
		if u == nil || !u.GetDeletionTimestamp().IsZero() || autoCreated(u) {
			return
		}
		gvk := u.GroupVersionKind()
		id := v1alpha1.ResourceIdentifier{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
		key := manifest.Key(id)
		if t, ok := byKey[key]; ok {
			t.direct = t.direct || direct
			return
		}
		byKey[key] = &template{obj: u, id: id, key: key, clean: render.Clean(u), direct: direct}
	}
	for _, sel := range p.Spec.Resources {
		gvrs, err := r.Templates.Resources(sel)
		if err != nil {
			return nil, err
		}
		for _, gvr := range gvrs {
			objs, err := r.Templates.List(ctx, gvr, p.Namespace)
			if err != nil {
				return nil, err
			}
			for _, u := range objs {
				ok, err := render.Selects(sel, u)
				if err != nil {
					return nil, err
				}
				if ok {
					add(u, true)
				}
			}
		}
	}
	if len(byKey) == 0 {
		return nil, nil
	}
	if p.Spec.PropagateDependencies == nil || *p.Spec.PropagateDependencies {
		if err := r.addDependencies(ctx, p, byKey, add); err != nil {
			return nil, err
		}
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]*template, len(keys))
	for i, k := range keys {
		out[i] = byKey[k]
	}
	return out, nil
}

var (
	coreRefs = map[string]schema.GroupVersionResource{
		"ConfigMap":             {Version: "v1", Resource: "configmaps"},
		"Secret":                {Version: "v1", Resource: "secrets"},
		"ServiceAccount":        {Version: "v1", Resource: "serviceaccounts"},
		"PersistentVolumeClaim": {Version: "v1", Resource: "persistentvolumeclaims"},
	}
	crdResource       = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	namespaceResource = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
)

// addDependencies adds what the selected templates refer to: a missing reference is not an
// error (the member may have it), it is simply not sent.
func (r *Reconciler) addDependencies(ctx context.Context, p *v1alpha1.Placement, byKey map[string]*template, add func(*unstructured.Unstructured, bool)) error {
	selected := make([]*template, 0, len(byKey))
	for _, t := range byKey {
		selected = append(selected, t)
	}
	slices.SortFunc(selected, func(a, b *template) int { return strings.Compare(a.key, b.key) })
	for _, t := range selected {
		for _, ref := range render.Dependencies(t.obj) {
			u, err := r.Templates.Get(ctx, coreRefs[ref.Kind], p.Namespace, ref.Name)
			if err != nil {
				return err
			}
			add(u, false)
		}
		if g := t.id.Group; strings.Contains(g, ".") && !strings.HasSuffix(g, ".k8s.io") {
			m, err := r.Templates.mapper.RESTMapping(schema.GroupKind{Group: g, Kind: t.id.Kind}, t.id.Version)
			if err != nil {
				continue
			}
			crd, err := r.Templates.Get(ctx, crdResource, "", m.Resource.Resource+"."+g)
			if err != nil {
				return err
			}
			add(crd, false)
		}
	}
	return nil
}

// propagate writes the Works of the chosen clusters and removes those of clusters left out.
// With a rollout plan, each cluster gets the templates of the revision the plan gives it.
func (r *Reconciler) propagate(ctx context.Context, p *v1alpha1.Placement, templates []*template, pl *plan, d scheduler.Decision,
	byName map[string]scheduler.Cluster, works map[string]*v1alpha1.Work, failedOver map[string]bool, renderErrs map[string]string) error {
	r.divide(p, templates, d, byName, works, failedOver)
	if pl != nil {
		for rev, set := range pl.sets {
			if rev != pl.latest {
				r.divide(p, set, d, byName, works, failedOver)
			}
		}
	}

	ns, err := r.Templates.Get(ctx, namespaceResource, "", p.Namespace)
	if err != nil {
		return err
	}
	chosen := map[string]bool{}
	var writes []func() error
	for _, choice := range d.Clusters {
		chosen[choice.Name] = true
		if failedOver[choice.Name] {
			continue // its Work stays exactly as it was while the cluster is lost
		}
		c := byName[choice.Name]
		old := works[c.Name]
		oldManifests := map[string]runtime.RawExtension{}
		if old != nil {
			for i, o := range manifest.Decode(old.Spec.Manifests) {
				if o.Err == nil {
					oldManifests[manifest.Key(o.ID)] = old.Spec.Manifests[i]
				}
			}
		}
		var manifests []runtime.RawExtension
		if ns != nil {
			nsm := &unstructured.Unstructured{}
			nsm.SetAPIVersion("v1")
			nsm.SetKind("Namespace")
			nsm.SetName(p.Namespace)
			l := ns.GetLabels()
			delete(l, corev1.LabelMetadataName)
			if len(l) > 0 {
				nsm.SetLabels(l)
			}
			raw, _ := nsm.MarshalJSON()
			manifests = append(manifests, runtime.RawExtension{Raw: raw})
		}
		var failed []string
		set, revision := templates, ""
		if pl != nil {
			revision = pl.revisionOf[c.Name]
			if s, ok := pl.sets[revision]; ok {
				set = s
			}
		}
		for _, t := range set {
			var share *int32
			if s, ok := t.shares[c.Name]; ok {
				share = &s
			}
			u, err := render.ForCluster(t.clean, c, share, p.Spec.Overrides)
			if err != nil {
				failed = append(failed, err.Error())
				if prev, ok := oldManifests[t.key]; ok {
					manifests = append(manifests, prev) // keep what the cluster has
				}
				continue
			}
			raw, err := u.MarshalJSON()
			if err != nil {
				return err
			}
			manifests = append(manifests, runtime.RawExtension{Raw: raw})
		}
		if len(failed) > 0 {
			renderErrs[c.Name] = strings.Join(failed, "; ")
		}
		writes = append(writes, func() error { return r.writeWork(ctx, p, c.Name, old, manifests, revision) })
	}
	for name, w := range works {
		if !chosen[name] {
			writes = append(writes, func() error { return r.removeWork(ctx, p, w) })
		}
	}
	// Works are independent objects: write them side by side, a few at a time.
	var g errgroup.Group
	g.SetLimit(16)
	var mu sync.Mutex
	var errs []error
	for _, write := range writes {
		g.Go(func() error {
			if err := write(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	return errors.Join(errs...)
}

// divide sets each Divided workload's share per cluster. A cluster's share only shrinks once
// every cluster whose share grows has its new replicas available (create before delete).
// Failed-over clusters get no new share: their Works stay as they were (fail static), and the
// healthy clusters share the total; stateful workloads stay put unless the policy lets them
// move.
func (r *Reconciler) divide(p *v1alpha1.Placement, templates []*template, d scheduler.Decision, byName map[string]scheduler.Cluster, works map[string]*v1alpha1.Work, failedOver map[string]bool) {
	rs := p.Spec.Replicas
	if rs == nil || rs.Type != v1alpha1.Divided {
		return
	}
	minPer := int32(0)
	if rs.MinReplicasPerCluster != nil {
		minPer = *rs.MinReplicasPerCluster
	}
	moveStateful := p.Spec.Failover != nil && p.Spec.Failover.Stateful
	for _, t := range templates {
		total, ok := render.Replicas(t.obj)
		if !ok {
			continue
		}
		var sharing []scheduler.Choice
		for _, ch := range d.Clusters {
			if !failedOver[ch.Name] || (render.Stateful(t.obj) && !moveStateful) {
				sharing = append(sharing, ch)
			}
		}
		weights := make([]int64, len(sharing))
		for i, ch := range sharing {
			weights[i] = ch.Weight
			if rs.DynamicWeight != "" {
				weights[i] = 0
				if free := byName[ch.Name].Free; free != nil {
					weights[i] = scheduler.Fit(*free, render.PodRequests(t.obj))
				}
			}
		}
		target := scheduler.Divide(total, weights, minPer)
		current := map[string]int32{}
		for name, w := range works {
			if n, ok := replicasIn(w, t.key); ok {
				current[name] = n
			}
		}
		// Shrinking waits until every cluster has its new share available, counted from
		// what the agents report (a cluster that is not reporting holds the others).
		allAvailable := true
		for i, ch := range sharing {
			if target[i] > 0 && (!availableIn(works[ch.Name], t.key) || availableReplicas(works[ch.Name], t.key) < target[i]) {
				allAvailable = false
			}
		}
		t.shares = map[string]int32{}
		for i, ch := range sharing {
			share := target[i]
			if cur, ok := current[ch.Name]; ok && share < cur && !allAvailable {
				share = cur // give up replicas only once the others have theirs
			}
			t.shares[ch.Name] = share
		}
	}
}

// replicasIn reads the replicas a Work sends for one template.
func replicasIn(w *v1alpha1.Work, key string) (int32, bool) {
	for _, o := range manifest.Decode(w.Spec.Manifests) {
		if o.Err == nil && manifest.Key(o.ID) == key {
			return render.Replicas(o.Obj)
		}
	}
	return 0, false
}

func resourceStatus(w *v1alpha1.Work, key string) *v1alpha1.ResourceStatus {
	if w == nil {
		return nil
	}
	for i, r := range w.Status.Resources {
		if manifest.Key(r.ResourceIdentifier) == key {
			return &w.Status.Resources[i]
		}
	}
	return nil
}

// availableIn says whether the member reports the template's resource healthy, for what the
// Work sends now.
func availableIn(w *v1alpha1.Work, key string) bool {
	st := resourceStatus(w, key)
	return st != nil && w.Status.ObservedGeneration == w.Generation && st.State == v1alpha1.ResourceApplied && st.Health == v1alpha1.HealthHealthy
}

func availableReplicas(w *v1alpha1.Work, key string) int32 {
	if st := resourceStatus(w, key); st != nil && st.AvailableReplicas != nil {
		return *st.AvailableReplicas
	}
	return 0
}

// writeWork creates or updates one cluster's Work, only when its content changes.
func (r *Reconciler) writeWork(ctx context.Context, p *v1alpha1.Placement, cluster string, old *v1alpha1.Work, manifests []runtime.RawExtension, revision string) error {
	policy := v1alpha1.DeletionDelete
	if p.Spec.PreserveResourcesOnDeletion {
		policy = v1alpha1.DeletionOrphan
	}
	labels := map[string]string{
		v1alpha1.LabelPlacementNamespace: p.Namespace,
		v1alpha1.LabelPlacement:          p.Name,
		v1alpha1.LabelCluster:            cluster,
	}
	if old == nil {
		w := &v1alpha1.Work{
			ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace(cluster), Name: WorkName(p), Labels: labels,
				Annotations: map[string]string{v1alpha1.AnnotationRevision: revision}},
			Spec: v1alpha1.WorkSpec{Manifests: manifests, DeletionPolicy: policy, DriftPolicy: v1alpha1.DriftCorrect},
		}
		if err := r.Client.Create(ctx, w); err != nil {
			if apierrors.IsAlreadyExists(err) {
				// Made by an earlier reconcile that this one's cache does not show yet; the
				// next reconcile compares it.
				return nil
			}
			return fmt.Errorf("create the work for cluster %s: %w", cluster, err)
		}
		r.Recorder.Eventf(p, nil, corev1.EventTypeNormal, "WorkCreated", "Propagate", "cluster %s gets %d resource(s)", cluster, len(manifests))
		return nil
	}
	if sameManifests(old.Spec.Manifests, manifests) && old.Spec.DeletionPolicy == policy && old.Annotations[v1alpha1.AnnotationRevision] == revision {
		return nil
	}
	content := workContent(manifests, policy, revision)
	if r.wroteRecently(client.ObjectKeyFromObject(old), content) {
		return nil // this hub wrote it a moment ago; the cache is behind
	}
	// The hub alone writes a Work's spec, so a patch without a resourceVersion is safe, and
	// does not fail because the agent wrote the status a moment ago.
	w := old.DeepCopy()
	w.Spec.Manifests, w.Spec.DeletionPolicy = manifests, policy
	if w.Annotations == nil {
		w.Annotations = map[string]string{}
	}
	w.Annotations[v1alpha1.AnnotationRevision] = revision
	if w.Labels == nil {
		w.Labels = map[string]string{}
	}
	for k, v := range labels {
		w.Labels[k] = v
	}
	if err := r.Client.Patch(ctx, w, client.MergeFrom(old)); err != nil {
		return fmt.Errorf("update the work for cluster %s: %w", cluster, err)
	}
	r.remember(client.ObjectKeyFromObject(old), content)
	return nil
}

// sameManifests compares two manifest lists by content, not by bytes.
func sameManifests(a, b []runtime.RawExtension) bool {
	if len(a) != len(b) {
		return false
	}
	da, db := manifest.Decode(a), manifest.Decode(b)
	for i := range da {
		if da[i].Err != nil || db[i].Err != nil {
			return false
		}
		if da[i].Hash != db[i].Hash && !equality.Semantic.DeepEqual(da[i].Obj.Object, db[i].Obj.Object) {
			return false
		}
	}
	return true
}

// removeWork deletes a Work whose cluster is no longer chosen; with
// preserveResourcesOnDeletion the agent leaves the resources on the member.
func (r *Reconciler) removeWork(ctx context.Context, p *v1alpha1.Placement, w *v1alpha1.Work) error {
	if !w.DeletionTimestamp.IsZero() {
		return nil
	}
	if p.Spec.PreserveResourcesOnDeletion && w.Spec.DeletionPolicy != v1alpha1.DeletionOrphan {
		w = w.DeepCopy()
		w.Spec.DeletionPolicy = v1alpha1.DeletionOrphan
		if err := r.Client.Update(ctx, w); err != nil {
			return fmt.Errorf("keep the resources of work %s/%s: %w", w.Namespace, w.Name, err)
		}
	}
	if err := r.Client.Delete(ctx, w); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete work %s/%s: %w", w.Namespace, w.Name, err)
	}
	r.Recorder.Eventf(p, nil, corev1.EventTypeNormal, "WorkRemoved", "Propagate", "cluster %s is no longer chosen", w.Labels[v1alpha1.LabelCluster])
	return nil
}

// finalize removes a deleted Placement's Works, then its finalizer. The agents remove the
// resources from the members (or keep them, with preserveResourcesOnDeletion).
func (r *Reconciler) finalize(ctx context.Context, p *v1alpha1.Placement) error {
	if !controllerutil.ContainsFinalizer(p, v1alpha1.PlacementFinalizer) {
		return nil
	}
	works, err := r.works(ctx, p)
	if err != nil {
		return err
	}
	for _, w := range works {
		if err := r.removeWork(ctx, p, w); err != nil {
			return err
		}
	}
	before := p.DeepCopy()
	controllerutil.RemoveFinalizer(p, v1alpha1.PlacementFinalizer)
	if err := r.Client.Patch(ctx, p, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("remove finalizer: %w", err)
	}
	return nil
}

func setCondition(p *v1alpha1.Placement, typ string, ok bool, reason, msg string) {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&p.Status.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: p.Generation})
}
