package render

import (
	"fmt"
	"path"
	"slices"

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
					if root, _ = m["value"].(string); root == "" {
						return fmt.Errorf("%s %s: container %v sets SERVICE_BINDING_ROOT without a plain value; give it one (a path), so that the bindings can be mounted under it", u.GetKind(), u.GetName(), c["name"])
					}
				}
			}
			if root == "" {
				root = v1alpha1.BindingRoot
				env = append(env, map[string]any{"name": "SERVICE_BINDING_ROOT", "value": root})
			}
			mounts, _ := c["volumeMounts"].([]any)
			for _, b := range bindings {
				at := path.Join(root, b.Name)
				for _, m := range mounts {
					if mm, _ := m.(map[string]any); mm["mountPath"] == at {
						return fmt.Errorf("%s %s: container %v mounts something at %s already, where service binding %s goes", u.GetKind(), u.GetName(), c["name"], at, b.Name)
					}
				}
				mounts = append(mounts, map[string]any{"name": BindingVolumePrefix + b.Name, "mountPath": at, "readOnly": true})
				for _, e := range b.Env {
					// The binding's variable replaces one of the same name.
					env = slices.DeleteFunc(env, func(x any) bool { m, _ := x.(map[string]any); return m["name"] == e.Name })
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
