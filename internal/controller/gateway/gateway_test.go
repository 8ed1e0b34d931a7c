package gateway_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
)

// The hub judges an edge Gateway and its route, with the reasons: a listener it cannot serve, a
// backend that runs nowhere; then, once an agent reports the Service's reach, the route's
// references resolve.
func TestGatewayStatuses(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	c := h.Client
	ctx := context.Background()

	for _, ns := range []string{"shop", v1alpha1.ClusterNamespace("us-east")} {
		hubtest.Must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	port := gatewayv1.PortNumber(80)
	hubtest.Must(t, c.Create(ctx, &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "edge"}, Spec: gatewayv1.GatewaySpec{
		GatewayClassName: v1alpha1.EdgeGatewayClass,
		Listeners: []gatewayv1.Listener{
			{Name: "http", Port: 8080, Protocol: gatewayv1.HTTPProtocolType},
			{Name: "udp", Port: 9000, Protocol: gatewayv1.UDPProtocolType},
		}}}))
	hubtest.Must(t, c.Create(ctx, &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: gatewayv1.HTTPRouteSpec{
		CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "edge"}}},
		Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
			BackendObjectReference: gatewayv1.BackendObjectReference{Name: "web", Port: &port}}}}}}}}))

	condition := func(cs []metav1.Condition, typ string) string {
		if c := meta.FindStatusCondition(cs, typ); c != nil {
			return string(c.Status) + " " + c.Reason
		}
		return "none"
	}
	hubtest.Eventually(t, "the Gateway judged", time.Minute, func() (bool, error) {
		gw := &gatewayv1.Gateway{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "edge"}, gw); err != nil {
			return false, err
		}
		if len(gw.Status.Listeners) != 2 {
			return false, fmt.Errorf("listeners %+v", gw.Status.Listeners)
		}
		http, udp := gw.Status.Listeners[0], gw.Status.Listeners[1]
		got := fmt.Sprintf("gateway %s, %s; http %d %s; udp %s", condition(gw.Status.Conditions, "Accepted"), condition(gw.Status.Conditions, "Programmed"),
			http.AttachedRoutes, condition(http.Conditions, "Accepted"), condition(udp.Conditions, "Accepted"))
		want := "gateway True Accepted, True Programmed; http 1 True Accepted; udp False UnsupportedProtocol"
		return got == want && len(gw.Status.Addresses) == 1, fmt.Errorf("%s; addresses %v", got, gw.Status.Addresses)
	})
	gw := &gatewayv1.Gateway{}
	hubtest.Must(t, c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "edge"}, gw))
	addr := gw.Status.Addresses[0].Value
	if !h.Options.EdgeAddresses.Contains(netip.MustParseAddr(addr)) {
		t.Fatalf("address %s is outside the hub's edge range %s", addr, h.Options.EdgeAddresses)
	}
	// The hub's HAProxy serves the pool there: no backend runs yet, so it answers 503.
	get := func() (int, error) {
		resp, err := http.Get("http://" + net.JoinHostPort(addr, "8080") + "/")
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	hubtest.Eventually(t, "the pool serving", 30*time.Second, func() (bool, error) {
		code, err := get()
		return code == http.StatusServiceUnavailable, fmt.Errorf("%d %v", code, err)
	})
	route := func(want string) func() (bool, error) {
		return func() (bool, error) {
			rt := &gatewayv1.HTTPRoute{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, rt); err != nil {
				return false, err
			}
			if len(rt.Status.Parents) != 1 {
				return false, fmt.Errorf("parents %+v", rt.Status.Parents)
			}
			p := rt.Status.Parents[0]
			got := fmt.Sprintf("%s; %s", condition(p.Conditions, "Accepted"), condition(p.Conditions, "ResolvedRefs"))
			return got == want && string(p.ControllerName) == v1alpha1.EdgeControllerName, fmt.Errorf("%s", got)
		}
	}
	hubtest.Eventually(t, "the route accepted, its backend nowhere", time.Minute, route("True Accepted; False BackendNotFound"))

	// us-east's agent reports the Service's reach in its Work: nodes at loopback addresses,
	// where nothing listens on the NodePort (traffic stays on this host), so that the pool's
	// health checks find the servers down and it still answers 503.
	w := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace("us-east"), Name: "shop-web"}}
	hubtest.Must(t, c.Create(ctx, w))
	w.Status.Resources = []v1alpha1.ResourceStatus{{
		ResourceIdentifier: v1alpha1.ResourceIdentifier{Version: "v1", Kind: "Service", Namespace: "shop", Name: "web"},
		State:              v1alpha1.ResourceApplied,
		Reach: &v1alpha1.ServiceReach{Ports: []v1alpha1.ReachPort{{Port: 80, NodePort: 9}}, Endpoints: 2,
			Nodes: []v1alpha1.ReachNode{{Address: "127.0.0.2", Endpoints: 1}, {Address: "127.0.0.3", Endpoints: 1}}},
	}}
	hubtest.Must(t, c.Status().Update(ctx, w))
	hubtest.Eventually(t, "the route's backend resolved", time.Minute, route("True Accepted; True ResolvedRefs"))

	// A listener on a port another program holds is refused: the Gateway says why, and the
	// pool keeps serving what it served.
	taken, err := net.Listen("tcp", net.JoinHostPort(addr, "9090"))
	hubtest.Must(t, err)
	defer taken.Close()
	hubtest.Must(t, c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "edge"}, gw))
	gw.Spec.Listeners = append(gw.Spec.Listeners, gatewayv1.Listener{Name: "pg", Port: 9090, Protocol: gatewayv1.TCPProtocolType})
	hubtest.Must(t, c.Update(ctx, gw))
	hubtest.Eventually(t, "the pool refused", time.Minute, func() (bool, error) {
		hubtest.Must(t, c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "edge"}, gw))
		p := meta.FindStatusCondition(gw.Status.Conditions, "Programmed")
		return p != nil && p.Status == metav1.ConditionFalse && p.Reason == "Invalid" && p.ObservedGeneration == gw.Generation &&
			strings.Contains(p.Message, "9090 is taken"), fmt.Errorf("%+v", p)
	})
	if code, err := get(); code != http.StatusServiceUnavailable {
		t.Fatalf("the pool stopped serving after a refused change: %d %v", code, err)
	}

	// The Gateway deleted, its pool stops.
	hubtest.Must(t, c.Delete(ctx, gw))
	hubtest.Eventually(t, "the pool gone", time.Minute, func() (bool, error) {
		var pools v1alpha1.EdgePoolList
		hubtest.Must(t, c.List(ctx, &pools))
		_, err := get()
		return len(pools.Items) == 0 && err != nil, fmt.Errorf("%d pools; %v", len(pools.Items), err)
	})
}

// Team RBAC is plain RBAC: a team bound to the built-in edit role in its namespace may write
// its Gateways and routes there, and nothing else: not another team's namespace, not their
// status, not the hub's EdgePools.
func TestTeamRBAC(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	admin := h.Client
	ctx := context.Background()
	for _, ns := range []string{"shop", "blog"} {
		hubtest.Must(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	hubtest.Must(t, admin.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "shop-team"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "Group", Name: "shop-team"}}}))
	cfg := rest.CopyConfig(h.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "alice", Groups: []string{"shop-team", "system:authenticated"}}
	alice, err := client.New(cfg, client.Options{Scheme: hubtest.Scheme()})
	hubtest.Must(t, err)

	gw := func(ns string) *gatewayv1.Gateway {
		return &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "edge"}, Spec: gatewayv1.GatewaySpec{
			GatewayClassName: v1alpha1.EdgeGatewayClass, Listeners: []gatewayv1.Listener{{Name: "http", Port: 8080, Protocol: gatewayv1.HTTPProtocolType}}}}
	}
	// The aggregation controller folds the edge's role into edit shortly after the hub starts.
	hubtest.Eventually(t, "the shop team writing its Gateway", time.Minute, func() (bool, error) {
		err := alice.Create(ctx, gw("shop"))
		return err == nil, err
	})
	route := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: gatewayv1.HTTPRouteSpec{
		CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "edge"}}}}}
	hubtest.Must(t, alice.Create(ctx, route))
	hubtest.Must(t, alice.Delete(ctx, route))

	forbidden := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: got %v, want Forbidden", what, err)
		}
	}
	forbidden("a Gateway in blog", alice.Create(ctx, gw("blog")))
	var pools v1alpha1.EdgePoolList
	forbidden("reading the EdgePools", alice.List(ctx, &pools, client.InNamespace(v1alpha1.SystemNamespace)))
	mine := &gatewayv1.Gateway{}
	hubtest.Must(t, alice.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "edge"}, mine))
	mine.Status.Addresses = []gatewayv1.GatewayStatusAddress{{Value: "10.0.0.1"}}
	forbidden("writing the Gateway's status", alice.Status().Update(ctx, mine))
	forbidden("making a GatewayClass", alice.Create(ctx, &gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "mine"},
		Spec: gatewayv1.GatewayClassSpec{ControllerName: "example.com/mine"}}))
}
