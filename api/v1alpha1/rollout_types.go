package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FailoverPolicy says what happens to a Placement's Divided workloads when one of its clusters
// is lost. Failover is on unless disabled.
type FailoverPolicy struct {
	// Disabled keeps every share where it is, whatever happens to the clusters.
	// +optional
	Disabled bool `json:"disabled,omitempty"`

	// GraceSeconds is how long a cluster must be Unreachable or not Ready before its replicas
	// are scheduled onto the healthy clusters. Default 5.
	// +optional
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=86400
	GraceSeconds *int32 `json:"graceSeconds,omitempty"`

	// StableSeconds is how long a lost cluster must have been Ready again before work is
	// rebalanced back to it. Default 30.
	// +optional
	// +kubebuilder:default=30
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=86400
	StableSeconds *int32 `json:"stableSeconds,omitempty"`

	// Stateful lets StatefulSets, and workloads that mount PersistentVolumeClaims, move too.
	// Their data does not move with them.
	// +optional
	Stateful bool `json:"stateful,omitempty"`
}

// FailedOverCluster is a cluster whose share was moved away.
type FailedOverCluster struct {
	// Cluster name.
	Cluster string `json:"cluster"`
	// Since is when its share was moved.
	Since metav1.Time `json:"since"`
	// Reason the cluster was considered lost.
	// +optional
	Reason string `json:"reason,omitempty"`
}

// PlacementFailedOver is the condition type that lists clusters whose share was moved away.
const PlacementFailedOver = "FailedOver"
