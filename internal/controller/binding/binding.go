// Package binding holds the hub controller that writes each ServiceBinding's status: where the
// binding is projected (the clusters that both its service's Placement and the workload's
// Placements chose) and, when it is not Ready, why. The projection itself happens in the
// render of each cluster's Work (internal/plan, render.Project); this controller only reports.
// Only the hub's composition root imports it.
package binding

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/render"
)

// Reconciler writes ServiceBindings' status.
type Reconciler struct {
	Client client.Client
	// Reader reads workload templates without caching every kind.
	Reader client.Reader
}

// Reconcile derives one binding's status from the Placements of its namespace.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var b v1alpha1.ServiceBinding
	if err := r.Client.Get(ctx, req.NamespacedName, &b); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	status, err := r.status(ctx, &b)
	if err != nil {
		return ctrl.Result{}, err
	}
	status.ObservedGeneration = b.Generation
	next := b.DeepCopy()
	next.Status.ObservedGeneration, next.Status.Clusters = status.ObservedGeneration, status.Clusters
	cond := status.Conditions[0]
	cond.ObservedGeneration = b.Generation
	meta.SetStatusCondition(&next.Status.Conditions, cond)
	if equalStatus(b.Status, next.Status) {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.Client.Status().Patch(ctx, next, client.MergeFrom(&b))
}

func equalStatus(a, b v1alpha1.ServiceBindingStatus) bool {
	if a.ObservedGeneration != b.ObservedGeneration || !slices.Equal(a.Clusters, b.Clusters) || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message || x.ObservedGeneration != y.ObservedGeneration {
			return false
		}
	}
	return true
}

func (r *Reconciler) status(ctx context.Context, b *v1alpha1.ServiceBinding) (v1alpha1.ServiceBindingStatus, error) {
	notReady := func(reason, msg string, a ...any) (v1alpha1.ServiceBindingStatus, error) {
		return v1alpha1.ServiceBindingStatus{Conditions: []metav1.Condition{{Type: v1alpha1.BindingReady, Status: metav1.ConditionFalse,
			Reason: reason, Message: fmt.Sprintf(msg, a...)}}}, nil
	}
	ns, svcName, w := b.Namespace, b.Spec.Service.Name, b.Spec.Workload
	var svc v1alpha1.Placement
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: svcName}, &svc)
	switch {
	case apierrors.IsNotFound(err) || (err == nil && svc.Labels[v1alpha1.LabelCatalogPackage] == ""):
		return notReady(v1alpha1.BindingServiceNotFound, "there is no catalog service %s in namespace %s (convoy catalog install PACKAGE --name %s -n %s)", svcName, ns, svcName, ns)
	case err != nil:
		return v1alpha1.ServiceBindingStatus{}, err
	case !svc.DeletionTimestamp.IsZero():
		return notReady(v1alpha1.BindingServiceDeleted, "service %s is being deleted; the workload's pods lose the binding", svcName)
	}
	serviceIn := map[string]bool{} // as the propagation controller projects it
	for _, c := range svc.Status.Clusters {
		serviceIn[c.Cluster] = true
	}
	tpl := &unstructured.Unstructured{}
	tpl.SetAPIVersion(w.Group + "/v1")
	tpl.SetKind(w.Kind)
	if err := r.Reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: w.Name}, tpl); apierrors.IsNotFound(err) {
		return notReady(v1alpha1.BindingWorkloadNotPlaced, "there is no %s %s in namespace %s at the hub", w.Kind, w.Name, ns)
	} else if err != nil {
		return v1alpha1.ServiceBindingStatus{}, err
	}
	var list v1alpha1.PlacementList
	if err := r.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return v1alpha1.ServiceBindingStatus{}, err
	}
	workloadIn := map[string]bool{}
	placed := false
	for _, p := range list.Items {
		if p.Labels[v1alpha1.LabelCatalogPackage] != "" || !p.DeletionTimestamp.IsZero() {
			continue
		}
		for _, sel := range p.Spec.Resources {
			if ok, _ := render.Selects(sel, tpl); ok {
				placed = true
				for _, c := range p.Status.Clusters {
					workloadIn[c.Cluster] = true
				}
				break
			}
		}
	}
	if !placed {
		return notReady(v1alpha1.BindingWorkloadNotPlaced, "no Placement in namespace %s selects %s %s", ns, w.Kind, w.Name)
	}
	var both []string
	for c := range workloadIn {
		if serviceIn[c] {
			both = append(both, c)
		}
	}
	slices.Sort(both)
	if len(both) == 0 {
		return notReady(v1alpha1.BindingNoCommonCluster, "%s %s and service %s are placed on no cluster in common", w.Kind, w.Name, svcName)
	}
	var missing []string
	for c := range workloadIn {
		if !serviceIn[c] {
			missing = append(missing, c)
		}
	}
	slices.Sort(missing)
	msg := fmt.Sprintf("service %s is projected into %s %s in %s", svcName, w.Kind, w.Name, strings.Join(both, ", "))
	if len(missing) > 0 {
		msg += fmt.Sprintf("; not in %s, where the service is not placed", strings.Join(missing, ", "))
	}
	return v1alpha1.ServiceBindingStatus{Clusters: both, Conditions: []metav1.Condition{{Type: v1alpha1.BindingReady,
		Status: metav1.ConditionTrue, Reason: v1alpha1.BindingProjected, Message: msg}}}, nil
}

// SetupWithManager registers the controller: ServiceBindings, and every Placement (a change of
// one wakes the bindings of its namespace).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ServiceBinding{}).
		Named("servicebinding").
		Watches(&v1alpha1.Placement{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []ctrl.Request {
			var list v1alpha1.ServiceBindingList
			if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
				return nil
			}
			reqs := make([]ctrl.Request, len(list.Items))
			for i := range list.Items {
				reqs[i] = ctrl.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])}
			}
			return reqs
		}), builder.WithPredicates(placementChanged)).
		Complete(r)
}

// placementChanged passes what a binding's status depends on: a Placement's spec, labels,
// deletion, and the clusters it chose; not the rest of its status.
var placementChanged = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*v1alpha1.Placement)
	n, ok2 := e.ObjectNew.(*v1alpha1.Placement)
	if !ok1 || !ok2 {
		return true
	}
	clusters := func(p *v1alpha1.Placement) string {
		var b strings.Builder
		for _, c := range p.Status.Clusters {
			b.WriteString(c.Cluster + ",")
		}
		return b.String()
	}
	return o.Generation != n.Generation || !maps.Equal(o.Labels, n.Labels) ||
		o.DeletionTimestamp.IsZero() != n.DeletionTimestamp.IsZero() || clusters(o) != clusters(n)
}}
