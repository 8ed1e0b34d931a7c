package hub

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/identity"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// proxyService is the Service the cluster proxy's APIService names (an ExternalName
// localhost, as for the stores' APIs).
const proxyService = "convoy-hub-proxy"

// serveClusterProxy serves cluster access through the hub (identity.ClusterProxy) before the
// API server starts, on the last run's port (hub.json) when it is free, for the reason
// serveMetricsAPI gives. Each request it forwards to a member is audited in
// DATA/logs/cluster-access.log.
func (h *Hub) serveClusterProxy() error {
	l, tlsConfig, err := h.aggregatedAPI("hub-proxy", proxyService, func(st *state) *int { return &st.ProxyPort })
	if err != nil {
		return fmt.Errorf("serve the cluster proxy: %w", err)
	}
	h.proxyPort = l.Addr().(*net.TCPAddr).Port
	audit, err := os.OpenFile(filepath.Join(h.layout.Logs(), "cluster-access.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		l.Close()
		return fmt.Errorf("open the cluster access audit log: %w", err)
	}
	h.proxyAudit = audit
	h.clusterProxy = &identity.ClusterProxy{FrontProxyCA: h.frontProxyCA, FrontProxyNames: []string{frontProxyName},
		CurrentAgent: h.currentAgent, Audit: audit, Log: h.log.With("component", "cluster-proxy")}
	h.proxyServer = &http.Server{Handler: h.clusterProxy.Handler(), ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsConfig}
	go func() {
		if err := h.proxyServer.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("cluster proxy stopped", "err", err)
		}
	}()
	return nil
}

// aggregatedAPI listens for one of the hub's aggregated APIs on 127.0.0.1, at the port that
// port points to in hub.json (the last run's, when it is free, else any free one, which is
// saved there), and makes its server's TLS configuration: a certificate (files certName in the
// PKI) for its Service's name, which the API server checks against the APIService's caBundle,
// and a client certificate asked for but checked per request (kubeproc.FromFrontProxy), so
// that discovery is for anyone and any other certificate gets an answer, not a failed
// handshake.
func (h *Hub) aggregatedAPI(certName, service string, port func(*state) *int) (net.Listener, *tls.Config, error) {
	l, pair, _, err := h.keptTLSListener(port, kubeproc.CertRequest{
		Name: certName, CommonName: service, Server: true,
		DNSNames: []string{service + "." + v1alpha1.SystemNamespace + ".svc"},
	})
	if err != nil {
		return nil, nil, err
	}
	return l, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert}, nil
}

// keptTLSListener listens on 127.0.0.1 at the port that port points to in hub.json (the last
// run's, when it is free, else any free one, which is saved there), and loads or issues the
// serving certificate req of the hub's CA. It also returns the last run's port (0: none).
func (h *Hub) keptTLSListener(port func(*state) *int, req kubeproc.CertRequest) (net.Listener, tls.Certificate, int, error) {
	st, err := loadState(h.layout)
	if err != nil {
		return nil, tls.Certificate{}, 0, err
	}
	last := *port(&st)
	l, err := listenKept(last)
	if err != nil {
		return nil, tls.Certificate{}, 0, err
	}
	if got := l.Addr().(*net.TCPAddr).Port; got != last {
		*port(&st) = got
		if err := saveState(h.layout, st); err != nil {
			l.Close()
			return nil, tls.Certificate{}, 0, err
		}
	}
	serving, err := h.pki.CA.LoadOrIssue(h.layout.PKI(), req)
	if err != nil {
		l.Close()
		return nil, tls.Certificate{}, 0, fmt.Errorf("prepare hub PKI: %w", err)
	}
	pair, err := tls.X509KeyPair(serving.CertPEM, serving.KeyPEM)
	if err != nil {
		l.Close()
		return nil, tls.Certificate{}, 0, err
	}
	return l, pair, last, nil
}

// listenKept listens on 127.0.0.1:port when port is set and it can (a hub that just stopped
// may take a moment to let go of it), else on any free port.
func listenKept(port int) (net.Listener, error) {
	if port != 0 {
		for range 50 {
			if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
				return l, nil
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return net.Listen("tcp", "127.0.0.1:0")
}

// currentAgent is the user name of cluster's current agent (its credential generation's
// ServiceAccount), from the hub's cache; known is false for a cluster the hub does not have.
// Before the cache runs, or when it does not answer, err says so.
func (h *Hub) currentAgent(cluster string) (string, bool, error) {
	r := h.clusters.Load()
	if r == nil {
		return "", false, errors.New("the hub's controllers are starting")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c := &v1alpha1.Cluster{}
	if err := (*r).Get(ctx, client.ObjectKey{Name: cluster}, c, client.UnsafeDisableDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			return "", false, nil
		}
		return "", false, err
	}
	return v1alpha1.AgentUser(cluster, v1alpha1.AgentGeneration(c)), true, nil
}

// sweepTunnelsOnChange closes a revoked agent's tunnel as soon as the hub's cache sees its
// Cluster's credential generation move (a revocation) or the Cluster go.
func (h *Hub) sweepTunnelsOnChange(ctx context.Context, c cache.Cache) error {
	inf, err := c.GetInformer(ctx, &v1alpha1.Cluster{})
	if err != nil {
		return fmt.Errorf("watch Clusters for revoked agents: %w", err)
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*v1alpha1.Cluster)
			n, ok2 := newObj.(*v1alpha1.Cluster)
			if ok1 && ok2 && v1alpha1.AgentGeneration(o) != v1alpha1.AgentGeneration(n) {
				h.clusterProxy.Sweep(n.Name)
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if c, ok := obj.(*v1alpha1.Cluster); ok {
				h.clusterProxy.Sweep(c.Name)
			}
		},
	})
	return err
}

// registerClusterProxy points the hub's API server at the cluster proxy: its Service,
// APIService, the ClusterRole that lets people through and its binding to every
// authenticated user (v1alpha1.ClusterAccessRole).
func (h *Hub) registerClusterProxy(ctx context.Context, cfg *rest.Config) error {
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return fmt.Errorf("build client: %w", err)
	}
	port := int64(h.proxyPort)
	objs := []map[string]any{
		{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": v1alpha1.SystemNamespace}},
		{
			"apiVersion": "v1", "kind": "Service",
			"metadata": map[string]any{"name": proxyService, "namespace": v1alpha1.SystemNamespace},
			"spec": map[string]any{"type": "ExternalName", "externalName": "localhost",
				"ports": []any{map[string]any{"name": "https", "port": port, "protocol": "TCP"}}},
		},
		{
			"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
			"metadata": map[string]any{"name": v1alpha1.ProxyVersion + "." + v1alpha1.ProxyGroup},
			"spec": map[string]any{
				"group": v1alpha1.ProxyGroup, "version": v1alpha1.ProxyVersion,
				"service":  map[string]any{"namespace": v1alpha1.SystemNamespace, "name": proxyService, "port": port},
				"caBundle": base64.StdEncoding.EncodeToString(h.pki.CA.CertPEM), "groupPriorityMinimum": int64(1000), "versionPriority": int64(15),
			},
		},
		{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
			"metadata": map[string]any{"name": v1alpha1.ClusterAccessRole},
			"rules": []any{map[string]any{"apiGroups": []any{v1alpha1.ProxyGroup},
				"resources": []any{v1alpha1.ProxyResource + "/" + v1alpha1.ProxySubresource}, "verbs": []any{"*"}}},
		},
	}
	for _, o := range objs {
		u := &unstructured.Unstructured{Object: o}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldManager), client.ForceOwnership); err != nil {
			return fmt.Errorf("register the cluster proxy (%s %s): %w", u.GetKind(), u.GetName(), err)
		}
	}
	// The binding is made once: an administrator who narrowed who may go through (by
	// deleting it) is not overruled at the next start.
	binding := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
		"metadata": map[string]any{"name": v1alpha1.ClusterAccessBinding, "annotations": map[string]any{
			"convoy.dev/note": "every authenticated user may reach the members through the hub, as themselves; the members' RBAC decides. Delete this binding to narrow it; the hub does not make it again while the hub.json of its data dir says it made it once.",
		}},
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": v1alpha1.ClusterAccessRole},
		"subjects": []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}},
	}}
	st, err := loadState(h.layout)
	if err != nil {
		return err
	}
	if st.ClusterAccessBound {
		return nil
	}
	if err := c.Create(ctx, binding); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("bind %s: %w", v1alpha1.ClusterAccessRole, err)
	}
	st.ClusterAccessBound = true
	return saveState(h.layout, st)
}
