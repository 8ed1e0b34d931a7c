package autoscale

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	pool := Pool{
		Name: "real", Min: 1, Max: 3, Count: 2, Idle: 2 * time.Minute,
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi")},
		NodeName:    "c-real-2",
		Labels:      map[string]string{"convoy.dev/pool": "real"},
	}
	long := t0.Add(-time.Hour)
	busy := []Node{{Index: 0, Ready: true, ReadySince: long}, {Index: 1, Ready: true, ReadySince: long}}
	idle := func(since time.Duration) []Node {
		return []Node{{Index: 0, Ready: true, ReadySince: long}, {Index: 1, Ready: true, ReadySince: long, IdleSince: t0.Add(-since)}}
	}
	justReady := []Node{{Index: 0, Ready: true, ReadySince: long}, {Index: 1, Ready: true, ReadySince: t0.Add(-3 * time.Second)}}
	small := Pending{Name: "demo/web-1", Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}}
	pinned := small
	pinned.Name = "kube-system/ds-on-node-1"
	pinned.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"c-real-1"}}}}}}}}
	zoned := small
	zoned.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "convoy.dev/pool", Operator: corev1.NodeSelectorOpIn, Values: []string{"real"}}}}}}}}
	huge := Pending{Name: "demo/big", Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8")}}
	elsewhere := Pending{Name: "demo/gpu", NodeSelector: map[string]string{"convoy.dev/pool": "gpu"}}
	tainted := pool
	tainted.Taints = []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}}
	tolerant := small
	tolerant.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "db", Effect: corev1.TaintEffectNoSchedule}}
	at := func(p Pool, count int32) Pool { p.Count = count; return p }
	hold := func(p Pool) Pool { p.Hold = true; return p }

	for _, tc := range []struct {
		name    string
		pool    Pool
		nodes   []Node
		pending []Pending
		want    int32
		recheck time.Duration
	}{
		{"steady", pool, busy, nil, 2, 0},
		{"a pod that fits: one more", pool, busy, []Pending{small}, 3, 0},
		{"a node Ready for less than Settle: the scheduler may yet place the pod", pool, justReady, []Pending{small}, 2, Settle - 3*time.Second},
		{"a pod bound by node affinity to another node", pool, busy, []Pending{pinned}, 2, 0},
		{"a pod whose node affinity a new node meets", pool, busy, []Pending{zoned}, 3, 0},
		{"held while the nodes are upgraded", hold(pool), busy, []Pending{small}, 2, 0},
		{"at max: none more", at(pool, 3), append(busy, Node{Index: 2, Ready: true, ReadySince: long}), []Pending{small}, 3, 0},
		{"a pod no node of the pool could run", pool, busy, []Pending{huge}, 2, 0},
		{"a pod for another pool", pool, busy, []Pending{elsewhere}, 2, 0},
		{"a taint the pod does not tolerate", tainted, busy, []Pending{small}, 2, 0},
		{"a taint the pod tolerates", tainted, busy, []Pending{tolerant}, 3, 0},
		{"a node not Ready yet holds it", pool, []Node{{Index: 0, Ready: true}, {Index: 1}}, []Pending{small}, 2, 0},
		{"a node still to join holds it", pool, busy[:1], []Pending{small}, 2, 0},
		{"a node still draining holds it", at(pool, 1), busy, []Pending{small}, 1, 0},
		{"last node idle, not long enough", pool, idle(time.Minute), nil, 2, time.Minute},
		{"last node idle long enough: one fewer", pool, idle(3 * time.Minute), nil, 1, 0},
		{"idle, but a pod that fits waits", pool, idle(3 * time.Minute), []Pending{small}, 3, 0},
		{"at min: none fewer", at(pool, 1), []Node{{Index: 0, Ready: true, ReadySince: long, IdleSince: long}}, nil, 1, 0},
		{"an empty pool of min 0 grows for a pod", Pool{Name: "real", Min: 0, Max: 2, Allocatable: pool.Allocatable, NodeName: "c-real-0", Labels: pool.Labels}, nil, []Pending{small}, 1, 0},
		{"an idle node that is not the last stays", pool, []Node{{Index: 0, Ready: true, ReadySince: long, IdleSince: long}, {Index: 1, Ready: true, ReadySince: long}}, nil, 2, 0},
		{"below min: up to min", at(pool, 0), nil, nil, 1, 0},
		{"above max: down to max", at(pool, 5), nil, nil, 3, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.pool, tc.nodes, tc.pending, t0)
			if d.Count != tc.want || d.RecheckAfter != tc.recheck {
				t.Errorf("Decide = %d (recheck %s, %q), want %d (recheck %s)", d.Count, d.RecheckAfter, d.Reason, tc.want, tc.recheck)
			}
			if (d.Count != tc.pool.Count) != (d.Reason != "") {
				t.Errorf("count %d from %d with reason %q: a move needs a reason, and only a move", d.Count, tc.pool.Count, d.Reason)
			}
		})
	}
}
