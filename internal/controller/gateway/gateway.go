package gateway

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/edge"
)

// everything is the one key the Reconciler works on: the edge is resolved as a whole.
var everything = reconcile.Request{NamespacedName: types.NamespacedName{Name: "edge"}}

// Reconciler resolves the edge's Gateways and routes (edge.Resolve) from the hub's Gateway API
// objects and the Services the agents report in their Works, and writes the conditions of each
// edge Gateway, its listeners and the routes' parents for them. It is their only writer, but
// for Programmed, which the pool supervisor will write; until it exists, Programmed says
// Pending.
type Reconciler struct {
	Client client.Client
}

// SetupWithManager registers the reconciler: any change of what the edge is resolved from
// resolves it again.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	all := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{everything}
	})
	return ctrl.NewControllerManagedBy(mgr).Named("gateway").
		Watches(&gatewayv1.Gateway{}, all).
		Watches(&gatewayv1.GatewayClass{}, all).
		Watches(&gatewayv1.HTTPRoute{}, all).
		Watches(&gatewayv1.TCPRoute{}, all).
		Watches(&gatewayv1.ReferenceGrant{}, all).
		Watches(&corev1.Namespace{}, all).
		Watches(&v1alpha1.Work{}, all).
		Complete(r)
}

// Reconcile resolves the edge and writes what changed of the statuses.
func (r *Reconciler) Reconcile(ctx context.Context, _ reconcile.Request) (ctrl.Result, error) {
	snap, err := r.snapshot(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	res := edge.Resolve(snap)
	for i := range snap.Gateways {
		gw := &snap.Gateways[i]
		if v, ok := res.Gateways[gw.Namespace+"/"+gw.Name]; ok {
			if err := r.writeGateway(ctx, gw, v); err != nil {
				return ctrl.Result{}, err
			}
		}
	}
	for i := range snap.HTTPRoutes {
		rt := &snap.HTTPRoutes[i]
		if err := r.writeRoute(ctx, rt, &rt.Status.RouteStatus, res.Routes["HTTPRoute/"+rt.Namespace+"/"+rt.Name]); err != nil {
			return ctrl.Result{}, err
		}
	}
	for i := range snap.TCPRoutes {
		rt := &snap.TCPRoutes[i]
		if err := r.writeRoute(ctx, rt, &rt.Status.RouteStatus, res.Routes["TCPRoute/"+rt.Namespace+"/"+rt.Name]); err != nil {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{}, nil
}

// snapshot reads what the edge is resolved from.
func (r *Reconciler) snapshot(ctx context.Context) (edge.Snapshot, error) {
	s := edge.Snapshot{ControllerName: v1alpha1.EdgeControllerName, Namespaces: map[string]map[string]string{}, Services: map[edge.ServicePort][]edge.ClusterServers{}}
	var classes gatewayv1.GatewayClassList
	var gws gatewayv1.GatewayList
	var https gatewayv1.HTTPRouteList
	var tcps gatewayv1.TCPRouteList
	var grants gatewayv1.ReferenceGrantList
	var nss corev1.NamespaceList
	for _, l := range []client.ObjectList{&classes, &gws, &https, &tcps, &grants, &nss} {
		if err := r.Client.List(ctx, l); err != nil {
			return s, fmt.Errorf("list %T: %w", l, err)
		}
	}
	s.Classes, s.Gateways, s.HTTPRoutes, s.TCPRoutes, s.Grants = classes.Items, gws.Items, https.Items, tcps.Items, grants.Items
	for _, ns := range nss.Items {
		s.Namespaces[ns.Name] = ns.Labels
	}
	ours := map[string]bool{}
	for _, c := range s.Classes {
		ours[c.Name] = string(c.Spec.ControllerName) == v1alpha1.EdgeControllerName
	}
	if !slices.ContainsFunc(s.Gateways, func(g gatewayv1.Gateway) bool { return ours[string(g.Spec.GatewayClassName)] }) {
		return s, nil // no edge Gateway: no backend to find in a large fleet's Works
	}
	var works v1alpha1.WorkList
	if err := r.Client.List(ctx, &works); err != nil {
		return s, fmt.Errorf("list Works: %w", err)
	}
	for _, w := range works.Items {
		cluster, ok := strings.CutPrefix(w.Namespace, v1alpha1.ClusterNamespacePrefix)
		if !ok {
			continue
		}
		for _, res := range w.Status.Resources {
			if res.Group != "" || res.Kind != "Service" || res.Reach == nil {
				continue
			}
			for port, servers := range edge.ReachServers(*res.Reach) {
				key := edge.ServicePort{Namespace: res.Namespace, Name: res.Name, Port: port}
				// Two Works may list one Service; the cluster has it once.
				if !slices.ContainsFunc(s.Services[key], func(c edge.ClusterServers) bool { return c.Cluster == cluster }) {
					s.Services[key] = append(s.Services[key], edge.ClusterServers{Cluster: cluster, Servers: servers})
				}
			}
		}
	}
	return s, nil
}

// pending is Programmed until a pool supervisor serves the edge's pools.
func pending(gen int64) metav1.Condition {
	return metav1.Condition{Type: string(gatewayv1.GatewayConditionProgrammed), Status: metav1.ConditionFalse,
		Reason: string(gatewayv1.GatewayReasonPending), Message: "Convoy's edge does not run pools yet: the Gateway is resolved, not served", ObservedGeneration: gen}
}

func (r *Reconciler) writeGateway(ctx context.Context, gw *gatewayv1.Gateway, v edge.GatewayVerdict) error {
	want := gw.Status.DeepCopy()
	gen := gw.Generation
	v.Accepted.ObservedGeneration = gen
	meta.SetStatusCondition(&want.Conditions, v.Accepted)
	meta.SetStatusCondition(&want.Conditions, pending(gen))
	var listeners []gatewayv1.ListenerStatus
	for _, l := range v.Listeners {
		ls := gatewayv1.ListenerStatus{Name: gatewayv1.SectionName(l.Name), AttachedRoutes: l.AttachedRoutes, SupportedKinds: []gatewayv1.RouteGroupKind{}}
		for _, old := range gw.Status.Listeners {
			if string(old.Name) == l.Name {
				ls.Conditions = slices.Clone(old.Conditions) // not the cached object's
			}
		}
		for _, spec := range gw.Spec.Listeners {
			if string(spec.Name) == l.Name && (spec.Protocol == gatewayv1.HTTPProtocolType || spec.Protocol == gatewayv1.TCPProtocolType) {
				kind := "HTTPRoute"
				if spec.Protocol == gatewayv1.TCPProtocolType {
					kind = "TCPRoute"
				}
				group := gatewayv1.Group(gatewayv1.GroupName)
				ls.SupportedKinds = []gatewayv1.RouteGroupKind{{Group: &group, Kind: gatewayv1.Kind(kind)}}
			}
		}
		for _, c := range append(l.Conditions, pending(gen)) {
			c.ObservedGeneration = gen
			meta.SetStatusCondition(&ls.Conditions, c)
		}
		listeners = append(listeners, ls)
	}
	want.Listeners = listeners
	if equality.Semantic.DeepEqual(&gw.Status, want) {
		return nil
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := &gatewayv1.Gateway{}
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(gw), cur); err != nil {
			return client.IgnoreNotFound(err)
		}
		if cur.Generation != gen {
			return nil // a newer spec: the next pass judges it
		}
		cur.Status = *want
		return r.Client.Status().Update(ctx, cur)
	})
}

// writeRoute writes the route's parent statuses for the edge's Gateways, leaving other
// controllers' entries as they are.
func (r *Reconciler) writeRoute(ctx context.Context, obj client.Object, st *gatewayv1.RouteStatus, verdicts []edge.ParentVerdict) error {
	gen := obj.GetGeneration()
	var parents []gatewayv1.RouteParentStatus
	for _, p := range st.Parents {
		if string(p.ControllerName) != v1alpha1.EdgeControllerName {
			parents = append(parents, p)
		}
	}
	for _, v := range verdicts {
		ps := gatewayv1.RouteParentStatus{ParentRef: v.ParentRef, ControllerName: v1alpha1.EdgeControllerName}
		for _, old := range st.Parents {
			if string(old.ControllerName) == v1alpha1.EdgeControllerName && equality.Semantic.DeepEqual(old.ParentRef, v.ParentRef) {
				ps.Conditions = slices.Clone(old.Conditions) // not the cached object's
			}
		}
		for _, c := range v.Conditions {
			c.ObservedGeneration = gen
			meta.SetStatusCondition(&ps.Conditions, c)
		}
		// A condition the verdict no longer gives (PartiallyInvalid) goes.
		ps.Conditions = slices.DeleteFunc(ps.Conditions, func(c metav1.Condition) bool {
			return !slices.ContainsFunc(v.Conditions, func(w metav1.Condition) bool { return w.Type == c.Type })
		})
		parents = append(parents, ps)
	}
	if equality.Semantic.DeepEqual(st.Parents, parents) {
		return nil
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := obj.DeepCopyObject().(client.Object)
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(obj), cur); err != nil {
			return client.IgnoreNotFound(err)
		}
		if cur.GetGeneration() != gen {
			return nil
		}
		switch c := cur.(type) {
		case *gatewayv1.HTTPRoute:
			c.Status.Parents = parents
		case *gatewayv1.TCPRoute:
			c.Status.Parents = parents
		}
		return r.Client.Status().Update(ctx, cur)
	})
}
