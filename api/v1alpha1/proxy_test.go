package v1alpha1

import "testing"

func TestParseProxyPath(t *testing.T) {
	for _, tc := range []struct {
		path               string
		cluster, sub, rest string
		ok                 bool
	}{
		{path: ClusterProxyPath("us-east") + "/api/v1/pods", cluster: "us-east", sub: "proxy", rest: "/api/v1/pods", ok: true},
		{path: ClusterProxyPath("us-east"), cluster: "us-east", sub: "proxy", rest: "/", ok: true},
		{path: ClusterProxyPath("us-east") + "/", cluster: "us-east", sub: "proxy", rest: "/", ok: true},
		{path: TunnelPath("eu"), cluster: "eu", sub: "attach", rest: "/", ok: true},
		{path: ProxyPrefix + "/clusters/us-east", ok: false},
		{path: ProxyPrefix + "/clusters//proxy", ok: false},
		{path: ProxyPrefix + "/nodes/us-east/proxy", ok: false},
		{path: "/api/v1/pods", ok: false},
	} {
		cluster, sub, rest, ok := ParseProxyPath(tc.path)
		if ok != tc.ok || ok && (cluster != tc.cluster || sub != tc.sub || rest != tc.rest) {
			t.Errorf("ParseProxyPath(%q) = %q, %q, %q, %v; want %q, %q, %q, %v", tc.path, cluster, sub, rest, ok, tc.cluster, tc.sub, tc.rest, tc.ok)
		}
	}
}
