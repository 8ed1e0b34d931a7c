package profile

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// MemberObjects are the objects a cluster's spec (its profile's) asks its member to hold: its
// default RBAC and its admission policies. Each is labelled v1alpha1.LabelProfileManaged and
// carries its apiVersion and kind, ready to be applied.
type MemberObjects struct {
	ClusterRoles        []rbacv1.ClusterRole
	ClusterRoleBindings []rbacv1.ClusterRoleBinding
	Policies            []admissionregistrationv1.ValidatingAdmissionPolicy
	PolicyBindings      []admissionregistrationv1.ValidatingAdmissionPolicyBinding
}

// Objects are the member objects of a spec's default RBAC and admission policies: a
// ClusterRole and a ClusterRoleBinding per entry, and per admission policy a
// ValidatingAdmissionPolicy and its binding, both of the policy's name, the binding's policyName
// set to it. They are copies, with the API server's defaults written out (normalize), so that
// whoever applies them owns those fields too and puts back an edit of one.
func Objects(rbac *v1alpha1.RBACSettings, policies []v1alpha1.AdmissionPolicy) MemberObjects {
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Labels: map[string]string{v1alpha1.LabelProfileManaged: "true"}}
	}
	rbacType := func(kind string) metav1.TypeMeta {
		return metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: kind}
	}
	admissionType := func(kind string) metav1.TypeMeta {
		return metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: kind}
	}
	var o MemberObjects
	if rbac != nil {
		for _, r := range rbac.ClusterRoles {
			r := r.DeepCopy()
			o.ClusterRoles = append(o.ClusterRoles, rbacv1.ClusterRole{TypeMeta: rbacType(v1alpha1.KindClusterRole), ObjectMeta: meta(r.Name), Rules: r.Rules})
		}
		for _, b := range rbac.ClusterRoleBindings {
			b := b.DeepCopy()
			o.ClusterRoleBindings = append(o.ClusterRoleBindings, rbacv1.ClusterRoleBinding{TypeMeta: rbacType(v1alpha1.KindClusterRoleBinding), ObjectMeta: meta(b.Name), RoleRef: b.RoleRef, Subjects: b.Subjects})
			normalizeClusterRoleBinding(&o.ClusterRoleBindings[len(o.ClusterRoleBindings)-1])
		}
	}
	for _, p := range policies {
		p := p.DeepCopy()
		o.Policies = append(o.Policies, admissionregistrationv1.ValidatingAdmissionPolicy{TypeMeta: admissionType(v1alpha1.KindValidatingAdmissionPolicy), ObjectMeta: meta(p.Name), Spec: p.Policy})
		binding := admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: p.Name, ParamRef: p.Binding.ParamRef,
			MatchResources: p.Binding.MatchResources, ValidationActions: p.Binding.ValidationActions}
		o.PolicyBindings = append(o.PolicyBindings, admissionregistrationv1.ValidatingAdmissionPolicyBinding{TypeMeta: admissionType(v1alpha1.KindValidatingAdmissionPolicyBinding), ObjectMeta: meta(p.Name), Spec: binding})
		normalizePolicy(&o.Policies[len(o.Policies)-1])
		normalizePolicyBinding(&o.PolicyBindings[len(o.PolicyBindings)-1])
	}
	return o
}

// Observed are the objects' kinds, names and digests (the Digest functions), sorted by kind,
// then name: what an agent reports of the member objects it finds (Inventory.ProfileObjects),
// and what Diff compares it with.
func Observed(o MemberObjects) []v1alpha1.ObservedProfileObject {
	var out []v1alpha1.ObservedProfileObject
	add := func(kind, name, digest string) {
		out = append(out, v1alpha1.ObservedProfileObject{Kind: kind, Name: name, Digest: digest})
	}
	for i := range o.ClusterRoles {
		add(v1alpha1.KindClusterRole, o.ClusterRoles[i].Name, DigestClusterRole(&o.ClusterRoles[i]))
	}
	for i := range o.ClusterRoleBindings {
		add(v1alpha1.KindClusterRoleBinding, o.ClusterRoleBindings[i].Name, DigestClusterRoleBinding(&o.ClusterRoleBindings[i]))
	}
	for i := range o.Policies {
		add(v1alpha1.KindValidatingAdmissionPolicy, o.Policies[i].Name, DigestPolicy(&o.Policies[i]))
	}
	for i := range o.PolicyBindings {
		add(v1alpha1.KindValidatingAdmissionPolicyBinding, o.PolicyBindings[i].Name, DigestPolicyBinding(&o.PolicyBindings[i]))
	}
	slices.SortFunc(out, func(a, b v1alpha1.ObservedProfileObject) int {
		return cmp.Or(strings.Compare(a.Kind, b.Kind), strings.Compare(a.Name, b.Name))
	})
	return out
}

// DigestClusterRole is a short hash of a ClusterRole's rules.
func DigestClusterRole(r *rbacv1.ClusterRole) string {
	return digest(r.Rules)
}

// DigestClusterRoleBinding is a short hash of a ClusterRoleBinding's roleRef and subjects, with
// the API server's defaults applied (normalize).
func DigestClusterRoleBinding(b *rbacv1.ClusterRoleBinding) string {
	b = b.DeepCopy()
	normalizeClusterRoleBinding(b)
	return digest(struct {
		RoleRef  rbacv1.RoleRef   `json:"roleRef"`
		Subjects []rbacv1.Subject `json:"subjects"`
	}{b.RoleRef, b.Subjects})
}

// DigestPolicy is a short hash of a ValidatingAdmissionPolicy's spec, with the API server's
// defaults applied (normalize).
func DigestPolicy(p *admissionregistrationv1.ValidatingAdmissionPolicy) string {
	p = p.DeepCopy()
	normalizePolicy(p)
	return digest(p.Spec)
}

// DigestPolicyBinding is a short hash of a ValidatingAdmissionPolicyBinding's spec, with the
// API server's defaults applied (normalize).
func DigestPolicyBinding(b *admissionregistrationv1.ValidatingAdmissionPolicyBinding) string {
	b = b.DeepCopy()
	normalizePolicyBinding(b)
	return digest(b.Spec)
}

// normalizeClusterRoleBinding, normalizePolicy and normalizePolicyBinding apply the defaults the
// API server gives the fields left out (k8s.io/kubernetes pkg/apis/rbac/v1 and
// pkg/apis/admissionregistration/v1, defaults.go and zz_generated.defaults.go), so that an
// object as a profile writes it and as the API server stores it hash the same. Both sides of
// Diff go through them: the profile's wanted objects, and what the agent saw.
func normalizeClusterRoleBinding(b *rbacv1.ClusterRoleBinding) {
	if b.RoleRef.APIGroup == "" {
		b.RoleRef.APIGroup = rbacv1.GroupName
	}
	for i := range b.Subjects {
		s := &b.Subjects[i]
		if s.APIGroup == "" && (s.Kind == rbacv1.UserKind || s.Kind == rbacv1.GroupKind) {
			s.APIGroup = rbacv1.GroupName
		}
	}
}

func normalizePolicy(p *admissionregistrationv1.ValidatingAdmissionPolicy) {
	if p.Spec.FailurePolicy == nil {
		fail := admissionregistrationv1.Fail
		p.Spec.FailurePolicy = &fail
	}
	normalizeMatchResources(p.Spec.MatchConstraints)
}

func normalizePolicyBinding(b *admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
	normalizeMatchResources(b.Spec.MatchResources)
}

func normalizeMatchResources(m *admissionregistrationv1.MatchResources) {
	if m == nil {
		return
	}
	if m.MatchPolicy == nil {
		equivalent := admissionregistrationv1.Equivalent
		m.MatchPolicy = &equivalent
	}
	if m.NamespaceSelector == nil {
		m.NamespaceSelector = &metav1.LabelSelector{}
	}
	if m.ObjectSelector == nil {
		m.ObjectSelector = &metav1.LabelSelector{}
	}
	for _, rules := range [][]admissionregistrationv1.NamedRuleWithOperations{m.ResourceRules, m.ExcludeResourceRules} {
		for i := range rules {
			if rules[i].Scope == nil {
				all := admissionregistrationv1.AllScopes
				rules[i].Scope = &all
			}
		}
	}
}

// digestLength is how many hex digits of the SHA-256 a digest keeps.
const digestLength = 16

// digest is a short hash of v's JSON, in which a null, an empty list and an empty object are
// the same as a field left out (the API server does not keep that difference either).
func digest(v any) string {
	raw, err := json.Marshal(v)
	if err != nil { // the API types always marshal
		panic(fmt.Sprintf("digest: %v", err))
	}
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		panic(fmt.Sprintf("digest: %v", err))
	}
	canonical, err := json.Marshal(prune(tree)) // maps marshal with their keys sorted
	if err != nil {
		panic(fmt.Sprintf("digest: %v", err))
	}
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])[:digestLength]
}

// prune drops the nulls, empty lists and empty objects of a decoded JSON tree; nil when nothing
// is left of it.
func prune(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if e = prune(e); e == nil {
				delete(t, k)
			} else {
				t[k] = e
			}
		}
		if len(t) == 0 {
			return nil
		}
	case []any:
		for i, e := range t {
			t[i] = prune(e)
		}
		if len(t) == 0 {
			return nil
		}
	}
	return v
}

// kubernetesRoles are the ClusterRoles and ClusterRoleBindings (besides system:*) that the API
// server makes and reconciles itself: a profile's object of the same name would fight it.
var kubernetesRoles = []string{"cluster-admin", "admin", "edit", "view"}

// ValidateObjects returns the reasons a spec's default RBAC and admission policies cannot be
// made on a member, each saying what to change: names given, each once, and none of
// Kubernetes' own (system:..., cluster-admin, admin, edit, view); a ClusterRole with rules; a
// ClusterRoleBinding granting a ClusterRole by name, to subjects of a known kind (a
// ServiceAccount with its namespace); a policy with validations (or audit annotations only),
// each with an expression, and the requests it matches; its binding naming it (or nothing:
// Convoy names it), with validation actions, and a parameter exactly when the policy takes one.
func ValidateObjects(rbac *v1alpha1.RBACSettings, policies []v1alpha1.AdmissionPolicy) []string {
	var reasons []string
	bad := func(format string, args ...any) { reasons = append(reasons, fmt.Sprintf(format, args...)) }
	named := func(list, kind, name string, seen map[string]bool) bool {
		switch {
		case name == "":
			bad("spec.%s has an entry without a name; name the %s", list, kind)
			return false
		case seen[name]:
			bad("spec.%s lists %s twice; keep one", list, name)
			return false
		}
		seen[name] = true
		return true
	}
	kubernetes := func(list, kind, name string) {
		if strings.HasPrefix(name, "system:") || slices.Contains(kubernetesRoles, name) {
			bad("spec.%s[%s]: %s is one of Kubernetes' own %ss, which the API server keeps as it wants them; give the profile's %s another name", list, name, name, kind, kind)
		}
	}
	if rbac != nil {
		seen := map[string]bool{}
		for _, r := range rbac.ClusterRoles {
			if !named("rbac.clusterRoles", "ClusterRole", r.Name, seen) {
				continue
			}
			kubernetes("rbac.clusterRoles", "ClusterRole", r.Name)
			if len(r.Rules) == 0 {
				bad("spec.rbac.clusterRoles[%s] has no rules; add one (verbs, apiGroups and resources), or remove the role", r.Name)
			}
		}
		seen = map[string]bool{}
		for _, b := range rbac.ClusterRoleBindings {
			if !named("rbac.clusterRoleBindings", "ClusterRoleBinding", b.Name, seen) {
				continue
			}
			kubernetes("rbac.clusterRoleBindings", "ClusterRoleBinding", b.Name)
			field := "spec.rbac.clusterRoleBindings[" + b.Name + "]"
			ref := b.RoleRef
			if ref.Kind != v1alpha1.KindClusterRole || (ref.APIGroup != "" && ref.APIGroup != rbacv1.GroupName) {
				bad("%s.roleRef is %s %q of group %q: a ClusterRoleBinding grants a ClusterRole; set roleRef.kind to ClusterRole and roleRef.apiGroup to %s", field, cmp.Or(ref.Kind, "a kind left empty"), ref.Name, ref.APIGroup, rbacv1.GroupName)
			}
			if ref.Name == "" {
				bad("%s.roleRef has no name; name the ClusterRole it grants", field)
			}
			for i, sub := range b.Subjects {
				switch {
				case sub.Kind != rbacv1.ServiceAccountKind && sub.Kind != rbacv1.UserKind && sub.Kind != rbacv1.GroupKind:
					bad("%s.subjects[%d] is of kind %q; use ServiceAccount, User or Group", field, i, sub.Kind)
				case sub.Name == "":
					bad("%s.subjects[%d] has no name; name the %s", field, i, sub.Kind)
				case sub.Kind == rbacv1.ServiceAccountKind && sub.Namespace == "":
					bad("%s.subjects[%d] is the ServiceAccount %s without a namespace; set the namespace it is in", field, i, sub.Name)
				}
			}
		}
	}
	seen := map[string]bool{}
	for _, p := range policies {
		if !named("admissionPolicies", "policy", p.Name, seen) {
			continue
		}
		field := "spec.admissionPolicies[" + p.Name + "]"
		if p.Binding.PolicyName != "" && p.Binding.PolicyName != p.Name {
			bad("%s.binding.policyName is %q: Convoy binds the policy of the entry, %s; leave policyName out", field, p.Binding.PolicyName, p.Name)
		}
		if len(p.Policy.Validations) == 0 && len(p.Policy.AuditAnnotations) == 0 {
			bad("%s.policy has no validations; add at least one (a CEL expression that must hold, and its message), or remove the policy", field)
		}
		for i, v := range p.Policy.Validations {
			if strings.TrimSpace(v.Expression) == "" {
				bad("%s.policy.validations[%d] has no expression; write the CEL expression that must hold, for example object.spec.replicas <= 5", field, i)
			}
		}
		if m := p.Policy.MatchConstraints; m == nil || len(m.ResourceRules) == 0 {
			bad("%s.policy.matchConstraints.resourceRules is empty; say which requests it checks (operations, apiGroups, apiVersions, resources)", field)
		}
		if len(p.Binding.ValidationActions) == 0 {
			bad("%s.binding.validationActions is empty; say what a failed validation does, for example [Deny]", field)
		}
		switch {
		case p.Policy.ParamKind != nil && p.Binding.ParamRef == nil:
			bad("%s.policy takes a parameter (paramKind) but its binding names none; set binding.paramRef, or remove paramKind", field)
		case p.Policy.ParamKind == nil && p.Binding.ParamRef != nil:
			bad("%s.binding.paramRef names a parameter the policy does not take; remove paramRef, or set policy.paramKind", field)
		}
	}
	return reasons
}
