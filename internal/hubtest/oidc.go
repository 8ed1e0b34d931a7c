package hubtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// OIDCIssuer stands for an organisation's own OpenID Connect issuer, in tests: it serves its discovery
// document and its key set over TLS, and signs ID tokens with its key.
type OIDCIssuer struct {
	// Srv serves it; its URL is the issuer's.
	Srv *httptest.Server
	key *ecdsa.PrivateKey
}

func NewOIDCIssuer(t testing.TB) *OIDCIssuer {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is := &OIDCIssuer{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.Srv.URL, "jwks_uri": is.Srv.URL + "/keys",
			"authorization_endpoint": is.Srv.URL + "/auth", "token_endpoint": is.Srv.URL + "/token",
			"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"ES256"},
		})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	})
	is.Srv = httptest.NewTLSServer(mux)
	t.Cleanup(is.Srv.Close)
	return is
}

// CAPEM is the CA of its serving certificate.
func (is *OIDCIssuer) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.Srv.Certificate().Raw})
}

// Token is an ID token for alice@example.com (verified) in group team-shop, for client ID
// convoy, valid for 10 minutes, with these claims over those, signed with key (the issuer's
// when nil); a nil claim is left out.
func (is *OIDCIssuer) Token(t testing.TB, key *ecdsa.PrivateKey, claims map[string]any) string {
	if key == nil {
		key = is.key
	}
	c := map[string]any{
		"iss": is.Srv.URL, "aud": "convoy", "sub": "alice-1", "email": "alice@example.com", "email_verified": true,
		"groups": []string{"team-shop"}, "iat": time.Now().Unix(), "exp": time.Now().Add(10 * time.Minute).Unix(),
	}
	for k, v := range claims {
		if v == nil {
			delete(c, k) // a claim left out
			continue
		}
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

// Tamper puts a token's holder in the group system:masters and keeps its signature: a forged
// token every API server must refuse.
func Tamper(token string) string {
	parts := strings.Split(token, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c map[string]any
	_ = json.Unmarshal(raw, &c)
	c["groups"] = []string{"system:masters"}
	raw, _ = json.Marshal(c)
	parts[1] = base64.RawURLEncoding.EncodeToString(raw)
	return strings.Join(parts, ".")
}
