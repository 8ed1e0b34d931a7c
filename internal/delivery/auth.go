package delivery

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// ErrRevoked marks an identity that is no longer its cluster's agent's: Current wraps it.
var ErrRevoked = errors.New("the agent's credentials were revoked")

// ErrNotAgent marks a token that is not a cluster agent's, or not valid at all: Authenticate
// wraps it. Any other error of Authenticate means the hub could not tell (try again).
var ErrNotAgent = errors.New("not a cluster's agent")

// TokenReviews authenticates agents, with Keys where they can vouch for the token and with the
// hub API server's TokenReview otherwise, remembering each answer for TTL (never past the
// token's expiry), and checks that an identity is current against the hub's cache: the
// Cluster exists, its current credential generation is the identity's ServiceAccount, and that
// ServiceAccount is the one the token was made for (same uid).
type TokenReviews struct {
	Reviews authclient.TokenReviewInterface
	// Cache reads Clusters and agent ServiceAccounts (the hub's informer cache).
	Cache client.Reader
	// Keys, if set, verifies the hub API server's own tokens without a TokenReview; a token
	// they cannot vouch for is reviewed.
	Keys *TokenKeys
	// TTL is how long an answer is remembered; zero means a minute. A revocation does not
	// wait for it: Current is checked at once.
	TTL time.Duration

	mu   sync.Mutex
	seen map[[32]byte]reviewed
}

// negativeTTL is how long a refused token stays refused without asking again.
const negativeTTL = 5 * time.Second

type reviewed struct {
	id  Identity
	err error
	at  time.Time
}

var _ Authenticator = (*TokenReviews)(nil)

// Authenticate implements Authenticator.
func (t *TokenReviews) Authenticate(ctx context.Context, token string) (Identity, error) {
	key := sha256.Sum256([]byte(token))
	ttl := t.ttl()
	now := time.Now()
	t.mu.Lock()
	if t.seen == nil {
		t.seen = map[[32]byte]reviewed{}
	}
	if r, ok := t.seen[key]; ok && now.Sub(r.at) < ttl {
		t.mu.Unlock()
		return r.id, r.err
	}
	if len(t.seen) > 10000 {
		for k, r := range t.seen {
			if now.Sub(r.at) >= ttl {
				delete(t.seen, k)
			}
		}
	}
	t.mu.Unlock()

	if t.Keys != nil {
		if id, exp, err := t.Keys.Verify(token, now); !errors.Is(err, errNotLocal) {
			r := reviewed{id: id, err: err, at: now}
			if left := exp.Sub(now); err == nil && left < ttl {
				r.at = now.Add(left - ttl) // forgotten when the token expires
			}
			t.remember(key, r)
			return id, err
		}
	}
	res, err := t.Reviews.Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return Identity{}, fmt.Errorf("review the token: %w", err) // not remembered: the hub may be busy
	}
	id, rerr := identityOf(res.Status)
	t.remember(key, reviewed{id: id, err: rerr, at: now})
	return id, rerr
}

// remember keeps an answer for the TTL, a refusal only for negativeTTL.
func (t *TokenReviews) remember(key [32]byte, r reviewed) {
	if ttl := t.ttl(); r.err != nil && ttl > negativeTTL {
		r.at = r.at.Add(negativeTTL - ttl)
	}
	t.mu.Lock()
	t.seen[key] = r
	t.mu.Unlock()
}

func (t *TokenReviews) ttl() time.Duration {
	if t.TTL == 0 {
		return time.Minute
	}
	return t.TTL
}

// identityOf reads an agent's identity from a TokenReview's answer.
func identityOf(st authenticationv1.TokenReviewStatus) (Identity, error) {
	if !st.Authenticated {
		msg := st.Error
		if msg == "" {
			msg = "not authenticated"
		}
		return Identity{}, fmt.Errorf("%s (%w); join the cluster again (convoy cluster join)", msg, ErrNotAgent)
	}
	return identityOfUser(st.User.Username, st.User.UID)
}

// identityOfUser reads an agent's identity from its user name and uid.
func identityOfUser(username, uid string) (Identity, error) {
	rest, ok := strings.CutPrefix(username, "system:serviceaccount:")
	ns, sa, ok2 := strings.Cut(rest, ":")
	cluster, ok3 := strings.CutPrefix(ns, v1alpha1.ClusterNamespacePrefix)
	if !ok || !ok2 || !ok3 || cluster == "" || !strings.HasPrefix(sa, "agent-") {
		return Identity{}, fmt.Errorf("%s is %w", username, ErrNotAgent)
	}
	return Identity{Cluster: cluster, ServiceAccount: sa, UID: uid}, nil
}

// Current implements Authenticator.
func (t *TokenReviews) Current(ctx context.Context, id Identity) error {
	// Read-only: the cache's own objects, not copies (this runs for every stream every 2 s).
	c := &v1alpha1.Cluster{}
	if err := t.Cache.Get(ctx, client.ObjectKey{Name: id.Cluster}, c, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("cluster %q: %w", id.Cluster, err)
	}
	if want := v1alpha1.AgentServiceAccount(v1alpha1.AgentGeneration(c)); want != id.ServiceAccount {
		return fmt.Errorf("%w: %s is not cluster %q's current agent identity, %s is; join it again", ErrRevoked, id.ServiceAccount, id.Cluster, want)
	}
	sa := &corev1.ServiceAccount{}
	if err := t.Cache.Get(ctx, client.ObjectKey{Namespace: v1alpha1.ClusterNamespace(id.Cluster), Name: id.ServiceAccount}, sa, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("cluster %q's agent ServiceAccount: %w", id.Cluster, err)
	}
	if string(sa.UID) != id.UID || !sa.DeletionTimestamp.IsZero() {
		return fmt.Errorf("%w: cluster %q's agent ServiceAccount was made again; join it again", ErrRevoked, id.Cluster)
	}
	return nil
}
