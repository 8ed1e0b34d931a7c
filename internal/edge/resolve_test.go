package edge

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// resolver holds a transcript's Gateway API objects and reported Services. Its commands:
//
//	objects                             then YAML documents, separated by ---: GatewayClass,
//	                                    Gateway, HTTPRoute, TCPRoute, ReferenceGrant, Namespace
//	                                    (a later one of the same kind and name replaces it)
//	delete KIND NAMESPACE/NAME
//	service NAMESPACE/NAME:PORT CLUSTER [ADDR:PORT*WEIGHT ...]   (no servers: none; "gone": unreported)
//	resolve                             the verdicts and the pools
type resolver struct {
	t    *testing.T
	snap Snapshot
	seq  int // creation order, as creationTimestamp seconds
}

func (r *resolver) do(input []string) (string, bool) {
	f := strings.Fields(input[0])
	switch f[0] {
	case "objects":
		for _, doc := range strings.Split(strings.Join(input[1:], "\n"), "\n---\n") {
			r.add(doc)
		}
		return "ok", true
	case "delete":
		ns, name, _ := strings.Cut(f[2], "/")
		keep := func(m metav1.ObjectMeta) bool { return m.Namespace != ns || m.Name != name }
		switch f[1] {
		case "Gateway":
			r.snap.Gateways = slices.DeleteFunc(r.snap.Gateways, func(o gatewayv1.Gateway) bool { return !keep(o.ObjectMeta) })
		case "HTTPRoute":
			r.snap.HTTPRoutes = slices.DeleteFunc(r.snap.HTTPRoutes, func(o gatewayv1.HTTPRoute) bool { return !keep(o.ObjectMeta) })
		}
		return "ok", true
	case "service":
		if r.snap.Services == nil {
			r.snap.Services = map[ServicePort][]ClusterServers{}
		}
		ref, port, _ := strings.Cut(f[1], ":")
		ns, name, _ := strings.Cut(ref, "/")
		p, _ := strconv.Atoi(port)
		key := ServicePort{Namespace: ns, Name: name, Port: int32(p)}
		if len(f) > 3 && f[3] == "gone" {
			delete(r.snap.Services, key)
			return "ok", true
		}
		cs := ClusterServers{Cluster: f[2]}
		for _, s := range f[3:] {
			addr, w, _ := strings.Cut(s, "*")
			weight, _ := strconv.Atoi(w)
			cs.Servers = append(cs.Servers, Server{Addr: netip.MustParseAddrPort(addr), Weight: weight})
		}
		r.snap.Services[key] = append(slices.DeleteFunc(r.snap.Services[key], func(c ClusterServers) bool { return c.Cluster == cs.Cluster }), cs)
		return "ok", true
	case "resolve":
		r.snap.ControllerName = "convoy.dev/edge"
		res := Resolve(r.snap)
		for _, p := range res.Pools {
			haproxyCheck(r.t, p) // what Resolve makes, HAProxy takes
		}
		return r.print(res), true
	}
	return "", false
}

func (r *resolver) add(doc string) {
	var head struct {
		Kind     string            `json:"kind"`
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
		r.t.Fatalf("object: %v\n%s", err, doc)
	}
	r.seq++
	created := metav1.Unix(int64(r.seq), 0)
	decode := func(into any) {
		if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
			r.t.Fatalf("%s: %v\n%s", head.Kind, err, doc)
		}
	}
	same := func(m metav1.ObjectMeta) bool {
		return m.Namespace == head.Metadata.Namespace && m.Name == head.Metadata.Name
	}
	switch head.Kind {
	case "GatewayClass":
		var o gatewayv1.GatewayClass
		decode(&o)
		r.snap.Classes = append(slices.DeleteFunc(r.snap.Classes, func(x gatewayv1.GatewayClass) bool { return same(x.ObjectMeta) }), o)
	case "Gateway":
		var o gatewayv1.Gateway
		decode(&o)
		o.CreationTimestamp = created
		r.snap.Gateways = append(slices.DeleteFunc(r.snap.Gateways, func(x gatewayv1.Gateway) bool { return same(x.ObjectMeta) }), o)
	case "HTTPRoute":
		var o gatewayv1.HTTPRoute
		decode(&o)
		o.CreationTimestamp = created
		r.snap.HTTPRoutes = append(slices.DeleteFunc(r.snap.HTTPRoutes, func(x gatewayv1.HTTPRoute) bool { return same(x.ObjectMeta) }), o)
	case "TCPRoute":
		var o gatewayv1.TCPRoute
		decode(&o)
		o.CreationTimestamp = created
		r.snap.TCPRoutes = append(slices.DeleteFunc(r.snap.TCPRoutes, func(x gatewayv1.TCPRoute) bool { return same(x.ObjectMeta) }), o)
	case "ReferenceGrant":
		var o gatewayv1.ReferenceGrant
		decode(&o)
		r.snap.Grants = append(r.snap.Grants, o)
	case "Namespace":
		if r.snap.Namespaces == nil {
			r.snap.Namespaces = map[string]map[string]string{}
		}
		r.snap.Namespaces[head.Metadata.Name] = head.Metadata.Labels
	default:
		r.t.Fatalf("unknown kind %q", head.Kind)
	}
}

func conds(cs []metav1.Condition) string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message))
	}
	return strings.Join(out, "\n    ")
}

func (r *resolver) print(res Resolution) string {
	var out []string
	for _, gw := range slices.Sorted(maps.Keys(res.Gateways)) {
		v := res.Gateways[gw]
		out = append(out, fmt.Sprintf("gateway %s: %s", gw, conds([]metav1.Condition{v.Accepted})))
		for _, l := range v.Listeners {
			out = append(out, fmt.Sprintf("  listener %s, %d routes:\n    %s", l.Name, l.AttachedRoutes, conds(l.Conditions)))
		}
	}
	for _, rt := range slices.Sorted(maps.Keys(res.Routes)) {
		for _, p := range res.Routes[rt] {
			parent := string(p.ParentRef.Name)
			if p.ParentRef.SectionName != nil {
				parent += "/" + string(*p.ParentRef.SectionName)
			}
			out = append(out, fmt.Sprintf("route %s on %s:\n    %s", rt, parent, conds(p.Conditions)))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(res.Pools)) {
		p := res.Pools[name]
		limits := ""
		if p.Limits != (Limits{}) {
			limits = fmt.Sprintf(" maxconn=%d rps=%d", p.Limits.MaxConnections, p.Limits.RequestsPerSecond)
		}
		out = append(out, "pool "+name+limits)
		for _, l := range p.Listeners {
			out = append(out, fmt.Sprintf("  %s :%d %s", l.Name, l.Port, l.Protocol))
			for _, rt := range l.Routes {
				var cs []string
				for _, c := range rt.Backend.Clusters {
					var ss []string
					for _, s := range c.Servers {
						ss = append(ss, fmt.Sprintf("%s*%d", s.Addr, s.Weight))
					}
					cs = append(cs, fmt.Sprintf("%s[%s]", c.Cluster, strings.Join(ss, " ")))
				}
				match := ""
				if len(rt.Hostnames) > 0 {
					match += " hosts=" + strings.Join(rt.Hostnames, ",")
				}
				if rt.PathPrefix != "" {
					match += " path=" + rt.PathPrefix
				}
				if rt.Timeout != 0 {
					match += " timeout=" + rt.Timeout.String()
				}
				if rt.Backend.HealthPath != "" {
					match += " health=" + rt.Backend.HealthPath
				}
				out = append(out, fmt.Sprintf("    %s%s -> %s", rt.Name, match, strings.Join(cs, " ")))
			}
		}
		if err := p.Validate(); err != nil {
			out = append(out, "  INVALID: "+err.Error())
		}
	}
	return strings.Join(out, "\n")
}

// A cluster weighs its ready endpoints, shared by its nodes, or on the nodes that run them
// with externalTrafficPolicy Local.
func TestReachServers(t *testing.T) {
	nodes := []v1alpha1.ReachNode{{Address: "10.77.0.2", Endpoints: 3}, {Address: "10.77.0.3", Endpoints: 0}}
	ports := []v1alpha1.ReachPort{{Port: 80, NodePort: 30080}}
	for _, c := range []struct {
		name  string
		reach v1alpha1.ServiceReach
		want  string
	}{
		{"shared", v1alpha1.ServiceReach{Ports: ports, Endpoints: 3, Nodes: nodes}, "10.77.0.2:30080*6 10.77.0.3:30080*6"},
		{"local", v1alpha1.ServiceReach{Ports: ports, Endpoints: 3, Nodes: nodes, Local: true}, "10.77.0.2:30080*12"},
		{"no endpoint", v1alpha1.ServiceReach{Ports: ports, Nodes: nodes}, ""},
	} {
		var got []string
		for _, s := range ReachServers(c.reach)[80] {
			got = append(got, fmt.Sprintf("%s*%d", s.Addr, s.Weight))
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%s: servers %v, want %s", c.name, got, c.want)
		}
	}
}
