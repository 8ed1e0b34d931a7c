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

// The annotations that tune the edge where the Gateway API has no field.
const (
	// EdgeMaxConnectionsAnnotation, on a Gateway, bounds the connections each of its pool's
	// instances serves at once (a positive integer).
	EdgeMaxConnectionsAnnotation = "edge.convoy.dev/max-connections"
	// EdgeRequestsPerSecondAnnotation, on a Gateway, bounds the HTTP requests a second each of
	// its pool's instances serves; the rest are answered 429 (a positive integer).
	EdgeRequestsPerSecondAnnotation = "edge.convoy.dev/requests-per-second"
	// EdgeHealthPathAnnotation, on an HTTPRoute, is the path the edge's active health checks
	// ask its backends (for example /healthz); without it they check TCP connections.
	EdgeHealthPathAnnotation = "edge.convoy.dev/health-check-path"
	// EdgeSupervisorHub names the hub's own pool supervisor in EdgePool status.
	EdgeSupervisorHub = "hub"
)

// LabelGatewayNamespace, on an EdgePool, is the namespace of its Gateway.
const LabelGatewayNamespace = "edge.convoy.dev/gateway-namespace"
