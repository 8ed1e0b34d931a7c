// Package observe owns the fleet's observability at the hub (issue 16): the metrics store the
// hub runs (VictoriaMetrics single-node, a supervised child; MetricsStore gives its flags and
// scrape configuration) and the aggregated API through which the hub's API server serves the
// store's Prometheus query API (QueryAPI), so that the hub's authentication and RBAC decide who
// may query. It holds no client and starts no process: internal/hub wires it. Only internal/hub
// and internal/cli import it.
package observe
