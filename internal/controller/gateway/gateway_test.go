package gateway_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
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
	scheme := runtime.NewScheme()
	hubtest.Must(t, clientgoscheme.AddToScheme(scheme))
	hubtest.Must(t, gatewayv1.Install(scheme))
	hubtest.Must(t, v1alpha1.AddToScheme(scheme))
	c, err := client.New(h.Config, client.Options{Scheme: scheme})
	hubtest.Must(t, err)
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
		want := "gateway True Accepted, False Pending; http 1 True Accepted; udp False UnsupportedProtocol"
		return got == want, fmt.Errorf("%s", got)
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

	// us-east's agent reports the Service's reach in its Work.
	w := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace("us-east"), Name: "shop-web"}}
	hubtest.Must(t, c.Create(ctx, w))
	w.Status.Resources = []v1alpha1.ResourceStatus{{
		ResourceIdentifier: v1alpha1.ResourceIdentifier{Version: "v1", Kind: "Service", Namespace: "shop", Name: "web"},
		State:              v1alpha1.ResourceApplied,
		Reach: &v1alpha1.ServiceReach{Ports: []v1alpha1.ReachPort{{Port: 80, NodePort: 30080}}, Endpoints: 2,
			Nodes: []v1alpha1.ReachNode{{Address: "10.77.0.2", Endpoints: 1}, {Address: "10.77.0.3", Endpoints: 1}}},
	}}
	hubtest.Must(t, c.Status().Update(ctx, w))
	hubtest.Eventually(t, "the route's backend resolved", time.Minute, route("True Accepted; True ResolvedRefs"))
}
