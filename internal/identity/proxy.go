package identity

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rancher/remotedialer"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/proxy"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// memberAddress is the one address a hub may dial through an agent's tunnel: the agent's
// in-process proxy to its member's API server (the agent refuses any other).
const memberAddress = "member-apiserver:443"

// ClusterProxy is the hub's side of cluster access: the aggregated API v1alpha1.ProxyGroup,
// which takes the agents' tunnels and forwards people's requests over them. It answers only
// requests that come through the hub's API server (its front-proxy certificate), which has
// authenticated and authorized them.
type ClusterProxy struct {
	// FrontProxyCA and FrontProxyNames check that a request comes from the API server.
	FrontProxyCA    *x509.CertPool
	FrontProxyNames []string
	// CurrentAgent names the user that is cluster's agent now (its ServiceAccount's user name);
	// known is false for a cluster the hub does not have; err says the hub could not look
	// (then nothing is decided on it).
	CurrentAgent func(cluster string) (user string, known bool, err error)
	// Audit receives a JSON line per request forwarded to a member (AuditRecord).
	Audit io.Writer
	Log   *slog.Logger

	once   sync.Once
	server *remotedialer.Server
	mu     sync.Mutex
	auditM sync.Mutex
	// tunnels are the open tunnels' connections, by cluster, with the agent user that opened
	// each, so that a revoked agent's are closed (Sweep); transports are the clusters' HTTP
	// transports over their tunnels, kept while a tunnel is open.
	tunnels    map[string]map[*tunnelConn]string
	transports map[string]*http.Transport
	closed     bool
}

// AuditRecord is what the hub writes for each request it forwards to a member: who, on which
// cluster, what, and the answer's status (101 for a stream that was upgraded). A request gets
// one at its end (stage ResponseComplete); an upgraded stream (exec, attach, port-forward) also
// one when it begins (ResponseStarted), since it may last for hours.
type AuditRecord struct {
	Stage    string    `json:"stage"`
	Time     time.Time `json:"time"`
	User     string    `json:"user"`
	Groups   []string  `json:"groups,omitempty"`
	Cluster  string    `json:"cluster"`
	Verb     string    `json:"verb"`
	Path     string    `json:"path"`
	Query    string    `json:"query,omitempty"`
	Status   int       `json:"status"`
	Duration float64   `json:"durationSeconds"`
}

type tunnelKey struct{}

func (p *ClusterProxy) init() {
	p.once.Do(func() {
		p.tunnels = map[string]map[*tunnelConn]string{}
		p.transports = map[string]*http.Transport{}
		p.server = remotedialer.New(func(r *http.Request) (string, bool, error) {
			cluster, ok := r.Context().Value(tunnelKey{}).(string)
			return cluster, ok, nil
		}, func(w http.ResponseWriter, r *http.Request, code int, err error) {
			p.Log.Warn("agent tunnel refused", "code", code, "err", err)
			writeStatus(w, code, metav1.StatusReasonBadRequest, "cannot open the tunnel")
		})
	})
}

// Handler serves the aggregated API: discovery, the agents' tunnels and the proxy.
func (p *ClusterProxy) Handler() http.Handler {
	p.init()
	gv := v1alpha1.ProxyGroup + "/" + v1alpha1.ProxyVersion
	group := metav1.APIGroup{
		TypeMeta:         metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"},
		Name:             v1alpha1.ProxyGroup,
		Versions:         []metav1.GroupVersionForDiscovery{{GroupVersion: gv, Version: v1alpha1.ProxyVersion}},
		PreferredVersion: metav1.GroupVersionForDiscovery{GroupVersion: gv, Version: v1alpha1.ProxyVersion},
	}
	mux := http.NewServeMux()
	// Discovery is public: the API server reads it to judge the APIService available.
	mux.HandleFunc("GET /apis", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: []metav1.APIGroup{group}})
	})
	mux.HandleFunc("GET /apis/"+v1alpha1.ProxyGroup, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, group) })
	mux.HandleFunc("GET "+v1alpha1.ProxyPrefix, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gv,
			APIResources: []metav1.APIResource{
				{Name: v1alpha1.ProxyResource + "/" + v1alpha1.ProxySubresource, Kind: "Cluster", Verbs: metav1.Verbs{"get", "create", "update", "patch", "delete"}},
				{Name: v1alpha1.ProxyResource + "/" + v1alpha1.TunnelSubresource, Kind: "Cluster", Verbs: metav1.Verbs{"get"}},
			}})
	})
	mux.HandleFunc(v1alpha1.ProxyPrefix+"/"+v1alpha1.ProxyResource+"/", p.serve)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The API server authorized the cluster that the path's first segments name; a path
		// that goes up (..) or hides a slash (%2F) asks for something else, and is refused
		// before the mux would redirect it to its clean form.
		if !cleanPath(r) {
			writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "the path has an empty, . or .. segment or an encoded slash: send it clean")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (p *ClusterProxy) serve(w http.ResponseWriter, r *http.Request) {
	if !kubeproc.FromFrontProxy(r, p.FrontProxyCA, p.FrontProxyNames) {
		writeStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "reach clusters through the hub's API server, at "+v1alpha1.ProxyPrefix)
		return
	}
	cluster, sub, rest, ok := v1alpha1.ParseProxyPath(r.URL.Path)
	if !ok || (sub != v1alpha1.ProxySubresource && sub != v1alpha1.TunnelSubresource) {
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, "the hub serves clusters/NAME/proxy/... and nothing else here")
		return
	}
	user := r.Header.Get("X-Remote-User")
	agent, known, err := p.CurrentAgent(cluster)
	if err != nil {
		p.Log.Warn("cannot look the cluster up", "cluster", cluster, "err", err)
		writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "the hub cannot look the cluster up just now; try again")
		return
	}
	if !known {
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("cluster %q not found; `convoy cluster list` shows the fleet", cluster))
		return
	}
	if sub == v1alpha1.TunnelSubresource {
		if user != agent {
			writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden, "only the cluster's current agent opens its tunnel")
			return
		}
		p.attach(w, r, cluster, user)
		return
	}
	p.forward(w, r, cluster, rest)
}

// attach serves an agent's tunnel until it closes, keeping its connection to close it when
// the agent is revoked.
func (p *ClusterProxy) attach(w http.ResponseWriter, r *http.Request, cluster, user string) {
	tw := &trackingWriter{ResponseWriter: w, p: p, cluster: cluster, user: user}
	p.Log.Info("agent tunnel open", "cluster", cluster)
	p.server.ServeHTTP(tw, r.WithContext(context.WithValue(r.Context(), tunnelKey{}, cluster)))
	p.forget(tw.conn)
	p.Log.Info("agent tunnel closed", "cluster", cluster)
}

// Connected reports whether cluster's agent has a tunnel open.
func (p *ClusterProxy) Connected(cluster string) bool {
	p.init()
	return p.server.HasSession(cluster)
}

// Sweep closes cluster's tunnels whose agent is no longer its current one (revoked, or its
// cluster deleted): call it when the cluster's credential generation changes or it goes. A
// cluster the hub cannot look up just now keeps its tunnels.
func (p *ClusterProxy) Sweep(cluster string) {
	p.init()
	current, known, err := p.CurrentAgent(cluster)
	if err != nil {
		p.Log.Warn("cannot look the cluster up to check its tunnels", "cluster", cluster, "err", err)
		return
	}
	p.mu.Lock()
	var stale []*tunnelConn
	for c, user := range p.tunnels[cluster] {
		if !known || user != current {
			stale = append(stale, c)
		}
	}
	p.mu.Unlock()
	for _, c := range stale {
		p.Log.Info("closing the tunnel of a revoked agent", "cluster", c.cluster)
		c.Close()
	}
}

// Close closes every tunnel (and with them the streams over them): the hub is stopping.
func (p *ClusterProxy) Close() {
	p.init()
	p.mu.Lock()
	p.closed = true
	var all []*tunnelConn
	for _, conns := range p.tunnels {
		for c := range conns {
			all = append(all, c)
		}
	}
	p.mu.Unlock()
	for _, c := range all {
		c.Close()
	}
	p.auditM.Lock()
	p.Audit = nil
	p.auditM.Unlock()
}

func (p *ClusterProxy) forget(c *tunnelConn) {
	if c == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.tunnels[c.cluster], c)
	if len(p.tunnels[c.cluster]) == 0 {
		delete(p.tunnels, c.cluster)
		if t := p.transports[c.cluster]; t != nil {
			t.CloseIdleConnections()
			delete(p.transports, c.cluster)
		}
	}
}

// forward sends a person's request to cluster's API server through its agent's tunnel, as
// them: the API server's word on who they are becomes impersonation headers, and nothing the
// client sent about identity goes through.
func (p *ClusterProxy) forward(w http.ResponseWriter, r *http.Request, cluster, rest string) {
	start := time.Now()
	user, groups := r.Header.Get("X-Remote-User"), r.Header.Values("X-Remote-Group")
	record := func(stage string, status int) {
		p.audit(AuditRecord{Stage: stage, Time: start.UTC(), User: user, Groups: groups, Cluster: cluster, Verb: r.Method,
			Path: rest, Query: r.URL.RawQuery, Status: status, Duration: time.Since(start).Seconds()})
	}
	// The member's status of an upgrade is read from the tunnel connection: the proxy hijacks
	// the client's connection for refusals as well, to pass them on.
	var upstream atomic.Int32
	rec := &statusWriter{ResponseWriter: w, upstream: &upstream, upgraded: func() { record("ResponseStarted", http.StatusSwitchingProtocols) }}
	defer func() { record("ResponseComplete", rec.status()) }()
	if user == "" {
		writeStatus(rec, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "Unauthorized")
		return
	}
	if strings.HasPrefix(user, v1alpha1.AgentUserPrefix) {
		writeStatus(rec, http.StatusForbidden, metav1.StatusReasonForbidden, "a cluster's agent reaches no cluster through the hub")
		return
	}
	if !p.server.HasSession(cluster) {
		writeStatus(rec, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
			fmt.Sprintf("cluster %q's agent has no tunnel to the hub now; `convoy cluster describe %s` shows when it was last heard from", cluster, cluster))
		return
	}
	out := r.Clone(r.Context())
	for k := range out.Header {
		if strings.HasPrefix(k, "X-Remote-") || strings.HasPrefix(k, "Impersonate-") || k == "Authorization" {
			out.Header.Del(k)
		}
	}
	asUser, asGroups, mapped := MemberIdentity(user, groups)
	out.Header.Set("Impersonate-User", asUser)
	for _, g := range asGroups {
		out.Header.Add("Impersonate-Group", g)
	}
	if !mapped {
		// The extras of a ServiceAccount's or node's token describe the hub's credential, and
		// go no further with a renamed user.
		for k, vs := range r.Header {
			if key, ok := strings.CutPrefix(k, "X-Remote-Extra-"); ok {
				for _, v := range vs {
					out.Header.Add("Impersonate-Extra-"+key, v)
				}
			}
		}
	}
	if isUpgrade(r) {
		out = out.WithContext(context.WithValue(out.Context(), upstreamKey{}, &upstream))
	}
	// The query goes in the location too: an upgrade (exec, port-forward) takes only that.
	h := proxy.NewUpgradeAwareHandler(&url.URL{Scheme: "http", Host: memberAddress, Path: rest, RawQuery: r.URL.RawQuery}, p.transport(cluster), false, false, responder{p.Log, cluster})
	// A streamed answer (logs -f, watch) goes on as it comes.
	h.FlushInterval = -1
	h.ServeHTTP(rec, out)
}

// transport is cluster's HTTP transport over its agent's tunnel, shared by its requests so
// that they reuse the tunnel's connections. The connection of an upgrade notes the member's
// status (statusConn), since the proxy hijacks the client's connection for a refusal as well.
func (p *ClusterProxy) transport(cluster string) *http.Transport {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.transports[cluster]; t != nil {
		return t
	}
	dial := p.server.Dialer(cluster)
	t := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := dial(ctx, "tcp", memberAddress)
			if err != nil {
				return nil, err
			}
			if status, ok := ctx.Value(upstreamKey{}).(*atomic.Int32); ok {
				return &statusConn{Conn: c, status: status}, nil
			}
			return c, nil
		},
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     90 * time.Second,
	}
	p.transports[cluster] = t
	return t
}

type upstreamKey struct{}

// isUpgrade reports whether r asks to switch protocols (exec, attach, port-forward).
func isUpgrade(r *http.Request) bool {
	for _, v := range r.Header.Values("Connection") {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// HubIdentityPrefix marks, on a member, a user or group that only the hub's own credentials
// give (see MemberIdentity).
const HubIdentityPrefix = "convoy:hub:"

// MemberIdentity is who a person the hub authenticated as user in groups is on a member.
// Names a member gives itself are not the hub's to hand out: a hub ServiceAccount
// (system:serviceaccount:NS:NAME) or node (system:node:NAME), or any other system: user,
// becomes HubIdentityPrefix+user, so that a token for a hub account of the same namespace and
// name as a member's gets none of that account's rights there; groups beginning with system:
// do too, except system:authenticated, and system:masters, which the hub's administrators
// hold and which makes them administrators of every member. Everyone else (oidc:... from the
// fleet's issuer, certificate users) is themselves. mapped says the user was renamed.
func MemberIdentity(user string, groups []string) (string, []string, bool) {
	mapped := strings.HasPrefix(user, "system:")
	if mapped {
		user = HubIdentityPrefix + user
	}
	out := make([]string, 0, len(groups))
	for _, g := range groups {
		if strings.HasPrefix(g, "system:") && g != "system:authenticated" && g != "system:masters" {
			g = HubIdentityPrefix + g
		}
		out = append(out, g)
	}
	return user, out, mapped
}

func (p *ClusterProxy) audit(a AuditRecord) {
	p.Log.Debug("cluster access", "stage", a.Stage, "user", a.User, "cluster", a.Cluster, "verb", a.Verb, "path", a.Path, "status", a.Status)
	line, _ := json.Marshal(a)
	p.auditM.Lock()
	defer p.auditM.Unlock()
	if p.Audit == nil {
		return
	}
	if _, err := p.Audit.Write(append(line, '\n')); err != nil {
		p.Log.Error("cannot write the cluster access audit", "err", err)
	}
}

type responder struct {
	log     *slog.Logger
	cluster string
}

func (r responder) Error(w http.ResponseWriter, req *http.Request, err error) {
	r.log.Warn("cannot reach the member through its tunnel", "cluster", r.cluster, "err", err)
	writeStatus(w, http.StatusBadGateway, metav1.StatusReasonServiceUnavailable,
		fmt.Sprintf("cluster %q did not answer through its agent's tunnel", r.cluster))
}

// trackingWriter keeps the connection that the tunnel's upgrade hijacks, so that Sweep can
// close it.
type trackingWriter struct {
	http.ResponseWriter
	p             *ClusterProxy
	cluster, user string
	conn          *tunnelConn
}

func (t *trackingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(t.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// The revocation may have come between the authorization and now.
	if current, known, err := t.p.CurrentAgent(t.cluster); err == nil && (!known || current != t.user) {
		conn.Close()
		return nil, nil, errors.New("the agent was revoked")
	}
	t.p.mu.Lock()
	defer t.p.mu.Unlock()
	if t.p.closed {
		conn.Close()
		return nil, nil, errors.New("the hub is stopping")
	}
	t.conn = &tunnelConn{Conn: conn, cluster: t.cluster}
	if t.p.tunnels[t.cluster] == nil {
		t.p.tunnels[t.cluster] = map[*tunnelConn]string{}
	}
	t.p.tunnels[t.cluster][t.conn] = t.user
	return t.conn, rw, nil
}

// statusConn notes the status code of the first answer read from a connection to the member
// ("HTTP/1.1 403 Forbidden").
type statusConn struct {
	net.Conn
	status *atomic.Int32
	head   []byte
}

func (c *statusConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if len(c.head) < 12 {
		c.head = append(c.head, b[:min(n, 12-len(c.head))]...)
		if len(c.head) == 12 {
			if code, err := strconv.Atoi(string(c.head[9:12])); err == nil && strings.HasPrefix(string(c.head), "HTTP/") {
				c.status.CompareAndSwap(0, int32(code))
			}
		}
	}
	return n, err
}

type tunnelConn struct {
	net.Conn
	cluster string
}

// statusWriter notes the status of an answer, passing flushes and hijacks through.
type statusWriter struct {
	http.ResponseWriter
	code     int
	upstream *atomic.Int32 // the member's status, once read (statusConn)
	upgraded func()        // called when the connection is hijacked for an upgrade
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() { _ = http.NewResponseController(s.ResponseWriter).Flush() }

func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err == nil && s.code == 0 {
		s.code = http.StatusSwitchingProtocols
		if s.upstream != nil && s.upstream.Load() != 0 {
			s.code = int(s.upstream.Load())
		}
		if s.code == http.StatusSwitchingProtocols && s.upgraded != nil {
			s.upgraded()
		}
	}
	return conn, rw, err
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	raw, _ := json.Marshal(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status: metav1.StatusFailure, Code: int32(code), Reason: reason, Message: msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(raw, '\n'))
}

// cleanPath says whether the request's path has no empty, . or .. segment inside, and no
// encoded slash among the segments that name the cluster and the subresource (the API
// server's authorization and the proxy read those from the decoded path, the same way; past
// them the path is the member's).
func cleanPath(r *http.Request) bool {
	if strings.Contains(r.URL.Path, "//") {
		return false
	}
	for _, seg := range strings.Split(r.URL.Path, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	cluster, sub, _, ok := v1alpha1.ParseProxyPath(r.URL.Path)
	if !ok {
		return true // not the proxy's path: the mux answers
	}
	return strings.HasPrefix(r.URL.EscapedPath(), v1alpha1.ProxyPrefix+"/"+v1alpha1.ProxyResource+"/"+cluster+"/"+sub)
}
