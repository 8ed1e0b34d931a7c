// Package scheduler decides which member clusters a Placement's resources go to and how
// Divided replicas are shared between them. It is pure: a snapshot of the clusters and a
// Placement in, a decision out; failover decisions and the share of each Divided workload
// (create before delete) too. No client, no clock, no map iteration order reaches a result.
// internal/plan calls it; internal/render and the propagation controller use its Cluster type.
package scheduler

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// Cluster is what the scheduler knows of one member cluster.
type Cluster struct {
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels,omitempty"`
	Region      string            `json:"region,omitempty"`
	Zones       []string          `json:"zones,omitempty"`
	Environment string            `json:"environment,omitempty"`
	Taints      []corev1.Taint    `json:"taints,omitempty"`
	// Healthy is false while the cluster is Unreachable or not Ready. The scheduler keeps such
	// a cluster chosen and only marks it (failover is a later policy's business).
	Healthy bool `json:"healthy,omitempty"`
	// Since is when Healthy last changed (the Ready condition's transition time).
	Since time.Time `json:"since,omitempty"`
	// Deleting clusters are never chosen.
	Deleting bool `json:"deleting,omitempty"`
	// Free is the capacity left on the cluster (allocatable minus requested), for dynamic
	// weights. Nil means unknown.
	Free *Resources `json:"free,omitempty"`
}

// Resources is an amount of CPU (millicores), memory (bytes) and pods.
type Resources struct {
	MilliCPU int64 `json:"milliCPU,omitempty"`
	Memory   int64 `json:"memory,omitempty"`
	Pods     int64 `json:"pods,omitempty"`
}

// Choice is one chosen cluster.
type Choice struct {
	Name string
	// Weight is the cluster's static share for Divided replicas (1 unless a weight entry
	// matches it).
	Weight int64
	// Healthy mirrors the cluster's health at the time of the decision.
	Healthy bool
}

// Reasons a decision chose nothing, or less than asked.
const (
	ReasonScheduled         = "Scheduled"
	ReasonNoClusters        = "NoMatchingClusters"
	ReasonSpreadUnsatisfied = "SpreadUnsatisfied"
	ReasonFewerClusters     = "FewerClustersThanRequested"
	ReasonInvalid           = "InvalidPlacement"
)

// Decision is the scheduler's answer.
type Decision struct {
	// Clusters are the chosen clusters, sorted by name.
	Clusters []Choice
	// OK is false when the Placement cannot be satisfied: then Clusters is empty and the
	// caller keeps what it placed before (fail static).
	OK bool
	// Reason and Message explain the decision, for a condition.
	Reason  string
	Message string
}

// Names returns the chosen clusters' names.
func (d Decision) Names() []string {
	out := make([]string, len(d.Clusters))
	for i, c := range d.Clusters {
		out[i] = c.Name
	}
	return out
}

// Schedule chooses clusters for a Placement. previous are the clusters the Placement chose
// before; among equally good clusters they are kept, so that a decision does not move work
// without a reason.
func Schedule(clusters []Cluster, spec v1alpha1.PlacementSpec, previous []string) Decision {
	was := map[string]bool{}
	for _, n := range previous {
		was[n] = true
	}
	var candidates []Cluster
	excluded := map[string]int{}
	for _, c := range clusters {
		ok, why, err := eligible(c, spec, was[c.Name])
		if err != nil {
			return Decision{Reason: ReasonInvalid, Message: err.Error()}
		}
		if ok {
			candidates = append(candidates, c)
		} else {
			excluded[why]++
		}
	}
	if len(candidates) == 0 {
		return Decision{Reason: ReasonNoClusters, Message: "no cluster matches the Placement" + explain(len(clusters), excluded)}
	}
	// Previously chosen clusters first, then by name: deterministic and stable.
	sort.SliceStable(candidates, func(i, j int) bool {
		if was[candidates[i].Name] != was[candidates[j].Name] {
			return was[candidates[i].Name]
		}
		return candidates[i].Name < candidates[j].Name
	})

	limit := len(candidates)
	if spec.NumberOfClusters != nil {
		limit = min(limit, int(*spec.NumberOfClusters))
	}
	chosen := pick(candidates, spec.Spread, limit)

	d := Decision{OK: true, Reason: ReasonScheduled}
	for _, sc := range spec.Spread {
		if sc.MinGroups == nil {
			continue
		}
		if got := len(groupsOf(chosen, sc.Topology)); got < int(*sc.MinGroups) {
			return Decision{Reason: ReasonSpreadUnsatisfied, Message: fmt.Sprintf(
				"the Placement needs clusters in at least %d %ss, but the eligible clusters cover only %d", *sc.MinGroups, sc.Topology, got)}
		}
	}
	for _, c := range chosen {
		w, err := weightOf(c, spec.Replicas)
		if err != nil {
			return Decision{Reason: ReasonInvalid, Message: err.Error()}
		}
		d.Clusters = append(d.Clusters, Choice{Name: c.Name, Weight: w, Healthy: c.Healthy})
	}
	sort.Slice(d.Clusters, func(i, j int) bool { return d.Clusters[i].Name < d.Clusters[j].Name })
	d.Message = fmt.Sprintf("%d cluster(s) chosen: %s", len(d.Clusters), strings.Join(d.Names(), ", "))
	if spec.NumberOfClusters != nil && len(d.Clusters) < int(*spec.NumberOfClusters) {
		d.Reason = ReasonFewerClusters
		d.Message = fmt.Sprintf("%d of the %d requested clusters chosen, all that are eligible: %s",
			len(d.Clusters), *spec.NumberOfClusters, strings.Join(d.Names(), ", "))
	}
	return d
}

// explain summarises why clusters were left out.
func explain(total int, excluded map[string]int) string {
	if total == 0 {
		return ": the hub has no clusters"
	}
	var parts []string
	for why, n := range excluded {
		parts = append(parts, fmt.Sprintf("%d %s", n, why))
	}
	sort.Strings(parts)
	return fmt.Sprintf(" (of %d: %s)", total, strings.Join(parts, ", "))
}

// eligible says whether a cluster may be chosen, and if not, why.
func eligible(c Cluster, spec v1alpha1.PlacementSpec, chosenBefore bool) (bool, string, error) {
	if c.Deleting {
		return false, "being deleted", nil
	}
	ok, err := Matches(spec.Clusters, c)
	if err != nil {
		return false, "", err
	}
	if !ok {
		return false, "not selected", nil
	}
	for _, t := range c.Taints {
		if tolerated(t, spec.Tolerations) {
			continue
		}
		// NoSchedule keeps what is there and takes nothing new; NoExecute takes work away.
		if t.Effect == corev1.TaintEffectNoSchedule && chosenBefore {
			continue
		}
		return false, "tainted", nil
	}
	return true, "", nil
}

// tolerated reports whether a toleration matches the taint.
func tolerated(t corev1.Taint, tolerations []corev1.Toleration) bool {
	for _, tol := range tolerations {
		if tol.Effect != "" && tol.Effect != t.Effect {
			continue
		}
		if tol.Key == "" && tol.Operator == corev1.TolerationOpExists {
			return true
		}
		if tol.Key != t.Key {
			continue
		}
		switch tol.Operator {
		case corev1.TolerationOpExists:
			return true
		case "", corev1.TolerationOpEqual:
			if tol.Value == t.Value {
				return true
			}
		}
	}
	return false
}

// Matches reports whether a cluster satisfies an affinity: every field that is set must match.
func Matches(a v1alpha1.ClusterAffinity, c Cluster) (bool, error) {
	if len(a.Names) > 0 && !slices.Contains(a.Names, c.Name) {
		return false, nil
	}
	if len(a.Regions) > 0 && !slices.Contains(a.Regions, c.Region) {
		return false, nil
	}
	if len(a.Environments) > 0 && !slices.Contains(a.Environments, c.Environment) {
		return false, nil
	}
	if len(a.Zones) > 0 && !slices.ContainsFunc(c.Zones, func(z string) bool { return slices.Contains(a.Zones, z) }) {
		return false, nil
	}
	if a.LabelSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(a.LabelSelector)
		if err != nil {
			return false, fmt.Errorf("cluster label selector: %w", err)
		}
		if !sel.Matches(labels.Set(c.Labels)) {
			return false, nil
		}
	}
	return true, nil
}

// group is a cluster's value in one topology. A cluster in several zones is a group of its own
// zone set.
func group(c Cluster, t v1alpha1.Topology) string {
	switch t {
	case "region":
		return c.Region
	case "environment":
		return c.Environment
	default:
		z := slices.Clone(c.Zones)
		slices.Sort(z)
		return strings.Join(z, ",")
	}
}

func groupsOf(cs []Cluster, t v1alpha1.Topology) map[string]int {
	g := map[string]int{}
	for _, c := range cs {
		g[group(c, t)]++
	}
	return g
}

// pick chooses up to limit clusters in candidate order, honouring the spread constraints:
// first one cluster per new group for constraints that want many groups, then the rest,
// never more per group than a constraint allows.
func pick(candidates []Cluster, spread []v1alpha1.SpreadConstraint, limit int) []Cluster {
	var chosen []Cluster
	taken := map[string]bool{}
	counts := map[v1alpha1.Topology]map[string]int{}
	for _, sc := range spread {
		counts[sc.Topology] = map[string]int{}
	}
	fits := func(c Cluster, newGroupsOnly bool) bool {
		newGroup := false
		for _, sc := range spread {
			n := counts[sc.Topology][group(c, sc.Topology)]
			if sc.MaxClustersPerGroup != nil && n >= int(*sc.MaxClustersPerGroup) {
				return false
			}
			if sc.MinGroups != nil && n == 0 {
				newGroup = true
			}
		}
		return !newGroupsOnly || newGroup
	}
	take := func(c Cluster) {
		chosen = append(chosen, c)
		taken[c.Name] = true
		for _, sc := range spread {
			counts[sc.Topology][group(c, sc.Topology)]++
		}
	}
	wantsGroups := slices.ContainsFunc(spread, func(sc v1alpha1.SpreadConstraint) bool { return sc.MinGroups != nil })
	if wantsGroups {
		for _, c := range candidates {
			if len(chosen) < limit && fits(c, true) {
				take(c)
			}
		}
	}
	for _, c := range candidates {
		if len(chosen) < limit && !taken[c.Name] && fits(c, false) {
			take(c)
		}
	}
	return chosen
}

// weightOf is a cluster's static weight: the first matching entry, else 1.
func weightOf(c Cluster, rs *v1alpha1.ReplicaScheduling) (int64, error) {
	if rs == nil {
		return 1, nil
	}
	for _, w := range rs.Weights {
		ok, err := Matches(w.Clusters, c)
		if err != nil {
			return 0, fmt.Errorf("weight selector: %w", err)
		}
		if ok {
			return int64(w.Weight), nil
		}
	}
	return 1, nil
}
