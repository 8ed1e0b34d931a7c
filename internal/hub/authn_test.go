package hub_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// testIssuer stands for an organisation's own OpenID Connect issuer: it serves its discovery
// document and its key set over TLS, and signs ID tokens with its key.
type testIssuer struct {
	srv *httptest.Server
	key *ecdsa.PrivateKey
}

func newTestIssuer(t *testing.T) *testIssuer {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is := &testIssuer{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.srv.URL, "jwks_uri": is.srv.URL + "/keys",
			"authorization_endpoint": is.srv.URL + "/auth", "token_endpoint": is.srv.URL + "/token",
			"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"ES256"},
		})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	})
	is.srv = httptest.NewTLSServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

func (is *testIssuer) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.srv.Certificate().Raw})
}

// token is an ID token with these claims over the defaults, signed with key (the issuer's
// when nil).
func (is *testIssuer) token(t *testing.T, key *ecdsa.PrivateKey, claims map[string]any) string {
	if key == nil {
		key = is.key
	}
	c := map[string]any{
		"iss": is.srv.URL, "aud": "convoy", "sub": "alice-1", "email": "alice@example.com", "email_verified": true,
		"groups": []string{"team-shop"}, "iat": time.Now().Unix(), "exp": time.Now().Add(10 * time.Minute).Unix(),
	}
	for k, v := range claims {
		c[k] = v
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k1").WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestOIDCIssuer starts a hub that trusts an organisation's issuer (--oidc-issuer): a token it
// signed makes its holder oidc:EMAIL in groups oidc:GROUP, whom RBAC at the hub then judges,
// and forged tokens are refused with 401.
func TestOIDCIssuer(t *testing.T) {
	t.Parallel()
	is := newTestIssuer(t)
	h := hubtest.Start(t, func(o *hub.Options) {
		o.OIDCIssuers = []kubeproc.JWTIssuer{{URL: is.srv.URL, CAPEM: is.caPEM(), Audiences: []string{"convoy"}}}
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
	alice := as(is.token(t, nil, nil))
	var review *authnv1.SelfSubjectReview
	hubtest.Eventually(t, "a token of the issuer accepted", time.Minute, func() (bool, error) {
		var err error
		review, err = alice.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
		return err == nil, err
	})
	if u := review.Status.UserInfo; u.Username != "oidc:alice@example.com" || !slices.Contains(u.Groups, "oidc:team-shop") {
		t.Errorf("the token's holder is %q in %q, want oidc:alice@example.com in oidc:team-shop", u.Username, u.Groups)
	}
	// Authenticated, then RBAC at the hub decides: she has no binding.
	if _, err := alice.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("alice with no binding lists namespaces: %v, want forbidden", err)
	}

	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	payload, _ := json.Marshal(map[string]any{"iss": is.srv.URL, "aud": "convoy", "sub": "mallory", "email": "alice@example.com",
		"email_verified": true, "exp": time.Now().Add(time.Hour).Unix()})
	for name, token := range map[string]string{
		"signed with another key": is.token(t, other, nil),
		"alg none":                header + "." + base64.RawURLEncoding.EncodeToString(payload) + ".",
		"expired":                 is.token(t, nil, map[string]any{"exp": time.Now().Add(-time.Minute).Unix(), "iat": time.Now().Add(-time.Hour).Unix()}),
		"another issuer":          is.token(t, nil, map[string]any{"iss": "https://issuer.example.com"}),
		"another audience":        is.token(t, nil, map[string]any{"aud": "another-app"}),
		"an unverified email":     is.token(t, nil, map[string]any{"email_verified": false}),
		"tampered":                tamper(is.token(t, nil, nil)),
	} {
		_, err := as(token).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if !apierrors.IsUnauthorized(err) {
			t.Errorf("a token %s: %v, want 401", name, err)
		} else if strings.Contains(err.Error(), "alice") || strings.Contains(err.Error(), "issuer") {
			t.Errorf("a token %s: the refusal tells more than 401: %v", name, err)
		}
	}
}

// tamper changes the token's claims and keeps its signature.
func tamper(token string) string {
	parts := strings.Split(token, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c map[string]any
	_ = json.Unmarshal(raw, &c)
	c["groups"] = []string{"system:masters"}
	raw, _ = json.Marshal(c)
	parts[1] = base64.RawURLEncoding.EncodeToString(raw)
	return strings.Join(parts, ".")
}
