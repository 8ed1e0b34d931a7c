package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/provider/local"
)

// edgeTeams runs the edge load balancer's end-to-end scenario on the fleet of TestUpAndDown,
// whose demo app already answers through the pool demo/edge at EDGENET.1:8080 (blog's pool
// gets EDGENET.2):
//   - a second team, blog, deploys its own app (another image) as a Service also named web,
//     with its own Gateway and route; each team's address reaches only its own app, in all
//     three regions;
//   - under steady load (vegeta) on blog's pool, all of us-west is frozen (SIGSTOP) for 30 s,
//     then resumed: no request fails, and the p99 during the loss is logged;
//   - under load, a route change and an endpoint change are each live quickly (logged), with
//     no failed request.
func edgeTeams(t *testing.T, env []string, dataDir, kubectl, edgeNet string) {
	root := hubtest.RepoRoot(t)
	hub := filepath.Join(dataDir, "kubeconfig")
	run(t, env, convoyBin, "image", "build", "./cmd/convoy/testdata/blog", "--dir", root, "--name", "registry.convoy.local/blog/web:1")
	run(t, env, convoyBin, "apply", "-f", filepath.Join(root, "cmd/convoy/testdata/blog/blog.yaml"))
	run(t, nil, kubectl, "--kubeconfig", hub, "apply", "-f", filepath.Join(root, "cmd/convoy/testdata/blog/edge.yaml"))
	blog, demo, blogNew := "http://"+edgeNet+".2:8080/app", "http://"+edgeNet+".1:8080/", "http://"+edgeNet+".2:8080/new"
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(url string) (int, string, error) {
		resp, err := client.Get(url)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil && b == "" {
			return resp.StatusCode, "", err
		}
		return resp.StatusCode, b, nil
	}
	regions := []string{"us-east", "us-west", "eu-west"}
	allRegions := func(url, app string) func() (bool, error) {
		seen := map[string]bool{}
		return func() (bool, error) {
			code, body, err := get(url)
			for _, r := range regions {
				if code == http.StatusOK && strings.HasPrefix(body, app+": cluster "+r+",") {
					seen[r] = true
				}
			}
			return len(seen) == 3, fmt.Errorf("%d %q %v; seen %v", code, body, err, seen)
		}
	}
	eventually(t, "blog's pool answering from all three regions", 3*time.Minute, allRegions(blog, "blog"))
	// Isolation: each address reaches only its team's app.
	for i := range 30 {
		for url, app := range map[string]string{blog: "blog", demo: "web"} {
			code, body, err := get(url)
			if err != nil || code != http.StatusOK || !strings.HasPrefix(body, app+": cluster ") {
				t.Fatalf("request %d to %s: %d %q %v; want an answer of %s", i, url, code, body, err, app)
			}
		}
	}

	// Lose a whole cluster under load: every process of us-west stops for 30 s.
	pids := clusterProcesses(t, filepath.Join(dataDir, "clusters", "us-west"))
	signal := func(sig syscall.Signal) {
		for _, pid := range pids {
			_ = syscall.Kill(pid, sig)
		}
	}
	t.Cleanup(func() { signal(syscall.SIGCONT) })
	var lost, back time.Time
	results := attack(t, blog, 50, 45*time.Second, 5*time.Second, 0, func() error {
		signal(syscall.SIGSTOP)
		lost = time.Now()
		time.Sleep(30 * time.Second) // the scenario: 30 s of a frozen cluster
		signal(syscall.SIGCONT)
		back = time.Now()
		return nil
	})
	var during vegeta.Metrics
	for _, r := range results {
		if !r.Timestamp.Before(lost) && r.Timestamp.Before(back) {
			during.Add(r)
		}
	}
	during.Close()
	all := summarize(t, "us-west frozen for 30 s", results)
	t.Logf("edge: while us-west was frozen: %d requests, p50 %s, p99 %s, max %s; over the whole run: %d requests, p99 %s",
		during.Requests, during.Latencies.P50, during.Latencies.P99, during.Latencies.Max, all.Requests, all.Latencies.P99)
	eventually(t, "us-west answering through blog's pool again", 2*time.Minute, func() (bool, error) {
		code, body, err := get(blog)
		return code == http.StatusOK && strings.HasPrefix(body, "blog: cluster us-west,"), fmt.Errorf("%d %q %v", code, body, err)
	})

	// A route change, under load: a rule for /new (which answered 404, "no route") is live
	// within the time logged, from the start of kubectl patch; nothing fails meanwhile.
	if code, _, _ := get(blogNew); code != http.StatusNotFound {
		t.Fatalf("/new answered %d before its rule; want 404", code)
	}
	var routeLive time.Duration
	results = attack(t, blog, 50, 2*time.Minute, 2*time.Second, 2*time.Second, func() error {
		start := time.Now()
		if out, err := exec.Command(kubectl, "--kubeconfig", hub, "-n", "blog", "patch", "httproute", "web", "--type=json", "-p",
			`[{"op":"add","path":"/spec/rules/-","value":{"matches":[{"path":{"type":"PathPrefix","value":"/new"}}],"backendRefs":[{"name":"web","port":80}]}}]`).CombinedOutput(); err != nil {
			return fmt.Errorf("kubectl patch: %v: %s", err, out)
		}
		for time.Since(start) < 110*time.Second {
			if code, body, _ := get(blogNew); code == http.StatusOK && strings.HasPrefix(body, "blog: ") {
				routeLive = time.Since(start)
				return nil
			}
			time.Sleep(10 * time.Millisecond) // polling the edge, as a client would
		}
		return nil
	})
	summarize(t, "a route change", results)
	if routeLive == 0 {
		t.Fatal("the route change was not live after 110 s")
	}
	t.Logf("edge: a route change was live %s after kubectl patch began", routeLive.Round(time.Millisecond))

	// An endpoint change, under load: blog's Deployment goes from 3 to 6 replicas. Logged: from
	// us-east's EndpointSlice showing more ready endpoints to the pool's HAProxy weighing
	// us-east's servers anew (its Runtime API, no reload).
	usEast := filepath.Join(t.TempDir(), "us-east.kubeconfig")
	if err := os.WriteFile(usEast, []byte(run(t, env, convoyBin, "cluster", "kubeconfig", "us-east")), 0o600); err != nil {
		t.Fatal(err)
	}
	metrics := poolMetrics(t, kubectl, hub, "blog.edge")
	weightsBefore := usEastWeights(metrics)
	readyInUSEast := func() int {
		out, _ := exec.Command(kubectl, "--kubeconfig", usEast, "-n", "blog", "get", "endpointslices", "-l", "kubernetes.io/service-name=web",
			"-o", `jsonpath={range .items[*].endpoints[?(@.conditions.ready==true)]}x{end}`).Output()
		return strings.Count(string(out), "x")
	}
	// us-east's share is not always 1 before, nor 2 after: the failover above may still hold
	// us-west's share elsewhere (until it has been Ready for the failover's 30 s), and then
	// us-east goes from 1 or 2 to 3. The change is the first time its ready count grows.
	readyBefore, readyAfter := readyInUSEast(), 0
	var endpointsAt, weightsAt time.Time
	// The wait is a bound, not a goal: under a loaded machine (CI runs this package's tests in
	// parallel) the new pods may take many seconds to start; the load lasts until both are seen.
	results = attack(t, blog, 50, 2*time.Minute, 2*time.Second, 2*time.Second, func() error {
		if out, err := exec.Command(kubectl, "--kubeconfig", hub, "-n", "blog", "scale", "deployment", "web", "--replicas=6").CombinedOutput(); err != nil {
			return fmt.Errorf("kubectl scale: %v: %s", err, out)
		}
		for start := time.Now(); time.Since(start) < 110*time.Second && (endpointsAt.IsZero() || weightsAt.IsZero()); time.Sleep(10 * time.Millisecond) {
			if endpointsAt.IsZero() {
				if readyAfter = readyInUSEast(); readyAfter > readyBefore {
					endpointsAt = time.Now()
				}
			}
			if weightsAt.IsZero() && usEastWeights(metrics) != weightsBefore {
				weightsAt = time.Now()
			}
		}
		return nil
	})
	summarize(t, "an endpoint change", results)
	if endpointsAt.IsZero() || weightsAt.IsZero() {
		edgeDiagnostics(t, dataDir, kubectl, usEast)
		t.Fatalf("the endpoint change was not seen: us-east's ready endpoints %d -> %d at %v, weights %s -> %s at %v",
			readyBefore, readyAfter, endpointsAt, weightsBefore, usEastWeights(metrics), weightsAt)
	}
	t.Logf("edge: an endpoint change was live in HAProxy %s after us-east's EndpointSlice showed it (ready %d -> %d, weights %s -> %s)",
		weightsAt.Sub(endpointsAt).Round(time.Millisecond), readyBefore, readyAfter, weightsBefore, usEastWeights(metrics))
}

// edgeDiagnostics logs what the fleet shows of blog's app when a change was not seen: the
// Placement's status at the hub, the Deployment and pods on us-east, and the ends of the
// hub's and us-east's agent's logs.
func edgeDiagnostics(t *testing.T, dataDir, kubectl, usEast string) {
	t.Helper()
	hubConfig := filepath.Join(dataDir, "kubeconfig")
	for _, args := range [][]string{
		{"--kubeconfig", hubConfig, "-n", "blog", "get", "placement", "web", "-o", "yaml"},
		{"--kubeconfig", hubConfig, "get", "works", "-A", "-o", "custom-columns=NS:.metadata.namespace,NAME:.metadata.name,GEN:.metadata.generation,OBSERVED:.status.observedGeneration"},
		{"--kubeconfig", usEast, "-n", "blog", "get", "deployment,replicaset,pods", "-o", "wide"},
		{"--kubeconfig", usEast, "-n", "blog", "get", "events", "--sort-by=.lastTimestamp"},
	} {
		out, err := exec.Command(kubectl, args...).CombinedOutput()
		t.Logf("kubectl %s: %v\n%s", strings.Join(args[2:], " "), err, out)
	}
	for _, l := range []string{filepath.Join(dataDir, "logs", "hub.log"), filepath.Join(dataDir, "clusters", "us-east", "logs", "convoy-agent.log")} {
		raw, _ := os.ReadFile(l)
		if len(raw) > 8000 {
			raw = raw[len(raw)-8000:]
		}
		t.Logf("%s:\n%s", l, raw)
	}
}

// attack sends GETs to url at rate a second for d. At time at it runs action, in a goroutine;
// it returns every result once both are done, and fails the test if the action failed. With
// tail > 0 the load stops tail after the action is done, if d has not run out before: an
// action that waits for a change bounds the load by that wait, not by a guess of it.
func attack(t *testing.T, url string, rate int, d, at, tail time.Duration, action func() error) []*vegeta.Result {
	t.Helper()
	a := vegeta.NewAttacker(vegeta.Timeout(30*time.Second), vegeta.KeepAlive(true), vegeta.Workers(20), vegeta.MaxBody(256))
	targeter := vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodGet, URL: url})
	acted := make(chan error, 1)
	timer := time.AfterFunc(at, func() {
		err := action()
		if tail > 0 {
			time.AfterFunc(tail, func() { a.Stop() })
		}
		acted <- err
	})
	var out []*vegeta.Result
	for r := range a.Attack(targeter, vegeta.Rate{Freq: rate, Per: time.Second}, d, "edge") {
		out = append(out, r)
	}
	if timer.Stop() {
		acted <- nil // d was shorter than at
	}
	if err := <-acted; err != nil {
		t.Fatal(err)
	}
	return out
}

// summarize fails the test for each failed request (an error, a status but 200, or an answer
// that is not blog's) and returns the run's metrics.
func summarize(t *testing.T, what string, results []*vegeta.Result) vegeta.Metrics {
	t.Helper()
	var m vegeta.Metrics
	failed := 0
	for _, r := range results {
		m.Add(r)
		if r.Error != "" || r.Code != http.StatusOK || !strings.HasPrefix(string(r.Body), "blog: ") {
			failed++
			if failed <= 5 {
				t.Errorf("%s: request at %s failed: %d %q %s", what, r.Timestamp.Format("15:04:05.000"), r.Code, r.Body, r.Error)
			}
		}
	}
	m.Close()
	if failed > 0 {
		t.Errorf("%s: %d of %d requests failed; want none", what, failed, len(results))
	}
	return m
}

// clusterProcesses is every process of a local cluster: its runtime, what the runtime's
// session runs (control plane, containerd, kubelets, the containerd shims, which leave their
// parent but not the session), and the shims' children, the pods.
func clusterProcesses(t *testing.T, clusterDir string) []int {
	t.Helper()
	rs, err := local.ReadRuntimeStatus(clusterDir)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	session := map[int]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp session ...
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 4 {
			continue
		}
		parent[pid], _ = strconv.Atoi(f[1])
		session[pid], _ = strconv.Atoi(f[3])
	}
	in := func(pid int) bool {
		for p := pid; p > 1; p = parent[p] {
			if p == rs.PID || session[p] == rs.PID {
				return true
			}
		}
		return false
	}
	var out []int
	for pid := range parent {
		if in(pid) {
			out = append(out, pid)
		}
	}
	if len(out) < 10 {
		t.Fatalf("only %d processes found for %s", len(out), clusterDir)
	}
	return out
}

// poolMetrics is the metrics URL of the hub's instance of an EdgePool.
func poolMetrics(t *testing.T, kubectl, hub, pool string) string {
	t.Helper()
	raw := run(t, nil, kubectl, "--kubeconfig", hub, "-n", v1alpha1.SystemNamespace, "get", "edgepool", pool, "-o", "json")
	var p v1alpha1.EdgePool
	if err := json.Unmarshal([]byte(raw), &p); err != nil || len(p.Status.Instances) == 0 {
		t.Fatalf("EdgePool %s: %v %+v", pool, err, p.Status)
	}
	return p.Status.Instances[0].Metrics
}

// usEastWeights is the weights HAProxy gives us-east's servers, as "W1,W2,...".
func usEastWeights(metrics string) string {
	resp, err := http.Get(metrics)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	var w []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "haproxy_server_weight{") && strings.Contains(l, `server="us-east:`) {
			w = append(w, l[strings.LastIndexByte(l, ' ')+1:])
		}
	}
	return strings.Join(w, ",")
}

// An edge host (`convoy edge run`, its own process, with the identity `convoy edge
// kubeconfig` makes) runs instances of the pools beside the hub's, on the same address and
// port. It may read the pools and nothing else. When the hub stops, its instances stop with
// it and the edge host's serve on; when the Gateway is deleted, the edge host's stop too.
// startEdgePool starts a hub with a Gateway shop/edge on a free port whose route reaches a
// listener of the test, reported as us-east's Service shop/web on one node at 127.0.0.1. It
// returns the hub and the listener's port.
func startEdgePool(t *testing.T, opts ...func(*hub.Options)) (*hubtest.Hub, int) {
	t.Helper()
	hubtest.RequireHAProxy(t)
	h := hubtest.Start(t, opts...)
	c := h.Client
	ctx := context.Background()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	hubtest.Must(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "shop: ok") })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	for _, ns := range []string{"shop", v1alpha1.ClusterNamespace("us-east")} {
		hubtest.Must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	listenerPort, _ := kubeproc.FreePort()
	port := gatewayv1.PortNumber(80)
	hubtest.Must(t, c.Create(ctx, &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "edge"}, Spec: gatewayv1.GatewaySpec{
		GatewayClassName: v1alpha1.EdgeGatewayClass,
		Listeners:        []gatewayv1.Listener{{Name: "http", Port: gatewayv1.PortNumber(listenerPort), Protocol: gatewayv1.HTTPProtocolType}}}}))
	hubtest.Must(t, c.Create(ctx, &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: gatewayv1.HTTPRouteSpec{
		CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "edge"}}},
		Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
			BackendObjectReference: gatewayv1.BackendObjectReference{Name: "web", Port: &port}}}}}}}}))
	w := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace("us-east"), Name: "shop-web"}}
	hubtest.Must(t, c.Create(ctx, w))
	w.Status.Resources = []v1alpha1.ResourceStatus{{
		ResourceIdentifier: v1alpha1.ResourceIdentifier{Version: "v1", Kind: "Service", Namespace: "shop", Name: "web"},
		State:              v1alpha1.ResourceApplied,
		Reach: &v1alpha1.ServiceReach{Ports: []v1alpha1.ReachPort{{Port: 80, NodePort: int32(l.Addr().(*net.TCPAddr).Port)}}, Endpoints: 1,
			Nodes: []v1alpha1.ReachNode{{Address: "127.0.0.1", Endpoints: 1}}},
	}}
	hubtest.Must(t, c.Status().Update(ctx, w))
	return h, listenerPort
}

// servingInstances waits until n instances serve the current generation of shop/edge's pool,
// and returns the pool and its URL.
func servingInstances(t *testing.T, c client.Client, n, listenerPort int, why func() string) (v1alpha1.EdgePool, string) {
	t.Helper()
	var p v1alpha1.EdgePool
	eventually(t, fmt.Sprintf("%d instances serving the pool", n), time.Minute, func() (bool, error) {
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: v1alpha1.SystemNamespace, Name: v1alpha1.EdgePoolName("shop", "edge")}, &p); err != nil {
			return false, err
		}
		serving := 0
		for _, in := range p.Status.Instances {
			if in.Phase == v1alpha1.EdgeServing && in.ObservedGeneration == p.Generation {
				serving++
			}
		}
		return serving == n, fmt.Errorf("instances %+v %s", p.Status.Instances, why())
	})
	return p, fmt.Sprintf("http://%s/", net.JoinHostPort(p.Spec.Address, strconv.Itoa(listenerPort)))
}

func TestEdgeHost(t *testing.T) {
	t.Parallel()
	h, listenerPort := startEdgePool(t)
	c := h.Client
	hubKubeconfig := filepath.Join(h.Options.DataDir, "kubeconfig")
	kubectl := filepath.Join(hubtest.BinDir(t), "kubectl")
	env := []string{"CONVOY_KUBECONFIG=" + hubKubeconfig}
	ctx := context.Background()

	// The edge host, with its own identity.
	edgeKubeconfig := filepath.Join(t.TempDir(), "edge-1.kubeconfig")
	hubtest.Must(t, os.WriteFile(edgeKubeconfig, []byte(run(t, env, convoyBin, "edge", "kubeconfig", "edge-1")), 0o600))
	if out, err := exec.Command(kubectl, "--kubeconfig", edgeKubeconfig, "get", "gateways", "-A").CombinedOutput(); err == nil || !strings.Contains(string(out), "forbidden") {
		t.Errorf("the edge host's identity may list Gateways: %v\n%s", err, out)
	}
	if out, err := exec.Command(kubectl, "--kubeconfig", edgeKubeconfig, "-n", v1alpha1.SystemNamespace, "get", "edgepools").CombinedOutput(); err != nil {
		t.Errorf("the edge host's identity may not list EdgePools: %v\n%s", err, out)
	}
	edgeDir := filepath.Join(t.TempDir(), "edge-1")
	edge := exec.Command(convoyBin, "edge", "run", "--name", "edge-1", "--kubeconfig", edgeKubeconfig, "--dir", edgeDir)
	edgeLog := &hubtest.SyncBuffer{}
	edge.Stdout, edge.Stderr = edgeLog, edgeLog
	hubtest.Must(t, edge.Start())
	stopped := false
	stopEdge := func() {
		if !stopped {
			stopped = true
			_ = edge.Process.Signal(syscall.SIGTERM)
			_ = edge.Wait()
		}
		if procs := processesMentioning(edgeDir); len(procs) != 0 {
			t.Errorf("processes left after the edge host stopped: %v", procs)
		}
	}
	t.Cleanup(stopEdge)

	_, url := servingInstances(t, c, 2, listenerPort, func() string { return "; the edge host says:\n" + edgeLog.String() })
	// New connections each time: the kernel spreads them over every instance on the port.
	httpc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() error {
		resp, err := httpc.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	eventually(t, "the pool answering", 30*time.Second, func() (bool, error) { err := get(); return err == nil, err })

	// The hub stops; the pool serves on: its own instance outlives it, and the edge host's.
	hubPIDFile := filepath.Join(h.Options.DataDir, "edge", v1alpha1.EdgePoolName("shop", "edge"), "0", "haproxy.pid")
	pidBefore, err := os.ReadFile(hubPIDFile)
	hubtest.Must(t, err)
	h.Stop(ctx)
	for i := range 20 {
		if err := get(); err != nil {
			t.Fatalf("request %d with the hub down: %v", i, err)
		}
	}
	if procs := processesMentioning(filepath.Join(h.Options.DataDir, "edge")); len(procs) == 0 {
		t.Error("the hub's HAProxy instance stopped with the hub")
	}
	// The hub back: both serve. The edge host stopped: it takes its instance out of the
	// pool's status.
	h.Restart()
	c = h.Client
	servingInstances(t, c, 2, listenerPort, func() string { return "" })
	if pidAfter, _ := os.ReadFile(hubPIDFile); string(pidAfter) != string(pidBefore) {
		t.Errorf("the hub started a new HAProxy (%q) instead of taking over its own (%q)", pidAfter, pidBefore)
	}
	stopEdge()
	p, _ := servingInstances(t, c, 1, listenerPort, func() string { return "" })
	if len(p.Status.Instances) != 1 || p.Status.Instances[0].Supervisor != v1alpha1.EdgeSupervisorHub {
		t.Errorf("instances after the edge host stopped: %+v", p.Status.Instances)
	}

	// The edge host again, then the Gateway deleted: it stops its instance.
	edge = exec.Command(convoyBin, "edge", "run", "--name", "edge-1", "--kubeconfig", edgeKubeconfig, "--dir", edgeDir)
	edge.Stdout, edge.Stderr = edgeLog, edgeLog
	hubtest.Must(t, edge.Start())
	stopped = false
	servingInstances(t, c, 2, listenerPort, func() string { return "; the edge host says:\n" + edgeLog.String() })
	hubtest.Must(t, c.Delete(ctx, &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "edge"}}))
	eventually(t, "the edge host's instance stopped", time.Minute, func() (bool, error) {
		var haproxy []string
		for _, p := range processesMentioning(edgeDir) {
			if strings.Contains(p, "haproxy") {
				haproxy = append(haproxy, p)
			}
		}
		return len(haproxy) == 0 && get() != nil, fmt.Errorf("processes %v", haproxy)
	})
}

// A pool's HAProxy instance that crashes is restarted, and its peer on the same port serves
// meanwhile.
func TestEdgeInstanceCrash(t *testing.T) {
	t.Parallel()
	h, listenerPort := startEdgePool(t, func(o *hub.Options) { o.EdgeInstances = 2 })
	c := h.Client
	p, url := servingInstances(t, c, 2, listenerPort, func() string { return "" })
	// New connections each time: the kernel spreads them over both instances' sockets.
	httpc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() error {
		resp, err := httpc.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	eventually(t, "the pool answering", 30*time.Second, func() (bool, error) { err := get(); return err == nil, err })
	metrics0 := p.Status.Instances[0].Metrics
	// Instance 0's master, in its own process group with its worker (kubeproc's pid file).
	raw, err := os.ReadFile(filepath.Join(h.Options.DataDir, "edge", v1alpha1.EdgePoolName("shop", "edge"), "0", "haproxy.pid"))
	hubtest.Must(t, err)
	pid, err := strconv.Atoi(strings.Fields(string(raw))[0]) // "PID START-TIME PATH"
	hubtest.Must(t, err)
	hubtest.Must(t, syscall.Kill(-pid, syscall.SIGKILL)) // the master and its worker
	// A connection that reached the killed worker's socket in the instant it died is reset by
	// the kernel; once it is gone, every new one goes to the peer.
	eventually(t, "instance 0's processes gone", 10*time.Second, func() (bool, error) {
		err := syscall.Kill(-pid, 0)
		return errors.Is(err, syscall.ESRCH), fmt.Errorf("kill -0: %v", err)
	})
	for i := range 50 {
		if err := get(); err != nil {
			t.Fatalf("request %d after instance 0 was killed: %v", i, err)
		}
	}
	eventually(t, "instance 0 restarted", time.Minute, func() (bool, error) {
		resp, err := http.Get(metrics0)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("status %d", resp.StatusCode)
	})
}
