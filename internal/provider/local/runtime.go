package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/node"
	"github.com/convoy-dev/convoy/internal/profile"
	"github.com/convoy-dev/convoy/internal/registry"
)

// Runtime is the process that runs one local cluster (`convoy local-runtime --dir DIR`). The hub
// starts it detached, so the cluster keeps running while the hub is down, just as a real
// member cluster would. It supervises the cluster's kine, kube-apiserver,
// kube-controller-manager, kube-scheduler and kwok, restarting any that crash; they die with it.
type Runtime struct {
	dir dir
	log *slog.Logger

	mu  sync.Mutex
	cfg config
	// cpVersion is the Kubernetes version the control plane runs: cfg's, once reload has moved
	// it there. Nodes start on it and move to cfg's after it (upgradeNodes).
	cpVersion string
	cpErr     string // why reload could not move the control plane, until it does
	// nodesOn is the version every node was last seen on; nodesUpgrading and upgradeBlocked
	// are what their upgrade to cfg's version does, and what blocks it (upgradeNodes).
	nodesOn, nodesUpgrading, upgradeBlocked string

	procs    map[string]*kubeproc.Process
	bins     map[string]string // the executable each of procs runs
	order    []string
	phase    string
	nodesErr string
	addonErr string
	pki      *kubeproc.PKI
	ports    ports
	lastSt   []byte

	nodes chan struct{} // asks the node loop to sync the nodes
	real  *realNodes
	scale scaler // the counts of autoscaled pools (autoscale.go)
	// kcmReal says whether the running controller-manager allocates pod ranges to nodes,
	// which only clusters with real nodes need.
	kcmReal bool

	podNetMu sync.Mutex
	podNet   netip.Prefix // the cluster's pod network, once known (podNetwork)
}

// RunRuntime runs the cluster in clusterDir until ctx ends. A value on reload makes it re-read
// its config and move the control plane to a new Kubernetes version if that changed.
func RunRuntime(ctx context.Context, clusterDir string, reload <-chan struct{}, log *slog.Logger) error {
	r := &Runtime{dir: dir(clusterDir), log: log, procs: map[string]*kubeproc.Process{}, nodes: make(chan struct{}, 1)}
	r.real = &realNodes{r: r}
	if err := r.scale.load(r.dir.autoscale()); err != nil {
		return fmt.Errorf("read the autoscaled counts: %w", err)
	}
	if err := readJSON(r.dir.config(), &r.cfg); err != nil {
		return fmt.Errorf("read cluster config: %w", err)
	}
	r.log = log.With("cluster", r.cfg.Name)
	// startAll starts the control plane on the config's version, and the nodes start on it.
	// Their Nodes still show what they ran before, though: if the runtime before this one left
	// an upgrade unfinished, or never began it, the status says so until the nodes' first pass.
	r.cpVersion, r.nodesOn = r.cfg.KubernetesVersion, r.cfg.KubernetesVersion
	var last RuntimeStatus
	if readJSON(r.dir.status(), &last) == nil && (last.Upgrading != "" || last.Version != r.cfg.KubernetesVersion) {
		r.nodesOn = ""
	}
	for _, d := range []string{r.dir.db(), r.dir.logs(), r.dir.run(), r.dir.internal()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create cluster dir: %w", err)
		}
	}
	release, err := kubeproc.Lock(r.dir.lock())
	if err != nil {
		return fmt.Errorf("cluster %s: %w", r.cfg.Name, err)
	}
	defer release()
	if _, err := kubeproc.ReapStale(r.dir.run(), r.log); err != nil {
		return err
	}
	kubeproc.EnsureInotifyLimits(r.log)

	stopStatus := r.reportStatus()
	defer stopStatus()
	defer func() {
		r.setPhase("stopped")
		r.real.stopAll()
		r.stopAll()
		r.stopFleetForward()
		r.writeStatus()
	}()

	if err := r.prepare(); err != nil {
		return err
	}
	r.startNodesEarly(ctx)
	if err := r.startAll(ctx); err != nil {
		return err
	}
	r.setPhase("running")
	r.log.Info("local cluster running", "apiserver", r.endpoint())

	nctx, stopNodes := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.nodeLoop(nctx) })
	wg.Go(func() { r.addonLoop(nctx) })
	defer func() { stopNodes(); wg.Wait() }()
	r.syncNodesSoon()

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reload:
			if err := r.reload(ctx); err != nil {
				r.log.Error("reload failed", "err", err)
			}
		}
	}
}

// startNodesEarly starts the real nodes' containerd while the control plane starts; their
// kubelets join once the API server is ready (syncNodes).
func (r *Runtime) startNodesEarly(ctx context.Context) {
	r.mu.Lock()
	c := r.cfg.cluster()
	r.mu.Unlock()
	r.scale.apply(c) // an autoscaled pool's nodes are those its runtime chose
	var real []nodeShape
	for _, w := range desiredNodes(c) {
		if w.real {
			real = append(real, w)
		}
	}
	r.real.startEarly(ctx, real)
}

func (r *Runtime) syncNodesSoon() {
	select {
	case r.nodes <- struct{}{}:
	default:
	}
}

// nodeLoop makes the nodes match the config whenever asked, and retries every two seconds
// while it cannot (API server down, a drain blocked by a PodDisruptionBudget) or while it
// upgrades them.
func (r *Runtime) nodeLoop(ctx context.Context) {
	var retry <-chan time.Time
	var cs kubernetes.Interface
	joinWait := map[string]time.Time{} // see upgradeNodes
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.nodes:
		case <-retry:
		}
		var changed, upgrading bool
		var err error
		if cs == nil {
			cs, err = r.memberClient()
		}
		if err == nil {
			// The upgrade takes its step even when the sync failed: a node that does not join
			// then blocks it, saying why, rather than stalling it unseen.
			var syncErr error
			scaled, scaleErr := r.autoscalePools(ctx, cs, time.Now())
			changed, syncErr = r.syncNodes(ctx, cs)
			changed = changed || scaled
			syncErr = errors.Join(scaleErr, syncErr)
			upgrading, err = r.upgradeNodes(ctx, cs, joinWait, syncErr)
			err = errors.Join(syncErr, err)
		}
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		r.nodesErr = ""
		if err != nil {
			r.nodesErr = err.Error()
		}
		r.mu.Unlock()
		r.writeStatus()
		switch {
		case err != nil:
			r.log.Warn("nodes not in step yet; retrying", "err", err)
			retry = time.After(2 * time.Second)
		case changed:
			retry = time.After(250 * time.Millisecond) // look again soon: a kubelet registering, a pod range coming (see syncNodes)
		case upgrading:
			retry = time.After(2 * time.Second) // pods leaving, a refused eviction, a node coming back
		default:
			retry = nil
		}
		r.mu.Lock()
		watch := autoscaled(r.cfg.cluster())
		r.mu.Unlock()
		if retry == nil && watch {
			retry = time.After(autoscaleEvery) // pods waiting for room, nodes going idle
		}
	}
}

// addonLoop applies the add-ons of a cluster with real nodes (see addons.go) when it has
// them, and again every addonsInterval; their images go to the fleet registry first. It makes
// the cluster's namespaces (a profile's) as well, real nodes or not, and applies its default
// RBAC and admission policies (ApplyProfileObjects).
func (r *Runtime) addonLoop(ctx context.Context) {
	pushed := false
	var applier *addonApplier
	for {
		var err error
		if r.hasRealNodes() {
			r.mu.Lock()
			cfg := r.cfg
			r.mu.Unlock()
			if !pushed {
				if err = pushAddonImages(ctx, cfg); err == nil {
					pushed = true
				}
			}
			if err == nil && applier == nil {
				applier, err = r.addonApplier()
			}
			if err == nil {
				err = applier.apply(ctx)
			}
		}
		r.mu.Lock()
		namespaces := r.cfg.Namespaces
		objects := profile.Objects(r.cfg.RBAC, r.cfg.AdmissionPolicies)
		r.mu.Unlock()
		if cs, cerr := r.memberClient(); cerr != nil {
			err = errors.Join(err, cerr)
		} else {
			if len(namespaces) > 0 && err == nil {
				err = ensureNamespaces(ctx, cs, namespaces)
			}
			// The default RBAC and admission policies, whatever became of the rest: with none
			// in the spec, those made before are deleted.
			err = errors.Join(err, ApplyProfileObjects(ctx, cs, objects))
		}
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		changed := (err == nil) != (r.addonErr == "")
		r.addonErr = ""
		if err != nil {
			r.addonErr = err.Error()
		}
		r.mu.Unlock()
		if changed {
			r.writeStatus()
			if err != nil {
				r.log.Warn("add-ons not applied; retrying", "err", err)
			}
		}
		wait := addonsInterval
		if err != nil {
			wait = 5 * time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// addonApplier makes the cluster's add-on applier (see addons.go).
func (r *Runtime) addonApplier() (*addonApplier, error) {
	objs, err := renderAddons(r.dir.volumes())
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(r.dir.kubeconfig())
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(raw)
	if err != nil {
		return nil, err
	}
	return newAddonApplier(cfg, objs)
}

// memberClient is a client of the cluster's API server, as its admin.
func (r *Runtime) memberClient() (kubernetes.Interface, error) {
	raw, err := os.ReadFile(r.dir.kubeconfig())
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(raw)
	if err != nil {
		return nil, err
	}
	// Not NewForConfig's (nil, err) as is: a nil *Clientset in the interface is not nil, and
	// the node loop keeps and uses any client that is not.
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return cs, nil
}

func (r *Runtime) syncNodes(ctx context.Context, cs kubernetes.Interface) (bool, error) {
	r.mu.Lock()
	c := r.cfg.cluster()
	// Simulated nodes report the control plane's version, which nodes never pass.
	c.Spec.KubernetesVersion = r.cpVersion
	r.mu.Unlock()
	r.scale.apply(c)
	return syncNodes(ctx, cs, c, r.real, r.log)
}

// upgradeNodes moves the real nodes to the config's version once the control plane runs it
// (upgradeNodes), and keeps what that does for the status. It reports whether it is not done.
func (r *Runtime) upgradeNodes(ctx context.Context, cs kubernetes.Interface, joinWait map[string]time.Time, syncErr error) (bool, error) {
	r.mu.Lock()
	want, cp := r.cfg.KubernetesVersion, r.cpVersion
	r.mu.Unlock()
	if cp != want {
		return false, nil // the control plane goes first; reload asks for a pass once it is done
	}
	var st upgradeState
	var err error
	if r.hasRealNodes() {
		var wantKubelet string
		if wantKubelet, err = r.real.reportedVersion(want, "kubelet"); err == nil {
			st, err = upgradeNodes(ctx, cs, r.real, want, wantKubelet, time.Now(), joinWait, syncErr)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cfg.KubernetesVersion != want {
		return true, nil // a reload moved the goal meanwhile: this pass is of no use
	}
	r.nodesUpgrading, r.upgradeBlocked, r.nodesOn = st.upgrading, st.blocked, ""
	if err == nil && st.upgrading == "" {
		r.nodesOn = want
	}
	return st.upgrading != "", err
}

func (r *Runtime) setPhase(p string) {
	r.mu.Lock()
	r.phase = p
	r.mu.Unlock()
	r.writeStatus()
}

func (r *Runtime) endpoint() string { return "https://127.0.0.1:" + strconv.Itoa(r.ports.APIServer) }

// prepare makes the PKI, chooses ports and writes the kubeconfigs and kwok's configuration.
func (r *Runtime) prepare() error {
	r.setPhase("preparing certificates")
	pki, err := kubeproc.EnsurePKI(r.dir.pki(), "convoy-cluster-"+r.cfg.Name+"-ca")
	if err != nil {
		return fmt.Errorf("prepare PKI: %w", err)
	}
	r.pki = pki
	kwokCert, err := pki.CA.LoadOrIssue(r.dir.pki(), kubeproc.CertRequest{Name: "kwok", CommonName: "kwok-controller", Organization: []string{"system:masters"}})
	if err != nil {
		return fmt.Errorf("prepare PKI: %w", err)
	}

	if err := readJSON(r.dir.ports(), &r.ports); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	changed := false
	for _, p := range []*int{&r.ports.APIServer, &r.ports.Kine} {
		if *p == 0 || !kubeproc.PortFree(*p) {
			if *p, err = kubeproc.FreePort(); err != nil {
				return err
			}
			changed = true
		}
	}
	if changed {
		if err := writeJSON(r.dir.ports(), r.ports); err != nil {
			return err
		}
	}

	server := r.endpoint()
	kubeconfigs := map[string]kubeproc.KeyPair{
		r.dir.kubeconfig(): pki.Admin,
		filepath.Join(r.dir.internal(), "controller-manager.kubeconfig"): pki.ControllerManager,
		filepath.Join(r.dir.internal(), "scheduler.kubeconfig"):          pki.Scheduler,
		filepath.Join(r.dir.internal(), "kwok.kubeconfig"):               kwokCert,
	}
	for path, kp := range kubeconfigs {
		if err := kubeproc.WriteKubeconfig(path, kubeproc.Kubeconfig("convoy-"+r.cfg.Name, server, pki.CA.CertPEM, kp)); err != nil {
			return err
		}
	}
	return kubeproc.WriteFileAtomic(filepath.Join(r.dir.internal(), "kwok.yaml"), []byte(kwokStages()), 0o644)
}

// component is how to run one control-plane binary.
type component struct {
	name string
	bin  string
	args []string
}

func (r *Runtime) components() ([]component, error) {
	kube := binariesFor(r.cfg.BinDir, r.cfg.KubernetesVersion)
	always := kubeproc.Binaries{Dir: r.cfg.BinDir}
	path := func(b kubeproc.Binaries, name string) (string, error) { return b.Path(name) }
	var comps []component
	add := func(b kubeproc.Binaries, name string, args []string) error {
		p, err := path(b, name)
		if err != nil {
			return err
		}
		comps = append(comps, component{name: name, bin: p, args: args})
		return nil
	}
	internal := r.dir.internal()
	errs := []error{
		add(always, kubeproc.Kine, kubeproc.KineConfig{
			Endpoint: kubeproc.SQLiteEndpoint(filepath.Join(r.dir.db(), "state.db")), Port: r.ports.Kine,
		}.Args()),
		add(kube, kubeproc.KubeAPIServer, kubeproc.APIServerConfig{
			EtcdServers: []string{"http://127.0.0.1:" + strconv.Itoa(r.ports.Kine)}, Port: r.ports.APIServer, PKI: r.pki,
			// Real nodes' kubelets take the admin's certificate (system:masters).
			Kubelets: &r.pki.Admin,
			// Pods on real nodes reach it through the host's fleet address (see node.Forward).
			Advertise: node.Gateway.String(),
			// The hub's OIDC issuers; a cluster made before the hub wrote it has none.
			AuthenticationConfig: r.authenticationConfig(),
			Extra:                r.apiServerSettings(),
		}.Args()),
		add(kube, kubeproc.KubeControllerManager, r.controllerManager()),
		add(kube, kubeproc.KubeScheduler, append([]string{
			"--kubeconfig=" + filepath.Join(internal, "scheduler.kubeconfig"),
			"--leader-elect=false", "--secure-port=0", "--profiling=false",
		}, featureGates(r.cfg.APIServer)...)),
		add(always, kubeproc.Kwok, []string{
			"--kubeconfig=" + filepath.Join(internal, "kwok.kubeconfig"),
			"--config=" + filepath.Join(internal, "kwok.yaml"),
			"--manage-all-nodes=false",
			"--manage-nodes-with-annotation-selector=" + kwokNodeAnnotation + "=fake",
			"--cidr=" + kwokPodCIDR,
			"--node-ip=10.0.0.1",
			// Without it kwok renews no node Leases, the controller-manager marks the nodes
			// NotReady after its 50 s grace, and their pods lose their Ready condition. kwok
			// renews every quarter of it.
			"--node-lease-duration-seconds=40",
		}),
	}
	if a := r.cfg.Agent; a != nil {
		self, err := os.Executable()
		if err != nil {
			errs = append(errs, err)
		} else {
			args := []string{
				"agent", "--cluster", r.cfg.Name, "--hub-url", a.HubURL, "--hub-ca-file", a.HubCAFile,
				"--bootstrap-token-file", filepath.Join(r.dir.agent(), "bootstrap-token"),
				"--state-dir", r.dir.agent(), "--kubeconfig", r.dir.kubeconfig(),
			}
			if a.DeliveryPort != 0 {
				// It joins there, without a request to the hub's API server.
				args = append(args, "--delivery-port", strconv.Itoa(a.DeliveryPort))
			}
			if a.Metrics {
				// The cluster runs without a collector rather than not at all.
				if p, err := always.Path(kubeproc.VMAgent); err != nil {
					r.log.Warn("no metrics collector for the agent", "err", err)
				} else {
					args = append(args, "--collector-bin", p, "--collector-pods", r.collectorPods())
				}
			}
			if a.Logs {
				// The collectors run in pods on the real nodes, which reach the hub at the
				// fleet gateway and keep their pod logs in their own directories.
				hub := a.HubURL
				if u, err := url.Parse(a.HubURL); err == nil {
					hub = "https://" + net.JoinHostPort(kubeproc.FleetGateway, u.Port())
				}
				args = append(args, "--log-collector-image", registry.ConvoyImage(), "--log-collector-hub-url", hub,
					"--log-collector-host-path", filepath.Join(string(r.dir), "nodes"),
					"--log-collector-data-host-path", filepath.Join(string(r.dir), "log-collector"))
			}
			comps = append(comps, component{name: agentComponent, bin: self, args: args})
		}
	}
	return comps, errors.Join(errs...)
}

// collectorPods is which pods the agent's collector, on the host, reaches (--collector-pods):
// those of the cluster's pod network when the host routes it, else none (simulated pods'
// addresses are made up; a shared network is not routed).
func (r *Runtime) collectorPods() string {
	if !r.hasRealNodes() {
		return "none"
	}
	network, err := r.podNetwork()
	if err != nil || !node.PodNetworkSpace.Contains(network.Addr()) {
		return "none"
	}
	return network.String()
}

// controllerManager is the controller-manager's configuration. With real nodes it allocates
// each node a range of the cluster's pod network; kwok assigns its pods' addresses itself. A
// cluster that cannot have its pod network runs without its real nodes (their start fails with
// the reason, in the cluster's status), not without its control plane.
func (r *Runtime) controllerManager() []string {
	cfg := kubeproc.ControllerManagerConfig{
		Kubeconfig:  filepath.Join(r.dir.internal(), "controller-manager.kubeconfig"),
		PKI:         r.pki,
		Controllers: []string{"*", "-node-ipam-controller"},
	}
	if r.hasRealNodes() {
		if network, err := r.podNetwork(); err != nil {
			r.log.Error("no pod network for the cluster's real nodes", "err", err)
		} else {
			cfg.Controllers = []string{"*"}
			cfg.Extra = []string{"--allocate-node-cidrs=true", "--cluster-cidr=" + network.String(), "--node-cidr-mask-size=24"}
		}
	}
	cfg.Extra = append(cfg.Extra, featureGates(r.cfg.APIServer)...)
	return cfg.Args()
}

// featureGates is the --feature-gates flag of the settings' gates, sorted, or nothing.
func featureGates(s *v1alpha1.APIServerSettings) []string {
	if s == nil || len(s.FeatureGates) == 0 {
		return nil
	}
	gates := make([]string, 0, len(s.FeatureGates))
	for _, name := range slices.Sorted(maps.Keys(s.FeatureGates)) {
		gates = append(gates, fmt.Sprintf("%s=%t", name, s.FeatureGates[name]))
	}
	return []string{"--feature-gates=" + strings.Join(gates, ",")}
}

// apiServerSettings are the API server's flags for the cluster's settings: its feature gates,
// the admission plugins it enables besides the defaults, and its audit policy, written into
// the cluster's directory, with the log beside the others (rotated at 100 MB, one kept).
func (r *Runtime) apiServerSettings() []string {
	s := r.cfg.APIServer
	if s == nil {
		return nil
	}
	args := featureGates(s)
	if len(s.AdmissionPlugins) > 0 {
		args = append(args, "--enable-admission-plugins="+strings.Join(s.AdmissionPlugins, ","))
	}
	if s.AuditPolicy != "" {
		policy := filepath.Join(r.dir.internal(), "audit-policy.yaml")
		if err := kubeproc.WriteFileAtomic(policy, []byte(s.AuditPolicy), 0o600); err != nil {
			r.log.Error("cannot write the audit policy; the API server runs without one", "err", err)
			return args
		}
		args = append(args, "--audit-policy-file="+policy, "--audit-log-path="+filepath.Join(r.dir.logs(), "audit.log"),
			"--audit-log-maxsize=100", "--audit-log-maxbackup=1")
	}
	return args
}

// stopFleetForward takes away what the runtime added to the host for its real nodes.
func (r *Runtime) stopFleetForward() {
	r.real.mu.Lock()
	used := r.real.used
	r.real.mu.Unlock()
	if r.ports.APIServer == 0 || !used {
		return
	}
	if err := node.StopForwarding(r.ports.APIServer, apiServerForward(r.dir, r.cfg.Name)); err != nil {
		r.log.Warn("cannot remove the forward to the API server", "err", err)
	}
	if err := node.RemoveFleetIfUnused(); err != nil {
		r.log.Warn("cannot remove the fleet bridge", "err", err)
	}
}

// startAll starts kine and waits until it answers (an API server that starts first backs off
// for a second or more), then the API server together with kwok (which retries until the API
// server answers, so that it is ready for the first nodes), waits until the API server is
// ready, then starts the controller-manager and scheduler, which would only compete with the
// API server for CPU while it starts. A component that fails to get ready is left to its
// supervisor, which keeps restarting it; the status file shows why.
func (r *Runtime) startAll(ctx context.Context) error {
	comps, err := r.components()
	if err != nil {
		return err
	}
	byName := map[string]component{}
	for _, c := range comps {
		byName[c.name] = c
	}
	r.setPhase("starting kine")
	kine, err := r.start(byName[kubeproc.Kine])
	if err != nil {
		return err
	}
	if err := kubeproc.WaitTCP(ctx, "127.0.0.1:"+strconv.Itoa(r.ports.Kine), kine, time.Minute); err != nil {
		r.log.Error("kine not ready", "err", err)
	}
	r.setPhase("starting kube-apiserver and kwok")
	var apiserver *kubeproc.Process
	for _, name := range []string{kubeproc.KubeAPIServer, kubeproc.Kwok} {
		p, err := r.start(byName[name])
		if err != nil {
			return err
		}
		if name == kubeproc.KubeAPIServer {
			apiserver = p
		}
	}
	r.setPhase("waiting for kube-apiserver")
	if err := r.waitAPIServer(ctx, apiserver); err != nil {
		r.log.Error("kube-apiserver not ready", "err", err)
	}
	if ctx.Err() != nil {
		return nil
	}
	r.kcmReal = r.hasRealNodes()
	r.setPhase("starting kube-controller-manager and kube-scheduler")
	for _, name := range []string{kubeproc.KubeControllerManager, kubeproc.KubeScheduler, agentComponent} {
		if c, ok := byName[name]; ok {
			if _, err := r.start(c); err != nil {
				return err
			}
		}
	}
	return nil
}

// agentComponent is the cluster's agent, run by the runtime like a control-plane component.
const agentComponent = "convoy-agent"

func (r *Runtime) waitAPIServer(ctx context.Context, p *kubeproc.Process) error {
	cfg, err := kubeproc.RESTConfig(kubeproc.Kubeconfig("admin", r.endpoint(), r.pki.CA.CertPEM, r.pki.Admin))
	if err != nil {
		return err
	}
	return kubeproc.WaitAPIServer(ctx, cfg, p, time.Minute)
}

func (r *Runtime) start(c component) (*kubeproc.Process, error) {
	p, err := kubeproc.Start(kubeproc.Spec{
		Name:    c.name,
		Path:    c.bin,
		Args:    c.args,
		LogPath: filepath.Join(r.dir.logs(), c.name+".log"),
		PIDPath: filepath.Join(r.dir.run(), c.name+".pid"),
	}, r.log)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if _, ok := r.procs[c.name]; !ok {
		r.order = append(r.order, c.name)
	}
	r.procs[c.name] = p
	if r.bins == nil {
		r.bins = map[string]string{}
	}
	r.bins[c.name] = c.bin
	r.mu.Unlock()
	return p, nil
}

func (r *Runtime) stopAll() {
	r.mu.Lock()
	procs := make([]*kubeproc.Process, 0, len(r.order))
	for _, name := range r.order {
		procs = append(procs, r.procs[name])
	}
	r.mu.Unlock()
	kubeproc.StopAll(context.Background(), procs)
}

// reload re-reads the config. A new Kubernetes version restarts kube-apiserver, then
// kube-controller-manager, then kube-scheduler on the new binaries, one at a time; kine and
// kwok, and with them the cluster's data and workloads, stay up throughout. The nodes follow
// (upgradeNodes). A control plane that did not get there is moved again at the next reload.
func (r *Runtime) reload(ctx context.Context) error {
	var cfg config
	if err := readJSON(r.dir.config(), &cfg); err != nil {
		return err
	}
	r.mu.Lock()
	from, moved := r.cpVersion, r.cfg.KubernetesVersion != cfg.KubernetesVersion
	settings := !equality.Semantic.DeepEqual(r.cfg.APIServer, cfg.APIServer)
	r.cfg = cfg
	if moved {
		// What the nodes' upgrade to the version before found no longer holds.
		r.nodesOn, r.nodesUpgrading, r.upgradeBlocked = "", "", ""
	}
	failed := r.cpErr != ""
	r.mu.Unlock()
	r.syncNodesSoon()
	if cfg.KubernetesVersion == from && !failed && settings {
		// New API server settings: the control plane restarts on them, one component at a
		// time, on the binaries it runs.
		err := r.upgradeControlPlane(ctx, from, from, true)
		r.setPhase("running")
		return err
	}
	if cfg.KubernetesVersion == from && !failed {
		if real := r.hasRealNodes(); real != r.kcmReal {
			// The first real pool (or the last one gone): the controller-manager allocates
			// pod ranges to nodes, or stops.
			r.mu.Lock()
			old := r.procs[kubeproc.KubeControllerManager]
			r.mu.Unlock()
			kcm, err := binariesFor(r.cfg.BinDir, r.cfg.KubernetesVersion).Path(kubeproc.KubeControllerManager)
			if err != nil {
				return err
			}
			old.Stop(ctx)
			if _, err := r.start(component{name: kubeproc.KubeControllerManager, bin: kcm, args: r.controllerManager()}); err != nil {
				return err
			}
			// The agent's collector scrapes the pods of real nodes, or none. Both are
			// restarted again at the next reload until both succeed.
			if err := r.restartAgent(ctx); err != nil {
				return err
			}
			r.kcmReal = real
		}
		return nil
	}
	err := r.upgradeControlPlane(ctx, from, cfg.KubernetesVersion, false)
	r.mu.Lock()
	r.cpErr = ""
	if err != nil {
		r.cpErr = fmt.Sprintf("the control plane did not move to %s (%v); the runtime tries again at its next reload, when the hub asks for the upgrade again", cfg.KubernetesVersion, err)
	}
	r.mu.Unlock()
	r.setPhase("running")
	return err
}

// upgradeControlPlane restarts the API server, the controller-manager and the scheduler on
// version to's binaries, in that order, which the version skew policy asks for; those that
// run them already stay, unless all restart for new settings.
func (r *Runtime) upgradeControlPlane(ctx context.Context, from, to string, all bool) error {
	comps, err := r.components()
	if err != nil {
		return err
	}
	r.log.Info("upgrading control plane", "from", from, "to", to)
	for _, c := range comps {
		if c.name == kubeproc.Kine || c.name == kubeproc.Kwok || c.name == agentComponent {
			continue
		}
		r.mu.Lock()
		p := r.procs[c.name]
		current := r.bins[c.name] == c.bin && !all // an earlier reload moved it, and then failed
		r.mu.Unlock()
		if !current {
			r.setPhase("restarting " + c.name)
			p.Stop(ctx)
			if p, err = r.start(c); err != nil {
				return err
			}
		}
		if c.name == kubeproc.KubeAPIServer {
			if err := r.waitAPIServer(ctx, p); err != nil {
				return err
			}
		}
	}
	r.mu.Lock()
	r.cpVersion = to
	r.mu.Unlock()
	r.syncNodesSoon() // the nodes' turn
	return nil
}

// restartAgent starts the agent again with the arguments the cluster's configuration gives
// now, if it runs one.
func (r *Runtime) restartAgent(ctx context.Context) error {
	comps, err := r.components()
	if err != nil {
		return err
	}
	for _, c := range comps {
		if c.name != agentComponent {
			continue
		}
		r.mu.Lock()
		old := r.procs[c.name]
		r.mu.Unlock()
		if old != nil {
			old.Stop(ctx)
		}
		_, err := r.start(c)
		return err
	}
	return nil
}

// reportStatus rewrites status.json whenever the runtime's state changes.
func (r *Runtime) reportStatus() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				r.writeStatus()
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (r *Runtime) writeStatus() {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := RuntimeStatus{PID: os.Getpid(), Phase: r.phase, Version: r.cpVersion, NodesError: r.nodesErr, AddonsError: r.addonErr}
	switch want := r.cfg.KubernetesVersion; {
	case r.cpVersion != want:
		st.Upgrading = fmt.Sprintf("upgrading the control plane from %s to %s", r.cpVersion, want)
		if strings.HasPrefix(r.phase, "restarting ") {
			st.Upgrading += ": " + r.phase
		}
		st.Blocked = r.cpErr
	case r.nodesUpgrading != "":
		st.Upgrading, st.Blocked = r.nodesUpgrading, r.upgradeBlocked
	case r.nodesOn != want:
		st.Upgrading = "upgrading the nodes to " + want
	}
	for _, name := range r.order {
		p := r.procs[name]
		cs := p.Status()
		cs.ExitTail = lastLines(cs.ExitTail, 5)
		st.Components = append(st.Components, cs)
	}
	for _, cs := range r.real.statuses() {
		cs.ExitTail = lastLines(cs.ExitTail, 5)
		st.Components = append(st.Components, cs)
	}
	raw, err := json.MarshalIndent(st, "", "  ")
	if err != nil || string(raw) == string(r.lastSt) {
		return
	}
	if err := kubeproc.WriteFileAtomic(r.dir.status(), raw, 0o644); err != nil {
		r.log.Warn("cannot write status", "err", err)
		return
	}
	r.lastSt = raw
}

// lastLines keeps the last n non-empty lines of s, without convoy's own start markers.
func lastLines(s string, n int) string {
	var keep []string
	for line := range strings.SplitSeq(s, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "=== convoy:") {
			keep = append(keep, line)
		}
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	return strings.Join(keep, "\n")
}

// authenticationConfig is the path of the hub's AuthenticationConfiguration for the cluster's
// API server, or "" when there is none yet or the cluster's Kubernetes is older than the
// configuration's version (apiserver.config.k8s.io/v1 is served from 1.34).
func (r *Runtime) authenticationConfig() string {
	path := r.dir.authentication()
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	if v, err := utilversion.ParseGeneric(r.cfg.KubernetesVersion); err != nil || v.LessThan(utilversion.MajorMinor(1, kubeproc.AuthenticationConfigMinor)) {
		r.log.Warn("this cluster's Kubernetes is too old for the hub's AuthenticationConfiguration; its API server trusts no OIDC issuer",
			"version", r.cfg.KubernetesVersion, "needs", fmt.Sprintf("v1.%d or newer", kubeproc.AuthenticationConfigMinor))
		return ""
	}
	return path
}
