// Package gateway holds the hub's controllers of the edge load balancer's API, the Gateway
// API: the GatewayClass of Convoy's edge (v1alpha1.EdgeGatewayClass), which the hub makes and
// this package accepts; the edge Gateways and routes, which Reconciler resolves into EdgePools
// and conditions; and the team roles (EnsureRoles) that let whoever may edit a namespace edit
// its Gateways and routes (docs/ARCHITECTURE.md, "The edge load balancer"). Only the hub's
// composition root imports it.
package gateway

import (
	"context"
	"fmt"
	"slices"

	rbacv1 "k8s.io/api/rbac/v1"
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

// The ClusterRoles EnsureRoles keeps: Kubernetes folds them into the built-in admin, edit and
// view roles (clusterrole-aggregation-controller, which the hub runs).
const (
	EditRole = "convoy:gateway-api:edit"
	ViewRole = "convoy:gateway-api:view"
)

// gatewayResources are the namespaced Gateway API kinds a team writes.
var gatewayResources = []string{"gateways", "httproutes", "tcproutes", "grpcroutes", "referencegrants"}

// EnsureRoles makes (or sets back) the ClusterRoles that give the Gateway API's namespaced kinds
// to the built-in roles: whoever may edit a namespace (a RoleBinding to admin or edit) may
// write its Gateways, routes and ReferenceGrants, and whoever may view it may read them. Their
// status stays the hub's.
func EnsureRoles(ctx context.Context, c client.Client) error {
	roles := []*rbacv1.ClusterRole{
		{ObjectMeta: metav1.ObjectMeta{Name: EditRole, Labels: map[string]string{
			"rbac.authorization.k8s.io/aggregate-to-admin": "true", "rbac.authorization.k8s.io/aggregate-to-edit": "true"}},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{gatewayv1.GroupName}, Resources: gatewayResources,
				Verbs: []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: ViewRole, Labels: map[string]string{"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{gatewayv1.GroupName}, Resources: append(slices.Clone(gatewayResources),
				"gateways/status", "httproutes/status", "tcproutes/status", "grpcroutes/status"), Verbs: []string{"get", "list", "watch"}}}},
	}
	for _, want := range roles {
		cur := &rbacv1.ClusterRole{}
		err := c.Get(ctx, client.ObjectKeyFromObject(want), cur)
		switch {
		case apierrors.IsNotFound(err):
			err = c.Create(ctx, want)
		case err == nil:
			cur.Labels, cur.Rules = want.Labels, want.Rules
			err = c.Update(ctx, cur)
		}
		if err != nil {
			return fmt.Errorf("make ClusterRole %s: %w", want.Name, err)
		}
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
