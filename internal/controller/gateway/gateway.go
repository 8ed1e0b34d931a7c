package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/edge"
)

// everything is the one key the Reconciler works on: the edge is resolved as a whole.
var everything = reconcile.Request{NamespacedName: types.NamespacedName{Name: "edge"}}

// Reconciler resolves the edge's Gateways and routes (edge.Resolve) from the hub's Gateway API
// objects and the Services the agents report in their Works, gives each accepted edge Gateway
// an address (edge.Allocate) and writes its pool as an EdgePool, which the pool supervisors
// run. It writes the conditions of each edge Gateway, its listeners and the routes' parents for
// them, and the Gateways' addresses: Programmed follows what the supervisors report in the
// EdgePool's status. It is the only writer of all of these, and of EdgePools' spec.
type Reconciler struct {
	Client client.Client
	// Addresses is the range the pools' addresses come from.
	Addresses netip.Prefix
	// Reports, when set, gives each Work with the status its agent last reported on its
	// delivery stream (internal/delivery): the reach of its Services.
	Reports interface {
		Overlay(w *v1alpha1.Work) *v1alpha1.Work
	}

	reported chan event.GenericEvent

	// given are the addresses of the EdgePools this reconciler wrote that its cache may not
	// show yet, by Gateway NAMESPACE/NAME (one worker: no lock).
	given map[string]netip.Addr
}

// SetupWithManager registers the reconciler: any change of what the edge is resolved from
// resolves it again.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.given = map[string]netip.Addr{}
	r.reported = make(chan event.GenericEvent, 1)
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
		// A report on a stream: a moment later, so that a burst of them resolves once.
		WatchesRawSource(source.Channel(r.reported, handler.Funcs{GenericFunc: func(_ context.Context, _ event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			q.AddAfter(everything, 250*time.Millisecond)
		}})).
		// Its own writes of a pool's spec are no news; the supervisors' reports are.
		Watches(&v1alpha1.EdgePool{}, all, builder.WithPredicates(predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
			old, oldOK := e.ObjectOld.(*v1alpha1.EdgePool)
			cur, curOK := e.ObjectNew.(*v1alpha1.EdgePool)
			return !oldOK || !curOK || !equality.Semantic.DeepEqual(old.Status, cur.Status)
		}})).
		Complete(r)
}

// WorkReported wakes the reconciler for a Work whose agent reported a new status on its
// stream. It never blocks: a wake already waiting covers this one.
func (r *Reconciler) WorkReported() {
	select {
	case r.reported <- event.GenericEvent{}:
	default:
	}
}

// Reconcile resolves the edge, writes the pools that changed and what changed of the statuses.
func (r *Reconciler) Reconcile(ctx context.Context, _ reconcile.Request) (ctrl.Result, error) {
	snap, err := r.snapshot(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	var pools v1alpha1.EdgePoolList
	if err := r.Client.List(ctx, &pools, client.InNamespace(v1alpha1.SystemNamespace)); err != nil {
		return ctrl.Result{}, fmt.Errorf("list EdgePools: %w", err)
	}
	res := edge.Resolve(snap)
	programmed, poolErr := r.writePools(ctx, snap, res, pools.Items)
	for i := range snap.Gateways {
		gw := &snap.Gateways[i]
		key := gw.Namespace + "/" + gw.Name
		if v, ok := res.Gateways[key]; ok {
			if err := r.writeGateway(ctx, gw, v, programmed[key]); err != nil {
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
	// Again once instances could have stopped reporting (an edge host that died).
	return ctrl.Result{RequeueAfter: v1alpha1.EdgeInstanceTTL / 2}, poolErr
}

// served is what a Gateway's Programmed condition and addresses say.
type served struct {
	address    string            // the pool's, once it has one
	programmed *metav1.Condition // nil: leave it as it is (an update is on its way to the pool)
}

// writePools gives each accepted edge Gateway an address and writes its EdgePool when it
// changed; it deletes the EdgePools of Gateways that are gone. A Gateway that is not accepted
// keeps its EdgePool as it was, so that its pool keeps serving. It returns what each edge
// Gateway's Programmed condition should say.
func (r *Reconciler) writePools(ctx context.Context, snap edge.Snapshot, res edge.Resolution, pools []v1alpha1.EdgePool) (map[string]served, error) {
	out := map[string]served{}
	byGateway := map[string]*v1alpha1.EdgePool{}
	held := map[string]netip.Addr{} // every pool's, a deleted one's too: it is not given again in this pass
	gateways := map[string]*gatewayv1.Gateway{}
	for i := range snap.Gateways {
		gateways[snap.Gateways[i].Namespace+"/"+snap.Gateways[i].Name] = &snap.Gateways[i]
	}
	classes := map[string]bool{} // exists → is the edge's
	for _, c := range snap.Classes {
		classes[c.Name] = string(c.Spec.ControllerName) == v1alpha1.EdgeControllerName
	}
	for i := range pools {
		p := &pools[i]
		if a, err := netip.ParseAddr(p.Spec.Address); err == nil {
			held[p.Spec.Gateway] = a
			if r.given[p.Spec.Gateway] == a {
				delete(r.given, p.Spec.Gateway) // the cache has caught up
			}
		}
		if _, edgeGateway := res.Gateways[p.Spec.Gateway]; edgeGateway {
			byGateway[p.Spec.Gateway] = p
			continue
		}
		// Its Gateway was deleted, or moved to another controller's class: the pool goes. A
		// Gateway whose class is missing (deleted by mistake) keeps its pool.
		if gw := gateways[p.Spec.Gateway]; gw != nil {
			if ours, exists := classes[string(gw.Spec.GatewayClassName)]; !exists || ours {
				continue
			}
		}
		if err := r.Client.Delete(ctx, p); client.IgnoreNotFound(err) != nil {
			return nil, fmt.Errorf("delete EdgePool %s: %w", p.Name, err)
		}
		delete(r.given, p.Spec.Gateway)
	}
	// What this reconciler wrote a moment ago may not be in its cache yet: its pool holds
	// that address, and the one the cache still shows stays taken too, so that none is given
	// twice.
	for gw, a := range r.given {
		if old, ok := held[gw]; ok && old != a {
			held[gw+" (before)"] = old
		}
		held[gw] = a
	}
	requested := map[string]netip.Addr{}
	badAddress := map[string]string{}
	for i := range snap.Gateways {
		gw := &snap.Gateways[i]
		key := gw.Namespace + "/" + gw.Name
		if _, ok := res.Pools[key]; !ok {
			continue
		}
		var types, values []string
		for _, a := range gw.Spec.Addresses {
			t := ""
			if a.Type != nil {
				t = string(*a.Type)
			}
			types, values = append(types, t), append(values, a.Value)
		}
		a, ok, err := edge.ParseAddresses(types, values)
		switch {
		case err != nil:
			badAddress[key] = err.Error()
		case ok:
			requested[key] = a
		}
	}
	addrs, refused := edge.Allocate(r.Addresses, slices.Collect(maps.Keys(res.Pools)), held, requested)
	var failed error
	now := time.Now()
	maps.Copy(refused, badAddress)
	for key := range res.Gateways {
		cur := byGateway[key]
		pool, accepted := res.Pools[key]
		addr, hasAddr := addrs[key]
		switch {
		case accepted && refused[key] == "" && hasAddr:
			ns, name, _ := strings.Cut(key, "/")
			want := edge.ToSpec(pool, addr)
			var err error
			if cur == nil {
				cur = &v1alpha1.EdgePool{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.SystemNamespace, Name: v1alpha1.EdgePoolName(ns, name),
					Labels: map[string]string{v1alpha1.LabelGatewayNamespace: ns}}, Spec: want}
				if err = r.Client.Create(ctx, cur); err != nil {
					err = fmt.Errorf("create EdgePool %s: %w", cur.Name, err)
					cur = nil
				}
			} else if !equality.Semantic.DeepEqual(cur.Spec, want) {
				next := cur.DeepCopy()
				next.Spec = want
				if err = r.Client.Update(ctx, next); err != nil {
					err = fmt.Errorf("update EdgePool %s: %w", cur.Name, err)
				} else {
					cur = next
				}
			}
			if err == nil {
				r.given[key] = addr
			}
			if err != nil {
				// This Gateway says why; the others are written, and the next pass tries again.
				failed = errors.Join(failed, err)
				c := metav1.Condition{Type: string(gatewayv1.GatewayConditionProgrammed), Status: metav1.ConditionFalse,
					Reason: string(gatewayv1.GatewayReasonPending), Message: err.Error() + "; the pool keeps serving what it served"}
				out[key] = served{programmed: &c}
				if cur != nil {
					out[key] = served{address: cur.Spec.Address, programmed: &c}
				}
				continue
			}
		case refused[key] != "":
			c := metav1.Condition{Type: string(gatewayv1.GatewayConditionProgrammed), Status: metav1.ConditionFalse,
				Reason: string(gatewayv1.GatewayReasonAddressNotUsable), Message: refused[key] + "; the pool keeps serving what it served"}
			out[key] = served{programmed: &c}
			if cur != nil {
				out[key] = served{address: cur.Spec.Address, programmed: &c}
			}
			continue
		}
		out[key] = programmedBy(cur, accepted, now)
	}
	return out, failed
}

// programmedBy is what a Gateway's Programmed says from its pool's instances.
func programmedBy(p *v1alpha1.EdgePool, accepted bool, now time.Time) served {
	programmed := func(ok bool, reason gatewayv1.GatewayConditionReason, format string, args ...any) served {
		s := served{programmed: &metav1.Condition{Type: string(gatewayv1.GatewayConditionProgrammed), Status: metav1.ConditionFalse,
			Reason: string(reason), Message: fmt.Sprintf(format, args...)}}
		if ok {
			s.programmed.Status = metav1.ConditionTrue
		}
		if p != nil {
			s.address = p.Spec.Address
		}
		return s
	}
	if p == nil {
		if !accepted {
			return programmed(false, gatewayv1.GatewayReasonInvalid, "the Gateway is not accepted, so it has no pool")
		}
		return programmed(false, gatewayv1.GatewayReasonPending, "the pool is being made")
	}
	var serving, refused, failed, older []string
	for _, in := range p.Status.Instances {
		current := in.ObservedGeneration == p.Generation
		switch {
		case now.Sub(in.Heartbeat.Time) > v1alpha1.EdgeInstanceTTL:
			failed = append(failed, fmt.Sprintf("%s: no report from supervisor %s since %s", in.Name, in.Supervisor, in.Heartbeat.UTC().Format(time.RFC3339)))
		case current && in.Phase == v1alpha1.EdgeServing:
			serving = append(serving, in.Name)
		case current && in.Phase == v1alpha1.EdgeRefused:
			refused = append(refused, in.Name+": "+in.Message)
		case current:
			failed = append(failed, in.Name+": "+in.Message)
		case in.Phase == v1alpha1.EdgeServing:
			older = append(older, in.Name)
		}
	}
	suffix := ""
	if !accepted {
		suffix = " (its last accepted form: the Gateway is not accepted now)"
	}
	switch {
	case len(refused) > 0:
		return programmed(false, gatewayv1.GatewayReasonInvalid, "HAProxy refused the pool's configuration, and serves the last one it took: %s", strings.Join(refused, "; "))
	case len(serving) > 0:
		return programmed(true, gatewayv1.GatewayReasonProgrammed, "served at %s by %d HAProxy instance(s)%s", p.Spec.Address, len(serving), suffix)
	case len(older) > 0:
		return served{address: p.Spec.Address} // the update is on its way: Programmed stays as it was
	case len(failed) > 0:
		return programmed(false, gatewayv1.GatewayReasonPending, "no instance serves the pool yet: %s", strings.Join(failed, "; "))
	}
	return programmed(false, gatewayv1.GatewayReasonPending, "waiting for a pool supervisor to run the pool at %s", p.Spec.Address)
}

// snapshot reads what the edge is resolved from.
func (r *Reconciler) snapshot(ctx context.Context) (edge.Snapshot, error) {
	s := edge.Snapshot{ControllerName: v1alpha1.EdgeControllerName, Namespaces: map[string]map[string]string{}, Services: map[edge.ServicePort][]edge.ClusterServers{}}
	var classes gatewayv1.GatewayClassList
	var gws gatewayv1.GatewayList
	var https gatewayv1.HTTPRouteList
	var tcps gatewayv1.TCPRouteList
	var grants gatewayv1.ReferenceGrantList
	for _, l := range []client.ObjectList{&classes, &gws, &https, &tcps, &grants} {
		if err := r.Client.List(ctx, l); err != nil {
			return s, fmt.Errorf("list %T: %w", l, err)
		}
	}
	s.Classes, s.Gateways, s.HTTPRoutes, s.TCPRoutes, s.Grants = classes.Items, gws.Items, https.Items, tcps.Items, grants.Items
	ours := map[string]bool{}
	for _, c := range s.Classes {
		ours[c.Name] = string(c.Spec.ControllerName) == v1alpha1.EdgeControllerName
	}
	if !slices.ContainsFunc(s.Gateways, func(g gatewayv1.Gateway) bool { return ours[string(g.Spec.GatewayClassName)] }) {
		// No edge Gateway: no listener admits routes by their namespace's labels, and no
		// backend is to be found in a large fleet's Namespaces (a thousand clusters' own
		// among them) and Works.
		return s, nil
	}
	// Read only, so the cache's own objects.
	var nss corev1.NamespaceList
	if err := r.Client.List(ctx, &nss, client.UnsafeDisableDeepCopy); err != nil {
		return s, fmt.Errorf("list Namespaces: %w", err)
	}
	for _, ns := range nss.Items {
		s.Namespaces[ns.Name] = ns.Labels
	}
	var works v1alpha1.WorkList
	if err := r.Client.List(ctx, &works, client.UnsafeDisableDeepCopy); err != nil {
		return s, fmt.Errorf("list Works: %w", err)
	}
	for i := range works.Items {
		w := &works.Items[i]
		if r.Reports != nil {
			w = r.Reports.Overlay(w)
		}
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

func (r *Reconciler) writeGateway(ctx context.Context, gw *gatewayv1.Gateway, v edge.GatewayVerdict, sv served) error {
	want := gw.Status.DeepCopy()
	gen := gw.Generation
	v.Accepted.ObservedGeneration = gen
	meta.SetStatusCondition(&want.Conditions, v.Accepted)
	if sv.programmed != nil {
		sv.programmed.ObservedGeneration = gen
		meta.SetStatusCondition(&want.Conditions, *sv.programmed)
	}
	want.Addresses = nil
	if sv.address != "" {
		want.Addresses = []gatewayv1.GatewayStatusAddress{{Type: ptr.To(gatewayv1.IPAddressType), Value: sv.address}}
	}
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
		conds := slices.Clone(l.Conditions)
		if sv.programmed != nil {
			p := *sv.programmed
			if accepted := meta.FindStatusCondition(l.Conditions, string(gatewayv1.ListenerConditionAccepted)); accepted != nil && accepted.Status != metav1.ConditionTrue {
				p = metav1.Condition{Type: p.Type, Status: metav1.ConditionFalse, Reason: string(gatewayv1.ListenerReasonInvalid), Message: "the listener is not accepted"}
			}
			conds = append(conds, p)
		}
		for _, c := range conds {
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
