// Package local is the provider of clusters that run on the hub's own machine, without Docker:
// each is a real control plane (kine, kube-apiserver, kube-controller-manager, kube-scheduler
// from bin/) with nodes simulated by kwok.
//
// Each cluster lives in DATA/clusters/NAME and runs as its own detached process, the runtime
// (`convoy local-runtime --dir DIR`, see Runtime), which supervises the cluster's components.
// A cluster therefore keeps running while the hub is down; the hub adopts it again when it
// comes back, or starts it again from its directory. The hub's composition root, the CLI
// (`up`, `down`, `local-runtime`) and hubtest import this package.
package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/profile"
	"github.com/convoy-dev/convoy/internal/provider"
	"github.com/convoy-dev/convoy/internal/version"
)

// Provider runs local clusters.
type Provider struct {
	// Root holds one directory per cluster (DATA/clusters).
	Root string
	// BinDir holds the upstream binaries.
	BinDir string
	// Convoy is the convoy executable, which runs each cluster as `convoy local-runtime`.
	Convoy string
	// Templates holds datastore templates (see EnsureTemplate); empty means none.
	Templates string
	// HubURL and HubCAFile, when set, make each cluster run its agent, which reaches the hub
	// there.
	HubURL, HubCAFile string
	// DeliveryPort is the port of the hub's delivery stream beside HubURL's (zero: none), for
	// agents that run inside the cluster and reach the hub through the fleet network.
	DeliveryPort int
	// Metrics makes each cluster's agent run the metrics collector (vmagent from BinDir), which
	// sends the member's metrics to the hub's store.
	Metrics bool
	// Logs makes each cluster's agent run the log collector (a DaemonSet of `convoy
	// log-collector`, from Convoy's image, on the cluster's real nodes), which sends its pods' logs to the hub's
	// log store.
	Logs bool
	// Registry is the fleet registry's address on the host's loopback (host:port), from which
	// real nodes pull their images (see internal/registry); real node pools need it.
	Registry string
	// RegistryPull is where the registry serves the nodes, read-only (see
	// registry.Server.ServePulls); empty means Registry.
	RegistryPull string
	// Authentication is the AuthenticationConfiguration (kubeproc.AuthenticationConfig) every
	// cluster's API server gets: the OIDC issuers the hub trusts, so that people are the
	// same on every member. The provider writes it to each cluster it creates or finds
	// running, and a running API server reads it again. Nil means none (an empty
	// configuration).
	Authentication []byte
	// Log receives the provider's logs.
	Log *slog.Logger

	mu      sync.Mutex
	members map[string]*member
}

var (
	_ provider.Provider  = (*Provider)(nil)
	_ provider.AgentHost = (*Provider)(nil)
)

// AgentJoined reports whether the cluster's agent has a hub identity on disk.
func (p *Provider) AgentJoined(c *v1alpha1.Cluster) bool {
	return exists(filepath.Join(p.dir(c.Name).agent(), "token.json"))
}

// DeliverBootstrapToken writes the token where the cluster's agent looks for one.
func (p *Provider) DeliverBootstrapToken(c *v1alpha1.Cluster, token string) error {
	path := filepath.Join(p.dir(c.Name).agent(), "bootstrap-token")
	if raw, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(raw)) == token {
		return nil
	}
	if err := os.MkdirAll(p.dir(c.Name).agent(), 0o700); err != nil {
		return err
	}
	return kubeproc.WriteFileAtomic(path, []byte(token), 0o600)
}

// member is a cached client of one cluster's API server.
type member struct {
	kubeconfig string
	config     *rest.Config
	client     kubernetes.Interface
}

// Name is "local".
func (p *Provider) Name() v1alpha1.ProviderName { return v1alpha1.ProviderLocal }

// ReadOnly is false: the local provider does the whole lifecycle.
func (p *Provider) ReadOnly() bool { return false }

func (p *Provider) dir(name string) dir { return dir(filepath.Join(p.Root, name)) }

// Validate checks that the hub has binaries for the cluster's Kubernetes version.
func (p *Provider) Validate(_ context.Context, c *v1alpha1.Cluster) error {
	if err := checkVersion(p.BinDir, c.Spec.KubernetesVersion); err != nil {
		return err
	}
	// A cluster's own default RBAC and admission policies (a profile's are checked with it).
	if problems := profile.ValidateObjects(c.Spec.RBAC, c.Spec.AdmissionPolicies); len(problems) > 0 {
		return fmt.Errorf("spec: %s", strings.Join(problems, "; "))
	}
	if !slices.ContainsFunc(c.Spec.NodePools, func(np v1alpha1.NodePool) bool { return np.Kind == v1alpha1.NodeReal }) {
		return nil
	}
	if p.Registry == "" {
		return errors.New("real node pools pull their images from the fleet registry, which this hub does not run")
	}
	return MissingForRealNodes(p.BinDir)
}

// Create writes the cluster's config on first use and starts its runtime unless it runs.
func (p *Provider) Create(ctx context.Context, c *v1alpha1.Cluster) error {
	d := p.dir(c.Name)
	if _, running := kubeproc.LockHolder(d.lock()); running {
		if err := p.writeAuthentication(d); err != nil {
			return err
		}
		return applySettings(d, c)
	}
	if err := os.MkdirAll(d.logs(), 0o700); err != nil {
		return fmt.Errorf("create cluster dir: %w", err)
	}
	if err := p.writeAuthentication(d); err != nil {
		return err
	}
	var cfg config
	switch err := readJSON(d.config(), &cfg); {
	case errors.Is(err, os.ErrNotExist):
		cfg = config{Name: c.Name, KubernetesVersion: versionOf(c), Region: c.Spec.Region, Zones: c.Spec.Zones, NodePools: c.Spec.NodePools}
		if err := seedDatastore(p.Templates, cfg.KubernetesVersion, d); err != nil {
			return fmt.Errorf("seed datastore: %w", err)
		}
	case err != nil:
		return err
	}
	// The hub may have moved its binaries, or its address, since the cluster was made.
	cfg.BinDir, cfg.Registry, cfg.RegistryPull = p.BinDir, p.Registry, p.RegistryPull
	if cfg.RegistryPull == "" {
		cfg.RegistryPull = p.Registry
	}
	cfg.takeSettings(c)
	cfg.Agent = nil
	if p.HubURL != "" {
		cfg.Agent = &agentConfig{HubURL: p.HubURL, HubCAFile: p.HubCAFile, DeliveryPort: p.DeliveryPort, Metrics: p.Metrics, Logs: p.Logs}
	}
	if err := checkVersion(cfg.BinDir, cfg.KubernetesVersion); err != nil {
		return err
	}
	if err := writeJSON(d.config(), cfg); err != nil {
		return err
	}
	return p.startRuntime(ctx, d)
}

// applySettings has a running cluster take the spec's API server settings, namespaces, default
// RBAC and admission policies, when they changed: for new API server settings the runtime
// restarts its control plane, one component at a time; the others its add-on loop applies. A
// stopped cluster takes them when it starts.
func applySettings(d dir, c *v1alpha1.Cluster) error {
	var cfg config
	if err := readJSON(d.config(), &cfg); err != nil {
		return err
	}
	before := cfg
	cfg.takeSettings(c)
	if equality.Semantic.DeepEqual(before, cfg) {
		return nil
	}
	if err := writeJSON(d.config(), cfg); err != nil {
		return err
	}
	return signalRuntime(d)
}

// takeSettings copies the settings of c's spec (its profile's) that a running cluster takes.
func (cfg *config) takeSettings(c *v1alpha1.Cluster) {
	cfg.APIServer, cfg.Namespaces = c.Spec.APIServer, c.Spec.Namespaces
	cfg.RBAC, cfg.AdmissionPolicies = c.Spec.RBAC, c.Spec.AdmissionPolicies
}

// writeAuthentication writes the cluster's AuthenticationConfiguration when it differs from
// what the cluster has.
func (p *Provider) writeAuthentication(d dir) error {
	want := p.Authentication
	if want == nil {
		var err error
		if want, err = kubeproc.AuthenticationConfig(nil); err != nil {
			return err
		}
	}
	if have, err := os.ReadFile(d.authentication()); err == nil && bytes.Equal(have, want) {
		return nil
	}
	if err := kubeproc.WriteFileAtomic(d.authentication(), want, 0o600); err != nil {
		return fmt.Errorf("write the cluster's authentication configuration: %w", err)
	}
	return nil
}

func versionOf(c *v1alpha1.Cluster) string {
	if c.Spec.KubernetesVersion != "" {
		return c.Spec.KubernetesVersion
	}
	return version.Kubernetes
}

// startRuntime starts `convoy local-runtime` for d in its own session, so that it outlives the
// hub, and waits until it holds the cluster's lock.
func (p *Provider) startRuntime(ctx context.Context, d dir) error {
	logPath := filepath.Join(d.logs(), "runtime.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open runtime log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(p.Convoy, "local-runtime", "--dir", string(d))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start local runtime (%s): %w", p.Convoy, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reap it if it ends while the hub runs
	p.Log.Info("local cluster runtime started", "cluster", filepath.Base(string(d)), "pid", cmd.Process.Pid)

	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	for {
		if pid, held := kubeproc.LockHolder(d.lock()); held && pid == cmd.Process.Pid {
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("local runtime exited at start (%v): %s", err, lastLines(tail(logPath), 3))
		case <-deadline.C:
			return fmt.Errorf("local runtime did not start within 15s: %s", lastLines(tail(logPath), 3))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ScalePools records the wanted node pools and asks the runtime to make the nodes match; the
// runtime adds nodes and drains surplus ones. Status shows when it is done.
func (p *Provider) ScalePools(_ context.Context, c *v1alpha1.Cluster) error {
	d := p.dir(c.Name)
	var cfg config
	if err := readJSON(d.config(), &cfg); err != nil {
		return err
	}
	if equality.Semantic.DeepEqual(cfg.NodePools, c.Spec.NodePools) && cfg.Region == c.Spec.Region && slices.Equal(cfg.Zones, c.Spec.Zones) {
		return nil
	}
	cfg.Region, cfg.Zones, cfg.NodePools = c.Spec.Region, c.Spec.Zones, c.Spec.NodePools
	if err := writeJSON(d.config(), cfg); err != nil {
		return err
	}
	return signalRuntime(d)
}

// signalRuntime tells a running runtime to re-read its config. A stopped one reads it when
// Create starts it.
func signalRuntime(d dir) error {
	if pid, held := kubeproc.LockHolder(d.lock()); held && pid > 0 {
		return syscall.Kill(pid, syscall.SIGHUP)
	}
	return nil
}

// Upgrade records the new version and asks the runtime to move its control plane to it, one
// component at a time; the runtime's nodes follow on their own, one at a time (upgradeNodes),
// and Status says how far they are. It refuses a version the Kubernetes version skew policy
// does not allow from what the control plane and the nodes run (checkSkew). Calling it again
// asks the runtime again only while its control plane is not on the version.
func (p *Provider) Upgrade(ctx context.Context, c *v1alpha1.Cluster) error {
	d := p.dir(c.Name)
	var cfg config
	if err := readJSON(d.config(), &cfg); err != nil {
		return err
	}
	want := versionOf(c)
	var rs RuntimeStatus
	if err := readJSON(d.status(), &rs); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if cfg.KubernetesVersion == want {
		if rs.Version == want {
			return nil // the runtime's control plane runs it; its nodes are on their way
		}
		return signalRuntime(d) // a reload that failed, or has not come yet
	}
	if err := checkVersion(p.BinDir, want); err != nil {
		return err
	}
	kubelets, err := p.kubeletVersions(ctx, c.Name)
	if err != nil {
		return fmt.Errorf("cannot check the nodes' versions before the upgrade; try again once the cluster's API server answers: %w", err)
	}
	from := []string{cfg.KubernetesVersion}
	if rs.Version != "" {
		from = append(from, rs.Version)
	}
	if err := checkSkew(from, want, kubelets); err != nil {
		return fmt.Errorf("cluster %s cannot move to %s: %w", c.Name, want, err)
	}
	cfg.KubernetesVersion = want
	if err := writeJSON(d.config(), cfg); err != nil {
		return err
	}
	return signalRuntime(d)
}

// kubeletVersions is the kubelet version each node of the cluster reports, by node.
func (p *Provider) kubeletVersions(ctx context.Context, name string) (map[string]string, error) {
	m, err := p.client(name)
	if err != nil {
		return nil, err
	}
	nodes, err := m.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, n := range nodes.Items {
		out[n.Name] = n.Status.NodeInfo.KubeletVersion
	}
	return out, nil
}

// Delete stops the cluster's runtime, which stops its components, and removes its directory.
func (p *Provider) Delete(_ context.Context, name string) error {
	d := p.dir(name)
	if !exists(string(d)) {
		return nil
	}
	if err := stopRuntime(d, p.Log); err != nil {
		return err
	}
	if _, err := kubeproc.ReapStale(d.run(), p.Log); err != nil {
		return err
	}
	// The runtime takes its real nodes down when it stops; one that was killed could not.
	if err := removeRealNodes(d, name, p.Log); err != nil {
		return err
	}
	p.forget(name)
	if err := os.RemoveAll(string(d)); err != nil {
		return fmt.Errorf("remove cluster data: %w", err)
	}
	p.Log.Info("local cluster deleted", "cluster", name)
	return nil
}

// Kubeconfig returns the cluster's admin kubeconfig.
func (p *Provider) Kubeconfig(_ context.Context, c *v1alpha1.Cluster) ([]byte, error) {
	raw, err := os.ReadFile(p.dir(c.Name).kubeconfig())
	if errors.Is(err, os.ErrNotExist) {
		return nil, provider.ErrNotFound
	}
	return raw, err
}

// StopAll stops every local cluster's runtime under root, keeping their data, so that the
// next hub starts them again. `convoy down` and tests use it.
// It returns the names of the clusters it stopped.
func StopAll(root string, log *slog.Logger) ([]string, error) {
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var stopped []string
	var errs []error
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		d := dir(filepath.Join(root, e.Name()))
		if _, running := kubeproc.LockHolder(d.lock()); !running {
			continue
		}
		if err := stopRuntime(d, log); err != nil {
			errs = append(errs, err)
			continue
		}
		stopped = append(stopped, e.Name())
	}
	return stopped, errors.Join(errs...)
}

// RemoveAllRealNodes takes every real node of the stopped clusters under root off the host (what
// a runtime that was killed left: network namespaces, veths, mounts, cgroups, forwards) and gives
// back their fleet addresses. `convoy down --purge` calls it before it removes the data dir.
func RemoveAllRealNodes(root string, log *slog.Logger) error {
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		d := dir(filepath.Join(root, e.Name()))
		if !e.IsDir() {
			continue
		}
		if _, running := kubeproc.LockHolder(d.lock()); running {
			errs = append(errs, fmt.Errorf("cluster %s is running; stop it first", e.Name()))
			continue
		}
		errs = append(errs, removeRealNodes(d, e.Name(), log))
	}
	return errors.Join(errs...)
}

// stopRuntime sends SIGTERM to the runtime holding d's lock and waits until it has let go.
func stopRuntime(d dir, log *slog.Logger) error {
	pid, held := kubeproc.LockHolder(d.lock())
	if !held {
		return nil
	}
	if pid <= 0 {
		return fmt.Errorf("cluster %s: its runtime holds the lock but recorded no pid", filepath.Base(string(d)))
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	// A runtime with real nodes stops their pods gracefully (up to 20 s), then each node's
	// kube-proxy, kubelet and containerd (10 s each at most).
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if _, held := kubeproc.LockHolder(d.lock()); !held {
			log.Info("local cluster stopped", "cluster", filepath.Base(string(d)))
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for range 100 {
		if _, held := kubeproc.LockHolder(d.lock()); !held {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("cluster %s: runtime (pid %d) did not stop", filepath.Base(string(d)), pid)
}

// client returns a cached client of the cluster's API server, rebuilt when its kubeconfig
// changes (a new port after a restart).
func (p *Provider) client(name string) (*member, error) {
	raw, err := os.ReadFile(p.dir(name).kubeconfig())
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if m, ok := p.members[name]; ok && m.kubeconfig == string(raw) {
		return m, nil
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("read kubeconfig of %s: %w", name, err)
	}
	cfg.Timeout = 15 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	m := &member{kubeconfig: string(raw), config: cfg, client: cs}
	if p.members == nil {
		p.members = map[string]*member{}
	}
	p.members[name] = m
	return m, nil
}

func (p *Provider) forget(name string) {
	p.mu.Lock()
	delete(p.members, name)
	p.mu.Unlock()
}

func tail(path string) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(raw) > 4096 {
		raw = raw[len(raw)-4096:]
	}
	return strings.TrimSpace(string(raw))
}

// Watch calls notify with a cluster's name whenever its runtime starts or stops or reports a
// change in its components (a crash, a restart), so that the hub reacts within a second
// instead of at its next periodic look. It polls the cluster directories five times a second
// (a stat and a lock probe each) until ctx ends.
func (p *Provider) Watch(ctx context.Context, notify func(cluster string)) {
	type seen struct {
		running bool
		status  time.Time
	}
	last := map[string]seen{}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		entries, _ := os.ReadDir(p.Root)
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			d := p.dir(e.Name())
			var now seen
			_, now.running = kubeproc.LockHolder(d.lock())
			if st, err := os.Stat(d.status()); err == nil {
				now.status = st.ModTime()
			}
			if before, ok := last[e.Name()]; ok && before != now {
				notify(e.Name())
			}
			last[e.Name()] = now
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
