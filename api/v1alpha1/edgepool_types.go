package v1alpha1

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EdgePool is one edge Gateway resolved: the address, listeners, routes and servers its HAProxy
// instances serve. The hub's gateway controller writes it, in SystemNamespace under the name
// EdgePoolName(namespace, gateway), from the Gateway API objects and the agents' reports, and
// deletes it when the Gateway goes. The pool supervisors (the hub's own, and `convoy edge` on
// edge hosts) run it; each writes only its own entries of status.instances.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,categories=convoy
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Gateway",type=string,JSONPath=`.spec.gateway`
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.address`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type EdgePool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   EdgePoolSpec   `json:"spec"`
	Status EdgePoolStatus `json:"status,omitempty"`
}

// EdgePoolName is the EdgePool of the Gateway NAMESPACE/NAME (a namespace holds no dot):
// NAMESPACE.NAME, cut and completed with a hash of the whole when that is longer than 253.
func EdgePoolName(namespace, gateway string) string {
	name := namespace + "." + gateway
	if len(name) <= 253 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return strings.TrimRight(name[:253-17], ".-") + "-" + hex.EncodeToString(sum[:8])
}

// EdgePoolSpec is what a pool serves (internal/edge.Pool, as stored).
type EdgePoolSpec struct {
	// Gateway is the Gateway's NAMESPACE/NAME.
	// +required
	Gateway string `json:"gateway"`
	// Address is the IP address the pool's listeners bind.
	// +required
	Address string `json:"address"`
	// +optional
	Limits EdgeLimits `json:"limits,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Listeners []EdgeListener `json:"listeners,omitempty"`
}

// EdgeLimits bound what each instance of a pool takes; zero means no limit.
type EdgeLimits struct {
	// +optional
	// +kubebuilder:validation:Minimum=0
	MaxConnections int32 `json:"maxConnections,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=0
	RequestsPerSecond int32 `json:"requestsPerSecond,omitempty"`
}

// EdgeListener is a port of the pool and its routes, in order of precedence.
type EdgeListener struct {
	Name string `json:"name"`
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
	// +kubebuilder:validation:Enum=HTTP;TCP
	Protocol string `json:"protocol"`
	// +optional
	Routes []EdgeRoute `json:"routes,omitempty"`
}

// EdgeRoute is one match of a route's rule and its backend.
type EdgeRoute struct {
	// Name is NAMESPACE/ROUTE/RULE-INDEX, with the match's index when a rule has several.
	Name string `json:"name"`
	// +optional
	Hostnames []string `json:"hostnames,omitempty"`
	// +optional
	PathPrefix string `json:"pathPrefix,omitempty"`
	// +optional
	HealthPath string `json:"healthPath,omitempty"`
	// Timeout bounds each try at a server; empty means the edge's default.
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// +optional
	Clusters []EdgeClusterServers `json:"clusters,omitempty"`
}

// EdgeClusterServers are a backend's servers in one cluster.
type EdgeClusterServers struct {
	Cluster string `json:"cluster"`
	// Servers are "IP:PORT*WEIGHT" (weight 1-256), separated by spaces. A pool may hold
	// ten thousand: as one string per cluster they cost the API server, the datastore and
	// every watcher a fraction of what as many objects would.
	// +optional
	Servers string `json:"servers,omitempty"`
}

// EdgePoolStatus is what the supervisors report of their instances.
type EdgePoolStatus struct {
	// Instances are the pool's HAProxy instances, one entry each, written by the supervisor
	// that runs it.
	// +optional
	// +listType=map
	// +listMapKey=name
	Instances []EdgeInstance `json:"instances,omitempty"`
}

// EdgeInstancePhase says whether an instance serves its pool's spec.
type EdgeInstancePhase string

// The phases of an instance.
const (
	// EdgeServing: the instance serves spec as of observedGeneration.
	EdgeServing EdgeInstancePhase = "Serving"
	// EdgeRefused: HAProxy refused the configuration of observedGeneration; the instance
	// serves the last one it accepted (message says why).
	EdgeRefused EdgeInstancePhase = "Refused"
	// EdgeFailed: the instance does not run (message says why); the supervisor retries.
	EdgeFailed EdgeInstancePhase = "Failed"
)

// EdgeInstance is one HAProxy instance of a pool.
type EdgeInstance struct {
	// Name is SUPERVISOR/INDEX.
	Name string `json:"name"`
	// Supervisor is the hub ("hub") or the edge host that runs it.
	Supervisor string `json:"supervisor"`
	// ObservedGeneration is the spec's generation the phase is about.
	ObservedGeneration int64             `json:"observedGeneration"`
	Phase              EdgeInstancePhase `json:"phase"`
	// +optional
	Message string `json:"message,omitempty"`
	// Metrics is the URL of its Prometheus exporter.
	// +optional
	Metrics string `json:"metrics,omitempty"`
	// Reloads counts its configuration reloads; RuntimeChanges its Runtime API updates.
	// +optional
	Reloads int64 `json:"reloads,omitempty"`
	// +optional
	RuntimeChanges int64 `json:"runtimeChanges,omitempty"`
	// +optional
	LastChange metav1.Time `json:"lastChange,omitempty"`
	// Heartbeat is when its supervisor last reported it; one that stops reporting (an edge
	// host that died) stops counting after EdgeInstanceTTL.
	// +optional
	Heartbeat metav1.Time `json:"heartbeat,omitempty"`
}

// EdgeHeartbeatInterval is how often a supervisor reports its instances, and EdgeInstanceTTL
// how long an instance counts without a report.
const (
	EdgeHeartbeatInterval = 30 * time.Second
	EdgeInstanceTTL       = 3 * EdgeHeartbeatInterval
)

// EdgePoolList is a list of EdgePools.
//
// +kubebuilder:object:root=true
type EdgePoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EdgePool `json:"items"`
}
