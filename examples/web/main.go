// Command web is Convoy's demo application: a small web service that says where it runs.
//
//	GET  /                       "web: cluster C, region R, zone Z, node N, pod P"
//	GET  /healthz                200 while healthy
//	GET  /metrics                Prometheus metrics (requests by path and code, latency)
//	GET  /slow?ms=N              answers after N milliseconds (default 1000, at most 60000)
//	GET  /call?url=http://S.NS.svc.cluster.local/   calls a Service of the cluster by its DNS name
//	POST /admin/error-rate?percent=N   makes N% of requests to / fail with 500 (0 heals it)
//	GET  /visits                 counts a visit in the Redis or PostgreSQL bound to it (a ServiceBinding) and
//	                             says how many there were; 503 when nothing is bound
//
// It logs one line per request. Its identity comes from the environment: CLUSTER (a Placement
// override sets it per cluster), REGION and ZONE (the pod's topology labels, through the
// Downward API), NODE and POD. `make up` builds it into registry.convoy.local/examples/web:1;
// examples/web/*.yaml deploy it to the fleet.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	addr := ":" + env("PORT", "8080")
	s := newServer(identity{
		cluster: env("CLUSTER", "unknown"), region: env("REGION", "unknown"), zone: env("ZONE", "unknown"),
		node: env("NODE", "unknown"), pod: env("POD", "unknown"),
	})
	if p, err := strconv.Atoi(os.Getenv("ERROR_RATE")); err == nil {
		s.errorRate.Store(int64(p))
	}
	srv := &http.Server{Addr: addr, Handler: s, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		<-ctx.Done()
		// Fail readiness first, so that endpoints drop the pod, then finish what is in flight.
		s.draining.Store(true)
		time.Sleep(2 * time.Second)
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Printf("web listening on %s as %s", addr, s.id)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	<-drained
}

type identity struct{ cluster, region, zone, node, pod string }

func (i identity) String() string {
	return fmt.Sprintf("cluster %s, region %s, zone %s, node %s, pod %s", i.cluster, i.region, i.zone, i.node, i.pod)
}

type server struct {
	id        identity
	mux       *http.ServeMux
	errorRate atomic.Int64 // percent of requests to / that fail
	draining  atomic.Bool
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
}

func newServer(id identity) *server {
	reg := prometheus.NewRegistry()
	s := &server{id: id, mux: http.NewServeMux(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total", Help: "Requests by path and status code."}, []string{"path", "code"}),
		latency:  prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "http_request_duration_seconds", Help: "Request latency.", Buckets: prometheus.DefBuckets}, []string{"path"}),
	}
	reg.MustRegister(s.requests, s.latency)
	s.mux.HandleFunc("GET /{$}", s.hello)
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /slow", s.slow)
	s.mux.HandleFunc("GET /call", s.call)
	s.mux.HandleFunc("POST /admin/error-rate", s.setErrorRate)
	s.mux.HandleFunc("GET /visits", s.visits)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return s
}

// ServeHTTP serves a request, counts it and logs one line for it.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w, code: http.StatusOK}
	s.mux.ServeHTTP(rec, r)
	took := time.Since(start)
	_, pattern := s.mux.Handler(r)
	if pattern == "" {
		pattern = "other"
	}
	s.requests.WithLabelValues(pattern, strconv.Itoa(rec.code)).Inc()
	s.latency.WithLabelValues(pattern).Observe(took.Seconds())
	log.Printf("%s %s %d %s from %s", r.Method, r.URL.RequestURI(), rec.code, took.Round(time.Microsecond), r.RemoteAddr)
}

func (s *server) hello(w http.ResponseWriter, _ *http.Request) {
	if rate := s.errorRate.Load(); rate > 0 && rand.Int64N(100) < rate {
		http.Error(w, fmt.Sprintf("web: failing on purpose (error rate %d%%): %s", rate, s.id), http.StatusInternalServerError)
		return
	}
	fmt.Fprintf(w, "web: %s\n", s.id)
}

func (s *server) healthz(w http.ResponseWriter, _ *http.Request) {
	if s.draining.Load() {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (s *server) slow(w http.ResponseWriter, r *http.Request) {
	ms := 1000
	if v := r.URL.Query().Get("ms"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 60000 {
			http.Error(w, "ms must be 0 to 60000", http.StatusBadRequest)
			return
		}
		ms = n
	}
	select {
	case <-time.After(time.Duration(ms) * time.Millisecond):
	case <-r.Context().Done():
		return
	}
	fmt.Fprintf(w, "web: slept %d ms: %s\n", ms, s.id)
}

// caller makes a new connection for each call, so that a Service's calls spread over its pods,
// and follows no redirect.
var caller = &http.Client{
	Timeout:       10 * time.Second,
	Transport:     &http.Transport{DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// call calls a Service of the cluster by its DNS name (NAME.NAMESPACE.svc[.DOMAIN]), and nothing
// else: it is no open proxy onto the network the pods see.
func (s *server) call(w http.ResponseWriter, r *http.Request) {
	u, err := url.Parse(r.URL.Query().Get("url"))
	host := ""
	if err == nil {
		host = u.Hostname()
	}
	if err != nil || u.Scheme != "http" || !(strings.HasSuffix(host, ".svc") || strings.Contains(host, ".svc.")) {
		http.Error(w, "url must be http://SERVICE.NAMESPACE.svc.cluster.local[:PORT]/PATH, a Service of this cluster", http.StatusBadRequest)
		return
	}
	resp, err := caller.Get(u.String())
	if err != nil {
		http.Error(w, "web: call failed: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, io.LimitReader(resp.Body, 1<<20))
}

func (s *server) setErrorRate(w http.ResponseWriter, r *http.Request) {
	p, err := strconv.Atoi(r.URL.Query().Get("percent"))
	if err != nil || p < 0 || p > 100 {
		http.Error(w, "percent must be 0 to 100", http.StatusBadRequest)
		return
	}
	s.errorRate.Store(int64(p))
	fmt.Fprintf(w, "web: error rate %d%%\n", p)
}

type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
