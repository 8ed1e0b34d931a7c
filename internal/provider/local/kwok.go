package local

import (
	"strings"

	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodelease "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat-with-lease"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
)

// kwokNodeAnnotation marks the nodes kwok simulates; nodes without it are left alone.
const kwokNodeAnnotation = "kwok.x-k8s.io/node"

// kwokStages is kwok's configuration: the stages kwok ships for nodes (initialise, then
// heartbeat through a Lease) and pods (ready, complete, delete), taken from the kwok module
// at its pinned version.
func kwokStages() string {
	return strings.Join([]string{
		nodefast.DefaultNodeInit,
		nodelease.DefaultNodeHeartbeatWithLease,
		podfast.DefaultPodReady,
		podfast.DefaultPodComplete,
		podfast.DefaultPodDelete,
	}, "\n---\n")
}
