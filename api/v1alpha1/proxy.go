package v1alpha1

import "strings"

// Cluster access through the hub: an aggregated API of the hub's API server. Each agent keeps
// a tunnel to the hub open (an upgraded GET on clusters/NAME/attach, which only the cluster's
// current agent may make), and people reach a member's API server at clusters/NAME/proxy/...:
// the hub's API server authenticates and authorizes them, and the hub forwards the request
// over the tunnel, impersonating them, so that the member's RBAC decides. Both subresources
// are among those the API server treats as long-running (attach, proxy), so that a tunnel, a
// `kubectl logs -f` or an exec holds no request slot and meets no request timeout.
const (
	// ProxyGroup and ProxyVersion name the aggregated API.
	ProxyGroup   = "proxy.convoy.dev"
	ProxyVersion = "v1alpha1"
	// ProxyResource is its one resource; a name is a Cluster's.
	ProxyResource = "clusters"
	// ProxySubresource is where people's requests go: clusters/NAME/proxy/api/v1/pods and so on.
	ProxySubresource = "proxy"
	// TunnelSubresource is where a cluster's agent opens its tunnel (a WebSocket).
	TunnelSubresource = "attach"
	// ProxyPrefix is the aggregated API's path on the hub's API server.
	ProxyPrefix = "/apis/" + ProxyGroup + "/" + ProxyVersion
	// ClusterAccessRole is the ClusterRole the hub keeps that lets its holders through to the
	// members (every verb on clusters/proxy); the hub binds it to every authenticated user
	// (ClusterAccessBinding), since the member's own RBAC decides what they may do there.
	// Delete the binding and bind the role per user, group or cluster (resourceNames) to
	// narrow who may go through at all.
	ClusterAccessRole    = "convoy:cluster-access"
	ClusterAccessBinding = "convoy:cluster-access"
)

// ClusterProxyPath is the path on the hub's API server that stands for cluster's API server:
// a kubeconfig's server is the hub's URL followed by it.
func ClusterProxyPath(cluster string) string {
	return ProxyPrefix + "/" + ProxyResource + "/" + cluster + "/" + ProxySubresource
}

// TunnelPath is where cluster's agent opens its tunnel.
func TunnelPath(cluster string) string {
	return ProxyPrefix + "/" + ProxyResource + "/" + cluster + "/" + TunnelSubresource
}

// ParseProxyPath splits a path under ProxyPrefix into the cluster, the subresource and the
// rest (for proxy: the path on the member, starting with /). ok is false for any other path.
func ParseProxyPath(path string) (cluster, subresource, rest string, ok bool) {
	tail, found := strings.CutPrefix(path, ProxyPrefix+"/"+ProxyResource+"/")
	if !found {
		return "", "", "", false
	}
	cluster, tail, _ = strings.Cut(tail, "/")
	subresource, rest, _ = strings.Cut(tail, "/")
	if cluster == "" || subresource == "" {
		return "", "", "", false
	}
	return cluster, subresource, "/" + rest, true
}
