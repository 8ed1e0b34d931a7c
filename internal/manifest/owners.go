package manifest

import (
	"slices"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// Several Works of one cluster may list the same member object: two Placements in one
// namespace both carry the Namespace, and both may carry a ConfigMap their workloads share.
// Ownership of a member object is therefore a set, the Works that list it, and the object
// leaves the member only when that set is empty. The keys below say what a Work holds, so that
// the agent can index its Works by them and ask who still holds an object:
//
//   - every object a Work lists holds itself;
//   - a namespaced object, and a Namespace, hold their namespace: a Namespace leaves only when no
//     Work lists anything in it;
//   - every object holds its kind, which keeps the CustomResourceDefinition that serves it.
//
// The keys are derived from the Works' manifests alone, so the agent computes the same answer
// after a restart as before it.
const (
	holdObject    = "object:"
	holdNamespace = "namespace:"
	holdKind      = "kind:"
	holdContent   = "content:"
	releasing     = "releasing:"
)

// Releasing turns the keys of what a Work held into those of what it is letting go of: a Work
// being deleted with deletionPolicy Delete holds nothing, but what it held is on its way out,
// which a CRD's deletion waits for.
func Releasing(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = releasing + k
	}
	return out
}

// Holds lists the keys of what a Work listing objs holds on its member, sorted and each once.
// Manifests that do not decode hold nothing.
func Holds(objs []Object) []string {
	var keys []string
	for _, o := range objs {
		if o.Err != nil {
			continue
		}
		keys = append(keys, holdObject+Key(o.ID), KindKey(schema.GroupKind{Group: o.ID.Group, Kind: o.ID.Kind}))
		if IsNamespace(o.ID) {
			keys = append(keys, holdNamespace+o.ID.Name)
		} else if o.ID.Namespace != "" {
			keys = append(keys, holdNamespace+o.ID.Namespace)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// Contents lists a key per object and content (its hash) a Work listing objs sends, so that
// Works that list the same object with different content can be told apart.
func Contents(objs []Object) []string {
	var keys []string
	for _, o := range objs {
		if o.Err == nil {
			keys = append(keys, ContentKey(o.ID, o.Hash))
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// ContentKey is the key under which Contents lists one object with one content.
func ContentKey(id v1alpha1.ResourceIdentifier, hash string) string {
	return holdContent + Key(id) + "#" + hash
}

// ObjectKeys are the keys under which Holds lists the object id itself. A manifest may leave
// the namespace of a namespaced object empty, which means "default"; both spellings are
// the same object.
func ObjectKeys(id v1alpha1.ResourceIdentifier) []string {
	keys := []string{holdObject + Key(id)}
	switch {
	case id.Namespace == "default":
		alt := id
		alt.Namespace = ""
		keys = append(keys, holdObject+Key(alt))
	case id.Namespace == "" && !IsNamespace(id) && !IsCRD(id):
		alt := id
		alt.Namespace = "default"
		keys = append(keys, holdObject+Key(alt))
	}
	return keys
}

// HeldBy lists the keys any one of which, held by a Work, keeps the object id on the member:
// the object itself; for a Namespace, anything in it; for a CustomResourceDefinition, any
// object of the kind it serves (served; nil when unknown). The agent deletes an object only
// when no Work holds any of them.
func HeldBy(id v1alpha1.ResourceIdentifier, served *schema.GroupKind) []string {
	keys := ObjectKeys(id)
	if IsNamespace(id) {
		keys = append(keys, holdNamespace+id.Name)
	}
	if IsCRD(id) && served != nil {
		keys = append(keys, KindKey(*served))
	}
	return keys
}

// KindKey is the key under which Holds lists a Work that lists objects of a kind.
func KindKey(gk schema.GroupKind) string { return holdKind + gk.Group + "/" + gk.Kind }

// IsNamespace says whether id is a Namespace.
func IsNamespace(id v1alpha1.ResourceIdentifier) bool {
	return id.Group == "" && id.Kind == "Namespace"
}

// IsCRD says whether id is a CustomResourceDefinition.
func IsCRD(id v1alpha1.ResourceIdentifier) bool {
	return id.Group == "apiextensions.k8s.io" && id.Kind == "CustomResourceDefinition"
}

// Container says whether deleting id takes other objects with it: a Namespace everything in
// it, a CustomResourceDefinition every object of its kind. The agent deletes containers only
// after everything else a Work drops is gone.
func Container(id v1alpha1.ResourceIdentifier) bool { return IsNamespace(id) || IsCRD(id) }

// ServedKind reads the group and kind a CustomResourceDefinition serves from its spec, or
// returns false when obj is not one or does not say.
func ServedKind(obj map[string]any) (schema.GroupKind, bool) {
	spec, _ := obj["spec"].(map[string]any)
	names, _ := spec["names"].(map[string]any)
	group, _ := spec["group"].(string)
	kind, _ := names["kind"].(string)
	if kind == "" || group == "" {
		return schema.GroupKind{}, false
	}
	return schema.GroupKind{Group: group, Kind: kind}, true
}
