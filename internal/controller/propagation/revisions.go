package propagation

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/manifest"
	"github.com/convoy-dev/convoy/internal/plan"
)

// historyLimit is how many template revisions a Placement keeps.
const historyLimit = 10

// ensureRevision stores a revision of the templates as a ControllerRevision owned by the
// Placement (v1alpha1.StoredRevision), numbered after the newest, and prunes the oldest beyond
// the history limit, never those in use.
func (r *Reconciler) ensureRevision(ctx context.Context, p *v1alpha1.Placement, rev *plan.Revision) error {
	var list appsv1.ControllerRevisionList
	if err := r.Client.List(ctx, &list, client.InNamespace(p.Namespace), client.MatchingLabels{v1alpha1.LabelRevisionOf: p.Name}); err != nil {
		return fmt.Errorf("list revisions: %w", err)
	}
	name := v1alpha1.RevisionName(p.Name, rev.Hash)
	var newest int64
	exists := false
	for _, cr := range list.Items {
		newest = max(newest, cr.Revision)
		exists = exists || cr.Name == name
	}
	if !exists {
		stored := v1alpha1.StoredRevision{Templates: make([]runtime.RawExtension, len(rev.Templates))}
		for i, t := range rev.Templates {
			raw, err := t.Obj.MarshalJSON()
			if err != nil {
				return err
			}
			stored.Templates[i] = runtime.RawExtension{Raw: raw}
		}
		// A ControllerRevision's data must be a JSON object.
		raw, err := json.Marshal(stored)
		if err != nil {
			return err
		}
		cr := &appsv1.ControllerRevision{
			ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: name, Labels: map[string]string{v1alpha1.LabelRevisionOf: p.Name}},
			Data:       runtime.RawExtension{Raw: raw},
			Revision:   newest + 1,
		}
		if err := controllerutil.SetControllerReference(p, cr, r.Client.Scheme()); err != nil {
			return err
		}
		if err := r.Client.Create(ctx, cr); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("store revision %s: %w", rev.Hash, err)
		}
		list.Items = append(list.Items, *cr)
	}
	if len(list.Items) <= historyLimit {
		return nil
	}
	slices.SortFunc(list.Items, func(a, b appsv1.ControllerRevision) int { return int(a.Revision - b.Revision) })
	for _, cr := range list.Items[:len(list.Items)-historyLimit] {
		hash := v1alpha1.RevisionHash(p.Name, cr.Name)
		if hash == rev.Hash || slices.Contains(rev.Keep, hash) {
			continue
		}
		if err := r.Client.Delete(ctx, &cr); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("prune revision %s: %w", cr.Name, err)
		}
	}
	return nil
}

// loadRevisions reads the stored revisions the rollout may hand out besides latest: its target
// and its stable revision. One that is not stored any more is left out (the plan keeps its
// clusters as they are and says why).
func (r *Reconciler) loadRevisions(ctx context.Context, p *v1alpha1.Placement, latest string) (map[string][]plan.Template, error) {
	out := map[string][]plan.Template{}
	rs := p.Status.Rollout
	if rs == nil {
		return out, nil
	}
	for _, hash := range []string{rs.Target, rs.Stable} {
		if hash == "" || hash == latest || out[hash] != nil {
			continue
		}
		cr := &appsv1.ControllerRevision{}
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: v1alpha1.RevisionName(p.Name, hash)}, cr)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("revision %s: %w", hash, err)
		}
		set, err := stored(cr)
		if err != nil {
			return nil, fmt.Errorf("revision %s: %w", hash, err)
		}
		out[hash] = set
	}
	return out, nil
}

// stored decodes the templates a ControllerRevision of a Placement keeps.
func stored(cr *appsv1.ControllerRevision) ([]plan.Template, error) {
	var data v1alpha1.StoredRevision
	if err := json.Unmarshal(cr.Data.Raw, &data); err != nil {
		return nil, err
	}
	var out []plan.Template
	for _, o := range manifest.Decode(data.Templates) {
		if o.Err != nil {
			return nil, o.Err
		}
		out = append(out, plan.NewTemplate(o.Obj, false))
	}
	return out, nil
}
