package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/provider/local"
	"github.com/convoy-dev/convoy/internal/version"
)

// fleetHub is a `convoy hub` process plus the environment the CLI needs to reach it.
type fleetHub struct {
	*hubtest.Process
	env []string
}

// startFleetHub starts a hub process and makes sure that, whatever happens, the test ends with
// `convoy down`, which stops the hub and every local cluster it started.
func startFleetHub(t *testing.T) *fleetHub {
	t.Helper()
	port, _ := kubeproc.FreePort()
	dataDir := t.TempDir()
	t.Cleanup(func() {
		if t.Failed() {
			// The agents' logs say what the members saw.
			logs, _ := filepath.Glob(filepath.Join(dataDir, "clusters", "*", "logs", "convoy-agent.log"))
			for _, l := range logs {
				raw, _ := os.ReadFile(l)
				if len(raw) > 6000 {
					raw = raw[len(raw)-6000:]
				}
				t.Logf("%s:\n%s", l, raw)
			}
		}
		// --purge: real nodes give back their fleet addresses too.
		out, err := exec.Command(convoyBin, "down", "--purge", "--data-dir", dataDir).CombinedOutput()
		if err != nil {
			t.Errorf("convoy down: %v\n%s", err, out)
		}
	})
	hp := startHubProcess(t, dataDir, port)
	return &fleetHub{Process: hp, env: []string{"CONVOY_KUBECONFIG=" + filepath.Join(dataDir, "kubeconfig")}}
}

func (f *fleetHub) convoy(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, f.env, convoyBin, args...)
}

// convoyFails runs convoy and returns its output, failing the test if the command succeeds.
func (f *fleetHub) convoyFails(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(convoyBin, args...)
	cmd.Env = append(os.Environ(), f.env...)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("convoy %s succeeded, want a refusal:\n%s", strings.Join(args, " "), out)
	}
	return string(out)
}

// member returns a client of a member cluster, from `convoy cluster kubeconfig`.
func (f *fleetHub) member(t *testing.T, name string) (kubernetes.Interface, string) {
	t.Helper()
	raw := f.convoy(t, "cluster", "kubeconfig", name)
	path := filepath.Join(t.TempDir(), name+".kubeconfig")
	if err := os.WriteFile(path, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, path
}

var eventually = hubtest.Eventually

func readyNodes(t *testing.T, cs kubernetes.Interface) []string {
	t.Helper()
	nodes, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ready []string
	for _, n := range nodes.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready = append(ready, n.Name)
			}
		}
	}
	return ready
}

// processesMentioning lists running processes whose command line contains s.
func processesMentioning(s string) []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		cmdline := strings.ReplaceAll(string(raw), "\x00", " ")
		if strings.Contains(cmdline, s) && alive(atoi(e.Name())) {
			found = append(found, e.Name()+": "+cmdline)
		}
	}
	return found
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

// TestClusterLifecycle drives the local provider through the CLI, as a user would: two
// clusters, a Deployment on one, scaling a pool up and down, a hub restart, and a delete.
func TestClusterLifecycle(t *testing.T) {
	t.Parallel()
	f := startFleetHub(t)
	ctx := context.Background()

	out := f.convoy(t, "cluster", "create", "alpha", "--nodes", "3", "--region", "us-east", "--zones", "a,b,c", "--env", "prod")
	for _, want := range []string{`Creating cluster "alpha"`, "Provisioning", `Cluster "alpha" is Ready`, "convoy cluster kubeconfig alpha"} {
		if !strings.Contains(out, want) {
			t.Errorf("cluster create output lacks %q:\n%s", want, out)
		}
	}
	f.convoy(t, "cluster", "create", "beta", "--nodes", "1", "--region", "eu-west")

	alpha, alphaKubeconfig := f.member(t, "alpha")
	if nodes := readyNodes(t, alpha); len(nodes) != 3 {
		t.Fatalf("alpha has Ready nodes %v, want 3", nodes)
	}
	// kwok renews a Lease per node, or the controller-manager would call the nodes NotReady
	// after 50 s and take their pods' Ready condition away.
	eventually(t, "a Lease per node", 30*time.Second, func() (bool, error) {
		leases, err := alpha.CoordinationV1().Leases("kube-node-lease").List(ctx, metav1.ListOptions{})
		return err == nil && len(leases.Items) == 3, err
	})

	// A Deployment applied straight to the member runs on its kwok nodes.
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](6),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
			},
		},
	}
	if _, err := alpha.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	runningPods := func() map[string]string {
		pods, err := alpha.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return nil
		}
		running := map[string]string{}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && strings.HasPrefix(p.Spec.NodeName, "alpha-default-") {
				running[p.Name] = p.Spec.NodeName
			}
		}
		return running
	}
	eventually(t, "6 Running pods on kwok nodes", time.Minute, func() (bool, error) { return len(runningPods()) == 6, nil })

	// Scale the pool up, then down again: the removed nodes are drained first.
	out = f.convoy(t, "cluster", "scale", "alpha", "--nodes", "5")
	if !strings.Contains(out, `Cluster "alpha" is Ready with 5 nodes`) {
		t.Errorf("scale up output:\n%s", out)
	}
	if nodes := readyNodes(t, alpha); len(nodes) != 5 {
		t.Fatalf("after scaling to 5: Ready nodes %v", nodes)
	}
	f.convoy(t, "cluster", "scale", "alpha", "--nodes", "3")
	eventually(t, "3 nodes, and 6 pods again on them", time.Minute, func() (bool, error) {
		nodes := readyNodes(t, alpha)
		pods := runningPods()
		for _, node := range pods {
			if node == "alpha-default-3" || node == "alpha-default-4" {
				return false, nil
			}
		}
		return len(nodes) == 3 && len(pods) == 6, nil
	})
	podsBefore := runningPods()

	// The hub goes away; the members keep running; the hub comes back and finds them.
	if err := f.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := f.Wait(); err != nil {
		t.Fatalf("hub exit: %v", err)
	}
	if nodes := readyNodes(t, alpha); len(nodes) != 3 {
		t.Errorf("while the hub is down, alpha has Ready nodes %v, want 3", nodes)
	}
	f.Process = startHubProcess(t, f.DataDir, apiPort(t, f.DataDir))
	eventually(t, "both clusters Ready after the hub restart", time.Minute, func() (bool, error) {
		list := f.convoy(t, "cluster", "list")
		return strings.Count(list, " Ready ") == 2, nil
	})
	if after := runningPods(); fmt.Sprint(after) != fmt.Sprint(podsBefore) {
		t.Errorf("the hub restart disturbed alpha's pods: before %v, after %v", podsBefore, after)
	}

	out = f.convoy(t, "cluster", "describe", "alpha")
	for _, want := range []string{"Provider:     local", "Nodes:        3/3 Ready", "Conditions:", "Ready", "Converging"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %q:\n%s", want, out)
		}
	}
	// Events mark transitions: each scale is one Event, recorded once, not once per pass.
	var events corev1.EventList
	if err := f.Client().List(context.Background(), &events); err != nil {
		t.Fatal(err)
	}
	scales := map[string]int{}
	for _, e := range events.Items {
		if e.InvolvedObject.Kind != "Cluster" || e.InvolvedObject.Name != "alpha" || e.Reason != "Converging" {
			continue
		}
		for _, s := range []string{"from 3 to 5 nodes", "from 5 to 3 nodes"} {
			if strings.Contains(e.Message, s) {
				scales[s]++
			}
		}
		if e.Series != nil && e.Series.Count > 1 {
			t.Errorf("event %q recorded %d times", e.Message, e.Series.Count)
		}
	}
	if scales["from 3 to 5 nodes"] != 1 || scales["from 5 to 3 nodes"] != 1 {
		t.Errorf("scale events of alpha: %v, want one for 3 -> 5 and one for 5 -> 3", scales)
	}

	// kubectl, given the merged kubeconfig, reaches the member.
	userKubeconfig := filepath.Join(t.TempDir(), "config")
	cmd := exec.Command(convoyBin, "cluster", "kubeconfig", "alpha", "--merge")
	cmd.Env = append(os.Environ(), append(f.env, "KUBECONFIG="+userKubeconfig)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubeconfig --merge: %v\n%s", err, b)
	}
	out = run(t, nil, filepath.Join(hubtest.BinDir(t), "kubectl"), "--kubeconfig", userKubeconfig, "--context", "convoy-alpha", "get", "nodes")
	if strings.Count(out, " Ready ") != 3 {
		t.Errorf("kubectl get nodes through the merged kubeconfig:\n%s", out)
	}
	_ = alphaKubeconfig

	// Delete leaves no process, port or file behind.
	betaDir := filepath.Join(f.DataDir, "clusters", "beta")
	if _, err := os.Stat(betaDir); err != nil {
		t.Fatalf("beta's directory is missing before delete: %v", err)
	}
	out = f.convoy(t, "cluster", "delete", "beta")
	if !strings.Contains(out, `Cluster "beta" deleted`) {
		t.Errorf("delete output:\n%s", out)
	}
	if _, err := os.Stat(betaDir); !os.IsNotExist(err) {
		t.Errorf("beta's directory survived its delete: %v", err)
	}
	if procs := processesMentioning(betaDir); len(procs) != 0 {
		t.Errorf("beta's processes survived its delete: %v", procs)
	}
	if out := f.convoy(t, "cluster", "list"); strings.Contains(out, "beta") || !strings.Contains(out, "alpha") {
		t.Errorf("cluster list after deleting beta:\n%s", out)
	}
}

func apiPort(t *testing.T, dataDir string) int {
	t.Helper()
	var st struct {
		APIServerPort int `json:"apiserverPort"`
	}
	raw, err := os.ReadFile(filepath.Join(dataDir, "hub.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	return st.APIServerPort
}

// TestClusterBadInput checks that the CLI and the API refuse bad clusters with clear errors,
// and that a refusal creates nothing.
func TestClusterBadInput(t *testing.T) {
	t.Parallel()
	f := startFleetHub(t)
	ctx := context.Background()

	refusals := []struct {
		args []string
		want string
	}{
		{[]string{"cluster", "create", "Bad_Name"}, `cluster name "Bad_Name" is invalid`},
		{[]string{"cluster", "create", strings.Repeat("x", 41)}, "use at most 40"},
		{[]string{"cluster", "create", "neg", "--nodes", "-1"}, "--nodes -1 is out of range; use 0 to 500"},
		{[]string{"cluster", "create", "huge", "--nodes", "501"}, "--nodes 501 is out of range"},
		{[]string{"cluster", "create", "cloudy", "--provider", "gke"}, `provider "gke" is unknown`},
		{[]string{"cluster", "create", "ancient", "--version", "v1.20.0"}, "Kubernetes v1.20.0 is not available on this hub (available: " + version.KubernetesPrevious + ", " + version.Kubernetes + ")"},
		{[]string{"cluster", "scale", "ghost", "--nodes", "2"}, `cluster "ghost" not found`},
	}
	for _, r := range refusals {
		out := f.convoyFails(t, r.args...)
		if !strings.Contains(out, r.want) {
			t.Errorf("convoy %s:\n%s\nwant it to say %q", strings.Join(r.args, " "), out, r.want)
		}
	}

	// The API refuses on its own too, so kubectl users get the same answers.
	c := f.Client()
	bad := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "ancient"}, Spec: v1alpha1.ClusterSpec{Provider: "local", KubernetesVersion: "v1.20.0"}}
	err := c.Create(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "Kubernetes v1.20.0 is not available on this hub") {
		t.Errorf("API create with an unknown version: %v", err)
	}

	// A duplicate name is refused, and the first cluster is left alone.
	f.convoy(t, "cluster", "create", "dup", "--nodes", "0", "--wait=false")
	out := f.convoyFails(t, "cluster", "create", "dup", "--nodes", "2")
	if !strings.Contains(out, `cluster "dup" already exists; pick another name`) {
		t.Errorf("duplicate create:\n%s", out)
	}
	got := &v1alpha1.Cluster{}
	if err := c.Get(ctx, client.ObjectKey{Name: "dup"}, got); err != nil || got.Spec.NodePools[0].Count != 0 {
		t.Errorf("the first dup cluster changed: %+v, %v", got.Spec, err)
	}

	// Changing a stored cluster to an unknown version is refused and changes nothing.
	// The hub's controllers write to it too, so a conflict only means "read it again".
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, client.ObjectKey{Name: "dup"}, got); err != nil {
			return err
		}
		got.Spec.KubernetesVersion = "v1.99.0"
		return c.Update(ctx, got)
	})
	if err == nil || !strings.Contains(err.Error(), "not available on this hub") {
		t.Errorf("update to an unknown version: %v", err)
	}

	// Nothing half-made: only dup exists, on the hub and on disk.
	var list v1alpha1.ClusterList
	if err := c.List(ctx, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Name != "dup" {
		t.Errorf("clusters after the refusals: %v", list.Items)
	}
	eventually(t, "dup's directory", 30*time.Second, func() (bool, error) {
		entries, _ := os.ReadDir(filepath.Join(f.DataDir, "clusters"))
		return len(entries) == 1 && entries[0].Name() == "dup", nil
	})
	f.convoy(t, "cluster", "delete", "dup")
}

// TestClusterCrashLoopFails breaks a member's API server for good and expects the Cluster to
// turn Failed with the reason from the API server's log.
func TestClusterCrashLoopFails(t *testing.T) {
	t.Parallel()
	f := startFleetHub(t)
	f.convoy(t, "cluster", "create", "crashy", "--nodes", "1")

	dir := filepath.Join(f.DataDir, "clusters", "crashy")
	for _, name := range []string{"apiserver.crt", "apiserver.key"} {
		if err := os.Remove(filepath.Join(dir, "pki", name)); err != nil {
			t.Fatal(err)
		}
	}
	var st struct {
		Components []kubeproc.Status `json:"components"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "status.json"))
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(raw, &st)
	for _, c := range st.Components {
		if c.Name == "kube-apiserver" {
			syscall.Kill(c.PID, syscall.SIGKILL)
		}
	}

	c := f.Client()
	var got v1alpha1.Cluster
	eventually(t, "the cluster to fail", 2*time.Minute, func() (bool, error) {
		err := c.Get(context.Background(), client.ObjectKey{Name: "crashy"}, &got)
		return err == nil && got.Status.Phase == v1alpha1.ClusterFailed, err
	})
	out := f.convoy(t, "cluster", "describe", "crashy")
	for _, want := range []string{"Phase:        Failed", "kube-apiserver keeps crashing", "apiserver.crt: no such file or directory"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe of the failed cluster lacks %q:\n%s", want, out)
		}
	}
	// A failed cluster can still be deleted.
	f.convoy(t, "cluster", "delete", "crashy")
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("directory left after deleting the failed cluster: %v", err)
	}
}

// TestDeleteInterruptedByHubCrash kills the hub with SIGKILL in the middle of a delete; the
// next hub finishes it.
func TestDeleteInterruptedByHubCrash(t *testing.T) {
	t.Parallel()
	f := startFleetHub(t)
	f.convoy(t, "cluster", "create", "doomed", "--nodes", "1")
	dir := filepath.Join(f.DataDir, "clusters", "doomed")

	c := f.Client()
	ctx := context.Background()
	if err := c.Delete(ctx, &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "doomed"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the delete to start", 30*time.Second, func() (bool, error) {
		got := &v1alpha1.Cluster{}
		err := c.Get(ctx, client.ObjectKey{Name: "doomed"}, got)
		return err == nil && got.Status.Phase == v1alpha1.ClusterDeleting, err
	})
	if err := f.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	f.Wait()
	_, dirErr := os.Stat(dir)
	t.Logf("hub killed during the delete; the cluster's directory then: %v", dirErr)

	f.Process = startHubProcess(t, f.DataDir, apiPort(t, f.DataDir))
	c = f.Client()
	eventually(t, "the delete to finish", time.Minute, func() (bool, error) {
		err := c.Get(ctx, client.ObjectKey{Name: "doomed"}, &v1alpha1.Cluster{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("directory left after the finished delete: %v", err)
	}
	if procs := processesMentioning(dir); len(procs) != 0 {
		t.Errorf("processes left after the finished delete: %v", procs)
	}
}

// TestUpAndDown runs `convoy up` twice and `convoy down --purge`, as the README says, with the
// fleet the README shows: three clusters of two real nodes each. On it, the demo app from
// examples/web, built into the fleet registry and placed with 6 Divided replicas, runs 2 in each
// cluster, answers on each cluster's NodePort naming that cluster, reaches its own Service by
// DNS name from a pod, and logs its requests. Afterwards nothing of the fleet is left on the host.
func TestUpAndDown(t *testing.T) {
	t.Parallel()
	hubtest.RealNodes(t, local.MissingForRealNodes)
	before := hubtest.HostState(t)
	dataDir := filepath.Join(t.TempDir(), "convoy")
	healthPort, _ := kubeproc.FreePort()
	health := fmt.Sprintf("127.0.0.1:%d", healthPort)
	env := []string{"CONVOY_BIN_DIR=" + hubtest.BinDir(t), "CONVOY_DATA_DIR=" + dataDir}
	t.Cleanup(func() {
		// --purge: a test that failed half-way leaves nothing either (real nodes give back
		// their fleet addresses, pods their network namespaces).
		cmd := exec.Command(convoyBin, "down", "--purge")
		cmd.Env = append(os.Environ(), env...)
		cmd.Run()
	})

	// A range of edge addresses of its own, away from a developer's `make up` (127.77.0.0/16)
	// and from the test hubs' (127.PORT/256.PORT%256.0/24: 127.128 and above for the
	// ephemeral ports they get).
	// The fleet starts on the previous Kubernetes version, and moves to the current one at the
	// end (checkFleetUpgrade).
	out := run(t, env, convoyBin, "up", "--health-addr", health, "--edge-addresses", "127.76.0.0/24", "--kubernetes-version", version.KubernetesPrevious)
	for _, want := range []string{"hub ready", "us-east created (2 real nodes in us-east, zones a,b)", "edge pool demo/edge serving at http://127.76.0.1:8080/", "Convoy is up", "NAME", "us-west", "eu-west", "convoy down"} {
		if !strings.Contains(out, want) {
			t.Errorf("convoy up output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, " Ready "); n != 3 {
		t.Errorf("convoy up shows %d Ready clusters, want 3:\n%s", n, out)
	}

	out = run(t, env, convoyBin, "up", "--health-addr", health)
	if !strings.Contains(out, "hub already running") || strings.Count(out, "exists; reusing it") != 4 {
		t.Errorf("second convoy up did not reuse what exists:\n%s", out)
	}

	kubectl := filepath.Join(hubtest.BinDir(t), "kubectl")
	clusters := []string{"us-east", "us-west", "eu-west"}
	kubeconfigs := map[string]string{}
	for _, c := range clusters {
		kubeconfigs[c] = filepath.Join(t.TempDir(), c+".kubeconfig")
		os.WriteFile(kubeconfigs[c], []byte(run(t, env, convoyBin, "cluster", "kubeconfig", c)), 0o600)
	}
	nodes := run(t, nil, kubectl, "--kubeconfig", kubeconfigs["us-east"], "get", "nodes", "-L", "convoy.dev/node-kind")
	if strings.Count(nodes, " Ready ") != 2 || !strings.Contains(nodes, "us-east-default-0") || strings.Count(nodes, " real") != 2 {
		t.Errorf("kubectl get nodes on us-east:\n%s", nodes)
	}

	// The demo app, as the README deploys it.
	root := hubtest.RepoRoot(t)
	run(t, env, convoyBin, "image", "build", "./examples/web", "--dir", root, "--name", "registry.convoy.local/examples/web:1")
	run(t, env, convoyBin, "apply", "-f", filepath.Join(root, "examples/web/web.yaml"))
	run(t, env, convoyBin, "apply", "-f", filepath.Join(root, "examples/web/placement.yaml"))
	for _, c := range clusters {
		start := time.Now()
		waitWebReady(t, kubectl, kubeconfigs[c], c)
		t.Logf("2 web replicas ready on %s after %s", c, time.Since(start).Round(time.Second))
		nodeIP := run(t, nil, kubectl, "--kubeconfig", kubeconfigs[c], "get", "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`)
		for _, path := range []string{"/", "/call?url=http://web.demo.svc.cluster.local/"} {
			url := "http://" + nodeIP + ":30080" + path
			var body string
			eventually(t, c+" answering "+url, time.Minute, func() (bool, error) {
				resp, err := http.Get(url)
				if err != nil {
					return false, nil
				}
				defer resp.Body.Close()
				raw, _ := io.ReadAll(resp.Body)
				body = string(raw)
				return resp.StatusCode == http.StatusOK, nil
			})
			if !strings.Contains(body, "web: cluster "+c+",") {
				t.Errorf("%s answered %q, want it to name cluster %s", url, body, c)
			}
		}
	}
	// Each agent reports how the edge reaches the demo's Service: its NodePort on both nodes,
	// with the two ready endpoints behind them.
	for _, c := range clusters {
		eventually(t, c+" reporting the reach of Service demo/web", time.Minute, func() (bool, error) {
			raw, err := exec.Command(kubectl, "--kubeconfig", filepath.Join(dataDir, "kubeconfig"), "-n", v1alpha1.ClusterNamespace(c), "get", "works", "-o", "json").Output()
			if err != nil {
				return false, err
			}
			var works v1alpha1.WorkList
			if err := json.Unmarshal(raw, &works); err != nil {
				return false, err
			}
			for _, w := range works.Items {
				for _, r := range w.Status.Resources {
					if r.Kind != "Service" || r.Name != "web" || r.Reach == nil {
						continue
					}
					reach, sum := r.Reach, int32(0)
					for _, n := range reach.Nodes {
						sum += n.Endpoints
						if !strings.HasPrefix(n.Address, "10.77.") {
							return false, fmt.Errorf("node address %s is not a fleet address", n.Address)
						}
					}
					ok := len(reach.Ports) == 1 && reach.Ports[0].Port == 80 && reach.Ports[0].NodePort == 30080 &&
						reach.Endpoints == 2 && len(reach.Nodes) == 2 && sum == 2
					return ok, fmt.Errorf("reach %+v", *reach)
				}
			}
			return false, errors.New("no Service web with a reach in the Works")
		})
	}
	checkViaHub(t, env, kubectl, dataDir, "us-east")
	checkTeamLogin(t, env, kubectl, dataDir, clusters)

	// The fleet's metrics: each cluster's collector scrapes the demo's pods (they ask to be,
	// with prometheus.io annotations) at their addresses, and the fleet query of the README
	// shows all three clusters.
	eventually(t, "the demo's requests in the fleet metrics of all three clusters", 2*time.Minute, func() (bool, error) {
		cmd := exec.Command(convoyBin, "metrics", "query", `sum by (cluster) (rate(http_requests_total{namespace="demo"}[1m]))`)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return false, fmt.Errorf("%v: %s", err, out)
		}
		for _, c := range clusters {
			if !strings.Contains(string(out), c) {
				return false, fmt.Errorf("no %s in:\n%s", c, out)
			}
		}
		return true, nil
	})
	// The demo's route, as the README applies it: the hub accepts it and resolves its backend
	// from the agents' reports, and the edge pool `convoy up` made answers from all three
	// regions on its one address.
	hubKubeconfig := filepath.Join(dataDir, "kubeconfig")
	run(t, nil, kubectl, "--kubeconfig", hubKubeconfig, "apply", "-f", filepath.Join(root, "examples/web/route.yaml"))
	eventually(t, "the demo's route accepted with its backend resolved", time.Minute, func() (bool, error) {
		out, err := exec.Command(kubectl, "--kubeconfig", hubKubeconfig, "-n", "demo", "get", "httproute", "web", "-o",
			`jsonpath={.status.parents[0].conditions[?(@.type=="Accepted")].status} {.status.parents[0].conditions[?(@.type=="ResolvedRefs")].status}`).CombinedOutput()
		return err == nil && string(out) == "True True", fmt.Errorf("%s", out)
	})
	seen := map[string]bool{}
	edgeClient := &http.Client{Timeout: 5 * time.Second}
	eventually(t, "the edge pool answering from all three regions", time.Minute, func() (bool, error) {
		resp, err := edgeClient.Get("http://127.76.0.1:8080/")
		if err != nil {
			return false, err
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, c := range clusters {
			if resp.StatusCode == http.StatusOK && strings.Contains(string(raw), "web: cluster "+c+",") {
				seen[c] = true
			}
		}
		return len(seen) == 3, fmt.Errorf("%d %q; seen %v", resp.StatusCode, raw, seen)
	})
	for i := range 30 {
		resp, err := edgeClient.Get("http://127.76.0.1:8080/")
		if err != nil {
			t.Fatalf("request %d through the edge: %v", i, err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(raw), "web: cluster ") {
			t.Fatalf("request %d through the edge: %d %q", i, resp.StatusCode, raw)
		}
	}
	status := run(t, env, convoyBin, "edge", "status", "demo/edge")
	for _, c := range clusters {
		if !regexp.MustCompile(`demo/web/0/http\s+\* /\s+` + c + `\s+2\s+2\s`).MatchString(status) {
			t.Errorf("convoy edge status does not show %s's 2 servers up:\n%s", c, status)
		}
	}
	if !strings.Contains(status, "http://127.76.0.1:8080/") || !strings.Contains(status, "programmed: True") {
		t.Errorf("convoy edge status lacks the pool's URL or its state:\n%s", status)
	}
	logs := run(t, nil, kubectl, "--kubeconfig", kubeconfigs["us-east"], "-n", "demo", "logs", "-l", "app=web", "--tail=-1")
	if !strings.Contains(logs, "GET / 200") {
		t.Errorf("kubectl logs of the web pods on us-east lack the request lines:\n%s", logs)
	}

	// kubectl exec and port-forward reach a real pod through its kubelet. The image holds the
	// web binary alone: run it a second time, and it says its port is taken.
	pod := run(t, nil, kubectl, "--kubeconfig", kubeconfigs["us-east"], "-n", "demo", "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}")
	execOut, _ := exec.Command(kubectl, "--kubeconfig", kubeconfigs["us-east"], "-n", "demo", "exec", pod, "--", "/web").CombinedOutput()
	if !strings.Contains(string(execOut), "address already in use") {
		t.Errorf("kubectl exec %s -- /web:\n%s", pod, execOut)
	}
	localPort, _ := kubeproc.FreePort()
	pf := exec.Command(kubectl, "--kubeconfig", kubeconfigs["us-east"], "-n", "demo", "port-forward", "pod/"+pod, fmt.Sprintf("%d:8080", localPort))
	pfOut := &hubtest.SyncBuffer{}
	pf.Stdout, pf.Stderr = pfOut, pfOut
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	var forwarded string
	eventually(t, "kubectl port-forward answering", time.Minute, func() (bool, error) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", localPort))
		if err != nil {
			return false, fmt.Errorf("%v; port-forward says: %s", err, pfOut.String())
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		forwarded = string(raw)
		return resp.StatusCode == http.StatusOK, nil
	})
	pf.Process.Kill()
	pf.Wait()
	if !strings.Contains(forwarded, "pod "+pod) {
		t.Errorf("port-forward to %s answered %q", pod, forwarded)
	}

	fleetLogs(t, env, kubectl, hubKubeconfig, clusters, "http://127.76.0.1:8080/")
	edgeTeams(t, env, dataDir, kubectl, "127.76.0")
	metricGatedRollout(t, env, hubKubeconfig, kubectl, kubeconfigs)
	checkCatalog(t, env, kubectl, dataDir, kubeconfigs)
	checkFleetUpgrade(t, env, kubectl, kubeconfigs, []string{"eu-west", "us-east", "us-west"}, "http://127.76.0.1:8080/")
	checkAutoscale(t, env, kubectl, kubeconfigs["us-west"], "us-west", dataDir)

	out = run(t, env, convoyBin, "down", "--purge")
	for _, want := range []string{"Stopping the hub", "Stopped local cluster us-east", "Removed " + dataDir, "Convoy is down."} {
		if !strings.Contains(out, want) {
			t.Errorf("convoy down output lacks %q:\n%s", want, out)
		}
	}
	if procs := processesMentioning(dataDir); len(procs) != 0 {
		t.Errorf("processes left after convoy down: %v", procs)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("data dir left after --purge: %v", err)
	}
	after := hubtest.HostState(t)
	for what, had := range before {
		if extra := hubtest.Difference(after[what], had); len(extra) > 0 {
			t.Errorf("left behind after convoy down --purge: %s %v", what, extra)
		}
	}
}

// TestMemberProcessCrashesAreRestarted kills a member's scheduler, then the member's whole
// runtime, and expects both back, with the member's data intact.
func TestMemberProcessCrashesAreRestarted(t *testing.T) {
	t.Parallel()
	f := startFleetHub(t)
	f.convoy(t, "cluster", "create", "phoenix", "--nodes", "1")
	dir := filepath.Join(f.DataDir, "clusters", "phoenix")
	member, _ := f.member(t, "phoenix")
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "keep", Namespace: "default"}, Data: map[string]string{"k": "v"}}
	if _, err := member.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	type component struct {
		Name     string `json:"name"`
		PID      int    `json:"pid"`
		Running  bool   `json:"running"`
		Restarts int    `json:"restarts"`
	}
	status := func() (int, map[string]component) {
		var st struct {
			PID        int         `json:"pid"`
			Components []component `json:"components"`
		}
		raw, _ := os.ReadFile(filepath.Join(dir, "status.json"))
		json.Unmarshal(raw, &st)
		out := map[string]component{}
		for _, c := range st.Components {
			out[c.Name] = c
		}
		return st.PID, out
	}

	// A crashed component is restarted by the cluster's runtime.
	_, before := status()
	if err := syscall.Kill(before["kube-scheduler"].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the scheduler restarted", 30*time.Second, func() (bool, error) {
		_, now := status()
		s := now["kube-scheduler"]
		return s.Running && s.PID != before["kube-scheduler"].PID && s.Restarts == 1, nil
	})

	// A crashed runtime takes its components along, and the hub starts it again.
	runtimePID, _ := status()
	if err := syscall.Kill(runtimePID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a new runtime with every component running", time.Minute, func() (bool, error) {
		pid, now := status()
		if pid == runtimePID || len(now) != 6 {
			return false, nil
		}
		for _, c := range now {
			if !c.Running {
				return false, nil
			}
		}
		return true, nil
	})
	eventually(t, "phoenix Ready again", time.Minute, func() (bool, error) {
		out := f.convoy(t, "cluster", "list")
		return strings.Contains(out, "phoenix") && strings.Contains(out, " Ready "), nil
	})
	member, _ = f.member(t, "phoenix")
	got, err := member.CoreV1().ConfigMaps("default").Get(ctx, "keep", metav1.GetOptions{})
	if err != nil || got.Data["k"] != "v" {
		t.Errorf("the member's data did not survive its runtime's crash: %v, %v", got, err)
	}
	if nodes := readyNodes(t, member); len(nodes) != 1 {
		t.Errorf("Ready nodes after the restart: %v", nodes)
	}
}

// metricGatedRollout rolls the demo out behind the metric gate of the README's
// placement-canary.yaml, under steady requests to us-east: a version whose / fails pauses at the
// canary, with the error ratio in the reason and the other regions untouched, and a good one
// goes through every wave.
func metricGatedRollout(t *testing.T, env []string, hubKubeconfig, kubectl string, kubeconfigs map[string]string) {
	root := hubtest.RepoRoot(t)
	// What ran before froze a cluster: its share failed over, and comes back once it has been
	// Ready for the stable period. A rebalance while the canary soaks changes its replicas,
	// which is a health regression of its own; start from a settled fleet.
	eventually(t, "the demo's Placement settled: nothing failed over, Available everywhere", 3*time.Minute, func() (bool, error) {
		out, err := exec.Command(kubectl, "--kubeconfig", hubKubeconfig, "-n", "demo", "get", "placement", "web", "-o",
			`jsonpath={.status.conditions[?(@.type=="FailedOver")].status} {.status.conditions[?(@.type=="Available")].status}`).CombinedOutput()
		return err == nil && string(out) == "False True", fmt.Errorf("FailedOver, Available: %s", out)
	})
	nodeIP := run(t, nil, kubectl, "--kubeconfig", kubeconfigs["us-east"], "get", "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`)
	stop := make(chan struct{})
	var load sync.WaitGroup
	load.Add(1)
	go func() {
		defer load.Done()
		c := &http.Client{Timeout: 2 * time.Second}
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if resp, err := c.Get("http://" + nodeIP + ":30080/"); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	defer func() { close(stop); load.Wait() }()

	run(t, env, convoyBin, "apply", "-f", filepath.Join(root, "examples/web/placement-canary.yaml"))
	status := func() string {
		cmd := exec.Command(convoyBin, "rollout", "status", "demo/web")
		cmd.Env = append(os.Environ(), env...)
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	eventually(t, "the gated Placement's first revision complete", time.Minute, func() (bool, error) {
		s := status()
		return strings.Contains(s, "phase:   Complete"), errors.New(s)
	})
	envOf := func(c string) string {
		out, _ := exec.Command(kubectl, "--kubeconfig", kubeconfigs[c], "-n", "demo", "get", "deployment", "web",
			"-o", `jsonpath={.spec.template.spec.containers[0].env[?(@.name=="ERROR_RATE")].value}`).CombinedOutput()
		return string(out)
	}

	// A bad version: every request to / fails.
	run(t, nil, kubectl, "--kubeconfig", hubKubeconfig, "-n", "demo", "set", "env", "deployment/web", "ERROR_RATE=100")
	var paused string
	eventually(t, "the bad version paused at the canary by its metric gate", 4*time.Minute, func() (bool, error) {
		paused = status()
		return strings.Contains(paused, "phase:   Paused"), errors.New(paused)
	})
	if !regexp.MustCompile(`wave canary failed its metric gate: .*http_requests_total\{cluster=~"us-east", namespace="demo".* = (1|0\.\d+), above 0\.05`).MatchString(paused) {
		t.Errorf("the pause does not give the canary's error ratio:\n%s", paused)
	}
	if got := envOf("us-east"); got != "100" {
		t.Errorf("the canary runs ERROR_RATE=%q, want the bad version's 100", got)
	}
	for _, c := range []string{"us-west", "eu-west"} {
		if got := envOf(c); got != "" {
			t.Errorf("%s got ERROR_RATE=%q from a rollout paused at the canary", c, got)
		}
	}

	// A good version goes through: the canary soaks with its error ratio at 0, then the rest.
	run(t, nil, kubectl, "--kubeconfig", hubKubeconfig, "-n", "demo", "set", "env", "deployment/web", "ERROR_RATE=0")
	eventually(t, "the good version complete in every wave", 5*time.Minute, func() (bool, error) {
		s := status()
		return strings.Contains(s, "phase:   Complete"), errors.New(s)
	})
	for _, c := range []string{"us-east", "us-west", "eu-west"} {
		if got := envOf(c); got != "0" {
			t.Errorf("%s runs ERROR_RATE=%q after the good version completed, want 0", c, got)
		}
	}
	events := run(t, nil, kubectl, "--kubeconfig", hubKubeconfig, "-n", "demo", "get", "events", "--field-selector", "involvedObject.kind=Placement,involvedObject.name=web", "-o", "jsonpath={range .items[*]}{.note}{.message}{\"\\n\"}{end}")
	for _, want := range []string{"rollout paused: wave canary failed its metric gate", "wave canary done", "rollout of "} {
		if !strings.Contains(events, want) {
			t.Errorf("the Placement's events lack %q:\n%s", want, events)
		}
	}
}

// fleetLogs checks the fleet's logs as the README uses them: the demo's request lines of all
// three clusters in one search, a new request followed (-f) as it comes, and a query the store
// refuses answered with the store's reason. It prints how long each followed line took, from
// the request to the line on convoy logs' output: a measurement (docs/BENCH.md), not a goal the
// test holds the machine to.
func fleetLogs(t *testing.T, env []string, kubectl, hubKubeconfig string, clusters []string, edge string) {
	t.Helper()
	eventually(t, "the demo's request lines of all three clusters in convoy logs", 3*time.Minute, func() (bool, error) {
		cmd := exec.Command(convoyBin, "logs", "-n", "demo", "-l", "app=web", "--grep", "GET / ", "--since", "10m")
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return false, fmt.Errorf("%v: %s", err, out)
		}
		for _, c := range clusters {
			if !regexp.MustCompile(`(?m)^\[` + c + ` demo/web-[a-z0-9-]+/web\] .*GET / 200`).Match(out) {
				return false, fmt.Errorf("no request line of %s in:\n%.2000s", c, out)
			}
		}
		return true, nil
	})

	follow := exec.Command(convoyBin, "logs", "-n", "demo", "-f", "--grep", "followed-")
	follow.Env = append(os.Environ(), env...)
	out := &hubtest.SyncBuffer{}
	follow.Stdout, follow.Stderr = out, out
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { follow.Process.Kill(); follow.Wait() }()
	client := &http.Client{Timeout: 5 * time.Second}
	send := func(mark string) time.Time {
		at := time.Now()
		resp, err := client.Get(edge + mark)
		if err != nil {
			t.Fatalf("request %s through the edge: %v", mark, err)
		}
		resp.Body.Close()
		return at
	}
	// Until the follow runs, requests go by unseen: send until one shows.
	n := 0
	eventually(t, "convoy logs -f following the demo's requests", time.Minute, func() (bool, error) {
		n++
		send(fmt.Sprintf("followed-warmup-%d", n))
		return strings.Contains(out.String(), "followed-warmup-"), fmt.Errorf("convoy logs -f printed: %q", out.String())
	})
	var took []time.Duration
	for i := range 8 {
		mark := fmt.Sprintf("followed-%d-%d", i, time.Now().UnixNano())
		at := send(mark)
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(out.String(), "/"+mark+" ") {
			if time.Now().After(deadline) {
				t.Fatalf("convoy logs -f did not show request %s within 30 s; it printed:\n%s", mark, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		took = append(took, time.Since(at))
	}
	slices.Sort(took)
	t.Logf("convoy logs -f: a new request shown after %v (p50 %v, max %v)", took, took[len(took)/2], took[len(took)-1])
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if !regexp.MustCompile(`^\[(` + strings.Join(clusters, "|") + `) demo/web-[a-z0-9-]+/web\] `).MatchString(line) {
			t.Errorf("convoy logs -f printed a line without its cluster and pod: %q", line)
		}
	}

	// A query the store refuses: its reason, through the hub's API, and through convoy logs.
	raw, err := exec.Command(kubectl, "--kubeconfig", hubKubeconfig, "get", "--raw", v1alpha1.LogsPrefix+"/select/logsql/query?query=%7C%20nosuchpipe").CombinedOutput()
	if err == nil || !strings.Contains(string(raw), "nosuchpipe") {
		t.Errorf("an invalid LogsQL query through the hub: err %v, output %s", err, raw)
	}
	cmd := exec.Command(convoyBin, "logs", "-n", "demo", "--grep", "(unclosed")
	cmd.Env = append(os.Environ(), env...)
	if raw, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(raw), "not a regular expression") {
		t.Errorf("convoy logs --grep '(unclosed': err %v, output %s", err, raw)
	}
}

// waitWebReady waits for the demo app's 2 replicas to be ready on cluster c. It says what it
// last saw, and on a timeout what the cluster's pods and events in demo were, so that a slow
// machine's failure can be read from the test's output alone.
func waitWebReady(t *testing.T, kubectl, kubeconfig, c string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	var last string
	for {
		got, err := exec.Command(kubectl, "--kubeconfig", kubeconfig, "-n", "demo", "get", "deployment", "web",
			"-o", "jsonpath=replicas {.spec.replicas}, ready {.status.readyReplicas}").CombinedOutput()
		last = strings.TrimSpace(string(got))
		if err == nil && last == "replicas 2, ready 2" {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	var diag strings.Builder
	for _, args := range [][]string{
		{"get", "pods", "-o", "wide"},
		{"get", "events", "--sort-by=.lastTimestamp"},
		{"-n", "convoy-system", "get", "pods", "-o", "wide"},
		{"get", "nodes", "-o", "wide"},
	} {
		out, _ := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig, "-n", "demo"}, args...)...).CombinedOutput()
		fmt.Fprintf(&diag, "$ kubectl %s\n%s\n", strings.Join(args, " "), out)
	}
	t.Fatalf("timed out after 3m waiting for 2 web replicas ready on %s; last saw %q\n%s", c, last, diag.String())
}

// checkViaHub reaches cluster's API server through the hub (its agent's tunnel) with the
// kubeconfig `convoy cluster kubeconfig --via-hub` prints, as the hub's admin: a list, a
// followed log, an exec and a port-forward, which all stream; a hub user whom the member's
// RBAC grants nothing gets the member's 403, and the hub audits who did what on which cluster.
func checkViaHub(t *testing.T, env []string, kubectl, dataDir, cluster string) {
	t.Helper()
	viaHub := filepath.Join(t.TempDir(), cluster+"-via-hub.kubeconfig")
	os.WriteFile(viaHub, []byte(run(t, env, convoyBin, "cluster", "kubeconfig", cluster, "--via-hub")), 0o600)
	if raw, _ := os.ReadFile(viaHub); !strings.Contains(string(raw), v1alpha1.ClusterProxyPath(cluster)) {
		t.Fatalf("the --via-hub kubeconfig does not go through the hub:\n%s", raw)
	}
	k := func(args ...string) *exec.Cmd {
		return exec.Command(kubectl, append([]string{"--kubeconfig", viaHub, "-n", "demo"}, args...)...)
	}
	pods := run(t, nil, kubectl, "--kubeconfig", viaHub, "-n", "demo", "get", "pods", "-l", "app=web", "-o", "name")
	pod := strings.Fields(pods)[0]

	// A followed log goes on streaming: the readiness probes' requests (every 2 s) come after
	// it began, with --tail 0.
	logs := k("logs", "-f", "--tail", "0", pod)
	var out hubtest.SyncBuffer
	logs.Stdout, logs.Stderr = &out, &out
	hubtest.Must(t, logs.Start())
	defer func() { logs.Process.Kill(); logs.Wait() }()
	eventually(t, "a new line on logs -f through the hub", 30*time.Second, func() (bool, error) {
		return strings.Contains(out.String(), "GET /healthz"), fmt.Errorf("logs -f so far: %q", out.String())
	})

	// An exec runs in the pod, with its environment: the demo's binary, started again, names
	// its cluster and finds its port taken.
	got, err := k("exec", pod, "--", "/web").CombinedOutput()
	if !strings.Contains(string(got), "as cluster "+cluster) || !strings.Contains(string(got), "address already in use") {
		t.Errorf("kubectl exec through the hub: %v\n%s", err, got)
	}

	// A port-forward carries a request to the pod.
	port, _ := kubeproc.FreePort()
	pf := k("port-forward", pod, fmt.Sprintf("%d:8080", port))
	var pfOut hubtest.SyncBuffer
	pf.Stdout, pf.Stderr = &pfOut, &pfOut
	hubtest.Must(t, pf.Start())
	defer func() { pf.Process.Kill(); pf.Wait() }()
	eventually(t, "a request through port-forward through the hub", 30*time.Second, func() (bool, error) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			return false, fmt.Errorf("%v; port-forward says %q", err, pfOut.String())
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), "web: cluster "+cluster), fmt.Errorf("answered %q", body)
	})

	// A hub user the member's RBAC knows nothing of: refused by the member, as that user.
	hubKubeconfig := filepath.Join(dataDir, "kubeconfig")
	run(t, nil, kubectl, "--kubeconfig", hubKubeconfig, "-n", "default", "create", "serviceaccount", "bob")
	token := strings.TrimSpace(run(t, nil, kubectl, "--kubeconfig", hubKubeconfig, "-n", "default", "create", "token", "bob"))
	bob := filepath.Join(t.TempDir(), "bob.kubeconfig")
	raw, _ := os.ReadFile(viaHub)
	cfg, err := clientcmd.Load(raw)
	hubtest.Must(t, err)
	for _, a := range cfg.AuthInfos {
		*a = clientcmdapi.AuthInfo{Token: token}
	}
	hubtest.Must(t, clientcmd.WriteToFile(*cfg, bob))
	got, err = exec.Command(kubectl, "--kubeconfig", bob, "-n", "demo", "get", "pods").CombinedOutput()
	// A hub ServiceAccount is no account of the member's: it is convoy:hub:system:serviceaccount:....
	if err == nil || !strings.Contains(string(got), `User "convoy:hub:system:serviceaccount:default:bob" cannot list resource "pods"`) {
		t.Errorf("bob through the hub: %v\n%s", err, got)
	}
	// A cluster the hub does not have.
	got, err = exec.Command(kubectl, "--kubeconfig", viaHub, "--server", strings.Replace(cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster].Server, "/clusters/"+cluster+"/", "/clusters/nowhere/", 1),
		"get", "--raw", "/api/v1/namespaces").CombinedOutput()
	if err == nil || !strings.Contains(string(got), `cluster "nowhere" not found`) {
		t.Errorf("a cluster the hub does not have: %v\n%s", err, got)
	}

	// The hub's audit of what went through.
	audit, _ := os.ReadFile(filepath.Join(dataDir, "logs", "cluster-access.log"))
	for _, want := range []string{
		`"user":"convoy-admin"`, `"cluster":"` + cluster + `"`, `"path":"/api/v1/namespaces/demo/pods/` + strings.TrimPrefix(pod, "pod/") + `/exec"`,
		`"path":"/api/v1/namespaces/demo/pods/` + strings.TrimPrefix(pod, "pod/") + `/portforward","status":101`,
		`"user":"system:serviceaccount:default:bob"`, `"status":403`,
	} {
		if !strings.Contains(string(audit), want) {
			t.Errorf("the cluster access audit lacks %s:\n%s", want, audit)
		}
	}
}
