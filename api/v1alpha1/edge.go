package v1alpha1

// The edge load balancer's names in the Gateway API, shared by the hub's controllers and the
// CLI.
const (
	// EdgeControllerName is the GatewayClass controllerName of Convoy's edge load balancer.
	EdgeControllerName = "convoy.dev/edge"
	// EdgeGatewayClass is the GatewayClass the hub makes for it: Gateways of this class are
	// edge pools.
	EdgeGatewayClass = "convoy-edge"
)
