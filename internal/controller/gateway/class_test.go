package gateway_test

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
)

// A hub has the Gateway API and Convoy's GatewayClass, accepted; it leaves another
// controller's class alone.
func TestEdgeGatewayClass(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	c := h.Client
	ctx := context.Background()

	other := &gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "someone-else"},
		Spec: gatewayv1.GatewayClassSpec{ControllerName: "example.com/gateway"}}
	hubtest.Must(t, c.Create(ctx, other))

	accepted := func(gen int64) func() (bool, error) {
		return func() (bool, error) {
			gc := &gatewayv1.GatewayClass{}
			if err := c.Get(ctx, client.ObjectKey{Name: v1alpha1.EdgeGatewayClass}, gc); err != nil {
				return false, err
			}
			cond := meta.FindStatusCondition(gc.Status.Conditions, string(gatewayv1.GatewayClassConditionStatusAccepted))
			return cond != nil && cond.Status == metav1.ConditionTrue && cond.ObservedGeneration == gen && gc.Generation == gen, nil
		}
	}
	hubtest.Eventually(t, "the edge's GatewayClass accepted", 30*time.Second, accepted(1))

	// A change of the class's spec is accepted for its new generation; by then the other
	// class, created before it, has been seen and left as it was.
	gc := &gatewayv1.GatewayClass{}
	hubtest.Must(t, c.Get(ctx, client.ObjectKey{Name: v1alpha1.EdgeGatewayClass}, gc))
	gc.Spec.Description = ptr.To("the fleet's edge")
	hubtest.Must(t, c.Update(ctx, gc))
	hubtest.Eventually(t, "the changed class accepted", 30*time.Second, accepted(2))
	hubtest.Must(t, c.Get(ctx, client.ObjectKey{Name: other.Name}, other))
	if cond := meta.FindStatusCondition(other.Status.Conditions, string(gatewayv1.GatewayClassConditionStatusAccepted)); cond != nil && cond.Status == metav1.ConditionTrue {
		t.Errorf("another controller's class was accepted: %+v", cond)
	}
}
