package v1alpha1

import (
	"strconv"
	"time"
)

// The contract between the hub and a cluster's agent: where the agent's things live on the
// hub and what they are called.
const (
	// ClusterNamespacePrefix starts the name of each cluster's namespace on the hub.
	ClusterNamespacePrefix = "convoy-cluster-"
	// AnnotationAgentGeneration counts a cluster's agent credentials: revoking moves it on, and
	// only the current generation's ServiceAccount and bootstrap tokens have any rights, so a
	// revocation holds at once, even while the API server still caches the old tokens.
	AnnotationAgentGeneration = "convoy.dev/agent-generation"
	// AgentLease is the Lease the agent renews as its heartbeat.
	AgentLease = "agent"
	// AgentConfigMap holds the settings the hub gives the agent (key heartbeatInterval).
	AgentConfigMap = "agent-config"
	// LabelCluster marks hub objects that belong to one cluster.
	LabelCluster = "convoy.dev/cluster"
	// BootstrapGroupPrefix starts the extra group a cluster's bootstrap tokens carry; the
	// cluster's name and credential generation follow it (see BootstrapGroup).
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
	// MinHeartbeatInterval is the shortest interval an agent takes from its hub; it takes a
	// shorter one for a mistake and uses DefaultHeartbeatInterval, and the hub refuses one.
	MinHeartbeatInterval = 100 * time.Millisecond
	// DefaultMaxHeartbeatRate is how many heartbeats a second the whole fleet may send the
	// hub by default (see FleetHeartbeatInterval).
	DefaultMaxHeartbeatRate = 50
)

// FleetHeartbeatInterval is the interval agents are told to use in a fleet of the given size:
// base (DefaultHeartbeatInterval when zero) while the fleet's heartbeats stay within maxRate a
// second (DefaultMaxHeartbeatRate when zero), else the first of 5s, 10s, 15s, 20s, 30s, 60s,
// 120s that keeps them within it. Each heartbeat is a write to the hub's datastore, so a
// fleet of a thousand clusters heartbeating every 2 seconds would keep two cores busy with
// them alone. The steps keep agents from being told a new interval at every cluster added.
func FleetHeartbeatInterval(base time.Duration, maxRate float64, clusters int) time.Duration {
	if base <= 0 {
		base = DefaultHeartbeatInterval
	}
	if maxRate <= 0 {
		maxRate = DefaultMaxHeartbeatRate
	}
	need := time.Duration(float64(clusters) / maxRate * float64(time.Second))
	if need <= base {
		return base
	}
	for _, step := range []time.Duration{5 * time.Second, 10 * time.Second, 15 * time.Second, 20 * time.Second, 30 * time.Second, 60 * time.Second} {
		if step >= base && step >= need {
			return step
		}
	}
	return max(base, 120*time.Second)
}

// AgentGeneration is the cluster's current credential generation, 1 when never revoked.
func AgentGeneration(c *Cluster) int {
	g, err := strconv.Atoi(c.Annotations[AnnotationAgentGeneration])
	if err != nil || g < 1 {
		return 1
	}
	return g
}

// AgentServiceAccount is the name of the agent's ServiceAccount in a credential generation.
func AgentServiceAccount(generation int) string { return "agent-" + strconv.Itoa(generation) }

// BootstrapGroup is the group of a cluster's bootstrap tokens in a credential generation.
func BootstrapGroup(cluster string, generation int) string {
	return BootstrapGroupPrefix + cluster + ":" + strconv.Itoa(generation)
}

// ClusterNamespace is the hub namespace of a cluster's Works, Lease and agent identity.
func ClusterNamespace(cluster string) string { return ClusterNamespacePrefix + cluster }

// AgentUserPrefix begins the hub user name of every cluster's agent (its ServiceAccount's, in
// the cluster's namespace).
const AgentUserPrefix = "system:serviceaccount:" + ClusterNamespacePrefix

// AgentUser is the hub user name of cluster's agent in credential generation generation.
func AgentUser(cluster string, generation int) string {
	return AgentUserPrefix + cluster + ":" + AgentServiceAccount(generation)
}
