package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// Content ahead of the store: the propagation controller hands a Work's new content to the
// Server (Hand) instead of writing it. The Server's view of the Work (View, and Overlay,
// which the controllers read through) shows it at once, with the generation that its write
// will make, and the cluster's streams send it, so the agent applies it at once; the Writer
// stores it at a paced rate. Writes of one Work follow its generations exactly: one write per
// handed content, in order, each preconditioned on the generation the one before made,
// so that an agent's report of generation G is of the content handed as G. A write that finds
// the Work changed by someone else (a conflict) drops what is pending of it, and the Work's
// Placement is woken to derive its content again from what is stored.
//
// Only clusters whose agent gets its Works on the stream take handed content: the others read
// their Works from the API, and get it written at once, as before. A hub that stops before
// its writes are done loses them; its successor derives the same content again from the
// templates, and the agents hold what they have meanwhile, since they never take an older
// generation of a Work than they have (clientWorks.take).

// pendingWork is what is handed of one Work and not yet seen stored in the cache.
type pendingWork struct {
	uid types.UID
	// gen is the stored Work's generation, as the last write made it (or as the content was
	// first handed): the next write is preconditioned on it.
	gen int64
	// queue is what is still to write, in order; queue[i].Generation == gen+i+1.
	queue []*v1alpha1.Work
	// last is the newest content handed: queue's last, or the last written.
	last    *v1alpha1.Work
	writing bool
}

// DefaultWriteRate is how many handed Works a second the Writer stores by default: at about
// 3.4 ms of API server and datastore CPU each, under a fifth of a core.
const DefaultWriteRate = 50

// Hand gives the Server w, the content that the Work old (as the Server's view showed it)
// should have next: its spec, labels and annotations. It returns false, and keeps nothing,
// when the Work's cluster takes no handed content (no stream of its agent gets its Works):
// the caller writes it itself. w becomes the Server's: the caller must not change it.
func (s *Server) Hand(old, w *v1alpha1.Work) bool {
	cluster, ok := strings.CutPrefix(old.Namespace, v1alpha1.ClusterNamespacePrefix)
	if !ok || old.UID == "" {
		return false
	}
	s.init()
	k := workKey{cluster, old.Name}
	s.pmu.Lock()
	if s.pending == nil {
		s.pending = map[workKey]*pendingWork{}
	}
	p := s.pending[k]
	if p != nil && p.uid != old.UID {
		delete(s.pending, k) // of a Work that is gone
		p = nil
	}
	if p == nil {
		s.mu.RLock()
		c := s.clusters[cluster]
		streamed := c != nil && len(c.feeds) > 0
		s.mu.RUnlock()
		if !streamed {
			s.pmu.Unlock()
			return false
		}
		p = &pendingWork{uid: old.UID, gen: old.Generation}
		s.pending[k] = p
	}
	top := p.gen
	if p.last != nil {
		top = max(top, p.last.Generation)
	}
	w.Generation = top + 1
	w.UID = old.UID
	p.queue = append(p.queue, w)
	p.last = w
	s.pmu.Unlock()
	s.count.handed.Add(1)
	select {
	case s.toWrite <- struct{}{}:
	default:
	}
	s.WorkChanged(cluster, old.Name)
	return true
}

// View returns w, the Work as the cache holds it, with the content handed for it and not
// yet seen stored: a shallow copy whose spec, labels and annotations are the handed ones
// and whose generation is the one their write makes, or w itself. It shares memory with w
// and the handed content: neither may be changed.
func (s *Server) View(w *v1alpha1.Work) *v1alpha1.Work {
	cluster, ok := strings.CutPrefix(w.Namespace, v1alpha1.ClusterNamespacePrefix)
	if !ok {
		return w
	}
	k := workKey{cluster, w.Name}
	s.pmu.Lock()
	defer s.pmu.Unlock()
	p := s.pending[k]
	if p == nil || p.last == nil {
		return w
	}
	if p.uid != w.UID || !w.DeletionTimestamp.IsZero() {
		if !p.writing {
			delete(s.pending, k) // the Work is being deleted, or was made again
		}
		return w
	}
	if w.Generation >= p.last.Generation {
		// Stored (or overtaken by someone else's write, which the next write of the queue
		// finds out).
		if len(p.queue) == 0 && !p.writing {
			delete(s.pending, k)
		}
		return w
	}
	out := *w
	out.Spec = p.last.Spec
	out.Generation = p.last.Generation
	out.Labels = p.last.Labels
	out.Annotations = p.last.Annotations
	return &out
}

// dropPending forgets what is handed of a Work (it is gone, or a write conflicted).
func (s *Server) dropPending(cluster, work string) {
	s.pmu.Lock()
	delete(s.pending, workKey{cluster, work})
	s.pmu.Unlock()
}

// Pending is how many Works have handed content that is not stored yet.
func (s *Server) Pending() int {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	n := 0
	for _, p := range s.pending {
		if len(p.queue) > 0 || p.writing {
			n++
		}
	}
	return n
}

// nextWrite takes the oldest handed content of a Work that is not being written, and marks
// the Work as being written; ok is false when there is none.
func (s *Server) nextWrite(skip map[workKey]bool) (k workKey, w *v1alpha1.Work, ok bool) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	for key, p := range s.pending {
		if len(p.queue) == 0 || p.writing || skip[key] {
			continue
		}
		p.writing = true
		return key, p.queue[0], true
	}
	return workKey{}, nil, false
}

// wrote records the outcome of writing w: stored (the Work as the write returned it), or
// dropped (the write conflicted, or the Work is gone), or neither (try again later).
func (s *Server) wrote(k workKey, w *v1alpha1.Work, stored *v1alpha1.Work, dropped bool) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	p := s.pending[k]
	if p == nil || len(p.queue) == 0 || p.queue[0] != w {
		return
	}
	p.writing = false
	switch {
	case dropped:
		delete(s.pending, k)
		s.count.dropped.Add(1)
	case stored != nil:
		s.count.stored.Add(1)
		p.gen = stored.Generation
		p.queue = slices.Delete(p.queue, 0, 1)
	}
}

// Writer stores the content handed to the Server, at most Rate Works a second (see Hand).
type Writer struct {
	Server *Server
	Client client.Client
	// Reader reads a Work from the API server itself, to tell a refused write from a Work
	// that changed under it.
	Reader client.Reader
	// Rate is writes a second; zero means DefaultWriteRate.
	Rate float64
	// Conflict, if set, is called with a Work whose handed content was dropped because the
	// stored Work changed under it (or is gone): its Placement derives it again.
	Conflict func(ctx context.Context, w *v1alpha1.Work)
	Log      *slog.Logger
}

// writeRetry is how long a Work whose write failed (not for a conflict) waits before the next
// try, doubling up to maxWriteRetry.
const (
	writeRetry    = time.Second
	maxWriteRetry = 30 * time.Second
)

// Start runs the Writer until ctx ends (a controller-runtime Runnable).
func (wr *Writer) Start(ctx context.Context) error {
	s := wr.Server
	s.init()
	r := wr.Rate
	if r <= 0 {
		r = DefaultWriteRate
	}
	limit := rate.NewLimiter(rate.Limit(r), max(1, int(r)))
	log := wr.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	failed := map[workKey]time.Time{}      // Works whose last write failed, until when they wait
	backoff := map[workKey]time.Duration{} // and how long they waited last
	for {
		now := time.Now()
		skip := map[workKey]bool{}
		next := time.Duration(0)
		for k, until := range failed {
			if now.Before(until) {
				skip[k] = true
				if d := until.Sub(now); next == 0 || d < next {
					next = d
				}
			} else {
				delete(failed, k)
			}
		}
		k, w, ok := s.nextWrite(skip)
		if !ok {
			if next == 0 {
				next = time.Hour // nothing waits for a retry: only a hand wakes the Writer
			}
			t := time.NewTimer(next)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-s.toWrite:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		if err := limit.Wait(ctx); err != nil {
			s.wrote(k, w, nil, false)
			return nil
		}
		stored, err := wr.write(ctx, w)
		switch {
		case err == nil && stored.Generation == w.Generation:
			s.wrote(k, w, stored, false)
			delete(backoff, k)
		case err == nil || errors.Is(err, errMoved) || apierrors.IsNotFound(err):
			// Someone else changed the Work's spec (or the write changed nothing, so the
			// generations no longer line up): what the store holds goes to the agent, and
			// the Placement derives the content again.
			log.Debug("a handed Work changed under its write; deriving it again", "work", w.Namespace+"/"+w.Name, "err", err)
			s.wrote(k, w, nil, true)
			delete(backoff, k)
			s.WorkChanged(k.cluster, k.work)
			if wr.Conflict != nil && !apierrors.IsNotFound(err) {
				wr.Conflict(ctx, w)
			}
		default:
			if ctx.Err() != nil {
				s.wrote(k, w, nil, false)
				return nil
			}
			backoff[k] = min(max(2*backoff[k], writeRetry), maxWriteRetry)
			log.Debug("cannot store a handed Work yet; trying again", "work", w.Namespace+"/"+w.Name, "err", err)
			s.wrote(k, w, nil, false)
			failed[k] = time.Now().Add(backoff[k])
		}
	}
}

// errMoved says that a handed Work's stored spec is no longer the one its content followed.
var errMoved = errors.New("the stored Work changed under the handed content")

// write stores w, the next content handed for its Work, if the stored Work is still the same
// one (uid) at the generation before w's: a JSON patch whose tests make that check and whose
// operations set the spec, labels and annotations, all at once in the API server. The status,
// which the Persister writes meanwhile, and the agent's finalizer do not move the generation,
// so they do not stand in its way.
func (wr *Writer) write(ctx context.Context, w *v1alpha1.Work) (*v1alpha1.Work, error) {
	ops := []map[string]any{
		{"op": "test", "path": "/metadata/uid", "value": w.UID},
		{"op": "test", "path": "/metadata/generation", "value": w.Generation - 1},
		{"op": "add", "path": "/spec", "value": w.Spec},
		{"op": "add", "path": "/metadata/labels", "value": w.Labels},
		{"op": "add", "path": "/metadata/annotations", "value": w.Annotations},
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return nil, err
	}
	out := &v1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Namespace: w.Namespace, Name: w.Name}}
	err = wr.Client.Patch(ctx, out, client.RawPatch(types.JSONPatchType, patch))
	if err == nil || !apierrors.IsInvalid(err) || wr.Reader == nil {
		return out, err
	}
	// A failed test and content the API refuses are both Invalid: the stored Work tells
	// them apart.
	live := &v1alpha1.Work{}
	if gerr := wr.Reader.Get(ctx, client.ObjectKeyFromObject(out), live); gerr != nil {
		return nil, errors.Join(err, gerr)
	}
	if live.UID != w.UID || live.Generation != w.Generation-1 {
		return nil, fmt.Errorf("%w: %w", errMoved, err)
	}
	return nil, err
}
