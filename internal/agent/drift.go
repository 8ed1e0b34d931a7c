package agent

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/manifest"
)

func (w *workController) nextDrift(ctx context.Context) bool {
	k, shutdown := w.drifts.Get()
	if shutdown {
		return false
	}
	defer w.drifts.Done(k)
	if err := w.checkDrift(ctx, k); err != nil {
		w.a.log.Warn("drift check failed; retrying", "work", k.work, "name", k.name, "err", err)
		w.drifts.AddRateLimited(k)
		return true
	}
	w.drifts.Forget(k)
	return true
}

// checkDrift looks at one object the member changed. Drift is a change to fields the agent
// applied: a dry run of the same apply either conflicts (someone else now owns those fields)
// or would change the object back. With drift policy Correct the agent applies again, taking
// back the fields it owned; with ReportOnly it marks the resource drifted and leaves it.
func (w *workController) checkDrift(ctx context.Context, k driftKey) error {
	work := &v1alpha1.Work{}
	if err := w.a.hubCache.Get(ctx, client.ObjectKey{Namespace: w.a.ns, Name: k.work}, work); err != nil || !work.DeletionTimestamp.IsZero() {
		return client.IgnoreNotFound(err)
	}
	applied := map[string]v1alpha1.ResourceStatus{}
	for _, r := range work.Status.Resources {
		applied[manifest.Key(r.ResourceIdentifier)] = r
	}
	for _, o := range manifest.Decode(work.Spec.Manifests) {
		if o.Err != nil {
			continue
		}
		gvr, namespaced, err := w.mapping(o.ID)
		if err != nil || gvr != k.gvr || o.ID.Name != k.name {
			continue
		}
		ns := o.ID.Namespace
		if namespaced && ns == "" {
			ns = metav1.NamespaceDefault
		}
		if !namespaced {
			ns = ""
		}
		if ns != k.ns {
			continue
		}
		key := manifest.Key(o.ID)
		// Only what this agent applied, exactly as the Work has it now, can drift; anything
		// else is the Work's own reconcile to handle.
		if prev, ok := applied[key]; !ok || prev.State != v1alpha1.ResourceApplied || prev.Hash != o.Hash {
			return nil
		}
		// An object another Work applies (it lists it with other content and comes first)
		// is that Work's to correct, not this one's: this Work's reconcile reports it.
		if winner, err := w.otherContent(ctx, work, o); err != nil || winner != "" {
			w.queue.Add(work.Name)
			return err
		}
		w.watch(gvr)
		live := w.a.opts.Member.Cached(gvr, ns, o.ID.Name)
		if live == nil {
			return nil
		}
		msg := ""
		dry, err := w.apply(ctx, work, gvr, ns, o.Obj, false, true)
		switch {
		case apierrors.IsConflict(err):
			msg = "changed on the member: another field manager took over fields the agent applied"
		case err != nil:
			return err
		case specChanged(live, dry):
			msg = "changed on the member: fields the agent applied were altered"
		}
		if msg == "" {
			w.setDrift(work.Name, key, "")
			w.queue.AddAfter(work.Name, 300*time.Millisecond)
			return nil
		}
		if work.Spec.DriftPolicy == v1alpha1.DriftReportOnly {
			w.setDrift(work.Name, key, msg+"; left as it is (drift policy ReportOnly)")
			w.a.log.Info("drift reported", "work", work.Name, "kind", o.ID.Kind, "namespace", ns, "name", o.ID.Name)
			w.queue.Add(work.Name)
			return nil
		}
		if _, err := w.apply(ctx, work, gvr, ns, o.Obj, true, false); err != nil {
			return err
		}
		w.setDrift(work.Name, key, "")
		w.a.log.Info("drift corrected", "work", work.Name, "kind", o.ID.Kind, "namespace", ns, "name", o.ID.Name)
		w.queue.Add(work.Name)
		return nil
	}
	return nil
}

// setDrift records (or with an empty msg clears) the drift of one resource of a Work.
func (w *workController) setDrift(work, key, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if msg == "" {
		delete(w.drifted[work], key)
		return
	}
	if w.drifted[work] == nil {
		w.drifted[work] = map[string]string{}
	}
	w.drifted[work][key] = msg
}

func (w *workController) driftOf(work, key string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.drifted[work][key]
}
