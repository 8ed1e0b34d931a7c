package plan

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/manifest"
	"github.com/convoy-dev/convoy/internal/render"
	"github.com/convoy-dev/convoy/internal/scheduler"
	"github.com/convoy-dev/convoy/internal/transcript"
)

var update = flag.Bool("update", false, "rewrite the expected output in testdata/*.txt")

var revisionName = regexp.MustCompile(`\br[0-9]+\b`)

// TestTranscripts runs the data-driven transcripts in testdata/. A transcript is a series of
// blocks: a command line (and, for some commands, YAML lines), a line "----", the expected
// output, then a blank line. The harness plays the rest of the system: it writes what the
// plan says (Works, status, revisions), and its agents report only when told to.
//
//	cluster NAME [region=R] [zones=a,b] [labels=k=v,k=v] [taints=k:Effect,...] [lost] [since=S]
//	        [free=MILLICPU,BYTES,PODS] [deleting]     add or replace a cluster (a line each)
//	remove-cluster NAME
//	namespace [labels=k=v,...]                         the hub namespace of the Placement
//	template [dependency]                              then the object's YAML; add or replace
//	delete-template KIND/NAME
//	placement NAMESPACE/NAME                           then the spec's YAML (generation moves on)
//	annotate KEY=VALUE                                 on the Placement (revisions as rN)
//	select-error [MESSAGE]                             selecting the templates fails (or no more)
//	plan at=SECONDS                                    decide, and write what it says
//	report CLUSTER available|unavailable|failed=MSG [replicas=N] [condition=TYPE=STATUS] [ahead]
//	                                                   the agent's report on the Work as it is
//	                                                   (ahead: of the next generation, which a
//	                                                   killed hub handed and never stored)
//	show CLUSTER                                       the cluster's Work, manifest by manifest
//	restart [at=SECONDS]                               only what the API server stores survives;
//	                                                   the hub starts again at that time (0)
//	metric value=V|empty|err=TEXT                      what the metrics store answers a metric
//	                                                   gate's query from now on (plan reads it
//	                                                   and decides again, as the controller does)
//
// go test -run TestTranscripts -update rewrites the expected output; review the diff.
func TestTranscripts(t *testing.T) {
	transcript.Run(t, *update, func(t *testing.T) func([]string) string {
		w := &world{t: t, t0: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), clusters: map[string]scheduler.Cluster{},
			templates: map[string]Template{}, works: map[string]*v1alpha1.Work{}, stored: map[string][]Template{}, names: map[string]string{},
			placement: &v1alpha1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}}
		return w.run
	})
}

// world is what the harness keeps between blocks: the hub's objects as the API server would.
type world struct {
	bindings  map[string]Binding
	t         *testing.T
	t0        time.Time
	clusters  map[string]scheduler.Cluster
	nsLabels  map[string]string
	templates map[string]Template
	placement *v1alpha1.Placement
	works     map[string]*v1alpha1.Work
	stored    map[string][]Template // revisions the controller stored
	names     map[string]string     // revision hash -> r1, r2, ... for readable output
	selectErr error
	started   time.Time // when the hub last started
	metric    *Reading  // the store's answer to any metric gate's query
}

func args(fields []string) map[string]string {
	a := map[string]string{}
	for _, f := range fields {
		k, v, _ := strings.Cut(f, "=")
		a[k] = v
	}
	return a
}

// num reads a whole number; a malformed one fails the test rather than reading as 0.
func (w *world) num(s string) int {
	w.t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		w.t.Fatalf("transcript: %q is not a whole number", s)
	}
	return n
}

func (w *world) at(s string) time.Time { return w.t0.Add(time.Duration(w.num(s)) * time.Second) }

func pairs(s string) map[string]string {
	if s == "" {
		return nil
	}
	m := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func (w *world) run(input []string) string {
	w.t.Helper()
	fields := strings.Fields(input[0])
	a := args(fields[1:])
	switch fields[0] {
	case "cluster":
		for _, l := range input {
			w.cluster(strings.Fields(l))
		}
		return "ok"
	case "remove-cluster":
		delete(w.clusters, fields[1])
		return "ok"
	case "namespace":
		w.nsLabels = pairs(a["labels"])
		if w.nsLabels == nil {
			w.nsLabels = map[string]string{}
		}
		return "ok"
	case "template":
		// As the API server serves it: JSON, whole numbers as int64.
		raw, err := yaml.YAMLToJSON([]byte(strings.Join(input[1:], "\n")))
		if err != nil {
			w.t.Fatalf("template: %v", err)
		}
		o := manifest.Decode([]runtime.RawExtension{{Raw: raw}})[0]
		if o.Err != nil {
			w.t.Fatalf("template: %v", o.Err)
		}
		_, dep := a["dependency"]
		tpl := NewTemplate(render.Clean(o.Obj), !dep)
		w.templates[tpl.Key] = tpl
		return tpl.Key
	case "delete-template":
		kind, name, _ := strings.Cut(fields[1], "/")
		for k, tpl := range w.templates {
			if tpl.ID.Kind == kind && tpl.ID.Name == name {
				delete(w.templates, k)
			}
		}
		return "ok"
	case "placement":
		ns, name, _ := strings.Cut(fields[1], "/")
		var spec v1alpha1.PlacementSpec
		if err := yaml.UnmarshalStrict([]byte(strings.Join(input[1:], "\n")), &spec); err != nil {
			w.t.Fatalf("placement: %v", err)
		}
		w.placement.Namespace, w.placement.Name, w.placement.Spec = ns, name, spec
		w.placement.Generation++
		return fmt.Sprintf("generation %d", w.placement.Generation)
	case "annotate":
		if w.placement.Annotations == nil {
			w.placement.Annotations = map[string]string{}
		}
		for k, v := range a {
			// A revision named as the output names it (rN) stands for its hash.
			w.placement.Annotations[k] = revisionName.ReplaceAllStringFunc(v, func(n string) string {
				for h, name := range w.names {
					if name == n {
						return h
					}
				}
				return n
			})
		}
		return "ok"
	case "binding":
		// binding NAME workload=KIND/NAME secret=S clusters=a,b [env=NAME:KEY,...]
		kind, name, _ := strings.Cut(a["workload"], "/")
		group := "apps"
		if kind == "Job" || kind == "CronJob" {
			group = "batch"
		}
		b := Binding{Binding: render.Binding{Name: fields[1], Secret: a["secret"]}, Group: group, Kind: kind, Workload: name, Clusters: map[string]bool{}}
		for c := range strings.SplitSeq(a["clusters"], ",") {
			if c != "" {
				b.Clusters[c] = true
			}
		}
		for e := range strings.SplitSeq(a["env"], ",") {
			if n, k, ok := strings.Cut(e, ":"); ok {
				b.Env = append(b.Env, v1alpha1.BindingEnv{Name: n, Key: k})
			}
		}
		if w.bindings == nil {
			w.bindings = map[string]Binding{}
		}
		if _, ok := a["delete"]; ok {
			delete(w.bindings, fields[1])
		} else {
			w.bindings[fields[1]] = b
		}
		return "ok"
	case "select-error":
		w.selectErr = nil
		if len(fields) > 1 {
			w.selectErr = errors.New(strings.Join(fields[1:], " "))
		}
		return "ok"
	case "plan":
		return w.plan(w.at(a["at"]))
	case "report":
		return w.report(fields[1], fields[2:])
	case "show":
		return w.show(fields[1])
	case "metric":
		r := Reading{Taken: true}
		switch {
		case a["value"] != "":
			v, err := strconv.ParseFloat(a["value"], 64)
			if err != nil {
				w.t.Fatal(err)
			}
			r.Value = v
		case a["err"] != "":
			r.Err = strings.ReplaceAll(a["err"], "_", " ")
		default:
			_, r.Empty = a["empty"]
		}
		w.metric = &r
		return "ok"
	case "restart":
		w.started = w.at(cmp.Or(args(fields[1:])["at"], "0"))
		return w.restart()
	}
	w.t.Fatalf("unknown command %q", fields[0])
	return ""
}

func (w *world) cluster(f []string) {
	a := args(f[2:])
	c := scheduler.Cluster{Name: f[1], Region: a["region"], Labels: pairs(a["labels"]), Healthy: true, Since: w.t0}
	if z := a["zones"]; z != "" {
		c.Zones = strings.Split(z, ",")
	}
	if _, ok := a["lost"]; ok {
		c.Healthy = false
	}
	if s, ok := a["since"]; ok {
		c.Since = w.at(s)
	}
	_, c.Deleting = a["deleting"]
	if tt := a["taints"]; tt != "" {
		for _, taint := range strings.Split(tt, ",") {
			k, e, _ := strings.Cut(taint, ":")
			c.Taints = append(c.Taints, corev1.Taint{Key: k, Effect: corev1.TaintEffect(e)})
		}
	}
	if fr := a["free"]; fr != "" {
		p := strings.Split(fr, ",")
		if len(p) != 3 {
			w.t.Fatalf("free=MILLICPU,BYTES,PODS: %q", fr)
		}
		c.Free = &scheduler.Resources{MilliCPU: int64(w.num(p[0])), Memory: int64(w.num(p[1])), Pods: int64(w.num(p[2]))}
	}
	w.clusters[c.Name] = c
}

func (w *world) input(now time.Time) Input {
	in := Input{Placement: w.placement, NamespaceLabels: w.nsLabels, Works: w.works, Now: now, SelectErr: w.selectErr, Started: w.started}
	for _, name := range sorted(mapsKeys(w.clusters)) {
		in.Clusters = append(in.Clusters, w.clusters[name])
	}
	for _, k := range sorted(mapsKeys(w.templates)) {
		if w.selectErr == nil {
			in.Templates = append(in.Templates, w.templates[k])
		}
	}
	for _, name := range sorted(mapsKeys(w.bindings)) {
		in.Bindings = append(in.Bindings, w.bindings[name])
	}
	if rs := w.placement.Status.Rollout; rs != nil {
		in.Revisions = map[string][]Template{}
		for _, h := range []string{rs.Target, rs.Stable} {
			if set, ok := w.stored[h]; ok {
				in.Revisions[h] = set
			}
		}
	}
	return in
}

func mapsKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func sorted(s []string) []string {
	slices.Sort(s)
	return s
}

// rev names a revision hash readably: r1 for the first seen, and so on.
func (w *world) rev(h string) string {
	if h == "" {
		return "-"
	}
	if n, ok := w.names[h]; ok {
		return n
	}
	w.names[h] = fmt.Sprintf("r%d", len(w.names)+1)
	return w.names[h]
}

// plan decides, then writes what the decision says as the controller would.
func (w *world) plan(now time.Time) string {
	in := w.input(now)
	out := Plan(in)
	var b strings.Builder
	if len(out.MetricQueries) > 0 {
		in.Metrics = map[MetricQuery]Reading{}
		for _, q := range out.MetricQueries {
			fmt.Fprintf(&b, "read metric %s filtered by %s\n", q.Query, q.Filter)
			if w.metric != nil {
				in.Metrics[q] = *w.metric
			}
		}
		out = Plan(in)
	}
	if out.Revision != nil {
		if _, ok := w.stored[out.Revision.Hash]; !ok {
			w.stored[out.Revision.Hash] = out.Revision.Templates
			fmt.Fprintf(&b, "stored revision %s\n", w.rev(out.Revision.Hash))
		}
	}
	writes := map[string]Write{}
	for _, wr := range out.Writes {
		writes[wr.Cluster] = wr
	}
	removals := map[string]Removal{}
	for _, rm := range out.Removals {
		removals[rm.Cluster] = rm
	}
	b.WriteString("works:")
	names := map[string]bool{}
	for n := range w.works {
		names[n] = true
	}
	for n := range writes {
		names[n] = true
	}
	for _, n := range sorted(mapsKeys(names)) {
		switch wr, rm := writes[n], removals[n]; {
		case wr.Cluster != "" && wr.Create:
			fmt.Fprintf(&b, "\n  %s: create %s", n, w.describe(wr.Manifests, wr.Revision, wr.DeletionPolicy))
		case wr.Cluster != "":
			fmt.Fprintf(&b, "\n  %s: update %s", n, w.describe(wr.Manifests, wr.Revision, wr.DeletionPolicy))
		case rm.Cluster != "":
			fmt.Fprintf(&b, "\n  %s: remove", n)
			if rm.Orphan {
				b.WriteString(" (orphan its resources)")
			}
		default:
			fmt.Fprintf(&b, "\n  %s: keep", n)
		}
	}
	st := out.Status
	fmt.Fprintf(&b, "\nclusters: %d", st.ScheduledClusters)
	for _, c := range st.Clusters {
		fmt.Fprintf(&b, "\n  %s", c.Cluster)
		if c.ScheduledReplicas != nil {
			fmt.Fprintf(&b, " replicas=%d", *c.ScheduledReplicas)
		}
		fmt.Fprintf(&b, " resources=%d", c.Resources)
		if c.Revision != "" {
			fmt.Fprintf(&b, " revision=%s", w.rev(c.Revision))
		}
		for _, flag := range []struct {
			on   bool
			name string
		}{{c.Applied, "applied"}, {c.Available, "available"}, {!c.Healthy, "not-ready"}} {
			if flag.on {
				b.WriteString(" " + flag.name)
			}
		}
		if c.AvailableReplicas != nil {
			fmt.Fprintf(&b, " available-replicas=%d", *c.AvailableReplicas)
		}
		if c.Error != "" {
			fmt.Fprintf(&b, "\n    error: %s", c.Error)
		}
	}
	for _, c := range slices.SortedFunc(slices.Values(st.Conditions), func(x, y metav1.Condition) int { return strings.Compare(x.Type, y.Type) }) {
		fmt.Fprintf(&b, "\ncondition %s=%s %s: %s", c.Type, c.Status, c.Reason, w.hashes(c.Message))
	}
	if rs := st.Rollout; rs != nil {
		fmt.Fprintf(&b, "\nrollout: target=%s stable=%s phase=%s wave=%d (%s)", w.rev(rs.Target), w.rev(rs.Stable), rs.Phase, rs.Wave, rs.WaveName)
	}
	for _, f := range st.FailedOver {
		fmt.Fprintf(&b, "\nfailed over: %s since %s (%s)", f.Cluster, f.Since.Sub(w.t0), f.Reason)
	}
	for _, e := range out.Events {
		fmt.Fprintf(&b, "\nevent %s %s: %s", e.Type, e.Reason, w.hashes(e.Note))
	}
	for _, k := range sorted(mapsKeys(out.Summaries)) {
		fmt.Fprintf(&b, "\nsummary %s: %s", w.templates[k].ID.Kind+"/"+w.templates[k].ID.Name, out.Summaries[k])
	}
	if out.Awaiting > 0 {
		fmt.Fprintf(&b, "\nawaiting %d", out.Awaiting)
	}
	if out.RecheckAfter != DefaultRecheck {
		fmt.Fprintf(&b, "\nrecheck after %s", out.RecheckAfter)
	}

	// Write it, as the controller and the API server would.
	for n, wr := range writes {
		work := w.works[n]
		if work == nil {
			work = &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace(n), Name: WorkName(w.placement)}}
			w.works[n] = work
		}
		work.Generation++
		work.Spec.Manifests, work.Spec.DeletionPolicy = wr.Manifests, wr.DeletionPolicy
		work.Annotations = map[string]string{v1alpha1.AnnotationRevision: wr.Revision}
	}
	for n := range removals {
		delete(w.works, n) // the agent has removed it
	}
	w.placement.Status = out.Status
	return b.String()
}

// hashes replaces revision hashes in a message by their readable names.
func (w *world) hashes(msg string) string {
	for h, n := range w.names {
		msg = strings.ReplaceAll(msg, h, n)
	}
	return msg
}

// describe is one line of a Work's content.
func (w *world) describe(manifests []runtime.RawExtension, revision string, policy v1alpha1.DeletionPolicy) string {
	var parts []string
	if revision != "" {
		parts = append(parts, "revision="+w.rev(revision))
	}
	if policy == v1alpha1.DeletionOrphan {
		parts = append(parts, "orphan")
	}
	for _, o := range manifest.Decode(manifests) {
		s := o.ID.Kind + "/" + o.ID.Name
		if n, ok := render.Replicas(o.Obj); ok {
			s += fmt.Sprintf("(%d)", n)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// report plays the cluster's agent: it reports on the Work as it is now.
func (w *world) report(cluster string, fields []string) string {
	work := w.works[cluster]
	if work == nil {
		w.t.Fatalf("report: cluster %s has no Work", cluster)
	}
	a := args(fields)
	_, available := a["available"]
	msg, failed := a["failed"]
	work.Status = v1alpha1.WorkStatus{ObservedGeneration: work.Generation}
	if _, ok := a["ahead"]; ok {
		// Of content a killed hub handed it and never stored: a generation the Work has not reached.
		work.Status.ObservedGeneration++
	}
	var conds []v1alpha1.ResourceCondition
	if c := a["condition"]; c != "" {
		typ, status, _ := strings.Cut(c, "=")
		conds = append(conds, v1alpha1.ResourceCondition{Type: typ, Status: status})
	}
	for _, o := range manifest.Decode(work.Spec.Manifests) {
		rs := v1alpha1.ResourceStatus{ResourceIdentifier: o.ID, Hash: o.Hash, State: v1alpha1.ResourceApplied, Health: v1alpha1.HealthProgressing, Conditions: conds}
		if failed {
			rs.State, rs.Message = v1alpha1.ResourceFailed, msg
		}
		if available {
			rs.Health = v1alpha1.HealthHealthy
		}
		if n, ok := render.Replicas(o.Obj); ok {
			got := int32(0)
			if available {
				got = n
			}
			if r, ok := a["replicas"]; ok {
				got = int32(w.num(r))
			}
			rs.Replicas, rs.AvailableReplicas = &n, &got
		}
		work.Status.Resources = append(work.Status.Resources, rs)
	}
	set := func(typ string, ok bool) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&work.Status.Conditions, metav1.Condition{Type: typ, Status: s, Reason: "Reported", LastTransitionTime: metav1.NewTime(w.t0)})
	}
	set(v1alpha1.WorkApplied, !failed)
	set(v1alpha1.WorkAvailable, available && !failed)
	return "ok"
}

func (w *world) show(cluster string) string {
	work := w.works[cluster]
	if work == nil {
		return "no Work"
	}
	var b strings.Builder
	for _, m := range work.Spec.Manifests {
		y, err := yaml.JSONToYAML(m.Raw)
		if err != nil {
			w.t.Fatal(err)
		}
		b.WriteString("---\n" + string(y))
	}
	return strings.TrimRight(b.String(), "\n")
}

// restart keeps only what the API server stores, as it stores it: the Placement (status
// included) and the Works, through JSON. The plan keeps nothing else between decisions.
func (w *world) restart() string {
	roundTrip := func(in, out any) {
		raw, err := json.Marshal(in)
		if err != nil {
			w.t.Fatal(err)
		}
		if err := json.Unmarshal(raw, out); err != nil {
			w.t.Fatal(err)
		}
	}
	p := &v1alpha1.Placement{}
	roundTrip(w.placement, p)
	w.placement = p
	works := map[string]*v1alpha1.Work{}
	for n, work := range w.works {
		works[n] = &v1alpha1.Work{}
		roundTrip(work, works[n])
	}
	w.works = works
	return fmt.Sprintf("placement and %d Works reloaded", len(works))
}

// TestClusterOf: the scheduler sees a Cluster's readiness and when it last changed, and the
// capacity its agent reports free.
func TestClusterOf(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "a", Labels: map[string]string{"x": "y"}, CreationTimestamp: metav1.NewTime(t0)},
		Spec: v1alpha1.ClusterSpec{Region: "r1", Zones: []string{"z1"}, Environment: "prod"},
		Status: v1alpha1.ClusterStatus{Phase: v1alpha1.ClusterReady,
			Conditions: []metav1.Condition{{Type: v1alpha1.ClusterReadyCondition, Status: metav1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0.Add(time.Minute))}},
			Inventory: &v1alpha1.Inventory{
				Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"), corev1.ResourcePods: resource.MustParse("110")},
				Requested:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m"), corev1.ResourceMemory: resource.MustParse("1Gi"), corev1.ResourcePods: resource.MustParse("10")},
			}}}
	got := ClusterOf(c)
	want := scheduler.Resources{MilliCPU: 2500, Memory: 7 << 30, Pods: 100}
	if !got.Healthy || !got.Since.Equal(t0.Add(time.Minute)) || got.Free == nil || *got.Free != want || got.Region != "r1" || got.Deleting {
		t.Errorf("ClusterOf = %+v (free %+v)", got, got.Free)
	}
	c.Status.Inventory, c.Status.Phase = nil, v1alpha1.ClusterUnreachable
	if got := ClusterOf(c); got.Healthy || got.Free != nil {
		t.Errorf("an unreachable cluster without a report: %+v", got)
	}
}
