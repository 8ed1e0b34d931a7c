package agent

import (
	"context"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/delivery"
)

// worksSource is where the agent's Works informer lists and watches the cluster's Works: on
// the delivery stream when the hub sends them there, so that no agent lists or watches Works
// through the hub's API; through the API otherwise (no stream offered, a stream that did not
// open within streamPatience, an older hub). An informer that started on the API moves to the
// stream when its watch next ends; one on the stream stays there while the hub offers it, as
// the agent's reports do: a lost stream leaves the Works as they were (fail static) until the
// next stream brings them again. A list is taken from the stream only while it is open and has
// brought the complete set: what a lost stream left may be older than what the API has.
type worksSource struct {
	a   *Agent
	api toolscache.ListerWatcherWithContext

	mu sync.Mutex
	// next is the watch that goes with the last list taken from the stream, for the Watch
	// that follows it; fromStream says where the last list came from.
	next       *delivery.WorkWatch
	fromStream bool
}

var _ toolscache.ListerWatcherWithContext = (*worksSource)(nil)

// IsWatchListSemanticsUnSupported keeps the reflector on list and watch: the stream's list is
// complete as it is.
func (s *worksSource) IsWatchListSemanticsUnSupported() bool { return true }

func (s *worksSource) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	select {
	case <-s.a.deliveryKnown:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.mu.Lock()
	if s.next != nil {
		s.next.Stop()
		s.next = nil
	}
	s.mu.Unlock()
	if c := s.a.worksFeed(ctx); c != nil {
		works, ww := c.WatchWorks()
		list := &v1alpha1.WorkList{Items: make([]v1alpha1.Work, len(works))}
		for i, w := range works {
			list.Items[i] = *w
		}
		s.mu.Lock()
		s.next, s.fromStream = ww, true
		s.mu.Unlock()
		return list, nil
	}
	s.mu.Lock()
	s.fromStream = false
	s.mu.Unlock()
	// The informer's last resourceVersion may be one the stream made up for content handed
	// ahead of its write (delivery.Server.Hand, "h..."), which the API server does not know:
	// list what it holds now.
	if strings.HasPrefix(opts.ResourceVersion, "h") {
		opts.ResourceVersion, opts.ResourceVersionMatch = "", ""
	}
	return s.api.ListWithContext(ctx, opts)
}

func (s *worksSource) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	s.mu.Lock()
	next, fromStream := s.next, s.fromStream
	s.next = nil
	s.mu.Unlock()
	if next != nil {
		return next, nil
	}
	// A watch on the stream ended (the agent left it), or one on the API did and the stream
	// brings the Works now: list again, from where they come now.
	if fromStream || s.a.streamWorks() != nil {
		return nil, apierrors.NewResourceExpired("the agent's Works come from elsewhere now; listing them again")
	}
	return s.api.WatchWithContext(ctx, opts)
}

func (s *worksSource) List(opts metav1.ListOptions) (runtime.Object, error) {
	return s.ListWithContext(context.Background(), opts)
}

func (s *worksSource) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return s.WatchWithContext(context.Background(), opts)
}

// streamWorks returns the delivery stream's client if the Works it holds are current (see
// delivery.Client.WorksCurrent).
func (a *Agent) streamWorks() *delivery.Client {
	if s := a.stream.Load(); s != nil && s.client.WorksCurrent() {
		return s.client
	}
	return nil
}

// worksFeed returns the delivery stream's client if it brings the cluster's Works, waiting for
// a complete set while the stream is opening (up to streamPatience from its start); nil when
// the agent is to watch them through the API.
func (a *Agent) worksFeed(ctx context.Context) *delivery.Client {
	for {
		s := a.stream.Load()
		switch {
		case s == nil:
			return nil
		case a.streamWorks() != nil:
			return s.client
		case s.client.EverUp() && !s.client.HubSendsWorks(), time.Since(s.since) >= streamPatience:
			return nil
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}
