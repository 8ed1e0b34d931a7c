package delivery

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// The down path: the hub sends each agent that asks (DeliveryHello.WatchWorks) its cluster's
// Works on the stream, all of them when the stream opens and then each one that changes, so
// that no agent lists or watches Works through the hub's API. The Works stay stored objects:
// what the hub sends is what its cache holds.

// WorkLister reads a cluster's Works from the hub's cache.
type WorkLister interface {
	// ClusterWorks returns the Works in cluster's namespace. They are the cache's own
	// objects, which the Server only reads.
	ClusterWorks(ctx context.Context, cluster string) ([]*v1alpha1.Work, error)
}

// feed is one stream's queue of Works to send: all of them (full), or the named ones.
type feed struct {
	mu    sync.Mutex
	full  bool
	names map[string]bool
	kick  chan struct{}
	// gen is the stream's number among its cluster's (set by open, under the Server's mu).
	gen int
}

// newest says whether f is the feed of its cluster's newest stream.
func (s *Server) newest(cluster string, f *feed) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.clusters[cluster]
	return c != nil && c.gen == f.gen
}

func newFeed() *feed {
	f := &feed{full: true, names: map[string]bool{}, kick: make(chan struct{}, 1)}
	f.kick <- struct{}{}
	return f
}

func (f *feed) add(name string) {
	f.mu.Lock()
	f.names[name] = true
	f.mu.Unlock()
	f.poke()
}

func (f *feed) poke() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

func (f *feed) take() (full bool, names []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	full, f.full = f.full, false
	if !full {
		for n := range f.names {
			names = append(names, n)
		}
	}
	clear(f.names)
	return full, names
}

// WorkChanged tells the streams of cluster that ask for its Works that Work name changed (or
// is gone). The sender reads the Work from the cache when it sends, so a burst of changes
// costs one message, and what it sends is never older than what it sent before.
func (s *Server) WorkChanged(cluster, name string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if c := s.clusters[cluster]; c != nil {
		for f := range c.feeds {
			f.add(name)
		}
	}
}

// worksPerMessage bounds the manifests' bytes in one message of a full set: a cluster with
// many Works gets them in several messages, each far below maxMessage.
const worksPerMessage = 1 << 20

// sendWorks sends cluster's Works on stream as f asks, until ctx ends or a send fails. It is
// the only goroutine that sends on the stream after the first message.
func (s *Server) sendWorks(ctx context.Context, stream grpc.ServerStream, cluster string, f *feed) error {
	interval := s.interval().String()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-f.kick:
		}
		full, names := f.take()
		works, err := s.Works.ClusterWorks(ctx, cluster)
		if err != nil {
			// The cache fails only while stopping; try the same again shortly.
			s.Log.Debug("cannot read the cluster's Works for its stream", "cluster", cluster, "err", err)
			f.mu.Lock()
			f.full = f.full || full
			for _, n := range names {
				f.names[n] = true
			}
			f.mu.Unlock()
			t := time.NewTimer(time.Second)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			f.poke()
			continue
		}
		byName := make(map[string]*v1alpha1.Work, len(works))
		for _, w := range works {
			byName[w.Name] = w
		}
		var send []*v1alpha1.Work
		var gone []string
		if full {
			send = works
		} else {
			for _, n := range names {
				if w := byName[n]; w != nil {
					send = append(send, w)
				} else {
					gone = append(gone, n)
				}
			}
		}
		if !full && len(send) == 0 && len(gone) == 0 {
			continue
		}
		m := v1alpha1.HubMessage{HeartbeatInterval: interval, WorksBegin: full, WorksGone: gone}
		size := 0
		// A reset is forgotten once a message with it went out on the cluster's newest
		// stream: an older one may be half open, and a send may fail.
		sendMsg := func() error {
			if err := stream.SendMsg(&m); err != nil {
				return err
			}
			if len(m.WorksReset) > 0 && s.newest(cluster, f) {
				s.clearResets(cluster, m.WorksReset)
			}
			return nil
		}
		for i, w := range send {
			w = s.View(w)
			m.Works = append(m.Works, wire(w))
			if s.hasReset(cluster, w.Name) {
				m.WorksReset = append(m.WorksReset, w.Name)
			}
			size += workSize(w)
			if size >= worksPerMessage && i < len(send)-1 {
				if err := sendMsg(); err != nil {
					return err
				}
				m, size = v1alpha1.HubMessage{HeartbeatInterval: interval}, 0
			}
		}
		m.WorksEnd = full
		if err := sendMsg(); err != nil {
			return err
		}
	}
}

// wire is what the agent gets of w: all but its managedFields, which it does not use.
func wire(w *v1alpha1.Work) v1alpha1.Work {
	out := *w
	out.ManagedFields = nil
	return out
}

// workSize estimates w's size on the stream.
func workSize(w *v1alpha1.Work) int {
	n := 1024 + 256*len(w.Status.Resources)
	for _, m := range w.Spec.Manifests {
		n += len(m.Raw)
	}
	return n
}

// The agent's end: the Client keeps the cluster's Works as its streams sent them, and hands
// their changes to watches (the agent's Works informer lists and watches them here).

// clientWorks is what a Client holds of the cluster's Works.
type clientWorks struct {
	mu    sync.Mutex
	works map[string]*v1alpha1.Work
	// building names the Works of the complete set being received, nil when none is.
	building map[string]bool
	// ready is closed when the first complete set has come; hubSends says the hub of the
	// last stream that opened sends the Works, and current that this stream has brought its
	// complete set.
	ready    chan struct{}
	complete bool
	hubSends bool
	current  bool
	watches  map[*WorkWatch]bool
	// stream numbers the streams: only the newest one's messages are taken.
	stream int
	// closed says the agent no longer takes its Works from this Client (EndWatches).
	closed bool
}

func newClientWorks() *clientWorks {
	return &clientWorks{works: map[string]*v1alpha1.Work{}, ready: make(chan struct{}), watches: map[*WorkWatch]bool{}}
}

// WorksReady is closed once a stream has brought the cluster's complete set of Works.
func (c *Client) WorksReady() <-chan struct{} { return c.works.ready }

// WorksCurrent says whether the Works the Client holds are current: a stream is open, its hub
// sends the Works, and it has brought their complete set. Only then may an informer list them
// here; otherwise they may be older than what the hub's API has.
func (c *Client) WorksCurrent() bool {
	if !c.Up() {
		return false
	}
	cw := c.works
	cw.mu.Lock()
	defer cw.mu.Unlock()
	return cw.hubSends && cw.current && !cw.closed
}

// HubSendsWorks says whether the hub of the last stream that opened sends the cluster's Works
// on it.
func (c *Client) HubSendsWorks() bool {
	c.works.mu.Lock()
	defer c.works.mu.Unlock()
	return c.works.hubSends
}

// WatchWorks returns the cluster's Works as the streams have sent them so far, and a watch of
// their changes from then on: a Work that changes comes as Modified, one that is gone from the
// hub as Deleted. A stream that is lost ends no watch: the Works stay as they were until the
// next stream brings them again (and, in its complete set, says which are gone).
func (c *Client) WatchWorks() ([]*v1alpha1.Work, *WorkWatch) {
	cw := c.works
	cw.mu.Lock()
	defer cw.mu.Unlock()
	out := make([]*v1alpha1.Work, 0, len(cw.works))
	for _, w := range cw.works {
		out = append(out, w)
	}
	ww := &WorkWatch{owner: cw, wake: make(chan struct{}, 1), out: make(chan watch.Event), stop: make(chan struct{})}
	if cw.closed {
		ww.push(expired("the agent no longer gets its Works on this delivery stream"), true)
	} else {
		cw.watches[ww] = true
	}
	go ww.run()
	return out, ww
}

// expired is the error event that ends a watch of the Works: its informer lists them again,
// from where they come now.
func expired(why string) watch.Event {
	return watch.Event{Type: watch.Error, Object: &apierrors.NewResourceExpired(why).ErrStatus}
}

// EndWatches ends every watch of the Works with an error (the agent no longer takes its
// Works from this Client): their informer lists again, from where it gets them now.
func (c *Client) EndWatches() {
	cw := c.works
	cw.mu.Lock()
	defer cw.mu.Unlock()
	cw.closed = true
	cw.endWatches("the agent no longer gets its Works on this delivery stream")
}

func (cw *clientWorks) endWatches(why string) {
	for ww := range cw.watches {
		ww.push(expired(why), true)
		delete(cw.watches, ww)
	}
}

// streamOpened records whether the hub of a stream that opened sends the Works, and returns
// the stream's number; a complete set that an earlier stream left unfinished is dropped.
func (cw *clientWorks) streamOpened(sends bool) int {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	cw.stream++
	if cw.hubSends && !sends {
		// This hub does not send the Works (an older one): their informer goes to the API.
		cw.endWatches("the hub no longer sends the Works on the delivery stream")
	}
	cw.hubSends, cw.building, cw.current = sends, nil, false
	return cw.stream
}

// take applies what a hub message on stream says of the Works.
func (cw *clientWorks) take(stream int, m *v1alpha1.HubMessage) {
	if !m.WorksBegin && !m.WorksEnd && len(m.Works) == 0 && len(m.WorksGone) == 0 {
		return
	}
	cw.mu.Lock()
	defer cw.mu.Unlock()
	if stream != cw.stream {
		return // an older stream's last message
	}
	if m.WorksBegin {
		cw.building = map[string]bool{}
	}
	reset := map[string]bool{}
	for _, n := range m.WorksReset {
		reset[n] = true
	}
	for i := range m.Works {
		w := &m.Works[i]
		if cw.building != nil {
			cw.building[w.Name] = true
		}
		// A complete set after a reconnect repeats what the agent has: only changes go on.
		old := cw.works[w.Name]
		if old != nil && old.UID == w.UID && old.ResourceVersion == w.ResourceVersion && old.Generation == w.Generation {
			continue
		}
		// A Work's generation never goes back but for content handed ahead of its write
		// that the hub dropped (it stopped first, or someone else changed the Work): the
		// agent keeps what it has until the hub hands it again, or something newer, or
		// says that the older one is what it wants (WorksReset).
		if old != nil && old.UID == w.UID && w.Generation < old.Generation && w.DeletionTimestamp.IsZero() && !reset[w.Name] {
			continue
		}
		if old != nil && old.UID != w.UID {
			cw.emit(watch.Deleted, old) // deleted and made again while the stream was away
		}
		cw.works[w.Name] = w
		cw.emit(watch.Modified, w)
	}
	for _, name := range m.WorksGone {
		if old := cw.works[name]; old != nil {
			delete(cw.works, name)
			cw.emit(watch.Deleted, old)
		}
	}
	if m.WorksEnd && cw.building != nil {
		for name, old := range cw.works {
			if !cw.building[name] {
				delete(cw.works, name)
				cw.emit(watch.Deleted, old)
			}
		}
		cw.building, cw.current = nil, true
		if !cw.complete {
			cw.complete = true
			close(cw.ready)
		}
	}
}

func (cw *clientWorks) emit(t watch.EventType, w *v1alpha1.Work) {
	for ww := range cw.watches {
		ww.push(watch.Event{Type: t, Object: w}, false)
	}
}

// WorkWatch is a watch of the Works a Client receives (watch.Interface).
type WorkWatch struct {
	owner    *clientWorks
	mu       sync.Mutex
	queue    []watch.Event
	ended    bool
	wake     chan struct{}
	out      chan watch.Event
	stop     chan struct{}
	stopOnce sync.Once
}

var _ watch.Interface = (*WorkWatch)(nil)

// ResultChan delivers the changes; it is closed when the watch ends.
func (ww *WorkWatch) ResultChan() <-chan watch.Event { return ww.out }

// Stop ends the watch.
func (ww *WorkWatch) Stop() {
	ww.stopOnce.Do(func() {
		close(ww.stop)
		ww.owner.mu.Lock()
		delete(ww.owner.watches, ww)
		ww.owner.mu.Unlock()
	})
}

func (ww *WorkWatch) push(e watch.Event, end bool) {
	ww.mu.Lock()
	if !ww.ended {
		ww.queue = append(ww.queue, e)
		ww.ended = end
	}
	ww.mu.Unlock()
	select {
	case ww.wake <- struct{}{}:
	default:
	}
}

// run hands the queued changes on, in order, however slowly they are taken.
func (ww *WorkWatch) run() {
	defer close(ww.out)
	for {
		ww.mu.Lock()
		q, ended := ww.queue, ww.ended
		ww.queue = nil
		ww.mu.Unlock()
		for _, e := range q {
			select {
			case ww.out <- e:
			case <-ww.stop:
				return
			}
		}
		if ended {
			return
		}
		select {
		case <-ww.wake:
		case <-ww.stop:
			return
		}
	}
}
