// Package join issues and revokes the credentials that let a cluster's agent reach the hub.
//
// A bootstrap token (a kube-system Secret of type bootstrap.kubernetes.io/token, short-lived)
// authenticates as the group system:bootstrappers:convoy:CLUSTER:GEN, which may do one thing:
// ask for a token of the ServiceAccount "agent-GEN" in the cluster's hub namespace (GEN is the
// cluster's credential generation). The agent trades it for that token on first contact and
// renews it itself; RBAC limits the ServiceAccount to its
// own namespace and its own Cluster's status. Revoking deletes the ServiceAccount, which
// invalidates every token it was given, and the cluster's bootstrap tokens. The CLI, the
// Cluster controller and internal/sim import this package.
package join

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// DefaultTTL is how long a bootstrap token is valid.
const DefaultTTL = 15 * time.Minute

// Token is an issued bootstrap token.
type Token struct {
	// Value is ID.SECRET, what the agent presents.
	Value string
	// Expires is when the hub stops accepting it.
	Expires time.Time
}

const tokenChars = "abcdefghijklmnopqrstuvwxyz0123456789"

func randomString(n int) (string, error) {
	b := make([]byte, n)
	for i := range b {
		k, err := rand.Int(rand.Reader, big.NewInt(int64(len(tokenChars))))
		if err != nil {
			return "", err
		}
		b[i] = tokenChars[k.Int64()]
	}
	return string(b), nil
}

// Issue creates a bootstrap token for cluster, valid for ttl, in the cluster's current
// credential generation.
func Issue(ctx context.Context, c client.Client, cluster string, ttl time.Duration) (Token, error) {
	cl := &v1alpha1.Cluster{}
	if err := c.Get(ctx, client.ObjectKey{Name: cluster}, cl); err != nil {
		return Token{}, fmt.Errorf("get cluster %s: %w", cluster, err)
	}
	id, err := randomString(6)
	if err != nil {
		return Token{}, err
	}
	secret, err := randomString(16)
	if err != nil {
		return Token{}, err
	}
	expires := time.Now().Add(ttl).UTC().Truncate(time.Second)
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: metav1.NamespaceSystem,
			Name:      "bootstrap-token-" + id,
			Labels:    map[string]string{v1alpha1.LabelCluster: cluster},
		},
		Type: corev1.SecretType("bootstrap.kubernetes.io/token"),
		StringData: map[string]string{
			"description":                    "convoy agent of cluster " + cluster,
			"token-id":                       id,
			"token-secret":                   secret,
			"expiration":                     expires.Format(time.RFC3339),
			"usage-bootstrap-authentication": "true",
			"auth-extra-groups":              v1alpha1.BootstrapGroup(cluster, v1alpha1.AgentGeneration(cl)),
		},
	}
	if err := c.Create(ctx, s); err != nil {
		return Token{}, fmt.Errorf("create bootstrap token: %w", err)
	}
	return Token{Value: id + "." + secret, Expires: expires}, nil
}

// Valid returns the cluster's unexpired bootstrap tokens, newest first.
func Valid(ctx context.Context, c client.Reader, cluster string) ([]Token, error) {
	var list corev1.SecretList
	if err := c.List(ctx, &list, client.InNamespace(metav1.NamespaceSystem), client.MatchingLabels{v1alpha1.LabelCluster: cluster}); err != nil {
		return nil, err
	}
	var out []Token
	for _, s := range list.Items {
		exp, err := time.Parse(time.RFC3339, string(s.Data["expiration"]))
		if err != nil || time.Until(exp) <= 0 {
			continue
		}
		out = append(out, Token{Value: string(s.Data["token-id"]) + "." + string(s.Data["token-secret"]), Expires: exp})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Expires.After(out[j].Expires) })
	return out, nil
}

// Revoke locks a cluster's agent out: it moves the cluster's credential generation on, so
// that RBAC grants nothing to the old ServiceAccount and the old bootstrap tokens (at once,
// whatever the API server has cached), then deletes them. The hub makes a new ServiceAccount,
// which only a new bootstrap token (Issue) can get a token for.
func Revoke(ctx context.Context, c client.Client, cluster string) error {
	cl := &v1alpha1.Cluster{}
	if err := c.Get(ctx, client.ObjectKey{Name: cluster}, cl); err != nil {
		return fmt.Errorf("get cluster %s: %w", cluster, err)
	}
	old := v1alpha1.AgentGeneration(cl)
	before := cl.DeepCopy()
	if cl.Annotations == nil {
		cl.Annotations = map[string]string{}
	}
	cl.Annotations[v1alpha1.AnnotationAgentGeneration] = strconv.Itoa(old + 1)
	if err := c.Patch(ctx, cl, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("move the credential generation on: %w", err)
	}
	if err := c.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(metav1.NamespaceSystem), client.MatchingLabels{v1alpha1.LabelCluster: cluster}); err != nil {
		return fmt.Errorf("delete bootstrap tokens: %w", err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace(cluster), Name: v1alpha1.AgentServiceAccount(old)}}
	if err := c.Delete(ctx, sa); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete the agent's service account: %w", err)
	}
	return nil
}
