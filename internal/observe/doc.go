// Package observe owns the fleet's observability at the hub (issue 16): the metrics store the
// hub runs (VictoriaMetrics single-node, a supervised child; MetricsStore gives its flags and
// scrape configuration) and the log store (VictoriaLogs single-node; LogStore), and the
// aggregated APIs through which the hub's API server serves the stores' query APIs (QueryAPI:
// Prometheus' for metrics, LogsQL's and the live tail for logs, logsapi.go), so that the hub's
// authentication and RBAC decide who may read, and through which agents send what their members
// collect (labelled with their cluster by the hub; lines limited per cluster, LogLimiter); and, on
// the member side, the metrics collector (vmagent) an agent runs and what it scrapes (Collector,
// MemberScrapeConfig), and the log collector an agent applies to its member (LogCollector, a
// DaemonSet of `convoy log-collector`, package logship). LogQuery turns `convoy logs`' flags into LogsQL. It holds no client
// and starts no process: internal/hub and internal/agent wire it, and internal/cli reads query
// results with it. The workload-state exporter the agent serves to its collector is its
// sub-package kubestate.
package observe
