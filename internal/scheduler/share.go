package scheduler

import "github.com/convoy-dev/convoy/api/v1alpha1"

// Workload is what Share needs of one Divided workload template.
type Workload struct {
	// Replicas is the template's total.
	Replicas int32
	// Stateful workloads (StatefulSets, and anything that mounts a PersistentVolumeClaim) stay
	// on a failed-over cluster unless the failover policy lets them move.
	Stateful bool
	// Requests is what one replica asks for, for dynamic weights.
	Requests Resources
}

// Current is what one cluster has of a workload now, as its Work sends it and its agent
// reports it.
type Current struct {
	// Sent is true when the cluster's Work carries the workload, with Replicas.
	Sent     bool
	Replicas int32
	// Available is true when the member reports the Work's current content healthy, with
	// AvailableReplicas of them available.
	Available         bool
	AvailableReplicas int32
}

// Share divides a workload's replicas over the chosen clusters and says what each one is
// sent now. Failed-over clusters get no share (their Works stay as they were, so the total
// goes to the healthy ones), except stateful workloads when the policy keeps them in place.
// Weights are the choices' static weights, or with dynamicWeight each cluster's free capacity
// in replicas. A cluster's share shrinks only once every cluster whose share is not zero has
// its new share available (create before delete): until then it keeps what it has. Clusters
// left out of the result are not sharing.
func Share(w Workload, chosen []Choice, clusters map[string]Cluster, rs *v1alpha1.ReplicaScheduling,
	failedOver map[string]bool, moveStateful bool, current map[string]Current) map[string]int32 {
	minPer := int32(0)
	if rs != nil && rs.MinReplicasPerCluster != nil {
		minPer = *rs.MinReplicasPerCluster
	}
	var sharing []Choice
	for _, ch := range chosen {
		if !failedOver[ch.Name] || (w.Stateful && !moveStateful) {
			sharing = append(sharing, ch)
		}
	}
	weights := make([]int64, len(sharing))
	for i, ch := range sharing {
		weights[i] = ch.Weight
		if rs != nil && rs.DynamicWeight != "" {
			weights[i] = 0
			if free := clusters[ch.Name].Free; free != nil {
				weights[i] = Fit(*free, w.Requests)
			}
		}
	}
	target := Divide(w.Replicas, weights, minPer)
	// Shrinking waits until every cluster has its new share available, as its agent reports
	// it (a cluster that does not report holds the others).
	allAvailable := true
	for i, ch := range sharing {
		cur := current[ch.Name]
		if target[i] > 0 && (!cur.Available || cur.AvailableReplicas < target[i]) {
			allAvailable = false
		}
	}
	out := make(map[string]int32, len(sharing))
	for i, ch := range sharing {
		share := target[i]
		if cur := current[ch.Name]; cur.Sent && share < cur.Replicas && !allAvailable {
			share = cur.Replicas // give up replicas only once the others have theirs
		}
		out[ch.Name] = share
	}
	return out
}
