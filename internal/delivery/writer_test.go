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

	// Handed, then someone else changes the spec before the Writer runs: the write finds
	// out, drops the content, tells the Placement, and the agent gets what is stored.
	base = stored()
	hand(base, v1alpha1.DeletionDelete, "r3")
	if got := content(next("the second handed content")); got != "3 Delete r3 0" {
		t.Fatalf("the agent got %q, want the second content as generation 3", got)
	}
	other := stored()
	other.Spec.Manifests = []runtime.RawExtension{{Raw: []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"default"}}`)}}
	hubtest.Must(t, h.Client.Update(ctx, other))
	if other.Generation != 3 {
		t.Fatalf("the other write made generation %d, want 3", other.Generation)
	}
	stopWriter = runWriter()
	defer stopWriter()
	eventually(t, "the handed content dropped", func() error {
		if st := s.Stats(); st.Dropped < 1 {
			return errors.New("not yet")
		}
		return nil
	})
	if got := content(next("the stored content after the conflict")); got != "3 Orphan r2 1" {
		t.Fatalf("the agent got %q after the conflict, want what is stored (3 Orphan r2 1)", got)
	}
	if len(conflicts) != 1 || <-conflicts != "shop.web" {
		t.Fatal("the Placement of shop.web was not told once of the conflict")
	}
	if got := content(stored()); got != "3 Orphan r2 1" {
		t.Fatalf("the store holds %q, want the other write's content", got)
	}
	if st := s.Stats(); st.Stored != 1 || st.Pending != 0 {
		t.Fatalf("stored %d, pending %d after the conflict; want 1, 0", st.Stored, st.Pending)
	}
}
