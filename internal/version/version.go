// Package version says which Convoy this is and which upstream versions it is pinned to.
// Anything may import it.
package version

// Convoy is the Convoy version; `make` sets it from git describe with -ldflags -X.
var Convoy = "dev"

// Pinned upstream versions. The Makefile builds exactly these into bin/; a test checks that
// the two agree.
const (
	Kubernetes = "v1.37.2"
	// KubernetesPrevious is the minor version before, which the upgrade path starts from:
	// hack/tools.sh builds its member-cluster programs into bin/kubernetes/KubernetesPrevious.
	KubernetesPrevious = "v1.36.3"
	Kwok               = "v0.8.0"
	Helm               = "v3.22.0"
	Kine               = "v0.17.5"
	// GatewayAPI is the Gateway API whose standard CRDs the hub installs (bin/gateway-api).
	GatewayAPI = "v1.6.3"
	// CoreDNS and LocalPath (local-path-provisioner) run in pods of clusters with real nodes;
	// hack/images/go.mod pins them.
	CoreDNS   = "v1.15.0"
	LocalPath = "v0.0.30"
	// VictoriaMetrics is the version of the members' metrics collector (vmagent) and of the
	// hub's store; hack/observe/go.mod pins it.
	VictoriaMetrics = "v1.151.0"
)

// Addons are the versions of the add-ons this Convoy ships, by the name a ClusterProfile gives
// them: what a profile's add-on without a version means. kube-proxy is left out: its version
// is the cluster's Kubernetes version.
func Addons() map[string]string {
	return map[string]string{"coredns": CoreDNS, "storage": LocalPath, "metrics": VictoriaMetrics}
}
