package profile

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

func TestCheckVersionChange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		from, to string
		want     error  // nil: allowed
		says     string // part of the message, for the ones a user reads
	}{
		{"", "v1.36.3", nil, ""},
		{"v1.36.3", "v1.36.3", nil, ""},
		{"v1.36.3", "v1.36.5", nil, ""},
		{"v1.36.3", "v1.37.2", nil, ""},
		{"v1.36.3", "v1.37.0", nil, ""},
		{"v1.36.3", "v1.38.0", ErrSkipLevel, "Kubernetes v1.36.3 to v1.38.0 skips v1.37: the version skew policy moves one minor version at a time; go to v1.37.x first"},
		{"v1.36.3", "v1.39.0", ErrSkipLevel, "skips v1.37 and v1.38"},
		{"v1.36.3", "v1.36.1", ErrDowngrade, "keep v1.36.3 or move up"},
		{"v1.37.2", "v1.36.3", ErrDowngrade, "Kubernetes v1.37.2 to v1.36.3 is a downgrade"},
		{"v1.37.2", "v2.0.0", ErrMajorChange, "a profile of their own"},
		{"", "1.37.2", ErrMalformedVersion, `"1.37.2" is malformed; write it as vMAJOR.MINOR.PATCH`},
		{"", "v1.37", ErrMalformedVersion, ""},
		{"", "v1.37.2-rc.0", ErrMalformedVersion, ""},
		{"", "v1.+37.2", ErrMalformedVersion, ""},
		{"v1.x.0", "v1.37.2", ErrMalformedVersion, `"v1.x.0"`},
	} {
		err := CheckVersionChange(tc.from, tc.to)
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%q to %q: %v, want allowed", tc.from, tc.to, err)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%q to %q: %v, want %v", tc.from, tc.to, err, tc.want)
		case err != nil && !strings.Contains(err.Error(), tc.says):
			t.Errorf("%q to %q: %q does not say %q", tc.from, tc.to, err, tc.says)
		}
	}
}

func TestCheckAvailable(t *testing.T) {
	t.Parallel()
	available := []string{"v1.36.3", "v1.37.2"}
	if err := CheckAvailable("v1.37.2", available); err != nil {
		t.Errorf("v1.37.2: %v", err)
	}
	err := CheckAvailable("v1.38.0", available)
	if want := "Kubernetes v1.38.0 is not available on this hub (available: v1.36.3, v1.37.2)"; !errors.Is(err, ErrUnavailable) || err.Error() != want {
		t.Errorf("v1.38.0: %v, want %q", err, want)
	}
	if err := CheckAvailable("v1.37.2", nil); err == nil || !strings.Contains(err.Error(), "available: none") {
		t.Errorf("no versions: %v", err)
	}
}

var shipped = map[string]string{"coredns": "v1.12.4", "storage": "v0.0.31", "metrics": "v1.118.0"}

func TestValidate(t *testing.T) {
	t.Parallel()
	available := []string{"v1.36.3", "v1.37.2"}
	for _, tc := range []struct {
		name string
		spec v1alpha1.ClusterProfileSpec
		want []string // substrings of the reasons, in order
	}{
		{"fine", v1alpha1.ClusterProfileSpec{
			KubernetesVersion: "v1.37.2",
			Addons:            []v1alpha1.Addon{{Name: "coredns"}, {Name: "storage", Version: "0.0.31"}, {Name: "kube-proxy", Version: "v1.37.2"}, {Name: "metrics", Version: "v1.118.0"}},
			APIServer:         &v1alpha1.APIServerSettings{FeatureGates: map[string]bool{"InPlacePodVerticalScaling": true}},
		}, nil},
		{"version not on the hub", v1alpha1.ClusterProfileSpec{KubernetesVersion: "v1.38.0"}, []string{"Kubernetes v1.38.0 is not available on this hub"}},
		{"version malformed", v1alpha1.ClusterProfileSpec{KubernetesVersion: "1.37"}, []string{"is malformed"}},
		{"add-ons at other versions", v1alpha1.ClusterProfileSpec{
			KubernetesVersion: "v1.37.2",
			Addons:            []v1alpha1.Addon{{Name: "coredns", Version: "v1.11.0"}, {Name: "kube-proxy", Version: "v1.36.3"}},
		}, []string{
			"add-on coredns v1.11.0 is not the version this hub ships (v1.12.4); set v1.12.4 or leave its version empty",
			"add-on kube-proxy runs the cluster's Kubernetes version: set its version to v1.37.2 or leave it empty",
		}},
		{"add-on the hub does not ship", v1alpha1.ClusterProfileSpec{KubernetesVersion: "v1.37.2", Addons: []v1alpha1.Addon{{Name: "nope"}}}, []string{"this hub ships no add-on nope; remove it from spec.addons"}},
		{"unnamed feature gate", v1alpha1.ClusterProfileSpec{KubernetesVersion: "v1.37.2", APIServer: &v1alpha1.APIServerSettings{FeatureGates: map[string]bool{"": true}}}, []string{"an entry without a name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Validate(tc.spec, available, shipped)
			if len(got) != len(tc.want) {
				t.Fatalf("got %q, want reasons saying %q", got, tc.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tc.want[i]) {
					t.Errorf("reason %d: %q does not say %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestEffective(t *testing.T) {
	t.Parallel()
	spec := v1alpha1.ClusterProfileSpec{
		KubernetesVersion: "v1.37.2",
		NodePools:         []v1alpha1.NodePool{{Name: "system", Count: 1}, {Name: "workers", Count: 3}},
	}
	pools := func(ps []v1alpha1.NodePool) []string {
		var out []string
		for _, p := range ps {
			out = append(out, fmt.Sprintf("%s=%d", p.Name, p.Count))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		own  []v1alpha1.NodePool // the cluster's; nil cluster when name says so
		want []string
	}{
		{"no cluster yet", nil, []string{"system=1", "workers=3"}},
		{"its own count in a template's place, then its own pools", []v1alpha1.NodePool{{Name: "gpu", Count: 2}, {Name: "workers", Count: 5}}, []string{"system=1", "workers=5", "gpu=2"}},
	} {
		var c *v1alpha1.Cluster
		if tc.own != nil {
			c = &v1alpha1.Cluster{Spec: v1alpha1.ClusterSpec{NodePools: tc.own}}
		}
		v, got := Effective(spec, c)
		if v != "v1.37.2" || !slices.Equal(pools(got), tc.want) {
			t.Errorf("%s: %s %v, want v1.37.2 %v", tc.name, v, pools(got), tc.want)
		}
	}
	// The pools are copies: a caller that changes them changes neither the spec nor the cluster.
	c := &v1alpha1.Cluster{Spec: v1alpha1.ClusterSpec{NodePools: []v1alpha1.NodePool{{Name: "workers", Count: 5, Labels: map[string]string{"a": "b"}}}}}
	_, got := Effective(spec, c)
	got[0].Count, got[1].Labels["a"] = 9, "changed"
	if spec.NodePools[0].Count != 1 || c.Spec.NodePools[0].Labels["a"] != "b" {
		t.Error("Effective's pools share memory with its arguments")
	}
}

func TestDiff(t *testing.T) {
	t.Parallel()
	spec := v1alpha1.ClusterProfileSpec{
		KubernetesVersion: "v1.37.2",
		Addons:            []v1alpha1.Addon{{Name: "coredns"}, {Name: "kube-proxy"}, {Name: "storage", Version: "v0.0.30"}},
		APIServer:         &v1alpha1.APIServerSettings{FeatureGates: map[string]bool{"Alpha": true, "Beta": false}},
		Namespaces:        []string{"monitoring", "shop"},
	}
	conforming := func() *v1alpha1.Inventory {
		return &v1alpha1.Inventory{
			KubernetesVersion:   "v1.37.2",
			KubeletVersions:     map[string]int32{"v1.37.2": 3},
			Addons:              map[string]string{"coredns": "1.12.4", "kube-proxy": "v1.37.2", "storage": "v0.0.30", "metrics": "v1.118.0"},
			EnabledFeatureGates: []string{"Alpha", "Other"},
			Namespaces:          []string{"default", "monitoring", "shop"},
		}
	}
	type d = v1alpha1.ProfileDrift
	for _, tc := range []struct {
		name   string
		change func(*v1alpha1.Inventory) *v1alpha1.Inventory
		want   []d
	}{
		{"conforms", func(i *v1alpha1.Inventory) *v1alpha1.Inventory { return i }, nil},
		{"nothing reported yet", func(*v1alpha1.Inventory) *v1alpha1.Inventory { return nil }, []d{{Field: "inventory", Want: "reported"}}},
		{"no nodes", func(i *v1alpha1.Inventory) *v1alpha1.Inventory {
			i.KubeletVersions = map[string]int32{"v1.36.3": 0}
			return i
		}, nil},
		{"mid-upgrade", func(i *v1alpha1.Inventory) *v1alpha1.Inventory {
			i.KubernetesVersion = "v1.36.3"
			i.KubeletVersions = map[string]int32{"v1.37.2": 1, "v1.36.3": 2}
			i.Addons["kube-proxy"] = "v1.36.3"
			return i
		}, []d{
			{Field: "addons[kube-proxy].version", Want: "v1.37.2", Have: "v1.36.3"},
			{Field: "kubernetesVersion", Want: "v1.37.2", Have: "v1.36.3"},
			{Field: "nodes.kubeletVersion", Want: "v1.37.2 on all 3 nodes", Have: "v1.36.3 on 2, v1.37.2 on 1"},
		}},
		{"every field", func(i *v1alpha1.Inventory) *v1alpha1.Inventory {
			i.KubeletVersions = map[string]int32{"v1.36.3": 2}
			delete(i.Addons, "coredns")
			i.Addons["storage"] = "v0.0.31"
			i.EnabledFeatureGates = []string{"Beta"}
			i.Namespaces = []string{"shop"}
			return i
		}, []d{
			{Field: "addons[coredns].version", Want: "v1.12.4"},
			{Field: "addons[storage].version", Want: "v0.0.30", Have: "v0.0.31"},
			{Field: "apiServer.featureGates[Alpha]", Want: "true", Have: "false"},
			{Field: "apiServer.featureGates[Beta]", Want: "false", Have: "true"},
			{Field: "namespaces[monitoring]", Want: "present"},
			{Field: "nodes.kubeletVersion", Want: "v1.37.2 on all 2 nodes", Have: "v1.36.3 on 2"},
		}},
		// Fail static: what the agent could not see is not missing.
		{"feature gates not read", func(i *v1alpha1.Inventory) *v1alpha1.Inventory {
			i.EnabledFeatureGates = nil
			return i
		}, nil},
		{"no feature gate enabled", func(i *v1alpha1.Inventory) *v1alpha1.Inventory {
			i.EnabledFeatureGates = []string{}
			return i
		}, []d{{Field: "apiServer.featureGates[Alpha]", Want: "true", Have: "false"}}},
		{"namespaces cut at the agent's cap", func(i *v1alpha1.Inventory) *v1alpha1.Inventory {
			i.Namespaces = namespaces(256)
			return i
		}, nil},
		{"namespaces one short of the cap", func(i *v1alpha1.Inventory) *v1alpha1.Inventory {
			i.Namespaces = namespaces(255)
			return i
		}, []d{{Field: "namespaces[monitoring]", Want: "present"}, {Field: "namespaces[shop]", Want: "present"}}},
	} {
		if got := Diff(spec, shipped, tc.change(conforming())); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}

// namespaces are n namespaces none of which a profile of these tests asks for.
func namespaces(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("ns-%03d", i)
	}
	return out
}

func TestInWindow(t *testing.T) {
	t.Parallel()
	monday := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return monday.Add(d) }
	weekends := []v1alpha1.MaintenanceWindow{{Days: []string{"Sat", "Sun"}, Start: "22:00", Hours: 4}}
	for _, tc := range []struct {
		name    string
		windows []v1alpha1.MaintenanceWindow
		now     time.Time
		open    bool
		next    time.Time
	}{
		{"none: always", nil, at(0), true, time.Time{}},
		{"before the week's first", weekends, at(3 * time.Hour), false, at(5*24*time.Hour + 22*time.Hour)},
		{"inside", weekends, at(5*24*time.Hour + 23*time.Hour), true, time.Time{}},
		{"past midnight, opened the day before", weekends, at(6*24*time.Hour + time.Hour), true, time.Time{}},
		{"a Sunday's runs into Monday", weekends, at(7*24*time.Hour + time.Hour), true, time.Time{}},
		{"closed at its end", weekends, at(7*24*time.Hour + 2*time.Hour), false, at(12*24*time.Hour + 22*time.Hour)},
		{"every day, the sooner of two", []v1alpha1.MaintenanceWindow{{Start: "12:00", Hours: 1}, {Days: []string{"Mon"}, Start: "06:00", Hours: 1}}, at(time.Hour), false, at(6 * time.Hour)},
		{"in another zone, judged in UTC", weekends, at(5*24*time.Hour + 23*time.Hour).In(time.FixedZone("UTC+9", 9*3600)), true, time.Time{}},
		{"none that parses: never", []v1alpha1.MaintenanceWindow{{Start: "25:00", Hours: 1}}, at(0), false, time.Time{}},
	} {
		open, next := InWindow(tc.windows, tc.now)
		if open != tc.open || !next.Equal(tc.next) {
			t.Errorf("%s: %t %s, want %t %s", tc.name, open, next, tc.open, tc.next)
		}
	}
}
