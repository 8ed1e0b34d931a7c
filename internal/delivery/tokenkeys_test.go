package delivery

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// TestTokenKeys: what the hub vouches for without asking its API server, and what it leaves
// to the API server (errNotLocal), for tokens shaped as the API server issues them.
func TestTokenKeys(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const issuer = "https://kubernetes.default.svc"
	keys := &TokenKeys{Keys: []any{key.Public()}, Issuer: issuer, Audience: issuer}
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

	type claims struct {
		jwt.Claims
		Kubernetes map[string]any `json:"kubernetes.io"`
	}
	agent := func() claims {
		return claims{
			Claims: jwt.Claims{
				Issuer: issuer, Audience: jwt.Audience{issuer}, Subject: "system:serviceaccount:convoy-cluster-east:agent-1",
				IssuedAt: jwt.NewNumericDate(now.Add(-time.Minute)), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
				Expiry: jwt.NewNumericDate(now.Add(time.Hour)),
			},
			Kubernetes: map[string]any{"namespace": "convoy-cluster-east", "serviceaccount": map[string]any{"name": "agent-1", "uid": "u-1"}},
		}
	}
	sign := func(k *ecdsa.PrivateKey, c claims) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k}, (&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.Signed(s).Claims(c).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	id, exp, err := keys.Verify(sign(key, agent()), now)
	if err != nil || id != (Identity{Cluster: "east", ServiceAccount: "agent-1", UID: "u-1"}) || !exp.Equal(now.Add(time.Hour)) {
		t.Fatalf("an agent's token: %+v, expiring %v, %v", id, exp, err)
	}

	notAgent := agent()
	notAgent.Subject = "system:serviceaccount:default:default"
	notAgent.Kubernetes = map[string]any{"namespace": "default", "serviceaccount": map[string]any{"name": "default", "uid": "u-2"}}
	if _, _, err := keys.Verify(sign(key, notAgent), now); !errors.Is(err, ErrNotAgent) {
		t.Errorf("another ServiceAccount's token: %v, want ErrNotAgent", err)
	}

	// Tokens signed by the hub's key with one claim changed.
	for name, change := range map[string]func(c *claims){
		"expired":                        func(c *claims) { c.Expiry = jwt.NewNumericDate(now.Add(-time.Second)) },
		"not yet valid":                  func(c *claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Minute)) },
		"no expiry":                      func(c *claims) { c.Expiry = nil },
		"another issuer":                 func(c *claims) { c.Issuer = "kubernetes/serviceaccount" },
		"another audience":               func(c *claims) { c.Audience = jwt.Audience{"vault"} },
		"no audience":                    func(c *claims) { c.Audience = nil },
		"bound to a pod":                 func(c *claims) { c.Kubernetes["pod"] = map[string]any{"name": "p", "uid": "u-3"} },
		"subject not its ServiceAccount": func(c *claims) { c.Subject = "system:serviceaccount:convoy-cluster-west:agent-1" },
		"no uid":                         func(c *claims) { c.Kubernetes["serviceaccount"] = map[string]any{"name": "agent-1"} },
	} {
		c := agent()
		change(&c)
		if id, _, err := keys.Verify(sign(key, c), now); !errors.Is(err, errNotLocal) {
			t.Errorf("%s: %+v, %v; want it left to the API server", name, id, err)
		}
	}

	// Tokens not signed by the hub's key, or not signed at all.
	good := sign(key, agent())
	payload := strings.Split(good, ".")[1]
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	hs256 := b64(`{"alg":"HS256","typ":"JWT"}`) + "." + payload
	mac := hmac.New(sha256.New, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	mac.Write([]byte(hs256))
	for name, token := range map[string]string{
		"another signer":                  sign(other, agent()),
		"alg none":                        b64(`{"alg":"none","typ":"JWT"}`) + "." + payload + ".",
		"HS256 keyed with the public key": hs256 + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)),
		"not a JWT":                       "not-a-token",
		"signature cut":                   good[:strings.LastIndex(good, ".")+1],
	} {
		if id, _, err := keys.Verify(token, now); !errors.Is(err, errNotLocal) {
			t.Errorf("%s: %+v, %v; want it left to the API server", name, id, err)
		}
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
