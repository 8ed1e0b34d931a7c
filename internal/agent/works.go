package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/manifest"
)

// workController applies the cluster's Works and keeps their status.
//
// It applies a manifest only when it is new or changed (its hash differs from what the Work's
// status says was applied), when its object is missing on the member, or when the member
// changed fields the agent applied (drift). So a restarted agent, or one whose hub came back,
// does not apply everything again blindly.
type workController struct {
	a      *Agent
	queue  workqueue.TypedRateLimitingInterface[string] // Work names
	drifts workqueue.TypedRateLimitingInterface[driftKey]

	ctx     context.Context // ends the member watches
	mu      sync.Mutex
	drifted map[string]map[string]string // Work name -> resource key -> what drifted (report-only)
	// applied remembers, per Work and resource, the hash this agent last applied. The Work's
	// status says the same once it is written, but the hub's answer may lag behind a
	// reconcile that the agent's own finalizer patch set off.
	applied map[string]map[string]string
	// written remembers the status last written per Work and when: a reconcile that its own
	// write set off may still read the Work's old status from the cache, and must not write
	// the same status again.
	written map[string]writtenStatus
	// settling marks Works whose status write waits a moment after an apply (see reconcile).
	settling map[string]bool
	// reaching marks Works that report a Service's reach (see reachChanged).
	reaching map[string]bool
}

type writtenStatus struct {
	status v1alpha1.WorkStatus
	at     time.Time
}

// statusSettle is how long after an apply the agent waits before it reports a resource that
// is not healthy yet, so that a member that settles at once costs the hub one status write,
// not two. It is also the pause that gathers the member's status changes (see watch), when the
// agent writes its reports itself.
const statusSettle = 300 * time.Millisecond

// streamGather is statusSettle's counterpart on a delivery stream: how long the agent gathers
// the member's status changes of a Work before it reports them, when a report is a message on
// the stream rather than a write. Short, since the Placement's status (and a rollout's gate)
// waits for it; the hub gathers the reports of many clusters itself.
const streamGather = 50 * time.Millisecond

// gather is how long the agent gathers the member's status changes of a Work before it
// reports them.
func (w *workController) gather() time.Duration {
	if w.a.streaming() != nil {
		return streamGather
	}
	return statusSettle
}

// writtenFresh is how long the agent trusts its memory of a status it wrote over the cache.
const writtenFresh = 10 * time.Second

// driftKey names one applied object of one Work.
type driftKey struct {
	work string
	gvr  schema.GroupVersionResource
	ns   string
	name string
}

func newWorkController(a *Agent) (*workController, error) {
	w := &workController{
		a: a,
		// Failed items come back after 100 ms, doubling up to 30 s: never minutes, so a hub
		// or member that was away is picked up again soon.
		queue:    workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second)),
		drifts:   workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[driftKey](100*time.Millisecond, 30*time.Second)),
		drifted:  map[string]map[string]string{},
		applied:  map[string]map[string]string{},
		written:  map[string]writtenStatus{},
		settling: map[string]bool{},
		reaching: map[string]bool{},
	}
	a.opts.Member.OnReachChange(w.reachChanged)
	return w, nil
}

func (w *workController) run(ctx context.Context) {
	w.ctx = ctx
	defer w.queue.ShutDown()
	defer w.drifts.ShutDown()
	inf, err := w.a.hubCache.GetInformer(ctx, &v1alpha1.Work{})
	if err != nil {
		w.a.log.Error("cannot watch Works", "err", err)
		return
	}
	_, _ = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		// Works that list an object this one lists, or listed, may now apply it, or stop
		// applying it (see otherContent).
		AddFunc: func(o any) {
			w.enqueueWork(o)
			if work, ok := o.(*v1alpha1.Work); ok {
				w.enqueueSharers(work)
			}
		},
		UpdateFunc: func(oldObj, o any) {
			w.enqueueWork(o)
			if old, ok := oldObj.(*v1alpha1.Work); ok {
				if cur, ok := o.(*v1alpha1.Work); ok && (old.Generation != cur.Generation || !old.DeletionTimestamp.Equal(cur.DeletionTimestamp)) {
					w.enqueueSharers(old, cur)
				}
			}
		},
		// A Work that is gone from the hub's answer is not a reason to delete anything: a
		// deleted Work is handled while its finalizer holds it (see finalize). Its name is
		// queued only so that the agent forgets what it remembers of it.
		DeleteFunc: func(o any) {
			if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			w.enqueueWork(o)
			if work, ok := o.(*v1alpha1.Work); ok {
				w.enqueueSharers(work)
			}
		},
	})
	w.a.hubCache.WaitForCacheSync(ctx)
	w.a.log.Info("watching the cluster's Works", "namespace", w.a.ns)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for w.next(ctx) {
			}
		})
	}
	wg.Go(func() {
		for w.nextDrift(ctx) {
		}
	})
	<-ctx.Done()
	w.queue.ShutDown()
	w.drifts.ShutDown()
	wg.Wait()
}

func (w *workController) enqueueWork(o any) {
	if work, ok := o.(*v1alpha1.Work); ok {
		w.queue.Add(work.Name)
	}
}

// enqueueSharers queues the other Works that list an object these versions of one Work list:
// which of them applies a shared object depends on the others (see otherContent).
func (w *workController) enqueueSharers(versions ...*v1alpha1.Work) {
	var keys []string
	for _, work := range versions {
		for _, o := range manifest.Decode(work.Spec.Manifests) {
			if o.Err == nil {
				keys = append(keys, manifest.ObjectKeys(o.ID)...)
			}
		}
	}
	sharers, err := w.holders(w.ctx, keys...)
	if err != nil {
		return // the cache answers from memory; it fails only when stopping
	}
	for _, s := range sharers {
		if s.Name != versions[0].Name {
			w.queue.Add(s.Name)
		}
	}
}

func (w *workController) next(ctx context.Context) bool {
	name, shutdown := w.queue.Get()
	if shutdown {
		return false
	}
	defer w.queue.Done(name)
	requeue, err := w.reconcile(ctx, name)
	switch {
	case err != nil:
		w.a.log.Warn("work not reconciled; retrying", "work", name, "err", err)
		w.queue.AddRateLimited(name)
	case requeue > 0:
		w.queue.Forget(name)
		w.queue.AddAfter(name, requeue)
	default:
		w.queue.Forget(name)
	}
	return true
}

// reconcile brings one Work's resources on the member in line with it and writes its status.
// It returns how soon to look again, when something is still under way.
func (w *workController) reconcile(ctx context.Context, name string) (time.Duration, error) {
	work := &v1alpha1.Work{}
	if err := w.a.hubCache.Get(ctx, client.ObjectKey{Namespace: w.a.ns, Name: name}, work); err != nil {
		// Not found (or not readable) is never a reason to delete anything. A Work that is
		// gone (its finalizer taken off while this agent was away) leaves no memory behind.
		if apierrors.IsNotFound(err) {
			w.forget(name)
		}
		return 0, client.IgnoreNotFound(err)
	}
	w.ownStatus(work)
	if !work.DeletionTimestamp.IsZero() {
		return w.finalize(ctx, work)
	}
	if !controllerutil.ContainsFinalizer(work, v1alpha1.AgentFinalizer) {
		// A copy takes the answer: the stored Work may be older than the one the stream
		// gave (content handed ahead of its write), and this reconcile applies the latter.
		patched := work.DeepCopy()
		controllerutil.AddFinalizer(patched, v1alpha1.AgentFinalizer)
		if err := w.a.hub.Patch(ctx, patched, client.MergeFrom(work)); err != nil {
			return 0, fmt.Errorf("add finalizer: %w", err)
		}
		controllerutil.AddFinalizer(work, v1alpha1.AgentFinalizer)
	}

	prev := map[string]v1alpha1.ResourceStatus{}
	for _, r := range work.Status.Resources {
		prev[manifest.Key(r.ResourceIdentifier)] = r
	}
	var statuses []v1alpha1.ResourceStatus
	var requeue time.Duration
	desired := map[string]bool{}
	appliedNow, failed, healthy := false, false, true
	for _, o := range manifest.Order(manifest.Decode(work.Spec.Manifests)) {
		key := manifest.Key(o.ID)
		desired[key] = true
		st := v1alpha1.ResourceStatus{ResourceIdentifier: o.ID, Hash: o.Hash}
		if o.Err != nil {
			st.State, st.Message = v1alpha1.ResourceFailed, o.Err.Error()
			statuses = append(statuses, st)
			continue
		}
		if winner, err := w.otherContent(ctx, work, o); err != nil || winner != "" {
			// Not this Work's to apply now: what it applied before is no longer on the member
			// as it left it, so it must apply again once it is its turn.
			w.rememberApplied(work.Name, key, "")
			failed = true
			st.State, st.Message = v1alpha1.ResourceFailed, fmt.Sprintf("Work %s lists this object too, with different content, and applies it; "+
				"make the Placements that share it send the same content (for example the same overrides)", winner)
			if err != nil {
				st.Message = "find the other Works that list it: " + err.Error()
			}
			statuses = append(statuses, st)
			continue
		}
		live, applied, err := w.applyIfNeeded(ctx, work, o, prev[key])
		if applied {
			appliedNow = true
			w.setDrift(work.Name, key, "") // what was applied is current again
		}
		if err != nil {
			failed = true
			st.State, st.Message = v1alpha1.ResourceFailed, err.Error()
			if errors.Is(err, ErrKindUnknown) {
				requeue = 2 * time.Second // its CRD may be on the way
			}
			statuses = append(statuses, st)
			continue
		}
		st.State = v1alpha1.ResourceApplied
		st.Health, st.Message = manifest.Assess(live)
		st.Replicas, st.AvailableReplicas = manifest.Replicas(live)
		st.Conditions = manifest.Conditions(live)
		if o.ID.Group == "" && o.ID.Kind == "Service" {
			st.Reach = w.a.opts.Member.Reach(ctx, live)
			w.mu.Lock()
			if st.Reach != nil {
				w.reaching[work.Name] = true
			}
			w.mu.Unlock()
		}
		if st.Health != v1alpha1.HealthHealthy {
			healthy = false
			requeue = max(requeue, 5*time.Second) // look at its health again
		}
		if msg := w.driftOf(work.Name, key); msg != "" {
			st.Drifted, st.Message = true, msg
		}
		statuses = append(statuses, st)
	}

	// Tombstones: what the Work applied before but no longer lists leaves the member, unless
	// another Work (or this one, for a namespace) still holds it, and stays listed as Deleting
	// until the member confirms it is gone.
	var gone []v1alpha1.ResourceIdentifier
	for key, p := range prev {
		if !desired[key] {
			gone = append(gone, p.ResourceIdentifier)
		}
	}
	if work.Spec.DeletionPolicy == v1alpha1.DeletionOrphan {
		for _, id := range gone {
			w.rememberApplied(work.Name, manifest.Key(id), "")
			w.a.log.Info("left a resource its Work dropped on the member (deletionPolicy Orphan)", "work", work.Name, "kind", id.Kind, "namespace", id.Namespace, "name", id.Name)
		}
	} else {
		for _, rm := range w.remove(ctx, work, gone) {
			if rm.done {
				w.rememberApplied(work.Name, manifest.Key(rm.id), "")
				continue
			}
			st := v1alpha1.ResourceStatus{ResourceIdentifier: rm.id, State: v1alpha1.ResourceDeleting, Message: rm.message()}
			statuses = append(statuses, st)
			requeue = time.Second
		}
	}
	// Just applied and not healthy yet: report a moment later, once the member has had a
	// chance to settle (its status changes bring the Work back sooner). Failures and
	// deletions are reported at once.
	w.mu.Lock()
	// On a delivery stream a report is a message, not a write: no need to wait.
	settle := appliedNow && !failed && !healthy && len(gone) == 0 && !w.settling[work.Name] && w.a.streaming() == nil
	w.settling[work.Name] = settle
	w.mu.Unlock()
	if settle {
		return statusSettle, nil
	}
	return requeue, w.writeStatus(ctx, work, statuses)
}

// applyIfNeeded applies o unless the member already has what the Work last applied, and
// returns the object as it is on the member and whether it applied.
func (w *workController) applyIfNeeded(ctx context.Context, work *v1alpha1.Work, o manifest.Object, prev v1alpha1.ResourceStatus) (*unstructured.Unstructured, bool, error) {
	gvr, namespaced, err := w.mapping(o.ID)
	if err != nil {
		return nil, false, err
	}
	ns := o.ID.Namespace
	if namespaced && ns == "" {
		ns = metav1.NamespaceDefault
	}
	if !namespaced {
		ns = ""
	}
	w.watch(gvr)
	live := w.a.opts.Member.Cached(gvr, ns, o.ID.Name)
	key := manifest.Key(o.ID)
	if live != nil && ((prev.State == v1alpha1.ResourceApplied && prev.Hash == o.Hash) || w.lastApplied(work.Name, key) == o.Hash) {
		return live, false, nil
	}
	got, err := w.apply(ctx, work, gvr, ns, o.Obj, work.Spec.ForceConflicts, false)
	if err != nil {
		w.rememberApplied(work.Name, key, "")
		return nil, false, err
	}
	w.rememberApplied(work.Name, key, o.Hash)
	w.a.log.Info("applied", "work", work.Name, "kind", o.ID.Kind, "namespace", ns, "name", o.ID.Name)
	return got, true, nil
}

func (w *workController) lastApplied(work, key string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.applied[work][key]
}

// rememberApplied records the hash last applied for one resource of a Work; "" forgets it.
func (w *workController) rememberApplied(work, key, hash string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if hash == "" {
		delete(w.applied[work], key)
		return
	}
	if w.applied[work] == nil {
		w.applied[work] = map[string]string{}
	}
	w.applied[work][key] = hash
}

// apply server-side applies obj as the agent's field manager. A conflict with another field
// manager is an error that names it, unless force is set.
func (w *workController) apply(ctx context.Context, work *v1alpha1.Work, gvr schema.GroupVersionResource, ns string, obj *unstructured.Unstructured, force, dryRun bool) (*unstructured.Unstructured, error) {
	u := obj.DeepCopy()
	if ns != "" {
		u.SetNamespace(ns)
	}
	labels := u.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[v1alpha1.LabelManagedBy] = v1alpha1.ManagedByAgent
	u.SetLabels(labels)
	for _, f := range []string{"resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"} {
		unstructured.RemoveNestedField(u.Object, "metadata", f)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	got, err := w.a.opts.Member.Apply(ctx, gvr, ns, u, force, dryRun)
	if apierrors.IsConflict(err) {
		return nil, fmt.Errorf("conflict with another field manager on the member (set spec.forceConflicts to take the fields over): %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	return got, nil
}

// mapping finds the resource of a kind on the member.
func (w *workController) mapping(id v1alpha1.ResourceIdentifier) (schema.GroupVersionResource, bool, error) {
	return w.a.opts.Member.Mapping(schema.GroupKind{Group: id.Group, Kind: id.Kind}, id.Version)
}

// watch starts (once) watching the agent's objects of one resource on the member. Its events
// bring health changes and drift to every Work that lists the object.
func (w *workController) watch(gvr schema.GroupVersionResource) {
	w.a.opts.Member.Watch(w.ctx, gvr, WatchHandler{
		Updated: func(oldU, newU *unstructured.Unstructured) {
			changed := specChanged(oldU, newU)
			for _, work := range w.listedBy(newU) {
				if changed {
					w.drifts.AddAfter(driftKey{work: work, gvr: gvr, ns: newU.GetNamespace(), name: newU.GetName()}, 100*time.Millisecond)
				} else {
					w.queue.AddAfter(work, w.gather()) // status moved: report health
				}
			}
		},
		Deleted: func(u *unstructured.Unstructured) {
			for _, work := range w.listedBy(u) {
				w.queue.Add(work) // apply it again if the Work still lists it
			}
		},
	})
}

// reachChanged queues the Works that list a Service whose reach may have changed, or, for
// a change of the nodes (no name), every Work that reports a reach.
func (w *workController) reachChanged(namespace, name string) {
	if w.ctx == nil {
		return // not running yet: the first reconcile reports it
	}
	if name == "" {
		w.mu.Lock()
		works := slices.Collect(maps.Keys(w.reaching))
		w.mu.Unlock()
		for _, work := range works {
			w.queue.AddAfter(work, statusSettle)
		}
		return
	}
	svc := &unstructured.Unstructured{}
	svc.SetAPIVersion("v1")
	svc.SetKind("Service")
	svc.SetNamespace(namespace)
	svc.SetName(name)
	for _, work := range w.listedBy(svc) {
		w.queue.AddAfter(work, statusSettle)
	}
}

// listedBy names the Works that list a member object, from the agent's cache of its Works.
func (w *workController) listedBy(u *unstructured.Unstructured) []string {
	gvk := u.GroupVersionKind()
	id := v1alpha1.ResourceIdentifier{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
	works, err := w.holders(w.ctx, manifest.ObjectKeys(id)...)
	if err != nil {
		w.a.log.Warn("cannot tell which Works list a member object", "kind", gvk.Kind, "namespace", id.Namespace, "name", id.Name, "err", err)
		return nil
	}
	names := make([]string, len(works))
	for i, wk := range works {
		names[i] = wk.Name
	}
	return names
}

// specChanged reports whether anything but status and bookkeeping changed.
func specChanged(a, b *unstructured.Unstructured) bool {
	strip := func(u *unstructured.Unstructured) map[string]any {
		c := u.DeepCopy().Object
		delete(c, "status")
		if m, ok := c["metadata"].(map[string]any); ok {
			for _, f := range []string{"resourceVersion", "managedFields", "generation"} {
				delete(m, f)
			}
		}
		return c
	}
	return !equality.Semantic.DeepEqual(strip(a), strip(b))
}

// removal is what became of one object a Work dropped.
type removal struct {
	id v1alpha1.ResourceIdentifier
	// done: gone from the member, kept for another Work or owner, or never the agent's.
	done bool
	// later: a namespace or CRD, left for after the Work's other objects are gone.
	later bool
	err   error
}

func (r removal) message() string {
	switch {
	case r.err != nil:
		return "delete: " + r.err.Error()
	case r.later:
		return "deleted once the other resources the Work dropped are gone"
	default:
		return "waiting for the member to delete it"
	}
}

// remove deletes the objects a Work dropped (or all of a deleted Work's), the last applied
// first, each unless another Work still holds it. Namespaces and CRDs, whose deletion takes
// other objects with it, come only once everything else is gone.
func (w *workController) remove(ctx context.Context, work *v1alpha1.Work, ids []v1alpha1.ResourceIdentifier) []removal {
	out := make([]removal, 0, len(ids))
	pending := false
	var containers []v1alpha1.ResourceIdentifier
	for _, id := range manifest.OrderIDs(ids) {
		if manifest.Container(id) {
			containers = append(containers, id)
			continue
		}
		done, err := w.deleteUnlessHeld(ctx, work, id)
		pending = pending || !done
		out = append(out, removal{id: id, done: done, err: err})
	}
	for _, id := range containers {
		if pending {
			out = append(out, removal{id: id, later: true})
			continue
		}
		done, err := w.deleteUnlessHeld(ctx, work, id)
		out = append(out, removal{id: id, done: done, err: err})
	}
	return out
}

// deleteUnlessHeld deletes an object a Work dropped, unless another owner still has a use for
// it, and reports whether it is done with: gone, kept, or never the agent's. It keeps an
// object that any Work of the cluster still holds (see manifest.HeldBy: the object itself, for
// a Namespace anything in it, for a CRD any object of its kind), and a CRD while the member
// still has objects of its kind, which deleting it would take with it. The Works come from
// the agent's cache of the hub's Works, so the answer is the same after a restart.
func (w *workController) deleteUnlessHeld(ctx context.Context, work *v1alpha1.Work, id v1alpha1.ResourceIdentifier) (bool, error) {
	gvr, namespaced, err := w.mapping(id)
	if err != nil {
		if errors.Is(err, ErrKindUnknown) {
			return true, nil // the kind is gone, and with it the object
		}
		return false, err
	}
	ns := id.Namespace
	if namespaced && ns == "" {
		ns = metav1.NamespaceDefault
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	live, err := w.a.opts.Member.Get(ctx, gvr, ns, id.Name)
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if live.GetLabels()[v1alpha1.LabelManagedBy] != v1alpha1.ManagedByAgent {
		return true, nil // not the agent's (someone made it again); leave it
	}
	var served *schema.GroupKind
	if gk, ok := manifest.ServedKind(live.Object); ok && manifest.IsCRD(id) {
		served = &gk
	}
	holders, err := w.holders(ctx, manifest.HeldBy(id, served)...)
	if err != nil {
		return false, err
	}
	if len(holders) > 0 {
		w.a.log.Info("kept a resource its Work dropped: another Work holds it", "work", work.Name, "kind", id.Kind, "namespace", ns, "name", id.Name, "heldBy", holders[0].Name)
		return true, nil
	}
	if served != nil {
		// Objects of its kind that other Works being deleted still list are on their way out:
		// wait for them. Any other object of its kind still live on the member keeps the CRD;
		// those already being deleted go anyway, and the CRD's deletion waits for them.
		leaving, err := w.leaving(ctx, work, *served)
		if err != nil || leaving {
			return false, err
		}
		census, err := w.census(ctx, *served)
		if err != nil {
			return false, err
		}
		if census.Live > 0 {
			w.a.log.Info("kept a CRD its Work dropped: the member still has objects of its kind that no Work lists", "work", work.Name, "name", id.Name, "kind", served.Kind)
			return true, nil
		}
	}
	if live.GetDeletionTimestamp() != nil {
		return false, nil
	}
	if err := w.a.opts.Member.Delete(ctx, gvr, ns, id.Name); err != nil && !apierrors.IsNotFound(err) {
		return false, err
	}
	w.a.log.Info("deleted a resource its Work dropped", "work", work.Name, "kind", id.Kind, "namespace", ns, "name", id.Name)
	if _, err := w.a.opts.Member.Get(ctx, gvr, ns, id.Name); apierrors.IsNotFound(err) {
		return true, nil
	}
	return false, nil // confirmed on a later look
}

// leaving says whether another Work being deleted (with deletionPolicy Delete) lists an
// object of a kind that is still on the member and that the agent will delete: one it labelled
// and that is not being deleted yet. (An object it did not label is left behind, as
// deleteUnlessHeld leaves it, and keeps the CRD.)
func (w *workController) leaving(ctx context.Context, work *v1alpha1.Work, gk schema.GroupKind) (bool, error) {
	releasing, err := w.holders(ctx, manifest.Releasing([]string{manifest.KindKey(gk)})...)
	if err != nil {
		return false, err
	}
	for _, r := range releasing {
		if r.Name == work.Name {
			continue
		}
		for _, o := range manifest.Decode(r.Spec.Manifests) {
			if o.Err != nil || o.ID.Group != gk.Group || o.ID.Kind != gk.Kind {
				continue
			}
			gvr, namespaced, err := w.mapping(o.ID)
			if errors.Is(err, ErrKindUnknown) {
				continue
			}
			if err != nil {
				return false, err
			}
			ns := o.ID.Namespace
			if namespaced && ns == "" {
				ns = metav1.NamespaceDefault
			}
			live, err := w.a.opts.Member.Get(ctx, gvr, ns, o.ID.Name)
			switch {
			case apierrors.IsNotFound(err):
			case err != nil:
				return false, err
			case live.GetLabels()[v1alpha1.LabelManagedBy] == v1alpha1.ManagedByAgent && live.GetDeletionTimestamp() == nil:
				return true, nil
			}
		}
	}
	return false, nil
}

// census counts the member's objects of a kind.
func (w *workController) census(ctx context.Context, gk schema.GroupKind) (Census, error) {
	gvr, _, err := w.a.opts.Member.Mapping(gk, "")
	if errors.Is(err, ErrKindUnknown) {
		return Census{}, nil
	}
	if err != nil {
		return Census{}, err
	}
	return w.a.opts.Member.Census(ctx, gvr)
}

// holdsIndex indexes the agent's Works by what they hold on the member (manifest.Holds) and by
// the content they send of each object (manifest.Contents). A Work being deleted with
// deletionPolicy Delete holds nothing any more: it is releasing what it held
// (manifest.Releasing), which its agent is deleting. One being deleted with Orphan keeps
// holding what it leaves behind.
const holdsIndex = "convoy.dev/holds"

func holdsOf(o client.Object) []string {
	work, ok := o.(*v1alpha1.Work)
	if !ok {
		return nil
	}
	objs := manifest.Decode(work.Spec.Manifests)
	if !work.DeletionTimestamp.IsZero() && work.Spec.DeletionPolicy != v1alpha1.DeletionOrphan {
		if !controllerutil.ContainsFinalizer(work, v1alpha1.AgentFinalizer) {
			return nil
		}
		return manifest.Releasing(manifest.Holds(objs))
	}
	return append(manifest.Holds(objs), manifest.Contents(objs)...)
}

// holders returns the Works of the cluster that hold any of keys, each once, sorted by name.
func (w *workController) holders(ctx context.Context, keys ...string) ([]*v1alpha1.Work, error) {
	byName := map[string]*v1alpha1.Work{}
	for _, k := range keys {
		var list v1alpha1.WorkList
		if err := w.a.hubCache.List(ctx, &list, client.InNamespace(w.a.ns), client.MatchingFields{holdsIndex: k}, client.UnsafeDisableDeepCopy); err != nil {
			return nil, fmt.Errorf("list the Works that hold %s: %w", k, err)
		}
		for i := range list.Items {
			byName[list.Items[i].Name] = &list.Items[i]
		}
	}
	out := make([]*v1alpha1.Work, 0, len(byName))
	for _, wk := range byName {
		out = append(out, wk)
	}
	slices.SortFunc(out, func(a, b *v1alpha1.Work) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// otherContent settles which Work applies an object that several list: the first by name.
// The others apply it too when they send the same content (it changes nothing); when one
// sends something else it does not apply it, and otherContent names the Work that does.
func (w *workController) otherContent(ctx context.Context, work *v1alpha1.Work, o manifest.Object) (string, error) {
	owners, err := w.holders(ctx, manifest.ObjectKeys(o.ID)...)
	if err != nil || len(owners) == 0 || owners[0].Name >= work.Name {
		return "", err
	}
	same, err := w.holders(ctx, manifest.ContentKey(o.ID, o.Hash))
	if err != nil {
		return "", err
	}
	if slices.ContainsFunc(same, func(s *v1alpha1.Work) bool { return s.Name == owners[0].Name }) {
		return "", nil
	}
	return owners[0].Name, nil
}

// finalize handles a deleted Work: with deletionPolicy Delete it removes the Work's resources
// from the member (those no other Work holds), last-applied first, and lets the Work go once
// they are all gone; with Orphan it leaves them.
func (w *workController) finalize(ctx context.Context, work *v1alpha1.Work) (time.Duration, error) {
	if !controllerutil.ContainsFinalizer(work, v1alpha1.AgentFinalizer) {
		return 0, nil
	}
	if work.Spec.DeletionPolicy != v1alpha1.DeletionOrphan {
		ids := map[string]v1alpha1.ResourceIdentifier{}
		for _, r := range work.Status.Resources {
			ids[manifest.Key(r.ResourceIdentifier)] = r.ResourceIdentifier
		}
		for _, o := range manifest.Decode(work.Spec.Manifests) {
			if o.Err == nil {
				ids[manifest.Key(o.ID)] = o.ID
			}
		}
		var errs []error
		pending := 0
		for _, rm := range w.remove(ctx, work, slices.Collect(maps.Values(ids))) {
			if !rm.done {
				pending++
			}
			if rm.err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", rm.id.Kind, rm.id.Name, rm.err))
			}
		}
		if err := errors.Join(errs...); err != nil {
			return 0, err
		}
		if pending > 0 {
			return time.Second, nil
		}
	}
	before := work.DeepCopy()
	controllerutil.RemoveFinalizer(work, v1alpha1.AgentFinalizer)
	if err := w.a.hub.Patch(ctx, work, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
		return 0, fmt.Errorf("remove finalizer: %w", err)
	}
	w.forget(work.Name)
	return 0, nil
}

// ownStatus puts into work the status this agent last reported on its delivery stream: the
// hub stores reports in the Works at its own pace, so the stored status may be behind.
func (w *workController) ownStatus(work *v1alpha1.Work) {
	// Only while the reports are all the hub gets: once the agent writes the status itself,
	// the stored status is what it compares with and patches.
	if c, write := w.a.reporter(); c != nil && !write {
		if st, ok := c.Last(work.Name, string(work.UID)); ok {
			work.Status = st
		}
	}
}

// requeueAll looks at every Work of the cluster again.
func (w *workController) requeueAll() {
	var list v1alpha1.WorkList
	// The cache answers from memory; its context only bounds a wait for it to sync.
	if err := w.a.hubCache.List(context.TODO(), &list, client.InNamespace(w.a.ns), client.UnsafeDisableDeepCopy); err != nil {
		return
	}
	for i := range list.Items {
		w.queue.Add(list.Items[i].Name)
	}
}

// forget drops what the agent remembers of a Work.
func (w *workController) forget(name string) {
	if c, _ := w.a.reporter(); c != nil {
		c.Forget(name)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.drifted, name)
	delete(w.applied, name)
	delete(w.written, name)
	delete(w.settling, name)
	delete(w.reaching, name)
}

// writeStatus records the resources' states and the Work's conditions, if they changed.
func (w *workController) writeStatus(ctx context.Context, work *v1alpha1.Work, resources []v1alpha1.ResourceStatus) error {
	before := work.DeepCopy()
	s := &work.Status
	s.Resources = resources
	s.ObservedGeneration = work.Generation
	s.Summary = v1alpha1.WorkSummary{}
	for _, r := range resources {
		s.Summary.Total++
		switch r.State {
		case v1alpha1.ResourceApplied:
			s.Summary.Applied++
			if r.Health == v1alpha1.HealthHealthy {
				s.Summary.Available++
			}
		case v1alpha1.ResourceFailed:
			s.Summary.Failed++
		case v1alpha1.ResourceDeleting:
			s.Summary.Deleting++
		}
		if r.Drifted {
			s.Summary.Drifted++
		}
	}
	set := func(typ string, ok bool, reason, msg string) {
		st := metav1.ConditionFalse
		if ok {
			st = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg, ObservedGeneration: work.Generation})
	}
	want := int32(len(work.Spec.Manifests))
	if s.Summary.Failed == 0 && s.Summary.Applied == want {
		set(v1alpha1.WorkApplied, true, "Applied", fmt.Sprintf("%d of %d resources applied", s.Summary.Applied, want))
	} else {
		set(v1alpha1.WorkApplied, false, "ApplyFailed", fmt.Sprintf("%d of %d resources applied, %d failed", s.Summary.Applied, want, s.Summary.Failed))
	}
	if s.Summary.Available == want {
		set(v1alpha1.WorkAvailable, true, "Available", fmt.Sprintf("%d of %d resources available", s.Summary.Available, want))
	} else {
		set(v1alpha1.WorkAvailable, false, "NotAvailable", fmt.Sprintf("%d of %d resources available", s.Summary.Available, want))
	}
	if s.Summary.Drifted > 0 {
		set(v1alpha1.WorkDrifted, true, "Drifted", fmt.Sprintf("%d resources were changed on the member (drift policy ReportOnly)", s.Summary.Drifted))
	} else {
		set(v1alpha1.WorkDrifted, false, "InSync", "no drift")
	}
	if equality.Semantic.DeepEqual(before.Status, work.Status) {
		return nil
	}
	c, write := w.a.reporter()
	if c != nil {
		c.Report(work.Name, string(work.UID), *work.Status.DeepCopy())
	}
	if !write {
		return nil
	}
	w.mu.Lock()
	last, ok := w.written[work.Name]
	w.mu.Unlock()
	if ok && time.Since(last.at) < writtenFresh && equality.Semantic.DeepEqual(last.status, work.Status) {
		return nil // written a moment ago; the cache has not caught up yet
	}
	if err := w.a.hub.Status().Patch(ctx, work, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	w.mu.Lock()
	w.written[work.Name] = writtenStatus{status: *work.Status.DeepCopy(), at: time.Now()}
	w.mu.Unlock()
	return nil
}
