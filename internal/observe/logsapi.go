package observe

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"golang.org/x/time/rate"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// The fleet log store's limits at the hub, per cluster: what a member's collectors may send
// together, in bytes as sent (zstd-compressed lines: 5 to 10 times as many bytes of lines). A
// cluster past its rate gets 429 with Retry-After: its collectors keep the lines and send them
// again, and every other cluster's lines go in as before.
const (
	DefaultLogRate  = 1 << 20  // a second
	DefaultLogBurst = 16 << 20 // at once, more than a collector's largest block
	// maxLogBody bounds one request's body.
	maxLogBody = 32 << 20
)

// LogLimiter is the per-cluster rate limit of the log store's insert endpoint.
type LogLimiter struct {
	Rate, Burst int // bytes a second, and at once (DefaultLogRate, DefaultLogBurst when zero)

	mu       sync.Mutex
	clusters map[string]*rate.Limiter
}

// take reserves n bytes of cluster's rate now, or says when it may try again (a nil
// reservation and a wait). Without a limiter everything may go (nil, 0).
func (l *LogLimiter) take(cluster string, n int) (*rate.Reservation, time.Duration) {
	if l == nil {
		return nil, 0
	}
	r, burst := l.Rate, l.Burst
	if r <= 0 {
		r = DefaultLogRate
	}
	if burst <= 0 {
		burst = DefaultLogBurst
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clusters == nil {
		l.clusters = map[string]*rate.Limiter{}
	}
	lim := l.clusters[cluster]
	if lim == nil {
		lim = rate.NewLimiter(rate.Limit(r), burst)
		l.clusters[cluster] = lim
	}
	if n > burst {
		n = burst // one body larger than the burst (at most maxLogBody) waits for a full bucket
	}
	res := lim.ReserveN(now, n)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return nil, d
	}
	return res, 0
}

// statusRecorder remembers the status of the answer it passes on.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// logRoutes adds the log store's routes (v1alpha1.LogsPrefix) to mux.
func (q *QueryAPI) logRoutes(mux *http.ServeMux) {
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			store := q.LogStore()
			if store == nil {
				store = &url.URL{Scheme: "http", Host: "127.0.0.1:0"}
			}
			path := r.In.URL.Path
			if path == v1alpha1.LogsTailPath {
				path = v1alpha1.LogsPrefix + "/select/logsql/tail"
			}
			r.SetURL(store)
			r.Out.URL.Path = strings.TrimPrefix(path, v1alpha1.LogsPrefix)
			r.Out.URL.RawPath = ""
			query := r.Out.URL.Query()
			query.Del("watch") // the API server's, to make the tail a long-running request
			r.Out.URL.RawQuery = query.Encode()
			// Answers come uncompressed, so that a refusal can be read and passed on as a Status.
			r.Out.Header.Del("Accept-Encoding")
			for k := range r.Out.Header {
				if strings.HasPrefix(k, "X-Remote-") || k == "Impersonate-User" || k == "Authorization" ||
					strings.HasPrefix(k, "Accountid") || strings.HasPrefix(k, "Projectid") || strings.HasPrefix(k, "Vl-") {
					r.Out.Header.Del(k)
				}
			}
			if q.LogStoreAuth.User != "" {
				r.Out.SetBasicAuth(q.LogStoreAuth.User, q.LogStoreAuth.Password)
			}
		},
		// The store answers a refusal (a query it cannot parse) in plain text: a Status with its
		// message, which kubectl and client-go show, instead.
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode < 400 || strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				return nil
			}
			raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			resp.Header.Del("Content-Encoding")
			reason := metav1.StatusReasonBadRequest
			if resp.StatusCode != http.StatusBadRequest {
				reason = metav1.StatusReasonInternalError
			}
			st := statusBody(resp.StatusCode, reason, "the log store: "+StoreMessage(string(raw)))
			resp.Body = io.NopCloser(bytes.NewReader(st))
			resp.ContentLength = int64(len(st))
			resp.Header.Set("Content-Length", strconv.Itoa(len(st)))
			resp.Header.Set("Content-Type", "application/json")
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			q.Log.Warn("log store unreachable", "path", r.URL.Path, "err", err)
			writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
				"the hub's log store does not answer; the hub's /status shows whether it runs")
		},
	}
	group := metav1.APIGroup{
		TypeMeta:         metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"},
		Name:             v1alpha1.LogsGroup,
		Versions:         []metav1.GroupVersionForDiscovery{{GroupVersion: v1alpha1.LogsGroup + "/" + v1alpha1.LogsVersion, Version: v1alpha1.LogsVersion}},
		PreferredVersion: metav1.GroupVersionForDiscovery{GroupVersion: v1alpha1.LogsGroup + "/" + v1alpha1.LogsVersion, Version: v1alpha1.LogsVersion},
	}
	q.groups = append(q.groups, group)
	mux.HandleFunc("GET /apis/"+v1alpha1.LogsGroup, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, group) })
	mux.HandleFunc("GET "+v1alpha1.LogsPrefix, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
			GroupVersion: v1alpha1.LogsGroup + "/" + v1alpha1.LogsVersion, APIResources: []metav1.APIResource{}})
	})
	mux.HandleFunc("POST "+v1alpha1.LogsInsertPath, func(w http.ResponseWriter, r *http.Request) {
		if !q.fromAPIServer(r) {
			writeStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized,
				"send logs through the hub's API server, at "+v1alpha1.LogsInsertPath)
			return
		}
		cluster, labels, ok := q.agentCluster(w, r, "logs")
		if !ok {
			return
		}
		if r.ContentLength > maxLogBody {
			writeStatus(w, http.StatusRequestEntityTooLarge, metav1.StatusReasonRequestEntityTooLarge,
				fmt.Sprintf("a request carries at most %d bytes of lines", maxLogBody))
			return
		}
		// What a cluster may send is charged before the body is read, by its declared length
		// (collectors declare it), and given back if the store does not take the lines.
		charge := int(r.ContentLength)
		if charge < 0 {
			charge = 0
		}
		res, wait := q.LogLimit.take(cluster, charge)
		if res == nil && wait > 0 {
			secs := int(wait/time.Second) + 1
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			writeStatus(w, http.StatusTooManyRequests, metav1.StatusReasonTooManyRequests,
				fmt.Sprintf("cluster %s sends more logs than the hub takes from one cluster (%d bytes a second as sent); send again in %d s",
					cluster, q.LogLimit.rate(), secs))
			return
		}
		refund := func() {
			if res != nil {
				res.Cancel()
			}
		}
		raw, err := io.ReadAll(io.LimitReader(r.Body, maxLogBody+1))
		if err != nil {
			refund()
			writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "read the lines: "+err.Error())
			return
		}
		if len(raw) > maxLogBody {
			refund()
			writeStatus(w, http.StatusRequestEntityTooLarge, metav1.StatusReasonRequestEntityTooLarge,
				fmt.Sprintf("a request carries at most %d bytes of lines", maxLogBody))
			return
		}
		body, err := CleanLogLines(raw, r.Header.Get("Content-Encoding"))
		if err != nil {
			refund()
			writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, err.Error())
			return
		}
		out := r.Clone(r.Context())
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.ContentLength = int64(len(body))
		out.Header.Del("Content-Encoding")
		out.Header.Del("Content-Length")
		// Not a form: the store would read the lines as one, and take nothing.
		out.Header.Set("Content-Type", "application/stream+json")
		// The hub, not the line, says where it came from; the stream is the container's.
		query := url.Values{}
		keys := make([]string, 0, len(labels))
		for k := range labels {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		// One argument, its fields comma-separated: the store reads the first only. Cluster
		// and region names hold no commas.
		fields := make([]string, len(keys))
		for i, k := range keys {
			fields[i] = k + "=" + labels[k]
		}
		query.Set("extra_fields", strings.Join(fields, ","))
		query.Set("_stream_fields", strings.Join(LogStreamFields, ","))
		query.Set("_msg_field", "_msg")
		query.Set("_time_field", "_time")
		out.URL.RawQuery = query.Encode()
		rec := &statusRecorder{ResponseWriter: w}
		proxy.ServeHTTP(rec, out)
		if rec.code/100 != 2 {
			refund()
		}
	})
	read := func(w http.ResponseWriter, r *http.Request) {
		if !q.fromAPIServer(r) {
			writeStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized,
				"read the fleet's logs through the hub's API server, at "+v1alpha1.LogsPrefix)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			writeStatus(w, http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed, "GET or POST")
			return
		}
		if r.URL.Path != v1alpha1.LogsTailPath {
			endpoint := strings.TrimPrefix(r.URL.Path, v1alpha1.LogsPrefix+"/select/logsql/")
			if !slices.Contains(v1alpha1.LogsQueryEndpoints, endpoint) {
				writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound,
					"the hub serves the log store's LogsQL read endpoints only: "+strings.Join(v1alpha1.LogsQueryEndpoints, ", "))
				return
			}
		}
		q.Log.Debug("logs query", "user", r.Header.Get("X-Remote-User"), "path", r.URL.Path)
		proxy.ServeHTTP(w, r)
	}
	mux.HandleFunc(v1alpha1.LogsPrefix+"/select/logsql/", read)
	mux.HandleFunc(v1alpha1.LogsTailPath, read)
}

func (l *LogLimiter) rate() int {
	if l == nil || l.Rate <= 0 {
		return DefaultLogRate
	}
	return l.Rate
}

// StoreMessage is a VictoriaLogs error without what it repeats of the request (remoteAddr: ...;
// requestURI: ...;).
func StoreMessage(msg string) string {
	msg = strings.TrimSpace(msg)
	for _, prefix := range []string{"remoteAddr:", "requestURI:"} {
		if strings.HasPrefix(msg, prefix) {
			if _, rest, ok := strings.Cut(msg, "; "); ok {
				msg = rest
			}
		}
	}
	return msg
}
