package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/provider/local"
	"github.com/convoy-dev/convoy/internal/registry"
)

// manifests turns YAML documents into a Work's manifests.
func manifests(t *testing.T, docs ...string) []runtime.RawExtension {
	t.Helper()
	var out []runtime.RawExtension
	for _, d := range docs {
		j, err := yaml.YAMLToJSON([]byte(d))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, runtime.RawExtension{Raw: j})
	}
	return out
}

func getWork(t *testing.T, c client.Client, cluster, name string) *v1alpha1.Work {
	t.Helper()
	w := &v1alpha1.Work{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: v1alpha1.ClusterNamespace(cluster), Name: name}, w); err != nil {
		t.Fatal(err)
	}
	return w
}

func resourceStatus(w *v1alpha1.Work, kind, name string) *v1alpha1.ResourceStatus {
	for i := range w.Status.Resources {
		if r := &w.Status.Resources[i]; r.Kind == kind && r.Name == name {
			return r
		}
	}
	return nil
}

// updateWork changes a Work on the hub, retrying on conflicts.
func updateWork(t *testing.T, c client.Client, cluster, name string, change func(*v1alpha1.Work)) {
	t.Helper()
	for i := 0; ; i++ {
		w := getWork(t, c, cluster, name)
		change(w)
		err := c.Update(context.Background(), w)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) || i > 10 {
			t.Fatal(err)
		}
	}
}

func agentLog(t *testing.T, dataDir, cluster string) string {
	t.Helper()
	raw, _ := os.ReadFile(filepath.Join(dataDir, "clusters", cluster, "logs", "convoy-agent.log"))
	return string(raw)
}

// TestAgentAppliesWorks drives one cluster's agent through a Work's life: apply and report,
// a malformed manifest, a conflict, drift (corrected, then reported only), a removed resource,
// a hub outage, and deletion with and without orphaning.
func TestAgentAppliesWorks(t *testing.T) {
	t.Parallel()
	f := startFleetHub(t)
	f.convoy(t, "cluster", "create", "alpha", "--nodes", "2")
	member, _ := f.member(t, "alpha")
	hub := f.Client()
	ctx := context.Background()

	// Someone else already manages a field the Work will want.
	if _, err := member.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	other := []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"shared","namespace":"shop"},"data":{"owner":"someone"}}`)
	if _, err := member.CoreV1().ConfigMaps("shop").Patch(ctx, "shared", "application/apply-patch+yaml", other, metav1.PatchOptions{FieldManager: "someone-else"}); err != nil {
		t.Fatal(err)
	}

	work := &v1alpha1.Work{
		ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace("alpha"), Name: "web"},
		Spec: v1alpha1.WorkSpec{Manifests: manifests(t,
			"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx}]}",
			"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: shop}\ndata: {color: blue}",
			"apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}",
			"kind: ConfigMap\nmetadata: {name: nameless-kind}",
			"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared, namespace: shop}\ndata: {owner: convoy}",
		)},
	}
	if err := hub.Create(ctx, work); err != nil {
		t.Fatal(err)
	}

	// It appears on the member and reports back, resource by resource.
	eventually(t, "the Work applied and reported", time.Minute, func() (bool, error) {
		w := getWork(t, hub, "alpha", "web")
		d := resourceStatus(w, "Deployment", "web")
		return w.Status.ObservedGeneration == w.Generation && d != nil && d.Health == v1alpha1.HealthHealthy, nil
	})
	w := getWork(t, hub, "alpha", "web")
	if r := resourceStatus(w, "ConfigMap", "settings"); r == nil || r.State != v1alpha1.ResourceApplied || r.Health != v1alpha1.HealthHealthy {
		t.Errorf("settings: %+v", r)
	}
	if r := resourceStatus(w, "Unknown", "manifests[3]"); r == nil || r.State != v1alpha1.ResourceFailed || !strings.Contains(r.Message, "apiVersion is missing") {
		t.Errorf("the malformed manifest: %+v", r)
	}
	if r := resourceStatus(w, "ConfigMap", "shared"); r == nil || r.State != v1alpha1.ResourceFailed || !strings.Contains(r.Message, "conflict") || !strings.Contains(r.Message, "forceConflicts") {
		t.Errorf("the conflicting manifest: %+v", r)
	}
	if w.Status.Summary.Applied != 3 || w.Status.Summary.Failed != 2 || meta.IsStatusConditionTrue(w.Status.Conditions, v1alpha1.WorkApplied) {
		t.Errorf("summary %+v, conditions %+v", w.Status.Summary, w.Status.Conditions)
	}
	if cm, _ := member.CoreV1().ConfigMaps("shop").Get(ctx, "shared", metav1.GetOptions{}); cm.Data["owner"] != "someone" {
		t.Errorf("the conflict was forced silently: %v", cm.Data)
	}
	dep, err := member.AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
	if err != nil || dep.Labels[v1alpha1.LabelManagedBy] != v1alpha1.ManagedByAgent {
		t.Fatalf("deployment on the member: %v, %v", dep, err)
	}

	// Forcing is explicit.
	updateWork(t, hub, "alpha", "web", func(w *v1alpha1.Work) { w.Spec.ForceConflicts = true })
	eventually(t, "the forced apply", 30*time.Second, func() (bool, error) {
		cm, err := member.CoreV1().ConfigMaps("shop").Get(ctx, "shared", metav1.GetOptions{})
		return err == nil && cm.Data["owner"] == "convoy", nil
	})

	// A member-side edit of a field the agent applied is drift: corrected by default...
	editColor := func(color string) {
		// The agent may be writing the same object, so a conflict only means "read it again".
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cm, err := member.CoreV1().ConfigMaps("shop").Get(ctx, "settings", metav1.GetOptions{})
			if err != nil {
				return err
			}
			cm.Data["color"] = color
			_, err = member.CoreV1().ConfigMaps("shop").Update(ctx, cm, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	editColor("red")
	eventually(t, "the drift corrected", 30*time.Second, func() (bool, error) {
		cm, err := member.CoreV1().ConfigMaps("shop").Get(ctx, "settings", metav1.GetOptions{})
		return err == nil && cm.Data["color"] == "blue", nil
	})
	// ...and only reported when the Work says so.
	updateWork(t, hub, "alpha", "web", func(w *v1alpha1.Work) { w.Spec.DriftPolicy = v1alpha1.DriftReportOnly })
	eventually(t, "the policy seen", 30*time.Second, func() (bool, error) {
		w := getWork(t, hub, "alpha", "web")
		return w.Status.ObservedGeneration == w.Generation, nil
	})
	editColor("green")
	eventually(t, "the drift reported", 30*time.Second, func() (bool, error) {
		w := getWork(t, hub, "alpha", "web")
		r := resourceStatus(w, "ConfigMap", "settings")
		return r != nil && r.Drifted && meta.IsStatusConditionTrue(w.Status.Conditions, v1alpha1.WorkDrifted), nil
	})
	// A barrier: a new generation of the Work (one more manifest) and the agent's report on
	// it. Whatever the agent would do about the drift, it has done by then.
	updateWork(t, hub, "alpha", "web", func(w *v1alpha1.Work) {
		w.Spec.Manifests = append(w.Spec.Manifests, manifests(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: marker, namespace: shop}")...)
	})
	eventually(t, "the new generation reported", 30*time.Second, func() (bool, error) {
		w := getWork(t, hub, "alpha", "web")
		return w.Status.ObservedGeneration == w.Generation && resourceStatus(w, "ConfigMap", "marker") != nil, nil
	})
	if cm, _ := member.CoreV1().ConfigMaps("shop").Get(ctx, "settings", metav1.GetOptions{}); cm.Data["color"] != "green" {
		t.Errorf("report-only drift was corrected anyway: %v", cm.Data)
	}

	// A resource removed from the Work leaves the member; the Work lists it until it is gone.
	updateWork(t, hub, "alpha", "web", func(w *v1alpha1.Work) {
		w.Spec.Manifests = append(w.Spec.Manifests[:1], w.Spec.Manifests[2:]...) // drop settings
	})
	eventually(t, "the removed ConfigMap deleted and its tombstone gone", 30*time.Second, func() (bool, error) {
		_, err := member.CoreV1().ConfigMaps("shop").Get(ctx, "settings", metav1.GetOptions{})
		return apierrors.IsNotFound(err) && resourceStatus(getWork(t, hub, "alpha", "web"), "ConfigMap", "settings") == nil, nil
	})

	// The hub goes away: the member keeps everything; when it is back, nothing is applied again.
	applied := strings.Count(agentLog(t, f.DataDir, "alpha"), `msg=applied`)
	failedBefore := strings.Count(agentLog(t, f.DataDir, "alpha"), "heartbeat failed")
	deletedBefore := strings.Count(agentLog(t, f.DataDir, "alpha"), "deleted a resource")
	if err := f.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	f.Wait()
	// The barrier: the agent has noticed the outage (it says so once per outage). Whatever
	// it does about a hub that is gone, it has begun to do by then, and the check after the
	// hub is back covers the rest.
	eventually(t, "the agent noticing the outage", time.Minute, func() (bool, error) {
		return strings.Count(agentLog(t, f.DataDir, "alpha"), "heartbeat failed") > failedBefore, nil
	})
	if _, err := member.AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{}); err != nil {
		t.Fatalf("the hub's outage touched the member: %v", err)
	}
	f.Process = startHubProcess(t, f.DataDir, apiPort(t, f.DataDir))
	hub = f.Client()
	eventually(t, "the heartbeat back", 30*time.Second, func() (bool, error) {
		return strings.Contains(agentLog(t, f.DataDir, "alpha"), "heartbeat back"), nil
	})
	// A barrier: a new generation of the Work that changes no manifest, and the agent's report
	// on it, which comes after it has read its Works from the hub again.
	updateWork(t, hub, "alpha", "web", func(w *v1alpha1.Work) { w.Spec.DriftPolicy = v1alpha1.DriftCorrect })
	eventually(t, "the agent's report after the outage", 30*time.Second, func() (bool, error) {
		w := getWork(t, hub, "alpha", "web")
		return w.Status.ObservedGeneration == w.Generation, nil
	})
	if again := strings.Count(agentLog(t, f.DataDir, "alpha"), `msg=applied`); again != applied {
		t.Errorf("the agent applied %d resources again after the hub came back", again-applied)
	}
	if n := strings.Count(agentLog(t, f.DataDir, "alpha"), "deleted a resource"); n != deletedBefore {
		t.Errorf("the agent deleted %d resources through the hub's outage", n-deletedBefore)
	}
	if pods, _ := member.CoreV1().Pods("shop").List(ctx, metav1.ListOptions{}); len(pods.Items) != 2 {
		t.Errorf("pods after the outage: %d", len(pods.Items))
	}

	// Deleting a Work with deletionPolicy Orphan leaves its resources; Delete removes them.
	orphan := &v1alpha1.Work{
		ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace("alpha"), Name: "keep"},
		Spec: v1alpha1.WorkSpec{DeletionPolicy: v1alpha1.DeletionOrphan, Manifests: manifests(t,
			"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kept, namespace: default}\ndata: {a: b}")},
	}
	if err := hub.Create(ctx, orphan); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the orphan Work applied", 30*time.Second, func() (bool, error) {
		_, err := member.CoreV1().ConfigMaps("default").Get(ctx, "kept", metav1.GetOptions{})
		return err == nil, nil
	})
	for _, name := range []string{"keep", "web"} {
		if err := hub.Delete(ctx, &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace("alpha"), Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "both Works gone, web's resources with it", time.Minute, func() (bool, error) {
		var list v1alpha1.WorkList
		if err := hub.List(ctx, &list, client.InNamespace(v1alpha1.ClusterNamespace("alpha"))); err != nil {
			return false, err
		}
		_, err := member.AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
		return len(list.Items) == 0 && apierrors.IsNotFound(err), nil
	})
	if _, err := member.CoreV1().ConfigMaps("default").Get(ctx, "kept", metav1.GetOptions{}); err != nil {
		t.Errorf("the orphaned ConfigMap was deleted: %v", err)
	}
}

// agentToken reads the hub token a local cluster's agent holds.
func agentToken(t *testing.T, dataDir, cluster string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dataDir, "clusters", cluster, "agent", "token.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	return s.Token
}

// as builds clients of the hub that present a bearer token.
func as(t *testing.T, f *fleetHub, token string) (client.Client, kubernetes.Interface) {
	t.Helper()
	admin := f.Config()
	cfg := &rest.Config{Host: admin.Host, TLSClientConfig: rest.TLSClientConfig{CAData: admin.CAData}, BearerToken: token}
	c, err := client.New(cfg, client.Options{Scheme: hubtest.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, cs
}

// TestAgentIsolationAndRevocation proves that an agent's identity reaches only its own
// cluster's namespace and status, that a bootstrap token gets only its own cluster's
// identity, and that a revoked agent is locked out until it joins again.
func TestAgentIsolationAndRevocation(t *testing.T) {
	t.Parallel()
	f := startFleetHub(t)
	f.convoy(t, "cluster", "create", "alpha", "--nodes", "1")
	f.convoy(t, "cluster", "create", "beta", "--nodes", "1")
	ctx := context.Background()
	admin := f.Client()
	if err := admin.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace("beta"), Name: "beta-secret"}}); err != nil {
		t.Fatal(err)
	}

	token := agentToken(t, f.DataDir, "alpha")
	c, cs := as(t, f, token)
	mustDeny := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("alpha's agent: %s: err = %v, want Forbidden", what, err)
		}
	}
	mustDeny("list beta's Works", c.List(ctx, &v1alpha1.WorkList{}, client.InNamespace(v1alpha1.ClusterNamespace("beta"))))
	mustDeny("read beta's Secret", c.Get(ctx, client.ObjectKey{Namespace: v1alpha1.ClusterNamespace("beta"), Name: "beta-secret"}, &corev1.Secret{}))
	mustDeny("list Secrets in kube-system", c.List(ctx, &corev1.SecretList{}, client.InNamespace("kube-system")))
	mustDeny("list Secrets in convoy-system", c.List(ctx, &corev1.SecretList{}, client.InNamespace("convoy-system")))
	mustDeny("read Cluster beta", c.Get(ctx, client.ObjectKey{Name: "beta"}, &v1alpha1.Cluster{}))
	beta := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "beta"}}
	mustDeny("patch Cluster beta's status", c.Status().Patch(ctx, beta, client.RawPatch("application/merge-patch+json", []byte(`{"status":{"phase":"Failed"}}`))))
	mustDeny("create a Work in beta's namespace", c.Create(ctx, &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace("beta"), Name: "evil"}}))
	_, err := cs.CoreV1().ServiceAccounts(v1alpha1.ClusterNamespace("beta")).CreateToken(ctx, v1alpha1.AgentServiceAccount(1), &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	mustDeny("mint beta's token", err)
	// What it may do.
	if err := c.List(ctx, &v1alpha1.WorkList{}, client.InNamespace(v1alpha1.ClusterNamespace("alpha"))); err != nil {
		t.Errorf("alpha's agent cannot list its own Works: %v", err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: "alpha"}, &v1alpha1.Cluster{}); err != nil {
		t.Errorf("alpha's agent cannot read its own Cluster: %v", err)
	}
	alpha := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "alpha"}}
	if err := c.Status().Patch(ctx, alpha, client.RawPatch(types.MergePatchType, []byte(`{}`))); err != nil {
		t.Errorf("alpha's agent cannot write its own Cluster's status: %v", err)
	}
	mustDeny("patch its own Cluster", c.Patch(ctx, alpha.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"evil":"yes"}}}`))))
	// The hub's authorization webhook grants that, not a ClusterRoleBinding per cluster
	// (the RBAC authorizer walks every ClusterRoleBinding on every request).
	var crbs rbacv1.ClusterRoleBindingList
	if err := admin.List(ctx, &crbs, client.HasLabels{v1alpha1.LabelCluster}); err != nil {
		t.Fatal(err)
	}
	if len(crbs.Items) != 0 {
		t.Errorf("%d ClusterRoleBindings of clusters, want none (first %s)", len(crbs.Items), crbs.Items[0].Name)
	}

	// A bootstrap token of alpha gets alpha's identity, not beta's.
	out := run(t, f.env, convoyBin, "cluster", "join", "alpha", "--mode", "process")
	bootstrap := ""
	for _, field := range strings.Fields(out) {
		if len(field) == 23 && field[6] == '.' {
			bootstrap = field
		}
	}
	if bootstrap == "" {
		t.Fatalf("no bootstrap token in the join output:\n%s", out)
	}
	_, bcs := as(t, f, bootstrap)
	_, err = bcs.CoreV1().ServiceAccounts(v1alpha1.ClusterNamespace("beta")).CreateToken(ctx, v1alpha1.AgentServiceAccount(1), &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	mustDeny("alpha's bootstrap token minting beta's identity", err)

	// Revoke: the agent's token is refused, the cluster turns Unreachable, the member stays.
	out = f.convoy(t, "cluster", "revoke", "alpha")
	if !strings.Contains(out, "locked out") {
		t.Errorf("revoke output: %s", out)
	}
	// As soon as the API server's caches see the deleted ServiceAccount and the new RBAC
	// (milliseconds), the old identity gets nothing.
	eventually(t, "the revoked token refused", 5*time.Second, func() (bool, error) {
		err := c.List(ctx, &v1alpha1.WorkList{}, client.InNamespace(v1alpha1.ClusterNamespace("alpha")))
		return apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err), fmt.Errorf("not refused: %v", err)
	})
	// Nor may it write its Cluster's status any more (the webhook knows the generation).
	if err := c.Status().Patch(ctx, alpha.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{}`))); !apierrors.IsForbidden(err) && !apierrors.IsUnauthorized(err) {
		t.Errorf("the revoked agent wrote its Cluster's status: %v", err)
	}
	eventually(t, "alpha Unreachable", 30*time.Second, func() (bool, error) {
		cl := &v1alpha1.Cluster{}
		err := admin.Get(ctx, client.ObjectKey{Name: "alpha"}, cl)
		return err == nil && cl.Status.Phase == v1alpha1.ClusterUnreachable, err
	})
	// Neither the revoked token nor the old bootstrap token can mint the new identity.
	_, err = cs.CoreV1().ServiceAccounts(v1alpha1.ClusterNamespace("alpha")).CreateToken(ctx, v1alpha1.AgentServiceAccount(2), &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) && !apierrors.IsUnauthorized(err) {
		t.Errorf("the revoked token minted the new identity: %v", err)
	}
	_, err = bcs.CoreV1().ServiceAccounts(v1alpha1.ClusterNamespace("alpha")).CreateToken(ctx, v1alpha1.AgentServiceAccount(2), &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) && !apierrors.IsUnauthorized(err) {
		t.Errorf("an old bootstrap token minted the new identity: %v", err)
	}
	member, _ := f.member(t, "alpha")
	if nodes := readyNodes(t, member); len(nodes) != 1 {
		t.Errorf("revocation touched the member: nodes %v", nodes)
	}

	// join lets it back in: the hub hands the new token to the local agent.
	f.convoy(t, "cluster", "join", "alpha")
	eventually(t, "alpha Ready again", time.Minute, func() (bool, error) {
		cl := &v1alpha1.Cluster{}
		err := admin.Get(ctx, client.ObjectKey{Name: "alpha"}, cl)
		return err == nil && cl.Status.Phase == v1alpha1.ClusterReady, err
	})
	if agentToken(t, f.DataDir, "alpha") == token {
		t.Error("the agent kept its revoked token")
	}
}

// TestAgentProcessForImportedCluster registers a cluster by import, runs its agent as a
// process from `convoy cluster join --mode process`, kills the agent, and expects the Cluster
// to turn Unreachable with nothing changed on the member.
func TestAgentProcessForImportedCluster(t *testing.T) {
	t.Parallel()
	f := startFleetHub(t)
	f.convoy(t, "cluster", "create", "target", "--nodes", "1")
	_, targetKubeconfig := f.member(t, "target")
	f.convoy(t, "cluster", "import", "ext", "--kubeconfig", targetKubeconfig, "--region", "eu-west")

	ctx := context.Background()
	admin := f.Client()
	cl := &v1alpha1.Cluster{}
	if err := admin.Get(ctx, client.ObjectKey{Name: "ext"}, cl); err != nil || cl.Status.Phase != v1alpha1.ClusterJoining {
		t.Fatalf("an imported cluster without an agent: phase %s, %v", cl.Status.Phase, err)
	}

	// The deployment manifest (on stdout; the token's notes go to stderr) is accepted by the
	// member's API. (kwok only pretends to run its pod.)
	join := exec.Command(convoyBin, "cluster", "join", "ext")
	join.Env = append(os.Environ(), f.env...)
	manifest, err := join.Output()
	if err != nil {
		t.Fatal(err)
	}
	manifestFile := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(manifestFile, manifest, 0o600)
	applied := run(t, nil, filepath.Join(hubtest.BinDir(t), "kubectl"), "--kubeconfig", targetKubeconfig, "apply", "-f", manifestFile)
	for _, want := range []string{"namespace/convoy-system", "serviceaccount/convoy-agent", "clusterrolebinding.rbac.authorization.k8s.io/convoy-agent", "secret/convoy-agent-bootstrap", "deployment.apps/convoy-agent"} {
		if !strings.Contains(applied, want+" created") {
			t.Errorf("the agent manifest did not create %s:\n%s", want, applied)
		}
	}

	// The process mode prints the command; run it the same way.
	out := run(t, f.env, convoyBin, "cluster", "join", "ext", "--mode", "process")
	var token string
	for _, field := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(field, "--bootstrap-token="); ok {
			token = v
		}
	}
	for i, field := range strings.Fields(out) {
		if field == "--bootstrap-token" {
			token = strings.Fields(out)[i+1]
		}
	}
	if token == "" || !strings.Contains(out, "convoy agent --cluster ext") {
		t.Fatalf("join --mode process:\n%s", out)
	}
	// It names the hub's delivery port, where the agent joins without a request to the API
	// server: the one the hub gives its agents.
	var settings corev1.ConfigMap
	if err := admin.Get(ctx, client.ObjectKey{Namespace: v1alpha1.ClusterNamespace("ext"), Name: v1alpha1.AgentConfigMap}, &settings); err != nil {
		t.Fatal(err)
	}
	port := settings.Data[v1alpha1.AgentConfigDeliveryPort]
	if port == "" || !strings.Contains(out, " --delivery-port "+port+" ") {
		t.Fatalf("join --mode process does not name the delivery port %q:\n%s", port, out)
	}
	caFile := filepath.Join(t.TempDir(), "hub-ca.crt")
	os.WriteFile(caFile, f.Config().CAData, 0o600)
	agent := exec.Command(convoyBin, "agent", "--cluster", "ext", "--hub-url", f.Config().Host, "--delivery-port", port, "--hub-ca-file", caFile,
		"--bootstrap-token", token, "--state-dir", t.TempDir(), "--kubeconfig", targetKubeconfig)
	agentOut := &hubtest.SyncBuffer{}
	agent.Stdout, agent.Stderr = agentOut, agentOut
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	eventually(t, "ext Ready through its agent", time.Minute, func() (bool, error) {
		err := admin.Get(ctx, client.ObjectKey{Name: "ext"}, cl)
		return err == nil && cl.Status.Phase == v1alpha1.ClusterReady, err
	})
	if cl.Status.Inventory == nil || cl.Status.Inventory.Nodes.Ready != 1 || !cl.Status.Inventory.APIHealthy {
		t.Errorf("ext's inventory: %+v", cl.Status.Inventory)
	}

	member, _ := f.member(t, "target")
	before := readyNodes(t, member)
	if err := agent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	agent.Wait()
	killed := time.Now()
	eventually(t, "ext Unreachable", 30*time.Second, func() (bool, error) {
		err := admin.Get(ctx, client.ObjectKey{Name: "ext"}, cl)
		return err == nil && cl.Status.Phase == v1alpha1.ClusterUnreachable, err
	})
	t.Logf("Unreachable %s after the agent was killed", time.Since(killed).Round(100*time.Millisecond))
	cond := meta.FindStatusCondition(cl.Status.Conditions, v1alpha1.ClusterReadyCondition)
	if cond == nil || !strings.Contains(cond.Message, "no heartbeat") {
		t.Errorf("Ready condition of an unreachable cluster: %+v", cond)
	}
	if after := readyNodes(t, member); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the member changed while its agent was down: %v -> %v", before, after)
	}
}

// TestAgentDeploymentOnRealNodes runs an imported cluster's agent the way `convoy cluster join`
// prints it, as a Deployment in the member, on a real node: its image is Convoy's own, which the
// hub put into the fleet registry, and it reaches the hub at the fleet gateway; the cluster is
// imported --agent-only, so the hub itself cannot reach it. The cluster turns Ready, a
// Placement's Work is applied by that agent, the collector beside it sends the cluster's
// metrics to the hub's store, its API server answers through the hub over the agent's tunnel,
// and revoking the agent closes the tunnel.
func TestAgentDeploymentOnRealNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real node")
	}
	hubtest.RealNodes(t, local.MissingForRealNodes)
	f := startFleetHub(t)
	f.convoy(t, "cluster", "create", "inside", "--nodes", "1", "--node-kind", "real", "--region", "r1")
	_, memberKubeconfig := f.member(t, "inside")
	// The hub gets no kubeconfig of ext: only its agent reaches it.
	f.convoy(t, "cluster", "import", "ext", "--agent-only", "--region", "r2")
	// Until the hub's push is done, the list may fail (the repository has no tag yet): retried.
	eventually(t, "Convoy's image in the fleet registry", time.Minute, func() (bool, error) {
		cmd := exec.Command(convoyBin, "image", "list", "--data-dir", f.DataDir)
		cmd.Env = append(os.Environ(), f.env...)
		list, err := cmd.CombinedOutput()
		if err != nil {
			return false, fmt.Errorf("image list: %v\n%s", err, list)
		}
		return strings.Contains(string(list), registry.ConvoyImage()), fmt.Errorf("image list:\n%s", list)
	})

	join := exec.Command(convoyBin, "cluster", "join", "ext")
	join.Env = append(os.Environ(), f.env...)
	manifest, err := join.Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(manifest), "image: "+registry.ConvoyImage()) || !strings.Contains(string(manifest), "https://10.77.0.1:") ||
		!strings.Contains(string(manifest), "- --delivery-port\n") || !strings.Contains(string(manifest), "- /vmagent\n") {
		t.Fatalf("the agent manifest names not Convoy's image, the hub at the fleet gateway, its delivery port and the collector:\n%s", manifest)
	}
	manifestFile := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(manifestFile, manifest, 0o600)
	kubectl := filepath.Join(hubtest.BinDir(t), "kubectl")
	run(t, nil, kubectl, "--kubeconfig", memberKubeconfig, "apply", "-f", manifestFile)

	ctx := context.Background()
	admin := f.Client()
	eventually(t, "ext Ready through its agent's pod", 3*time.Minute, func() (bool, error) {
		cl := &v1alpha1.Cluster{}
		err := admin.Get(ctx, client.ObjectKey{Name: "ext"}, cl)
		return err == nil && cl.Status.Phase == v1alpha1.ClusterReady, fmt.Errorf("phase %s: %v", cl.Status.Phase, err)
	})
	pods := run(t, nil, kubectl, "--kubeconfig", memberKubeconfig, "-n", "convoy-system", "get", "pods", "-o",
		"jsonpath={range .items[*]}{.spec.containers[0].image} {.status.phase}{\"\\n\"}{end}")
	if !strings.Contains(pods, registry.ConvoyImage()+" Running") {
		t.Errorf("the agent's pod:\n%s", pods)
	}

	// Work for ext reaches the member through that agent.
	w := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace("ext"), Name: "hello"}, Spec: v1alpha1.WorkSpec{
		Manifests: manifests(t, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"from-ext-agent","namespace":"default"},"data":{"k":"v"}}`)}}
	if err := admin.Create(ctx, w); err != nil {
		t.Fatal(err)
	}
	member, _ := f.member(t, "inside")
	eventually(t, "the Work applied by the agent's pod", time.Minute, func() (bool, error) {
		_, err := member.CoreV1().ConfigMaps("default").Get(ctx, "from-ext-agent", metav1.GetOptions{})
		return err == nil, err
	})

	// The collector in the agent's pod (vmagent from Convoy's image) sends ext's metrics to the
	// hub's store: its API server, its kubelet and its workload state, labelled ext.
	eventually(t, "ext's metrics from the collector in the agent's pod", 2*time.Minute, func() (bool, error) {
		cmd := exec.Command(convoyBin, "metrics", "query", `up{cluster="ext"} == 1`)
		cmd.Env = append(os.Environ(), f.env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return false, fmt.Errorf("%v: %s", err, out)
		}
		for _, job := range []string{" apiserver ", " kubelet ", " kube-state-metrics "} {
			if !strings.Contains(string(out), job) {
				return false, fmt.Errorf("no job%sof ext:\n%s", job, out)
			}
		}
		return true, nil
	})

	// Through the hub, ext answers over its agent's tunnel (the agent's own ServiceAccount
	// impersonates the hub's admin there).
	viaHub := filepath.Join(t.TempDir(), "ext-via-hub.kubeconfig")
	os.WriteFile(viaHub, []byte(f.convoy(t, "cluster", "kubeconfig", "ext", "--via-hub")), 0o600)
	eventually(t, "ext through the hub", time.Minute, func() (bool, error) {
		out, err := exec.Command(kubectl, "--kubeconfig", viaHub, "-n", "default", "get", "configmap", "from-ext-agent", "-o", "name").CombinedOutput()
		return err == nil && strings.TrimSpace(string(out)) == "configmap/from-ext-agent", fmt.Errorf("%v: %s", err, out)
	})
	// Revoked, the agent's tunnel is closed, and it may not open another.
	f.convoy(t, "cluster", "revoke", "ext")
	eventually(t, "ext's tunnel closed by the revocation", 30*time.Second, func() (bool, error) {
		out, err := exec.Command(kubectl, "--kubeconfig", viaHub, "get", "--raw", "/api/v1/namespaces/default").CombinedOutput()
		return err != nil && strings.Contains(string(out), "has no tunnel to the hub now"), fmt.Errorf("%v: %s", err, out)
	})
}
