package observe

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// Collector is vmagent as a cluster's agent runs it next to its member: it scrapes the member
// (MemberScrapeConfig) and sends the samples to the hub's store by Prometheus remote write,
// through the hub's API server with the agent's own identity (the hub labels them with the
// agent's cluster and region), and keeps them on disk, up to BufferBytes, while the hub is
// away.
type Collector struct {
	// Dir is the collector's working directory: its on-disk buffer is Dir/buffer.
	Dir string
	// Socket is where vmagent serves its own HTTP API (its /metrics, and the ingestion
	// endpoints every vmagent has): a unix socket in a directory only the agent may enter,
	// so that nobody on the host can push series that it would send with the agent's identity.
	Socket string
	// RemoteWriteURL is the hub's remote-write endpoint (RemoteWriteURL).
	RemoteWriteURL string
	// HubCAFile and HubTokenFile authenticate the hub and the agent to each other; the agent
	// rewrites the token file when it renews its token, and the collector reads it again.
	HubCAFile, HubTokenFile string
	// BufferBytes bounds the on-disk buffer (the oldest samples go first when it is full).
	BufferBytes int64
	// ScrapeConfig is the file MemberScrapeConfig made.
	ScrapeConfig string
}

// DefaultBufferBytes is how much a collector keeps while the hub is away.
const DefaultBufferBytes = 256 << 20

// CollectorFlushInterval is how often a collector sends what it scraped: every send is a
// request to the hub's API server, so a fleet of N clusters sends N / 5 a second.
const CollectorFlushInterval = "5s"

// RemoteWriteURL is the hub's remote-write endpoint, given the hub API server's URL.
func RemoteWriteURL(hubURL string) (string, error) {
	u, err := url.Parse(hubURL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("the hub's URL %q: %v", hubURL, err)
	}
	return u.JoinPath(MetricsWritePath).String(), nil
}

// MetricsWritePath is the remote-write endpoint's path on the hub's API server.
const MetricsWritePath = v1alpha1.MetricsQueryPrefix + "/api/v1/write"

// Args are vmagent's flags.
func (c Collector) Args() []string {
	buffer := c.BufferBytes
	if buffer <= 0 {
		buffer = DefaultBufferBytes
	}
	return []string{
		"-promscrape.config=" + c.ScrapeConfig,
		"-remoteWrite.url=" + c.RemoteWriteURL,
		"-remoteWrite.bearerTokenFile=" + c.HubTokenFile,
		"-remoteWrite.tlsCAFile=" + c.HubCAFile,
		"-remoteWrite.tmpDataPath=" + c.Dir + "/buffer",
		"-remoteWrite.maxDiskUsagePerURL=" + strconv.FormatInt(buffer, 10),
		"-remoteWrite.flushInterval=" + CollectorFlushInterval,
		"-httpListenAddr=unix:" + c.Socket,
		"-loggerLevel=WARN",
	}
}

// PodsJob is the job of the pods that ask to be scraped.
const PodsJob = "pods"

// podJob scrapes the pods that ask to be, with the usual annotations: prometheus.io/scrape
// "true", prometheus.io/port (one of the pod's declared container ports; without it, each
// declared port), prometheus.io/path (/metrics) and prometheus.io/scheme (http). Only running
// pods are scraped, never one on a simulated node (its address is made up), and, when the
// collector reaches one network only, only pods there; redirects are not followed. The series carry the pod's namespace,
// name and node.
func podJob(m MemberTarget, sd map[string]any) map[string]any {
	delete(sd, "scheme")
	relabel := []any{
		map[string]any{"action": "keep", "source_labels": []any{"__meta_kubernetes_pod_annotation_prometheus_io_scrape"}, "regex": "true"},
		map[string]any{"action": "keep", "source_labels": []any{"__meta_kubernetes_pod_phase"}, "regex": "Running"},
		map[string]any{"action": "drop", "source_labels": []any{"__meta_kubernetes_node_annotation_kwok_x_k8s_io_node"}, "regex": "fake"},
		// A target per declared port: ports the pod does not declare are not scraped.
		map[string]any{"action": "keep", "source_labels": []any{"__meta_kubernetes_pod_container_port_number"}, "regex": ".+"},
		// With a port named, only that one (vmagent's keep_if_equal compares two labels).
		map[string]any{"action": "replace", "source_labels": []any{"__meta_kubernetes_pod_annotation_prometheus_io_port", "__meta_kubernetes_pod_container_port_number"},
			"regex": ";(.*)", "target_label": "__meta_kubernetes_pod_annotation_prometheus_io_port", "replacement": "$1"},
		map[string]any{"action": "keep_if_equal", "source_labels": []any{"__meta_kubernetes_pod_annotation_prometheus_io_port", "__meta_kubernetes_pod_container_port_number"}},
	}
	if m.Pods.Network.IsValid() {
		relabel = append(relabel, map[string]any{"action": "keep", "source_labels": []any{"__meta_kubernetes_pod_ip"}, "regex": addressRegexp(m.Pods.Network)})
	}
	relabel = append(relabel,
		map[string]any{"source_labels": []any{"__meta_kubernetes_pod_annotation_prometheus_io_path"}, "regex": "(.+)", "target_label": "__metrics_path__"},
		map[string]any{"source_labels": []any{"__meta_kubernetes_pod_annotation_prometheus_io_scheme"}, "regex": "(https?)", "target_label": "__scheme__"},
		map[string]any{"source_labels": []any{"__meta_kubernetes_namespace"}, "target_label": "namespace"},
		map[string]any{"source_labels": []any{"__meta_kubernetes_pod_name"}, "target_label": "pod"},
		map[string]any{"source_labels": []any{"__meta_kubernetes_pod_node_name"}, "target_label": "node"},
	)
	// A redirect would lead the scrape wherever the pod says: not followed.
	return map[string]any{"job_name": PodsJob, "scrape_interval": "15s", "follow_redirects": false,
		"kubernetes_sd_configs": []any{sd}, "relabel_configs": relabel}
}

// addressRegexp is a regular expression (anchored, as relabelling anchors it) of the IPv4
// addresses in p: its whole octets as they are, the partial one as the alternation of its
// values, the rest any.
func addressRegexp(p netip.Prefix) string {
	p = p.Masked()
	a := p.Addr().As4()
	var b strings.Builder
	for i := range 4 {
		if i > 0 {
			b.WriteString(`\.`)
		}
		fixed := p.Bits() - 8*i
		switch {
		case fixed >= 8:
			b.WriteString(strconv.Itoa(int(a[i])))
		case fixed <= 0:
			b.WriteString(`\d+`)
		default:
			n := 1 << (8 - fixed)
			vals := make([]string, n)
			for v := range n {
				vals[v] = strconv.Itoa(int(a[i]) + v)
			}
			b.WriteString("(" + strings.Join(vals, "|") + ")")
		}
	}
	return b.String()
}

// KubeStateJob is the job of the workload-state series, kube-state-metrics' usual one.
const KubeStateJob = "kube-state-metrics"

// MemberTarget is how a collector reaches its member's API server: its URL and the agent's
// credentials there, as files (a client certificate, or a bearer token).
type MemberTarget struct {
	APIServer                                  string // https://HOST:PORT
	CAFile, CertFile, KeyFile, BearerTokenFile string
	// KubeState is where the agent serves its member's workload state (package
	// observe/kubestate), HOST:PORT over plain HTTP on loopback; not scraped when empty.
	KubeState string
	// Pods says which pods that ask to be scraped the collector may reach at their
	// addresses: every one (the zero value: a collector in the cluster's network), none, or
	// those in one network (a local cluster's, which the host routes).
	Pods PodReach
}

// PodReach is which pods a collector reaches at their addresses.
type PodReach struct {
	// None: no pod is scraped (their addresses lead nowhere from the collector).
	None bool
	// Network, when valid, limits scrapes to pods whose address is in it.
	Network netip.Prefix
}

// apiserverDroppedBuckets are the API server's histograms whose buckets the collector drops: 70 %
// of an API server's series (16,700 of 23,500 on a member of two nodes), which no fleet view,
// alert or gate reads. Their _sum and _count stay, so their averages and rates can still be
// had; apiserver_request_duration_seconds keeps its buckets, for the latency quantiles.
const apiserverDroppedBuckets = `(etcd_request_duration_seconds|apiserver_request_sli_duration_seconds|apiserver_request_body_size_bytes|apiserver_response_sizes|apiserver_watch_.+|apiserver_admission_.+|apiserver_flowcontrol_.+|informer_.+|workqueue_.+)_bucket`

// MemberScrapeConfig is what a collector scrapes on its member, every 15 s: the API server's
// own metrics (job apiserver, without the buckets of apiserverDroppedBuckets), and each node's kubelet through the API server's node proxy,
// its resource metrics (job kubelet: node and container CPU and memory) and cAdvisor's (job
// cadvisor), labelled with the node and its zone, and the agent's workload-state exporter
// (job kube-state-metrics), and the pods that ask to be scraped (job pods, podJob). Simulated
// (kwok) nodes have no kubelet and are left out.
func MemberScrapeConfig(m MemberTarget) ([]byte, error) {
	u, err := url.Parse(m.APIServer)
	if err != nil || u.Host == "" || u.Scheme != "https" {
		return nil, fmt.Errorf("the member's API server %q: an https:// URL is needed", m.APIServer)
	}
	tls := map[string]any{}
	for k, v := range map[string]string{"ca_file": m.CAFile, "cert_file": m.CertFile, "key_file": m.KeyFile} {
		if v != "" {
			tls[k] = v
		}
	}
	auth := func(job map[string]any) map[string]any {
		job["scheme"] = "https"
		job["tls_config"] = tls
		if m.BearerTokenFile != "" {
			job["bearer_token_file"] = m.BearerTokenFile
		}
		return job
	}
	kubelet := func(name, path string) map[string]any {
		sd := auth(map[string]any{"role": "node", "api_server": m.APIServer})
		delete(sd, "scheme")
		return auth(map[string]any{
			"job_name":              name,
			"scrape_interval":       "15s",
			"kubernetes_sd_configs": []any{sd},
			"relabel_configs": []any{
				map[string]any{"action": "drop", "source_labels": []any{"__meta_kubernetes_node_annotation_kwok_x_k8s_io_node"}, "regex": "fake"},
				map[string]any{"target_label": "__address__", "replacement": u.Host},
				map[string]any{"source_labels": []any{"__meta_kubernetes_node_name"}, "target_label": "__metrics_path__", "replacement": "/api/v1/nodes/$1/proxy" + path},
				map[string]any{"source_labels": []any{"__meta_kubernetes_node_name"}, "target_label": "node"},
				map[string]any{"source_labels": []any{"__meta_kubernetes_node_label_topology_kubernetes_io_zone"}, "target_label": "zone"},
			},
		})
	}
	jobs := []any{
		auth(map[string]any{"job_name": "apiserver", "scrape_interval": "15s", "static_configs": []any{map[string]any{"targets": []any{u.Host}}},
			"metric_relabel_configs": []any{map[string]any{"action": "drop", "source_labels": []any{"__name__"}, "regex": apiserverDroppedBuckets}}}),
		kubelet("kubelet", "/metrics/resource"),
		kubelet("cadvisor", "/metrics/cadvisor"),
	}
	if !m.Pods.None {
		jobs = append(jobs, podJob(m, auth(map[string]any{"role": "pod", "api_server": m.APIServer, "attach_metadata": map[string]any{"node": true}})))
	}
	if m.KubeState != "" {
		// Its series carry their objects' namespace and pod labels, which stay as they are
		// (honor_labels), as with kube-state-metrics.
		// Its instance is the same whatever port the agent took this time: a restarted agent
		// continues the series rather than doubling them for the lookback window.
		jobs = append(jobs, map[string]any{"job_name": KubeStateJob, "scrape_interval": "15s", "honor_labels": true,
			"static_configs":  []any{map[string]any{"targets": []any{m.KubeState}}},
			"relabel_configs": []any{map[string]any{"target_label": "instance", "replacement": "agent"}}})
	}
	return yaml.Marshal(map[string]any{"scrape_configs": jobs})
}
