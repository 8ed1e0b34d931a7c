package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// WriteCost is what one write of a kind costs the hub: wall time per write with 16 writers
// at a time, and the CPU of kube-apiserver and kine per write, in milliseconds.
type WriteCost struct {
	Write         string  `json:"write"`
	WallMs        float64 `json:"wallMs"`
	APIServerCPUs float64 `json:"apiserverCPUMs"`
	KineCPUMs     float64 `json:"kineCPUMs"`
}

// CPUMs is the write's CPU in the API server and the datastore together.
func (w WriteCost) CPUMs() float64 { return w.APIServerCPUs + w.KineCPUMs }

// The writes a propagation costs per cluster, by their names in WriteCosts.
const (
	hubWorkWrite   = "Work spec merge patch (hub)"
	agentWorkWrite = "Work status patch (agent)"
)

// BenchmarkWriteCost prints what one write of each kind costs the hub's API server and
// datastore (the unit behind BenchmarkScale's figures, which measures them too).
// CONVOY_WRITECOST_N sets how many objects of each kind are written (300).
func BenchmarkWriteCost(b *testing.B) {
	n := 300
	if s := os.Getenv("CONVOY_WRITECOST_N"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			b.Fatalf("CONVOY_WRITECOST_N: %q is not a number of objects", s)
		}
	}
	for _, c := range measureWriteCosts(b, n) {
		printWriteCost(c)
	}
}

func printWriteCost(c WriteCost) {
	fmt.Printf("%-28s %5.2f ms wall  kube-apiserver %5.2f ms  kine %5.2f ms  together %5.2f ms of CPU\n", c.Write, c.WallMs, c.APIServerCPUs, c.KineCPUMs, c.CPUMs())
}

// measureWriteCosts starts a hub of its own (`convoy hub`, its controllers idle), makes n
// namespaces, and writes each kind to all of them, 16 writers at a time, three rounds each;
// the median round counts, as other work on the machine makes single rounds noisy.
func measureWriteCosts(b *testing.B, n int) []WriteCost {
	h := hubtest.StartProcess(b, hubtest.ProcessOptions{Args: []string{"--log-level", "warn"}})
	defer h.Stop()
	ctx := context.Background()
	cfg := h.Config()
	cfg.QPS, cfg.Burst = 5000, 10000
	c, err := client.New(cfg, client.Options{Scheme: hubtest.Scheme()})
	must(b, err)
	cs := kubernetes.NewForConfigOrDie(cfg)
	pids := map[string]int{}
	for _, ch := range h.Status().Children {
		pids[ch.Name] = ch.PID
	}
	ns := &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: "scale"}}
	raw := func(o any) runtime.RawExtension { j, _ := json.Marshal(o); return runtime.RawExtension{Raw: j} }
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("wc-%04d", i)
	}
	parallel(16, n, func(i int) {
		check(b, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: names[i]}}))
	})
	if b.Failed() {
		b.FailNow()
	}
	var costs []WriteCost
	cost := func(what string, f func(round, i int)) {
		var rounds []time.Duration
		cpu := map[string][]time.Duration{}
		for round := range 3 {
			cpu0 := map[string]time.Duration{}
			for name, pid := range pids {
				cpu0[name] = cpuTime(b, pid)
			}
			start := time.Now()
			parallel(16, n, func(i int) { f(round, i) })
			if b.Failed() {
				b.FailNow()
			}
			rounds = append(rounds, time.Since(start))
			for name, pid := range pids {
				c1 := cpuTime(b, pid)
				cpu[name] = append(cpu[name], c1-cpu0[name])
			}
		}
		per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(n) }
		costs = append(costs, WriteCost{Write: what, WallMs: per(Median(rounds)), APIServerCPUs: per(Median(cpu[kubeproc.KubeAPIServer])), KineCPUMs: per(Median(cpu[kubeproc.Kine]))})
	}
	work := func(i int, image string) *v1alpha1.Work {
		dd := scaleDeployment(image)
		return &v1alpha1.Work{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Work"},
			ObjectMeta: metav1.ObjectMeta{Namespace: names[i], Name: "scale.web", Labels: map[string]string{v1alpha1.LabelPlacement: "web"}},
			Spec:       v1alpha1.WorkSpec{Manifests: []runtime.RawExtension{raw(ns), raw(dd)}},
		}
	}
	payload, _ := json.Marshal(work(0, "nginx:1.27").Spec)
	fmt.Printf("write costs: %d objects of each kind, a Work's spec %d bytes\n", n, len(payload))

	// The first create of each kind happens outside the rounds; rounds then write changes,
	// as a propagation and a heartbeat do.
	parallel(16, n, func(i int) {
		check(b, c.Create(ctx, work(i, "nginx:1.27")))
		_, err := cs.CoreV1().ConfigMaps(names[i]).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "floor"}, Data: map[string]string{"work": string(payload)}}, metav1.CreateOptions{})
		check(b, err)
		_, err = cs.CoordinationV1().Leases(names[i]).Create(ctx, leaseFor(names[i]), metav1.CreateOptions{})
		check(b, err)
	})
	if b.Failed() {
		b.FailNow()
	}
	cost(hubWorkWrite, func(round, i int) {
		w := work(i, fmt.Sprintf("nginx:1.%d", 28+round))
		p, _ := json.Marshal(map[string]any{"spec": w.Spec})
		check(b, c.Patch(ctx, w, client.RawPatch(types.MergePatchType, p)))
	})
	cost(agentWorkWrite, func(round, i int) {
		gen := int64(2 + round)
		st := map[string]any{"status": map[string]any{"observedGeneration": gen, "conditions": []metav1.Condition{
			{Type: v1alpha1.WorkApplied, Status: metav1.ConditionTrue, Reason: "Applied", Message: "2 of 2 applied", ObservedGeneration: gen, LastTransitionTime: metav1.Now()},
			{Type: v1alpha1.WorkAvailable, Status: metav1.ConditionTrue, Reason: "Available", Message: "2 of 2 available", ObservedGeneration: gen, LastTransitionTime: metav1.Now()},
		}}}
		p, _ := json.Marshal(st)
		check(b, c.Status().Patch(ctx, work(i, ""), client.RawPatch(types.MergePatchType, p)))
	})
	cost("ConfigMap create (floor)", func(round, i int) {
		name := fmt.Sprintf("floor-%d", round)
		_, err := cs.CoreV1().ConfigMaps(names[i]).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"work": string(payload)}}, metav1.CreateOptions{})
		check(b, err)
	})
	cost("ConfigMap merge patch", func(round, i int) {
		p, _ := json.Marshal(map[string]any{"data": map[string]string{"round": strconv.Itoa(round)}})
		_, err := cs.CoreV1().ConfigMaps(names[i]).Patch(ctx, "floor", types.MergePatchType, p, metav1.PatchOptions{})
		check(b, err)
	})
	cost("Lease renewal (heartbeat)", func(round, i int) {
		p, _ := json.Marshal(map[string]any{"spec": map[string]any{"renewTime": metav1.NowMicro()}})
		_, err := cs.CoordinationV1().Leases(names[i]).Patch(ctx, "agent", types.MergePatchType, p, metav1.PatchOptions{})
		check(b, err)
	})
	return costs
}

// check reports an error of a write from any goroutine; the caller stops once the batch is done.
func check(b *testing.B, err error) {
	if err != nil {
		b.Error(err)
	}
}

func cpuTime(b *testing.B, pid int) time.Duration {
	d, err := CPUTime(pid)
	if err != nil {
		b.Fatalf("CPU time of process %d: %v", pid, err)
	}
	return d
}

func leaseFor(name string) *coordinationv1.Lease {
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "agent"}, Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(name), LeaseDurationSeconds: ptr.To[int32](40)}}
}
