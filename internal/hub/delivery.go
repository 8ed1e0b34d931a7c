package hub

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/delivery"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// listenDelivery opens the port of the agents' delivery stream on 127.0.0.1, beside the API
// server's: the one asked for, else the last run's (agents' settings name it), else the API
// server's port + 1 when free, else any free one; it remembers it in the data dir. It returns
// nil when the stream is turned off (a negative port).
func (h *Hub) listenDelivery() (net.Listener, error) {
	if h.opts.DeliveryPort < 0 {
		return nil, nil
	}
	st, err := loadState(h.layout)
	if err != nil {
		return nil, err
	}
	port, fallback := h.opts.DeliveryPort, false
	switch {
	case port != 0:
	case st.DeliveryPort != 0:
		port = st.DeliveryPort
	default:
		port, fallback = st.APIServerPort+1, true
	}
	var l net.Listener
	if fallback {
		if l, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err != nil {
			// Taken: a free port outside the kernel's ephemeral range (kubeproc.FreePort),
			// since agents are told it and it must stay free across restarts.
			var free int
			if free, err = kubeproc.FreePort(); err == nil {
				l, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(free))
			}
		}
	} else {
		// A hub that just stopped may take a moment to let go of the port.
		for range 50 {
			if l, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	switch {
	case err != nil && h.opts.DeliveryPort == 0 && !fallback:
		return nil, fmt.Errorf("%w: this data dir's delivery stream used port %d before, and agents were told so; free it, or pass --delivery-port", err, port)
	case err != nil:
		return nil, fmt.Errorf("%w; free the port or pass another --delivery-port", err)
	}
	port = l.Addr().(*net.TCPAddr).Port
	if port != st.DeliveryPort {
		st.DeliveryPort = port
		if err := saveState(h.layout, st); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// startDelivery serves the agents' streams on l, with the API server's serving certificate,
// once the manager's caches have synced, and stores the folded reports (delivery.Persister).
// It also forgets the reports of Works and Clusters that are gone.
func (h *Hub) startDelivery(mgr manager.Manager, cfg *rest.Config, l net.Listener, srv *delivery.Server) error {
	cert, err := tls.LoadX509KeyPair(h.pki.Serving.CertPath, h.pki.Serving.KeyPath)
	if err != nil {
		return fmt.Errorf("load the serving certificate for the delivery stream: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	keys, err := delivery.LoadTokenKeys(h.pki.ServiceAccountPub, kubeproc.ServiceAccountIssuer, kubeproc.ServiceAccountIssuer)
	if err != nil {
		return err
	}
	srv.Auth = &delivery.TokenReviews{Reviews: cs.AuthenticationV1().TokenReviews(), Cache: mgr.GetCache(), Keys: keys}
	// Joins and token renewals are answered here, from the cache and the API server's own
	// signing key: the agents need not reach the API server to join.
	if srv.Enroll, err = delivery.LoadEnrollment(mgr.GetCache(), h.pki.ServiceAccountKey, kubeproc.ServiceAccountIssuer, kubeproc.ServiceAccountIssuer); err != nil {
		return err
	}
	srv.Works = cachedWorks{mgr.GetCache()}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		works, err := mgr.GetCache().GetInformer(ctx, &v1alpha1.Work{})
		if err != nil {
			return err
		}
		// Every change of a Work goes to its cluster's stream, if its agent gets its Works
		// there; a Work that is gone also drops its report.
		clusterWork := func(o any) (string, client.Object, bool) {
			if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			w, ok := o.(client.Object)
			if !ok {
				return "", nil, false
			}
			cluster, ok := strings.CutPrefix(w.GetNamespace(), v1alpha1.ClusterNamespacePrefix)
			return cluster, w, ok
		}
		changed := func(o any) {
			if cluster, w, ok := clusterWork(o); ok {
				srv.WorkChanged(cluster, w.GetName())
			}
		}
		if _, err := works.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc: changed,
			UpdateFunc: func(oldObj, o any) {
				// A resync of the cache changes nothing: nothing to send.
				if a, ok := oldObj.(client.Object); ok {
					if b, ok := o.(client.Object); ok && a.GetResourceVersion() == b.GetResourceVersion() {
						return
					}
				}
				changed(o)
			},
			DeleteFunc: func(o any) {
				if cluster, w, ok := clusterWork(o); ok {
					srv.WorkChanged(cluster, w.GetName())
					srv.Forget(cluster, w.GetName(), string(w.GetUID()))
				}
			},
		}); err != nil {
			return err
		}
		clusters, err := mgr.GetCache().GetInformer(ctx, &v1alpha1.Cluster{})
		if err != nil {
			return err
		}
		if _, err := clusters.AddEventHandler(onDelete(func(c client.Object) { srv.ForgetCluster(c.GetName()) })); err != nil {
			return err
		}
		h.log.Info("serving the agents' delivery stream", "addr", l.Addr().String())
		return srv.Serve(ctx, l, cert)
	})); err != nil {
		return err
	}
	return mgr.Add(&delivery.Persister{Server: srv, Client: mgr.GetClient(), Cache: mgr.GetCache(), Log: h.log.With("component", "delivery")})
}

// cachedWorks reads clusters' Works from the manager's cache for their agents' streams.
type cachedWorks struct{ cache cache.Cache }

func (c cachedWorks) ClusterWorks(ctx context.Context, cluster string) ([]*v1alpha1.Work, error) {
	var list v1alpha1.WorkList
	if err := c.cache.List(ctx, &list, client.InNamespace(v1alpha1.ClusterNamespace(cluster)), client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	out := make([]*v1alpha1.Work, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

// onDelete is an informer handler that calls f with each deleted object, also when the
// informer only learnt of the deletion late (a tombstone).
func onDelete(f func(client.Object)) toolscache.ResourceEventHandlerFuncs {
	return toolscache.ResourceEventHandlerFuncs{DeleteFunc: func(o any) {
		if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
			o = t.Obj
		}
		if obj, ok := o.(client.Object); ok {
			f(obj)
		}
	}}
}

// DeliveryAddr is the address of the agents' delivery stream, or "" when it is off.
func (h *Hub) DeliveryAddr() string {
	if h.streams.Load() == nil {
		return ""
	}
	return h.deliveryAddr
}

// LastHeard is when the hub last heard from a cluster's agent on its delivery stream; ok is
// false when it has not since it started (or the stream is off).
func (h *Hub) LastHeard(cluster string) (last time.Time, ok bool) {
	d := h.streams.Load()
	if d == nil {
		return time.Time{}, false
	}
	last, _, ok = d.LastSeen(cluster)
	return last, ok
}
