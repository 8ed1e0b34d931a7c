package delivery_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/delivery"
	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/join"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// agentToken registers an imported cluster and returns a token of its current agent
// ServiceAccount, as the agent would get one.
func agentToken(t *testing.T, h *hubtest.Hub, cs kubernetes.Interface, name string) string {
	t.Helper()
	ctx := context.Background()
	c := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.ClusterSpec{Provider: v1alpha1.ProviderImport}}
	hubtest.Must(t, h.Client.Create(ctx, c))
	var token string
	eventually(t, name+"'s agent ServiceAccount", func() error {
		hubtest.Must(t, h.Client.Get(ctx, client.ObjectKeyFromObject(c), c))
		sa := v1alpha1.AgentServiceAccount(v1alpha1.AgentGeneration(c))
		tr, err := cs.CoreV1().ServiceAccounts(v1alpha1.ClusterNamespace(name)).CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		token = tr.Status.Token
		return nil
	})
	return token
}

func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	hubtest.Eventually(t, what, time.Minute, func() (bool, error) {
		err := f()
		return err == nil, err
	})
}

// startHub starts a hub for a test that is not short, and returns it, a client of its API and
// the address and host name of its delivery stream.
func startHub(t *testing.T) (*hubtest.Hub, kubernetes.Interface, string, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a hub")
	}
	h := hubtest.Start(t)
	addr := h.DeliveryAddr()
	if addr == "" {
		t.Fatal("the hub serves no delivery stream")
	}
	host, _, _ := net.SplitHostPort(addr)
	return h, kubernetes.NewForConfigOrDie(h.Config), addr, host
}

// TestStreams runs real agents' streams against a real hub: who may open one, reports folded
// and stored, heartbeats seen, and a revocation cutting a stream that is open.
func TestStreams(t *testing.T) {
	h, cs, addr, host := startHub(t)
	ctx := context.Background()
	east := agentToken(t, h, cs, "east")
	west := agentToken(t, h, cs, "west")

	// open runs a client for cluster with token until it is up or refused.
	open := func(cluster, token string) (*delivery.Client, context.CancelFunc) {
		c := delivery.NewClient(cluster, "test", h.Config.CAData, func() string { return token }, hubtest.Logger(t))
		cctx, cancel := context.WithCancel(ctx)
		go c.Run(cctx, addr, host)
		t.Cleanup(cancel)
		return c, cancel
	}

	// Refusals: the hub says why, and the stream never opens. The barrier is the hub's
	// answer, read by a stream of our own.
	refused := func(cluster, token, want string) {
		t.Helper()
		err := delivery.Probe(ctx, addr, host, h.Config.CAData, cluster, token)
		if !errors.Is(err, delivery.ErrRefused) || !strings.Contains(err.Error(), want) {
			t.Errorf("hello as %s: %v, want a refusal saying %q", cluster, err, want)
		}
	}
	refused("west", east, `cluster "east"'s agent, not cluster "west"'s`)
	refused("east", "not-a-token", "token refused")
	adminToken, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, "default", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		// The default ServiceAccount appears a moment after the namespace.
		hubtest.Must(t, h.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "other"}}))
		adminToken, err = cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, "other", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		hubtest.Must(t, err)
	}
	refused("east", adminToken.Status.Token, "is not a cluster's agent")
	if err := delivery.Probe(ctx, addr, host, h.Config.CAData, "east", east); err != nil {
		t.Fatalf("east's own identity: %v", err)
	}
	// The tokens the hub's API server issues verify in the hub process, without a
	// TokenReview: the public key the API server checks them with, and its issuer.
	keys, err := delivery.LoadTokenKeys(filepath.Join(hub.Layout{Dir: h.Options.DataDir}.PKI(), "sa.pub"), kubeproc.ServiceAccountIssuer, kubeproc.ServiceAccountIssuer)
	hubtest.Must(t, err)
	if id, _, err := keys.Verify(east, time.Now()); err != nil || id.Cluster != "east" || id.ServiceAccount != "agent-1" || id.UID == "" {
		t.Errorf("east's token verified by the hub's key: %+v, %v", id, err)
	}
	if _, _, err := keys.Verify(adminToken.Status.Token, time.Now()); !errors.Is(err, delivery.ErrNotAgent) {
		t.Errorf("another ServiceAccount's token verified by the hub's key: %v, want ErrNotAgent", err)
	}

	// A stream heartbeats: the hub hears from east, and not from west, which has none.
	ce, _ := open("east", east)
	eventually(t, "east heard", func() error {
		if _, ok := h.LastHeard("east"); !ok {
			return errors.New("not yet")
		}
		return nil
	})
	if _, ok := h.LastHeard("west"); ok {
		t.Error("the hub heard from west, which has no stream")
	}

	// The inventory sent on the stream is written into the Cluster's status by the hub (with
	// its verdict), not by the agent; a change of it as well.
	inv := v1alpha1.Inventory{AgentVersion: "test", KubernetesVersion: "v1.37.2", APIHealthy: true,
		Nodes: v1alpha1.NodeCounts{Total: 2, Ready: 2}, ReportedAt: metav1.Now()}
	for _, ready := range []int32{2, 1} {
		inv.Nodes.Ready = ready
		ce.SetInventory(inv)
		eventually(t, fmt.Sprintf("east's inventory with %d Ready nodes stored", ready), func() error {
			got := &v1alpha1.Cluster{}
			hubtest.Must(t, h.Client.Get(ctx, client.ObjectKey{Name: "east"}, got))
			if got.Status.Inventory == nil || got.Status.Inventory.Nodes.Ready != ready || got.Status.Inventory.KubernetesVersion != "v1.37.2" {
				return fmt.Errorf("inventory %+v", got.Status.Inventory)
			}
			return nil
		})
	}
	// A report reaches the Work's stored status, through the fold.
	w := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace("east"), Name: "shop.web"}}
	hubtest.Must(t, h.Client.Create(ctx, w))
	st := v1alpha1.WorkStatus{ObservedGeneration: w.Generation, Summary: v1alpha1.WorkSummary{Total: 1, Applied: 1, Available: 1}}
	ce.Report(w.Name, string(w.UID), st)
	eventually(t, "the report stored", func() error {
		got := &v1alpha1.Work{}
		hubtest.Must(t, h.Client.Get(ctx, client.ObjectKeyFromObject(w), got))
		if got.Status.Summary.Available != 1 {
			return fmt.Errorf("status %+v", got.Status)
		}
		return nil
	})
	// west's stream opens; then west is revoked, and the hub cuts the open stream.
	cw, _ := open("west", west)
	eventually(t, "west up", func() error {
		if !cw.Up() {
			return errors.New("not up")
		}
		return nil
	})
	hubtest.Must(t, join.Revoke(ctx, h.Client, "west"))
	eventually(t, "west's stream cut", func() error {
		if cw.Up() {
			return errors.New("still up")
		}
		return nil
	})
	err = delivery.Probe(ctx, addr, host, h.Config.CAData, "west", west)
	if !errors.Is(err, delivery.ErrRefused) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("west after its revocation: %v, want refused as revoked", err)
	}
}

// TestWorksOnStream: an agent that asks gets its cluster's Works on its stream, and no other
// cluster's: all of them when the stream opens, then each change; after a reconnect the
// complete set again, of which only what changed meanwhile reaches its watch.
func TestWorksOnStream(t *testing.T) {
	h, cs, addr, host := startHub(t)
	ctx := context.Background()
	east := agentToken(t, h, cs, "east")
	west := agentToken(t, h, cs, "west")
	work := func(cluster, name string) *v1alpha1.Work {
		w := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace(cluster), Name: name}}
		hubtest.Must(t, h.Client.Create(ctx, w))
		return w
	}
	a, b := work("east", "a"), work("east", "b")
	work("west", "x")

	c := delivery.NewClient("east", "test", h.Config.CAData, func() string { return east }, hubtest.Logger(t))
	c.GetWorks = true
	run := func() context.CancelFunc {
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); c.Run(cctx, addr, host) }()
		stop := func() { cancel(); <-done }
		t.Cleanup(stop)
		return stop
	}
	stop := run()
	select {
	case <-c.WorksReady():
	case <-time.After(time.Minute):
		t.Fatal("east's Works never came on its stream")
	}
	works, ww := c.WatchWorks()
	defer ww.Stop()
	next := func(what string) watch.Event {
		t.Helper()
		select {
		case e := <-ww.ResultChan():
			return e
		case <-time.After(time.Minute):
			t.Fatalf("no change on the stream: waiting for %s", what)
			return watch.Event{}
		}
	}
	describe := func(e watch.Event) string {
		w, _ := e.Object.(*v1alpha1.Work)
		if w == nil {
			return fmt.Sprintf("%s %T", e.Type, e.Object)
		}
		return fmt.Sprintf("%s %s/%d", e.Type, w.Name, w.Generation)
	}
	// The hub's cache may have taken a and b in after the first set: they come as changes.
	known := map[string]bool{}
	for _, w := range works {
		known[w.Name] = true
	}
	for !known["a"] || !known["b"] {
		e := next("a and b")
		w, _ := e.Object.(*v1alpha1.Work)
		if e.Type != watch.Modified || w == nil {
			t.Fatalf("got %s before a and b", describe(e))
		}
		known[w.Name] = true
	}
	if len(known) != 2 {
		t.Fatalf("east got Works %v, want a and b (and none of west's)", slices.Sorted(maps.Keys(known)))
	}

	// A change comes as it is made.
	a.Spec.Manifests = []runtime.RawExtension{{Raw: []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"default"}}`)}}
	hubtest.Must(t, h.Client.Update(ctx, a))
	if e := next("a's change"); describe(e) != fmt.Sprintf("MODIFIED a/%d", a.Generation) {
		t.Fatalf("got %s, want a's change (generation %d)", describe(e), a.Generation)
	}

	// While the stream is down, b goes and c comes. The next stream's complete set brings
	// just that: c, then b gone (at the set's end); a, unchanged, is not handed on again.
	stop()
	work("east", "c")
	hubtest.Must(t, h.Client.Delete(ctx, b))
	run()
	var got []string
	for {
		e := next("b gone")
		got = append(got, describe(e))
		if e.Type == watch.Deleted {
			break
		}
	}
	if want := []string{"MODIFIED c/1", "DELETED b/1"}; !slices.Equal(got, want) {
		t.Errorf("after the reconnect the watch got %v, want %v", got, want)
	}

	// An agent that does not ask gets no Works.
	cw := delivery.NewClient("west", "test", h.Config.CAData, func() string { return west }, hubtest.Logger(t))
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go cw.Run(wctx, addr, host)
	eventually(t, "west up", func() error {
		if !cw.Up() {
			return errors.New("not up")
		}
		return nil
	})
	if cw.HubSendsWorks() {
		t.Error("the hub sends west its Works, which it did not ask for")
	}
}
