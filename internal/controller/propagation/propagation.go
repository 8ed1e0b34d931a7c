// Package propagation is the hub's Placement controller. For each Placement it lists what the
// decision needs (the templates the Placement selects in its namespace and what they depend
// on, the fleet's Clusters, the Placement's Works and the stored revisions of its templates),
// asks the pure internal/plan what each cluster gets, and writes that: one Work per chosen
// cluster in that cluster's namespace, only when its content changed; the Placement's status
// (a change that only counts the clusters' reports waits up to a second for the rest of them:
// foldFor); the summary annotation on each selected template; the template revisions a
// rollout needs. Only internal/hub imports it.
//
// It fails static: when selectors match nothing, or the decision cannot be made, the plan
// leaves the Works as they are and a condition says why. A cluster loses its Work only when
// the decision leaves it out; the agent then deletes the resources that no other Work holds
// (or keeps them, with preserveResourcesOnDeletion).
package propagation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/manifest"
	"github.com/convoy-dev/convoy/internal/plan"
	"github.com/convoy-dev/convoy/internal/render"
	"github.com/convoy-dev/convoy/internal/scheduler"
)

// unconfirmedRecheck is how often a Placement with clusters whose status is not confirmed yet
// (Reports.Unconfirmed) is looked at again.
const unconfirmedRecheck = 2 * time.Second

// Reconciler reconciles Placements.
type Reconciler struct {
	Client    client.Client
	Templates *Templates
	Recorder  events.EventRecorder
	// Clock is the time source of the decisions; nil means the real clock.
	Clock clock.PassiveClock
	// Reports, when set, gives each Work with the status its agent last reported on its
	// delivery stream (internal/delivery), which the stored status may lag behind.
	// It also says which clusters' stored status a restarted hub has not had confirmed by
	// their agents yet.
	// Its Hand takes a Work's new content to send to the agent at once and store at a paced
	// rate; Overlay shows it from then on.
	Reports interface {
		Overlay(w *v1alpha1.Work) *v1alpha1.Work
		Unconfirmed(cluster string) bool
		Hand(old, w *v1alpha1.Work) bool
		Backlogged(old *v1alpha1.Work) bool
		Started() time.Time
		Reset(w *v1alpha1.Work)
	}

	// Metrics, when set, reads the rollouts' metric gates from the fleet metrics store (a
	// query's reading now); without it, every metric gate reads as an error that says so.
	Metrics interface {
		Read(ctx context.Context, q plan.MetricQuery) plan.Reading
	}

	// readings keeps each metric gate's last reading for metricFresh, so that a soaking wave
	// whose clusters report often costs the store one query per interval, not per report.
	readingsMu sync.Mutex
	readings   map[plan.MetricQuery]timedReading

	changed  chan event.TypedGenericEvent[*v1alpha1.Placement]
	reported chan event.TypedGenericEvent[*v1alpha1.Work]

	// written remembers, per Work, what this hub last wrote into it and when: a reconcile
	// soon after may read the Work as it was before from the cache, and must not write the
	// same content again.
	writtenMu sync.Mutex
	written   map[client.ObjectKey]writtenWork
	// pruned is when expired entries of written were last dropped: at most once per
	// writtenFresh, so that a change to a thousand Works does not scan the map a thousand times.
	pruned time.Time
	// statusWritten holds, per Placement, the resourceVersion of the status this reconciler
	// last wrote, until the cache has it. A reconcile that reads an older Placement waits for
	// the cache instead of deciding again from the status before its own write: it would
	// repeat that write's events (a failover or fail-back told twice).
	statusWritten sync.Map // client.ObjectKey -> string
	// folds holds, per Placement, the status change held back (foldFor).
	folds sync.Map // client.ObjectKey -> fold
	// epoch counts the changes of templates and Clusters, which a held-back status does not
	// wait for (fold).
	epoch atomic.Uint64
}

// statusInterval is how long at most a change of a Placement's status waits while its
// clusters' reports come in (foldFor). With a thousand clusters the status is about 150 KB,
// and each write of it costs the API server about a third of a second of CPU: written at each
// report window, it slowed the very reports it waited for.
const statusInterval = time.Second

// fold is a change of a Placement's status held back: since when, and what the decision
// that held it back was made from. While it lasts, a reconcile for the same Placement,
// templates and Clusters only looks whether every cluster has reported (held), instead of
// deciding again at every report.
type fold struct {
	since time.Time
	// resourceVersion is the Placement's: any change of it (its spec, its annotations with
	// the rollout's commands) is decided again.
	resourceVersion string
	epoch           uint64
}

// foldFor says how long the status write of out waits, or 0 for now. It waits while only what
// the clusters report changes (onlyReports) and some clusters have yet to report on their
// content (out.Awaiting), for statusInterval at most from the first change held back: the
// reports still to come fold into one write, which the last of them makes at once. What a
// decision stores or reads back (the chosen clusters, the rollout's state, failed-over
// clusters, the observed generation), errors, and anything that comes with an event are never
// held back.
func (r *Reconciler) foldFor(key client.ObjectKey, p *v1alpha1.Placement, out plan.Output, epoch uint64) time.Duration {
	if out.Awaiting == 0 || len(out.Events) > 0 || !onlyReports(p.Status, out.Status) ||
		equality.Semantic.DeepEqual(out.Status, p.Status) {
		r.folds.Delete(key)
		return 0
	}
	since := time.Now() // pacing: the wall clock, not the decisions'
	if f, ok := r.folds.Load(key); ok {
		since = f.(fold).since
	}
	r.folds.Store(key, fold{since: since, resourceVersion: p.ResourceVersion, epoch: epoch})
	wait := time.Until(since.Add(statusInterval))
	if wait <= 0 {
		r.folds.Delete(key)
	}
	return wait
}

// onlyReports says whether next differs from stored only in what the clusters' reports move:
// each row's applied, available, drifted and replica counts, and the Applied and Available
// conditions that count them. The rows' clusters and their health are the decision's own (the
// next one schedules from them), as are the other conditions, the rollout's state and the
// failed-over clusters.
func onlyReports(stored, next v1alpha1.PlacementStatus) bool {
	if stored.ObservedGeneration != next.ObservedGeneration || stored.ScheduledClusters != next.ScheduledClusters ||
		len(stored.Clusters) != len(next.Clusters) ||
		!equality.Semantic.DeepEqual(stored.Rollout, next.Rollout) ||
		!equality.Semantic.DeepEqual(stored.FailedOver, next.FailedOver) {
		return false
	}
	for i, a := range stored.Clusters {
		b := next.Clusters[i]
		if a.Cluster != b.Cluster || a.Healthy != b.Healthy || a.Revision != b.Revision || a.Error != b.Error ||
			!equality.Semantic.DeepEqual(a.ScheduledReplicas, b.ScheduledReplicas) {
			return false
		}
	}
	counting := func(c metav1.Condition) bool {
		return c.Type == v1alpha1.PlacementApplied || c.Type == v1alpha1.PlacementAvailable
	}
	others := func(cs []metav1.Condition) []metav1.Condition {
		var out []metav1.Condition
		for _, c := range cs {
			if !counting(c) {
				out = append(out, c)
			}
		}
		return out
	}
	return equality.Semantic.DeepEqual(others(stored.Conditions), others(next.Conditions))
}

// held says how long the status change held back for p still waits, when nothing the
// decision is made from changed since and some of its clusters have yet to report: the
// reconcile then only waits.
func (r *Reconciler) held(ctx context.Context, key client.ObjectKey, p *v1alpha1.Placement) time.Duration {
	v, ok := r.folds.Load(key)
	if !ok {
		return 0
	}
	f := v.(fold)
	wait := time.Until(f.since.Add(statusInterval))
	if wait <= 0 || f.resourceVersion != p.ResourceVersion || f.epoch != r.epoch.Load() {
		return 0
	}
	works, err := r.works(ctx, p)
	if err != nil {
		return 0
	}
	for _, w := range works {
		if w.DeletionTimestamp.IsZero() && w.Status.ObservedGeneration != w.Generation {
			return wait // this cluster's report is still to come
		}
	}
	return 0
}

// staleRecheck is how soon a Placement read older than this reconciler's own last status write
// is looked at again (its status writes do not wake it).
const staleRecheck = 50 * time.Millisecond

type writtenWork struct {
	content string
	at      time.Time
}

// writtenFresh is how long the reconciler trusts its memory of a write over the cache.
const writtenFresh = 10 * time.Second

// workContent identifies what a Work write sets.
func workContent(w plan.Write) string {
	h := sha256.New()
	for _, m := range w.Manifests {
		h.Write(m.Raw)
		h.Write([]byte{0})
	}
	fmt.Fprintf(h, "%s\x00%s", w.DeletionPolicy, w.Revision)
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
	return &Reconciler{Client: c, Recorder: recorder, changed: make(chan event.TypedGenericEvent[*v1alpha1.Placement], 1024),
		reported: make(chan event.TypedGenericEvent[*v1alpha1.Work], 4096)}
}

// WorkReported wakes the Placement of a Work whose agent reported a new status on its
// stream (the Work's labels name the Placement), coalesced as the Works' own events are.
// It blocks while the controller's intake is full, until ctx ends.
func (r *Reconciler) WorkReported(ctx context.Context, w *v1alpha1.Work) {
	select {
	case r.reported <- event.TypedGenericEvent[*v1alpha1.Work]{Object: w}:
	case <-ctx.Done():
	}
}

// TemplatesChanged wakes every Placement of a namespace. Templates calls it.
func (r *Reconciler) TemplatesChanged(namespace string) {
	r.epoch.Add(1)
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
// templates (through Templates). The Placement's own status writes do not wake it: only its
// spec (generation), its annotations (the rollout commands), its finalizers and its deletion.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	allPlacements := coalesced(func(ctx context.Context, _ client.Object) []ctrl.Request {
		r.epoch.Add(1) // a Cluster changed
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
		For(&v1alpha1.Placement{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{},
			predicate.AnnotationChangedPredicate{}, predicate.LabelChangedPredicate{}, metadataChanged))).
		Named("propagation").
		Watches(&v1alpha1.Cluster{}, allPlacements).
		Watches(&v1alpha1.ServiceBinding{}, handler.EnqueueRequestsFromMapFunc(r.namespacePlacements), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.Placement{}, handler.EnqueueRequestsFromMapFunc(r.namespacePlacements), builder.WithPredicates(serviceMoved)).
		Watches(&v1alpha1.Work{}, coalesced(func(_ context.Context, o client.Object) []ctrl.Request {
			if req, ok := placementOf(o); ok {
				return []ctrl.Request{req}
			}
			return nil
		})).
		WatchesRawSource(source.Channel(r.changed, &handler.TypedEnqueueRequestForObject[*v1alpha1.Placement]{})).
		WatchesRawSource(source.Channel(r.reported, handler.TypedFuncs[*v1alpha1.Work, ctrl.Request]{
			GenericFunc: func(_ context.Context, e event.TypedGenericEvent[*v1alpha1.Work], q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
				if req, ok := placementOf(e.Object); ok {
					q.AddAfter(req, reportWindow)
				}
			},
		})).
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Complete(r)
}

// placementOf names the Placement a Work comes from.
func placementOf(o client.Object) (ctrl.Request, bool) {
	ns, name := o.GetLabels()[v1alpha1.LabelPlacementNamespace], o.GetLabels()[v1alpha1.LabelPlacement]
	return ctrl.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: name}}, ns != "" && name != ""
}

// metadataChanged passes updates that change an object's finalizers or mark it deleted.
var metadataChanged = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
	return !slices.Equal(e.ObjectOld.GetFinalizers(), e.ObjectNew.GetFinalizers()) ||
		!e.ObjectOld.GetDeletionTimestamp().Equal(e.ObjectNew.GetDeletionTimestamp())
}}

// coalesceWindow gathers the events of many Works and Clusters into one reconcile of their
// Placement: with a thousand clusters reporting within a second or two, reconciling the
// Placement (which looks at all its clusters) for each report would do the same work a
// thousand times.
const coalesceWindow = 250 * time.Millisecond

// reportWindow gathers the reports that agents send on their delivery streams: a report costs
// no write, so the Placement's status may follow sooner than a stored Work's.
const reportWindow = 100 * time.Millisecond

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

// Reconcile lists what a Placement's decision needs, asks the plan, and writes its answer.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	p := &v1alpha1.Placement{}
	if err := r.Client.Get(ctx, req.NamespacedName, p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !p.DeletionTimestamp.IsZero() {
		r.statusWritten.Delete(req.NamespacedName)
		r.folds.Delete(req.NamespacedName)
		return ctrl.Result{}, r.finalize(ctx, p)
	}
	if last, ok := r.statusWritten.Load(req.NamespacedName); ok {
		// Resource versions compare as numbers on every store the hub runs on; one that does
		// not parse is taken as caught up.
		if c, err := resourceversion.CompareResourceVersion(p.ResourceVersion, last.(string)); err == nil && c < 0 {
			return ctrl.Result{RequeueAfter: staleRecheck}, nil
		}
		r.statusWritten.CompareAndDelete(req.NamespacedName, last)
	}
	if !controllerutil.ContainsFinalizer(p, v1alpha1.PlacementFinalizer) {
		before := p.DeepCopy()
		controllerutil.AddFinalizer(p, v1alpha1.PlacementFinalizer)
		if err := r.Client.Patch(ctx, p, client.MergeFrom(before)); err != nil {
			return ctrl.Result{}, fmt.Errorf("add finalizer: %w", err)
		}
	}

	// Read before the decision's inputs: a change after it makes the next reconcile decide.
	epoch := r.epoch.Load()
	if wait := r.held(ctx, req.NamespacedName, p); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	in := plan.Input{Placement: p, Now: r.now()}
	var err error
	if in.Works, err = r.works(ctx, p); err != nil {
		return ctrl.Result{}, err
	}
	if r.Reports != nil && p.Spec.Rollout != nil {
		in.Started = r.Reports.Started()
		for name := range in.Works {
			if r.Reports.Unconfirmed(name) {
				if in.Unconfirmed == nil {
					in.Unconfirmed = map[string]bool{}
				}
				in.Unconfirmed[name] = true
			}
		}
	}
	var live map[string]*unstructured.Unstructured
	in.Templates, live, in.SelectErr = r.selectTemplates(ctx, p)
	if in.Clusters, err = r.snapshot(ctx); err != nil {
		return ctrl.Result{}, err
	}
	if in.NamespaceLabels, err = r.namespaceLabels(ctx, p.Namespace); err != nil {
		return ctrl.Result{}, err
	}
	if in.Bindings, err = r.bindings(ctx, p); err != nil {
		return ctrl.Result{}, err
	}
	if p.Spec.Rollout != nil && len(in.Templates) > 0 {
		if in.Revisions, err = r.loadRevisions(ctx, p, plan.RevisionHash(in.Templates)); err != nil {
			return ctrl.Result{}, err
		}
	}

	out := plan.Plan(in)
	if len(out.MetricQueries) > 0 {
		// A soaking wave's metric gate: read it now and decide again with its value.
		in.Metrics = map[plan.MetricQuery]plan.Reading{}
		for _, q := range out.MetricQueries {
			if r.Metrics == nil {
				in.Metrics[q] = plan.Reading{Taken: true, Err: "the hub runs no fleet metrics store (convoy hub --metrics-retention)"}
				continue
			}
			in.Metrics[q] = r.readMetric(ctx, q)
		}
		out = plan.Plan(in)
	}

	// A revision is stored before any Work names it.
	if out.Revision != nil {
		if err := r.ensureRevision(ctx, p, out.Revision); err != nil {
			return ctrl.Result{}, err
		}
	}
	backlog, writeErr := r.write(ctx, p, in.Works, out)
	r.resetAhead(in.Works, out)
	if wait := r.foldFor(req.NamespacedName, p, out, epoch); wait > 0 {
		// Only rows that more reports are about to change again: written with them.
		return ctrl.Result{RequeueAfter: wait}, writeErr
	}
	if !equality.Semantic.DeepEqual(p.Status, out.Status) {
		before := p.DeepCopy()
		p.Status = out.Status
		if err := r.Client.Status().Patch(ctx, p, client.MergeFrom(before)); err != nil {
			return ctrl.Result{}, errors.Join(writeErr, fmt.Errorf("update status: %w", err))
		}
		r.statusWritten.Store(req.NamespacedName, p.ResourceVersion)
	}
	// The events tell of decisions the status now holds: after a failed status write the next
	// reconcile decides, and tells, again.
	for _, e := range out.Events {
		r.Recorder.Eventf(p, nil, e.Type, e.Reason, e.Action, "%s", e.Note)
	}
	if err := r.summarize(ctx, in.Templates, live, out.Summaries); err != nil {
		return ctrl.Result{}, errors.Join(writeErr, err)
	}
	if writeErr != nil {
		return ctrl.Result{}, writeErr
	}
	requeue := out.RecheckAfter
	if len(in.Unconfirmed) > 0 && (requeue == 0 || requeue > unconfirmedRecheck) {
		// Their agents' reports wake the Placement; an agent without a stream never sends one,
		// and its stored status counts once the hub has been up a while.
		requeue = unconfirmedRecheck
	}
	if backlog && (requeue == 0 || requeue > backlogRecheck) {
		requeue = backlogRecheck
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// errBacklog says that a Work has as much handed content waiting for its writes as it may
// (delivery.MaxHanded): its new content waits, and the Placement is looked at again in
// backlogRecheck.
var errBacklog = errors.New("the Work's handed content waits for its writes")

const backlogRecheck = time.Second

// write makes the plan's Work writes and removals, a few at a time: Works are independent
// objects. backlog says that a Work's new content waits for the writes of what was handed
// before it (errBacklog).
func (r *Reconciler) write(ctx context.Context, p *v1alpha1.Placement, works map[string]*v1alpha1.Work, out plan.Output) (backlog bool, err error) {
	var g errgroup.Group
	g.SetLimit(16)
	var mu sync.Mutex
	var errs []error
	run := func(f func() error) {
		g.Go(func() error {
			if err := f(); err != nil {
				mu.Lock()
				if errors.Is(err, errBacklog) {
					backlog = true
				} else {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
			return nil
		})
	}
	for _, w := range out.Writes {
		run(func() error { return r.writeWork(ctx, p, works[w.Cluster], w) })
	}
	for _, rm := range out.Removals {
		run(func() error { return r.removeWork(ctx, p, works[rm.Cluster], rm.Orphan) })
	}
	_ = g.Wait()
	return backlog, errors.Join(errs...)
}

// resetAhead sends again, to be taken whatever their generation, the Works that the plan
// rendered and found as it wants them while their agents report a newer generation: content
// handed ahead of its write and not stored (this hub dropped it, or the one before it stopped
// first), which the plan no longer wants. A Work the plan left alone (failing static, failed
// over, a render error) is not reset.
func (r *Reconciler) resetAhead(works map[string]*v1alpha1.Work, out plan.Output) {
	if r.Reports == nil {
		return
	}
	for _, cluster := range out.Kept {
		if w := works[cluster]; w != nil && w.DeletionTimestamp.IsZero() && w.Status.ObservedGeneration > w.Generation {
			r.Reports.Reset(w)
		}
	}
}

// works returns the Placement's Works by cluster, each with its agent's latest report (see
// Reports). They are the cache's own objects, or shallow copies of them: whoever changes one
// must DeepCopy it first.
func (r *Reconciler) works(ctx context.Context, p *v1alpha1.Placement) (map[string]*v1alpha1.Work, error) {
	var list v1alpha1.WorkList
	if err := r.Client.List(ctx, &list, client.UnsafeDisableDeepCopy, client.MatchingLabels{v1alpha1.LabelPlacementNamespace: p.Namespace, v1alpha1.LabelPlacement: p.Name}); err != nil {
		return nil, fmt.Errorf("list works: %w", err)
	}
	out := map[string]*v1alpha1.Work{}
	for i := range list.Items {
		w := &list.Items[i]
		if c := w.Labels[v1alpha1.LabelCluster]; c != "" && w.Name == plan.WorkName(p) {
			if r.Reports != nil {
				w = r.Reports.Overlay(w)
			}
			out[c] = w
		}
	}
	return out, nil
}

// snapshot turns the Clusters into what the scheduler knows.
func (r *Reconciler) snapshot(ctx context.Context) ([]scheduler.Cluster, error) {
	// Read-only use: the cache's own objects, not a copy of a thousand Clusters per reconcile.
	var list v1alpha1.ClusterList
	if err := r.Client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	out := make([]scheduler.Cluster, len(list.Items))
	for i := range list.Items {
		out[i] = plan.ClusterOf(&list.Items[i])
	}
	return out, nil
}

// namespaceLabels are the labels of a namespace on the hub, or nil when it does not exist.
func (r *Reconciler) namespaceLabels(ctx context.Context, name string) (map[string]string, error) {
	ns, err := r.Templates.Get(ctx, namespaceResource, "", name)
	if err != nil || ns == nil {
		return nil, err
	}
	l := ns.GetLabels()
	if l == nil {
		l = map[string]string{}
	}
	return l, nil
}

// bindings are the ServiceBindings of the Placement's namespace, each with the clusters its
// service's Placement chose (none while that Placement is missing or being deleted). A catalog
// service's own Placement gets none: its workloads are the service.
func (r *Reconciler) bindings(ctx context.Context, p *v1alpha1.Placement) ([]plan.Binding, error) {
	if p.Labels[v1alpha1.LabelCatalogPackage] != "" {
		return nil, nil
	}
	var list v1alpha1.ServiceBindingList
	if err := r.Client.List(ctx, &list, client.InNamespace(p.Namespace)); err != nil {
		return nil, fmt.Errorf("list service bindings: %w", err)
	}
	var out []plan.Binding
	for _, b := range list.Items {
		if !b.DeletionTimestamp.IsZero() {
			continue
		}
		var svc v1alpha1.Placement
		if err := r.Client.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: b.Spec.Service.Name}, &svc); apierrors.IsNotFound(err) {
			continue
		} else if err != nil {
			return nil, err
		}
		if svc.Labels[v1alpha1.LabelCatalogPackage] == "" || !svc.DeletionTimestamp.IsZero() {
			continue
		}
		pb := plan.Binding{Binding: render.Binding{Name: b.Name, Secret: v1alpha1.BindingSecretName(b.Spec.Service.Name), Env: b.Spec.Env},
			Group: b.Spec.Workload.Group, Kind: b.Spec.Workload.Kind, Workload: b.Spec.Workload.Name, Clusters: map[string]bool{}}
		// Every cluster the service's Placement chose. Not only those where it is applied
		// now: that flips during each of the service's upgrades, and would restart the
		// workload's pods each time. A pod that starts before the Secret arrives waits for it.
		for _, c := range svc.Status.Clusters {
			pb.Clusters[c.Cluster] = true
		}
		out = append(out, pb)
	}
	return out, nil
}

// namespacePlacements wakes every Placement of an object's namespace (a ServiceBinding, or a
// catalog service's Placement whose clusters changed): their bound workloads render again.
func (r *Reconciler) namespacePlacements(ctx context.Context, o client.Object) []ctrl.Request {
	var list v1alpha1.PlacementList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var reqs []ctrl.Request
	for _, p := range list.Items {
		if p.Labels[v1alpha1.LabelCatalogPackage] == "" {
			reqs = append(reqs, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(&p)})
		}
	}
	return reqs
}

// serviceMoved passes a catalog service's Placement when the clusters it chose change, when it
// comes and when it goes.
var serviceMoved = predicate.Funcs{
	CreateFunc:  func(e event.CreateEvent) bool { return e.Object.GetLabels()[v1alpha1.LabelCatalogPackage] != "" },
	DeleteFunc:  func(e event.DeleteEvent) bool { return e.Object.GetLabels()[v1alpha1.LabelCatalogPackage] != "" },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*v1alpha1.Placement)
		n, ok2 := e.ObjectNew.(*v1alpha1.Placement)
		if !ok1 || !ok2 || n.Labels[v1alpha1.LabelCatalogPackage] == "" {
			return false
		}
		names := func(p *v1alpha1.Placement) string {
			var s []string
			for _, c := range p.Status.Clusters {
				s = append(s, c.Cluster)
			}
			return strings.Join(s, ",")
		}
		return names(o) != names(n) || o.DeletionTimestamp.IsZero() != n.DeletionTimestamp.IsZero()
	},
}

// selectTemplates finds what the Placement selects in its namespace, then what that depends
// on. It returns them cleaned for the plan, sorted by key, and the hub's own objects by key.
func (r *Reconciler) selectTemplates(ctx context.Context, p *v1alpha1.Placement) ([]plan.Template, map[string]*unstructured.Unstructured, error) {
	live := map[string]*unstructured.Unstructured{}
	direct := map[string]bool{}
	add := func(u *unstructured.Unstructured, isDirect bool) {
		if u == nil || !u.GetDeletionTimestamp().IsZero() || render.HubOwned(u) {
			return
		}
		gvk := u.GroupVersionKind()
		key := manifest.Key(v1alpha1.ResourceIdentifier{Group: gvk.Group, Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()})
		live[key] = u
		direct[key] = direct[key] || isDirect
	}
	for _, sel := range p.Spec.Resources {
		gvrs, err := r.Templates.Resources(sel)
		if err != nil {
			return nil, nil, err
		}
		for _, gvr := range gvrs {
			objs, err := r.Templates.List(ctx, gvr, p.Namespace)
			if err != nil {
				return nil, nil, err
			}
			for _, u := range objs {
				ok, err := render.Selects(sel, u)
				if err != nil {
					return nil, nil, err
				}
				if ok {
					add(u, true)
				}
			}
		}
	}
	if len(live) == 0 {
		return nil, nil, nil
	}
	if p.Spec.PropagateDependencies == nil || *p.Spec.PropagateDependencies {
		if err := r.addDependencies(ctx, p, live, add); err != nil {
			return nil, nil, err
		}
	}
	keys := slices.Sorted(maps.Keys(live))
	out := make([]plan.Template, len(keys))
	for i, k := range keys {
		out[i] = plan.NewTemplate(render.Clean(live[k]), direct[k])
	}
	return out, live, nil
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
func (r *Reconciler) addDependencies(ctx context.Context, p *v1alpha1.Placement, live map[string]*unstructured.Unstructured, add func(*unstructured.Unstructured, bool)) error {
	for _, key := range slices.Sorted(maps.Keys(live)) {
		u := live[key]
		for _, ref := range render.Dependencies(u) {
			dep, err := r.Templates.Get(ctx, coreRefs[ref.Kind], p.Namespace, ref.Name)
			if err != nil {
				return err
			}
			add(dep, false)
		}
		gvk := u.GroupVersionKind()
		if g := gvk.Group; strings.Contains(g, ".") && !strings.HasSuffix(g, ".k8s.io") {
			m, err := r.Templates.mapper.RESTMapping(schema.GroupKind{Group: g, Kind: gvk.Kind}, gvk.Version)
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

// writeWork creates or updates one cluster's Work with the content the plan gives it.
func (r *Reconciler) writeWork(ctx context.Context, p *v1alpha1.Placement, old *v1alpha1.Work, wr plan.Write) error {
	labels := map[string]string{
		v1alpha1.LabelPlacementNamespace: p.Namespace,
		v1alpha1.LabelPlacement:          p.Name,
		v1alpha1.LabelCluster:            wr.Cluster,
	}
	if old == nil {
		w := &v1alpha1.Work{
			ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace(wr.Cluster), Name: plan.WorkName(p), Labels: labels,
				Annotations: map[string]string{v1alpha1.AnnotationRevision: wr.Revision}},
			Spec: v1alpha1.WorkSpec{Manifests: wr.Manifests, DeletionPolicy: wr.DeletionPolicy, DriftPolicy: v1alpha1.DriftCorrect},
		}
		if err := r.Client.Create(ctx, w); err != nil {
			if apierrors.IsAlreadyExists(err) {
				// Made by an earlier reconcile that this one's cache does not show yet; the
				// next reconcile compares it.
				return nil
			}
			return fmt.Errorf("create the work for cluster %s: %w", wr.Cluster, err)
		}
		r.Recorder.Eventf(p, nil, corev1.EventTypeNormal, "WorkCreated", "Propagate", "cluster %s gets %d resource(s)", wr.Cluster, len(wr.Manifests))
		return nil
	}
	w := old.DeepCopy()
	w.Spec.Manifests, w.Spec.DeletionPolicy = wr.Manifests, wr.DeletionPolicy
	if w.Annotations == nil {
		w.Annotations = map[string]string{}
	}
	w.Annotations[v1alpha1.AnnotationRevision] = wr.Revision
	if w.Labels == nil {
		w.Labels = map[string]string{}
	}
	maps.Copy(w.Labels, labels)
	// A cluster whose agent gets its Works on the delivery stream gets the content from
	// there at once; the store follows at a paced rate (delivery.Server.Hand). Content that a
	// killed hub handed and never stored leaves its agent ahead of the stored Work: a rollout
	// takes that cluster as Unknown (plan.AheadWindow) until it is handed again or reset.
	if r.Reports != nil && old.DeletionTimestamp.IsZero() {
		if r.Reports.Backlogged(old) {
			return errBacklog
		}
		if r.Reports.Hand(old, w) {
			return nil
		}
	}
	content := workContent(wr)
	if r.wroteRecently(client.ObjectKeyFromObject(old), content) {
		return nil // this hub wrote it a moment ago; the cache is behind
	}
	// The hub alone writes a Work's spec, so a patch without a resourceVersion is safe, and
	// does not fail because the agent wrote the status a moment ago.
	if err := r.Client.Patch(ctx, w, client.MergeFrom(old)); err != nil {
		return fmt.Errorf("update the work for cluster %s: %w", wr.Cluster, err)
	}
	r.remember(client.ObjectKeyFromObject(old), content)
	return nil
}

// removeWork deletes a Work whose cluster is no longer chosen; with orphan (the Placement's
// preserveResourcesOnDeletion) the agent leaves the resources on the member.
func (r *Reconciler) removeWork(ctx context.Context, p *v1alpha1.Placement, w *v1alpha1.Work, orphan bool) error {
	if w == nil || !w.DeletionTimestamp.IsZero() {
		return nil
	}
	// The deletion policy that counts is the stored one, which the agent finalizes the Work
	// with: w may show content handed to the delivery stream and not stored yet (whose
	// write the deletion then makes fail).
	stored := &v1alpha1.Work{}
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(w), stored); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !stored.DeletionTimestamp.IsZero() {
		return nil
	}
	want := v1alpha1.DeletionDelete
	if orphan {
		want = v1alpha1.DeletionOrphan
	}
	if stored.Spec.DeletionPolicy != want && (orphan || w.Spec.DeletionPolicy == v1alpha1.DeletionDelete) {
		stored.Spec.DeletionPolicy = want
		if err := r.Client.Update(ctx, stored); err != nil {
			return fmt.Errorf("set the deletion policy of work %s/%s: %w", w.Namespace, w.Name, err)
		}
	}
	w = stored
	// Only the Work whose policy was just read: one that changed since (the delivery
	// stream's Writer stored a handed content) is read again at the next reconcile.
	uid, rv := w.UID, w.ResourceVersion
	if err := r.Client.Delete(ctx, w, client.Preconditions{UID: &uid, ResourceVersion: &rv}); err != nil && !apierrors.IsNotFound(err) {
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
	var errs []error
	for _, w := range works {
		errs = append(errs, r.removeWork(ctx, p, w, p.Spec.PreserveResourcesOnDeletion))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	before := p.DeepCopy()
	controllerutil.RemoveFinalizer(p, v1alpha1.PlacementFinalizer)
	if err := r.Client.Patch(ctx, p, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("remove finalizer: %w", err)
	}
	return nil
}

// summarize writes the plan's summary annotation on each direct template, when it changed.
func (r *Reconciler) summarize(ctx context.Context, templates []plan.Template, live map[string]*unstructured.Unstructured, summaries map[string]string) error {
	for _, t := range templates {
		s, ok := summaries[t.Key]
		u := live[t.Key]
		if !ok || u == nil || u.GetAnnotations()[v1alpha1.AnnotationSummary] == s {
			continue
		}
		patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, v1alpha1.AnnotationSummary, s)
		target := &unstructured.Unstructured{}
		target.SetGroupVersionKind(u.GroupVersionKind())
		target.SetNamespace(u.GetNamespace())
		target.SetName(u.GetName())
		if err := r.Client.Patch(ctx, target, client.RawPatch(types.MergePatchType, patch)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("annotate %s %s: %w", t.ID.Kind, t.ID.Name, err)
		}
	}
	return nil
}

// metricFresh is how long a metric gate's reading is reused.
const metricFresh = 2 * time.Second

type timedReading struct {
	plan.Reading
	at time.Time
}

// readMetric reads a metric gate's query, or reuses a reading of it younger than metricFresh.
func (r *Reconciler) readMetric(ctx context.Context, q plan.MetricQuery) plan.Reading {
	now := time.Now()
	r.readingsMu.Lock()
	for k, v := range r.readings {
		if now.Sub(v.at) >= metricFresh {
			delete(r.readings, k)
		}
	}
	got, ok := r.readings[q]
	r.readingsMu.Unlock()
	if ok {
		return got.Reading
	}
	reading := r.Metrics.Read(ctx, q)
	r.readingsMu.Lock()
	if r.readings == nil {
		r.readings = map[plan.MetricQuery]timedReading{}
	}
	r.readings[q] = timedReading{Reading: reading, at: now}
	r.readingsMu.Unlock()
	return reading
}
