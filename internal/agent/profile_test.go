package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/hubtest"
)

// apiServerMetrics is a piece of a kube-apiserver's /metrics around its feature gates.
const apiServerMetrics = `# HELP apiserver_request_total [STABLE] Counter of apiserver requests.
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",verb="GET"} 42
# HELP kubernetes_feature_enabled [BETA] This metric records the data about the stage and enablement of a k8s feature.
# TYPE kubernetes_feature_enabled gauge
kubernetes_feature_enabled{name="APIResponseCompression",stage="BETA"} 1
kubernetes_feature_enabled{name="AllAlpha",stage="ALPHA"} 0
kubernetes_feature_enabled{name="InPlacePodVerticalScaling",stage=""} 1
kubernetes_feature_enabled{name="DynamicResourceAllocation",stage="BETA"} 0
kubernetes_feature_enabled{name="AnyVolumeDataSource",stage="BETA"} 1
kubernetes_feature_enabled_total 3
# HELP kubernetes_build_info [ALPHA] A metric with a constant '1' value.
# TYPE kubernetes_build_info gauge
kubernetes_build_info{git_version="v1.37.2",name="kubernetes_feature_enabled"} 1
`

func TestParseFeatureGates(t *testing.T) {
	long := "# HELP some_metric " + strings.Repeat("x", 3*maxLine) + "\n"
	for _, tc := range []struct {
		name    string
		in      string
		want    []string
		wantErr error // errNoFeatureMetric, or any error when errAny
		errAny  bool
	}{
		{name: "enabled gates, sorted; others and other metrics left out", in: apiServerMetrics,
			want: []string{"APIResponseCompression", "AnyVolumeDataSource", "InPlacePodVerticalScaling"}},
		{name: "without HELP and TYPE, CRLF, a long line before", in: long +
			"kubernetes_feature_enabled{stage=\"BETA\",name=\"B\"} 1\r\nkubernetes_feature_enabled{name=\"A\",stage=\"GA\"} 1.0\r\nkubernetes_feature_enabled{name=\"C\"} 0\r\n",
			want: []string{"A", "B"}},
		{name: "no final newline", in: `kubernetes_feature_enabled{name="A"} 1`, want: []string{"A"}},
		{name: "every gate disabled is an answer", in: "# TYPE kubernetes_feature_enabled gauge\nkubernetes_feature_enabled{name=\"A\"} 0\n", want: nil},
		{name: "no such metric says nothing", in: "# TYPE up gauge\nup 1\nkubernetes_feature_enabled_total 1\n", wantErr: errNoFeatureMetric},
		{name: "empty answer says nothing", in: "", wantErr: errNoFeatureMetric},
		{name: "a broken line of the metric", in: "kubernetes_feature_enabled{name=\"A\" 1\n", errAny: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseFeatureGates(strings.NewReader(tc.in))
			switch {
			case tc.wantErr != nil || tc.errAny:
				if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
					t.Fatalf("parseFeatureGates = %v, %v; want error %v", got, err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("parseFeatureGates: %v", err)
			case !slices.Equal(got, tc.want):
				t.Errorf("parseFeatureGates = %q, want %q", got, tc.want)
			}
		})
	}
}

// The gates come from the API server's /metrics at most once a minute, and a failed read
// leaves them as they were.
func TestFeatureGatesFailStatic(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusForbidden)
	var reads atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		reads.Add(1)
		switch s := int(status.Load()); s {
		case http.StatusOK:
		case http.StatusNoContent: // an answer without the metric
			_, _ = w.Write([]byte("# TYPE up gauge\nup 1\n"))
			return
		default:
			http.Error(w, http.StatusText(s), s)
			return
		}
		_, _ = w.Write([]byte(apiServerMetrics))
	}))
	defer srv.Close()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var g featureGates
	// A 403 first: not known, rather than all disabled.
	if got := g.get(ctx, cs); got != nil {
		t.Fatalf("after a 403: %q, want nil (not known)", got)
	}
	// Within the minute, no read.
	status.Store(http.StatusOK)
	if got := g.get(ctx, cs); got != nil || reads.Load() != 1 {
		t.Fatalf("within a minute: %q after %d reads; want nil after 1", got, reads.Load())
	}
	g.tried = g.tried.Add(-featureGatesEvery)
	want := []string{"APIResponseCompression", "AnyVolumeDataSource", "InPlacePodVerticalScaling"}
	if got := g.get(ctx, cs); !slices.Equal(got, want) || reads.Load() != 2 {
		t.Fatalf("a minute later: %q after %d reads; want %q after 2", got, reads.Load(), want)
	}
	// A 403, an error and an empty answer later keep what was known.
	for _, s := range []int{http.StatusForbidden, http.StatusInternalServerError, http.StatusNoContent} {
		status.Store(int32(s))
		g.tried = g.tried.Add(-featureGatesEvery)
		if got := g.get(ctx, cs); !slices.Equal(got, want) {
			t.Errorf("after a %d: %q, want %q as before", s, got, want)
		}
	}
	srv.Close()
	g.tried = time.Time{}
	if got := g.get(ctx, cs); !slices.Equal(got, want) {
		t.Errorf("with the API server gone: %q, want %q as before", got, want)
	}
}

func deployment(ns, name string, containers ...corev1.Container) *appsv1.Deployment {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	d.Spec.Template.Spec.Containers = containers
	return d
}

func TestAddonVersions(t *testing.T) {
	coredns := deployment("kube-system", "coredns",
		corev1.Container{Name: "sidecar", Image: "example.com/sidecar:v9.9.9"},
		corev1.Container{Name: "coredns", Image: "registry.k8s.io/coredns/coredns:v1.12.4"})
	localPath := deployment("local-path-storage", "local-path-provisioner",
		corev1.Container{Name: "local-path-provisioner", Image: "localhost:5000/rancher/local-path-provisioner:v0.0.30"})
	labelled := func(ns, image string) *appsv1.Deployment {
		return deployment(ns, "lpp", corev1.Container{Name: "main", Image: image})
	}
	kubeProxyDS := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-proxy"}}
	kubeProxyDS.Spec.Template.Spec.Containers = []corev1.Container{{Name: "kube-proxy", Image: "registry.k8s.io/kube-proxy:v1.37.2@sha256:abcd"}}
	node := func(name, proxy string) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if proxy != "" {
			n.Labels = map[string]string{v1alpha1.LabelKubeProxyVersion: proxy}
		}
		return n
	}
	for _, tc := range []struct {
		name string
		in   addonObjects
		want map[string]string
	}{
		{name: "nothing found", in: addonObjects{Nodes: []*corev1.Node{node("a", "")}}, want: nil},
		{name: "a kubeadm cluster", in: addonObjects{CoreDNS: coredns, LocalPath: localPath, KubeProxy: kubeProxyDS,
			Nodes: []*corev1.Node{node("a", "v1.36.3")}},
			want: map[string]string{"coredns": "v1.12.4", "storage": "v0.0.30", "kube-proxy": "v1.37.2"}},
		{name: "a local cluster in an upgrade: kube-proxy from the nodes' labels", in: addonObjects{CoreDNS: coredns,
			Nodes: []*corev1.Node{node("c", "v1.37.2"), node("a", "v1.36.3"), node("b", "v1.37.2"), node("kwok", "")}},
			want: map[string]string{"coredns": "v1.12.4", "kube-proxy": "v1.36.3, v1.37.2"}},
		{name: "CoreDNS's first container when none is called coredns", in: addonObjects{
			CoreDNS: deployment("kube-system", "coredns", corev1.Container{Name: "dns", Image: "coredns:1.11.1"})},
			want: map[string]string{"coredns": "1.11.1"}},
		{name: "the provisioner at its usual name goes before those labelled", in: addonObjects{LocalPath: localPath,
			Storage: []*appsv1.Deployment{labelled("x", "lpp:v0.0.1")}},
			want: map[string]string{"storage": "v0.0.30"}},
		{name: "the labelled provisioners, each version once", in: addonObjects{
			Storage: []*appsv1.Deployment{labelled("y", "lpp:v0.0.31"), labelled("x", "lpp:v0.0.28"), labelled("z", "lpp:v0.0.31")}},
			want: map[string]string{"storage": "v0.0.28, v0.0.31"}},
		{name: "a Deployment without containers says nothing", in: addonObjects{CoreDNS: deployment("kube-system", "coredns")}, want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := addonVersions(tc.in); !maps.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
				t.Errorf("addonVersions = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestImageTag(t *testing.T) {
	for image, want := range map[string]string{
		"registry.k8s.io/coredns/coredns:v1.12.4":               "v1.12.4",
		"localhost:5000/rancher/local-path-provisioner:v0.0.30": "v0.0.30",
		"localhost:5000/rancher/local-path-provisioner":         "latest",
		"coredns":                            "latest",
		"coredns:1.11.1@sha256:0123":         "1.11.1",
		"localhost:5000/coredns@sha256:0123": "sha256:0123",
		"":                                   "",
	} {
		if got := imageTag(image); got != want {
			t.Errorf("imageTag(%q) = %q, want %q", image, got, want)
		}
	}
}

func TestKubeletVersionsAndNamespaces(t *testing.T) {
	node := func(v string, ready bool) *corev1.Node {
		n := &corev1.Node{}
		n.Status.NodeInfo.KubeletVersion = v
		if ready {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		}
		return n
	}
	got := kubeletVersions([]*corev1.Node{node("v1.36.3", true), node("v1.37.2", false), node("v1.36.3", false), node("", true)})
	if want := map[string]int32{"v1.36.3": 2, "v1.37.2": 1}; !maps.Equal(got, want) {
		t.Errorf("kubeletVersions = %v, want %v", got, want)
	}
	if got := kubeletVersions(nil); got != nil {
		t.Errorf("kubeletVersions of no nodes = %v, want nil", got)
	}

	var nss []*corev1.Namespace
	for i := 300; i > 0; i-- {
		nss = append(nss, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ns-%03d", i)}})
	}
	names := namespaceNames(nss)
	if len(names) != maxNamespaces || names[0] != "ns-001" || names[maxNamespaces-1] != "ns-256" || !slices.IsSorted(names) {
		t.Errorf("namespaceNames of 300: %d, from %q to %q; want the first %d, sorted", len(names), names[0], names[len(names)-1], maxNamespaces)
	}
}

// A change of any of the new fields is a new inventory, which the agent sends.
func TestSameInventoryComparesProfileFields(t *testing.T) {
	base := v1alpha1.Inventory{
		KubeletVersions:     map[string]int32{"v1.37.2": 3},
		Addons:              map[string]string{"coredns": "v1.12.4"},
		EnabledFeatureGates: []string{"A"},
		Namespaces:          []string{"default"},
	}
	changed := map[string]func(*v1alpha1.Inventory){
		"kubelet versions": func(i *v1alpha1.Inventory) { i.KubeletVersions = map[string]int32{"v1.37.2": 2, "v1.36.3": 1} },
		"add-ons":          func(i *v1alpha1.Inventory) { i.Addons = map[string]string{"coredns": "v1.12.5"} },
		"an add-on more":   func(i *v1alpha1.Inventory) { i.Addons = map[string]string{"coredns": "v1.12.4", "metrics": "v1.151.0"} },
		"feature gates":    func(i *v1alpha1.Inventory) { i.EnabledFeatureGates = []string{"A", "B"} },
		"namespaces":       func(i *v1alpha1.Inventory) { i.Namespaces = []string{"default", "shop"} },
	}
	for name, change := range changed {
		other := *base.DeepCopy()
		change(&other)
		if sameInventory(base, other) {
			t.Errorf("a change of the %s is not seen", name)
		}
	}
	later := *base.DeepCopy()
	later.ReportedAt = metav1.Now()
	if !sameInventory(base, later) {
		t.Error("the same inventory taken later differs")
	}
}

func TestModuleVersion(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/convoy-dev/convoy/hack/observe", Version: "(devel)"},
		Deps: []*debug.Module{{Path: "github.com/VictoriaMetrics/fastcache", Version: "v1.13.3"}, {Path: victoriaMetrics, Version: "v1.151.0"}}}
	if got := moduleVersion(bi, victoriaMetrics); got != "v1.151.0" {
		t.Errorf("as a dependency: %q, want v1.151.0", got)
	}
	bi = &debug.BuildInfo{Main: debug.Module{Path: victoriaMetrics, Version: "v1.151.0"}}
	if got := moduleVersion(bi, victoriaMetrics); got != "v1.151.0" {
		t.Errorf("as the main module: %q, want v1.151.0", got)
	}
	bi.Main.Version = "(devel)"
	if got := moduleVersion(bi, victoriaMetrics); got != "" {
		t.Errorf("built in its own repository: %q, want none", got)
	}
	// The agent's own binary has no collector in it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if v, err := collectorVersion(self); err == nil {
		t.Errorf("collectorVersion of the test binary = %q, want an error", v)
	}
	// The one make builds, if it has.
	vmagent, _ := filepath.Abs("../../bin/vmagent")
	if _, err := os.Stat(vmagent); err != nil {
		t.Logf("no %s: %v", vmagent, err)
		return
	}
	if v, err := collectorVersion(vmagent); err != nil || !strings.HasPrefix(v, "v1.") {
		t.Errorf("collectorVersion(bin/vmagent) = %q, %v; want a version", v, err)
	}
}

// A real member's inventory (a real API server: the hub's, standing in for a member) says
// what a cluster profile checks, and follows it as it changes.
func TestObserveProfile(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server")
	}
	h, cs, ctx := memberAPI(t)
	var err error
	create := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	apps := cs.AppsV1()
	app := func(d *appsv1.Deployment, labels map[string]string) *appsv1.Deployment {
		sel := map[string]string{"app": d.Name}
		d.Labels = labels
		d.Spec.Selector = &metav1.LabelSelector{MatchLabels: sel}
		d.Spec.Template.Labels = sel
		return d
	}
	for _, ns := range []string{localPathNamespace, "storage-x"} {
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		create(err)
	}
	_, err = apps.Deployments("kube-system").Create(ctx, app(deployment("kube-system", "coredns",
		corev1.Container{Name: "sidecar", Image: "example.com/sidecar:v9.9.9"},
		corev1.Container{Name: "coredns", Image: "registry.k8s.io/coredns/coredns:v1.12.4"}), nil), metav1.CreateOptions{})
	create(err)
	// Not CoreDNS, though in kube-system.
	_, err = apps.Deployments("kube-system").Create(ctx, app(deployment("kube-system", "coredns-autoscaler",
		corev1.Container{Name: "coredns", Image: "registry.k8s.io/coredns/coredns:v0.0.1"}), nil), metav1.CreateOptions{})
	create(err)
	_, err = apps.Deployments(localPathNamespace).Create(ctx, app(deployment(localPathNamespace, localPath,
		corev1.Container{Name: localPath, Image: "localhost:5000/rancher/local-path-provisioner:v0.0.30"}), nil), metav1.CreateOptions{})
	create(err)
	_, err = apps.Deployments("storage-x").Create(ctx, app(deployment("storage-x", "provisioner",
		corev1.Container{Name: "main", Image: "rancher/local-path-provisioner:v0.0.28"}), map[string]string{"app": localPath}), metav1.CreateOptions{})
	create(err)
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: kubeProxy}}
	ds.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": kubeProxy}}
	ds.Spec.Template.Labels = ds.Spec.Selector.MatchLabels
	ds.Spec.Template.Spec.Containers = []corev1.Container{{Name: kubeProxy, Image: "registry.k8s.io/kube-proxy:v1.36.3"}}
	_, err = apps.DaemonSets("kube-system").Create(ctx, ds, metav1.CreateOptions{})
	create(err)
	for _, n := range []struct{ name, kubelet, proxy string }{{"n1", "v1.37.2", "v1.37.2"}, {"n2", "v1.36.3", "v1.36.3"}, {"n3", "v1.37.2", ""}} {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name}}
		if n.proxy != "" {
			node.Labels = map[string]string{v1alpha1.LabelKubeProxyVersion: n.proxy}
		}
		node, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		create(err)
		node.Status.NodeInfo.KubeletVersion = n.kubelet
		_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		create(err)
	}

	m, err := NewKubeMember(h.Config)
	if err != nil {
		t.Fatal(err)
	}
	inv := m.Observe(ctx)
	if want := map[string]int32{"v1.37.2": 2, "v1.36.3": 1}; !maps.Equal(inv.KubeletVersions, want) {
		t.Errorf("kubelet versions %v, want %v", inv.KubeletVersions, want)
	}
	if want := map[string]string{"coredns": "v1.12.4", "storage": "v0.0.30", "kube-proxy": "v1.36.3"}; !maps.Equal(inv.Addons, want) {
		t.Errorf("add-ons %v, want %v", inv.Addons, want)
	}
	for _, ns := range []string{"default", "kube-system", localPathNamespace, "storage-x"} {
		if !slices.Contains(inv.Namespaces, ns) {
			t.Errorf("namespaces %q, want %s among them", inv.Namespaces, ns)
		}
	}
	if !slices.IsSorted(inv.Namespaces) {
		t.Errorf("namespaces %q are not sorted", inv.Namespaces)
	}
	// A real API server enables its beta and GA gates by default.
	if len(inv.EnabledFeatureGates) == 0 || !slices.IsSorted(inv.EnabledFeatureGates) {
		t.Errorf("enabled feature gates %q, want some, sorted", inv.EnabledFeatureGates)
	}
	t.Logf("%d enabled feature gates, the first %q", len(inv.EnabledFeatureGates), inv.EnabledFeatureGates[:min(3, len(inv.EnabledFeatureGates))])

	// Without the DaemonSet, kube-proxy's version comes from the nodes; without the
	// provisioner at its usual name, from the one labelled as it.
	create(apps.DaemonSets("kube-system").Delete(ctx, kubeProxy, metav1.DeleteOptions{}))
	create(apps.Deployments(localPathNamespace).Delete(ctx, localPath, metav1.DeleteOptions{}))
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{})
	create(err)
	want := map[string]string{"coredns": "v1.12.4", "storage": "v0.0.28", "kube-proxy": "v1.36.3, v1.37.2"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		inv = m.Observe(ctx)
		if maps.Equal(inv.Addons, want) && slices.Contains(inv.Namespaces, "shop") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("add-ons %v and namespaces %q; want %v, and shop among them", inv.Addons, inv.Namespaces, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// memberAPI starts a real API server (a hub's, standing in for a member) and a client of it,
// with a context that ends with the test.
func memberAPI(t *testing.T) (*hubtest.Hub, kubernetes.Interface, context.Context) {
	t.Helper()
	h := hubtest.Start(t)
	cs, err := kubernetes.NewForConfig(h.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	return h, cs, ctx
}
