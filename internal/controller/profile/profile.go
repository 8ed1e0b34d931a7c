// Package profile holds the hub's ClusterProfile reconciler. It stores each change of a
// profile's spec as a revision (a ControllerRevision in convoy-system), judges whether the hub
// can build clusters from it (the Accepted condition), and runs the update run that moves the
// profile's clusters to the newest revision, wave by wave: internal/profile decides, and this
// reconciler writes the decision into the status (status.run, and status.targets, the revision
// each cluster is to run now). It alone writes a ClusterProfile's status.
//
// The hub's Cluster controller reads the targets and the stored revisions (Revisions) to build
// each cluster and judge its conformance; the CLI reads the revisions. The hub's composition
// root, the Cluster controller and the CLI import it.
package profile

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	pure "github.com/convoy-dev/convoy/internal/profile"
	"github.com/convoy-dev/convoy/internal/rollout"
)

// Reconciler reconciles ClusterProfiles.
type Reconciler struct {
	Client client.Client
	// Recorder, when set, records an Event for each new revision and each step of a run.
	Recorder events.EventRecorder
	// Available lists the Kubernetes versions this hub can build clusters on.
	Available func() []string
	// Shipped are the versions of the add-ons this hub ships, by add-on name.
	Shipped map[string]string
	// Clock is the run's time source; nil is the real clock.
	Clock clock.PassiveClock
}

// SetupWithManager registers the reconciler: a profile is looked at again when it changes and
// when one of its clusters does (its conformance, its health, a pin).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ClusterProfile{}).
		Named("clusterprofile").
		Watches(&v1alpha1.Cluster{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []ctrl.Request {
			c, ok := o.(*v1alpha1.Cluster)
			if !ok || c.Spec.Profile == nil {
				return nil
			}
			return []ctrl.Request{{NamespacedName: client.ObjectKey{Name: c.Spec.Profile.Name}}}
		}), builder.WithPredicates(predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*v1alpha1.Cluster)
			n, ok2 := e.ObjectNew.(*v1alpha1.Cluster)
			return !ok1 || !ok2 || runView(o) != runView(n)
		}})).
		Complete(r)
}

// runView is what the update run reads of a cluster, as one comparable string: a heartbeat's
// or an inventory's write changes none of it, and wakes no profile.
func runView(c *v1alpha1.Cluster) string {
	var b strings.Builder
	if p := c.Spec.Profile; p != nil {
		fmt.Fprintf(&b, "%s/%v;", p.Name, ptr.Deref(p.Revision, 0))
	}
	if s := c.Status.Profile; s != nil {
		fmt.Fprintf(&b, "%d/%t;", s.Revision, s.Conformant)
	}
	for _, t := range []string{v1alpha1.ClusterReadyCondition, v1alpha1.ClusterUnreachableCondition, v1alpha1.ClusterProvisioned} {
		if cond := meta.FindStatusCondition(c.Status.Conditions, t); cond != nil {
			fmt.Fprintf(&b, "%s=%s/%s/%d;", t, cond.Status, cond.Reason, cond.ObservedGeneration)
			if cond.Reason == v1alpha1.ReasonUpgradeBlocked {
				b.WriteString(cond.Message)
			}
		}
	}
	fmt.Fprintf(&b, "%d;%v;%v", c.Generation, c.Labels, c.DeletionTimestamp)
	return b.String()
}

// Reconcile stores the profile's revision, judges it and steps its update run. It is safe to
// rerun at any line: the run's state is read from the status it writes last.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	p := &v1alpha1.ClusterProfile{}
	if err := r.Client.Get(ctx, req.NamespacedName, p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var all v1alpha1.ClusterList
	if err := r.Client.List(ctx, &all); err != nil {
		return ctrl.Result{}, fmt.Errorf("list clusters: %w", err)
	}
	if !p.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.release(ctx, p, all.Items)
	}
	if !controllerutil.ContainsFinalizer(p, Finalizer) {
		controllerutil.AddFinalizer(p, Finalizer)
		if err := r.Client.Update(ctx, p); err != nil {
			return ctrl.Result{}, fmt.Errorf("add finalizer: %w", err)
		}
	}
	before := p.DeepCopy()

	var clusters []*v1alpha1.Cluster
	keep := map[int64]bool{}
	for i := range all.Items {
		c := &all.Items[i]
		if c.Spec.Profile == nil || c.Spec.Profile.Name != p.Name || !c.DeletionTimestamp.IsZero() {
			continue
		}
		clusters = append(clusters, c)
		if pin := c.Spec.Profile.Revision; pin != nil {
			keep[*pin] = true
		}
		if s := c.Status.Profile; s != nil {
			keep[s.Revision] = true
		}
	}
	for _, t := range p.Status.Targets {
		keep[t.Revision] = true
	}
	if run := p.Status.Run; run != nil {
		for _, rev := range []string{run.Target, run.Stable} {
			if n, err := strconv.ParseInt(rev, 10, 64); err == nil {
				keep[n] = true
			}
		}
	}

	revs, current, err := r.ensureRevision(ctx, p, keep)
	if err != nil {
		return ctrl.Result{}, err
	}
	st := &p.Status
	st.ObservedGeneration, st.Revision = p.Generation, current
	st.History = st.History[:0]
	// Revisions clusters are held to are kept beyond the limit; the history lists the newest.
	for _, rev := range revs[max(0, len(revs)-historyLimit):] {
		st.History = append(st.History, v1alpha1.ProfileRevision{Revision: rev.Number, KubernetesVersion: rev.Spec.KubernetesVersion, Created: rev.Created})
	}

	var available []string
	if r.Available != nil {
		available = r.Available()
	}
	problems := pure.Validate(p.Spec, available, r.Shipped)
	accepted := len(problems) == 0
	if accepted {
		r.setCondition(p, v1alpha1.ProfileAccepted, metav1.ConditionTrue, "Buildable", fmt.Sprintf("revision %d can be built on this hub", current))
	} else {
		r.setCondition(p, v1alpha1.ProfileAccepted, metav1.ConditionFalse, "Unbuildable",
			fmt.Sprintf("revision %d cannot be built, and no cluster moves to it: %s", current, strings.Join(problems, "; ")))
	}

	var recheck time.Duration
	if accepted {
		recheck = r.step(p, clusters, current)
	}
	st.Clusters, st.Conformant = int32(len(clusters)), 0
	for _, c := range clusters {
		if c.Status.Profile != nil && c.Status.Profile.Conformant {
			st.Conformant++
		}
	}
	if !equality.Semantic.DeepEqual(before.Status, p.Status) {
		if err := r.Client.Status().Patch(ctx, p, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("patch profile status: %w", err)
		}
	}
	return ctrl.Result{RequeueAfter: recheck}, nil
}

// Finalizer keeps a ClusterProfile, and with it its revisions, while a Cluster names it: a
// profile deleted and made again would start from a revision 1 of another spec, and move
// every cluster to it at once.
const Finalizer = "convoy.dev/profile"

// release lets a deleted profile go once no Cluster names it; until then it says which do.
func (r *Reconciler) release(ctx context.Context, p *v1alpha1.ClusterProfile, clusters []v1alpha1.Cluster) error {
	var users []string
	for _, c := range clusters {
		if c.Spec.Profile != nil && c.Spec.Profile.Name == p.Name {
			users = append(users, c.Name)
		}
	}
	if len(users) > 0 {
		before := p.DeepCopy()
		r.setCondition(p, v1alpha1.ProfileAccepted, metav1.ConditionFalse, "InUse",
			fmt.Sprintf("the profile is deleted once no cluster names it; %s still do: delete them or point them at another profile", strings.Join(users, ", ")))
		if err := r.Client.Status().Patch(ctx, p, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		return nil // a Cluster's change wakes the profile again
	}
	if controllerutil.RemoveFinalizer(p, Finalizer) {
		if err := r.Client.Update(ctx, p); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("remove finalizer: %w", err)
		}
	}
	return nil
}

// step advances the update run toward revision latest and writes its state and the clusters'
// targets into the status. It returns when the run changes by itself.
func (r *Reconciler) step(p *v1alpha1.ClusterProfile, clusters []*v1alpha1.Cluster, latest int64) time.Duration {
	state := rollout.FromStatus(p.Status.Run)
	in := pure.RunInput{
		Update:   p.Spec.Update,
		State:    state,
		Latest:   latest,
		Commands: commands(p, state, latest),
		Now:      r.now(),
	}
	if p.Status.Run != nil {
		in.WaveName = p.Status.Run.WaveName
	}
	for _, c := range clusters {
		rc := pure.RunCluster{Cluster: c, Lost: lost(c)}
		if s := c.Status.Profile; s != nil {
			// Done when it matches the revision and its provider has finished with it: a
			// node may still be cordoned, or a pool changing, while the versions match.
			rc.Revision, rc.Conformant = s.Revision, s.Conformant && provisioned(c)
		}
		if cond := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ClusterProvisioned); cond != nil && cond.Reason == v1alpha1.ReasonUpgradeBlocked {
			rc.Blocked = cond.Message
		}
		in.Clusters = append(in.Clusters, rc)
	}
	d := pure.Run(in)
	for _, e := range d.Events {
		r.event(p, corev1.EventTypeNormal, "UpdateRun", "%s", e)
	}
	st := &p.Status
	aborted := ""
	if st.Run != nil {
		aborted = st.Run.Aborted
	}
	st.Run = d.State.Status(d.Strategy)
	// The commands' tokens are kept, so that each is handled once.
	st.Run.Resumed, st.Run.Aborted = p.Annotations[v1alpha1.AnnotationRolloutResume], aborted
	if in.Commands.Abort {
		st.Run.Aborted = p.Annotations[v1alpha1.AnnotationRolloutAbort]
	}
	st.Targets = st.Targets[:0]
	for name, rev := range d.Targets {
		st.Targets = append(st.Targets, v1alpha1.ProfileTarget{Cluster: name, Revision: rev})
	}
	slices.SortFunc(st.Targets, func(a, b v1alpha1.ProfileTarget) int { return strings.Compare(a.Cluster, b.Cluster) })
	return d.RecheckAfter
}

// commands reads the user's commands: spec.update.paused, and the resume and abort
// annotations (as on a Placement: a resume token, and REVISION@TOKEN to abort), each handled
// once.
func commands(p *v1alpha1.ClusterProfile, state rollout.State, latest int64) rollout.Commands {
	cmd := rollout.Commands{Pause: p.Spec.Update.Paused, Approved: -1, For: state.Target}
	if l := strconv.FormatInt(latest, 10); state.Target != "" && l != state.Target && !(state.Phase == rollout.Aborted && l == state.Stable) {
		cmd.For = l // this step starts a new run
	}
	run := p.Status.Run
	if token := p.Annotations[v1alpha1.AnnotationRolloutResume]; token != "" && (run == nil || run.Resumed != token) {
		cmd.Resume = true
	}
	if abort := p.Annotations[v1alpha1.AnnotationRolloutAbort]; abort != "" && (run == nil || run.Aborted != abort) {
		rev, _, _ := strings.Cut(abort, "@")
		cmd.Abort = rev == cmd.For
	}
	return cmd
}

// provisioned says whether the cluster's provider has it as its spec says, at the spec's
// generation.
func provisioned(c *v1alpha1.Cluster) bool {
	cond := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ClusterProvisioned)
	return cond != nil && cond.Status == metav1.ConditionTrue && cond.ObservedGeneration == c.Generation
}

// lost says whether a cluster cannot be counted on: not Ready, or Unreachable.
func lost(c *v1alpha1.Cluster) bool {
	return !meta.IsStatusConditionTrue(c.Status.Conditions, v1alpha1.ClusterReadyCondition) ||
		meta.IsStatusConditionTrue(c.Status.Conditions, v1alpha1.ClusterUnreachableCondition)
}

func (r *Reconciler) setCondition(p *v1alpha1.ClusterProfile, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&p.Status.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: p.Generation})
}

func (r *Reconciler) event(p *v1alpha1.ClusterProfile, typ, reason, format string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(p, nil, typ, reason, reason, format, args...)
	}
}

func (r *Reconciler) now() time.Time {
	if r.Clock == nil {
		return time.Now()
	}
	return r.Clock.Now()
}
