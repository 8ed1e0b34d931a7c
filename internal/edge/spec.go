package edge

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// ToSpec is a pool as an EdgePool stores it, bound to address.
func ToSpec(p Pool, address netip.Addr) v1alpha1.EdgePoolSpec {
	s := v1alpha1.EdgePoolSpec{Gateway: p.Name, Address: address.String(),
		Limits: v1alpha1.EdgeLimits{MaxConnections: int32(p.Limits.MaxConnections), RequestsPerSecond: int32(p.Limits.RequestsPerSecond)}}
	for _, l := range p.Listeners {
		el := v1alpha1.EdgeListener{Name: l.Name, Port: int32(l.Port), Protocol: string(l.Protocol)}
		for _, r := range l.Routes {
			er := v1alpha1.EdgeRoute{Name: r.Name, Hostnames: slices.Clone(r.Hostnames), PathPrefix: r.PathPrefix, HealthPath: r.Backend.HealthPath}
			if r.Timeout > 0 {
				er.Timeout = &metav1.Duration{Duration: r.Timeout}
			}
			for _, c := range r.Backend.Clusters {
				var b strings.Builder
				for i, sv := range c.Servers {
					if i > 0 {
						b.WriteByte(' ')
					}
					b.WriteString(sv.Addr.String())
					b.WriteByte('*')
					b.WriteString(strconv.Itoa(sv.Weight))
				}
				er.Clusters = append(er.Clusters, v1alpha1.EdgeClusterServers{Cluster: c.Cluster, Servers: b.String()})
			}
			el.Routes = append(el.Routes, er)
		}
		s.Listeners = append(s.Listeners, el)
	}
	return s
}

// FromSpec is the pool an EdgePool holds and the address it binds, or what is wrong with it.
func FromSpec(s v1alpha1.EdgePoolSpec) (Pool, netip.Addr, error) {
	addr, err := netip.ParseAddr(s.Address)
	if err != nil {
		return Pool{}, addr, fmt.Errorf("pool %s: address %q: %w", s.Gateway, s.Address, err)
	}
	p := Pool{Name: s.Gateway, Limits: Limits{MaxConnections: int(s.Limits.MaxConnections), RequestsPerSecond: int(s.Limits.RequestsPerSecond)}}
	for _, el := range s.Listeners {
		l := Listener{Name: el.Name, Port: int(el.Port), Protocol: Protocol(el.Protocol)}
		for _, er := range el.Routes {
			r := Route{Name: er.Name, Hostnames: slices.Clone(er.Hostnames), PathPrefix: er.PathPrefix, Backend: Backend{HealthPath: er.HealthPath}}
			if er.Timeout != nil {
				r.Timeout = er.Timeout.Duration
			}
			for _, ec := range er.Clusters {
				c := ClusterServers{Cluster: ec.Cluster}
				for _, es := range strings.Fields(ec.Servers) {
					a, w, _ := strings.Cut(es, "*")
					ap, err := netip.ParseAddrPort(a)
					weight, werr := strconv.Atoi(w)
					if err != nil || werr != nil {
						return Pool{}, addr, fmt.Errorf("pool %s: route %s: cluster %s: server %q is not IP:PORT*WEIGHT", s.Gateway, er.Name, ec.Cluster, es)
					}
					c.Servers = append(c.Servers, Server{Addr: ap, Weight: weight})
				}
				r.Backend.Clusters = append(r.Backend.Clusters, c)
			}
			l.Routes = append(l.Routes, r)
		}
		p.Listeners = append(p.Listeners, l)
	}
	return p, addr, p.Validate()
}

// Allocate gives each pool of pools (by NAMESPACE/NAME) its address in prefix. held are the
// addresses every existing pool binds, those of pools not in pools too (a Gateway that is not
// accepted keeps serving): none of them is given to another pool, not even one its pool moves
// away from now (the move and the new pool could meet on it). A pool keeps the address it
// holds while that stays in prefix, unless it requests another; a pool that requests one (its
// Gateway's spec.addresses) gets it when it is in prefix and free; the others get the lowest
// free addresses, in the order of their names. A pool that cannot have an address is in the
// second map, with the reason: one that requests an address it cannot have is refused, and
// keeps what it holds.
func Allocate(prefix netip.Prefix, pools []string, held, requested map[string]netip.Addr) (map[string]netip.Addr, map[string]string) {
	prefix = prefix.Masked()
	got := map[string]netip.Addr{}
	refused := map[string]string{}
	taken := map[netip.Addr]string{}
	pools = slices.Sorted(slices.Values(pools))
	// Every held address is taken first: a running pool never loses its address to another.
	for _, p := range slices.Sorted(maps.Keys(held)) {
		if a := held[p]; taken[a] == "" {
			taken[a] = p
		}
	}
	for _, p := range pools {
		a, ok := held[p]
		if !ok || !prefix.Contains(a) || taken[a] != p {
			continue
		}
		if r, ok := requested[p]; ok && r != a {
			continue
		}
		got[p] = a
	}
	for _, p := range pools {
		r, ok := requested[p]
		if !ok || got[p].IsValid() {
			continue
		}
		switch {
		case !prefix.Contains(r):
			refused[p] = fmt.Sprintf("address %s is outside the edge's range %s", r, prefix)
		case taken[r] != "" && taken[r] != p:
			refused[p] = fmt.Sprintf("address %s is taken by Gateway %s", r, taken[r])
		default:
			got[p], taken[r] = r, p
		}
	}
	next := prefix.Addr().Next() // not the network's own address
	for _, p := range pools {
		if got[p].IsValid() || refused[p] != "" {
			continue
		}
		for next.IsValid() && prefix.Contains(next) && taken[next] != "" {
			next = next.Next()
		}
		if !next.IsValid() || !prefix.Contains(next) || (prefix.Addr().Is4() && prefix.Bits() < 31 && !prefix.Contains(next.Next())) {
			refused[p] = fmt.Sprintf("the edge's range %s has no free address left", prefix)
			continue
		}
		got[p], taken[next] = next, p
	}
	return got, refused
}

// ParseAddresses is a Gateway's requested address, if it names one: the IPAddress in its
// spec.addresses (the edge serves one address per pool).
func ParseAddresses(types, values []string) (netip.Addr, bool, error) {
	var found []netip.Addr
	for i, v := range values {
		if types[i] != "" && types[i] != "IPAddress" {
			return netip.Addr{}, false, fmt.Errorf("address type %s is not served; give an IPAddress", types[i])
		}
		a, err := netip.ParseAddr(strings.TrimSpace(v))
		if err != nil {
			return netip.Addr{}, false, fmt.Errorf("address %q is not an IP address", v)
		}
		found = append(found, a)
	}
	switch len(found) {
	case 0:
		return netip.Addr{}, false, nil
	case 1:
		return found[0], true, nil
	}
	return netip.Addr{}, false, fmt.Errorf("the edge gives a pool one address, not %d", len(found))
}
