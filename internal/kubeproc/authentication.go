package kubeproc

import (
	"cmp"
	"fmt"
	"net/url"

	"sigs.k8s.io/yaml"
)

// JWTIssuer is an OpenID Connect issuer whose ID tokens a kube-apiserver accepts, through its
// structured authentication (--authentication-config).
type JWTIssuer struct {
	// URL is the issuer's identifier (https://), where it serves its discovery document.
	URL string
	// CAPEM is the CA that signed the issuer's serving certificate (PEM); empty trusts the
	// host's roots.
	CAPEM []byte
	// Audiences are the client IDs a token must be for (one at least).
	Audiences []string
	// UsernameClaim and GroupsClaim are the claims that name the person and their groups
	// ("email" and "groups" when empty); Prefix goes before both ("oidc:" when empty, "-"
	// for none), so that no token can pass for a user or group the cluster made itself
	// (system:…).
	UsernameClaim, GroupsClaim, Prefix string
}

// DefaultOIDCPrefix is what goes before the names an issuer's tokens carry.
const DefaultOIDCPrefix = "oidc:"

// AuthenticationConfig is an AuthenticationConfiguration (apiserver.config.k8s.io/v1) for
// --authentication-config that trusts the issuers' tokens. The API server reads the file
// again when it changes.
func AuthenticationConfig(issuers []JWTIssuer) ([]byte, error) {
	type claim struct {
		Claim  string  `json:"claim"`
		Prefix *string `json:"prefix,omitempty"`
	}
	type issuer struct {
		URL                  string   `json:"url"`
		CertificateAuthority string   `json:"certificateAuthority,omitempty"`
		Audiences            []string `json:"audiences"`
		AudienceMatchPolicy  string   `json:"audienceMatchPolicy,omitempty"`
	}
	type jwt struct {
		Issuer        issuer `json:"issuer"`
		ClaimMappings struct {
			Username claim `json:"username"`
			Groups   claim `json:"groups"`
		} `json:"claimMappings"`
	}
	cfg := struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		JWT        []jwt  `json:"jwt"`
	}{APIVersion: "apiserver.config.k8s.io/v1", Kind: "AuthenticationConfiguration", JWT: []jwt{}}
	seen := map[string]bool{}
	for _, is := range issuers {
		u, err := url.Parse(is.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("OIDC issuer %q: an https:// URL without query or fragment is needed", is.URL)
		}
		if seen[is.URL] {
			return nil, fmt.Errorf("OIDC issuer %q is listed twice", is.URL)
		}
		seen[is.URL] = true
		if len(is.Audiences) == 0 {
			return nil, fmt.Errorf("OIDC issuer %q: name the client ID its tokens are for", is.URL)
		}
		prefix := is.Prefix
		switch prefix {
		case "":
			prefix = DefaultOIDCPrefix
		case "-":
			prefix = ""
		}
		j := jwt{Issuer: issuer{URL: is.URL, CertificateAuthority: string(is.CAPEM), Audiences: is.Audiences}}
		if len(is.Audiences) > 1 {
			j.Issuer.AudienceMatchPolicy = "MatchAny"
		}
		j.ClaimMappings.Username = claim{Claim: cmp.Or(is.UsernameClaim, "email"), Prefix: &prefix}
		j.ClaimMappings.Groups = claim{Claim: cmp.Or(is.GroupsClaim, "groups"), Prefix: &prefix}
		cfg.JWT = append(cfg.JWT, j)
	}
	return yaml.Marshal(cfg)
}
