package hub_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// TestOIDCIssuer starts a hub that trusts an organisation's issuer (--oidc-issuer): a token it
// signed makes its holder oidc:EMAIL in groups oidc:GROUP, whom RBAC at the hub then judges,
// and forged tokens are refused with 401.
func TestOIDCIssuer(t *testing.T) {
	t.Parallel()
	is := hubtest.NewOIDCIssuer(t)
	h := hubtest.Start(t, func(o *hub.Options) {
		o.OIDCIssuers = []kubeproc.JWTIssuer{{URL: is.Srv.URL, CAPEM: is.CAPEM(), Audiences: []string{"convoy"}}}
	})
	ctx := context.Background()
	as := func(token string) *kubernetes.Clientset {
		cfg := rest.AnonymousClientConfig(h.Config)
		cfg.BearerToken = token
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}

	// The API server fetches the issuer's keys in the background after it starts.
	review := func(cs *kubernetes.Clientset) (*authnv1.SelfSubjectReview, error) {
		return cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	}
	alice := as(is.Token(t, nil, nil))
	var r *authnv1.SelfSubjectReview
	hubtest.Eventually(t, "a token of the issuer accepted", time.Minute, func() (bool, error) {
		var err error
		r, err = review(alice)
		return err == nil, err
	})
	if u := r.Status.UserInfo; u.Username != "oidc:alice@example.com" || !slices.Contains(u.Groups, "oidc:team-shop") {
		t.Errorf("the token's holder is %q in %q, want oidc:alice@example.com in oidc:team-shop", u.Username, u.Groups)
	}
	// Authenticated, then RBAC at the hub decides: she has no binding.
	if _, err := alice.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("alice with no binding lists namespaces: %v, want forbidden", err)
	}

	// The configuration is published for imported members (convoy cluster authentication-config).
	var cm corev1.ConfigMap
	if err := h.Client.Get(ctx, client.ObjectKey{Namespace: v1alpha1.SystemNamespace, Name: v1alpha1.AuthenticationConfigMap}, &cm); err != nil {
		t.Fatal(err)
	}
	if got := cm.Data[v1alpha1.AuthenticationKey]; !strings.Contains(got, "url: "+is.Srv.URL) || !strings.Contains(got, "kind: AuthenticationConfiguration") {
		t.Errorf("the published configuration:\n%s", got)
	}

	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	payload, _ := json.Marshal(map[string]any{"iss": is.Srv.URL, "aud": "convoy", "sub": "mallory", "email": "alice@example.com",
		"email_verified": true, "exp": time.Now().Add(time.Hour).Unix()})
	for name, token := range map[string]string{
		"signed with another key": is.Token(t, other, nil),
		"alg none":                header + "." + base64.RawURLEncoding.EncodeToString(payload) + ".",
		"expired":                 is.Token(t, nil, map[string]any{"exp": time.Now().Add(-time.Minute).Unix(), "iat": time.Now().Add(-time.Hour).Unix()}),
		"another issuer":          is.Token(t, nil, map[string]any{"iss": "https://issuer.example.com"}),
		"another audience":        is.Token(t, nil, map[string]any{"aud": "another-app"}),
		"an unverified email":     is.Token(t, nil, map[string]any{"email_verified": false}),
		"no email_verified":       is.Token(t, nil, map[string]any{"email_verified": nil}),
		"tampered":                hubtest.Tamper(is.Token(t, nil, nil)),
	} {
		_, err := review(as(token))
		if !apierrors.IsUnauthorized(err) {
			t.Errorf("a token %s: %v, want 401", name, err)
		}
	}

	// A token of the issuer that names a group of the cluster's own is in the issuer's group
	// of that name, not in the cluster's.
	mallory := as(is.Token(t, nil, map[string]any{"email": "mallory@example.com", "groups": []string{"system:masters"}}))
	if r, err := review(mallory); err != nil {
		t.Errorf("mallory's token: %v", err)
	} else if g := r.Status.UserInfo.Groups; slices.Contains(g, "system:masters") || !slices.Contains(g, "oidc:system:masters") {
		t.Errorf("a token with the group system:masters makes its holder a member of %q, want oidc:system:masters and not system:masters", g)
	}
	if _, err := mallory.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("mallory, oidc:system:masters, lists kube-system's Secrets: %v, want forbidden", err)
	}

	// The hub started again without the issuer: its tokens are refused, and nothing is
	// published any more.
	h.Options.OIDCIssuers, h.Options.NoIssuer = nil, true
	h.Restart()
	if _, err := review(alice); !apierrors.IsUnauthorized(err) {
		t.Errorf("alice's token at a hub that no longer trusts her issuer: %v, want 401", err)
	}
	if err := h.Client.Get(ctx, client.ObjectKey{Namespace: v1alpha1.SystemNamespace, Name: v1alpha1.AuthenticationConfigMap}, &cm); !apierrors.IsNotFound(err) {
		t.Errorf("the configuration of an issuer the hub no longer trusts: %v, want not found", err)
	}
}
