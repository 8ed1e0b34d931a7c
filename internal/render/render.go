// Package render turns a template stored on the hub into the manifest one member cluster
// gets: it strips what only the hub's copy has, sets the cluster's replicas and applies the
// Placement's overrides. It also reads templates: what they select, what they depend on and
// what their replicas ask for, and which hub objects belong to the hub rather than to an
// application. It is pure; internal/plan and the propagation controller call it.
//
// Overrides apply in the order the Placement lists them, and within one override in this
// order: replicas, images, env, labels, annotations, JSON patches. A later override wins over
// an earlier one on the same field.
package render

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/scheduler"
)

// Selects reports whether a resource selector matches a template.
func Selects(sel v1alpha1.ResourceSelector, u *unstructured.Unstructured) (bool, error) {
	gvk := u.GroupVersionKind()
	if sel.Kind != "" && (sel.Kind != gvk.Kind || sel.Group != gvk.Group) {
		return false, nil
	}
	if sel.Name != "" && sel.Name != u.GetName() {
		return false, nil
	}
	if sel.LabelSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(sel.LabelSelector)
		if err != nil {
			return false, fmt.Errorf("resource label selector: %w", err)
		}
		if !s.Matches(labels.Set(u.GetLabels())) {
			return false, nil
		}
	}
	return true, nil
}

// hubOnlyAnnotations are never sent to members.
var hubOnlyAnnotations = []string{
	v1alpha1.AnnotationSummary,
	"kubectl.kubernetes.io/last-applied-configuration",
	"deployment.kubernetes.io/revision",
}

// Clean returns a copy of a hub template without what belongs to the hub's copy: identity,
// bookkeeping, status, owner references and the addresses the hub's API server allocated.
func Clean(u *unstructured.Unstructured) *unstructured.Unstructured {
	c := u.DeepCopy()
	for _, f := range []string{"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "ownerReferences", "deletionTimestamp", "deletionGracePeriodSeconds", "finalizers", "selfLink"} {
		unstructured.RemoveNestedField(c.Object, "metadata", f)
	}
	delete(c.Object, "status")
	if ann := c.GetAnnotations(); ann != nil {
		for _, a := range hubOnlyAnnotations {
			delete(ann, a)
		}
		if len(ann) == 0 {
			ann = nil
		}
		c.SetAnnotations(ann)
	}
	gvk := c.GroupVersionKind()
	switch {
	case gvk.Group == "" && gvk.Kind == "Service":
		// The hub's API server allocated these; each member allocates its own.
		for _, f := range []string{"clusterIP", "clusterIPs", "healthCheckNodePort"} {
			unstructured.RemoveNestedField(c.Object, "spec", f)
		}
	case gvk.Group == "" && gvk.Kind == "PersistentVolumeClaim":
		unstructured.RemoveNestedField(c.Object, "spec", "volumeName")
	case gvk.Group == "batch" && gvk.Kind == "Job":
		// The hub defaulted a selector and labels that name the hub object's uid.
		if manual, _, _ := unstructured.NestedBool(c.Object, "spec", "manualSelector"); !manual {
			unstructured.RemoveNestedField(c.Object, "spec", "selector")
			for _, l := range []string{"controller-uid", "batch.kubernetes.io/controller-uid", "job-name", "batch.kubernetes.io/job-name"} {
				unstructured.RemoveNestedField(c.Object, "spec", "template", "metadata", "labels", l)
			}
		}
	}
	return c
}

// Replicas returns a template's replicas when it is a workload that has them.
func Replicas(u *unstructured.Unstructured) (int32, bool) {
	if !hasReplicas(u) {
		return 0, false
	}
	v, found, err := unstructured.NestedInt64(u.Object, "spec", "replicas")
	if err != nil {
		return 0, false
	}
	if !found {
		return 1, true // the API's default
	}
	return int32(v), true
}

func hasReplicas(u *unstructured.Unstructured) bool {
	gvk := u.GroupVersionKind()
	return gvk.Group == "apps" && (gvk.Kind == "Deployment" || gvk.Kind == "StatefulSet" || gvk.Kind == "ReplicaSet")
}

// podSpecPath is where a workload keeps its pod spec, or nil when it has none.
func podSpecPath(u *unstructured.Unstructured) []string {
	gvk := u.GroupVersionKind()
	switch {
	case gvk.Group == "" && gvk.Kind == "Pod":
		return []string{"spec"}
	case gvk.Group == "apps" && (gvk.Kind == "Deployment" || gvk.Kind == "StatefulSet" || gvk.Kind == "DaemonSet" || gvk.Kind == "ReplicaSet"),
		gvk.Group == "batch" && gvk.Kind == "Job":
		return []string{"spec", "template", "spec"}
	case gvk.Group == "batch" && gvk.Kind == "CronJob":
		return []string{"spec", "jobTemplate", "spec", "template", "spec"}
	}
	return nil
}

// PodRequests sums what one replica's containers request.
func PodRequests(u *unstructured.Unstructured) scheduler.Resources {
	path := podSpecPath(u)
	if path == nil {
		return scheduler.Resources{}
	}
	containers, _, _ := unstructured.NestedSlice(u.Object, append(slices.Clone(path), "containers")...)
	r := scheduler.Resources{Pods: 1}
	for _, c := range containers {
		m, _ := c.(map[string]any)
		req, _, _ := unstructured.NestedStringMap(m, "resources", "requests")
		if q, err := resource.ParseQuantity(req["cpu"]); err == nil {
			r.MilliCPU += q.MilliValue()
		}
		if q, err := resource.ParseQuantity(req["memory"]); err == nil {
			r.Memory += q.Value()
		}
	}
	return r
}

// Ref names an object a template depends on, in the template's namespace.
type Ref struct {
	Kind string // ConfigMap, Secret, ServiceAccount or PersistentVolumeClaim
	Name string
}

// Dependencies lists the ConfigMaps, Secrets, ServiceAccounts and PersistentVolumeClaims a
// workload's pod spec refers to, sorted and without repeats.
func Dependencies(u *unstructured.Unstructured) []Ref {
	path := podSpecPath(u)
	if path == nil {
		return nil
	}
	spec, found, _ := unstructured.NestedMap(u.Object, path...)
	if !found {
		return nil
	}
	seen := map[Ref]bool{}
	add := func(kind, name string) {
		if name != "" {
			seen[Ref{Kind: kind, Name: name}] = true
		}
	}
	if sa, _, _ := unstructured.NestedString(spec, "serviceAccountName"); sa != "" && sa != "default" {
		add("ServiceAccount", sa)
	}
	pullSecrets, _, _ := unstructured.NestedSlice(spec, "imagePullSecrets")
	for _, s := range pullSecrets {
		m, _ := s.(map[string]any)
		name, _, _ := unstructured.NestedString(m, "name")
		add("Secret", name)
	}
	volumes, _, _ := unstructured.NestedSlice(spec, "volumes")
	for _, v := range volumes {
		m, _ := v.(map[string]any)
		cm, _, _ := unstructured.NestedString(m, "configMap", "name")
		add("ConfigMap", cm)
		sec, _, _ := unstructured.NestedString(m, "secret", "secretName")
		add("Secret", sec)
		pvc, _, _ := unstructured.NestedString(m, "persistentVolumeClaim", "claimName")
		add("PersistentVolumeClaim", pvc)
		sources, _, _ := unstructured.NestedSlice(m, "projected", "sources")
		for _, p := range sources {
			pm, _ := p.(map[string]any)
			cm, _, _ := unstructured.NestedString(pm, "configMap", "name")
			add("ConfigMap", cm)
			sec, _, _ := unstructured.NestedString(pm, "secret", "name")
			add("Secret", sec)
		}
	}
	for _, list := range []string{"initContainers", "containers"} {
		containers, _, _ := unstructured.NestedSlice(spec, list)
		for _, c := range containers {
			m, _ := c.(map[string]any)
			envFrom, _, _ := unstructured.NestedSlice(m, "envFrom")
			for _, e := range envFrom {
				em, _ := e.(map[string]any)
				cm, _, _ := unstructured.NestedString(em, "configMapRef", "name")
				add("ConfigMap", cm)
				sec, _, _ := unstructured.NestedString(em, "secretRef", "name")
				add("Secret", sec)
			}
			env, _, _ := unstructured.NestedSlice(m, "env")
			for _, e := range env {
				em, _ := e.(map[string]any)
				cm, _, _ := unstructured.NestedString(em, "valueFrom", "configMapKeyRef", "name")
				add("ConfigMap", cm)
				sec, _, _ := unstructured.NestedString(em, "valueFrom", "secretKeyRef", "name")
				add("Secret", sec)
			}
		}
	}
	refs := make([]Ref, 0, len(seen))
	for r := range seen {
		refs = append(refs, r)
	}
	slices.SortFunc(refs, func(a, b Ref) int {
		if a.Kind != b.Kind {
			if a.Kind < b.Kind {
				return -1
			}
			return 1
		}
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return refs
}

// ForCluster renders a cleaned template for one cluster: its share of replicas (nil keeps the
// template's), then the overrides that match the cluster and the template, in order. It
// depends on the cluster only through OverrideKey: clusters with the same key and share get
// the same rendering.
func ForCluster(clean *unstructured.Unstructured, c scheduler.Cluster, replicas *int32, overrides []v1alpha1.Override) (*unstructured.Unstructured, error) {
	u := clean.DeepCopy()
	if replicas != nil && hasReplicas(u) {
		if err := unstructured.SetNestedField(u.Object, int64(*replicas), "spec", "replicas"); err != nil {
			return nil, err
		}
	}
	for i, o := range overrides {
		ok, err := scheduler.Matches(o.Clusters, c)
		if err != nil {
			return nil, fmt.Errorf("overrides[%d]: %w", i, err)
		}
		if !ok {
			continue
		}
		if o.Resource != nil {
			if ok, err := Selects(*o.Resource, u); err != nil || !ok {
				if err != nil {
					return nil, fmt.Errorf("overrides[%d]: %w", i, err)
				}
				continue
			}
		}
		if u, err = apply(u, o); err != nil {
			return nil, fmt.Errorf("overrides[%d]: %w", i, err)
		}
	}
	return u, nil
}

// OverrideKey says which of overrides match cluster c, and which cannot be matched (an invalid
// selector): all that ForCluster reads of the cluster.
func OverrideKey(c scheduler.Cluster, overrides []v1alpha1.Override) string {
	key := make([]byte, len(overrides))
	for i, o := range overrides {
		switch ok, err := scheduler.Matches(o.Clusters, c); {
		case err != nil:
			key[i] = 'e'
		case ok:
			key[i] = '1'
		default:
			key[i] = '0'
		}
	}
	return string(key)
}

// apply applies one override to u.
func apply(u *unstructured.Unstructured, o v1alpha1.Override) (*unstructured.Unstructured, error) {
	if o.Replicas != nil && hasReplicas(u) {
		if err := unstructured.SetNestedField(u.Object, int64(*o.Replicas), "spec", "replicas"); err != nil {
			return nil, err
		}
	}
	if path := podSpecPath(u); path != nil && (len(o.Images) > 0 || len(o.Env) > 0) {
		for _, list := range []string{"initContainers", "containers"} {
			p := append(slices.Clone(path), list)
			containers, found, err := unstructured.NestedSlice(u.Object, p...)
			if err != nil || !found {
				continue
			}
			for i, c := range containers {
				m, _ := c.(map[string]any)
				name, _, _ := unstructured.NestedString(m, "name")
				for _, im := range o.Images {
					if im.Container == "" || im.Container == name {
						m["image"] = im.Image
					}
				}
				for _, e := range o.Env {
					if e.Container == "" || e.Container == name {
						setEnv(m, e.Name, e.Value)
					}
				}
				containers[i] = m
			}
			if err := unstructured.SetNestedSlice(u.Object, containers, p...); err != nil {
				return nil, err
			}
		}
	}
	if len(o.Labels) > 0 {
		l := u.GetLabels()
		if l == nil {
			l = map[string]string{}
		}
		for k, v := range o.Labels {
			l[k] = v
		}
		u.SetLabels(l)
	}
	if len(o.Annotations) > 0 {
		a := u.GetAnnotations()
		if a == nil {
			a = map[string]string{}
		}
		for k, v := range o.Annotations {
			a[k] = v
		}
		u.SetAnnotations(a)
	}
	if len(o.JSONPatches) > 0 {
		raw, err := json.Marshal(o.JSONPatches)
		if err != nil {
			return nil, err
		}
		patch, err := jsonpatch.DecodePatch(raw)
		if err != nil {
			return nil, fmt.Errorf("jsonPatches: %w", err)
		}
		doc, err := u.MarshalJSON()
		if err != nil {
			return nil, err
		}
		out, err := patch.Apply(doc)
		if err != nil {
			return nil, fmt.Errorf("jsonPatches on %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		patched := &unstructured.Unstructured{}
		if err := patched.UnmarshalJSON(out); err != nil {
			return nil, fmt.Errorf("jsonPatches left %s %s without a kind or apiVersion: %w", u.GetKind(), u.GetName(), err)
		}
		u = patched
	}
	return u, nil
}

// setEnv sets (or adds) one plain environment variable on a container.
func setEnv(container map[string]any, name, value string) {
	env, _ := container["env"].([]any)
	for i, e := range env {
		m, _ := e.(map[string]any)
		if m["name"] == name {
			env[i] = map[string]any{"name": name, "value": value}
			container["env"] = env
			return
		}
	}
	container["env"] = append(env, map[string]any{"name": name, "value": value})
}

// Stateful reports whether a workload keeps state on its cluster: a StatefulSet, or a
// workload that mounts PersistentVolumeClaims. Failover moves those only when told to.
func Stateful(u *unstructured.Unstructured) bool {
	gvk := u.GroupVersionKind()
	if gvk.Group == "apps" && gvk.Kind == "StatefulSet" {
		return true
	}
	for _, r := range Dependencies(u) {
		if r.Kind == "PersistentVolumeClaim" {
			return true
		}
	}
	return false
}

// HubOwned says whether a hub object belongs to the hub rather than to the application, so
// that no Placement sends it: what the hub's API server and controllers put in every namespace
// (kube-root-ca.crt, the default ServiceAccount, service-account tokens), and a tool's own
// bookkeeping (Helm's release Secrets).
func HubOwned(u *unstructured.Unstructured) bool {
	gvk := u.GroupVersionKind()
	if gvk.Group != "" {
		return false
	}
	switch gvk.Kind {
	case "ConfigMap":
		return u.GetName() == "kube-root-ca.crt"
	case "ServiceAccount":
		return u.GetName() == "default"
	case "Secret":
		t, _, _ := unstructured.NestedString(u.Object, "type")
		return t == "kubernetes.io/service-account-token" || strings.HasPrefix(t, "helm.sh/")
	}
	return false
}
