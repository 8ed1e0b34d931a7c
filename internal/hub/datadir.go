package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// Layout is where the hub keeps its files inside the data dir.
type Layout struct{ Dir string }

// Lock is the file whose flock marks the data dir as in use.
func (l Layout) Lock() string { return filepath.Join(l.Dir, "hub.lock") }

// State is the file that remembers choices across restarts, such as the API server port.
func (l Layout) State() string { return filepath.Join(l.Dir, "hub.json") }

// Kubeconfig is the admin kubeconfig for users, kubectl and helm.
func (l Layout) Kubeconfig() string { return filepath.Join(l.Dir, "kubeconfig") }

// PKI holds the hub's CA, certificates and service-account keys.
func (l Layout) PKI() string { return filepath.Join(l.Dir, "pki") }

// Registry holds the fleet registry's blobs and manifests.
func (l Layout) Registry() string { return filepath.Join(l.Dir, "registry") }

// Metrics holds the fleet metrics store: its data, and its scrape configuration.
func (l Layout) Metrics() string { return filepath.Join(l.Dir, "metrics") }

// FleetLogs holds the fleet log store: its data and its password.
func (l Layout) FleetLogs() string { return filepath.Join(l.Dir, "fleet-logs") }

// DB holds the default SQLite datastore.
func (l Layout) DB() string { return filepath.Join(l.Dir, "db") }

// Logs holds one log file per child process.
func (l Layout) Logs() string { return filepath.Join(l.Dir, "logs") }

// Run holds the children's pid files.
func (l Layout) Run() string { return filepath.Join(l.Dir, "run") }

// Clusters holds one directory per local cluster.
func (l Layout) Clusters() string { return filepath.Join(l.Dir, "clusters") }

// Edge holds the hub's edge pool instances: their configuration, sockets and logs.
func (l Layout) Edge() string { return filepath.Join(l.Dir, "edge") }

// Templates holds the local clusters' datastore templates, one per Kubernetes version.
func (l Layout) Templates() string { return filepath.Join(l.Dir, "templates") }

// Internal holds kubeconfigs of the hub's own components.
func (l Layout) Internal() string { return filepath.Join(l.Dir, "internal") }

// DefaultDataDir is $CONVOY_DATA_DIR, or ~/.convoy.
func DefaultDataDir() string {
	if d := os.Getenv("CONVOY_DATA_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".convoy"
	}
	return filepath.Join(home, ".convoy")
}

// lockDataDir marks the data dir as in use by this hub until release is called or the
// process dies.
func lockDataDir(l Layout) (release func(), err error) {
	release, err = kubeproc.Lock(l.Lock())
	if errors.Is(err, kubeproc.ErrLocked) {
		holder := "unknown"
		if pid, ok := kubeproc.LockHolder(l.Lock()); ok && pid > 0 {
			holder = strconv.Itoa(pid)
		}
		return nil, fmt.Errorf("data dir %s is in use by a running hub (pid %s); stop that hub first, or pass --data-dir with another directory", l.Dir, holder)
	}
	if err != nil {
		return nil, fmt.Errorf("lock data dir %s: %w", l.Dir, err)
	}
	return release, nil
}

// state is what the hub remembers in hub.json across restarts.
type state struct {
	// APIServerPort is kept so that kubeconfigs handed out earlier stay valid.
	APIServerPort int `json:"apiserverPort"`
	// RegistryPort is the fleet registry's, kept so that clusters made earlier still reach it.
	RegistryPort int `json:"registryPort,omitempty"`
	// RegistryPullPort is where the registry serves real nodes, read-only.
	RegistryPullPort int `json:"registryPullPort,omitempty"`
	// DeliveryPort is the agents' delivery stream's, which their settings name.
	DeliveryPort int `json:"deliveryPort,omitempty"`
	// MetricsPort is the metrics query API's, which its APIService names.
	MetricsPort int `json:"metricsPort,omitempty"`
	// ProxyPort is the cluster proxy's, which its APIService names.
	ProxyPort int `json:"proxyPort,omitempty"`
	// IssuerPort is the OpenID Connect issuer's: its URL is in every token and every API
	// server's authentication configuration.
	IssuerPort int `json:"issuerPort,omitempty"`
	// ClusterAccessBound says the hub once bound v1alpha1.ClusterAccessRole to every
	// authenticated user; it does not again, so that a deleted binding stays deleted.
	ClusterAccessBound bool `json:"clusterAccessBound,omitempty"`
}

func loadState(l Layout) (state, error) {
	var s state
	raw, err := os.ReadFile(l.State())
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read hub state: %w", err)
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return s, fmt.Errorf("read hub state %s: %w; remove the file to start with fresh ports", l.State(), err)
	}
	return s, nil
}

func saveState(l Layout, s state) error {
	raw, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return kubeproc.WriteFileDurable(l.State(), append(raw, '\n'), 0o644)
}

// RegistryAddr is the address on the host's loopback of the fleet registry of the hub whose
// data dir this is, as its last start chose it.
func (l Layout) RegistryAddr() (string, error) {
	st, err := loadState(l)
	if err != nil {
		return "", err
	}
	if st.RegistryPort == 0 {
		return "", fmt.Errorf("the hub of %s has not run a fleet registry yet; start it (convoy up, or convoy hub), or pass --registry HOST:PORT", l.Dir)
	}
	return "127.0.0.1:" + strconv.Itoa(st.RegistryPort), nil
}
