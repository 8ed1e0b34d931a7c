package node

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Spec is one real node: where it lives on the host, how it reaches its cluster's API server,
// and what it registers as.
type Spec struct {
	// Cluster and Name name the node; the node registers as Name.
	Cluster, Name string
	// Dir holds everything of the node on the host: containerd's root and state, the
	// kubelet's root, pod logs, configuration and logs. Stop leaves it; Remove deletes it.
	Dir string
	// IP is the node's address on the fleet network, Prefix its length, Gateway the host's
	// address there (the fleet bridge).
	IP      netip.Addr
	Prefix  int
	Gateway netip.Addr
	// APIServer is the cluster's API server as the node reaches it, and APIServerName the
	// name its serving certificate is for.
	APIServer, APIServerName string
	// CAFile is the cluster's CA; CertFile and KeyFile the node's client certificate
	// (system:node:NAME in system:nodes), which the kubelet also takes clients' certificates
	// against.
	CAFile, CertFile, KeyFile string
	// PodNetwork is the cluster's pod CIDR, of which each node gets a range.
	PodNetwork netip.Prefix
	// Kubelet and KubeProxy are the executables; CNIBinDir holds the CNI plugins.
	Kubelet, KubeProxy, CNIBinDir string
	// ProxyCertFile and ProxyKeyFile are kube-proxy's client certificate (system:kube-proxy).
	ProxyCertFile, ProxyKeyFile string
	// ClusterDNS is the cluster DNS Service's address, ClusterDomain its domain.
	ClusterDNS    netip.Addr
	ClusterDomain string
	// Registry is the fleet registry as the node reaches it (http://HOST:PORT), and Mirrored
	// the registry hosts whose images the node's containerd pulls from it, and only from it.
	Registry string
	Mirrored []string
	// Forwards are ports of the host's loopback (port → what listens) that the node reaches at
	// Gateway: its API server, the fleet registry, the hub. They are made with the node's
	// joining of the fleet bridge, under the host-wide fleet lock (see Forward).
	Forwards map[int]string
	// PauseImage is the image of every pod's sandbox.
	PauseImage string
	// Prepull are images the node pulls as soon as its containerd runs, while its kubelet
	// registers and waits for its pod range: the add-ons' images, which its first pods need.
	Prepull []string
	// Labels and Taints the node registers with, MaxPods the most pods it takes.
	Labels  map[string]string
	Taints  []corev1.Taint
	MaxPods int32
}

// Where a node's things live in its Dir.
func (s Spec) containerdRoot() string   { return filepath.Join(s.Dir, "containerd", "root") }
func (s Spec) containerdState() string  { return filepath.Join(s.Dir, "containerd", "state") }
func (s Spec) containerdSocket() string { return filepath.Join(s.short(), "containerd.sock") }
func (s Spec) containerdConfig() string { return filepath.Join(s.Dir, "containerd.toml") }
func (s Spec) registryHosts() string    { return filepath.Join(s.Dir, "registry-hosts") }
func (s Spec) runcRoot() string         { return filepath.Join(s.Dir, "runc") }
func (s Spec) cniConfDir() string       { return filepath.Join(s.Dir, "cni") }
func (s Spec) ipamDir() string          { return filepath.Join(s.Dir, "cni-ipam") }
func (s Spec) kubeletRoot() string      { return filepath.Join(s.short(), "kubelet") }
func (s Spec) kubeletConfig() string    { return filepath.Join(s.Dir, "kubelet.yaml") }
func (s Spec) kubeconfig() string       { return filepath.Join(s.Dir, "kubeconfig") }
func (s Spec) proxyConfig() string      { return filepath.Join(s.Dir, "kube-proxy.yaml") }
func (s Spec) proxyKubeconfig() string  { return filepath.Join(s.Dir, "kube-proxy.kubeconfig") }
func (s Spec) podLogs() string          { return filepath.Join(s.Dir, "pods") }
func (s Spec) logs() string             { return filepath.Join(s.Dir, "logs") }
func (s Spec) run() string              { return filepath.Join(s.Dir, "run") }

// short is a short path to the node's Dir: a symlink in /run, through which the node's unix
// sockets are named. A socket's path has at most 107 bytes, and the kubelet makes its own
// sockets deep under its root directory; a data dir under a long path would break them.
func (s Spec) short() string { return filepath.Join(ShortDir, Tag(s.Dir)) }

// ShortDir holds the nodes' short paths (see Spec.short).
const ShortDir = "/run/convoy/nodes"

// NetNS is the name of the node's network namespace (in /run/netns). It and the names below
// derive from the node's Dir, so that nodes of two data dirs (two hubs, or tests running side
// by side) never share one.
func (s Spec) NetNS() string { return "convoy-" + Tag(s.Dir) }

// HostLink is the name of the host's end of the node's veth pair; an interface name has at
// most 15 characters.
func (s Spec) HostLink() string { return "cvy" + Tag(s.Dir) }

// CgroupRoot is the cgroup, in every hierarchy, under which the node's kubelet puts its pods.
func (s Spec) CgroupRoot() string { return "/convoy/" + s.Name + "-" + Tag(s.Dir) }

// Tag is a short, stable name for a directory (a node's, a cluster's), for the names of what
// it has on the host.
func Tag(dir string) string {
	h := fnv.New32a()
	h.Write([]byte(dir))
	return fmt.Sprintf("%08x", h.Sum32())
}

// ContainerdConfig renders containerd's configuration for the node: its own root, state and
// socket, the CRI plugin with the pause image, no negative oom_score_adj (this machine's root
// may not set one: runc fails to start any sandbox otherwise), CNI from the node's own
// configuration directory, and runc with its own state.
func ContainerdConfig(s Spec) string {
	q := func(v string) string { return fmt.Sprintf("%q", v) }
	lines := []string{
		`version = 2`,
		`root = ` + q(s.containerdRoot()),
		`state = ` + q(s.containerdState()),
		`oom_score = 0`,
		`[grpc]`,
		`  address = ` + q(s.containerdSocket()),
		`[ttrpc]`,
		`  address = ` + q(s.containerdSocket()+".ttrpc"),
		`[debug]`,
		`  address = ""`,
		`[metrics]`,
		`  address = ""`,
		`[plugins."io.containerd.grpc.v1.cri"]`,
		`  sandbox_image = ` + q(s.PauseImage),
		`  restrict_oom_score_adj = true`,
		`  enable_selinux = false`,
		`  [plugins."io.containerd.grpc.v1.cri".cni]`,
		`    bin_dir = ` + q(s.CNIBinDir),
		`    conf_dir = ` + q(s.cniConfDir()),
		`  [plugins."io.containerd.grpc.v1.cri".containerd]`,
		`    snapshotter = "overlayfs"`,
		`    default_runtime_name = "runc"`,
		`    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]`,
		`      runtime_type = "io.containerd.runc.v2"`,
		`      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]`,
		`        Root = ` + q(s.runcRoot()),
		`        SystemdCgroup = false`,
		`  [plugins."io.containerd.grpc.v1.cri".registry]`,
		`    config_path = ` + q(s.registryHosts()),
	}
	return strings.Join(append(lines,
		`[plugins."io.containerd.internal.v1.opt"]`,
		`  path = `+q(filepath.Join(s.Dir, "containerd", "opt")),
		``,
	), "\n")
}

// RegistryHosts renders, for each registry host the node pulls through the fleet registry, the
// hosts.toml of containerd's registry configuration directory (HOST/hosts.toml): the fleet
// registry is the host's server, over plain HTTP on the fleet network, so that containerd
// never falls back to the registry's own name (this machine reaches no registry outside).
func RegistryHosts(s Spec) map[string]string {
	out := map[string]string{}
	if s.Registry == "" {
		return out
	}
	for _, h := range s.Mirrored {
		out[filepath.Join(s.registryHosts(), h, "hosts.toml")] = fmt.Sprintf(
			"server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", s.Registry, s.Registry)
	}
	return out
}

// KubeletConfig renders the kubelet's configuration: cgroupfs (there is no systemd), cgroup
// v1 allowed, its pods under the node's own cgroup root and its own pod log directory (two
// kubelets on one host would otherwise remove each other's pods and logs), no negative OOM
// score, client certificates of the cluster's CA (its serving certificate it makes itself), and
// no eviction or swap checks, which a small shared host would trip.
func KubeletConfig(s Spec) string {
	maxPods := s.MaxPods
	if maxPods == 0 {
		maxPods = 110
	}
	return strings.Join([]string{
		`apiVersion: kubelet.config.k8s.io/v1beta1`,
		`kind: KubeletConfiguration`,
		`address: ` + s.IP.String(),
		`port: 10250`,
		`readOnlyPort: 0`,
		`healthzBindAddress: 127.0.0.1`,
		`healthzPort: 10248`,
		`cgroupDriver: cgroupfs`,
		`cgroupRoot: ` + s.CgroupRoot(),
		`cgroupsPerQOS: true`,
		`failCgroupV1: false`,
		`oomScoreAdj: 0`,
		`containerRuntimeEndpoint: unix://` + s.containerdSocket(),
		`podLogsDir: ` + s.podLogs(),
		`maxPods: ` + fmt.Sprint(maxPods),
		`authentication:`,
		`  anonymous: {enabled: false}`,
		`  webhook: {enabled: false}`,
		`  x509: {clientCAFile: ` + fmt.Sprintf("%q", s.CAFile) + `}`,
		`authorization: {mode: AlwaysAllow}`,
		`failSwapOn: false`,
		`enforceNodeAllocatable: []`,
		`localStorageCapacityIsolation: false`,
		`evictionHard: {}`,
		`imageGCHighThresholdPercent: 100`,
		`serializeImagePulls: false`,
		// Pods resolve through the cluster's DNS only: nothing of the host's resolver reaches
		// them (this machine's traffic stays on loopback and in Convoy's namespaces).
		`resolvConf: ""`,
		`clusterDNS: [` + s.ClusterDNS.String() + `]`,
		`clusterDomain: ` + s.ClusterDomain,
		`registerNode: true`,
		``,
	}, "\n")
}

// KubeletArgs are the kubelet's flags for the node.
func KubeletArgs(s Spec) []string {
	args := []string{
		"--config=" + s.kubeletConfig(),
		"--kubeconfig=" + s.kubeconfig(),
		"--root-dir=" + s.kubeletRoot(),
		"--cert-dir=" + filepath.Join(s.kubeletRoot(), "pki"),
		"--hostname-override=" + s.Name,
		"--node-ip=" + s.IP.String(),
	}
	if len(s.Labels) > 0 {
		keys := make([]string, 0, len(s.Labels))
		for k := range s.Labels {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var kv []string
		for _, k := range keys {
			kv = append(kv, k+"="+s.Labels[k])
		}
		args = append(args, "--node-labels="+strings.Join(kv, ","))
	}
	if len(s.Taints) > 0 {
		var ts []string
		for _, t := range s.Taints {
			ts = append(ts, t.Key+"="+t.Value+":"+string(t.Effect))
		}
		args = append(args, "--register-with-taints="+strings.Join(ts, ","))
	}
	return args
}

// CNIConfig renders the CNI configuration of a node whose pods take addresses from podCIDR: a
// bridge in the node, the node as their gateway, and port mappings. Pods reach pods of other
// nodes through the routes the cluster's runtime sets (Routes), without masquerade; what leaves
// the cluster's pod network is masqueraded by the node (see Up).
// The pods' addresses are recorded in the node's own directory (host-local's dataDir), not in
// the host's /var/lib/cni, which every node would share.
func CNIConfig(s Spec, podCIDR netip.Prefix) string {
	return fmt.Sprintf(`{"cniVersion":"0.4.0","name":"convoy","plugins":[`+
		`{"type":"bridge","bridge":"cni0","isGateway":true,"ipMasq":false,"hairpinMode":true,`+
		`"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":%q}]],"routes":[{"dst":"0.0.0.0/0"}]}},`+
		`{"type":"portmap","capabilities":{"portMappings":true}}]}`+"\n", s.ipamDir(), podCIDR.String())
}

// KubeProxyConfig renders kube-proxy's configuration: iptables mode (this kernel has no IPVS),
// the cluster's pod network as the cluster CIDR, and conntrack left as the node's namespace has
// it (its global limits are not the node's to set).
func KubeProxyConfig(s Spec) string {
	return strings.Join([]string{
		`apiVersion: kubeproxy.config.k8s.io/v1alpha1`,
		`kind: KubeProxyConfiguration`,
		`clientConnection: {kubeconfig: ` + fmt.Sprintf("%q", s.proxyKubeconfig()) + `}`,
		`hostnameOverride: ` + s.Name,
		`mode: iptables`,
		`clusterCIDR: ` + s.PodNetwork.String(),
		`bindAddress: ` + s.IP.String(),
		`healthzBindAddress: 127.0.0.1:10256`,
		`metricsBindAddress: 127.0.0.1:10249`,
		`conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}`,
		``,
	}, "\n")
}
