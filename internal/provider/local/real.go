package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/node"
	"github.com/convoy-dev/convoy/internal/registry"
)

// The pod network of a local cluster with real nodes is one of node.PodNetworkSpace, its own
// (podNetworkOf): each node gets a /24 of it from the controller-manager, and the host routes
// each node's range to the node. Clusters whose real nodes were made before that share
// sharedPodNetwork, which the host does not route. kwok's simulated pods take their addresses
// from a range of their own.
var (
	sharedPodNetwork = netip.MustParsePrefix("10.244.0.0/14")
	kwokPodCIDR      = "10.240.0.0/16"
)

// podNetwork is the cluster's pod network (podNetworkOf), found once.
func (r *Runtime) podNetwork() (netip.Prefix, error) {
	r.podNetMu.Lock()
	defer r.podNetMu.Unlock()
	if r.podNet.IsValid() {
		return r.podNet, nil
	}
	network, err := podNetworkOf(r.dir)
	if err != nil {
		return netip.Prefix{}, err
	}
	r.podNet = network
	return network, nil
}

// podNetworkOf is the pod network of the cluster in d: the one it was given (d.podNetworkFile),
// which it holds host-wide (node.HostPodNetworks) while it exists; a new one for a cluster that
// has none; the shared one for a cluster whose real nodes were made before clusters had their
// own (their ranges cannot change).
func podNetworkOf(d dir) (netip.Prefix, error) {
	var had netip.Prefix
	raw, err := os.ReadFile(d.podNetworkFile())
	switch {
	case err == nil:
		if had, err = netip.ParsePrefix(strings.TrimSpace(string(raw))); err != nil {
			return netip.Prefix{}, fmt.Errorf("the cluster's pod network (%s): %w", d.podNetworkFile(), err)
		}
		if !node.PodNetworkSpace.Contains(had.Addr()) {
			return had, nil
		}
	case !errors.Is(err, os.ErrNotExist):
		return netip.Prefix{}, err
	default:
		if nodes, _ := os.ReadDir(filepath.Join(string(d), "nodes")); len(nodes) > 0 {
			return sharedPodNetwork, kubeproc.WriteFileAtomic(d.podNetworkFile(), []byte(sharedPodNetwork.String()+"\n"), 0o644)
		}
	}
	network, err := node.HostPodNetworks.Allocate(string(d), had)
	if err != nil {
		return netip.Prefix{}, err
	}
	if network != had {
		err = kubeproc.WriteFileAtomic(d.podNetworkFile(), []byte(network.String()+"\n"), 0o644)
	}
	return network, err
}

// PauseImage is the sandbox image of every pod on a real node; the runtime pushes it to the
// fleet registry from bin/convoy-pause.
const PauseImage = registry.Host + "/" + pauseRepo + ":" + pauseTag

const pauseRepo, pauseTag = "convoy/pause", "1"

// The cluster DNS Service's address and the cluster's domain, on every local cluster.
var (
	ClusterDNS    = netip.MustParseAddr("10.96.0.10")
	ClusterDomain = "cluster.local"
)

// realNodes runs a cluster's real nodes for its runtime.
type realNodes struct {
	r *Runtime

	mu       sync.Mutex
	running  map[string]*node.Node  // started; joined once ensure succeeded for them
	versions map[string]string      // the Kubernetes version each running node's kubelet and kube-proxy are of
	reported map[string]string      // the version each Kubernetes binary says it is, by path (reportedVersion)
	locks    map[string]*sync.Mutex // one per node: a node is started, joined or removed by one caller at a time
	used     bool                   // the runtime has run real nodes: on exit it takes its forwards away
	stopped  bool                   // stopAll ran: the runtime is exiting, and starts no node
	registry string                 // the fleet registry as nodes reach it, once it is forwarded and has the pause image
	regMu    sync.Mutex             // one caller at a time finds the registry
	early    sync.WaitGroup         // startEarly's goroutines
	noEarly  context.CancelFunc     // ends them (stopAll)
}

var _ realNodeHost = (*realNodes)(nil)

func (r *Runtime) hasRealNodes() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.cfg.NodePools, func(p v1alpha1.NodePool) bool { return p.Kind == v1alpha1.NodeReal })
}

// MissingForRealNodes names what this machine lacks to run real nodes, and how to get it, or
// returns nil. hack/deps.sh (make deps) installs the same packages.
func MissingForRealNodes(binDir string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("real nodes need root (network namespaces, cgroups, mounts); this process runs as uid %d: run convoy as root, or use simulated node pools", os.Geteuid())
	}
	var errs []error
	var pkgs []string
	for _, w := range realNodeNeeds {
		found := false
		if filepath.IsAbs(w.what) {
			_, err := os.Stat(w.what)
			found = err == nil
		} else {
			_, err := exec.LookPath(w.what)
			found = err == nil
		}
		if !found && !slices.Contains(pkgs, w.pkg) {
			pkgs = append(pkgs, w.pkg)
		}
	}
	if len(pkgs) > 0 {
		errs = append(errs, fmt.Errorf("real nodes need the Debian packages %s; install them with `make deps` or `apt-get install %s`",
			strings.Join(pkgs, ", "), strings.Join(pkgs, " ")))
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		errs = append(errs, fmt.Errorf("real nodes need network namespaces; this kernel has none (%v)", err))
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil { // not cgroup v2: v1 hierarchies then
		for _, c := range []string{"cpu", "memory", "pids"} {
			if _, err := os.Stat("/sys/fs/cgroup/" + c); err != nil {
				errs = append(errs, fmt.Errorf("real nodes need the %s cgroup; /sys/fs/cgroup has neither cgroup v2 nor a v1 %s hierarchy", c, c))
			}
		}
	}
	for _, b := range []string{"kubelet", "kube-proxy", "convoy-pause", "convoy-volume", "images/coredns", "images/local-path-provisioner"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			errs = append(errs, fmt.Errorf("real nodes need %s in %s; run `make`", b, binDir))
		}
	}
	return errors.Join(errs...)
}

// realNodeNeeds are the programs and files real nodes use, each with the Debian package that
// has it (as hack/deps.sh lists them).
var realNodeNeeds = []struct{ what, pkg string }{
	{"containerd", "containerd"}, {"ctr", "containerd"}, {"runc", "runc"},
	{cniBinDir + "/bridge", "containernetworking-plugins"}, {cniBinDir + "/host-local", "containernetworking-plugins"},
	{cniBinDir + "/portmap", "containernetworking-plugins"}, {cniBinDir + "/loopback", "containernetworking-plugins"},
	{"iptables", "iptables"}, {"conntrack", "conntrack"}, {"ip", "iproute2"}, {"nsenter", "util-linux"},
}

// cniBinDir is where Debian's containernetworking-plugins puts the plugins.
const cniBinDir = "/usr/lib/cni"

// fleetRegistry puts the pause image in the fleet registry, once per binary, and says where the
// nodes reach the registry.
func (rn *realNodes) fleetRegistry(ctx context.Context, cfg config) (string, error) {
	if cfg.Registry == "" {
		return "", errors.New("real nodes pull their images from the fleet registry, and this cluster was not given one: create it through the hub (`convoy hub` runs the registry)")
	}
	port := portOf(cfg.RegistryPull)
	if port == 0 {
		return "", fmt.Errorf("fleet registry address %q: want 127.0.0.1:PORT", cfg.RegistryPull)
	}
	if err := pushImages(ctx, cfg.Registry, cfg.BinDir, []imageSource{pauseImage}); err != nil {
		return "", err
	}
	return fmt.Sprintf("http://%s:%d", node.Gateway, port), nil
}

// apiServerForward names the forward to a cluster's API server, with its owner: another data
// dir's cluster may have the same name, or take the port later.
func apiServerForward(d dir, cluster string) string {
	return fmt.Sprintf("API server of %s (%s)", cluster, node.Tag(string(d)))
}

// portOf is the port of a host:port address, or 0.
func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	port, _ := strconv.Atoi(p)
	return port
}

// spec is what one real node of the cluster is.
func (rn *realNodes) spec(w nodeShape, cfg config, reg string) (node.Spec, error) {
	r := rn.r
	// Before the node's directory: a cluster without one is new to real nodes (podNetworkOf).
	network, err := r.podNetwork()
	if err != nil {
		return node.Spec{}, err
	}
	dir := filepath.Join(string(r.dir), "nodes", w.name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return node.Spec{}, err
	}
	ipAddr, err := node.HostAddresses.Allocate(dir)
	if err != nil {
		return node.Spec{}, err
	}
	cred, err := r.pki.CA.LoadOrIssue(filepath.Join(dir, "pki"), kubeproc.CertRequest{
		Name: "node", CommonName: "system:node:" + w.name, Organization: []string{"system:nodes"},
	})
	if err != nil {
		return node.Spec{}, fmt.Errorf("node %s credentials: %w", w.name, err)
	}
	kubelet, err := binariesFor(cfg.BinDir, cfg.KubernetesVersion).Path("kubelet")
	if err != nil {
		return node.Spec{}, err
	}
	proxy, err := r.pki.CA.LoadOrIssue(filepath.Join(dir, "pki"), kubeproc.CertRequest{
		Name: "kube-proxy", CommonName: "system:kube-proxy",
	})
	if err != nil {
		return node.Spec{}, fmt.Errorf("node %s kube-proxy credentials: %w", w.name, err)
	}
	kubeProxy, err := binariesFor(cfg.BinDir, cfg.KubernetesVersion).Path("kube-proxy")
	if err != nil {
		return node.Spec{}, err
	}
	return node.Spec{
		Cluster: cfg.Name, Name: w.name, Dir: dir,
		IP: ipAddr, Prefix: node.FleetNetwork.Bits(), Gateway: node.Gateway,
		APIServer:     fmt.Sprintf("https://%s:%d", node.Gateway, r.ports.APIServer),
		APIServerName: "127.0.0.1",
		CAFile:        kubeproc.CACertPath(r.pki.Dir), CertFile: cred.CertPath, KeyFile: cred.KeyPath,
		PodNetwork: network,
		Kubelet:    kubelet, KubeProxy: kubeProxy, CNIBinDir: cniBinDir,
		ProxyCertFile: proxy.CertPath, ProxyKeyFile: proxy.KeyPath,
		ClusterDNS: ClusterDNS, ClusterDomain: ClusterDomain,
		Registry: reg, Mirrored: registry.Mirrored,
		PauseImage: PauseImage,
		// Every pod needs the pause image, and the cluster is up once CoreDNS is. Each image
		// pulled ahead takes CPU from the cluster's start: the storage provisioner, on one node
		// only, is left to its kubelet.
		Prepull: []string{PauseImage, addonImage("coredns/coredns")},
		Labels:  w.labels, Taints: w.taints, MaxPods: w.maxPods,
	}, nil
}

// ensure makes a real node run and join its cluster, if it does not yet.
func (rn *realNodes) ensure(ctx context.Context, w nodeShape) error {
	return rn.bringUp(ctx, w, true)
}

// startEarly starts the cluster's real nodes' containerd, in the background, while its API
// server starts: their first images are pulled by the time the nodes join (ensure). A node that
// fails here is started again by ensure.
func (rn *realNodes) startEarly(ctx context.Context, shapes []nodeShape) {
	ctx, cancel := context.WithCancel(ctx)
	rn.mu.Lock()
	rn.noEarly = cancel
	rn.mu.Unlock()
	for _, w := range shapes {
		rn.early.Go(func() {
			if err := rn.bringUp(ctx, w, false); err != nil && ctx.Err() == nil {
				rn.r.log.Warn("real node not started ahead; it starts when the API server is ready", "node", w.name, "err", err)
			}
		})
	}
}

// lockNode takes the lock of one node.
func (rn *realNodes) lockNode(name string) (unlock func()) {
	rn.mu.Lock()
	if rn.locks == nil {
		rn.locks = map[string]*sync.Mutex{}
	}
	l := rn.locks[name]
	if l == nil {
		l = &sync.Mutex{}
		rn.locks[name] = l
	}
	rn.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// bringUp starts a real node unless it runs, and joins it to the cluster when join is set.
func (rn *realNodes) bringUp(ctx context.Context, w nodeShape, join bool) error {
	defer rn.lockNode(w.name)()
	rn.r.mu.Lock() // before rn.mu, as writeStatus takes them
	cfg := rn.r.cfg
	// A node starts on the control plane's version, never a newer one: during an upgrade it
	// is upgraded after the control plane, like the others (upgradeNodes).
	cfg.KubernetesVersion = rn.r.cpVersion
	rn.r.mu.Unlock()
	// rn.mu guards the maps only: a node takes seconds to come up, and the runtime's status
	// (statuses) must not wait for it.
	rn.mu.Lock()
	n, stopped := rn.running[w.name], rn.stopped
	rn.used = true
	rn.mu.Unlock()
	if stopped {
		return nil
	}
	if n == nil {
		var err error
		if n, err = rn.start(ctx, w, cfg); err != nil {
			return err
		}
		rn.mu.Lock()
		if rn.stopped { // the runtime stopped its nodes while this one came up
			rn.mu.Unlock()
			n.Stop(context.Background())
			return nil
		}
		if rn.running == nil {
			rn.running, rn.versions = map[string]*node.Node{}, map[string]string{}
		}
		rn.running[w.name], rn.versions[w.name] = n, cfg.KubernetesVersion
		rn.mu.Unlock()
	}
	if !join {
		return nil
	}
	return n.Join()
}

// start makes a real node and starts its containerd (node.Start).
func (rn *realNodes) start(ctx context.Context, w nodeShape, cfg config) (*node.Node, error) {
	if err := MissingForRealNodes(cfg.BinDir); err != nil {
		return nil, err
	}
	// What listens on the host's loopback for the nodes: the API server, the fleet registry and,
	// for an agent that runs in the cluster (convoy cluster join --mode deployment), the hub.
	forwards := map[int]string{rn.r.ports.APIServer: apiServerForward(rn.r.dir, cfg.Name)}
	if port := portOf(cfg.RegistryPull); port != 0 {
		forwards[port] = "fleet registry (read-only)"
	}
	if a := cfg.Agent; a != nil {
		if u, err := url.Parse(a.HubURL); err == nil {
			if port, _ := strconv.Atoi(u.Port()); port != 0 {
				forwards[port] = "hub API server"
			}
		}
		if a.DeliveryPort != 0 {
			forwards[a.DeliveryPort] = "hub delivery stream"
		}
	}
	reg, err := rn.nodeRegistry(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s, err := rn.spec(w, cfg, reg)
	if err != nil {
		return nil, err
	}
	s.Forwards = forwards
	return node.Start(ctx, s, rn.r.log)
}

// nodeRegistry is the fleet registry as the nodes reach it, found once (fleetRegistry).
func (rn *realNodes) nodeRegistry(ctx context.Context, cfg config) (string, error) {
	rn.regMu.Lock()
	defer rn.regMu.Unlock()
	rn.mu.Lock()
	reg := rn.registry
	rn.mu.Unlock()
	if reg != "" {
		return reg, nil
	}
	reg, err := rn.fleetRegistry(ctx, cfg)
	if err != nil {
		return "", err
	}
	rn.mu.Lock()
	rn.registry = reg
	rn.mu.Unlock()
	return reg, nil
}

func (rn *realNodes) started() []string {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	return slices.Collect(maps.Keys(rn.running))
}

func (rn *realNodes) remove(ctx context.Context, name string) error {
	defer rn.lockNode(name)()
	rn.r.mu.Lock() // before rn.mu, as writeStatus takes them
	cluster := rn.r.cfg.Name
	rn.r.mu.Unlock()
	rn.mu.Lock()
	n := rn.running[name]
	rn.mu.Unlock()
	s := node.Spec{Cluster: cluster, Name: name, Dir: filepath.Join(string(rn.r.dir), "nodes", name)}
	if n != nil {
		n.Stop(ctx)
		s = n.Spec
	} else if _, err := os.Stat(s.Dir); err != nil {
		return nil // nothing of it here (a node that never ran, or one removed before)
	}
	// A node that is not running (its runtime was down when the pool shrank, or an earlier
	// removal failed) is taken off the host all the same; it leaves the map only once it is.
	if err := node.Remove(s, rn.r.log); err != nil {
		return err
	}
	// A route to its pods that a runtime which died left (Stop takes its own away).
	if addr, ok := node.HostAddresses.Lookup(s.Dir); ok {
		if err := node.RemoveHostRoutes(node.PodNetworkSpace, addr); err != nil {
			return err
		}
	}
	rn.mu.Lock()
	delete(rn.running, name)
	delete(rn.versions, name)
	rn.mu.Unlock()
	return node.HostAddresses.Release(s.Dir)
}

// network gives each running real node its pod range, once the controller-manager allocated
// it, and routes to every other real node's range of the cluster. It says whether a running
// node has no range yet (or has not registered).
func (rn *realNodes) network(nodes []corev1.Node) (bool, error) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	ranges := map[string]netip.Prefix{}
	addrs := map[string]netip.Addr{}
	for _, n := range nodes {
		if rn.running[n.Name] == nil || n.Spec.PodCIDR == "" {
			continue
		}
		cidr, err := netip.ParsePrefix(n.Spec.PodCIDR)
		if err != nil {
			continue
		}
		ranges[n.Name], addrs[n.Name] = cidr, rn.running[n.Name].Spec.IP
	}
	var errs []error
	waiting := false
	for name, n := range rn.running {
		cidr, ok := ranges[name]
		if !ok {
			// A joined node's range comes in a moment; one not joined gets none until it is.
			waiting = waiting || n.Joined()
			continue
		}
		if err := n.SetPodCIDR(cidr); err != nil {
			errs = append(errs, err)
		}
		routes := map[netip.Prefix]netip.Addr{}
		for other, r := range ranges {
			if other != name {
				routes[r] = addrs[other]
			}
		}
		if err := n.SetRoutes(routes); err != nil {
			errs = append(errs, fmt.Errorf("routes of node %s: %w", name, err))
		}
	}
	return waiting, errors.Join(errs...)
}

// stopAll stops every real node (their files and addresses stay, for the next start).
func (rn *realNodes) stopAll() {
	rn.mu.Lock()
	nodes := rn.running
	rn.running, rn.versions, rn.registry, rn.stopped = nil, nil, "", true
	noEarly := rn.noEarly
	rn.mu.Unlock()
	if noEarly != nil {
		noEarly()
	}
	rn.early.Wait() // a node that came up meanwhile stopped itself (bringUp)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() { n.Stop(ctx) })
	}
	wg.Wait()
}

// runs says which version's kubelet and kube-proxy a node runs, and since when its kubelet
// runs, or "" when it has not joined.
func (rn *realNodes) runs(name string) (string, time.Time) {
	rn.mu.Lock()
	n, v := rn.running[name], rn.versions[name]
	rn.mu.Unlock()
	if n == nil || !n.Joined() {
		return "", time.Time{}
	}
	return v, n.KubeletStarted()
}

// upgrade restarts a running node's kubelet and kube-proxy on the binaries of version.
func (rn *realNodes) upgrade(ctx context.Context, name, version string) error {
	defer rn.lockNode(name)()
	rn.r.mu.Lock() // before rn.mu, as writeStatus takes them
	bin := binariesFor(rn.r.cfg.BinDir, version)
	rn.r.mu.Unlock()
	kubelet, err := bin.Path("kubelet")
	if err != nil {
		return err
	}
	kubeProxy, err := bin.Path("kube-proxy")
	if err != nil {
		return err
	}
	rn.mu.Lock()
	n := rn.running[name]
	rn.mu.Unlock()
	if n == nil {
		return fmt.Errorf("node %s does not run on this host; it cannot be upgraded", name)
	}
	if err := n.Upgrade(ctx, kubelet, kubeProxy); err != nil {
		return err
	}
	rn.mu.Lock()
	if rn.running[name] == n {
		rn.versions[name] = version
	}
	rn.mu.Unlock()
	return nil
}

// kubeletLog is the end of a running node's kubelet log.
func (rn *realNodes) kubeletLog(name string) string {
	rn.mu.Lock()
	n := rn.running[name]
	rn.mu.Unlock()
	if n == nil {
		return ""
	}
	return n.KubeletLog(4096)
}

// kubeProxyVersion is the version of the kube-proxy a node runs, as its binary says, or "" when
// the node does not run.
func (rn *realNodes) kubeProxyVersion(name string) string {
	rn.mu.Lock()
	v, ok := rn.versions[name]
	rn.mu.Unlock()
	if !ok {
		return ""
	}
	if reported, err := rn.reportedVersion(v, "kube-proxy"); err == nil {
		return reported
	}
	return v
}

// reportedVersion is the version that version's binary of program says it is
// (reportedVersion), asked once per binary.
func (rn *realNodes) reportedVersion(version, program string) (string, error) {
	rn.r.mu.Lock() // before rn.mu, as writeStatus takes them
	path, err := binariesFor(rn.r.cfg.BinDir, version).Path(program)
	rn.r.mu.Unlock()
	if err != nil {
		return "", err
	}
	rn.mu.Lock()
	v, ok := rn.reported[path]
	rn.mu.Unlock()
	if ok {
		return v, nil
	}
	if v, err = reportedVersion(path); err != nil {
		return "", err
	}
	rn.mu.Lock()
	if rn.reported == nil {
		rn.reported = map[string]string{}
	}
	rn.reported[path] = v
	rn.mu.Unlock()
	return v, nil
}

// statuses are the real nodes' processes, for the runtime's status.
func (rn *realNodes) statuses() []kubeproc.Status {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	var out []kubeproc.Status
	for _, n := range rn.running {
		for _, p := range n.Processes() {
			if p != nil {
				out = append(out, p.Status())
			}
		}
	}
	slices.SortFunc(out, func(a, b kubeproc.Status) int {
		if a.Name < b.Name {
			return -1
		}
		return 1
	})
	return out
}

// removeRealNodes takes every real node of a cluster off the host, with its files, gives back
// their fleet addresses, and removes the forward to the cluster's API server and, when no
// other cluster uses it, the fleet bridge.
func removeRealNodes(d dir, cluster string, log *slog.Logger) error {
	entries, err := os.ReadDir(filepath.Join(string(d), "nodes"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var errs []error
	for _, e := range entries {
		if e.IsDir() {
			errs = append(errs, node.Remove(node.Spec{Cluster: cluster, Name: e.Name(), Dir: filepath.Join(string(d), "nodes", e.Name())}, log))
		}
	}
	// The cluster's pod network and the host's routes to it, whether nodes are left or not
	// (a runtime that died may have left routes of nodes removed since).
	raw, _ := os.ReadFile(d.podNetworkFile())
	if network, err := netip.ParsePrefix(strings.TrimSpace(string(raw))); err == nil && node.PodNetworkSpace.Contains(network.Addr()) {
		errs = append(errs, node.RemoveHostRoutes(network, netip.Addr{}), node.HostPodNetworks.Release(string(d)))
	}
	if len(entries) == 0 {
		return errors.Join(errs...)
	}
	errs = append(errs, node.HostAddresses.Release(filepath.Join(string(d), "nodes")))
	var p ports
	if readJSON(d.ports(), &p) == nil && p.APIServer != 0 {
		errs = append(errs, node.StopForwarding(p.APIServer, apiServerForward(d, cluster)))
	}
	errs = append(errs, node.RemoveFleetIfUnused())
	return errors.Join(errs...)
}
