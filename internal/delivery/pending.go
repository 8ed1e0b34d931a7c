package delivery

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/api/equality"
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
	// queue is what is still to write, in order, each with the generation its write makes:
	// one more than the one before for a change of spec, the same for metadata alone.
	queue []*v1alpha1.Work
	// last is the newest content handed: queue's last, or the last written.
	last    *v1alpha1.Work
	writing bool
	// since is when the queue's oldest content was handed.
	since time.Time
	// stored is when the last write emptied the queue (zero while it is not empty).
	stored time.Time
}

// settled says that all content handed for the Work is stored: the entry serves views only.
func (p *pendingWork) settled() bool { return len(p.queue) == 0 && !p.writing }

// settledGrace is how long a Work's entry outlives its last write. A reader may hold a copy
// of the cache taken before the write reached it (a controller lists its Works, then views
// them one by one): until the entry goes, its view of that copy is still the handed content,
// not the older stored one, which it would take for a change to make again.
const settledGrace = 5 * time.Second

// settledSweep is how long after its last write an entry that no view dropped (its Work was
// not looked at again) goes when the Writer next looks for work.
const settledSweep = time.Minute

// DefaultWriteRate is how many handed Works a second the Writer stores by default: at about
// 3.4 ms of API server and datastore CPU each, under a fifth of a core.
const DefaultWriteRate = 50

// Hand gives the Server w, the content that the Work old (as the Server's view showed it)
// should have next: its spec, labels and annotations. It returns false, and keeps nothing,
// when the Work's cluster takes no handed content (no stream of its agent gets its Works),
// when nothing but metadata changes and nothing is pending (a write that moves no
// generation), or when the Writer could not store the Work's last handed content for a
// reason other than a conflict: the caller writes it itself, and sees the error. w becomes
// the Server's: the caller must not change it.
func (s *Server) Hand(old, w *v1alpha1.Work) bool {
	cluster, ok := strings.CutPrefix(old.Namespace, v1alpha1.ClusterNamespacePrefix)
	if !ok || old.UID == "" {
		return false
	}
	s.init()
	k := workKey{cluster, old.Name}
	s.lockPending()
	if key, ok := s.refused[k]; ok {
		if key == contentKey(w) {
			s.pmu.Unlock()
			return false // the API refused this very content: the caller writes it, and sees why
		}
		delete(s.refused, k)
	}
	p := s.pending[k]
	if p != nil && (p.uid != old.UID ||
		(p.settled() && (old.Generation > p.last.Generation || !s.streamsWorks(cluster)))) {
		// Of a Work that is gone, or stored and changed by another writer since (the next
		// write is on the generation old shows), or stored and its cluster has no stream that
		// gets its Works any more (the caller writes).
		delete(s.pending, k)
		p = nil
	}
	// A change of labels or annotations alone moves no generation: it is a write of the
	// same generation, and needs none of its own when nothing is pending.
	sameSpec := sameSpec(old.Spec, w.Spec)
	if sameSpec && (p == nil || p.settled()) {
		if p != nil && p.last != nil {
			// The caller writes it; until the cache shows that, the view shows it too.
			last := *p.last
			last.Labels, last.Annotations = w.Labels, w.Annotations
			p.last = &last
		}
		s.pmu.Unlock()
		return false
	}
	if p == nil {
		if !s.streamsWorks(cluster) {
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
	if !sameSpec {
		top++
	}
	w.Generation = top
	w.UID = old.UID
	// An agent that reports a newer generation than this one holds content a hub handed and
	// did not store (it stopped first): it takes this one anyway.
	s.mu.RLock()
	if c := s.clusters[cluster]; c != nil {
		if r := c.reports[old.Name]; r != nil && r.UID == string(old.UID) && r.Status.ObservedGeneration >= top {
			s.reset[k] = true
		}
	}
	s.mu.RUnlock()
	// A resourceVersion of its own, which no stored Work has: the agent's informer takes an
	// update with an unchanged one for a resync, and its client a repeat of what it has.
	s.handSeq++
	w.ResourceVersion = fmt.Sprintf("h%d.%d", s.epoch, s.handSeq)
	if len(p.queue) == 0 {
		p.since = time.Now()
	}
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

// streamsWorks says whether a stream of the cluster's agent gets its Works.
func (s *Server) streamsWorks(cluster string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.clusters[cluster]
	return c != nil && len(c.feeds) > 0
}

// MaxHanded is how many contents of one Work may wait for their writes. The Writer stores
// them one write each, in order, so a Work that changes faster than it can be stored (the API
// server away, a template changed in a loop) waits for its writes, instead of holding more
// and more of them.
const MaxHanded = 8

// Backlogged says whether the Work old (as the Server's view shows it) has MaxHanded contents
// handed and not stored yet. The caller then hands it nothing more, writes nothing itself,
// and looks again a while later: the agent keeps the newest content handed meanwhile.
func (s *Server) Backlogged(old *v1alpha1.Work) bool {
	cluster, ok := strings.CutPrefix(old.Namespace, v1alpha1.ClusterNamespacePrefix)
	if !ok {
		return false
	}
	s.lockPending()
	defer s.pmu.Unlock()
	p := s.pending[workKey{cluster, old.Name}]
	return p != nil && p.uid == old.UID && len(p.queue) >= MaxHanded
}

// View returns w, the Work as the cache holds it, with the content handed for it and not
// yet seen stored: a shallow copy whose spec, labels, annotations and resourceVersion are the
// handed ones and whose generation is the one their write makes, or w itself. It shares
// memory with w and the handed content: neither may be changed.
func (s *Server) View(w *v1alpha1.Work) *v1alpha1.Work {
	cluster, ok := strings.CutPrefix(w.Namespace, v1alpha1.ClusterNamespacePrefix)
	if !ok {
		return w
	}
	k := workKey{cluster, w.Name}
	s.pmu.Lock()
	defer s.pmu.Unlock()
	p := s.pending[k]
	if p == nil || p.last == nil || p.uid != w.UID {
		// A Work made again under the same name drops the old one's entry when it is
		// forgotten (Forget) or handed content (Hand).
		return w
	}
	settled := p.settled()
	if !w.DeletionTimestamp.IsZero() {
		// Being deleted: what is stored is what the agent must finalize.
		if settled {
			delete(s.pending, k)
		}
		return w
	}
	if settled && w.Generation >= p.last.Generation &&
		w.Annotations[v1alpha1.AnnotationRevision] == p.last.Annotations[v1alpha1.AnnotationRevision] {
		// Stored, and this copy shows it; the entry stays a while for older copies.
		if time.Since(p.stored) > settledGrace {
			delete(s.pending, k)
		}
		return w
	}
	out := *w
	out.Spec = p.last.Spec
	out.Generation = p.last.Generation
	out.Labels = p.last.Labels
	out.Annotations = p.last.Annotations
	// Its own, and the cache's: a change of what is stored (the status, the agent's
	// finalizer) still reaches the agent as a change.
	out.ResourceVersion = p.last.ResourceVersion + "." + w.ResourceVersion
	return &out
}

// Pending is how many Works have handed content that is not stored yet.
func (s *Server) Pending() int {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	n := 0
	for _, p := range s.pending {
		if !p.settled() {
			n++
		}
	}
	return n
}

// nextWrite takes the oldest handed content of a Work that is not being written and was
// first handed writeDelay before now, and marks the Work as being written; base is the
// generation the store holds before it (the content's own, for a change of metadata alone,
// else one less). ok is false when there is none; wait is then how long until one is due.
func (s *Server) nextWrite(skip map[workKey]bool, now time.Time) (k workKey, w *v1alpha1.Work, base int64, wait time.Duration, ok bool) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	for key, p := range s.pending {
		if p.settled() && time.Since(p.stored) > settledSweep {
			delete(s.pending, key) // stored long ago: every copy of the cache shows it
			continue
		}
		if len(p.queue) == 0 || p.writing || skip[key] {
			continue
		}
		if d := p.since.Add(writeDelay).Sub(now); d > 0 {
			if wait == 0 || d < wait {
				wait = d
			}
			continue
		}
		p.writing = true
		return key, p.queue[0], p.gen, 0, true
	}
	return workKey{}, nil, 0, wait, false
}

// isPending says whether a Work has handed content not stored yet.
func (s *Server) isPending(k workKey) bool {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	p := s.pending[k]
	return p != nil && !p.settled()
}

// wrote records the outcome of writing w: stored (the Work as the write returned it), or
// dropped (the write conflicted, or the Work is gone), or neither (try again later).
func (s *Server) wrote(k workKey, w *v1alpha1.Work, stored *v1alpha1.Work, dropped bool) {
	s.settle(k, w, stored, dropped, false)
}

// settle is wrote, and with refused also makes the next Hand of the Work return false.
func (s *Server) settle(k workKey, w *v1alpha1.Work, stored *v1alpha1.Work, dropped, refused bool) {
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
		// The agent may hold this content, or a later one: it goes back to what is stored.
		s.reset[k] = true
		if refused {
			s.refused[k] = contentKey(w)
		}
	case stored != nil:
		s.count.stored.Add(1)
		p.since = time.Now().Add(-writeDelay) // the next content is due at once
		p.gen = stored.Generation
		p.queue = slices.Delete(p.queue, 0, 1)
		if len(p.queue) == 0 {
			p.stored = time.Now()
		}
	}
}

// Writer stores the content handed to the Server, at most Rate Works a second (see Hand), and
// not while a burst of reports lasts (burst.go).
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
// try, doubling up to maxWriteRetry; writeDelay is how long handed content waits before its
// write, so that the propagation it is part of passes first (its agents report within it).
const (
	writeRetry    = time.Second
	maxWriteRetry = 30 * time.Second
	writeDelay    = time.Second
	// flushTime bounds how long a stopping Writer stores what is left, unpaced.
	flushTime = 5 * time.Second
)

// Start runs the Writer until ctx ends (a controller-runtime Runnable); then it stores what
// is left for a few seconds more, unpaced, so that a hub that stops loses little.
func (wr *Writer) Start(ctx context.Context) error {
	s := wr.Server
	s.init()
	r := wr.Rate
	if r <= 0 {
		r = DefaultWriteRate
	}
	limit := rate.NewLimiter(rate.Limit(r), max(1, int(r)/10))
	log := wr.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	gate := storeGate{s: s}
	failed := map[workKey]time.Time{}      // Works whose last write failed, until when they wait
	backoff := map[workKey]time.Duration{} // and how long they waited last
	for {
		// Nothing is taken while a burst of reports holds the stores (burst.go).
		if !gate.wait(ctx) {
			wr.flush(log)
			return nil
		}
		now := time.Now()
		skip := map[workKey]bool{}
		var next time.Duration
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
		k, w, base, wait, ok := s.nextWrite(skip, now)
		if !ok {
			if wait > 0 && (next == 0 || wait < next) {
				next = wait
			}
			if next == 0 {
				next = time.Hour // nothing waits: only a hand wakes the Writer
			}
			t := time.NewTimer(next)
			select {
			case <-ctx.Done():
				t.Stop()
				wr.flush(log)
				return nil
			case <-s.toWrite:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		if err := limit.Wait(ctx); err != nil {
			s.wrote(k, w, nil, false)
			wr.flush(log)
			return nil
		}
		if ctx.Err() != nil {
			s.wrote(k, w, nil, false)
			wr.flush(log)
			return nil
		}
		if !wr.store(ctx, log, k, w, base, false) {
			backoff[k] = min(max(2*backoff[k], writeRetry), maxWriteRetry)
			failed[k] = time.Now().Add(backoff[k])
		} else {
			delete(backoff, k)
		}
		for k := range backoff {
			if !s.isPending(k) {
				delete(backoff, k)
			}
		}
	}
}

// flush stores what is left, unpaced, for flushTime at most.
func (wr *Writer) flush(log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), flushTime)
	defer cancel()
	failed := map[workKey]bool{}
	for ctx.Err() == nil {
		k, w, base, _, ok := wr.Server.nextWrite(failed, time.Now().Add(writeDelay))
		if !ok {
			return
		}
		if !wr.store(ctx, log, k, w, base, true) {
			failed[k] = true
		}
	}
	if n := wr.Server.Pending(); n > 0 {
		log.Info("stopping with handed Works not stored; the next hub derives them again", "works", n)
	}
}

// store writes w and records the outcome; it returns false when the write failed and is to
// be tried again.
func (wr *Writer) store(ctx context.Context, log *slog.Logger, k workKey, w *v1alpha1.Work, base int64, flushing bool) bool {
	s := wr.Server
	stored, err := wr.write(ctx, w, base)
	switch {
	case err == nil && stored.Generation == w.Generation:
		s.wrote(k, w, stored, false)
		return true
	case err == nil || errors.Is(err, errMoved) || apierrors.IsNotFound(err):
		// Someone else changed the Work's spec (or the write moved the generation
		// otherwise than it should): what the store holds goes to the agent, and the
		// Placement derives the content again.
		log.Debug("a handed Work changed under its write; deriving it again", "work", w.Namespace+"/"+w.Name, "err", err)
		s.wrote(k, w, nil, true)
	case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsRequestEntityTooLargeError(err) || apierrors.IsForbidden(err):
		// The API refuses the content: the Placement's next write of it is its own, and
		// its reconcile sees the error.
		log.Info("the API refuses a handed Work; its Placement writes it itself", "work", w.Namespace+"/"+w.Name, "err", err)
		s.settle(k, w, nil, true, true)
	default:
		if ctx.Err() == nil {
			log.Debug("cannot store a handed Work yet; trying again", "work", w.Namespace+"/"+w.Name, "err", err)
		}
		s.wrote(k, w, nil, false)
		return false
	}
	s.WorkChanged(k.cluster, k.work)
	if wr.Conflict != nil && !apierrors.IsNotFound(err) && !flushing {
		wr.Conflict(ctx, w) // not while stopping: the controllers are stopping too
	}
	return true
}

// errMoved says that a handed Work's stored spec is no longer the one its content followed.
var errMoved = errors.New("the stored Work changed under the handed content")

// write stores w, the next content handed for its Work, if the stored Work is still the same
// one (uid) at generation base: a JSON patch whose tests make that check and whose
// operations set the spec and each of w's labels and annotations (others' keys stay), all at
// once in the API server. The status, which the Persister writes meanwhile, and the agent's
// finalizer do not move the generation, so they do not stand in its way.
func (wr *Writer) write(ctx context.Context, w *v1alpha1.Work, base int64) (*v1alpha1.Work, error) {
	ops := []map[string]any{
		{"op": "test", "path": "/metadata/uid", "value": w.UID},
		{"op": "test", "path": "/metadata/generation", "value": base},
		{"op": "add", "path": "/spec", "value": w.Spec},
	}
	for _, m := range []struct {
		path string
		kv   map[string]string
	}{{"/metadata/labels", w.Labels}, {"/metadata/annotations", w.Annotations}} {
		for _, key := range slices.Sorted(maps.Keys(m.kv)) {
			ops = append(ops, map[string]any{"op": "add", "path": m.path + "/" + jsonPointer(key), "value": m.kv[key]})
		}
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
	switch {
	case live.UID == w.UID && live.Generation == w.Generation && sameSpec(live.Spec, w.Spec) &&
		live.Annotations[v1alpha1.AnnotationRevision] == w.Annotations[v1alpha1.AnnotationRevision]:
		return live, nil // stored already: an earlier try's answer was lost
	case live.UID != w.UID || live.Generation != base:
		return nil, fmt.Errorf("%w: %w", errMoved, err)
	}
	return nil, err
}

// jsonPointer escapes a map key for a JSON patch path (RFC 6901).
func jsonPointer(key string) string {
	return strings.ReplaceAll(strings.ReplaceAll(key, "~", "~0"), "/", "~1")
}

// lockPending takes pmu, and makes the maps it guards the first time.
func (s *Server) lockPending() {
	s.pmu.Lock()
	if s.pending == nil {
		s.pending = map[workKey]*pendingWork{}
		s.refused = map[workKey]string{}
		s.reset = map[workKey]bool{}
	}
}

// Reset tells the Server that w, as the cache holds it, is what its Placement wants, although
// its agent reports a newer generation: content handed ahead of its write that this hub, or
// the one before it, did not store. The agent gets w again, and takes it whatever its
// generation. Nothing happens while content is handed for w.
func (s *Server) Reset(w *v1alpha1.Work) {
	cluster, ok := strings.CutPrefix(w.Namespace, v1alpha1.ClusterNamespacePrefix)
	if !ok {
		return
	}
	s.init()
	k := workKey{cluster, w.Name}
	s.lockPending()
	if p := s.pending[k]; p != nil && p.uid == w.UID && !p.settled() {
		s.pmu.Unlock()
		return
	}
	s.reset[k] = true
	s.pmu.Unlock()
	s.WorkChanged(cluster, w.Name)
}

// hasReset says whether the agent must take Work name of cluster whatever its generation.
func (s *Server) hasReset(cluster, name string) bool {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	return s.reset[workKey{cluster, name}]
}

// clearResets forgets the resets of names: a message with them went out on the cluster's
// newest stream.
func (s *Server) clearResets(cluster string, names []string) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	for _, n := range names {
		delete(s.reset, workKey{cluster, n})
	}
}

// sameSpec says whether two Work specs ask for the same: their manifests equal as JSON
// values (not as bytes), and the same policies.
func sameSpec(a, b v1alpha1.WorkSpec) bool {
	if a.DeletionPolicy != b.DeletionPolicy || a.DriftPolicy != b.DriftPolicy || len(a.Manifests) != len(b.Manifests) {
		return false
	}
	for i := range a.Manifests {
		x, y := a.Manifests[i].Raw, b.Manifests[i].Raw
		if bytes.Equal(x, y) {
			continue
		}
		var u, v any
		if json.Unmarshal(x, &u) != nil || json.Unmarshal(y, &v) != nil || !equality.Semantic.DeepEqual(u, v) {
			return false
		}
	}
	return true
}

// contentKey identifies what a write of w sets: its spec and revision.
func contentKey(w *v1alpha1.Work) string {
	raw, _ := json.Marshal(w.Spec)
	h := sha256.Sum256(append(raw, w.Annotations[v1alpha1.AnnotationRevision]...))
	return hex.EncodeToString(h[:])
}
