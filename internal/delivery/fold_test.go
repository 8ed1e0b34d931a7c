package delivery

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

func TestFold(t *testing.T) {
	s := &Server{}
	s.init()
	s.open("east")
	var reported []string
	s.Reported = func(_ context.Context, cluster, work string) { reported = append(reported, cluster+"/"+work) }
	ctx := context.Background()
	work := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace("east"), Name: "shop.web", UID: types.UID("u1")}}
	avail := v1alpha1.WorkStatus{Summary: v1alpha1.WorkSummary{Total: 1, Available: 1}}

	if got := s.Overlay(work); got != work {
		t.Fatal("a Work without a report came back changed")
	}
	s.fold(ctx, "east", []v1alpha1.WorkReport{{Work: "shop.web", UID: "u1", Status: avail}})
	if got := s.Overlay(work); got.Status.Summary.Available != 1 || work.Status.Summary.Available != 0 {
		t.Fatalf("overlay %+v (the Work itself %+v)", got.Status, work.Status)
	}
	// The same report again is no news.
	s.fold(ctx, "east", []v1alpha1.WorkReport{{Work: "shop.web", UID: "u1", Status: avail}})
	if len(reported) != 1 {
		t.Fatalf("reported %v, want one", reported)
	}
	// A report of a Work of another uid (deleted and made again) is not this one's.
	other := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: work.Namespace, Name: work.Name, UID: types.UID("u2")}}
	if got := s.Overlay(other); got != other {
		t.Fatalf("the report of uid u1 was laid over uid u2: %+v", got.Status)
	}
	// The dirty set gives the report to store once.
	if d := s.takeDirty(ctx); len(d) != 1 || d[0].Work != work.Namespace+"/shop.web" {
		t.Fatalf("dirty %+v", d)
	}
	// Gone drops it, but only for its own uid.
	s.fold(ctx, "east", []v1alpha1.WorkReport{{Work: "shop.web", UID: "u2", Gone: true}})
	if got := s.Overlay(work); got == work {
		t.Fatal("a Gone of another uid dropped the report")
	}
	s.fold(ctx, "east", []v1alpha1.WorkReport{{Work: "shop.web", UID: "u1", Gone: true}})
	if got := s.Overlay(work); got != work {
		t.Fatal("Gone kept the report")
	}
}
