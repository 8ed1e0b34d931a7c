package v1alpha1

import (
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
)

// The contract between the hub's controllers and the CLI: where the hub keeps its own objects
// and what they are called. Whoever reads or writes them uses these names.
const (
	// SystemNamespace holds the hub's own Secrets and ConfigMaps: members' kubeconfigs, the
	// Kubernetes versions the hub can run.
	SystemNamespace = "convoy-system"
	// KubeconfigSecretKey is the key of a kubeconfig Secret in SystemNamespace that holds the
	// kubeconfig.
	KubeconfigSecretKey = "kubeconfig"
	// VersionsConfigMap, in SystemNamespace, lists the Kubernetes versions this hub has
	// binaries for (key VersionsKey, comma-separated). An admission policy reads it.
	VersionsConfigMap = "kubernetes-versions"
	// VersionsKey is the key of VersionsConfigMap that lists the versions.
	VersionsKey = "versions"
	// AuthenticationConfigMap, in SystemNamespace, holds the AuthenticationConfiguration of
	// the OIDC issuers the hub trusts (key AuthenticationKey), which every member's API server
	// should get; it is absent when the hub trusts none. Nothing in it is secret.
	AuthenticationConfigMap = "authentication"
	// AuthenticationKey is the key of AuthenticationConfigMap that holds the configuration.
	AuthenticationKey = "authentication.yaml"
)

// KubeconfigSecretName is the Secret in SystemNamespace that holds a cluster's admin
// kubeconfig (key KubeconfigSecretKey), published by the hub for local clusters and imported
// ones with a kubeconfig.
func KubeconfigSecretName(cluster string) string { return "cluster-" + cluster + "-kubeconfig" }

// RevisionName is the ControllerRevision, in the Placement's namespace and labelled
// LabelRevisionOf, that keeps one revision of a Placement's templates.
func RevisionName(placement, hash string) string { return placement + "-" + hash }

// RevisionHash is the revision hash a ControllerRevision of the Placement keeps, or "" when
// the name is not one of its revisions.
func RevisionHash(placement, controllerRevision string) string {
	h, ok := strings.CutPrefix(controllerRevision, placement+"-")
	if !ok {
		return ""
	}
	return h
}

// StoredRevision is the data of a Placement's ControllerRevision: the templates of one
// revision, cleaned of what only the hub's copy has. `convoy rollout undo` writes them back.
type StoredRevision struct {
	// Templates are complete objects.
	Templates []runtime.RawExtension `json:"templates"`
}
