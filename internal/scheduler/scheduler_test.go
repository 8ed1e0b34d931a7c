package scheduler

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/cases")

// goldenCase is one file of testdata/cases: a fleet, a Placement, what it chose before, and
// replica totals to divide.
type goldenCase struct {
	Clusters  []Cluster              `json:"clusters"`
	Placement v1alpha1.PlacementSpec `json:"placement"`
	Previous  []string               `json:"previous"`
	Divide    []int32                `json:"divide"`
}

// TestGolden runs every testdata/cases/*.yaml and compares the decision with its .golden
// file. go test -run TestGolden -update rewrites them; review the diff.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/cases/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var c goldenCase
			if err := yaml.UnmarshalStrict(raw, &c); err != nil {
				t.Fatal(err)
			}
			got := render(c)
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("decision differs from %s:\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

func render(c goldenCase) string {
	d := Schedule(c.Clusters, c.Placement, c.Previous)
	var b strings.Builder
	fmt.Fprintf(&b, "ok: %v\nreason: %s\nmessage: %s\n", d.OK, d.Reason, d.Message)
	for _, ch := range d.Clusters {
		fmt.Fprintf(&b, "cluster %s weight=%d healthy=%v\n", ch.Name, ch.Weight, ch.Healthy)
	}
	weights := make([]int64, len(d.Clusters))
	for i, ch := range d.Clusters {
		weights[i] = ch.Weight
	}
	minPer := int32(0)
	if c.Placement.Replicas != nil && c.Placement.Replicas.MinReplicasPerCluster != nil {
		minPer = *c.Placement.Replicas.MinReplicasPerCluster
	}
	for _, total := range c.Divide {
		fmt.Fprintf(&b, "divide %d: %v\n", total, Divide(total, weights, minPer))
	}
	return b.String()
}

func fleet() []Cluster {
	mk := func(name, region, env string, zones ...string) Cluster {
		return Cluster{Name: name, Region: region, Environment: env, Zones: zones, Healthy: true,
			Labels: map[string]string{v1alpha1.LabelRegion: region, v1alpha1.LabelEnvironment: env}}
	}
	return []Cluster{
		mk("us-east-1", "us-east", "prod", "a"),
		mk("us-east-2", "us-east", "prod", "b"),
		mk("us-west-1", "us-west", "prod", "a"),
		mk("eu-west-1", "eu-west", "prod", "a"),
		mk("eu-west-2", "eu-west", "staging", "b"),
	}
}

func TestSchedule(t *testing.T) {
	tainted := fleet()
	tainted[0].Taints = []corev1.Taint{{Key: "maintenance", Effect: corev1.TaintEffectNoSchedule}}
	tainted[1].Taints = []corev1.Taint{{Key: "gone", Value: "yes", Effect: corev1.TaintEffectNoExecute}}
	deleting := fleet()
	deleting[3].Deleting = true

	cases := []struct {
		name     string
		clusters []Cluster
		spec     v1alpha1.PlacementSpec
		previous []string
		want     []string
		reason   string
	}{
		{"everything", fleet(), v1alpha1.PlacementSpec{}, nil,
			[]string{"eu-west-1", "eu-west-2", "us-east-1", "us-east-2", "us-west-1"}, ReasonScheduled},
		{"by label", fleet(), v1alpha1.PlacementSpec{Clusters: v1alpha1.ClusterAffinity{LabelSelector: &metav1.LabelSelector{
			MatchLabels: map[string]string{v1alpha1.LabelEnvironment: "staging"}}}}, nil,
			[]string{"eu-west-2"}, ReasonScheduled},
		{"by names and region", fleet(), v1alpha1.PlacementSpec{Clusters: v1alpha1.ClusterAffinity{
			Names: []string{"us-east-1", "eu-west-1"}, Regions: []string{"us-east"}}}, nil,
			[]string{"us-east-1"}, ReasonScheduled},
		{"by zone", fleet(), v1alpha1.PlacementSpec{Clusters: v1alpha1.ClusterAffinity{Zones: []string{"b"}}}, nil,
			[]string{"eu-west-2", "us-east-2"}, ReasonScheduled},
		{"nothing matches", fleet(), v1alpha1.PlacementSpec{Clusters: v1alpha1.ClusterAffinity{Regions: []string{"mars"}}}, nil,
			nil, ReasonNoClusters},
		{"no clusters at all", nil, v1alpha1.PlacementSpec{}, nil, nil, ReasonNoClusters},
		{"taints keep out new work", tainted, v1alpha1.PlacementSpec{}, nil,
			[]string{"eu-west-1", "eu-west-2", "us-west-1"}, ReasonScheduled},
		{"NoSchedule keeps what was there, NoExecute does not", tainted, v1alpha1.PlacementSpec{}, []string{"us-east-1", "us-east-2"},
			[]string{"eu-west-1", "eu-west-2", "us-east-1", "us-west-1"}, ReasonScheduled},
		{"tolerations", tainted, v1alpha1.PlacementSpec{Tolerations: []corev1.Toleration{
			{Key: "maintenance", Operator: corev1.TolerationOpExists}, {Key: "gone", Value: "yes", Effect: corev1.TaintEffectNoExecute}}}, nil,
			[]string{"eu-west-1", "eu-west-2", "us-east-1", "us-east-2", "us-west-1"}, ReasonScheduled},
		{"a wrong toleration value", tainted, v1alpha1.PlacementSpec{Tolerations: []corev1.Toleration{
			{Key: "gone", Value: "no"}}}, nil,
			[]string{"eu-west-1", "eu-west-2", "us-west-1"}, ReasonScheduled},
		{"deleting clusters are left out", deleting, v1alpha1.PlacementSpec{Clusters: v1alpha1.ClusterAffinity{Regions: []string{"eu-west"}}}, nil,
			[]string{"eu-west-2"}, ReasonScheduled},
		{"N clusters, stable", fleet(), v1alpha1.PlacementSpec{NumberOfClusters: ptr.To[int32](2)}, []string{"us-west-1"},
			[]string{"eu-west-1", "us-west-1"}, ReasonScheduled},
		{"more asked than there are", fleet(), v1alpha1.PlacementSpec{NumberOfClusters: ptr.To[int32](9)}, nil,
			[]string{"eu-west-1", "eu-west-2", "us-east-1", "us-east-2", "us-west-1"}, ReasonFewerClusters},
		{"one per region", fleet(), v1alpha1.PlacementSpec{Spread: []v1alpha1.SpreadConstraint{{Topology: "region", MaxClustersPerGroup: ptr.To[int32](1)}}}, nil,
			[]string{"eu-west-1", "us-east-1", "us-west-1"}, ReasonScheduled},
		{"three regions in three clusters, at most 2 per region", fleet(), v1alpha1.PlacementSpec{NumberOfClusters: ptr.To[int32](3),
			Spread: []v1alpha1.SpreadConstraint{{Topology: "region", MaxClustersPerGroup: ptr.To[int32](2), MinGroups: ptr.To[int32](3)}}}, nil,
			[]string{"eu-west-1", "us-east-1", "us-west-1"}, ReasonScheduled},
		{"four regions wanted", fleet(), v1alpha1.PlacementSpec{
			Spread: []v1alpha1.SpreadConstraint{{Topology: "region", MinGroups: ptr.To[int32](4)}}}, nil,
			nil, ReasonSpreadUnsatisfied},
		{"a bad selector", fleet(), v1alpha1.PlacementSpec{Clusters: v1alpha1.ClusterAffinity{LabelSelector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "x", Operator: "Near"}}}}}, nil,
			nil, ReasonInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Schedule(c.clusters, c.spec, c.previous)
			if !slices.Equal(d.Names(), c.want) && !(len(c.want) == 0 && len(d.Names()) == 0) {
				t.Errorf("chose %v, want %v (%s)", d.Names(), c.want, d.Message)
			}
			if d.Reason != c.reason {
				t.Errorf("reason %s, want %s (%s)", d.Reason, c.reason, d.Message)
			}
			if d.OK != (c.reason == ReasonScheduled || c.reason == ReasonFewerClusters) {
				t.Errorf("OK = %v with reason %s", d.OK, d.Reason)
			}
		})
	}
}

func TestDivide(t *testing.T) {
	cases := []struct {
		total   int32
		weights []int64
		min     int32
		want    []int32
	}{
		{6, []int64{1, 1, 1}, 0, []int32{2, 2, 2}},
		{7, []int64{1, 1, 1}, 0, []int32{3, 2, 2}},
		{8, []int64{1, 1, 1}, 0, []int32{3, 3, 2}},
		{6, []int64{1, 1, 1, 1}, 0, []int32{2, 2, 1, 1}},
		{10, []int64{3, 1}, 0, []int32{8, 2}}, // 7.5 and 2.5: the tie goes to the larger weight
		{10, []int64{1, 3}, 0, []int32{2, 8}},
		{5, []int64{0, 0}, 0, []int32{3, 2}}, // all zero: equal
		{5, []int64{-4, 1}, 0, []int32{0, 5}},
		{10, []int64{100, 1, 1}, 2, []int32{6, 2, 2}},
		{3, []int64{1, 1, 1, 1}, 2, []int32{1, 1, 1, 0}}, // not enough for the minimum
		{0, []int64{1, 1}, 0, []int32{0, 0}},
		{-3, []int64{1, 1}, 0, []int32{0, 0}},
		{5, nil, 0, []int32{}},
		{2147483647, []int64{maxWeight * 10, 1}, 0, []int32{2147483645, 2}},
	}
	for _, c := range cases {
		got := Divide(c.total, c.weights, c.min)
		if !slices.Equal(got, c.want) {
			t.Errorf("Divide(%d, %v, min %d) = %v, want %v", c.total, c.weights, c.min, got, c.want)
		}
	}
}

func TestFit(t *testing.T) {
	free := Resources{MilliCPU: 4000, Memory: 8 << 30, Pods: 110}
	if got := Fit(free, Resources{MilliCPU: 500, Memory: 256 << 20}); got != 8 {
		t.Errorf("CPU-bound fit = %d, want 8", got)
	}
	if got := Fit(free, Resources{MilliCPU: 10, Memory: 1 << 30}); got != 8 {
		t.Errorf("memory-bound fit = %d, want 8", got)
	}
	if got := Fit(free, Resources{}); got != 110 {
		t.Errorf("pods-bound fit = %d, want 110", got)
	}
	if got := Fit(Resources{MilliCPU: -5, Pods: 3}, Resources{MilliCPU: 1}); got != 0 {
		t.Errorf("overcommitted fit = %d, want 0", got)
	}
}
