package delivery

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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
	keys := &TokenKeys{Key: key.Public(), Issuer: issuer, Audience: issuer}
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

	id, err := keys.Verify(sign(key, agent()), now)
	if err != nil || id != (Identity{Cluster: "east", ServiceAccount: "agent-1", UID: "u-1"}) {
		t.Fatalf("an agent's token: %+v, %v", id, err)
	}

	notAgent := agent()
	notAgent.Subject = "system:serviceaccount:default:default"
	notAgent.Kubernetes = map[string]any{"namespace": "default", "serviceaccount": map[string]any{"name": "default", "uid": "u-2"}}
	if _, err := keys.Verify(sign(key, notAgent), now); !errors.Is(err, ErrNotAgent) {
		t.Errorf("another ServiceAccount's token: %v, want ErrNotAgent", err)
	}

	for _, tc := range []struct {
		name  string
		token func() string
	}{
		{"another signer", func() string { return sign(other, agent()) }},
		{"expired", func() string {
			c := agent()
			c.Expiry = jwt.NewNumericDate(now.Add(-time.Second))
			return sign(key, c)
		}},
		{"not yet valid", func() string {
			c := agent()
			c.NotBefore = jwt.NewNumericDate(now.Add(time.Minute))
			return sign(key, c)
		}},
		{"no expiry", func() string {
			c := agent()
			c.Expiry = nil
			return sign(key, c)
		}},
		{"another issuer", func() string {
			c := agent()
			c.Issuer = "kubernetes/serviceaccount"
			return sign(key, c)
		}},
		{"another audience", func() string {
			c := agent()
			c.Audience = jwt.Audience{"vault"}
			return sign(key, c)
		}},
		{"bound to a pod", func() string {
			c := agent()
			c.Kubernetes["pod"] = map[string]any{"name": "p", "uid": "u-3"}
			return sign(key, c)
		}},
		{"subject not its ServiceAccount", func() string {
			c := agent()
			c.Subject = "system:serviceaccount:convoy-cluster-west:agent-1"
			return sign(key, c)
		}},
		{"no uid", func() string {
			c := agent()
			c.Kubernetes["serviceaccount"] = map[string]any{"name": "agent-1"}
			return sign(key, c)
		}},
		{"not a JWT", func() string { return "not-a-token" }},
		{"signature cut", func() string { tok := sign(key, agent()); return tok[:strings.LastIndex(tok, ".")+1] }},
	} {
		if id, err := keys.Verify(tc.token(), now); !errors.Is(err, errNotLocal) {
			t.Errorf("%s: %+v, %v; want it left to the API server", tc.name, id, err)
		}
	}
}
