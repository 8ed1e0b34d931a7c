// Package plan decides what one Placement's clusters get. It is pure: the Placement (spec and
// the status it last wrote), the templates it selects, the fleet, the Works as they are, the
// stored revisions a rollout may hand out and the time go in; the content of each cluster's
// Work, the Works to remove, the Placement's next status, the events to record, the summary of
// each template and when to look again come out. It never calls a client or reads a clock.
//
// It owns its input types and imports only the API and the other pure packages (scheduler,
// rollout, render, manifest). The propagation controller is its only caller: it lists, calls
// Plan and writes what Plan says. A later transport for work (streams instead of Work objects)
// changes only how the output reaches the agents.
package plan

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/manifest"
	"github.com/convoy-dev/convoy/internal/render"
	"github.com/convoy-dev/convoy/internal/rollout"
	"github.com/convoy-dev/convoy/internal/scheduler"
)

// Template is one object the Placement selected on the hub, cleaned of what only the hub's copy
// has (render.Clean).
type Template struct {
	Obj *unstructured.Unstructured
	ID  v1alpha1.ResourceIdentifier
	Key string
	// Direct is true for what the Placement's selectors chose, false for what those depend on.
	// Direct templates get a summary.
	Direct bool
}

// NewTemplate makes a Template of a clean object.
func NewTemplate(clean *unstructured.Unstructured, direct bool) Template {
	gvk := clean.GroupVersionKind()
	id := v1alpha1.ResourceIdentifier{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, Namespace: clean.GetNamespace(), Name: clean.GetName()}
	return Template{Obj: clean, ID: id, Key: manifest.Key(id), Direct: direct}
}

// Reading is one evaluation of a rollout's metric gate (the rollout engine's).
type Reading = rollout.Reading

// MetricQuery is a metric gate's query as the store must run it: the PromQL, with the wave's
// clusters and the Placement's namespace put in, and Filter, a series selector that the store
// adds to every selector of the query (VictoriaMetrics' extra_filters), so that a gate reads only
// its own wave's clusters' series of its own namespace, whatever the query says.
type MetricQuery struct {
	Query, Filter string
}

// Input is everything one decision about a Placement depends on.
type Input struct {
	// Placement is the Placement as stored: its spec, the annotations that carry rollout
	// commands, and the status it last wrote.
	Placement *v1alpha1.Placement
	// NamespaceLabels are the labels of the Placement's namespace on the hub, which every
	// cluster gets with it; nil when the hub has no such namespace.
	NamespaceLabels map[string]string
	// Templates are what the Placement selects, with what they depend on, sorted by Key.
	Templates []Template
	// SelectErr says why the templates could not be selected.
	SelectErr error
	// Clusters is the fleet.
	Clusters []scheduler.Cluster
	// Works are the Placement's Works as they are, by cluster.
	Works map[string]*v1alpha1.Work
	// Unconfirmed names the clusters whose Works' status may be behind what their agents
	// reported (a restarted hub whose agent has not reported again): a rollout takes them as
	// Unknown, neither Available nor regressed.
	Unconfirmed map[string]bool
	// Started is when this hub started: within AheadWindow of it, a rollout takes a cluster
	// whose agent reports a generation its Work has not reached (content that a killed hub
	// handed and never stored) as Unknown too. Zero: never.
	Started time.Time
	// Revisions are the templates of stored revisions, by hash: the rollout's target and stable
	// revision when they are not the templates' own. A missing one leaves the clusters that
	// run it as they are.
	Revisions map[string][]Template
	// Metrics are the readings of the rollout's metric gates, by query as Output.MetricQueries
	// names it. A query without a reading counts as not read yet.
	Metrics map[MetricQuery]Reading
	// Bindings are the ServiceBindings of the Placement's namespace whose service is placed
	// somewhere: a workload template they name gets them projected (render.Project) in the
	// clusters where their service is.
	Bindings []Binding
	// Now is the time of the decision.
	Now time.Time
}

// Binding is one ServiceBinding: what it projects, into which workload, and the clusters its
// service is placed on.
type Binding struct {
	render.Binding
	Group, Kind, Workload string
	Clusters              map[string]bool
}

// bindingsFor are the bindings projected into template t in cluster c, and a key that names
// them (for the render cache).
func (pl *planner) bindingsFor(t Template, c string) ([]render.Binding, string) {
	var out []render.Binding
	var key strings.Builder
	for _, b := range pl.in.Bindings {
		if b.Clusters[c] && b.Workload == t.ID.Name && b.Kind == t.ID.Kind && b.Group == t.ID.Group {
			out = append(out, b.Binding)
			key.WriteString(b.Name + "\x00")
		}
	}
	return out, key.String()
}

// Output is the decision.
type Output struct {
	// Status is the Placement's next status.
	Status v1alpha1.PlacementStatus
	// Writes are the Works whose content changes (or that are new), by cluster name order.
	Writes []Write
	// Removals are the clusters whose Work goes.
	Removals []Removal
	// Kept are the clusters whose Work the plan rendered again and found as it wants it
	// (not those it left alone, failing static), by cluster name order.
	Kept []string
	// Revision, with a rollout, is the revision of the templates as they are: the caller stores
	// it (keeping Keep) before it writes any Work that names it.
	Revision *Revision
	// Summaries are the summary annotations of the direct templates, by Key.
	Summaries map[string]string
	// Events to record on the Placement.
	Events []Event
	// Awaiting counts the clusters in Status whose agents have not reported on the content
	// their Work has (or is about to have): their rows change as those reports come in.
	Awaiting int
	// RecheckAfter is when the decision changes by itself if nothing else happens.
	RecheckAfter time.Duration
	// MetricQueries are the metric gates' queries the decision depends on (the soaking wave's),
	// with the wave's clusters and namespace in them: the caller reads them from the fleet
	// metrics store, and plans again with their readings in Input.Metrics when they were not
	// there.
	MetricQueries []MetricQuery
}

// Write is one cluster's Work content.
type Write struct {
	Cluster   string
	Manifests []runtime.RawExtension
	// Revision names the template revision the Work carries ("" without a rollout).
	Revision       string
	DeletionPolicy v1alpha1.DeletionPolicy
	// Create is true when the cluster has no Work yet.
	Create bool
}

// Removal is a Work that goes because its cluster is no longer chosen.
type Removal struct {
	Cluster string
	// Orphan: the agent leaves the resources on the member (preserveResourcesOnDeletion).
	Orphan bool
}

// Revision is one revision of a Placement's templates.
type Revision struct {
	Hash      string
	Templates []Template
	// Keep are revisions that must not be pruned: the rollout's target and stable one.
	Keep []string
}

// Event is one event to record on the Placement.
type Event struct {
	Type, Reason, Action, Note string
}

// DefaultRecheck is how soon a Placement is looked at again when nothing else wakes it:
// capacity and health do not always come with an event worth a wake-up.
const DefaultRecheck = time.Minute

// ClusterOf is what the scheduler knows of a Cluster: its name, labels and topology, its
// taints, whether it is Ready and since when, whether it is being deleted, and the capacity its
// agent reports free (allocatable less requested).
func ClusterOf(c *v1alpha1.Cluster) scheduler.Cluster {
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
	return sc
}

// WorkName is the name of a Placement's Work in each cluster's namespace. Namespace names
// have no dots, so it cannot collide.
func WorkName(p *v1alpha1.Placement) string { return p.Namespace + "." + p.Name }

// planner holds one decision under way.
type planner struct {
	in      Input
	p       *v1alpha1.Placement
	out     Output
	byName  map[string]scheduler.Cluster
	recheck time.Duration
	// writing names the clusters whose Work gets new content; views caches status's view of
	// each cluster's Work.
	writing map[string]bool
	views   map[string]*view
	// decoded caches status's decoded manifests by their bytes, read only: most clusters'
	// Works hold the same ones.
	decoded map[string]manifest.Object
}

// Plan decides what one Placement's clusters get.
func Plan(in Input) Output {
	pl := &planner{in: in, p: in.Placement, recheck: DefaultRecheck, byName: map[string]scheduler.Cluster{}, writing: map[string]bool{}}
	for _, c := range in.Clusters {
		pl.byName[c.Name] = c
	}
	pl.out.Status = *in.Placement.Status.DeepCopy()
	pl.out.Status.ObservedGeneration = in.Placement.Generation
	pl.plan()
	pl.out.RecheckAfter = pl.recheck
	return pl.out
}

func (pl *planner) plan() {
	p, st := pl.p, &pl.out.Status
	var previous []string
	for _, c := range p.Status.Clusters {
		previous = append(previous, c.Cluster)
	}
	decision := scheduler.Schedule(pl.in.Clusters, p.Spec, previous)

	// Fail static: without templates or a decision, leave every Work as it is.
	switch {
	case pl.in.SelectErr != nil:
		pl.condition(v1alpha1.PlacementResourcesSelected, false, "SelectionFailed", pl.in.SelectErr.Error()+"; what was placed before stays as it is")
	case len(pl.in.Templates) == 0:
		pl.condition(v1alpha1.PlacementResourcesSelected, false, "NoMatchingResources",
			fmt.Sprintf("the resource selectors match nothing in namespace %s; what was placed before stays as it is", p.Namespace))
	default:
		pl.condition(v1alpha1.PlacementResourcesSelected, true, "Selected", fmt.Sprintf("%d resource(s) selected", len(pl.in.Templates)))
	}
	schedMsg := decision.Message
	if !decision.OK {
		schedMsg += "; what was placed before stays as it is"
	}
	pl.condition(v1alpha1.PlacementScheduled, decision.OK, decision.Reason, schedMsg)

	failedOver := map[string]bool{}
	if decision.OK {
		failedOver = pl.failover(decision)
	}
	planned := map[string]*Write{} // the content each chosen cluster's Work will have
	renderErrs := map[string]string{}
	var shares map[string]map[string]int32
	if pl.in.SelectErr == nil && len(pl.in.Templates) > 0 && decision.OK {
		var revisionOf map[string]string
		if p.Spec.Rollout != nil {
			revisionOf = pl.rollout(decision)
		} else {
			st.Rollout = nil
			meta.RemoveStatusCondition(&st.Conditions, v1alpha1.PlacementRolloutProgressing)
		}
		shares = pl.propagate(decision, revisionOf, failedOver, planned, renderErrs)
	}
	pl.status(decision, shares, planned, renderErrs)
	pl.summaries(planned)
}

// failover moves lost clusters' Divided shares to the healthy ones, and brings them back once
// the cluster is stable again. The decision lives in the status.
func (pl *planner) failover(d scheduler.Decision) map[string]bool {
	st := &pl.out.Status
	fo := scheduler.Failover(d.Clusters, pl.byName, pl.p.Spec.Failover, pl.p.Status.FailedOver, pl.in.Now)
	st.FailedOver = fo.FailedOver
	failedOver := map[string]bool{}
	reasons := map[string]string{}
	for _, f := range fo.FailedOver {
		failedOver[f.Cluster] = true
		reasons[f.Cluster] = f.Reason
	}
	for _, name := range fo.Added {
		pl.event(corev1.EventTypeWarning, "FailedOver", "Failover", "cluster %s is lost: %s; its Divided replicas move to the healthy clusters, and nothing is deleted on it", name, reasons[name])
	}
	for _, name := range fo.Returned {
		pl.event(corev1.EventTypeNormal, "FailedBack", "Failover", "cluster %s has been Ready long enough; its share is rebalanced back to it", name)
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
		pl.condition(v1alpha1.PlacementFailedOver, true, "ClustersLost", msg)
	case fo.Held != "":
		pl.condition(v1alpha1.PlacementFailedOver, false, "NowhereToGo", fo.Held)
	default:
		pl.condition(v1alpha1.PlacementFailedOver, false, "AllClustersHealthy", "no cluster's share is failed over")
	}
	pl.recheckIn(fo.RecheckAfter)
	return failedOver
}

// propagate decides the content of every chosen cluster's Work and which Works go. With a
// rollout, each cluster gets the templates of the revision the rollout gives it. It returns
// the Divided shares of the templates as they are, by template and cluster.
func (pl *planner) propagate(d scheduler.Decision, revisionOf map[string]string, failedOver map[string]bool,
	planned map[string]*Write, renderErrs map[string]string) map[string]map[string]int32 {
	p := pl.p
	latest := pl.in.Templates
	shares := pl.share(latest, d, failedOver)
	sharesOf := map[string]map[string]map[string]int32{} // revision -> template -> cluster -> replicas
	policy := v1alpha1.DeletionDelete
	if p.Spec.PreserveResourcesOnDeletion {
		policy = v1alpha1.DeletionOrphan
	}
	var nsManifest *runtime.RawExtension
	if pl.in.NamespaceLabels != nil {
		nsm := &unstructured.Unstructured{}
		nsm.SetAPIVersion("v1")
		nsm.SetKind("Namespace")
		nsm.SetName(p.Namespace)
		l := map[string]string{}
		for k, v := range pl.in.NamespaceLabels {
			if k != corev1.LabelMetadataName {
				l[k] = v
			}
		}
		if len(l) > 0 {
			nsm.SetLabels(l)
		}
		raw, _ := nsm.MarshalJSON()
		nsManifest = &runtime.RawExtension{Raw: raw}
	}

	// A template renders the same for clusters with the same share and the same matching
	// overrides (render.OverrideKey): it is rendered once for them, so a Placement of a thousand
	// clusters without overrides renders each template once, not a thousand times. The
	// clusters' Works share the rendered bytes, which nothing changes.
	type renderKey struct {
		t         *unstructured.Unstructured
		share     int32
		hasShare  bool
		overrides string
		bindings  string
	}
	type rendering struct {
		raw  []byte
		err  error
		keep bool // on err: the cluster keeps what it has of the template
	}
	renders := map[renderKey]rendering{}

	chosen := map[string]bool{}
	for _, choice := range d.Clusters {
		chosen[choice.Name] = true
		if failedOver[choice.Name] {
			continue // its Work stays exactly as it was while the cluster is lost
		}
		c := pl.byName[choice.Name]
		old := pl.in.Works[c.Name]
		set, tshares, revision := latest, shares, ""
		if revisionOf != nil {
			revision = revisionOf[c.Name]
			if s, ok := pl.in.Revisions[revision]; ok && revision != pl.out.Revision.Hash {
				if sharesOf[revision] == nil {
					sharesOf[revision] = pl.share(s, d, failedOver)
				}
				set, tshares = s, sharesOf[revision]
			} else if !ok && revision != pl.out.Revision.Hash {
				renderErrs[c.Name] = fmt.Sprintf("revision %s of the templates is not stored any more (its ControllerRevision was deleted); the cluster keeps what it has", revision)
				continue
			}
		}
		// What the cluster has of a template, for one that fails to render: decoded only then.
		var oldManifests map[string]runtime.RawExtension
		previous := func(key string) (runtime.RawExtension, bool) {
			if oldManifests == nil {
				oldManifests = map[string]runtime.RawExtension{}
				if old != nil {
					for i, o := range manifest.Decode(old.Spec.Manifests) {
						if o.Err == nil {
							oldManifests[manifest.Key(o.ID)] = old.Spec.Manifests[i]
						}
					}
				}
			}
			m, ok := oldManifests[key]
			return m, ok
		}
		var manifests []runtime.RawExtension
		if nsManifest != nil {
			manifests = append(manifests, *nsManifest)
		}
		var failed []string
		overrideKey := render.OverrideKey(c, p.Spec.Overrides)
		for _, t := range set {
			var share *int32
			bindings, bindingKey := pl.bindingsFor(t, c.Name)
			k := renderKey{t: t.Obj, overrides: overrideKey, bindings: bindingKey}
			if s, ok := tshares[t.Key][c.Name]; ok {
				share = &s
				k.share, k.hasShare = s, true
			}
			r, ok := renders[k]
			if !ok {
				r.raw, r.keep, r.err = renderRaw(t, c, share, p.Spec.Overrides, bindings)
				renders[k] = r
			}
			if r.err != nil {
				failed = append(failed, r.err.Error())
				if prev, ok := previous(t.Key); ok && r.keep {
					manifests = append(manifests, prev) // keep what the cluster has
				}
				continue
			}
			manifests = append(manifests, runtime.RawExtension{Raw: r.raw})
		}
		if len(failed) > 0 {
			renderErrs[c.Name] = strings.Join(failed, "; ")
		}
		w := &Write{Cluster: c.Name, Manifests: manifests, Revision: revision, DeletionPolicy: policy, Create: old == nil}
		planned[c.Name] = w
		if old == nil || !SameManifests(old.Spec.Manifests, manifests) || old.Spec.DeletionPolicy != policy || old.Annotations[v1alpha1.AnnotationRevision] != revision {
			pl.out.Writes = append(pl.out.Writes, *w)
			pl.writing[c.Name] = true
		} else if len(failed) == 0 {
			pl.out.Kept = append(pl.out.Kept, c.Name)
		}
	}
	names := make([]string, 0, len(pl.in.Works))
	for name := range pl.in.Works {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if w := pl.in.Works[name]; !chosen[name] && w.DeletionTimestamp.IsZero() {
			pl.out.Removals = append(pl.out.Removals, Removal{Cluster: name, Orphan: p.Spec.PreserveResourcesOnDeletion})
		}
	}
	return shares
}

// renderRaw renders template t for cluster c (render.ForCluster), projects its bindings
// there (render.Project) and encodes it. keep says
// that the cluster keeps what it has of the template: for a render error, not for an error
// encoding what rendered.
func renderRaw(t Template, c scheduler.Cluster, share *int32, overrides []v1alpha1.Override, bindings []render.Binding) (raw []byte, keep bool, err error) {
	u, err := render.ForCluster(t.Obj, c, share, overrides)
	if err != nil {
		return nil, true, err
	}
	if err := render.Project(u, bindings); err != nil {
		return nil, true, err
	}
	if raw, err = u.MarshalJSON(); err != nil {
		return nil, false, fmt.Errorf("%s %s: %v", t.ID.Kind, t.ID.Name, err)
	}
	return raw, false, nil
}

// share divides the Divided workloads of a set of templates: template key -> cluster ->
// replicas. Failed-over clusters get none (see scheduler.Share).
func (pl *planner) share(set []Template, d scheduler.Decision, failedOver map[string]bool) map[string]map[string]int32 {
	rs := pl.p.Spec.Replicas
	if rs == nil || rs.Type != v1alpha1.Divided {
		return nil
	}
	moveStateful := pl.p.Spec.Failover != nil && pl.p.Spec.Failover.Stateful
	out := map[string]map[string]int32{}
	for _, t := range set {
		total, ok := render.Replicas(t.Obj)
		if !ok {
			continue
		}
		current := map[string]scheduler.Current{}
		for name, w := range pl.in.Works {
			cur := scheduler.Current{}
			cur.Replicas, cur.Sent = replicasIn(w, t.Key)
			cur.Available = availableIn(w, t.Key)
			cur.AvailableReplicas = availableReplicas(w, t.Key)
			current[name] = cur
		}
		w := scheduler.Workload{Replicas: total, Stateful: render.Stateful(t.Obj), Requests: render.PodRequests(t.Obj)}
		out[t.Key] = scheduler.Share(w, d.Clusters, pl.byName, rs, failedOver, moveStateful, current)
	}
	return out
}

// SameManifests compares two manifest lists by content, not by bytes: only manifests whose
// bytes differ are decoded (a thousand clusters' Works are compared on each reconcile, and
// most are byte for byte what was rendered before).
func SameManifests(a, b []runtime.RawExtension) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if bytes.Equal(a[i].Raw, b[i].Raw) && len(a[i].Raw) > 0 {
			continue
		}
		d := manifest.Decode([]runtime.RawExtension{a[i], b[i]})
		if d[0].Err != nil || d[1].Err != nil {
			return false
		}
		if d[0].Hash != d[1].Hash && !equality.Semantic.DeepEqual(d[0].Obj.Object, d[1].Obj.Object) {
			return false
		}
	}
	return true
}

// replicasIn reads the replicas a Work sends for one template.
func replicasIn(w *v1alpha1.Work, key string) (int32, bool) {
	if w == nil {
		return 0, false
	}
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

// current says whether the agent has reported on the Work's content as it is.
func current(w *v1alpha1.Work) bool { return w != nil && w.Status.ObservedGeneration == w.Generation }

// ahead says whether a Work's agent reports a generation the Work has not reached.
func ahead(w *v1alpha1.Work) bool { return w != nil && w.Status.ObservedGeneration > w.Generation }

// AheadWindow is how long after the hub started (Input.Started) a rollout takes a cluster whose
// agent reports a generation its Work has not reached as Unknown: long enough for the agents
// to reconnect and be handed that content again, or reset. After it the report counts for
// what it is, not Available at the Work's generation, so that a cluster stuck there (its
// content no longer renders for it, its revision is gone) pauses the rollout where a person
// sees it, instead of holding it forever.
const AheadWindow = 2 * time.Minute

// aheadRecheck is how often a Placement with such a cluster is looked at again.
const aheadRecheck = 2 * time.Second

// availableIn says whether the member reports the template's resource healthy, for what the
// Work sends now.
func availableIn(w *v1alpha1.Work, key string) bool {
	st := resourceStatus(w, key)
	return st != nil && current(w) && st.State == v1alpha1.ResourceApplied && st.Health == v1alpha1.HealthHealthy
}

func availableReplicas(w *v1alpha1.Work, key string) int32 {
	if st := resourceStatus(w, key); st != nil && st.AvailableReplicas != nil {
		return *st.AvailableReplicas
	}
	return 0
}

func (pl *planner) condition(typ string, ok bool, reason, msg string) {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&pl.out.Status.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg,
		ObservedGeneration: pl.p.Generation, LastTransitionTime: metav1.NewTime(pl.in.Now)})
}

func (pl *planner) event(typ, reason, action, note string, args ...any) {
	pl.out.Events = append(pl.out.Events, Event{Type: typ, Reason: reason, Action: action, Note: fmt.Sprintf(note, args...)})
}

// recheckIn asks to look again d from now (plus a moment, so that the timer has run out).
func (pl *planner) recheckIn(d time.Duration) {
	if d > 0 && d+100*time.Millisecond < pl.recheck {
		pl.recheck = d + 100*time.Millisecond
	}
}
