package plan

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/manifest"
	"github.com/convoy-dev/convoy/internal/render"
	"github.com/convoy-dev/convoy/internal/scheduler"
)

// view is one cluster's Work as it will be: the content planned for it (or what it has, when
// nothing is planned), and what its agent reported, which describes that content only when
// fresh.
type view struct {
	work      *v1alpha1.Work // as it is; nil if none
	manifests []runtime.RawExtension
	objects   map[string]*unstructured.Unstructured // the manifests decoded, by key
	revision  string
	// fresh: the agent has reported on this content (no new content is about to be written).
	fresh bool
}

func (pl *planner) view(name string, planned map[string]*Write) *view {
	if v, ok := pl.views[name]; ok {
		return v
	}
	w := pl.in.Works[name]
	v := &view{work: w, fresh: current(w)}
	if w != nil {
		v.manifests, v.revision = w.Spec.Manifests, w.Annotations[v1alpha1.AnnotationRevision]
	}
	if pw := planned[name]; pw != nil {
		v.fresh = v.fresh && !pl.writing[name]
		v.manifests, v.revision = pw.Manifests, pw.Revision
	}
	v.objects = map[string]*unstructured.Unstructured{}
	for _, m := range v.manifests {
		o, ok := pl.decoded[string(m.Raw)]
		if !ok {
			o = manifest.Decode([]runtime.RawExtension{m})[0]
			if pl.decoded == nil {
				pl.decoded = map[string]manifest.Object{}
			}
			pl.decoded[string(m.Raw)] = o
		}
		if o.Err == nil {
			v.objects[manifest.Key(o.ID)] = o.Obj
		}
	}
	if pl.views == nil {
		pl.views = map[string]*view{}
	}
	pl.views[name] = v
	return v
}

// status fills the per-cluster status and the Applied and Available conditions from what the
// agents report on the Works.
func (pl *planner) status(d scheduler.Decision, shares map[string]map[string]int32, planned map[string]*Write, renderErrs map[string]string) {
	p, st := pl.p, &pl.out.Status
	// The clusters to report: those chosen now, or, when no decision could be made, those
	// that still have a Work.
	type entry struct {
		name    string
		healthy bool
	}
	var entries []entry
	if d.OK {
		for _, c := range d.Clusters {
			entries = append(entries, entry{c.Name, c.Healthy})
		}
	} else {
		for name := range pl.in.Works {
			healthy := true
			if i := slices.IndexFunc(p.Status.Clusters, func(s v1alpha1.ClusterPlacementStatus) bool { return s.Cluster == name }); i >= 0 {
				healthy = p.Status.Clusters[i].Healthy
			}
			entries = append(entries, entry{name, healthy})
		}
		slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	}

	var out []v1alpha1.ClusterPlacementStatus
	applied, available := 0, 0
	var problems []string
	for _, e := range entries {
		cs := v1alpha1.ClusterPlacementStatus{Cluster: e.name, Healthy: e.healthy}
		var scheduled int32
		divided := false
		for _, t := range pl.in.Templates {
			if s, ok := shares[t.Key][e.name]; ok {
				scheduled += s
				divided = true
			}
		}
		if divided {
			cs.ScheduledReplicas = &scheduled
		}
		v := pl.view(e.name, planned)
		if v.work == nil || !v.fresh {
			pl.out.Awaiting++
		}
		if v.work != nil || v.manifests != nil {
			cs.Resources = int32(len(v.manifests))
			cs.Revision = v.revision
		}
		if w := v.work; w != nil {
			cs.Applied = v.fresh && meta.IsStatusConditionTrue(w.Status.Conditions, v1alpha1.WorkApplied)
			cs.Available = v.fresh && meta.IsStatusConditionTrue(w.Status.Conditions, v1alpha1.WorkAvailable)
			cs.Drifted = w.Status.Summary.Drifted
			var avail int32
			hasReplicas := false
			for _, rs := range w.Status.Resources {
				if rs.State == v1alpha1.ResourceFailed && cs.Error == "" {
					cs.Error = fmt.Sprintf("%s %s: %s", rs.Kind, rs.Name, rs.Message)
				}
				if rs.AvailableReplicas != nil {
					avail += *rs.AvailableReplicas
					hasReplicas = true
				}
			}
			if hasReplicas {
				cs.AvailableReplicas = &avail
			}
		}
		if msg := renderErrs[e.name]; msg != "" {
			cs.Error = msg
			cs.Applied, cs.Available = false, false
		}
		if cs.Applied {
			applied++
		}
		if cs.Available {
			available++
		}
		switch {
		case cs.Error != "":
			problems = append(problems, e.name+": "+cs.Error)
		case !e.healthy:
			problems = append(problems, e.name+": cluster not Ready")
		}
		out = append(out, cs)
	}
	st.Clusters = out
	st.ScheduledClusters = int32(len(out))

	n := len(out)
	detail := ""
	if len(problems) > 0 {
		detail = "; " + strings.Join(problems, "; ")
	}
	switch {
	case n == 0:
		pl.condition(v1alpha1.PlacementApplied, false, "NoClusters", "no cluster has the resources")
		pl.condition(v1alpha1.PlacementAvailable, false, "NoClusters", "no cluster has the resources")
		return
	case applied == n:
		pl.condition(v1alpha1.PlacementApplied, true, "Applied", fmt.Sprintf("applied in %d/%d clusters", applied, n))
	default:
		pl.condition(v1alpha1.PlacementApplied, false, "Applying", fmt.Sprintf("applied in %d/%d clusters%s", applied, n, detail))
	}
	if available == n {
		pl.condition(v1alpha1.PlacementAvailable, true, "Available", fmt.Sprintf("available in %d/%d clusters", available, n))
	} else {
		pl.condition(v1alpha1.PlacementAvailable, false, "Progressing", fmt.Sprintf("available in %d/%d clusters%s", available, n, detail))
	}
}

// summaries say how each direct template is doing in the fleet, for the annotation on the
// hub's copy: for workloads "available 6/6 replicas in 3 clusters", otherwise "available in
// 3/3 clusters". A Work being removed or deleted no longer counts.
func (pl *planner) summaries(planned map[string]*Write) {
	removed := map[string]bool{}
	for _, r := range pl.out.Removals {
		removed[r.Cluster] = true
	}
	var names []string
	for name, w := range pl.in.Works {
		if w.DeletionTimestamp.IsZero() && !removed[name] {
			names = append(names, name)
		}
	}
	for name := range planned {
		if pl.in.Works[name] == nil {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	views := make([]*view, len(names))
	for i, name := range names {
		views[i] = pl.view(name, planned)
	}
	for _, t := range pl.in.Templates {
		if !t.Direct {
			continue
		}
		if pl.out.Summaries == nil {
			pl.out.Summaries = map[string]string{}
		}
		clusters, healthy := 0, 0
		var desired, avail int32
		replicas := false
		for _, v := range views {
			obj := v.objects[t.Key]
			if obj == nil {
				continue
			}
			clusters++
			ok := v.fresh && availableIn(v.work, t.Key)
			if ok {
				healthy++
			}
			if n, has := render.Replicas(obj); has {
				replicas = true
				desired += n
				avail += availableReplicas(v.work, t.Key) // what runs now, whatever comes next
			}
		}
		if replicas {
			pl.out.Summaries[t.Key] = fmt.Sprintf("available %d/%d replicas in %d clusters", avail, desired, clusters)
		} else {
			pl.out.Summaries[t.Key] = fmt.Sprintf("available in %d/%d clusters", healthy, clusters)
		}
	}
}
