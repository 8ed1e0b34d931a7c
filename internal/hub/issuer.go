package hub

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/identity"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// Issuer returns the hub's own OpenID Connect issuer, or nil when it trusts another
// (Options.OIDCIssuers) or runs none (Options.NoIssuer).
func (h *Hub) Issuer() *identity.Issuer { return h.issuer }

// serveIssuer starts the hub's own OpenID Connect issuer (identity.Issuer) over TLS on
// 127.0.0.1, at the last run's port (hub.json) when it is free, with a certificate of the
// hub's CA, before the API server starts: the API server fetches its keys when it starts. The
// people who sign in are the hub's Users, read from the controllers' cache. It returns the
// issuer as the API servers should trust it.
func (h *Hub) serveIssuer() (kubeproc.JWTIssuer, error) {
	l, pair, last, err := h.keptTLSListener(func(st *state) *int { return &st.IssuerPort }, kubeproc.CertRequest{
		Name: "hub-issuer", CommonName: "convoy-hub-issuer", Server: true,
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
	})
	if err != nil {
		return kubeproc.JWTIssuer{}, fmt.Errorf("serve the OpenID Connect issuer: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if last != 0 && port != last {
		// The port is in the issuer's URL, which every token and login kubeconfig names.
		h.log.Warn("the OpenID Connect issuer's port of the last run is taken by another program: its URL changes, so every token given before is refused and people run `convoy login` again",
			"was", last, "now", port)
	}
	url := "https://127.0.0.1:" + strconv.Itoa(port)
	h.issuer, err = identity.NewIssuer(identity.IssuerConfig{
		URL: url, Dir: filepath.Join(h.layout.Dir, "issuer"),
		People: identity.Users{Reader: func() (client.Reader, error) {
			if r := h.clusters.Load(); r != nil {
				return *r, nil
			}
			return nil, errors.New("the hub's controllers are starting")
		}},
		TokenLifetime: h.opts.IssuerTokenLifetime,
		Log:           h.log.With("component", "issuer"),
	})
	if err != nil {
		l.Close()
		return kubeproc.JWTIssuer{}, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.stopIssuer = cancel
	go h.issuer.Run(ctx)
	h.issuerServer = &http.Server{Handler: h.issuer.Handler(), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}}
	go func() {
		if err := h.issuerServer.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("OpenID Connect issuer stopped", "err", err)
		}
	}()
	return kubeproc.JWTIssuer{URL: url, CAPEM: h.pki.CA.CertPEM, Audiences: []string{v1alpha1.IssuerClientID}}, nil
}

// publishLogin publishes, for anyone, signed in or not, the issuer people sign in with
// (v1alpha1.LoginConfigMap), as kubeadm publishes cluster-info: `convoy login` reads it with
// no credentials. With no issuer, it is deleted.
func publishLogin(ctx context.Context, c client.Client, is *kubeproc.JWTIssuer) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.LoginNamespace, Name: v1alpha1.LoginConfigMap}}
	if is == nil {
		if err := client.IgnoreNotFound(c.Delete(ctx, cm)); err != nil {
			return fmt.Errorf("delete the login ConfigMap: %w", err)
		}
		return nil
	}
	if _, err := controllerutil.CreateOrUpdate(ctx, c, cm, func() error {
		cm.Data = map[string]string{v1alpha1.LoginIssuerKey: is.URL, v1alpha1.LoginClientIDKey: is.Audiences[0]}
		if len(is.CAPEM) > 0 {
			cm.Data[v1alpha1.LoginIssuerCAKey] = string(is.CAPEM)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("publish the login ConfigMap: %w", err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.LoginNamespace, Name: "convoy:login"}}
	if _, err := controllerutil.CreateOrUpdate(ctx, c, role, func() error {
		role.Rules = []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"},
			ResourceNames: []string{v1alpha1.LoginConfigMap}, Verbs: []string{"get"}}}
		return nil
	}); err != nil {
		return fmt.Errorf("publish the login ConfigMap: %w", err)
	}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.LoginNamespace, Name: "convoy:login"}}
	if _, err := controllerutil.CreateOrUpdate(ctx, c, binding, func() error {
		binding.RoleRef = rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name}
		binding.Subjects = []rbacv1.Subject{
			{APIGroup: rbacv1.GroupName, Kind: "Group", Name: "system:unauthenticated"},
			{APIGroup: rbacv1.GroupName, Kind: "Group", Name: "system:authenticated"},
		}
		return nil
	}); err != nil {
		return fmt.Errorf("publish the login ConfigMap: %w", err)
	}
	return nil
}
