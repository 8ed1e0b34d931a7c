package delivery

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// DefaultPersistRate is how many Work statuses a second the Persister stores by default: at
// about 4.5 ms of API server and datastore CPU each, a tenth of a core at most.
const DefaultPersistRate = 20

// maxRetries is how many passes (a second or more apart) the Persister waits for the cache to
// show a reported Work.
const maxRetries = 30

// Persister stores the Server's folded reports in the Works' status, at most Rate a second,
// the latest of each Work only, and not while a burst of reports lasts (burst.go). It is the
// one writer of a streaming agent's Works' status; the stored status is a view for kubectl and
// what a restarted hub reads until the agents report again.
type Persister struct {
	Server *Server
	// Client writes the status; Cache reads the Works (the hub's informer cache).
	Client client.Client
	Cache  client.Reader
	// Rate is writes a second; zero means DefaultPersistRate.
	Rate float64
	Log  *slog.Logger
}

// Start runs the Persister until ctx ends (a controller-runtime Runnable).
func (p *Persister) Start(ctx context.Context) error {
	p.Server.init()
	r := p.Rate
	if r <= 0 {
		r = DefaultPersistRate
	}
	limit := rate.NewLimiter(rate.Limit(r), max(1, int(r)))
	log := p.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	retries := map[string]int{} // by NAMESPACE/NAME: passes the cache did not show the Work
	gate := storeGate{s: p.Server}
	for {
		// The batch is taken once no burst of reports holds the stores (burst.go), so that
		// it holds the latest reports.
		if !gate.wait(ctx) {
			return nil
		}
		batch := p.Server.takeDirty(ctx)
		if ctx.Err() != nil {
			return nil
		}
		again := false // something of this batch is put back for a later pass
		for i, rep := range batch {
			ns, name, _ := strings.Cut(rep.Work, "/")
			// The cache's own object, read only: most reports after a restart are stored
			// already, and need no copy of the Work's manifests.
			cached := &v1alpha1.Work{}
			if err := p.Cache.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, cached, client.UnsafeDisableDeepCopy); err != nil || string(cached.UID) != rep.UID {
				// The cache does not show this Work (yet, or any more: a deleted Work's report
				// is forgotten when the cache sees it go). Try again a few times.
				if retries[rep.Work] < maxRetries {
					retries[rep.Work]++
					p.Server.markDirty(ns, name)
					again = true
				} else {
					delete(retries, rep.Work)
				}
				continue
			}
			delete(retries, rep.Work)
			// A stored status ahead of the Work is of content that was handed ahead of its
			// write and not stored (pending.go): the agent's report replaces it.
			behind := rep.Status.ObservedGeneration < cached.Status.ObservedGeneration && cached.Status.ObservedGeneration <= p.Server.View(cached).Generation
			if behind || equality.Semantic.DeepEqual(cached.Status, rep.Status) {
				continue
			}
			if gate.holds() {
				// A burst began: what is left of the batch waits for it, and is taken again
				// then, with what the burst brings.
				again = true
				for _, r := range batch[i:] {
					ns, name, _ := strings.Cut(r.Work, "/")
					p.Server.markDirty(ns, name)
				}
				break
			}
			if err := limit.Wait(ctx); err != nil {
				return nil
			}
			w := cached.DeepCopy()
			// A copy: the patch decodes the answer into w, and the report's memory is shared
			// with what Overlay hands the controllers.
			w.Status = *rep.Status.DeepCopy()
			if err := p.Client.Status().Patch(ctx, w, client.MergeFrom(cached)); err != nil {
				if apierrors.IsNotFound(err) {
					continue
				}
				log.Debug("cannot store a Work's status yet; trying again", "work", rep.Work, "err", err)
				p.Server.markDirty(ns, name)
				again = true
			}
		}
		// What was put back waits a pass, so that the retries are spread out as maxRetries
		// says, not spent at once.
		if again {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(persistDelay):
			}
		}
	}
}
