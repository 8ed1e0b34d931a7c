package identity_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/identity"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// TestClusterProxy runs the hub's ClusterProxy behind a stand-in for the API server's
// aggregator (bearer token to X-Remote-User, the front-proxy client certificate, upgrades
// passed on), a real Tunnel from an agent, and a stand-in member API server that says what it
// was sent: the person is impersonated, the agent's own credentials reach the member and the
// client's do not, the path and query arrive, and the hub audits it; an unknown cluster gets
// 404, a cluster without a tunnel 503, a tunnel opened by anyone but the current agent 403,
// and a revocation closes the tunnel.
func TestClusterProxy(t *testing.T) {
	dir := t.TempDir()
	ca, err := kubeproc.LoadOrCreateCA(dir, "front-proxy-ca")
	hubtest.Must(t, err)
	client, err := ca.LoadOrIssue(dir, kubeproc.CertRequest{Name: "front-proxy-client", CommonName: "front-proxy-client"})
	hubtest.Must(t, err)
	serving, err := ca.LoadOrIssue(dir, kubeproc.CertRequest{Name: "serving", CommonName: "localhost", Server: true, IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	hubtest.Must(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)

	// The member: says who the request was for and with what.
	member := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Impersonate-User") == "nobody" {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "query": r.URL.RawQuery, "auth": r.Header.Get("Authorization"),
			"user": r.Header.Get("Impersonate-User"), "groups": r.Header.Values("Impersonate-Group"), "extra": r.Header.Values("Impersonate-Extra-Scopes"),
			"remote": r.Header.Get("X-Remote-User")})
	}))
	defer member.Close()

	var current atomic.Value // the agent user of cluster "eu"
	current.Store("system:serviceaccount:convoy-cluster-eu:agent-1")
	var audit hubtest.SyncBuffer
	p := &identity.ClusterProxy{FrontProxyCA: pool, FrontProxyNames: []string{"front-proxy-client"}, Audit: &audit,
		Log: slog.New(slog.DiscardHandler),
		CurrentAgent: func(cluster string) (string, bool, error) {
			if cluster != "eu" {
				return "", false, nil
			}
			return current.Load().(string), true, nil
		}}
	pair, err := tls.X509KeyPair(serving.CertPEM, serving.KeyPEM)
	hubtest.Must(t, err)
	hub := httptest.NewUnstartedServer(p.Handler())
	hub.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequestClientCert}
	hub.StartTLS()
	defer hub.Close()

	// The aggregator: tokens are users; the client's Authorization goes no further.
	users := map[string][]string{"agent-token": {"system:serviceaccount:convoy-cluster-eu:agent-1"}, "old-agent": {"system:serviceaccount:convoy-cluster-eu:agent-0"},
		"alice-token": {"alice", "team-shop", "system:authenticated"}, "nobody-token": {"nobody", "system:authenticated"},
		"bob-token": {"system:serviceaccount:shop:bob", "system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"}}
	clientPair, err := tls.X509KeyPair(client.CertPEM, client.KeyPEM)
	hubtest.Must(t, err)
	hubURL, _ := url.Parse(hub.URL)
	toHub := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientPair}}}
	agg := httptest.NewTLSServer(&httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(hubURL)
			who := users[strings.TrimPrefix(r.In.Header.Get("Authorization"), "Bearer ")]
			// As the API server's aggregator: what the client said of itself goes.
			for k := range r.Out.Header {
				if strings.HasPrefix(k, "X-Remote-") {
					r.Out.Header.Del(k)
				}
			}
			if len(who) > 0 {
				r.Out.Header.Set("X-Remote-User", who[0])
				for _, g := range who[1:] {
					r.Out.Header.Add("X-Remote-Group", g)
				}
				r.Out.Header.Set("X-Remote-Extra-Scopes", "openid")
			}
		},
		Transport: toHub,
	})
	defer agg.Close()
	aggCA := certPEM(agg.Certificate())

	get := func(token, path string, header http.Header) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, agg.URL+path, nil)
		for k, vs := range header {
			req.Header[k] = vs
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := agg.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	// Straight to the hub's port, without the front-proxy certificate: refused.
	resp, err := hub.Client().Get(hub.URL + v1alpha1.ClusterProxyPath("eu") + "/api")
	hubtest.Must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without the front-proxy certificate: %d", resp.StatusCode)
	}
	if code, body := get("alice-token", v1alpha1.ClusterProxyPath("us")+"/api", nil); code != http.StatusNotFound || !strings.Contains(body, `cluster \"us\" not found`) {
		t.Errorf("an unknown cluster: %d %s", code, body)
	}
	if code, body := get("alice-token", v1alpha1.ClusterProxyPath("eu")+"/api", nil); code != http.StatusServiceUnavailable || !strings.Contains(body, "has no tunnel") {
		t.Errorf("no tunnel yet: %d %s", code, body)
	}

	tunnel := func(token string) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		tn := &identity.Tunnel{URL: agg.URL + v1alpha1.TunnelPath("eu"), HubCA: aggCA, Token: func() string { return token },
			Member:  &rest.Config{Host: member.URL, BearerToken: "member-agent-token", TLSClientConfig: rest.TLSClientConfig{CAData: certPEM(member.Certificate())}},
			Backoff: func(int) time.Duration { return 100 * time.Millisecond }, Log: slog.New(slog.DiscardHandler)}
		go func() { defer close(done); tn.Run(ctx) }()
		return func() { cancel(); <-done }
	}
	// An agent of a revoked generation may not open it, nor a person.
	for _, token := range []string{"old-agent", "alice-token"} {
		if code, body := get(token, v1alpha1.TunnelPath("eu"), nil); code != http.StatusForbidden {
			t.Errorf("a tunnel opened with %s: %d %s", token, code, body)
		}
	}

	stop := tunnel("agent-token")
	defer stop()
	hubtest.Eventually(t, "the tunnel", 20*time.Second, func() (bool, error) { return p.Connected("eu"), nil })
	code, body := get("alice-token", v1alpha1.ClusterProxyPath("eu")+"/api/v1/namespaces/shop/pods?limit=5",
		http.Header{"Impersonate-User": {"system:admin"}, "X-Remote-User": {"system:admin"}})
	var seen struct {
		Path, Query, Auth, User, Remote string
		Groups, Extra                   []string
	}
	json.Unmarshal([]byte(body), &seen)
	if code != http.StatusOK || seen.Path != "/api/v1/namespaces/shop/pods" || seen.Query != "limit=5" || seen.User != "alice" ||
		strings.Join(seen.Groups, ",") != "team-shop,system:authenticated" || strings.Join(seen.Extra, ",") != "openid" ||
		seen.Auth != "Bearer member-agent-token" || seen.Remote != "" {
		t.Errorf("the member saw %d %s", code, body)
	}
	if !strings.Contains(audit.String(), `"stage":"ResponseComplete"`) || !strings.Contains(audit.String(), `"user":"alice"`) ||
		!strings.Contains(audit.String(), `"cluster":"eu"`) || !strings.Contains(audit.String(), `"path":"/api/v1/namespaces/shop/pods","query":"limit=5","status":200`) {
		t.Errorf("audit:\n%s", audit.String())
	}

	// A hub ServiceAccount is not the member's account of the same name.
	code, body = get("bob-token", v1alpha1.ClusterProxyPath("eu")+"/api", nil)
	json.Unmarshal([]byte(body), &seen)
	if code != http.StatusOK || seen.User != "convoy:hub:system:serviceaccount:shop:bob" ||
		strings.Join(seen.Groups, ",") != "convoy:hub:system:serviceaccounts,convoy:hub:system:serviceaccounts:shop,system:authenticated" || len(seen.Extra) != 0 {
		t.Errorf("a hub ServiceAccount on the member: %d %s", code, body)
	}
	// An agent reaches no cluster through the hub, its own included.
	if code, body := get("agent-token", v1alpha1.ClusterProxyPath("eu")+"/api", nil); code != http.StatusForbidden {
		t.Errorf("an agent through the proxy: %d %s", code, body)
	}
	// An upgrade the member refuses is audited with the member's status.
	code, body = get("nobody-token", v1alpha1.ClusterProxyPath("eu")+"/api/v1/namespaces/shop/pods/p/exec", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}})
	if code != http.StatusForbidden {
		t.Errorf("a refused upgrade: %d %s", code, body)
	}
	hubtest.Eventually(t, "the refused upgrade audited", 20*time.Second, func() (bool, error) { return strings.Contains(audit.String(), `"user":"nobody"`), nil })
	for _, line := range strings.Split(audit.String(), "\n") {
		if strings.Contains(line, `"user":"nobody"`) && (!strings.Contains(line, `"stage":"ResponseComplete"`) || !strings.Contains(line, `"status":403`)) {
			t.Errorf("the refused upgrade's audit: %s", line)
		}
	}

	// Revoked: the tunnel is closed at the sweep, and the agent may not open it again.
	current.Store("system:serviceaccount:convoy-cluster-eu:agent-2")
	p.Sweep("eu")
	hubtest.Eventually(t, "the revoked tunnel closed", 20*time.Second, func() (bool, error) { return !p.Connected("eu"), nil })
	if code, body := get("alice-token", v1alpha1.ClusterProxyPath("eu")+"/api", nil); code != http.StatusServiceUnavailable {
		t.Errorf("after the revocation: %d %s", code, body)
	}
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func TestMemberIdentity(t *testing.T) {
	for _, tc := range []struct {
		user, wantUser string
		groups, want   []string
		mapped         bool
	}{
		{user: "oidc:alice@example.com", groups: []string{"oidc:team-shop", "system:authenticated"},
			wantUser: "oidc:alice@example.com", want: []string{"oidc:team-shop", "system:authenticated"}},
		{user: "convoy-admin", groups: []string{"system:masters", "system:authenticated"},
			wantUser: "convoy-admin", want: []string{"system:masters", "system:authenticated"}},
		{user: "system:serviceaccount:default:bob", groups: []string{"system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"},
			wantUser: "convoy:hub:system:serviceaccount:default:bob", want: []string{"convoy:hub:system:serviceaccounts", "convoy:hub:system:serviceaccounts:default", "system:authenticated"}, mapped: true},
		{user: "system:node:n1", groups: []string{"system:nodes"}, wantUser: "convoy:hub:system:node:n1", want: []string{"convoy:hub:system:nodes"}, mapped: true},
		{user: "system:kube-controller-manager", wantUser: "convoy:hub:system:kube-controller-manager", want: []string{}, mapped: true},
	} {
		user, groups, mapped := identity.MemberIdentity(tc.user, tc.groups)
		if user != tc.wantUser || strings.Join(groups, ",") != strings.Join(tc.want, ",") || mapped != tc.mapped {
			t.Errorf("MemberIdentity(%q, %q) = %q, %q, %v", tc.user, tc.groups, user, groups, mapped)
		}
	}
}
