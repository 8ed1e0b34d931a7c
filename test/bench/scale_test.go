package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/delivery"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/sim"
	"github.com/convoy-dev/convoy/internal/version"
)

// Percentiles of per-cluster times, in seconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func percentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(q*float64(len(s))+0.999999) - 1 // nearest rank
		return s[max(0, min(i, len(s)-1))].Seconds()
	}
	return Percentiles{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: s[len(s)-1].Seconds()}
}

// Usage is the hub's resident memory and CPU: the convoy hub process and its children.
type Usage struct {
	RSSMiB     map[string]float64 `json:"rssMiB"`
	TotalMiB   float64            `json:"totalMiB"`
	Millicores float64            `json:"millicores"`
	// CPU is millicores per process.
	CPU     map[string]float64 `json:"cpu"`
	Seconds float64            `json:"seconds"`
}

// ScaleResult is one fleet size's figures.
type ScaleResult struct {
	Clusters     int         `json:"clusters"`
	SetupSeconds float64     `json:"setupSeconds"`
	Registration Percentiles `json:"registration"`
	// AfterRegistration is the hub's use in the 15 s right after every cluster became Ready
	// (absent in runs before 2026-12-03 afternoon, whose Idle was measured from then).
	AfterRegistration *Usage `json:"afterRegistration,omitempty"`
	// Idle is the hub's use over 30 s from idleAfter after every cluster became Ready.
	Idle              Usage       `json:"idle"`
	InitialPlacement  Percentiles `json:"initialPlacement"`
	Propagation       Percentiles `json:"propagation"`
	DuringPropagation Usage       `json:"duringPropagation"`
	Floor             Percentiles `json:"floor"`
	// Requests counts the hub API server's requests during the propagation, by verb and
	// resource (writes only).
	Requests map[string]int `json:"requests"`
	// RegistrationRequests counts the same during the registration.
	RegistrationRequests map[string]int `json:"registrationRequests"`
	// APIServerRestarts counts the hub's restarts of its API server during the run.
	APIServerRestarts int     `json:"apiserverRestarts,omitempty"`
	RatioP99          float64 `json:"ratioP99"`
	SimProcessMiB     float64 `json:"simProcessMiB"`
	// IdleStream is what the delivery streams carried per cluster and second while idle;
	// PropagationStream per cluster over the propagation (absent in runs before 2026-12-02).
	IdleStream *StreamCost `json:"idleStream,omitempty"`
	// StoredAfter is how long after the template change the last handed Work was stored.
	StoredAfter       float64     `json:"storedAfter,omitempty"`
	PropagationStream *StreamCost `json:"propagationStream,omitempty"`
}

// StreamCost is what the agents' delivery streams carried, per cluster: messages and their
// bytes with gRPC's framing (TLS and HTTP/2 add a little), each way.
type StreamCost struct {
	BytesDown    float64 `json:"bytesDown"`
	BytesUp      float64 `json:"bytesUp"`
	MessagesDown float64 `json:"messagesDown"`
	MessagesUp   float64 `json:"messagesUp"`
	// Handed is the Work contents handed to the streams ahead of their write, and Stored
	// how many of them were stored by the window's end (absent before 2026-12-03).
	Handed float64 `json:"handed,omitempty"`
	Stored float64 `json:"stored,omitempty"`
}

// streamCost is what the streams carried between two of the hub's counts, divided by per.
func streamCost(before, after *delivery.Stats, per float64) *StreamCost {
	if before == nil || after == nil || per <= 0 {
		return nil
	}
	return &StreamCost{
		BytesDown:    float64(after.BytesOut-before.BytesOut) / per,
		BytesUp:      float64(after.BytesIn-before.BytesIn) / per,
		MessagesDown: float64(after.MessagesOut-before.MessagesOut) / per,
		MessagesUp:   float64(after.MessagesIn-before.MessagesIn) / per,
		Handed:       float64(after.Handed-before.Handed) / per,
		Stored:       float64(after.Stored-before.Stored) / per,
	}
}

// ScaleReport is what make bench-scale writes to docs/scale.json.
type ScaleReport struct {
	Date              string `json:"date"`
	Machine           string `json:"machine"`
	Kubernetes        string `json:"kubernetes"`
	Datastore         string `json:"datastore"`
	HeartbeatInterval string `json:"heartbeatInterval"`
	AvailableAfter    string `json:"availableAfter"`
	// Cores is how many CPUs the machine has: the lower bound divides by it.
	Cores int `json:"cores"`
	// WriteCosts are the unit costs of the writes a propagation and a heartbeat make.
	WriteCosts []WriteCost   `json:"writeCosts"`
	Results    []ScaleResult `json:"results"`
}

// LowerBound is the shortest a propagation to n clusters can take on this machine: each
// cluster costs the hub's write of its Work and the agent's write of its status, and the
// machine's every core spends all its time on nothing else. Without the datastore it counts
// the API server's CPU alone, which no datastore saves.
func (rep ScaleReport) LowerBound(n int, datastore bool) float64 {
	var perCluster float64
	for _, c := range rep.WriteCosts {
		// The agents' status reports are messages on their delivery streams, not writes.
		if c.Write == hubWorkWrite {
			perCluster += c.APIServerCPUs
			if datastore {
				perCluster += c.KineCPUMs
			}
		}
	}
	return float64(n) * perCluster / 1000 / float64(max(rep.Cores, 1))
}

// BenchmarkScale runs fleets of 10, 100 and 1,000 simulated clusters (internal/sim: the real
// agent against an in-memory member) against a real hub (`convoy hub`: kube-apiserver, kine
// on SQLite, the controllers) on this machine. For each size it measures registration,
// the hub's idle use, the propagation of a template change to every cluster, and the floor:
// the same number of per-cluster objects written straight to the same API server and seen by
// one watcher per cluster. CONVOY_SCALE_N="10,100" picks the sizes; CONVOY_SCALE_REPORT names
// a directory to write scale.json and SCALE.md into. With CONVOY_SCALE_RENDER set as well, it
// runs nothing and only writes SCALE.md again from that directory's scale.json.
// For looking into a run: CONVOY_SCALE_PPROF=DIR saves CPU and heap profiles,
// CONVOY_SCALE_AGENT_LOG=FILE the agents' logs, CONVOY_SCALE_HUB_LOG=FILE what the hub printed,
// and CONVOY_SCALE_TRACE=1 prints each Placement status the propagation sees, timed (it skips
// the wait before the idle window, so its idle figures are not comparable).
func BenchmarkScale(b *testing.B) {
	ctrllog.SetLogger(logr.Discard())
	if os.Getenv("CONVOY_SCALE_RENDER") != "" {
		// Only render SCALE.md again from scale.json, after a change to how it is written.
		dir := os.Getenv("CONVOY_SCALE_REPORT")
		raw, err := os.ReadFile(filepath.Join(dir, "scale.json"))
		must(b, err)
		var rep ScaleReport
		must(b, json.Unmarshal(raw, &rep))
		writeScaleMarkdown(b, dir, rep)
		return
	}
	sizes := []int{10, 100, 1000}
	if s := os.Getenv("CONVOY_SCALE_N"); s != "" {
		sizes = nil
		for f := range strings.SplitSeq(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				b.Fatalf("CONVOY_SCALE_N: %q is not a list of sizes", s)
			}
			sizes = append(sizes, n)
		}
	}
	rep := ScaleReport{
		Date: time.Now().UTC().Format(time.RFC3339), Machine: Machine(), Kubernetes: version.Kubernetes,
		Datastore: "kine " + version.Kine + " on SQLite (the hub's default)", HeartbeatInterval: v1alpha1.DefaultHeartbeatInterval.String(),
		AvailableAfter: scaleAvailableAfter.String(), Cores: runtime.NumCPU(),
	}
	rep.WriteCosts = measureWriteCosts(b, 300)
	for _, c := range rep.WriteCosts {
		printWriteCost(c)
	}
	for _, n := range sizes {
		r := scaleRun(b, n)
		rep.Results = append(rep.Results, r)
		printScale(r)
		fmt.Printf("lower bound for N=%d on %d cores, from the write costs: %.2fs (the API server alone: %.2fs)\n", n, rep.Cores, rep.LowerBound(n, true), rep.LowerBound(n, false))
	}
	fmt.Printf("\nmachine: %s\n", rep.Machine)
	if dir := os.Getenv("CONVOY_SCALE_REPORT"); dir != "" {
		raw, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(filepath.Join(dir, "scale.json"), append(raw, '\n'), 0o644); err != nil {
			b.Fatal(err)
		}
		writeScaleMarkdown(b, dir, rep)
	}
}

// writeScaleMarkdown writes dir/SCALE.md from the report, and keeps what people wrote in the
// old one after the findings marker.
func writeScaleMarkdown(b *testing.B, dir string, rep ScaleReport) {
	doc := scaleMarkdown(rep)
	if old, err := os.ReadFile(filepath.Join(dir, "SCALE.md")); err == nil {
		if i := strings.Index(string(old), findingsMarker); i >= 0 {
			doc += "\n" + string(old[i:])
		}
	}
	must(b, os.WriteFile(filepath.Join(dir, "SCALE.md"), []byte(doc), 0o644))
	fmt.Printf("wrote %s\n", filepath.Join(dir, "SCALE.md"))
}

const scaleAvailableAfter = 100 * time.Millisecond

// idleAfter is how long after the registration the idle window begins: longer than Go's
// runtime waits at most between two collections (two minutes), so that the registration's
// garbage is gone from the processes' memory.
const idleAfter = 2*time.Minute + 30*time.Second

// scaleDeployment is the workload the scale benchmarks place on every cluster.
func scaleDeployment(image string) *appsv1.Deployment {
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "scale", Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: image,
					Ports: []corev1.ContainerPort{{ContainerPort: 80}}}}},
			},
		},
	}
}

func scaleRun(b *testing.B, n int) ScaleResult {
	res := ScaleResult{Clusters: n}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fmt.Printf("\n== %d simulated clusters ==\n", n)
	// CONVOY_SCALE_TRACE prints each Placement status the propagation sees, timed.
	trace := os.Getenv("CONVOY_SCALE_TRACE") != ""

	// The hub, as its own process, so that its memory and CPU are its own.
	// Without the fleet metrics store: what this measures is the delivery of work to the
	// fleet, and the four processes that do it (the store's cost is its own figure).
	args := []string{"--log-level", "warn", "--metrics-retention", "-1s"}
	hubPprof := ""
	if os.Getenv("CONVOY_SCALE_PPROF") != "" {
		port, err := kubeproc.FreePort()
		must(b, err)
		hubPprof = fmt.Sprintf("127.0.0.1:%d", port)
		args = append(args, "--pprof-addr", hubPprof)
	}
	h := hubtest.StartProcess(b, hubtest.ProcessOptions{Args: args})
	defer h.Stop()
	if f := os.Getenv("CONVOY_SCALE_HUB_LOG"); f != "" {
		defer func() { _ = os.WriteFile(f, []byte(h.Output()), 0o644) }()
	}
	// The hub restarts a child that dies, so its pids are read again before each measure.
	pids := func() map[string]int {
		out := map[string]int{"convoy hub": h.PID(), simProcess: os.Getpid()}
		for _, c := range h.Status().Children {
			out[c.Name] = c.PID
		}
		return out
	}
	restarts := func() int {
		for _, c := range h.Status().Children {
			if c.Name == kubeproc.KubeAPIServer {
				return c.Restarts
			}
		}
		return 0
	}

	cfg := h.Config()
	cfg.QPS, cfg.Burst = 2000, 4000
	c, err := client.New(cfg, client.Options{Scheme: hubtest.Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	ca := cfg.CAData

	// Setup, not timed as registration: the Clusters and their bootstrap tokens, then the
	// hub's agent-access controller makes each one's namespace, ServiceAccount and settings.
	names := make([]string, n)
	tokens := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("sim-%04d", i)
	}
	setup := time.Now()
	parallel(32, n, func(i int) {
		t, err := sim.Register(ctx, c, names[i], map[string]string{"fleet": "scale"}, time.Hour)
		if err != nil {
			b.Error(err)
		}
		tokens[i] = t
	})
	if b.Failed() {
		b.FailNow()
	}
	waitUntil(b, "every cluster's agent ServiceAccount", 10*time.Minute, func() (bool, string) {
		list, err := cs.CoreV1().ServiceAccounts("").List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + v1alpha1.AgentServiceAccount(1)})
		if err != nil {
			return false, err.Error()
		}
		return len(list.Items) >= n, fmt.Sprintf("%d of %d", len(list.Items), n)
	})
	res.SetupSeconds = time.Since(setup).Seconds()
	fmt.Printf("setup (Clusters, tokens, namespaces, agent identities): %.1fs\n", res.SetupSeconds)

	// Registration: every agent starts at once; each cluster's time is until the hub says
	// it is Ready (joined, heartbeating, inventory reported).
	readyAt := newFirstSeen()
	watchClusters(b, ctx, cfg, func(cl *v1alpha1.Cluster) {
		if cl.Status.Phase == v1alpha1.ClusterReady {
			readyAt.see(cl.Name)
		}
	})
	var agentLog *slog.Logger
	if f := os.Getenv("CONVOY_SCALE_AGENT_LOG"); f != "" {
		out, err := os.Create(f)
		must(b, err)
		defer out.Close()
		agentLog = slog.New(slog.NewTextHandler(out, nil))
	}
	// The agents join on the hub's delivery port, as local clusters' agents do (the hub tells
	// them the port); CONVOY_SCALE_JOIN=api has them join through the API server instead, as
	// an agent that is not told the port does.
	deliveryPort := ""
	if os.Getenv("CONVOY_SCALE_JOIN") != "api" {
		cm, err := cs.CoreV1().ConfigMaps(v1alpha1.ClusterNamespace(names[0])).Get(ctx, v1alpha1.AgentConfigMap, metav1.GetOptions{})
		must(b, err)
		deliveryPort = cm.Data[v1alpha1.AgentConfigDeliveryPort]
	}
	fleet := sim.NewFleet(sim.Options{HubURL: cfg.Host, HubCA: ca, DeliveryPort: deliveryPort, StateDir: b.TempDir(), AvailableAfter: scaleAvailableAfter, Version: version.Convoy, Log: agentLog})
	defer fleet.StopAll()
	before := requestCounts(cs)
	profiled := make(chan bool, 1)
	go func() { profiled <- profile(cs, hubPprof, fmt.Sprintf("registration-%d", n), 5) }()
	start := time.Now()
	for i, name := range names {
		if _, err := fleet.Start(ctx, name, tokens[i]); err != nil {
			b.Fatal(err)
		}
	}
	waitUntil(b, "every cluster Ready", 10*time.Minute, func() (bool, string) {
		return readyAt.count() >= n, fmt.Sprintf("%d of %d Ready", readyAt.count(), n)
	})
	<-profiled
	res.RegistrationRequests = requestsSince(cs, before)
	res.Registration = percentiles(readyAt.since(start))
	fmt.Printf("registration, %d agents at once: p50 %.2fs p99 %.2fs max %.2fs\n", n, res.Registration.P50, res.Registration.P99, res.Registration.Max)
	fmt.Printf("writes to the hub during the registration: %v\n", res.RegistrationRequests)

	// Right after the registration, then idle, every agent heartbeating: once the
	// registration's garbage has been collected (Go's runtime collects at least every two
	// minutes), the memory is what an idle fleet holds.
	ready := readyAt.last()
	after := measure(pids(), func() { time.Sleep(15 * time.Second) })
	res.AfterRegistration = &after
	fmt.Printf("hub in the 15 s after the registration: %.0f MiB %v\n", after.TotalMiB, after.RSSMiB)
	if !trace { // a trace is of the propagation alone
		time.Sleep(time.Until(ready.Add(idleAfter)))
	}
	streamsBefore := h.Status().Delivery
	res.Idle = measure(pids(), func() {
		if !profile(cs, hubPprof, fmt.Sprintf("idle-%d", n), 30) {
			time.Sleep(30 * time.Second)
		}
	})
	res.IdleStream = streamCost(streamsBefore, h.Status().Delivery, float64(n)*res.Idle.Seconds)
	heapProfile(cs, hubPprof, fmt.Sprintf("idle-%d", n))
	fmt.Printf("hub idle with %d clusters: %.0f MiB, %.0f millicores %v\n", n, res.Idle.TotalMiB, res.Idle.Millicores, res.Idle.CPU)
	if s := res.IdleStream; s != nil {
		fmt.Printf("delivery streams idle, per cluster and second: %.0f bytes down, %.0f up; %.2f messages down, %.2f up\n", s.BytesDown, s.BytesUp, s.MessagesDown, s.MessagesUp)
	}

	// A Deployment duplicated to every cluster, placed once (not timed as propagation).
	must(b, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "scale"}}))
	d := scaleDeployment("nginx:1.27")
	must(b, c.Create(ctx, d))
	// Each cluster counts once the hub's Placement status says it is Available with the
	// template's current content (what `convoy status` shows): not the Works' stored status,
	// which the hub writes at its own pace from what the agents report on their streams.
	// After a change, a row is Available again only once the cluster's agent has reported on
	// the new content, so any status written after the change (a resourceVersion other than
	// the one before it) shows that; the hub may write none in between, when all its clusters
	// report within a second (propagation.foldFor).
	availableAt := newFirstSeen()
	var changing atomic.Bool
	var rvMu sync.Mutex
	lastRV, beforeRV := "", ""
	var traceStart atomic.Int64
	watchPlacements(b, ctx, cfg, func(p *v1alpha1.Placement) {
		rvMu.Lock()
		defer rvMu.Unlock()
		lastRV = p.ResourceVersion
		if changing.Load() && p.ResourceVersion == beforeRV {
			return
		}
		avail := 0
		for _, row := range p.Status.Clusters {
			if row.Available {
				avail++
				availableAt.see(row.Cluster)
			}
		}
		if t0 := traceStart.Load(); trace && t0 != 0 {
			fmt.Printf("trace: %.3fs placement status rv %s: %d of %d rows available\n", time.Since(time.Unix(0, t0)).Seconds(), p.ResourceVersion, avail, len(p.Status.Clusters))
		}
	})
	start = time.Now()
	must(b, c.Create(ctx, &v1alpha1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: "scale", Name: "web"}, Spec: v1alpha1.PlacementSpec{
		Resources: []v1alpha1.ResourceSelector{{Group: "apps", Kind: "Deployment", Name: "web"}},
		Clusters:  v1alpha1.ClusterAffinity{LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"fleet": "scale"}}},
		Replicas:  &v1alpha1.ReplicaScheduling{Type: v1alpha1.Duplicated},
	}}))
	waitUntil(b, "the first placement available everywhere", 10*time.Minute, func() (bool, string) {
		return availableAt.count() >= n, fmt.Sprintf("%d of %d", availableAt.count(), n)
	})
	res.InitialPlacement = percentiles(availableAt.since(start))
	fmt.Printf("first placement to %d clusters: p50 %.2fs p99 %.2fs\n", n, res.InitialPlacement.P50, res.InitialPlacement.P99)
	time.Sleep(10 * time.Second)

	// Propagation: the template changes; each cluster's time is until the hub's Placement
	// status says it has the new revision Available.
	rvMu.Lock()
	availableAt.reset()
	beforeRV = lastRV
	changing.Store(true)
	rvMu.Unlock()
	var peak Usage
	streamsBefore = h.Status().Delivery
	peak = measure(pids(), func() {
		before := requestCounts(cs)
		defer func() { res.Requests = requestsSince(cs, before) }()
		profiled := make(chan bool)
		go func() { profiled <- profile(cs, hubPprof, fmt.Sprintf("propagation-%d", n), 3) }()
		defer func() { <-profiled }()
		start = time.Now()
		traceStart.Store(start.UnixNano())
		if trace {
			fmt.Printf("trace: change at %d\n", start.UnixMilli())
		}
		must(b, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			got := &appsv1.Deployment{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(d), got); err != nil {
				return err
			}
			got.Spec.Template.Spec.Containers[0].Image = "nginx:1.28"
			return c.Update(ctx, got)
		}))
		waitUntil(b, "the change available everywhere", 10*time.Minute, func() (bool, string) {
			return availableAt.count() >= n, fmt.Sprintf("%d of %d", availableAt.count(), n)
		})
	})
	res.Propagation = percentiles(availableAt.since(start))
	res.DuringPropagation = peak
	res.PropagationStream = streamCost(streamsBefore, h.Status().Delivery, float64(n))
	if s := res.PropagationStream; s != nil {
		fmt.Printf("delivery streams during the propagation, per cluster: %.0f bytes down, %.0f up; %.2f messages down, %.2f up; %.2f Work contents handed ahead of their write, %.2f stored by then\n",
			s.BytesDown, s.BytesUp, s.MessagesDown, s.MessagesUp, s.Handed, s.Stored)
	}
	// The hub stores the handed Works at a paced rate after the agents have them: the floor
	// below waits until it is done, so that it measures its own writes alone.
	waitUntil(b, "the handed Works stored", 10*time.Minute, func() (bool, string) {
		if d := h.Status().Delivery; d != nil && d.Pending > 0 {
			return false, fmt.Sprintf("%d pending", d.Pending)
		}
		return true, ""
	})
	if s := res.PropagationStream; s != nil && s.Handed > 0 {
		res.StoredAfter = time.Since(start).Seconds()
		fmt.Printf("the handed Works all stored %.1fs after the template change\n", res.StoredAfter)
	}
	fmt.Printf("template change -> Available in all %d clusters: p50 %.2fs p90 %.2fs p99 %.2fs max %.2fs (hub %.0f MiB peak, %.0f millicores %v)\n",
		n, res.Propagation.P50, res.Propagation.P90, res.Propagation.P99, res.Propagation.Max, peak.TotalMiB, peak.Millicores, peak.CPU)
	fmt.Printf("writes to the hub during the propagation: %v\n", res.Requests)

	// The floor, on the same API server with the same agents heartbeating: one object per
	// cluster of the same size as its Work, written 16 at a time (as the hub writes Works),
	// each seen by its own watcher.
	w := &v1alpha1.Work{}
	must(b, c.Get(ctx, client.ObjectKey{Namespace: v1alpha1.ClusterNamespace(names[0]), Name: "scale.web"}, w))
	payload, _ := json.Marshal(w.Spec)
	res.Floor = floor(b, ctx, cs, names, string(payload))
	res.RatioP99 = res.Propagation.P99 / res.Floor.P99
	fmt.Printf("floor, %d objects of %d bytes written straight, seen by %d watchers: p50 %.2fs p90 %.2fs p99 %.2fs; Convoy p99 / floor p99 = %.2f\n",
		n, len(payload), n, res.Floor.P50, res.Floor.P90, res.Floor.P99, res.RatioP99)
	if rss, err := RSS(os.Getpid()); err == nil {
		res.SimProcessMiB = float64(rss) / (1 << 20)
	}
	if res.APIServerRestarts = restarts(); res.APIServerRestarts > 0 {
		fmt.Printf("the hub restarted its API server %d times during the run\n", res.APIServerRestarts)
	}
	return res
}

// perCluster renders write counts divided by the number of clusters, the most first.
func perCluster(requests map[string]int, n int) string {
	if len(requests) == 0 {
		return "not measured"
	}
	keys := slices.Collect(maps.Keys(requests))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(requests[b]-requests[a], strings.Compare(a, b)) })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, float64(requests[k])/float64(n)))
	}
	return strings.Join(parts, ", ")
}

// requestsSince is how many write requests of each kind the API server took since before, or
// nil when that cannot be told: its metrics did not answer, or it restarted meanwhile (its
// counters began again from zero).
func requestsSince(cs kubernetes.Interface, before map[string]int) map[string]int {
	after := requestCounts(cs)
	if after == nil || before == nil {
		fmt.Println("writes unknown: the API server's metrics did not answer")
		return nil
	}
	out := map[string]int{}
	for k, v := range after {
		if v < before[k] {
			fmt.Println("writes unknown: the API server restarted during the measurement")
			return nil
		}
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// requestCounts reads the API server's count of write requests by verb, resource and
// subresource from its metrics.
func requestCounts(cs kubernetes.Interface) map[string]int {
	var raw []byte
	var err error
	for attempt := range 5 { // a loaded API server may not answer at once
		if raw, err = cs.CoreV1().RESTClient().Get().AbsPath("/metrics").Timeout(30 * time.Second).DoRaw(context.Background()); err == nil {
			break
		}
		time.Sleep(time.Duration(attempt+1) * time.Second)
	}
	if err != nil {
		return nil
	}
	out := map[string]int{}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		labels, value, _ := strings.Cut(line[len("apiserver_request_total{"):], "} ")
		l := map[string]string{}
		for kv := range strings.SplitSeq(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			l[k] = strings.Trim(v, `"`)
		}
		switch l["verb"] {
		case "POST", "PUT", "PATCH", "DELETE", "APPLY":
		default:
			continue
		}
		n, _ := strconv.ParseFloat(value, 64)
		key := l["verb"] + " " + l["resource"]
		if l["subresource"] != "" {
			key += "/" + l["subresource"]
		}
		out[key] += int(n)
	}
	return out
}

// profile saves CPU profiles of the hub's API server, of the hub process (served on hubPprof,
// when set) and of the benchmark's own process (the simulated clusters) to
// $CONVOY_SCALE_PPROF/NAME.pprof, NAME-hub.pprof and NAME-sim.pprof, all over about the same
// seconds, when that is set, and says whether it did.
func profile(cs kubernetes.Interface, hubPprof, name string, seconds int) bool {
	dir := os.Getenv("CONVOY_SCALE_PPROF")
	if dir == "" {
		return false
	}
	var hubErr error
	var wg sync.WaitGroup
	if hubPprof != "" {
		wg.Go(func() {
			hc := &http.Client{Timeout: time.Duration(seconds+30) * time.Second}
			resp, err := hc.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", hubPprof, seconds))
			if err != nil {
				hubErr = err
				return
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s: %s", resp.Status, raw)
			}
			if err != nil {
				hubErr = err
				return
			}
			hubErr = os.WriteFile(filepath.Join(dir, name+"-hub.pprof"), raw, 0o644)
		})
	}
	// The benchmark's own process too: the simulated clusters' agents share the hub's cores.
	if f, err := os.Create(filepath.Join(dir, name+"-sim.pprof")); err == nil {
		defer f.Close() // after the profile is written (deferred calls run last first)
		if pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		} else {
			defer os.Remove(f.Name()) // profiled already (go test -cpuprofile)
		}
	}
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", strconv.Itoa(seconds)).Timeout(time.Duration(seconds+30) * time.Second).DoRaw(context.Background())
	wg.Wait()
	if hubErr != nil {
		fmt.Printf("profile %s of the hub process: %v\n", name, hubErr)
	}
	if err != nil {
		fmt.Printf("profile %s: %v\n", name, err)
		return false
	}
	_ = os.WriteFile(filepath.Join(dir, name+".pprof"), raw, 0o644)
	return true
}

// heapProfile saves the heaps of the hub's API server and of the hub process to
// $CONVOY_SCALE_PPROF/NAME.heap and NAME-hub.heap, when that is set: what the memory is.
// Each process collects its garbage first (gc=1), so the profile shows what is live now, not
// at whatever collection came last (at idle that can be minutes old).
func heapProfile(cs kubernetes.Interface, hubPprof, name string) {
	dir := os.Getenv("CONVOY_SCALE_PPROF")
	if dir == "" {
		return
	}
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/heap").Param("gc", "1").Timeout(time.Minute).DoRaw(context.Background())
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, name+".heap"), raw, 0o644)
	}
	if err != nil {
		fmt.Printf("heap profile %s: %v\n", name, err)
	}
	if hubPprof == "" {
		return
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Get("http://" + hubPprof + "/debug/pprof/heap?gc=1")
	if err == nil {
		defer resp.Body.Close()
		if raw, err = io.ReadAll(resp.Body); err == nil && resp.StatusCode == http.StatusOK {
			err = os.WriteFile(filepath.Join(dir, name+"-hub.heap"), raw, 0o644)
		} else if err == nil {
			err = fmt.Errorf("%s", resp.Status)
		}
	}
	if err != nil {
		fmt.Printf("heap profile %s of the hub process: %v\n", name, err)
	}
}

// floor writes one ConfigMap with payload into each cluster's namespace and returns how long
// each took to reach a watcher of that namespace, from the first write.
func floor(b *testing.B, ctx context.Context, cs kubernetes.Interface, names []string, payload string) Percentiles {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	seen := newFirstSeen()
	var wg sync.WaitGroup
	for _, name := range names {
		ns := v1alpha1.ClusterNamespace(name)
		wi, err := cs.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", "floor").String()})
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			defer wi.Stop()
			for ev := range wi.ResultChan() {
				if ev.Type == watch.Added {
					seen.see(ns)
					return
				}
			}
		})
	}
	start := time.Now()
	parallel(16, len(names), func(i int) {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace(names[i]), Name: "floor"}, Data: map[string]string{"work": payload}}
		if _, err := cs.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			b.Error(err)
		}
	})
	waitUntil(b, "every floor object seen", 10*time.Minute, func() (bool, string) {
		return seen.count() >= len(names), fmt.Sprintf("%d of %d", seen.count(), len(names))
	})
	cancel()
	wg.Wait()
	return percentiles(seen.since(start))
}

// simProcess names the benchmark's own process (the simulated clusters and the watchers)
// in Usage; it is not part of the hub's totals.
const simProcess = "benchmark (simulated clusters)"

// measure runs f and returns the hub's CPU use over it and its resident memory (the peak of
// samples every 250 ms), and the benchmark process's on the side.
func measure(pids map[string]int, f func()) Usage {
	cpu0 := map[string]time.Duration{}
	for name, pid := range pids {
		cpu0[name], _ = CPUTime(pid)
	}
	u := Usage{RSSMiB: map[string]float64{}, CPU: map[string]float64{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			var total float64
			for name, pid := range pids {
				rss, _ := RSS(pid)
				mib := float64(rss) / (1 << 20)
				u.RSSMiB[name] = max(u.RSSMiB[name], mib)
				if name != simProcess {
					total += mib
				}
			}
			u.TotalMiB = max(u.TotalMiB, total)
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	start := time.Now()
	f()
	took := time.Since(start)
	close(stop)
	wg.Wait()
	var used time.Duration
	for name, pid := range pids {
		c, _ := CPUTime(pid)
		u.CPU[name] = millicores(c-cpu0[name], took)
		if name != simProcess {
			used += c - cpu0[name]
		}
	}
	u.Seconds = took.Seconds()
	u.Millicores = millicores(used, took)
	return u
}

// firstSeen records when each key was first seen.
type firstSeen struct {
	mu sync.Mutex
	at map[string]time.Time
}

func newFirstSeen() *firstSeen { return &firstSeen{at: map[string]time.Time{}} }

func (f *firstSeen) see(k string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.at[k]; !ok {
		f.at[k] = time.Now()
	}
}

func (f *firstSeen) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.at)
}

// last is when the latest key was first seen.
func (f *firstSeen) last() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	var t time.Time
	for _, at := range f.at {
		if at.After(t) {
			t = at
		}
	}
	return t
}

func (f *firstSeen) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.at = map[string]time.Time{}
}

func (f *firstSeen) since(t time.Time) []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []time.Duration
	for _, at := range f.at {
		out = append(out, at.Sub(t))
	}
	return out
}

func watchClusters(b *testing.B, ctx context.Context, cfg *rest.Config, f func(*v1alpha1.Cluster)) {
	watchKind(b, ctx, cfg, &v1alpha1.Cluster{}, func(o any) {
		if cl, ok := o.(*v1alpha1.Cluster); ok {
			f(cl)
		}
	})
}

func watchPlacements(b *testing.B, ctx context.Context, cfg *rest.Config, f func(*v1alpha1.Placement)) {
	watchKind(b, ctx, cfg, &v1alpha1.Placement{}, func(o any) {
		if w, ok := o.(*v1alpha1.Placement); ok {
			f(w)
		}
	})
}

// watchKind calls f with each object of obj's kind the hub adds or changes, until ctx ends.
func watchKind(b *testing.B, ctx context.Context, cfg *rest.Config, obj client.Object, f func(any)) {
	cache, err := ctrlcache.New(cfg, ctrlcache.Options{Scheme: hubtest.Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	inf, err := cache.GetInformer(ctx, obj)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{AddFunc: f, UpdateFunc: func(_, o any) { f(o) }})
	go cache.Start(ctx)
	cache.WaitForCacheSync(ctx)
}

var parallel = hubtest.Parallel

func waitUntil(b *testing.B, what string, timeout time.Duration, cond func() (bool, string)) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("%s: not within %s (%s)", what, timeout, last)
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

func printScale(r ScaleResult) {
	fmt.Printf("summary N=%d: registration p99 %.2fs; idle %.0f MiB %.0f mcores; propagation p50 %.2fs p90 %.2fs p99 %.2fs; floor p99 %.2fs; ratio %.2f\n",
		r.Clusters, r.Registration.P99, r.Idle.TotalMiB, r.Idle.Millicores, r.Propagation.P50, r.Propagation.P90, r.Propagation.P99, r.Floor.P99, r.RatioP99)
}

// findingsMarker starts the hand-written part of docs/SCALE.md, which make bench-scale keeps.
const findingsMarker = "<!-- findings: written by hand; make bench-scale keeps everything from here on -->"

// scaleMarkdown renders the report as docs/SCALE.md.
func scaleMarkdown(rep ScaleReport) string {
	var s strings.Builder
	fmt.Fprintf(&s, "# Scale: simulated fleets against one hub\n\n")
	fmt.Fprintf(&s, "Written by `make bench-scale` (test/bench/scale_test.go, BenchmarkScale) on %s. Do not edit by hand;\n", rep.Date)
	fmt.Fprintf(&s, "run it again. The same figures are in [scale.json](scale.json).\n\n")
	fmt.Fprintf(&s, "## Method\n\n")
	fmt.Fprintf(&s, "- **Machine:** %s.\n", rep.Machine)
	fmt.Fprintf(&s, "- **Hub:** `convoy hub` as its own process, with kube-apiserver %s and %s, and the hub's controllers, all defaults but the fleet metrics store, which is off (since 2026-12-03; it is not part of delivery).\n", rep.Kubernetes, rep.Datastore)
	fmt.Fprintf(&s, "- **Members:** N simulated clusters in the benchmark's process (internal/sim). Each runs the real agent: it joins with a bootstrap token, trades it for its own ServiceAccount token, opens its delivery stream to the hub and heartbeats on it every %s, reports its inventory, watches its Works and reports their status on the stream (the hub stores it in the Works at most 20 a second). Only the member cluster is in memory; a workload reports itself available %s after it is applied.\n", rep.HeartbeatInterval, rep.AvailableAfter)
	fmt.Fprintf(&s, "- **Registration:** the Clusters (imported, known only through their agents) and their bootstrap tokens are made first (the setup time), then all N agents start at once; each cluster's time runs until the hub reports it Ready.\n")
	fmt.Fprintf(&s, "- **Idle:** 30 s with every agent heartbeating, from %s after the last cluster became Ready: Go's runtime collects garbage at least every two minutes, so by then the memory is what the idle fleet holds, not what the registration left behind (the 15 s right after it are given apart; before 2026-12-03 afternoon the idle window began 15 s after the registration). Memory is the peak resident memory (RSS) of the hub process, kine, kube-apiserver and kube-controller-manager together; CPU is their CPU time over the window.\n", idleAfter)
	fmt.Fprintf(&s, "- **Propagation:** a Deployment duplicated to all N clusters by one Placement; its image changes on the hub, and each cluster's time runs from that update until the hub's Placement status shows the cluster Available with the new content, which is what `convoy status` shows (p50, p90, p99 over clusters; before 2026-12-02 the time ran until the Work's stored status said so, which the agent wrote itself). A row counts from the first status written after the update that shows it Available: since 2026-12-03 evening the hub holds back, for up to a second, a status change that only counts reports while more are due, so it may write none in between. The hub's memory is the peak, CPU the average over that time; CPU per cluster is the hub's processes' CPU time over that time divided by N.\n")
	fmt.Fprintf(&s, "- **Floor:** in the same run, with the same agents heartbeating, N objects of the same size as a Work are written straight to the same API server, 16 at a time (as the hub writes Works), and each is timed until a watcher of its own namespace sees it. The ratio is Convoy's p99 over the floor's p99.\n\n")
	fmt.Fprintf(&s, "## Results\n\n")
	fmt.Fprintf(&s, "| Clusters | Registration p99 | Hub idle RSS | Hub idle CPU | Propagation p50 | p90 | p99 | Floor p99 | p99 / floor | Hub RSS during | Hub CPU during |\n")
	fmt.Fprintf(&s, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.Results {
		fmt.Fprintf(&s, "| %d | %.2f s | %.0f MiB | %.0f m | %.2f s | %.2f s | %.2f s | %.2f s | %.2f | %.0f MiB | %.0f m |\n",
			r.Clusters, r.Registration.P99, r.Idle.TotalMiB, r.Idle.Millicores, r.Propagation.P50, r.Propagation.P90, r.Propagation.P99,
			r.Floor.P99, r.RatioP99, r.DuringPropagation.TotalMiB, r.DuringPropagation.Millicores)
	}
	fmt.Fprintf(&s, "\nCPU is in millicores (1000 m = one core of the %d). More detail per size:\n\n", rep.Cores)
	fmt.Fprintf(&s, "| Clusters | Setup | Registration p50 / max | First placement p50 / p99 | Floor p50 / p90 | RSS in the 15 s after the registration | Idle RSS: hub / kine / apiserver / controller-manager | Benchmark process RSS | Propagation CPU per cluster: hub process / all |\n")
	fmt.Fprintf(&s, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.Results {
		rss := r.Idle.RSSMiB
		d := r.DuringPropagation
		perCluster := func(millicores float64) float64 { return millicores * d.Seconds / float64(max(r.Clusters, 1)) }
		afterReg := "-"
		if r.AfterRegistration != nil {
			afterReg = fmt.Sprintf("%.0f MiB", r.AfterRegistration.TotalMiB)
		}
		fmt.Fprintf(&s, "| %d | %.1f s | %.2f s / %.2f s | %.2f s / %.2f s | %.2f s / %.2f s | %s | %.0f / %.0f / %.0f / %.0f MiB | %.0f MiB | %.1f / %.1f ms |\n",
			r.Clusters, r.SetupSeconds, r.Registration.P50, r.Registration.Max, r.InitialPlacement.P50, r.InitialPlacement.P99,
			r.Floor.P50, r.Floor.P90, afterReg, rss["convoy hub"], rss[kubeproc.Kine], rss[kubeproc.KubeAPIServer], rss[kubeproc.KubeControllerManager], r.SimProcessMiB,
			perCluster(d.CPU["convoy hub"]), perCluster(d.Millicores))
	}
	fmt.Fprintf(&s, "\nWrites to the hub's API server per cluster, from its request metrics (registration: from the first agent's start until all are Ready; propagation: from the template change until all report it Available):\n\n")
	fmt.Fprintf(&s, "| Clusters | Registration | Propagation |\n|---:|---|---|\n")
	for _, r := range rep.Results {
		fmt.Fprintf(&s, "| %d | %s | %s |\n", r.Clusters, perCluster(r.RegistrationRequests, r.Clusters), perCluster(r.Requests, r.Clusters))
	}
	streams := false
	for _, r := range rep.Results {
		streams = streams || r.IdleStream != nil || r.PropagationStream != nil
	}
	if streams {
		fmt.Fprintf(&s, "\nWhat the agents' delivery streams carried per cluster, counted by the hub (messages, and their bytes with gRPC's framing; TLS and HTTP/2 add a little; down is hub to agent). Idle is per second; the propagation's counts include the heartbeats sent meanwhile:\n\n")
		fmt.Fprintf(&s, "| Clusters | Idle: bytes down / up per s | Idle: messages down / up per s | Propagation: bytes down / up | Propagation: messages down / up |\n|---:|---:|---:|---:|---:|\n")
		cost := func(c *StreamCost, f string) string {
			if c == nil {
				return "not measured"
			}
			if f == "bytes" {
				return fmt.Sprintf("%.0f / %.0f", c.BytesDown, c.BytesUp)
			}
			return fmt.Sprintf("%.2f / %.2f", c.MessagesDown, c.MessagesUp)
		}
		for _, r := range rep.Results {
			fmt.Fprintf(&s, "| %d | %s | %s | %s | %s |\n", r.Clusters, cost(r.IdleStream, "bytes"), cost(r.IdleStream, "messages"),
				cost(r.PropagationStream, "bytes"), cost(r.PropagationStream, "messages"))
		}
		for _, r := range rep.Results {
			if c := r.PropagationStream; c != nil && c.Handed > 0 {
				fmt.Fprintf(&s, "\nWith %d clusters the hub handed %.2f Work contents per cluster to the streams ahead of their write; %.2f per cluster were stored by the time all clusters had the change Available, and the last %.1f s after the change (the Writer stores 50 a second).\n",
					r.Clusters, c.Handed, c.Stored, r.StoredAfter)
			}
		}
	}
	for _, r := range rep.Results {
		if r.APIServerRestarts > 0 {
			fmt.Fprintf(&s, "\nIn the run with %d clusters the API server failed and the hub restarted it %d times; its request counts began again from zero, so what they cover is not known.\n", r.Clusters, r.APIServerRestarts)
		}
	}
	fmt.Fprintf(&s, "\n## What one write costs\n\n")
	fmt.Fprintf(&s, "Measured first in the same run (BenchmarkWriteCost alone prints the same): a hub of its own, 300 namespaces, each kind written to all of them 16 at a time, three rounds, the median round. CPU is that of kube-apiserver and kine per write.\n\n")
	fmt.Fprintf(&s, "| Write | Wall per write | kube-apiserver CPU | kine CPU | Together |\n|---|---:|---:|---:|---:|\n")
	for _, c := range rep.WriteCosts {
		fmt.Fprintf(&s, "| %s | %.2f ms | %.2f ms | %.2f ms | %.2f ms |\n", c.Write, c.WallMs, c.APIServerCPUs, c.KineCPUMs, c.CPUMs())
	}
	fmt.Fprintf(&s, "\nA propagation costs each cluster one hub write of its Work; the agent's status report is a message on its stream (before 2026-12-02 it was a write too, the second row above). With nothing else running and all %d cores busy with only those writes, a propagation could not finish faster than:\n\n", rep.Cores)
	fmt.Fprintf(&s, "| Clusters | Lower bound: API server and kine | API server alone (any datastore) | Measured p99 |\n|---:|---:|---:|---:|\n")
	for _, r := range rep.Results {
		fmt.Fprintf(&s, "| %d | %.2f s | %.2f s | %.2f s |\n", r.Clusters, rep.LowerBound(r.Clusters, true), rep.LowerBound(r.Clusters, false), r.Propagation.P99)
	}
	return s.String()
}
