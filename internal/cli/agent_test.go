package cli

import (
	"net/netip"
	"testing"

	"github.com/convoy-dev/convoy/internal/observe"
)

// TestParsePodReach: --collector-pods, and its default inside and outside the cluster.
func TestParsePodReach(t *testing.T) {
	for _, tc := range []struct {
		in        string
		inCluster bool
		want      observe.PodReach
		err       bool
	}{
		{in: "", inCluster: true, want: observe.PodReach{}},
		{in: "", inCluster: false, want: observe.PodReach{None: true}},
		{in: "all", want: observe.PodReach{}},
		{in: "none", inCluster: true, want: observe.PodReach{None: true}},
		{in: "10.64.1.7/18", want: observe.PodReach{Network: netip.MustParsePrefix("10.64.0.0/18")}},
		{in: "fd00::/64", err: true},
		{in: "every", err: true},
	} {
		got, err := parsePodReach(tc.in, tc.inCluster)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parsePodReach(%q, %v) = %+v, %v; want %+v (error %v)", tc.in, tc.inCluster, got, err, tc.want, tc.err)
		}
	}
}
