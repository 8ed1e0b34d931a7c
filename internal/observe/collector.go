package observe

import (
	"fmt"
	"net/url"
	"strconv"

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
}

// MemberScrapeConfig is what a collector scrapes on its member, every 15 s: the API server's
// own metrics (job apiserver), and each node's kubelet through the API server's node proxy,
// its resource metrics (job kubelet: node and container CPU and memory) and cAdvisor's (job
// cadvisor), labelled with the node and its zone, and the agent's workload-state exporter
// (job kube-state-metrics). Simulated (kwok) nodes have no kubelet and are left out.
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
		auth(map[string]any{"job_name": "apiserver", "scrape_interval": "15s", "static_configs": []any{map[string]any{"targets": []any{u.Host}}}}),
		kubelet("kubelet", "/metrics/resource"),
		kubelet("cadvisor", "/metrics/cadvisor"),
	}
	if m.KubeState != "" {
		// Its series carry their objects' namespace and pod labels, which stay as they are
		// (honor_labels), as with kube-state-metrics.
		jobs = append(jobs, map[string]any{"job_name": KubeStateJob, "scrape_interval": "15s", "honor_labels": true,
			"static_configs": []any{map[string]any{"targets": []any{m.KubeState}}}})
	}
	return yaml.Marshal(map[string]any{"scrape_configs": jobs})
}
