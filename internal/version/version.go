// Package version says which Convoy this is and which upstream versions it is pinned to.
// Anything may import it.
package version

// Convoy is the Convoy version; `make` sets it from git describe with -ldflags -X.
var Convoy = "dev"

// Pinned upstream versions. The Makefile builds exactly these into bin/; a test checks that
// the two agree.
const (
	Kubernetes = "v1.37.2"
	Kwok       = "v0.8.0"
	Helm       = "v3.22.0"
	Kine       = "v0.17.5"
	// GatewayAPI is the Gateway API whose standard CRDs the hub installs (bin/gateway-api).
	GatewayAPI = "v1.6.3"
	// CoreDNS and LocalPath (local-path-provisioner) run in pods of clusters with real nodes;
	// hack/images/go.mod pins them.
	CoreDNS   = "v1.15.0"
	LocalPath = "v0.0.30"
)
