package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/profile"
)

// ApplyProfileObjects makes the member's default RBAC and admission policies those of o
// (profile.Objects of the cluster's spec, or its profile's). Each object is applied server-side
// with the field manager v1alpha1.ProfileFieldManager, forced, and carries the label
// v1alpha1.LabelProfileManaged; a labelled object that o does not hold is deleted, bindings
// before what they bind. An object without the label is never changed or deleted: one in the
// way of o's is an error that says so. A kind that cannot be listed is neither applied nor
// pruned (fail static): the error says which. The local runtime calls it in its add-on loop;
// tests call it to make a member as the runtime does.
func ApplyProfileObjects(ctx context.Context, cs kubernetes.Interface, o profile.MemberObjects) error {
	kinds, err := profileKinds(cs, o)
	if err != nil {
		return err
	}
	return syncKinds(ctx, kinds)
}

// syncKinds lists, applies and deletes the objects of each kind, in order (ApplyProfileObjects).
func syncKinds(ctx context.Context, kinds []profileKind) error {
	var errs []error
	removals := make([][]existingObject, len(kinds))
	for i, k := range kinds {
		have, err := k.list(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("list the %s objects (none applied or deleted): %w", k.kind, err))
			continue
		}
		p := planObjects(k.want, have)
		for _, name := range p.foreign {
			errs = append(errs, fmt.Errorf("%s %q exists and is not Convoy's (no label %s=true, or not applied by %s), so Convoy leaves it alone; delete it, or give the profile's %s another name", k.kind, name, v1alpha1.LabelProfileManaged, v1alpha1.ProfileFieldManager, k.kind))
		}
		for _, old := range p.replace {
			// A field the API server does not let change (a binding's roleRef): the object goes,
			// and comes back as wanted.
			if err := k.delete(ctx, old.name, old.uid); err != nil {
				errs = append(errs, fmt.Errorf("replace %s %s: %w", k.kind, old.name, err))
			}
		}
		for _, w := range p.apply {
			if err := k.apply(ctx, w.name, w.body); err != nil {
				errs = append(errs, fmt.Errorf("apply %s %s: %w", k.kind, w.name, err))
			}
		}
		removals[i] = p.remove
	}
	// Bindings go before the roles and policies they bind.
	for i := len(kinds) - 1; i >= 0; i-- {
		for _, old := range removals[i] {
			if err := kinds[i].delete(ctx, old.name, old.uid); err != nil {
				errs = append(errs, fmt.Errorf("delete %s %s, which the profile no longer lists: %w", kinds[i].kind, old.name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// existingObject is one object of a kind on the member.
type existingObject struct {
	name     string
	uid      types.UID
	labelled bool   // Convoy's: carries v1alpha1.LabelProfileManaged=true and its field manager applied it
	fixed    string // the fields the API server does not let change (a binding's roleRef), as text
}

// wantedObject is one object of a kind to apply.
type wantedObject struct {
	name  string
	fixed string // as existingObject's
	body  []byte // the object to apply, as JSON
}

// objectPlan is what one pass does with the objects of one kind.
type objectPlan struct {
	// apply are the wanted objects to apply, in the spec's order (those replaced too).
	apply []wantedObject
	// replace are labelled objects whose unchangeable fields differ from the wanted one's:
	// deleted before they are applied again.
	replace []existingObject
	// remove are labelled objects not wanted: deleted.
	remove []existingObject
	// foreign are the names of wanted objects that exist without the label: left alone.
	foreign []string
}

// planObjects decides what to do with one kind's objects, from the wanted ones and all those
// the member has (a complete list: an error listing them decides nothing). Only labelled
// objects are applied over, replaced or removed.
func planObjects(want []wantedObject, have []existingObject) objectPlan {
	var p objectPlan
	for _, w := range want {
		i := slices.IndexFunc(have, func(e existingObject) bool { return e.name == w.name })
		switch {
		case i < 0:
			p.apply = append(p.apply, w)
		case !have[i].labelled:
			p.foreign = append(p.foreign, w.name)
		default:
			if have[i].fixed != w.fixed {
				p.replace = append(p.replace, have[i])
			}
			p.apply = append(p.apply, w)
		}
	}
	for _, e := range have {
		if e.labelled && !slices.ContainsFunc(want, func(w wantedObject) bool { return w.name == e.name }) {
			p.remove = append(p.remove, e)
		}
	}
	return p
}

// profileKind is how one kind's objects are listed, applied and deleted.
type profileKind struct {
	kind   string
	want   []wantedObject
	list   func(context.Context) ([]existingObject, error)
	apply  func(ctx context.Context, name string, body []byte) error
	delete func(ctx context.Context, name string, uid types.UID) error
}

// typedClient is what a kind's typed client offers that profileKinds uses.
type typedClient[O, L any] interface {
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (O, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// kindOf is how the objects of one kind are listed (each as items says), applied server-side
// by Convoy's field manager, and deleted (only the object listed: not one made again meanwhile,
// perhaps by someone else).
func kindOf[O, L any](kind string, c typedClient[O, L], items func(L) []existingObject) profileKind {
	applyOpts := metav1.PatchOptions{FieldManager: v1alpha1.ProfileFieldManager, Force: ptr.To(true)}
	return profileKind{
		kind: kind,
		list: func(ctx context.Context) ([]existingObject, error) {
			l, err := c.List(ctx, metav1.ListOptions{})
			if err != nil {
				return nil, err
			}
			return items(l), nil
		},
		apply: func(ctx context.Context, name string, body []byte) error {
			_, err := c.Patch(ctx, name, types.ApplyPatchType, body, applyOpts)
			return err
		},
		delete: func(ctx context.Context, name string, uid types.UID) error {
			err := c.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
			if apierrors.IsNotFound(err) || apierrors.IsConflict(err) { // gone, or another object now
				return nil
			}
			return err
		},
	}
}

// existing is an object as the plan sees it. Convoy's own are labelled and applied by its field
// manager (a copy of one, label and all, made by someone else is not).
func existing(m metav1.ObjectMeta) existingObject {
	ours := m.Labels[v1alpha1.LabelProfileManaged] == "true" && slices.ContainsFunc(m.ManagedFields, func(f metav1.ManagedFieldsEntry) bool {
		return f.Manager == v1alpha1.ProfileFieldManager && f.Operation == metav1.ManagedFieldsOperationApply
	})
	return existingObject{name: m.Name, uid: m.UID, labelled: ours}
}

// profileKinds are the kinds of o's objects, in the order they are applied: what is bound
// before its bindings.
func profileKinds(cs kubernetes.Interface, o profile.MemberObjects) ([]profileKind, error) {
	var err error
	want := func(name, fixed string, obj any) wantedObject {
		body, merr := json.Marshal(obj)
		err = errors.Join(err, merr)
		return wantedObject{name: name, fixed: fixed, body: body}
	}
	rbac, admission := cs.RbacV1(), cs.AdmissionregistrationV1()
	kinds := []profileKind{
		kindOf(v1alpha1.KindClusterRole, rbac.ClusterRoles(), func(l *rbacv1.ClusterRoleList) (out []existingObject) {
			for _, o := range l.Items {
				out = append(out, existing(o.ObjectMeta))
			}
			return out
		}),
		kindOf(v1alpha1.KindValidatingAdmissionPolicy, admission.ValidatingAdmissionPolicies(), func(l *admissionregistrationv1.ValidatingAdmissionPolicyList) (out []existingObject) {
			for _, o := range l.Items {
				out = append(out, existing(o.ObjectMeta))
			}
			return out
		}),
		kindOf(v1alpha1.KindClusterRoleBinding, rbac.ClusterRoleBindings(), func(l *rbacv1.ClusterRoleBindingList) (out []existingObject) {
			for _, o := range l.Items {
				e := existing(o.ObjectMeta)
				e.fixed = roleRefText(o.RoleRef.APIGroup, o.RoleRef.Kind, o.RoleRef.Name)
				out = append(out, e)
			}
			return out
		}),
		kindOf(v1alpha1.KindValidatingAdmissionPolicyBinding, admission.ValidatingAdmissionPolicyBindings(), func(l *admissionregistrationv1.ValidatingAdmissionPolicyBindingList) (out []existingObject) {
			for _, o := range l.Items {
				out = append(out, existing(o.ObjectMeta))
			}
			return out
		}),
	}
	for _, r := range o.ClusterRoles {
		kinds[0].want = append(kinds[0].want, want(r.Name, "", r))
	}
	for _, p := range o.Policies {
		kinds[1].want = append(kinds[1].want, want(p.Name, "", p))
	}
	for _, b := range o.ClusterRoleBindings {
		kinds[2].want = append(kinds[2].want, want(b.Name, roleRefText(b.RoleRef.APIGroup, b.RoleRef.Kind, b.RoleRef.Name), b))
	}
	for _, b := range o.PolicyBindings {
		kinds[3].want = append(kinds[3].want, want(b.Name, "", b))
	}
	if err != nil {
		return nil, fmt.Errorf("encode the profile's objects: %w", err)
	}
	return kinds, nil
}

// roleRefText is a binding's roleRef as text, its API group as the API server defaults it.
func roleRefText(group, kind, name string) string {
	if group == "" {
		group = "rbac.authorization.k8s.io"
	}
	return group + "/" + kind + "/" + name
}
