package v1alpha1

import "time"

// The contract between the hub and a cluster's agent: where the agent's things live on the
// hub and what they are called.
const (
	// ClusterNamespacePrefix starts the name of each cluster's namespace on the hub.
	ClusterNamespacePrefix = "convoy-cluster-"
	// AgentServiceAccount is the agent's identity in its cluster's namespace.
	AgentServiceAccount = "agent"
	// AgentLease is the Lease the agent renews as its heartbeat.
	AgentLease = "agent"
	// AgentConfigMap holds the settings the hub gives the agent (key heartbeatInterval).
	AgentConfigMap = "agent-config"
	// LabelCluster marks hub objects that belong to one cluster.
	LabelCluster = "convoy.dev/cluster"
	// BootstrapGroupPrefix starts the extra group a cluster's bootstrap tokens carry; the
	// cluster's name follows it.
	BootstrapGroupPrefix = "system:bootstrappers:convoy:"
	// AgentFinalizer holds a Work until its agent has removed (or orphaned) its resources.
	AgentFinalizer = "convoy.dev/agent"
	// LabelManagedBy marks member objects the agent applied.
	LabelManagedBy = "convoy.dev/managed-by"
	// ManagedByAgent is the value of LabelManagedBy.
	ManagedByAgent = "convoy-agent"
	// AnnotationWork names the Work (NAMESPACE/NAME on the hub) a member object comes from.
	AnnotationWork = "convoy.dev/work"
	// AgentFieldManager is the agent's server-side apply identity on members.
	AgentFieldManager = "convoy-agent"
	// DefaultHeartbeatInterval is how often an agent renews its Lease unless the hub says
	// otherwise.
	DefaultHeartbeatInterval = 2 * time.Second
)

// ClusterNamespace is the hub namespace of a cluster's Works, Lease and agent identity.
func ClusterNamespace(cluster string) string { return ClusterNamespacePrefix + cluster }
