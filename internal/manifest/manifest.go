// Package manifest is the pure handling of the manifests a Work carries: decoding, identity,
// hashing, the order to apply them in, the health of what was applied, and what a Work holds on
// its member when several list the same object (owners.go). It has no client and does no IO;
// the agent, internal/plan and the propagation controller import it.
package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// Object is one manifest of a Work, decoded.
type Object struct {
	// Index is the manifest's position in the Work.
	Index int
	// Obj is the decoded object; nil when Err is set.
	Obj *unstructured.Unstructured
	// ID names the object; for a manifest that does not decode it holds a placeholder.
	ID v1alpha1.ResourceIdentifier
	// Hash identifies the manifest's content.
	Hash string
	// Err says why the manifest cannot be applied.
	Err error
}

// Key is a stable string for an identifier, for maps.
func Key(id v1alpha1.ResourceIdentifier) string {
	return strings.Join([]string{id.Group, id.Kind, id.Namespace, id.Name}, "/")
}

// Decode turns a Work's raw manifests into objects. A manifest that is not a complete object
// gets an error that says what is missing; the others are unaffected.
func Decode(raw []runtime.RawExtension) []Object {
	out := make([]Object, 0, len(raw))
	for i, r := range raw {
		out = append(out, decodeOne(i, r.Raw))
	}
	return out
}

func decodeOne(i int, raw []byte) Object {
	o := Object{Index: i, ID: v1alpha1.ResourceIdentifier{Version: "v1", Kind: "Unknown", Name: fmt.Sprintf("manifests[%d]", i)}}
	sum := sha256.Sum256(raw)
	o.Hash = hex.EncodeToString(sum[:8])
	fail := func(format string, args ...any) Object {
		o.Err = fmt.Errorf("manifests[%d]: "+format, append([]any{i}, args...)...)
		return o
	}
	var m map[string]any
	// utiljson keeps whole numbers int64, as the rest of Kubernetes' unstructured code expects.
	if err := utiljson.Unmarshal(raw, &m); err != nil || m == nil {
		return fail("not a JSON object; every manifest needs apiVersion, kind and metadata.name")
	}
	u := &unstructured.Unstructured{Object: m}
	apiVersion, kind, name := u.GetAPIVersion(), u.GetKind(), u.GetName()
	switch {
	case apiVersion == "":
		return fail("apiVersion is missing; every manifest needs apiVersion, kind and metadata.name")
	case kind == "":
		return fail("kind is missing; every manifest needs apiVersion, kind and metadata.name")
	case name == "":
		return fail("metadata.name is missing; every manifest needs apiVersion, kind and metadata.name")
	}
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil || gv.Version == "" {
		return fail("apiVersion %q is not GROUP/VERSION", apiVersion)
	}
	o.ID = v1alpha1.ResourceIdentifier{Group: gv.Group, Version: gv.Version, Kind: kind, Namespace: u.GetNamespace(), Name: name}
	o.Obj = u
	return o
}

// rank orders kinds so that what others depend on is applied first: namespaces and CRDs, then
// cluster-wide policy, identities and configuration, storage, networking, workloads, and
// anything else (custom resources) last.
var rank = map[string]int{
	"Namespace":                      0,
	"CustomResourceDefinition":       1,
	"PriorityClass":                  2,
	"StorageClass":                   2,
	"ResourceQuota":                  3,
	"LimitRange":                     3,
	"PodSecurityPolicy":              3,
	"NetworkPolicy":                  3,
	"ServiceAccount":                 4,
	"Secret":                         5,
	"ConfigMap":                      5,
	"ClusterRole":                    6,
	"ClusterRoleBinding":             7,
	"Role":                           6,
	"RoleBinding":                    7,
	"PersistentVolume":               8,
	"PersistentVolumeClaim":          9,
	"Service":                        10,
	"Endpoints":                      11,
	"EndpointSlice":                  11,
	"IngressClass":                   11,
	"Ingress":                        12,
	"PodDisruptionBudget":            13,
	"Pod":                            14,
	"ReplicaSet":                     14,
	"ReplicationController":          14,
	"Deployment":                     14,
	"StatefulSet":                    14,
	"DaemonSet":                      14,
	"Job":                            14,
	"CronJob":                        14,
	"HorizontalPodAutoscaler":        15,
	"ValidatingWebhookConfiguration": 16,
	"MutatingWebhookConfiguration":   16,
	"APIService":                     16,
}

// Rank is a kind's place in the apply order; lower goes first.
func Rank(kind string) int {
	if r, ok := rank[kind]; ok {
		return r
	}
	return 20
}

// Order returns the objects sorted for applying: by Rank, then by their order in the Work.
// Deleting goes the other way round.
func Order(objs []Object) []Object {
	out := append([]Object(nil), objs...)
	sort.SliceStable(out, func(i, j int) bool {
		ri, rj := Rank(out[i].ID.Kind), Rank(out[j].ID.Kind)
		if ri != rj {
			return ri < rj
		}
		return out[i].Index < out[j].Index
	})
	return out
}

// OrderIDs sorts identifiers for deleting: the reverse of the apply order.
func OrderIDs(ids []v1alpha1.ResourceIdentifier) []v1alpha1.ResourceIdentifier {
	out := append([]v1alpha1.ResourceIdentifier(nil), ids...)
	sort.SliceStable(out, func(i, j int) bool {
		ri, rj := Rank(out[i].Kind), Rank(out[j].Kind)
		if ri != rj {
			return ri > rj
		}
		return Key(out[i]) < Key(out[j])
	})
	return out
}
