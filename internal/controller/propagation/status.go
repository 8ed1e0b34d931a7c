package propagation

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/manifest"
	"github.com/convoy-dev/convoy/internal/scheduler"
)

// setStatus fills the per-cluster status and the Applied and Available conditions from the
// Works the agents report on.
func (r *Reconciler) setStatus(p *v1alpha1.Placement, d scheduler.Decision, templates []*template, works map[string]*v1alpha1.Work, renderErrs map[string]string) {
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
		for name := range works {
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
		st := v1alpha1.ClusterPlacementStatus{Cluster: e.name, Healthy: e.healthy}
		var scheduled int32
		divided := false
		for _, t := range templates {
			if s, ok := t.shares[e.name]; ok {
				scheduled += s
				divided = true
			}
		}
		if divided {
			st.ScheduledReplicas = &scheduled
		}
		w := works[e.name]
		if w != nil {
			st.Resources = int32(len(w.Spec.Manifests))
			st.Revision = w.Annotations[v1alpha1.AnnotationRevision]
			current := w.Status.ObservedGeneration == w.Generation
			st.Applied = current && meta.IsStatusConditionTrue(w.Status.Conditions, v1alpha1.WorkApplied)
			st.Available = current && meta.IsStatusConditionTrue(w.Status.Conditions, v1alpha1.WorkAvailable)
			st.Drifted = w.Status.Summary.Drifted
			var avail int32
			hasReplicas := false
			for _, rs := range w.Status.Resources {
				if rs.State == v1alpha1.ResourceFailed && st.Error == "" {
					st.Error = fmt.Sprintf("%s %s: %s", rs.Kind, rs.Name, rs.Message)
				}
				if rs.AvailableReplicas != nil {
					avail += *rs.AvailableReplicas
					hasReplicas = true
				}
			}
			if hasReplicas {
				st.AvailableReplicas = &avail
			}
		}
		if msg := renderErrs[e.name]; msg != "" {
			st.Error = msg
			st.Applied, st.Available = false, false
		}
		if st.Applied {
			applied++
		}
		if st.Available {
			available++
		}
		switch {
		case st.Error != "":
			problems = append(problems, e.name+": "+st.Error)
		case !e.healthy:
			problems = append(problems, e.name+": cluster not Ready; its share stays where it is")
		}
		out = append(out, st)
	}
	p.Status.Clusters = out
	p.Status.ScheduledClusters = int32(len(out))

	n := len(out)
	detail := ""
	if len(problems) > 0 {
		detail = "; " + strings.Join(problems, "; ")
	}
	switch {
	case n == 0:
		setCondition(p, v1alpha1.PlacementApplied, false, "NoClusters", "no cluster has the resources")
		setCondition(p, v1alpha1.PlacementAvailable, false, "NoClusters", "no cluster has the resources")
		return
	case applied == n:
		setCondition(p, v1alpha1.PlacementApplied, true, "Applied", fmt.Sprintf("applied in %d/%d clusters", applied, n))
	default:
		setCondition(p, v1alpha1.PlacementApplied, false, "Applying", fmt.Sprintf("applied in %d/%d clusters%s", applied, n, detail))
	}
	if available == n {
		setCondition(p, v1alpha1.PlacementAvailable, true, "Available", fmt.Sprintf("available in %d/%d clusters", available, n))
	} else {
		setCondition(p, v1alpha1.PlacementAvailable, false, "Progressing", fmt.Sprintf("available in %d/%d clusters%s", available, n, detail))
	}
}

// Summary says how one template is doing in the fleet, for the annotation on the hub's copy:
// for workloads "available 6/6 replicas in 3 clusters", otherwise "available in 3/3 clusters".
func Summary(t *template, works map[string]*v1alpha1.Work) string {
	clusters, healthy := 0, 0
	var desired, avail int32
	replicas := false
	names := make([]string, 0, len(works))
	for name := range works {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		w := works[name]
		if !w.DeletionTimestamp.IsZero() {
			continue
		}
		if !sends(w, t.key) {
			continue
		}
		clusters++
		if availableIn(w, t.key) {
			healthy++
		}
		if n, ok := replicasIn(w, t.key); ok {
			replicas = true
			desired += n
			avail += availableReplicas(w, t.key)
		}
	}
	if replicas {
		return fmt.Sprintf("available %d/%d replicas in %d clusters", avail, desired, clusters)
	}
	return fmt.Sprintf("available in %d/%d clusters", healthy, clusters)
}

// summarize writes each selected template's summary annotation, when it changed.
func (r *Reconciler) summarize(ctx context.Context, templates []*template, works map[string]*v1alpha1.Work) error {
	for _, t := range templates {
		if !t.direct {
			continue
		}
		s := Summary(t, works)
		if t.obj.GetAnnotations()[v1alpha1.AnnotationSummary] == s {
			continue
		}
		patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, v1alpha1.AnnotationSummary, s)
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(t.obj.GroupVersionKind())
		u.SetNamespace(t.obj.GetNamespace())
		u.SetName(t.obj.GetName())
		if err := r.Client.Patch(ctx, u, client.RawPatch(types.MergePatchType, patch)); err != nil {
			return fmt.Errorf("annotate %s %s: %w", t.id.Kind, t.id.Name, client.IgnoreNotFound(err))
		}
	}
	return nil
}

// sends says whether a Work carries the template.
func sends(w *v1alpha1.Work, key string) bool {
	for _, o := range manifest.Decode(w.Spec.Manifests) {
		if o.Err == nil && manifest.Key(o.ID) == key {
			return true
		}
	}
	return false
}
