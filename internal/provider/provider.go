// Package provider is the contract between the hub's Cluster controller and the code that
// makes, changes and removes clusters of one kind (spec.provider). The controller calls these
// methods level-triggered: again and again with the desired state, after crashes too, so every
// method must be idempotent. Implementations live in subpackages (local, importer) and each
// runs the shared conformance suite in providertest.
//
// The hub's composition root builds the providers; the Cluster controller uses them through
// this interface only.
package provider

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// Provider manages the lifecycle of the clusters whose spec.provider is Name().
type Provider interface {
	// Name is the spec.provider value this provider serves.
	Name() v1alpha1.ProviderName

	// ReadOnly reports whether the provider only observes clusters (import). A read-only
	// provider returns ErrReadOnly from ScalePools and Upgrade, and Delete only forgets.
	ReadOnly() bool

	// Validate checks what only the provider can know about a spec, such as whether binaries
	// exist for its Kubernetes version. It has no side effects. An error explains what to fix.
	Validate(ctx context.Context, c *v1alpha1.Cluster) error

	// Create makes the cluster's control plane if it does not exist, and starts it again if it
	// exists but is not running. It returns once the control plane has been started, without
	// waiting for it to be ready; Status says when it is. Calling it for a running cluster
	// changes nothing.
	Create(ctx context.Context, c *v1alpha1.Cluster) error

	// ScalePools makes the cluster's nodes match spec.nodePools: it adds missing nodes, changes
	// nothing that already matches, and drains nodes (cordon, then evict their pods) before it
	// removes them. Pools no longer in the spec are removed the same way. It needs a running
	// control plane.
	ScalePools(ctx context.Context, c *v1alpha1.Cluster) error

	// Upgrade moves the cluster to spec.kubernetesVersion, keeping its data and workloads: the
	// control plane first, one component at a time, then the nodes one at a time (cordoned,
	// drained through the Eviction API, given the new kubelet and kube-proxy, uncordoned). It
	// returns once the move has begun; Status reports it (Upgrading) and what blocks it
	// (Blocked: a PodDisruptionBudget is never overridden). It refuses a move the version skew
	// policy does not allow. Calling it again while the move runs, or once the cluster runs the
	// version, changes nothing.
	Upgrade(ctx context.Context, c *v1alpha1.Cluster) error

	// Delete removes the cluster: its processes, its ports and its data. Deleting a cluster
	// that does not exist, or whose deletion was interrupted, succeeds once nothing is left.
	Delete(ctx context.Context, name string) error

	// Kubeconfig returns an admin kubeconfig for the cluster, or ErrNotFound.
	Kubeconfig(ctx context.Context, c *v1alpha1.Cluster) ([]byte, error)

	// Status reports what the provider observes now. It never changes the cluster. A cluster
	// that does not exist has Exists false and no error.
	Status(ctx context.Context, c *v1alpha1.Cluster) (Status, error)
}

// AgentHost is implemented by providers that run their clusters' agents themselves (local).
// The Cluster controller gives such an agent its bootstrap token; other agents get theirs
// from `convoy cluster join`.
type AgentHost interface {
	// AgentJoined reports whether the cluster's agent holds a hub identity (it may since have
	// been revoked).
	AgentJoined(c *v1alpha1.Cluster) bool
	// DeliverBootstrapToken hands a bootstrap token to the cluster's agent, which uses it
	// when it has no working identity. Delivering the same token again changes nothing.
	DeliverBootstrapToken(c *v1alpha1.Cluster, token string) error
}

// Status is a provider's observation of one cluster.
type Status struct {
	// Exists is true when the provider has the cluster (made it, or imported it).
	Exists bool
	// Running is true when the control plane's processes run (always true for import).
	Running bool
	// APIReady is true when the cluster's API server answers /readyz and its version and
	// nodes could be read: what could not be observed is not acted on.
	APIReady bool
	// Endpoint is the API server's URL.
	Endpoint string
	// Version is the version the API server reports.
	Version string
	// Nodes counts all nodes and the Ready ones.
	Nodes v1alpha1.NodeCounts
	// Pools counts nodes per node pool, for providers with pools.
	Pools map[string]int32
	// Allocatable is the sum of the Ready nodes' allocatable resources.
	Allocatable corev1.ResourceList
	// Failure, when set, says why the cluster cannot work without help, for example an API
	// server that keeps crashing, with the reason from its log.
	Failure string
	// Progress says what the provider is doing while the cluster is not ready yet.
	Progress string
	// Upgrading, when set, says what an upgrade in progress is doing: the control plane, or
	// which node and what step ("upgrading node c1-real-1 (2 of 3): draining, 3 pods left").
	// The cluster does not run spec.kubernetesVersion everywhere until it is empty, whatever
	// Version says.
	Upgrading string
	// Blocked, when set, says why the upgrade cannot go on without help, naming what blocks
	// it: a PodDisruptionBudget that refuses an eviction, a node that did not come back Ready.
	Blocked string
}

// Errors providers return.
var (
	// ErrReadOnly is returned by operations a read-only provider does not do.
	ErrReadOnly = errors.New("the provider is read-only: change this cluster with the tools that made it")
	// ErrNotFound is returned when the provider has no such cluster.
	ErrNotFound = errors.New("cluster not found")
)
