// Package profile owns the decisions about ClusterProfiles: whether a profile's Kubernetes
// version may change (the version skew policy) and whether the hub can build it, what a cluster
// built from a revision should be (Effective; the objects of its default RBAC and admission
// policies, Objects) and where what its agent observed differs from it (Diff, comparing those
// objects by the digests of Observed, which the agent reports), the weekly maintenance windows,
// and the update run that moves the profile's clusters to a new revision wave by wave (Run, on
// internal/rollout's state machine). It is pure: no client, no clock, no IO; the time and what
// was observed come in as arguments. internal/controller/profile, internal/controller/cluster and
// internal/cli import it; internal/provider/local (the objects it applies) and internal/agent
// (the digests it reports) too.
package profile

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// The reasons a Kubernetes version is refused, for errors.Is; the errors' text says what to do.
var (
	ErrMalformedVersion = errors.New("malformed Kubernetes version")
	ErrMajorChange      = errors.New("Kubernetes major version change")
	ErrDowngrade        = errors.New("Kubernetes version downgrade")
	ErrSkipLevel        = errors.New("skip-level Kubernetes upgrade")
	ErrUnavailable      = errors.New("Kubernetes version not available")
)

// refusal is an error whose text is written for the user and whose kind is one of the Err
// values above.
type refusal struct {
	kind error
	msg  string
}

func (r *refusal) Error() string { return r.msg }
func (r *refusal) Unwrap() error { return r.kind }

func refuse(kind error, format string, args ...any) error {
	return &refusal{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// version is a Kubernetes release, vMAJOR.MINOR.PATCH.
type version struct{ major, minor, patch int }

// parseVersion reads vMAJOR.MINOR.PATCH: digits only, so that "v1.+37.2" or a pre-release
// suffix is not taken for a release.
func parseVersion(s string) (version, bool) {
	rest, ok := strings.CutPrefix(s, "v")
	parts := strings.Split(rest, ".")
	if !ok || len(parts) != 3 {
		return version{}, false
	}
	var n [3]int
	for i, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return version{}, false
		}
		v, err := strconv.Atoi(p)
		if err != nil { // too many digits
			return version{}, false
		}
		n[i] = v
	}
	return version{n[0], n[1], n[2]}, true
}

// CheckVersionChange explains why a profile's (or cluster's) Kubernetes version may not go from
// `from` to `to` under Kubernetes' version skew policy: a malformed version, a different major, a
// downgrade, or a skip-level upgrade (more than one minor up). nil when allowed; from == "" (a
// new profile or cluster) allows anything well-formed. The error is one of the Err values above,
// for errors.Is.
func CheckVersionChange(from, to string) error {
	t, ok := parseVersion(to)
	if !ok {
		return malformed(to)
	}
	if from == "" {
		return nil
	}
	f, ok := parseVersion(from)
	if !ok {
		return malformed(from)
	}
	switch {
	case t.major != f.major:
		return refuse(ErrMajorChange, "Kubernetes %s to %s changes the major version, which the version skew policy does not allow; keep v%d, and build clusters of %s from a profile of their own", from, to, f.major, to)
	case t.minor < f.minor || t.minor == f.minor && t.patch < f.patch:
		return refuse(ErrDowngrade, "Kubernetes %s to %s is a downgrade, which the version skew policy does not allow; keep %s or move up", from, to, from)
	case t.minor > f.minor+1:
		var skipped []string
		for m := f.minor + 1; m < t.minor; m++ {
			skipped = append(skipped, fmt.Sprintf("v%d.%d", f.major, m))
		}
		return refuse(ErrSkipLevel, "Kubernetes %s to %s skips %s: the version skew policy moves one minor version at a time; go to v%d.%d.x first", from, to, strings.Join(skipped, " and "), f.major, f.minor+1)
	}
	return nil
}

func malformed(v string) error {
	return refuse(ErrMalformedVersion, "Kubernetes version %q is malformed; write it as vMAJOR.MINOR.PATCH, for example v1.37.2", v)
}

// CheckAvailable says why the hub cannot build Kubernetes v: it has no binaries for it. nil when
// v is one of available.
func CheckAvailable(v string, available []string) error {
	if slices.Contains(available, v) {
		return nil
	}
	list := "none"
	if len(available) > 0 {
		list = strings.Join(available, ", ")
	}
	return refuse(ErrUnavailable, "Kubernetes %s is not available on this hub (available: %s)", v, list)
}

// sameVersion compares two versions as written by people and by agents: the API lets an
// add-on's version go with or without its leading "v".
func sameVersion(a, b string) bool {
	return strings.TrimPrefix(a, "v") == strings.TrimPrefix(b, "v")
}

// Validate returns the reasons no cluster could satisfy the spec, each saying what to change
// (none: the hub can build it): the Kubernetes version well-formed and available; each add-on
// one the hub ships, at the version it ships (kube-proxy at the Kubernetes version: it is built
// with it); each feature gate named; the default RBAC and admission policies well-formed
// (ValidateObjects). shipped maps an add-on's name to the version the hub ships.
func Validate(spec v1alpha1.ClusterProfileSpec, available []string, shipped map[string]string) []string {
	var reasons []string
	if err := CheckVersionChange("", spec.KubernetesVersion); err != nil {
		reasons = append(reasons, err.Error())
	} else if err := CheckAvailable(spec.KubernetesVersion, available); err != nil {
		reasons = append(reasons, err.Error())
	}
	for _, a := range spec.Addons {
		name := string(a.Name)
		if a.Name == v1alpha1.AddonKubeProxy {
			if a.Version != "" && !sameVersion(a.Version, spec.KubernetesVersion) {
				reasons = append(reasons, fmt.Sprintf("add-on kube-proxy runs the cluster's Kubernetes version: set its version to %s or leave it empty", spec.KubernetesVersion))
			}
			continue
		}
		ships, ok := shipped[name]
		switch {
		case !ok:
			reasons = append(reasons, fmt.Sprintf("this hub ships no add-on %s; remove it from spec.addons", name))
		case a.Version != "" && !sameVersion(a.Version, ships):
			reasons = append(reasons, fmt.Sprintf("add-on %s %s is not the version this hub ships (%s); set %s or leave its version empty", name, a.Version, ships, ships))
		}
	}
	if s := spec.APIServer; s != nil {
		if _, ok := s.FeatureGates[""]; ok {
			reasons = append(reasons, "spec.apiServer.featureGates has an entry without a name; name the gate or remove the entry")
		}
	}
	reasons = append(reasons, ValidateObjects(spec.RBAC, spec.AdmissionPolicies)...)
	return reasons
}

// Effective is the Kubernetes version and node pools a cluster built from the revision's spec
// should have: the profile's version, and its node pool templates, where a pool of the cluster
// of the same name takes the template's place (so that a cluster can change a pool's count),
// followed by the cluster's other pools. Templates keep their order, then the cluster's pools
// theirs. c may be nil (a cluster not made yet). The pools are copies.
func Effective(spec v1alpha1.ClusterProfileSpec, c *v1alpha1.Cluster) (version string, pools []v1alpha1.NodePool) {
	var own []v1alpha1.NodePool
	if c != nil {
		own = c.Spec.NodePools
	}
	templated := map[string]bool{}
	for _, t := range spec.NodePools {
		templated[t.Name] = true
		if i := slices.IndexFunc(own, func(p v1alpha1.NodePool) bool { return p.Name == t.Name }); i >= 0 {
			t = own[i]
		}
		pools = append(pools, *t.DeepCopy())
	}
	for _, p := range own {
		if !templated[p.Name] {
			pools = append(pools, *p.DeepCopy())
		}
	}
	return spec.KubernetesVersion, pools
}

// Diff lists, field by field, where what a cluster's agent observed (inv; nil: nothing reported
// yet) differs from the spec, sorted by field; nil when nothing does. It applies to local and
// imported clusters alike: it judges only what the agent observes. The fields:
//
//	inventory                    want "reported", when the agent has not reported yet
//	kubernetesVersion            the API server's version
//	nodes.kubeletVersion         every node's kubelet at the version ("v1.37.2 on all 3 nodes");
//	                             no nodes, no drift
//	addons[NAME].version         each add-on the spec lists: its version, else what the hub
//	                             ships; kube-proxy the Kubernetes version; "" when absent
//	apiServer.featureGates[NAME] "true" or "false"; a gate the API server does not list as
//	                             enabled is disabled; none when the agent could not read the
//	                             list (nil)
//	namespaces[NAME]             want "present", have "" when missing; none when the agent's
//	                             list is full (inventoryNamespaces), which may have left it out
//	rbac.clusterRoles[NAME]      the member's object labelled convoy.dev/profile-managed of
//	rbac.clusterRoleBindings[NAME]   the spec's name, compared by digest (Observed): want
//	admissionPolicies[NAME].policy   "present", have "" when missing (none when the agent's
//	admissionPolicies[NAME].binding  list is full), "differs" when its content does; want
//	                             "absent", have "present" for a labelled one the spec does not
//	                             list; none when the agent could not list them (nil)
//
// What the agent could not observe is no drift (fail static): the cluster is not judged, and
// so not changed, on what nobody knows.
func Diff(spec v1alpha1.ClusterProfileSpec, shipped map[string]string, inv *v1alpha1.Inventory) []v1alpha1.ProfileDrift {
	if inv == nil {
		return []v1alpha1.ProfileDrift{{Field: "inventory", Want: "reported"}}
	}
	var drift []v1alpha1.ProfileDrift
	differ := func(field, want, have string) {
		drift = append(drift, v1alpha1.ProfileDrift{Field: field, Want: want, Have: have})
	}
	if !sameVersion(inv.KubernetesVersion, spec.KubernetesVersion) {
		differ("kubernetesVersion", spec.KubernetesVersion, inv.KubernetesVersion)
	}
	if want, have, ok := kubelets(spec.KubernetesVersion, inv.KubeletVersions); !ok {
		differ("nodes.kubeletVersion", want, have)
	}
	for _, a := range spec.Addons {
		name := string(a.Name)
		want := a.Version
		switch {
		case a.Name == v1alpha1.AddonKubeProxy:
			want = spec.KubernetesVersion
		case want == "":
			want = shipped[name]
		}
		have, found := inv.Addons[name]
		// An add-on the hub does not ship and the spec gives no version for (Validate refuses
		// that spec) is judged by its presence only.
		if want == "" && !found {
			differ("addons["+name+"].version", "installed", "")
		} else if want != "" && !sameVersion(want, have) {
			differ("addons["+name+"].version", want, have)
		}
	}
	if s := spec.APIServer; s != nil && inv.EnabledFeatureGates != nil {
		for _, gate := range slices.Sorted(maps.Keys(s.FeatureGates)) {
			want := s.FeatureGates[gate]
			if have := slices.Contains(inv.EnabledFeatureGates, gate); have != want {
				differ("apiServer.featureGates["+gate+"]", strconv.FormatBool(want), strconv.FormatBool(have))
			}
		}
	}
	full := len(inv.Namespaces) >= inventoryNamespaces
	for _, ns := range spec.Namespaces {
		if !full && !slices.Contains(inv.Namespaces, ns) {
			differ("namespaces["+ns+"]", "present", "")
		}
	}
	if obs := inv.ProfileObjects; obs != nil {
		drift = append(drift, objectDrift(Observed(Objects(spec.RBAC, spec.AdmissionPolicies)), obs.Items)...)
	}
	slices.SortFunc(drift, func(a, b v1alpha1.ProfileDrift) int { return strings.Compare(a.Field, b.Field) })
	return drift
}

// objectDrift compares the member objects a spec wants with those the agent found labelled as
// a profile's (each kind, name and digest): one wanted but not found is absent (unless the
// agent's list is full, inventoryProfileObjects, which may have left it out), one with another
// digest differs, and one found but not wanted is present.
func objectDrift(want, have []v1alpha1.ObservedProfileObject) []v1alpha1.ProfileDrift {
	type key struct{ kind, name string }
	found := map[key]string{}
	for _, o := range have {
		found[key{o.Kind, o.Name}] = o.Digest
	}
	full := len(have) >= inventoryProfileObjects
	var drift []v1alpha1.ProfileDrift
	for _, o := range want {
		k := key{o.Kind, o.Name}
		d, ok := found[k]
		delete(found, k)
		switch {
		case !ok && !full:
			drift = append(drift, v1alpha1.ProfileDrift{Field: objectField(o.Kind, o.Name), Want: "present"})
		case ok && d != o.Digest:
			drift = append(drift, v1alpha1.ProfileDrift{Field: objectField(o.Kind, o.Name), Want: "present", Have: "differs"})
		}
	}
	for _, o := range have {
		if _, extra := found[key{o.Kind, o.Name}]; extra {
			drift = append(drift, v1alpha1.ProfileDrift{Field: objectField(o.Kind, o.Name), Want: "absent", Have: "present"})
		}
	}
	return drift
}

// objectField is the profile's field of a member object: rbac.clusterRoles[NAME],
// rbac.clusterRoleBindings[NAME], admissionPolicies[NAME].policy or
// admissionPolicies[NAME].binding.
func objectField(kind, name string) string {
	switch kind {
	case v1alpha1.KindClusterRole:
		return "rbac.clusterRoles[" + name + "]"
	case v1alpha1.KindClusterRoleBinding:
		return "rbac.clusterRoleBindings[" + name + "]"
	case v1alpha1.KindValidatingAdmissionPolicy:
		return "admissionPolicies[" + name + "].policy"
	case v1alpha1.KindValidatingAdmissionPolicyBinding:
		return "admissionPolicies[" + name + "].binding"
	}
	return kind + "[" + name + "]"
}

// inventoryProfileObjects is how many profile objects an agent lists at most
// (ObservedProfileObjects.Items' MaxItems): a list that long may have left some out.
const inventoryProfileObjects = 256

// inventoryNamespaces is how many namespaces an agent lists at most (Inventory.Namespaces'
// MaxItems; internal/agent's maxNamespaces): a list that long may have left some out.
const inventoryNamespaces = 256

// kubelets judges the nodes' kubelet versions (counts by version) against want: ok when every
// node runs it, or there are no nodes; else the two sides of the drift, versions in order.
func kubelets(want string, counts map[string]int32) (wantText, have string, ok bool) {
	var total, atWant int32
	var at []string
	for _, v := range slices.SortedFunc(maps.Keys(counts), compareVersions) {
		if n := counts[v]; n > 0 {
			total += n
			at = append(at, fmt.Sprintf("%s on %d", v, n))
			if sameVersion(v, want) {
				atWant += n
			}
		}
	}
	if atWant == total {
		return "", "", true
	}
	return fmt.Sprintf("%s on all %d nodes", want, total), strings.Join(at, ", "), false
}

// compareVersions orders releases by number (v1.9.0 before v1.10.0), anything else after them
// by text.
func compareVersions(a, b string) int {
	va, okA := parseVersion(a)
	vb, okB := parseVersion(b)
	switch {
	case okA && okB:
		return cmp.Or(cmp.Compare(va.major, vb.major), cmp.Compare(va.minor, vb.minor), cmp.Compare(va.patch, vb.patch))
	case okA != okB:
		if okA {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}
