// Package edge is the pure core of the edge load balancer. A pool is one Gateway: its
// listeners, the routes it accepted and, for each route, the servers that reach its Service in
// every cluster where it runs. The package turns a pool into HAProxy's configuration (Render),
// and a new set of servers into HAProxy Runtime API commands that apply it without a reload,
// or the verdict that only a reload can (Assign).
//
// It does no IO and keeps no clock: the hub's gateway controller resolves Gateways and routes
// into a Pool, and the pool supervisors (convoy hub, convoy edge) run HAProxy and speak its
// Runtime API. Only those import it.
package edge

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Protocol is what a listener speaks.
type Protocol string

// The protocols a listener may have.
const (
	HTTP Protocol = "HTTP"
	TCP  Protocol = "TCP"
)

// Pool is one Gateway's share of the edge: what its HAProxy instances serve.
type Pool struct {
	// Name is the Gateway's NAMESPACE/NAME.
	Name      string
	Listeners []Listener
	Limits    Limits
}

// Limits bound what a pool takes; zero means no limit.
type Limits struct {
	// MaxConnections is the most connections the pool serves at once, per HAProxy instance;
	// the rest wait in the kernel's queue.
	MaxConnections int
	// RequestsPerSecond is the most HTTP requests a second the pool serves per instance; the
	// rest are answered 429.
	RequestsPerSecond int
}

// Listener is a port of the pool and the routes attached to it, in order of precedence.
type Listener struct {
	Name     string
	Port     int
	Protocol Protocol
	Routes   []Route
}

// Route is one rule of an HTTPRoute or TCPRoute: what it matches and where it sends it.
type Route struct {
	// Name names the rule, unique in the pool: NAMESPACE/ROUTE/RULE-INDEX.
	Name string
	// Hostnames match the request's Host, exactly or, for "*.example.com", any name one or
	// more labels under it; none match every host. HTTP only.
	Hostnames []string
	// PathPrefix matches a path that is it or starts with it followed by "/"; empty or "/"
	// match every path. HTTP only.
	PathPrefix string
	// Timeout bounds each try of a request at a server: how long the edge waits for its
	// answer to start, or between its parts, before it tries another (safe requests) or
	// answers 504. Zero means DefaultTimeout. HTTP only.
	Timeout time.Duration
	Backend Backend
}

// DefaultTimeout is a route's timeout at a server when the route gives none (Envoy's default
// route timeout is the same).
const DefaultTimeout = 15 * time.Second

// Backend is where a route sends what it matches: the servers of its Service in every cluster.
type Backend struct {
	// HealthPath is the path the active HTTP health check asks; empty checks TCP connections.
	HealthPath string
	Clusters   []ClusterServers
}

// ClusterServers are a Service's servers in one cluster: the addresses the edge reaches it at
// (a NodePort on each node) with their weights, which follow the endpoints behind them.
type ClusterServers struct {
	Cluster string
	Servers []Server
}

// Server is one address of a backend.
type Server struct {
	Addr   netip.AddrPort
	Weight int // 1 to 256
}

// Validate says what is wrong with a pool, or returns nil.
func (p Pool) Validate() error {
	var errs []error
	ports := map[int]string{}
	names := map[string]bool{}
	for _, l := range p.Listeners {
		if l.Port < 1 || l.Port > 65535 {
			errs = append(errs, fmt.Errorf("listener %s: port %d is out of range 1-65535", l.Name, l.Port))
		}
		if other, ok := ports[l.Port]; ok {
			errs = append(errs, fmt.Errorf("listeners %s and %s both take port %d", other, l.Name, l.Port))
		}
		ports[l.Port] = l.Name
		if l.Protocol != HTTP && l.Protocol != TCP {
			errs = append(errs, fmt.Errorf("listener %s: protocol %q is neither HTTP nor TCP", l.Name, l.Protocol))
		}
		if l.Protocol == TCP && len(l.Routes) > 1 {
			errs = append(errs, fmt.Errorf("listener %s: a TCP listener takes one route, not %d", l.Name, len(l.Routes)))
		}
		for _, r := range l.Routes {
			if names[r.Name] {
				errs = append(errs, fmt.Errorf("route %s appears twice", r.Name))
			}
			names[r.Name] = true
			if l.Protocol == TCP && (len(r.Hostnames) > 0 || r.PathPrefix != "") {
				errs = append(errs, fmt.Errorf("route %s: a TCP route matches no hostname or path", r.Name))
			}
			if r.Timeout < 0 {
				errs = append(errs, fmt.Errorf("route %s: timeout %s is negative", r.Name, r.Timeout))
			}
			if r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/") {
				errs = append(errs, fmt.Errorf("route %s: path prefix %q does not start with /", r.Name, r.PathPrefix))
			}
			if !Plain(r.PathPrefix) || !Plain(r.Backend.HealthPath) {
				errs = append(errs, fmt.Errorf("route %s: path prefix %q or health path %q holds a space, quote, #, $ or backslash", r.Name, r.PathPrefix, r.Backend.HealthPath))
			}
			for _, h := range r.Hostnames {
				if !Plain(h) {
					errs = append(errs, fmt.Errorf("route %s: hostname %q holds a space, quote, #, $ or backslash", r.Name, h))
				}
			}
			for _, c := range r.Backend.Clusters {
				for _, s := range c.Servers {
					if !s.Addr.IsValid() || s.Addr.Port() == 0 {
						errs = append(errs, fmt.Errorf("route %s: cluster %s: a server has no IP:PORT address", r.Name, c.Cluster))
					}
					if s.Weight < 1 || s.Weight > 256 {
						errs = append(errs, fmt.Errorf("route %s: cluster %s: weight %d is out of range 1-256", r.Name, c.Cluster, s.Weight))
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}

// SameShape reports whether two pools differ in their servers' addresses and weights at most:
// then, with the same slots, they render the same configuration but for the servers.
func SameShape(a, b Pool) bool {
	return reflect.DeepEqual(shape(a), shape(b))
}

// shape is a pool without its servers (its clusters stay).
func shape(p Pool) Pool {
	p.Listeners = slices.Clone(p.Listeners)
	for i := range p.Listeners {
		l := &p.Listeners[i]
		l.Routes = slices.Clone(l.Routes)
		for j := range l.Routes {
			r := &l.Routes[j]
			r.Backend.Clusters = slices.Clone(r.Backend.Clusters)
			for k := range r.Backend.Clusters {
				r.Backend.Clusters[k].Servers = nil
			}
		}
	}
	return p
}

// Plain reports whether a value can go into HAProxy's configuration as a word: no space,
// quote, '#', '$' or backslash, which HAProxy's parser would take apart or expand.
func Plain(v string) bool {
	return !strings.ContainsAny(v, " \t\r\n'\"#$\\")
}

// backendName is HAProxy's name of a route's backend: the route's name with the characters
// a proxy name cannot hold made ':' (Kubernetes names hold only [a-z0-9.-]).
func backendName(route string) string {
	return "be:" + strings.ReplaceAll(route, "/", ":")
}

// serverName is the name of a cluster's i-th server slot (from 1) in a backend.
func serverName(cluster string, i int) string {
	return fmt.Sprintf("%s:%d", cluster, i)
}

// slotsFor is how many server slots a cluster gets in a backend for n servers: room to grow
// without a reload, a power of two of at least 4.
func slotsFor(n int) int {
	s := 4
	for s < n {
		s *= 2
	}
	return s
}

// sortedClusters is a backend's clusters by name.
func sortedClusters(b Backend) []ClusterServers {
	out := slices.Clone(b.Clusters)
	slices.SortFunc(out, func(a, b ClusterServers) int { return strings.Compare(a.Cluster, b.Cluster) })
	return out
}
