package delivery_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/delivery"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/join"
)

// TestJoin joins agents on the hub's delivery port (v1alpha1.DeliveryJoin) against a real hub:
// a bootstrap token gets a token that the hub's API server takes as the cluster's agent
// ServiceAccount's, with the agent's settings; that token renews itself; a bootstrap token is
// refused for another cluster, with a wrong secret, expired, and once the cluster's credential
// generation has moved on, as is the old identity's token; a new one joins the new generation.
func TestJoin(t *testing.T) {
	h, _, addr, host := startHub(t)
	ctx := context.Background()
	for _, name := range []string{"joiner", "other"} {
		hubtest.Must(t, h.Client.Create(ctx, &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.ClusterSpec{Provider: v1alpha1.ProviderImport}}))
	}
	boot, err := join.Issue(ctx, h.Client, "joiner", time.Hour)
	hubtest.Must(t, err)
	c := delivery.NewClient("joiner", "test", h.Config.CAData, func() string { return "" }, nil)
	var resp v1alpha1.JoinResponse
	// Until the hub has made the cluster's identity, it says so, and the agent asks again.
	eventually(t, "a join with the bootstrap token", func() error {
		resp, err = c.Join(ctx, addr, host, boot.Value, 2*time.Hour)
		return err
	})
	if resp.Settings["serviceAccount"] != "agent-1" || resp.Settings[v1alpha1.AgentConfigDeliveryPort] == "" {
		t.Errorf("the join's settings: %v; want the agent-config's, with serviceAccount agent-1 and the delivery port", resp.Settings)
	}
	if left := time.Until(resp.Expires.Time); left > 2*time.Hour || left < time.Hour {
		t.Errorf("the token expires in %s; asked for 2h", left)
	}

	// The hub's API server takes the token as the agent's, with its rights.
	cfg := rest.AnonymousClientConfig(h.Config)
	cfg.BearerToken = resp.Token
	cs := kubernetes.NewForConfigOrDie(cfg)
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	hubtest.Must(t, err)
	if want := "system:serviceaccount:" + v1alpha1.ClusterNamespace("joiner") + ":agent-1"; review.Status.UserInfo.Username != want {
		t.Errorf("the API server takes the token as %q; want %q", review.Status.UserInfo.Username, want)
	}
	if _, err := cs.CoreV1().ConfigMaps(v1alpha1.ClusterNamespace("joiner")).Get(ctx, v1alpha1.AgentConfigMap, metav1.GetOptions{}); err != nil {
		t.Errorf("the joined agent reads its settings through the API server: %v", err)
	}
	if _, err := cs.CoreV1().ConfigMaps(v1alpha1.ClusterNamespace("other")).Get(ctx, v1alpha1.AgentConfigMap, metav1.GetOptions{}); err == nil {
		t.Error("the joined agent reads another cluster's settings")
	}

	// The token renews itself, on the same connection.
	renewed, err := c.Join(ctx, addr, host, resp.Token, time.Hour)
	if err != nil || renewed.Token == "" || renewed.Token == resp.Token {
		t.Fatalf("renewing with the agent's token: %v; want a new token", err)
	}
	cfg.BearerToken = renewed.Token
	if _, err := kubernetes.NewForConfigOrDie(cfg).CoreV1().ConfigMaps(v1alpha1.ClusterNamespace("joiner")).Get(ctx, v1alpha1.AgentConfigMap, metav1.GetOptions{}); err != nil {
		t.Errorf("the renewed token at the API server: %v", err)
	}

	refused := func(what, cluster, token string) {
		t.Helper()
		o := delivery.NewClient(cluster, "test", h.Config.CAData, func() string { return "" }, nil)
		if _, err := o.Join(ctx, addr, host, token, time.Hour); !errors.Is(err, delivery.ErrRefused) {
			t.Errorf("%s: %v; want a refusal", what, err)
		}
	}
	refused("joiner's bootstrap token for cluster other", "other", boot.Value)
	refused("joiner's token for cluster other", "other", resp.Token)
	refused("a wrong secret", "joiner", boot.Value[:7]+strings.Repeat("0", 16))
	refused("a token of nobody", "joiner", "abcdef.0123456789abcdef")
	refused("no such cluster", "nowhere", boot.Value)

	// An expired bootstrap token of the cluster is refused.
	expired := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceSystem, Name: "bootstrap-token-expird", Labels: map[string]string{v1alpha1.LabelCluster: "joiner"}},
		Type:       corev1.SecretType("bootstrap.kubernetes.io/token"),
		StringData: map[string]string{"token-id": "expird", "token-secret": "0123456789abcdef", "expiration": time.Now().Add(-time.Minute).UTC().Format(time.RFC3339),
			"usage-bootstrap-authentication": "true", "auth-extra-groups": v1alpha1.BootstrapGroup("joiner", 1)},
	}
	hubtest.Must(t, h.Client.Create(ctx, expired))
	refused("an expired bootstrap token", "joiner", "expird.0123456789abcdef")

	// The cluster's credential generation moves on (as a revocation does first, before it
	// deletes the old tokens): the old generation's bootstrap token, still stored, and its
	// identity's token are refused at once.
	cl := &v1alpha1.Cluster{}
	hubtest.Must(t, h.Client.Get(ctx, client.ObjectKey{Name: "joiner"}, cl))
	before := cl.DeepCopy()
	cl.Annotations = map[string]string{v1alpha1.AnnotationAgentGeneration: "2"}
	hubtest.Must(t, h.Client.Patch(ctx, cl, client.MergeFrom(before)))
	eventually(t, "the old generation refused", func() error {
		if _, err := c.Join(ctx, addr, host, renewed.Token, time.Hour); !errors.Is(err, delivery.ErrRefused) {
			return errors.New("the old generation's token still renews")
		}
		if _, err := c.Join(ctx, addr, host, boot.Value, time.Hour); !errors.Is(err, delivery.ErrRefused) {
			return errors.New("the old generation's bootstrap token still joins")
		}
		return nil
	})
	// A new bootstrap token joins the new generation.
	boot2, err := join.Issue(ctx, h.Client, "joiner", time.Hour)
	hubtest.Must(t, err)
	eventually(t, "a join of the new generation", func() error {
		resp, err = c.Join(ctx, addr, host, boot2.Value, time.Hour)
		if err == nil && resp.Settings["serviceAccount"] != "agent-2" {
			return errors.New("joined as " + resp.Settings["serviceAccount"])
		}
		return err
	})
}
