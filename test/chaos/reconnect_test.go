//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/sim"
)

// TestReconnectStorm kills the hub (SIGKILL) under 1,000 simulated clusters that run a placed
// Deployment and starts it again at once, so that every agent reconnects at the same time:
// its delivery stream (a TokenReview each, on a hub whose caches are cold), its watches of
// the hub (a list each) and its reports. While they do, kubectl asks the hub for the
// Placements every 250 ms, as a user would. The test requires that every agent is back and
// every cluster Ready, that every kubectl call succeeded, that nothing was deleted on any
// member and that nothing was applied again (a restarted hub re-derives what it wants, and
// the agents, which hold what they applied, find it unchanged; the barrier is a change made
// afterwards, which each member must apply as its only apply since). It prints how long the agents
// took to come back and how long kubectl took, both the hub's answers (from kubectl's own log)
// and the whole command, whose start competes for the two cores with the simulated fleet; the goals of issue 15 (every cluster
// back within 30 s, kubectl within 1 s) are reported as met or not, not asserted: timings are
// measurements on a shared machine (docs/SCALE.md, "Faults").
//
// CONVOY_CHAOS_RECONNECT_N sets the fleet's size (default 1,000).
func TestReconnectStorm(t *testing.T) {
	n := 1000
	if s := os.Getenv("CONVOY_CHAOS_RECONNECT_N"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("CONVOY_CHAOS_RECONNECT_N=%q: want a positive number", s)
		}
	}
	ctx := context.Background()
	h := startHubProcess(t)
	log := &logCounter{}
	fleet := sim.NewFleet(sim.Options{HubURL: h.Config.Host, HubCA: h.Config.CAData, StateDir: t.TempDir(),
		AvailableAfter: 100 * time.Millisecond, Version: "chaos", Log: slog.New(log)})
	t.Cleanup(fleet.StopAll)
	c := h.Client

	// Registration as the scale benchmark does it: tokens issued 32 at a time, then every
	// agent started at once.
	names := make([]string, n)
	tokens := make([]string, n)
	var regErr error
	var mu sync.Mutex
	hubtest.Parallel(32, n, func(i int) {
		names[i] = fmt.Sprintf("storm-%04d", i)
		tok, err := sim.Register(ctx, c, names[i], map[string]string{"fleet": "storm"}, time.Hour)
		mu.Lock()
		defer mu.Unlock()
		tokens[i] = tok
		if err != nil && regErr == nil {
			regErr = err
		}
	})
	must(t, regErr)
	for i, name := range names {
		_, err := fleet.Start(ctx, name, tokens[i])
		must(t, err)
	}
	eventually(t, "every simulated cluster Ready", 5*time.Minute, func() (bool, error) {
		return readyCount(ctx, c, "storm", n)
	})

	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}))
	must(t, c.Create(ctx, webDeployment("shop", "web:1", 2)))
	must(t, c.Create(ctx, &v1alpha1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: v1alpha1.PlacementSpec{
		Resources: []v1alpha1.ResourceSelector{{Group: "apps", Kind: "Deployment", Name: "web"}},
		Clusters:  v1alpha1.ClusterAffinity{LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"fleet": "storm"}}},
		Replicas:  &v1alpha1.ReplicaScheduling{Type: v1alpha1.Duplicated},
	}}))
	eventually(t, "the Deployment available on every member", 5*time.Minute, func() (bool, error) {
		for _, name := range names {
			if image, ok := memberImage(fleet.Get(name).Member, "shop"); image != "web:1" || !ok {
				return false, fmt.Errorf("%s runs %q (available %v)", name, image, ok)
			}
		}
		return true, nil
	})
	placementAvailable(t, ctx, c)
	applies := map[string]int64{}
	for _, name := range names {
		applies[name] = fleet.Get(name).Member.Applies()
	}

	h.Kill()
	started := time.Now()
	h.Start()
	ready := time.Now()
	t.Logf("hub ready again %s after the start", ready.Sub(started).Round(time.Millisecond))

	// kubectl, as a user runs it, while the fleet reconnects.
	probe := &kubectlProbe{args: []string{"--kubeconfig", hub.Layout{Dir: h.DataDir}.Kubeconfig(), "get", "placements", "-A"}, bin: hubtest.BinDir(t) + "/kubectl"}
	stop := probe.start()
	t.Cleanup(stop)

	// Back: each agent says so when its stream opens again, and the hub counts the streams
	// open (the clusters' Ready conditions say little here: they outlive the hub, which
	// counts its own start as a heartbeat of each).
	back := map[string]time.Duration{}
	eventually(t, "every agent heartbeating again", 3*time.Minute, func() (bool, error) {
		for name, at := range log.last("heartbeat back") {
			if _, ok := back[name]; !ok && at.After(started) {
				back[name] = at.Sub(started)
			}
		}
		return len(back) >= n, fmt.Errorf("%d of %d agents heartbeat again", len(back), n)
	})
	eventually(t, "the hub counting every stream open", 3*time.Minute, func() (bool, error) {
		d := h.Status().Delivery
		if d == nil {
			return false, fmt.Errorf("the hub reports no delivery streams")
		}
		return d.Connected == n, fmt.Errorf("%d of %d streams open", d.Connected, n)
	})
	allBack := time.Since(started)
	stop()
	eventually(t, "every cluster Ready", 3*time.Minute, func() (bool, error) {
		return readyCount(ctx, c, "storm", n)
	})
	placementAvailable(t, ctx, c)

	times := make([]time.Duration, 0, n)
	for _, d := range back {
		times = append(times, d)
	}
	slices.Sort(times)
	calls, failures := probe.result()
	if len(failures) > 0 {
		t.Errorf("%d of %d kubectl calls failed while the fleet reconnected; the first: %s", len(failures), len(calls)+len(failures), failures[0])
	}
	if len(calls) == 0 {
		t.Fatal("no kubectl call answered while the fleet reconnected")
	}
	var timeline []string
	took := make([]time.Duration, len(calls))
	served := make([]time.Duration, len(calls))
	for i, c := range calls {
		timeline = append(timeline, fmt.Sprintf("+%s: %s (hub %s)", c.at.Sub(started).Round(100*time.Millisecond),
			c.took.Round(10*time.Millisecond), c.served.Round(10*time.Millisecond)))
		took[i], served[i] = c.took, c.served
	}
	t.Logf("kubectl calls, by start after the hub's start: %s", strings.Join(timeline, ", "))
	slices.Sort(took)
	slices.Sort(served)
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	k := len(calls)
	lines := []string{
		fmt.Sprintf("reconnect storm, %d clusters: hub ready %s after its start; agents back p50 %s, p99 %s, max %s after the start; the hub counted all %d streams open after %s (goal: back within 30 s, %s)",
			n, ready.Sub(started).Round(time.Millisecond), times[n/2].Round(time.Millisecond), times[n*99/100].Round(time.Millisecond),
			times[n-1].Round(time.Millisecond), n, allBack.Round(time.Millisecond), met(times[n-1] <= 30*time.Second && allBack <= 30*time.Second)),
		fmt.Sprintf("reconnect storm, %d clusters: %d kubectl calls meanwhile; the hub answered each (kubectl's configuration loaded to its last answer) in p50 %s, max %s (goal: within 1 s, %s); whole commands, with kubectl's own start on the shared cores, p50 %s, max %s",
			n, k, served[k/2].Round(time.Millisecond), served[k-1].Round(time.Millisecond), met(served[k-1] <= time.Second),
			took[k/2].Round(time.Millisecond), took[k-1].Round(time.Millisecond)),
	}
	for _, l := range lines {
		t.Log(l)
		fmt.Println("chaos:", l)
	}

	// Nothing applied again: the barrier is a change made after the storm, which every agent
	// applies (one object, the Deployment); any apply the restart set off is counted with it.
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d := &appsv1.Deployment{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, d); err != nil {
			return err
		}
		d.Spec.Template.Spec.Containers[0].Image = "web:2"
		return c.Update(ctx, d)
	}))
	eventually(t, "the change available on every member", 5*time.Minute, func() (bool, error) {
		for _, name := range names {
			if image, ok := memberImage(fleet.Get(name).Member, "shop"); image != "web:2" || !ok {
				return false, fmt.Errorf("%s runs %q (available %v)", name, image, ok)
			}
		}
		return true, nil
	})
	for _, name := range names {
		m := fleet.Get(name).Member
		if del := m.Deleted(); len(del) > 0 {
			t.Errorf("%s deleted %v", name, del)
		}
		if got := m.Applies() - applies[name]; got != 1 {
			t.Errorf("%s applied %d objects after the hub's restart and one change of one object; want 1 (nothing applied again)", name, got)
		}
	}
}

// readyCount says whether all n clusters of the fleet labelled fleet=prefix are Ready.
func readyCount(ctx context.Context, c client.Client, prefix string, n int) (bool, error) {
	var list v1alpha1.ClusterList
	if err := c.List(ctx, &list, client.MatchingLabels{"fleet": prefix}); err != nil {
		return false, err
	}
	ready := 0
	for _, cl := range list.Items {
		if cl.Status.Phase == v1alpha1.ClusterReady {
			ready++
		}
	}
	return ready == n, fmt.Errorf("%d of %d Ready", ready, n)
}

func placementAvailable(t *testing.T, ctx context.Context, c client.Client) {
	t.Helper()
	eventually(t, "the Placement Available", 3*time.Minute, func() (bool, error) {
		p := &v1alpha1.Placement{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, p); err != nil {
			return false, err
		}
		return meta.IsStatusConditionTrue(p.Status.Conditions, v1alpha1.PlacementAvailable), fmt.Errorf("placement %v", p.Status.Conditions)
	})
}

// kubectlProbe runs one kubectl command again and again, 250 ms apart, and keeps how long each
// call took, or how it failed. kubectl runs with -v=6, whose log says when it had loaded its
// configuration and when each answer came: the span between is the hub's part of the call
// (its answers, discovery included), and what comes before is kubectl's own start, which on
// this machine shares two cores with the 1,000 simulated agents.
type kubectlProbe struct {
	bin  string
	args []string

	mu       sync.Mutex
	calls    []kubectlCall
	failures []string
}

// kubectlCall is one answered call: when it started, how long the command took in all, and
// how long from kubectl's configuration loaded to its last answer from the hub.
type kubectlCall struct {
	at           time.Time
	took, served time.Duration
}

// start runs the probe until stop, which may be called more than once.
func (p *kubectlProbe) start() (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	var once sync.Once
	go func() {
		defer close(finished)
		for {
			at := time.Now()
			var stderr strings.Builder
			cmd := exec.Command(p.bin, append([]string{"--request-timeout", "10s", "-v=6"}, p.args...)...)
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			took := time.Since(at)
			p.mu.Lock()
			if err != nil {
				p.failures = append(p.failures, fmt.Sprintf("%v after %s: %s%s", err, took.Round(time.Millisecond), out, stderr.String()))
			} else if served, ok := servedSpan(stderr.String()); !ok {
				p.failures = append(p.failures, fmt.Sprintf("kubectl's log says no answer came: %s", stderr.String()))
			} else {
				p.calls = append(p.calls, kubectlCall{at: at, took: took, served: served})
			}
			p.mu.Unlock()
			select {
			case <-done:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return func() {
		once.Do(func() { close(done) })
		<-finished
	}
}

func (p *kubectlProbe) result() (calls []kubectlCall, failures []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls), slices.Clone(p.failures)
}

// servedSpan reads kubectl's -v=6 log (klog lines, "I1204 04:29:33.563955 ...") of a call:
// the time from its first line (the configuration loaded) to its last line
// that logs an answer ("Response"). ok is false when no answer is logged.
func servedSpan(log string) (served time.Duration, ok bool) {
	stamp := func(line string) (time.Time, bool) {
		if len(line) < 21 {
			return time.Time{}, false
		}
		clock, err := time.ParseInLocation("15:04:05.000000", line[6:21], time.Local)
		if err != nil {
			return time.Time{}, false
		}
		return clock, true
	}
	var first, last time.Time
	for line := range strings.SplitSeq(log, "\n") {
		ts, isStamp := stamp(strings.TrimSpace(line))
		if !isStamp {
			continue
		}
		if first.IsZero() {
			first = ts
		}
		if strings.Contains(line, `"Response"`) {
			last = ts
		}
	}
	if first.IsZero() || last.IsZero() {
		return 0, false
	}
	served = last.Sub(first)
	if served < 0 { // the call ran over midnight
		served += 24 * time.Hour
	}
	return served, true
}
