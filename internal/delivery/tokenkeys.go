package delivery

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"k8s.io/client-go/util/keyutil"
)

// TokenKeys verifies, in this process, the ServiceAccount tokens that the hub's own API server
// signs: the hub holds the public half of the signing key (its PKI), so a stream that opens
// needs no TokenReview, which at a thousand agents registering at once is a thousand requests
// to an API server that is busiest then. Only what the API server's own check would accept
// passes: a signature by one of Keys, the issuer and audience the API server is configured
// with, a lifetime that covers now, and a token bound to no object (a Pod, Secret or Node,
// whose existence only the API server can check). Whether the ServiceAccount still exists with the
// token's uid is Current's to check, from the cache, as for a reviewed token.
type TokenKeys struct {
	// Keys are the public keys the API server checks tokens with; a token signed by any
	// of them verifies.
	Keys     []any
	Issuer   string
	Audience string
}

// LoadTokenKeys reads the public keys at path (the API server's --service-account-key-file),
// as the API server reads them.
func LoadTokenKeys(path, issuer, audience string) (*TokenKeys, error) {
	keys, err := keyutil.PublicKeysFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the service-account key: %w", err)
	}
	return &TokenKeys{Keys: keys, Issuer: issuer, Audience: audience}, nil
}

// errNotLocal says that a token is not one TokenKeys can vouch for: the API server decides.
var errNotLocal = errors.New("not verifiable here")

// serviceAccountClaims are the private claims of a ServiceAccount token.
type serviceAccountClaims struct {
	Kubernetes struct {
		Namespace      string `json:"namespace"`
		ServiceAccount struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"serviceaccount"`
		Pod    json.RawMessage `json:"pod,omitempty"`
		Secret json.RawMessage `json:"secret,omitempty"`
		Node   json.RawMessage `json:"node,omitempty"`
	} `json:"kubernetes.io"`
}

// Verify returns the identity of token when it verifies, as Authenticate would return it, and
// when the token expires; errNotLocal (wrapped) when this process cannot vouch for it (another
// signer, expired, bound to an object, not a JWT): the caller asks the API server, whose answer
// is authoritative. A token that verifies and is not a cluster agent's is refused here
// (ErrNotAgent).
func (k *TokenKeys) Verify(token string, now time.Time) (Identity, time.Time, error) {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512})
	if err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: %v", errNotLocal, err)
	}
	var std jwt.Claims
	var sa serviceAccountClaims
	err = errors.New("no key")
	for _, key := range k.Keys {
		if err = tok.Claims(key, &std, &sa); err == nil {
			break
		}
	}
	if err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: %v", errNotLocal, err)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: k.Issuer, AnyAudience: jwt.Audience{k.Audience}, Time: now}, 0); err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: %v", errNotLocal, err)
	}
	kube := sa.Kubernetes
	if std.Expiry == nil || len(kube.Pod) > 0 || len(kube.Secret) > 0 || len(kube.Node) > 0 {
		return Identity{}, time.Time{}, fmt.Errorf("%w: a token without expiry or bound to an object", errNotLocal)
	}
	user := "system:serviceaccount:" + kube.Namespace + ":" + kube.ServiceAccount.Name
	if kube.Namespace == "" || kube.ServiceAccount.Name == "" || kube.ServiceAccount.UID == "" || std.Subject != user {
		return Identity{}, time.Time{}, fmt.Errorf("%w: not a ServiceAccount token", errNotLocal)
	}
	id, err := identityOfUser(user, kube.ServiceAccount.UID)
	return id, std.Expiry.Time(), err
}
