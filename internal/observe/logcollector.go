package observe

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// LogCollector is the members' log collector: `convoy log-collector` (package logship), as a
// DaemonSet on every real node of the member (never on a simulated one, which has no logs), from
// Convoy's image. Each pod follows its node's container log files (through the kubelet's
// /var/log/containers links, to the files they point to) and learns its pods' namespace, name,
// container and labels from the member's API server. It sends the lines to the hub's log store
// through the hub's API server, with the token of the cluster's agent (which keeps it current
// in a Secret); the hub labels them with the cluster and its region. While the hub is away it
// reads no further: the kubelet's log files are the buffer.
type LogCollector struct {
	// Image is Convoy's image, as the member's nodes pull it.
	Image string
	// HubURL is the hub's API server as the member's pods reach it.
	HubURL string
	// HubCA and Token authenticate the hub and the agent to each other.
	HubCA []byte
	Token string
	// HostPaths are the host directories where the nodes' kubelets keep pod logs, which the
	// collectors read at the same paths, when that is not /var/log/pods (local clusters'
	// nodes).
	HostPaths []string
	// DataHostPath is the host directory under which each node's collector keeps how far it
	// sent each file, in a directory named after the node, so that a new pod of it goes on
	// where the last stopped (DefaultLogDataHostPath when empty).
	DataHostPath string
	// Rate bounds what one collector sends, in bytes a second as sent (DefaultCollectorLogRate
	// when zero).
	Rate int
}

// The collector's defaults: a node sends at most half of what the hub takes from a cluster
// (DefaultLogRate), so that one noisy node leaves room for the others.
const (
	DefaultCollectorLogRate = DefaultLogRate / 2
	// LogCollectorName names the collector's objects in the member, in the namespace
	// LogCollectorNamespace.
	LogCollectorName      = "convoy-log-collector"
	LogCollectorNamespace = "convoy-system"
	// DefaultLogDataHostPath is where collectors keep their state on a node.
	DefaultLogDataHostPath = "/var/lib/convoy-log-collector"
)

// Objects are what the agent applies to its member for the collector: the namespace, a
// ServiceAccount that may read pods, the Secret with the hub's CA and the
// agent's token, and the DaemonSet. The DaemonSet's pods restart when the Secret's content
// changes only through its checksum annotation of the CA (a new token reaches running pods
// through the mounted Secret, which the collector reads again for every request).
func (c LogCollector) Objects() ([]any, error) {
	u, err := url.Parse(c.HubURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("the hub's URL as the member's pods reach it, %q: an https:// URL is needed", c.HubURL)
	}
	if c.Image == "" {
		return nil, fmt.Errorf("the log collector needs Convoy's image")
	}
	rate := c.Rate
	if rate <= 0 {
		rate = DefaultCollectorLogRate
	}
	labels := map[string]string{"app.kubernetes.io/name": LogCollectorName, "app.kubernetes.io/managed-by": "convoy-agent"}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: LogCollectorNamespace, Labels: labels}
	}
	const hubDir, dataDir = "/etc/convoy-hub", "/var/lib/convoy-log-collector"
	args := []string{
		"log-collector",
		"--hub-url=" + u.JoinPath(v1alpha1.LogsInsertPath).String(),
		"--ca-file=" + hubDir + "/ca.crt",
		"--token-file=" + hubDir + "/token",
		"--node=$(NODE_NAME)",
		"--state-dir=" + dataDir,
		"--rate=" + strconv.Itoa(rate),
		"--log-level=warn",
	}
	dataHost := c.DataHostPath
	if dataHost == "" {
		dataHost = DefaultLogDataHostPath
	}
	if !path.IsAbs(dataHost) {
		return nil, fmt.Errorf("the log collector's data host path %q: an absolute path is needed", dataHost)
	}
	mounts := []corev1.VolumeMount{
		{Name: "hub", MountPath: hubDir, ReadOnly: true},
		// The node's own directory: nodes of local clusters share one host.
		{Name: "data", MountPath: dataDir, SubPathExpr: "$(NODE_NAME)"},
	}
	volumes := []corev1.Volume{
		{Name: "hub", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: LogCollectorName}}},
		{Name: "data", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
			Path: dataHost, Type: ptr.To(corev1.HostPathDirectoryOrCreate)}}},
	}
	// The kubelet's links, and the files they point to: in /var/log/pods, or where HostPaths
	// say (then /var/log/pods is not mounted, so that no empty one is made on the host).
	logDirs := slices.Clone(c.HostPaths)
	if len(logDirs) == 0 {
		logDirs = []string{"/var/log/pods"}
	}
	slices.Sort(logDirs)
	paths := append([]string{"/var/log/containers"}, slices.Compact(logDirs)...)
	for i, p := range paths {
		if !path.IsAbs(p) {
			return nil, fmt.Errorf("the log collector's host path %q: an absolute path is needed", p)
		}
		name := "host-" + strconv.Itoa(i)
		mounts = append(mounts, corev1.VolumeMount{Name: name, MountPath: p, ReadOnly: true})
		volumes = append(volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
			HostPath: &corev1.HostPathVolumeSource{Path: p, Type: ptr.To(corev1.HostPathDirectoryOrCreate)}}})
	}
	sum := sha256.Sum256(c.HubCA)
	ds := &appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: meta(LogCollectorName),
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": LogCollectorName}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{
					"convoy.dev/hub-ca-sha256": hex.EncodeToString(sum[:8]),
				}},
				Spec: corev1.PodSpec{
					ServiceAccountName: LogCollectorName,
					// Every node with a kubelet, whatever its taints; never a simulated one.
					Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
						RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
							MatchExpressions: []corev1.NodeSelectorRequirement{
								{Key: "type", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"kwok"}},
								{Key: "convoy.dev/node-kind", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"simulated"}},
							},
						}}},
					}},
					Containers: []corev1.Container{{
						Name:    "collector",
						Image:   c.Image,
						Command: []string{"/convoy"},
						// The tag is the hub's version, whose image the hub pushes again when
						// its content changes.
						ImagePullPolicy: corev1.PullAlways,
						Args:            args,
						Env: []corev1.EnvVar{{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{
							FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}},
						// It reads the container runtime's log files, which only root may.
						SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To[int64](0)},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
						},
						VolumeMounts: mounts,
					}},
					Volumes: volumes,
				},
			},
		},
	}
	return []any{
		&corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: LogCollectorNamespace}},
		&corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta(LogCollectorName)},
		&rbacv1.ClusterRole{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
			ObjectMeta: metav1.ObjectMeta{Name: LogCollectorName, Labels: labels},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}},
		},
		&rbacv1.ClusterRoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: LogCollectorName, Labels: labels},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: LogCollectorName},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: LogCollectorName, Namespace: LogCollectorNamespace}},
		},
		&corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: meta(LogCollectorName),
			Data:       map[string][]byte{"token": []byte(c.Token), "ca.crt": c.HubCA},
		},
		ds,
	}, nil
}
