// Package agent is the composition root of `convoy agent`, the process that links one member
// cluster to the hub. It only makes outbound connections to the hub: it joins with a bootstrap
// token and keeps its own ServiceAccount token (identity.go), renews a Lease as its heartbeat
// (heartbeat.go), reports its cluster's inventory (inventory.go), and applies the cluster's
// Works with server-side apply, reporting each resource's state (works.go).
//
// It fails static: losing the hub, an error, or an empty answer never deletes anything on the
// member. A resource leaves the member only when a Work the agent has read drops it, or when a
// Work is deleted (with its finalizer still in place), and then only when no other Work of the
// cluster still holds it (see deleteUnlessHeld). The CLI and internal/sim import this package.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/delivery"
	clusteraccess "github.com/convoy-dev/convoy/internal/identity"
)

// Options configure an agent.
type Options struct {
	// Cluster is the name of the agent's Cluster on the hub.
	Cluster string
	// HubURL is the hub's API server, for example https://hub.example:6443.
	HubURL string
	// HubCA is the PEM certificate authority of the hub's API server.
	HubCA []byte
	// DeliveryAddr, HOST:PORT, is where the agent reaches the hub's delivery stream when that
	// is not HubURL's host at the port the hub's settings give (a proxy or a port mapping
	// between them). The hub's certificate is checked for HubURL's host either way.
	DeliveryAddr string
	// DeliveryPort is the port of the hub's delivery stream on HubURL's host, when known
	// before the agent has joined (the local provider gives it to its clusters' agents): the
	// agent then joins there (v1alpha1.DeliveryJoin), with no request to the hub's API
	// server. Without it or DeliveryAddr the agent joins through the API server. Either way
	// it renews its token on the port its settings give, once they give one.
	DeliveryPort string
	// BootstrapTokenFile holds a bootstrap token from `convoy cluster join`; the agent reads
	// it when it has no working identity.
	BootstrapTokenFile string
	// StateDir keeps the agent's hub token across restarts, unless StateSecret is set.
	StateDir string
	// StateSecret, NAMESPACE/NAME, keeps the token in a Secret of the member instead: for an
	// agent run as a Deployment. It needs a Member made by NewKubeMember.
	StateSecret string
	// Member is the member cluster: NewKubeMember for a real one.
	Member Member
	// HubQPS limits the agent's requests to the hub; zero means 50 a second.
	HubQPS float32
	// Version is reported in the inventory.
	Version string
	// Collector, if set, runs the member's metrics collector next to the agent (collector.go).
	Collector *Collector
	// LogCollector, if set, has the agent run the member's log collector (logs.go); it needs
	// a Member made by NewKubeMember.
	LogCollector *LogCollector
	// Log receives the agent's logs.
	Log *slog.Logger
}

// Agent is a running agent.
type Agent struct {
	opts Options
	ns   string
	log  *slog.Logger
	id   *identity

	hub      client.Client                                // uncached, for writes
	hubCache cache.Cache                                  // Works and the agent's settings, in the cluster's namespace only
	leases   coordinationv1client.CoordinationV1Interface // the hub's, for the heartbeat Lease

	// settings are the agent-config's, as last read; settingsWatched says whether hubCache
	// watches the agent-config now.
	settings        atomic.Pointer[agentSettings]
	settingsWatched atomic.Bool

	// dc is the first delivery stream's client: it joins, and its connection then carries
	// that stream (switchDelivery); dcTaken says a stream has it (a later stream, after the
	// hub stopped offering one, gets a client of its own, as the first did).
	dc      *delivery.Client
	dcTaken atomic.Bool
	stream  atomic.Pointer[stream] // the delivery stream, once the hub offers one
	// inv is the latest inventory taken, which a new delivery stream's client starts with.
	inv       atomic.Pointer[v1alpha1.Inventory]
	lastCheck atomic.Int64           // unix nanoseconds of the last checkIdentity
	requeue   atomic.Pointer[func()] // the Work controller's requeueAll, once it runs
	// collectorVersion is the version of the metrics collector while the agent runs it.
	collectorVersion atomic.Pointer[string]
	// deliveryKnown is closed once the agent has read whether the hub offers a delivery
	// stream, and started it if so: the Works informer lists from the stream when it can.
	deliveryKnown chan struct{}
}

// Run runs the agent until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Cluster == "" || o.HubURL == "" || len(o.HubCA) == 0 || (o.StateDir == "" && o.StateSecret == "") || o.Member == nil {
		return errors.New("the agent needs a cluster name, the hub's URL and CA, a state directory or Secret, and a member cluster")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{opts: o, ns: v1alpha1.ClusterNamespace(o.Cluster), log: o.Log.With("cluster", o.Cluster), deliveryKnown: make(chan struct{})}

	if o.HubQPS == 0 {
		o.HubQPS = 50
	}
	base := &rest.Config{
		Host:            o.HubURL,
		TLSClientConfig: rest.TLSClientConfig{CAData: o.HubCA},
		UserAgent:       "convoy-agent/" + o.Version,
		QPS:             o.HubQPS,
		Burst:           int(2 * o.HubQPS),
	}
	var err error
	var store stateStore
	if ns, name, ok := strings.Cut(o.StateSecret, "/"); ok {
		km, isKube := o.Member.(interface{ clientset() kubernetes.Interface })
		if !isKube {
			return errors.New("--state-secret needs a real member cluster")
		}
		store = secretStore{client: km.clientset(), namespace: ns, name: name}
	} else {
		if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
			return fmt.Errorf("create state dir: %w", err)
		}
		store = fileStore(filepath.Join(o.StateDir, "token.json"))
	}
	a.id = newIdentity(ctx, o.Cluster, base, store, o.BootstrapTokenFile, a.log)
	a.dc = a.newDeliveryClient(ctx)
	defer a.dc.Close() // a connection a join made, when no stream took it
	a.id.join = a.join
	// Joining reads the agent's settings: a new agent needs no list and watch of them for its
	// first stream.
	a.id.settings = func(data map[string]string) { a.takeSettings(data) }
	hubCfg := rest.CopyConfig(base)
	hubCfg.WrapTransport = a.id.wrap

	// The hub's clients come once the agent has an identity: even discovery needs one.
	ready := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { a.id.run(ctx, ready) })
	a.log.Info("agent starting", "hub", o.HubURL, "joined", a.id.joined())
	select {
	case <-ctx.Done():
		wg.Wait()
		return nil
	case <-ready:
	}

	if o.Collector != nil {
		// It ends with Run, whichever way Run returns.
		cctx, stopCollector := context.WithCancel(ctx)
		collected := make(chan struct{})
		defer func() { stopCollector(); <-collected }()
		go func() {
			defer close(collected)
			if err := a.runCollector(cctx, *o.Collector); err != nil {
				a.log.Error("no metrics collector", "err", err)
			}
		}()
	}

	if km, isKube := o.Member.(interface{ clientset() kubernetes.Interface }); isKube && o.LogCollector == nil {
		removed := make(chan struct{})
		defer func() { <-removed }()
		go func() { defer close(removed); a.removeLogCollector(ctx, km.clientset()) }()
	}
	if o.LogCollector != nil {
		if km, isKube := o.Member.(interface{ clientset() kubernetes.Interface }); !isKube {
			a.log.Error("no log collector: it needs a real member cluster")
		} else {
			lctx, stopLogs := context.WithCancel(ctx)
			logged := make(chan struct{})
			defer func() { stopLogs(); <-logged }()
			go func() {
				defer close(logged)
				a.runLogCollector(lctx, *o.LogCollector, km.clientset())
			}()
		}
	}

	if km, isKube := o.Member.(interface{ restConfig() *rest.Config }); isKube {
		// The tunnel for cluster access through the hub (clusteraccess.Tunnel): it ends with Run.
		t := &clusteraccess.Tunnel{URL: strings.TrimSuffix(o.HubURL, "/") + v1alpha1.TunnelPath(o.Cluster), HubCA: o.HubCA,
			Token: a.id.token, Member: km.restConfig(), Log: a.log.With("component", "tunnel"),
			Backoff: func(fails int) time.Duration { return delivery.Backoff(time.Second, fails) }}
		tctx, stopTunnel := context.WithCancel(ctx)
		tunnelled := make(chan struct{})
		defer func() { stopTunnel(); <-tunnelled }()
		go func() {
			defer close(tunnelled)
			if err := t.Run(tctx); err != nil {
				a.log.Error("no tunnel to the hub", "err", err)
			}
		}()
	}

	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{v1alpha1.AddToScheme, corev1.AddToScheme, coordinationv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return err
		}
	}
	// The agent uses four kinds of the hub, all known in advance: no discovery, which would
	// cost the hub several large answers for every agent that starts or reconnects.
	mapper := hubMapper()
	if a.hub, err = client.New(hubCfg, client.Options{Scheme: scheme, Mapper: mapper}); err != nil {
		return fmt.Errorf("hub client: %w", err)
	}
	if a.leases, err = coordinationv1client.NewForConfig(hubCfg); err != nil {
		return err
	}
	// Making the cache needs no answer from the hub with the static mapper, but keep
	// retrying should that change: the hub may be down just now.
	for fails := 1; ; fails++ {
		a.hubCache, err = cache.New(hubCfg, cache.Options{
			Scheme:            scheme,
			Mapper:            mapper,
			DefaultNamespaces: map[string]cache.Config{a.ns: {}},
			ByObject: map[client.Object]cache.ByObject{
				&corev1.ConfigMap{}: {Field: fieldsName(v1alpha1.AgentConfigMap)},
			},
			// The Works come on the delivery stream when the hub sends them there (works.go).
			NewInformer: func(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, idx toolscache.Indexers) toolscache.SharedIndexInformer {
				if _, ok := obj.(*v1alpha1.Work); ok {
					lw = &worksSource{a: a, api: toolscache.ToListerWatcherWithContext(lw)}
				}
				return toolscache.NewSharedIndexInformer(lw, obj, resync, idx)
			},
		})
		if err == nil {
			break
		}
		a.log.Warn("cannot reach the hub's API yet; retrying", "err", err)
		if !sleep(ctx, delivery.Backoff(time.Second, fails)) {
			wg.Wait()
			return nil
		}
	}

	// The Works are indexed by what they hold on the member: an object leaves the member only
	// when no Work holds it (see workController.deleteUnlessHeld).
	if err := a.hubCache.IndexField(ctx, &v1alpha1.Work{}, holdsIndex, holdsOf); err != nil {
		return fmt.Errorf("index works: %w", err)
	}
	wg.Go(func() {
		if err := a.hubCache.Start(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("hub cache stopped", "err", err)
		}
	})
	// The hub says in the agent's settings whether it serves a delivery stream; the agent
	// decides before it heartbeats or reports anything, so that one writer reports each thing.
	// (The Works informer waits for that decision: it lists from the stream if it can.)
	// A new agent has them from joining; one that restarted with its token reads (and
	// watches) them now, until its stream is open.
	st := a.settings.Load()
	for st == nil {
		if got, ok := a.readSettings(ctx); ok {
			st = &got
		} else if ctx.Err() != nil {
			wg.Wait()
			return nil
		}
	}
	// The first inventory goes with the stream's hello, so that the hub judges the cluster
	// with it at once: one status write for the verdict and the inventory together.
	first := a.observe(ctx)
	a.inv.Store(&first)
	a.switchDelivery(ctx, st.port)
	close(a.deliveryKnown)
	wg.Go(func() { a.followDelivery(ctx) })
	wg.Go(func() { a.heartbeat(ctx) })
	wg.Go(func() { a.inventory(ctx) })
	works, err := newWorkController(a)
	if err != nil {
		return err
	}
	requeue := works.requeueAll
	a.requeue.Store(&requeue)
	wg.Go(func() { works.run(ctx) })
	wg.Wait()
	a.log.Info("agent stopped")
	return nil
}

// hubMapper maps the kinds the agent uses on the hub to their resources.
func hubMapper() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper(nil)
	m.Add(v1alpha1.GroupVersion.WithKind("Work"), meta.RESTScopeNamespace)
	// The cache's List of a namespace asks the mapper about the list's own kind.
	m.Add(v1alpha1.GroupVersion.WithKind("WorkList"), meta.RESTScopeNamespace)
	m.Add(v1alpha1.GroupVersion.WithKind("Cluster"), meta.RESTScopeRoot)
	m.Add(corev1.SchemeGroupVersion.WithKind("ConfigMap"), meta.RESTScopeNamespace)
	m.Add(coordinationv1.SchemeGroupVersion.WithKind("Lease"), meta.RESTScopeNamespace)
	return m
}

// sleep waits d or until ctx ends, and says whether to go on.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
