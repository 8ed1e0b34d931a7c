package agent

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/profile"
	"github.com/convoy-dev/convoy/internal/provider/local"
)

// The objects of a profile's default RBAC and admission policies, applied to a real API server
// as a local cluster's runtime applies them, are reported with the digests the hub computes
// from the profile: what the API server defaults is no drift. A change by hand is; the
// runtime's next pass deletes what the profile no longer lists, replaces a binding whose roleRef
// changed, and leaves alone what it did not make.
func TestObserveProfileObjects(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server")
	}
	h, cs, ctx := memberAPI(t)
	var err error
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Someone's own role, unlabelled, of a name the profile asks for too: never changed.
	_, err = cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "theirs"},
		Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"secrets"}}}}, metav1.CreateOptions{})
	must(err)

	spec := v1alpha1.ClusterProfileSpec{
		KubernetesVersion: "v1.37.2",
		RBAC: &v1alpha1.RBACSettings{
			ClusterRoles: []v1alpha1.ClusterRoleTemplate{
				{Name: "convoy:pod-reader", Rules: []rbacv1.PolicyRule{{Verbs: []string{"get", "list", "watch"}, APIGroups: []string{""}, Resources: []string{"pods", "pods/log"}}}},
				{Name: "convoy:old", Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"configmaps"}}}},
			},
			ClusterRoleBindings: []v1alpha1.ClusterRoleBindingTemplate{{
				Name: "dev-pod-readers", RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "convoy:pod-reader"},
				Subjects: []rbacv1.Subject{{Kind: "Group", Name: "dev"}, {Kind: "User", Name: "alice"}, {Kind: "ServiceAccount", Name: "ci", Namespace: "default"}},
			}},
		},
		AdmissionPolicies: []v1alpha1.AdmissionPolicy{{
			Name: "max-replicas",
			Policy: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				MatchConstraints: &admissionregistrationv1.MatchResources{
					ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments"}},
					}}},
					ExcludeResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{ResourceNames: []string{"big"}, RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.OperationAll},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments"}},
					}}},
				},
				Variables:   []admissionregistrationv1.Variable{{Name: "replicas", Expression: "object.spec.replicas"}},
				Validations: []admissionregistrationv1.Validation{{Expression: "variables.replicas <= 5", Message: "at most 5 replicas"}},
			},
			Binding: v1alpha1.AdmissionPolicyBindingSpec{
				ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
				MatchResources: &admissionregistrationv1.MatchResources{
					NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system"}}}},
				},
			},
		}},
	}
	if reasons := profile.Validate(spec, []string{"v1.37.2"}, nil); len(reasons) > 0 {
		t.Fatalf("the test's spec is refused: %q", reasons)
	}
	must(local.ApplyProfileObjects(ctx, cs, profile.Objects(spec.RBAC, spec.AdmissionPolicies)))
	// Twice: a second pass changes nothing, and says nothing.
	must(local.ApplyProfileObjects(ctx, cs, profile.Objects(spec.RBAC, spec.AdmissionPolicies)))

	m, err := NewKubeMember(h.Config)
	if err != nil {
		t.Fatal(err)
	}
	// observed waits for the agent to see what check accepts.
	observed := func(what string, check func(*v1alpha1.Inventory) error) *v1alpha1.Inventory {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			inv := m.Observe(ctx)
			err := check(&inv)
			if err == nil {
				return &inv
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	want := profile.Observed(profile.Objects(spec.RBAC, spec.AdmissionPolicies))
	inv := observed("the profile's objects", func(inv *v1alpha1.Inventory) error {
		if inv.ProfileObjects == nil || !reflect.DeepEqual(inv.ProfileObjects.Items, want) {
			return fmt.Errorf("observed %+v,\nwant %+v", inv.ProfileObjects, want)
		}
		return nil
	})
	inv.KubernetesVersion = spec.KubernetesVersion
	if drift := profile.Diff(spec, nil, inv); drift != nil {
		t.Errorf("drift %+v of the objects as applied, want none", drift)
	}
	// What the API server stored has its defaults: they are what the digests had to agree on.
	stored, err := cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, "max-replicas", metav1.GetOptions{})
	must(err)
	if stored.Spec.FailurePolicy == nil || stored.Spec.MatchConstraints.MatchPolicy == nil || stored.Spec.MatchConstraints.ResourceRules[0].Scope == nil {
		t.Errorf("the stored policy has no defaults: %+v", stored.Spec)
	}

	// A change by hand differs.
	role, err := cs.RbacV1().ClusterRoles().Get(ctx, "convoy:pod-reader", metav1.GetOptions{})
	must(err)
	role.Rules[0].Resources = append(role.Rules[0].Resources, "secrets")
	_, err = cs.RbacV1().ClusterRoles().Update(ctx, role, metav1.UpdateOptions{})
	must(err)
	observed("the role changed by hand", func(inv *v1alpha1.Inventory) error {
		inv.KubernetesVersion = spec.KubernetesVersion
		drift := profile.Diff(spec, nil, inv)
		if wantDrift := []v1alpha1.ProfileDrift{{Field: "rbac.clusterRoles[convoy:pod-reader]", Want: "present", Have: "differs"}}; !reflect.DeepEqual(drift, wantDrift) {
			return fmt.Errorf("drift %+v, want %+v", drift, wantDrift)
		}
		return nil
	})

	// A field the profile leaves to its default, edited by hand, is put back by the next apply:
	// the applied object writes the defaults out, so Convoy's field manager owns them.
	ignore := admissionregistrationv1.Ignore
	stored.Spec.FailurePolicy = &ignore
	_, err = cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Update(ctx, stored, metav1.UpdateOptions{})
	must(err)
	must(local.ApplyProfileObjects(ctx, cs, profile.Objects(spec.RBAC, spec.AdmissionPolicies)))
	stored, err = cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, "max-replicas", metav1.GetOptions{})
	must(err)
	if fp := stored.Spec.FailurePolicy; fp == nil || *fp != admissionregistrationv1.Fail {
		t.Errorf("failurePolicy after the apply: %v, want Fail put back", fp)
	}

	// The next revision drops a role, binds another, and asks for a role of a name taken.
	next := *spec.DeepCopy()
	next.RBAC.ClusterRoles = []v1alpha1.ClusterRoleTemplate{spec.RBAC.ClusterRoles[0], {Name: "theirs", Rules: spec.RBAC.ClusterRoles[0].Rules}}
	next.RBAC.ClusterRoleBindings[0].RoleRef.Name = "view"
	err = local.ApplyProfileObjects(ctx, cs, profile.Objects(next.RBAC, next.AdmissionPolicies))
	if err == nil || !strings.Contains(err.Error(), `ClusterRole "theirs" exists and is not Convoy's`) {
		t.Errorf("applying over an unlabelled role: %v, want an error that says so", err)
	}
	if _, err := cs.RbacV1().ClusterRoles().Get(ctx, "convoy:old", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the role the profile no longer lists: %v, want it gone", err)
	}
	theirs, err := cs.RbacV1().ClusterRoles().Get(ctx, "theirs", metav1.GetOptions{})
	must(err)
	if theirs.Labels[v1alpha1.LabelProfileManaged] != "" || theirs.Rules[0].Resources[0] != "secrets" {
		t.Errorf("the unlabelled role was changed: %+v", theirs)
	}
	binding, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, "dev-pod-readers", metav1.GetOptions{})
	must(err)
	if binding.RoleRef.Name != "view" {
		t.Errorf("the binding grants %s, want view (replaced)", binding.RoleRef.Name)
	}
	role, err = cs.RbacV1().ClusterRoles().Get(ctx, "convoy:pod-reader", metav1.GetOptions{})
	must(err)
	if len(role.Rules[0].Resources) != 2 {
		t.Errorf("the role changed by hand is %v, want the profile's back", role.Rules[0].Resources)
	}
	observed("the next revision", func(inv *v1alpha1.Inventory) error {
		inv.KubernetesVersion = next.KubernetesVersion
		drift := profile.Diff(next, nil, inv)
		if wantDrift := []v1alpha1.ProfileDrift{{Field: "rbac.clusterRoles[theirs]", Want: "present"}}; !reflect.DeepEqual(drift, wantDrift) {
			return fmt.Errorf("drift %+v, want %+v", drift, wantDrift)
		}
		return nil
	})

	// A profile without them takes its objects away, and only those.
	must(local.ApplyProfileObjects(ctx, cs, profile.Objects(nil, nil)))
	observed("none left", func(inv *v1alpha1.Inventory) error {
		if inv.ProfileObjects == nil || len(inv.ProfileObjects.Items) != 0 {
			return fmt.Errorf("observed %+v, want none", inv.ProfileObjects)
		}
		return nil
	})
	if _, err := cs.RbacV1().ClusterRoles().Get(ctx, "theirs", metav1.GetOptions{}); err != nil {
		t.Errorf("the unlabelled role: %v", err)
	}
}
