package hub_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

func TestObjectsSurviveRestart(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	ctx := context.Background()

	cluster := &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: "eu-west"},
		Spec: v1alpha1.ClusterSpec{
			Provider: v1alpha1.ProviderLocal, Region: "eu-west", Environment: "prod", Zones: []string{"a", "b"},
			NodePools: []v1alpha1.NodePool{{Name: "default", Count: 3, Zone: "a"}},
		},
	}
	must(t, h.Client.Create(ctx, cluster))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
	must(t, h.Client.Create(ctx, ns))
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "settings"}, Data: map[string]string{"color": "blue"}}
	must(t, h.Client.Create(ctx, cm))
	placement := &v1alpha1.Placement{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: v1alpha1.PlacementSpec{
			Resources: []v1alpha1.ResourceSelector{{Group: "apps", Kind: "Deployment", Name: "web"}},
			Replicas:  &v1alpha1.ReplicaScheduling{Type: v1alpha1.Divided, MinReplicasPerCluster: ptr.To[int32](1)},
		},
	}
	must(t, h.Client.Create(ctx, placement))

	// The cluster controller mirrors the topology into labels and accepts the cluster.
	waitFor(t, "cluster labels and status", func() (bool, error) {
		got := &v1alpha1.Cluster{}
		if err := h.Client.Get(ctx, client.ObjectKey{Name: "eu-west"}, got); err != nil {
			return false, err
		}
		return got.Labels[v1alpha1.LabelRegion] == "eu-west" && got.Labels[v1alpha1.LabelEnvironment] == "prod" &&
			meta.IsStatusConditionTrue(got.Status.Conditions, v1alpha1.ClusterAccepted), nil
	})

	h.Restart()

	gotCluster := &v1alpha1.Cluster{}
	must(t, h.Client.Get(ctx, client.ObjectKey{Name: "eu-west"}, gotCluster))
	if gotCluster.Spec.NodePools[0].Count != 3 || gotCluster.Spec.NodePools[0].Memory.String() != "16Gi" {
		t.Errorf("cluster after restart = %+v, want 3 nodes with the defaulted 16Gi memory", gotCluster.Spec.NodePools[0])
	}
	gotCM := &corev1.ConfigMap{}
	must(t, h.Client.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "settings"}, gotCM))
	if gotCM.Data["color"] != "blue" {
		t.Errorf("configmap after restart = %v", gotCM.Data)
	}
	gotPlacement := &v1alpha1.Placement{}
	must(t, h.Client.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, gotPlacement))
	if gotPlacement.Spec.Replicas.Type != v1alpha1.Divided {
		t.Errorf("placement after restart = %+v", gotPlacement.Spec)
	}
}

func TestInvalidObjectsAreRejected(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	ctx := context.Background()

	pool := func(count int32) []v1alpha1.NodePool { return []v1alpha1.NodePool{{Name: "default", Count: count}} }
	clusters := []struct {
		name string
		obj  *v1alpha1.Cluster
		want string
	}{
		{"unknown provider", cluster("c1", v1alpha1.ClusterSpec{Provider: "gke"}), `supported values: "local", "import"`},
		{"missing provider", cluster("c2", v1alpha1.ClusterSpec{}), `spec.provider: Unsupported value: ""`},
		{"negative nodes", cluster("c3", v1alpha1.ClusterSpec{Provider: "local", NodePools: pool(-1)}), "should be greater than or equal to 0"},
		{"too many nodes", cluster("c4", v1alpha1.ClusterSpec{Provider: "local", NodePools: pool(501)}), "should be less than or equal to 500"},
		{"name with capitals", cluster("Bad_Name", v1alpha1.ClusterSpec{Provider: "local"}), "a lowercase RFC 1123 subdomain"},
		{"name with dots", cluster("us.east", v1alpha1.ClusterSpec{Provider: "local"}), "cluster name must be lower-case letters, digits and '-'"},
		{"long name", cluster(strings.Repeat("a", 41), v1alpha1.ClusterSpec{Provider: "local"}), "cluster name must be at most 40 characters"},
		{"bad version", cluster("c5", v1alpha1.ClusterSpec{Provider: "local", KubernetesVersion: "1.37"}), `spec.kubernetesVersion: Invalid value: "1.37"`},
		{"import with pools", cluster("c7", v1alpha1.ClusterSpec{Provider: "import", KubeconfigSecretRef: &v1alpha1.SecretReference{Name: "k"}, NodePools: pool(1)}), "remove spec.nodePools"},
		{"zone not in zones", cluster("c8", v1alpha1.ClusterSpec{Provider: "local", Zones: []string{"a"}, NodePools: []v1alpha1.NodePool{{Name: "p", Count: 1, Zone: "z"}}}), "must be one of spec.zones"},
		{"duplicate pools", cluster("c9", v1alpha1.ClusterSpec{Provider: "local", NodePools: []v1alpha1.NodePool{{Name: "p", Count: 1}, {Name: "p", Count: 2}}}), "Duplicate value"},
	}
	for _, tc := range clusters {
		t.Run("cluster/"+tc.name, func(t *testing.T) {
			err := h.Client.Create(ctx, tc.obj)
			expectInvalid(t, err, tc.want)
			if err := h.Client.Get(ctx, client.ObjectKeyFromObject(tc.obj), &v1alpha1.Cluster{}); !apierrors.IsNotFound(err) {
				t.Errorf("rejected cluster was stored anyway (get: %v)", err)
			}
		})
	}

	placements := []struct {
		name string
		spec v1alpha1.PlacementSpec
		want string
	}{
		{"no resources", v1alpha1.PlacementSpec{}, "spec.resources: Required value"},
		{"select everything", v1alpha1.PlacementSpec{Resources: []v1alpha1.ResourceSelector{{Group: "apps"}}}, "needs a kind or a labelSelector"},
		{"name without kind", v1alpha1.PlacementSpec{Resources: []v1alpha1.ResourceSelector{{Name: "web", LabelSelector: &metav1.LabelSelector{}}}}, "with a name needs a kind"},
		{"weights on duplicated", v1alpha1.PlacementSpec{
			Resources: []v1alpha1.ResourceSelector{{Kind: "Deployment"}},
			Replicas:  &v1alpha1.ReplicaScheduling{Type: v1alpha1.Duplicated, MinReplicasPerCluster: ptr.To[int32](1)},
		}, "apply only to type Divided"},
		{"empty override", v1alpha1.PlacementSpec{
			Resources: []v1alpha1.ResourceSelector{{Kind: "Deployment"}},
			Overrides: []v1alpha1.Override{{Clusters: v1alpha1.ClusterAffinity{Names: []string{"a"}}}},
		}, "an override must change something"},
	}
	for _, tc := range placements {
		t.Run("placement/"+tc.name, func(t *testing.T) {
			p := &v1alpha1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p"}, Spec: tc.spec}
			expectInvalid(t, h.Client.Create(ctx, p), tc.want)
		})
	}

	// An invalid update is refused and leaves the stored object as it was.
	c := cluster("keep", v1alpha1.ClusterSpec{Provider: "local", Region: "us-east"})
	must(t, h.Client.Create(ctx, c))
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		must(t, h.Client.Get(ctx, client.ObjectKeyFromObject(c), c))
		c.Spec.Provider = v1alpha1.ProviderImport
		c.Spec.KubeconfigSecretRef = &v1alpha1.SecretReference{Name: "k"}
		return h.Client.Update(ctx, c)
	})
	expectInvalid(t, err, "spec.provider cannot change")
	got := &v1alpha1.Cluster{}
	must(t, h.Client.Get(ctx, client.ObjectKey{Name: "keep"}, got))
	if got.Spec.Provider != v1alpha1.ProviderLocal || got.Spec.Region != "us-east" {
		t.Errorf("stored cluster changed by a refused update: %+v", got.Spec)
	}
}

// TestHubRunsNoWorkloads shows that the hub stores a Deployment without running it, while
// the controllers it does run (service accounts, namespaces) work.
func TestHubRunsNoWorkloads(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	ctx := context.Background()

	must(t, h.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps"}}))
	// The service-account controller runs: the new namespace gets its default ServiceAccount.
	waitFor(t, "default service account", func() (bool, error) {
		err := h.Client.Get(ctx, client.ObjectKey{Namespace: "apps", Name: "default"}, &corev1.ServiceAccount{})
		return err == nil, client.IgnoreNotFound(err)
	})

	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
			},
		},
	}
	must(t, h.Client.Create(ctx, dep))

	// Garbage collection runs, and it is the barrier for the rest: deleted in the foreground
	// (and held by a finalizer of the test's), the Deployment stays until the collector has
	// processed it and removed what it owns. Whatever a deployment controller would have done
	// with it by then, it has not.
	owned := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "owned",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: dep.UID}}}}
	must(t, h.Client.Create(ctx, owned))
	const hold = "convoy.dev/test-hold"
	held := dep.DeepCopy()
	held.Finalizers = append(held.Finalizers, hold)
	must(t, h.Client.Patch(ctx, held, client.MergeFrom(dep)))
	must(t, h.Client.Delete(ctx, held, client.PropagationPolicy(metav1.DeletePropagationForeground)))
	got := &appsv1.Deployment{}
	waitFor(t, "garbage collection of what the Deployment owns", func() (bool, error) {
		err := h.Client.Get(ctx, client.ObjectKeyFromObject(owned), &corev1.ConfigMap{})
		if !apierrors.IsNotFound(err) {
			if err == nil {
				err = errors.New("the owned ConfigMap is still there")
			}
			return false, err
		}
		if err := h.Client.Get(ctx, client.ObjectKeyFromObject(dep), got); err != nil {
			return false, err
		}
		return !slices.Contains(got.Finalizers, metav1.FinalizerDeleteDependents), fmt.Errorf("the Deployment's finalizers: %v", got.Finalizers)
	})
	if got.Status.Replicas != 0 || got.Status.ObservedGeneration != 0 {
		t.Errorf("deployment status was written by a controller: %+v", got.Status)
	}
	var rs appsv1.ReplicaSetList
	must(t, h.Client.List(ctx, &rs, client.InNamespace("apps")))
	var pods corev1.PodList
	must(t, h.Client.List(ctx, &pods, client.InNamespace("apps")))
	var events corev1.EventList
	must(t, h.Client.List(ctx, &events, client.InNamespace("apps")))
	var workload []string
	for _, e := range events.Items {
		if k := e.InvolvedObject.Kind; k == "Deployment" || k == "ReplicaSet" || k == "Pod" {
			workload = append(workload, e.Reason+" "+k+"/"+e.InvolvedObject.Name)
		}
	}
	if len(rs.Items) != 0 || len(pods.Items) != 0 || len(workload) != 0 {
		t.Fatalf("the hub ran the Deployment: %d ReplicaSets, %d Pods, events %v", len(rs.Items), len(pods.Items), workload)
	}
	before := got.DeepCopy()
	got.Finalizers = slices.DeleteFunc(got.Finalizers, func(f string) bool { return f == hold })
	must(t, h.Client.Patch(ctx, got, client.MergeFrom(before)))
	// The namespace controller runs: a deleted namespace goes away with its content.
	must(t, h.Client.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps"}}))
	waitFor(t, "namespace deletion", func() (bool, error) {
		ns := &corev1.Namespace{}
		err := h.Client.Get(ctx, client.ObjectKey{Name: "apps"}, ns)
		if err == nil {
			err = fmt.Errorf("the namespace is %s: %+v", ns.Status.Phase, ns.Status.Conditions)
		}
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
}

func TestDataDirInUseIsRefused(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	opts := h.Options
	opts.APIServerPort = 0
	_, err := hub.Start(context.Background(), opts)
	if err == nil || !strings.Contains(err.Error(), "is in use by a running hub (pid "+fmt.Sprint(os.Getpid())+")") {
		t.Fatalf("second hub on the same data dir: err = %v, want it refused as in use", err)
	}
	// The first hub is unharmed.
	if err := h.Ready(context.Background()); err != nil {
		t.Fatalf("first hub after the refused start: %v", err)
	}
}

func TestMissingBinaryNamesTheBuild(t *testing.T) {
	t.Parallel()
	_, err := hub.Start(context.Background(), hub.Options{DataDir: t.TempDir(), BinDir: t.TempDir(), Log: hubtest.Logger(t)})
	if err == nil || !strings.Contains(err.Error(), "kube-apiserver not found") || !strings.Contains(err.Error(), "make tools") {
		t.Fatalf("err = %v, want kube-apiserver not found ... run `make tools`", err)
	}
}

func TestUnreachableDatastore(t *testing.T) {
	t.Parallel()
	port := hubtest.ClosedPort(t)
	endpoint := fmt.Sprintf("postgres://convoy:hunter2@127.0.0.1:%d/convoy", port)
	dataDir := t.TempDir()
	_, err := hub.Start(context.Background(), hub.Options{
		DataDir: dataDir, BinDir: hubtest.BinDir(t), DatastoreEndpoint: endpoint, Log: hubtest.Logger(t),
	})
	if err == nil {
		t.Fatal("hub started on a datastore that is not there")
	}
	msg := err.Error()
	if !strings.Contains(msg, fmt.Sprintf("127.0.0.1:%d", port)) || !strings.Contains(msg, "not reachable") {
		t.Errorf("error does not name the endpoint: %v", err)
	}
	if strings.Contains(msg, "hunter2") {
		t.Errorf("error shows the datastore password: %v", err)
	}
	assertNoProcess(t, dataDir, endpoint)
}

// TestDatastoreFailingAfterStartLeavesNothing uses a server that accepts connections but
// speaks no Postgres, so the pre-flight check passes and the failure comes from the children.
func TestDatastoreFailingAfterStartLeavesNothing(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	endpoint := "postgres://convoy:pw@" + l.Addr().String() + "/convoy?sslmode=disable"
	dataDir := t.TempDir()
	_, err = hub.Start(context.Background(), hub.Options{
		DataDir: dataDir, BinDir: hubtest.BinDir(t), DatastoreEndpoint: endpoint,
		StepTimeout: 8 * time.Second, Log: hubtest.Logger(t),
	})
	if err == nil {
		t.Fatal("hub started on a server that is no database")
	}
	if !strings.Contains(err.Error(), l.Addr().String()) {
		t.Errorf("error does not name the endpoint: %v", err)
	}
	assertNoProcess(t, dataDir, l.Addr().String())
}

func TestCrashedChildIsRestarted(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	var old kubeproc.Status
	for _, c := range h.Children() {
		if c.Name == kubeproc.KubeAPIServer {
			old = c
		}
	}
	if old.PID == 0 {
		t.Fatalf("no running kube-apiserver among %+v", h.Children())
	}
	p, _ := os.FindProcess(old.PID)
	must(t, p.Kill())
	waitFor(t, "kube-apiserver restarted and the hub ready again", func() (bool, error) {
		for _, c := range h.Children() {
			if c.Name == kubeproc.KubeAPIServer && c.Running && c.PID != old.PID && c.Restarts == old.Restarts+1 {
				return h.Ready(context.Background()) == nil, nil
			}
		}
		return false, nil
	})
}

func TestParseDatastore(t *testing.T) {
	t.Parallel()
	_, err := hub.Start(context.Background(), hub.Options{DataDir: t.TempDir(), BinDir: hubtest.BinDir(t), DatastoreEndpoint: "redis://x"})
	if err == nil || !strings.Contains(err.Error(), `scheme "redis" is not supported`) {
		t.Errorf("redis endpoint: %v", err)
	}
	_, err = hub.Start(context.Background(), hub.Options{DataDir: t.TempDir(), BinDir: hubtest.BinDir(t), DatastoreEndpoint: "db.example:5432"})
	if err == nil || !strings.Contains(err.Error(), "has no scheme") {
		t.Errorf("endpoint without scheme: %v", err)
	}
}

// assertNoProcess fails if a running process has any of needles in its command line. Tests
// run in parallel in one process, so each looks for what only its own children would carry.
func assertNoProcess(t *testing.T, needles ...string) {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		cmdline := strings.ReplaceAll(string(raw), "\x00", " ")
		for _, n := range needles {
			if strings.Contains(cmdline, n) {
				t.Errorf("process %s left running: %s", e.Name(), cmdline)
			}
		}
	}
}

func cluster(name string, spec v1alpha1.ClusterSpec) *v1alpha1.Cluster {
	return &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
}

func expectInvalid(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want it refused with %q", want)
	}
	if !apierrors.IsInvalid(err) {
		t.Fatalf("err = %v, want an Invalid error", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v\nwant it to contain %q", err, want)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// waitFor waits until cond holds. Its deadline bounds only a failure: a loaded 2-core
// machine has taken a minute to start a hub's API server.
func waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	var last error
	// The bound is generous: under CI's load (2 cores, every package's tests at once) the
	// controller-manager's garbage collector and namespace controller take minutes to sync.
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 5*time.Minute, true, func(context.Context) (bool, error) {
		ok, err := cond()
		last = err
		return ok, nil
	})
	if err != nil {
		t.Fatalf("timed out waiting for %s (last error: %v)", what, last)
	}
}

// TestExternalEtcd runs the hub on an etcd cluster (Debian's etcd-server) instead of kine.
func TestExternalEtcd(t *testing.T) {
	t.Parallel()
	etcdBin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd is not installed (.ci/run installs Debian's etcd-server)")
	}
	clientPort, _ := kubeproc.FreePort()
	peerPort, _ := kubeproc.FreePort()
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	dir := t.TempDir()
	etcd, err := kubeproc.Start(kubeproc.Spec{
		Name: "etcd", Path: etcdBin, LogPath: filepath.Join(dir, "etcd.log"),
		Args: []string{"--data-dir", filepath.Join(dir, "etcd"), "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
			"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort), "--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
			"--initial-cluster", fmt.Sprintf("default=http://127.0.0.1:%d", peerPort)},
	}, hubtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcd.Stop(context.Background()) })
	must(t, kubeproc.WaitTCP(context.Background(), fmt.Sprintf("127.0.0.1:%d", clientPort), etcd, 30*time.Second))

	h := hubtest.Start(t, func(o *hub.Options) { o.DatastoreEndpoint = clientURL })
	for _, c := range h.Children() {
		if c.Name == kubeproc.Kine {
			t.Errorf("kine runs although the datastore is etcd")
		}
	}
	ctx := context.Background()
	must(t, h.Client.Create(ctx, cluster("on-etcd", v1alpha1.ClusterSpec{Provider: "local"})))
	h.Restart()
	must(t, h.Client.Get(ctx, client.ObjectKey{Name: "on-etcd"}, &v1alpha1.Cluster{}))
}

// A hub before the authorization webhook gave each agent a ClusterRole and ClusterRoleBinding
// for its own Cluster, with the cluster label; a hub that starts deletes those, and only those.
func TestAgentsFormerClusterRolesGo(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	ctx := context.Background()

	// A role of that name without the label is someone else's: it stays.
	unlabelled := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "convoy-agent:keep"}}
	must(t, h.Client.Create(ctx, unlabelled))
	labels := map[string]string{v1alpha1.LabelCluster: "old"}
	former := []client.Object{
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "convoy-agent:old", Labels: labels}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "convoy-agent:old", Labels: labels},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "convoy-agent:old"}},
	}
	for _, o := range former {
		must(t, h.Client.Create(ctx, o))
	}
	must(t, h.Client.Create(ctx, &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "old"}, Spec: v1alpha1.ClusterSpec{Provider: v1alpha1.ProviderImport}}))

	// Start returns once the hub has started its controllers, after the clean-up.
	h.Restart()
	for _, o := range former {
		err := h.Client.Get(ctx, client.ObjectKeyFromObject(o), o.DeepCopyObject().(client.Object))
		if !apierrors.IsNotFound(err) {
			t.Errorf("%T %s after the restart: err = %v, want NotFound", o, o.GetName(), err)
		}
	}
	must(t, h.Client.Get(ctx, client.ObjectKeyFromObject(unlabelled), &rbacv1.ClusterRole{}))
}
