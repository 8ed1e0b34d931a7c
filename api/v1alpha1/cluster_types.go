package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ProviderName names the provider that owns a Cluster's lifecycle.
// +kubebuilder:validation:Enum=local;import
type ProviderName string

const (
	// ProviderLocal runs the cluster's control plane on the hub's machine, with kwok nodes.
	ProviderLocal ProviderName = "local"
	// ProviderImport registers an existing cluster from a kubeconfig; Convoy never changes its lifecycle.
	ProviderImport ProviderName = "import"
)

// MaxNodesPerPool is the largest node count one pool accepts.
const MaxNodesPerPool = 500

// MaxRealNodesPerPool is the largest node count a Real pool accepts (the CEL rule on NodePool
// says the same).
const MaxRealNodesPerPool = 10

// Labels the hub keeps on every Cluster, mirrored from its spec, so that label selectors
// (kubectl -l, Placements) can choose clusters by topology.
const (
	LabelProvider    = "convoy.dev/provider"
	LabelRegion      = "convoy.dev/region"
	LabelEnvironment = "convoy.dev/environment"
)

// Cluster is one member Kubernetes cluster of the fleet. The hub reconciles it with the
// provider named in spec.provider.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=convoy
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Provider",type=string,JSONPath=`.spec.provider`
// +kubebuilder:printcolumn:name="Region",type=string,JSONPath=`.spec.region`
// +kubebuilder:printcolumn:name="Env",type=string,JSONPath=`.spec.environment`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.inventory.kubernetesVersion`
// +kubebuilder:printcolumn:name="Nodes",type=integer,JSONPath=`.status.inventory.nodes.ready`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Profile",type=string,JSONPath=`.spec.profile.name`
// +kubebuilder:printcolumn:name="Revision",type=integer,JSONPath=`.status.profile.revision`
// +kubebuilder:printcolumn:name="Conformant",type=boolean,JSONPath=`.status.profile.conformant`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 40",message="cluster name must be at most 40 characters; pick a shorter name"
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="cluster name must be lower-case letters, digits and '-', start with a letter and end with a letter or digit (for example us-east-1)"
type Cluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   ClusterSpec   `json:"spec"`
	Status ClusterStatus `json:"status,omitempty"`
}

// ClusterSpec is what the user wants the cluster to be.
//
// +kubebuilder:validation:XValidation:rule="self.provider == 'import' || !has(self.kubeconfigSecretRef)",message="spec.kubeconfigSecretRef is only for provider import; a local cluster's kubeconfig is made by the hub"
// +kubebuilder:validation:XValidation:rule="self.provider != 'import' || !has(self.nodePools) || size(self.nodePools) == 0",message="an imported cluster's nodes are managed outside Convoy; remove spec.nodePools"
// +kubebuilder:validation:XValidation:rule="!has(self.nodePools) || !has(self.zones) || self.nodePools.all(p, !has(p.zone) || p.zone in self.zones)",message="every spec.nodePools[].zone must be one of spec.zones"
// +kubebuilder:validation:XValidation:rule="!has(self.nodePools) || self.nodePools.map(p, p.count).sum() <= 1000",message="a cluster may have at most 1000 nodes in all its pools together"
// +kubebuilder:validation:XValidation:rule="!has(self.profile) || !has(self.kubernetesVersion) || self.kubernetesVersion.size() == 0",message="a cluster built from a profile runs the profile's Kubernetes version: remove spec.kubernetesVersion, or change the profile"
// +kubebuilder:validation:XValidation:rule="!has(self.profile) || !has(self.namespaces)",message="a cluster built from a profile has its profile's namespaces: remove spec.namespaces, or change the profile"
// +kubebuilder:validation:XValidation:rule="!has(self.profile) || !has(self.apiServer)",message="a cluster built from a profile has its profile's API server settings: remove spec.apiServer, or change the profile"
// +kubebuilder:validation:XValidation:rule="!has(self.profile) || !has(self.rbac)",message="a cluster built from a profile has its profile's default RBAC: remove spec.rbac, or change the profile"
// +kubebuilder:validation:XValidation:rule="!has(self.profile) || !has(self.admissionPolicies)",message="a cluster built from a profile has its profile's admission policies: remove spec.admissionPolicies, or change the profile"
// +kubebuilder:validation:XValidation:rule="has(self.profile) || !has(oldSelf.profile)",message="spec.profile cannot be removed; point the cluster at another profile instead"
type ClusterSpec struct {
	// Provider owns the cluster's lifecycle: "local" (a control plane on the hub's machine with
	// simulated nodes) or "import" (an existing cluster, read-only). It cannot change later.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.provider cannot change; delete the cluster and create it again with the other provider"
	Provider ProviderName `json:"provider"`

	// Region is where the cluster runs, for example us-east. It is mirrored to the label convoy.dev/region.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Region string `json:"region,omitempty"`

	// Zones are the failure zones inside the region that the cluster's nodes spread over.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Zones []string `json:"zones,omitempty"`

	// Environment is the stage the cluster serves, for example prod or staging. It is mirrored to
	// the label convoy.dev/environment.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Environment string `json:"environment,omitempty"`

	// Profile names the ClusterProfile the cluster is built from and held to. The profile then
	// says the Kubernetes version and the node pool templates: spec.kubernetesVersion must be
	// empty. It cannot be removed once set (make the profile's settings your own in another
	// profile instead).
	// +optional
	Profile *ProfileRef `json:"profile,omitempty"`

	// KubernetesVersion is the control-plane version, for example v1.37.2. Empty means the
	// hub's default version, or the profile's. The hub must have binaries for it.
	// +optional
	// +kubebuilder:validation:Pattern=`^v[0-9]+\.[0-9]+\.[0-9]+$`
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`

	// APIServer holds the API server settings Convoy allows (feature gates, admission plugins,
	// an audit policy), for a local cluster. A cluster built from a profile gets its profile's:
	// leave it out then.
	// +optional
	APIServer *APIServerSettings `json:"apiServer,omitempty"`

	// Namespaces the cluster has, for a local cluster: its runtime makes them. A cluster
	// built from a profile gets its profile's: leave it out then.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespaces []string `json:"namespaces,omitempty"`

	// RBAC is the cluster's default RBAC (ClusterRoles and ClusterRoleBindings), for a local
	// cluster: its runtime applies them, labelled convoy.dev/profile-managed, and deletes those
	// so labelled that the spec no longer lists. A cluster built from a profile gets its
	// profile's: leave it out then.
	// +optional
	RBAC *RBACSettings `json:"rbac,omitempty"`

	// AdmissionPolicies the cluster enforces (ValidatingAdmissionPolicies and their bindings),
	// for a local cluster, made and kept as RBAC is. A cluster built from a profile gets its
	// profile's: leave it out then.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	AdmissionPolicies []AdmissionPolicy `json:"admissionPolicies,omitempty"`

	// NodePools are groups of identical nodes.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=20
	NodePools []NodePool `json:"nodePools,omitempty"`

	// Taints keep Placements away from the cluster unless they tolerate them. NoSchedule keeps
	// what is placed there and takes nothing new; NoExecute takes placed work away too.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:XValidation:rule="self.all(t, t.effect == 'NoSchedule' || t.effect == 'NoExecute')",message="a cluster taint's effect must be NoSchedule or NoExecute"
	Taints []corev1.Taint `json:"taints,omitempty"`

	// KubeconfigSecretRef names a Secret in the convoy-system namespace whose key "kubeconfig"
	// holds the kubeconfig of an imported cluster. An imported cluster without it is registered
	// through its agent alone (convoy cluster join): the hub never connects to it.
	// +optional
	KubeconfigSecretRef *SecretReference `json:"kubeconfigSecretRef,omitempty"`
}

// AgentOnly reports whether the cluster is known only through its agent: imported without a
// kubeconfig, so the hub never connects to it.
func (c *Cluster) AgentOnly() bool {
	return c.Spec.Provider == ProviderImport && c.Spec.KubeconfigSecretRef == nil
}

// SecretReference names a Secret in the hub's convoy-system namespace.
type SecretReference struct {
	// Name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// NodePool is a group of identical nodes.
//
// +kubebuilder:validation:XValidation:rule="!has(self.kind) || self.kind != 'Real' || !has(self.autoscale) || self.autoscale.max <= 10",message="a Real node pool autoscales to at most 10 nodes"
// +kubebuilder:validation:XValidation:rule="!has(self.kind) || self.kind != 'Real' || self.count <= 10",message="a Real node pool has at most 10 nodes: each is a kubelet and a containerd on the hub's machine; use a Simulated pool for more"
type NodePool struct {
	// Name of the pool, unique in the cluster.
	// +required
	// +kubebuilder:validation:MaxLength=30
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// Kind says whether the pool's nodes are Simulated (kwok: pods say they run, nothing runs;
	// thousands fit on one machine) or Real (each node a network namespace on the hub's
	// machine with its own containerd and kubelet, running real containers). Local clusters
	// only; it cannot change, make another pool instead.
	// +optional
	// +kubebuilder:default=Simulated
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="a node pool's kind cannot change; add a pool of the other kind and scale this one to 0"
	Kind NodeKind `json:"kind,omitempty"`

	// Count is the number of nodes, from 0 to 500.
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=500
	Count int32 `json:"count"`

	// CPU each node offers.
	// +optional
	// +kubebuilder:default="4"
	CPU *resource.Quantity `json:"cpu,omitempty"`

	// Memory each node offers.
	// +optional
	// +kubebuilder:default="16Gi"
	Memory *resource.Quantity `json:"memory,omitempty"`

	// Pods is the most pods each node runs.
	// +optional
	// +kubebuilder:default=110
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	Pods int32 `json:"pods,omitempty"`

	// Zone the pool's nodes are in; it must be one of spec.zones when those are set.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Zone string `json:"zone,omitempty"`

	// Labels added to every node of the pool.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`

	// Taints added to every node of the pool.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Taints []corev1.Taint `json:"taints,omitempty"`

	// Autoscale lets the pool's node count move between min and max on its own, as
	// cluster-autoscaler does: one node more when a pod waits for room a node of the pool
	// would give, one fewer (drained first) when the pool's last node has run nothing but
	// DaemonSet pods for idleSeconds. count is then where it starts.
	// +optional
	Autoscale *NodePoolAutoscale `json:"autoscale,omitempty"`
}

// NodePoolAutoscale bounds an autoscaled node pool.
//
// +kubebuilder:validation:XValidation:rule="self.min <= self.max",message="autoscale.min must not be above autoscale.max"
type NodePoolAutoscale struct {
	// Min is the fewest nodes the pool keeps.
	// +kubebuilder:validation:Minimum=0
	Min int32 `json:"min"`
	// Max is the most nodes the pool grows to.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=500
	Max int32 `json:"max"`
	// IdleSeconds is how long the pool's last node runs nothing but DaemonSet pods before it
	// is removed (default 120).
	// +optional
	// +kubebuilder:validation:Minimum=10
	IdleSeconds *int32 `json:"idleSeconds,omitempty"`
}

// NodeKind says what a node pool's nodes are.
// +kubebuilder:validation:Enum=Simulated;Real
type NodeKind string

// The kinds of node.
const (
	// NodeSimulated nodes are simulated by kwok.
	NodeSimulated NodeKind = "Simulated"
	// NodeReal nodes run real containers.
	NodeReal NodeKind = "Real"
)

// ClusterPhase is a one-word summary of a Cluster's state; the conditions say why.
// +kubebuilder:validation:Enum=Pending;Provisioning;Joining;Ready;Updating;Deleting;Failed;Unreachable
type ClusterPhase string

// The phases a Cluster goes through.
const (
	ClusterPending      ClusterPhase = "Pending"
	ClusterProvisioning ClusterPhase = "Provisioning"
	ClusterJoining      ClusterPhase = "Joining"
	ClusterReady        ClusterPhase = "Ready"
	ClusterUpdating     ClusterPhase = "Updating"
	ClusterDeleting     ClusterPhase = "Deleting"
	ClusterFailed       ClusterPhase = "Failed"
	ClusterUnreachable  ClusterPhase = "Unreachable"
)

// Condition types on a Cluster.
const (
	// ClusterAccepted is True when the hub understood the spec and has a provider for it.
	ClusterAccepted = "Accepted"
	// ClusterProvisioned is True when the provider reports the control plane running and in
	// step with the spec (for local clusters: API server ready, every node Ready).
	ClusterProvisioned = "Provisioned"
	// ClusterReadyCondition is True when the cluster's agent heartbeats and reports a healthy
	// API server: the cluster can take work.
	ClusterReadyCondition = "Ready"
	// ClusterUnreachableCondition is True when the agent has joined before but its heartbeat
	// is older than the hub's grace period.
	ClusterUnreachableCondition = "Unreachable"
)

// ClusterStatus is what the hub knows of the cluster. Each field has one writer: the hub's
// Cluster controller writes the conditions, the phase derived from them, observedGeneration,
// the endpoint and how the cluster stands against its profile; the cluster's agent writes the inventory, the only source of facts about
// the member itself (its version, nodes and capacity).
type ClusterStatus struct {
	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Phase summarises the state; see the conditions for the reasons.
	// +optional
	Phase ClusterPhase `json:"phase,omitempty"`

	// Endpoint is the URL of the cluster's API server, as its provider knows it; empty for a
	// cluster known only through its agent.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// Inventory is what the cluster's agent last reported.
	// +optional
	Inventory *Inventory `json:"inventory,omitempty"`

	// Profile is how the cluster stands against its profile's revision, field by field.
	// +optional
	Profile *ClusterProfileState `json:"profile,omitempty"`

	// Conditions say why the cluster is in its phase.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Inventory is the agent's report of its cluster, sent when something changes (at most every
// few seconds).
type Inventory struct {
	// KubernetesVersion the cluster's API server reports.
	// +optional
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// APIHealthy is true when the API server answers /readyz.
	APIHealthy bool `json:"apiHealthy"`
	// Nodes counts the nodes.
	Nodes NodeCounts `json:"nodes"`
	// Zones are the topology.kubernetes.io/zone values of the Ready nodes.
	// +optional
	Zones []string `json:"zones,omitempty"`
	// Allocatable sums the Ready nodes' allocatable cpu, memory and pods.
	// +optional
	Allocatable corev1.ResourceList `json:"allocatable,omitempty"`
	// Requested sums the requests of the pods that run or wait to run.
	// +optional
	Requested corev1.ResourceList `json:"requested,omitempty"`
	// KubeletVersions counts the nodes by the version their kubelet reports.
	// +optional
	KubeletVersions map[string]int32 `json:"kubeletVersions,omitempty"`
	// Addons are the versions of the add-ons the agent found (coredns, kube-proxy, storage,
	// metrics), by name.
	// +optional
	Addons map[string]string `json:"addons,omitempty"`
	// FeatureGates are the API server's feature gates that are enabled, as its metrics
	// (kubernetes_feature_enabled) say; the others are disabled.
	// +optional
	// +kubebuilder:validation:MaxItems=512
	EnabledFeatureGates []string `json:"enabledFeatureGates,omitempty"`
	// Namespaces are the member's namespaces that a profile may ask for, as far as the agent
	// was asked to look (all of them, up to 256).
	// +optional
	// +kubebuilder:validation:MaxItems=256
	Namespaces []string `json:"namespaces,omitempty"`
	// ProfileObjects are the member's objects a profile made (those labelled
	// convoy.dev/profile-managed: ClusterRoles, ClusterRoleBindings, ValidatingAdmissionPolicies
	// and their bindings), each with a digest of its content; absent when the agent could not
	// list them.
	// +optional
	ProfileObjects *ObservedProfileObjects `json:"profileObjects,omitempty"`
	// AgentVersion is the version of the reporting agent.
	// +optional
	AgentVersion string `json:"agentVersion,omitempty"`
	// ReportedAt is when the agent sent this report.
	ReportedAt metav1.Time `json:"reportedAt"`
}

// NodeCounts counts a cluster's nodes.
type NodeCounts struct {
	// Total nodes registered.
	// +optional
	Total int32 `json:"total,omitempty"`
	// Ready nodes.
	// +optional
	Ready int32 `json:"ready,omitempty"`
}

// ClusterList is a list of Clusters.
// +kubebuilder:object:root=true
type ClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Cluster `json:"items"`
}
