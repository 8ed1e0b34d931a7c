// Package node runs real Kubernetes nodes on the host, each a small machine of its own: a
// network namespace joined to the fleet bridge by a veth pair, its own containerd (with runc
// and the CNI plugins) and a kubelet inside that namespace, its own directories and cgroup root.
// A node's processes enter only its network namespace (nsenter --net), so that the kubelet and
// containerd see the same mounts.
//
// Up makes a node and starts it, in two steps that can be taken apart: Start makes the node and
// starts its containerd, which pulls the images its first pods need, and Join starts its kubelet
// and kube-proxy, which need the API server. Upgrade restarts those two from another version's
// executables, keeping containerd and the network namespace. Stop stops it and takes away everything it made on the host
// (processes, containers, mounts, cgroups, its network namespace) but its files, and Remove
// deletes those too. SetPodCIDR and SetRoutes give it its part of the cluster's pod network.
// The fleet network on the host (the bridge, the forward to each cluster's API server) is
// fleet.go's. Only the local provider imports this package.
package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// Node is a running node.
type Node struct {
	Spec       Spec
	containerd *kubeproc.Process
	log        *slog.Logger
	// stopPull ends the pre-pull of Spec.Prepull, and pulled is closed once it has ended.
	stopPull context.CancelFunc
	pulled   chan struct{}

	mu      sync.Mutex // guards what Join, Upgrade, SetPodCIDR and Stop change
	kubelet *kubeproc.Process
	proxy   *kubeproc.Process
	stopped bool
	routed  netip.Prefix // the node's pod range that the host routes to it, once it does
	// kubeletBin and proxyBin are the executables Join starts: Spec's, until Upgrade. They are
	// kept apart from Spec, which other goroutines read without the lock.
	kubeletBin, proxyBin string
	// kubeletStarted is when Join or Upgrade last started the kubelet.
	kubeletStarted time.Time
}

// Processes are the node's supervised processes, for status reports: containerd, and the
// kubelet and kube-proxy once it joined.
func (n *Node) Processes() []*kubeproc.Process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return []*kubeproc.Process{n.containerd, n.kubelet, n.proxy}
}

// Up makes a node and starts it in one step: Start, then Join. An error leaves nothing running.
func Up(ctx context.Context, s Spec, log *slog.Logger) (*Node, error) {
	n, err := Start(ctx, s, log)
	if err != nil {
		return nil, err
	}
	if err := n.Join(); err != nil {
		n.Stop(context.Background())
		return nil, err
	}
	return n, nil
}

// Start makes the node on the host (directories, network namespace, cgroup root, configuration)
// and starts its containerd, which begins to pull Spec.Prepull. A node left over by a runtime
// that died is taken down first. An error leaves nothing running.
func Start(ctx context.Context, s Spec, log *slog.Logger) (*Node, error) {
	log = log.With("node", s.Name)
	if err := teardown(s, log); err != nil {
		return nil, fmt.Errorf("node %s: clear what an earlier run left: %w", s.Name, err)
	}
	kubeproc.EnsureInotifyLimits(log)
	n := &Node{Spec: s, log: log, kubeletBin: s.Kubelet, proxyBin: s.KubeProxy}
	fail := func(err error) (*Node, error) {
		n.Stop(context.Background())
		return nil, fmt.Errorf("node %s: %w", s.Name, err)
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(ShortDir, 0o755); err != nil {
		return fail(err)
	}
	if err := os.Symlink(s.Dir, s.short()); err != nil {
		return fail(fmt.Errorf("short path for the node's sockets: %w", err))
	}
	for _, d := range []string{s.containerdRoot(), s.containerdState(), s.runcRoot(), s.cniConfDir(), s.kubeletRoot(), s.podLogs(), s.logs(), s.run()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fail(err)
		}
	}
	if err := upNetwork(s); err != nil {
		return fail(fmt.Errorf("network: %w", err))
	}
	if err := makeCgroupRoot(s.CgroupRoot()); err != nil {
		return fail(fmt.Errorf("cgroup root: %w", err))
	}
	files := map[string]string{
		s.containerdConfig(): ContainerdConfig(s),
		s.kubeletConfig():    KubeletConfig(s),
		s.kubeconfig():       kubeconfig(s, s.CertFile, s.KeyFile),
		s.proxyConfig():      KubeProxyConfig(s),
		s.proxyKubeconfig():  kubeconfig(s, s.ProxyCertFile, s.ProxyKeyFile),
	}
	maps.Copy(files, RegistryHosts(s))
	for path, content := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return fail(err)
		}
		if err := kubeproc.WriteFileAtomic(path, []byte(content), 0o600); err != nil {
			return fail(err)
		}
	}
	var err error
	if n.containerd, err = kubeproc.Start(n.inNetNS("containerd", "containerd", "--config", s.containerdConfig()), log); err != nil {
		return fail(err)
	}
	if err := waitSocket(ctx, s.containerdSocket(), n.containerd, 30*time.Second); err != nil {
		return fail(err)
	}
	n.prepull()
	return n, nil
}

// Joined reports whether the node's kubelet and kube-proxy were started (Join).
func (n *Node) Joined() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.kubelet != nil
}

// Join starts the node's kubelet and kube-proxy, unless they run already; the kubelet then
// registers the node. It fails once the node is stopped.
func (n *Node) Join() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.stopped:
		return fmt.Errorf("node %s: stopped", n.Spec.Name)
	case n.kubelet != nil:
		return nil
	}
	if err := n.startKubelet(); err != nil {
		return err
	}
	n.log.Info("real node started", "ip", n.Spec.IP)
	return nil
}

// Upgrade stops the node's kubelet and kube-proxy and starts them again from other executables
// (another Kubernetes version's). Its containerd and network namespace stay, and with them the
// containers of the pods left on it (a drain leaves DaemonSets' pods), which the new kubelet
// takes over. The node must have joined; the caller runs one Upgrade of a node at a time.
func (n *Node) Upgrade(ctx context.Context, kubelet, kubeProxy string) error {
	n.mu.Lock()
	if n.stopped || n.kubelet == nil {
		n.mu.Unlock()
		return fmt.Errorf("node %s: its kubelet does not run (the node is stopped or has not joined); it cannot be upgraded", n.Spec.Name)
	}
	oldKubelet, oldProxy := n.kubelet, n.proxy
	n.mu.Unlock()
	// Outside the lock: each may take its stop timeout, and the node's status (Processes) must
	// not wait. They stay the node's processes meanwhile, so that Join starts no others.
	oldProxy.Stop(ctx)
	oldKubelet.Stop(ctx)
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.stopped:
		return fmt.Errorf("node %s: stopped while it was upgraded", n.Spec.Name)
	case n.kubelet != oldKubelet:
		return fmt.Errorf("node %s: upgraded twice at once", n.Spec.Name)
	}
	n.kubeletBin, n.proxyBin = kubelet, kubeProxy
	if err := n.startKubelet(); err != nil {
		n.kubelet, n.proxy = nil, nil // Join starts them again, from the new executables
		return err
	}
	n.log.Info("kubelet and kube-proxy restarted", "kubelet", kubelet, "kube-proxy", kubeProxy)
	return nil
}

// KubeletStarted is when the node's kubelet was last started (Join, Upgrade), or zero.
func (n *Node) KubeletStarted() time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.kubeletStarted
}

// KubeletLog is up to max bytes of the end of the kubelet's log, from a line's start.
func (n *Node) KubeletLog(max int64) string {
	n.mu.Lock()
	kubelet := n.kubelet
	n.mu.Unlock()
	if kubelet == nil {
		return ""
	}
	return kubelet.Tail(max)
}

// startKubelet starts the kubelet and kube-proxy from the node's executables; n.mu is held.
func (n *Node) startKubelet() error {
	s := n.Spec
	kubelet, err := kubeproc.Start(n.inNetNS("kubelet", n.kubeletBin, KubeletArgs(s)...), n.log)
	if err != nil {
		return fmt.Errorf("node %s: %w", s.Name, err)
	}
	proxy, err := kubeproc.Start(n.inNetNS("kube-proxy", n.proxyBin, "--config="+s.proxyConfig()), n.log)
	if err != nil {
		kubelet.Stop(context.Background())
		return fmt.Errorf("node %s: %w", s.Name, err)
	}
	n.kubelet, n.proxy, n.kubeletStarted = kubelet, proxy, time.Now()
	return nil
}

// inNetNS is the spec of a process of the node, run in its network namespace only.
func (n *Node) inNetNS(name, bin string, args ...string) kubeproc.Spec {
	s := n.Spec
	return kubeproc.Spec{
		Name:        name + "-" + s.Name,
		Path:        "nsenter",
		Args:        append([]string{"--net=" + netnsPath(s), "--", bin}, args...),
		LogPath:     filepath.Join(s.logs(), name+".log"),
		PIDPath:     filepath.Join(s.run(), name+".pid"),
		StopTimeout: 10 * time.Second,
	}
}

// SetPodCIDR gives the node the range of pod addresses the cluster allocated it and, when the
// cluster's pod network is one of its own (PodNetworkSpace), routes the range from the host to
// the node, so that the host reaches its pods; Stop takes the route away.
func (n *Node) SetPodCIDR(cidr netip.Prefix) error {
	path := filepath.Join(n.Spec.cniConfDir(), "10-convoy.conflist")
	want := CNIConfig(n.Spec, cidr)
	if have, err := os.ReadFile(path); err != nil || string(have) != want {
		if err := kubeproc.WriteFileAtomic(path, []byte(want), 0o644); err != nil {
			return err
		}
	}
	if !n.Spec.routedNetwork() {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped || n.routed == cidr {
		return nil
	}
	if out, err := exec.Command("ip", "route", "replace", cidr.String(), "via", n.Spec.IP.String(), "dev", Bridge, "proto", "static").CombinedOutput(); err != nil {
		return fmt.Errorf("route the pod range %s to node %s: %v: %s", cidr, n.Spec.Name, err, strings.TrimSpace(string(out)))
	}
	n.routed = cidr
	return nil
}

// routedNetwork says whether the host routes the cluster's pod network: one of its own, from
// PodNetworkSpace. A cluster made before keeps the network every such cluster shared, which
// the host cannot route.
func (s Spec) routedNetwork() bool {
	return s.PodNetwork.IsValid() && PodNetworkSpace.Contains(s.PodNetwork.Addr())
}

// RemoveHostRoutes deletes the host's routes, through the fleet bridge, to pod ranges within
// network (a cluster's pod network) and, when via is valid, through that node only: those its
// nodes' Stop left, when a runtime died.
func RemoveHostRoutes(network netip.Prefix, via netip.Addr) error {
	out, err := exec.Command("ip", "-4", "route", "show", "proto", "static").Output()
	if err != nil {
		return fmt.Errorf("list the host's routes: %w", err)
	}
	var errs []error
	for line := range strings.SplitSeq(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || !slices.Contains(f, Bridge) {
			continue
		}
		dst, err := netip.ParsePrefix(f[0])
		if err != nil || !network.Contains(dst.Addr()) || dst.Bits() < network.Bits() {
			continue
		}
		if via.IsValid() && !slices.Contains(f, via.String()) {
			continue
		}
		if out, err := exec.Command("ip", "route", "del", f[0], "proto", "static", "dev", Bridge).CombinedOutput(); err != nil &&
			!strings.Contains(string(out), "No such process") {
			errs = append(errs, fmt.Errorf("remove the route to %s: %v: %s", f[0], err, strings.TrimSpace(string(out))))
		}
	}
	return errors.Join(errs...)
}

// SetRoutes makes the node route each other node's pod range to that node, and nothing else
// of the pod network: routes is pod range → node address.
func (n *Node) SetRoutes(routes map[netip.Prefix]netip.Addr) error {
	out, err := ip(n.Spec, "route", "show", "proto", "static")
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[1] == "via" {
			have[f[0]+" "+f[2]] = true
		}
	}
	var errs []error
	want := map[string]bool{}
	for cidr, via := range routes {
		want[cidr.String()+" "+via.String()] = true
		if have[cidr.String()+" "+via.String()] {
			continue
		}
		if _, err := ip(n.Spec, "route", "replace", cidr.String(), "via", via.String(), "proto", "static"); err != nil {
			errs = append(errs, err)
		}
	}
	for k := range have {
		if !want[k] {
			f := strings.Fields(k)
			if _, err := ip(n.Spec, "route", "del", f[0], "via", f[1], "proto", "static"); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Stop stops the node and takes away everything it made on the host but its files: its
// kubelet and containerd, every container and shim, its mounts, its cgroups and its network
// namespace (and with it its veth pair).
//
// A pull ahead (Spec.Prepull) ends first, then the kubelet and kube-proxy stop; then the pods are stopped (their containers get SIGTERM and
// PodStopGrace) and removed through containerd, which releases their networks; then containerd
// stops. What is left after that (a runtime died, containerd does not answer) is killed.
func (n *Node) Stop(ctx context.Context) {
	n.mu.Lock()
	n.stopped = true
	procs := []*kubeproc.Process{n.proxy, n.kubelet}
	n.mu.Unlock()
	if n.stopPull != nil {
		n.stopPull()
		<-n.pulled
	}
	for _, p := range procs {
		if p != nil {
			p.Stop(ctx)
		}
	}
	if n.containerd != nil {
		select {
		case <-n.containerd.Exited():
		default:
			pctx, cancel := context.WithTimeout(ctx, PodStopGrace+10*time.Second)
			if err := stopPods(pctx, n.Spec.containerdSocket(), PodStopGrace); err != nil {
				n.log.Warn("pods not stopped cleanly; killing them", "err", err)
			}
			cancel()
		}
		n.containerd.Stop(ctx)
	}
	if err := teardown(n.Spec, n.log); err != nil {
		n.log.Warn("node not fully taken down", "err", err)
	}
	n.mu.Lock()
	routed := n.routed
	n.routed = netip.Prefix{}
	n.mu.Unlock()
	if routed.IsValid() {
		if out, err := exec.Command("ip", "route", "del", routed.String(), "via", n.Spec.IP.String(), "proto", "static").CombinedOutput(); err != nil &&
			!strings.Contains(string(out), "No such process") && !strings.Contains(string(out), "Cannot find device") {
			n.log.Warn("cannot remove the host's route to the node's pods", "range", routed, "err", err, "out", strings.TrimSpace(string(out)))
		}
	}
}

// PodStopGrace is how long a pod's containers have to stop when their node stops.
const PodStopGrace = 10 * time.Second

// Remove takes a node away altogether: what Stop takes, and its files.
func Remove(s Spec, log *slog.Logger) error {
	if err := teardown(s, log.With("node", s.Name)); err != nil {
		return err
	}
	return os.RemoveAll(s.Dir)
}

// teardown kills whatever runs in the node's network namespace or its cgroups (a kubelet and
// containerd left by a runtime that died, shims, containers), unmounts what is mounted under
// its directory, removes its cgroups and deletes its network namespace.
func teardown(s Spec, log *slog.Logger) error {
	var errs []error
	var podNS []string
	for range 3 { // containers' processes may fork while they are killed
		pids := pidsInNetNS(netnsPath(s))
		inPods := pidsInCgroups(s.CgroupRoot())
		podNS = append(podNS, namedNetNSOf(inPods)...)
		pids = append(pids, inPods...)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cachedNS, err := forgetPodNetworks(s)
	podNS = append(podNS, cachedNS...)
	errs = append(errs, err, unmountUnder(s.Dir), removeCgroups(s.CgroupRoot()))
	if err := os.Remove(s.short()); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if _, err := os.Stat(netnsPath(s)); err == nil {
		if out, err := exec.Command("ip", "netns", "delete", s.NetNS()).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("delete network namespace: %v: %s", err, strings.TrimSpace(string(out))))
		}
	}
	// The pods' network namespaces, which containerd 1.6 mounts in /run/netns whatever its
	// state directory: those its pods' processes were in, and those its pods' cached network
	// results name.
	for _, path := range slices.Compact(slices.Sorted(slices.Values(podNS))) {
		if path == netnsPath(s) {
			continue
		}
		if err := syscall.Unmount(path, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount pod network namespace %s: %w", path, err))
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, unmountUnder(s.containerdState()))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Debug("node taken down")
	return nil
}

// netnsDir is where ip-netns(8), and containerd for its pods, keep named network namespaces.
const netnsDir = "/run/netns"

func netnsPath(s Spec) string { return filepath.Join(netnsDir, s.NetNS()) }

// upNetwork makes the node's network namespace, with a veth pair to the fleet bridge, its
// address and default route, forwarding on, and masquerade for what its pods send outside
// the cluster's pod network.
func upNetwork(s Spec) error {
	ns := s.NetNS()
	host := s.HostLink()
	steps := [][]string{
		{"netns", "add", ns},
		{"link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "addr", "add", netip.PrefixFrom(s.IP, s.Prefix).String(), "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "route", "add", "default", "via", s.Gateway.String()},
	}
	for i, args := range steps {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		if i == 1 { // the veth pair is there: join its host end to the bridge
			if err := attach(host, s.Forwards); err != nil {
				return err
			}
		}
	}
	in := func(args ...string) error {
		out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	return errors.Join(
		in("sysctl", "-qw", "net.ipv4.ip_forward=1"),
		in("iptables", "-t", "nat", "-A", "POSTROUTING", "-s", s.PodNetwork.String(), "!", "-d", s.PodNetwork.String(),
			"-m", "comment", "--comment", "convoy: pods leaving the cluster's pod network", "-j", "MASQUERADE"),
	)
}

// ip runs an ip command in the node's network namespace.
func ip(s Spec, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"-n", s.NetNS()}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// kubeconfig is the kubelet's or kube-proxy's: the cluster's API server as the node reaches
// it, with a client certificate.
func kubeconfig(s Spec, cert, key string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: cluster
  cluster:
    server: %s
    tls-server-name: %s
    certificate-authority: %s
users:
- name: node
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: node
  context: {cluster: cluster, user: node}
current-context: node
`, s.APIServer, s.APIServerName, s.CAFile, cert, key)
}

// waitSocket waits until a unix socket accepts connections.
func waitSocket(ctx context.Context, path string, p *kubeproc.Process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c, err := (&netDialer{}).dial(path); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.Exited():
			return fmt.Errorf("%s exited: %s", p.Name(), p.Tail(400))
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer on %s within %s: %s", p.Name(), path, timeout, p.Tail(400))
}

// pidsInNetNS lists the processes in a network namespace, by the inode of its file.
func pidsInNetNS(path string) []int {
	var target syscall.Stat_t
	if err := syscall.Stat(path, &target); err != nil {
		return nil
	}
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", e.Name(), "ns", "net"), &st) == nil && st.Ino == target.Ino && st.Dev == target.Dev {
			out = append(out, pid)
		}
	}
	return out
}

// namedNetNSOf lists the named network namespaces (files in /run/netns) that the processes are
// in.
func namedNetNSOf(pids []int) []string {
	type id struct{ dev, ino uint64 }
	in := map[id]bool{}
	for _, pid := range pids {
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", strconv.Itoa(pid), "ns", "net"), &st) == nil {
			in[id{st.Dev, st.Ino}] = true
		}
	}
	if len(in) == 0 {
		return nil
	}
	entries, _ := os.ReadDir(netnsDir)
	var out []string
	for _, e := range entries {
		var st syscall.Stat_t
		path := filepath.Join(netnsDir, e.Name())
		if syscall.Stat(path, &st) == nil && in[id{st.Dev, st.Ino}] {
			out = append(out, path)
		}
	}
	return out
}

// unmountUnder unmounts everything mounted under dir, the deepest first.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescape(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, mp := range slices.Compact(points) {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
