package manifest

import (
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// TestHolds: what a Work holds, and what keeps an object, meet exactly where the rules say:
// an object is kept by a Work that lists it, a Namespace by anything in it, a CRD by objects of
// its kind, and nothing by a Work that lists something else.
func TestHolds(t *testing.T) {
	work := func(docs ...string) []string {
		var raw []runtime.RawExtension
		for _, d := range docs {
			raw = append(raw, runtime.RawExtension{Raw: []byte(d)})
		}
		return Holds(Decode(raw))
	}
	cm := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"namespace":"shop","name":"settings"}}`
	cmNoNS := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"settings"}}`
	ns := `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop"}}`
	widget := `{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"namespace":"shop","name":"w"}}`
	id := func(group, kind, namespace, name string) v1alpha1.ResourceIdentifier {
		return v1alpha1.ResourceIdentifier{Group: group, Version: "v1", Kind: kind, Namespace: namespace, Name: name}
	}
	widgets := schema.GroupKind{Group: "example.com", Kind: "Widget"}
	cases := []struct {
		name   string
		holds  []string // what the other Work holds
		object v1alpha1.ResourceIdentifier
		served *schema.GroupKind
		kept   bool
	}{
		{"the same ConfigMap", work(cm), id("", "ConfigMap", "shop", "settings"), nil, true},
		{"another ConfigMap", work(cm), id("", "ConfigMap", "shop", "other"), nil, false},
		{"the same ConfigMap in another namespace", work(cm), id("", "ConfigMap", "prod", "settings"), nil, false},
		{"no namespace means default", work(cmNoNS), id("", "ConfigMap", "default", "settings"), nil, true},
		{"a Namespace with something in it", work(cm), id("", "Namespace", "", "shop"), nil, true},
		{"a Namespace listed itself", work(ns), id("", "Namespace", "", "shop"), nil, true},
		{"another Namespace", work(cm), id("", "Namespace", "", "prod"), nil, false},
		{"a CRD with an object of its kind", work(widget), id("apiextensions.k8s.io", "CustomResourceDefinition", "", "widgets.example.com"), &widgets, true},
		{"a CRD whose kind is unknown", work(widget), id("apiextensions.k8s.io", "CustomResourceDefinition", "", "widgets.example.com"), nil, false},
		{"a CRD of another kind", work(cm), id("apiextensions.k8s.io", "CustomResourceDefinition", "", "widgets.example.com"), &widgets, false},
		{"a Work that lists nothing", work(), id("", "ConfigMap", "shop", "settings"), nil, false},
		{"a broken manifest holds nothing", work(`{"kind":"ConfigMap"}`), id("", "ConfigMap", "", "settings"), nil, false},
	}
	for _, tc := range cases {
		kept := slices.ContainsFunc(HeldBy(tc.object, tc.served), func(k string) bool { return slices.Contains(tc.holds, k) })
		if kept != tc.kept {
			t.Errorf("%s: kept = %v, want %v (holds %v, held by %v)", tc.name, kept, tc.kept, tc.holds, HeldBy(tc.object, tc.served))
		}
		// What a Work being deleted lets go of keeps nothing.
		if slices.ContainsFunc(HeldBy(tc.object, tc.served), func(k string) bool { return slices.Contains(Releasing(tc.holds), k) }) {
			t.Errorf("%s: a releasing Work keeps it", tc.name)
		}
	}
}
