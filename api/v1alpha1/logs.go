package v1alpha1

// The fleet log store's API (issue 16). The hub serves the LogsQL query API of its log store
// (VictoriaLogs) through its own API server, as an aggregated API of the group LogsGroup, with
// the hub's own authentication; RBAC decides who may read.
//   - LogsPrefix + "/select/logsql/ENDPOINT" is the store's query API, for any VictoriaLogs
//     client (Grafana's data source URL is the hub's URL followed by LogsPrefix). To the API
//     server it is the subresource ENDPOINT of the resource "select" named "logsql" (verb get
//     for GET, create for POST).
//   - LogsPrefix + "/tail?watch=true&query=Q" follows the lines that match Q as they come (the
//     store's live tail), as a watch of the resource "tail": a long-running request, which the
//     API server does not cut after its request timeout.
//   - LogsPrefix + "/insert/jsonline" takes the members' collectors' lines, from agents only
//     (create on insert/jsonline): the hub labels each line with the agent's cluster.
//
// The ClusterRole LogsReaderRole grants the query API and the tail.
const (
	LogsGroup   = "logs.convoy.dev"
	LogsVersion = "v1alpha1"
	LogsPrefix  = "/apis/" + LogsGroup + "/" + LogsVersion
	// LogsReaderRole is the ClusterRole that the hub keeps for reading the fleet's logs; bind
	// it to a user or group with a ClusterRoleBinding.
	LogsReaderRole = "convoy:logs-reader"
	// LogsInsertPath is the collectors' endpoint, under LogsPrefix.
	LogsInsertPath = LogsPrefix + "/insert/jsonline"
	// LogsTailPath is the live tail, under LogsPrefix.
	LogsTailPath = LogsPrefix + "/tail"
)

// LogsQueryEndpoints are the store's LogsQL read endpoints the hub serves, under LogsPrefix +
// "/select/logsql/".
var LogsQueryEndpoints = []string{"query", "hits", "facets", "field_names", "field_values", "stream_field_names",
	"stream_field_values", "streams", "stream_ids", "stats_query", "stats_query_range", "tail"}
