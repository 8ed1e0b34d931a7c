package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Placement decides which member clusters get which resources of its namespace, and how
// their replicas are shared. The resources themselves stay plain Kubernetes objects on the hub.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=plc,categories=convoy
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Replicas",type=string,JSONPath=`.spec.replicas.type`
// +kubebuilder:printcolumn:name="Clusters",type=integer,JSONPath=`.status.scheduledClusters`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63",message="placement name must be at most 63 characters, since it labels the Works written for it; pick a shorter name"
type Placement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   PlacementSpec   `json:"spec"`
	Status PlacementStatus `json:"status,omitempty"`
}

// PlacementSpec says what goes where.
type PlacementSpec struct {
	// Resources selects the templates in the Placement's namespace to propagate.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Resources []ResourceSelector `json:"resources"`

	// Clusters narrows the clusters that may receive the resources. Empty means every cluster.
	// +optional
	Clusters ClusterAffinity `json:"clusters,omitempty"`

	// Tolerations let the resources go to clusters with matching taints.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// Spread limits how the chosen clusters spread over a topology (region, zone or environment).
	// +optional
	// +listType=map
	// +listMapKey=topology
	// +kubebuilder:validation:MaxItems=3
	Spread []SpreadConstraint `json:"spread,omitempty"`

	// NumberOfClusters, when set, is how many of the eligible clusters to choose.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	NumberOfClusters *int32 `json:"numberOfClusters,omitempty"`

	// Replicas says how a workload's replicas are shared between the chosen clusters.
	// +optional
	Replicas *ReplicaScheduling `json:"replicas,omitempty"`

	// Overrides change the resources for some clusters.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Overrides []Override `json:"overrides,omitempty"`

	// Rollout rolls changes of the templates out in waves with health gates. Without it, every
	// chosen cluster gets a change at once.
	// +optional
	Rollout *RolloutStrategy `json:"rollout,omitempty"`

	// Failover moves the Divided replicas of a lost cluster to the healthy ones, and back once
	// it is stable again. It is on by default.
	// +optional
	Failover *FailoverPolicy `json:"failover,omitempty"`

	// PropagateDependencies also sends what the selected resources need: the ConfigMaps,
	// Secrets, ServiceAccounts and PersistentVolumeClaims a selected workload refers to, and
	// the CRD of a selected custom resource. The namespace always goes. Default true.
	// +optional
	// +kubebuilder:default=true
	PropagateDependencies *bool `json:"propagateDependencies,omitempty"`

	// PreserveResourcesOnDeletion leaves the resources on the members when they stop being
	// placed there, instead of deleting them.
	// +optional
	PreserveResourcesOnDeletion bool `json:"preserveResourcesOnDeletion,omitempty"`
}

// ResourceSelector selects templates in the Placement's namespace.
//
// +kubebuilder:validation:XValidation:rule="has(self.kind) || has(self.labelSelector)",message="a resource selector needs a kind or a labelSelector, so it cannot select everything by accident"
// +kubebuilder:validation:XValidation:rule="!has(self.name) || has(self.kind)",message="a resource selector with a name needs a kind too"
// +kubebuilder:validation:XValidation:rule="!(has(self.name) && has(self.labelSelector))",message="use either name or labelSelector in one resource selector, not both"
type ResourceSelector struct {
	// Group is the API group, for example "apps"; empty is the core group.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Group string `json:"group,omitempty"`

	// Kind is the resource kind, for example Deployment.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Z][A-Za-z0-9]*$`
	Kind string `json:"kind,omitempty"`

	// Name selects one object.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`

	// LabelSelector selects objects by label.
	// +optional
	LabelSelector *metav1.LabelSelector `json:"labelSelector,omitempty"`
}

// ClusterAffinity narrows the set of clusters. Every field that is set must match.
type ClusterAffinity struct {
	// Names lists clusters by name.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=1000
	Names []string `json:"names,omitempty"`

	// LabelSelector selects clusters by their labels.
	// +optional
	LabelSelector *metav1.LabelSelector `json:"labelSelector,omitempty"`

	// Regions the clusters must be in.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	Regions []string `json:"regions,omitempty"`

	// Zones the clusters must have.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	Zones []string `json:"zones,omitempty"`

	// Environments the clusters must serve.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	Environments []string `json:"environments,omitempty"`
}

// Topology is a dimension that clusters spread over.
// +kubebuilder:validation:Enum=region;zone;environment
type Topology string

// SpreadConstraint limits how chosen clusters spread over one topology.
//
// +kubebuilder:validation:XValidation:rule="has(self.maxClustersPerGroup) || has(self.minGroups)",message="a spread constraint needs maxClustersPerGroup, minGroups or both"
type SpreadConstraint struct {
	// Topology is the dimension: region, zone or environment.
	// +required
	Topology Topology `json:"topology"`

	// MaxClustersPerGroup is the most clusters chosen in one region (zone, environment).
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxClustersPerGroup *int32 `json:"maxClustersPerGroup,omitempty"`

	// MinGroups is the fewest different regions (zones, environments) the choice must cover.
	// +optional
	// +kubebuilder:validation:Minimum=1
	MinGroups *int32 `json:"minGroups,omitempty"`
}

// ReplicaSchedulingType says how replicas are shared.
// +kubebuilder:validation:Enum=Duplicated;Divided
type ReplicaSchedulingType string

// The replica scheduling types.
const (
	// Duplicated gives every chosen cluster the template's replicas.
	Duplicated ReplicaSchedulingType = "Duplicated"
	// Divided splits the template's replicas between the chosen clusters.
	Divided ReplicaSchedulingType = "Divided"
)

// ReplicaScheduling says how a workload's replicas are shared between clusters.
//
// +kubebuilder:validation:XValidation:rule="self.type == 'Divided' || (!has(self.weights) && !has(self.dynamicWeight) && !has(self.minReplicasPerCluster))",message="weights, dynamicWeight and minReplicasPerCluster apply only to type Divided"
// +kubebuilder:validation:XValidation:rule="!(has(self.weights) && has(self.dynamicWeight))",message="use either static weights or a dynamicWeight, not both"
type ReplicaScheduling struct {
	// Type is Duplicated (each cluster gets the template's replicas) or Divided (the replicas are split).
	// +optional
	// +kubebuilder:default=Duplicated
	Type ReplicaSchedulingType `json:"type,omitempty"`

	// Weights split Divided replicas statically; a cluster matching no entry gets weight 1.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Weights []ClusterWeight `json:"weights,omitempty"`

	// DynamicWeight splits Divided replicas by each cluster's available capacity.
	// +optional
	// +kubebuilder:validation:Enum=AvailableReplicas
	DynamicWeight string `json:"dynamicWeight,omitempty"`

	// MinReplicasPerCluster is the fewest replicas any chosen cluster gets when dividing.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MinReplicasPerCluster *int32 `json:"minReplicasPerCluster,omitempty"`
}

// ClusterWeight is the share of replicas that some clusters get.
type ClusterWeight struct {
	// Clusters this weight applies to.
	// +required
	Clusters ClusterAffinity `json:"clusters"`

	// Weight, from 1 to 1000.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	Weight int32 `json:"weight"`
}

// Override changes selected resources for selected clusters.
//
// +kubebuilder:validation:XValidation:rule="has(self.images) || has(self.replicas) || has(self.env) || has(self.labels) || has(self.annotations) || has(self.jsonPatches)",message="an override must change something: set images, replicas, env, labels, annotations or jsonPatches"
type Override struct {
	// Clusters the override applies to.
	// +required
	Clusters ClusterAffinity `json:"clusters"`

	// Resource limits the override to some resources; empty means all the Placement selects.
	// +optional
	Resource *ResourceSelector `json:"resource,omitempty"`

	// Images replaces container images.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Images []ImageOverride `json:"images,omitempty"`

	// Replicas replaces the workload's replica count.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Replicas *int32 `json:"replicas,omitempty"`

	// Env sets environment variables in containers.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Env []EnvOverride `json:"env,omitempty"`

	// Labels are added to the resources.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`

	// Annotations are added to the resources.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`

	// JSONPatches are RFC 6902 operations applied last.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	JSONPatches []JSONPatch `json:"jsonPatches,omitempty"`
}

// ImageOverride replaces a container's image.
type ImageOverride struct {
	// Container name; empty means every container.
	// +optional
	Container string `json:"container,omitempty"`

	// Image to use.
	// +required
	// +kubebuilder:validation:MinLength=1
	Image string `json:"image"`
}

// EnvOverride sets one environment variable.
type EnvOverride struct {
	// Container name; empty means every container.
	// +optional
	Container string `json:"container,omitempty"`

	// Name of the variable.
	// +required
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`

	// Value of the variable.
	// +optional
	Value string `json:"value,omitempty"`
}

// JSONPatch is one RFC 6902 operation. Add and replace need a value.
type JSONPatch struct {
	// Op is add, remove or replace.
	// +required
	// +kubebuilder:validation:Enum=add;remove;replace
	Op string `json:"op"`

	// Path is a JSON pointer, for example /spec/template/spec/priorityClassName.
	// +required
	// +kubebuilder:validation:Pattern=`^(/[^/]*)+$`
	Path string `json:"path"`

	// Value for add and replace.
	// +optional
	Value *apiextensionsv1.JSON `json:"value,omitempty"`
}

// Condition types on a Placement.
const (
	// PlacementScheduled is True when the Placement has chosen its clusters.
	PlacementScheduled = "Scheduled"
	// PlacementApplied is True when every chosen cluster has applied its resources.
	PlacementApplied = "Applied"
	// PlacementAvailable is True when the resources are Available on every chosen cluster.
	PlacementAvailable = "Available"
	// PlacementResourcesSelected is True when the resource selectors match templates.
	PlacementResourcesSelected = "ResourcesSelected"
)

// Labels and annotations the propagation controller sets.
const (
	// LabelPlacementNamespace and LabelPlacement name the Placement a Work was written for.
	LabelPlacementNamespace = "convoy.dev/placement-namespace"
	LabelPlacement          = "convoy.dev/placement"
	// AnnotationSummary on a template on the hub says how it is doing in the fleet, for
	// example "available 6/6 replicas in 3 clusters". It is never propagated.
	AnnotationSummary = "convoy.dev/summary"
	// PlacementFinalizer holds a Placement until its Works are gone.
	PlacementFinalizer = "convoy.dev/placement"
)

// PlacementStatus reports what the Placement decided and how the members are doing.
type PlacementStatus struct {
	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// ScheduledClusters counts the chosen clusters.
	// +optional
	ScheduledClusters int32 `json:"scheduledClusters,omitempty"`

	// Clusters reports each chosen cluster, sorted by name. The list is atomic: only the hub
	// writes it, whole, and the API server then keeps no managed fields per row (with a
	// thousand clusters they cost more than the rows).
	// +optional
	// +listType=atomic
	Clusters []ClusterPlacementStatus `json:"clusters,omitempty"`

	// Rollout is the state of the wave-by-wave rollout, when the Placement has a strategy.
	// +optional
	Rollout *RolloutStatus `json:"rollout,omitempty"`

	// FailedOver lists the clusters whose Divided share was moved to the others, and since when.
	// +optional
	// +listType=map
	// +listMapKey=cluster
	FailedOver []FailedOverCluster `json:"failedOver,omitempty"`

	// Conditions aggregate the per-cluster state.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ClusterPlacementStatus is one cluster's share of a Placement.
type ClusterPlacementStatus struct {
	// Cluster name.
	Cluster string `json:"cluster"`
	// ScheduledReplicas is the replicas the cluster was given, for Divided workloads.
	// +optional
	ScheduledReplicas *int32 `json:"scheduledReplicas,omitempty"`
	// Applied is true when the cluster applied every resource.
	// +optional
	Applied bool `json:"applied,omitempty"`
	// Available is true when every resource is healthy on the cluster.
	// +optional
	Available bool `json:"available,omitempty"`
	// Drifted counts resources changed on the member behind the hub's back.
	// +optional
	Drifted int32 `json:"drifted,omitempty"`
	// Revision is the template revision the cluster's Work carries.
	// +optional
	Revision string `json:"revision,omitempty"`
	// Healthy is false while the cluster is Unreachable or not Ready; its share stays put.
	// +optional
	Healthy bool `json:"healthy,omitempty"`
	// Resources counts the resources sent to the cluster.
	// +optional
	Resources int32 `json:"resources,omitempty"`
	// AvailableReplicas are the replicas available on the cluster, over its workloads.
	// +optional
	AvailableReplicas *int32 `json:"availableReplicas,omitempty"`
	// Error is the last error the cluster reported, if any.
	// +optional
	Error string `json:"error,omitempty"`
}

// PlacementList is a list of Placements.
// +kubebuilder:object:root=true
type PlacementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Placement `json:"items"`
}
