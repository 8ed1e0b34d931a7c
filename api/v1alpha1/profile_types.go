package v1alpha1

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClusterProfile is the bill of materials clusters are built from and held to: the Kubernetes
// version, the add-ons and their versions, the API server settings Convoy allows, namespaces,
// default RBAC, admission policies, and node pool templates. Each change of the spec is a new
// revision (a ControllerRevision in convoy-system, labelled convoy.dev/profile), and the history
// is kept. Clusters that name the profile (spec.profile) move to a new revision in an update
// run: wave by wave, as the strategy says, inside the maintenance windows.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=convoy,shortName=profile
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.kubernetesVersion`
// +kubebuilder:printcolumn:name="Revision",type=integer,JSONPath=`.status.revision`
// +kubebuilder:printcolumn:name="Clusters",type=integer,JSONPath=`.status.clusters`
// +kubebuilder:printcolumn:name="Conformant",type=integer,JSONPath=`.status.conformant`
// +kubebuilder:printcolumn:name="Run",type=string,JSONPath=`.status.run.phase`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 40",message="profile name must be at most 40 characters"
type ClusterProfile struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   ClusterProfileSpec   `json:"spec"`
	Status ClusterProfileStatus `json:"status,omitempty"`
}

// ClusterProfileSpec is what every cluster of the profile is.
type ClusterProfileSpec struct {
	// KubernetesVersion every cluster runs, for example v1.37.2. It follows Kubernetes' version
	// skew policy: it moves up one minor version at a time, and never down.
	// +required
	// +kubebuilder:validation:MaxLength=16
	// +kubebuilder:validation:Pattern=`^v1\.[0-9]{1,3}\.[0-9]{1,3}$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf || int(self.split('.')[1]) > int(oldSelf.split('.')[1]) || (int(self.split('.')[1]) == int(oldSelf.split('.')[1]) && int(self.split('.')[2]) > int(oldSelf.split('.')[2]))",message="a profile's Kubernetes version cannot go down (Kubernetes' version skew policy has no downgrades); make a new profile for the older version"
	// +kubebuilder:validation:XValidation:rule="int(self.split('.')[1]) <= int(oldSelf.split('.')[1]) + 1",message="a profile's Kubernetes version moves up one minor version at a time (Kubernetes' version skew policy): go to the next minor first"
	KubernetesVersion string `json:"kubernetesVersion"`

	// Addons are the add-ons every cluster runs, each at the version given. A version left
	// empty is the one this hub ships.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=8
	Addons []Addon `json:"addons,omitempty"`

	// APIServer holds the API server settings Convoy lets a profile set.
	// +optional
	APIServer *APIServerSettings `json:"apiServer,omitempty"`

	// Namespaces every cluster has: a local cluster's runtime makes them (and keeps them, as
	// it keeps its add-ons); an imported cluster is checked for them.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespaces []string `json:"namespaces,omitempty"`

	// RBAC is the default RBAC every cluster has: ClusterRoles and ClusterRoleBindings. A
	// local cluster's runtime applies them (and deletes those it made that the profile no
	// longer lists); an imported cluster is checked for them.
	// +optional
	RBAC *RBACSettings `json:"rbac,omitempty"`

	// AdmissionPolicies every cluster enforces: each a ValidatingAdmissionPolicy and its
	// binding, of the same name. A local cluster's runtime applies them (and deletes those it
	// made that the profile no longer lists); an imported cluster is checked for them.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	AdmissionPolicies []AdmissionPolicy `json:"admissionPolicies,omitempty"`

	// NodePools are the node pool templates of a local cluster built from the profile. A
	// cluster's own spec.nodePools entry of the same name takes the template's place (to
	// change its count); pools it adds are its own.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=20
	NodePools []NodePool `json:"nodePools,omitempty"`

	// Update says how clusters move to a new revision.
	// +optional
	Update ProfileUpdate `json:"update,omitempty"`
}

// AddonName names an add-on a profile can pin.
// +kubebuilder:validation:Enum=coredns;kube-proxy;storage;metrics
type AddonName string

// The add-ons.
const (
	AddonCoreDNS   AddonName = "coredns"
	AddonKubeProxy AddonName = "kube-proxy"
	AddonStorage   AddonName = "storage"
	AddonMetrics   AddonName = "metrics"
)

// Addon is one add-on at one version.
type Addon struct {
	// Name of the add-on: coredns, kube-proxy (its version is the cluster's Kubernetes
	// version), storage (the default StorageClass's provisioner) or metrics (the collector).
	// +required
	Name AddonName `json:"name"`
	// Version of the add-on, for example v1.12.4; empty is the one this hub ships.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$`
	Version string `json:"version,omitempty"`
}

// APIServerSettings are the API server flags a profile may set.
type APIServerSettings struct {
	// AdmissionPlugins are enabled in addition to the defaults of the version.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z][A-Za-z0-9]*$`
	AdmissionPlugins []string `json:"admissionPlugins,omitempty"`
	// FeatureGates set on every control-plane component, by name.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	FeatureGates map[string]bool `json:"featureGates,omitempty"`
	// AuditPolicy is an audit.k8s.io/v1 Policy, as YAML; empty means no audit log.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	AuditPolicy string `json:"auditPolicy,omitempty"`
}

// RBACSettings are the ClusterRoles and ClusterRoleBindings a cluster has. Convoy labels the
// objects it makes LabelProfileManaged, and never changes or deletes one without the label.
type RBACSettings struct {
	// ClusterRoles, each by name.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	ClusterRoles []ClusterRoleTemplate `json:"clusterRoles,omitempty"`
	// ClusterRoleBindings, each by name.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	ClusterRoleBindings []ClusterRoleBindingTemplate `json:"clusterRoleBindings,omitempty"`
}

// ClusterRoleTemplate is a ClusterRole: a name and its rules.
type ClusterRoleTemplate struct {
	// Name of the ClusterRole. Names starting with system: are Kubernetes' own.
	// +required
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.:]*[a-z0-9])?$`
	Name string `json:"name"`
	// Rules of the role, as a ClusterRole's.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Rules []rbacv1.PolicyRule `json:"rules"`
}

// ClusterRoleBindingTemplate is a ClusterRoleBinding: a name, the ClusterRole it grants, and
// to whom.
// +kubebuilder:validation:XValidation:rule="self.roleRef.kind == 'ClusterRole' && (!has(self.roleRef.apiGroup) || self.roleRef.apiGroup.size() == 0 || self.roleRef.apiGroup == 'rbac.authorization.k8s.io')",message="a ClusterRoleBinding grants a ClusterRole: set roleRef.kind to ClusterRole and roleRef.apiGroup to rbac.authorization.k8s.io"
type ClusterRoleBindingTemplate struct {
	// Name of the ClusterRoleBinding.
	// +required
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.:]*[a-z0-9])?$`
	Name string `json:"name"`
	// RoleRef names the ClusterRole granted (a profile's, or one the cluster has). Kubernetes
	// does not let a binding's roleRef change: Convoy replaces the binding when it does.
	// +required
	RoleRef rbacv1.RoleRef `json:"roleRef"`
	// Subjects the role is granted to.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Subjects []rbacv1.Subject `json:"subjects,omitempty"`
}

// AdmissionPolicy is a ValidatingAdmissionPolicy and its ValidatingAdmissionPolicyBinding, both
// called Name.
// +kubebuilder:validation:XValidation:rule="!has(self.binding.policyName) || self.binding.policyName.size() == 0 || self.binding.policyName == self.name",message="binding.policyName is set by Convoy to the policy's name: leave it out (or set it to the policy's name)"
type AdmissionPolicy struct {
	// Name of the policy and of its binding.
	// +required
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Name string `json:"name"`
	// Policy is the ValidatingAdmissionPolicy's spec.
	// +required
	Policy admissionregistrationv1.ValidatingAdmissionPolicySpec `json:"policy"`
	// Binding is its binding's spec; policyName is the policy's name.
	// +required
	Binding AdmissionPolicyBindingSpec `json:"binding"`
}

// AdmissionPolicyBindingSpec is a ValidatingAdmissionPolicyBinding's spec (admissionregistration
// v1, field for field) but for policyName, which Convoy sets to the policy's name and which may
// be left out here.
type AdmissionPolicyBindingSpec struct {
	// PolicyName is the policy's name, the only one allowed; leave it out.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	PolicyName string `json:"policyName,omitempty"`
	// ParamRef is the parameter resource of a policy that takes one (paramKind).
	// +optional
	ParamRef *admissionregistrationv1.ParamRef `json:"paramRef,omitempty"`
	// MatchResources narrows the requests the policy checks, as a binding's does.
	// +optional
	MatchResources *admissionregistrationv1.MatchResources `json:"matchResources,omitempty"`
	// ValidationActions say what a failed validation does: Deny, Warn or Audit.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=3
	ValidationActions []admissionregistrationv1.ValidationAction `json:"validationActions"`
}

// ProfileUpdate is how clusters move to a profile's new revision: an update run, in waves,
// with the rollout engine's gates, soak, pause, resume and abort, inside maintenance windows.
type ProfileUpdate struct {
	// Waves of clusters, in order; clusters in no wave form a last wave. Without waves, each
	// cluster is a wave of its own, in name order: the run goes cluster by cluster. A wave's
	// gate is the clusters' conformance: requireApproval, gate and metric are for Placements.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:XValidation:rule="self.all(w, !has(w.requireApproval) || !w.requireApproval)",message="an update run's waves take no requireApproval; pause the run (spec.update.paused) and resume it instead"
	// +kubebuilder:validation:XValidation:rule="self.all(w, !has(w.gate) && !has(w.metric))",message="an update run's waves take no gate or metric: a cluster passes when it conforms to the revision"
	Waves []RolloutWave `json:"waves,omitempty"`

	// ProgressDeadlineSeconds is how long one wave may take before the run pauses itself
	// (default 3600: a cluster's nodes go one at a time).
	// +optional
	// +kubebuilder:validation:Minimum=60
	ProgressDeadlineSeconds *int32 `json:"progressDeadlineSeconds,omitempty"`

	// Paused holds the run where it is: no further cluster starts moving (one that has begun
	// finishes its nodes).
	// +optional
	Paused bool `json:"paused,omitempty"`

	// MaintenanceWindows bound when a run may progress: a cluster starts moving only inside
	// one (a cluster that has begun moving finishes, node by node). None means at any time.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	MaintenanceWindows []MaintenanceWindow `json:"maintenanceWindows,omitempty"`
}

// MaintenanceWindow is a weekly window, in UTC.
type MaintenanceWindow struct {
	// Days of the week, as Mon, Tue, Wed, Thu, Fri, Sat or Sun; empty means every day.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=7
	// +kubebuilder:validation:items:Enum=Mon;Tue;Wed;Thu;Fri;Sat;Sun
	Days []string `json:"days,omitempty"`
	// Start is the time of day the window opens, as HH:MM in UTC.
	// +required
	// +kubebuilder:validation:Pattern=`^([01][0-9]|2[0-3]):[0-5][0-9]$`
	Start string `json:"start"`
	// Hours the window stays open, from 1 to 24.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=24
	Hours int32 `json:"hours"`
}

// Condition types on a ClusterProfile.
const (
	// ProfileAccepted is True when the hub can build clusters from the revision: it has the
	// binaries of its version and the settings are valid for it.
	ProfileAccepted = "Accepted"
)

// ClusterProfileStatus is written by the hub's profile controller alone.
type ClusterProfileStatus struct {
	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Revision is the number of the newest revision (the spec as it is now).
	// +optional
	Revision int64 `json:"revision,omitempty"`
	// History lists the revisions kept, oldest first.
	// +optional
	// +kubebuilder:validation:MaxItems=20
	History []ProfileRevision `json:"history,omitempty"`
	// Clusters counts the clusters that name the profile; Conformant those that match their
	// revision.
	// +optional
	Clusters int32 `json:"clusters,omitempty"`
	// +optional
	Conformant int32 `json:"conformant,omitempty"`
	// Run is the update run: the revision being rolled out, the wave, and why it waits.
	// +optional
	Run *RolloutStatus `json:"run,omitempty"`
	// Targets says which revision each cluster of the profile is to run now.
	// +optional
	// +listType=map
	// +listMapKey=cluster
	Targets []ProfileTarget `json:"targets,omitempty"`
	// Conditions say whether the revision is accepted.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ProfileRevision summarises one revision of a profile.
type ProfileRevision struct {
	Revision          int64       `json:"revision"`
	KubernetesVersion string      `json:"kubernetesVersion"`
	Created           metav1.Time `json:"created"`
}

// ProfileTarget is the revision one cluster is to run.
type ProfileTarget struct {
	Cluster  string `json:"cluster"`
	Revision int64  `json:"revision"`
}

// ClusterProfileList is a list of ClusterProfiles.
// +kubebuilder:object:root=true
type ClusterProfileList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterProfile `json:"items"`
}

// ProfileRef names the profile a Cluster is built from and held to.
type ProfileRef struct {
	// Name of the ClusterProfile.
	// +required
	// +kubebuilder:validation:MaxLength=40
	Name string `json:"name"`
	// Revision pins the cluster to one revision of the profile; empty follows the profile's
	// update runs.
	// +optional
	// +kubebuilder:validation:Minimum=1
	Revision *int64 `json:"revision,omitempty"`
}

// ClusterProfileState is how a cluster stands against its profile, written by the hub's
// Cluster controller from what the cluster's agent observes.
type ClusterProfileState struct {
	// Revision is the revision the cluster is held to now (its pin, or the update run's
	// target for it).
	Revision int64 `json:"revision"`
	// Conformant is true when nothing differs.
	Conformant bool `json:"conformant"`
	// Nodes is how many nodes the cluster's node pools have: the revision's templates, and
	// the cluster's own pools. An autoscaled pool counts the nodes it starts with; how many it
	// has now is its provider's choice, inside its bounds.
	// +optional
	Nodes int32 `json:"nodes,omitempty"`
	// Autoscaled says whether one of those pools autoscales, so that Nodes is only where it
	// started.
	// +optional
	Autoscaled bool `json:"autoscaled,omitempty"`
	// Drift lists, field by field, where the cluster differs from the revision.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Drift []ProfileDrift `json:"drift,omitempty"`
}

// ProfileDrift is one field where a cluster differs from its profile.
type ProfileDrift struct {
	// Field is the profile's field, for example addons[coredns].version or
	// nodes[us-east-real-0].kubeletVersion.
	Field string `json:"field"`
	// Want is the profile's value, Have the cluster's (empty: absent).
	Want string `json:"want"`
	// +optional
	Have string `json:"have,omitempty"`
}

// ReasonUpgradeBlocked is the reason of a Cluster's Provisioned condition when its upgrade
// cannot go on without help (a PodDisruptionBudget that blocks a drain, a node that did not
// come back); its message says what blocks it, and the update run pauses with it.
const ReasonUpgradeBlocked = "UpgradeBlocked"

// ClusterProfileConformant is the Cluster condition that says whether the cluster matches its
// profile's revision.
const ClusterProfileConformant = "ProfileConformant"

// LabelKubeProxyVersion is on each real node of a local cluster: the version of the kube-proxy
// it runs, as a process that reports its version nowhere else. The local provider writes it,
// and the cluster's agent reads it (Inventory.Addons).
const LabelKubeProxyVersion = "convoy.dev/kube-proxy-version"

// LabelProfile on a ControllerRevision names the ClusterProfile whose spec it keeps.
const LabelProfile = "convoy.dev/profile"

// LabelProfileManaged ("true") is on each object of a member that a local cluster's runtime
// made from its spec's (its profile's) default RBAC and admission policies: the runtime deletes
// such an object once the spec no longer lists it, and never changes or deletes one without
// the label; the cluster's agent reports the labelled ones (Inventory.ProfileObjects).
const LabelProfileManaged = "convoy.dev/profile-managed"

// ProfileFieldManager is the field manager with which a local cluster's runtime applies the
// objects it labels LabelProfileManaged.
const ProfileFieldManager = "convoy-profile"

// The kinds of the objects a profile makes on a member (ObservedProfileObject.Kind).
const (
	KindClusterRole                      = "ClusterRole"
	KindClusterRoleBinding               = "ClusterRoleBinding"
	KindValidatingAdmissionPolicy        = "ValidatingAdmissionPolicy"
	KindValidatingAdmissionPolicyBinding = "ValidatingAdmissionPolicyBinding"
)

// ObservedProfileObjects are the objects of a member labelled LabelProfileManaged, as its agent
// saw them. A nil *ObservedProfileObjects is what the agent could not see (no drift is judged
// from it); a non-nil one with no Items is a member without such objects.
type ObservedProfileObjects struct {
	// Items by kind, then name: the first 256.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	Items []ObservedProfileObject `json:"items,omitempty"`
}

// ObservedProfileObject is one object a profile made, and a digest of its content.
type ObservedProfileObject struct {
	// Kind is ClusterRole, ClusterRoleBinding, ValidatingAdmissionPolicy or
	// ValidatingAdmissionPolicyBinding.
	// +kubebuilder:validation:MaxLength=64
	Kind string `json:"kind"`
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Digest is a short hash of the content, with the API server's defaults applied: a
	// ClusterRole's rules, a ClusterRoleBinding's roleRef and subjects, a policy's or binding's
	// spec (internal/profile's Digest functions).
	// +kubebuilder:validation:MaxLength=64
	Digest string `json:"digest"`
}
