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

// Condition types on a Placement that failover and rollouts set.
const (
	// PlacementFailedOver is True while some chosen cluster's Divided share is moved away; its
	// message lists them.
	PlacementFailedOver = "FailedOver"
	// PlacementRolloutProgressing is False while the rollout is paused or aborted; its reason
	// is the rollout's phase.
	PlacementRolloutProgressing = "RolloutProgressing"
)

// RolloutStrategy rolls a new revision of a Placement's templates out in ordered waves of
// clusters, each behind a health gate. Clusters in no wave form a last wave of their own.
//
// +kubebuilder:validation:XValidation:rule="self.waves.all(a, self.waves.exists_one(b, b.name == a.name))",message="wave names must be unique"
// +kubebuilder:validation:XValidation:rule="self.waves.all(a, !has(a.clusters.names) || self.waves.all(b, a.name == b.name || !has(b.clusters.names) || !a.clusters.names.exists(n, n in b.clusters.names)))",message="waves overlap: a cluster name is listed in two waves; list each cluster in one wave only"
type RolloutStrategy struct {
	// Waves in order. The first is usually a canary.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	Waves []RolloutWave `json:"waves"`

	// ProgressDeadlineSeconds is how long a wave may take to pass its health gate before the
	// rollout pauses itself. Default 300.
	// +optional
	// +kubebuilder:default=300
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=86400
	ProgressDeadlineSeconds *int32 `json:"progressDeadlineSeconds,omitempty"`

	// Paused holds the rollout where it is (convoy rollout pause / resume).
	// +optional
	Paused bool `json:"paused,omitempty"`
}

// RolloutWave is one group of clusters.
//
// +kubebuilder:validation:XValidation:rule="has(self.clusters.names) || has(self.clusters.labelSelector) || has(self.clusters.regions)",message="a wave must select clusters (names, labelSelector or regions); an empty wave selects nothing"
type RolloutWave struct {
	// Name of the wave, for example canary.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// Clusters of the wave, among those the Placement chose. A cluster matched by two waves
	// (through labels or regions) belongs to the first.
	// +required
	Clusters WaveClusters `json:"clusters"`

	// MaxUnavailable is how many clusters of the wave may be not Available (or lost) and still
	// let the wave pass. Default 0.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MaxUnavailable int32 `json:"maxUnavailable,omitempty"`

	// SoakSeconds is how long the wave must stay healthy after passing its gate before the
	// next wave starts.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=86400
	SoakSeconds int32 `json:"soakSeconds,omitempty"`

	// RequireApproval holds the wave until `convoy rollout approve`.
	// +optional
	RequireApproval bool `json:"requireApproval,omitempty"`

	// Gate is an extra condition, on one of the Placement's resources, that must hold in every
	// cluster of the wave (within its maxUnavailable) before the wave passes.
	// +optional
	Gate *ConditionGate `json:"gate,omitempty"`

	// Metric is a gate on the fleet's metrics, judged while the wave soaks: a value above its
	// maximum pauses the rollout, with the value in the reason.
	// +optional
	Metric *MetricGate `json:"metric,omitempty"`
}

// MetricGate is a PromQL query of the hub's fleet metrics store, with the greatest value it may
// return. It is read at least every 10 s while the wave soaks, from delaySeconds after the wave
// passed its health gate: a value above max pauses the rollout; the soak does not end before
// one reading at or below max. A query that cannot be read, or returns no data, holds the wave,
// and pauses the rollout once that has lasted the progress deadline past the soak's end. The
// query must return one number: a scalar or a vector of one series (use sum, max or avg;
// `or vector(0)` turns "no data" into 0). It reads only series of the wave's clusters and of
// the Placement's namespace.
type MetricGate struct {
	// Query is PromQL. $clusters stands for the wave's clusters as a regular expression, as in
	// cluster=~"$clusters"; $namespace for the Placement's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Query string `json:"query"`

	// Max is the greatest value the query may return, a decimal number such as 0.05.
	// +required
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^-?[0-9]+(\\\\.[0-9]+)?([eE][-+]?[0-9]+)?$')",message="max must be a decimal number, such as 0.05 or 100"
	Max string `json:"max"`

	// DelaySeconds is how long after the wave passed its health gate the gate is first judged:
	// at least the query's rate window, so that it sees the new revision only. Default 0.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=3600
	DelaySeconds int32 `json:"delaySeconds,omitempty"`
}

// ConditionGate names a condition on one of the Placement's resources, as the member reports it.
type ConditionGate struct {
	// Group of the resource; empty is the core group.
	// +optional
	Group string `json:"group,omitempty"`
	// Kind of the resource.
	// +required
	// +kubebuilder:validation:MinLength=1
	Kind string `json:"kind"`
	// Name of the resource.
	// +required
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Type of the condition, for example Ready.
	// +required
	// +kubebuilder:validation:MinLength=1
	Type string `json:"type"`
	// Status the condition must have. Default True.
	// +optional
	// +kubebuilder:default=True
	// +kubebuilder:validation:Enum=True;False;Unknown
	Status string `json:"status,omitempty"`
}

// RolloutPhase is where a rollout stands.
// +kubebuilder:validation:Enum=Progressing;Soaking;WaitingForApproval;Paused;Aborted;Complete
type RolloutPhase string

// The phases of a rollout.
const (
	// RolloutProgressing: the current wave is being updated, or its gate is awaited.
	RolloutProgressing RolloutPhase = "Progressing"
	// RolloutSoaking: the current wave passed its gate; its soak time runs.
	RolloutSoaking RolloutPhase = "Soaking"
	// RolloutWaitingForApproval: the next wave needs `convoy rollout approve`.
	RolloutWaitingForApproval RolloutPhase = "WaitingForApproval"
	// RolloutPaused: stopped by the user or by a health regression; resume goes on.
	RolloutPaused RolloutPhase = "Paused"
	// RolloutAborted: every cluster goes back to the stable revision.
	RolloutAborted RolloutPhase = "Aborted"
	// RolloutComplete: every wave runs the target revision.
	RolloutComplete RolloutPhase = "Complete"
)

// RolloutStatus is the state of the rollout, kept so that a restarted hub resumes it.
type RolloutStatus struct {
	// Target is the revision being rolled out; Stable the last one that completed.
	Target string `json:"target,omitempty"`
	Stable string `json:"stable,omitempty"`
	// Phase is where the rollout stands.
	// +optional
	Phase RolloutPhase `json:"phase,omitempty"`
	// Wave is the index of the current wave.
	Wave int32 `json:"wave,omitempty"`
	// WaveName names it.
	WaveName string `json:"waveName,omitempty"`
	// WaveStarted and SoakStarted keep microseconds, so that a soak restored from the status
	// after a restart is not cut short.
	// +optional
	WaveStarted *metav1.MicroTime `json:"waveStarted,omitempty"`
	// +optional
	SoakStarted *metav1.MicroTime `json:"soakStarted,omitempty"`
	// Message says why the rollout waits, if it does.
	Message string `json:"message,omitempty"`
	// Resumed is the last resume request handled (the annotation's value).
	Resumed string `json:"resumed,omitempty"`
	// Aborted is the last abort request handled (the annotation's value).
	// +optional
	Aborted string `json:"aborted,omitempty"`
}

// Annotations that carry one-shot rollout commands on a Placement.
const (
	// AnnotationRolloutApprove holds the highest wave index the user approved, as
	// REVISION/WAVE: it applies only to the rollout of that revision.
	AnnotationRolloutApprove = "convoy.dev/rollout-approve"
	// AnnotationRolloutResume holds a token (a timestamp); a new value resumes a paused rollout.
	AnnotationRolloutResume = "convoy.dev/rollout-resume"
	// AnnotationRolloutAbort holds the target revision to abort and a token, as
	// REVISION@TOKEN: every cluster goes back to the stable revision. Each token is handled
	// once, and only while that revision is the target.
	AnnotationRolloutAbort = "convoy.dev/rollout-abort"
	// AnnotationRevision on a Work names the template revision it carries.
	AnnotationRevision = "convoy.dev/revision"
	// LabelRevisionOf on a ControllerRevision names the Placement whose templates it keeps.
	LabelRevisionOf = "convoy.dev/revision-of"
)

// WaveClusters selects the clusters of a wave; every field set must match.
type WaveClusters struct {
	// Names lists clusters by name.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=40
	Names []string `json:"names,omitempty"`

	// LabelSelector selects clusters by their labels.
	// +optional
	LabelSelector *metav1.LabelSelector `json:"labelSelector,omitempty"`

	// Regions the clusters must be in.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=63
	Regions []string `json:"regions,omitempty"`
}

// Affinity is the same selection as a ClusterAffinity.
func (w WaveClusters) Affinity() ClusterAffinity {
	return ClusterAffinity{Names: w.Names, LabelSelector: w.LabelSelector, Regions: w.Regions}
}
