package profile

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// historyLimit is how many revisions a profile keeps (the status's history has room for as
// many). Revisions that clusters are held to are kept beyond it.
const historyLimit = 20

// labelHash on a profile's ControllerRevision is the hash of the spec it holds.
const labelHash = "convoy.dev/profile-hash"

// Revision is one stored revision of a profile.
type Revision struct {
	Number  int64
	Spec    v1alpha1.ClusterProfileSpec
	Created metav1.Time
}

// material is the part of a spec that makes a revision: the bill of materials, without the
// update strategy, whose changes move no cluster.
func material(spec v1alpha1.ClusterProfileSpec) v1alpha1.ClusterProfileSpec {
	out := *spec.DeepCopy()
	out.Update = v1alpha1.ProfileUpdate{}
	return out
}

// hashOf names a spec's material: the same spec is the same revision.
func hashOf(spec v1alpha1.ClusterProfileSpec) (string, []byte, error) {
	raw, err := json.Marshal(material(spec))
	if err != nil {
		return "", nil, err
	}
	h := fnv.New64a()
	h.Write(raw)
	return strconv.FormatUint(h.Sum64(), 36), raw, nil
}

// Revisions reads a profile's stored revisions, oldest first. The hub's Cluster controller and
// the CLI read them too.
func Revisions(ctx context.Context, c client.Reader, profile string) ([]Revision, error) {
	var list appsv1.ControllerRevisionList
	if err := c.List(ctx, &list, client.InNamespace(v1alpha1.SystemNamespace), client.MatchingLabels{v1alpha1.LabelProfile: profile}); err != nil {
		return nil, fmt.Errorf("list the revisions of profile %s: %w", profile, err)
	}
	out := make([]Revision, 0, len(list.Items))
	for _, cr := range list.Items {
		rev, err := decode(&cr)
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", profile, err)
		}
		out = append(out, rev)
	}
	slices.SortFunc(out, func(a, b Revision) int { return int(a.Number - b.Number) })
	return out, nil
}

// Get reads revision n of a profile: from c (a cache), and when it is not there yet (a revision
// stored a moment ago), from direct, the API server itself, if given. It returns false when
// the revision is not stored.
func Get(ctx context.Context, c, direct client.Reader, profile string, n int64) (Revision, bool, error) {
	key := client.ObjectKey{Namespace: v1alpha1.SystemNamespace, Name: revisionName(profile, n)}
	cr := &appsv1.ControllerRevision{}
	err := c.Get(ctx, key, cr)
	if apierrors.IsNotFound(err) && direct != nil {
		err = direct.Get(ctx, key, cr)
	}
	if apierrors.IsNotFound(err) {
		return Revision{}, false, nil
	}
	if err != nil {
		return Revision{}, false, fmt.Errorf("read revision %d of profile %s: %w", n, profile, err)
	}
	rev, err := decode(cr)
	return rev, err == nil, err
}

// revisionName names revision n of a profile's ControllerRevisions.
func revisionName(profile string, n int64) string { return fmt.Sprintf("profile-%s-%d", profile, n) }

// decode reads the spec a profile's ControllerRevision keeps.
func decode(cr *appsv1.ControllerRevision) (Revision, error) {
	var spec v1alpha1.ClusterProfileSpec
	if err := json.Unmarshal(cr.Data.Raw, &spec); err != nil {
		return Revision{}, fmt.Errorf("revision %d: %w", cr.Revision, err)
	}
	return Revision{Number: cr.Revision, Spec: spec, Created: cr.CreationTimestamp}, nil
}

// Find returns revision n of revs, or false.
func Find(revs []Revision, n int64) (Revision, bool) {
	i := slices.IndexFunc(revs, func(r Revision) bool { return r.Number == n })
	if i < 0 {
		return Revision{}, false
	}
	return revs[i], true
}

// ensureRevision stores the profile's spec as a revision unless one holds it already, numbered
// after the newest, and prunes the oldest beyond the history limit but those in keep. It
// returns the revisions, oldest first, and the number of the spec's.
func (r *Reconciler) ensureRevision(ctx context.Context, p *v1alpha1.ClusterProfile, keep map[int64]bool) ([]Revision, int64, error) {
	hash, raw, err := hashOf(p.Spec)
	if err != nil {
		return nil, 0, err
	}
	var list appsv1.ControllerRevisionList
	if err := r.Client.List(ctx, &list, client.InNamespace(v1alpha1.SystemNamespace), client.MatchingLabels{v1alpha1.LabelProfile: p.Name}); err != nil {
		return nil, 0, fmt.Errorf("list revisions: %w", err)
	}
	// The newest revision holds the spec, or the spec is a new revision: one put back as it
	// was in an older revision is a new one all the same, since the number says the order of
	// changes (and the older one may be pruned).
	var newest appsv1.ControllerRevision
	for _, cr := range list.Items {
		if cr.Revision > newest.Revision {
			newest = cr
		}
	}
	var current int64
	if newest.Labels[labelHash] == hash {
		current = newest.Revision
	}
	if current == 0 {
		cr := &appsv1.ControllerRevision{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: v1alpha1.SystemNamespace,
				Name:      revisionName(p.Name, newest.Revision+1),
				Labels:    map[string]string{v1alpha1.LabelProfile: p.Name, labelHash: hash},
			},
			Data:     runtime.RawExtension{Raw: raw},
			Revision: newest.Revision + 1,
		}
		if err := controllerutil.SetOwnerReference(p, cr, r.Client.Scheme()); err != nil {
			return nil, 0, err
		}
		if err := r.Client.Create(ctx, cr); err != nil {
			return nil, 0, fmt.Errorf("store revision %d: %w", cr.Revision, err)
		}
		current = cr.Revision
		list.Items = append(list.Items, *cr)
		r.event(p, "Normal", "Revision", "revision %d: Kubernetes %s", current, p.Spec.KubernetesVersion)
	}
	slices.SortFunc(list.Items, func(a, b appsv1.ControllerRevision) int { return int(a.Revision - b.Revision) })
	kept := list.Items[:0]
	for i, cr := range list.Items {
		if i < len(list.Items)-historyLimit && cr.Revision != current && !keep[cr.Revision] {
			if err := r.Client.Delete(ctx, &cr); err != nil && !apierrors.IsNotFound(err) {
				return nil, 0, fmt.Errorf("prune revision %d: %w", cr.Revision, err)
			}
			continue
		}
		kept = append(kept, cr)
	}
	revs := make([]Revision, 0, len(kept))
	for _, cr := range kept {
		rev, err := decode(&cr)
		if err != nil {
			return nil, 0, err
		}
		revs = append(revs, rev)
	}
	return revs, current, nil
}
