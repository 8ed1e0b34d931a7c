package local

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

func TestPlanObjects(t *testing.T) {
	t.Parallel()
	w := func(name, fixed string) wantedObject { return wantedObject{name: name, fixed: fixed} }
	e := func(name string, labelled bool, fixed string) existingObject {
		return existingObject{name: name, uid: types.UID("uid-" + name), labelled: labelled, fixed: fixed}
	}
	names := func(ws []wantedObject) []string {
		var out []string
		for _, w := range ws {
			out = append(out, w.name)
		}
		return out
	}
	existing := func(es []existingObject) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.name)
		}
		return out
	}
	for _, tc := range []struct {
		name                            string
		want                            []wantedObject
		have                            []existingObject
		apply, replace, remove, foreign []string
	}{
		{name: "a new member: everything applied", want: []wantedObject{w("a", ""), w("b", "")},
			have:  []existingObject{e("cluster-admin", false, "")},
			apply: []string{"a", "b"}},
		{name: "its own applied again, in the spec's order", want: []wantedObject{w("b", ""), w("a", "")},
			have:  []existingObject{e("a", true, ""), e("b", true, "")},
			apply: []string{"b", "a"}},
		{name: "a labelled one no longer listed: removed; an unlabelled one never", want: []wantedObject{w("a", "")},
			have:  []existingObject{e("a", true, ""), e("old", true, ""), e("view", false, "")},
			apply: []string{"a"}, remove: []string{"old"}},
		{name: "nothing wanted: every labelled one removed", want: nil,
			have:   []existingObject{e("old", true, ""), e("view", false, ""), e("older", true, "")},
			remove: []string{"old", "older"}},
		{name: "an unlabelled one in the way: left alone", want: []wantedObject{w("view", ""), w("a", "")},
			have:  []existingObject{e("view", false, "")},
			apply: []string{"a"}, foreign: []string{"view"}},
		{name: "an unchangeable field changed: replaced", want: []wantedObject{w("readers", "rbac/ClusterRole/view"), w("writers", "rbac/ClusterRole/edit")},
			have:  []existingObject{e("readers", true, "rbac/ClusterRole/admin"), e("writers", true, "rbac/ClusterRole/edit")},
			apply: []string{"readers", "writers"}, replace: []string{"readers"}},
	} {
		p := planObjects(tc.want, tc.have)
		if !slices.Equal(names(p.apply), tc.apply) || !slices.Equal(existing(p.replace), tc.replace) ||
			!slices.Equal(existing(p.remove), tc.remove) || !slices.Equal(p.foreign, tc.foreign) {
			t.Errorf("%s: apply %v, replace %v, remove %v, foreign %v; want %v, %v, %v, %v", tc.name,
				names(p.apply), existing(p.replace), existing(p.remove), p.foreign, tc.apply, tc.replace, tc.remove, tc.foreign)
		}
		for _, r := range append(p.replace, p.remove...) {
			if r.uid != types.UID("uid-"+r.name) {
				t.Errorf("%s: %s is deleted without its UID", tc.name, r.name)
			}
		}
	}
}

// A kind that cannot be listed is neither applied nor pruned, and the others go on; bindings
// are deleted before what they bind; an unlabelled object in the way is an error that says what
// to do.
func TestSyncKindsFailStatic(t *testing.T) {
	t.Parallel()
	var calls []string
	kind := func(name string, listErr error, want []wantedObject, have ...existingObject) profileKind {
		return profileKind{
			kind: name,
			want: want,
			list: func(context.Context) ([]existingObject, error) { return have, listErr },
			apply: func(_ context.Context, n string, _ []byte) error {
				calls = append(calls, "apply "+name+" "+n)
				return nil
			},
			delete: func(_ context.Context, n string, _ types.UID) error {
				calls = append(calls, "delete "+name+" "+n)
				return nil
			},
		}
	}
	listErr := errors.New("connection refused")
	err := syncKinds(t.Context(), []profileKind{
		kind("ClusterRole", nil, []wantedObject{{name: "reader"}, {name: "view"}}, existingObject{name: "old", labelled: true}, existingObject{name: "view"}),
		kind("ValidatingAdmissionPolicy", listErr, []wantedObject{{name: "p"}}, existingObject{name: "stale", labelled: true}),
		kind("ClusterRoleBinding", nil, nil, existingObject{name: "old-binding", labelled: true}),
	})
	want := []string{"apply ClusterRole reader", "delete ClusterRoleBinding old-binding", "delete ClusterRole old"}
	if !reflect.DeepEqual(calls, want) {
		t.Errorf("calls %q, want %q", calls, want)
	}
	for _, says := range []string{
		"list the ValidatingAdmissionPolicy objects (none applied or deleted): connection refused",
		fmt.Sprintf("ClusterRole %q exists and is not Convoy's (no label convoy.dev/profile-managed=true, or not applied by convoy-profile), so Convoy leaves it alone; delete it, or give the profile's ClusterRole another name", "view"),
	} {
		if err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("error %v does not say %q", err, says)
		}
	}
	if !errors.Is(err, listErr) {
		t.Errorf("error %v does not wrap the list's", err)
	}
}
