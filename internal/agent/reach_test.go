package agent

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// A Service's reach counts each ready endpoint once, on its node, and lists the Ready nodes
// with an address, sorted.
func TestReachOf(t *testing.T) {
	node := func(name, addr string, ready bool) *corev1.Node {
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}
		if addr != "" {
			n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: addr}}
		}
		return n
	}
	ep := func(addr, node string, ready *bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{addr}, NodeName: ptr(node), Conditions: discoveryv1.EndpointConditions{Ready: ready}}
	}
	slices := []*discoveryv1.EndpointSlice{
		{Endpoints: []discoveryv1.Endpoint{ep("10.244.0.2", "b", nil), ep("10.244.0.3", "b", ptr(true)), ep("10.244.1.2", "a", ptr(false))}},
		{Endpoints: []discoveryv1.Endpoint{ep("10.244.0.2", "b", nil), ep("10.244.1.3", "a", nil)}}, // one seen again
	}
	nodes := []*corev1.Node{node("b", "10.77.0.3", true), node("a", "10.77.0.2", true), node("c", "10.77.0.4", false), node("d", "", true)}
	svc := &corev1.Service{Spec: corev1.ServiceSpec{ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal}}
	got := reachOf(svc, []v1alpha1.ReachPort{{Port: 80, NodePort: 30080}}, slices, nodes)
	if got.Endpoints != 3 || !got.Local {
		t.Errorf("endpoints %d local %v, want 3 and true", got.Endpoints, got.Local)
	}
	want := []v1alpha1.ReachNode{{Address: "10.77.0.2", Endpoints: 1}, {Address: "10.77.0.3", Endpoints: 2}}
	if len(got.Nodes) != len(want) || got.Nodes[0] != want[0] || got.Nodes[1] != want[1] {
		t.Errorf("nodes %+v, want %+v", got.Nodes, want)
	}
}
