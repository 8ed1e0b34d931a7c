package render

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

func TestProject(t *testing.T) {
	in := `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      initContainers: [{name: migrate, image: m}]
      containers:
      - {name: web, image: w, env: [{name: A, value: a}]}
      - {name: side, image: s, env: [{name: SERVICE_BINDING_ROOT, value: /etc/b}]}
      volumes: [{name: data, emptyDir: {}}]
`
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(in), &u.Object); err != nil {
		t.Fatal(err)
	}
	err := Project(u, []Binding{{Name: "cache", Secret: "cache-binding", Env: []v1alpha1.BindingEnv{{Name: "REDIS_URL", Key: "uri"}}}, {Name: "db", Secret: "orders-binding"}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := yaml.Marshal(u.Object["spec"])
	want := `template:
  spec:
    containers:
    - env:
      - name: A
        value: a
      - name: SERVICE_BINDING_ROOT
        value: /bindings
      - name: REDIS_URL
        valueFrom:
          secretKeyRef:
            key: uri
            name: cache-binding
      image: w
      name: web
      volumeMounts:
      - mountPath: /bindings/cache
        name: convoy-binding-cache
        readOnly: true
      - mountPath: /bindings/db
        name: convoy-binding-db
        readOnly: true
    - env:
      - name: SERVICE_BINDING_ROOT
        value: /etc/b
      - name: REDIS_URL
        valueFrom:
          secretKeyRef:
            key: uri
            name: cache-binding
      image: s
      name: side
      volumeMounts:
      - mountPath: /etc/b/cache
        name: convoy-binding-cache
        readOnly: true
      - mountPath: /etc/b/db
        name: convoy-binding-db
        readOnly: true
    initContainers:
    - env:
      - name: SERVICE_BINDING_ROOT
        value: /bindings
      - name: REDIS_URL
        valueFrom:
          secretKeyRef:
            key: uri
            name: cache-binding
      image: m
      name: migrate
      volumeMounts:
      - mountPath: /bindings/cache
        name: convoy-binding-cache
        readOnly: true
      - mountPath: /bindings/db
        name: convoy-binding-db
        readOnly: true
    volumes:
    - emptyDir: {}
      name: data
    - name: convoy-binding-cache
      secret:
        secretName: cache-binding
    - name: convoy-binding-db
      secret:
        secretName: orders-binding
`
	if string(got) != want {
		t.Errorf("projected:\n%s\nwant:\n%s", got, want)
	}
	// Refused: a root without a plain value, and a mount where a binding goes.
	for _, bad := range []string{
		`{name: web, image: w, env: [{name: SERVICE_BINDING_ROOT, valueFrom: {configMapKeyRef: {name: c, key: k}}}]}`,
		`{name: web, image: w, volumeMounts: [{name: x, mountPath: /bindings/cache}]}`,
	} {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {template: {spec: {containers: ["+bad+"]}}}"), &u.Object); err != nil {
			t.Fatal(err)
		}
		if err := Project(u, []Binding{{Name: "cache", Secret: "cache-binding"}}); err == nil {
			t.Errorf("projected into %s", bad)
		}
	}
	// A variable of the same name is replaced.
	u = &unstructured.Unstructured{}
	_ = yaml.Unmarshal([]byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {template: {spec: {containers: [{name: web, env: [{name: REDIS_URL, value: old}]}]}}}"), &u.Object)
	if err := Project(u, []Binding{{Name: "cache", Secret: "s", Env: []v1alpha1.BindingEnv{{Name: "REDIS_URL", Key: "uri"}}}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := yaml.Marshal(u.Object["spec"]); strings.Count(string(got), "REDIS_URL") != 1 || strings.Contains(string(got), "old") {
		t.Errorf("REDIS_URL twice or kept:\n%s", got)
	}
	// Not a workload: left alone.
	cm := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "x"}}}
	if err := Project(cm, []Binding{{Name: "b", Secret: "s"}}); err != nil || len(cm.Object) != 3 {
		t.Errorf("a ConfigMap: %v %v", err, cm.Object)
	}
}
