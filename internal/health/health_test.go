package health

import (
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

func TestJudge(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	lease := func(age time.Duration) *coordinationv1.Lease {
		rt := metav1.NewMicroTime(now.Add(-age))
		return &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{RenewTime: &rt}}
	}
	healthy := &v1alpha1.Inventory{APIHealthy: true, Nodes: v1alpha1.NodeCounts{Total: 3, Ready: 3}}
	grace := 6 * time.Second
	cases := []struct {
		name        string
		lease       *coordinationv1.Lease
		inv         *v1alpha1.Inventory
		ready       bool
		reason      string
		unreachable bool
		recheck     time.Duration
	}{
		{"never joined", nil, nil, false, "AgentNotJoined", false, 0},
		{"fresh, no report yet", lease(time.Second), nil, false, "WaitingForInventory", false, 5100 * time.Millisecond},
		{"fresh and healthy", lease(2 * time.Second), healthy, true, "AgentReady", false, 4100 * time.Millisecond},
		{"fresh, API down", lease(0), &v1alpha1.Inventory{APIHealthy: false}, false, "APIUnhealthy", false, 6100 * time.Millisecond},
		{"just within grace", lease(grace), healthy, true, "AgentReady", false, 100 * time.Millisecond},
		{"expired", lease(grace + time.Millisecond), healthy, false, "Unreachable", true, 0},
		{"long gone", lease(time.Hour), healthy, false, "Unreachable", true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := Judge(tc.lease, tc.inv, grace, now)
			if v.Ready != tc.ready || v.ReadyReason != tc.reason || v.Unreachable != tc.unreachable || v.RecheckAfter != tc.recheck {
				t.Errorf("Judge = %+v; want ready %v reason %s unreachable %v recheck %s", v, tc.ready, tc.reason, tc.unreachable, tc.recheck)
			}
		})
	}
	// The message of an unreachable cluster names the last heartbeat, not its age, so that it
	// does not change (and cost a write) while the cluster stays unreachable.
	l := lease(10 * time.Second)
	a, b := Judge(l, healthy, grace, now), Judge(l, healthy, grace, now.Add(time.Second))
	if a.Message != b.Message || !strings.Contains(a.Message, "no heartbeat") {
		t.Errorf("messages move with time: %q vs %q", a.Message, b.Message)
	}
}

// TestAfterRestart: a hub that was down heard no heartbeats, so its restart must not make
// a cluster Unreachable that was heartbeating when it went down.
func TestAfterRestart(t *testing.T) {
	start := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	grace := 6 * time.Second
	at := func(t time.Time) *coordinationv1.Lease {
		rt := metav1.NewMicroTime(t)
		return &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{RenewTime: &rt}}
	}
	healthy := &v1alpha1.Inventory{APIHealthy: true}
	cases := []struct {
		name        string
		lease       *coordinationv1.Lease
		unreachable bool
		now         time.Time
		want        bool // Unreachable
	}{
		{"heard before the restart, hub just up", at(start.Add(-20 * time.Second)), false, start.Add(time.Second), false},
		{"heard before the restart, within the reconnect grace", at(start.Add(-time.Minute)), false, start.Add(grace + ReconnectGrace), false},
		{"heard before the restart, no agent back in time", at(start.Add(-time.Minute)), false, start.Add(grace + ReconnectGrace + time.Millisecond), true},
		{"already unreachable before the restart", at(start.Add(-time.Minute)), true, start.Add(time.Second), true},
		{"heard after the restart: the normal grace", at(start.Add(time.Second)), false, start.Add(time.Second + grace + time.Millisecond), true},
	}
	for _, tc := range cases {
		l, g := AfterRestart(tc.lease, !tc.unreachable, tc.unreachable, start, grace)
		if v := Judge(l, healthy, g, tc.now); v.Unreachable != tc.want {
			t.Errorf("%s: Unreachable = %v, want %v (%s)", tc.name, v.Unreachable, tc.want, v.Message)
		}
	}
	if l, g := AfterRestart(nil, false, false, start, grace); l != nil || g != grace {
		t.Errorf("no lease, never heard: got %v, %s", l, g)
	}
	// An agent on its delivery stream renews no Lease: the verdict stored before vouches for
	// its heartbeat, which counts as one at the hub's start.
	for _, tc := range []struct {
		now  time.Time
		want bool
	}{{start.Add(time.Second), false}, {start.Add(grace + ReconnectGrace), false}, {start.Add(grace + ReconnectGrace + time.Millisecond), true}} {
		l, g := AfterRestart(nil, true, false, start, grace)
		if v := Judge(l, healthy, g, tc.now); v.Unreachable != tc.want {
			t.Errorf("no Lease, heard before the restart, %s after it: Unreachable = %v, want %v (%s)", tc.now.Sub(start), v.Unreachable, tc.want, v.Message)
		}
	}
}

func TestStreamed(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	lease := func(at time.Time, secs int32) *coordinationv1.Lease {
		rt := metav1.NewMicroTime(at)
		return &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{RenewTime: &rt, LeaseDurationSeconds: &secs}}
	}
	cases := []struct {
		name     string
		lease    *coordinationv1.Lease
		last     time.Time
		ok       bool
		want     time.Time // zero: no Lease
		wantSecs int32
		stream   bool // FromStream: the stream's message is the heartbeat
	}{
		{name: "neither", want: time.Time{}},
		{name: "lease only", lease: lease(now.Add(-time.Second), 60), want: now.Add(-time.Second), wantSecs: 60},
		{name: "stream only", last: now, ok: true, want: now, wantSecs: 6, stream: true},
		{name: "stream newer", lease: lease(now.Add(-time.Minute), 60), last: now, ok: true, want: now, wantSecs: 6, stream: true},
		{name: "lease newer", lease: lease(now, 60), last: now.Add(-time.Minute), ok: true, want: now, wantSecs: 60},
		{name: "lease as new", lease: lease(now, 60), last: now, ok: true, want: now, wantSecs: 60},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := FromStream(c.lease, c.last, c.ok); got != c.stream {
				t.Errorf("FromStream %v, want %v", got, c.stream)
			}
			got := Streamed(c.lease, c.last, 2*time.Second, c.ok)
			if c.want.IsZero() {
				if got != nil {
					t.Fatalf("got a Lease %+v, want none", got.Spec)
				}
				return
			}
			if got == nil || !got.Spec.RenewTime.Time.Equal(c.want) || *got.Spec.LeaseDurationSeconds != c.wantSecs {
				t.Fatalf("got %+v, want renewed %s lasting %ds", got, c.want, c.wantSecs)
			}
		})
	}
	// A stream whose messages stop makes the cluster Unreachable after its grace, as a Lease does.
	l := Streamed(nil, now.Add(-7*time.Second), 2*time.Second, true)
	if v := Assess(l, &v1alpha1.Inventory{APIHealthy: true}, true, false, now.Add(-time.Hour), 0, now); !v.Unreachable {
		t.Fatalf("7 s of silence on a 2 s stream: %+v, want Unreachable", v)
	}
	if v := Assess(Streamed(nil, now.Add(-5*time.Second), 2*time.Second, true), &v1alpha1.Inventory{APIHealthy: true}, true, false, now.Add(-time.Hour), 0, now); !v.Ready {
		t.Fatalf("5 s of silence on a 2 s stream: %+v, want Ready", v)
	}
}
