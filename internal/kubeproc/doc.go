// Package kubeproc runs upstream Kubernetes binaries (kine, kube-apiserver,
// kube-controller-manager, kube-scheduler, kwok) as supervised child processes on loopback.
//
// It owns what every such control plane needs: a PKI made once and kept on disk, kubeconfigs,
// free ports, the flags each binary takes, readiness probes, and a supervisor that restarts a
// crashed child with backoff, stops children in order, lets a child meant to outlive its parent
// be taken over by the next one (Detach, Adopt), and finds children left over by a
// killed parent without touching processes that are not its own. It raises the host's inotify
// limits that those processes need (EnsureInotifyLimits). It also writes files
// durably (the agent keeps its token with it). The hub, the local provider, the agent, the CLI
// and hubtest import it; it imports nothing of Convoy's.
package kubeproc
