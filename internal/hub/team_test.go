package hub_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// TestTeamAccessFleetWide is the README's team access: the hub trusts an organisation's
// issuer, a RoleBinding at the hub lets the group team-shop edit namespace shop, and a
// Placement sends the same binding to every cluster. Alice (of team-shop) then edits shop on
// the member, through the hub and straight to its API server (which trusts the same issuer),
// and at the hub, and is refused in any other namespace, by the member's own RBAC.
func TestTeamAccessFleetWide(t *testing.T) {
	t.Parallel()
	is := hubtest.NewOIDCIssuer(t)
	h := hubtest.Start(t, func(o *hub.Options) {
		o.OIDCIssuers = []kubeproc.JWTIssuer{{URL: is.Srv.URL, CAPEM: is.CAPEM(), Audiences: []string{"convoy"}}}
	})
	ctx := context.Background()
	must(t, h.Client.Create(ctx, &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "m1"}, Spec: v1alpha1.ClusterSpec{
		Provider: v1alpha1.ProviderLocal, NodePools: []v1alpha1.NodePool{{Name: "default", Count: 1}}}}))

	// The team's binding and the Placement that sends it everywhere: the README's example.
	raw, err := os.ReadFile(filepath.Join(hubtest.RepoRoot(t), "examples", "teams", "team-shop.yaml"))
	must(t, err)
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		must(t, h.Client.Create(ctx, u))
	}

	token := is.Token(t, nil, nil)
	as := func(host string, ca []byte) *kubernetes.Clientset {
		cs, err := kubernetes.NewForConfig(&rest.Config{Host: host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: ca}})
		must(t, err)
		return cs
	}
	viaHub := as(strings.TrimSuffix(h.Config.Host, "/")+v1alpha1.ClusterProxyPath("m1"), h.Config.CAData)
	cm := func(name string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"by": "alice"}}
	}
	// Once m1 runs, its agent's tunnel is open, the binding is there and the API servers have
	// the issuer's keys.
	hubtest.Eventually(t, "alice editing shop on m1 through the hub", 3*time.Minute, func() (bool, error) {
		_, err := viaHub.CoreV1().ConfigMaps("shop").Create(ctx, cm("through-the-hub"), metav1.CreateOptions{})
		return err == nil || apierrors.IsAlreadyExists(err), err
	})
	if _, err := viaHub.CoreV1().ConfigMaps("default").Create(ctx, cm("elsewhere"), metav1.CreateOptions{}); !apierrors.IsForbidden(err) ||
		!strings.Contains(err.Error(), `User "oidc:alice@example.com" cannot create resource "configmaps"`) {
		t.Errorf("alice in namespace default of m1, through the hub: %v, want m1's 403", err)
	}

	checkProxyTricks(t, h, token)

	// Straight to m1's API server, with the same token: the same user and rights.
	memberCfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(hub.Layout{Dir: h.Options.DataDir}.Clusters(), "m1", "kubeconfig"))
	must(t, err)
	direct := as(memberCfg.Host, memberCfg.CAData)
	hubtest.Eventually(t, "alice editing shop on m1 directly", time.Minute, func() (bool, error) {
		_, err := direct.CoreV1().ConfigMaps("shop").Create(ctx, cm("direct"), metav1.CreateOptions{})
		return err == nil || apierrors.IsAlreadyExists(err), err
	})
	if _, err := direct.CoreV1().ConfigMaps("kube-system").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("alice in kube-system of m1, directly: %v, want 403", err)
	}

	// At the hub, the same binding lets her edit shop's templates, and nothing else.
	atHub := as(h.Config.Host, h.Config.CAData)
	if _, err := atHub.CoreV1().ConfigMaps("shop").Create(ctx, cm("template"), metav1.CreateOptions{}); err != nil {
		t.Errorf("alice editing shop at the hub: %v", err)
	}
	if _, err := atHub.CoreV1().ConfigMaps("default").Create(ctx, cm("template"), metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("alice in namespace default at the hub: %v, want 403", err)
	}
}

// checkProxyTricks narrows who may go through the hub to m1 (the README's way: the blanket
// binding deleted, the role bound with resourceNames) and tries to reach another cluster by
// tricks on the path: each is refused before any cluster is looked up. An agent's own token is
// refused as a person's.
func checkProxyTricks(t *testing.T, h *hubtest.Hub, token string) {
	ctx := context.Background()
	must(t, h.Client.Delete(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.ClusterAccessBinding}}))
	must(t, h.Client.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "m1-access"}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{v1alpha1.ProxyGroup}, Resources: []string{v1alpha1.ProxyResource + "/" + v1alpha1.ProxySubresource},
		ResourceNames: []string{"m1"}, Verbs: []string{"*"}}}}))
	must(t, h.Client.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "m1-access"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "m1-access"},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "Group", Name: "oidc:team-shop"}}}))
	hc, err := rest.HTTPClientFor(&rest.Config{Host: h.Config.Host, TLSClientConfig: rest.TLSClientConfig{CAData: h.Config.CAData}})
	must(t, err)
	get := func(path, bearer string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(h.Config.Host, "/")+path, nil)
		must(t, err)
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := hc.Do(req)
		must(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	base := "/apis/" + v1alpha1.ProxyGroup + "/" + v1alpha1.ProxyVersion + "/clusters/"
	hubtest.Eventually(t, "alice through to m1 by her own binding", time.Minute, func() (bool, error) {
		code, body := get(base+"m1/proxy/api/v1/namespaces/shop/configmaps", token)
		return code == http.StatusOK, fmt.Errorf("%d %s", code, body)
	})
	// m2 does not exist: had any of these reached the proxy for it, the answer would be its
	// 404 naming m2. Those whose first segments name m1's proxy pass the hub's RBAC and are
	// refused by the proxy, 400, before any cluster is looked up.
	for path, want := range map[string]int{
		base + "m2/proxy/api/v1/namespaces/shop/configmaps":                        http.StatusForbidden,
		base + "m2%2F..%2Fm1/proxy/api/v1/namespaces/shop/configmaps":              http.StatusForbidden,
		base + "m1/proxy/../../m2/proxy/api/v1/namespaces/shop/configmaps":         http.StatusBadRequest,
		base + "m1/proxy/..%2F..%2Fm2/proxy/api/v1/namespaces/shop/configmaps":     http.StatusBadRequest,
		base + "m1%2Fproxy%2F..%2F..%2Fm2/proxy/api/v1/namespaces/shop/configmaps": http.StatusBadRequest,
		base + "m1/proxy/./../m2/proxy/api/v1/namespaces/shop/configmaps":          http.StatusBadRequest,
		base + "m1/proxy//api/v1/namespaces/shop/configmaps":                       http.StatusBadRequest,
	} {
		code, body := get(path, token)
		if code != want || strings.Contains(body, `cluster \"m2\"`) || (want == http.StatusBadRequest && !strings.Contains(body, "send it clean")) {
			t.Errorf("GET %s: %d %s, want %d", path, code, body, want)
		}
	}

	// m1's agent's own token, used as a person's: 403 from the proxy.
	var c v1alpha1.Cluster
	must(t, h.Client.Get(ctx, client.ObjectKey{Name: "m1"}, &c))
	sa := v1alpha1.AgentServiceAccount(v1alpha1.AgentGeneration(&c))
	cs, err := kubernetes.NewForConfig(h.Config)
	must(t, err)
	tr, err := cs.CoreV1().ServiceAccounts(v1alpha1.ClusterNamespace("m1")).CreateToken(ctx, sa, &authnv1.TokenRequest{}, metav1.CreateOptions{})
	must(t, err)
	if code, body := get(base+"m1/proxy/api/v1/namespaces", tr.Status.Token); code != http.StatusForbidden {
		t.Errorf("m1's agent's token through the hub: %d %s, want 403", code, body)
	}
}
