package render

import (
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/scheduler"
)

func obj(t *testing.T, s string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	raw, err := yaml.YAMLToJSON([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	if err := u.UnmarshalJSON(raw); err != nil {
		t.Fatal(err)
	}
	return u
}

const deployment = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  uid: 1234
  resourceVersion: "99"
  generation: 3
  labels: {app: web}
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: "{}"
    convoy.dev/summary: available 6/6
    team: checkout
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: web
      imagePullSecrets: [{name: regcred}]
      volumes:
      - {name: conf, configMap: {name: web-conf}}
      - {name: data, persistentVolumeClaim: {claimName: web-data}}
      - {name: all, projected: {sources: [{secret: {name: tls}}, {configMap: {name: extra}}]}}
      initContainers:
      - {name: init, image: busybox, envFrom: [{secretRef: {name: init-secret}}]}
      containers:
      - name: app
        image: nginx:1.27
        resources: {requests: {cpu: 250m, memory: 128Mi}}
        env:
        - {name: MODE, value: blue}
        - {name: KEY, valueFrom: {secretKeyRef: {name: api-key, key: k}}}
      - name: sidecar
        image: envoy:1
        resources: {requests: {cpu: 100m}}
status: {availableReplicas: 6}
`

func TestClean(t *testing.T) {
	c := Clean(obj(t, deployment))
	for _, f := range []string{"uid", "resourceVersion", "generation"} {
		if _, found, _ := unstructured.NestedFieldNoCopy(c.Object, "metadata", f); found {
			t.Errorf("metadata.%s kept", f)
		}
	}
	if _, found := c.Object["status"]; found {
		t.Error("status kept")
	}
	if a := c.GetAnnotations(); len(a) != 1 || a["team"] != "checkout" {
		t.Errorf("annotations %v, want only team", a)
	}
	svc := Clean(obj(t, `{apiVersion: v1, kind: Service, metadata: {name: s}, spec: {clusterIP: 10.0.0.3, clusterIPs: [10.0.0.3], ports: [{port: 80}]}}`))
	if _, found, _ := unstructured.NestedFieldNoCopy(svc.Object, "spec", "clusterIP"); found {
		t.Error("the hub's clusterIP kept")
	}
	job := Clean(obj(t, `{apiVersion: batch/v1, kind: Job, metadata: {name: j}, spec: {selector: {matchLabels: {batch.kubernetes.io/controller-uid: x}}, template: {metadata: {labels: {batch.kubernetes.io/controller-uid: x, app: j}}}}}`))
	if l, _, _ := unstructured.NestedStringMap(job.Object, "spec", "template", "metadata", "labels"); len(l) != 1 || l["app"] != "j" {
		t.Errorf("job template labels %v, want only app", l)
	}
}

func TestDependencies(t *testing.T) {
	var got []string
	for _, r := range Dependencies(obj(t, deployment)) {
		got = append(got, r.Kind+"/"+r.Name)
	}
	want := "ConfigMap/extra ConfigMap/web-conf PersistentVolumeClaim/web-data Secret/api-key Secret/init-secret Secret/regcred Secret/tls ServiceAccount/web"
	if strings.Join(got, " ") != want {
		t.Errorf("dependencies\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if d := Dependencies(obj(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: c}}`)); d != nil {
		t.Errorf("a ConfigMap has dependencies: %v", d)
	}
}

func TestPodRequestsAndReplicas(t *testing.T) {
	d := obj(t, deployment)
	if r := PodRequests(d); r.MilliCPU != 350 || r.Memory != 128<<20 || r.Pods != 1 {
		t.Errorf("requests %+v", r)
	}
	if n, ok := Replicas(d); !ok || n != 6 {
		t.Errorf("replicas %d %v", n, ok)
	}
	if _, ok := Replicas(obj(t, `{apiVersion: apps/v1, kind: DaemonSet, metadata: {name: d}}`)); ok {
		t.Error("a DaemonSet has replicas")
	}
	if n, ok := Replicas(obj(t, `{apiVersion: apps/v1, kind: StatefulSet, metadata: {name: d}, spec: {}}`)); !ok || n != 1 {
		t.Errorf("defaulted replicas %d %v", n, ok)
	}
}

func TestForCluster(t *testing.T) {
	eu := scheduler.Cluster{Name: "eu-west", Region: "eu-west", Labels: map[string]string{"tier": "gold"}}
	us := scheduler.Cluster{Name: "us-east", Region: "us-east"}
	value := func(s string) *apiextensionsv1.JSON { return &apiextensionsv1.JSON{Raw: []byte(s)} }
	overrides := []v1alpha1.Override{
		{Clusters: v1alpha1.ClusterAffinity{Regions: []string{"eu-west"}}, Images: []v1alpha1.ImageOverride{{Container: "app", Image: "nginx:1.28"}}},
		{Clusters: v1alpha1.ClusterAffinity{}, Env: []v1alpha1.EnvOverride{{Name: "MODE", Value: "green"}, {Container: "sidecar", Name: "REGION", Value: "any"}},
			Labels: map[string]string{"placed": "yes"}},
		// Later overrides win: this one replaces the first's image in eu-west.
		{Clusters: v1alpha1.ClusterAffinity{Names: []string{"eu-west"}}, Images: []v1alpha1.ImageOverride{{Image: "nginx:1.29"}}, Replicas: ptr.To[int32](9),
			JSONPatches: []v1alpha1.JSONPatch{{Op: "add", Path: "/spec/template/spec/priorityClassName", Value: value(`"high"`)}}},
		// Only for ConfigMaps: not this Deployment.
		{Clusters: v1alpha1.ClusterAffinity{}, Resource: &v1alpha1.ResourceSelector{Kind: "ConfigMap"}, Annotations: map[string]string{"cm": "only"}},
	}
	clean := Clean(obj(t, deployment))

	// What ForCluster reads of a cluster: which overrides match it (and which cannot match).
	if got := OverrideKey(eu, overrides); got != "1111" {
		t.Errorf("eu-west's override key %q, want 1111", got)
	}
	if got := OverrideKey(us, overrides); got != "0101" {
		t.Errorf("us-east's override key %q, want 0101", got)
	}
	bad := []v1alpha1.Override{{Clusters: v1alpha1.ClusterAffinity{LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: "Sideways"}}}}}}
	if got := OverrideKey(eu, bad); got != "e" {
		t.Errorf("an invalid selector's override key %q, want e", got)
	}

	gotUS, err := ForCluster(clean, us, ptr.To[int32](2), overrides)
	if err != nil {
		t.Fatal(err)
	}
	gotEU, err := ForCluster(clean, eu, ptr.To[int32](2), overrides)
	if err != nil {
		t.Fatal(err)
	}
	image := func(u *unstructured.Unstructured, i int) string {
		cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		return cs[i].(map[string]any)["image"].(string)
	}
	env := func(u *unstructured.Unstructured, i int) string {
		cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		var out []string
		for _, e := range cs[i].(map[string]any)["env"].([]any) {
			m := e.(map[string]any)
			out = append(out, m["name"].(string)+"="+toString(m["value"]))
		}
		return strings.Join(out, ",")
	}
	if image(gotUS, 0) != "nginx:1.27" || image(gotEU, 0) != "nginx:1.29" || image(gotEU, 1) != "nginx:1.29" {
		t.Errorf("images: us %s, eu %s %s", image(gotUS, 0), image(gotEU, 0), image(gotEU, 1))
	}
	if r, _ := Replicas(gotUS); r != 2 {
		t.Errorf("us replicas %d, want its share 2", r)
	}
	if r, _ := Replicas(gotEU); r != 9 {
		t.Errorf("eu replicas %d, want the override's 9", r)
	}
	if e := env(gotUS, 0); e != "MODE=green,KEY=" {
		t.Errorf("app env %s", e)
	}
	if e := env(gotUS, 1); e != "MODE=green,REGION=any" {
		t.Errorf("sidecar env %s", e)
	}
	if gotUS.GetLabels()["placed"] != "yes" || gotUS.GetAnnotations()["cm"] != "" {
		t.Errorf("labels %v annotations %v", gotUS.GetLabels(), gotUS.GetAnnotations())
	}
	if p, _, _ := unstructured.NestedString(gotEU.Object, "spec", "template", "spec", "priorityClassName"); p != "high" {
		t.Errorf("JSON patch not applied in eu: %q", p)
	}
	if image(clean, 0) != "nginx:1.27" {
		t.Error("ForCluster changed the template")
	}

	// A patch that cannot apply fails with the path in the message.
	_, err = ForCluster(clean, us, nil, []v1alpha1.Override{{JSONPatches: []v1alpha1.JSONPatch{{Op: "replace", Path: "/spec/nothing/here", Value: value(`1`)}}}})
	if err == nil || !strings.Contains(err.Error(), "overrides[0]: jsonPatches on Deployment web") {
		t.Errorf("a bad patch: %v", err)
	}
	// A patch that removes the kind is refused rather than sent.
	_, err = ForCluster(clean, us, nil, []v1alpha1.Override{{JSONPatches: []v1alpha1.JSONPatch{{Op: "remove", Path: "/kind"}}}})
	if err == nil {
		t.Error("a patch removing the kind was accepted")
	}
}

func toString(v any) string {
	s, _ := v.(string)
	return s
}

func TestSelects(t *testing.T) {
	d := obj(t, deployment)
	cases := []struct {
		sel  v1alpha1.ResourceSelector
		want bool
	}{
		{v1alpha1.ResourceSelector{Group: "apps", Kind: "Deployment"}, true},
		{v1alpha1.ResourceSelector{Kind: "Deployment"}, false}, // the core group has no Deployment
		{v1alpha1.ResourceSelector{Group: "apps", Kind: "Deployment", Name: "api"}, false},
		{v1alpha1.ResourceSelector{LabelSelector: mustSelector(t, "app=web")}, true},
		{v1alpha1.ResourceSelector{LabelSelector: mustSelector(t, "app=api")}, false},
	}
	for i, c := range cases {
		got, err := Selects(c.sel, d)
		if err != nil || got != c.want {
			t.Errorf("%d: %v %v, want %v", i, got, err, c.want)
		}
	}
}

func mustSelector(t *testing.T, s string) *metav1.LabelSelector {
	t.Helper()
	sel, err := metav1.ParseToLabelSelector(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}
