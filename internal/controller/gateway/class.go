// Package gateway holds the hub's controllers of the edge load balancer's API, the Gateway
// API: the GatewayClass of Convoy's edge (v1alpha1.EdgeGatewayClass), which the hub makes and
// this package accepts. Gateways (edge pools) and their routes come next (docs/ARCHITECTURE.md,
// "The edge load balancer"). Only the hub's composition root imports it.
package gateway

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// EnsureClass makes the edge's GatewayClass unless it exists; a class changed since is left as
// it is (its controllerName cannot change).
func EnsureClass(ctx context.Context, c client.Client) error {
	gc := &gatewayv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.EdgeGatewayClass},
		Spec: gatewayv1.GatewayClassSpec{
			ControllerName: v1alpha1.EdgeControllerName,
			Description:    ptr.To("Convoy's edge: one pool of HAProxy instances per Gateway"),
		},
	}
	if err := c.Create(ctx, gc); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("make GatewayClass %s: %w", v1alpha1.EdgeGatewayClass, err)
	}
	return nil
}

// ClassReconciler accepts every GatewayClass whose controllerName is Convoy's edge, and is the
// only writer of their status.
type ClassReconciler struct {
	Client client.Client
}

// SetupWithManager registers the reconciler for the edge's GatewayClasses only.
func (r *ClassReconciler) SetupWithManager(mgr ctrl.Manager) error {
	ours := predicate.NewPredicateFuncs(func(o client.Object) bool {
		gc, ok := o.(*gatewayv1.GatewayClass)
		return ok && gc.Spec.ControllerName == v1alpha1.EdgeControllerName
	})
	return ctrl.NewControllerManagedBy(mgr).Named("gatewayclass").
		For(&gatewayv1.GatewayClass{}, builder.WithPredicates(ours)).
		Complete(r)
}

// Reconcile sets the class's Accepted condition for its generation.
func (r *ClassReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	gc := &gatewayv1.GatewayClass{}
	if err := r.Client.Get(ctx, req.NamespacedName, gc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if gc.Spec.ControllerName != v1alpha1.EdgeControllerName {
		return ctrl.Result{}, nil
	}
	changed := meta.SetStatusCondition(&gc.Status.Conditions, metav1.Condition{
		Type:               string(gatewayv1.GatewayClassConditionStatusAccepted),
		Status:             metav1.ConditionTrue,
		Reason:             string(gatewayv1.GatewayClassReasonAccepted),
		Message:            "Convoy's edge load balancer serves the Gateways of this class",
		ObservedGeneration: gc.Generation,
	})
	if !changed {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.Client.Status().Update(ctx, gc)
}
