package kubeproc

import (
	"bytes"
	"cmp"
	"crypto/x509"
	"encoding/pem"
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

// AuthenticationConfigMinor is the first minor version of Kubernetes 1 whose API server reads
// AuthenticationConfig's apiserver.config.k8s.io/v1 (structured authentication went GA).
const AuthenticationConfigMinor = 34

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
	type rule struct {
		Expression string `json:"expression"`
		Message    string `json:"message"`
	}
	type jwt struct {
		Issuer               issuer `json:"issuer"`
		ClaimValidationRules []rule `json:"claimValidationRules,omitempty"`
		ClaimMappings        struct {
			Username claim `json:"username"`
			Groups   claim `json:"groups"`
		} `json:"claimMappings"`
	}
	cfg := struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		JWT        []jwt  `json:"jwt"`
	}{APIVersion: "apiserver.config.k8s.io/v1", Kind: "AuthenticationConfiguration", JWT: []jwt{}}
	seen, prefixes := map[string]bool{}, map[string]bool{}
	for _, is := range issuers {
		u, err := url.Parse(is.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("OIDC issuer %q: an https:// URL without user, query or fragment is needed", is.URL)
		}
		if is.URL == ServiceAccountIssuer {
			return nil, fmt.Errorf("OIDC issuer %q is the API servers' own ServiceAccount issuer: name another", is.URL)
		}
		if seen[is.URL] {
			return nil, fmt.Errorf("OIDC issuer %q is listed twice", is.URL)
		}
		seen[is.URL] = true
		if len(is.Audiences) == 0 {
			return nil, fmt.Errorf("OIDC issuer %q: name the client ID its tokens are for", is.URL)
		}
		auds := map[string]bool{}
		for _, a := range is.Audiences {
			if a == "" || auds[a] {
				return nil, fmt.Errorf("OIDC issuer %q: client IDs %q: each must be given once, and not empty", is.URL, is.Audiences)
			}
			auds[a] = true
		}
		if len(is.CAPEM) > 0 {
			if err := checkCAs(is.CAPEM); err != nil {
				return nil, fmt.Errorf("OIDC issuer %q: its CA: %w", is.URL, err)
			}
		}
		prefix := is.Prefix
		switch prefix {
		case "":
			prefix = DefaultOIDCPrefix
		case "-":
			prefix = ""
		}
		// Two issuers under one prefix could each make the other's users.
		if prefixes[prefix] {
			return nil, fmt.Errorf("OIDC issuer %q: another issuer has its prefix %q: give each its own", is.URL, prefix)
		}
		prefixes[prefix] = true
		j := jwt{Issuer: issuer{URL: is.URL, CertificateAuthority: string(is.CAPEM), Audiences: is.Audiences}}
		if cmp.Or(is.UsernameClaim, "email") == "email" {
			// The API server checks email_verified only when a token has it.
			j.ClaimValidationRules = []rule{{
				Expression: "has(claims.email_verified) && claims.email_verified == true",
				Message:    "the email is not verified",
			}}
		}
		if len(is.Audiences) > 1 {
			j.Issuer.AudienceMatchPolicy = "MatchAny"
		}
		j.ClaimMappings.Username = claim{Claim: cmp.Or(is.UsernameClaim, "email"), Prefix: &prefix}
		j.ClaimMappings.Groups = claim{Claim: cmp.Or(is.GroupsClaim, "groups"), Prefix: &prefix}
		cfg.JWT = append(cfg.JWT, j)
	}
	return yaml.Marshal(cfg)
}

// checkCAs checks that PEM holds certificates and nothing else, as the API server reads it.
func checkCAs(raw []byte) error {
	n := 0
	for {
		var b *pem.Block
		b, raw = pem.Decode(raw)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return fmt.Errorf("a %s where certificates are expected", b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return err
		}
		n++
	}
	if n == 0 || len(bytes.TrimSpace(raw)) > 0 {
		return fmt.Errorf("not PEM certificates")
	}
	return nil
}
