package render

import (
	"fmt"
	"path"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// Binding is one ServiceBinding as the render needs it: its name, the connection Secret and
// the environment variables it asks for.
type Binding struct {
	Name   string
	Secret string
	Env    []v1alpha1.BindingEnv
}

// BindingVolumePrefix starts the name of each projected binding's volume.
const BindingVolumePrefix = "convoy-binding-"

// Project projects bindings into a rendered workload's pod template, as the Service Binding
// spec says: the Secret of each as a read-only volume mounted in every container and init
// container at $SERVICE_BINDING_ROOT/NAME, SERVICE_BINDING_ROOT set to v1alpha1.BindingRoot
// unless a container sets it, and the binding's environment variables from the Secret's keys.
// It changes u, which must be the render's own copy; an object without a pod template is left
// as it is.
func Project(u *unstructured.Unstructured, bindings []Binding) error {
	p := podSpecPath(u)
	if p == nil || len(bindings) == 0 {
		return nil
	}
	spec, ok, err := unstructured.NestedMap(u.Object, p...)
	if err != nil || !ok {
		return fmt.Errorf("%s %s has no pod template to project the service bindings into", u.GetKind(), u.GetName())
	}
	volumes, _ := spec["volumes"].([]any)
	for _, b := range bindings {
		volumes = append(volumes, map[string]any{"name": BindingVolumePrefix + b.Name,
			"secret": map[string]any{"secretName": b.Secret}})
	}
	spec["volumes"] = volumes
	for _, field := range []string{"initContainers", "containers"} {
		cs, _ := spec[field].([]any)
		for i := range cs {
			c, ok := cs[i].(map[string]any)
			if !ok {
				continue
			}
			root := ""
			env, _ := c["env"].([]any)
			for _, e := range env {
				if m, _ := e.(map[string]any); m["name"] == "SERVICE_BINDING_ROOT" {
					root, _ = m["value"].(string)
				}
			}
			if root == "" {
				root = v1alpha1.BindingRoot
				env = append(env, map[string]any{"name": "SERVICE_BINDING_ROOT", "value": root})
			}
			mounts, _ := c["volumeMounts"].([]any)
			for _, b := range bindings {
				mounts = append(mounts, map[string]any{"name": BindingVolumePrefix + b.Name, "mountPath": path.Join(root, b.Name), "readOnly": true})
				for _, e := range b.Env {
					env = append(env, map[string]any{"name": e.Name, "valueFrom": map[string]any{
						"secretKeyRef": map[string]any{"name": b.Secret, "key": e.Key}}})
				}
			}
			c["env"], c["volumeMounts"] = env, mounts
			cs[i] = c
		}
		if cs != nil {
			spec[field] = cs
		}
	}
	return unstructured.SetNestedMap(u.Object, spec, p...)
}
