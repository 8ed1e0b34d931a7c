package kubeproc

import (
	"strings"
	"testing"
)

func TestAuthenticationConfig(t *testing.T) {
	ca, err := LoadOrCreateCA(t.TempDir(), "login-ca")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := AuthenticationConfig([]JWTIssuer{
		{URL: "https://login.example.com", CAPEM: ca.CertPEM, Audiences: []string{"convoy"}},
		{URL: "https://other.example.com/realms/x", Audiences: []string{"a", "b"}, UsernameClaim: "sub", GroupsClaim: "roles", Prefix: "-"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := string(raw)
	for _, want := range []string{
		"kind: AuthenticationConfiguration", "apiVersion: apiserver.config.k8s.io/v1",
		"url: https://login.example.com", "certificateAuthority: |\n      -----BEGIN CERTIFICATE-----",
		"claim: email\n      prefix: 'oidc:'", "claim: groups\n      prefix: 'oidc:'",
		"audienceMatchPolicy: MatchAny", "claim: sub\n      prefix: \"\"", "claim: roles",
		"expression: has(claims.email_verified) && claims.email_verified == true",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("lacks %q:\n%s", want, got)
		}
	}
	for name, bad := range map[string][]JWTIssuer{
		"plain http":                {{URL: "http://login.example.com", Audiences: []string{"convoy"}}},
		"no host":                   {{URL: "https://", Audiences: []string{"convoy"}}},
		"a query":                   {{URL: "https://login.example.com/?x=1", Audiences: []string{"convoy"}}},
		"no audience":               {{URL: "https://login.example.com"}},
		"listed twice":              {{URL: "https://a.example.com", Audiences: []string{"c"}}, {URL: "https://a.example.com", Audiences: []string{"c"}}},
		"a user in the URL":         {{URL: "https://u:p@login.example.com", Audiences: []string{"convoy"}}},
		"the ServiceAccount issuer": {{URL: ServiceAccountIssuer, Audiences: []string{"convoy"}}},
		"an empty client ID":        {{URL: "https://login.example.com", Audiences: []string{"convoy", ""}}},
		"a client ID twice":         {{URL: "https://login.example.com", Audiences: []string{"convoy", "convoy"}}},
		"a CA that is not PEM":      {{URL: "https://login.example.com", Audiences: []string{"convoy"}, CAPEM: []byte("not a certificate")}},
		"one prefix for two":        {{URL: "https://a.example.com", Audiences: []string{"c"}}, {URL: "https://b.example.com", Audiences: []string{"c"}}},
	} {
		if _, err := AuthenticationConfig(bad); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
