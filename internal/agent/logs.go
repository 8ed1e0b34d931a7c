package agent

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/observe"
)

// LogCollector has the agent run the member's log collector (observe.LogCollector, a
// DaemonSet of `convoy log-collector` on the member's real nodes) and keep its hub token current.
type LogCollector struct {
	// Image is Convoy's image as the member's nodes pull it.
	Image string
	// HubURL is the hub's API server as the member's pods reach it (the agent's --hub-url
	// when empty).
	HubURL string
	// HostPaths are more host directories the collectors read, and DataHostPath where they
	// keep their state (observe.LogCollector).
	HostPaths    []string
	DataHostPath string
}

// logCollectorResync is how often the agent applies the collector's objects again when nothing
// changed, which puts back what someone changed by hand.
const logCollectorResync = 5 * time.Minute

// runLogCollector applies the collector's objects to the member once it has a real node, again
// whenever the agent's hub token changes (checked every 10 s) and every logCollectorResync,
// until ctx ends. It
// removes nothing when it ends: the agent fails static.
func (a *Agent) runLogCollector(ctx context.Context, lc LogCollector, cs kubernetes.Interface) {
	hubURL := lc.HubURL
	if hubURL == "" {
		hubURL = a.opts.HubURL
	}
	var last [32]byte
	var applied time.Time
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		// The member's nodes are looked at only until the collector is applied.
		if token := a.id.token(); token != "" && (!applied.IsZero() || hasRealNode(ctx, cs)) {
			objs, err := observe.LogCollector{Image: lc.Image, HubURL: hubURL, HubCA: a.opts.HubCA, Token: token, HostPaths: lc.HostPaths, DataHostPath: lc.DataHostPath}.Objects()
			if err != nil {
				a.log.Error("no log collector", "err", err)
				return
			}
			raw, _ := json.Marshal(objs)
			if sum := sha256.Sum256(raw); sum != last || time.Since(applied) > logCollectorResync {
				if err := applyAll(ctx, cs, objs); err != nil {
					if ctx.Err() == nil {
						a.log.Warn("cannot apply the log collector to the member; trying again", "err", err)
					}
				} else {
					if last == ([32]byte{}) {
						a.log.Info("log collector applied", "hub", hubURL)
					}
					last, applied = sum, time.Now()
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// realNodes selects the nodes a log collector runs on: those that are not simulated (kwok's, or
// a local cluster's simulated pool's).
const realNodes = "type!=kwok,convoy.dev/node-kind!=simulated"

// hasRealNode says whether the member has a node the collector would run on: a member of
// simulated nodes only gets none of the collector's objects, not even its namespace.
func hasRealNode(ctx context.Context, cs kubernetes.Interface) bool {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: realNodes, Limit: 1})
	return err == nil && len(nodes.Items) > 0
}

// applyAll server-side applies the collector's objects, as the agent's field manager.
func applyAll(ctx context.Context, cs kubernetes.Interface, objs []any) error {
	opts := metav1.PatchOptions{FieldManager: v1alpha1.AgentFieldManager, Force: new(true)}
	var errs []error
	for _, o := range objs {
		data, err := json.Marshal(o)
		if err != nil {
			return err
		}
		switch o := o.(type) {
		case *corev1.Namespace:
			_, err = cs.CoreV1().Namespaces().Patch(ctx, o.Name, types.ApplyPatchType, data, opts)
		case *corev1.ServiceAccount:
			_, err = cs.CoreV1().ServiceAccounts(o.Namespace).Patch(ctx, o.Name, types.ApplyPatchType, data, opts)
		case *corev1.Secret:
			_, err = cs.CoreV1().Secrets(o.Namespace).Patch(ctx, o.Name, types.ApplyPatchType, data, opts)
		case *rbacv1.ClusterRole:
			_, err = cs.RbacV1().ClusterRoles().Patch(ctx, o.Name, types.ApplyPatchType, data, opts)
		case *rbacv1.ClusterRoleBinding:
			_, err = cs.RbacV1().ClusterRoleBindings().Patch(ctx, o.Name, types.ApplyPatchType, data, opts)
		case *appsv1.DaemonSet:
			_, err = cs.AppsV1().DaemonSets(o.Namespace).Patch(ctx, o.Name, types.ApplyPatchType, data, opts)
		default:
			err = fmt.Errorf("the log collector: no way to apply %T", o)
		}
		if err != nil {
			// The namespace comes first: without it nothing else goes in.
			if _, isNS := o.(*corev1.Namespace); isNS {
				return err
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeLogCollector deletes the log collector's objects that an earlier run of the agent
// applied (they carry its label), for an agent told to run none: the hub's log store is off, or
// the agent no longer sends logs. It tries once; what is not there is no error.
func (a *Agent) removeLogCollector(ctx context.Context, cs kubernetes.Interface) {
	ns, name := observe.LogCollectorNamespace, observe.LogCollectorName
	ds, err := cs.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil || ds.Labels["app.kubernetes.io/managed-by"] != "convoy-agent" {
		return // none, or not ours
	}
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &bg}
	errs := []error{
		cs.AppsV1().DaemonSets(ns).Delete(ctx, name, opts),
		cs.CoreV1().Secrets(ns).Delete(ctx, name, opts),
		cs.CoreV1().ServiceAccounts(ns).Delete(ctx, name, opts),
		cs.RbacV1().ClusterRoleBindings().Delete(ctx, name, opts),
		cs.RbacV1().ClusterRoles().Delete(ctx, name, opts),
	}
	var failed []error
	for _, err := range errs {
		if err != nil && !apierrors.IsNotFound(err) {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		a.log.Warn("cannot remove the log collector the agent no longer runs", "err", errors.Join(failed...))
		return
	}
	a.log.Info("removed the log collector: the agent runs none now")
}
