package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ServiceBinding hands a catalog service's connection details to a workload, as the Service
// Binding spec (servicebinding.io) projects them: in every cluster where both the workload and
// the service run, the workload's pods get the service's connection Secret
// (BindingSecretName(service)) as files under $SERVICE_BINDING_ROOT/NAME (SERVICE_BINDING_ROOT is
// BindingRoot unless a container sets it) and, optionally, as environment variables. The
// projection happens where the hub renders each cluster's copy of the workload (the workload
// template on the hub stays as it was written), so it follows the service when the service
// moves: a cluster that loses the service loses the projection.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=convoy
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 48 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="a ServiceBinding's name is a DNS label of at most 48 characters: it names a volume (convoy-binding-NAME) and a directory in the pods"
// +kubebuilder:printcolumn:name="Service",type=string,JSONPath=`.spec.service.name`
// +kubebuilder:printcolumn:name="Workload",type=string,JSONPath=`.spec.workload.name`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Clusters",type=string,JSONPath=`.status.clusters`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ServiceBinding struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec ServiceBindingSpec `json:"spec"`
	// +optional
	Status ServiceBindingStatus `json:"status,omitempty"`
}

// ServiceBindingSpec says which service goes to which workload.
type ServiceBindingSpec struct {
	// Service is the catalog service (convoy catalog install --name) in the binding's namespace.
	// +required
	Service ServiceReference `json:"service"`
	// Workload is the workload template in the binding's namespace whose pods get the service.
	// +required
	Workload WorkloadReference `json:"workload"`
	// Env also sets environment variables from keys of the connection Secret.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Env []BindingEnv `json:"env,omitempty"`
}

// ServiceReference names a catalog service.
type ServiceReference struct {
	// +required
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$`
	Name string `json:"name"`
}

// WorkloadReference names a workload template: a Deployment, StatefulSet, DaemonSet, Job or
// CronJob.
// +kubebuilder:validation:XValidation:rule="self.kind == 'CronJob' ? self.group == 'batch' : (self.kind == 'Job' ? self.group == 'batch' : self.group == 'apps')",message="Deployments, StatefulSets and DaemonSets are in group apps; Jobs and CronJobs in group batch"
type WorkloadReference struct {
	// Group is apps (the default) or batch.
	// +optional
	// +kubebuilder:default=apps
	// +kubebuilder:validation:Enum=apps;batch
	Group string `json:"group"`
	// Kind of the workload.
	// +optional
	// +kubebuilder:default=Deployment
	// +kubebuilder:validation:Enum=Deployment;StatefulSet;DaemonSet;Job;CronJob
	Kind string `json:"kind"`
	// +required
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// BindingEnv is one environment variable from a key of the connection Secret.
type BindingEnv struct {
	// +required
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	Name string `json:"name"`
	// Key of the connection Secret (host, port, password, uri, ...).
	// +required
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}

// ServiceBindingStatus says where the projection is. The binding controller writes it.
type ServiceBindingStatus struct {
	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Clusters are where both the workload and the service are placed, so the workload's pods
	// there get the service, sorted by name.
	// +optional
	// +listType=atomic
	Clusters []string `json:"clusters,omitempty"`
	// Conditions: Ready, with the reason when it is not (ServiceNotFound, WorkloadNotPlaced,
	// NoCommonCluster, ServiceDeleted).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// BindingRoot is SERVICE_BINDING_ROOT in pods that do not set it themselves.
const BindingRoot = "/bindings"

// Reasons of a ServiceBinding's Ready condition.
const (
	BindingReady             = "Ready"
	BindingProjected         = "Projected"
	BindingServiceNotFound   = "ServiceNotFound"
	BindingWorkloadNotPlaced = "WorkloadNotPlaced"
	BindingNoCommonCluster   = "NoCommonCluster"
	BindingServiceDeleted    = "ServiceDeleted"
)

// +kubebuilder:object:root=true

// ServiceBindingList is a list of ServiceBindings.
type ServiceBindingList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ServiceBinding `json:"items"`
}
