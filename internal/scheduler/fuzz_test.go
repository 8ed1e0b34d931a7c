package scheduler

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// FuzzSchedule feeds arbitrary Placements and fleets to the scheduler. It must never panic,
// must decide the same way twice and whatever the order of the fleet, must choose only
// eligible clusters (checked against ineligible, written apart from the scheduler), each once,
// and Divide must hand out exactly the total. The seed corpus
// is in testdata/fuzz/FuzzSchedule.
func FuzzSchedule(f *testing.F) {
	f.Add([]byte(`{"replicas":{"type":"Divided"}}`), []byte(`[{"name":"a","region":"r1"},{"name":"b","region":"r2"}]`), int32(6), int32(0))
	f.Add([]byte(`{"numberOfClusters":2,"spread":[{"topology":"region","maxClustersPerGroup":1,"minGroups":2}]}`),
		[]byte(`[{"name":"a","region":"r1"},{"name":"b","region":"r1"},{"name":"c","region":"r2"}]`), int32(5), int32(2))
	f.Add([]byte(`{"replicas":{"type":"Divided","weights":[{"clusters":{"names":["a"]},"weight":0}]}}`), []byte(`[{"name":"a"}]`), int32(-1), int32(-1))
	f.Add([]byte(`{"clusters":{"labelSelector":{"matchLabels":{"fleet":"x"}},"zones":["z1"]},"tolerations":[{"key":"gpu","operator":"Exists"}]}`),
		[]byte(`[{"name":"a","labels":{"fleet":"x"},"zones":["z1"],"taints":[{"key":"gpu","effect":"NoSchedule"}]},{"name":"b","labels":{"fleet":"x"},"zones":["z1"],"taints":[{"key":"spot","value":"y","effect":"NoExecute"}]},{"name":"c","labels":{"fleet":"x"},"zones":["z1"],"deleting":true}]`), int32(3), int32(0))
	f.Fuzz(func(t *testing.T, specJSON, clustersJSON []byte, total, minPer int32) {
		var spec v1alpha1.PlacementSpec
		var clusters []Cluster
		if json.Unmarshal(specJSON, &spec) != nil || json.Unmarshal(clustersJSON, &clusters) != nil {
			return
		}
		d := Schedule(clusters, spec, nil)
		reversed := slices.Clone(clusters)
		slices.Reverse(reversed)
		if d2 := Schedule(reversed, spec, nil); fmt.Sprint(d2) != fmt.Sprint(d) {
			// Names may repeat in fuzzed fleets; only then may the order matter.
			if !hasDuplicateNames(clusters) {
				t.Fatalf("the fleet's order changed the decision:\n%v\n%v", d, d2)
			}
		}
		if !d.OK && len(d.Clusters) > 0 {
			t.Fatalf("a failed decision chose clusters: %v", d)
		}
		seen := map[string]bool{}
		weights := make([]int64, 0, len(d.Clusters))
		for _, c := range d.Clusters {
			if seen[c.Name] && !hasDuplicateNames(clusters) {
				t.Fatalf("cluster %s chosen twice", c.Name)
			}
			seen[c.Name] = true
			weights = append(weights, c.Weight)
		}
		if !hasDuplicateNames(clusters) {
			byName := map[string]Cluster{}
			for _, c := range clusters {
				byName[c.Name] = c
			}
			for _, ch := range d.Clusters {
				if why := ineligible(byName[ch.Name], spec); why != "" {
					t.Fatalf("chose cluster %s, which is %s", ch.Name, why)
				}
			}
		}
		if spec.NumberOfClusters != nil && len(d.Clusters) > int(*spec.NumberOfClusters) {
			t.Fatalf("chose %d clusters, more than %d", len(d.Clusters), *spec.NumberOfClusters)
		}
		shares := Divide(total, weights, minPer)
		var sum int64
		for _, s := range shares {
			if s < 0 {
				t.Fatalf("negative share in %v", shares)
			}
			sum += int64(s)
		}
		if len(shares) > 0 && total > 0 && sum != int64(total) {
			t.Fatalf("Divide(%d, %v, %d) = %v sums to %d", total, weights, minPer, shares, sum)
		}
		if (len(shares) == 0 || total <= 0) && sum != 0 {
			t.Fatalf("Divide handed out %d of nothing", sum)
		}
	})
}

// ineligible says why a cluster may not be chosen for spec with nothing chosen before, or ""
// when it may. It is written apart from the scheduler's own filter, from the rules as the
// README states them: a cluster being deleted is never chosen; every field of spec.clusters
// that is set must match (names, labels, regions, zones, environments); every taint must be
// tolerated, as Kubernetes tolerations tolerate taints.
func ineligible(c Cluster, spec v1alpha1.PlacementSpec) string {
	a := spec.Clusters
	switch {
	case c.Deleting:
		return "being deleted"
	case len(a.Names) > 0 && !slices.Contains(a.Names, c.Name):
		return "not among spec.clusters.names"
	case len(a.Regions) > 0 && !slices.Contains(a.Regions, c.Region):
		return "not in spec.clusters.regions"
	case len(a.Environments) > 0 && !slices.Contains(a.Environments, c.Environment):
		return "not in spec.clusters.environments"
	case len(a.Zones) > 0 && !slices.ContainsFunc(a.Zones, func(z string) bool { return slices.Contains(c.Zones, z) }):
		return "in none of spec.clusters.zones"
	}
	if a.LabelSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(a.LabelSelector)
		if err != nil || !sel.Matches(labels.Set(c.Labels)) {
			return "not matched by spec.clusters.labelSelector"
		}
	}
	for _, taint := range c.Taints {
		if !slices.ContainsFunc(spec.Tolerations, func(tol corev1.Toleration) bool {
			if tol.Effect != "" && tol.Effect != taint.Effect {
				return false
			}
			if tol.Operator == corev1.TolerationOpExists {
				return tol.Key == "" || tol.Key == taint.Key
			}
			return tol.Key == taint.Key && tol.Value == taint.Value
		}) {
			return "tainted " + taint.Key + ":" + string(taint.Effect) + " without a toleration"
		}
	}
	return ""
}

func hasDuplicateNames(cs []Cluster) bool {
	seen := map[string]bool{}
	for _, c := range cs {
		if seen[c.Name] {
			return true
		}
		seen[c.Name] = true
	}
	return false
}
