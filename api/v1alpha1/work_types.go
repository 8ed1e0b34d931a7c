package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Work carries the manifests one member cluster must run. It lives in that cluster's namespace
// on the hub (convoy-cluster-NAME), where only that cluster's agent can read it. The agent
// applies the manifests with server-side apply and reports each one's state in status.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,categories=convoy
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Resources",type=integer,JSONPath=`.status.summary.total`
// +kubebuilder:printcolumn:name="Applied",type=integer,JSONPath=`.status.summary.applied`
// +kubebuilder:printcolumn:name="Available",type=integer,JSONPath=`.status.summary.available`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Work struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   WorkSpec   `json:"spec"`
	Status WorkStatus `json:"status,omitempty"`
}

// DriftPolicy says what the agent does when a member-side change alters fields it applied.
// +kubebuilder:validation:Enum=Correct;ReportOnly
type DriftPolicy string

// The drift policies.
const (
	// DriftCorrect applies the manifest again, taking the fields back.
	DriftCorrect DriftPolicy = "Correct"
	// DriftReportOnly marks the resource drifted and leaves the member's change in place.
	DriftReportOnly DriftPolicy = "ReportOnly"
)

// DeletionPolicy says what happens to a resource the Work no longer lists, or to all of them
// when the Work is deleted.
// +kubebuilder:validation:Enum=Delete;Orphan
type DeletionPolicy string

// The deletion policies.
const (
	// DeletionDelete removes dropped resources from the member, and all of them before the Work goes.
	DeletionDelete DeletionPolicy = "Delete"
	// DeletionOrphan leaves dropped resources, and those of a deleted Work, on the member.
	DeletionOrphan DeletionPolicy = "Orphan"
)

// WorkSpec lists what to apply and how.
type WorkSpec struct {
	// Manifests are complete Kubernetes objects, applied in dependency order: namespaces and
	// CRDs first, then configuration, then workloads.
	// +optional
	// +kubebuilder:validation:MaxItems=1000
	Manifests []runtime.RawExtension `json:"manifests,omitempty"`

	// DriftPolicy is Correct (the default: re-apply) or ReportOnly.
	// +optional
	// +kubebuilder:default=Correct
	DriftPolicy DriftPolicy `json:"driftPolicy,omitempty"`

	// DeletionPolicy is Delete (the default: remove a resource from the member when it is
	// dropped from the Work or the Work is deleted) or Orphan (leave it on the member).
	// +optional
	// +kubebuilder:default=Delete
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// ForceConflicts takes fields over from other field managers on the member. Without it
	// a conflict is reported on the resource and the other manager keeps its fields.
	// +optional
	ForceConflicts bool `json:"forceConflicts,omitempty"`
}

// Health of an applied resource.
// +kubebuilder:validation:Enum=Healthy;Progressing;Degraded;Unknown
type Health string

// The health values.
const (
	HealthHealthy     Health = "Healthy"
	HealthProgressing Health = "Progressing"
	HealthDegraded    Health = "Degraded"
	HealthUnknown     Health = "Unknown"
)

// ResourceState says where a resource is in its life on the member.
// +kubebuilder:validation:Enum=Applied;Failed;Deleting
type ResourceState string

// The resource states.
const (
	// ResourceApplied: the manifest is applied.
	ResourceApplied ResourceState = "Applied"
	// ResourceFailed: the last apply failed; see message.
	ResourceFailed ResourceState = "Failed"
	// ResourceDeleting: the resource left the Work (a tombstone) and the agent has not yet
	// confirmed that it is gone from the member.
	ResourceDeleting ResourceState = "Deleting"
)

// ResourceIdentifier names one object on the member.
type ResourceIdentifier struct {
	Group     string `json:"group,omitempty"`
	Version   string `json:"version"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// ResourceStatus is the state of one manifest on the member.
type ResourceStatus struct {
	ResourceIdentifier `json:",inline"`
	// State is Applied, Failed or Deleting.
	State ResourceState `json:"state"`
	// Health of the resource on the member.
	// +optional
	Health Health `json:"health,omitempty"`
	// Drifted is true when a member-side change altered fields the agent applied.
	// +optional
	Drifted bool `json:"drifted,omitempty"`
	// Message explains a failure, a drift or the health.
	// +optional
	Message string `json:"message,omitempty"`
	// Hash identifies the manifest last applied, so a restarted agent knows what is current.
	// +optional
	Hash string `json:"hash,omitempty"`
	// Replicas and AvailableReplicas are a workload's desired and available replicas.
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// +optional
	AvailableReplicas *int32 `json:"availableReplicas,omitempty"`
	// Conditions are the type and status of the member object's status.conditions (at most
	// 16), for rollout gates.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	Conditions []ResourceCondition `json:"conditions,omitempty"`
	// Reach is how a Service with NodePorts is reached from outside its cluster, for the
	// edge load balancer.
	// +optional
	Reach *ServiceReach `json:"reach,omitempty"`
}

// ServiceReach is how a Service of a member is reached from outside the member: each port's
// NodePort on the Ready nodes, with the ready endpoints behind each node. The hub's edge load
// balancer makes its servers of it.
type ServiceReach struct {
	// Ports are the Service's ports that have a NodePort.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Ports []ReachPort `json:"ports,omitempty"`
	// Local is true when the Service's externalTrafficPolicy is Local: a node forwards only to
	// the endpoints it runs.
	// +optional
	Local bool `json:"local,omitempty"`
	// Endpoints counts the Service's ready endpoints.
	Endpoints int32 `json:"endpoints"`
	// Nodes are the Ready nodes, by address, each with the ready endpoints it runs.
	// +optional
	// +kubebuilder:validation:MaxItems=1000
	Nodes []ReachNode `json:"nodes,omitempty"`
}

// ReachPort is one port of a Service and its NodePort.
type ReachPort struct {
	// +optional
	Name     string `json:"name,omitempty"`
	Port     int32  `json:"port"`
	NodePort int32  `json:"nodePort"`
}

// ReachNode is a Ready node of a member and the ready endpoints of one Service it runs.
type ReachNode struct {
	// Address is the node's InternalIP.
	Address   string `json:"address"`
	Endpoints int32  `json:"endpoints"`
}

// ResourceCondition is one condition of a member object, without its message.
type ResourceCondition struct {
	Type   string `json:"type"`
	Status string `json:"status"`
}

// WorkSummary counts the resources by state.
type WorkSummary struct {
	// +optional
	Total int32 `json:"total,omitempty"`
	// +optional
	Applied int32 `json:"applied,omitempty"`
	// +optional
	Available int32 `json:"available,omitempty"`
	// +optional
	Failed int32 `json:"failed,omitempty"`
	// +optional
	Drifted int32 `json:"drifted,omitempty"`
	// +optional
	Deleting int32 `json:"deleting,omitempty"`
}

// Condition types on a Work.
const (
	// WorkApplied is True when every manifest is applied.
	WorkApplied = "Applied"
	// WorkAvailable is True when every applied resource is Healthy.
	WorkAvailable = "Available"
	// WorkDrifted is True when some resource drifted.
	WorkDrifted = "Drifted"
)

// WorkStatus is what the agent reports.
type WorkStatus struct {
	// ObservedGeneration is the spec generation the agent last applied.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Resources lists every manifest, and every tombstone not yet confirmed deleted.
	// +optional
	Resources []ResourceStatus `json:"resources,omitempty"`
	// Summary counts the resources.
	// +optional
	Summary WorkSummary `json:"summary,omitempty"`
	// Conditions: Applied, Available, Drifted.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// WorkList is a list of Works.
// +kubebuilder:object:root=true
type WorkList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Work `json:"items"`
}
