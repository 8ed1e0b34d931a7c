package delivery

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

func TestFold(t *testing.T) {
	s := &Server{}
	s.init()
	gen, _ := s.open("east", nil, nil)
	type call struct {
		work  string
		reach bool
	}
	var reported []call
	s.Reported = func(_ context.Context, _, work string, reach bool) { reported = append(reported, call{work, reach}) }
	ctx := context.Background()
	work := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace("east"), Name: "shop.web", UID: types.UID("u1"), Generation: 2}}
	avail := v1alpha1.WorkStatus{ObservedGeneration: 2, Summary: v1alpha1.WorkSummary{Total: 1, Available: 1}}

	if got := s.Overlay(work); got != work {
		t.Fatal("a Work without a report came back changed")
	}
	s.fold(ctx, "east", gen, []v1alpha1.WorkReport{{Work: "shop.web", UID: "u1", Status: avail}})
	if got := s.Overlay(work); got.Status.Summary.Available != 1 || work.Status.Summary.Available != 0 {
		t.Fatalf("overlay %+v (the Work itself %+v)", got.Status, work.Status)
	}
	// The same report again is no news.
	s.fold(ctx, "east", gen, []v1alpha1.WorkReport{{Work: "shop.web", UID: "u1", Status: avail}})
	if len(reported) != 1 || reported[0].reach {
		t.Fatalf("reported %v, want one, without reach", reported)
	}
	// A report that tells a Service's reach says so, and so does the next one, which drops it
	// (the edge must hear of both).
	withReach := *avail.DeepCopy()
	withReach.Resources = []v1alpha1.ResourceStatus{{Reach: &v1alpha1.ServiceReach{}}}
	s.fold(ctx, "east", gen, []v1alpha1.WorkReport{{Work: "shop.web", UID: "u1", Status: withReach}})
	s.fold(ctx, "east", gen, []v1alpha1.WorkReport{{Work: "shop.web", UID: "u1", Status: avail}})
	if len(reported) != 3 || !reported[1].reach || !reported[2].reach {
		t.Fatalf("reported %v, want the last two with reach", reported)
	}
	// A report of a Work of another uid (deleted and made again) is not this one's, and one
	// older than the stored status (written by the agent itself) is behind it.
	other := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: work.Namespace, Name: work.Name, UID: types.UID("u2")}}
	if got := s.Overlay(other); got != other {
		t.Fatalf("the report of uid u1 was laid over uid u2: %+v", got.Status)
	}
	// While the stream is open the report is the agent's latest word, whatever its
	// generation (it may have gone back to an older one: a reset); without one it is not.
	newer := work.DeepCopy()
	newer.Generation, newer.Status.ObservedGeneration = 3, 3
	if got := s.Overlay(newer); got.Status.ObservedGeneration != 2 {
		t.Fatalf("with a stream open, the report of generation 2 was not laid over a stored status of generation 3: %+v", got.Status)
	}
	s.close("east", nil)
	if got := s.Overlay(newer); got != newer {
		t.Fatalf("without a stream, a report of generation 2 was laid over a stored status of generation 3: %+v", got.Status)
	}
	gen, _ = s.open("east", []string{"shop.web"}, nil)
	// The dirty set gives the report to store once.
	if d := s.takeDirty(ctx); len(d) != 1 || d[0].Work != work.Namespace+"/shop.web" {
		t.Fatalf("dirty %+v", d)
	}
	// Forget and Gone drop it, but only for its own uid.
	s.Forget("east", "shop.web", "u2")
	s.fold(ctx, "east", gen, []v1alpha1.WorkReport{{Work: "shop.web", UID: "u2", Gone: true}})
	if got := s.Overlay(work); got == work {
		t.Fatal("a Forget or Gone of another uid dropped the report")
	}
	s.fold(ctx, "east", gen, []v1alpha1.WorkReport{{Work: "shop.web", UID: "u1", Gone: true}})
	if got := s.Overlay(work); got != work {
		t.Fatal("Gone kept the report")
	}
	s.fold(ctx, "east", gen, []v1alpha1.WorkReport{{Work: "shop.web", UID: "u1", Status: avail}})
	s.Forget("east", "shop.web", "u1")
	if got := s.Overlay(work); got != work {
		t.Fatal("Forget kept the report")
	}

	// A new stream (an agent that restarted) names the Works it reports: the others' reports
	// go, since what is stored is all that agent knows of them.
	kept := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: work.Namespace, Name: "shop.api", UID: types.UID("u3")}}
	s.fold(ctx, "east", gen, []v1alpha1.WorkReport{{Work: "shop.web", UID: "u1", Status: withReach}, {Work: "shop.api", UID: "u3", Status: avail}})
	old := gen
	gen, dropped := s.open("east", []string{"shop.api"}, nil)
	s.close("east", nil) // the old stream ends after the new one opened
	if s.Overlay(work) != work || s.Overlay(kept) == kept {
		t.Fatal("a new stream did not replace the cluster's reports with those it names")
	}
	if len(dropped) != 1 || dropped[0] != (change{"shop.web", true}) {
		t.Fatalf("dropped %v, want shop.web's report, with reach (the controllers are told)", dropped)
	}
	// What the old stream still folds is not taken: the new one is the agent now.
	s.fold(ctx, "east", old, []v1alpha1.WorkReport{{Work: "shop.web", UID: "u1", Status: avail}})
	if s.Overlay(work) != work {
		t.Fatal("a report of an older stream was folded")
	}
	// Once its stream ends, a report that is stored already is not laid over the stored status
	// (the agent may write it itself now); one not stored yet still is.
	s.takeDirty(ctx)
	s.close("east", nil)
	if s.Overlay(kept) != kept {
		t.Fatal("a stored report of a cluster without a stream was laid over its Work")
	}
	gen, _ = s.open("east", []string{"shop.api"}, nil)
	s.fold(ctx, "east", gen, []v1alpha1.WorkReport{{Work: "shop.api", UID: "u3", Status: withReach}})
	s.close("east", nil)
	if s.Overlay(kept) == kept {
		t.Fatal("a report not stored yet was dropped when the stream ended")
	}
	s.open("east", []string{"shop.api"}, nil)

	// A deleted cluster with a stream open goes when the stream ends.
	s.ForgetCluster("east")
	if s.Overlay(kept) != kept {
		t.Fatal("a forgotten cluster kept its reports")
	}
	if _, _, ok := s.LastSeen("east"); !ok {
		t.Fatal("a cluster with a stream open was dropped at once")
	}
	s.close("east", nil)
	if _, _, ok := s.LastSeen("east"); ok {
		t.Fatal("a forgotten cluster stayed after its last stream ended")
	}
}

// TestUnconfirmed: a restarted hub takes a cluster's stored Works' status as confirmed only
// once the cluster's stream has brought every report its hello announced, or once the hub has
// been up long enough that an agent without a stream would have been back.
func TestUnconfirmed(t *testing.T) {
	s := &Server{Since: time.Now()}
	s.init()
	ctx := context.Background()
	if !s.Unconfirmed("east") {
		t.Fatal("a cluster not heard since the start is confirmed")
	}
	gen, _ := s.open("east", []string{"shop.web", "shop.db"}, nil)
	s.fold(ctx, "east", gen, []v1alpha1.WorkReport{{Work: "shop.web", UID: "u1"}})
	if !s.Unconfirmed("east") {
		t.Fatal("confirmed with one of two announced reports")
	}
	s.fold(ctx, "east", gen, []v1alpha1.WorkReport{{Work: "shop.db", UID: "u2"}})
	if s.Unconfirmed("east") {
		t.Fatal("unconfirmed with every announced report in")
	}
	// A stream that drops and opens again keeps what this hub was told.
	s.close("east", nil)
	s.open("east", []string{"shop.web", "shop.db"}, nil)
	if s.Unconfirmed("east") {
		t.Fatal("unconfirmed again after a reconnect to the same hub")
	}
	// An agent that holds no reports confirms with its hello.
	s.open("west", nil, nil)
	if s.Unconfirmed("west") {
		t.Fatal("an agent with nothing to report left its cluster unconfirmed")
	}
	// After the window, the stored status counts.
	old := &Server{Since: time.Now().Add(-confirmWindow)}
	old.init()
	if old.Unconfirmed("east") {
		t.Fatal("unconfirmed after the window")
	}
	if (&Server{}).Unconfirmed("east") {
		t.Fatal("a Server without a start time left a cluster unconfirmed")
	}
}

// TestLapses shows the Server telling Seen of a missed heartbeat once, and of the agent heard
// again, and Watched saying when the Cluster controller may rely on that.
func TestLapses(t *testing.T) {
	s := &Server{HeartbeatInterval: 2 * time.Second}
	s.init()
	var seen []string
	s.Seen = func(_ context.Context, cluster string) { seen = append(seen, cluster) }
	if s.Watched("east") {
		t.Fatal("a cluster never heard from is watched")
	}
	s.open("east", nil, nil)
	s.open("west", nil, nil)
	start := s.clusters["east"].last
	if !s.Watched("east") || len(s.lapses(start)) != 0 {
		t.Fatal("a cluster just heard from is not watched, or lapsed already")
	}
	// 3 s (one interval and a half) is not yet a missed heartbeat; just after, it is, once.
	if got := s.lapses(start.Add(3 * time.Second)); len(got) != 0 {
		t.Fatalf("lapsed at 3 s: %v", got)
	}
	s.clusters["west"].last = start.Add(2 * time.Second) // west's heartbeat came at 2 s
	got := s.lapses(start.Add(3*time.Second + time.Millisecond))
	if len(got) != 1 || got[0] != "east" {
		t.Fatalf("lapsed just after 3 s: %v, want east", got)
	}
	if s.Watched("east") || !s.Watched("west") {
		t.Fatal("east lapsed and is watched, or west is not")
	}
	if got := s.lapses(start.Add(10 * time.Second)); len(got) != 1 || got[0] != "west" {
		t.Fatalf("lapses at 10 s: %v, want west only (east was told already)", got)
	}
	// A message after the lapse is news; the next one is not.
	s.touch("east")
	s.touch("east")
	if len(seen) != 1 || seen[0] != "east" || !s.Watched("east") {
		t.Fatalf("after east was heard again: Seen %v, watched %v", seen, s.Watched("east"))
	}
	// A new stream is told to Seen by its opening: it clears the lapse without another call.
	s.open("west", nil, nil)
	if !s.Watched("west") || len(seen) != 1 {
		t.Fatalf("a new stream of west: watched %v, Seen %v", s.Watched("west"), seen)
	}
}
