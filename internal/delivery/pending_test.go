package delivery

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// handed makes the next content of w: its deletion policy marks it apart.
func handed(w *v1alpha1.Work, policy v1alpha1.DeletionPolicy) *v1alpha1.Work {
	out := w.DeepCopy()
	out.Spec.DeletionPolicy = policy
	return out
}

func TestHandedContent(t *testing.T) {
	s := &Server{}
	s.init()
	stored := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace("east"), Name: "shop.web", UID: "u1",
		ResourceVersion: "10", Generation: 3, Annotations: map[string]string{"r": "1"}}, Spec: v1alpha1.WorkSpec{DeletionPolicy: v1alpha1.DeletionDelete}}
	later := time.Now().Add(time.Minute) // every handed content is due for its write then

	// A cluster without a stream that gets its Works takes nothing: the caller writes.
	if s.Hand(stored, handed(stored, v1alpha1.DeletionOrphan)) {
		t.Fatal("content was handed for a cluster without a stream")
	}
	if got := s.View(stored); got != stored {
		t.Fatal("the view of a Work with nothing handed is not the Work")
	}
	f := newFeed()
	s.open("east", nil, f)
	f.take()

	// A change of metadata alone, with nothing pending, is the caller's to write.
	meta := stored.DeepCopy()
	meta.Annotations["r"] = "2"
	if s.Hand(stored, meta) {
		t.Fatal("a change of annotations alone was handed with nothing pending")
	}

	// Two contents in a row: the view shows the newest, with the generation its write
	// makes and a resourceVersion of its own, and the stream is told.
	if !s.Hand(stored, handed(stored, v1alpha1.DeletionOrphan)) {
		t.Fatal("content was not handed for a cluster with a stream")
	}
	first := s.View(stored)
	if _, _, _, wait, ok := s.nextWrite(nil, time.Now()); ok || wait <= 0 {
		t.Fatalf("content handed just now is due for its write (ok %v, wait %v)", ok, wait)
	}
	if !s.Hand(first, handed(first, "Other")) {
		t.Fatal("the second content was not handed")
	}
	if _, names := f.take(); !slices.Equal(names, []string{"shop.web"}) {
		t.Fatalf("the stream was told of %v, want shop.web", names)
	}
	v := s.View(stored)
	if v.Generation != 5 || v.Spec.DeletionPolicy != "Other" || stored.Generation != 3 {
		t.Fatalf("view generation %d policy %s (stored generation %d), want 5, Other (3)", v.Generation, v.Spec.DeletionPolicy, stored.Generation)
	}
	if v.ResourceVersion == stored.ResourceVersion || v.ResourceVersion == first.ResourceVersion {
		t.Fatalf("the view's resourceVersion %q is not its own (stored %q, first content %q)", v.ResourceVersion, stored.ResourceVersion, first.ResourceVersion)
	}
	// A change of metadata alone while content is pending follows it, with its generation.
	meta = v.DeepCopy()
	meta.Annotations["r"] = "3"
	if !s.Hand(v, meta) {
		t.Fatal("a change of annotations alone was not handed behind pending content")
	}
	if v := s.View(stored); v.Generation != 5 || v.Annotations["r"] != "3" {
		t.Fatalf("view generation %d annotation %q, want 5 and 3", v.Generation, v.Annotations["r"])
	}
	if s.Pending() != 1 {
		t.Fatalf("%d Works pending, want 1", s.Pending())
	}

	// The writes follow the generations, one at a time, each on the generation the one
	// before made.
	var order []string
	write := func() {
		t.Helper()
		k, w, base, _, ok := s.nextWrite(nil, later)
		if !ok {
			t.Fatal("nothing to write")
		}
		if _, _, _, _, again := s.nextWrite(nil, later); again {
			t.Fatal("a Work being written was handed out again")
		}
		order = append(order, fmt.Sprintf("%d->%d", base, w.Generation))
		s.wrote(k, w, w.DeepCopy(), false)
	}
	write()
	// The cache still shows generation 3: the view still shows 5.
	if v := s.View(stored); v.Generation != 5 {
		t.Fatalf("view generation %d after the first write, want 5", v.Generation)
	}
	write()
	write()
	if want := []string{"3->4", "4->5", "5->5"}; !slices.Equal(order, want) {
		t.Fatalf("writes %v, want %v", order, want)
	}
	if _, _, _, _, ok := s.nextWrite(nil, later); ok {
		t.Fatal("something left to write")
	}
	// Once the cache shows the last write, the view of the cache's Work is that Work. A copy
	// read before the cache had it still shows the handed content, for a while.
	caught := stored.DeepCopy()
	caught.Generation, caught.ResourceVersion, caught.Spec.DeletionPolicy = 5, "12", "Other"
	if got := s.View(caught); got != caught {
		t.Fatal("the view of a stored Work is not the Work")
	}
	if s.Pending() != 0 {
		t.Fatalf("%d Works pending after their writes were stored", s.Pending())
	}
	if v := s.View(stored); v.Generation != 5 || v.Spec.DeletionPolicy != "Other" {
		t.Fatalf("a copy read before the last write shows generation %d policy %s, want 5, Other", v.Generation, v.Spec.DeletionPolicy)
	}
	s.pending[workKey{"east", "shop.web"}].stored = time.Now().Add(-settledGrace - time.Second)
	if got := s.View(caught); got != caught {
		t.Fatal("the view of a stored Work is not the Work")
	}
	if len(s.pending) != 0 {
		t.Fatalf("%d Works kept after their writes were stored and the grace passed", len(s.pending))
	}

	// A write that conflicts drops what is pending: the view is the store's again.
	if !s.Hand(caught, handed(caught, v1alpha1.DeletionDelete)) {
		t.Fatal("not handed")
	}
	k, w, _, _, _ := s.nextWrite(nil, later)
	s.wrote(k, w, nil, true)
	if got := s.View(caught); got != caught {
		t.Fatal("a dropped content is still shown")
	}
	if !s.hasReset("east", "shop.web") {
		t.Fatal("a dropped content does not send the stored Work back")
	}
	s.clearResets("east", []string{"shop.web"})

	// A failed write is tried again, with the same content.
	if !s.Hand(caught, handed(caught, v1alpha1.DeletionDelete)) {
		t.Fatal("not handed")
	}
	k, w, _, _, _ = s.nextWrite(nil, later)
	s.wrote(k, w, nil, false)
	if _, again, _, _, _ := s.nextWrite(map[workKey]bool{}, later); again != w {
		t.Fatal("a failed write is not tried again")
	}

	// A Work being deleted, or made again, shows as it is stored.
	deleting := caught.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Unix(1, 0)}
	if got := s.View(deleting); got != deleting {
		t.Fatal("a Work being deleted shows handed content")
	}
	again := caught.DeepCopy()
	again.UID = types.UID("u2")
	if got := s.View(again); got != again {
		t.Fatal("a Work made again shows the old one's handed content")
	}
	// A content the API refuses is the caller's to write from then on, and the agent gets
	// the stored Work back, whatever its generation; another content is handed again.
	if s.hasReset("east", "shop.web") {
		t.Fatal("a reset is left after it was sent")
	}
	s.settle(k, w, nil, true, true)
	if !s.hasReset("east", "shop.web") {
		t.Fatal("a refused content does not send the stored Work back")
	}
	s.clearResets("east", []string{"shop.web"})
	for range 2 {
		if s.Hand(caught, handed(caught, v1alpha1.DeletionDelete)) {
			t.Fatal("content the API refused was handed again")
		}
	}
	if !s.Hand(caught, handed(caught, v1alpha1.DeletionOrphan)) {
		t.Fatal("another content is not handed after a refusal")
	}
	// A reset asked for while content is handed waits for it; else it is sent.
	s.Reset(caught)
	if s.hasReset("east", "shop.web") {
		t.Fatal("a reset was asked for while content is handed")
	}
	// An agent that reports a newer generation than the one handed (a hub before this one
	// handed more and stopped) takes it anyway.
	s.fold(context.Background(), "east", 1, []v1alpha1.WorkReport{{Work: "shop.web", UID: "u1", Status: v1alpha1.WorkStatus{ObservedGeneration: 9}}})
	if !s.Hand(s.View(caught), handed(s.View(caught), v1alpha1.DeletionDelete)) {
		t.Fatal("not handed")
	}
	if !s.hasReset("east", "shop.web") {
		t.Fatal("content handed below the agent's generation is not sent as a reset")
	}
	s.clearResets("east", []string{"shop.web"})
	// Forgetting a Work drops what was handed of it.
	s.Forget("east", "shop.web", "u1")
	if s.Pending() != 0 {
		t.Fatal("a forgotten Work's content is still pending")
	}
	s.Reset(caught)
	if !s.hasReset("east", "shop.web") {
		t.Fatal("a reset of a Work with nothing handed is not sent")
	}
}

// TestClientHoldsNewerContent checks that the agent's side never goes back to an older
// generation of a Work, as it would when the hub dropped content it had handed, unless the
// hub says that the older one is what it wants.
func TestClientHoldsNewerContent(t *testing.T) {
	cw := newClientWorks()
	stream := cw.streamOpened(true)
	work := func(gen int64, rv string, deleting bool) v1alpha1.Work {
		w := v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Name: "shop.web", UID: "u1", Generation: gen, ResourceVersion: rv}}
		if deleting {
			w.DeletionTimestamp = &metav1.Time{Time: time.Unix(1, 0)}
		}
		return w
	}
	take := func(w v1alpha1.Work, reset bool) {
		m := &v1alpha1.HubMessage{Works: []v1alpha1.Work{w}}
		if reset {
			m.WorksReset = []string{w.Name}
		}
		cw.take(stream, m)
	}
	held := func() string {
		w := cw.works["shop.web"]
		return fmt.Sprintf("%d@%s", w.Generation, w.ResourceVersion)
	}
	take(work(3, "10", false), false)
	take(work(4, "h1.1.10", false), false) // handed ahead of its write
	if got := held(); got != "4@h1.1.10" {
		t.Fatalf("holds %s, want the handed generation 4", got)
	}
	take(work(3, "11", false), false) // the hub dropped it: the store's older generation
	if got := held(); got != "4@h1.1.10" {
		t.Fatalf("holds %s after an older generation came, want 4@h1.1.10", got)
	}
	take(work(3, "11", false), true) // the hub wants the older one after all
	if got := held(); got != "3@11" {
		t.Fatalf("holds %s after a reset, want 3@11", got)
	}
	take(work(4, "h1.2.11", false), false) // handed again
	take(work(4, "12", false), false)      // and stored
	if got := held(); got != "4@12" {
		t.Fatalf("holds %s, want 4@12", got)
	}
	take(work(3, "13", true), false) // a deletion is taken whatever its generation
	if got := held(); got != "3@13" {
		t.Fatalf("holds %s, want the deletion 3@13", got)
	}
}

// TestBacklog: a Work holds at most MaxHanded contents waiting for their writes; each write
// makes room for one more.
func TestBacklog(t *testing.T) {
	s := &Server{}
	s.init()
	stored := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace("east"), Name: "shop.web", UID: "u1",
		ResourceVersion: "10", Generation: 3}}
	f := newFeed()
	s.open("east", nil, f)
	f.take()
	v := stored
	for i := range MaxHanded {
		if s.Backlogged(v) {
			t.Fatalf("backlogged with %d contents handed, want room for %d", i, MaxHanded)
		}
		if !s.Hand(v, handed(v, v1alpha1.DeletionPolicy(fmt.Sprint("p", i)))) {
			t.Fatalf("content %d was not handed", i)
		}
		v = s.View(stored)
	}
	if !s.Backlogged(v) {
		t.Fatalf("not backlogged with %d contents handed", MaxHanded)
	}
	other := stored.DeepCopy()
	other.UID = "u2" // another Work of the same name: nothing of it is handed
	if s.Backlogged(other) {
		t.Fatal("a new Work of the same name is backlogged by the old one's content")
	}
	k, w, _, _, ok := s.nextWrite(nil, time.Now().Add(time.Minute))
	if !ok {
		t.Fatal("no content due for its write")
	}
	written := w.DeepCopy()
	written.ResourceVersion = "11"
	s.wrote(k, w, written, false)
	if s.Backlogged(v) {
		t.Fatalf("backlogged with %d contents handed after a write", MaxHanded-1)
	}
}

// streamedWork is a Server whose cluster east has a stream that gets its Works, a stored Work
// of that cluster, and a time when every content handed is due for its write.
func streamedWork() (*Server, *feed, *v1alpha1.Work, time.Time) {
	s := &Server{}
	s.init()
	f := newFeed()
	s.open("east", nil, f)
	stored := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.ClusterNamespace("east"), Name: "shop.web", UID: "u1",
		ResourceVersion: "10", Generation: 3}, Spec: v1alpha1.WorkSpec{DeletionPolicy: v1alpha1.DeletionDelete}}
	return s, f, stored, time.Now().Add(time.Minute)
}

// A Work stored from handed content and then changed by another writer is handed its next
// content on the generation that writer made, not on the one the Server last wrote.
func TestHandAfterAnotherWriter(t *testing.T) {
	s, _, stored, later := streamedWork()
	if !s.Hand(stored, handed(stored, v1alpha1.DeletionOrphan)) {
		t.Fatal("not handed")
	}
	k, w, _, _, _ := s.nextWrite(nil, later)
	s.wrote(k, w, w.DeepCopy(), false)
	// Another writer changed the spec: generation 5.
	changed := stored.DeepCopy()
	changed.Generation, changed.ResourceVersion, changed.Spec.DeletionPolicy = 5, "14", "Changed"
	if got := s.View(changed); got != changed {
		t.Fatal("the view of a Work changed since is not the Work")
	}
	if !s.Hand(changed, handed(changed, "Next")) {
		t.Fatal("not handed")
	}
	_, w, base, _, ok := s.nextWrite(nil, later)
	if !ok || base != 5 || w.Generation != 6 {
		t.Fatalf("the next write is %d->%d (ok %v), want 5->6", base, w.Generation, ok)
	}
}

// An entry whose content is stored serves older copies of the cache only: it sends no reset
// astray, does not queue content for a cluster whose stream is gone, and goes in the end.
func TestSettledEntry(t *testing.T) {
	s, f, stored, later := streamedWork()
	settled := func() *v1alpha1.Work {
		t.Helper()
		if !s.Hand(stored, handed(stored, v1alpha1.DeletionOrphan)) {
			t.Fatal("not handed")
		}
		k, w, _, _, _ := s.nextWrite(nil, later)
		s.wrote(k, w, w.DeepCopy(), false)
		if s.Pending() != 0 || len(s.pending) != 1 {
			t.Fatalf("%d pending, %d entries; want 0 and 1", s.Pending(), len(s.pending))
		}
		return w
	}
	w := settled()

	// A reset (the plan wants what is stored while the agent reports newer) is sent.
	s.Reset(w)
	if !s.hasReset("east", "shop.web") {
		t.Fatal("a Work with only stored content left is not reset")
	}
	s.clearResets("east", []string{"shop.web"})

	// Without a stream that gets the Works, the caller writes the next content itself.
	s.close("east", f)
	if s.Hand(w, handed(w, "Next")) {
		t.Fatal("content was handed for a cluster whose stream is gone")
	}
	if len(s.pending) != 0 {
		t.Fatal("the entry of a cluster without a stream is kept")
	}

	// An entry that no view drops goes a while after its write.
	f = newFeed()
	s.open("east", nil, f)
	settled()
	s.pending[workKey{"east", "shop.web"}].stored = time.Now().Add(-settledSweep - time.Second)
	if _, _, _, _, ok := s.nextWrite(nil, later); ok || len(s.pending) != 0 {
		t.Fatalf("an entry stored long ago is kept (%d entries)", len(s.pending))
	}
}
