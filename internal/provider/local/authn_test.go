package local_test

import (
	"context"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// TestMembersTrustTheHubsIssuer makes a local cluster with the hub's OIDC issuer: its API
// server takes the issuer's tokens as the hub's does (oidc:EMAIL), and when the hub's
// configuration changes (another client ID), the running API server reads it again and refuses
// tokens for the old one.
func TestMembersTrustTheHubsIssuer(t *testing.T) {
	t.Parallel()
	is := hubtest.NewOIDCIssuer(t)
	config := func(audience string) []byte {
		raw, err := kubeproc.AuthenticationConfig([]kubeproc.JWTIssuer{{URL: is.Srv.URL, CAPEM: is.CAPEM(), Audiences: []string{audience}}})
		must(t, err)
		return raw
	}
	p := newProvider(t)
	p.Authentication = config("convoy")
	ctx := context.Background()
	c := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "sso"}, Spec: v1alpha1.ClusterSpec{
		Provider: v1alpha1.ProviderLocal, NodePools: []v1alpha1.NodePool{{Name: "default", Count: 0}}}}
	must(t, p.Create(ctx, c))
	t.Cleanup(func() { _ = p.Delete(context.Background(), "sso") })
	waitReady(t, p, c, 0)
	raw, err := p.Kubeconfig(ctx, c)
	must(t, err)
	admin, err := clientcmd.RESTConfigFromKubeConfig(raw)
	must(t, err)
	cfg := rest.AnonymousClientConfig(admin)
	cfg.BearerToken = is.Token(t, nil, nil)
	alice, err := kubernetes.NewForConfig(cfg)
	must(t, err)
	review := func() (*authnv1.SelfSubjectReview, error) {
		return alice.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	}

	var r *authnv1.SelfSubjectReview
	hubtest.Eventually(t, "the member taking the issuer's token", time.Minute, func() (bool, error) {
		r, err = review()
		return err == nil, err
	})
	if r.Status.UserInfo.Username != "oidc:alice@example.com" {
		t.Errorf("on the member the token's holder is %q, want oidc:alice@example.com", r.Status.UserInfo.Username)
	}

	// The hub's configuration changes: Create on a running cluster writes it, and its API
	// server reads it again (within its minute's look, sooner on the file's event).
	p.Authentication = config("another-client")
	must(t, p.Create(ctx, c))
	hubtest.Eventually(t, "the member refusing a token for the old client ID", 2*time.Minute, func() (bool, error) {
		_, err := review()
		return apierrors.IsUnauthorized(err), nil
	})
}
