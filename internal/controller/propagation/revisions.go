package propagation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/manifest"
	"github.com/convoy-dev/convoy/internal/rollout"
	"github.com/convoy-dev/convoy/internal/scheduler"
)

// storedRevision is the data of a ControllerRevision: the clean templates of one revision.
type storedRevision struct {
	Templates []map[string]any `json:"templates"`
}

// historyLimit is how many template revisions a Placement keeps.
const historyLimit = 10

// RevisionHash names a set of templates by their content.
func RevisionHash(templates []*template) string {
	h := sha256.New()
	for _, t := range templates {
		raw, _ := t.clean.MarshalJSON()
		h.Write([]byte(t.key))
		h.Write(raw)
	}
	return hex.EncodeToString(h.Sum(nil))[:10]
}

// RevisionName is the ControllerRevision that keeps one revision of a Placement's templates.
func RevisionName(p *v1alpha1.Placement, hash string) string { return p.Name + "-" + hash }

// ensureRevision stores the templates as a ControllerRevision owned by the Placement, numbered
// after the newest, and prunes the oldest beyond the history limit (never those in use).
func (r *Reconciler) ensureRevision(ctx context.Context, p *v1alpha1.Placement, hash string, templates []*template, keep ...string) error {
	var list appsv1.ControllerRevisionList
	if err := r.Client.List(ctx, &list, client.InNamespace(p.Namespace), client.MatchingLabels{v1alpha1.LabelRevisionOf: p.Name}); err != nil {
		return fmt.Errorf("list revisions: %w", err)
	}
	var newest int64
	exists := false
	for _, cr := range list.Items {
		newest = max(newest, cr.Revision)
		if cr.Name == RevisionName(p, hash) {
			exists = true
		}
	}
	if !exists {
		objs := make([]map[string]any, len(templates))
		for i, t := range templates {
			objs[i] = t.clean.Object
		}
		// A ControllerRevision's data must be a JSON object.
		raw, err := json.Marshal(storedRevision{Templates: objs})
		if err != nil {
			return err
		}
		cr := &appsv1.ControllerRevision{
			ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: RevisionName(p, hash), Labels: map[string]string{v1alpha1.LabelRevisionOf: p.Name}},
			Data:       runtime.RawExtension{Raw: raw},
			Revision:   newest + 1,
		}
		if err := controllerutil.SetControllerReference(p, cr, r.Client.Scheme()); err != nil {
			return err
		}
		if err := r.Client.Create(ctx, cr); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("store revision %s: %w", hash, err)
		}
		list.Items = append(list.Items, *cr)
	}
	if len(list.Items) <= historyLimit {
		return nil
	}
	slices.SortFunc(list.Items, func(a, b appsv1.ControllerRevision) int { return int(a.Revision - b.Revision) })
	for _, cr := range list.Items[:len(list.Items)-historyLimit] {
		if cr.Name == RevisionName(p, hash) || slices.ContainsFunc(keep, func(k string) bool { return cr.Name == RevisionName(p, k) }) {
			continue
		}
		if err := r.Client.Delete(ctx, &cr); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("prune revision %s: %w", cr.Name, err)
		}
	}
	return nil
}

// loadRevision reads the templates of a stored revision.
func (r *Reconciler) loadRevision(ctx context.Context, p *v1alpha1.Placement, hash string) ([]*template, error) {
	cr := &appsv1.ControllerRevision{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: RevisionName(p, hash)}, cr); err != nil {
		return nil, fmt.Errorf("revision %s: %w", hash, err)
	}
	var stored storedRevision
	if err := json.Unmarshal(cr.Data.Raw, &stored); err != nil {
		return nil, fmt.Errorf("revision %s: %w", hash, err)
	}
	var out []*template
	for _, o := range stored.Templates {
		u := &unstructured.Unstructured{Object: o}
		raw, _ := u.MarshalJSON()
		decoded := manifest.Decode([]runtime.RawExtension{{Raw: raw}})[0]
		if decoded.Err != nil {
			return nil, decoded.Err
		}
		out = append(out, &template{obj: decoded.Obj, clean: decoded.Obj, id: decoded.ID, key: manifest.Key(decoded.ID)})
	}
	return out, nil
}

// plan is which revision each chosen cluster gets, and the templates of each revision.
type plan struct {
	latest     string
	revisionOf map[string]string
	sets       map[string][]*template
}

// planRollout runs the rollout state machine for a Placement with a strategy: it stores the
// current templates as a revision, steps the rollout with what the Works report, records the
// state and events, and returns the plan and when to look again.
func (r *Reconciler) planRollout(ctx context.Context, p *v1alpha1.Placement, templates []*template, d scheduler.Decision,
	byName map[string]scheduler.Cluster, works map[string]*v1alpha1.Work) (*plan, time.Duration, error) {
	latest := RevisionHash(templates)
	var st rollout.State
	if rs := p.Status.Rollout; rs != nil {
		st = rollout.State{Target: rs.Target, Stable: rs.Stable, Phase: rollout.Phase(rs.Phase), Wave: int(rs.Wave), Message: rs.Message}
		if rs.WaveStarted != nil {
			st.WaveStarted = rs.WaveStarted.Time
		}
		if rs.SoakStarted != nil {
			st.SoakStarted = rs.SoakStarted.Time
		}
	}
	if err := r.ensureRevision(ctx, p, latest, templates, st.Target, st.Stable); err != nil {
		return nil, 0, err
	}
	strategy := rollout.Strategy{ProgressDeadline: 300 * time.Second}
	if s := p.Spec.Rollout.ProgressDeadlineSeconds; s != nil {
		strategy.ProgressDeadline = time.Duration(*s) * time.Second
	}
	for _, w := range p.Spec.Rollout.Waves {
		wave := rollout.Wave{Name: w.Name, MaxUnavailable: int(w.MaxUnavailable), Soak: time.Duration(w.SoakSeconds) * time.Second, RequireApproval: w.RequireApproval}
		if g := w.Gate; g != nil {
			wave.Gate = fmt.Sprintf("%s %s %s=%s", g.Kind, g.Name, g.Type, gateStatus(g))
		}
		for _, ch := range d.Clusters {
			if ok, _ := scheduler.Matches(w.Clusters.Affinity(), byName[ch.Name]); ok {
				wave.Clusters = append(wave.Clusters, ch.Name)
			}
		}
		strategy.Waves = append(strategy.Waves, wave)
	}
	// A wave's own gate, if it has one, is part of its clusters' being Available.
	gateOf := map[string]*v1alpha1.ConditionGate{}
	for i, w := range p.Spec.Rollout.Waves {
		for _, name := range strategy.Waves[i].Clusters {
			if _, ok := gateOf[name]; !ok {
				gateOf[name] = w.Gate
			}
		}
	}
	var observed []rollout.Cluster
	for _, ch := range d.Clusters {
		c := rollout.Cluster{Name: ch.Name, Lost: !ch.Healthy}
		if w := works[ch.Name]; w != nil {
			c.Revision = w.Annotations[v1alpha1.AnnotationRevision]
			c.Available = w.Status.ObservedGeneration == w.Generation && meta.IsStatusConditionTrue(w.Status.Conditions, v1alpha1.WorkAvailable) &&
				gateHolds(w, gateOf[ch.Name], p.Namespace)
		}
		observed = append(observed, c)
	}
	cmd := rollout.Commands{Pause: p.Spec.Rollout.Paused, Approved: -1}
	if a, err := strconv.Atoi(p.Annotations[v1alpha1.AnnotationRolloutApprove]); err == nil {
		cmd.Approved = a
	}
	resumeToken := p.Annotations[v1alpha1.AnnotationRolloutResume]
	if resumeToken != "" && (p.Status.Rollout == nil || p.Status.Rollout.Resumed != resumeToken) {
		cmd.Resume = true
	}
	if abort := p.Annotations[v1alpha1.AnnotationRolloutAbort]; abort != "" && abort == st.Target {
		cmd.Abort = true
	}
	step := rollout.Step(strategy, st, latest, observed, cmd, r.now())
	for _, e := range step.Events {
		r.Recorder.Eventf(p, nil, corev1.EventTypeNormal, "Rollout", "Rollout", "%s", e)
	}
	ns := step.State
	rs := &v1alpha1.RolloutStatus{Target: ns.Target, Stable: ns.Stable, Phase: string(ns.Phase), Wave: int32(ns.Wave), Message: ns.Message, Resumed: resumeToken}
	if ns.Wave < len(strategy.Waves) {
		rs.WaveName = strategy.Waves[ns.Wave].Name
	} else if ns.Phase != rollout.Complete {
		rs.WaveName = "rest"
	}
	if !ns.WaveStarted.IsZero() {
		rs.WaveStarted = &metav1.MicroTime{Time: ns.WaveStarted}
	}
	if !ns.SoakStarted.IsZero() {
		rs.SoakStarted = &metav1.MicroTime{Time: ns.SoakStarted}
	}
	p.Status.Rollout = rs
	phaseOK := ns.Phase == rollout.Complete || ns.Phase == rollout.Progressing || ns.Phase == rollout.Soaking
	msg := ns.Message
	if msg == "" {
		msg = string(ns.Phase)
	}
	setCondition(p, "RolloutProgressing", phaseOK, string(ns.Phase), msg)

	pl := &plan{latest: latest, revisionOf: step.Revisions, sets: map[string][]*template{latest: templates}}
	for _, rev := range step.Revisions {
		if _, ok := pl.sets[rev]; ok {
			continue
		}
		set, err := r.loadRevision(ctx, p, rev)
		if err != nil {
			return nil, 0, err
		}
		pl.sets[rev] = set
	}
	return pl, step.RecheckAfter, nil
}

// StoredTemplates returns the templates a stored revision holds, for `convoy rollout undo`.
func StoredTemplates(cr *appsv1.ControllerRevision) ([]*unstructured.Unstructured, error) {
	var stored storedRevision
	if err := json.Unmarshal(cr.Data.Raw, &stored); err != nil {
		return nil, err
	}
	out := make([]*unstructured.Unstructured, len(stored.Templates))
	for i, o := range stored.Templates {
		out[i] = &unstructured.Unstructured{Object: o}
	}
	return out, nil
}

func gateStatus(g *v1alpha1.ConditionGate) string {
	if g.Status == "" {
		return "True"
	}
	return g.Status
}

// gateHolds says whether a Work's member reports the gate's condition on its resource; no gate
// always holds.
func gateHolds(w *v1alpha1.Work, g *v1alpha1.ConditionGate, namespace string) bool {
	if g == nil {
		return true
	}
	for _, r := range w.Status.Resources {
		if r.Group != g.Group || r.Kind != g.Kind || r.Name != g.Name || (r.Namespace != "" && r.Namespace != namespace) {
			continue
		}
		for _, c := range r.Conditions {
			if c.Type == g.Type {
				return c.Status == gateStatus(g)
			}
		}
	}
	return false
}
