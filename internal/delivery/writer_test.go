package delivery_test

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/delivery"
	"github.com/convoy-dev/convoy/internal/hubtest"
)

// anyAgent takes every token as the agent of its cluster: TestWriter is about what the Server
// sends and stores, not about who may connect (TestStreams is).
type anyAgent struct{ cluster string }

func (a anyAgent) Authenticate(context.Context, string) (delivery.Identity, error) {
	return delivery.Identity{Cluster: a.cluster, ServiceAccount: "agent-1", UID: "u"}, nil
}
func (anyAgent) Current(context.Context, delivery.Identity) error { return nil }

// apiWorks reads a cluster's Works from the API server itself.
type apiWorks struct{ c client.Client }

func (a apiWorks) ClusterWorks(ctx context.Context, cluster string) ([]*v1alpha1.Work, error) {
	var list v1alpha1.WorkList
	if err := a.c.List(ctx, &list, client.InNamespace(v1alpha1.ClusterNamespace(cluster))); err != nil {
		return nil, err
	}
	out := make([]*v1alpha1.Work, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

// TestWriter hands a Work's content to a Server with a streaming agent, and checks that the
// agent gets it before it is stored, that the Writer stores it with the generation it was
// handed with although its status was written meanwhile, and that content whose Work's spec
// was changed by someone else is dropped, the Placement told, and the store's content sent.
func TestWriter(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub")
	}
	h := hubtest.Start(t)
	ctx := context.Background()
	ns := v1alpha1.ClusterNamespace("east")
	hubtest.Must(t, h.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	work := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop.web", Labels: map[string]string{"a": "b"},
		Annotations: map[string]string{v1alpha1.AnnotationRevision: "r1"}}, Spec: v1alpha1.WorkSpec{DeletionPolicy: v1alpha1.DeletionDelete}}
	hubtest.Must(t, h.Client.Create(ctx, work))

	// A Server of the test's own, beside the hub's, with a TLS certificate for 127.0.0.1.
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	cert := ts.TLS.Certificates[0]
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})
	ts.Close()
	s := &delivery.Server{Auth: anyAgent{"east"}, Works: apiWorks{h.Client}, Log: hubtest.Logger(t)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	hubtest.Must(t, err)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = s.Serve(sctx, l, tls.Certificate(cert)) }()

	c := delivery.NewClient("east", "test", ca, func() string { return "token" }, hubtest.Logger(t))
	c.GetWorks = true
	go c.Run(sctx, l.Addr().String(), "127.0.0.1")
	select {
	case <-c.WorksReady():
	case <-time.After(time.Minute):
		t.Fatal("the Works never came on the stream")
	}
	_, ww := c.WatchWorks()
	defer ww.Stop()
	// An informer on the stream, as the agent's: it takes an update whose resourceVersion
	// did not change for a resync, which its handlers do not see.
	var pending watch.Interface
	inf := toolscache.NewSharedIndexInformer(&toolscache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			works, w := c.WatchWorks()
			pending = w
			list := &v1alpha1.WorkList{}
			for _, x := range works {
				list.Items = append(list.Items, *x)
			}
			return list, nil
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) {
			if pending == nil {
				return nil, errors.New("no second watch in this test")
			}
			w := pending
			pending = nil
			return w, nil
		},
	}, &v1alpha1.Work{}, time.Second, toolscache.Indexers{})
	// The handler under test asks for no resync; another one's resync every second makes the
	// informer tell them apart, as an agent's long-running informer does.
	updated := make(chan *v1alpha1.Work, 16)
	if _, err := inf.AddEventHandlerWithResyncPeriod(toolscache.ResourceEventHandlerFuncs{UpdateFunc: func(_, o any) { updated <- o.(*v1alpha1.Work) }}, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	resynced := make(chan struct{}, 1)
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{UpdateFunc: func(_, _ any) {
		select {
		case resynced <- struct{}{}:
		default:
		}
	}}); err != nil {
		t.Fatal(err)
	}
	go inf.RunWithContext(sctx)
	if !toolscache.WaitForCacheSync(sctx.Done(), inf.HasSynced) {
		t.Fatal("the informer on the stream never synced")
	}
	select {
	case <-resynced:
	case <-time.After(time.Minute):
		t.Fatal("the informer never resynced")
	}
	for len(updated) > 0 {
		<-updated // the resyncs before the first check
	}

	next := func(what string) *v1alpha1.Work {
		t.Helper()
		for {
			select {
			case e := <-ww.ResultChan():
				if w, ok := e.Object.(*v1alpha1.Work); ok && e.Type == watch.Modified {
					return w
				}
				t.Fatalf("got a %s event, waiting for %s", e.Type, what)
			case <-time.After(time.Minute):
				t.Fatalf("nothing came on the stream: waiting for %s", what)
			}
		}
	}
	stored := func() *v1alpha1.Work {
		t.Helper()
		w := &v1alpha1.Work{}
		hubtest.Must(t, h.Client.Get(ctx, client.ObjectKeyFromObject(work), w))
		return w
	}
	content := func(w *v1alpha1.Work) string {
		return fmt.Sprintf("%d %s %s %d", w.Generation, w.Spec.DeletionPolicy, w.Annotations[v1alpha1.AnnotationRevision], len(w.Spec.Manifests))
	}
	hand := func(base *v1alpha1.Work, policy v1alpha1.DeletionPolicy, revision string) {
		t.Helper()
		w := base.DeepCopy()
		w.Spec.DeletionPolicy = policy
		w.Annotations[v1alpha1.AnnotationRevision] = revision
		if !s.Hand(base, w) {
			t.Fatal("the Server did not take the content of a cluster whose agent gets its Works on the stream")
		}
	}

	// Handed with no Writer running: the agent has it, the store does not.
	base := stored()
	hand(base, v1alpha1.DeletionOrphan, "r2")
	if got := content(next("the handed content")); got != "2 Orphan r2 0" {
		t.Fatalf("the agent got %q, want the handed content as generation 2", got)
	}
	select {
	case w := <-updated:
		if got := content(w); got != "2 Orphan r2 0" {
			t.Fatalf("the informer's handler got %q, want the handed content as generation 2", got)
		}
	case <-time.After(time.Minute):
		t.Fatal("the informer's handler never saw the handed content")
	}
	if got := content(stored()); got != "1 Delete r1 0" {
		t.Fatalf("the store holds %q before any Writer ran", got)
	}
	if got := content(s.View(base)); got != "2 Orphan r2 0" {
		t.Fatalf("the view shows %q", got)
	}
	// The status is written meanwhile (the Persister does): that is no conflict.
	st := stored()
	st.Status.ObservedGeneration = 2
	hubtest.Must(t, h.Client.Status().Update(ctx, st))

	conflicts := make(chan string, 16)
	runWriter := func() context.CancelFunc {
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		w := &delivery.Writer{Server: s, Client: h.Client, Reader: h.Client, Log: hubtest.Logger(t),
			Conflict: func(_ context.Context, w *v1alpha1.Work) { conflicts <- w.Name }}
		go func() { defer close(done); _ = w.Start(wctx) }()
		return func() { cancel(); <-done }
	}
	stopWriter := runWriter()
	eventually(t, "the handed content stored", func() error {
		if st := s.Stats(); st.Pending > 0 || st.Stored < 1 {
			return fmt.Errorf("%d pending, %d stored", st.Pending, st.Stored)
		}
		return nil
	})
	stopWriter()
	if got := content(stored()); got != "2 Orphan r2 0" {
		t.Fatalf("the store holds %q, want the handed content as generation 2", got)
	}
	if st := s.Stats(); st.Handed != 1 || st.Dropped != 0 || len(conflicts) != 0 {
		t.Fatalf("handed %d, dropped %d, %d conflicts; want 1, 0, none", st.Handed, st.Dropped, len(conflicts))
	}

	// A change of spec and then of its revision alone, handed before either is stored:
	// the second has the first's generation, and both are stored in order.
	base = stored()
	hand(base, v1alpha1.DeletionDelete, "r3")
	hand(s.View(base), v1alpha1.DeletionDelete, "r4")
	for got := ""; got != "3 Delete r4 0"; {
		got = content(next("the revision's change"))
		if got != "3 Delete r3 0" && got != "3 Delete r4 0" {
			t.Fatalf("the agent got %q, want generation 3 with revision r3, then r4", got)
		}
	}
	stopWriter = runWriter()
	eventually(t, "both stored", func() error {
		if st := s.Stats(); st.Pending > 0 || st.Stored < 3 {
			return fmt.Errorf("%d pending, %d stored", st.Pending, st.Stored)
		}
		return nil
	})
	stopWriter()
	if got := content(stored()); got != "3 Delete r4 0" {
		t.Fatalf("the store holds %q, want 3 Delete r4 0", got)
	}
	if st := s.Stats(); st.Dropped != 0 {
		t.Fatalf("%d dropped, want none", st.Dropped)
	}

	// Handed, then someone else changes the spec before the Writer runs: the write finds
	// out, drops the content, tells the Placement, and the agent gets what is stored.
	base = stored()
	hand(base, v1alpha1.DeletionOrphan, "r5")
	if got := content(next("the next handed content")); got != "4 Orphan r5 0" {
		t.Fatalf("the agent got %q, want the content as generation 4", got)
	}
	other := stored()
	other.Spec.Manifests = []runtime.RawExtension{{Raw: []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"default"}}`)}}
	hubtest.Must(t, h.Client.Update(ctx, other))
	if other.Generation != 4 {
		t.Fatalf("the other write made generation %d, want 4", other.Generation)
	}
	stopWriter = runWriter()
	defer stopWriter()
	eventually(t, "the handed content dropped", func() error {
		if st := s.Stats(); st.Dropped < 1 {
			return errors.New("not yet")
		}
		return nil
	})
	if got := content(next("the stored content after the conflict")); got != "4 Delete r4 1" {
		t.Fatalf("the agent got %q after the conflict, want what is stored (4 Delete r4 1)", got)
	}
	if len(conflicts) != 1 || <-conflicts != "shop.web" {
		t.Fatal("the Placement of shop.web was not told once of the conflict")
	}
	if got := content(stored()); got != "4 Delete r4 1" {
		t.Fatalf("the store holds %q, want the other write's content", got)
	}
	if st := s.Stats(); st.Stored != 3 || st.Pending != 0 {
		t.Fatalf("stored %d, pending %d after the conflict; want 3, 0", st.Stored, st.Pending)
	}

	// Content the API refuses (more manifests than a Work holds): the agent gets the
	// stored Work back although it is an older generation, the Placement is told, and the
	// same content is not handed again (its own write shows the error).
	base = stored()
	big := base.DeepCopy()
	for range 1000 {
		big.Spec.Manifests = append(big.Spec.Manifests, base.Spec.Manifests[0])
	}
	big.Annotations[v1alpha1.AnnotationRevision] = "r6"
	if !s.Hand(base, big.DeepCopy()) {
		t.Fatal("the large content was not handed")
	}
	if got := content(next("the large content")); got != "5 Delete r6 1001" {
		t.Fatalf("the agent got %q, want the large content as generation 5", got)
	}
	if got := content(next("the stored Work back")); got != "4 Delete r4 1" {
		t.Fatalf("the agent got %q after the refusal, want the stored Work back (4 Delete r4 1)", got)
	}
	select {
	case name := <-conflicts:
		if name != "shop.web" {
			t.Fatalf("the Placement of %s was told", name)
		}
	case <-time.After(time.Minute):
		t.Fatal("the Placement was not told of the refusal")
	}
	if s.Hand(stored(), big.DeepCopy()) {
		t.Fatal("content the API refused was handed again")
	}
}
