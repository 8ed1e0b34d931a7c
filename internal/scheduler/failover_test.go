package scheduler

import (
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

func TestFailover(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	chosen := []Choice{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	state := func(healthy map[string]bool, since map[string]time.Duration) map[string]Cluster {
		out := map[string]Cluster{}
		for _, n := range []string{"a", "b", "c"} {
			h, ok := healthy[n]
			if !ok {
				h = true
			}
			out[n] = Cluster{Name: n, Healthy: h, Since: t0.Add(-since[n])}
		}
		return out
	}
	failed := func(names ...string) []v1alpha1.FailedOverCluster {
		var out []v1alpha1.FailedOverCluster
		for _, n := range names {
			out = append(out, v1alpha1.FailedOverCluster{Cluster: n, Since: metav1.NewTime(t0.Add(-time.Minute))})
		}
		return out
	}
	names := func(fs []v1alpha1.FailedOverCluster) []string {
		var out []string
		for _, f := range fs {
			out = append(out, f.Cluster)
		}
		return out
	}
	cases := []struct {
		name        string
		clusters    map[string]Cluster
		policy      *v1alpha1.FailoverPolicy
		prev        []v1alpha1.FailedOverCluster
		want        []string
		added, back []string
		recheck     time.Duration
		held        bool
	}{
		{"all healthy", state(nil, nil), nil, nil, nil, nil, nil, 0, false},
		{"lost, within the grace", state(map[string]bool{"b": false}, map[string]time.Duration{"b": 2 * time.Second}), nil, nil,
			nil, nil, nil, 3 * time.Second, false},
		{"lost, past the grace", state(map[string]bool{"b": false}, map[string]time.Duration{"b": 5 * time.Second}), nil, nil,
			[]string{"b"}, []string{"b"}, nil, 0, false},
		{"a longer grace", state(map[string]bool{"b": false}, map[string]time.Duration{"b": 5 * time.Second}),
			&v1alpha1.FailoverPolicy{GraceSeconds: ptr.To[int32](20)}, nil, nil, nil, nil, 15 * time.Second, false},
		{"disabled", state(map[string]bool{"b": false}, map[string]time.Duration{"b": time.Hour}), &v1alpha1.FailoverPolicy{Disabled: true}, nil,
			nil, nil, nil, 0, false},
		{"two lost at once", state(map[string]bool{"a": false, "c": false}, map[string]time.Duration{"a": time.Minute, "c": time.Minute}), nil, nil,
			[]string{"a", "c"}, []string{"a", "c"}, nil, 0, false},
		{"every cluster lost: nowhere to go", state(map[string]bool{"a": false, "b": false, "c": false}, map[string]time.Duration{"a": time.Minute, "b": time.Minute, "c": time.Minute}), nil, nil,
			nil, nil, nil, 0, true},
		{"back, not stable yet", state(nil, map[string]time.Duration{"b": 10 * time.Second}), nil, failed("b"),
			[]string{"b"}, nil, nil, 20 * time.Second, false},
		{"back and stable", state(nil, map[string]time.Duration{"b": 30 * time.Second}), nil, failed("b"),
			nil, nil, []string{"b"}, 0, false},
		{"flapping: lost again before stable", state(map[string]bool{"b": false}, map[string]time.Duration{"b": time.Second}), nil, failed("b"),
			[]string{"b"}, nil, nil, 0, false},
		{"the rest lost while one is failed over", state(map[string]bool{"a": false, "b": false, "c": false}, map[string]time.Duration{"a": time.Minute, "b": time.Minute, "c": time.Minute}), nil, failed("b"),
			[]string{"b"}, nil, nil, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Failover(chosen, c.clusters, c.policy, c.prev, t0)
			if got := names(d.FailedOver); !slices.Equal(got, c.want) {
				t.Errorf("failed over %v, want %v", got, c.want)
			}
			if !slices.Equal(d.Added, c.added) || !slices.Equal(d.Returned, c.back) {
				t.Errorf("added %v returned %v, want %v %v", d.Added, d.Returned, c.added, c.back)
			}
			if d.RecheckAfter != c.recheck {
				t.Errorf("recheck after %s, want %s", d.RecheckAfter, c.recheck)
			}
			if (d.Held != "") != c.held {
				t.Errorf("held %q, want held=%v", d.Held, c.held)
			}
		})
	}
}
