// Package access holds the hub controller that gives each Cluster's agent a place and an
// identity on the hub: the namespace convoy-cluster-NAME, the ServiceAccount "agent-GEN" with RBAC
// that reaches only that namespace, the RBAC that lets the cluster's bootstrap tokens get that
// ServiceAccount a token, and the agent's settings. Its Authorizer, the hub API server's
// authorization webhook, lets the agent read its own Cluster and write that Cluster's status,
// in place of a ClusterRole and ClusterRoleBinding per cluster. Only the hub's composition root
// imports it.
package access

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

const (
	agentRole     = "convoy-agent"
	bootstrapRole = "convoy-agent-bootstrap"
)

// Reconciler keeps each Cluster's agent access in place.
type Reconciler struct {
	Client client.Client
	// HeartbeatInterval is what agents are told to use while the fleet is small; zero means
	// the default. MaxHeartbeatRate caps the fleet's heartbeats a second (zero: the default);
	// a larger fleet is told a longer interval (v1alpha1.FleetHeartbeatInterval).
	HeartbeatInterval time.Duration
	MaxHeartbeatRate  float64
	// DeliveryPort, when not zero, is the port of the hub's delivery stream
	// (internal/delivery), which the agents' settings name: they heartbeat and report there.
	DeliveryPort int

	interval atomic.Int64 // the interval for the fleet's size, set as Clusters come and go
	clusters atomic.Int64 // how many Clusters the cache holds
	retell   chan event.GenericEvent
	// changed asks the retelling worker for one more pass over the fleet; a pass asked for
	// while one is pending is the same pass.
	changed chan struct{}
}

// SetupWithManager registers the reconciler. A deleted agent ServiceAccount (a revocation) is
// made again at once, empty: only a new bootstrap token can get it a token; so is any other
// access object someone changed or deleted.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.retell = make(chan event.GenericEvent, 1024)
	r.changed = make(chan struct{}, 1)
	// The fleet's size is counted as Clusters come and go, not listed on every reconcile.
	logger := mgr.GetLogger().WithName("agent-access")
	inf, err := mgr.GetCache().GetInformer(context.Background(), &v1alpha1.Cluster{})
	if err != nil {
		return err
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { r.fleetChanged(logger, +1) },
		DeleteFunc: func(any) { r.fleetChanged(logger, -1) },
	}); err != nil {
		return err
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		r.retellFleet(ctx, mgr.GetCache())
		return nil
	})); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		WatchesRawSource(source.Channel(r.retell, &handler.EnqueueRequestForObject{})).
		// What it makes depends on the Cluster's name and its credential generation (an
		// annotation): status writes, a few a second in a large fleet, do not wake it.
		For(&v1alpha1.Cluster{}, builder.WithPredicates(predicate.Or[client.Object](predicate.AnnotationChangedPredicate{}, predicate.LabelChangedPredicate{}))).
		Named("agent-access").
		// What it made and someone changed or deleted is made again at once: the objects carry
		// their cluster's label (a revoked ServiceAccount is made again empty).
		Watches(&corev1.ServiceAccount{}, ofCluster).
		Watches(&corev1.ConfigMap{}, ofCluster).
		Watches(&rbacv1.Role{}, ofCluster).
		Watches(&rbacv1.RoleBinding{}, ofCluster).
		Complete(r)
}

// ofCluster maps an object with the cluster label to its Cluster.
var ofCluster = handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []ctrl.Request {
	if name := o.GetLabels()[v1alpha1.LabelCluster]; name != "" {
		return []ctrl.Request{{NamespacedName: client.ObjectKey{Name: name}}}
	}
	return nil
})

// Reconcile makes or updates the cluster's namespace, identity, RBAC and agent settings.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	c := &v1alpha1.Cluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, c); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !c.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // owner references take everything away with the Cluster
	}
	ns := v1alpha1.ClusterNamespace(c.Name)
	gen := v1alpha1.AgentGeneration(c)
	sa := v1alpha1.AgentServiceAccount(gen)
	labels := map[string]string{v1alpha1.LabelCluster: c.Name}
	interval := r.fleetInterval()

	objects := []struct {
		obj    client.Object
		mutate func()
		owned  bool
	}{
		{obj: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, owned: true},
		{obj: &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}},
		{obj: &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: v1alpha1.AgentConfigMap}}},
		{obj: &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: agentRole}}},
		{obj: &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: agentRole}}},
		{obj: &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: bootstrapRole}}},
		{obj: &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: bootstrapRole}}},
	}
	for _, o := range objects {
		_, err := controllerutil.CreateOrUpdate(ctx, r.Client, o.obj, func() error {
			o.obj.SetLabels(mergeLabels(o.obj.GetLabels(), labels))
			fill(o.obj, ns, sa, v1alpha1.BootstrapGroup(c.Name, gen), interval, r.DeliveryPort)
			if o.owned {
				return controllerutil.SetOwnerReference(c, o.obj, r.Client.Scheme())
			}
			return nil
		})
		if err != nil {
			return ctrl.Result{}, fmt.Errorf("agent access of %s: %T %s: %w", c.Name, o.obj, o.obj.GetName(), err)
		}
	}
	// ServiceAccounts of earlier generations go, and with them every token they were given.
	var sas corev1.ServiceAccountList
	if err := r.Client.List(ctx, &sas, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelCluster: c.Name}); err != nil {
		return ctrl.Result{}, err
	}
	for i := range sas.Items {
		if sas.Items[i].Name != sa {
			if err := r.Client.Delete(ctx, &sas.Items[i]); client.IgnoreNotFound(err) != nil {
				return ctrl.Result{}, fmt.Errorf("delete revoked service account: %w", err)
			}
		}
	}
	return ctrl.Result{}, nil
}

// RemoveFormerRoles deletes the ClusterRoles and ClusterRoleBindings that a hub before the
// Authorizer gave each agent for its own Cluster (named convoy-agent:NAME, with the cluster
// label NAME), and nothing else. The hub calls it once as it starts, before the controllers.
func RemoveFormerRoles(ctx context.Context, c client.Client) error {
	for _, list := range []client.ObjectList{&rbacv1.ClusterRoleBindingList{}, &rbacv1.ClusterRoleList{}} {
		if err := c.List(ctx, list, client.HasLabels{v1alpha1.LabelCluster}); err != nil {
			return fmt.Errorf("list the agents' former roles: %w", err)
		}
		objs, err := meta.ExtractList(list)
		if err != nil {
			return err
		}
		for _, o := range objs {
			obj := o.(client.Object)
			if obj.GetName() != agentRole+":"+obj.GetLabels()[v1alpha1.LabelCluster] {
				continue
			}
			if err := c.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("delete the agent's former %T %s: %w", obj, obj.GetName(), err)
			}
		}
	}
	return nil
}

// fleetChanged counts a Cluster in or out of the fleet. When that changes the fleet's
// heartbeat interval, every cluster is to be reconciled again, to tell its agent.
func (r *Reconciler) fleetChanged(logger logr.Logger, delta int64) {
	n := r.clusters.Add(delta)
	interval := v1alpha1.FleetHeartbeatInterval(r.HeartbeatInterval, r.MaxHeartbeatRate, int(n))
	prev := time.Duration(r.interval.Swap(int64(interval)))
	if prev == 0 || prev == interval {
		return
	}
	logger.Info("the fleet's heartbeat interval changes", "clusters", n, "from", prev, "to", interval)
	select {
	case r.changed <- struct{}{}:
	default: // a pass is pending already
	}
}

// retellFleet reconciles every cluster again each time the fleet's interval changed, until
// ctx ends.
func (r *Reconciler) retellFleet(ctx context.Context, cache ctrlcache.Cache) {
	if !cache.WaitForCacheSync(ctx) {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.changed:
		}
		// Only named: the cache's own objects, not copies of them all.
		var list v1alpha1.ClusterList
		if err := cache.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
			continue // the cache lists from memory; it fails only when stopping
		}
		for i := range list.Items {
			select {
			case r.retell <- event.GenericEvent{Object: &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: list.Items[i].Name}}}:
			case <-ctx.Done():
				return
			}
		}
	}
}

// fleetInterval is the heartbeat interval for the fleet's current size.
func (r *Reconciler) fleetInterval() time.Duration {
	if v := r.interval.Load(); v != 0 {
		return time.Duration(v)
	}
	return v1alpha1.FleetHeartbeatInterval(r.HeartbeatInterval, r.MaxHeartbeatRate, 1)
}

func mergeLabels(have, add map[string]string) map[string]string {
	if have == nil {
		have = map[string]string{}
	}
	for k, v := range add {
		have[k] = v
	}
	return have
}

// fill sets the content of one access object. sa is the current generation's ServiceAccount
// and group its bootstrap tokens' group.
func fill(o client.Object, ns, sa, group string, interval time.Duration, deliveryPort int) {
	agent := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}
	switch o := o.(type) {
	case *corev1.ConfigMap:
		o.Data = map[string]string{"heartbeatInterval": interval.String(), "serviceAccount": sa}
		if deliveryPort != 0 {
			o.Data[v1alpha1.AgentConfigDeliveryPort] = strconv.Itoa(deliveryPort)
		}
	case *rbacv1.Role:
		if o.Name == bootstrapRole {
			// A bootstrap token may read which ServiceAccount to ask for, and ask for its token.
			o.Rules = []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}, ResourceNames: []string{v1alpha1.AgentConfigMap}},
				{APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}, Verbs: []string{"create"}, ResourceNames: []string{sa}},
			}
			return
		}
		o.Rules = []rbacv1.PolicyRule{
			{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"works"}, Verbs: []string{"get", "list", "watch", "update", "patch"}},
			{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"works/status"}, Verbs: []string{"get", "update", "patch"}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch"}},
			{APIGroups: []string{""}, Resources: []string{"configmaps", "secrets"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
			{APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}, Verbs: []string{"create"}, ResourceNames: []string{sa}},
		}
	case *rbacv1.RoleBinding:
		o.RoleRef = rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: o.Name}
		if o.Name == bootstrapRole {
			o.Subjects = []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: group}}
			return
		}
		o.Subjects = []rbacv1.Subject{agent}
	}
}
