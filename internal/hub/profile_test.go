package hub_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/version"
)

// TestClusterProfileRevisions shows a profile's revisions and the refusals of Kubernetes'
// version skew policy: every change of the bill of materials is a new revision, kept as a
// ControllerRevision; a change of the update strategy alone is none; a downgrade, a skipped
// minor version and a version the hub has no binaries for are refused by the API, and nothing
// stored changes.
func TestClusterProfileRevisions(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	ctx := context.Background()

	p := &v1alpha1.ClusterProfile{
		ObjectMeta: metav1.ObjectMeta{Name: "prod"},
		Spec: v1alpha1.ClusterProfileSpec{
			KubernetesVersion: version.Kubernetes,
			NodePools:         []v1alpha1.NodePool{{Name: "default", Count: 2}},
		},
	}
	must(t, h.Client.Create(ctx, p))
	waitProfile(t, h, "revision 1", func(p *v1alpha1.ClusterProfile) bool {
		return p.Status.Revision == 1 && meta.IsStatusConditionTrue(p.Status.Conditions, v1alpha1.ProfileAccepted)
	})

	update := func(change func(*v1alpha1.ClusterProfile)) error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := h.Client.Get(ctx, client.ObjectKey{Name: "prod"}, p); err != nil {
				return err
			}
			change(p)
			return h.Client.Update(ctx, p)
		})
	}
	must(t, update(func(p *v1alpha1.ClusterProfile) {
		p.Spec.Addons = []v1alpha1.Addon{{Name: v1alpha1.AddonCoreDNS, Version: version.CoreDNS}}
	}))
	waitProfile(t, h, "revision 2", func(p *v1alpha1.ClusterProfile) bool {
		return p.Status.Revision == 2 && len(p.Status.History) == 2
	})
	// The strategy is not the bill of materials: the revision stays, once the change is seen.
	must(t, update(func(p *v1alpha1.ClusterProfile) { p.Spec.Update.Paused = true }))
	gen := p.Generation
	got := waitProfile(t, h, "the strategy's change observed", func(p *v1alpha1.ClusterProfile) bool {
		return p.Status.ObservedGeneration >= gen
	})
	if got.Status.Revision != 2 {
		t.Errorf("a change of the update strategy made revision %d", got.Status.Revision)
	}
	var revs appsv1.ControllerRevisionList
	must(t, h.Client.List(ctx, &revs, client.InNamespace(v1alpha1.SystemNamespace), client.MatchingLabels{v1alpha1.LabelProfile: "prod"}))
	if len(revs.Items) != 2 {
		t.Errorf("%d ControllerRevisions of profile prod, want 2", len(revs.Items))
	}

	for _, tc := range []struct{ to, want string }{
		{version.KubernetesPrevious, "cannot go down"},
		{"v1.39.0", "one minor version at a time"},
		{"v1.38.0", "is not available on this hub"},
		{"1.38", "spec.kubernetesVersion"},
	} {
		err := update(func(p *v1alpha1.ClusterProfile) { p.Spec.KubernetesVersion = tc.to })
		expectInvalid(t, err, tc.want)
	}
	must(t, h.Client.Get(ctx, client.ObjectKey{Name: "prod"}, p))
	if p.Spec.KubernetesVersion != version.Kubernetes {
		t.Errorf("a refused change was stored: version %s", p.Spec.KubernetesVersion)
	}
	expectInvalid(t, h.Client.Create(ctx, &v1alpha1.ClusterProfile{
		ObjectMeta: metav1.ObjectMeta{Name: "ancient"},
		Spec:       v1alpha1.ClusterProfileSpec{KubernetesVersion: "v1.20.0"},
	}), "is not available on this hub")

	// A cluster built from a profile takes its version from it.
	expectInvalid(t, h.Client.Create(ctx, cluster("both", v1alpha1.ClusterSpec{
		Provider: v1alpha1.ProviderLocal, Profile: &v1alpha1.ProfileRef{Name: "prod"}, KubernetesVersion: version.Kubernetes,
	})), "remove spec.kubernetesVersion")
	// And its default RBAC and admission policies.
	expectInvalid(t, h.Client.Create(ctx, cluster("rbac", v1alpha1.ClusterSpec{
		Provider: v1alpha1.ProviderLocal, Profile: &v1alpha1.ProfileRef{Name: "prod"}, RBAC: &v1alpha1.RBACSettings{},
	})), "remove spec.rbac")
	expectInvalid(t, h.Client.Create(ctx, cluster("policies", v1alpha1.ClusterSpec{
		Provider: v1alpha1.ProviderLocal, Profile: &v1alpha1.ProfileRef{Name: "prod"}, AdmissionPolicies: []v1alpha1.AdmissionPolicy{maxReplicas()},
	})), "remove spec.admissionPolicies")
	// A binding of a Role, and a policy binding that names another policy, are refused by the
	// API; a ClusterRole of Kubernetes' own name by the profile's Accepted condition.
	expectInvalid(t, update(func(p *v1alpha1.ClusterProfile) {
		p.Spec.RBAC = &v1alpha1.RBACSettings{ClusterRoleBindings: []v1alpha1.ClusterRoleBindingTemplate{{Name: "b", RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "r"}}}}
	}), "a ClusterRoleBinding grants a ClusterRole")
	expectInvalid(t, update(func(p *v1alpha1.ClusterProfile) {
		policy := maxReplicas()
		policy.Binding.PolicyName = "another"
		p.Spec.AdmissionPolicies = []v1alpha1.AdmissionPolicy{policy}
	}), "binding.policyName is set by Convoy to the policy's name")
	must(t, update(func(p *v1alpha1.ClusterProfile) {
		p.Spec.RBAC = &v1alpha1.RBACSettings{ClusterRoles: []v1alpha1.ClusterRoleTemplate{{Name: "view", Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods"}}}}}}
	}))
	waitProfile(t, h, "revision 3 refused", func(p *v1alpha1.ClusterProfile) bool {
		c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ProfileAccepted)
		return p.Status.Revision == 3 && c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, "view is one of Kubernetes' own ClusterRoles")
	})

	// One that names a missing profile is not built, and says why.
	orphan := cluster("orphan", v1alpha1.ClusterSpec{Provider: v1alpha1.ProviderLocal, Profile: &v1alpha1.ProfileRef{Name: "nope"}})
	must(t, h.Client.Create(ctx, orphan))
	eventuallyCluster(t, h, "orphan", func(c *v1alpha1.Cluster) error {
		cond := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ClusterAccepted)
		if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != "ProfileUnavailable" {
			return fmt.Errorf("accepted: %+v", cond)
		}
		return nil
	})
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		must(t, h.Client.Get(ctx, client.ObjectKey{Name: "orphan"}, orphan))
		orphan.Spec.Profile = nil
		return h.Client.Update(ctx, orphan)
	}); err == nil || !apierrors.IsInvalid(err) {
		t.Errorf("removing spec.profile: %v, want it refused", err)
	}
}

// maxReplicas is an admission policy: at most 5 replicas in a Deployment.
func maxReplicas() v1alpha1.AdmissionPolicy {
	return v1alpha1.AdmissionPolicy{
		Name: "max-replicas",
		Policy: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments"}},
			}}}},
			Validations: []admissionregistrationv1.Validation{{Expression: "object.spec.replicas <= 5", Message: "at most 5 replicas"}},
		},
		Binding: v1alpha1.AdmissionPolicyBindingSpec{ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}},
	}
}

func waitProfile(t *testing.T, h *hubtest.Hub, what string, ok func(*v1alpha1.ClusterProfile) bool) *v1alpha1.ClusterProfile {
	t.Helper()
	p := &v1alpha1.ClusterProfile{}
	hubtest.Eventually(t, "profile prod: "+what, time.Minute, func() (bool, error) {
		err := h.Client.Get(context.Background(), client.ObjectKey{Name: "prod"}, p)
		return err == nil && ok(p), fmt.Errorf("status %+v, err %v", p.Status, err)
	})
	return p
}

func eventuallyCluster(t *testing.T, h *hubtest.Hub, name string, check func(*v1alpha1.Cluster) error) {
	t.Helper()
	eventuallyClusterWithin(t, h, name, time.Minute, check)
}

func eventuallyClusterWithin(t *testing.T, h *hubtest.Hub, name string, within time.Duration, check func(*v1alpha1.Cluster) error) {
	t.Helper()
	hubtest.Eventually(t, "cluster "+name, within, func() (bool, error) {
		c := &v1alpha1.Cluster{}
		err := h.Client.Get(context.Background(), client.ObjectKey{Name: name}, c)
		if err == nil {
			err = check(c)
		}
		return err == nil, err
	})
}

// TestClusterBuiltFromProfile builds a local cluster from a profile and moves it to the
// profile's next revision: its node pool, API server settings, namespaces, default RBAC and
// admission policy come from the revision, its agent's report makes it conformant, and a change
// of the profile's feature gate reaches its API server through an update run, as the removal of
// its RBAC reaches the member.
func TestClusterBuiltFromProfile(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a local cluster")
	}
	t.Parallel()
	h := hubtest.Start(t)
	ctx := context.Background()
	const gate = "APIServingWithRoutine" // alpha: off unless a profile turns it on
	p := &v1alpha1.ClusterProfile{
		ObjectMeta: metav1.ObjectMeta{Name: "prod"},
		Spec: v1alpha1.ClusterProfileSpec{
			KubernetesVersion: version.Kubernetes,
			APIServer:         &v1alpha1.APIServerSettings{FeatureGates: map[string]bool{gate: true}},
			Namespaces:        []string{"team-a"},
			RBAC: &v1alpha1.RBACSettings{
				ClusterRoles: []v1alpha1.ClusterRoleTemplate{{Name: "team-a:reader", Rules: []rbacv1.PolicyRule{{Verbs: []string{"get", "list"}, APIGroups: []string{""}, Resources: []string{"pods"}}}}},
				ClusterRoleBindings: []v1alpha1.ClusterRoleBindingTemplate{{Name: "team-a:readers", RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "team-a:reader"},
					Subjects: []rbacv1.Subject{{Kind: "Group", Name: "team-a"}}}},
			},
			AdmissionPolicies: []v1alpha1.AdmissionPolicy{maxReplicas()},
			NodePools:         []v1alpha1.NodePool{{Name: "default", Count: 1}},
		},
	}
	must(t, h.Client.Create(ctx, p))
	must(t, h.Client.Create(ctx, cluster("built", v1alpha1.ClusterSpec{Provider: v1alpha1.ProviderLocal, Profile: &v1alpha1.ProfileRef{Name: "prod"}})))
	conformant := func(revision int64, gateOn bool, objects ...string) func(c *v1alpha1.Cluster) error {
		return func(c *v1alpha1.Cluster) error {
			s, inv := c.Status.Profile, c.Status.Inventory
			if s == nil || inv == nil || s.Revision != revision || !s.Conformant || s.Nodes != 1 || inv.Nodes.Ready != 1 {
				return fmt.Errorf("profile state %+v, inventory %+v", s, inv)
			}
			if !slices.Contains(inv.Namespaces, "team-a") {
				return fmt.Errorf("namespaces %v lack the profile's team-a", inv.Namespaces)
			}
			var have []string
			if inv.ProfileObjects != nil {
				for _, o := range inv.ProfileObjects.Items {
					have = append(have, o.Kind+"/"+o.Name)
				}
			}
			if inv.ProfileObjects == nil || !slices.Equal(have, objects) {
				return fmt.Errorf("profile objects %v, want %v", have, objects)
			}
			if on := slices.Contains(inv.EnabledFeatureGates, gate); on != gateOn {
				return fmt.Errorf("feature gate %s on: %t, want %t", gate, on, gateOn)
			}
			if !meta.IsStatusConditionTrue(c.Status.Conditions, v1alpha1.ClusterProfileConformant) {
				return fmt.Errorf("conditions %+v", c.Status.Conditions)
			}
			return nil
		}
	}
	eventuallyClusterWithin(t, h, "built", 3*time.Minute, conformant(1, true, "ClusterRole/team-a:reader", "ClusterRoleBinding/team-a:readers",
		"ValidatingAdmissionPolicy/max-replicas", "ValidatingAdmissionPolicyBinding/max-replicas"))

	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		must(t, h.Client.Get(ctx, client.ObjectKey{Name: "prod"}, p))
		p.Spec.APIServer.FeatureGates[gate] = false
		p.Spec.RBAC = nil
		return h.Client.Update(ctx, p)
	}))
	eventuallyClusterWithin(t, h, "built", 3*time.Minute, conformant(2, false, "ValidatingAdmissionPolicy/max-replicas", "ValidatingAdmissionPolicyBinding/max-replicas"))
	got := waitProfile(t, h, "the run complete", func(p *v1alpha1.ClusterProfile) bool {
		return p.Status.Run != nil && p.Status.Run.Phase == v1alpha1.RolloutComplete && p.Status.Run.Target == "2"
	})
	if got.Status.Conformant != 1 || got.Status.Clusters != 1 {
		t.Errorf("profile status counts %d of %d clusters conformant, want 1 of 1", got.Status.Conformant, got.Status.Clusters)
	}

	// A profile a cluster names stays until the cluster is gone.
	must(t, h.Client.Delete(ctx, p))
	waitProfile(t, h, "kept while in use", func(p *v1alpha1.ClusterProfile) bool {
		c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ProfileAccepted)
		return !p.DeletionTimestamp.IsZero() && c != nil && c.Reason == "InUse" && strings.Contains(c.Message, "built")
	})
	must(t, h.Client.Delete(ctx, &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "built"}}))
	hubtest.Eventually(t, "the profile gone with its last cluster", 2*time.Minute, func() (bool, error) {
		err := h.Client.Get(ctx, client.ObjectKey{Name: "prod"}, &v1alpha1.ClusterProfile{})
		return apierrors.IsNotFound(err), err
	})
}
