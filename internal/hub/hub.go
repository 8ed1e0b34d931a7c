// Package hub is the composition root of `convoy hub`.
//
// It locks the data dir, starts the datastore (kine, or an external etcd), kube-apiserver,
// the few kube-controller-manager controllers a hub needs, the fleet metrics store
// (VictoriaMetrics, whose query API it serves through the API server: metrics.go) and the fleet
// log store (VictoriaLogs, likewise: logs.go) as supervised children, installs Convoy's CRDs, and runs Convoy's controllers in-process. The hub stores workload templates
// and never runs them: no workload controller and no scheduler run here. Only the CLI and
// hubtest import this package.
package hub

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/controller/access"
	"github.com/convoy-dev/convoy/internal/delivery"
	"github.com/convoy-dev/convoy/internal/identity"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/observe"
	"github.com/convoy-dev/convoy/internal/provider/local"
	"github.com/convoy-dev/convoy/internal/registry"
)

// DefaultAPIServerPort is the port a new hub's API server takes when it is free.
const DefaultAPIServerPort = 6443

// DefaultRegistryPort is the port a new hub's fleet registry takes when it is free.
const DefaultRegistryPort = 5000

// hubControllers are the kube-controller-manager controllers the hub runs: enough for
// namespaces to delete, owner references to collect garbage, service accounts to get tokens
// and RBAC aggregation to work. Deployment, ReplicaSet and the other workload controllers
// are left out on purpose: the hub stores templates and never runs them. So is the root-CA
// publisher: its ConfigMap kube-root-ca.crt in every namespace is for pods, and a fleet of a
// thousand clusters has a thousand namespaces at the hub.
var hubControllers = []string{
	"namespace-controller",
	"garbage-collector-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"clusterrole-aggregation-controller",
	// Expired bootstrap tokens (from convoy cluster join) are deleted.
	"token-cleaner-controller",
}

// Options configure a hub.
type Options struct {
	// DataDir holds everything the hub keeps: PKI, datastore, logs, kubeconfig.
	DataDir string
	// BinDir holds the upstream binaries (see kubeproc.DefaultBinDir).
	BinDir string
	// DatastoreEndpoint is empty for SQLite in DataDir, or a postgres://, mysql://, nats://,
	// sqlite:// DSN for kine, or etcd URLs (http://, https://) for the API server directly.
	DatastoreEndpoint string
	// DatastoreTLS is the client certificate for the datastore, if it needs one.
	DatastoreTLS kubeproc.DatastoreTLS
	// APIServerPort is the API server's port on 127.0.0.1. Zero means the port of the last
	// run in DataDir, else 6443 when free, else any free port.
	APIServerPort int
	// RegistryPort is the fleet registry's port on 127.0.0.1. Zero means the port of the last
	// run in DataDir, else 5000 when free, else any free port.
	RegistryPort int
	// DeliveryPort is the port of the agents' delivery stream on 127.0.0.1 (internal/delivery).
	// Zero means the port of the last run in DataDir, else the API server's port + 1 when
	// free, else any free port; a negative one turns the stream off, and agents then renew
	// Leases and write their Works' status themselves.
	DeliveryPort int
	// HealthAddr is where /healthz and /readyz are served; empty turns them off.
	HealthAddr string
	// MetricsRetention is how long the fleet metrics store keeps samples (in whole days;
	// zero means observe.DefaultRetention); a negative one turns the store and its query API
	// off.
	MetricsRetention time.Duration
	// LogsRetention is how long the fleet log store keeps lines (in whole days; zero means
	// observe.DefaultLogsRetention); a negative one turns the store, its API and the
	// members' log collectors off.
	LogsRetention time.Duration
	// OIDCIssuers are OpenID Connect issuers whose ID tokens the hub's API server accepts
	// (structured authentication): people log in with them, and RBAC at the hub decides what
	// their prefixed names and groups may do.
	OIDCIssuers []kubeproc.JWTIssuer
	// NoIssuer turns off the hub's own OpenID Connect issuer (internal/identity), which runs
	// when OIDCIssuers is empty: people sign in to it as the hub's Users (`convoy login`).
	NoIssuer bool
	// IssuerTokenLifetime is how long the hub's issuer's ID tokens live; zero means
	// identity.DefaultTokenLifetime.
	IssuerTokenLifetime time.Duration
	// PprofAddr is where the hub process serves Go's /debug/pprof (controller-runtime's),
	// for profiling; set, it also turns on the API server's own. Empty turns both off.
	PprofAddr string
	// StepTimeout bounds each start-up step, such as waiting for the API server. Zero means 60s.
	StepTimeout time.Duration
	// HeartbeatInterval is how often agents renew their Lease; zero means 2s.
	HeartbeatInterval time.Duration
	// MaxHeartbeatRate caps the heartbeats a second of the whole fleet; a larger fleet is
	// told a longer interval (v1alpha1.FleetHeartbeatInterval). Zero means 50.
	MaxHeartbeatRate float64
	// UnreachableAfter is how long without a heartbeat makes a cluster Unreachable; zero
	// means 6s.
	UnreachableAfter time.Duration
	// SkipTemplates turns off what the hub prepares in the background to make new local
	// clusters start faster: datastore templates, and the real nodes' images pushed to the
	// fleet registry ahead (tests that make few clusters save the CPU).
	SkipTemplates bool
	// SkipConvoyImage leaves Convoy's own image (the executable and the collector, for agents
	// that run in their clusters) out of the fleet registry: compressing them costs a few
	// seconds of CPU at every start, which tests that start many hubs do without.
	SkipConvoyImage bool
	// ConvoyBinary is the convoy executable, which runs each local cluster as
	// `convoy local-runtime`. Empty means this process's own executable.
	ConvoyBinary string
	// EdgeAddresses is the range the edge pools' addresses come from; the zero prefix means
	// DefaultEdgeAddresses.
	EdgeAddresses netip.Prefix
	// EdgeInstances is how many HAProxy instances the hub runs per edge pool; zero means 1,
	// and a negative number none (edge hosts serve them: `convoy edge`).
	EdgeInstances int
	// Log receives the hub's structured logs.
	Log *slog.Logger
}

// DefaultEdgeAddresses is where the edge pools' addresses come from by default: loopback
// addresses, which need no interface and reach no other host.
var DefaultEdgeAddresses = netip.MustParsePrefix("127.77.0.0/16")

// Hub is a running hub. Stop it with Stop.
type Hub struct {
	opts    Options
	layout  Layout
	log     *slog.Logger
	started time.Time
	// authnConfig is the AuthenticationConfiguration of opts.OIDCIssuers, or of the hub's
	// own issuer (nil: none), which the hub's API server and every local cluster's get.
	authnConfig []byte
	// issuer is the hub's own OpenID Connect issuer, served by issuerServer; stopIssuer ends
	// its key rotation.
	issuer       *identity.Issuer
	issuerServer *http.Server
	stopIssuer   context.CancelFunc

	releaseLock func()
	procs       []*kubeproc.Process // in start order
	health      *http.Server
	healthAddr  string
	registry    *registry.Server
	pki         *kubeproc.PKI
	// authz is the API server's authorization webhook for agents' own Clusters, served by
	// authzServer.
	authz       *access.Authorizer
	authzServer *http.Server
	// frontProxyCA verifies the API server's client certificate on the hub's aggregated
	// APIs; metricsStore and metricsServer are the metrics store and its query API.
	frontProxyCA     *x509.CertPool
	metricsStore     atomic.Pointer[url.URL]
	metricsHealth    atomic.Pointer[StoreStatus] // the store's health, as watchMetricsStore last saw it
	stopMetricsWatch context.CancelFunc          // ends watchMetricsStore
	metricsServer    *http.Server
	metricsPort      int
	// clusterProxy serves cluster access through the hub (proxyServer, on proxyPort), and
	// writes its audit to proxyAudit.
	clusterProxy        *identity.ClusterProxy
	proxyServer         *http.Server
	proxyPort           int
	proxyAudit          *os.File
	metricsPasswordFile string
	metricsAuth         observe.BasicAuth
	// logStore, logHealth, stopLogWatch, logPasswordFile and logAuth are the log store's, as
	// the metrics store's above.
	logStore        atomic.Pointer[url.URL]
	logHealth       atomic.Pointer[StoreStatus]
	stopLogWatch    context.CancelFunc
	logPasswordFile string
	logAuth         observe.BasicAuth
	clusters        atomic.Pointer[client.Reader] // the manager's cache, once it runs

	// streams is the agents' delivery stream's server once the controllers start (nil when
	// the stream is off); /status reads it, and is served before then.
	streams          atomic.Pointer[delivery.Server]
	deliveryAddr     string
	deliveryListener net.Listener

	apiserverURL string
	admin        *rest.Config
	readyz       *http.Client

	stopManager context.CancelFunc
	managerDone chan error

	phase     atomic.Value // string: what start-up is doing, for /readyz
	ready     atomic.Bool
	readyTook time.Duration

	fatal    chan error // the in-process controllers failed
	stopOnce sync.Once
}

// Start brings a hub up and returns once it is ready: the API server answers, the CRDs are
// established and the controllers' caches are synced. On error nothing is left running.
func Start(ctx context.Context, opts Options) (_ *Hub, err error) {
	if opts.HeartbeatInterval != 0 && opts.HeartbeatInterval < v1alpha1.MinHeartbeatInterval {
		// Agents take a shorter one for a mistake and send every 2 s.
		return nil, fmt.Errorf("heartbeat interval %s is too short: use %s or more (the default is %s)", opts.HeartbeatInterval, v1alpha1.MinHeartbeatInterval, v1alpha1.DefaultHeartbeatInterval)
	}
	if !opts.EdgeAddresses.IsValid() {
		opts.EdgeAddresses = DefaultEdgeAddresses
	}
	if opts.StepTimeout == 0 {
		opts.StepTimeout = 60 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.DataDir == "" {
		opts.DataDir = DefaultDataDir()
	}
	if opts.ConvoyBinary == "" {
		if opts.ConvoyBinary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find the convoy executable: %w", err)
		}
	}
	if opts.DataDir, err = filepath.Abs(opts.DataDir); err != nil {
		return nil, fmt.Errorf("resolve data dir: %w", err)
	}
	h := &Hub{
		opts:    opts,
		layout:  Layout{Dir: opts.DataDir},
		log:     opts.Log,
		started: time.Now(),
		fatal:   make(chan error, 1),
	}
	h.phase.Store("starting")
	defer func() {
		if err != nil {
			h.shutdown(context.Background())
		}
	}()

	// Everything that can be checked without side effects comes first.
	bins := kubeproc.Binaries{Dir: opts.BinDir}
	apiserverBin, err := bins.Path(kubeproc.KubeAPIServer)
	if err != nil {
		return nil, err
	}
	kcmBin, err := bins.Path(kubeproc.KubeControllerManager)
	if err != nil {
		return nil, err
	}
	metricsBin := ""
	if opts.MetricsRetention >= 0 {
		if metricsBin, err = bins.Path(kubeproc.VictoriaMetrics); err != nil {
			return nil, err
		}
	}
	logsBin := ""
	if opts.LogsRetention >= 0 {
		if logsBin, err = bins.Path(kubeproc.VictoriaLogs); err != nil {
			return nil, err
		}
	}
	if len(opts.OIDCIssuers) > 0 {
		if _, err = kubeproc.AuthenticationConfig(opts.OIDCIssuers); err != nil {
			return nil, err
		}
	}
	ds, err := parseDatastore(opts.DatastoreEndpoint, kubeproc.SQLiteEndpoint(filepath.Join(h.layout.DB(), "state.db")))
	if err != nil {
		return nil, err
	}
	var kineBin string
	if ds.kind == viaKine {
		if kineBin, err = bins.Path(kubeproc.Kine); err != nil {
			return nil, err
		}
	}

	for _, dir := range []string{h.layout.Dir, h.layout.DB(), h.layout.Logs(), h.layout.Run(), h.layout.Internal()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create data dir: %w", err)
		}
	}
	if h.releaseLock, err = lockDataDir(h.layout); err != nil {
		return nil, err
	}
	if err := h.serveHealth(); err != nil {
		return nil, err
	}
	if _, err := kubeproc.ReapStale(h.layout.Run(), h.log); err != nil {
		return nil, err
	}
	kubeproc.EnsureInotifyLimits(h.log)
	h.setPhase("checking datastore")
	if err := ds.preflight(ctx); err != nil {
		return nil, err
	}

	port, err := h.choosePort()
	if err != nil {
		return nil, err
	}
	h.apiserverURL = "https://127.0.0.1:" + strconv.Itoa(port)

	h.setPhase("starting the fleet registry")
	if err := h.startRegistry(ctx); err != nil {
		return nil, err
	}

	h.setPhase("preparing certificates")
	pki, err := kubeproc.EnsurePKI(h.layout.PKI(), "convoy-hub-ca")
	if err != nil {
		return nil, fmt.Errorf("prepare hub PKI: %w", err)
	}
	h.pki = pki
	controllers, err := pki.CA.LoadOrIssue(h.layout.PKI(), kubeproc.CertRequest{
		Name: "hub-controllers", CommonName: "convoy-hub-controllers", Organization: []string{"system:masters"},
	})
	if err != nil {
		return nil, fmt.Errorf("prepare hub PKI: %w", err)
	}
	adminCfg := kubeproc.Kubeconfig("convoy-hub", h.apiserverURL, pki.CA.CertPEM, pki.Admin)
	if err := kubeproc.WriteKubeconfig(h.layout.Kubeconfig(), adminCfg); err != nil {
		return nil, err
	}
	kcmKubeconfig := filepath.Join(h.layout.Internal(), "controller-manager.kubeconfig")
	if err := kubeproc.WriteKubeconfig(kcmKubeconfig, kubeproc.Kubeconfig("convoy-hub", h.apiserverURL, pki.CA.CertPEM, pki.ControllerManager)); err != nil {
		return nil, err
	}
	if h.admin, err = kubeproc.RESTConfig(adminCfg); err != nil {
		return nil, err
	}
	if h.readyz, err = rest.HTTPClientFor(h.admin); err != nil {
		return nil, fmt.Errorf("build readiness client: %w", err)
	}
	controllersCfg, err := kubeproc.RESTConfig(kubeproc.Kubeconfig("convoy-hub", h.apiserverURL, pki.CA.CertPEM, controllers))
	if err != nil {
		return nil, err
	}

	etcdServers, etcdTLS := ds.etcd, opts.DatastoreTLS
	if ds.kind == viaKine {
		h.setPhase("starting kine")
		kinePort, err := kubeproc.FreePort()
		if err != nil {
			return nil, err
		}
		kine, err := h.startChild(kubeproc.Kine, kineBin, kubeproc.KineConfig{Endpoint: ds.endpoint, Port: kinePort, TLS: opts.DatastoreTLS}.Args())
		if err != nil {
			return nil, err
		}
		if err := kubeproc.WaitTCP(ctx, "127.0.0.1:"+strconv.Itoa(kinePort), kine, opts.StepTimeout); err != nil {
			return nil, fmt.Errorf("datastore %s: %w", redact(ds.endpoint), err)
		}
		etcdServers, etcdTLS = []string{"http://127.0.0.1:" + strconv.Itoa(kinePort)}, kubeproc.DatastoreTLS{}
	}

	h.setPhase("starting kube-apiserver")
	// Agents join with bootstrap tokens (see package join).
	extra := []string{"--enable-bootstrap-token-auth=true"}
	if opts.PprofAddr != "" {
		extra = append(extra, "--profiling=true") // its /debug/pprof, for cluster-admins
	}
	authzConfig, err := h.serveAuthorizer()
	if err != nil {
		return nil, err
	}
	frontProxy, err := h.frontProxy()
	if err != nil {
		return nil, err
	}
	extra = append(extra, frontProxy...)
	if err := h.prepareMetricsAuth(); err != nil {
		return nil, err
	}
	if err := h.prepareLogsAuth(); err != nil {
		return nil, err
	}
	if err := h.serveMetricsAPI(); err != nil {
		return nil, err
	}
	if err := h.serveClusterProxy(); err != nil {
		return nil, err
	}
	issuers := opts.OIDCIssuers
	if len(issuers) == 0 && !opts.NoIssuer {
		h.setPhase("starting the OpenID Connect issuer")
		own, err := h.serveIssuer()
		if err != nil {
			return nil, err
		}
		issuers = []kubeproc.JWTIssuer{own}
	}
	var authnConfig []byte
	if len(issuers) > 0 {
		if authnConfig, err = kubeproc.AuthenticationConfig(issuers); err != nil {
			return nil, err
		}
	}
	h.authnConfig = authnConfig
	authnPath := filepath.Join(h.layout.Internal(), "authentication.yaml")
	if authnConfig != nil {
		// The API server reads the file again when it changes.
		if err := kubeproc.WriteFileAtomic(authnPath, authnConfig, 0o600); err != nil {
			return nil, err
		}
	} else {
		// An earlier run's, which nothing reads now.
		if err := os.Remove(authnPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		authnPath = ""
	}
	apiserver, err := h.startChild(kubeproc.KubeAPIServer, apiserverBin, kubeproc.APIServerConfig{
		EtcdServers: etcdServers, EtcdTLS: etcdTLS, Port: port, PKI: pki, AuthorizationConfig: authzConfig,
		AuthenticationConfig: authnPath, Extra: extra,
	}.Args())
	if err != nil {
		return nil, err
	}
	if err := kubeproc.WaitAPIServer(ctx, h.admin, apiserver, opts.StepTimeout); err != nil {
		return nil, fmt.Errorf("hub API server (datastore %s): %w", redact(ds.endpoint), err)
	}

	// Before the controller-manager, whose discovery would otherwise find the group failing.
	if err := h.registerMetricsAPI(ctx, controllersCfg); err != nil {
		return nil, err
	}
	if err := h.registerClusterProxy(ctx, controllersCfg); err != nil {
		return nil, err
	}

	h.setPhase("starting kube-controller-manager")
	if _, err := h.startChild(kubeproc.KubeControllerManager, kcmBin, kubeproc.ControllerManagerConfig{
		Kubeconfig: kcmKubeconfig, PKI: pki, Controllers: hubControllers,
	}.Args()); err != nil {
		return nil, err
	}

	h.setPhase("installing CRDs")
	if err := installCRDs(ctx, controllersCfg, opts.BinDir, opts.StepTimeout, h.log); err != nil {
		return nil, err
	}

	scheme, err := newScheme()
	if err != nil {
		return nil, err
	}
	versions := local.AvailableVersions(opts.BinDir)
	setup, err := client.New(controllersCfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	if err := installAdmission(ctx, setup, versions); err != nil {
		return nil, err
	}
	if err := publishAuthentication(ctx, setup, h.authnConfig); err != nil {
		return nil, err
	}
	var login *kubeproc.JWTIssuer
	if len(issuers) > 0 {
		login = &issuers[0]
	}
	if err := publishLogin(ctx, setup, login); err != nil {
		return nil, err
	}

	h.setPhase("starting the metrics store")
	if err := h.startMetricsStore(ctx, metricsBin); err != nil {
		return nil, err
	}

	h.setPhase("starting the log store")
	if err := h.startLogStore(logsBin); err != nil {
		return nil, err
	}

	h.setPhase("starting controllers")
	if err := h.startControllers(ctx, controllersCfg, scheme); err != nil {
		return nil, err
	}

	h.readyTook = time.Since(h.started)
	h.setPhase("ready")
	h.ready.Store(true)
	h.log.Info("hub ready", "took", h.readyTook.Round(time.Millisecond), "apiserver", h.apiserverURL, "kubeconfig", h.layout.Kubeconfig(), "health", h.healthAddr)
	return h, nil
}

func (h *Hub) setPhase(p string) {
	h.phase.Store(p)
	h.log.Debug("hub start-up", "phase", p)
}

// choosePort picks the API server port and remembers it in the data dir.
func (h *Hub) choosePort() (int, error) {
	st, err := loadState(h.layout)
	if err != nil {
		return 0, err
	}
	port := h.opts.APIServerPort
	// The API server of a hub that was just killed may take a moment to let go of its port.
	freeSoon := func(port int) bool {
		for range 50 {
			if kubeproc.PortFree(port) {
				return true
			}
			time.Sleep(100 * time.Millisecond)
		}
		return false
	}
	switch {
	case port != 0:
		if !freeSoon(port) {
			return 0, fmt.Errorf("port %d for the hub's API server is in use; free it or pass another --apiserver-port", port)
		}
	case st.APIServerPort != 0:
		port = st.APIServerPort
		if !freeSoon(port) {
			return 0, fmt.Errorf("port %d, which this data dir's API server used before, is in use by another program; free it, or pass --apiserver-port (kubeconfigs copied earlier then need the new port)", port)
		}
	case kubeproc.PortFree(DefaultAPIServerPort):
		port = DefaultAPIServerPort
	default:
		if port, err = kubeproc.FreePort(); err != nil {
			return 0, err
		}
	}
	if port != st.APIServerPort {
		st.APIServerPort = port
		if err := saveState(h.layout, st); err != nil {
			return 0, err
		}
	}
	return port, nil
}

// startRegistry starts the fleet registry on its port, which it remembers in the data dir:
// the one asked for, else the last run's, else 5000, else (taken, perhaps by another hub
// starting at the same moment) any free one.
func (h *Hub) startRegistry(ctx context.Context) error {
	st, err := loadState(h.layout)
	if err != nil {
		return err
	}
	port, fallback := h.opts.RegistryPort, false
	switch {
	case port != 0:
	case st.RegistryPort != 0:
		port = st.RegistryPort
	default:
		port, fallback = DefaultRegistryPort, true
	}
	h.registry, err = registry.Start(ctx, h.layout.Registry(), "127.0.0.1:"+strconv.Itoa(port), h.log)
	if err != nil && fallback {
		if port, err = kubeproc.FreePort(); err != nil {
			return err
		}
		h.registry, err = registry.Start(ctx, h.layout.Registry(), "127.0.0.1:"+strconv.Itoa(port), h.log)
	}
	switch {
	case err != nil && h.opts.RegistryPort == 0 && !fallback:
		return fmt.Errorf("%w: this data dir's fleet registry used port %d before; free it, or pass --registry-port (local clusters made earlier then need a restart to use the new port)", err, port)
	case err != nil:
		return fmt.Errorf("%w; free the port or pass another --registry-port", err)
	}
	// The read-only address real nodes pull from: the last run's (local clusters keep running
	// while the hub restarts, and their nodes are configured with it), else any free one.
	pull := "127.0.0.1:0"
	if st.RegistryPullPort != 0 {
		pull = "127.0.0.1:" + strconv.Itoa(st.RegistryPullPort)
	}
	addr, err := h.registry.ServePulls(pull)
	if err != nil && st.RegistryPullPort != 0 {
		h.log.Warn("the fleet registry's read-only port of the last run is taken; real nodes of running clusters pull again once restarted", "err", err)
		addr, err = h.registry.ServePulls("127.0.0.1:0")
	}
	if err != nil {
		return err
	}
	_, pullText, _ := net.SplitHostPort(addr)
	pullPort, _ := strconv.Atoi(pullText)
	if port != st.RegistryPort || pullPort != st.RegistryPullPort {
		st.RegistryPort, st.RegistryPullPort = port, pullPort
		return saveState(h.layout, st)
	}
	return nil
}

// RegistryAddr is the fleet registry's address on the host's loopback.
func (h *Hub) RegistryAddr() string { return h.registry.Addr() }

func (h *Hub) startChild(name, bin string, args []string) (*kubeproc.Process, error) {
	p, err := kubeproc.Start(kubeproc.Spec{
		Name:    name,
		Path:    bin,
		Args:    args,
		LogPath: filepath.Join(h.layout.Logs(), name+".log"),
		PIDPath: filepath.Join(h.layout.Run(), name+".pid"),
	}, h.log)
	if err != nil {
		return nil, err
	}
	h.procs = append(h.procs, p)
	return p, nil
}

// serveHealth serves /healthz (the hub process is alive) and /readyz (the hub is ready, its
// children run and its API server is ready; 503 with the reason otherwise).
func (h *Hub) serveHealth() error {
	if h.opts.HealthAddr == "" {
		return nil
	}
	l, err := net.Listen("tcp", h.opts.HealthAddr)
	if err != nil {
		return fmt.Errorf("serve health on %s: %w; pass --health-addr with a free address", h.opts.HealthAddr, err)
	}
	h.healthAddr = l.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := h.Ready(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		writeJSON(w, h.Status())
	})
	h.health = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := h.health.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("health server stopped", "err", err)
		}
	}()
	return nil
}

// Ready returns nil when the hub is ready to serve, or the reason it is not.
func (h *Hub) Ready(ctx context.Context) error {
	if !h.ready.Load() {
		return fmt.Errorf("hub is starting: %s", h.phase.Load())
	}
	for _, p := range h.procs {
		if p.Name() == kubeproc.VictoriaMetrics || p.Name() == kubeproc.VictoriaLogs {
			continue // the hub works without its metrics and log stores; /status shows them
		}
		if st := p.Status(); !st.Running {
			return fmt.Errorf("%s is not running (restarts %d, last exit: %s)", st.Name, st.Restarts, st.LastExit)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := kubeproc.CheckReadyz(ctx, h.readyz, h.apiserverURL); err != nil {
		return fmt.Errorf("hub API server: %w", err)
	}
	return nil
}

// Status is what /status reports.
type Status struct {
	Phase      string            `json:"phase"`
	Ready      bool              `json:"ready"`
	ReadyAfter string            `json:"readyAfter,omitempty"`
	APIServer  string            `json:"apiserver"`
	Kubeconfig string            `json:"kubeconfig"`
	Children   []kubeproc.Status `json:"children"`
	// DeliveryAddr is the agents' delivery stream's address, and Delivery what the streams
	// cost so far (both absent with --delivery-port -1).
	DeliveryAddr string          `json:"deliveryAddr,omitempty"`
	Delivery     *delivery.Stats `json:"delivery,omitempty"`
	// MetricsStore is the fleet metrics store's health (absent when it is off).
	MetricsStore *StoreStatus `json:"metricsStore,omitempty"`
	// LogStore is the fleet log store's health (absent when it is off).
	LogStore *StoreStatus `json:"logStore,omitempty"`
}

// Status reports the hub's phase and its children.
func (h *Hub) Status() Status {
	s := Status{
		Phase:      h.phase.Load().(string),
		Ready:      h.ready.Load(),
		APIServer:  h.apiserverURL,
		Kubeconfig: h.layout.Kubeconfig(),
	}
	if s.Ready {
		s.ReadyAfter = h.readyTook.Round(time.Millisecond).String()
	}
	for _, p := range h.procs {
		s.Children = append(s.Children, p.Status())
	}
	if d := h.streams.Load(); d != nil {
		st := d.Stats()
		s.Delivery, s.DeliveryAddr = &st, h.deliveryAddr
	}
	s.MetricsStore = h.metricsHealth.Load()
	s.LogStore = h.logHealth.Load()
	return s
}

// Kubeconfig is the path of the admin kubeconfig.
func (h *Hub) Kubeconfig() string { return h.layout.Kubeconfig() }

// APIServerURL is the hub API server's address.
func (h *Hub) APIServerURL() string { return h.apiserverURL }

// AdminConfig is a client configuration with the admin identity.
func (h *Hub) AdminConfig() *rest.Config { return rest.CopyConfig(h.admin) }

// HealthAddr is the address /healthz and /readyz are served on, if any.
func (h *Hub) HealthAddr() string { return h.healthAddr }

// ReadyAfter is how long start-up took.
func (h *Hub) ReadyAfter() time.Duration { return h.readyTook }

// Children reports each supervised child.
func (h *Hub) Children() []kubeproc.Status {
	out := make([]kubeproc.Status, 0, len(h.procs))
	for _, p := range h.procs {
		out = append(out, p.Status())
	}
	return out
}

// Failed delivers an error if the hub's in-process controllers stop on their own.
func (h *Hub) Failed() <-chan error { return h.fatal }

// Stop stops the controllers, then the children in reverse start order (controller-manager,
// API server, datastore), and releases the data dir. It is safe to call more than once.
func (h *Hub) Stop(ctx context.Context) {
	h.shutdown(ctx)
}

func (h *Hub) shutdown(ctx context.Context) {
	h.stopOnce.Do(func() {
		h.ready.Store(false)
		h.setPhase("stopping")
		if h.stopManager != nil {
			h.stopManager()
			<-h.managerDone
		}
		if h.deliveryListener != nil {
			_ = h.deliveryListener.Close() // a manager stopped early may not have served it
		}
		if h.metricsServer != nil {
			_ = h.metricsServer.Close()
		}
		if h.proxyServer != nil {
			_ = h.proxyServer.Close()
			h.clusterProxy.Close() // the tunnels, which the server no longer holds
		}
		if h.proxyAudit != nil {
			_ = h.proxyAudit.Close()
		}
		if h.stopMetricsWatch != nil {
			h.stopMetricsWatch()
		}
		if h.stopLogWatch != nil {
			h.stopLogWatch()
		}
		kubeproc.StopAll(ctx, h.procs)
		if h.issuerServer != nil {
			_ = h.issuerServer.Close()
			h.stopIssuer()
		}
		if h.authzServer != nil {
			_ = h.authzServer.Close()
		}
		if h.registry != nil {
			_ = h.registry.Close(ctx)
		}
		if h.health != nil {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_ = h.health.Shutdown(sctx)
			cancel()
		}
		if h.releaseLock != nil {
			h.releaseLock()
		}
		h.log.Info("hub stopped")
	})
}

// Run starts a hub, tells the user how to reach it, and runs until ctx ends or the hub fails.
func Run(ctx context.Context, opts Options, out io.Writer) error {
	h, err := Start(ctx, opts)
	if err != nil {
		return err
	}
	defer h.Stop(context.Background())
	fmt.Fprintf(out, `Convoy hub is ready (took %s).
  API server:  %s
  Kubeconfig:  %s
`, h.ReadyAfter().Round(100*time.Millisecond), h.APIServerURL(), h.Kubeconfig())
	fmt.Fprintf(out, "  Registry:    %s (images named %s/REPO:TAG)\n", h.RegistryAddr(), registry.Host)
	if h.HealthAddr() != "" {
		fmt.Fprintf(out, "  Health:      http://%s/readyz\n", h.HealthAddr())
	}
	fmt.Fprintf(out, `
Next:
  export KUBECONFIG=%s
  kubectl get clusters          # or: convoy get clusters
Stop the hub with Ctrl-C.
`, h.Kubeconfig())

	select {
	case <-ctx.Done():
	case err = <-h.Failed():
	}
	if entries, _ := os.ReadDir(h.layout.Clusters()); len(entries) > 0 {
		fmt.Fprintf(out, "Stopping the hub. Its %d local clusters keep running, as members do; `convoy down` stops them.\n", len(entries))
	}
	return err
}
