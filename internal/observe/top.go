package observe

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// The queries of `convoy top`, and the pure joins of their answers into rows. CPU and memory
// are the pods' (the kubelet's pod_cpu_usage_seconds_total and pod_memory_working_set_bytes):
// on a local cluster's real nodes, the node-level figures are the whole host's.

// TopClustersQueries are the instant queries TopClusters joins, by name.
var TopClustersQueries = map[string]string{
	"nodes":  `count by (cluster, region) (kube_node_info)`,
	"pods":   `sum by (cluster) (kube_pod_status_phase{phase="Running"})`,
	"cpu":    `sum by (cluster) (rate(pod_cpu_usage_seconds_total{job="kubelet"}[2m]))`,
	"memory": `sum by (cluster) (pod_memory_working_set_bytes{job="kubelet"})`,
}

// ClusterTop is one row of `convoy top clusters`. CPU and Memory are -1 where the store has no
// figure (a cluster of simulated nodes has no kubelet to measure).
type ClusterTop struct {
	Cluster, Region string
	Nodes, Pods     int
	CPU, Memory     float64
}

// TopClusters joins the answers of TopClustersQueries (by the same names) into a row per
// cluster, by name.
func TopClusters(answers map[string][]Sample) []ClusterTop {
	rows := map[string]*ClusterTop{}
	row := func(s Sample) *ClusterTop {
		c := s.Labels["cluster"]
		if rows[c] == nil {
			rows[c] = &ClusterTop{Cluster: c, CPU: -1, Memory: -1}
		}
		if r := s.Labels["region"]; r != "" {
			rows[c].Region = r
		}
		return rows[c]
	}
	for _, s := range answers["nodes"] {
		row(s).Nodes = int(s.Value)
	}
	for _, s := range answers["pods"] {
		row(s).Pods = int(s.Value)
	}
	for _, s := range answers["cpu"] {
		row(s).CPU = s.Value
	}
	for _, s := range answers["memory"] {
		row(s).Memory = s.Value
	}
	out := make([]ClusterTop, 0, len(rows))
	for c, r := range rows {
		if c != "" {
			out = append(out, *r)
		}
	}
	slices.SortFunc(out, func(a, b ClusterTop) int { return cmp.Compare(a.Cluster, b.Cluster) })
	return out
}

// TopWorkloadsQueries are the instant queries TopWorkloads joins, for the pods of namespace ns
// (all namespaces when empty) and of cluster (all clusters when empty).
func TopWorkloadsQueries(ns, cluster string) map[string]string {
	var sel []string
	if ns != "" {
		sel = append(sel, fmt.Sprintf("namespace=%q", ns))
	}
	if cluster != "" {
		sel = append(sel, fmt.Sprintf("cluster=%q", cluster))
	}
	m := strings.Join(sel, ", ")
	with := func(extra string) string {
		if m == "" {
			return extra
		}
		if extra == "" {
			return m
		}
		return m + ", " + extra
	}
	return map[string]string{
		"owners":  `kube_pod_owner{` + with("") + `}`,
		"running": `kube_pod_status_phase{` + with(`phase="Running"`) + `} == 1`,
		"cpu":     `sum by (cluster, namespace, pod) (rate(pod_cpu_usage_seconds_total{` + with(`job="kubelet"`) + `}[2m]))`,
		"memory":  `sum by (cluster, namespace, pod) (pod_memory_working_set_bytes{` + with(`job="kubelet"`) + `})`,
	}
}

// WorkloadTop is one row of `convoy top workloads`: a workload's pods in one cluster. CPU and
// Memory are -1 where no pod of it has a figure.
type WorkloadTop struct {
	Cluster, Namespace, Kind, Name string
	Pods, Running                  int
	CPU, Memory                    float64
}

// replicaSetSuffix is the pod-template hash a Deployment appends to its ReplicaSets' names.
var replicaSetSuffix = regexp.MustCompile(`-[a-z0-9]{1,10}$`)

// TopWorkloads joins the answers of TopWorkloadsQueries into a row per cluster and workload:
// a pod's controlling owner is its workload, a ReplicaSet's Deployment by the ReplicaSet's name
// (less its pod-template hash), and a pod without one is its own.
func TopWorkloads(answers map[string][]Sample) []WorkloadTop {
	type podKey struct{ cluster, ns, pod string }
	key := func(s Sample) podKey {
		return podKey{s.Labels["cluster"], s.Labels["namespace"], s.Labels["pod"]}
	}
	type wlKey struct{ cluster, ns, kind, name string }
	owner := map[podKey]wlKey{}
	for _, s := range answers["owners"] {
		k := key(s)
		if _, ok := owner[k]; ok && s.Labels["owner_is_controller"] != "true" {
			continue
		}
		kind, name := s.Labels["owner_kind"], s.Labels["owner_name"]
		switch {
		case kind == "" || kind == "<none>":
			kind, name = "Pod", k.pod
		case kind == "ReplicaSet" && replicaSetSuffix.MatchString(name):
			kind, name = "Deployment", replicaSetSuffix.ReplaceAllString(name, "")
		}
		owner[k] = wlKey{k.cluster, k.ns, kind, name}
	}
	rows := map[wlKey]*WorkloadTop{}
	for _, w := range owner {
		if rows[w] == nil {
			rows[w] = &WorkloadTop{Cluster: w.cluster, Namespace: w.ns, Kind: w.kind, Name: w.name, CPU: -1, Memory: -1}
		}
		rows[w].Pods++
	}
	add := func(name string, f func(*WorkloadTop, float64)) {
		for _, s := range answers[name] {
			if w, ok := owner[key(s)]; ok {
				f(rows[w], s.Value)
			}
		}
	}
	add("running", func(r *WorkloadTop, _ float64) { r.Running++ })
	add("cpu", func(r *WorkloadTop, v float64) { r.CPU = max(r.CPU, 0) + v })
	add("memory", func(r *WorkloadTop, v float64) { r.Memory = max(r.Memory, 0) + v })
	out := make([]WorkloadTop, 0, len(rows))
	for _, r := range rows {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b WorkloadTop) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Cluster, b.Cluster))
	})
	return out
}
