package bench

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/image"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/observe"
	"github.com/convoy-dev/convoy/internal/provider/local"
	"github.com/convoy-dev/convoy/internal/registry"
)

// BenchmarkFleetMetrics measures what fleet metrics cost, with one local cluster of two real
// nodes that runs the demo app (two replicas that ask to be scraped, and a request a second to
// each): for the member, its collector's (vmagent's) CPU and resident memory, the agent
// process's CPU (its workload-state exporter included), the bytes a second the collector sends
// and the series it keeps; at the hub, the store's CPU, resident memory and disk growth over
// the same window, per cluster and extrapolated to a day; and the latency of the fleet query
// through the hub's API server.
//
// Beside it, simulated clusters (CONVOY_BENCH_METRICS_SIM, default 100) each send the store the
// real cluster's series, under their own cluster label, every 15 s, as a collector would: the
// same number of series of the same names and labels, with counters that go on counting. They
// write to the store directly (its import API, with the hub's password), not through the hub's
// API server: what is measured is the store. Before the window, each also gets an hour of the
// demo's request counters, so that the fleet query over the last hour reads 1 h of data of
// every cluster.
//
// CONVOY_BENCH_METRICS_WINDOW sets the measured window (default 10m).
func BenchmarkFleetMetrics(b *testing.B) {
	hubtest.RealNodes(b, local.MissingForRealNodes)
	window := 10 * time.Minute
	if s := os.Getenv("CONVOY_BENCH_METRICS_WINDOW"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 30*time.Second {
			b.Fatalf("CONVOY_BENCH_METRICS_WINDOW=%q: want a duration of 30s or more", s)
		}
		window = d
	}
	simulated := 100
	if s := os.Getenv("CONVOY_BENCH_METRICS_SIM"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			b.Fatalf("CONVOY_BENCH_METRICS_SIM=%q: want a whole number", s)
		}
		simulated = n
	}
	// The log store and the members' log collectors too, from Convoy's image.
	h := hubtest.Start(b, func(o *hub.Options) { o.SkipTemplates, o.SkipConvoyImage, o.LogsRetention = false, false, 0 })
	ctx := context.Background()
	layout := hub.Layout{Dir: h.Options.DataDir}
	waitTemplate(b, layout)
	if _, err := registry.EnsureFromBinary(ctx, h.RegistryAddr(), "examples/web:1", buildWeb(b), image.Build{Base: true}); err != nil {
		b.Fatal(err)
	}
	const name = "m"
	if err := h.Client.Create(ctx, &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.ClusterSpec{
		Provider: v1alpha1.ProviderLocal, Region: "r", Zones: []string{"a", "b"},
		NodePools: []v1alpha1.NodePool{{Name: "real", Kind: v1alpha1.NodeReal, Count: 2}}}}); err != nil {
		b.Fatal(err)
	}
	waitFor(b, "cluster m Ready", 3*time.Minute, func() bool {
		cl := &v1alpha1.Cluster{}
		return h.Client.Get(ctx, client.ObjectKey{Name: name}, cl) == nil && cl.Status.Phase == v1alpha1.ClusterReady
	})
	clusterDir := filepath.Join(layout.Clusters(), name)
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(clusterDir, "kubeconfig"))
	if err != nil {
		b.Fatal(err)
	}
	member := kubernetes.NewForConfigOrDie(cfg)
	if _, err := member.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	labels := map[string]string{"app": "web"}
	if _, err := member.AppsV1().Deployments("demo").Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "demo"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "8080"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: registry.Host + "/examples/web:1",
					Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}},
			}},
	}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	query := func(q string) ([]observe.Sample, time.Duration, error) {
		hc, err := rest.HTTPClientFor(h.Config)
		if err != nil {
			return nil, 0, err
		}
		start := time.Now()
		resp, err := hc.PostForm(strings.TrimSuffix(h.Config.Host, "/")+v1alpha1.MetricsQueryPrefix+"/api/v1/query", url.Values{"query": {q}})
		if err != nil {
			return nil, 0, err
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		took := time.Since(start)
		if err != nil {
			return nil, 0, err
		}
		v, err := observe.ParseVector(raw)
		return v, took, err
	}
	var podIPs []string
	waitFor(b, "both demo pods scraped", 3*time.Minute, func() bool {
		v, _, err := query(`up{cluster="m", job="pods"} == 1`)
		if err != nil || len(v) < 2 {
			return false
		}
		pods, err := member.CoreV1().Pods("demo").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		podIPs = nil
		for _, p := range pods.Items {
			podIPs = append(podIPs, p.Status.PodIP)
		}
		return true
	})
	// A request a second to each pod, from the host (which routes the cluster's pod network).
	load, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			for _, ip := range podIPs {
				if resp, err := http.Get("http://" + ip + ":8080/"); err == nil {
					resp.Body.Close()
				}
			}
			select {
			case <-load.Done():
				return
			case <-t.C:
			}
		}
	}()

	rs, err := local.ReadRuntimeStatus(clusterDir)
	if err != nil {
		b.Fatal(err)
	}
	agentPID := 0
	for _, c := range rs.Components {
		if c.Name == "convoy-agent" && c.Running {
			agentPID = c.PID
		}
	}
	collectorDir := filepath.Join(clusterDir, "agent", "collector")
	vmagentPID := pidWithArg(collectorDir)
	storePID := 0
	for _, c := range h.Children() {
		if c.Name == kubeproc.VictoriaMetrics {
			storePID = c.PID
		}
	}
	if agentPID == 0 || vmagentPID == 0 || storePID == 0 {
		b.Fatalf("processes: agent %d, vmagent %d, store %d", agentPID, vmagentPID, storePID)
	}
	socket := filepath.Join(collectorDir, "vmagent.sock")
	if len(socket) > 100 {
		sum := sha256.Sum256([]byte(collectorDir))
		socket = filepath.Join(os.TempDir(), "convoy-vmagent-"+hex.EncodeToString(sum[:8])+".sock")
	}
	storeDir := filepath.Join(layout.Metrics(), "data")

	time.Sleep(30 * time.Second) // settle: the first scrapes' series are new to the store
	password, err := os.ReadFile(filepath.Join(layout.Metrics(), "password"))
	if err != nil {
		b.Fatal(err)
	}
	sim := &simStore{url: h.MetricsStoreURL(), password: string(password)}
	series := sim.export(b, `{cluster="m"}`)
	if simulated > 0 {
		t0 := time.Now()
		sim.backfill(b, simulated, series, time.Hour)
		fmt.Printf("simulated clusters: %d, each with the real cluster's %d series; an hour of the demo's counters imported for each in %s\n",
			simulated, len(series), time.Since(t0).Round(time.Second))
	}
	simCtx, stopSim := context.WithCancel(ctx)
	simDone := make(chan struct{})
	go func() { defer close(simDone); sim.run(simCtx, simulated, series) }()
	defer func() { stopSim(); <-simDone }()
	if simulated > 0 {
		time.Sleep(45 * time.Second) // settle again: the simulated clusters' first series are new
	}
	type sample struct {
		agentCPU, vmagentCPU, storeCPU time.Duration
		sent, disk                     int64
		at                             time.Time
	}
	take := func() sample {
		s := sample{at: time.Now()}
		s.agentCPU, _ = CPUTime(agentPID)
		s.vmagentCPU, _ = CPUTime(vmagentPID)
		s.storeCPU, _ = CPUTime(storePID)
		s.sent = int64(vmagentMetric(b, socket, "vmagent_remotewrite_bytes_sent_total"))
		s.disk = dirSize(storeDir)
		return s
	}
	start := take()
	time.Sleep(window)
	end := take()
	secs := end.at.Sub(start.at).Seconds()
	milli := func(a, b time.Duration) float64 { return float64(b-a) / float64(time.Millisecond) / secs }
	vmRSS, _ := RSS(vmagentPID)
	agentRSS, _ := RSS(agentPID)
	storeRSS, _ := RSS(storePID)
	count, _, _ := query(`count({cluster="m"})`)
	nSeries := 0.0
	if len(count) == 1 {
		nSeries = count[0].Value
	}
	all, _, err := query(`count(count by (cluster) (up{cluster!=""}))`)
	if err != nil {
		b.Fatal(err)
	}
	var lat, latRange []time.Duration
	for range 20 {
		_, took, err := query(`sum by (cluster) (rate(http_requests_total[1m]))`)
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, took)
	}
	slices.Sort(lat)
	var rangeClusters int
	for range 10 {
		n, took, err := queryRange(h, `sum by (cluster) (rate(http_requests_total[1m]))`, time.Hour, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		rangeClusters = n
		latRange = append(latRange, took)
	}
	slices.Sort(latRange)
	sentPerSec := float64(end.sent-start.sent) / secs
	clusters := float64(1 + simulated)
	diskPerDay := float64(end.disk-start.disk) / secs * 86400 / clusters
	nClusters := 0.0
	if len(all) == 1 {
		nClusters = all[0].Value
	}

	fmt.Printf("\nFleet metrics benchmark (one local cluster of 2 real nodes, the demo app's 2 pods scraped, 1 request/s to each, and %d simulated clusters sending the same series; %s window)\nmachine: %s\n", simulated, window, Machine())
	fmt.Printf("member: collector (vmagent) CPU %.1f millicores, resident memory %s; agent process CPU %.1f millicores (exporter included), resident %s\n",
		milli(start.vmagentCPU, end.vmagentCPU), MiB(vmRSS), milli(start.agentCPU, end.agentCPU), MiB(agentRSS))
	fmt.Printf("member: %.0f series, sent %.0f bytes/s to the hub (%.1f MiB/day)\n", nSeries, sentPerSec, sentPerSec*86400/(1<<20))
	fmt.Printf("hub store, %.0f clusters in it: CPU %.1f millicores, resident memory %s, disk %+.1f MiB in the window\n",
		nClusters, milli(start.storeCPU, end.storeCPU), MiB(storeRSS), float64(end.disk-start.disk)/(1<<20))
	fmt.Printf("hub store, per cluster: CPU %.2f millicores, memory %s, disk %+.2f MiB/day\n",
		milli(start.storeCPU, end.storeCPU)/clusters, MiB(int64(float64(storeRSS)/clusters)), diskPerDay/(1<<20))
	fmt.Printf("fleet query sum by (cluster) (rate(http_requests_total[1m])) through the hub's API server: instant p50 %s, max %s (20 queries); over the last hour, step 1m, %d clusters: p50 %s, max %s (10 queries)\n",
		lat[len(lat)/2].Round(100*time.Microsecond), lat[len(lat)-1].Round(100*time.Microsecond), rangeClusters,
		latRange[len(latRange)/2].Round(100*time.Microsecond), latRange[len(latRange)-1].Round(100*time.Microsecond))
	b.ReportMetric(milli(start.vmagentCPU, end.vmagentCPU), "mcores-collector")
	b.ReportMetric(float64(vmRSS)/(1<<20), "MiB-collector")
	b.ReportMetric(sentPerSec, "B/s-sent")
	b.ReportMetric(milli(start.storeCPU, end.storeCPU)/clusters, "mcores-store-per-cluster")
	b.ReportMetric(diskPerDay/(1<<20), "MiB/day-store-per-cluster")
	b.ReportMetric(lat[len(lat)/2].Seconds()*1000, "ms-fleet-query-p50")
	b.ReportMetric(latRange[len(latRange)/2].Seconds()*1000, "ms-fleet-query-1h-p50")

	// Fleet logs: a request's log line, from the request to the line being searchable in the
	// hub's log store through its API server (the demo pods log every request; their
	// collector, convoy log-collector, runs on each of the two nodes).
	collectors := collectorPIDs()
	cpu := func() (total time.Duration) {
		for _, pid := range collectors {
			t, _ := CPUTime(pid)
			total += t
		}
		return total
	}
	cpu0, t0 := cpu(), time.Now()
	ingest := logIngest(b, h, podIPs, 40)
	collectorCPU := float64(cpu()-cpu0) / float64(time.Millisecond) / time.Since(t0).Seconds()
	p := func(q float64) time.Duration {
		return ingest[int(q*float64(len(ingest)-1))].Round(10 * time.Millisecond)
	}
	fmt.Printf("fleet logs: a request's line searchable at the hub after p50 %s, p99 %s, max %s (%d requests, one every 0.5-1 s, polled every 50 ms)\n",
		p(0.5), p(0.99), ingest[len(ingest)-1].Round(10*time.Millisecond), len(ingest))
	b.ReportMetric(ingest[len(ingest)/2].Seconds()*1000, "ms-log-ingest-p50")
	b.ReportMetric(p(0.99).Seconds()*1000, "ms-log-ingest-p99")
	if len(collectors) > 0 {
		var rss int64
		for _, pid := range collectors {
			r, _ := RSS(pid)
			rss += r
		}
		perNode := float64(rss) / float64(len(collectors)) / (1 << 20)
		fmt.Printf("log collectors: %d (one per real node), %.1f millicores each meanwhile, %.1f MiB resident each\n",
			len(collectors), collectorCPU/float64(len(collectors)), perNode)
		b.ReportMetric(collectorCPU/float64(len(collectors)), "mcores-log-collector")
		b.ReportMetric(perNode, "MiB-log-collector")
	}
}

// collectorPIDs are the log collectors' processes (convoy log-collector) on this host.
func collectorPIDs() []int {
	return pidsWhere(func(args []string) bool { return slices.Contains(args, "log-collector") })
}

// logIngest sends n requests, each with a path of its own, to the demo pods in turn, and
// measures for each how long its log line took to be found by a LogsQL query through the hub's
// API server, polled every 50 ms; it returns the times, sorted.
func logIngest(b *testing.B, h *hubtest.Hub, podIPs []string, n int) []time.Duration {
	hc, err := rest.HTTPClientFor(h.Config)
	if err != nil {
		b.Fatal(err)
	}
	found := func(mark string) (bool, error) {
		resp, err := hc.PostForm(strings.TrimSuffix(h.Config.Host, "/")+v1alpha1.LogsPrefix+"/select/logsql/query",
			url.Values{"query": {`_time:5m "` + mark + `"`}, "limit": {"1"}})
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("%s: %s", resp.Status, raw)
		}
		return strings.Contains(string(raw), mark), err
	}
	// The collectors start with their pods' first lines: wait until a line arrives at all.
	warm := 0
	waitFor(b, "the demo's lines in the fleet log store", 3*time.Minute, func() bool {
		warm++
		mark := fmt.Sprintf("logwarm%d", warm)
		if resp, err := http.Get("http://" + podIPs[0] + ":8080/" + mark); err == nil {
			resp.Body.Close()
		}
		time.Sleep(2 * time.Second)
		ok, _ := found(mark)
		return ok
	})
	var took []time.Duration
	for i := range n {
		mark := fmt.Sprintf("logmark%d%d", i, time.Now().UnixNano())
		at := time.Now()
		resp, err := http.Get("http://" + podIPs[i%len(podIPs)] + ":8080/" + mark)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		for {
			ok, err := found(mark)
			if err != nil {
				b.Fatal(err)
			}
			if ok {
				break
			}
			if time.Since(at) > time.Minute {
				b.Fatalf("the line of request %s not in the log store after a minute", mark)
			}
			time.Sleep(50 * time.Millisecond)
		}
		took = append(took, time.Since(at))
		time.Sleep(time.Duration(500+rand.IntN(500)) * time.Millisecond)
	}
	slices.Sort(took)
	return took
}

// queryRange runs a range query through the hub's API server and says how many series it
// returned and how long it took.
func queryRange(h *hubtest.Hub, q string, span, step time.Duration) (int, time.Duration, error) {
	hc, err := rest.HTTPClientFor(h.Config)
	if err != nil {
		return 0, 0, err
	}
	now := time.Now()
	form := url.Values{"query": {q}, "nocache": {"1"}, "start": {strconv.FormatInt(now.Add(-span).Unix(), 10)}, "end": {strconv.FormatInt(now.Unix(), 10)},
		"step": {strconv.Itoa(int(step.Seconds()))}}
	start := time.Now()
	resp, err := hc.PostForm(strings.TrimSuffix(h.Config.Host, "/")+v1alpha1.MetricsQueryPrefix+"/api/v1/query_range", form)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	if err != nil {
		return 0, 0, err
	}
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.Status != "success" {
		return 0, 0, fmt.Errorf("query_range: %v %s: %.300s", err, out.Error, raw)
	}
	return len(out.Data.Result), took, nil
}

// simStore plays simulated clusters' collectors against the store's own import API.
type simStore struct {
	url      *url.URL
	password string
}

// simSeries is one series as the store exports it, with its latest value.
type simSeries struct {
	Metric map[string]string `json:"metric"`
	Value  float64           `json:"-"`
}

func (s *simStore) do(method, path, query string, body io.Reader) ([]byte, error) {
	u := *s.url
	u.Path, u.RawQuery = path, query
	req, err := http.NewRequest(method, u.String(), body)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(observe.StoreUser, s.password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %s: %.300s", method, path, resp.Status, raw)
	}
	return raw, err
}

// export reads the series that match, each with its latest value.
func (s *simStore) export(b *testing.B, match string) []simSeries {
	raw, err := s.do(http.MethodGet, "/api/v1/export", url.Values{"match[]": {match}, "start": {strconv.FormatInt(time.Now().Add(-2*time.Minute).Unix(), 10)}}.Encode(), nil)
	if err != nil {
		b.Fatal(err)
	}
	var out []simSeries
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var l struct {
			Metric map[string]string `json:"metric"`
			Values []float64         `json:"values"`
		}
		if line == "" || json.Unmarshal([]byte(line), &l) != nil || len(l.Values) == 0 {
			continue
		}
		out = append(out, simSeries{Metric: l.Metric, Value: l.Values[len(l.Values)-1]})
	}
	if len(out) == 0 {
		b.Fatalf("no series of %s to copy", match)
	}
	return out
}

// counter says whether a series counts up, by the usual name endings.
func counter(name string) bool {
	for _, suffix := range []string{"_total", "_count", "_sum", "_bucket"} {
		if strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return false
}

// importLines writes samples as the store's JSON lines, for cluster, through extra_label (which
// overrides the label the copied series carry).
func (s *simStore) importLines(cluster string, body []byte) error {
	q := url.Values{"extra_label": {"cluster=" + cluster, "region=sim"}}.Encode()
	_, err := s.do(http.MethodPost, "/api/v1/import", q, strings.NewReader(string(body)))
	return err
}

// backfill gives each simulated cluster span of the demo's request counters, a sample every
// 15 s, counting a request a second.
func (s *simStore) backfill(b *testing.B, n int, series []simSeries, span time.Duration) {
	now := time.Now()
	steps := int(span / (15 * time.Second))
	for i := range n {
		var body strings.Builder
		for _, se := range series {
			if se.Metric["__name__"] != "http_requests_total" {
				continue
			}
			// Ending at the real counter's value, where the live sends go on from.
			values, stamps := make([]string, steps), make([]string, steps)
			for k := range steps {
				values[k] = strconv.FormatFloat(max(se.Value-float64((steps-1-k)*15), 0), 'g', -1, 64)
				stamps[k] = strconv.FormatInt(now.Add(-span+time.Duration(k)*15*time.Second).UnixMilli(), 10)
			}
			metric, _ := json.Marshal(se.Metric)
			fmt.Fprintf(&body, `{"metric":%s,"values":[%s],"timestamps":[%s]}`+"\n", metric, strings.Join(values, ","), strings.Join(stamps, ","))
		}
		if err := s.importLines(fmt.Sprintf("sim-%03d", i), []byte(body.String())); err != nil {
			b.Fatal(err)
		}
	}
}

// run sends every simulated cluster's series every 15 s until ctx ends, spread over the
// interval as independent collectors would be.
func (s *simStore) run(ctx context.Context, n int, series []simSeries) {
	if n == 0 {
		return
	}
	start := time.Now()
	lines := make([][]byte, len(series))
	for i, se := range series {
		lines[i], _ = json.Marshal(se.Metric)
	}
	for round := 0; ; round++ {
		for i := range n {
			at := start.Add(time.Duration(round)*15*time.Second + time.Duration(i)*15*time.Second/time.Duration(n))
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(at)):
			}
			var body strings.Builder
			ms := time.Now().UnixMilli()
			for k, se := range series {
				v := se.Value
				if counter(se.Metric["__name__"]) {
					v += float64(round * 15)
				}
				fmt.Fprintf(&body, `{"metric":%s,"values":[%s],"timestamps":[%d]}`+"\n", lines[k], strconv.FormatFloat(v, 'g', -1, 64), ms)
			}
			_ = s.importLines(fmt.Sprintf("sim-%03d", i), []byte(body.String()))
		}
	}
}

// pidWithArg is the vmagent process whose command line has an argument that contains s, or 0.
func pidWithArg(s string) int {
	pids := pidsWhere(func(args []string) bool {
		raw := strings.Join(args, "\x00")
		return strings.Contains(raw, "vmagent") && strings.Contains(raw, s)
	})
	if len(pids) == 0 {
		return 0
	}
	return pids[0]
}

// pidsWhere are the processes on this host whose arguments match, in /proc's order.
func pidsWhere(match func(args []string) bool) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && match(strings.Split(string(raw), "\x00")) {
			out = append(out, pid)
		}
	}
	return out
}

// vmagentMetric sums the samples of one metric of vmagent's own /metrics, on its unix socket.
func vmagentMetric(b *testing.B, socket, name string) float64 {
	b.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}, Timeout: 5 * time.Second}
	resp, err := hc.Get("http://vmagent/metrics")
	if err != nil {
		b.Fatalf("vmagent's metrics: %v", err)
	}
	defer resp.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			total += v
		}
	}
	return total
}

// dirSize is the bytes of the files under dir.
func dirSize(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	return total
}
