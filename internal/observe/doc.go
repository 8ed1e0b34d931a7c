// Package observe owns the fleet's observability at the hub (issue 16): the metrics store the
// hub runs (VictoriaMetrics single-node, a supervised child; MetricsStore gives its flags and
// scrape configuration) and the aggregated API through which the hub's API server serves the
// store's Prometheus query API (QueryAPI), so that the hub's authentication and RBAC decide who
// may query; and, on the member side, the collector (vmagent) an agent runs and what it scrapes
// (Collector, MemberScrapeConfig). It holds no client and starts no process: internal/hub and
// internal/agent wire it, and internal/cli reads query results with it. The workload-state
// exporter the agent serves to its collector is its sub-package kubestate.
package observe
