// Package v1alpha1 holds Convoy's API types: the group convoy.dev, version v1alpha1.
//
// The types carry their own validation as kubebuilder markers and CEL rules, so the hub's
// kube-apiserver refuses invalid objects itself; controller-gen turns them into the CRDs in
// config/crd. Any package may import this one; it imports nothing of Convoy's.
//
// +kubebuilder:object:generate=true
// +groupName=convoy.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of every type in this package.
var GroupVersion = schema.GroupVersion{Group: "convoy.dev", Version: "v1alpha1"}

// AddToScheme registers this package's types with s.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&Cluster{}, &ClusterList{},
		&ClusterProfile{}, &ClusterProfileList{},
		&Placement{}, &PlacementList{},
		&Work{}, &WorkList{},
		&EdgePool{}, &EdgePoolList{},
		&User{}, &UserList{},
		&ServiceBinding{}, &ServiceBindingList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
