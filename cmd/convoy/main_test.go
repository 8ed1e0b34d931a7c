package main_test

import (
	"bytes"
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

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

var convoyBin string

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard()) // the tests' clients log nothing worth reading
	dir, err := os.MkdirTemp("", "convoy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	convoyBin = filepath.Join(dir, "convoy")
	build := exec.Command("go", "build", "-o", convoyBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as make builds it: the hub packs it into the agent's image
	out, err := build.CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build convoy: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startHubProcess runs `convoy hub` (this build) as its own process and waits until it is ready.
func startHubProcess(t *testing.T, dataDir string, apiPort int) *hubtest.Process {
	t.Helper()
	return hubtest.StartProcess(t, hubtest.ProcessOptions{Convoy: convoyBin, DataDir: dataDir, Port: apiPort})
}

func childPIDs(t *testing.T, st hub.Status) []int {
	t.Helper()
	var pids []int
	for _, c := range st.Children {
		if !c.Running || c.PID == 0 {
			t.Fatalf("child %s not running: %+v", c.Name, c)
		}
		pids = append(pids, c.PID)
	}
	if len(pids) < 3 {
		t.Fatalf("want kine, kube-apiserver and kube-controller-manager, got %+v", st.Children)
	}
	return pids
}

func waitGone(t *testing.T, pids []int) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 15*time.Second, true, func(context.Context) (bool, error) {
		for _, pid := range pids {
			if alive(pid) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		for _, pid := range pids {
			if alive(pid) {
				cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				t.Errorf("child %d survived its hub: %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
			}
		}
	}
}

func alive(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(raw)
	return !strings.HasPrefix(s[strings.LastIndexByte(s, ')')+2:], "Z")
}

func TestHubSIGTERMStopsEveryChild(t *testing.T) {
	t.Parallel()
	port, _ := kubeproc.FreePort()
	hp := startHubProcess(t, t.TempDir(), port)
	pids := childPIDs(t, hp.Status())

	out := hp.Output()
	kubeconfig := filepath.Join(hp.DataDir, "kubeconfig")
	if !strings.Contains(out, "Convoy hub is ready") || !strings.Contains(out, "Kubeconfig:  "+kubeconfig) {
		t.Errorf("start-up output does not say where the kubeconfig is:\n%s", out)
	}
	if n := strings.Count(out, `msg="hub ready"`); n != 1 {
		t.Errorf("readiness logged %d times, want once", n)
	}
	// A client with a watch open, as every agent has, does not hold the API server up.
	w, err := hp.Clientset().CoreV1().ConfigMaps("default").Watch(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	if err := hp.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := hp.Wait(); err != nil {
		t.Errorf("convoy hub exited with %v after SIGTERM, want status 0", err)
	}
	waitGone(t, pids)
	// Children stop in reverse order: the controller-manager before the API server before kine.
	logs := hp.Output()
	order := []int{
		strings.Index(logs, `msg="child stopped" child=kube-controller-manager`),
		strings.Index(logs, `msg="child stopped" child=kube-apiserver`),
		strings.Index(logs, `msg="child stopped" child=kine`),
		strings.Index(logs, `msg="hub stopped"`),
	}
	for i := range order {
		if order[i] < 0 || (i > 0 && order[i] < order[i-1]) {
			t.Fatalf("children did not stop in order controller-manager, apiserver, kine (positions %v):\n%s", order, logs)
		}
	}
	if strings.Contains(logs, "ignored SIGTERM") {
		t.Errorf("a child did not stop on SIGTERM and was killed:\n%s", logs)
	}
	if entries, _ := filepath.Glob(filepath.Join(hp.DataDir, "run", "*.pid")); len(entries) != 0 {
		t.Errorf("pid files left behind: %v", entries)
	}
}

func TestHubKilledWithSIGKILLRestartsWithItsObjects(t *testing.T) {
	t.Parallel()
	port, _ := kubeproc.FreePort()
	dataDir := t.TempDir()
	hp := startHubProcess(t, dataDir, port)
	pids := childPIDs(t, hp.Status())

	ctx := context.Background()
	c := hp.Client()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "survivor"}, Data: map[string]string{"k": "v"}}
	if err := c.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}

	if err := hp.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = hp.Wait()
	// No child outlives a hub killed with SIGKILL.
	waitGone(t, pids)

	hp2 := startHubProcess(t, dataDir, port)
	got := &corev1.ConfigMap{}
	if err := hp2.Client().Get(ctx, client.ObjectKeyFromObject(cm), got); err != nil {
		t.Fatalf("object lost across kill -9 and restart: %v", err)
	}
	if got.Data["k"] != "v" {
		t.Errorf("object changed across restart: %v", got.Data)
	}
	if err := hp2.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := hp2.Wait(); err != nil {
		t.Errorf("second hub exited with %v", err)
	}
}

// TestCLIAndKubectlAgainstTheHub uses the printed kubeconfig with convoy and kubectl, the way
// a user would after `convoy hub`.
func TestCLIAndKubectlAgainstTheHub(t *testing.T) {
	t.Parallel()
	port, _ := kubeproc.FreePort()
	hp := startHubProcess(t, t.TempDir(), port)
	kubeconfig := filepath.Join(hp.DataDir, "kubeconfig")
	kubectl := filepath.Join(hubtest.BinDir(t), "kubectl")

	manifest := filepath.Join(t.TempDir(), "clusters.yaml")
	if err := os.WriteFile(manifest, []byte(`apiVersion: convoy.dev/v1alpha1
kind: Cluster
metadata:
  name: us-east
spec:
  provider: local
  region: us-east
  environment: prod
  zones: [a, b]
  nodePools:
  - {name: default, count: 3, zone: a}
---
apiVersion: convoy.dev/v1alpha1
kind: Placement
metadata:
  name: web
  namespace: default
spec:
  resources:
  - {group: apps, kind: Deployment, name: web}
  replicas: {type: Divided}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, nil, kubectl, "--kubeconfig", kubeconfig, "apply", "-f", manifest)
	out := run(t, nil, kubectl, "--kubeconfig", kubeconfig, "get", "clusters")
	if !strings.Contains(out, "us-east") || !strings.Contains(out, "local") {
		t.Errorf("kubectl get clusters:\n%s", out)
	}

	// kubectl shows the API's own validation message.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("apiVersion: convoy.dev/v1alpha1\nkind: Cluster\nmetadata: {name: bad}\nspec: {provider: local, nodePools: [{name: p, count: 9999}]}\n"), 0o644)
	cmd := exec.Command(kubectl, "--kubeconfig", kubeconfig, "apply", "-f", bad)
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "should be less than or equal to 500") {
		t.Errorf("kubectl apply of 9999 nodes: err=%v\n%s", err, b)
	}

	env := []string{"CONVOY_KUBECONFIG=" + kubeconfig}
	out = run(t, env, convoyBin, "get", "clusters")
	for _, want := range []string{"NAME", "PROVIDER", "us-east", "local", "prod", "0/0"} {
		if !strings.Contains(out, want) {
			t.Errorf("convoy get clusters lacks %q:\n%s", want, out)
		}
	}
	out = run(t, nil, convoyBin, "--kubeconfig", kubeconfig, "get", "clusters", "us-east", "-o", "yaml")
	if !strings.Contains(out, "kind: Cluster") || !strings.Contains(out, "region: us-east") {
		t.Errorf("convoy get clusters us-east -o yaml:\n%s", out)
	}
	out = run(t, env, convoyBin, "get", "clusters", "-o", "json")
	var list struct {
		Kind  string `json:"kind"`
		Items []struct {
			Metadata struct {
				Name   string            `json:"name"`
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || list.Kind != "List" || len(list.Items) != 1 || list.Items[0].Metadata.Name != "us-east" {
		t.Errorf("convoy get clusters -o json: %v\n%s", err, out)
	}
	out = run(t, env, convoyBin, "get", "placements", "-A")
	for _, want := range []string{"NAMESPACE", "default", "web", "Divided"} {
		if !strings.Contains(out, want) {
			t.Errorf("convoy get placements -A lacks %q:\n%s", want, out)
		}
	}

	// Errors a user can act on.
	cmd = exec.Command(convoyBin, "get", "clusters", "nope")
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), `cluster "nope" not found`) {
		t.Errorf("get of a missing cluster: err=%v\n%s", err, b)
	}
	cmd = exec.Command(convoyBin, "get", "clusters", "--kubeconfig", filepath.Join(t.TempDir(), "none"))
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "start a hub with `convoy hub`") {
		t.Errorf("get without a hub: err=%v\n%s", err, b)
	}
	cmd = exec.Command(convoyBin, "get", "widgets")
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "use clusters or placements") {
		t.Errorf("get widgets: err=%v\n%s", err, b)
	}
}

func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}
