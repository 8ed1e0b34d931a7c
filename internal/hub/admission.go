package hub

import (
	"context"
	"fmt"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// The admission policies that refuse a Kubernetes version the hub has no binaries for, in a
// Cluster and in a ClusterProfile.
const (
	versionPolicy        = "convoy-cluster-kubernetes-version"
	profileVersionPolicy = "convoy-profile-kubernetes-version"
)

// publishAuthentication keeps the AuthenticationConfiguration of the hub's OIDC issuers in the
// ConfigMap AuthenticationConfigMap, for imported members' API servers (`convoy cluster
// authentication-config`), or deletes it when the hub trusts none.
func publishAuthentication(ctx context.Context, c client.Client, config []byte) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.SystemNamespace, Name: v1alpha1.AuthenticationConfigMap}}
	if config == nil {
		if err := c.Delete(ctx, cm); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete the authentication configuration: %w", err)
		}
		return nil
	}
	if _, err := controllerutil.CreateOrUpdate(ctx, c, cm, func() error {
		cm.Data = map[string]string{v1alpha1.AuthenticationKey: string(config)}
		return nil
	}); err != nil {
		return fmt.Errorf("publish the authentication configuration: %w", err)
	}
	return nil
}

// installAdmission creates the convoy-system namespace, records the Kubernetes versions the
// hub has binaries for, and installs ValidatingAdmissionPolicies that refuse a local Cluster
// or a ClusterProfile asking for any other version. The API server itself enforces it, so kubectl, helm and
// convoy all get the same refusal and nothing is stored.
func installAdmission(ctx context.Context, c client.Client, versions []string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.SystemNamespace}}
	if _, err := controllerutil.CreateOrUpdate(ctx, c, ns, func() error { return nil }); err != nil {
		return fmt.Errorf("create namespace %s: %w", ns.Name, err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: v1alpha1.VersionsConfigMap}}
	if _, err := controllerutil.CreateOrUpdate(ctx, c, cm, func() error {
		cm.Data = map[string]string{v1alpha1.VersionsKey: strings.Join(versions, ",")}
		return nil
	}); err != nil {
		return fmt.Errorf("record available versions: %w", err)
	}

	// Only a version the request sets or changes is checked, so a cluster or profile made
	// when its version was available can still be changed otherwise, or deleted.
	if err := installVersionPolicy(ctx, c, versionPolicy, "clusters", admissionv1.Validation{
		Expression: `object.spec.provider != 'local' || !has(object.spec.kubernetesVersion) ||
  (oldObject != null && has(oldObject.spec.kubernetesVersion) && oldObject.spec.kubernetesVersion == object.spec.kubernetesVersion) ||
  object.spec.kubernetesVersion in params.data.versions.split(',')`,
		MessageExpression: `'spec.kubernetesVersion: Kubernetes ' + object.spec.kubernetesVersion + ' is not available on this hub (available: ' + params.data.versions + '); pick one of those'`,
		Reason:            ptr.To(metav1.StatusReasonInvalid),
	}); err != nil {
		return err
	}
	if err := installVersionPolicy(ctx, c, profileVersionPolicy, "clusterprofiles", admissionv1.Validation{
		Expression: `(oldObject != null && oldObject.spec.kubernetesVersion == object.spec.kubernetesVersion) ||
  object.spec.kubernetesVersion in params.data.versions.split(',')`,
		MessageExpression: `'spec.kubernetesVersion: Kubernetes ' + object.spec.kubernetesVersion + ' is not available on this hub (available: ' + params.data.versions + '); no cluster could be built from this profile'`,
		Reason:            ptr.To(metav1.StatusReasonInvalid),
	}); err != nil {
		return err
	}
	return waitAdmission(ctx, c)
}

// installVersionPolicy installs a ValidatingAdmissionPolicy on convoy.dev's resource, with the
// versions ConfigMap as its parameter, and its binding.
func installVersionPolicy(ctx context.Context, c client.Client, name, resource string, v admissionv1.Validation) error {
	policy := &admissionv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := controllerutil.CreateOrUpdate(ctx, c, policy, func() error {
		policy.Spec = admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionv1.Fail),
			ParamKind:     &admissionv1.ParamKind{APIVersion: "v1", Kind: "ConfigMap"},
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
					Rule:       admissionv1.Rule{APIGroups: []string{"convoy.dev"}, APIVersions: []string{"*"}, Resources: []string{resource}},
				},
			}}},
			Validations: []admissionv1.Validation{v},
		}
		return nil
	}); err != nil {
		return fmt.Errorf("install admission policy %s: %w", name, err)
	}
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := controllerutil.CreateOrUpdate(ctx, c, binding, func() error {
		binding.Spec = admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ParamRef:          &admissionv1.ParamRef{Name: v1alpha1.VersionsConfigMap, Namespace: v1alpha1.SystemNamespace, ParameterNotFoundAction: ptr.To(admissionv1.DenyAction)},
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
		}
		return nil
	}); err != nil {
		return fmt.Errorf("install admission policy binding %s: %w", name, err)
	}
	return nil
}

// waitAdmission returns once the API server enforces the version policies: until it has loaded
// a policy, its binding and their ConfigMap, it would let any version through, or refuse every
// object ("not yet synced"). A dry run of a Cluster and of a ClusterProfile with a version no
// hub has tells.
func waitAdmission(ctx context.Context, c client.Client) error {
	probes := []client.Object{
		&v1alpha1.Cluster{
			ObjectMeta: metav1.ObjectMeta{Name: "convoy-admission-probe"},
			Spec:       v1alpha1.ClusterSpec{Provider: v1alpha1.ProviderLocal, KubernetesVersion: "v0.0.0"},
		},
		&v1alpha1.ClusterProfile{
			ObjectMeta: metav1.ObjectMeta{Name: "convoy-admission-probe"},
			Spec:       v1alpha1.ClusterProfileSpec{KubernetesVersion: "v1.0.0"},
		},
	}
	deadline := time.Now().Add(time.Minute)
	for _, probe := range probes {
		for {
			err := c.Create(ctx, probe.DeepCopyObject().(client.Object), client.DryRunAll)
			if err != nil && strings.Contains(err.Error(), "is not available on this hub") {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the API server does not enforce the admission policies on %T after a minute (last answer to a probe: %v)", probe, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}
