package manifest

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// Assess judges the health of an object as it is on the member: Deployments, StatefulSets,
// DaemonSets, Jobs, Pods, Services and PersistentVolumeClaims by their own status, anything
// else by a Ready or Available condition, and an object with neither as Healthy once it exists.
func Assess(u *unstructured.Unstructured) (v1alpha1.Health, string) {
	if u == nil {
		return v1alpha1.HealthUnknown, "not found on the member"
	}
	if u.GetDeletionTimestamp() != nil {
		return v1alpha1.HealthProgressing, "being deleted"
	}
	group := u.GroupVersionKind().Group
	switch kind := u.GetKind(); {
	case group == "apps" && kind == "Deployment":
		return deployment(u)
	case group == "apps" && kind == "StatefulSet":
		return statefulSet(u)
	case group == "apps" && kind == "DaemonSet":
		return daemonSet(u)
	case group == "batch" && kind == "Job":
		return job(u)
	case group == "" && kind == "Pod":
		return pod(u)
	case group == "" && kind == "Service":
		return service(u)
	case group == "" && kind == "PersistentVolumeClaim":
		return pvc(u)
	}
	return generic(u)
}

func i64(u *unstructured.Unstructured, path ...string) int64 {
	v, _, _ := unstructured.NestedInt64(u.Object, path...)
	return v
}

func str(u *unstructured.Unstructured, path ...string) string {
	v, _, _ := unstructured.NestedString(u.Object, path...)
	return v
}

// condition returns the status, reason and message of a condition in status.conditions.
func condition(u *unstructured.Unstructured, typ string) (status, reason, message string, found bool) {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok || m["type"] != typ {
			continue
		}
		s, _ := m["status"].(string)
		r, _ := m["reason"].(string)
		msg, _ := m["message"].(string)
		return s, r, msg, true
	}
	return "", "", "", false
}

// observed reports whether the object's controller has seen its latest spec.
func observed(u *unstructured.Unstructured) bool {
	return i64(u, "status", "observedGeneration") >= u.GetGeneration()
}

func replicas(u *unstructured.Unstructured) int64 {
	if r, found, _ := unstructured.NestedInt64(u.Object, "spec", "replicas"); found {
		return r
	}
	return 1
}

func deployment(u *unstructured.Unstructured) (v1alpha1.Health, string) {
	if !observed(u) {
		return v1alpha1.HealthProgressing, "waiting for the deployment controller to see the new spec"
	}
	if s, r, msg, ok := condition(u, "Progressing"); ok && s == "False" && r == "ProgressDeadlineExceeded" {
		return v1alpha1.HealthDegraded, msg
	}
	want := replicas(u)
	updated, available, total := i64(u, "status", "updatedReplicas"), i64(u, "status", "availableReplicas"), i64(u, "status", "replicas")
	switch {
	case updated < want:
		return v1alpha1.HealthProgressing, fmt.Sprintf("%d of %d replicas updated", updated, want)
	case total > updated:
		return v1alpha1.HealthProgressing, fmt.Sprintf("%d old replicas still terminating", total-updated)
	case available < want:
		return v1alpha1.HealthProgressing, fmt.Sprintf("%d of %d replicas available", available, want)
	}
	return v1alpha1.HealthHealthy, fmt.Sprintf("%d of %d replicas available", available, want)
}

func statefulSet(u *unstructured.Unstructured) (v1alpha1.Health, string) {
	if !observed(u) {
		return v1alpha1.HealthProgressing, "waiting for the statefulset controller to see the new spec"
	}
	want, ready := replicas(u), i64(u, "status", "readyReplicas")
	if ready < want {
		return v1alpha1.HealthProgressing, fmt.Sprintf("%d of %d replicas ready", ready, want)
	}
	if str(u, "spec", "updateStrategy", "type") != "OnDelete" {
		if cur, upd := str(u, "status", "currentRevision"), str(u, "status", "updateRevision"); upd != "" && cur != upd {
			return v1alpha1.HealthProgressing, fmt.Sprintf("rolling out revision %s", upd)
		}
	}
	return v1alpha1.HealthHealthy, fmt.Sprintf("%d of %d replicas ready", ready, want)
}

func daemonSet(u *unstructured.Unstructured) (v1alpha1.Health, string) {
	if !observed(u) {
		return v1alpha1.HealthProgressing, "waiting for the daemonset controller to see the new spec"
	}
	want := i64(u, "status", "desiredNumberScheduled")
	updated, available := i64(u, "status", "updatedNumberScheduled"), i64(u, "status", "numberAvailable")
	switch {
	case updated < want:
		return v1alpha1.HealthProgressing, fmt.Sprintf("%d of %d pods updated", updated, want)
	case available < want:
		return v1alpha1.HealthProgressing, fmt.Sprintf("%d of %d pods available", available, want)
	}
	return v1alpha1.HealthHealthy, fmt.Sprintf("%d of %d pods available", available, want)
}

func job(u *unstructured.Unstructured) (v1alpha1.Health, string) {
	if s, _, _, ok := condition(u, "Complete"); ok && s == "True" {
		return v1alpha1.HealthHealthy, "complete"
	}
	if s, r, msg, ok := condition(u, "Failed"); ok && s == "True" {
		return v1alpha1.HealthDegraded, fmt.Sprintf("failed (%s): %s", r, msg)
	}
	return v1alpha1.HealthProgressing, fmt.Sprintf("%d active, %d succeeded", i64(u, "status", "active"), i64(u, "status", "succeeded"))
}

func pod(u *unstructured.Unstructured) (v1alpha1.Health, string) {
	switch phase := str(u, "status", "phase"); phase {
	case "Succeeded":
		return v1alpha1.HealthHealthy, "succeeded"
	case "Failed":
		return v1alpha1.HealthDegraded, "failed: " + str(u, "status", "message")
	case "Running":
		if s, _, _, _ := condition(u, "Ready"); s == "True" {
			return v1alpha1.HealthHealthy, "running and ready"
		}
		return v1alpha1.HealthProgressing, "running, not ready"
	default:
		return v1alpha1.HealthProgressing, "phase " + phase
	}
}

func service(u *unstructured.Unstructured) (v1alpha1.Health, string) {
	if str(u, "spec", "type") != "LoadBalancer" {
		return v1alpha1.HealthHealthy, ""
	}
	ingress, _, _ := unstructured.NestedSlice(u.Object, "status", "loadBalancer", "ingress")
	if len(ingress) == 0 {
		return v1alpha1.HealthProgressing, "waiting for a load balancer address"
	}
	return v1alpha1.HealthHealthy, ""
}

func pvc(u *unstructured.Unstructured) (v1alpha1.Health, string) {
	switch phase := str(u, "status", "phase"); phase {
	case "Bound":
		return v1alpha1.HealthHealthy, "bound"
	case "Lost":
		return v1alpha1.HealthDegraded, "its volume is lost"
	default:
		return v1alpha1.HealthProgressing, "phase " + phase
	}
}

func generic(u *unstructured.Unstructured) (v1alpha1.Health, string) {
	for _, typ := range []string{"Ready", "Available"} {
		s, r, msg, ok := condition(u, typ)
		if !ok {
			continue
		}
		if s == "True" {
			return v1alpha1.HealthHealthy, ""
		}
		if msg == "" {
			msg = r
		}
		return v1alpha1.HealthProgressing, fmt.Sprintf("%s is %s: %s", typ, s, msg)
	}
	return v1alpha1.HealthHealthy, ""
}

// Replicas returns a workload's desired and available replicas as its status reports them,
// or nils for an object that has no replicas.
func Replicas(u *unstructured.Unstructured) (desired, available *int32) {
	if u == nil {
		return nil, nil
	}
	n := func(path ...string) *int32 {
		v := int32(i64(u, path...))
		return &v
	}
	group := u.GroupVersionKind().Group
	switch kind := u.GetKind(); {
	case group == "apps" && (kind == "Deployment" || kind == "StatefulSet" || kind == "ReplicaSet"):
		d := int32(1)
		if v, ok, _ := unstructured.NestedInt64(u.Object, "spec", "replicas"); ok {
			d = int32(v)
		}
		return &d, n("status", "availableReplicas")
	case group == "apps" && kind == "DaemonSet":
		return n("status", "desiredNumberScheduled"), n("status", "numberAvailable")
	}
	return nil, nil
}

// Conditions returns the type and status of an object's status.conditions, at most 16.
func Conditions(u *unstructured.Unstructured) []v1alpha1.ResourceCondition {
	if u == nil {
		return nil
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	var out []v1alpha1.ResourceCondition
	for _, c := range conds {
		m, _ := c.(map[string]any)
		typ, _ := m["type"].(string)
		status, _ := m["status"].(string)
		if typ == "" || len(out) == 16 {
			continue
		}
		out = append(out, v1alpha1.ResourceCondition{Type: typ, Status: status})
	}
	return out
}
