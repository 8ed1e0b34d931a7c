package join

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// AgentNamespace is where the agent runs on an imported member.
const AgentNamespace = "convoy-system"

// AgentManifest is what runs a cluster's agent inside the member as a Deployment: a
// namespace, a ServiceAccount bound to cluster-admin (the agent applies whatever the cluster's
// Works carry), a Secret with the bootstrap token and the hub's CA, and the Deployment, which
// keeps its hub identity in a Secret so that a new pod needs no new token. A deliveryPort
// that is not empty is the port of the hub's delivery stream on hubURL's host, where the agent
// joins (convoy agent --delivery-port). With collector, the agent runs the metrics collector
// that Convoy's image carries (/vmagent), which scrapes every pod that asks to be, from inside
// the cluster, and keeps its buffer in an emptyDir. With logs, it runs the log collector
// (observe.LogCollector), a DaemonSet of `convoy log-collector` from the same image.
func AgentManifest(cluster, hubURL, deliveryPort string, hubCA []byte, token, image string, collector, logs bool) (string, error) {
	args := []string{"agent", "--cluster", cluster, "--hub-url", hubURL}
	if deliveryPort != "" {
		args = append(args, "--delivery-port", deliveryPort)
	}
	args = append(args, "--hub-ca-file", "/etc/convoy/hub-ca.crt", "--bootstrap-token-file", "/etc/convoy/token",
		"--state-secret", AgentNamespace+"/convoy-agent-state")
	mounts := []corev1.VolumeMount{{Name: "bootstrap", MountPath: "/etc/convoy", ReadOnly: true}}
	volumes := []corev1.Volume{{Name: "bootstrap", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "convoy-agent-bootstrap"}}}}
	memory := resource.MustParse("128Mi")
	if collector {
		args = append(args, "--collector-bin", "/vmagent", "--collector-pods", "all", "--state-dir", "/var/lib/convoy-agent")
		mounts = append(mounts, corev1.VolumeMount{Name: "state", MountPath: "/var/lib/convoy-agent"})
		// The collector's buffer (observe.DefaultBufferBytes) and its configuration.
		volumes = append(volumes, corev1.Volume{Name: "state", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("320Mi"))}}})
		memory = resource.MustParse("384Mi") // vmagent takes 60 to 80 MiB here
	}
	if logs {
		// The log collector's DaemonSet, from the same image, reaches the hub as the agent does.
		args = append(args, "--log-collector-image", image)
	}
	labels := map[string]string{"app.kubernetes.io/name": "convoy-agent"}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: AgentNamespace, Labels: labels}
	}
	objs := []any{
		&corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: AgentNamespace}},
		&corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta("convoy-agent")},
		&rbacv1.ClusterRoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: "convoy-agent", Labels: labels},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "convoy-agent", Namespace: AgentNamespace}},
		},
		&corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: meta("convoy-agent-bootstrap"),
			StringData: map[string]string{"token": token, "hub-ca.crt": string(hubCA)},
		},
		&appsv1.Deployment{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: meta("convoy-agent"),
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](1),
				Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{
						ServiceAccountName: "convoy-agent",
						Containers: []corev1.Container{{
							Name:  "agent",
							Image: image,
							Args:  args,
							Resources: corev1.ResourceRequirements{
								Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
								Limits:   corev1.ResourceList{corev1.ResourceMemory: memory},
							},
							VolumeMounts: mounts,
						}},
						Volumes: volumes,
					},
				},
			},
		},
	}
	var docs []string
	for _, o := range objs {
		raw, err := yaml.Marshal(o)
		if err != nil {
			return "", fmt.Errorf("render agent manifest: %w", err)
		}
		docs = append(docs, strings.TrimSpace(string(raw)))
	}
	return strings.Join(docs, "\n---\n") + "\n", nil
}
