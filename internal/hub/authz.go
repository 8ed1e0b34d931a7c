package hub

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/convoy-dev/convoy/internal/controller/access"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// authzClientCN is the API server's name towards the hub's authorization webhook.
const authzClientCN = "convoy-hub-apiserver-authz"

// serveAuthorizer starts the hub API server's first authorizer, the agents' webhook
// (access.Authorizer), on a free loopback port: TLS with the API server's serving certificate,
// and only the API server's own client certificate (of the hub's CA) is answered. It writes the
// webhook's kubeconfig and the API server's AuthorizationConfiguration into the data dir and
// returns the configuration's path. The webhook allows nothing until the controllers' caches
// have synced (access.Authorizer.Use).
func (h *Hub) serveAuthorizer() (string, error) {
	client, err := h.pki.CA.LoadOrIssue(h.layout.PKI(), kubeproc.CertRequest{Name: "apiserver-authz-client", CommonName: authzClientCN})
	if err != nil {
		return "", fmt.Errorf("prepare hub PKI: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(h.pki.Serving.CertPath, h.pki.Serving.KeyPath)
	if err != nil {
		return "", fmt.Errorf("load the serving certificate for the authorization webhook: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(h.pki.CA.Cert)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("serve the authorization webhook: %w", err)
	}
	h.authz = &access.Authorizer{Log: h.log.With("component", "agent-authorizer")}
	mux := http.NewServeMux()
	mux.Handle("/authorize", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != authzClientCN {
			http.Error(w, "only the hub's API server may ask", http.StatusForbidden)
			return
		}
		h.authz.ServeHTTP(w, r)
	}))
	h.authzServer = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
			MinVersion:   tls.VersionTLS12,
		},
	}
	go func() {
		if err := h.authzServer.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("authorization webhook stopped", "err", err)
		}
	}()

	kubeconfig := filepath.Join(h.layout.Internal(), "authorization-webhook.kubeconfig")
	if err := kubeproc.WriteKubeconfig(kubeconfig, kubeproc.Kubeconfig("convoy-agents", "https://"+l.Addr().String()+"/authorize", h.pki.CA.CertPEM, client)); err != nil {
		return "", err
	}
	raw, err := kubeproc.AuthorizationConfig([]kubeproc.AuthorizationWebhook{{
		Name: "convoy-agents", Kubeconfig: kubeconfig, MatchConditions: access.WebhookMatchConditions,
	}}, false)
	if err != nil {
		return "", err
	}
	path := filepath.Join(h.layout.Internal(), "authorization.yaml")
	if err := kubeproc.WriteFileAtomic(path, raw, 0o600); err != nil {
		return "", err
	}
	return path, nil
}
