package v1alpha1

// The fleet metrics store's query API (issue 16). The hub serves the Prometheus HTTP API of its
// store (VictoriaMetrics) through its own API server, as an aggregated API: a client that may
// talk to the hub queries at MetricsQueryPrefix + "/api/v1/query", and so on, with the hub's
// own authentication. RBAC decides who may query: the request
// /apis/metrics.convoy.dev/v1alpha1/api/v1/query is, to the API server, the subresource
// "query" of the resource "api" named "v1" in the group MetricsGroup (verb get for GET, create
// for POST). The ClusterRole MetricsReaderRole grants all of the query API.
const (
	// MetricsGroup and MetricsVersion name the aggregated API.
	MetricsGroup   = "metrics.convoy.dev"
	MetricsVersion = "v1alpha1"
	// MetricsQueryPrefix is what a Prometheus client takes as its server's URL path, on the
	// hub's API server (Grafana's data source URL is the hub's URL followed by it).
	MetricsQueryPrefix = "/apis/" + MetricsGroup + "/" + MetricsVersion
	// MetricsReaderRole is the ClusterRole that the hub keeps for querying the store; bind it
	// to a user or group with a ClusterRoleBinding.
	MetricsReaderRole = "convoy:metrics-reader"
)

// MetricsQueryEndpoints are the Prometheus HTTP API's read endpoints the hub serves, under
// MetricsQueryPrefix + "/api/v1/": each is, to RBAC, the subresource of the same name of
// "api" (label/NAME/values is "api/label").
var MetricsQueryEndpoints = []string{"query", "query_range", "series", "labels", "label", "metadata", "status"}
