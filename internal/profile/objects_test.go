package profile

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// objectTranscript runs the transcripts' commands about a spec's default RBAC and admission
// policies:
//
//	spec                 the lines that follow are a ClusterProfileSpec as YAML (its version
//	                     v1.37.2 unless it says); prints Validate's reasons, or "valid"
//	member [unobserved]  the lines that follow are the member's objects labelled as a profile's,
//	                     as YAML documents (---), as the API server returns them; prints what the
//	                     agent would report of them (Observed). unobserved: the agent could not
//	                     list them
//	diff                 prints Diff of the spec against an inventory that conforms but for the
//	                     member's objects, one drift a line, or "conformant"
type objectTranscript struct {
	spec       v1alpha1.ClusterProfileSpec
	member     MemberObjects
	unobserved bool
}

func (o *objectTranscript) do(t *testing.T, cmd string, input []string) (string, bool) {
	t.Helper()
	_, args := parse(input[0])
	body := strings.Join(input[1:], "\n")
	switch cmd {
	case "spec":
		o.spec = v1alpha1.ClusterProfileSpec{}
		if err := yaml.UnmarshalStrict([]byte(body), &o.spec); err != nil {
			t.Fatalf("transcript: spec: %v", err)
		}
		if o.spec.KubernetesVersion == "" {
			o.spec.KubernetesVersion = "v1.37.2"
		}
		reasons := Validate(o.spec, []string{"v1.37.2"}, shipped)
		if len(reasons) == 0 {
			return "valid", true
		}
		return strings.Join(reasons, "\n"), true
	case "member":
		o.member, o.unobserved = memberObjects(t, body), false
		if _, ok := args["unobserved"]; ok {
			o.unobserved = true
			return "not observed", true
		}
		var lines []string
		for _, ob := range Observed(o.member) {
			lines = append(lines, fmt.Sprintf("%s %s %s", ob.Kind, ob.Name, ob.Digest))
		}
		if len(lines) == 0 {
			return "none", true
		}
		return strings.Join(lines, "\n"), true
	case "diff":
		inv := &v1alpha1.Inventory{KubernetesVersion: o.spec.KubernetesVersion, Namespaces: o.spec.Namespaces}
		if !o.unobserved {
			inv.ProfileObjects = &v1alpha1.ObservedProfileObjects{Items: Observed(o.member)}
		}
		drift := Diff(o.spec, shipped, inv)
		if len(drift) == 0 {
			return "conformant", true
		}
		var lines []string
		for _, d := range drift {
			lines = append(lines, fmt.Sprintf("%s want=%q have=%q", d.Field, d.Want, d.Have))
		}
		return strings.Join(lines, "\n"), true
	}
	return "", false
}

// memberObjects reads YAML documents of ClusterRoles, ClusterRoleBindings,
// ValidatingAdmissionPolicies and their bindings.
func memberObjects(t *testing.T, body string) MemberObjects {
	t.Helper()
	var o MemberObjects
	for _, doc := range strings.Split(body, "\n---") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("transcript: member: %v", err)
		}
		var err error
		switch tm.Kind {
		case v1alpha1.KindClusterRole:
			var r rbacv1.ClusterRole
			err = yaml.UnmarshalStrict([]byte(doc), &r)
			o.ClusterRoles = append(o.ClusterRoles, r)
		case v1alpha1.KindClusterRoleBinding:
			var b rbacv1.ClusterRoleBinding
			err = yaml.UnmarshalStrict([]byte(doc), &b)
			o.ClusterRoleBindings = append(o.ClusterRoleBindings, b)
		case v1alpha1.KindValidatingAdmissionPolicy:
			var p admissionregistrationv1.ValidatingAdmissionPolicy
			err = yaml.UnmarshalStrict([]byte(doc), &p)
			o.Policies = append(o.Policies, p)
		case v1alpha1.KindValidatingAdmissionPolicyBinding:
			var b admissionregistrationv1.ValidatingAdmissionPolicyBinding
			err = yaml.UnmarshalStrict([]byte(doc), &b)
			o.PolicyBindings = append(o.PolicyBindings, b)
		default:
			t.Fatalf("transcript: member: kind %q", tm.Kind)
		}
		if err != nil {
			t.Fatalf("transcript: member: %v", err)
		}
	}
	return o
}

// The objects of a spec are labelled, typed, named as the entries, the binding's policyName
// set, and copies.
func TestObjects(t *testing.T) {
	t.Parallel()
	rbac := &v1alpha1.RBACSettings{
		ClusterRoles:        []v1alpha1.ClusterRoleTemplate{{Name: "reader", Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods"}}}}},
		ClusterRoleBindings: []v1alpha1.ClusterRoleBindingTemplate{{Name: "readers", RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "reader"}, Subjects: []rbacv1.Subject{{Kind: "Group", Name: "dev"}}}},
	}
	policies := []v1alpha1.AdmissionPolicy{{Name: "replicas", Policy: admissionregistrationv1.ValidatingAdmissionPolicySpec{
		Validations: []admissionregistrationv1.Validation{{Expression: "object.spec.replicas <= 5"}},
	}}}
	o := Objects(rbac, policies)
	if len(o.ClusterRoles) != 1 || len(o.ClusterRoleBindings) != 1 || len(o.Policies) != 1 || len(o.PolicyBindings) != 1 {
		t.Fatalf("objects %+v, want one of each kind", o)
	}
	for _, m := range []struct {
		tm   metav1.TypeMeta
		meta metav1.ObjectMeta
		kind string
	}{
		{o.ClusterRoles[0].TypeMeta, o.ClusterRoles[0].ObjectMeta, "ClusterRole"},
		{o.ClusterRoleBindings[0].TypeMeta, o.ClusterRoleBindings[0].ObjectMeta, "ClusterRoleBinding"},
		{o.Policies[0].TypeMeta, o.Policies[0].ObjectMeta, "ValidatingAdmissionPolicy"},
		{o.PolicyBindings[0].TypeMeta, o.PolicyBindings[0].ObjectMeta, "ValidatingAdmissionPolicyBinding"},
	} {
		if m.tm.Kind != m.kind || m.tm.APIVersion == "" || m.meta.Labels[v1alpha1.LabelProfileManaged] != "true" {
			t.Errorf("%s: %+v %+v, want its kind, apiVersion and the label", m.kind, m.tm, m.meta)
		}
	}
	if got := o.PolicyBindings[0].Spec.PolicyName; got != "replicas" {
		t.Errorf("the binding's policyName %q, want replicas", got)
	}
	o.ClusterRoles[0].Rules[0].Verbs[0] = "delete"
	o.Policies[0].Spec.Validations[0].Expression = "true"
	if rbac.ClusterRoles[0].Rules[0].Verbs[0] != "get" || policies[0].Policy.Validations[0].Expression != "object.spec.replicas <= 5" {
		t.Error("Objects' objects share memory with the spec")
	}
	if policies[0].Binding.PolicyName != "" {
		t.Error("Objects set the spec's policyName")
	}
}

// A digest does not change with what the API server adds (its defaults, metadata, status),
// with nil against empty, or with the object it was taken from; it changes with the content.
func TestDigests(t *testing.T) {
	t.Parallel()
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
		MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{"CREATE"},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments"}},
		}}}},
		Validations: []admissionregistrationv1.Validation{{Expression: "object.spec.replicas <= 5"}},
	}}
	stored := policy.DeepCopy()
	stored.Name, stored.Generation, stored.UID = "replicas", 1, "u-1"
	stored.Status.ObservedGeneration = 1
	fail, equivalent, all := admissionregistrationv1.Fail, admissionregistrationv1.Equivalent, admissionregistrationv1.AllScopes
	stored.Spec.FailurePolicy = &fail
	stored.Spec.MatchConstraints.MatchPolicy = &equivalent
	stored.Spec.MatchConstraints.NamespaceSelector = &metav1.LabelSelector{}
	stored.Spec.MatchConstraints.ObjectSelector = &metav1.LabelSelector{}
	stored.Spec.MatchConstraints.ResourceRules[0].Scope = &all
	stored.Spec.MatchConstraints.ExcludeResourceRules = []admissionregistrationv1.NamedRuleWithOperations{}
	before := policy.DeepCopy()
	if a, b := DigestPolicy(policy), DigestPolicy(stored); a != b || len(a) != digestLength {
		t.Errorf("a policy as written %s and as stored %s", a, b)
	}
	if !reflect.DeepEqual(policy, before) {
		t.Error("DigestPolicy changed its argument")
	}
	ignore := admissionregistrationv1.Ignore
	stored.Spec.FailurePolicy = &ignore
	if DigestPolicy(policy) == DigestPolicy(stored) {
		t.Error("failurePolicy Ignore hashes as Fail")
	}

	binding := &rbacv1.ClusterRoleBinding{RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "view"},
		Subjects: []rbacv1.Subject{{Kind: "Group", Name: "dev"}, {Kind: "ServiceAccount", Name: "ci", Namespace: "ci"}}}
	storedBinding := binding.DeepCopy()
	storedBinding.RoleRef.APIGroup = rbacv1.GroupName
	storedBinding.Subjects[0].APIGroup = rbacv1.GroupName
	if DigestClusterRoleBinding(binding) != DigestClusterRoleBinding(storedBinding) {
		t.Error("a binding's defaulted apiGroups change its digest")
	}
	storedBinding.Subjects = storedBinding.Subjects[:1]
	if DigestClusterRoleBinding(binding) == DigestClusterRoleBinding(storedBinding) {
		t.Error("a subject fewer hashes the same")
	}

	role := &rbacv1.ClusterRole{Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, Resources: []string{"pods"}}}}
	storedRole := role.DeepCopy()
	storedRole.Rules[0].APIGroups = []string{}
	storedRole.Labels = map[string]string{"a": "b"}
	if DigestClusterRole(role) != DigestClusterRole(storedRole) {
		t.Error("an empty list against none, or labels, change a role's digest")
	}
	storedRole.Rules[0].Verbs = []string{"get", "list"}
	if DigestClusterRole(role) == DigestClusterRole(storedRole) {
		t.Error("a verb more hashes the same")
	}
	// The kinds' digests come from their content only: the same rules, the same digest.
	if got := Observed(MemberObjects{ClusterRoles: []rbacv1.ClusterRole{*role, *storedRole}}); len(got) != 2 || got[0].Kind != "ClusterRole" {
		t.Errorf("Observed %+v", got)
	}
}

func TestValidateObjects(t *testing.T) {
	t.Parallel()
	rule := []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods"}}}
	policy := func(name string, change func(*v1alpha1.AdmissionPolicy)) v1alpha1.AdmissionPolicy {
		p := v1alpha1.AdmissionPolicy{Name: name,
			Policy: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{}}},
				Validations:      []admissionregistrationv1.Validation{{Expression: "true"}},
			},
			Binding: v1alpha1.AdmissionPolicyBindingSpec{ValidationActions: []admissionregistrationv1.ValidationAction{"Deny"}},
		}
		if change != nil {
			change(&p)
		}
		return p
	}
	for _, tc := range []struct {
		name     string
		rbac     *v1alpha1.RBACSettings
		policies []v1alpha1.AdmissionPolicy
		want     []string // substrings of the reasons, in order
	}{
		{"fine", &v1alpha1.RBACSettings{
			ClusterRoles:        []v1alpha1.ClusterRoleTemplate{{Name: "convoy:reader", Rules: rule}},
			ClusterRoleBindings: []v1alpha1.ClusterRoleBindingTemplate{{Name: "readers", RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"}, Subjects: []rbacv1.Subject{{Kind: "Group", Name: "dev"}, {Kind: "ServiceAccount", Name: "ci", Namespace: "ci"}}}},
		}, []v1alpha1.AdmissionPolicy{policy("a", nil), policy("b", func(p *v1alpha1.AdmissionPolicy) { p.Binding.PolicyName = "b" })}, nil},
		{"duplicates and Kubernetes' own", &v1alpha1.RBACSettings{
			ClusterRoles:        []v1alpha1.ClusterRoleTemplate{{Name: "reader", Rules: rule}, {Name: "reader", Rules: rule}, {Name: "system:node", Rules: rule}, {Name: "view", Rules: rule}},
			ClusterRoleBindings: []v1alpha1.ClusterRoleBindingTemplate{{Name: "cluster-admin", RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "x"}}},
		}, []v1alpha1.AdmissionPolicy{policy("a", nil), policy("a", nil)}, []string{
			"spec.rbac.clusterRoles lists reader twice; keep one",
			"spec.rbac.clusterRoles[system:node]: system:node is one of Kubernetes' own ClusterRoles",
			"spec.rbac.clusterRoles[view]: view is one of Kubernetes' own ClusterRoles",
			"spec.rbac.clusterRoleBindings[cluster-admin]: cluster-admin is one of Kubernetes' own ClusterRoleBindings",
			"spec.admissionPolicies lists a twice; keep one",
		}},
		{"a role without rules, a binding of a Role, odd subjects", &v1alpha1.RBACSettings{
			ClusterRoles: []v1alpha1.ClusterRoleTemplate{{Name: "empty"}, {Rules: rule}},
			ClusterRoleBindings: []v1alpha1.ClusterRoleBindingTemplate{{Name: "b", RoleRef: rbacv1.RoleRef{Kind: "Role", Name: "r"},
				Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "ci"}, {Kind: "Robot", Name: "r2"}, {Kind: "User"}}}},
		}, nil, []string{
			"spec.rbac.clusterRoles[empty] has no rules; add one",
			"spec.rbac.clusterRoles has an entry without a name; name the ClusterRole",
			`spec.rbac.clusterRoleBindings[b].roleRef is Role "r" of group "": a ClusterRoleBinding grants a ClusterRole; set roleRef.kind to ClusterRole`,
			"subjects[0] is the ServiceAccount ci without a namespace; set the namespace",
			`subjects[1] is of kind "Robot"; use ServiceAccount, User or Group`,
			"subjects[2] has no name; name the User",
		}},
		{"policies", nil, []v1alpha1.AdmissionPolicy{
			policy("other", func(p *v1alpha1.AdmissionPolicy) { p.Binding.PolicyName = "another" }),
			policy("empty", func(p *v1alpha1.AdmissionPolicy) {
				p.Policy.Validations, p.Policy.MatchConstraints, p.Binding.ValidationActions = nil, nil, nil
			}),
			policy("blank", func(p *v1alpha1.AdmissionPolicy) { p.Policy.Validations[0].Expression = " " }),
			policy("audit", func(p *v1alpha1.AdmissionPolicy) {
				p.Policy.Validations = nil
				p.Policy.AuditAnnotations = []admissionregistrationv1.AuditAnnotation{{Key: "k", ValueExpression: "'v'"}}
			}),
			policy("params", func(p *v1alpha1.AdmissionPolicy) {
				p.Policy.ParamKind = &admissionregistrationv1.ParamKind{APIVersion: "v1", Kind: "ConfigMap"}
			}),
		}, []string{
			`spec.admissionPolicies[other].binding.policyName is "another": Convoy binds the policy of the entry, other; leave policyName out`,
			"spec.admissionPolicies[empty].policy has no validations; add at least one",
			"spec.admissionPolicies[empty].policy.matchConstraints.resourceRules is empty",
			"spec.admissionPolicies[empty].binding.validationActions is empty; say what a failed validation does, for example [Deny]",
			"spec.admissionPolicies[blank].policy.validations[0] has no expression",
			"spec.admissionPolicies[params].policy takes a parameter (paramKind) but its binding names none",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := ValidateObjects(tc.rbac, tc.policies)
			if len(got) != len(tc.want) {
				t.Fatalf("got %q, want reasons saying %q", got, tc.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tc.want[i]) {
					t.Errorf("reason %d: %q does not say %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

// Diff judges the member's objects only when the agent listed them, and, from a full list,
// only what is there.
func TestDiffObjectsFailStatic(t *testing.T) {
	t.Parallel()
	spec := v1alpha1.ClusterProfileSpec{KubernetesVersion: "v1.37.2", RBAC: &v1alpha1.RBACSettings{
		ClusterRoles: []v1alpha1.ClusterRoleTemplate{{Name: "reader", Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, Resources: []string{"pods"}}}}},
	}}
	inv := &v1alpha1.Inventory{KubernetesVersion: "v1.37.2"}
	if d := Diff(spec, shipped, inv); d != nil {
		t.Errorf("not listed: %+v, want no drift", d)
	}
	inv.ProfileObjects = &v1alpha1.ObservedProfileObjects{}
	if d := Diff(spec, shipped, inv); len(d) != 1 || d[0].Field != "rbac.clusterRoles[reader]" || d[0].Want != "present" || d[0].Have != "" {
		t.Errorf("listed, none: %+v, want reader absent", d)
	}
	for i := range inventoryProfileObjects {
		inv.ProfileObjects.Items = append(inv.ProfileObjects.Items, v1alpha1.ObservedProfileObject{Kind: "ClusterRole", Name: fmt.Sprintf("zz-%03d", i), Digest: "x"})
	}
	d := Diff(spec, shipped, inv)
	if len(d) != inventoryProfileObjects || slices.ContainsFunc(d, func(d v1alpha1.ProfileDrift) bool { return d.Field == "rbac.clusterRoles[reader]" }) {
		t.Errorf("a full list: %d drifts, want each of the others present and reader not judged", len(d))
	}
}
