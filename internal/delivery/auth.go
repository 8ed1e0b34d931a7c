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

// TokenReviews authenticates agents with the hub API server's TokenReview, remembering each
// answer for TTL, and checks that an identity is current against the hub's cache: the
// Cluster exists, its current credential generation is the identity's ServiceAccount, and that
// ServiceAccount is the one the token was made for (same uid).
type TokenReviews struct {
	Reviews authclient.TokenReviewInterface
	// Cache reads Clusters and agent ServiceAccounts (the hub's informer cache).
	Cache client.Reader
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
	ttl := t.TTL
	if ttl == 0 {
		ttl = time.Minute
	}
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

	res, err := t.Reviews.Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return Identity{}, fmt.Errorf("review the token: %w", err) // not remembered: the hub may be busy
	}
	id, rerr := identityOf(res.Status)
	if rerr != nil && ttl > negativeTTL {
		now = now.Add(negativeTTL - ttl) // a refusal is remembered only briefly
	}
	t.mu.Lock()
	t.seen[key] = reviewed{id: id, err: rerr, at: now}
	t.mu.Unlock()
	return id, rerr
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
	rest, ok := strings.CutPrefix(st.User.Username, "system:serviceaccount:")
	ns, sa, ok2 := strings.Cut(rest, ":")
	cluster, ok3 := strings.CutPrefix(ns, v1alpha1.ClusterNamespacePrefix)
	if !ok || !ok2 || !ok3 || cluster == "" || !strings.HasPrefix(sa, "agent-") {
		return Identity{}, fmt.Errorf("%s is %w", st.User.Username, ErrNotAgent)
	}
	return Identity{Cluster: cluster, ServiceAccount: sa, UID: st.User.UID}, nil
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
	if string(sa.UID) != id.UID {
		return fmt.Errorf("%w: cluster %q's agent ServiceAccount was made again; join it again", ErrRevoked, id.Cluster)
	}
	return nil
}
