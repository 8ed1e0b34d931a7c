package edge

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// Snapshot is what Resolve decides from: the hub's Gateway API objects and what the agents
// report of the Services they run.
type Snapshot struct {
	// ControllerName is the edge's; Classes are the GatewayClasses (only those whose
	// controllerName it is count).
	ControllerName string
	Classes        []gatewayv1.GatewayClass
	Gateways       []gatewayv1.Gateway
	HTTPRoutes     []gatewayv1.HTTPRoute
	TCPRoutes      []gatewayv1.TCPRoute
	Grants         []gatewayv1.ReferenceGrant
	// Namespaces are the hub's namespaces' labels, for allowedRoutes selectors.
	Namespaces map[string]map[string]string
	// Services are the servers of each Service port in each cluster where it runs, as the
	// agents report them (a NodePort on each node, weighted by the endpoints behind it).
	Services map[ServicePort][]ClusterServers
}

// ServicePort is one port of a Service at the hub (NAMESPACE/NAME), as routes name it.
type ServicePort struct {
	Namespace, Name string
	Port            int32
}

// Resolution is what Resolve decides: each edge Gateway's pool, and the conditions of each
// Gateway, listener and route parent, without their observedGeneration and times (the
// controller that writes them adds those).
type Resolution struct {
	Pools    map[string]Pool            // by the Gateway's NAMESPACE/NAME
	Gateways map[string]GatewayVerdict  // by NAMESPACE/NAME
	Routes   map[string][]ParentVerdict // by KIND/NAMESPACE/NAME: one per parentRef to an edge Gateway
}

// GatewayVerdict is one Gateway's Accepted condition and its listeners'.
type GatewayVerdict struct {
	Accepted  metav1.Condition
	Listeners []ListenerVerdict
}

// ListenerVerdict is one listener's conditions (Accepted, Conflicted, ResolvedRefs) and the
// routes attached to it.
type ListenerVerdict struct {
	Name           string
	AttachedRoutes int32
	Conditions     []metav1.Condition
}

// ParentVerdict is a route's conditions (Accepted, ResolvedRefs) for one parentRef.
type ParentVerdict struct {
	ParentRef  gatewayv1.ParentReference
	Conditions []metav1.Condition
}

func cond(typ string, ok bool, reason, format string, args ...any) metav1.Condition {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: s, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// listener is a listener of an edge Gateway during resolution.
type listener struct {
	gw       *gatewayv1.Gateway
	spec     gatewayv1.Listener
	valid    bool
	verdict  *ListenerVerdict
	attached []Route // one per match of a rule of a route attached to it
}

// Resolve decides the edge's pools and the status of every object it serves. It is pure.
func Resolve(s Snapshot) Resolution {
	res := Resolution{Pools: map[string]Pool{}, Gateways: map[string]GatewayVerdict{}, Routes: map[string][]ParentVerdict{}}
	ours := map[string]bool{}
	for _, c := range s.Classes {
		if string(c.Spec.ControllerName) == s.ControllerName {
			ours[c.Name] = true
		}
	}
	listeners := map[string][]*listener{} // by Gateway NAMESPACE/NAME
	accepted := map[string]Limits{}       // the Gateways that get a pool
	var gateways []*gatewayv1.Gateway
	for i := range s.Gateways {
		gw := &s.Gateways[i]
		if ours[string(gw.Spec.GatewayClassName)] {
			gateways = append(gateways, gw)
		}
	}
	for _, gw := range gateways {
		key := gw.Namespace + "/" + gw.Name
		v := GatewayVerdict{}
		ls := resolveListeners(gw)
		valid := 0
		for _, l := range ls {
			v.Listeners = append(v.Listeners, *l.verdict)
			if l.valid {
				valid++
			}
		}
		limits, bad := limitsOf(gw.Annotations)
		switch {
		case bad != "":
			v.Accepted = cond(string(gatewayv1.GatewayConditionAccepted), false, string(gatewayv1.GatewayReasonInvalid), "%s", bad)
		case valid == 0:
			v.Accepted = cond(string(gatewayv1.GatewayConditionAccepted), false, string(gatewayv1.GatewayReasonListenersNotValid), "no listener is valid; see the listeners' conditions")
		default:
			accepted[key] = limits
			v.Accepted = cond(string(gatewayv1.GatewayConditionAccepted), true, string(gatewayv1.GatewayReasonAccepted), "%d of %d listeners are valid", valid, len(ls))
		}
		res.Gateways[key] = v
		listeners[key] = ls
	}

	// Routes attach oldest first, then by NAMESPACE/NAME: where two are equal in precedence,
	// the older wins (byPrecedence keeps this order).
	httpRoutes := slices.Clone(s.HTTPRoutes)
	slices.SortStableFunc(httpRoutes, func(a, b gatewayv1.HTTPRoute) int { return older(a.ObjectMeta, b.ObjectMeta) })
	tcpRoutes := slices.Clone(s.TCPRoutes)
	slices.SortStableFunc(tcpRoutes, func(a, b gatewayv1.TCPRoute) int { return older(a.ObjectMeta, b.ObjectMeta) })
	for i := range httpRoutes {
		r := &httpRoutes[i]
		attach(&res, s, listeners, "HTTPRoute", r.ObjectMeta, r.Spec.ParentRefs, r.Spec.Hostnames, httpRules(s, r))
	}
	for i := range tcpRoutes {
		r := &tcpRoutes[i]
		var rules []ruleMatches
		for ri, rule := range r.Spec.Rules {
			b, bad := backend(s, r.Namespace, "TCPRoute", rule.BackendRefs)
			rules = append(rules, ruleMatches{index: ri, matches: []Route{{Backend: b}}, unresolved: bad})
		}
		attach(&res, s, listeners, "TCPRoute", r.ObjectMeta, r.Spec.ParentRefs, nil, rules)
	}

	for _, gw := range gateways {
		key := gw.Namespace + "/" + gw.Name
		limits, ok := accepted[key]
		if !ok {
			// Not accepted: no pool, so that the pool supervisors keep serving what they did.
			for i, l := range listeners[key] {
				res.Gateways[key].Listeners[i].AttachedRoutes = l.verdict.AttachedRoutes
			}
			continue
		}
		p := Pool{Name: key, Limits: limits}
		byPort := map[int]*Listener{}
		for i, l := range listeners[key] {
			res.Gateways[key].Listeners[i].AttachedRoutes = l.verdict.AttachedRoutes
			if !l.valid {
				continue
			}
			port := int(l.spec.Port)
			el := byPort[port]
			if el == nil {
				p.Listeners = append(p.Listeners, Listener{Name: string(l.spec.Name), Port: port, Protocol: Protocol(l.spec.Protocol)})
				el = &p.Listeners[len(p.Listeners)-1]
				byPort[port] = el
			}
			el.Routes = append(el.Routes, l.attached...)
		}
		// Pointers into p.Listeners may have moved; sort each listener's routes by precedence.
		for i := range p.Listeners {
			p.Listeners[i].Routes = byPrecedence(p.Listeners[i].Routes)
			if p.Listeners[i].Protocol == TCP && len(p.Listeners[i].Routes) > 1 {
				p.Listeners[i].Routes = p.Listeners[i].Routes[:1] // the oldest route wins
			}
		}
		res.Pools[key] = p
	}
	return res
}

// ruleTimeout is the timeout of each try at a server: the rule's backendRequest timeout, else
// its request timeout (which bounds all tries together; the edge has no such bound, so it
// bounds each). "0s" turns it off: a day.
func ruleTimeout(t *gatewayv1.HTTPRouteTimeouts) (time.Duration, error) {
	if t == nil {
		return 0, nil
	}
	v := t.BackendRequest
	if v == nil {
		v = t.Request
	}
	if v == nil {
		return 0, nil
	}
	d, err := time.ParseDuration(string(*v))
	if err != nil || d < 0 {
		return 0, fmt.Errorf("timeout %q is not a duration; the default of %s holds", *v, DefaultTimeout)
	}
	if d == 0 {
		d = 24 * time.Hour
	}
	return d, nil
}

// limitsOf reads a Gateway's limits from its annotations, or says what is wrong with them.
func limitsOf(annotations map[string]string) (Limits, string) {
	var l Limits
	for _, a := range []struct {
		key string
		to  *int
	}{{v1alpha1.EdgeMaxConnectionsAnnotation, &l.MaxConnections}, {v1alpha1.EdgeRequestsPerSecondAnnotation, &l.RequestsPerSecond}} {
		v, ok := annotations[a.key]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > 1_000_000 {
			return Limits{}, fmt.Sprintf("annotation %s: %q is not a whole number from 1 to 1000000", a.key, v)
		}
		*a.to = n
	}
	return l, ""
}

func older(a, b metav1.ObjectMeta) int {
	return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time), cmp.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name))
}

// resolveListeners judges a Gateway's listeners: protocols, and conflicts on a port.
func resolveListeners(gw *gatewayv1.Gateway) []*listener {
	var out []*listener
	for _, spec := range gw.Spec.Listeners {
		l := &listener{gw: gw, spec: spec, valid: true, verdict: &ListenerVerdict{Name: string(spec.Name)}}
		out = append(out, l)
	}
	for _, l := range out {
		accepted := cond(string(gatewayv1.ListenerConditionAccepted), true, string(gatewayv1.ListenerReasonAccepted), "listening on port %d", l.spec.Port)
		conflicted := cond(string(gatewayv1.ListenerConditionConflicted), false, string(gatewayv1.ListenerReasonNoConflicts), "no other listener claims port %d with this hostname", l.spec.Port)
		switch p := l.spec.Protocol; {
		case p != gatewayv1.HTTPProtocolType && p != gatewayv1.TCPProtocolType:
			l.valid = false
			accepted = cond(string(gatewayv1.ListenerConditionAccepted), false, string(gatewayv1.ListenerReasonUnsupportedProtocol), "protocol %s is not served by Convoy's edge yet; use HTTP or TCP", p)
		case p == gatewayv1.TCPProtocolType && l.spec.Hostname != nil:
			l.valid = false
			accepted = cond(string(gatewayv1.ListenerConditionAccepted), false, string(gatewayv1.ListenerReasonUnsupportedValue), "a TCP listener matches no hostname; remove it")
		}
		for _, o := range out {
			if o == l || o.spec.Port != l.spec.Port {
				continue
			}
			switch {
			case o.spec.Protocol != l.spec.Protocol:
				l.valid = false
				conflicted = cond(string(gatewayv1.ListenerConditionConflicted), true, string(gatewayv1.ListenerReasonProtocolConflict), "listener %s takes port %d with protocol %s", o.spec.Name, l.spec.Port, o.spec.Protocol)
			case l.spec.Protocol == gatewayv1.TCPProtocolType:
				l.valid = false
				conflicted = cond(string(gatewayv1.ListenerConditionConflicted), true, string(gatewayv1.ListenerReasonProtocolConflict), "listener %s takes TCP port %d too", o.spec.Name, l.spec.Port)
			case hostname(o.spec.Hostname) == hostname(l.spec.Hostname):
				l.valid = false
				conflicted = cond(string(gatewayv1.ListenerConditionConflicted), true, string(gatewayv1.ListenerReasonHostnameConflict), "listener %s takes port %d with the same hostname %q", o.spec.Name, l.spec.Port, hostname(l.spec.Hostname))
			}
		}
		if conflicted.Status == metav1.ConditionTrue {
			accepted = cond(string(gatewayv1.ListenerConditionAccepted), false, conflicted.Reason, "%s", conflicted.Message)
		}
		kinds := cond(string(gatewayv1.ListenerConditionResolvedRefs), true, string(gatewayv1.ListenerReasonResolvedRefs), "route kinds resolved")
		for _, k := range allowedKinds(l.spec) {
			if k != routeKindFor(l.spec.Protocol) {
				kinds = cond(string(gatewayv1.ListenerConditionResolvedRefs), false, string(gatewayv1.ListenerReasonInvalidRouteKinds), "a %s listener takes %s, not %s", l.spec.Protocol, routeKindFor(l.spec.Protocol), k)
			}
		}
		l.verdict.Conditions = []metav1.Condition{accepted, conflicted, kinds}
	}
	return out
}

func hostname(h *gatewayv1.Hostname) string {
	if h == nil {
		return ""
	}
	return string(*h)
}

func routeKindFor(p gatewayv1.ProtocolType) string {
	if p == gatewayv1.TCPProtocolType {
		return "TCPRoute"
	}
	return "HTTPRoute"
}

func allowedKinds(l gatewayv1.Listener) []string {
	if l.AllowedRoutes == nil || len(l.AllowedRoutes.Kinds) == 0 {
		return []string{routeKindFor(l.Protocol)}
	}
	var out []string
	for _, k := range l.AllowedRoutes.Kinds {
		out = append(out, string(k.Kind))
	}
	return out
}

// allows says whether a listener takes a route of kind from namespace ns.
func (l *listener) allows(s Snapshot, kind, ns string) bool {
	// A listener takes only the kind its protocol serves, whatever allowedRoutes lists.
	if kind != routeKindFor(l.spec.Protocol) || !slices.Contains(allowedKinds(l.spec), kind) {
		return false
	}
	from := gatewayv1.NamespacesFromSame
	var sel *metav1.LabelSelector
	if a := l.spec.AllowedRoutes; a != nil && a.Namespaces != nil {
		if a.Namespaces.From != nil {
			from = *a.Namespaces.From
		}
		sel = a.Namespaces.Selector
	}
	switch from {
	case gatewayv1.NamespacesFromAll:
		return true
	case gatewayv1.NamespacesFromSelector:
		selector, err := metav1.LabelSelectorAsSelector(sel)
		return err == nil && sel != nil && selector.Matches(labels.Set(s.Namespaces[ns]))
	default:
		return ns == l.gw.Namespace
	}
}

// ruleMatches are the edge routes one rule of a route makes (one per match), and whether
// its backends were all resolved.
type ruleMatches struct {
	index       int
	matches     []Route
	unresolved  string // why a backend was not resolved, or ""
	unsupported string // why a match cannot be served, or ""
}

func httpRules(s Snapshot, r *gatewayv1.HTTPRoute) []ruleMatches {
	var out []ruleMatches
	for ri, rule := range r.Spec.Rules {
		var refs []gatewayv1.BackendRef
		for _, b := range rule.BackendRefs {
			refs = append(refs, b.BackendRef)
		}
		b, bad := backend(s, r.Namespace, "HTTPRoute", refs)
		rm := ruleMatches{index: ri, unresolved: bad}
		timeout, err := ruleTimeout(rule.Timeouts)
		if err != nil {
			rm.unsupported = err.Error()
		}
		if hp, ok := r.Annotations[v1alpha1.EdgeHealthPathAnnotation]; ok {
			if strings.HasPrefix(hp, "/") && Plain(hp) {
				b.HealthPath = hp
			} else {
				rm.unsupported = strings.TrimPrefix(rm.unsupported+"; "+fmt.Sprintf("annotation %s: %q is not a path starting with / (without spaces, quotes, #, $ or backslashes); the backends are checked over TCP", v1alpha1.EdgeHealthPathAnnotation, hp), "; ")
			}
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gatewayv1.HTTPRouteMatch{{}}
		}
		for _, m := range matches {
			prefix := "/"
			if m.Path != nil {
				if m.Path.Type != nil && *m.Path.Type != gatewayv1.PathMatchPathPrefix {
					rm.unsupported = fmt.Sprintf("path match %s is not served by Convoy's edge yet (use PathPrefix); the rule's other matches are served", *m.Path.Type)
					continue
				}
				if m.Path.Value != nil {
					prefix = *m.Path.Value
				}
				if !Plain(prefix) {
					rm.unsupported = fmt.Sprintf("path %q holds a quote, $ or backslash, which the edge does not serve; the rule's other matches are served", prefix)
					continue
				}
			}
			if len(m.Headers) > 0 || len(m.QueryParams) > 0 || m.Method != nil {
				rm.unsupported = "header, query and method matches are not served by Convoy's edge yet; the rule's other matches are served"
				continue
			}
			rm.matches = append(rm.matches, Route{PathPrefix: prefix, Timeout: timeout, Backend: b})
		}
		out = append(out, rm)
	}
	return out
}

// backend is the servers of a rule's backendRefs (Services, in every cluster), each server's
// weight multiplied by its ref's, and why a ref was not resolved, if one was not.
func backend(s Snapshot, ns, kind string, refs []gatewayv1.BackendRef) (Backend, string) {
	byCluster := map[string][]Server{}
	var bad []string
	for _, ref := range refs {
		if (ref.Group != nil && *ref.Group != "") || (ref.Kind != nil && *ref.Kind != "Service") {
			bad = append(bad, fmt.Sprintf("%s: only Services are backends", ref.Name))
			continue
		}
		if ref.Port == nil {
			bad = append(bad, fmt.Sprintf("Service %s: a port is required", ref.Name))
			continue
		}
		refNS := ns
		if ref.Namespace != nil && string(*ref.Namespace) != ns {
			refNS = string(*ref.Namespace)
			if !granted(s, ns, kind, refNS, string(ref.Name)) {
				bad = append(bad, fmt.Sprintf("Service %s/%s: no ReferenceGrant in %s lets %s from %s refer to it", refNS, ref.Name, refNS, kind, ns))
				continue
			}
		}
		weight := int32(1)
		if ref.Weight != nil {
			weight = *ref.Weight
		}
		clusters, ok := s.Services[ServicePort{Namespace: refNS, Name: string(ref.Name), Port: int32(*ref.Port)}]
		if !ok {
			bad = append(bad, fmt.Sprintf("Service %s/%s port %d runs in no cluster", refNS, ref.Name, *ref.Port))
			continue
		}
		if weight == 0 {
			continue
		}
		for _, c := range clusters {
			servers := byCluster[c.Cluster]
			for _, sv := range c.Servers {
				servers = append(servers, Server{Addr: sv.Addr, Weight: min(256, max(1, sv.Weight*int(weight)))})
			}
			byCluster[c.Cluster] = servers
		}
	}
	var b Backend
	for _, c := range slices.Sorted(maps.Keys(byCluster)) {
		servers := byCluster[c]
		slices.SortFunc(servers, func(a, b Server) int { return cmp.Compare(a.Addr.String(), b.Addr.String()) })
		servers = slices.CompactFunc(servers, func(a, b Server) bool { return a.Addr == b.Addr })
		b.Clusters = append(b.Clusters, ClusterServers{Cluster: c, Servers: servers})
	}
	return b, strings.Join(bad, "; ")
}

func granted(s Snapshot, fromNS, fromKind, toNS, toName string) bool {
	for _, g := range s.Grants {
		if g.Namespace != toNS {
			continue
		}
		from := slices.ContainsFunc(g.Spec.From, func(f gatewayv1.ReferenceGrantFrom) bool {
			return string(f.Group) == gatewayv1.GroupName && string(f.Kind) == fromKind && string(f.Namespace) == fromNS
		})
		to := slices.ContainsFunc(g.Spec.To, func(t gatewayv1.ReferenceGrantTo) bool {
			return t.Group == "" && t.Kind == "Service" && (t.Name == nil || string(*t.Name) == toName)
		})
		if from && to {
			return true
		}
	}
	return false
}

// attach attaches a route's rules to the listeners its parentRefs name, and records its
// verdict for each parentRef to an edge Gateway.
func attach(res *Resolution, s Snapshot, listeners map[string][]*listener, kind string, meta metav1.ObjectMeta,
	parents []gatewayv1.ParentReference, hostnames []gatewayv1.Hostname, rules []ruleMatches) {
	key := kind + "/" + meta.Namespace + "/" + meta.Name
	attachedOnce := map[*listener]bool{} // two parentRefs may name one listener
	for _, ref := range parents {
		if (ref.Group != nil && string(*ref.Group) != gatewayv1.GroupName) || (ref.Kind != nil && *ref.Kind != "Gateway") {
			continue
		}
		ns := meta.Namespace
		if ref.Namespace != nil {
			ns = string(*ref.Namespace)
		}
		ls, ours := listeners[ns+"/"+string(ref.Name)]
		if !ours {
			continue // not an edge Gateway: another controller's business
		}
		var accepted metav1.Condition
		var candidates []*listener
		for _, l := range ls {
			if ref.SectionName != nil && *ref.SectionName != l.spec.Name {
				continue
			}
			if ref.Port != nil && *ref.Port != l.spec.Port {
				continue
			}
			candidates = append(candidates, l)
		}
		var allowed []*listener
		for _, l := range candidates {
			if l.valid && l.allows(s, kind, meta.Namespace) {
				allowed = append(allowed, l)
			}
		}
		attachedTo := 0
		for _, l := range allowed {
			hosts, ok := intersect(hostname(l.spec.Hostname), hostnames)
			if !ok {
				continue
			}
			attachedTo++
			if attachedOnce[l] {
				continue
			}
			attachedOnce[l] = true
			l.verdict.AttachedRoutes++
			for _, rule := range rules {
				for mi, m := range rule.matches {
					// NAMESPACE/ROUTE/RULE[-MATCH]/LISTENER: unique in the pool.
					m.Name = fmt.Sprintf("%s/%s/%d", meta.Namespace, meta.Name, rule.index)
					if len(rule.matches) > 1 {
						m.Name += fmt.Sprintf("-%d", mi)
					}
					m.Name += "/" + string(l.spec.Name)
					if kind != "HTTPRoute" || len(hosts) == 0 {
						l.attached = append(l.attached, m)
						continue
					}
					// Hostnames of one precedence go together (exact ones; wildcards of one
					// length), so that each group takes its place in the order.
					groups := hostGroups(hosts)
					for gi, g := range groups {
						gm := m
						gm.Hostnames = g
						if len(groups) > 1 {
							gm.Name += fmt.Sprintf("/h%d", gi)
						}
						l.attached = append(l.attached, gm)
					}
				}
			}
		}
		accType := string(gatewayv1.RouteConditionAccepted)
		switch {
		case len(candidates) == 0:
			accepted = cond(accType, false, string(gatewayv1.RouteReasonNoMatchingParent), "Gateway %s/%s has no listener named by sectionName or port", ns, ref.Name)
		case len(allowed) == 0:
			accepted = cond(accType, false, string(gatewayv1.RouteReasonNotAllowedByListeners), "the Gateway's listeners do not take %ss from namespace %s (allowedRoutes)", kind, meta.Namespace)
		case attachedTo == 0:
			accepted = cond(accType, false, string(gatewayv1.RouteReasonNoMatchingListenerHostname), "no hostname of the route matches a listener's")
		default:
			accepted = cond(accType, true, string(gatewayv1.RouteReasonAccepted), "attached to %d listener(s)", attachedTo)
		}
		conditions := []metav1.Condition{accepted}
		for _, r := range rules {
			if r.unsupported != "" {
				// The rest of the route is served; the matches the edge cannot serve are not.
				conditions = append(conditions, cond(string(gatewayv1.RouteConditionPartiallyInvalid), true, string(gatewayv1.RouteReasonUnsupportedValue), "rule %d: %s", r.index, r.unsupported))
				break
			}
		}
		resolved := cond(string(gatewayv1.RouteConditionResolvedRefs), true, string(gatewayv1.RouteReasonResolvedRefs), "every backend runs in at least one cluster")
		for _, r := range rules {
			if r.unresolved != "" {
				reason := gatewayv1.RouteReasonBackendNotFound
				switch {
				case strings.Contains(r.unresolved, "ReferenceGrant"):
					reason = gatewayv1.RouteReasonRefNotPermitted
				case strings.Contains(r.unresolved, "only Services"):
					reason = gatewayv1.RouteReasonInvalidKind
				}
				resolved = cond(string(gatewayv1.RouteConditionResolvedRefs), false, string(reason), "rule %d: %s", r.index, r.unresolved)
				break
			}
		}
		res.Routes[key] = append(res.Routes[key], ParentVerdict{ParentRef: ref, Conditions: append(conditions, resolved)})
	}
}

// hostGroups splits hostnames by precedence: the exact ones, then the wildcards by length,
// longest first.
func hostGroups(hosts []string) [][]string {
	byRank := map[int][]string{} // 0: exact; n: a wildcard n long
	for _, h := range hosts {
		rank := 0
		if strings.HasPrefix(h, "*") {
			rank = len(h)
		}
		byRank[rank] = append(byRank[rank], h)
	}
	ranks := slices.Sorted(maps.Keys(byRank))
	slices.SortFunc(ranks, func(a, b int) int {
		if a == 0 || b == 0 {
			return cmp.Compare(a, b) // exact first
		}
		return cmp.Compare(b, a)
	})
	var out [][]string
	for _, r := range ranks {
		out = append(out, byRank[r])
	}
	return out
}

// intersect is the hostnames a route serves on a listener: the route's that the listener's
// hostname takes (all of them when it has none), or the listener's when the route has none.
func intersect(listenerHost string, routeHosts []gatewayv1.Hostname) ([]string, bool) {
	if len(routeHosts) == 0 {
		if listenerHost == "" {
			return nil, true
		}
		return []string{listenerHost}, true
	}
	var out []string
	for _, h := range routeHosts {
		switch rh := string(h); {
		case listenerHost == "" || rh == listenerHost:
			out = append(out, rh)
		case strings.HasPrefix(listenerHost, "*.") && strings.HasSuffix(rh, listenerHost[1:]):
			out = append(out, rh) // the route's name, or wildcard, is the narrower
		case strings.HasPrefix(rh, "*.") && strings.HasSuffix(listenerHost, rh[1:]):
			out = append(out, listenerHost)
		}
	}
	return out, len(out) > 0
}

// byPrecedence orders a port's routes as the Gateway API says a request picks among those it
// matches: an exact hostname before a wildcard, a longer wildcard before a shorter, any
// hostname before none, a longer path prefix before a shorter; then the order they came in.
func byPrecedence(routes []Route) []Route {
	rank := func(r Route) (int, int) {
		best, length := 2, 0 // 0 exact, 1 wildcard, 2 none
		for _, h := range r.Hostnames {
			switch {
			case !strings.HasPrefix(h, "*"):
				best, length = 0, max(length, len(h))
			case best > 0:
				best, length = 1, max(length, len(h))
			}
		}
		return best, length
	}
	out := slices.Clone(routes)
	slices.SortStableFunc(out, func(a, b Route) int {
		ra, la := rank(a)
		rb, lb := rank(b)
		return cmp.Or(cmp.Compare(ra, rb), cmp.Compare(lb, la), cmp.Compare(len(strings.TrimSuffix(b.PathPrefix, "/")), len(strings.TrimSuffix(a.PathPrefix, "/"))))
	})
	return out
}

// weightPerEndpoint scales server weights so that a node's share of a Service's endpoints
// stays a whole number: a cluster weighs about weightPerEndpoint times its ready endpoints.
const weightPerEndpoint = 4

// ReachServers are the servers of a Service's ports in one cluster, by Service port, from what
// the cluster's agent reports (v1alpha1.ServiceReach): the NodePort on every Ready node. With
// externalTrafficPolicy Local a node weighs the endpoints it runs, and one without any is left
// out; otherwise every node weighs an equal share of the Service's ready endpoints. Either
// way a cluster weighs its ready endpoints, and one without any has no server.
func ReachServers(r v1alpha1.ServiceReach) map[int32][]Server {
	out := map[int32][]Server{}
	if r.Endpoints == 0 || len(r.Nodes) == 0 {
		return out
	}
	for _, p := range r.Ports {
		for _, n := range r.Nodes {
			addr, err := netip.ParseAddr(n.Address)
			if err != nil {
				continue
			}
			w := (int(r.Endpoints)*weightPerEndpoint + len(r.Nodes) - 1) / len(r.Nodes)
			if r.Local {
				w = int(n.Endpoints) * weightPerEndpoint
			}
			if w == 0 {
				continue
			}
			out[p.Port] = append(out[p.Port], Server{Addr: netip.AddrPortFrom(addr, uint16(p.NodePort)), Weight: min(w, 256)})
		}
	}
	return out
}
