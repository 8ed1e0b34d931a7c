package bench

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/edge"
	"github.com/convoy-dev/convoy/internal/edgepool"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// BenchmarkEdge measures the edge load balancer's data plane on this machine, side by side in
// one run:
//   - requests a second and p99 through a Convoy pool (edgepool, as the supervisors run it)
//     and through a bare HAProxy with a hand-written configuration of the same backends: six
//     processes of the demo app on loopback, two for each of three "clusters";
//   - the failed requests and p99 while one "cluster" (both its processes) is frozen;
//   - with 10,000 backends in one pool (100 clusters of 100 nodes, as agents report them to a
//     real hub), the time from an agent's report of an endpoint change to HAProxy applying it,
//     and the failed requests meanwhile.
func BenchmarkEdge(b *testing.B) {
	hubtest.RequireHAProxy(b)
	web := buildWeb(b)
	clusters := []string{"c1", "c2", "c3"}
	procs := map[string][]*exec.Cmd{}
	var servers []netip.AddrPort
	var backends []edge.ClusterServers
	for _, c := range clusters {
		cs := edge.ClusterServers{Cluster: c}
		for range 2 {
			port, err := kubeproc.FreePort()
			if err != nil {
				b.Fatal(err)
			}
			cmd := exec.Command(web)
			cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "CLUSTER="+c)
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGCONT); _ = cmd.Process.Kill(); _ = cmd.Wait() })
			procs[c] = append(procs[c], cmd)
			addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
			servers = append(servers, addr)
			cs.Servers = append(cs.Servers, edge.Server{Addr: addr, Weight: 4})
		}
		backends = append(backends, cs)
	}
	for _, s := range servers {
		waitHTTP(b, "http://"+s.String()+"/healthz")
	}

	// The Convoy pool: one HTTP listener, one route to the six servers, checked at /healthz,
	// tries bounded at 2 s.
	convoyPort, _ := kubeproc.FreePort()
	pool := edge.Pool{Name: "bench/edge", Listeners: []edge.Listener{{Name: "http", Port: convoyPort, Protocol: edge.HTTP,
		Routes: []edge.Route{{Name: "bench/web/0/http", PathPrefix: "/", Timeout: 2 * time.Second,
			Backend: edge.Backend{HealthPath: "/healthz", Clusters: backends}}}}}}
	inst, err := edgepool.Start(context.Background(), edgepool.Config{Name: "bench", Dir: b.TempDir(), Bind: "127.0.0.1"}, pool, hubtest.Logger(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { inst.Stop(context.Background()) })

	// The bare HAProxy: what a person would write for the same backends.
	barePort, _ := kubeproc.FreePort()
	dir := b.TempDir()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, `global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 2s
    retries 3
    option redispatch
    retry-on conn-failure empty-response response-timeout 502 503 504
frontend web
    bind 127.0.0.1:%d
    default_backend web
backend web
    balance roundrobin
    option httpchk GET /healthz
`, barePort)
	for i, s := range servers {
		fmt.Fprintf(&cfg, "    server s%d %s weight 4 check inter 1s\n", i+1, s)
	}
	if err := os.WriteFile(filepath.Join(dir, "haproxy.cfg"), []byte(cfg.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	haproxy, err := edgepool.Binary()
	if err != nil {
		b.Fatal(err)
	}
	bare := exec.Command(haproxy, "-db", "-f", filepath.Join(dir, "haproxy.cfg"))
	bare.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := bare.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bare.Process.Kill(); _ = bare.Wait() })
	convoyURL, bareURL := fmt.Sprintf("http://127.0.0.1:%d/", convoyPort), fmt.Sprintf("http://127.0.0.1:%d/", barePort)
	waitHTTP(b, convoyURL)
	waitHTTP(b, bareURL)

	// Throughput, alternating so that both see the same machine: 4 rounds of 8 s each.
	var convoyRuns, bareRuns []edgeRun
	for range 4 {
		for _, target := range []struct {
			url  string
			runs *[]edgeRun
		}{{convoyURL, &convoyRuns}, {bareURL, &bareRuns}} {
			m := flood(target.url, 8*time.Second)
			*target.runs = append(*target.runs, edgeRun{rps: float64(m.StatusCodes["200"]) / m.Duration.Seconds(), p99: m.Latencies.P99, bad: m.Requests - uint64(m.StatusCodes["200"])})
		}
	}
	median := func(rs []edgeRun) edgeRun {
		s := slices.Clone(rs)
		slices.SortFunc(s, func(a, b edgeRun) int { return cmp.Compare(a.rps, b.rps) })
		return s[len(s)/2]
	}
	cm, bm := median(convoyRuns), median(bareRuns)

	// A "cluster" frozen under steady load: both of c2's processes stop for 10 s.
	var frozen, thawed time.Time
	results := steady(b, convoyURL, 200, 20*time.Second, 5*time.Second, func() error {
		for _, p := range procs["c2"] {
			_ = p.Process.Signal(syscall.SIGSTOP)
		}
		frozen = time.Now()
		time.Sleep(10 * time.Second)
		for _, p := range procs["c2"] {
			_ = p.Process.Signal(syscall.SIGCONT)
		}
		thawed = time.Now()
		return nil
	})
	var lossAll, lossDuring vegeta.Metrics
	lossFailed := 0
	for _, r := range results {
		lossAll.Add(r)
		if r.Code != http.StatusOK || r.Error != "" {
			lossFailed++
		}
		if !r.Timestamp.Before(frozen) && r.Timestamp.Before(thawed) {
			lossDuring.Add(r)
		}
	}
	lossAll.Close()
	lossDuring.Close()

	fmt.Printf("\nEdge benchmark (HAProxy %s; 6 backends: the demo app on loopback, 3 \"clusters\" of 2)\nmachine: %s\n", haproxyVersion(haproxy), Machine())
	fmt.Printf("throughput, as fast as 64 workers go, 4 rounds of 8 s alternating (median round):\n")
	fmt.Printf("  Convoy pool:  %.0f req/s, p99 %s (rounds %s)\n", cm.rps, cm.p99.Round(10*time.Microsecond), rounds(convoyRuns))
	fmt.Printf("  bare HAProxy: %.0f req/s, p99 %s (rounds %s)\n", bm.rps, bm.p99.Round(10*time.Microsecond), rounds(bareRuns))
	fmt.Printf("  ratio Convoy/bare: %.2f (target >= 0.9); failed requests: %d and %d\n", cm.rps/bm.rps, sumBad(convoyRuns), sumBad(bareRuns))
	fmt.Printf("a \"cluster\" frozen (SIGSTOP) for 10 s under 200 req/s: %d failed of %d (target 0); p99 while frozen %s, max %s; p99 over 20 s %s\n",
		lossFailed, lossAll.Requests, lossDuring.Latencies.P99.Round(time.Millisecond), lossDuring.Latencies.Max.Round(time.Millisecond), lossAll.Latencies.P99.Round(time.Millisecond))
	b.ReportMetric(cm.rps/bm.rps, "ratio-rps")
	b.ReportMetric(float64(lossFailed), "failed-loss")
}

// BenchmarkEdgeBackends measures a pool of 10,000 backends (100 clusters of 100 nodes, as
// agents report them to a real hub): the time from an agent's report of an endpoint change to
// HAProxy applying it, and the failed requests meanwhile.
func BenchmarkEdgeBackends(b *testing.B) {
	hubtest.RequireHAProxy(b)
	big := bigPool(b)
	fmt.Printf("\nEdge benchmark, 10,000 backends (100 clusters of 100 nodes, each a listener of the benchmark on loopback) in one pool at a real hub\nmachine: %s\n", Machine())
	fmt.Printf("pool programmed %s after the 100 Works were reported\n", big.programmed.Round(100*time.Millisecond))
	fmt.Printf("endpoint change, agent's report to HAProxy's weight: median %s, max %s (runs %v; target <= 1s); failed requests under 100 req/s meanwhile: %d of %d\n",
		Median(big.changes).Round(time.Millisecond), slicesMax(big.changes).Round(time.Millisecond), round(big.changes), big.failed, big.requests)
	b.ReportMetric(Median(big.changes).Seconds(), "s-change-10k")
}

// edgeRun is one round of a throughput run.
type edgeRun struct {
	rps float64
	p99 time.Duration
	bad uint64
}

func rounds(rs []edgeRun) string {
	var s []string
	for _, r := range rs {
		s = append(s, fmt.Sprintf("%.0f", r.rps))
	}
	return strings.Join(s, " ")
}

func sumBad(rs []edgeRun) uint64 {
	var n uint64
	for _, r := range rs {
		n += r.bad
	}
	return n
}

// flood sends GETs to url as fast as 64 workers on kept-alive connections go, for d.
func flood(url string, d time.Duration) vegeta.Metrics {
	a := vegeta.NewAttacker(vegeta.KeepAlive(true), vegeta.Workers(64), vegeta.MaxWorkers(64), vegeta.Connections(64), vegeta.MaxBody(0))
	var m vegeta.Metrics
	for r := range a.Attack(vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodGet, URL: url}), vegeta.Rate{Freq: 0}, d, "flood") {
		m.Add(r)
	}
	m.Close()
	return m
}

// steady sends rate GETs a second to url for d; at time at it runs action in a goroutine. It
// returns every result once both are done, and fails the benchmark if the action failed.
func steady(b *testing.B, url string, rate int, d, at time.Duration, action func() error) []*vegeta.Result {
	a := vegeta.NewAttacker(vegeta.Timeout(30*time.Second), vegeta.KeepAlive(true), vegeta.Workers(32), vegeta.MaxBody(0))
	acted := make(chan error, 1)
	timer := time.AfterFunc(at, func() { acted <- action() })
	var out []*vegeta.Result
	for r := range a.Attack(vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodGet, URL: url}), vegeta.Rate{Freq: rate, Per: time.Second}, d, "steady") {
		out = append(out, r)
	}
	if timer.Stop() {
		acted <- nil
	}
	if err := <-acted; err != nil {
		b.Fatal(err)
	}
	return out
}

func waitHTTP(b *testing.B, url string) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s does not answer 200: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func haproxyVersion(bin string) string {
	out, _ := exec.Command(bin, "-v").Output()
	if f := strings.Fields(string(out)); len(f) > 2 {
		return f[2]
	}
	return "?"
}

// bigResult is what bigPool measured.
type bigResult struct {
	programmed       time.Duration
	changes          []time.Duration
	failed, requests int
}

// bigPool runs a pool of 10,000 backends at a real hub: 100 clusters' Works report a Service
// on 100 nodes each; each node is a listener of this process on its own loopback address. It
// then changes one node's endpoints, as an agent would report it, five times, and times each
// until HAProxy weighs that server anew, under steady load.
func bigPool(b *testing.B) bigResult {
	const nClusters, nNodes = 100, 100
	h := hubtest.Start(b)
	c := h.Client
	ctx := context.Background()
	// The nodes: 127.1.C.N:30080, answering any request.
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	for ci := range nClusters {
		for ni := range nNodes {
			l, err := net.Listen("tcp", fmt.Sprintf("127.1.%d.%d:30080", ci+1, ni+1))
			if err != nil {
				b.Fatal(err)
			}
			srv := &http.Server{Handler: handler}
			go srv.Serve(l)
			b.Cleanup(func() { srv.Close() })
		}
	}
	hubtest.Must(b, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "big"}}))
	port := gatewayv1.PortNumber(80)
	hubtest.Must(b, c.Create(ctx, &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "big", Name: "edge"}, Spec: gatewayv1.GatewaySpec{
		GatewayClassName: v1alpha1.EdgeGatewayClass, Listeners: []gatewayv1.Listener{{Name: "http", Port: 8080, Protocol: gatewayv1.HTTPProtocolType}}}}))
	hubtest.Must(b, c.Create(ctx, &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "big", Name: "web"}, Spec: gatewayv1.HTTPRouteSpec{
		CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "edge"}}},
		Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
			BackendObjectReference: gatewayv1.BackendObjectReference{Name: "web", Port: &port}}}}}}}}))
	works := make([]*v1alpha1.Work, nClusters)
	reported := time.Now()
	for ci := range nClusters {
		ns := v1alpha1.ClusterNamespace(fmt.Sprintf("m%03d", ci+1))
		hubtest.Must(b, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
		w := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "big-web"}}
		hubtest.Must(b, c.Create(ctx, w))
		reach := &v1alpha1.ServiceReach{Ports: []v1alpha1.ReachPort{{Port: 80, NodePort: 30080}}, Endpoints: nNodes}
		for ni := range nNodes {
			reach.Nodes = append(reach.Nodes, v1alpha1.ReachNode{Address: fmt.Sprintf("127.1.%d.%d", ci+1, ni+1), Endpoints: 1})
		}
		w.Status.Resources = []v1alpha1.ResourceStatus{{ResourceIdentifier: v1alpha1.ResourceIdentifier{Version: "v1", Kind: "Service", Namespace: "big", Name: "web"},
			State: v1alpha1.ResourceApplied, Reach: reach}}
		hubtest.Must(b, c.Status().Update(ctx, w))
		works[ci] = w
	}
	var addr string
	deadline := time.Now().Add(5 * time.Minute)
	for {
		gw := &gatewayv1.Gateway{}
		hubtest.Must(b, c.Get(ctx, client.ObjectKey{Namespace: "big", Name: "edge"}, gw))
		p := meta.FindStatusCondition(gw.Status.Conditions, "Programmed")
		var pool v1alpha1.EdgePool
		_ = c.Get(ctx, client.ObjectKey{Namespace: v1alpha1.SystemNamespace, Name: v1alpha1.EdgePoolName("big", "edge")}, &pool)
		n := 0
		for _, l := range pool.Spec.Listeners {
			for _, r := range l.Routes {
				for _, cs := range r.Clusters {
					n += len(strings.Fields(cs.Servers))
				}
			}
		}
		if p != nil && p.Status == metav1.ConditionTrue && n == nClusters*nNodes && len(gw.Status.Addresses) == 1 &&
			len(pool.Status.Instances) == 1 && pool.Status.Instances[0].ObservedGeneration == pool.Generation {
			addr = gw.Status.Addresses[0].Value
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the 10,000-backend pool is not programmed after 5 minutes: %+v, %d servers", p, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	res := bigResult{programmed: time.Since(reported)}
	url := "http://" + net.JoinHostPort(addr, "8080") + "/"
	waitHTTP(b, url)
	socket := filepath.Join(h.Options.DataDir, "edge", v1alpha1.EdgePoolName("big", "edge"), "0", "admin.sock")
	// The servers of a cluster sit in slots by address order (edge.Assign), which for 127.1.C.N
	// is not N's order: find a server's slot by its address once, then ask for its weight.
	slot := func(cluster, node int) (string, error) {
		want := fmt.Sprintf("127.1.%d.%d", cluster, node)
		out, err := runtimeCmd(socket, "show servers state be:big:web:0:http")
		for _, l := range strings.Split(out, "\n") {
			// be_id be_name srv_id srv_name srv_addr ...
			if f := strings.Fields(l); len(f) > 4 && f[4] == want {
				return f[1] + "/" + f[3], nil
			}
		}
		return "", fmt.Errorf("no server at %s (%v)", want, err)
	}
	weight := func(server string) string {
		out, _ := runtimeCmd(socket, "get weight "+server)
		return strings.TrimSpace(out)
	}
	results := steady(b, url, 100, 40*time.Second, time.Second, func() error {
		for i := range 5 {
			ci, ni := 10*i+1, 10*i+1
			w := works[ci-1]
			server, err := slot(ci, ni)
			if err != nil {
				return err
			}
			before := weight(server)
			if err := c.Get(ctx, client.ObjectKeyFromObject(w), w); err != nil {
				return err
			}
			reach := w.Status.Resources[0].Reach
			reach.Nodes[ni-1].Endpoints = 2 + int32(i)
			reach.Endpoints++
			start := time.Now()
			if err := c.Status().Update(ctx, w); err != nil {
				return err
			}
			for weight(server) == before {
				if time.Since(start) > 30*time.Second {
					return fmt.Errorf("the endpoint change of 127.1.%d.%d was not applied in 30 s", ci, ni)
				}
				time.Sleep(5 * time.Millisecond) // polling HAProxy's Runtime API
			}
			res.changes = append(res.changes, time.Since(start))
			time.Sleep(time.Second) // one change a second
		}
		return nil
	})
	for _, r := range results {
		res.requests++
		if r.Code != http.StatusOK || r.Error != "" {
			res.failed++
		}
	}
	return res
}

// runtimeCmd sends one command to an HAProxy Runtime API socket and returns the answer.
func runtimeCmd(socket, cmd string) (string, error) {
	conn, err := net.Dial("unix", socket)
	if err != nil {
		return "", fmt.Errorf("HAProxy's Runtime API: %w", err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "%s\n", cmd)
	var sb strings.Builder
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		sb.WriteString(sc.Text())
		sb.WriteByte('\n')
	}
	return sb.String(), sc.Err()
}
