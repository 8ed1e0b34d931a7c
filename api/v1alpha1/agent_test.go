package v1alpha1

import (
	"testing"
	"time"
)

func TestFleetHeartbeatInterval(t *testing.T) {
	s := time.Second
	cases := []struct {
		base     time.Duration
		rate     float64
		clusters int
		want     time.Duration
	}{
		{0, 0, 0, 2 * s},
		{0, 0, 100, 2 * s},   // 50 a second: within the default rate
		{0, 0, 101, 5 * s},   // just over: the next step
		{0, 0, 250, 5 * s},   // exactly 50 a second
		{0, 0, 1000, 20 * s}, // 50 a second
		{0, 0, 1001, 30 * s},
		{0, 0, 100000, 120 * s},
		{10 * s, 0, 10, 10 * s},     // a longer base stays
		{7 * s, 0, 400, 10 * s},     // steps below the base are skipped
		{0, 500, 1000, 2 * s},       // a datastore that takes more
		{1 * s, 10, 10, 1 * s},      // a shorter base, within its rate
		{200 * s, 0, 1000, 200 * s}, // a base beyond the steps
	}
	for _, tc := range cases {
		if got := FleetHeartbeatInterval(tc.base, tc.rate, tc.clusters); got != tc.want {
			t.Errorf("FleetHeartbeatInterval(%s, %v, %d) = %s, want %s", tc.base, tc.rate, tc.clusters, got, tc.want)
		}
	}
}
