package observe

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// DefaultRetention is how long the store keeps samples unless told otherwise.
const DefaultRetention = 15 * 24 * time.Hour

// MetricsStore is VictoriaMetrics single-node as the hub runs it: on 127.0.0.1 only, its data
// in the hub's data dir, with a bounded retention and a bounded share of memory.
type MetricsStore struct {
	// DataDir holds the store's data.
	DataDir string
	// Port is its HTTP port on 127.0.0.1.
	Port int
	// Retention is how long samples are kept (at least a day: the store's unit).
	Retention time.Duration
	// MemoryBytes bounds the store's caches.
	MemoryBytes int64
	// ScrapeConfig, if set, is the file of the targets the store scrapes itself (ScrapeTargets).
	ScrapeConfig string
	// PasswordFile, if set, holds the password the store asks of every request but /health,
	// with the user StoreUser (HTTP basic authentication).
	PasswordFile string
}

// StoreUser is the user of the store's basic authentication.
const StoreUser = "convoy-hub"

// BasicAuth is what the hub presents to the store.
type BasicAuth struct{ User, Password string }

// Args are the store's command-line flags.
func (s MetricsStore) Args() []string {
	args := []string{
		"-storageDataPath=" + s.DataDir,
		"-retentionPeriod=" + retentionDays(s.Retention, DefaultRetention),
		"-httpListenAddr=127.0.0.1:" + strconv.Itoa(s.Port),
		"-loggerLevel=WARN",
		// A sample is visible to queries 5 s after it arrives (30 s by default), so that a
		// fleet query shows what the collectors sent moments ago.
		"-search.latencyOffset=5s",
	}
	if s.MemoryBytes > 0 {
		args = append(args, "-memory.allowedBytes="+strconv.FormatInt(s.MemoryBytes, 10))
	}
	if s.PasswordFile != "" {
		args = append(args, "-httpAuth.username="+StoreUser, "-httpAuth.password=file://"+s.PasswordFile)
	}
	if s.ScrapeConfig != "" {
		args = append(args, "-promscrape.config="+s.ScrapeConfig)
	}
	return args
}

// retentionDays is a store's -retentionPeriod: retention in whole days, rounded up (def when
// not positive).
func retentionDays(retention, def time.Duration) string {
	if retention <= 0 {
		retention = def
	}
	return strconv.Itoa(int((retention+24*time.Hour-1)/(24*time.Hour))) + "d"
}

// ScrapeTarget is an HTTPS endpoint the store scrapes itself, with a client certificate.
type ScrapeTarget struct {
	Job                       string
	Address                   string // HOST:PORT
	Path                      string // /metrics if empty
	CAFile, CertFile, KeyFile string
	Labels                    map[string]string
	Interval                  time.Duration
}

// ScrapeConfig renders the store's scrape configuration (Prometheus' format) for targets.
func ScrapeConfig(targets []ScrapeTarget) ([]byte, error) {
	type tlsConfig struct {
		CAFile   string `json:"ca_file"`
		CertFile string `json:"cert_file"`
		KeyFile  string `json:"key_file"`
	}
	type static struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels,omitempty"`
	}
	type job struct {
		Name     string    `json:"job_name"`
		Scheme   string    `json:"scheme"`
		Path     string    `json:"metrics_path"`
		Interval string    `json:"scrape_interval"`
		TLS      tlsConfig `json:"tls_config"`
		Static   []static  `json:"static_configs"`
	}
	var jobs []job
	for _, t := range targets {
		if t.Job == "" || t.Address == "" || strings.ContainsAny(t.Address, "/ ") {
			return nil, fmt.Errorf("scrape target %q at %q: a job name and a HOST:PORT are needed", t.Job, t.Address)
		}
		path, interval := t.Path, t.Interval
		if path == "" {
			path = "/metrics"
		}
		if interval <= 0 {
			interval = 15 * time.Second
		}
		jobs = append(jobs, job{Name: t.Job, Scheme: "https", Path: path, Interval: interval.String(),
			TLS:    tlsConfig{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile},
			Static: []static{{Targets: []string{t.Address}, Labels: t.Labels}}})
	}
	return yaml.Marshal(map[string]any{"scrape_configs": jobs})
}
