package identity_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/crypto/bcrypt"
	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/identity"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// TestIssuer signs people in to the issuer with both flows and uses their tokens at a real
// API server that trusts it: who they are, refresh, PKCE required, forged and expired tokens,
// a disabled or deleted person, key rotation that logs no one out, and the issuer down.
func TestIssuer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	// The issuer on its own TLS server, so that the test can take it down; the hub trusts it
	// as it trusts its own, and keeps its Users.
	var handler atomic.Pointer[http.Handler]
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*handler.Load()).ServeHTTP(w, r) }))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	var users atomic.Pointer[client.Client]
	dir := t.TempDir()
	is, err := identity.NewIssuer(identity.IssuerConfig{URL: srv.URL, Dir: dir, Log: hubtest.Logger(t),
		People: identity.Users{Reader: func() (client.Reader, error) {
			if c := users.Load(); c != nil {
				return *c, nil
			}
			return nil, errors.New("starting")
		}}})
	hubtest.Must(t, err)
	hh := is.Handler()
	handler.Store(&hh)
	h := hubtest.Start(t, func(o *hub.Options) {
		o.OIDCIssuers = []kubeproc.JWTIssuer{{URL: srv.URL, CAPEM: caPEM, Audiences: []string{v1alpha1.IssuerClientID}}}
	})
	users.Store(&h.Client)
	addUser := func(name, email, password string, groups ...string) *v1alpha1.User {
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
		hubtest.Must(t, err)
		u := &v1alpha1.User{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.UserSpec{Email: email, Groups: groups, PasswordHash: string(hash)}}
		hubtest.Must(t, h.Client.Create(ctx, u))
		return u
	}
	alice := addUser("alice", "alice@example.com", "alice-password", "team-shop")
	addUser("bob", "bob@example.com", "bob-password", "team-blog")

	// A bad User is refused by the API, with the reason.
	bad := &v1alpha1.User{ObjectMeta: metav1.ObjectMeta{Name: "eve"}, Spec: v1alpha1.UserSpec{Email: "eve@example.com", PasswordHash: "plain-text"}}
	if err := h.Client.Create(ctx, bad); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "passwordHash") {
		t.Errorf("a User with a password that is no bcrypt hash: %v, want invalid passwordHash", err)
	}

	lc := identity.LoginConfig{Issuer: srv.URL, ClientID: v1alpha1.IssuerClientID, IssuerCA: string(caPEM)}
	browser := browserClient(t, caPEM)
	post := func(page string, form url.Values) (int, string) {
		resp, err := browser.PostForm(page, form)
		hubtest.Must(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	// The device flow: the terminal shows a page and a code; the person signs in there.
	deviceLogin := func(username, password string) (*identity.Session, error) {
		return identity.DeviceLogin(ctx, lc, func(uri, code, complete string) {
			if !strings.HasPrefix(complete, uri+"?user_code=") {
				t.Errorf("the page with the code filled in is %q, from %q", complete, uri)
			}
			go func() {
				if st, body := post(uri, url.Values{"user_code": {code}, "username": {username}, "password": {"wrong"}}); st != http.StatusUnauthorized || !strings.Contains(body, "Wrong user name or password") {
					t.Errorf("a wrong password: %d %s", st, body)
				}
				if st, body := post(uri, url.Values{"user_code": {"BCDF-GHJK"}, "username": {username}, "password": {password}}); st != http.StatusBadRequest {
					t.Errorf("a code nobody was given: %d %s", st, body)
				}
				post(uri, url.Values{"user_code": {strings.ToLower(code)}, "username": {username}, "password": {password}})
			}()
		})
	}
	s, err := deviceLogin("alice", "alice-password")
	hubtest.Must(t, err)

	as := func(token string) *kubernetes.Clientset {
		cfg := rest.AnonymousClientConfig(h.Config)
		cfg.BearerToken = token
		cs, err := kubernetes.NewForConfig(cfg)
		hubtest.Must(t, err)
		return cs
	}
	review := func(token string) (*authnv1.SelfSubjectReview, error) {
		return as(token).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	}
	var r *authnv1.SelfSubjectReview
	hubtest.Eventually(t, "alice's token accepted by the API server", time.Minute, func() (bool, error) {
		r, err = review(s.IDToken)
		return err == nil, err
	})
	if u := r.Status.UserInfo; u.Username != "oidc:alice@example.com" || !slices.Contains(u.Groups, "oidc:team-shop") {
		t.Errorf("alice is %q in %q, want oidc:alice@example.com in oidc:team-shop", u.Username, u.Groups)
	}
	if time.Until(s.Expiry) > identity.DefaultTokenLifetime || time.Until(s.Expiry) < identity.DefaultTokenLifetime-time.Minute {
		t.Errorf("alice's ID token expires at %s, want in %s", s.Expiry, identity.DefaultTokenLifetime)
	}

	// A refresh gives a new ID token, and the refresh token is used once.
	old := *s
	s.Expiry = time.Now()
	fresh, err := s.Fresh(ctx)
	hubtest.Must(t, err)
	if fresh.IDToken == old.IDToken || fresh.RefreshToken == old.RefreshToken {
		t.Errorf("a refresh gave the same tokens")
	}
	if _, err := review(fresh.IDToken); err != nil {
		t.Errorf("the refreshed token: %v", err)
	}
	if _, err := (&identity.Session{LoginConfig: lc, RefreshToken: old.RefreshToken}).Fresh(ctx); !errors.Is(err, identity.ErrNotLoggedIn) {
		t.Errorf("a refresh token used twice: %v, want not logged in", err)
	}

	// The authorization code flow, with PKCE, answered on a loopback port.
	bs, err := identity.BrowserLogin(ctx, lc, func(authURL string) {
		go func() {
			resp, err := browser.Get(authURL) // redirected to the sign-in page
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.Request.URL.Path != "/login" {
				t.Errorf("the authorization request led to %s, want the sign-in page", resp.Request.URL)
			}
			post(resp.Request.URL.String(), url.Values{"username": {"bob@example.com"}, "password": {"bob-password"}})
		}()
	})
	hubtest.Must(t, err)
	if r, err := review(bs.IDToken); err != nil || r.Status.UserInfo.Username != "oidc:bob@example.com" || !slices.Contains(r.Status.UserInfo.Groups, "oidc:team-blog") {
		t.Errorf("bob, signed in with a browser: %v %+v", err, r)
	}
	// Revoked (convoy logout), the session ends at the issuer.
	hubtest.Must(t, bs.Revoke(ctx))
	bs.Expiry = time.Now()
	if _, err := bs.Fresh(ctx); !errors.Is(err, identity.ErrNotLoggedIn) {
		t.Errorf("a refresh after the session was revoked: %v, want not logged in", err)
	}
	// A User deleted and made again under the same name is someone else: the old session
	// does not become theirs.
	bs2, err := deviceLogin("bob", "bob-password")
	hubtest.Must(t, err)
	hubtest.Must(t, h.Client.Delete(ctx, &v1alpha1.User{ObjectMeta: metav1.ObjectMeta{Name: "bob"}}))
	hubtest.Eventually(t, "bob gone from the hub's cache", 30*time.Second, func() (bool, error) {
		err := h.Client.Get(ctx, client.ObjectKey{Name: "bob"}, &v1alpha1.User{})
		return apierrors.IsNotFound(err), err
	})
	addUser("bob", "another-bob@example.com", "bob-password", "team-shop")
	bs2.Expiry = time.Now()
	if _, err := bs2.Fresh(ctx); !errors.Is(err, identity.ErrNotLoggedIn) {
		t.Errorf("the session of a deleted User, after another took the name: %v, want not logged in", err)
	}

	// Without PKCE, an authorization request is refused.
	noRedirects := *browser
	noRedirects.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noRedirects.Get(srv.URL + "/authorize?" + url.Values{"client_id": {v1alpha1.IssuerClientID}, "response_type": {"code"},
		"redirect_uri": {"http://127.0.0.1:1/callback"}, "scope": {"openid email"}, "state": {"x"}}.Encode())
	hubtest.Must(t, err)
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "error=invalid_request") || !strings.Contains(loc, "PKCE") {
		t.Errorf("an authorization request without PKCE: %s %q, want invalid_request", resp.Status, loc)
	}

	// Forged tokens, several signed with the issuer's own key, are refused with 401.
	key, kid := issuerKey(t, dir)
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	hubtest.Must(t, err)
	claims := func(over map[string]any) map[string]any {
		c, err := identity.Claims(fresh.IDToken)
		hubtest.Must(t, err)
		for k, v := range over {
			c[k] = v
		}
		return c
	}
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"` + kid + `","typ":"JWT"}`))
	payload, _ := json.Marshal(claims(nil))
	for name, token := range map[string]string{
		"signed with another key": sign(t, other, kid, claims(nil)),
		"alg none":                header + "." + base64.RawURLEncoding.EncodeToString(payload) + ".",
		"expired":                 sign(t, key, kid, claims(map[string]any{"exp": time.Now().Add(-time.Minute).Unix()})),
		"of another issuer":       sign(t, key, kid, claims(map[string]any{"iss": "https://issuer.example.com"})),
		"for another audience":    sign(t, key, kid, claims(map[string]any{"aud": "another-app"})),
		"tampered":                hubtest.Tamper(fresh.IDToken),
	} {
		if _, err := review(token); !apierrors.IsUnauthorized(err) {
			t.Errorf("a token %s: %v, want 401", name, err)
		} else if strings.Contains(err.Error(), "expired") || strings.Contains(err.Error(), "signature") {
			t.Errorf("a token %s is refused with details: %v", name, err)
		}
	}
	if _, err := review(sign(t, key, kid, claims(nil))); err != nil {
		t.Errorf("the same claims signed with the issuer's key, as the forged tokens' control: %v", err)
	}

	// The key rotates: the old key's tokens still work until they expire, and the new key's
	// are accepted at once (the API server fetches keys it has not seen).
	hubtest.Must(t, is.RotateKey())
	if is.SigningKeyID() == kid {
		t.Fatalf("the key did not change")
	}
	if _, err := review(fresh.IDToken); err != nil {
		t.Errorf("a token of the replaced key: %v", err)
	}
	fresh.Expiry = time.Now()
	rotated, err := fresh.Fresh(ctx)
	hubtest.Must(t, err)
	if _, err := review(rotated.IDToken); err != nil {
		t.Errorf("a token of the new key: %v", err)
	}

	// Disabled, a person cannot sign in or refresh.
	alice.Spec.Disabled = true
	hubtest.Must(t, h.Client.Update(ctx, alice))
	rotated.Expiry = time.Now()
	if _, err := rotated.Fresh(ctx); !errors.Is(err, identity.ErrNotLoggedIn) {
		t.Errorf("a refresh of a disabled person: %v, want not logged in", err)
	}
	lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err = identity.DeviceLogin(lctx, lc, func(uri, code, _ string) {
		go func() {
			if st, body := post(uri, url.Values{"user_code": {code}, "username": {"alice"}, "password": {"alice-password"}}); st != http.StatusUnauthorized {
				t.Errorf("a disabled person signs in: %d %s", st, body)
			}
			cancel()
		}()
	})
	if err == nil {
		t.Errorf("a disabled person got a session")
	}

	// Guessing is throttled: after 5 wrong passwords, even the right one waits.
	addUser("carol", "carol@example.com", "carol-password")
	lctx, cancel = context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, _ = identity.DeviceLogin(lctx, lc, func(uri, code, _ string) {
		go func() {
			defer cancel()
			for i := range 5 {
				if st, _ := post(uri, url.Values{"user_code": {code}, "username": {"carol"}, "password": {fmt.Sprint("guess-", i)}}); st != http.StatusUnauthorized {
					t.Errorf("guess %d: %d, want 401", i, st)
				}
			}
			if st, body := post(uri, url.Values{"user_code": {code}, "username": {"Carol"}, "password": {"carol-password"}}); st != http.StatusTooManyRequests || !strings.Contains(body, "Too many failed sign-ins") {
				t.Errorf("the right password after 5 guesses: %d %s, want 429", st, body)
			}
		}()
	})

	// The issuer down: tokens already given keep working, and a sign-in says it is down.
	srv.Close()
	if _, err := review(rotated.IDToken); err != nil {
		t.Errorf("a token with the issuer down: %v", err)
	}
	if _, err := identity.DeviceLogin(ctx, lc, func(string, string, string) {}); !errors.Is(err, identity.ErrIssuerDown) || !strings.Contains(err.Error(), "is the hub running?") {
		t.Errorf("a sign-in with the issuer down: %v, want that it is down", err)
	}
}

// browserClient is a browser: cookies, redirects, and the issuer's CA.
func browserClient(t *testing.T, caPEM []byte) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	jar, _ := cookiejar.New(nil)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig.RootCAs = pool
	return &http.Client{Jar: jar, Transport: tr, Timeout: 30 * time.Second}
}

// issuerKey is the issuer's signing key, from its directory.
func issuerKey(t *testing.T, dir string) (*ecdsa.PrivateKey, string) {
	raw, err := os.ReadFile(filepath.Join(dir, "keys.json"))
	hubtest.Must(t, err)
	var keys []struct{ ID, PEM string }
	hubtest.Must(t, json.Unmarshal(raw, &keys))
	last := keys[len(keys)-1]
	b, _ := pem.Decode([]byte(last.PEM))
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	hubtest.Must(t, err)
	return k.(*ecdsa.PrivateKey), last.ID
}

func sign(t *testing.T, key *ecdsa.PrivateKey, kid string, claims map[string]any) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", kid).WithType("JWT"))
	hubtest.Must(t, err)
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	hubtest.Must(t, err)
	return raw
}
