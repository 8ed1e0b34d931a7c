package observe

import (
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// QueryAPI is the aggregated API (v1alpha1.MetricsGroup) that the hub's API server forwards
// query requests to, after it has authenticated and authorized them: it serves the API's
// discovery documents, passes the Prometheus query API's read endpoints to the store, and
// takes the members' collectors' remote writes (from agents only, labelled with their
// cluster). A
// request for those must come from the API server itself, which proves it with its
// front-proxy client certificate (--proxy-client-cert-file), signed by FrontProxyCA and named
// one of FrontProxyNames; anything else is refused, so that nobody reaches the store past the
// hub's RBAC.
type QueryAPI struct {
	// Store gives the store's base URL (http://127.0.0.1:PORT), nil while it has none (the
	// API answers 503), and StoreAuth is what the store asks of every request (no user: none).
	Store     func() *url.URL
	StoreAuth BasicAuth
	// FrontProxyCA verifies the API server's client certificate.
	FrontProxyCA *x509.CertPool
	// FrontProxyNames are the common names the API server's client certificate may have.
	FrontProxyNames []string
	// ClusterLabels gives the labels that every sample a cluster's agent sends gets (cluster,
	// region), overriding what the agent put there; false for a cluster the hub does not know.
	ClusterLabels func(cluster string) (map[string]string, bool)
	// LogStore, when set, gives the log store's base URL as Store does, and the API serves
	// the log store's group too (v1alpha1.LogsGroup, logsapi.go); LogStoreAuth is what the
	// log store asks, and LogLimit limits each cluster's lines.
	LogStore     func() *url.URL
	LogStoreAuth BasicAuth
	LogLimit     *LogLimiter
	Log          *slog.Logger

	groups []metav1.APIGroup // the groups served, for discovery
}

// Handler serves the API.
func (q *QueryAPI) Handler() http.Handler {
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			store := q.Store()
			if store == nil {
				// Nowhere to go: the transport fails, and the error handler answers 503.
				store = &url.URL{Scheme: "http", Host: "127.0.0.1:0"}
			}
			r.SetURL(store)
			r.Out.URL.Path = strings.TrimPrefix(r.In.URL.Path, v1alpha1.MetricsQueryPrefix)
			r.Out.URL.RawPath = ""
			// The store needs none of what the API server says about the user.
			for k := range r.Out.Header {
				if strings.HasPrefix(k, "X-Remote-") || k == "Impersonate-User" || k == "Authorization" {
					r.Out.Header.Del(k)
				}
			}
			if q.StoreAuth.User != "" {
				r.Out.SetBasicAuth(q.StoreAuth.User, q.StoreAuth.Password)
			}
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			q.Log.Warn("metrics store unreachable", "path", r.URL.Path, "err", err)
			writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
				"the hub's metrics store does not answer; the hub's /status shows whether it runs")
		},
	}
	mux := http.NewServeMux()
	group := metav1.APIGroup{
		TypeMeta:         metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"},
		Name:             v1alpha1.MetricsGroup,
		Versions:         []metav1.GroupVersionForDiscovery{{GroupVersion: v1alpha1.MetricsGroup + "/" + v1alpha1.MetricsVersion, Version: v1alpha1.MetricsVersion}},
		PreferredVersion: metav1.GroupVersionForDiscovery{GroupVersion: v1alpha1.MetricsGroup + "/" + v1alpha1.MetricsVersion, Version: v1alpha1.MetricsVersion},
	}
	q.groups = []metav1.APIGroup{group}
	if q.LogStore != nil {
		q.logRoutes(mux)
	}
	groups := q.groups
	// Discovery is public: the API server reads it to find what the groups serve, and to
	// judge the APIServices available.
	mux.HandleFunc("GET /apis", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: groups})
	})
	mux.HandleFunc("GET /apis/"+v1alpha1.MetricsGroup, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, group) })
	mux.HandleFunc("GET "+v1alpha1.MetricsQueryPrefix, func(w http.ResponseWriter, r *http.Request) {
		// The query API is no resource the API server's clients list or watch.
		writeJSON(w, metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
			GroupVersion: v1alpha1.MetricsGroup + "/" + v1alpha1.MetricsVersion, APIResources: []metav1.APIResource{}})
	})
	// Remote write, from a cluster's agent (its collector) only: the samples are labelled with
	// the agent's cluster whatever they say, so that no cluster writes another's series.
	mux.HandleFunc("POST "+v1alpha1.MetricsQueryPrefix+"/api/v1/write", func(w http.ResponseWriter, r *http.Request) {
		if !q.fromAPIServer(r) {
			writeStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized,
				"send metrics through the hub's API server, at "+v1alpha1.MetricsQueryPrefix+"/api/v1/write")
			return
		}
		_, labels, ok := q.agentCluster(w, r, "metrics")
		if !ok {
			return
		}
		out := r.Clone(r.Context())
		query := out.URL.Query()
		query.Del("extra_label")
		keys := make([]string, 0, len(labels))
		for k := range labels {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			query.Add("extra_label", k+"="+labels[k])
		}
		out.URL.RawQuery = query.Encode()
		proxy.ServeHTTP(w, out)
	})
	mux.HandleFunc(v1alpha1.MetricsQueryPrefix+"/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		if !q.fromAPIServer(r) {
			writeStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized,
				"query the fleet's metrics through the hub's API server, at "+v1alpha1.MetricsQueryPrefix)
			return
		}
		endpoint, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, v1alpha1.MetricsQueryPrefix+"/api/v1/"), "/")
		if !slices.Contains(v1alpha1.MetricsQueryEndpoints, endpoint) || strings.Contains(r.URL.Path, "..") ||
			(r.Method != http.MethodGet && r.Method != http.MethodPost) {
			writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound,
				"the hub serves the Prometheus query API's read endpoints only: "+strings.Join(v1alpha1.MetricsQueryEndpoints, ", "))
			return
		}
		q.Log.Debug("metrics query", "user", r.Header.Get("X-Remote-User"), "endpoint", endpoint)
		proxy.ServeHTTP(w, r)
	})
	return mux
}

// agentCluster is the cluster of the agent that sent r and the labels the hub gives what it
// sends; when r is not an agent's, or its cluster is not known (yet), it answers r and
// returns false. what is "metrics" or "logs".
func (q *QueryAPI) agentCluster(w http.ResponseWriter, r *http.Request, what string) (string, map[string]string, bool) {
	rest, isAgent := strings.CutPrefix(r.Header.Get("X-Remote-User"), v1alpha1.AgentUserPrefix)
	cluster, _, _ := strings.Cut(rest, ":")
	if !isAgent || cluster == "" {
		writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden, "only a cluster's agent sends "+what+" to the fleet's stores")
		return "", nil, false
	}
	var labels map[string]string
	ok := q.ClusterLabels != nil
	if ok {
		labels, ok = q.ClusterLabels(cluster)
	}
	if !ok {
		// The hub is starting (its cache is not running yet): the collector keeps what it
		// has and sends it again.
		writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
			"the hub does not know cluster "+cluster+" yet; send again")
		return "", nil, false
	}
	return cluster, labels, true
}

// fromAPIServer reports whether the request carries the API server's front-proxy client
// certificate.
func (q *QueryAPI) fromAPIServer(r *http.Request) bool {
	return kubeproc.FromFrontProxy(r, q.FrontProxyCA, q.FrontProxyNames)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(statusBody(code, reason, msg))
}

func statusBody(code int, reason metav1.StatusReason, msg string) []byte {
	raw, _ := json.Marshal(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status: metav1.StatusFailure, Code: int32(code), Reason: reason, Message: msg})
	return append(raw, '\n')
}
