// Package cluster holds the hub's Cluster reconciler. It keeps each Cluster's topology labels
// in step with its spec and reports in status whether the hub can act on it. Only the hub's
// composition root imports it.
package cluster

import (
	"context"
	"fmt"
	"maps"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// Reconciler reconciles Cluster objects.
type Reconciler struct {
	Client client.Client
}

// SetupWithManager registers the reconciler with mgr.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&v1alpha1.Cluster{}).Named("cluster").Complete(r)
}

// Reconcile brings one Cluster's labels and status up to date. It is idempotent.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	c := &v1alpha1.Cluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, c); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}

	if labels, changed := TopologyLabels(c.Labels, c.Spec); changed {
		before := c.DeepCopy()
		c.Labels = labels
		if err := r.Client.Patch(ctx, c, client.MergeFrom(before)); err != nil {
			return ctrl.Result{}, fmt.Errorf("patch cluster labels: %w", err)
		}
	}

	before := c.DeepCopy()
	c.Status.ObservedGeneration = c.Generation
	meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{
		Type:               v1alpha1.ClusterAccepted,
		Status:             metav1.ConditionFalse,
		Reason:             "ProviderNotAvailable",
		Message:            fmt.Sprintf("this hub has no %q provider yet; the cluster is recorded but not provisioned", c.Spec.Provider),
		ObservedGeneration: c.Generation,
	})
	if c.Status.Phase == "" {
		c.Status.Phase = v1alpha1.ClusterPending
	}
	if equality.Semantic.DeepEqual(before.Status, c.Status) {
		return ctrl.Result{}, nil
	}
	if err := r.Client.Status().Patch(ctx, c, client.MergeFrom(before)); err != nil {
		return ctrl.Result{}, fmt.Errorf("patch cluster status: %w", err)
	}
	return ctrl.Result{}, nil
}

// TopologyLabels returns labels with the convoy.dev provider, region and environment labels
// set from spec (and removed where spec leaves them empty), and whether that changed anything.
func TopologyLabels(labels map[string]string, spec v1alpha1.ClusterSpec) (map[string]string, bool) {
	out := maps.Clone(labels)
	if out == nil {
		out = map[string]string{}
	}
	set := func(key, value string) {
		if value == "" {
			delete(out, key)
		} else {
			out[key] = value
		}
	}
	set(v1alpha1.LabelProvider, string(spec.Provider))
	set(v1alpha1.LabelRegion, spec.Region)
	set(v1alpha1.LabelEnvironment, spec.Environment)
	return out, !maps.Equal(labels, out)
}
