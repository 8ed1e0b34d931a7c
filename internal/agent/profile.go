package agent

import (
	"context"
	"slices"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/profile"
)

// What a cluster profile checks of a member, beyond nodes and pods: the versions of its
// add-ons, its namespaces, the objects a profile made (its default RBAC and admission
// policies), and (featuregates.go) its API server's enabled feature gates.
const (
	// coreDNS is the Deployment kube-system/coredns, and the container in it that is CoreDNS.
	coreDNS = "coredns"
	// localPathNamespace/localPath is the local-path-provisioner Deployment of Convoy's local
	// provider (internal/provider/local/addons/addons.yaml), and of kind and upstream's manifest;
	// localPathLabel finds it in other clusters, in any namespace.
	localPathNamespace = "local-path-storage"
	localPath          = "local-path-provisioner"
	localPathLabel     = "app=" + localPath
	// kubeProxy is the DaemonSet kube-system/kube-proxy of a kubeadm cluster, and its container.
	kubeProxy = "kube-proxy"
	// maxNamespaces is how many namespaces the inventory lists (Inventory.Namespaces).
	maxNamespaces = 256
	// maxProfileObjects is how many objects a profile made the inventory lists
	// (Inventory.ProfileObjects.Items).
	maxProfileObjects = 256
	// profileSyncWait is how long the first inventory waits for these watches' first lists; a
	// watch that has not listed yet leaves its part of the inventory out.
	profileSyncWait = 5 * time.Second
)

// profileWatch watches what the add-ons' versions are read from, each by name or label only,
// the member's namespaces, and the objects labelled v1alpha1.LabelProfileManaged.
type profileWatch struct {
	coreDNS, localPath, storage, kubeProxy, namespaces toolscache.SharedIndexInformer
	// clusterRoles, clusterRoleBindings, policies and policyBindings hold the objects a
	// profile made (those labelled v1alpha1.LabelProfileManaged).
	clusterRoles, clusterRoleBindings, policies, policyBindings toolscache.SharedIndexInformer
	factories                                                   []informers.SharedInformerFactory
}

// newProfileWatch starts the watches until ctx ends; they list in the background.
func newProfileWatch(ctx context.Context, cs kubernetes.Interface) *profileWatch {
	w := &profileWatch{}
	watch := func(ns string, tweak func(*metav1.ListOptions), informer func(informers.SharedInformerFactory) toolscache.SharedIndexInformer) toolscache.SharedIndexInformer {
		f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns), informers.WithTweakListOptions(tweak))
		inf := informer(f)
		_ = inf.SetTransform(slimProfileObject)
		w.factories = append(w.factories, f)
		return inf
	}
	byName := func(name string) func(*metav1.ListOptions) {
		return func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}
	}
	deployments := func(f informers.SharedInformerFactory) toolscache.SharedIndexInformer {
		return f.Apps().V1().Deployments().Informer()
	}
	w.coreDNS = watch(metav1.NamespaceSystem, byName(coreDNS), deployments)
	w.localPath = watch(localPathNamespace, byName(localPath), deployments)
	w.storage = watch(metav1.NamespaceAll, func(o *metav1.ListOptions) { o.LabelSelector = localPathLabel }, deployments)
	w.kubeProxy = watch(metav1.NamespaceSystem, byName(kubeProxy), func(f informers.SharedInformerFactory) toolscache.SharedIndexInformer {
		return f.Apps().V1().DaemonSets().Informer()
	})
	w.namespaces = watch(metav1.NamespaceAll, nil, func(f informers.SharedInformerFactory) toolscache.SharedIndexInformer {
		return f.Core().V1().Namespaces().Informer()
	})
	managed := func(o *metav1.ListOptions) { o.LabelSelector = v1alpha1.LabelProfileManaged + "=true" }
	w.clusterRoles = watch(metav1.NamespaceAll, managed, func(f informers.SharedInformerFactory) toolscache.SharedIndexInformer {
		return f.Rbac().V1().ClusterRoles().Informer()
	})
	w.clusterRoleBindings = watch(metav1.NamespaceAll, managed, func(f informers.SharedInformerFactory) toolscache.SharedIndexInformer {
		return f.Rbac().V1().ClusterRoleBindings().Informer()
	})
	w.policies = watch(metav1.NamespaceAll, managed, func(f informers.SharedInformerFactory) toolscache.SharedIndexInformer {
		return f.Admissionregistration().V1().ValidatingAdmissionPolicies().Informer()
	})
	w.policyBindings = watch(metav1.NamespaceAll, managed, func(f informers.SharedInformerFactory) toolscache.SharedIndexInformer {
		return f.Admissionregistration().V1().ValidatingAdmissionPolicyBindings().Informer()
	})
	for _, f := range w.factories {
		f.Start(ctx.Done())
	}
	go func() {
		<-ctx.Done()
		for _, f := range w.factories {
			f.Shutdown()
		}
	}()
	return w
}

// waitSynced waits up to profileSyncWait for the watches' first lists.
func (w *profileWatch) waitSynced(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, profileSyncWait)
	defer cancel()
	toolscache.WaitForCacheSync(ctx.Done(), w.coreDNS.HasSynced, w.localPath.HasSynced, w.storage.HasSynced, w.kubeProxy.HasSynced, w.namespaces.HasSynced,
		w.clusterRoles.HasSynced, w.clusterRoleBindings.HasSynced, w.policies.HasSynced, w.policyBindings.HasSynced)
}

// addons are the add-ons' versions from what the watches hold, and the member's nodes.
func (w *profileWatch) addons(nodes []*corev1.Node) map[string]string {
	var o addonObjects
	if ds, ok := listed[appsv1.Deployment](w.coreDNS); ok && len(ds) > 0 {
		o.CoreDNS = ds[0]
	}
	if ds, ok := listed[appsv1.Deployment](w.localPath); ok && len(ds) > 0 {
		o.LocalPath = ds[0]
	}
	o.Storage, _ = listed[appsv1.Deployment](w.storage)
	if ds, ok := listed[appsv1.DaemonSet](w.kubeProxy); ok && len(ds) > 0 {
		o.KubeProxy = ds[0]
	}
	o.Nodes = nodes
	return addonVersions(o)
}

// namespaceNames are the member's namespaces, or nil until their watch has listed.
func (w *profileWatch) namespaceNames() []string {
	nss, _ := listed[corev1.Namespace](w.namespaces)
	return namespaceNames(nss)
}

// profileObjects are the objects labelled v1alpha1.LabelProfileManaged, each with the digest
// of its content (profile.Observed, which the hub's profile.Diff compares with the digests of
// the profile's objects), the first maxProfileObjects by kind and name; nil until every one of
// their watches has listed (a member that does not serve a kind's API never lists it).
func (w *profileWatch) profileObjects() *v1alpha1.ObservedProfileObjects {
	roles, ok1 := listed[rbacv1.ClusterRole](w.clusterRoles)
	bindings, ok2 := listed[rbacv1.ClusterRoleBinding](w.clusterRoleBindings)
	policies, ok3 := listed[admissionregistrationv1.ValidatingAdmissionPolicy](w.policies)
	policyBindings, ok4 := listed[admissionregistrationv1.ValidatingAdmissionPolicyBinding](w.policyBindings)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return nil
	}
	var o profile.MemberObjects
	for _, r := range roles {
		o.ClusterRoles = append(o.ClusterRoles, *r)
	}
	for _, b := range bindings {
		o.ClusterRoleBindings = append(o.ClusterRoleBindings, *b)
	}
	for _, p := range policies {
		o.Policies = append(o.Policies, *p)
	}
	for _, b := range policyBindings {
		o.PolicyBindings = append(o.PolicyBindings, *b)
	}
	items := profile.Observed(o)
	if len(items) > maxProfileObjects {
		items = items[:maxProfileObjects]
	}
	return &v1alpha1.ObservedProfileObjects{Items: items}
}

// listed is what inf holds, and false until it has listed.
func listed[T any](inf toolscache.SharedIndexInformer) ([]*T, bool) {
	if !inf.HasSynced() {
		return nil, false
	}
	var out []*T
	for _, o := range inf.GetStore().List() {
		if t, ok := o.(*T); ok {
			out = append(out, t)
		}
	}
	return out, true
}

// addonObjects are what the add-ons' versions are read from; nil where the member has none or
// the agent does not know yet.
type addonObjects struct {
	// CoreDNS is the Deployment kube-system/coredns.
	CoreDNS *appsv1.Deployment
	// LocalPath is the Deployment local-path-storage/local-path-provisioner; Storage are those
	// labelled app=local-path-provisioner, in any namespace.
	LocalPath *appsv1.Deployment
	Storage   []*appsv1.Deployment
	// KubeProxy is the DaemonSet kube-system/kube-proxy.
	KubeProxy *appsv1.DaemonSet
	// Nodes are the member's nodes, whose v1alpha1.LabelKubeProxyVersion says kube-proxy's version
	// where it runs as a process.
	Nodes []*corev1.Node
}

// addonVersions are the versions of the add-ons found, by name (v1alpha1.AddonName), or nil:
//   - coredns: the image tag of CoreDNS's Deployment (its container coredns, or its first);
//   - storage: the image tag of the local-path-provisioner Deployment at its usual name, or
//     else of those labelled as it (their distinct tags, sorted, joined with ", ");
//   - kube-proxy: the image tag of the kube-proxy DaemonSet, or else the distinct
//     v1alpha1.LabelKubeProxyVersion values of the nodes, sorted, joined with ", ".
//
// The agent adds metrics, the version of the collector it runs (Agent.observe).
func addonVersions(o addonObjects) map[string]string {
	out := map[string]string{}
	set := func(name v1alpha1.AddonName, v string) {
		if v != "" {
			out[string(name)] = v
		}
	}
	if o.CoreDNS != nil {
		set(v1alpha1.AddonCoreDNS, containerTag(o.CoreDNS.Spec.Template.Spec, coreDNS))
	}
	if o.LocalPath != nil {
		set(v1alpha1.AddonStorage, containerTag(o.LocalPath.Spec.Template.Spec, localPath))
	} else {
		var tags []string
		for _, d := range o.Storage {
			tags = append(tags, containerTag(d.Spec.Template.Spec, localPath))
		}
		set(v1alpha1.AddonStorage, distinct(tags))
	}
	if o.KubeProxy != nil {
		set(v1alpha1.AddonKubeProxy, containerTag(o.KubeProxy.Spec.Template.Spec, kubeProxy))
	} else {
		var versions []string
		for _, n := range o.Nodes {
			versions = append(versions, n.Labels[v1alpha1.LabelKubeProxyVersion])
		}
		set(v1alpha1.AddonKubeProxy, distinct(versions))
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// containerTag is the image tag of the container called name in spec, or of its first.
func containerTag(spec corev1.PodSpec, name string) string {
	if len(spec.Containers) == 0 {
		return ""
	}
	c := spec.Containers[0]
	for _, cc := range spec.Containers {
		if cc.Name == name {
			c = cc
			break
		}
	}
	return imageTag(c.Image)
}

// imageTag is an image reference's tag: "v1.12.4" of registry.k8s.io/coredns/coredns:v1.12.4
// (also with a digest after it), the digest of an image named by digest only, latest for one
// with neither (as a container runtime reads it), and "" for "".
func imageTag(image string) string {
	name, digest, byDigest := strings.Cut(image, "@")
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		return name[i+1:]
	}
	switch {
	case byDigest:
		return digest
	case name == "":
		return ""
	default:
		return "latest"
	}
}

// distinct are the non-empty values, sorted, each once, joined with ", ".
func distinct(values []string) string {
	values = slices.DeleteFunc(slices.Clone(values), func(v string) bool { return v == "" })
	slices.Sort(values)
	return strings.Join(slices.Compact(values), ", ")
}

// kubeletVersions counts the nodes by the version their kubelet reports (a node that reports
// none yet is left out), or is nil.
func kubeletVersions(nodes []*corev1.Node) map[string]int32 {
	var out map[string]int32
	for _, n := range nodes {
		if v := n.Status.NodeInfo.KubeletVersion; v != "" {
			if out == nil {
				out = map[string]int32{}
			}
			out[v]++
		}
	}
	return out
}

// namespaceNames are the namespaces' names, sorted, the first maxNamespaces of them.
func namespaceNames(nss []*corev1.Namespace) []string {
	var names []string
	for _, ns := range nss {
		names = append(names, ns.Name)
	}
	slices.Sort(names)
	if len(names) > maxNamespaces {
		names = names[:maxNamespaces]
	}
	return names
}

// slimProfileObject keeps only what profileWatch reads of an object in memory: names, the
// containers' names and images, and the content of the objects a profile made (without their
// managed fields, annotations and status).
func slimProfileObject(o any) (any, error) {
	meta := func(m metav1.ObjectMeta) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion}
	}
	containers := func(spec corev1.PodSpec) corev1.PodSpec {
		var slim corev1.PodSpec
		for _, c := range spec.Containers {
			slim.Containers = append(slim.Containers, corev1.Container{Name: c.Name, Image: c.Image})
		}
		return slim
	}
	switch t := o.(type) {
	case *appsv1.Deployment:
		d := &appsv1.Deployment{ObjectMeta: meta(t.ObjectMeta)}
		d.Spec.Template.Spec = containers(t.Spec.Template.Spec)
		return d, nil
	case *appsv1.DaemonSet:
		d := &appsv1.DaemonSet{ObjectMeta: meta(t.ObjectMeta)}
		d.Spec.Template.Spec = containers(t.Spec.Template.Spec)
		return d, nil
	case *corev1.Namespace:
		return &corev1.Namespace{ObjectMeta: meta(t.ObjectMeta)}, nil
	case *rbacv1.ClusterRole:
		return &rbacv1.ClusterRole{ObjectMeta: meta(t.ObjectMeta), Rules: t.Rules}, nil
	case *rbacv1.ClusterRoleBinding:
		return &rbacv1.ClusterRoleBinding{ObjectMeta: meta(t.ObjectMeta), RoleRef: t.RoleRef, Subjects: t.Subjects}, nil
	case *admissionregistrationv1.ValidatingAdmissionPolicy:
		return &admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: meta(t.ObjectMeta), Spec: t.Spec}, nil
	case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
		return &admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: meta(t.ObjectMeta), Spec: t.Spec}, nil
	}
	return o, nil
}
