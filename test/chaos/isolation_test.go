//go:build chaos

package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/delivery"
	"github.com/convoy-dev/convoy/internal/hubtest"
)

// TestAgentIsolation takes the hub credentials of each simulated cluster's agent and tries
// every other cluster's Works, Secrets and Cluster object with them: reading, listing,
// changing, deleting. Each attempt must be refused, and the same credentials must work on
// the agent's own cluster (so a refusal is not just a broken token).
func TestAgentIsolation(t *testing.T) {
	ctx := context.Background()
	h := startHubProcess(t)
	fleet := h.fleet(t)
	names := registerFleet(t, ctx, h, fleet, "iso", 4)
	admin := h.Client
	for _, n := range names {
		ns := v1alpha1.ClusterNamespace(n)
		must(t, admin.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "private"}, StringData: map[string]string{"k": n}}))
		must(t, admin.Create(ctx, &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own"}}))
	}

	// The delivery stream's port, from the agents' settings.
	cm := &corev1.ConfigMap{}
	must(t, admin.Get(ctx, client.ObjectKey{Namespace: v1alpha1.ClusterNamespace(names[0]), Name: v1alpha1.AgentConfigMap}, cm))
	port := cm.Data[v1alpha1.AgentConfigDeliveryPort]
	if port == "" {
		t.Fatalf("the agents' settings name no delivery stream: %v", cm.Data)
	}
	u, err := url.Parse(h.Config.Host)
	must(t, err)
	streamAddr := net.JoinHostPort(u.Hostname(), port)

	for _, me := range names {
		c, cs := agentClients(t, h, fleet.StateDir(me))
		token := agentToken(t, fleet.StateDir(me))
		// Its delivery stream: its own cluster's, and no other's.
		if err := delivery.Probe(ctx, streamAddr, u.Hostname(), h.Config.CAData, me, token); err != nil {
			t.Fatalf("%s's agent cannot open its own delivery stream: %v", me, err)
		}
		// What it may do, so that the refusals below mean something.
		if err := c.List(ctx, &v1alpha1.WorkList{}, client.InNamespace(v1alpha1.ClusterNamespace(me))); err != nil {
			t.Fatalf("%s's agent cannot list its own Works: %v", me, err)
		}
		if err := c.Get(ctx, client.ObjectKey{Name: me}, &v1alpha1.Cluster{}); err != nil {
			t.Fatalf("%s's agent cannot read its own Cluster: %v", me, err)
		}
		for _, other := range names {
			if other == me {
				continue
			}
			ns := v1alpha1.ClusterNamespace(other)
			deny := func(what string, err error) {
				t.Helper()
				if !apierrors.IsForbidden(err) {
					t.Errorf("%s's agent: %s of %s: err = %v, want Forbidden", me, what, other, err)
				}
			}
			work := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own"}}
			deny("list Works", c.List(ctx, &v1alpha1.WorkList{}, client.InNamespace(ns)))
			deny("read a Work", c.Get(ctx, client.ObjectKeyFromObject(work), &v1alpha1.Work{}))
			deny("patch a Work", c.Patch(ctx, work, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"evil":"yes"}}}`))))
			deny("patch a Work's status", c.Status().Patch(ctx, work, client.RawPatch(types.MergePatchType, []byte(`{"status":{"observedGeneration":99}}`))))
			deny("delete a Work", c.Delete(ctx, work.DeepCopy()))
			deny("create a Work", c.Create(ctx, &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "evil"}}))
			deny("read a Secret", c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "private"}, &corev1.Secret{}))
			deny("list Secrets", c.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)))
			deny("delete a Secret", c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "private"}}))
			cluster := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: other}}
			deny("read the Cluster", c.Get(ctx, client.ObjectKey{Name: other}, &v1alpha1.Cluster{}))
			deny("patch the Cluster", c.Patch(ctx, cluster, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"evil":"yes"}}}`))))
			deny("patch the Cluster's status", c.Status().Patch(ctx, cluster, client.RawPatch(types.MergePatchType, []byte(`{"status":{"phase":"Failed"}}`))))
			deny("delete the Cluster", c.Delete(ctx, cluster.DeepCopy()))
			_, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, v1alpha1.AgentServiceAccount(1), &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
			deny("mint the agent's token", err)
			if err := delivery.Probe(ctx, streamAddr, u.Hostname(), h.Config.CAData, other, token); !errors.Is(err, delivery.ErrRefused) {
				t.Errorf("%s's agent: open %s's delivery stream: err = %v, want refused", me, other, err)
			}
		}
		deny := func(what string, err error) {
			t.Helper()
			if !apierrors.IsForbidden(err) {
				t.Errorf("%s's agent: %s: err = %v, want Forbidden", me, what, err)
			}
		}
		deny("list Clusters", c.List(ctx, &v1alpha1.ClusterList{}))
		deny("list Works everywhere", c.List(ctx, &v1alpha1.WorkList{}))
		deny("list Secrets in kube-system", c.List(ctx, &corev1.SecretList{}, client.InNamespace("kube-system")))
		deny("list Secrets in convoy-system", c.List(ctx, &corev1.SecretList{}, client.InNamespace("convoy-system")))
		deny("list Placements", c.List(ctx, &v1alpha1.PlacementList{}))
	}
	// Nothing was changed by the attempts.
	for _, n := range names {
		w := &v1alpha1.Work{}
		must(t, admin.Get(ctx, client.ObjectKey{Namespace: v1alpha1.ClusterNamespace(n), Name: "own"}, w))
		if w.Labels["evil"] != "" {
			t.Errorf("%s's Work was changed", n)
		}
		cl := &v1alpha1.Cluster{}
		must(t, admin.Get(ctx, client.ObjectKey{Name: n}, cl))
		if cl.Labels["evil"] != "" || cl.Status.Phase == v1alpha1.ClusterFailed {
			t.Errorf("%s's Cluster was changed", n)
		}
	}
}

// agentClients are hub clients with the identity a simulated agent keeps in its state dir.
func agentClients(t *testing.T, h *hubProcess, stateDir string) (client.Client, kubernetes.Interface) {
	t.Helper()
	token := agentToken(t, stateDir)
	cfg := &rest.Config{Host: h.Config.Host, TLSClientConfig: rest.TLSClientConfig{CAData: h.Config.CAData}, BearerToken: token}
	c, err := client.New(cfg, client.Options{Scheme: hubtest.Scheme()})
	must(t, err)
	return c, kubernetes.NewForConfigOrDie(cfg)
}

// agentToken is the hub token a simulated agent keeps in its state dir.
func agentToken(t *testing.T, stateDir string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(stateDir, "token.json"))
	must(t, err)
	var st struct {
		Token string `json:"token"`
	}
	must(t, json.Unmarshal(raw, &st))
	if st.Token == "" {
		t.Fatalf("no token in %s", stateDir)
	}
	return st.Token
}
