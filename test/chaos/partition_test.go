//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/sim"
)

// partition is a TCP proxy on loopback between one agent and the hub, which a test can cut
// (every connection dropped, new ones refused at once) and heal.
type partition struct {
	target string
	ln     net.Listener

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]bool
}

func newPartition(t *testing.T, target string) *partition {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	p := &partition{target: target, ln: ln, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go p.serve()
	return p
}

func (p *partition) addr() string { return p.ln.Addr().String() }

func (p *partition) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			in.Close()
			continue
		}
		p.conns[in], p.conns[out] = true, true
		p.mu.Unlock()
		go func() { _, _ = io.Copy(out, in); out.Close() }()
		go func() { _, _ = io.Copy(in, out); in.Close() }()
	}
}

func (p *partition) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
		p.conns = map[net.Conn]bool{}
	}
}

// TestPartitionedAgent cuts one agent off from the hub while it keeps running. Its member
// keeps everything (fail static) while its Divided share fails over to the other clusters;
// once the partition heals the share comes back after the stable period, once, and no
// member ends up with more than its share.
func TestPartitionedAgent(t *testing.T) {
	ctx := context.Background()
	h := startHubProcess(t)
	fleet := h.fleet(t)
	names := registerFleet(t, ctx, h, fleet, "part", 3)
	c := h.Client

	// The fourth cluster's agent reaches the hub through the partition.
	hubAddr := h.Config.Host[len("https://"):]
	cutOff := newPartition(t, hubAddr)
	// The agent's delivery stream goes through the same cut as its API connections.
	streamAddr := h.Status().DeliveryAddr
	if streamAddr == "" {
		t.Fatal("the hub serves no delivery stream")
	}
	cutOffStream := newPartition(t, streamAddr)
	isolated := sim.NewFleet(sim.Options{HubURL: "https://" + cutOff.addr(), DeliveryAddr: cutOffStream.addr(), HubCA: h.Config.CAData, StateDir: t.TempDir(),
		AvailableAfter: 100 * time.Millisecond, Version: "chaos"})
	t.Cleanup(isolated.StopAll)
	const lonely = "part-lonely"
	token, err := sim.Register(ctx, c, lonely, map[string]string{"fleet": "part"}, time.Hour)
	must(t, err)
	_, err = isolated.Start(ctx, lonely, token)
	must(t, err)
	members := map[string]*sim.Member{lonely: isolated.Get(lonely).Member}
	for _, n := range names {
		members[n] = fleet.Get(n).Member
	}
	replicas := func() map[string]int64 {
		out := map[string]int64{}
		for n, m := range members {
			if d := m.Cached(deployments, "shop", "web"); d != nil {
				out[n], _, _ = unstructured.NestedInt64(d.Object, "spec", "replicas")
			}
		}
		return out
	}
	phase := func(name string) v1alpha1.ClusterPhase {
		cl := &v1alpha1.Cluster{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, cl); err != nil {
			return ""
		}
		return cl.Status.Phase
	}
	eventually(t, "the cut-off cluster Ready", 2*time.Minute, func() (bool, error) {
		return phase(lonely) == v1alpha1.ClusterReady, fmt.Errorf("phase %s", phase(lonely))
	})

	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}))
	must(t, c.Create(ctx, webDeployment("shop", "web:1", 8)))
	must(t, c.Create(ctx, &v1alpha1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: v1alpha1.PlacementSpec{
		Resources: []v1alpha1.ResourceSelector{{Group: "apps", Kind: "Deployment", Name: "web"}},
		Clusters:  v1alpha1.ClusterAffinity{LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"fleet": "part"}}},
		Replicas:  &v1alpha1.ReplicaScheduling{Type: v1alpha1.Divided},
		Failover:  &v1alpha1.FailoverPolicy{GraceSeconds: ptr.To[int32](1), StableSeconds: ptr.To[int32](10)},
	}}))
	even := func() (bool, error) {
		r := replicas()
		for n := range members {
			if r[n] != 2 {
				return false, fmt.Errorf("replicas %v", r)
			}
		}
		return true, nil
	}
	eventually(t, "2 replicas on each of 4 clusters", 2*time.Minute, even)

	cutOff.setCut(true)
	cutOffStream.setCut(true)
	t.Log("partition cut")
	eventually(t, "the cut-off cluster Unreachable", time.Minute, func() (bool, error) {
		return phase(lonely) == v1alpha1.ClusterUnreachable, fmt.Errorf("phase %s", phase(lonely))
	})
	eventually(t, "its share failed over to the others", time.Minute, func() (bool, error) {
		r := replicas()
		sum := int64(0)
		for _, n := range names {
			sum += r[n]
		}
		return sum == 8, fmt.Errorf("replicas %v", r)
	})
	// Fail static on the cut-off member: its agent runs on and keeps everything.
	if r := replicas(); r[lonely] != 2 {
		t.Errorf("the cut-off member changed its share while partitioned: %v", r)
	}
	if del := members[lonely].Deleted(); len(del) > 0 {
		t.Errorf("the cut-off member deleted %v", del)
	}

	cutOff.setCut(false)
	cutOffStream.setCut(false)
	healed := time.Now()
	t.Log("partition healed")
	eventually(t, "the cluster Ready again", time.Minute, func() (bool, error) {
		return phase(lonely) == v1alpha1.ClusterReady, fmt.Errorf("phase %s", phase(lonely))
	})
	// Watch it settle: back to an even share after the stable period, the cluster never lost
	// again, and no member ever above what it should run.
	var flaps []string
	deadline := time.Now().Add(40 * time.Second)
	settledAt := time.Time{}
	for time.Now().Before(deadline) {
		if p := phase(lonely); p != v1alpha1.ClusterReady {
			flaps = append(flaps, fmt.Sprintf("%s at +%s", p, time.Since(healed).Round(time.Millisecond)))
		}
		r := replicas()
		total := int64(0)
		for _, v := range r {
			total += v
		}
		// While the share moves back, create-before-delete may run the cluster's 2 and the
		// others' 8 at once; never more.
		if total > 10 {
			t.Errorf("%d replicas placed at once (%v): more than the share and its failover", total, r)
		}
		if ok, _ := even(); ok {
			if settledAt.IsZero() {
				settledAt = time.Now()
			}
		} else if !settledAt.IsZero() {
			t.Errorf("the share moved again after it had settled: %v", r)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if len(flaps) > 0 {
		t.Errorf("the healed cluster was not Ready at times: %v", flaps)
	}
	if settledAt.IsZero() {
		t.Fatalf("not back to 2/2/2/2 within 40s of the heal: %v", replicas())
	}
	t.Logf("back to an even share %s after the heal", settledAt.Sub(healed).Round(time.Millisecond))
	// Exactly one failover and one fail-back.
	var evs eventsv1.EventList
	must(t, c.List(ctx, &evs, client.InNamespace("shop")))
	count := map[string]int{}
	for _, e := range evs.Items {
		if e.Regarding.Name == "web" && (e.Reason == "FailedOver" || e.Reason == "FailedBack") {
			count[e.Reason] += max(1, int(e.DeprecatedCount))
			if e.Series != nil {
				count[e.Reason] += int(e.Series.Count) - 1
			}
		}
	}
	if count["FailedOver"] != 1 || count["FailedBack"] != 1 {
		t.Errorf("want one FailedOver and one FailedBack event, got %v", count)
	}
	for n, m := range members {
		if del := m.Deleted(); len(del) > 0 {
			t.Errorf("%s deleted %v", n, del)
		}
	}
}
