// Package kubestate is the member's workload-state exporter: the state of its Deployments,
// StatefulSets, Pods, Jobs and Nodes as Prometheus metrics, under kube-state-metrics' names and
// labels (kube_deployment_status_replicas_available, kube_pod_status_phase, ...), so that the
// queries and dashboards written for kube-state-metrics work on the fleet store. Only the
// families listed in Families are exported: the ones a fleet view, an alert or a rollout gate
// uses, not the whole of kube-state-metrics.
//
// Snapshot turns objects into metrics and does no IO; Exporter reads a member's objects from
// informers at each scrape. The agent runs an Exporter next to its metrics collector, which
// scrapes it on loopback (internal/agent). It imports nothing of Convoy's.
package kubestate

import (
	"context"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// family is one exported metric family: its name, help, type and label names.
type family struct {
	name, help string
	kind       prometheus.ValueType
	labels     []string
	desc       *prometheus.Desc
}

func gauge(name, help string, labels ...string) *family {
	return &family{name: name, help: help, kind: prometheus.GaugeValue, labels: labels,
		desc: prometheus.NewDesc(name, help, labels, nil)}
}

func counter(name, help string, labels ...string) *family {
	f := gauge(name, help, labels...)
	f.kind = prometheus.CounterValue
	return f
}

// The families, by object kind. Label names are kube-state-metrics'.
var (
	deploymentFamilies = struct {
		specReplicas, replicas, available, unavailable, updated, ready, observedGen, generation, condition *family
	}{
		specReplicas: gauge("kube_deployment_spec_replicas", "Number of desired pods for a deployment.", "namespace", "deployment"),
		replicas:     gauge("kube_deployment_status_replicas", "The number of replicas per deployment.", "namespace", "deployment"),
		available:    gauge("kube_deployment_status_replicas_available", "The number of available replicas per deployment.", "namespace", "deployment"),
		unavailable:  gauge("kube_deployment_status_replicas_unavailable", "The number of unavailable replicas per deployment.", "namespace", "deployment"),
		updated:      gauge("kube_deployment_status_replicas_updated", "The number of updated replicas per deployment.", "namespace", "deployment"),
		ready:        gauge("kube_deployment_status_replicas_ready", "The number of ready replicas per deployment.", "namespace", "deployment"),
		observedGen:  gauge("kube_deployment_status_observed_generation", "The generation observed by the deployment controller.", "namespace", "deployment"),
		generation:   gauge("kube_deployment_metadata_generation", "Sequence number representing a specific generation of the desired state.", "namespace", "deployment"),
		condition:    gauge("kube_deployment_status_condition", "The current status conditions of a deployment.", "namespace", "deployment", "condition", "status"),
	}
	statefulSetFamilies = struct {
		specReplicas, replicas, ready, current, updated, available, observedGen, generation *family
	}{
		specReplicas: gauge("kube_statefulset_replicas", "Number of desired pods for a StatefulSet.", "namespace", "statefulset"),
		replicas:     gauge("kube_statefulset_status_replicas", "The number of replicas per StatefulSet.", "namespace", "statefulset"),
		ready:        gauge("kube_statefulset_status_replicas_ready", "The number of ready replicas per StatefulSet.", "namespace", "statefulset"),
		current:      gauge("kube_statefulset_status_replicas_current", "The number of current replicas per StatefulSet.", "namespace", "statefulset"),
		updated:      gauge("kube_statefulset_status_replicas_updated", "The number of updated replicas per StatefulSet.", "namespace", "statefulset"),
		available:    gauge("kube_statefulset_status_replicas_available", "The number of available replicas per StatefulSet.", "namespace", "statefulset"),
		observedGen:  gauge("kube_statefulset_status_observed_generation", "The generation observed by the StatefulSet controller.", "namespace", "statefulset"),
		generation:   gauge("kube_statefulset_metadata_generation", "Sequence number representing a specific generation of the desired state for the StatefulSet.", "namespace", "statefulset"),
	}
	podFamilies = struct {
		info, phase, ready, owner, restarts, cReady, running, waiting, waitingReason, terminated, terminatedReason, requests, limits *family
	}{
		info:             gauge("kube_pod_info", "Information about pod.", "namespace", "pod", "uid", "host_ip", "pod_ip", "node", "created_by_kind", "created_by_name", "priority_class", "host_network"),
		phase:            gauge("kube_pod_status_phase", "The pods current phase.", "namespace", "pod", "uid", "phase"),
		ready:            gauge("kube_pod_status_ready", "Describes whether the pod is ready to serve requests.", "namespace", "pod", "uid", "condition"),
		owner:            gauge("kube_pod_owner", "Information about the Pod's owner.", "namespace", "pod", "uid", "owner_kind", "owner_name", "owner_is_controller"),
		restarts:         counter("kube_pod_container_status_restarts_total", "The number of container restarts per container.", "namespace", "pod", "uid", "container"),
		cReady:           gauge("kube_pod_container_status_ready", "Describes whether the containers readiness check succeeded.", "namespace", "pod", "uid", "container"),
		running:          gauge("kube_pod_container_status_running", "Describes whether the container is currently in running state.", "namespace", "pod", "uid", "container"),
		waiting:          gauge("kube_pod_container_status_waiting", "Describes whether the container is currently in waiting state.", "namespace", "pod", "uid", "container"),
		waitingReason:    gauge("kube_pod_container_status_waiting_reason", "Describes the reason the container is currently in waiting state.", "namespace", "pod", "uid", "container", "reason"),
		terminated:       gauge("kube_pod_container_status_terminated", "Describes whether the container is currently in terminated state.", "namespace", "pod", "uid", "container"),
		terminatedReason: gauge("kube_pod_container_status_terminated_reason", "Describes the reason the container is currently in terminated state.", "namespace", "pod", "uid", "container", "reason"),
		requests:         gauge("kube_pod_container_resource_requests", "The number of requested resource by a container.", "namespace", "pod", "uid", "container", "node", "resource", "unit"),
		limits:           gauge("kube_pod_container_resource_limits", "The number of requested limit resource by a container.", "namespace", "pod", "uid", "container", "node", "resource", "unit"),
	}
	jobFamilies = struct {
		active, succeeded, failed, completions, parallelism, complete, failedCond, start, completion *family
	}{
		active:      gauge("kube_job_status_active", "The number of actively running pods.", "namespace", "job_name"),
		succeeded:   gauge("kube_job_status_succeeded", "The number of pods which reached Phase Succeeded.", "namespace", "job_name"),
		failed:      gauge("kube_job_status_failed", "The number of pods which reached Phase Failed.", "namespace", "job_name"),
		completions: gauge("kube_job_spec_completions", "The desired number of successfully finished pods the job should be run with.", "namespace", "job_name"),
		parallelism: gauge("kube_job_spec_parallelism", "The maximum desired number of pods the job should run at any given time.", "namespace", "job_name"),
		complete:    gauge("kube_job_complete", "The job has completed its execution.", "namespace", "job_name", "condition"),
		failedCond:  gauge("kube_job_failed", "The job has failed its execution.", "namespace", "job_name", "condition"),
		start:       gauge("kube_job_status_start_time", "StartTime represents time when the job was acknowledged by the Job Manager.", "namespace", "job_name"),
		completion:  gauge("kube_job_status_completion_time", "CompletionTime represents time when the job was completed.", "namespace", "job_name"),
	}
	nodeFamilies = struct {
		info, condition, unschedulable, capacity, allocatable *family
	}{
		info:          gauge("kube_node_info", "Information about a cluster node.", "node", "kernel_version", "os_image", "container_runtime_version", "kubelet_version", "provider_id", "internal_ip"),
		condition:     gauge("kube_node_status_condition", "The condition of a cluster node.", "node", "condition", "status"),
		unschedulable: gauge("kube_node_spec_unschedulable", "Whether a node can schedule new pods.", "node"),
		capacity:      gauge("kube_node_status_capacity", "The capacity for different resources of a node.", "node", "resource", "unit"),
		allocatable:   gauge("kube_node_status_allocatable", "The allocatable for different resources of a node that are available for scheduling.", "node", "resource", "unit"),
	}
)

// Families are the names of every exported family, in the order Snapshot emits them.
func Families() []string {
	var names []string
	for _, fs := range allFamilies() {
		names = append(names, fs.name)
	}
	return names
}

func allFamilies() []*family {
	d, s, p, j, n := deploymentFamilies, statefulSetFamilies, podFamilies, jobFamilies, nodeFamilies
	return []*family{
		d.specReplicas, d.replicas, d.available, d.unavailable, d.updated, d.ready, d.observedGen, d.generation, d.condition,
		s.specReplicas, s.replicas, s.ready, s.current, s.updated, s.available, s.observedGen, s.generation,
		p.info, p.phase, p.ready, p.owner, p.restarts, p.cReady, p.running, p.waiting, p.waitingReason, p.terminated, p.terminatedReason, p.requests, p.limits,
		j.active, j.succeeded, j.failed, j.completions, j.parallelism, j.complete, j.failedCond, j.start, j.completion,
		n.info, n.condition, n.unschedulable, n.capacity, n.allocatable,
	}
}

// Snapshot is the objects of one scrape.
type Snapshot struct {
	Deployments  []*appsv1.Deployment
	StatefulSets []*appsv1.StatefulSet
	Pods         []*corev1.Pod
	Jobs         []*batchv1.Job
	Nodes        []*corev1.Node
}

// Describe sends every family's description.
func (Snapshot) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range allFamilies() {
		ch <- f.desc
	}
}

// Collect sends the snapshot's metrics.
func (s Snapshot) Collect(ch chan<- prometheus.Metric) {
	emit := func(f *family, v float64, labelValues ...string) {
		ch <- prometheus.MustNewConstMetric(f.desc, f.kind, v, labelValues...)
	}
	for _, d := range s.Deployments {
		f, l := deploymentFamilies, []string{d.Namespace, d.Name}
		emit(f.specReplicas, float64(ptrOr(d.Spec.Replicas, 1)), l...)
		emit(f.replicas, float64(d.Status.Replicas), l...)
		emit(f.available, float64(d.Status.AvailableReplicas), l...)
		emit(f.unavailable, float64(d.Status.UnavailableReplicas), l...)
		emit(f.updated, float64(d.Status.UpdatedReplicas), l...)
		emit(f.ready, float64(d.Status.ReadyReplicas), l...)
		emit(f.observedGen, float64(d.Status.ObservedGeneration), l...)
		emit(f.generation, float64(d.Generation), l...)
		for _, c := range d.Status.Conditions {
			conditionSeries(func(status string, v float64) { emit(f.condition, v, d.Namespace, d.Name, string(c.Type), status) }, c.Status)
		}
	}
	for _, st := range s.StatefulSets {
		f, l := statefulSetFamilies, []string{st.Namespace, st.Name}
		emit(f.specReplicas, float64(ptrOr(st.Spec.Replicas, 1)), l...)
		emit(f.replicas, float64(st.Status.Replicas), l...)
		emit(f.ready, float64(st.Status.ReadyReplicas), l...)
		emit(f.current, float64(st.Status.CurrentReplicas), l...)
		emit(f.updated, float64(st.Status.UpdatedReplicas), l...)
		emit(f.available, float64(st.Status.AvailableReplicas), l...)
		emit(f.observedGen, float64(st.Status.ObservedGeneration), l...)
		emit(f.generation, float64(st.Generation), l...)
	}
	for _, p := range s.Pods {
		collectPod(p, emit)
	}
	for _, j := range s.Jobs {
		f, l := jobFamilies, []string{j.Namespace, j.Name}
		emit(f.active, float64(j.Status.Active), l...)
		emit(f.succeeded, float64(j.Status.Succeeded), l...)
		emit(f.failed, float64(j.Status.Failed), l...)
		if j.Spec.Completions != nil {
			emit(f.completions, float64(*j.Spec.Completions), l...)
		}
		if j.Spec.Parallelism != nil {
			emit(f.parallelism, float64(*j.Spec.Parallelism), l...)
		}
		for _, c := range j.Status.Conditions {
			into := map[batchv1.JobConditionType]*family{batchv1.JobComplete: f.complete, batchv1.JobFailed: f.failedCond}[c.Type]
			if into != nil {
				conditionSeries(func(status string, v float64) { emit(into, v, j.Namespace, j.Name, status) }, c.Status)
			}
		}
		if j.Status.StartTime != nil {
			emit(f.start, float64(j.Status.StartTime.Unix()), l...)
		}
		if j.Status.CompletionTime != nil {
			emit(f.completion, float64(j.Status.CompletionTime.Unix()), l...)
		}
	}
	for _, n := range s.Nodes {
		f := nodeFamilies
		internal := ""
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				internal = a.Address
				break
			}
		}
		i := n.Status.NodeInfo
		emit(f.info, 1, n.Name, i.KernelVersion, i.OSImage, i.ContainerRuntimeVersion, i.KubeletVersion, n.Spec.ProviderID, internal)
		for _, c := range n.Status.Conditions {
			conditionSeries(func(status string, v float64) { emit(f.condition, v, n.Name, string(c.Type), status) }, c.Status)
		}
		emit(f.unschedulable, boolValue(n.Spec.Unschedulable), n.Name)
		for _, r := range sortedResources(n.Status.Capacity) {
			emit(f.capacity, r.value, n.Name, r.name, r.unit)
		}
		for _, r := range sortedResources(n.Status.Allocatable) {
			emit(f.allocatable, r.value, n.Name, r.name, r.unit)
		}
	}
}

func collectPod(p *corev1.Pod, emit func(*family, float64, ...string)) {
	f := podFamilies
	uid := string(p.UID)
	l := []string{p.Namespace, p.Name, uid}
	createdByKind, createdByName := "<none>", "<none>"
	for _, o := range p.OwnerReferences {
		if o.Controller != nil && *o.Controller {
			createdByKind, createdByName = o.Kind, o.Name
		}
	}
	emit(f.info, 1, p.Namespace, p.Name, uid, p.Status.HostIP, p.Status.PodIP, p.Spec.NodeName, createdByKind, createdByName,
		p.Spec.PriorityClassName, strconv.FormatBool(p.Spec.HostNetwork))
	if p.Status.Phase != "" {
		for _, phase := range []corev1.PodPhase{corev1.PodPending, corev1.PodSucceeded, corev1.PodFailed, corev1.PodUnknown, corev1.PodRunning} {
			emit(f.phase, boolValue(p.Status.Phase == phase), append(slices.Clone(l), string(phase))...)
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			conditionSeries(func(status string, v float64) { emit(f.ready, v, append(slices.Clone(l), status)...) }, c.Status)
		}
	}
	if len(p.OwnerReferences) == 0 {
		emit(f.owner, 1, append(slices.Clone(l), "<none>", "<none>", "<none>")...)
	}
	for _, o := range p.OwnerReferences {
		controller := "false"
		if o.Controller != nil && *o.Controller {
			controller = "true"
		}
		emit(f.owner, 1, append(slices.Clone(l), o.Kind, o.Name, controller)...)
	}
	for _, cs := range p.Status.ContainerStatuses {
		cl := append(slices.Clone(l), cs.Name)
		emit(f.restarts, float64(cs.RestartCount), cl...)
		emit(f.cReady, boolValue(cs.Ready), cl...)
		emit(f.running, boolValue(cs.State.Running != nil), cl...)
		emit(f.waiting, boolValue(cs.State.Waiting != nil), cl...)
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			emit(f.waitingReason, 1, append(slices.Clone(cl), w.Reason)...)
		}
		emit(f.terminated, boolValue(cs.State.Terminated != nil), cl...)
		if t := cs.State.Terminated; t != nil && t.Reason != "" {
			emit(f.terminatedReason, 1, append(slices.Clone(cl), t.Reason)...)
		}
	}
	for _, c := range p.Spec.Containers {
		for _, r := range sortedResources(c.Resources.Requests) {
			emit(f.requests, r.value, p.Namespace, p.Name, uid, c.Name, p.Spec.NodeName, r.name, r.unit)
		}
		for _, r := range sortedResources(c.Resources.Limits) {
			emit(f.limits, r.value, p.Namespace, p.Name, uid, c.Name, p.Spec.NodeName, r.name, r.unit)
		}
	}
}

// conditionSeries gives a condition's three series, as kube-state-metrics does: one per status
// ("true", "false", "unknown"), 1 for the condition's and 0 for the others.
func conditionSeries(emit func(status string, v float64), s corev1.ConditionStatus) {
	for _, status := range []corev1.ConditionStatus{corev1.ConditionTrue, corev1.ConditionFalse, corev1.ConditionUnknown} {
		emit(strings.ToLower(string(status)), boolValue(s == status))
	}
}

type resourceValue struct {
	name, unit string
	value      float64
}

var nonLabel = regexp.MustCompile(`[^a-zA-Z0-9_]`)

// sortedResources are a resource list's values with kube-state-metrics' names and units: cpu
// in cores, memory and storage in bytes, other resources as integers.
func sortedResources(l corev1.ResourceList) []resourceValue {
	var out []resourceValue
	for name, q := range l {
		r := resourceValue{name: nonLabel.ReplaceAllString(string(name), "_")}
		switch {
		case name == corev1.ResourceCPU:
			r.unit, r.value = "core", float64(q.MilliValue())/1000
		case name == corev1.ResourceMemory || name == corev1.ResourceStorage || name == corev1.ResourceEphemeralStorage ||
			strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix):
			r.unit, r.value = "byte", float64(q.Value())
		default:
			r.unit, r.value = "integer", float64(q.Value())
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b resourceValue) int { return strings.Compare(a.name, b.name) })
	return out
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func ptrOr(p *int32, d int32) int32 {
	if p == nil {
		return d
	}
	return *p
}

// Exporter serves a member's workload state. Its informers watch the five kinds cluster-wide
// and keep only what the metrics need of each object (no managed fields, annotations or pod
// specs beyond containers' resources).
type Exporter struct {
	factory informers.SharedInformerFactory
	listers struct {
		deployments, statefulSets, pods, jobs, nodes lister
	}
}

// lister is one kind's informer: its objects, and whether it has listed them once.
type lister struct {
	cache.GenericLister
	synced cache.InformerSynced
}

func listerOf(i cache.SharedIndexInformer, r schema.GroupResource) lister {
	return lister{GenericLister: cache.NewGenericLister(i.GetIndexer(), r), synced: i.HasSynced}
}

// NewExporter makes an Exporter on the member's clientset; Run starts it.
func NewExporter(cs kubernetes.Interface) *Exporter {
	e := &Exporter{factory: informers.NewSharedInformerFactoryWithOptions(cs, 10*time.Minute, informers.WithTransform(trim))}
	apps, batch, core := e.factory.Apps().V1(), e.factory.Batch().V1(), e.factory.Core().V1()
	e.listers.deployments = listerOf(apps.Deployments().Informer(), appsv1.Resource("deployments"))
	e.listers.statefulSets = listerOf(apps.StatefulSets().Informer(), appsv1.Resource("statefulsets"))
	e.listers.pods = listerOf(core.Pods().Informer(), corev1.Resource("pods"))
	e.listers.jobs = listerOf(batch.Jobs().Informer(), batchv1.Resource("jobs"))
	e.listers.nodes = listerOf(core.Nodes().Informer(), corev1.Resource("nodes"))
	return e
}

// trim drops what no metric reads, so that a cluster of many pods costs the agent little.
func trim(obj any) (any, error) {
	if m, ok := obj.(metav1.ObjectMetaAccessor); ok {
		meta := m.GetObjectMeta()
		meta.SetManagedFields(nil)
		meta.SetAnnotations(nil)
	}
	if p, ok := obj.(*corev1.Pod); ok {
		containers := make([]corev1.Container, len(p.Spec.Containers))
		for i, c := range p.Spec.Containers {
			containers[i] = corev1.Container{Name: c.Name, Resources: c.Resources}
		}
		p.Spec = corev1.PodSpec{NodeName: p.Spec.NodeName, PriorityClassName: p.Spec.PriorityClassName,
			HostNetwork: p.Spec.HostNetwork, Containers: containers}
	}
	return obj, nil
}

// Describe sends every family's description.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) { Snapshot{}.Describe(ch) }

// Collect sends the metrics of the objects the informers hold.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	var s Snapshot
	listAs(e.listers.deployments, &s.Deployments)
	listAs(e.listers.statefulSets, &s.StatefulSets)
	listAs(e.listers.pods, &s.Pods)
	listAs(e.listers.jobs, &s.Jobs)
	listAs(e.listers.nodes, &s.Nodes)
	s.Collect(ch)
}

func listAs[T any](l lister, into *[]T) {
	if !l.synced() {
		return // an empty list would read as "none": no series rather than wrong ones
	}
	objs, _ := l.List(labels.Everything()) // an indexer's List does not fail
	for _, o := range objs {
		if t, ok := o.(T); ok {
			*into = append(*into, t)
		}
	}
}

// Serve starts the informers and serves the metrics at /metrics on l until ctx ends. A kind
// not listed yet (or that the agent may not list: client-go logs why) has no series; the others
// do meanwhile.
func (e *Exporter) Serve(ctx context.Context, l net.Listener) error {
	defer l.Close()
	defer e.factory.Shutdown() // after the informers' context ends, below
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e.factory.Start(ctx.Done())
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(e); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(l); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

var _ prometheus.Collector = (*Exporter)(nil)
var _ prometheus.Collector = Snapshot{}
