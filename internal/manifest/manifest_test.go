package manifest

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

func raw(t *testing.T, docs ...string) []runtime.RawExtension {
	t.Helper()
	var out []runtime.RawExtension
	for _, d := range docs {
		j, err := yaml.YAMLToJSON([]byte(d))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, runtime.RawExtension{Raw: j})
	}
	return out
}

func TestDecode(t *testing.T) {
	objs := Decode(append(raw(t,
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}",
		"kind: ConfigMap\nmetadata: {name: x}",
		"apiVersion: v1\nmetadata: {name: x}",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {}",
		"apiVersion: a/b/c\nkind: Thing\nmetadata: {name: t}",
	), runtime.RawExtension{Raw: []byte(`[1,2]`)}))
	want := []string{"", "apiVersion is missing", "kind is missing", "metadata.name is missing", `apiVersion "a/b/c" is not GROUP/VERSION`, "not a JSON object"}
	for i, o := range objs {
		if want[i] == "" {
			if o.Err != nil {
				t.Errorf("manifests[%d]: unexpected error %v", i, o.Err)
			}
			continue
		}
		if o.Err == nil || !strings.Contains(o.Err.Error(), want[i]) || !strings.HasPrefix(o.Err.Error(), "manifests[") {
			t.Errorf("manifests[%d]: err = %v, want %q", i, o.Err, want[i])
		}
	}
	if id := objs[0].ID; id != (v1alpha1.ResourceIdentifier{Group: "apps", Version: "v1", Kind: "Deployment", Namespace: "shop", Name: "web"}) {
		t.Errorf("identifier = %+v", id)
	}
	if objs[1].ID.Name != "manifests[1]" {
		t.Errorf("a broken manifest's placeholder name = %q", objs[1].ID.Name)
	}
	again := Decode(raw(t, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}"))
	if again[0].Hash != objs[0].Hash {
		t.Error("the same manifest hashed differently")
	}
	changed := Decode(raw(t, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop, labels: {a: b}}"))
	if changed[0].Hash == objs[0].Hash {
		t.Error("a changed manifest kept its hash")
	}
}

func TestOrder(t *testing.T) {
	objs := Decode(raw(t,
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}",
		"apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: shop}",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: shop}",
		"apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}",
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}",
		"apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}",
		"apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web, namespace: shop}",
	))
	var got []string
	for _, o := range Order(objs) {
		got = append(got, o.ID.Kind)
	}
	want := "Namespace CustomResourceDefinition ServiceAccount ConfigMap Service Deployment Widget"
	if strings.Join(got, " ") != want {
		t.Errorf("order = %v\nwant    %s", got, want)
	}
	var ids []v1alpha1.ResourceIdentifier
	for _, o := range objs {
		ids = append(ids, o.ID)
	}
	var del []string
	for _, id := range OrderIDs(ids) {
		del = append(del, id.Kind)
	}
	if strings.Join(del, " ") != "Widget Deployment Service ConfigMap ServiceAccount CustomResourceDefinition Namespace" {
		t.Errorf("delete order = %v", del)
	}
}

func obj(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestAssess(t *testing.T) {
	cases := []struct {
		name, doc string
		want      v1alpha1.Health
		msg       string
	}{
		{"deployment available", `apiVersion: apps/v1
kind: Deployment
metadata: {name: d, generation: 2}
spec: {replicas: 3}
status: {observedGeneration: 2, replicas: 3, updatedReplicas: 3, availableReplicas: 3}`, v1alpha1.HealthHealthy, "3 of 3"},
		{"deployment not observed", `apiVersion: apps/v1
kind: Deployment
metadata: {name: d, generation: 3}
spec: {replicas: 3}
status: {observedGeneration: 2, replicas: 3, updatedReplicas: 3, availableReplicas: 3}`, v1alpha1.HealthProgressing, "see the new spec"},
		{"deployment rolling", `apiVersion: apps/v1
kind: Deployment
metadata: {name: d, generation: 2}
spec: {replicas: 3}
status: {observedGeneration: 2, replicas: 4, updatedReplicas: 3, availableReplicas: 3}`, v1alpha1.HealthProgressing, "old replicas"},
		{"deployment stuck", `apiVersion: apps/v1
kind: Deployment
metadata: {name: d, generation: 2}
spec: {replicas: 3}
status:
  observedGeneration: 2
  conditions: [{type: Progressing, status: "False", reason: ProgressDeadlineExceeded, message: "ReplicaSet web-1 has timed out progressing."}]`, v1alpha1.HealthDegraded, "timed out"},
		{"deployment default replicas", `apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
status: {replicas: 1, updatedReplicas: 1, availableReplicas: 0}`, v1alpha1.HealthProgressing, "0 of 1"},
		{"statefulset ready", `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: s, generation: 1}
spec: {replicas: 2}
status: {observedGeneration: 1, readyReplicas: 2, currentRevision: a, updateRevision: a}`, v1alpha1.HealthHealthy, ""},
		{"statefulset rolling", `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: s, generation: 1}
spec: {replicas: 2}
status: {observedGeneration: 1, readyReplicas: 2, currentRevision: a, updateRevision: b}`, v1alpha1.HealthProgressing, "revision b"},
		{"daemonset partly", `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ds, generation: 1}
status: {observedGeneration: 1, desiredNumberScheduled: 3, updatedNumberScheduled: 3, numberAvailable: 2}`, v1alpha1.HealthProgressing, "2 of 3"},
		{"job complete", `apiVersion: batch/v1
kind: Job
metadata: {name: j}
status: {conditions: [{type: Complete, status: "True"}]}`, v1alpha1.HealthHealthy, "complete"},
		{"job failed", `apiVersion: batch/v1
kind: Job
metadata: {name: j}
status: {conditions: [{type: Failed, status: "True", reason: BackoffLimitExceeded, message: "Job has reached the specified backoff limit"}]}`, v1alpha1.HealthDegraded, "BackoffLimitExceeded"},
		{"service clusterip", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: ClusterIP}", v1alpha1.HealthHealthy, ""},
		{"service lb pending", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: LoadBalancer}", v1alpha1.HealthProgressing, "load balancer"},
		{"pvc pending", "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: p}\nstatus: {phase: Pending}", v1alpha1.HealthProgressing, "Pending"},
		{"pvc bound", "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: p}\nstatus: {phase: Bound}", v1alpha1.HealthHealthy, "bound"},
		{"custom ready", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nstatus: {conditions: [{type: Ready, status: \"True\"}]}", v1alpha1.HealthHealthy, ""},
		{"custom not available", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nstatus: {conditions: [{type: Available, status: \"False\", message: warming up}]}", v1alpha1.HealthProgressing, "warming up"},
		{"configmap", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}", v1alpha1.HealthHealthy, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, msg := Assess(obj(t, tc.doc))
			if h != tc.want || !strings.Contains(msg, tc.msg) {
				t.Errorf("Assess = %s, %q; want %s with %q", h, msg, tc.want, tc.msg)
			}
		})
	}
	if h, _ := Assess(nil); h != v1alpha1.HealthUnknown {
		t.Errorf("Assess(nil) = %s", h)
	}
}

// FuzzDecode feeds arbitrary bytes as a manifest: Decode must never panic, and must either
// return an error or a complete identifier.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}`,
		`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d","namespace":"n"},"spec":{"replicas":2}}`,
		`{}`, `null`, `[]`, `{"apiVersion":7}`, `{"metadata":"x"}`, `{"apiVersion":"a/b/c","kind":"K","metadata":{"name":"n"}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		objs := Decode([]runtime.RawExtension{{Raw: b}})
		if len(objs) != 1 {
			t.Fatalf("%d objects for one manifest", len(objs))
		}
		o := objs[0]
		if o.Err == nil && (o.Obj == nil || o.ID.Kind == "" || o.ID.Name == "" || o.ID.Version == "") {
			t.Fatalf("no error but an incomplete object: %+v", o.ID)
		}
		if o.Obj != nil {
			Assess(o.Obj)
		}
	})
}

func TestReplicas(t *testing.T) {
	obj := func(s string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON([]byte(s)); err != nil {
			t.Fatal(err)
		}
		return u
	}
	cases := []struct {
		obj                *unstructured.Unstructured
		desired, available int32
		none               bool
	}{
		{obj(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a"},"spec":{"replicas":3},"status":{"availableReplicas":2}}`), 3, 2, false},
		{obj(`{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"a"},"spec":{}}`), 1, 0, false},
		{obj(`{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"a"},"status":{"desiredNumberScheduled":4,"numberAvailable":4}}`), 4, 4, false},
		{obj(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}`), 0, 0, true},
		{nil, 0, 0, true},
	}
	for i, c := range cases {
		d, a := Replicas(c.obj)
		if c.none {
			if d != nil || a != nil {
				t.Errorf("%d: replicas %v/%v for an object without any", i, d, a)
			}
			continue
		}
		if d == nil || a == nil || *d != c.desired || *a != c.available {
			t.Errorf("%d: got %v/%v, want %d/%d", i, d, a, c.desired, c.available)
		}
	}
}
