package hub

import (
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/controller/access"
	"github.com/convoy-dev/convoy/internal/controller/binding"
	clustercontroller "github.com/convoy-dev/convoy/internal/controller/cluster"
	"github.com/convoy-dev/convoy/internal/controller/gateway"
	"github.com/convoy-dev/convoy/internal/controller/pool"
	profilecontroller "github.com/convoy-dev/convoy/internal/controller/profile"
	"github.com/convoy-dev/convoy/internal/controller/propagation"
	"github.com/convoy-dev/convoy/internal/delivery"
	"github.com/convoy-dev/convoy/internal/image"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/provider"
	"github.com/convoy-dev/convoy/internal/provider/importer"
	"github.com/convoy-dev/convoy/internal/provider/local"
	"github.com/convoy-dev/convoy/internal/registry"
	"github.com/convoy-dev/convoy/internal/version"
)

// newScheme knows the built-in Kubernetes types and Convoy's.
func newScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := gatewayv1.Install(s); err != nil {
		return nil, err
	}
	return s, nil
}

// watched lists the types the hub's controllers watch.
var watched = []client.Object{&v1alpha1.Cluster{}, &corev1.Secret{}, &corev1.ServiceAccount{}, &coordinationv1.Lease{}, &v1alpha1.Work{}, &v1alpha1.Placement{}, &v1alpha1.ClusterProfile{}}

// clusterLabelled selects the hub objects that belong to one cluster.
var clusterLabelled = mustSelector(v1alpha1.LabelCluster)

func mustSelector(s string) labels.Selector {
	sel, err := labels.Parse(s)
	if err != nil {
		panic(err)
	}
	return sel
}

// startControllers runs Convoy's controllers in this process and waits until their caches
// have synced. If the controller manager stops on its own later, the error goes to h.fatal.
func (h *Hub) startControllers(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme) error {
	// The API server is local and protects itself (priority and fairness); client-go's
	// default pace would make writing one Work per cluster take seconds for ten clusters.
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 1000, 2000
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Logger:                 logr.FromSlogHandler(h.log.Handler()),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		PprofBindAddress:       h.opts.PprofAddr,
		// Controller names are checked for uniqueness process-wide, for metrics; a process
		// may run more than one hub over its life (tests, restarts), and the hub serves no
		// controller-runtime metrics.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		// The hub reads Secrets only in its own namespace; caching every Secret of every
		// tenant namespace would cost memory for nothing. No controller reads managed fields,
		// and they are a third or more of a Cluster or Work: the cache drops them (an update
		// without them keeps the stored ones).
		Cache: cache.Options{DefaultTransform: cache.TransformStripManagedFields(), ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Namespaces: map[string]cache.Config{
				v1alpha1.SystemNamespace: {},
				metav1.NamespaceSystem:   {LabelSelector: clusterLabelled},
			}},
			&corev1.ServiceAccount{}: {Label: clusterLabelled},
			&coordinationv1.Lease{}:  {Label: clusterLabelled},
		}},
	})
	if err != nil {
		return fmt.Errorf("create controller manager: %w", err)
	}
	// The agents' delivery stream: heartbeats and Works' status without a datastore write
	// each (internal/delivery).
	dl, err := h.listenDelivery()
	if err != nil {
		return err
	}
	h.deliveryListener = dl // closed by shutdown, whether or not the manager ran its server
	deliveryPort := 0
	if dl != nil {
		deliveryPort = dl.Addr().(*net.TCPAddr).Port
	}
	localProvider := &local.Provider{
		Root: h.layout.Clusters(), BinDir: h.opts.BinDir, Convoy: h.opts.ConvoyBinary, Log: h.log.With("provider", "local"),
		HubURL: h.apiserverURL, HubCAFile: kubeproc.CACertPath(h.layout.PKI()), DeliveryPort: deliveryPort,
		Metrics: h.opts.MetricsRetention >= 0, Logs: h.opts.LogsRetention >= 0,
		Registry: h.registry.Addr(), RegistryPull: h.registry.PullAddr(),
		// Every local cluster trusts the issuers the hub trusts.
		Authentication: h.authnConfig,
	}
	if !h.opts.SkipTemplates {
		localProvider.Templates = h.layout.Templates()
	}
	providers := map[v1alpha1.ProviderName]provider.Provider{}
	for _, p := range []provider.Provider{
		localProvider,
		&importer.Provider{Client: mgr.GetClient(), Namespace: v1alpha1.SystemNamespace},
	} {
		providers[p.Name()] = p
	}
	// Convoy's own image, for agents that run as a Deployment in their cluster.
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		if !h.opts.SkipConvoyImage {
			h.pushConvoyImage(ctx)
		}
		return nil
	})); err != nil {
		return err
	}
	// The images every new local cluster's real nodes need, pushed ahead so that the first
	// cluster does not wait for them (its runtime checks again).
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		if h.opts.SkipTemplates || local.MissingForRealNodes(h.opts.BinDir) != nil {
			return nil
		}
		if err := local.PushNodeImages(ctx, h.registry.Addr(), h.opts.BinDir); err != nil && ctx.Err() == nil {
			h.log.Warn("cannot push the real nodes' images to the fleet registry; each cluster tries again", "err", err)
		}
		// Building the images took a hundred megabytes or more that the hub no longer
		// needs: give them back now rather than whenever the runtime gets to it.
		debug.FreeOSMemory()
		return nil
	})); err != nil {
		return err
	}
	// Datastore templates make new local clusters start faster; making them costs one API
	// server start per version, in the background, after the hub is ready.
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		if h.opts.SkipTemplates {
			return nil
		}
		for _, v := range local.AvailableVersions(h.opts.BinDir) {
			if err := local.EnsureTemplate(ctx, h.layout.Templates(), h.opts.BinDir, v, h.log); err != nil && ctx.Err() == nil {
				h.log.Warn("no datastore template; new local clusters start from an empty datastore", "version", v, "err", err)
			}
		}
		return nil
	})); err != nil {
		return err
	}
	changes := make(chan event.TypedGenericEvent[*v1alpha1.Cluster], 64)
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		localProvider.Watch(ctx, func(name string) {
			select {
			case changes <- event.TypedGenericEvent[*v1alpha1.Cluster]{Object: &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}}}:
			case <-ctx.Done():
			}
		})
		return nil
	})); err != nil {
		return err
	}
	var streams *delivery.Server
	heard := make(chan event.TypedGenericEvent[*v1alpha1.Cluster], 64)
	if dl != nil {
		streams = &delivery.Server{HeartbeatInterval: h.opts.HeartbeatInterval, Since: time.Now(), Log: h.log.With("component", "delivery")}
		h.deliveryAddr = dl.Addr().String()
		h.streams.Store(streams)
		streams.Seen = func(ctx context.Context, name string) {
			select {
			case heard <- event.TypedGenericEvent[*v1alpha1.Cluster]{Object: &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}}}:
			case <-ctx.Done():
			}
		}
		if err := h.startDelivery(mgr, cfg, dl, streams); err != nil {
			return err
		}
	}
	clusters := &clustercontroller.Reconciler{
		Client:           mgr.GetClient(),
		Providers:        providers,
		Recorder:         mgr.GetEventRecorder("convoy-hub"),
		Changes:          changes,
		Heard:            heard,
		UnreachableAfter: h.opts.UnreachableAfter,
		Shipped:          version.Addons(),
		Reader:           mgr.GetAPIReader(),
		Clock:            clock.RealClock{},
		Since:            time.Now(),
	}
	if streams != nil {
		clusters.Streams = streams
	}
	if err := clusters.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up cluster controller: %w", err)
	}
	profiles := &profilecontroller.Reconciler{
		Client:    mgr.GetClient(),
		Recorder:  mgr.GetEventRecorder("convoy-hub"),
		Available: func() []string { return local.AvailableVersions(h.opts.BinDir) },
		Shipped:   clusters.Shipped,
		Clock:     clock.RealClock{},
	}
	if err := profiles.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up profile controller: %w", err)
	}
	direct, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	if err := gateway.EnsureClass(ctx, direct); err != nil {
		return err
	}
	if err := gateway.EnsureRoles(ctx, direct); err != nil {
		return err
	}
	if err := access.RemoveFormerRoles(ctx, direct); err != nil {
		return err
	}
	if err := (&gateway.ClassReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up GatewayClass controller: %w", err)
	}
	gateways := &gateway.Reconciler{Client: mgr.GetClient(), Addresses: h.opts.EdgeAddresses}
	if streams != nil {
		gateways.Reports = streams
	}
	if err := gateways.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up Gateway controller: %w", err)
	}
	if h.opts.EdgeInstances >= 0 {
		// The hub's pools outlive it, as its clusters do: a hub that stops or crashes leaves
		// them serving, and the next one takes them over. `convoy down` stops them.
		if err := (&pool.Supervisor{Client: mgr.GetClient(), Name: v1alpha1.EdgeSupervisorHub, Dir: h.layout.Edge(), Outlive: true,
			Instances: h.opts.EdgeInstances, Log: h.log.With("controller", "edgepool")}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("set up the edge pool supervisor: %w", err)
		}
	}
	if err := (&access.Reconciler{Client: mgr.GetClient(), HeartbeatInterval: h.opts.HeartbeatInterval, MaxHeartbeatRate: h.opts.MaxHeartbeatRate,
		DeliveryPort: deliveryPort}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up agent access controller: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	placements := propagation.New(mgr.GetClient(), mgr.GetEventRecorder("convoy-hub"))
	placements.Metrics = gateReader{h: h, client: &http.Client{}}
	placements.Templates = propagation.NewTemplates(dyn, mgr.GetRESTMapper(), disco, placements.TemplatesChanged)
	if err := mgr.Add(placements.Templates); err != nil {
		return err
	}
	if streams != nil {
		placements.Reports = streams
		// A report wakes the Work's Placement, and the edge if it has Services' reach.
		streams.Reported = func(ctx context.Context, cluster, name string, reach bool) {
			if reach {
				gateways.WorkReported()
			}
			w := &v1alpha1.Work{}
			if err := mgr.GetCache().Get(ctx, client.ObjectKey{Namespace: v1alpha1.ClusterNamespace(cluster), Name: name}, w, client.UnsafeDisableDeepCopy); err != nil {
				return
			}
			placements.WorkReported(ctx, w)
		}
		// The content handed to the streams is stored at a paced rate; a write that finds
		// the Work changed under it wakes the Placement to derive it again.
		if err := mgr.Add(&delivery.Writer{Server: streams, Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Log: h.log.With("component", "delivery"),
			Conflict: placements.WorkReported}); err != nil {
			return err
		}
	}
	if err := placements.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up propagation controller: %w", err)
	}
	if err := (&binding.Reconciler{Client: mgr.GetClient(), Reader: mgr.GetAPIReader()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up service binding controller: %w", err)
	}

	// The agents' authorizer answers from the cache of Clusters, and from the API server
	// until that has synced.
	h.authz.Use(mgr.GetCache(), mgr.GetAPIReader())
	h.useClusters(mgr.GetCache())
	if err := h.sweepTunnelsOnChange(context.Background(), mgr.GetCache()); err != nil {
		return err
	}
	mctx, cancel := context.WithCancel(context.Background())
	h.stopManager = cancel
	h.managerDone = make(chan error, 1)
	go func() {
		err := mgr.Start(mctx)
		if err != nil && mctx.Err() == nil {
			h.fatal <- fmt.Errorf("hub controllers stopped: %w", err)
		}
		h.managerDone <- err
	}()

	// The controllers create their informers only when they start, so an empty cache would
	// count as synced at once. Asking for each watched type's informer here creates them now
	// and blocks until they have synced; the controllers then share them.
	sctx, scancel := context.WithTimeout(ctx, h.opts.StepTimeout)
	defer scancel()
	for _, obj := range watched {
		if _, err := mgr.GetCache().GetInformer(sctx, obj); err != nil {
			return fmt.Errorf("hub controllers: cache of %T did not sync within %s: %w", obj, h.opts.StepTimeout, err)
		}
	}
	return nil
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// pushConvoyImage puts this hub's convoy executable into the fleet registry as
// registry.ConvoyImage(), unless it is there already, when the executable is static (as `make`
// builds it): an image has no C library to link a dynamic one against. The metrics collector
// (vmagent), when the bin dir has it, goes in beside it (/vmagent), for agents that run in their
// clusters (join.AgentManifest). The log collectors on members' real nodes run /convoy itself
// (observe.LogCollector).
func (h *Hub) pushConvoyImage(ctx context.Context) {
	exe := h.opts.ConvoyBinary
	f, err := elf.Open(exe)
	if err != nil {
		h.log.Warn("not pushing Convoy's image", "err", err)
		return
	}
	dynamic := slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
	f.Close()
	if dynamic {
		h.log.Info("not pushing Convoy's image: this convoy is dynamically linked; `make` builds a static one", "executable", exe)
		return
	}
	b := image.Build{Base: true}
	if p, err := (kubeproc.Binaries{Dir: h.opts.BinDir}).Path(kubeproc.VMAgent); err == nil {
		b.Companions = append(b.Companions, p)
	}
	ref := strings.TrimPrefix(registry.ConvoyImage(), registry.Host+"/")
	pushed, err := registry.EnsureFromBinary(ctx, h.registry.Addr(), ref, exe, b)
	switch {
	case err != nil && ctx.Err() == nil:
		h.log.Warn("cannot push Convoy's image to the fleet registry", "err", err)
	case pushed:
		h.log.Info("pushed Convoy's image to the fleet registry", "image", registry.ConvoyImage())
	}
}
