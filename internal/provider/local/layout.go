package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// dir is one local cluster's directory, DATA/clusters/NAME. The hub writes config.json and
// authentication.yaml; the runtime process owns everything else.
type dir string

// authentication is the AuthenticationConfiguration of the cluster's API server, which reads
// it again when the hub changes it.
func (d dir) authentication() string { return filepath.Join(string(d), "authentication.yaml") }

func (d dir) config() string     { return filepath.Join(string(d), "config.json") }
func (d dir) lock() string       { return filepath.Join(string(d), "runtime.lock") }
func (d dir) status() string     { return filepath.Join(string(d), "status.json") }
func (d dir) ports() string      { return filepath.Join(string(d), "ports.json") }
func (d dir) kubeconfig() string { return filepath.Join(string(d), "kubeconfig") }
func (d dir) pki() string        { return filepath.Join(string(d), "pki") }
func (d dir) db() string         { return filepath.Join(string(d), "db") }
func (d dir) logs() string       { return filepath.Join(string(d), "logs") }
func (d dir) run() string        { return filepath.Join(string(d), "run") }
func (d dir) internal() string   { return filepath.Join(string(d), "internal") }
func (d dir) agent() string      { return filepath.Join(string(d), "agent") }

// podNetworkFile holds the cluster's pod network (podNetworkOf), once it has real nodes.
func (d dir) podNetworkFile() string { return filepath.Join(d.internal(), "pod-network") }

// config is what the hub asks the runtime to run.
type config struct {
	// Name of the cluster.
	Name string `json:"name"`
	// KubernetesVersion of the control plane.
	KubernetesVersion string `json:"kubernetesVersion"`
	// BinDir holds the binaries of the default Kubernetes version; other versions are in
	// BinDir/kubernetes/VERSION.
	BinDir string `json:"binDir"`
	// Registry is the fleet registry on the host's loopback (host:port), for real nodes.
	Registry string `json:"registry,omitempty"`
	// RegistryPull is where the nodes pull from it, read-only (forwarded to the fleet).
	RegistryPull string `json:"registryPull,omitempty"`
	// Agent, when set, makes the runtime run the cluster's agent.
	Agent *agentConfig `json:"agent,omitempty"`
	// Region, Zones and NodePools shape the cluster's nodes.
	Region    string              `json:"region,omitempty"`
	Zones     []string            `json:"zones,omitempty"`
	NodePools []v1alpha1.NodePool `json:"nodePools,omitempty"`
	// APIServer holds the settings the control plane runs with (feature gates, admission
	// plugins, an audit policy).
	APIServer *v1alpha1.APIServerSettings `json:"apiServer,omitempty"`
	// Namespaces the runtime makes when they are missing.
	Namespaces []string `json:"namespaces,omitempty"`
	// RBAC and AdmissionPolicies are the objects the runtime applies, labelled as a profile's,
	// deleting those so labelled that they no longer list (profileobjects.go).
	RBAC              *v1alpha1.RBACSettings     `json:"rbac,omitempty"`
	AdmissionPolicies []v1alpha1.AdmissionPolicy `json:"admissionPolicies,omitempty"`
}

// agentConfig is how the cluster's agent reaches the hub.
type agentConfig struct {
	HubURL    string `json:"hubURL"`
	HubCAFile string `json:"hubCAFile"`
	// DeliveryPort is the hub's delivery stream's, forwarded with the API server's.
	DeliveryPort int `json:"deliveryPort,omitempty"`
	// Metrics runs the agent's metrics collector.
	Metrics bool `json:"metrics,omitempty"`
	// Logs has the agent run the log collector on the cluster's real nodes.
	Logs bool `json:"logs,omitempty"`
}

// cluster is the Cluster that config describes, for desiredNodes.
func (c config) cluster() *v1alpha1.Cluster {
	return &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: c.Name},
		Spec: v1alpha1.ClusterSpec{
			Provider: v1alpha1.ProviderLocal, KubernetesVersion: c.KubernetesVersion,
			Region: c.Region, Zones: c.Zones, NodePools: slices.Clone(c.NodePools), // its own: callers change counts
		},
	}
}

// ports are the loopback ports a runtime chose; kept so that kubeconfigs stay valid.
type ports struct {
	APIServer int `json:"apiserver"`
	Kine      int `json:"kine"`
}

// ReadRuntimeStatus reads what the runtime of the local cluster in clusterDir last reported:
// its pid and its components' pids, states and restarts. Tests and benchmarks use it to find
// the processes of a member.
func ReadRuntimeStatus(clusterDir string) (RuntimeStatus, error) {
	var rs RuntimeStatus
	err := readJSON(dir(clusterDir).status(), &rs)
	return rs, err
}

// Component returns the status of one component by name.
func (rs RuntimeStatus) Component(name string) (kubeproc.Status, bool) {
	for _, c := range rs.Components {
		if c.Name == name {
			return c, true
		}
	}
	return kubeproc.Status{}, false
}

// volumes holds the directories of the cluster's volumes (the default StorageClass).
func (d dir) volumes() string { return filepath.Join(string(d), "volumes") }

// RuntimeStatus is what the runtime reports about itself, rewritten on every change.
type RuntimeStatus struct {
	PID   int    `json:"pid"`
	Phase string `json:"phase"`
	// Version is the Kubernetes version the control plane runs; during an upgrade, the one
	// it moves from until it runs the new one.
	Version    string            `json:"version"`
	Components []kubeproc.Status `json:"components"`
	// Upgrading says what an upgrade in progress is doing, the nodes' included: the cluster
	// does not run its config's version everywhere until it is empty.
	Upgrading string `json:"upgrading,omitempty"`
	// Blocked says why the upgrade cannot go on without help, naming what blocks it (a
	// PodDisruptionBudget, a node that does not come back).
	Blocked string `json:"blocked,omitempty"`
	// NodesError is why the nodes do not match the config yet, if they failed to.
	NodesError string `json:"nodesError,omitempty"`
	// AddonsError is why the add-ons of a cluster with real nodes, or its namespaces, default
	// RBAC and admission policies, are not applied, if they failed to be.
	AddonsError string `json:"addonsError,omitempty"`
}

func readJSON(path string, v any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

func writeJSON(path string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return kubeproc.WriteFileAtomic(path, append(raw, '\n'), 0o644)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}
