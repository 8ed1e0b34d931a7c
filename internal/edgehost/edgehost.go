// Package edgehost is the composition root of `convoy edge run`: an edge host's pool
// supervisor (internal/controller/pool) in a process of its own, which watches the hub's
// EdgePools with the host's identity and runs their HAProxy instances here. Its instances
// keep serving what they served while the hub is away (fail static); they stop when the
// process stops, or when their EdgePool is deleted.
//
// Access returns the RBAC objects that identity needs. Only the CLI imports this package.
package edgehost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/controller/pool"
)

// Options are an edge host's.
type Options struct {
	// Name names the host in the EdgePools' status; it is a DNS label other than "hub".
	Name string
	// Dir holds the instances' configuration, sockets and logs.
	Dir string
	// Instances is how many HAProxy instances each pool gets on this host; zero means 1.
	Instances int
	// Hub is the connection to the hub, with the host's identity (Access).
	Hub *rest.Config
	Log *slog.Logger
}

// Run supervises the pools until ctx ends, then stops their instances.
func Run(ctx context.Context, o Options) error {
	if o.Name == "" || o.Name == v1alpha1.EdgeSupervisorHub {
		return errors.New("an edge host needs a name of its own (not \"hub\"): --name")
	}
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(o.Hub, ctrl.Options{
		Scheme:                 scheme,
		Logger:                 logr.FromSlogHandler(o.Log.Handler()),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		// The host may read EdgePools in the hub's namespace, and nothing else.
		Cache: cache.Options{DefaultNamespaces: map[string]cache.Config{v1alpha1.SystemNamespace: {}}},
	})
	if err != nil {
		return fmt.Errorf("connect to the hub: %w", err)
	}
	s := &pool.Supervisor{Client: mgr.GetClient(), Name: o.Name, Dir: o.Dir, Instances: o.Instances, Log: o.Log.With("edge", o.Name)}
	if err := s.SetupWithManager(mgr); err != nil {
		return err
	}
	o.Log.Info("edge host running", "name", o.Name, "dir", o.Dir, "hub", o.Hub.Host)
	// The cache waits for the hub as long as it takes: an edge host that starts while the hub
	// is away serves nothing until it is back, and one that loses it keeps serving.
	return mgr.Start(ctx)
}

// ServiceAccountName is the hub identity of the edge host name, in SystemNamespace.
func ServiceAccountName(name string) string { return "edge-" + name }

// Access is what the hub holds for an edge host: its ServiceAccount, and the Role and
// RoleBinding that let it read EdgePools and write their status, in SystemNamespace only.
func Access(name string) []client.Object {
	sa := ServiceAccountName(name)
	role := "convoy:edge:" + name
	labels := map[string]string{"edge.convoy.dev/host": name}
	return []client.Object{
		&corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.SystemNamespace, Name: sa, Labels: labels}},
		&rbacv1.Role{TypeMeta: metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "Role"}, ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.SystemNamespace, Name: role, Labels: labels}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"edgepools"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"edgepools/status"}, Verbs: []string{"get", "patch", "update"}},
		}},
		&rbacv1.RoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "RoleBinding"}, ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.SystemNamespace, Name: role, Labels: labels},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: v1alpha1.SystemNamespace, Name: sa}}},
	}
}

// TokenDuration is how long an edge host's token lasts by default.
const TokenDuration = 365 * 24 * time.Hour
