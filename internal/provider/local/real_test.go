package local_test

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/image"
	"github.com/convoy-dev/convoy/internal/node"
	"github.com/convoy-dev/convoy/internal/provider"
	"github.com/convoy-dev/convoy/internal/provider/local"
	"github.com/convoy-dev/convoy/internal/registry"
	"github.com/convoy-dev/convoy/internal/version"
)

// echoServer is a test workload: it answers with its pod's name, fetches another address on
// /fetch?url=..., and logs one line per request.
const echoServer = `package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
)

func main() {
	// A new connection for each fetch, so that a Service's requests spread over its pods.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Println(r.Method, r.URL.String())
		if u := r.URL.Query().Get("url"); u != "" {
			resp, err := client.Get(u)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			io.Copy(w, resp.Body)
			return
		}
		fmt.Fprintf(w, "pod %s\n", os.Getenv("POD_NAME"))
	})
	http.ListenAndServe(":8080", nil)
}
`

// TestRealNodes runs a local cluster with a pool of two real nodes: they register and are
// Ready, a pod on each runs a real container pulled from the fleet registry, one pod reaches the
// other across nodes, the host and the API server's proxy reach each pod at its address, a Service by ClusterIP, NodePort and DNS name; a claim of the default
// StorageClass keeps what a pod wrote; a missing image says so; the API server serves the
// container's log; a killed kubelet comes back and a hung one makes its node NotReady; and
// deleting the cluster leaves nothing on the host: no process, network namespace, veth,
// iptables rule, mount or cgroup of it.
func TestRealNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real nodes")
	}
	hubtest.RealNodes(t, local.MissingForRealNodes)
	before := hubtest.HostState(t)
	ctx := context.Background()
	reg, err := registry.Start(ctx, t.TempDir(), "127.0.0.1:0", hubtest.Logger(t))
	must(t, err)
	t.Cleanup(func() { _ = reg.Close(context.Background()) })
	pull, err := reg.ServePulls("127.0.0.1:0")
	must(t, err)
	p := newProvider(t)
	p.Registry, p.RegistryPull = reg.Addr(), pull
	c := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "rn"}, Spec: v1alpha1.ClusterSpec{
		Provider: v1alpha1.ProviderLocal, Region: "r", Zones: []string{"a", "b"},
		NodePools: []v1alpha1.NodePool{{Name: "real", Kind: v1alpha1.NodeReal, Count: 2}},
	}}
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			_ = p.Delete(context.Background(), c.Name)
		}
	})
	must(t, p.Create(ctx, c))
	hubtest.Eventually(t, "two real nodes Ready", 3*time.Minute, func() (bool, error) {
		st, err := p.Status(ctx, c)
		return err == nil && st.Nodes.Ready == 2, fmt.Errorf("%+v %v", st, err)
	})
	cs := member(t, p, c)
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	must(t, err)
	var names []string
	for _, n := range nodes.Items {
		names = append(names, n.Name)
		if n.Status.NodeInfo.ContainerRuntimeVersion == "" || !strings.HasPrefix(n.Status.NodeInfo.ContainerRuntimeVersion, "containerd://") {
			t.Errorf("node %s runs %q, want containerd", n.Name, n.Status.NodeInfo.ContainerRuntimeVersion)
		}
		if n.Labels[corev1.LabelTopologyZone] == "" || n.Labels["convoy.dev/pool"] != "real" {
			t.Errorf("node %s labels %v", n.Name, n.Labels)
		}
	}
	slices.Sort(names)

	// A real container on each node, from an image made here and pulled from the fleet registry.
	pushEchoImage(t, reg.Addr())
	for i, n := range names {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("echo-%d", i), Labels: map[string]string{"app": "echo"}}, Spec: corev1.PodSpec{
			NodeName: n,
			Containers: []corev1.Container{{Name: "echo", Image: "registry.convoy.local/test/echo:1",
				Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}}},
		}}
		_, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
		must(t, err)
	}
	ips := map[string]string{}
	hubtest.Eventually(t, "both pods Running", 2*time.Minute, func() (bool, error) {
		for i := range names {
			pod, err := cs.CoreV1().Pods("default").Get(ctx, fmt.Sprintf("echo-%d", i), metav1.GetOptions{})
			if err != nil || pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP == "" {
				return false, fmt.Errorf("echo-%d: %v %v", i, pod.Status.Phase, err)
			}
			ips[pod.Name] = pod.Status.PodIP
		}
		return true, nil
	})
	for _, ip := range ips {
		if addr, err := netip.ParseAddr(ip); err != nil || !node.PodNetworkSpace.Contains(addr) {
			t.Errorf("pod addresses %v, want addresses of the cluster's own pod network, in %s", ips, node.PodNetworkSpace)
		}
	}
	if ips["echo-0"] == ips["echo-1"] {
		t.Errorf("pod addresses %v, want two", ips)
	}

	// The host routes the cluster's pod network: it reaches each pod at its address, and so
	// does the API server's pod proxy.
	for name, ip := range ips {
		hubtest.Eventually(t, "the host reaching "+name+" at "+ip, time.Minute, func() (bool, error) {
			out, err := exec.Command("curl", "-s", "--max-time", "3", "http://"+ip+":8080/").CombinedOutput()
			return err == nil && strings.Contains(string(out), "pod "+name), fmt.Errorf("%v: %s", err, out)
		})
		hubtest.Eventually(t, "the API server's proxy to "+name, time.Minute, func() (bool, error) {
			out, err := cs.CoreV1().Pods("default").ProxyGet("http", name, "8080", "/", nil).DoRaw(ctx)
			return err == nil && strings.Contains(string(out), "pod "+name), fmt.Errorf("%v: %s", err, out)
		})
	}

	// From node 0, through the pod there, to the pod on node 1.
	ns0 := node.Spec{Dir: filepath.Join(p.Root, c.Name, "nodes", names[0])}.NetNS()
	url := fmt.Sprintf("http://%s:8080/?url=http://%s:8080/", ips["echo-0"], ips["echo-1"])
	var got string
	hubtest.Eventually(t, "a pod reaching the pod on the other node", time.Minute, func() (bool, error) {
		out, err := exec.Command("ip", "netns", "exec", ns0, "curl", "-s", "--max-time", "3", url).CombinedOutput()
		got = string(out)
		return err == nil && strings.Contains(got, "pod echo-1"), fmt.Errorf("%v: %s", err, out)
	})

	// A Service: kube-proxy on each node takes its ClusterIP, from a pod, and its NodePort, from
	// the host, to the pods of both nodes.
	svc, err := cs.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "echo"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "echo"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{})
	must(t, err)
	viaService := fmt.Sprintf("http://%s:8080/?url=http://%s/", ips["echo-0"], svc.Spec.ClusterIP)
	nodeIPs := map[string]string{}
	for _, n := range nodes.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				nodeIPs[n.Name] = a.Address
			}
		}
	}
	nodePort := fmt.Sprintf("http://%s:%d/", nodeIPs[names[1]], svc.Spec.Ports[0].NodePort)
	for what, u := range map[string]string{"the ClusterIP from a pod": viaService, "the NodePort from the host": nodePort} {
		seen := map[string]bool{}
		hubtest.Eventually(t, what+" reaching the pods of both nodes", time.Minute, func() (bool, error) {
			var cmd *exec.Cmd
			if u == nodePort {
				cmd = exec.Command("curl", "-s", "--max-time", "3", u)
			} else {
				cmd = exec.Command("ip", "netns", "exec", ns0, "curl", "-s", "--max-time", "3", u)
			}
			out, err := cmd.CombinedOutput()
			if err == nil {
				seen[strings.TrimSpace(string(out))] = true
			}
			return seen["pod echo-0"] && seen["pod echo-1"], fmt.Errorf("%v: %s (seen %v)", err, out, seen)
		})
	}

	// The add-ons: CoreDNS answers for the cluster's Services, from a pod.
	hubtest.Eventually(t, "CoreDNS available", 2*time.Minute, func() (bool, error) {
		d, err := cs.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		return err == nil && d.Status.AvailableReplicas == 2, fmt.Errorf("%v %+v", err, d.Status)
	})
	byName := fmt.Sprintf("http://%s:8080/?url=http://echo.default.svc.cluster.local/", ips["echo-0"])
	hubtest.Eventually(t, "a pod reaching a Service by its DNS name", time.Minute, func() (bool, error) {
		out, err := exec.Command("ip", "netns", "exec", ns0, "curl", "-s", "--max-time", "5", byName).CombinedOutput()
		return err == nil && strings.HasPrefix(string(out), "pod echo-"), fmt.Errorf("%v: %s", err, out)
	})

	// The default StorageClass: a claim is bound where its first pod runs, what that pod
	// writes stays after it, and deleting the claim removes it from the host.
	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")}}}}
	_, err = cs.CoreV1().PersistentVolumeClaims("default").Create(ctx, claim, metav1.CreateOptions{})
	must(t, err)
	writer := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "writer"}, Spec: corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever,
		Containers: []corev1.Container{{Name: "w", Image: registry.Host + "/convoy/volume:1",
			Command:      []string{"/convoy-volume", "-a", "create", "-p", "/data/written-by-pod"},
			VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
		Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}},
	}}
	_, err = cs.CoreV1().Pods("default").Create(ctx, writer, metav1.CreateOptions{})
	must(t, err)
	hubtest.Eventually(t, "the writer pod Succeeded", 2*time.Minute, func() (bool, error) {
		pod, err := cs.CoreV1().Pods("default").Get(ctx, "writer", metav1.GetOptions{})
		return err == nil && pod.Status.Phase == corev1.PodSucceeded, fmt.Errorf("%v %v", err, pod.Status.Phase)
	})
	bound, err := cs.CoreV1().PersistentVolumeClaims("default").Get(ctx, "data", metav1.GetOptions{})
	must(t, err)
	pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, bound.Spec.VolumeName, metav1.GetOptions{})
	must(t, err)
	if pv.Spec.HostPath == nil && pv.Spec.Local == nil {
		t.Fatalf("volume %s is neither hostPath nor local: %+v", pv.Name, pv.Spec.PersistentVolumeSource)
	}
	volDir := ""
	if pv.Spec.HostPath != nil {
		volDir = pv.Spec.HostPath.Path
	} else {
		volDir = pv.Spec.Local.Path
	}
	if !strings.HasPrefix(volDir, filepath.Join(p.Root, c.Name, "volumes")+"/") {
		t.Errorf("volume at %s, want under the cluster's volumes directory", volDir)
	}
	must(t, cs.CoreV1().Pods("default").Delete(ctx, "writer", metav1.DeleteOptions{}))
	hubtest.Eventually(t, "the writer pod gone", time.Minute, func() (bool, error) {
		_, err := cs.CoreV1().Pods("default").Get(ctx, "writer", metav1.GetOptions{})
		return apierrors.IsNotFound(err), err
	})
	if _, err := os.Stat(filepath.Join(volDir, "written-by-pod")); err != nil {
		t.Errorf("what the pod wrote is not in its volume after the pod: %v", err)
	}
	must(t, cs.CoreV1().PersistentVolumeClaims("default").Delete(ctx, "data", metav1.DeleteOptions{}))
	hubtest.Eventually(t, "the volume removed from the host", 2*time.Minute, func() (bool, error) {
		_, err := os.Stat(volDir)
		return os.IsNotExist(err), err
	})

	// An image the registry lacks: the pod says so, with the registry's answer.
	missing := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "missing"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "m", Image: registry.Host + "/no/such:1"}}}}
	_, err = cs.CoreV1().Pods("default").Create(ctx, missing, metav1.CreateOptions{})
	must(t, err)
	hubtest.Eventually(t, "the pod of a missing image in ErrImagePull", 2*time.Minute, func() (bool, error) {
		pod, err := cs.CoreV1().Pods("default").Get(ctx, "missing", metav1.GetOptions{})
		if err != nil || len(pod.Status.ContainerStatuses) == 0 || pod.Status.ContainerStatuses[0].State.Waiting == nil {
			return false, err
		}
		w := pod.Status.ContainerStatuses[0].State.Waiting
		return (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") && strings.Contains(w.Message, "not found"), fmt.Errorf("%s: %s", w.Reason, w.Message)
	})

	// The API server reaches the kubelet for the container's log.
	logs, err := cs.CoreV1().Pods("default").GetLogs("echo-1", &corev1.PodLogOptions{}).Stream(ctx)
	must(t, err)
	raw, _ := io.ReadAll(logs)
	logs.Close()
	if !strings.Contains(string(raw), "GET /") {
		t.Errorf("echo-1's log: %q", raw)
	}

	// A kubelet that crashes is restarted by the cluster's runtime; one that hangs (stopped)
	// makes its node NotReady, and the member's node lifecycle controller taints it.
	kubelet := "kubelet-" + names[1]
	pid := components(t, p.Root, c.Name)[kubelet]
	if pid == 0 {
		t.Fatalf("no running %s in the runtime's status", kubelet)
	}
	must(t, syscall.Kill(pid, syscall.SIGKILL))
	hubtest.Eventually(t, "the kubelet restarted by the runtime", time.Minute, func() (bool, error) {
		now := components(t, p.Root, c.Name)[kubelet]
		return now != 0 && now != pid, fmt.Errorf("pid %d", now)
	})
	pid = components(t, p.Root, c.Name)[kubelet]
	must(t, syscall.Kill(pid, syscall.SIGSTOP))
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	})
	nodeState := func() (ready bool, unreachable bool) {
		n, err := cs.CoreV1().Nodes().Get(ctx, names[1], metav1.GetOptions{})
		if err != nil {
			return false, false
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				ready = cond.Status == corev1.ConditionTrue
			}
		}
		for _, taint := range n.Spec.Taints {
			if taint.Key == corev1.TaintNodeUnreachable {
				unreachable = true
			}
		}
		return ready, unreachable
	}
	hubtest.Eventually(t, "the node of a hung kubelet NotReady and tainted unreachable", 3*time.Minute, func() (bool, error) {
		ready, unreachable := nodeState()
		return !ready && unreachable, fmt.Errorf("ready=%v unreachable=%v", ready, unreachable)
	})
	must(t, syscall.Kill(pid, syscall.SIGCONT))
	resumed = true
	hubtest.Eventually(t, "the node Ready again", 2*time.Minute, func() (bool, error) {
		ready, unreachable := nodeState()
		return ready && !unreachable, fmt.Errorf("ready=%v unreachable=%v", ready, unreachable)
	})

	// Deleting the cluster leaves nothing of it on the host (what the check looks for is
	// there while it runs).
	during := hubtest.HostState(t)
	for _, what := range []string{"network namespaces", "links", "mounts", "processes", "iptables rules", "cgroups", "CNI files"} {
		if len(hubtest.Difference(during[what], before[what])) == 0 {
			t.Errorf("while the cluster runs, the host shows no %s of it: the check after delete would prove nothing", what)
		}
	}
	must(t, p.Delete(ctx, c.Name))
	deleted = true
	after := hubtest.HostState(t)
	for what, had := range before {
		if extra := hubtest.Difference(after[what], had); len(extra) > 0 {
			t.Errorf("left behind after delete: %s %v", what, extra)
		}
	}
}

// pushEchoImage compiles the echo server statically and pushes its image to the registry at
// addr as test/echo:1.
func pushEchoImage(t *testing.T, addr string) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte(echoServer), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module echo\n\ngo 1.26\n"), 0o644))
	bin := filepath.Join(dir, "echo")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir, cmd.Env = dir, append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the echo server: %v: %s", err, out)
	}
	_, err := registry.EnsureFromBinary(context.Background(), addr, "test/echo:1", bin, image.Build{})
	must(t, err)
}

func member(t *testing.T, p *local.Provider, c *v1alpha1.Cluster) kubernetes.Interface {
	raw, err := p.Kubeconfig(context.Background(), c)
	must(t, err)
	cfg, err := clientcmd.RESTConfigFromKubeConfig(raw)
	must(t, err)
	cs, err := kubernetes.NewForConfig(cfg)
	must(t, err)
	return cs
}

// TestRealNodeUpgradeWaitsForItsDisruptionBudget upgrades a cluster with one real node whose pod
// a PodDisruptionBudget protects: the control plane moves first, then the node is cordoned and
// drained, and the runtime reports the upgrade blocked by the budget, without forcing the
// eviction, until the budget is deleted; then the node's kubelet and kube-proxy restart on the
// new version, and the node comes back Ready on it and schedulable.
func TestRealNodeUpgradeWaitsForItsDisruptionBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real nodes")
	}
	hubtest.RealNodes(t, local.MissingForRealNodes)
	before := hubtest.HostState(t)
	binDir, from, to := upgradeBinDir(t)
	ctx := context.Background()
	reg, err := registry.Start(ctx, t.TempDir(), "127.0.0.1:0", hubtest.Logger(t))
	must(t, err)
	t.Cleanup(func() { _ = reg.Close(context.Background()) })
	pull, err := reg.ServePulls("127.0.0.1:0")
	must(t, err)
	p := newProvider(t)
	p.BinDir, p.Registry, p.RegistryPull = binDir, reg.Addr(), pull
	c := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "up"}, Spec: v1alpha1.ClusterSpec{
		Provider: v1alpha1.ProviderLocal, KubernetesVersion: from,
		NodePools: []v1alpha1.NodePool{{Name: "real", Kind: v1alpha1.NodeReal, Count: 1}},
	}}
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			_ = p.Delete(context.Background(), c.Name)
		}
	})
	must(t, p.Create(ctx, c))
	hubtest.Eventually(t, "the real node Ready", 3*time.Minute, func() (bool, error) {
		st, err := p.Status(ctx, c)
		return err == nil && st.Nodes.Ready == 1 && st.Upgrading == "", fmt.Errorf("%+v %v", st, err)
	})
	cs := member(t, p, c)
	name := "up-real-0"
	kubelet := "kubelet-" + name
	runs := func() string { return kubeletOf(components(t, p.Root, c.Name)[kubelet]) }
	kubeletOfVersion := func(v string) string {
		if v == version.Kubernetes {
			return filepath.Join(binDir, "kubelet")
		}
		return filepath.Join(binDir, "kubernetes", v, "kubelet")
	}
	if got, want := runs(), kubeletOfVersion(from); got != want {
		t.Fatalf("the node's kubelet runs %q, want %q", got, want)
	}

	// A pod (a ReplicaSet's: a pod without a controller blocks a drain on its own) that its
	// budget allows no disruption of.
	labels := map[string]string{"app": "pinned"}
	_, err = cs.AppsV1().ReplicaSets("default").Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "pinned"},
		Spec: appsv1.ReplicaSetSpec{Replicas: new(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				NodeSelector: map[string]string{"kubernetes.io/hostname": name},
				Containers:   []corev1.Container{{Name: "pause", Image: local.PauseImage}},
			}}},
	}, metav1.CreateOptions{})
	must(t, err)
	_, err = cs.PolicyV1().PodDisruptionBudgets("default").Create(ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "keep-pinned"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: new(intstr.FromInt32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "pinned"}}},
	}, metav1.CreateOptions{})
	must(t, err)
	var pinned string
	hubtest.Eventually(t, "the pinned pod Running", 2*time.Minute, func() (bool, error) {
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=pinned"})
		if err != nil || len(pods.Items) != 1 {
			return false, fmt.Errorf("%v %v", pods, err)
		}
		pinned = pods.Items[0].Name
		return pods.Items[0].Status.Phase == corev1.PodRunning, fmt.Errorf("%v", pods.Items[0].Status.Phase)
	})

	c.Spec.KubernetesVersion = to
	start := time.Now()
	must(t, p.Upgrade(ctx, c))
	var st provider.Status
	hubtest.Eventually(t, "the upgrade blocked by the budget", 3*time.Minute, func() (bool, error) {
		st, err = p.Status(ctx, c)
		return err == nil && strings.Contains(st.Blocked, "PodDisruptionBudget default/keep-pinned") && strings.Contains(st.Blocked, "pod default/"+pinned),
			fmt.Errorf("%+v %v", st, err)
	})
	t.Logf("blocked after %s: %s (upgrading: %s)", time.Since(start).Round(time.Second), st.Blocked, st.Upgrading)
	if !strings.Contains(st.Upgrading, "upgrading node "+name+" (1 of 1): draining") {
		t.Errorf("Upgrading = %q, want the node's drain", st.Upgrading)
	}
	// The control plane went first; the node waits, cordoned, on its old kubelet, with its pod.
	rs, err := local.ReadRuntimeStatus(filepath.Join(p.Root, c.Name))
	must(t, err)
	if rs.Version != to {
		t.Errorf("the runtime's control plane runs %s while the node drains, want %s", rs.Version, to)
	}
	n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	must(t, err)
	if !n.Spec.Unschedulable || n.Annotations["convoy.dev/upgrade-cordoned"] != to {
		t.Errorf("the draining node: unschedulable %v, annotations %v", n.Spec.Unschedulable, n.Annotations)
	}
	if now := runs(); now != kubeletOfVersion(from) {
		t.Errorf("the kubelet moved to %s before its node was drained", now)
	}
	if pod, err := cs.CoreV1().Pods("default").Get(ctx, pinned, metav1.GetOptions{}); err != nil || pod.DeletionTimestamp != nil {
		t.Errorf("the protected pod was evicted anyway: %v, %v", err, pod.DeletionTimestamp)
	}

	must(t, cs.PolicyV1().PodDisruptionBudgets("default").Delete(ctx, "keep-pinned", metav1.DeleteOptions{}))
	unblocked := time.Now()
	hubtest.Eventually(t, "the node upgraded, Ready and schedulable", 5*time.Minute, func() (bool, error) {
		st, err := p.Status(ctx, c)
		if err != nil || st.Upgrading != "" || st.Blocked != "" {
			return false, fmt.Errorf("%+v %v", st, err)
		}
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return n.Status.NodeInfo.KubeletVersion == version.Kubernetes && provider.NodeReady(n) && !n.Spec.Unschedulable &&
				n.Annotations["convoy.dev/upgrade-cordoned"] == "" && n.Labels["convoy.dev/kube-proxy-version"] == version.Kubernetes,
			fmt.Errorf("kubelet %s, ready %v, unschedulable %v, annotations %v, labels %v", n.Status.NodeInfo.KubeletVersion,
				provider.NodeReady(n), n.Spec.Unschedulable, n.Annotations, n.Labels)
	})
	t.Logf("upgraded %s after the budget's deletion (%s in all)", time.Since(unblocked).Round(time.Second), time.Since(start).Round(time.Second))
	if got, want := runs(), kubeletOfVersion(to); got != want {
		t.Errorf("the node's kubelet runs %q, want %q", got, want)
	}
	if _, err := cs.CoreV1().Pods("default").Get(ctx, pinned, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the pinned pod is still there once its budget was gone: %v", err)
	}
	// A second Upgrade to the same version changes nothing.
	pid := components(t, p.Root, c.Name)[kubelet]
	must(t, p.Upgrade(ctx, c))
	if again := components(t, p.Root, c.Name)[kubelet]; again != pid {
		t.Errorf("a repeated Upgrade restarted the kubelet (pid %d -> %d)", pid, again)
	}

	must(t, p.Delete(ctx, c.Name))
	deleted = true
	after := hubtest.HostState(t)
	for what, had := range before {
		if extra := hubtest.Difference(after[what], had); len(extra) > 0 {
			t.Errorf("left behind after delete: %s %v", what, extra)
		}
	}
}

// upgradeBinDir is a bin directory to upgrade a cluster in, and the versions to go from and to:
// bin itself, from the previous Kubernetes version that `make tools` builds to the default one,
// when it is there; else a copy of bin (of links) with a stand-in v1.38.0 of bin's own binaries
// under another name, to go to from the default one. A stand-in has the same mechanics, but its
// binaries report the default version.
func upgradeBinDir(t *testing.T) (binDir, from, to string) {
	bin := hubtest.BinDir(t)
	prev := filepath.Join(bin, "kubernetes", version.KubernetesPrevious)
	if slices.Contains(local.AvailableVersions(bin), version.KubernetesPrevious) {
		if _, err := os.Stat(filepath.Join(prev, "kubelet")); err == nil {
			t.Logf("upgrading from %s to %s, both real", version.KubernetesPrevious, version.Kubernetes)
			return bin, version.KubernetesPrevious, version.Kubernetes
		}
	}
	to = "v1.38.0"
	t.Logf("no %s: upgrading from %s to a stand-in %s of the same binaries", prev, version.Kubernetes, to)
	dir := t.TempDir()
	entries, err := os.ReadDir(bin)
	must(t, err)
	for _, e := range entries {
		if e.Name() == "kubernetes" {
			continue // a link would put the stand-in into bin's own directory of versions
		}
		must(t, os.Symlink(filepath.Join(bin, e.Name()), filepath.Join(dir, e.Name())))
	}
	next := filepath.Join(dir, "kubernetes", to)
	must(t, os.MkdirAll(next, 0o755))
	for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"} {
		must(t, os.Symlink(filepath.Join(bin, name), filepath.Join(next, name)))
	}
	return dir, version.Kubernetes, to
}

// kubeletOf is the kubelet executable a node's process runs: nsenter --net=NS -- KUBELET ...,
// which nsenter then executes.
func kubeletOf(pid int) string {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	args := strings.Split(string(raw), "\x00")
	if i := slices.Index(args, "--"); i >= 0 && i+1 < len(args) && filepath.Base(args[0]) == "nsenter" {
		return args[i+1]
	}
	return args[0]
}
